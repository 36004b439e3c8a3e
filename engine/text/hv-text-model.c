/* hv-text-model.c — model files, config.json, weights and the padding mask for the Llama
 * and CLIP text encoders (see hv-text-model.h). */
#include "hv-text-model.h"
#include "hv-error.h"
#include <string.h>

HvStore *
hv_text_model_open (const char *path, char **config_path, GError **error)
{
  static const char *const candidates[] = {
    "model.safetensors.index.json", "model.safetensors",
    "pytorch_model.bin.index.json", "pytorch_model.bin",
  };
  g_autofree char *dir = NULL;
  g_autofree char *weights = NULL;
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    dir = g_strdup (path);
    for (guint i = 0; i < G_N_ELEMENTS (candidates) && !weights; i++) {
      char *p = g_build_filename (dir, candidates[i], NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        weights = p;
      else
        g_free (p);
    }
    if (!weights) {
      g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                   "%s holds no model weights (looked for model.safetensors[.index.json] and "
                   "pytorch_model.bin[.index.json])", dir);
      return NULL;
    }
  } else if (g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    dir = g_path_get_dirname (path);
    weights = g_strdup (path);
  } else {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "text encoder %s does not exist", path);
    return NULL;
  }
  char *cfg = g_build_filename (dir, "config.json", NULL);
  if (!g_file_test (cfg, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: no config.json beside the weights", dir);
    g_free (cfg);
    return NULL;
  }
  HvStore *s = hv_store_open (weights, error);
  if (!s) {
    g_free (cfg);
    return NULL;
  }
  *config_path = cfg;
  return s;
}

JsonParser *
hv_text_config_parse (const char *config_json, JsonObject **config, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, config_json, error)) {
    g_prefix_error (error, "%s: ", config_json);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s is not a JSON object", config_json);
    return NULL;
  }
  JsonObject *o = json_node_get_object (root);
  if (json_object_has_member (o, "text_config") &&
      JSON_NODE_HOLDS_OBJECT (json_object_get_member (o, "text_config")))
    o = json_object_get_object_member (o, "text_config");
  *config = o;
  return g_steal_pointer (&parser);
}

const char *
hv_text_store_name (HvStore *store)
{
  const char *p = hv_store_path (store);
  return p ? p : "(weights in memory)";
}

HvTensor *
hv_text_weight (HvStore *store, HvBackend *backend, const char *prefix, const char *name, int ndim,
                int64_t d0, int64_t d1, GError **error)
{
  g_autofree char *full = g_strconcat (prefix, name, NULL);
  int64_t shape[2] = { d0, d1 };
  const HvTensor *t = hv_store_require (store, full, ndim, shape, error);
  if (!t)
    return NULL;
  if (!hv_dtype_is_float (t->dtype)) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: tensor %s has dtype %s, expected a float dtype",
                 hv_text_store_name (store), full, hv_dtype_name (t->dtype));
    return NULL;
  }
  HvTensor *w = hv_backend_weight (backend, t);
  if (!w)
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "cannot place %s on %s", full, backend->name);
  return w;
}

HvTensor *
hv_text_pad_allow (const int32_t *mask, int B, int L)
{
  const int64_t n = (int64_t) B * L;
  gboolean any_pad = FALSE;
  for (int64_t i = 0; mask && i < n; i++)
    any_pad |= mask[i] == 0;
  if (!any_pad)
    return NULL;
  int64_t shape[3] = { B, L, L };
  HvTensor *allow = hv_tensor_new (HV_DTYPE_U8, 3, shape);
  uint8_t *a = allow->data;
  for (int bi = 0; bi < B; bi++)
    for (int i = 0; i < L; i++)
      for (int j = 0; j < L; j++)
        a[((int64_t) bi * L + i) * L + j] = mask[(int64_t) bi * L + j] != 0;
  return allow;
}
