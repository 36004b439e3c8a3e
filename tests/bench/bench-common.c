/* bench-common.c — see bench-common.h. */
#include "bench-common.h"
#include "hv-error.h"
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <unistd.h>

/* The manifest's config, through the same parser as a config.json (written to a temp file). */
static gboolean
manifest_config (JsonObject *root, HvVaeConfig *cfg, GError **error)
{
  if (!json_object_has_member (root, "config")) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "VAE manifest: no \"config\" member");
    return FALSE;
  }
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) cnode = json_node_new (JSON_NODE_OBJECT);
  json_node_set_object (cnode, json_object_get_object_member (root, "config"));
  json_generator_set_root (gen, cnode);
  g_autofree char *cfg_path = NULL;
  int fd = g_file_open_tmp ("hv-bench-vae-XXXXXX.json", &cfg_path, error);
  if (fd < 0)
    return FALSE;
  close (fd);
  gboolean ok = json_generator_to_file (gen, cfg_path, error) && hv_vae_config_load (cfg, cfg_path, error);
  g_unlink (cfg_path);
  return ok;
}

HvVae *
hv_bench_real_vae (const char *fixtures_dir, HvDType dtype, HvBackend *backend, GError **error)
{
  g_return_val_if_fail (dtype == HV_DTYPE_F32 || dtype == HV_DTYPE_F16 || dtype == HV_DTYPE_BF16, NULL);
  g_autofree char *manifest = g_build_filename (fixtures_dir, "manifests", "vae_full.json", NULL);
  g_autoptr(JsonParser) p = json_parser_new ();
  if (!json_parser_load_from_file (p, manifest, error))
    return NULL;
  JsonNode *rn = json_parser_get_root (p);
  JsonObject *root = rn && JSON_NODE_HOLDS_OBJECT (rn) ? json_node_get_object (rn) : NULL;
  if (!root || !json_object_has_member (root, "state_dict")) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: not a VAE manifest (no \"state_dict\")", manifest);
    return NULL;
  }
  HvVaeConfig cfg;
  if (!manifest_config (root, &cfg, error))
    return NULL;
  JsonObject *sd = json_object_get_object_member (root, "state_dict");
  HvStore *store = hv_store_new ();
  g_autoptr(GList) names = json_object_get_members (sd);
  guint32 seed = 12345;
  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    if (!g_str_has_prefix (name, "decoder.") && !g_str_has_prefix (name, "post_quant_conv."))
      continue;
    JsonArray *a = json_object_get_array_member (sd, name);
    int64_t shape[HV_MAX_DIMS];
    int nd = a ? (int) json_array_get_length (a) : 0;
    if (nd < 1 || nd > HV_MAX_DIMS) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: bad shape for %s", manifest, name);
      hv_store_free (store);
      return NULL;
    }
    for (int i = 0; i < nd; i++)
      shape[i] = json_array_get_int_element (a, i);
    HvTensor *t = hv_tensor_new (dtype, nd, shape);
    if (!t) {
      g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of host memory for %s", name);
      hv_store_free (store);
      return NULL;
    }
    int64_t n = hv_tensor_numel (t);
    const double bound = nd >= 2 ? 1.0 / sqrt ((double) (n / shape[0])) : 0.0;
    const float fill = nd < 2 && g_str_has_suffix (name, ".weight") ? 1.0f : 0.0f;
    for (int64_t i = 0; i < n; i++) {
      float v = nd >= 2 ? (float) (hv_bench_lcg (&seed) * bound) : fill;
      if (dtype == HV_DTYPE_F32)
        ((float *) t->data)[i] = v;
      else if (dtype == HV_DTYPE_F16)
        ((uint16_t *) t->data)[i] = hv_f32_to_f16 (v);
      else
        ((uint16_t *) t->data)[i] = hv_f32_to_bf16 (v);
    }
    if (!hv_store_insert (store, name, t, error)) {
      hv_store_free (store);
      return NULL;
    }
  }
  return hv_vae_new_from_store (store, &cfg, backend, error);
}
