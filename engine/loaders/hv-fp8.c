/* hv-fp8.c — see hv-fp8.h. The official loader (convert_fp8_linear) derives the map path with
 * weight_path.replace('.pt', '_map.pt') and casts each scale to the model dtype; scales are kept
 * in f32 here (exactly the map's value), the compute path rounds them if it mimics bf16. */
#include "hv-fp8.h"
#include "../hv-error.h"
#include <math.h>
#include <string.h>

char *
hv_fp8_map_path_for (const char *path)
{
  static const char *const exts[] = { ".pt", ".pth", ".safetensors" };
  for (guint i = 0; i < G_N_ELEMENTS (exts); i++) {
    if (!g_str_has_suffix (path, exts[i]))
      continue;
    gsize stem = strlen (path) - strlen (exts[i]);
    /* same format first, then the other one */
    for (guint j = 0; j < G_N_ELEMENTS (exts); j++) {
      const char *ext = exts[(i + j) % G_N_ELEMENTS (exts)];
      g_autofree char *cand = g_strdup_printf ("%.*s_map%s", (int) stem, path, ext);
      if (g_file_test (cand, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&cand);
    }
  }
  return NULL;
}

static gboolean
is_fp8 (const HvTensor *t)
{
  return t->dtype == HV_DTYPE_F8_E4M3 || t->dtype == HV_DTYPE_F8_E5M2;
}

gboolean
hv_store_has_fp8 (HvStore *s)
{
  const char **names = hv_store_names (s);
  for (guint i = 0; names[i]; i++)
    if (is_fp8 (hv_store_get (s, names[i])))
      return TRUE;
  return FALSE;
}

gboolean
hv_store_apply_fp8_map (HvStore *s, HvStore *map, guint *n_scaled, GError **error)
{
  g_autoptr(GString) problems = g_string_new (NULL);
  g_autoptr(GHashTable) scaled = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const char **keys = hv_store_names (map);
  for (guint i = 0; keys[i]; i++) {
    const HvTensor *sc = hv_store_get (map, keys[i]);
    /* keys are module names ("...img_attn_qkv"); a full tensor name is accepted too */
    g_autofree char *wname = hv_store_get (s, keys[i]) ? g_strdup (keys[i]) : g_strconcat (keys[i], ".weight", NULL);
    HvTensor *w = hv_store_get_mutable (s, wname);
    float v = NAN;
    if (hv_tensor_numel (sc) == 1 && hv_dtype_is_float (sc->dtype) && sc->data && hv_tensor_is_contiguous (sc))
      hv_convert_to_f32 (&v, sc->data, sc->dtype, 1, sc->scale);
    if (!w)
      g_string_append_printf (problems, "\n  scale '%s' has no weight '%s'", keys[i], wname);
    else if (!is_fp8 (w))
      g_string_append_printf (problems, "\n  '%s' is %s, not fp8, but has a scale", wname, hv_dtype_name (w->dtype));
    else if (!(isfinite (v) && v > 0))
      g_string_append_printf (problems, "\n  scale '%s' is not a positive finite number", keys[i]);
    else {
      w->scale = v;
      g_hash_table_add (scaled, g_steal_pointer (&wname));
    }
  }
  const char **names = hv_store_names (s);
  for (guint i = 0; names[i]; i++)
    if (is_fp8 (hv_store_get (s, names[i])) && !g_hash_table_contains (scaled, names[i]))
      g_string_append_printf (problems, "\n  fp8 weight '%s' has no scale in the map", names[i]);
  guint n = g_hash_table_size (scaled);
  if (problems->len) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: the fp8 scale map %s does not fit the weights:%s",
                 hv_store_path (s) ? hv_store_path (s) : "weights",
                 hv_store_path (map) ? hv_store_path (map) : "(in memory)", problems->str);
    return FALSE;
  }
  if (n_scaled)
    *n_scaled = n;
  return TRUE;
}
