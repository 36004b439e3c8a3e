/* hv-llama.c — Llama text encoder (see hv-llama.h). */
#include "hv-llama.h"
#include "hv-error.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

typedef struct {
  HvTensor *attn_norm, *wq, *wk, *wv, *wo;
  HvTensor *mlp_norm, *w_gate, *w_up, *w_down;
} LlamaLayer;

struct _HvLlama {
  HvLlamaConfig cfg;
  HvBackend *backend;
  HvStore *store;
  HvTensor *embed;          /* [vocab, hidden] */
  HvTensor *norm;           /* final RMSNorm weight [hidden], NULL when absent */
  int n_loaded;
  LlamaLayer *layers;
};

/* ---- config -------------------------------------------------------------------------- */

static gboolean
json_get_int (JsonObject *o, const char *key, int def, int *out, const char *file, GError **error)
{
  if (!json_object_has_member (o, key) || json_node_is_null (json_object_get_member (o, key))) {
    if (def < 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: missing \"%s\"", file, key);
      return FALSE;
    }
    *out = def;
    return TRUE;
  }
  JsonNode *n = json_object_get_member (o, key);
  if (json_node_get_value_type (n) != G_TYPE_INT64) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: \"%s\" is not an integer", file, key);
    return FALSE;
  }
  gint64 v = json_node_get_int (n);
  if (v < 0 || v > G_MAXINT) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: \"%s\" = %" G_GINT64_FORMAT " is out of range",
                 file, key, v);
    return FALSE;
  }
  *out = (int) v;
  return TRUE;
}

static double
json_get_num (JsonObject *o, const char *key, double def)
{
  if (!o || !json_object_has_member (o, key))
    return def;
  JsonNode *n = json_object_get_member (o, key);
  if (JSON_NODE_TYPE (n) != JSON_NODE_VALUE)
    return def;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    return (double) json_node_get_int (n);
  if (t == G_TYPE_DOUBLE)
    return json_node_get_double (n);
  return def;
}

static JsonObject *
json_get_obj (JsonObject *o, const char *key)
{
  if (!o || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  return JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static gboolean
parse_rope (JsonObject *o, HvLlamaConfig *c, const char *file, GError **error)
{
  /* transformers 5 keeps everything in "rope_parameters"; 4.x has "rope_theta" at the top
   * and an optional "rope_scaling" object (null for llava-llama-3-8b). */
  JsonObject *params = json_get_obj (o, "rope_parameters");
  JsonObject *scaling = params ? params : json_get_obj (o, "rope_scaling");
  c->rope_theta = json_get_num (params, "rope_theta", json_get_num (o, "rope_theta", 10000.0));
  c->rope_type = HV_LLAMA_ROPE_DEFAULT;
  if (!scaling)
    return TRUE;
  const char *type = NULL;
  if (json_object_has_member (scaling, "rope_type"))
    type = json_object_get_string_member_with_default (scaling, "rope_type", NULL);
  else if (json_object_has_member (scaling, "type"))
    type = json_object_get_string_member_with_default (scaling, "type", NULL);
  if (!type || strcmp (type, "default") == 0)
    return TRUE;
  c->rope_factor = json_get_num (scaling, "factor", 1.0);
  if (strcmp (type, "linear") == 0) {
    c->rope_type = HV_LLAMA_ROPE_LINEAR;
  } else if (strcmp (type, "llama3") == 0) {
    c->rope_type = HV_LLAMA_ROPE_LLAMA3;
    c->rope_low_freq_factor = json_get_num (scaling, "low_freq_factor", 1.0);
    c->rope_high_freq_factor = json_get_num (scaling, "high_freq_factor", 4.0);
    c->rope_original_max_pos = (int) json_get_num (scaling, "original_max_position_embeddings", 8192);
    if (c->rope_high_freq_factor == c->rope_low_freq_factor || c->rope_original_max_pos <= 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: invalid llama3 rope scaling parameters", file);
      return FALSE;
    }
  } else {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED,
                 "%s: rope type \"%s\" is not supported (default, linear and llama3 are)", file, type);
    return FALSE;
  }
  if (!(c->rope_factor > 0)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: rope scaling factor must be > 0", file);
    return FALSE;
  }
  return TRUE;
}

gboolean
hv_llama_config_load (const char *config_json, HvLlamaConfig *cfg, GError **error)
{
  JsonObject *o;   /* a Llava wrapper's "text_config" */
  g_autoptr(JsonParser) parser = hv_text_config_parse (config_json, &o, error);
  if (!parser)
    return FALSE;
  HvLlamaConfig c = { 0 };
  if (!json_get_int (o, "vocab_size", 32000, &c.vocab_size, config_json, error) ||
      !json_get_int (o, "hidden_size", -1, &c.hidden_size, config_json, error) ||
      !json_get_int (o, "intermediate_size", -1, &c.intermediate_size, config_json, error) ||
      !json_get_int (o, "num_hidden_layers", -1, &c.n_layers, config_json, error) ||
      !json_get_int (o, "num_attention_heads", -1, &c.n_heads, config_json, error) ||
      !json_get_int (o, "num_key_value_heads", c.n_heads, &c.n_kv_heads, config_json, error) ||
      !json_get_int (o, "max_position_embeddings", 2048, &c.max_position_embeddings, config_json, error))
    return FALSE;
  if (c.n_heads <= 0 || c.hidden_size <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 ||
      c.vocab_size <= 0 || c.intermediate_size <= 0 || c.n_layers <= 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "%s: inconsistent sizes (hidden %d, heads %d, kv heads %d, layers %d)", config_json,
                 c.hidden_size, c.n_heads, c.n_kv_heads, c.n_layers);
    return FALSE;
  }
  if (!json_get_int (o, "head_dim", c.hidden_size / c.n_heads, &c.head_dim, config_json, error))
    return FALSE;
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: head_dim %d must be even and > 0",
                 config_json, c.head_dim);
    return FALSE;
  }
  c.rms_norm_eps = (float) json_get_num (o, "rms_norm_eps", 1e-6);
  const char *act = json_object_get_string_member_with_default (o, "hidden_act", "silu");
  if (act && strcmp (act, "silu") != 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: hidden_act \"%s\" (only silu)", config_json, act);
    return FALSE;
  }
  if ((json_object_has_member (o, "attention_bias") &&
       json_object_get_boolean_member_with_default (o, "attention_bias", FALSE)) ||
      (json_object_has_member (o, "mlp_bias") &&
       json_object_get_boolean_member_with_default (o, "mlp_bias", FALSE))) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: attention/mlp biases are not supported", config_json);
    return FALSE;
  }
  if (!parse_rope (o, &c, config_json, error))
    return FALSE;
  *cfg = c;
  return TRUE;
}

void
hv_llama_rope_inv_freq (const HvLlamaConfig *c, float *inv)
{
  /* transformers: 1.0 / (theta ** (arange(0, dim, 2).float() / dim)), all fp32 tensors */
  const int dim = c->head_dim;
  const float base = (float) c->rope_theta;
  for (int i = 0; i < dim / 2; i++) {
    float e = (float) (2 * i) / (float) dim;
    float p = (float) pow ((double) base, (double) e);
    inv[i] = 1.0f / p;
  }
  if (c->rope_type == HV_LLAMA_ROPE_LINEAR) {
    for (int i = 0; i < dim / 2; i++)
      inv[i] = inv[i] / (float) c->rope_factor;
  } else if (c->rope_type == HV_LLAMA_ROPE_LLAMA3) {
    const float factor = (float) c->rope_factor;
    const float lo = (float) c->rope_low_freq_factor, hi = (float) c->rope_high_freq_factor;
    const float old_len = (float) c->rope_original_max_pos;
    const float lo_wavelen = old_len / lo, hi_wavelen = old_len / hi;
    for (int i = 0; i < dim / 2; i++) {
      float wavelen = (float) (2 * G_PI) / inv[i];
      float f = wavelen > lo_wavelen ? inv[i] / factor : inv[i];
      if (!(wavelen < hi_wavelen) && !(wavelen > lo_wavelen)) {
        float smooth = (old_len / wavelen - lo) / (hi - lo);
        f = (1 - smooth) * f / factor + smooth * f;
      }
      inv[i] = f;
    }
  }
}

/* ---- loading ------------------------------------------------------------------------- */

static const char *const llama_prefixes[] = {
  "", "model.", "language_model.model.", "model.language_model.", "language_model.",
};

static HvTensor *
load_weight (HvLlama *m, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1,
             GError **error)
{
  return hv_text_weight (m->store, m->backend, prefix, name, ndim, d0, d1, error);
}

HvLlama *
hv_llama_new (const char *path, HvBackend *backend, int skip_last, GError **error)
{
  g_return_val_if_fail (path && backend, NULL);
  g_autofree char *config_path = NULL;
  HvLlamaConfig cfg;
  HvStore *store = hv_text_model_open (path, &config_path, error);
  if (!store)
    return NULL;
  if (!hv_llama_config_load (config_path, &cfg, error)) {
    hv_store_free (store);
    return NULL;
  }
  return hv_llama_new_from_store (store, &cfg, backend, skip_last, error);
}

HvLlama *
hv_llama_new_from_store (HvStore *store, const HvLlamaConfig *cfg, HvBackend *backend,
                         int skip_last, GError **error)
{
  g_return_val_if_fail (store && cfg && backend, NULL);
  g_autoptr(HvLlama) m = g_new0 (HvLlama, 1);
  m->backend = backend;
  m->store = store;
  m->cfg = *cfg;
  const HvLlamaConfig *c = &m->cfg;
  if (skip_last < 0 || skip_last > c->n_layers) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "cannot skip %d of the %d layers of %s",
                 skip_last, c->n_layers, hv_text_store_name (store));
    return NULL;
  }
  const char *prefix = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (llama_prefixes) && !prefix; i++) {
    g_autofree char *n = g_strconcat (llama_prefixes[i], "embed_tokens.weight", NULL);
    if (hv_store_get (m->store, n))
      prefix = llama_prefixes[i];
  }
  if (!prefix) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "%s: no embed_tokens.weight (tried the LlamaModel, LlamaForCausalLM and Llava key layouts)",
                 hv_text_store_name (m->store));
    return NULL;
  }
  const int64_t D = c->hidden_size, I = c->intermediate_size;
  const int64_t QD = (int64_t) c->n_heads * c->head_dim, KVD = (int64_t) c->n_kv_heads * c->head_dim;
  /* the vocabulary may be padded beyond vocab_size (llava adds tokens): accept any row count */
  if (!(m->embed = load_weight (m, prefix, "embed_tokens.weight", 2, -1, D, error)))
    return NULL;
  if (m->embed->shape[0] < 1) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: embed_tokens.weight is empty", hv_text_store_name (m->store));
    return NULL;
  }
  g_autofree char *norm_name = g_strconcat (prefix, "norm.weight", NULL);
  if (hv_store_get (m->store, norm_name) && !(m->norm = load_weight (m, prefix, "norm.weight", 1, D, 0, error)))
    return NULL;
  m->n_loaded = c->n_layers - skip_last;
  m->layers = g_new0 (LlamaLayer, m->n_loaded);
  for (int i = 0; i < m->n_loaded; i++) {
    LlamaLayer *l = &m->layers[i];
    g_autofree char *p = g_strdup_printf ("%slayers.%d.", prefix, i);
    if (!(l->attn_norm = load_weight (m, p, "input_layernorm.weight", 1, D, 0, error)) ||
        !(l->wq = load_weight (m, p, "self_attn.q_proj.weight", 2, QD, D, error)) ||
        !(l->wk = load_weight (m, p, "self_attn.k_proj.weight", 2, KVD, D, error)) ||
        !(l->wv = load_weight (m, p, "self_attn.v_proj.weight", 2, KVD, D, error)) ||
        !(l->wo = load_weight (m, p, "self_attn.o_proj.weight", 2, D, QD, error)) ||
        !(l->mlp_norm = load_weight (m, p, "post_attention_layernorm.weight", 1, D, 0, error)) ||
        !(l->w_gate = load_weight (m, p, "mlp.gate_proj.weight", 2, I, D, error)) ||
        !(l->w_up = load_weight (m, p, "mlp.up_proj.weight", 2, I, D, error)) ||
        !(l->w_down = load_weight (m, p, "mlp.down_proj.weight", 2, D, I, error)))
      return NULL;
  }
  return g_steal_pointer (&m);
}

void
hv_llama_free (HvLlama *m)
{
  if (!m)
    return;
  if (m->layers) {
    for (int i = 0; i < m->n_loaded; i++) {
      LlamaLayer *l = &m->layers[i];
      HvTensor *ws[] = { l->attn_norm, l->wq, l->wk, l->wv, l->wo, l->mlp_norm, l->w_gate, l->w_up, l->w_down };
      for (guint j = 0; j < G_N_ELEMENTS (ws); j++)
        hv_tensor_free (ws[j]);
    }
    g_free (m->layers);
  }
  hv_tensor_free (m->embed);
  hv_tensor_free (m->norm);
  hv_store_free (m->store);
  g_free (m);
}

const HvLlamaConfig *
hv_llama_get_config (const HvLlama *m)
{
  return &m->cfg;
}

int
hv_llama_n_loaded_layers (const HvLlama *m)
{
  return m->n_loaded;
}

/* ---- forward ------------------------------------------------------------------------- */

/* Scratch activations of one forward pass. */
typedef struct {
  HvTensor *ids, *allow, *cos, *sin;
  HvTensor *x, *h, *q, *k, *v, *att, *o, *gate, *up;
} LlamaRun;

static void
llama_run_clear (LlamaRun *r)
{
  HvTensor *ts[] = { r->ids, r->allow, r->cos, r->sin, r->h, r->q, r->k, r->v, r->att, r->o, r->gate, r->up };
  for (guint i = 0; i < G_N_ELEMENTS (ts); i++)
    hv_tensor_free (ts[i]);
  memset (r, 0, sizeof *r);
}

static HvTensor *
act (HvBackend *b, int64_t d0, int64_t d1, int64_t d2, gboolean *ok)
{
  int64_t shape[3] = { d0, d1, d2 };
  HvTensor *t = hv_backend_tensor_f32 (b, 3, shape);
  if (!t)
    *ok = FALSE;
  return t;
}

static HvTensor *
upload_host (HvBackend *b, HvTensor *host, gboolean *ok)
{
  HvTensor *t = hv_backend_upload (b, host);
  hv_tensor_free (host);
  if (!t)
    *ok = FALSE;
  return t;
}

/* Validates ids against the embedding table and builds the inputs that do not change over
 * layers: ids, key-padding mask, cos/sin. */
static gboolean
llama_run_prepare (HvLlama *m, LlamaRun *r, const int32_t *ids, const int32_t *mask, int B, int L,
                   GError **error)
{
  const HvLlamaConfig *c = &m->cfg;
  HvBackend *b = m->backend;
  const int64_t n_vocab = m->embed->shape[0];
  for (int64_t i = 0; i < (int64_t) B * L; i++)
    if (ids[i] < 0 || ids[i] >= n_vocab) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "token id %d at position %" G_GINT64_FORMAT
                   " is outside the vocabulary of %" G_GINT64_FORMAT, ids[i], i, n_vocab);
      return FALSE;
    }
  gboolean ok = TRUE;
  int64_t n = (int64_t) B * L;
  HvTensor *hid = hv_tensor_new (HV_DTYPE_I32, 1, &n);
  memcpy (hid->data, ids, (size_t) n * sizeof (int32_t));
  r->ids = upload_host (b, hid, &ok);

  /* query i may see key j iff j <= i (causal flag) and key j is a real token */
  HvTensor *allow = hv_text_pad_allow (mask, B, L);
  if (allow)
    r->allow = upload_host (b, allow, &ok);

  /* cos/sin [L, head_dim]: freqs = inv_freq * pos in fp32, repeated over both halves */
  const int hd = c->head_dim;
  int64_t cshape[2] = { L, hd };
  HvTensor *hc = hv_tensor_new_f32 (2, cshape), *hs = hv_tensor_new_f32 (2, cshape);
  float *inv = g_new (float, hd / 2);
  hv_llama_rope_inv_freq (c, inv);
  float *pc = hc->data, *ps = hs->data;
  for (int p = 0; p < L; p++)
    for (int i = 0; i < hd / 2; i++) {
      float f = inv[i] * (float) p;
      float cv = (float) cos ((double) f), sv = (float) sin ((double) f);
      pc[p * hd + i] = pc[p * hd + i + hd / 2] = cv;
      ps[p * hd + i] = ps[p * hd + i + hd / 2] = sv;
    }
  g_free (inv);
  r->cos = upload_host (b, hc, &ok);
  r->sin = upload_host (b, hs, &ok);

  const int64_t D = c->hidden_size;
  r->x = act (b, B, L, D, &ok);
  r->h = act (b, B, L, D, &ok);
  r->q = act (b, B, L, (int64_t) c->n_heads * hd, &ok);
  r->k = act (b, B, L, (int64_t) c->n_kv_heads * hd, &ok);
  r->v = act (b, B, L, (int64_t) c->n_kv_heads * hd, &ok);
  r->att = act (b, B, L, (int64_t) c->n_heads * hd, &ok);
  r->o = act (b, B, L, D, &ok);
  r->gate = act (b, B, L, c->intermediate_size, &ok);
  r->up = act (b, B, L, c->intermediate_size, &ok);
  if (!ok)
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of memory on %s for a %dx%d Llama pass", b->name, B, L);
  return ok;
}

static void
reshape4 (HvTensor *t, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
  int64_t s[4] = { d0, d1, d2, d3 };
  hv_tensor_reshape (t, 4, s);
}

static void
reshape3 (HvTensor *t, int64_t d0, int64_t d1, int64_t d2)
{
  int64_t s[3] = { d0, d1, d2 };
  hv_tensor_reshape (t, 3, s);
}

static void
llama_layer (HvLlama *m, const LlamaLayer *l, LlamaRun *r, int B, int L)
{
  const HvLlamaConfig *c = &m->cfg;
  HvBackend *b = m->backend;
  const int H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim;

  hv_op_rmsnorm (b, r->h, r->x, l->attn_norm, c->rms_norm_eps);
  hv_op_linear (b, r->q, r->h, l->wq, NULL);
  hv_op_linear (b, r->k, r->h, l->wk, NULL);
  hv_op_linear (b, r->v, r->h, l->wv, NULL);
  reshape4 (r->q, B, L, H, hd);
  reshape4 (r->k, B, L, Hkv, hd);
  reshape4 (r->v, B, L, Hkv, hd);
  reshape4 (r->att, B, L, H, hd);
  /* positions 0..L-1 whatever the padding (HF position_ids default) */
  hv_op_rope (b, r->q, r->cos, r->sin, HV_ROPE_HALF);
  hv_op_rope (b, r->k, r->cos, r->sin, HV_ROPE_HALF);
  HvAttnMask mask = { .allow = r->allow, .causal = TRUE };
  hv_op_attention (b, r->att, r->q, r->k, r->v, &mask, 1.0f / sqrtf ((float) hd));
  reshape3 (r->q, B, L, (int64_t) H * hd);
  reshape3 (r->k, B, L, (int64_t) Hkv * hd);
  reshape3 (r->v, B, L, (int64_t) Hkv * hd);
  reshape3 (r->att, B, L, (int64_t) H * hd);
  hv_op_linear (b, r->o, r->att, l->wo, NULL);
  hv_op_add (b, r->x, r->x, r->o);

  hv_op_rmsnorm (b, r->h, r->x, l->mlp_norm, c->rms_norm_eps);
  hv_op_linear (b, r->gate, r->h, l->w_gate, NULL);
  hv_op_linear (b, r->up, r->h, l->w_up, NULL);
  hv_op_unary (b, r->gate, r->gate, HV_UNARY_SILU);
  hv_op_mul (b, r->gate, r->gate, r->up);
  hv_op_linear (b, r->o, r->gate, l->w_down, NULL);
  hv_op_add (b, r->x, r->x, r->o);
}

HvTensor *
hv_llama_forward (HvLlama *m, const int32_t *ids, const int32_t *mask, int B, int L, int n_run,
                  gboolean final_norm, HvLlamaHiddenFunc hidden_cb, gpointer user_data, GError **error)
{
  g_return_val_if_fail (m && ids, NULL);
  if (B <= 0 || L <= 0 || n_run < 0 || n_run > m->n_loaded) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "Llama forward: batch %d, length %d, %d layers (%d loaded) is not possible", B, L,
                 n_run, m->n_loaded);
    return NULL;
  }
  if (final_norm && !m->norm) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s has no final norm.weight", hv_text_store_name (m->store));
    return NULL;
  }
  LlamaRun r = { 0 };
  HvBackend *b = m->backend;
  if (!llama_run_prepare (m, &r, ids, mask, B, L, error)) {
    hv_tensor_free (r.x);
    llama_run_clear (&r);
    return NULL;
  }
  /* embeddings: get_rows works on [n, C] rows */
  int64_t rows[2] = { (int64_t) B * L, m->cfg.hidden_size };
  hv_tensor_reshape (r.x, 2, rows);
  hv_op_get_rows (b, r.x, m->embed, r.ids);
  reshape3 (r.x, B, L, m->cfg.hidden_size);
  gboolean go = TRUE;
  if (hidden_cb)
    go = hidden_cb (0, r.x, user_data);
  for (int i = 0; i < n_run && go; i++) {
    llama_layer (m, &m->layers[i], &r, B, L);
    if (hidden_cb)
      go = hidden_cb (i + 1, r.x, user_data);
  }
  if (final_norm)
    hv_op_rmsnorm (b, r.x, r.x, m->norm, m->cfg.rms_norm_eps);
  HvTensor *x = r.x;
  llama_run_clear (&r);
  if (!hv_backend_check (b, error)) {
    hv_tensor_free (x);
    return NULL;
  }
  return x;
}

HvTensor *
hv_llama_encode (HvLlama *m, const int32_t *ids, const int32_t *mask, int B, int L, int skip_layer,
                 int crop_start, GError **error)
{
  const int n_run = m->cfg.n_layers - skip_layer;
  if (skip_layer < 0 || n_run < 0 || n_run > m->n_loaded) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "hidden_state_skip_layer %d needs layers 0..%d, but %d of %d are loaded",
                 skip_layer, n_run - 1, m->n_loaded, m->cfg.n_layers);
    return NULL;
  }
  if (crop_start < 0 || crop_start >= L) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "crop_start %d does not fit a sequence of %d tokens",
                 crop_start, L);
    return NULL;
  }
  g_autoptr(HvTensor) x = hv_llama_forward (m, ids, mask, B, L, n_run, FALSE, NULL, NULL, error);
  if (!x)
    return NULL;
  if (crop_start == 0)
    return g_steal_pointer (&x);
  int64_t shape[3] = { B, L - crop_start, m->cfg.hidden_size };
  HvTensor *y = hv_backend_tensor_f32 (m->backend, 3, shape);
  if (!y) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of memory on %s", m->backend->name);
    return NULL;
  }
  hv_op_slice (m->backend, y, x, 1, crop_start);
  if (!hv_backend_check (m->backend, error)) {
    hv_tensor_free (y);
    return NULL;
  }
  return y;
}
