/* hv-clip.c — CLIP text encoder (see hv-clip.h). */
#include "hv-clip.h"
#include "hv-text-model.h"
#include "hv-error.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

typedef struct {
  HvTensor *ln1_w, *ln1_b, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
  HvTensor *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} ClipLayer;

struct _HvClip {
  HvClipConfig cfg;
  HvBackend *backend;
  HvStore *store;
  char *prefix;
  HvTensor *tok_emb, *pos_emb, *final_w, *final_b;
  ClipLayer *layers;
};

static gboolean
cfg_int (JsonObject *o, const char *key, int def, int *out, const char *file, GError **error)
{
  if (!json_object_has_member (o, key)) {
    if (def < 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: missing \"%s\"", file, key);
      return FALSE;
    }
    *out = def;
    return TRUE;
  }
  JsonNode *n = json_object_get_member (o, key);
  if (JSON_NODE_TYPE (n) != JSON_NODE_VALUE || json_node_get_value_type (n) != G_TYPE_INT64 ||
      json_node_get_int (n) < 0 || json_node_get_int (n) > G_MAXINT) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: \"%s\" is not a valid integer", file, key);
    return FALSE;
  }
  *out = (int) json_node_get_int (n);
  return TRUE;
}

gboolean
hv_clip_config_load (const char *config_json, HvClipConfig *cfg, GError **error)
{
  JsonObject *o;   /* a full CLIPModel config's "text_config" */
  g_autoptr(JsonParser) parser = hv_text_config_parse (config_json, &o, error);
  if (!parser)
    return FALSE;
  /* defaults: transformers' CLIPTextConfig */
  HvClipConfig c = { 0 };
  if (!cfg_int (o, "vocab_size", 49408, &c.vocab_size, config_json, error) ||
      !cfg_int (o, "hidden_size", 512, &c.hidden_size, config_json, error) ||
      !cfg_int (o, "intermediate_size", 2048, &c.intermediate_size, config_json, error) ||
      !cfg_int (o, "num_hidden_layers", 12, &c.n_layers, config_json, error) ||
      !cfg_int (o, "num_attention_heads", 8, &c.n_heads, config_json, error) ||
      !cfg_int (o, "max_position_embeddings", 77, &c.max_position_embeddings, config_json, error) ||
      !cfg_int (o, "eos_token_id", 2, &c.eos_token_id, config_json, error))
    return FALSE;
  if (c.hidden_size <= 0 || c.n_heads <= 0 || c.hidden_size % c.n_heads != 0 || c.n_layers <= 0 ||
      c.intermediate_size <= 0 || c.vocab_size <= 0 || c.max_position_embeddings <= 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: inconsistent sizes (hidden %d, heads %d, layers %d)",
                 config_json, c.hidden_size, c.n_heads, c.n_layers);
    return FALSE;
  }
  c.layer_norm_eps = 1e-5f;
  if (json_object_has_member (o, "layer_norm_eps")) {
    JsonNode *n = json_object_get_member (o, "layer_norm_eps");
    if (JSON_NODE_TYPE (n) == JSON_NODE_VALUE)
      c.layer_norm_eps = (float) json_node_get_double (n);
  }
  const char *act = json_object_get_string_member_with_default (o, "hidden_act", "quick_gelu");
  if (!act)
    act = "quick_gelu";
  if (strcmp (act, "quick_gelu") == 0)
    c.act = HV_UNARY_QUICK_GELU;
  else if (strcmp (act, "gelu") == 0)
    c.act = HV_UNARY_GELU;
  else if (strcmp (act, "gelu_new") == 0 || strcmp (act, "gelu_pytorch_tanh") == 0)
    c.act = HV_UNARY_GELU_TANH;
  else {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported", config_json, act);
    return FALSE;
  }
  *cfg = c;
  return TRUE;
}

static HvTensor *
clip_weight (HvClip *m, const char *name, int ndim, int64_t d0, int64_t d1, GError **error)
{
  return hv_text_weight (m->store, m->backend, m->prefix, name, ndim, d0, d1, error);
}

HvClip *
hv_clip_new (const char *path, HvBackend *backend, GError **error)
{
  g_return_val_if_fail (path && backend, NULL);
  g_autofree char *config_path = NULL;
  HvClipConfig cfg;
  HvStore *store = hv_text_model_open (path, &config_path, error);
  if (!store)
    return NULL;
  if (!hv_clip_config_load (config_path, &cfg, error)) {
    hv_store_free (store);
    return NULL;
  }
  return hv_clip_new_from_store (store, &cfg, backend, error);
}

HvClip *
hv_clip_new_from_store (HvStore *store, const HvClipConfig *cfg, HvBackend *backend, GError **error)
{
  g_return_val_if_fail (store && cfg && backend, NULL);
  g_autoptr(HvClip) m = g_new0 (HvClip, 1);
  m->backend = backend;
  m->store = store;
  m->cfg = *cfg;
  static const char *const prefixes[] = { "text_model.", "" };
  for (guint i = 0; i < G_N_ELEMENTS (prefixes) && !m->prefix; i++) {
    g_autofree char *n = g_strconcat (prefixes[i], "embeddings.token_embedding.weight", NULL);
    if (hv_store_get (m->store, n))
      m->prefix = g_strdup (prefixes[i]);
  }
  if (!m->prefix) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "%s: no [text_model.]embeddings.token_embedding.weight: not a CLIP text encoder",
                 hv_text_store_name (m->store));
    return NULL;
  }
  const HvClipConfig *c = &m->cfg;
  const int64_t D = c->hidden_size, I = c->intermediate_size;
  if (!(m->tok_emb = clip_weight (m, "embeddings.token_embedding.weight", 2, -1, D, error)) ||
      !(m->pos_emb = clip_weight (m, "embeddings.position_embedding.weight", 2, c->max_position_embeddings, D, error)) ||
      !(m->final_w = clip_weight (m, "final_layer_norm.weight", 1, D, 0, error)) ||
      !(m->final_b = clip_weight (m, "final_layer_norm.bias", 1, D, 0, error)))
    return NULL;
  m->layers = g_new0 (ClipLayer, c->n_layers);
  for (int i = 0; i < c->n_layers; i++) {
    ClipLayer *l = &m->layers[i];
    g_autofree char *p = g_strdup_printf ("%sencoder.layers.%d.", m->prefix, i);
#define W(field, name, nd, a, b)                                                        \
    do {                                                                                \
      if (!(l->field = hv_text_weight (m->store, m->backend, p, name, nd, a, b, error))) \
        return NULL;                                                                    \
    } while (0)
    W (ln1_w, "layer_norm1.weight", 1, D, 0);
    W (ln1_b, "layer_norm1.bias", 1, D, 0);
    W (wq, "self_attn.q_proj.weight", 2, D, D);
    W (bq, "self_attn.q_proj.bias", 1, D, 0);
    W (wk, "self_attn.k_proj.weight", 2, D, D);
    W (bk, "self_attn.k_proj.bias", 1, D, 0);
    W (wv, "self_attn.v_proj.weight", 2, D, D);
    W (bv, "self_attn.v_proj.bias", 1, D, 0);
    W (wo, "self_attn.out_proj.weight", 2, D, D);
    W (bo, "self_attn.out_proj.bias", 1, D, 0);
    W (ln2_w, "layer_norm2.weight", 1, D, 0);
    W (ln2_b, "layer_norm2.bias", 1, D, 0);
    W (fc1_w, "mlp.fc1.weight", 2, I, D);
    W (fc1_b, "mlp.fc1.bias", 1, I, 0);
    W (fc2_w, "mlp.fc2.weight", 2, D, I);
    W (fc2_b, "mlp.fc2.bias", 1, D, 0);
#undef W
  }
  return g_steal_pointer (&m);
}

void
hv_clip_free (HvClip *m)
{
  if (!m)
    return;
  if (m->layers)
    for (int i = 0; i < m->cfg.n_layers; i++) {
      ClipLayer *l = &m->layers[i];
      HvTensor *ws[] = { l->ln1_w, l->ln1_b, l->wq, l->bq, l->wk, l->bk, l->wv, l->bv, l->wo, l->bo,
                         l->ln2_w, l->ln2_b, l->fc1_w, l->fc1_b, l->fc2_w, l->fc2_b };
      for (guint j = 0; j < G_N_ELEMENTS (ws); j++)
        hv_tensor_free (ws[j]);
    }
  g_free (m->layers);
  hv_tensor_free (m->tok_emb);
  hv_tensor_free (m->pos_emb);
  hv_tensor_free (m->final_w);
  hv_tensor_free (m->final_b);
  hv_store_free (m->store);
  g_free (m->prefix);
  g_free (m);
}

const HvClipConfig *
hv_clip_get_config (const HvClip *m)
{
  return &m->cfg;
}

int
hv_clip_pooled_index (const HvClipConfig *cfg, const int32_t *ids, int L)
{
  int best = 0;
  if (cfg->eos_token_id == 2) {
    /* legacy config: argmax(ids), first occurrence of the maximum */
    for (int i = 1; i < L; i++)
      if (ids[i] > ids[best])
        best = i;
    return best;
  }
  for (int i = 0; i < L; i++)
    if (ids[i] == cfg->eos_token_id)
      return i;
  return 0;
}

static HvTensor *
host_i32 (HvBackend *b, const int32_t *v, int64_t n, gboolean *ok)
{
  g_autoptr(HvTensor) h = hv_tensor_new (HV_DTYPE_I32, 1, &n);
  memcpy (h->data, v, (size_t) n * sizeof (int32_t));
  HvTensor *t = hv_backend_upload (b, h);
  if (!t)
    *ok = FALSE;
  return t;
}

static HvTensor *
act3 (HvBackend *b, int64_t d0, int64_t d1, int64_t d2, gboolean *ok)
{
  int64_t s[3] = { d0, d1, d2 };
  HvTensor *t = hv_backend_tensor_f32 (b, 3, s);
  if (!t)
    *ok = FALSE;
  return t;
}

static void
reshape (HvTensor *t, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
  int64_t s[4] = { d0, d1, d2, d3 };
  hv_tensor_reshape (t, nd, s);
}

HvTensor *
hv_clip_forward (HvClip *m, const int32_t *ids, const int32_t *mask, int B, int L,
                 HvClipHiddenFunc hidden_cb, gpointer user_data, HvTensor **last_hidden,
                 int *pooled_index, GError **error)
{
  g_return_val_if_fail (m && ids, NULL);
  const HvClipConfig *c = &m->cfg;
  HvBackend *b = m->backend;
  if (B <= 0 || L <= 0 || L > c->max_position_embeddings) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "CLIP: batch %d of %d tokens (at most %d positions)", B, L, c->max_position_embeddings);
    return NULL;
  }
  const int64_t n = (int64_t) B * L, n_vocab = m->tok_emb->shape[0];
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= n_vocab) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "CLIP token id %d at position %" G_GINT64_FORMAT
                   " is outside the vocabulary of %" G_GINT64_FORMAT, ids[i], i, n_vocab);
      return NULL;
    }
  const int64_t D = c->hidden_size, I = c->intermediate_size, H = c->n_heads, hd = D / H;
  gboolean ok = TRUE;
  int32_t *pos = g_new (int32_t, MAX (L, B));
  for (int i = 0; i < L; i++)
    pos[i] = i;
  g_autoptr(HvTensor) tids = host_i32 (b, ids, n, &ok);
  g_autoptr(HvTensor) tpos = host_i32 (b, pos, L, &ok);
  int *pidx = g_new (int, B);
  for (int bi = 0; bi < B; bi++) {
    pidx[bi] = hv_clip_pooled_index (c, ids + (int64_t) bi * L, L);
    pos[bi] = (int32_t) (bi * L + pidx[bi]);   /* row of the flattened [B*L, D] */
  }
  g_autoptr(HvTensor) tpool = host_i32 (b, pos, B, &ok);
  g_free (pos);
  g_autoptr(HvTensor) allow = NULL;
  g_autoptr(HvTensor) allow_host = hv_text_pad_allow (mask, B, L);
  if (allow_host && !(allow = hv_backend_upload (b, allow_host)))
    ok = FALSE;
  g_autoptr(HvTensor) x = act3 (b, B, L, D, &ok);
  g_autoptr(HvTensor) h = act3 (b, B, L, D, &ok);
  g_autoptr(HvTensor) q = act3 (b, B, L, D, &ok);
  g_autoptr(HvTensor) k = act3 (b, B, L, D, &ok);
  g_autoptr(HvTensor) v = act3 (b, B, L, D, &ok);
  g_autoptr(HvTensor) att = act3 (b, B, L, D, &ok);
  g_autoptr(HvTensor) mlp = act3 (b, B, L, I, &ok);
  g_autoptr(HvTensor) pe = act3 (b, 1, L, D, &ok);
  int64_t pshape[2] = { B, D };
  g_autoptr(HvTensor) pooled = hv_backend_tensor_f32 (b, 2, pshape);
  if (!ok || !pooled) {
    g_free (pidx);
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of memory on %s for a %dx%d CLIP pass", b->name, B, L);
    return NULL;
  }

  reshape (x, 2, n, D, 0, 0);
  hv_op_get_rows (b, x, m->tok_emb, tids);
  reshape (x, 3, B, L, D, 0);
  reshape (pe, 2, L, D, 0, 0);
  hv_op_get_rows (b, pe, m->pos_emb, tpos);
  hv_op_add (b, x, x, pe);   /* pe repeats over the batch */
  gboolean go = hidden_cb ? hidden_cb (0, x, user_data) : TRUE;
  const float scale = 1.0f / sqrtf ((float) hd);
  HvAttnMask amask = { .allow = allow, .causal = TRUE };
  for (int li = 0; li < c->n_layers && go; li++) {
    const ClipLayer *l = &m->layers[li];
    hv_op_layernorm (b, h, x, l->ln1_w, l->ln1_b, c->layer_norm_eps);
    hv_op_linear (b, q, h, l->wq, l->bq);
    hv_op_linear (b, k, h, l->wk, l->bk);
    hv_op_linear (b, v, h, l->wv, l->bv);
    reshape (q, 4, B, L, H, hd);
    reshape (k, 4, B, L, H, hd);
    reshape (v, 4, B, L, H, hd);
    reshape (att, 4, B, L, H, hd);
    hv_op_attention (b, att, q, k, v, &amask, scale);
    reshape (q, 3, B, L, D, 0);
    reshape (k, 3, B, L, D, 0);
    reshape (v, 3, B, L, D, 0);
    reshape (att, 3, B, L, D, 0);
    hv_op_linear (b, h, att, l->wo, l->bo);
    hv_op_add (b, x, x, h);
    hv_op_layernorm (b, h, x, l->ln2_w, l->ln2_b, c->layer_norm_eps);
    hv_op_linear (b, mlp, h, l->fc1_w, l->fc1_b);
    hv_op_unary (b, mlp, mlp, c->act);
    hv_op_linear (b, h, mlp, l->fc2_w, l->fc2_b);
    hv_op_add (b, x, x, h);
    if (hidden_cb)
      go = hidden_cb (li + 1, x, user_data);
  }
  hv_op_layernorm (b, x, x, m->final_w, m->final_b, c->layer_norm_eps);
  reshape (x, 2, n, D, 0, 0);
  hv_op_get_rows (b, pooled, x, tpool);
  reshape (x, 3, B, L, D, 0);
  if (!hv_backend_check (b, error)) {
    g_free (pidx);
    return NULL;
  }
  if (pooled_index)
    memcpy (pooled_index, pidx, (size_t) B * sizeof (int));
  g_free (pidx);
  if (last_hidden)
    *last_hidden = g_steal_pointer (&x);
  return g_steal_pointer (&pooled);
}
