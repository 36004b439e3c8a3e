/* fixture-weights.c — the `weights` fixture kind: the model description sidecars
 * (dit/dit_config.json, vae/weights.json) against the weights files beside them.
 *
 * DiT: the official-name safetensors, the official .pt ({"module": state_dict}) and the
 * diffusers-name safetensors (converted) load to bit-identical tensors with the listed shapes;
 * the sidecar's row ranges are checked directly against the diffusers tensors (independently
 * of the converter), and the generated name rules against the sidecar's map; the fp8 copies
 * load with their scales, which must equal max|W|/448 of the bf16 weights, and every fp8 value
 * must be the E4M3 grid rounding (half-even) of W/scale, as the sidecar describes.
 * VAE: .safetensors and .pt identical, names and shapes as listed, config consistent. */
#include "fixture.h"
#include "hv-error.h"
#include "loaders/hv-layout.h"
#include "loaders/hv-fp8.h"
#include <math.h>
#include <string.h>

/* same dtype, shape and bytes */
static gboolean
same_tensor (const HvTensor *a, const HvTensor *b)
{
  return a && b && a->dtype == b->dtype && hv_tensor_same_shape (a, b) && a->data && b->data &&
         memcmp (a->data, b->data, hv_tensor_nbytes (a)) == 0;
}

static gboolean
shape_is (const HvTensor *t, JsonArray *shape)
{
  if (!t || (guint) t->ndim != json_array_get_length (shape))
    return FALSE;
  for (int i = 0; i < t->ndim; i++)
    if (t->shape[i] != json_array_get_int_element (shape, (guint) i))
      return FALSE;
  return TRUE;
}

/* Every tensor of `ref` is in `s` bit-identical, and `s` has nothing else. */
static void
check_identical (HvFixture *fx, const char *label, HvStore *ref, HvStore *s)
{
  guint bad = 0;
  const char *first = NULL;
  const char **names = hv_store_names (ref);
  for (guint i = 0; names[i]; i++)
    if (!same_tensor (hv_store_get (ref, names[i]), hv_store_get (s, names[i])) && !bad++)
      first = names[i];
  hv_fixture_check (fx, label, bad == 0 && hv_store_n_tensors (s) == hv_store_n_tensors (ref),
                    "%u of %u tensors differ%s%s, %u vs %u tensors", bad, hv_store_n_tensors (ref),
                    first ? ", first " : "", first ? first : "", hv_store_n_tensors (s), hv_store_n_tensors (ref));
}

static HvStore *
open_in (HvFixture *fx, const char *file, GError **error)
{
  g_autofree char *p = hv_fixture_path (fx, file);
  return hv_store_open (p, error);
}

/* Official names and shapes as listed in "keys", nothing else; the parameter count. */
static void
check_official (HvFixture *fx, HvStore *s, JsonArray *keys)
{
  guint bad = 0, n = json_array_get_length (keys);
  const char *first = NULL;
  for (guint i = 0; i < n; i++) {
    JsonObject *k = json_array_get_object_element (keys, i);
    const char *name = json_object_get_string_member (k, "official");
    if (!shape_is (hv_store_get (s, name), json_object_get_array_member (k, "shape")) && !bad++)
      first = name;
  }
  hv_fixture_check (fx, "official-names-shapes", bad == 0 && hv_store_n_tensors (s) == n,
                    "%u tensors, %u listed, %u missing or mis-shaped%s%s", hv_store_n_tensors (s), n, bad,
                    first ? ", first " : "", first ? first : "");
  gint64 want = json_object_get_int_member_with_default (fx->root, "param_count", -1);
  hv_fixture_check (fx, "param-count", (gint64) hv_store_n_params (s) == want,
                    "%" G_GUINT64_FORMAT " parameters, listed %" G_GINT64_FORMAT, hv_store_n_params (s), want);
}

/* The diffusers file against the sidecar alone: names, shapes, and each part's bytes at its
 * row range of the official tensor (or swapped halves / a plain copy). */
static void
check_diffusers_raw (HvFixture *fx, HvStore *off, HvStore *dif, JsonArray *keys)
{
  guint n_parts = 0, bad_shape = 0, bad_bytes = 0;
  const char *first_shape = NULL, *first_bytes = NULL;
  for (guint i = 0; i < json_array_get_length (keys); i++) {
    JsonObject *k = json_array_get_object_element (keys, i);
    const HvTensor *o = hv_store_get (off, json_object_get_string_member (k, "official"));
    JsonArray *parts = json_object_get_array_member (k, "diffusers");
    for (guint j = 0; j < json_array_get_length (parts); j++) {
      JsonObject *p = json_array_get_object_element (parts, j);
      const char *pname = json_object_get_string_member (p, "key");
      const HvTensor *t = hv_store_get (dif, pname);
      n_parts++;
      if (!shape_is (t, json_object_get_array_member (p, "shape"))) {
        if (!bad_shape++)
          first_shape = pname;
        continue;
      }
      if (!o || o->dtype != t->dtype) {
        if (!bad_bytes++)
          first_bytes = pname;
        continue;
      }
      const char *op = json_object_get_string_member (p, "op");
      gsize row = o->ndim ? hv_tensor_nbytes (o) / (gsize) o->shape[0] : 0;
      gsize nb = hv_tensor_nbytes (t);
      const guint8 *ob = o->data, *tb = t->data;
      gboolean ok;
      if (strcmp (op, "rows") == 0) {
        JsonArray *rows = json_object_get_array_member (p, "rows");
        gint64 a = json_array_get_int_element (rows, 0), b = json_array_get_int_element (rows, 1);
        ok = a >= 0 && b <= o->shape[0] && (gsize) (b - a) * row == nb && memcmp (ob + a * row, tb, nb) == 0;
      } else if (strcmp (op, "swap_halves") == 0) {
        gsize h = nb / 2;
        ok = nb == hv_tensor_nbytes (o) && memcmp (ob, tb + h, h) == 0 && memcmp (ob + h, tb, h) == 0;
      } else {
        ok = nb == hv_tensor_nbytes (o) && memcmp (ob, tb, nb) == 0;
      }
      if (!ok && !bad_bytes++)
        first_bytes = pname;
    }
  }
  hv_fixture_check (fx, "diffusers-names-shapes", bad_shape == 0 && hv_store_n_tensors (dif) == n_parts,
                    "%u tensors, %u listed, %u missing or mis-shaped%s%s", hv_store_n_tensors (dif), n_parts,
                    bad_shape, first_shape ? ", first " : "", first_shape ? first_shape : "");
  hv_fixture_check (fx, "diffusers-row-ranges", bad_bytes == 0,
                    "%u of %u parts differ from their rows of the official tensor%s%s", bad_bytes, n_parts,
                    first_bytes ? ", first " : "", first_bytes ? first_bytes : "");
}

/* The generated rules against the sidecar's map: same official names, parts, ops, and row
 * ranges that are the running sum of the parts' rows. */
static void
check_rules (HvFixture *fx, JsonArray *keys, int nd, int ns, int nr)
{
  g_autoptr(HvNameMap) m = hv_dit_name_map_new (nd, ns, nr);
  guint n = json_array_get_length (keys), bad = 0;
  const char *first = NULL;
  for (guint i = 0; i < n; i++) {
    JsonObject *k = json_array_get_object_element (keys, i);
    const char *name = json_object_get_string_member (k, "official");
    const HvNameRule *r = hv_name_map_by_official (m, name);
    JsonArray *parts = json_object_get_array_member (k, "diffusers");
    gboolean ok = r && r->n_parts == json_array_get_length (parts);
    gint64 row = 0;
    for (guint j = 0; ok && j < r->n_parts; j++) {
      JsonObject *p = json_array_get_object_element (parts, j);
      ok = strcmp (r->parts[j], json_object_get_string_member (p, "key")) == 0 &&
           strcmp (hv_name_op_str (r->op), json_object_get_string_member (p, "op")) == 0;
      if (ok && r->op == HV_NAME_ROWS) {
        JsonArray *rows = json_object_get_array_member (p, "rows");
        gint64 len = json_array_get_int_element (json_object_get_array_member (p, "shape"), 0);
        ok = json_array_get_int_element (rows, 0) == row && json_array_get_int_element (rows, 1) == row + len;
        row += len;
      }
    }
    if (!ok && !bad++)
      first = name;
  }
  hv_fixture_check (fx, "name-rules", bad == 0 && hv_name_map_size (m) == n,
                    "%u rules for %u listed keys, %u differ%s%s", hv_name_map_size (m), n, bad,
                    first ? ", first " : "", first ? first : "");
}

/* The config derived from the tensors equals the generator's. */
static void
check_shape_config (HvFixture *fx, HvStore *s)
{
  g_autoptr(GError) err = NULL;
  HvDitShape g;
  gboolean ok = hv_dit_shape_derive (s, fx->sidecar, &g, &err) && hv_dit_validate (s, &g, &err);
  hv_fixture_check (fx, "validate", ok, "%s", ok ? "all expected tensors present with their shapes" : err->message);
  HvDitShape t;
  g_clear_error (&err);
  ok = hv_dit_shape_derive (s, NULL, &t, &err);   /* from the tensors alone */
  JsonObject *mo = json_object_get_object_member (json_object_get_object_member (fx->root, "generator_config"), "model");
  JsonArray *patch = json_object_get_array_member (mo, "patch_size");
  JsonObject *args = json_object_get_object_member (json_object_get_object_member (fx->root, "official_constructor"), "args");
  int hidden = (int) json_object_get_int_member (mo, "hidden_size");
  ok = ok && t.hidden == hidden && t.heads == json_object_get_int_member (mo, "heads_num") &&
       t.n_double == json_object_get_int_member (mo, "mm_double_blocks_depth") &&
       t.n_single == json_object_get_int_member (mo, "mm_single_blocks_depth") &&
       t.n_refiner == json_object_get_int_member (fx->root, "token_refiner_depth") &&
       t.mlp_hidden == (int) (hidden * json_object_get_double_member (mo, "mlp_width_ratio")) &&
       t.in_channels == json_object_get_int_member (mo, "in_channels") &&
       t.out_channels == json_object_get_int_member (mo, "out_channels") &&
       t.patch[0] == json_array_get_int_element (patch, 0) && t.patch[1] == json_array_get_int_element (patch, 1) &&
       t.patch[2] == json_array_get_int_element (patch, 2) &&
       t.text_dim == json_object_get_int_member (args, "text_states_dim") &&
       t.text_dim_2 == json_object_get_int_member (args, "text_states_dim_2") &&
       t.freq_dim == json_object_get_int_member (fx->root, "frequency_embedding_size") &&
       t.guidance_embed == json_object_get_boolean_member (mo, "guidance_embed");
  hv_fixture_check (fx, "derived-config", ok, "hidden %d, heads %d, blocks %d/%d/%d, mlp %d (from the tensors alone)",
                    t.hidden, t.heads, t.n_double, t.n_single, t.n_refiner, t.mlp_hidden);
}

/* E4M3 rounding as the sidecar describes it: clamp ±448, round half to even on the grid
 * step 2^(max(floor(log2|x|)+7, 1) - 10). */
static float
e4m3_grid (float x)
{
  if (x == 0 || isnan (x))
    return x;
  x = fminf (fmaxf (x, -448.f), 448.f);
  int e = (int) floorf (log2f (fabsf (x)));
  float step = ldexpf (1.f, MAX (e + 7, 1) - 10);
  return nearbyintf (x / step) * step;   /* default rounding mode: half to even */
}

/* fp8 weights (official names, scales applied) against the bf16 weights and the map. */
static void
check_fp8 (HvFixture *fx, const char *tag, HvStore *q, HvStore *map, HvStore *bf)
{
  guint n_fp8 = 0, n_expected = 0, bad_layers = 0, bad_scale = 0, bad_grid = 0, bad_other = 0;
  double max_err = 0, max_rel = 0;
  const char **names = hv_store_names (bf);
  for (guint i = 0; names[i]; i++) {
    const HvTensor *w = hv_store_get (bf, names[i]), *t = hv_store_get (q, names[i]);
    gboolean block_linear = (g_str_has_prefix (names[i], "double_blocks.") || g_str_has_prefix (names[i], "single_blocks.")) &&
                            g_str_has_suffix (names[i], ".weight") && w->ndim == 2;
    n_expected += block_linear;
    if (!t || !hv_tensor_same_shape (t, w)) {
      bad_layers++;
      continue;
    }
    if (t->dtype != HV_DTYPE_F8_E4M3) {
      bad_layers += block_linear;
      bad_other += !block_linear && !same_tensor (t, w);
      continue;
    }
    n_fp8++;
    bad_layers += !block_linear;
    /* the map's value, read independently; and max|W| / 448 in f32 */
    g_autofree char *module = g_strndup (names[i], strlen (names[i]) - strlen (".weight"));
    const HvTensor *ms = hv_store_get (map, module);
    float mv = NAN;
    if (ms && ms->dtype == HV_DTYPE_F32 && hv_tensor_numel (ms) == 1)
      memcpy (&mv, ms->data, 4);
    g_autoptr(HvTensor) wf = hv_tensor_to_f32 (w);
    const float *wv = wf->data;
    const guint8 *qb = t->data;
    gsize n = (gsize) hv_tensor_numel (w);
    float amax = 0;
    for (gsize k = 0; k < n; k++)
      amax = fmaxf (amax, fabsf (wv[k]));
    bad_scale += !(t->scale == mv && t->scale == amax / 448.f);
    for (gsize k = 0; k < n; k++) {
      float v = hv_f8_e4m3_to_f32 (qb[k]);
      bad_grid += v != e4m3_grid (wv[k] / t->scale);
      /* error against half the grid step at |W/scale| (the rounding bound), in W units */
      double x = fmin (fabs ((double) wv[k] / t->scale), 448.0);
      double step = ldexp (1.0, MAX ((x > 0 ? (int) floor (log2 (x)) : -7) + 7, 1) - 10);
      double err = fabs ((double) v * t->scale - wv[k]);
      max_err = MAX (max_err, err);
      max_rel = MAX (max_rel, err / (0.5 * step * t->scale));
    }
  }
  char l[64];
  g_snprintf (l, sizeof l, "%s-layers", tag);
  hv_fixture_check (fx, l, bad_layers == 0 && n_fp8 == n_expected && n_fp8 > 0,
                    "%u fp8 weights, %u block Linear weights expected, %u misplaced or missing", n_fp8, n_expected, bad_layers);
  g_snprintf (l, sizeof l, "%s-scales", tag);
  hv_fixture_check (fx, l, bad_scale == 0, "%u of %u scales differ from the map or from max|W|/448", bad_scale, n_fp8);
  g_snprintf (l, sizeof l, "%s-e4m3-grid", tag);
  hv_fixture_check (fx, l, bad_grid == 0, "%u values are not the E4M3 rounding of W/scale", bad_grid);
  g_snprintf (l, sizeof l, "%s-dequant", tag);
  /* 1e-5: W/scale itself is rounded to f32 */
  hv_fixture_check (fx, l, max_rel <= 1.0 + 1e-5, "max |fp8·scale - W| = %.3g, at most %.6f of half an E4M3 step",
                    max_err, max_rel);
  g_snprintf (l, sizeof l, "%s-other-tensors", tag);
  hv_fixture_check (fx, l, bad_other == 0, "%u non-fp8 tensors differ from the bf16 weights", bad_other);
}

static gboolean
run_dit (HvFixture *fx, JsonArray *keys, GError **error)
{
  g_autoptr(HvStore) off = open_in (fx, "dit_weights.safetensors", error);
  if (!off)
    return FALSE;
  check_official (fx, off, keys);
  check_shape_config (fx, off);
  check_rules (fx, keys, hv_store_count_blocks (off, "double_blocks."), hv_store_count_blocks (off, "single_blocks."),
               hv_store_count_blocks (off, "txt_in.individual_token_refiner.blocks."));

  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) pt = open_in (fx, "dit_weights.pt", &err);
  if (pt)
    check_identical (fx, "pt-identical", off, pt);
  else
    hv_fixture_check (fx, "pt-identical", FALSE, "%s", err->message);
  g_clear_error (&err);

  g_autoptr(HvStore) dif = open_in (fx, "dit_weights_diffusers.safetensors", &err);
  if (dif) {
    check_diffusers_raw (fx, off, dif, keys);
    HvDitNames names;
    g_autoptr(HvStore) conv = hv_dit_store_to_official (g_steal_pointer (&dif), &names, &err);
    if (conv)
      check_identical (fx, "diffusers-converted-identical", off, conv);
    else
      hv_fixture_check (fx, "diffusers-converted-identical", FALSE, "%s", err->message);
  } else {
    hv_fixture_check (fx, "diffusers-names-shapes", FALSE, "%s", err->message);
  }
  g_clear_error (&err);

  /* fp8: the map found beside each weights file by the loader, compared with the map read
   * directly */
  static const char *const fp8[][3] = {
    { "fp8-pt", "dit_weights_fp8.pt", "dit_weights_fp8_map.pt" },
    { "fp8-safetensors", "dit_weights_fp8.safetensors", "dit_weights_fp8_map.safetensors" },
  };
  g_autoptr(HvStore) first = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (fp8); i++) {
    g_autofree char *wp = hv_fixture_path (fx, fp8[i][1]);
    g_autofree char *found = hv_fp8_map_path_for (wp);
    g_autofree char *want = hv_fixture_path (fx, fp8[i][2]);
    char l[64];
    g_snprintf (l, sizeof l, "%s-map-found", fp8[i][0]);
    hv_fixture_check (fx, l, g_strcmp0 (found, want) == 0, "%s", found ? found : "(none)");
    g_autoptr(HvStore) q = hv_dit_load (wp, NULL, &err);
    g_autoptr(HvStore) map = open_in (fx, fp8[i][2], error);
    if (!q || !map) {
      g_snprintf (l, sizeof l, "%s-load", fp8[i][0]);
      hv_fixture_check (fx, l, FALSE, "%s", err ? err->message : (*error)->message);
      g_clear_error (&err);
      g_clear_error (error);
      continue;
    }
    check_fp8 (fx, fp8[i][0], q, map, off);
    if (!first) {
      first = g_steal_pointer (&q);
      continue;
    }
    /* the two fp8 copies: same bytes and scales */
    guint bad = 0;
    const char **names = hv_store_names (first);
    for (guint k = 0; names[k]; k++) {
      const HvTensor *a = hv_store_get (first, names[k]), *b = hv_store_get (q, names[k]);
      bad += !same_tensor (a, b) || a->scale != b->scale;
    }
    hv_fixture_check (fx, "fp8-pt-vs-safetensors", bad == 0 && hv_store_n_tensors (first) == hv_store_n_tensors (q),
                      "%u tensors differ in bytes or scale", bad);
  }
  return TRUE;
}

static gboolean
run_vae (HvFixture *fx, JsonObject *keys, GError **error)
{
  g_autoptr(HvStore) st = open_in (fx, "vae_weights.safetensors", error);
  if (!st)
    return FALSE;
  g_autoptr(GList) names = json_object_get_members (keys);
  guint bad = 0, n = 0;
  for (GList *l = names; l; l = l->next, n++)
    bad += !shape_is (hv_store_get (st, l->data), json_object_get_array_member (keys, l->data));
  hv_fixture_check (fx, "names-shapes", bad == 0 && hv_store_n_tensors (st) == n,
                    "%u tensors, %u listed, %u missing or mis-shaped", hv_store_n_tensors (st), n, bad);
  gint64 want = json_object_get_int_member_with_default (fx->root, "n_params", -1);
  hv_fixture_check (fx, "param-count", (gint64) hv_store_n_params (st) == want,
                    "%" G_GUINT64_FORMAT " parameters, listed %" G_GINT64_FORMAT, hv_store_n_params (st), want);
  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) pt = open_in (fx, "vae_weights.pt", &err);
  if (pt)
    check_identical (fx, "pt-identical", st, pt);
  else
    hv_fixture_check (fx, "pt-identical", FALSE, "%s", err->message);
  g_clear_error (&err);
  g_autofree char *cfg = hv_fixture_path (fx, "config.json");
  gboolean ok = hv_vae_validate (st, cfg, &err);
  hv_fixture_check (fx, "validate", ok, "%s", ok ? "every tensor the config implies, with its shape" : err->message);
  return TRUE;
}

gboolean
hv_fixture_run_weights (HvFixture *fx, GError **error)
{
  JsonNode *keys = json_object_get_member (fx->root, "keys");
  if (keys && JSON_NODE_HOLDS_ARRAY (keys))
    return run_dit (fx, json_node_get_array (keys), error);
  if (keys && JSON_NODE_HOLDS_OBJECT (keys))
    return run_vae (fx, json_node_get_object (keys), error);
  g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: \"keys\" is neither a list (DiT) nor an object (VAE)", fx->sidecar);
  return FALSE;
}
