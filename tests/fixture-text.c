/* fixture-text.c — the text-encoder fixture kinds:
 *   llama_encode  tiny Llama through HunyuanVideo's TextEncoder.encode (skip layer, crop), run
 *                 from every weight layout found beside the sidecar (text_encoder/ =
 *                 LlamaForCausalLM keys, text_encoder_llamamodel/ = bare LlamaModel keys)
 *   clip_encode   tiny CLIP text model: every hidden state, last_hidden_state, pooler_output
 * Every intermediate the sidecar lists is compared, so a mismatch points at its layer. */
#include "fixture.h"
#include "hv-error.h"
#include "text/hv-clip.h"
#include "text/hv-llama.h"
#include <string.h>

/* A view of t[i] (t contiguous, host). */
static HvTensor *
index0 (const HvTensor *t, int64_t i)
{
  HvTensor *v = hv_tensor_view (t);
  v->data = (char *) t->data + i * t->stride[0] * (int64_t) hv_dtype_size (t->dtype);
  v->ndim = t->ndim - 1;
  for (int d = 0; d < v->ndim; d++)
    v->shape[d] = t->shape[d + 1];
  hv_tensor_set_contiguous_strides (v);
  return v;
}

/* Compares backend tensor `ours` with expected[i] (or all of expected when i < 0). */
static gboolean
compare_part (HvFixture *fx, const char *label, const char *name, int64_t i, const HvTensor *ours)
{
  const HvTensor *exp = hv_fixture_tensor (fx, name);
  if (!exp)
    return hv_fixture_check (fx, label, FALSE, "fixture has no tensor '%s'", name);
  if (i >= 0 && (exp->ndim < 2 || i >= exp->shape[0]))
    return hv_fixture_check (fx, label, FALSE, "'%s' has no entry %" G_GINT64_FORMAT, name, i);
  g_autoptr(HvTensor) part = i >= 0 ? index0 (exp, i) : hv_tensor_view (exp);
  g_autoptr(HvTensor) host = hv_backend_download (ours->backend, ours);
  g_autoptr(HvTensor) f = hv_tensor_to_f32 (host);
  return hv_fixture_compare_f32 (fx, label, part, f->data, (size_t) hv_tensor_numel (f));
}

/* An I64 [B, L] fixture tensor as int32 (ids and masks). */
static int32_t *
ids_i32 (HvFixture *fx, const char *name, int *B, int *L, GError **error)
{
  const HvTensor *t = hv_fixture_tensor (fx, name);
  if (!t || t->ndim != 2 || (t->dtype != HV_DTYPE_I64 && t->dtype != HV_DTYPE_I32)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "fixture %s: no integer [B, L] tensor '%s'", fx->name, name);
    return NULL;
  }
  int64_t n = hv_tensor_numel (t);
  int32_t *out = g_new (int32_t, n);
  for (int64_t i = 0; i < n; i++)
    out[i] = t->dtype == HV_DTYPE_I64 ? (int32_t) ((const int64_t *) t->data)[i] : ((const int32_t *) t->data)[i];
  *B = (int) t->shape[0];
  *L = (int) t->shape[1];
  return out;
}

/* input_ids and attention_mask [B, L] (both encoder kinds take them); FALSE when either is
 * missing or their shapes differ. */
static gboolean
ids_and_mask (HvFixture *fx, int32_t **ids, int32_t **mask, int *B, int *L, GError **error)
{
  int Bm, Lm;
  if (!(*ids = ids_i32 (fx, "input_ids", B, L, error)) ||
      !(*mask = ids_i32 (fx, "attention_mask", &Bm, &Lm, error)))
    return FALSE;
  if (Bm != *B || Lm != *L) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "attention_mask shape differs from input_ids");
    return FALSE;
  }
  return TRUE;
}

static gint64
config_int (HvFixture *fx, const char *key, gint64 def)
{
  JsonObject *cfg = json_object_has_member (fx->root, "config") ? json_object_get_object_member (fx->root, "config") : NULL;
  return cfg ? json_object_get_int_member_with_default (cfg, key, def) : def;
}

/* ---- llama_encode -------------------------------------------------------------------- */

typedef struct {
  HvFixture *fx;
  const char *layout;
  int n_layers;
} LlamaCheck;

static gboolean
llama_hidden (int index, const HvTensor *hidden, gpointer user_data)
{
  LlamaCheck *lc = user_data;
  /* hidden_states[n_layers] is after the final norm: compared on the result instead */
  if (index < lc->n_layers) {
    g_autofree char *l1 = g_strdup_printf ("%s/hidden_states[%d]", lc->layout, index);
    compare_part (lc->fx, l1, "hidden_states", index, hidden);
  }
  if (index > 0) {
    g_autofree char *l2 = g_strdup_printf ("%s/layer_outputs[%d]", lc->layout, index - 1);
    compare_part (lc->fx, l2, "layer_outputs", index - 1, hidden);
  }
  return TRUE;
}

static gboolean
llama_one_layout (HvFixture *fx, const char *path, const char *layout, const int32_t *ids,
                  const int32_t *mask, int B, int L, GError **error)
{
  const int skip = (int) config_int (fx, "hidden_state_skip_layer", 2);
  const int crop = (int) config_int (fx, "crop_start", 0);

  /* all layers + final norm: every hidden state the sidecar has */
  g_autoptr(HvLlama) full = hv_llama_new (path, fx->backend, 0, error);
  if (!full)
    return FALSE;
  const HvLlamaConfig cfg_copy = *hv_llama_get_config (full), *cfg = &cfg_copy;
  const HvTensor *exp_inv = hv_fixture_tensor (fx, "rope_inv_freq");
  if (exp_inv) {
    g_autofree float *inv = g_new (float, cfg->head_dim / 2);
    hv_llama_rope_inv_freq (cfg, inv);
    g_autofree char *label = g_strdup_printf ("%s/rope_inv_freq", layout);
    hv_fixture_compare_f32 (fx, label, exp_inv, inv, (size_t) cfg->head_dim / 2);
  }
  LlamaCheck lc = { fx, layout, cfg->n_layers };
  g_autoptr(HvTensor) last = hv_llama_forward (full, ids, mask, B, L, cfg->n_layers, TRUE, llama_hidden, &lc, error);
  if (!last)
    return FALSE;
  g_autofree char *l_last = g_strdup_printf ("%s/last_hidden_state", layout);
  compare_part (fx, l_last, "last_hidden_state", -1, last);
  g_autofree char *l_hn = g_strdup_printf ("%s/hidden_states[%d]", layout, cfg->n_layers);
  compare_part (fx, l_hn, "hidden_states", cfg->n_layers, last);
  g_clear_pointer (&full, hv_llama_free);

  /* what HunyuanVideo uses: the encoder opened without the skipped layers */
  g_autoptr(HvLlama) enc = hv_llama_new (path, fx->backend, skip, error);
  if (!enc)
    return FALSE;
  g_autofree char *l_n = g_strdup_printf ("%s/loaded_layers", layout);
  hv_fixture_check (fx, l_n, hv_llama_n_loaded_layers (enc) == cfg->n_layers - skip, "%d of %d layers loaded",
                    hv_llama_n_loaded_layers (enc), cfg->n_layers);
  g_autoptr(HvTensor) hs = hv_llama_encode (enc, ids, mask, B, L, skip, crop, error);
  if (!hs)
    return FALSE;
  g_autofree char *l_hs = g_strdup_printf ("%s/hidden_state", layout);
  compare_part (fx, l_hs, "hidden_state", -1, hs);
  return TRUE;
}

gboolean
hv_fixture_run_llama_encode (HvFixture *fx, GError **error)
{
  int B, L;
  g_autofree int32_t *ids = NULL, *mask = NULL;
  if (!ids_and_mask (fx, &ids, &mask, &B, &L, error))
    return FALSE;
  if (fx->weights)
    return llama_one_layout (fx, fx->weights, "weights", ids, mask, B, L, error);
  static const char *const layouts[] = { "text_encoder", "text_encoder_llamamodel" };
  int n_found = 0;
  for (guint i = 0; i < G_N_ELEMENTS (layouts); i++) {
    g_autofree char *path = hv_fixture_path (fx, layouts[i]);
    if (!g_file_test (path, G_FILE_TEST_IS_DIR))
      continue;
    n_found++;
    g_autoptr(GError) err = NULL;
    if (!llama_one_layout (fx, path, layouts[i], ids, mask, B, L, &err))
      hv_fixture_check (fx, layouts[i], FALSE, "%s", err->message);
  }
  if (n_found == 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: no text_encoder/ or text_encoder_llamamodel/ folder", fx->dir);
    return FALSE;
  }
  return TRUE;
}

/* ---- clip_encode --------------------------------------------------------------------- */

static gboolean
clip_hidden (int index, const HvTensor *hidden, gpointer user_data)
{
  HvFixture *fx = user_data;
  g_autofree char *label = g_strdup_printf ("hidden_states[%d]", index);
  compare_part (fx, label, "hidden_states", index, hidden);
  return TRUE;
}

gboolean
hv_fixture_run_clip_encode (HvFixture *fx, GError **error)
{
  int B, L;
  g_autofree int32_t *ids = NULL, *mask = NULL;
  if (!ids_and_mask (fx, &ids, &mask, &B, &L, error))
    return FALSE;
  g_autofree char *path = fx->weights ? g_strdup (fx->weights) : hv_fixture_path (fx, "text_encoder_2");
  g_autoptr(HvClip) clip = hv_clip_new (path, fx->backend, error);
  if (!clip)
    return FALSE;
  g_autoptr(HvTensor) last = NULL;
  g_autofree int *pidx = g_new (int, B);
  g_autoptr(HvTensor) pooled = hv_clip_forward (clip, ids, mask, B, L, clip_hidden, fx, &last, pidx, error);
  if (!pooled)
    return FALSE;
  compare_part (fx, "last_hidden_state", "last_hidden_state", -1, last);
  compare_part (fx, "pooler_output", "pooler_output", -1, pooled);
  const HvTensor *exp_idx = hv_fixture_tensor (fx, "pooled_index");
  if (exp_idx && exp_idx->dtype == HV_DTYPE_I64) {
    g_autofree int64_t *ours = g_new (int64_t, B);
    for (int i = 0; i < B; i++)
      ours[i] = pidx[i];
    hv_fixture_compare_ints (fx, "pooled_index", exp_idx->data, (size_t) hv_tensor_numel (exp_idx), ours, (size_t) B);
  }
  return TRUE;
}
