/* hv-dit.c — HYVideoDiffusionTransformer forward (see hv-dit.h for the contract).
 *
 * Layout of one forward, as the official code runs it:
 *   vec  = time_in(t) + vector_in(text_states_2) + guidance_in(guidance)
 *   img  = img_in(x)                    patches as a linear over (c, pt, ph, pw)
 *   txt  = txt_in(text_states, t, mask) token refiner (its own mask rule) or a linear projection
 *   double blocks on (img, txt), single blocks on [img; txt], final layer on the img rows,
 *   unpatchify.
 * Attention over [img; txt] follows the released flash-attn varlen call: per batch item, segment 1
 * is img + the first n_valid text tokens and segment 2 the padded text tokens.
 *
 * Memory: q, k, v of a block are written by per-batch linears straight into the joint
 * [B, img+txt, hidden] buffers (no concat copies), fused weights (qkv, linear1) are used as
 * row views. Every activation comes from the DiT's arena (hv-arena.h): each function and
 * C block that allocates opens an HV_ARENA_SCOPE, so temporaries are released exactly where
 * their C scope ends, and hv_dit_activation_bytes() mirrors that nesting to size the arena. */
#include "hv-dit.h"
#include "hv-arena.h"
#include "hv-error.h"
#include "hv-layout.h"
#include "hv-rope.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define LN_EPS 1e-6f
#define ROW_CHUNK 4096   /* tokens per MLP chunk by default (hv_dit_set_row_chunk) */
#define QK_EPS 1e-6f

typedef struct {
  HvTensor *w, *b;   /* b may be NULL */
} Lin;

typedef struct {
  Lin l1, l2;        /* Linear, SiLU, Linear */
} Mlp2;

typedef struct {
  Lin mod, q, k, v, proj, fc1, fc2;
  HvTensor *q_norm, *k_norm;   /* NULL without QK-norm */
  Lin qkv;                     /* the fused weight, for capturing upstream's qkv output */
} Stream;

typedef struct {
  Stream img, txt;
} DoubleBlock;

typedef struct {
  Lin mod, q, k, v, mlp, lin2, lin1;
  HvTensor *q_norm, *k_norm;
  int mlp_hidden;
} SingleBlock;

typedef struct {
  HvTensor *n1w, *n1b, *n2w, *n2b;
  Lin q, k, v, qkv, proj, fc1, fc2, ada;
} RefinerBlock;

struct _HvDit {
  HvBackend *b;
  HvStore *store;
  HvStore *owned_store;
  HvDitInfo info;
  GPtrArray *tensors;          /* every weight and weight view we made */
  Lin img_in;
  Mlp2 time_in, vector_in, guidance_in;
  gboolean refiner;            /* text_projection single_refiner (else linear) */
  Lin txt_embed;
  Mlp2 txt_t, txt_c, txt_linear;
  RefinerBlock *rblocks;
  DoubleBlock *dblocks;
  SingleBlock *sblocks;
  Lin final_mod, final_lin;
  int64_t rope_grid[3];        /* grid of the cached tables */
  HvTensor *rope_cos, *rope_sin;
  HvDitCaptureFunc capture;
  gpointer capture_data;
  int64_t row_chunk;           /* tokens per MLP chunk */
  HvArena *arena;              /* every activation of a forward (see hv_dit_activation_bytes) */
  gboolean arena_off;          /* hv_dit_set_arena (d, FALSE): size the arena to nothing */
};

/* ---- config ------------------------------------------------------------------------------ */

void
hv_dit_config_init (HvDitConfig *cfg)
{
  cfg->heads_num = 0;
  cfg->rope_dim[0] = 16;
  cfg->rope_dim[1] = 56;
  cfg->rope_dim[2] = 56;
  cfg->rope_theta = 256.0f;
}

static gboolean
json_number (JsonObject *o, const char *key, double *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (n);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (n);
  else
    return FALSE;
  return TRUE;
}

static gboolean
config_from_object (HvDitConfig *cfg, JsonObject *o, const char *path, int *n_rope, GError **error)
{
  double v;
  if (json_number (o, "heads_num", &v) || json_number (o, "num_attention_heads", &v)) {
    if (v < 1 || v > 4096 || v != floor (v)) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: head count %g is not a positive integer", path, v);
      return FALSE;
    }
    cfg->heads_num = (int) v;
  }
  if (json_number (o, "rope_theta", &v)) {
    if (!(v > 0) || !isfinite (v)) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: rope_theta %g must be positive", path, v);
      return FALSE;
    }
    cfg->rope_theta = (float) v;
    (*n_rope)++;
  }
  const char *rope_keys[] = { "rope_dim_list", "rope_axes_dim" };
  for (guint k = 0; k < G_N_ELEMENTS (rope_keys); k++) {
    JsonNode *n = json_object_get_member (o, rope_keys[k]);
    if (!n || JSON_NODE_HOLDS_NULL (n))
      continue;
    JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
    if (!a || json_array_get_length (a) != 3) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: %s must be a list of 3 integers", path, rope_keys[k]);
      return FALSE;
    }
    for (int i = 0; i < 3; i++) {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64 ||
          json_node_get_int (e) < 2 || json_node_get_int (e) > 4096) {
        g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: %s must be a list of 3 positive integers", path, rope_keys[k]);
        return FALSE;
      }
      cfg->rope_dim[i] = (int) json_node_get_int (e);
    }
    (*n_rope)++;
  }
  return TRUE;
}

static gboolean
config_load (HvDitConfig *cfg, const char *json_path, int *n_rope, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) local = NULL;
  if (!json_parser_load_from_file (parser, json_path, &local)) {
    g_set_error (error, HV_ERROR, g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT) ?
                 HV_ERROR_NOT_FOUND : HV_ERROR_CORRUPT, "cannot read DiT config %s: %s", json_path,
                 local->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "DiT config %s is not a JSON object", json_path);
    return FALSE;
  }
  JsonObject *o = json_node_get_object (root);
  /* the diffusers names first, the official ones last (they win when both are present) */
  const char *subs[] = { "diffusers_config", "official_constructor", "model" };
  if (!config_from_object (cfg, o, json_path, n_rope, error))
    return FALSE;
  JsonObject *gen = json_object_has_member (o, "generator_config") ?
                    json_object_get_object_member (o, "generator_config") : NULL;
  if (gen && !config_from_object (cfg, gen, json_path, n_rope, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (subs); i++) {
    JsonNode *n = json_object_get_member (o, subs[i]);
    if (n && JSON_NODE_HOLDS_OBJECT (n) && !config_from_object (cfg, json_node_get_object (n), json_path, n_rope, error))
      return FALSE;
    n = gen ? json_object_get_member (gen, subs[i]) : NULL;
    if (n && JSON_NODE_HOLDS_OBJECT (n) && !config_from_object (cfg, json_node_get_object (n), json_path, n_rope, error))
      return FALSE;
  }
  return TRUE;
}

gboolean
hv_dit_config_load (HvDitConfig *cfg, const char *json_path, GError **error)
{
  int n_rope = 0;
  return config_load (cfg, json_path, &n_rope, error);
}

/* ---- weights ----------------------------------------------------------------------------- */

static void
no_free (gpointer p)
{
}

/* A weight on the backend. Missing + optional: TRUE with *out NULL. */
static gboolean
get_weight (HvDit *d, HvTensor **out, const char *name, gboolean optional, int ndim,
            const int64_t *shape, GError **error)
{
  *out = NULL;
  if (optional && !hv_store_get (d->store, name))
    return TRUE;
  const HvTensor *h = hv_store_require (d->store, name, ndim, shape, error);
  if (!h)
    return FALSE;
  if (!hv_dtype_is_float (h->dtype) || !hv_tensor_is_contiguous (h)) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "DiT weight %s in %s is %s%s; expected a contiguous float tensor",
                 name, hv_store_path (d->store), hv_dtype_name (h->dtype),
                 hv_tensor_is_contiguous (h) ? "" : " (strided)");
    return FALSE;
  }
  HvTensor *t = hv_backend_weight (d->b, h);
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory loading DiT weight %s",
                 d->b->name, name);
    return FALSE;
  }
  g_ptr_array_add (d->tensors, t);
  *out = t;
  return TRUE;
}

/* Linear `prefix`.weight [n, k] (+ .bias [n], required or optional). */
static gboolean
get_lin (HvDit *d, Lin *l, const char *prefix, int64_t n, int64_t k, gboolean bias_optional,
         GError **error)
{
  g_autofree char *wn = g_strconcat (prefix, ".weight", NULL);
  g_autofree char *bn = g_strconcat (prefix, ".bias", NULL);
  const int64_t ws[2] = { n, k }, bs[1] = { n };
  return get_weight (d, &l->w, wn, FALSE, 2, ws, error) &&
         get_weight (d, &l->b, bn, bias_optional, 1, bs, error);
}

static gboolean
get_mlp2 (HvDit *d, Mlp2 *m, const char *p1, const char *p2, int64_t in, int64_t mid,
          int64_t out, GError **error)
{
  return get_lin (d, &m->l1, p1, mid, in, FALSE, error) &&
         get_lin (d, &m->l2, p2, out, mid, FALSE, error);
}

/* Rows [start, start + n) of a weight (or bias) as its own tensor: a header on the same data,
 * which is contiguous because rows are. Used for the q/k/v/mlp parts of fused linears. */
static HvTensor *
row_view (HvDit *d, const HvTensor *w, int64_t start, int64_t n)
{
  if (!w)
    return NULL;
  HvTensor *v = hv_tensor_view (w);
  v->free_func = no_free;
  v->free_data = NULL;
  v->data = (char *) w->data + (gsize) (start * w->stride[0]) * hv_dtype_size (w->dtype);
  v->shape[0] = n;
  g_ptr_array_add (d->tensors, v);
  return v;
}

static void
split_lin (HvDit *d, const Lin *fused, Lin *part, int64_t start, int64_t n)
{
  part->w = row_view (d, fused->w, start, n);
  part->b = row_view (d, fused->b, start, n);
}

static int64_t
shape0 (HvStore *s, const char *name)
{
  const HvTensor *t = hv_store_get (s, name);
  return t && t->ndim >= 1 ? t->shape[0] : -1;
}

static int
count_blocks (HvStore *s, const char *fmt)
{
  int n = 0;
  for (;; n++) {
    g_autofree char *name = g_strdup_printf (fmt, n);
    if (!hv_store_get (s, name))
      return n;
  }
}

static gboolean
load_stream (HvDit *d, Stream *s, int i, const char *which, GError **error)
{
  const HvDitInfo *in = &d->info;
  const int64_t h = in->hidden, nd[1] = { in->head_dim };
  g_autofree char *p = g_strdup_printf ("double_blocks.%d.%s_", i, which);
  g_autofree char *mod = g_strconcat (p, "mod.linear", NULL);
  g_autofree char *qkv = g_strconcat (p, "attn_qkv", NULL);
  g_autofree char *qn = g_strconcat (p, "attn_q_norm.weight", NULL);
  g_autofree char *kn = g_strconcat (p, "attn_k_norm.weight", NULL);
  g_autofree char *proj = g_strconcat (p, "attn_proj", NULL);
  g_autofree char *fc1 = g_strconcat (p, "mlp.fc1", NULL);
  g_autofree char *fc2 = g_strconcat (p, "mlp.fc2", NULL);
  if (!get_lin (d, &s->mod, mod, 6 * h, h, FALSE, error) ||
      !get_lin (d, &s->qkv, qkv, 3 * h, h, TRUE, error) ||
      !get_weight (d, &s->q_norm, qn, TRUE, 1, nd, error) ||
      !get_weight (d, &s->k_norm, kn, TRUE, 1, nd, error) ||
      !get_lin (d, &s->proj, proj, h, h, TRUE, error) ||
      !get_lin (d, &s->fc1, fc1, in->mlp_hidden, h, TRUE, error) ||
      !get_lin (d, &s->fc2, fc2, h, in->mlp_hidden, TRUE, error))
    return FALSE;
  split_lin (d, &s->qkv, &s->q, 0, h);
  split_lin (d, &s->qkv, &s->k, h, h);
  split_lin (d, &s->qkv, &s->v, 2 * h, h);
  return TRUE;
}

static gboolean
load_single (HvDit *d, SingleBlock *s, int i, GError **error)
{
  const HvDitInfo *in = &d->info;
  const int64_t h = in->hidden, nd[1] = { in->head_dim };
  g_autofree char *p = g_strdup_printf ("single_blocks.%d.", i);
  g_autofree char *l1 = g_strconcat (p, "linear1", NULL);
  g_autofree char *l1w = g_strconcat (p, "linear1.weight", NULL);
  g_autofree char *l2 = g_strconcat (p, "linear2", NULL);
  g_autofree char *qn = g_strconcat (p, "q_norm.weight", NULL);
  g_autofree char *kn = g_strconcat (p, "k_norm.weight", NULL);
  g_autofree char *mod = g_strconcat (p, "modulation.linear", NULL);
  int64_t rows = shape0 (d->store, l1w);
  if (rows <= 3 * h) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "DiT weight %s in %s is missing or has %" G_GINT64_FORMAT
                 " rows; expected 3*%" G_GINT64_FORMAT " + the MLP width", l1w, hv_store_path (d->store), rows, h);
    return FALSE;
  }
  s->mlp_hidden = (int) (rows - 3 * h);
  if (!get_lin (d, &s->lin1, l1, rows, h, TRUE, error) ||
      !get_lin (d, &s->lin2, l2, h, h + s->mlp_hidden, TRUE, error) ||
      !get_weight (d, &s->q_norm, qn, TRUE, 1, nd, error) ||
      !get_weight (d, &s->k_norm, kn, TRUE, 1, nd, error) ||
      !get_lin (d, &s->mod, mod, 3 * h, h, FALSE, error))
    return FALSE;
  split_lin (d, &s->lin1, &s->q, 0, h);
  split_lin (d, &s->lin1, &s->k, h, h);
  split_lin (d, &s->lin1, &s->v, 2 * h, h);
  split_lin (d, &s->lin1, &s->mlp, 3 * h, s->mlp_hidden);
  return TRUE;
}

static gboolean
load_refiner_block (HvDit *d, RefinerBlock *r, int i, GError **error)
{
  const int64_t h = d->info.hidden, hs[1] = { h };
  g_autofree char *p = g_strdup_printf ("txt_in.individual_token_refiner.blocks.%d.", i);
  g_autofree char *n1w = g_strconcat (p, "norm1.weight", NULL);
  g_autofree char *n1b = g_strconcat (p, "norm1.bias", NULL);
  g_autofree char *n2w = g_strconcat (p, "norm2.weight", NULL);
  g_autofree char *n2b = g_strconcat (p, "norm2.bias", NULL);
  g_autofree char *qkv = g_strconcat (p, "self_attn_qkv", NULL);
  g_autofree char *proj = g_strconcat (p, "self_attn_proj", NULL);
  g_autofree char *fc1 = g_strconcat (p, "mlp.fc1", NULL);
  g_autofree char *fc1w = g_strconcat (p, "mlp.fc1.weight", NULL);
  g_autofree char *fc2 = g_strconcat (p, "mlp.fc2", NULL);
  g_autofree char *ada = g_strconcat (p, "adaLN_modulation.1", NULL);
  int64_t mlp = shape0 (d->store, fc1w);
  if (mlp <= 0)
    mlp = 4 * h;   /* let get_lin report the missing tensor */
  if (!get_weight (d, &r->n1w, n1w, TRUE, 1, hs, error) ||
      !get_weight (d, &r->n1b, n1b, TRUE, 1, hs, error) ||
      !get_weight (d, &r->n2w, n2w, TRUE, 1, hs, error) ||
      !get_weight (d, &r->n2b, n2b, TRUE, 1, hs, error) ||
      !get_lin (d, &r->qkv, qkv, 3 * h, h, TRUE, error) ||
      !get_lin (d, &r->proj, proj, h, h, TRUE, error) ||
      !get_lin (d, &r->fc1, fc1, mlp, h, TRUE, error) ||
      !get_lin (d, &r->fc2, fc2, h, mlp, TRUE, error) ||
      !get_lin (d, &r->ada, ada, 2 * h, h, FALSE, error))
    return FALSE;
  split_lin (d, &r->qkv, &r->q, 0, h);
  split_lin (d, &r->qkv, &r->k, h, h);
  split_lin (d, &r->qkv, &r->v, 2 * h, h);
  return TRUE;
}

/* Structure from the tensors; heads and RoPE from cfg. */
static gboolean
read_info (HvDit *d, const HvDitConfig *cfg, GError **error)
{
  HvDitInfo *in = &d->info;
  HvStore *s = d->store;
  const HvTensor *pe = hv_store_get (s, "img_in.proj.weight");
  if (!pe || pe->ndim != 5) {
    g_set_error (error, HV_ERROR, pe ? HV_ERROR_SHAPE : HV_ERROR_NOT_FOUND,
                 "%s is not a HunyuanVideo DiT checkpoint: %s (official names expected)",
                 hv_store_path (s) ? hv_store_path (s) : "weights",
                 pe ? "img_in.proj.weight is not a 5-d Conv3d weight" : "it has no img_in.proj.weight");
    return FALSE;
  }
  in->hidden = (int) pe->shape[0];
  in->in_channels = (int) pe->shape[1];
  for (int i = 0; i < 3; i++)
    in->patch[i] = (int) pe->shape[2 + i];
  const int64_t P = (int64_t) in->patch[0] * in->patch[1] * in->patch[2];
  int64_t fo = shape0 (s, "final_layer.linear.weight");
  if (fo <= 0 || fo % P) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: final_layer.linear.weight is missing or its %"
                 G_GINT64_FORMAT " rows are not a multiple of the patch volume %" G_GINT64_FORMAT,
                 hv_store_path (s), fo, P);
    return FALSE;
  }
  in->out_channels = (int) (fo / P);
  in->depth_double = count_blocks (s, "double_blocks.%d.img_mod.linear.weight");
  in->depth_single = count_blocks (s, "single_blocks.%d.linear1.weight");
  in->depth_refiner = count_blocks (s, "txt_in.individual_token_refiner.blocks.%d.norm1.weight");
  in->guidance_embed = hv_store_get (s, "guidance_in.mlp.0.weight") != NULL;
  in->mlp_hidden = (int) shape0 (s, "double_blocks.0.img_mlp.fc1.weight");
  if (in->mlp_hidden <= 0)
    in->mlp_hidden = 4 * in->hidden;
  const HvTensor *te = hv_store_get (s, "time_in.mlp.0.weight");
  const HvTensor *vi = hv_store_get (s, "vector_in.in_layer.weight");
  const HvTensor *ti = hv_store_get (s, "txt_in.input_embedder.weight");
  if (!ti)
    ti = hv_store_get (s, "txt_in.linear_1.weight");
  if (!te || te->ndim != 2 || !vi || vi->ndim != 2 || !ti || ti->ndim != 2) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s lacks %s (or it is not a 2-d Linear weight)",
                 hv_store_path (s), !te || te->ndim != 2 ? "time_in.mlp.0.weight" :
                 !vi || vi->ndim != 2 ? "vector_in.in_layer.weight" : "txt_in.input_embedder.weight");
    return FALSE;
  }
  in->freq_dim = (int) te->shape[1];
  in->text_dim_2 = (int) vi->shape[1];
  in->text_dim = (int) ti->shape[1];
  d->refiner = hv_store_get (s, "txt_in.input_embedder.weight") != NULL;

  /* heads: the config, else the QK-norm width, else the released head dim 128 */
  int64_t qn = shape0 (s, "double_blocks.0.img_attn_q_norm.weight");
  if (qn <= 0)
    qn = shape0 (s, "single_blocks.0.q_norm.weight");
  if (cfg->heads_num > 0)
    in->heads = cfg->heads_num;
  else if (qn > 0 && in->hidden % qn == 0)
    in->heads = (int) (in->hidden / qn);
  else
    in->heads = MAX (1, in->hidden / 128);
  if (in->hidden % in->heads) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "hidden size %d is not divisible by %d heads",
                 in->hidden, in->heads);
    return FALSE;
  }
  in->head_dim = in->hidden / in->heads;
  if (qn > 0 && qn != in->head_dim) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%d heads give a head dim of %d but the checkpoint's "
                 "QK-norm weights have %" G_GINT64_FORMAT " (check heads_num in the config)",
                 in->heads, in->head_dim, qn);
    return FALSE;
  }
  memcpy (in->rope_dim, cfg->rope_dim, sizeof in->rope_dim);
  in->rope_theta = cfg->rope_theta;
  if (in->rope_dim[0] + in->rope_dim[1] + in->rope_dim[2] != in->head_dim) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "RoPE dims [%d, %d, %d] must sum to the head dim %d "
                 "(give rope_dim_list in the model's config)", in->rope_dim[0], in->rope_dim[1],
                 in->rope_dim[2], in->head_dim);
    return FALSE;
  }
  for (int i = 0; i < 3; i++)
    if (in->rope_dim[i] <= 0 || in->rope_dim[i] % 2) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "RoPE dims [%d, %d, %d] must be even and positive",
                   in->rope_dim[0], in->rope_dim[1], in->rope_dim[2]);
      return FALSE;
    }
  if (in->freq_dim < 2 || in->depth_double + in->depth_single == 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: no transformer blocks or a bad time embedding width",
                 hv_store_path (s));
    return FALSE;
  }
  return TRUE;
}

HvDit *
hv_dit_new (HvStore *weights, const HvDitConfig *cfg_or_null, HvBackend *b, GError **error)
{
  g_return_val_if_fail (weights != NULL && b != NULL, NULL);
  HvDitConfig cfg;
  if (cfg_or_null)
    cfg = *cfg_or_null;
  else
    hv_dit_config_init (&cfg);

  g_autoptr(HvDit) d = g_new0 (HvDit, 1);
  d->b = b;
  d->store = weights;
  d->row_chunk = ROW_CHUNK;
  d->tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) hv_tensor_free);
  d->arena = hv_arena_new (b, 0, NULL);   /* sized by the first forward, from its token count */
  if (!read_info (d, &cfg, error))
    return NULL;
  HvDitInfo *in = &d->info;
  const int64_t h = in->hidden, P = (int64_t) in->patch[0] * in->patch[1] * in->patch[2];
  const int64_t pes[5] = { h, in->in_channels, in->patch[0], in->patch[1], in->patch[2] };
  const int64_t hs[1] = { h };

  if (!get_weight (d, &d->img_in.w, "img_in.proj.weight", FALSE, 5, pes, error) ||
      !get_weight (d, &d->img_in.b, "img_in.proj.bias", TRUE, 1, hs, error) ||
      !get_mlp2 (d, &d->time_in, "time_in.mlp.0", "time_in.mlp.2", in->freq_dim, h, h, error) ||
      !get_mlp2 (d, &d->vector_in, "vector_in.in_layer", "vector_in.out_layer", in->text_dim_2, h, h, error))
    return NULL;
  if (in->guidance_embed &&
      !get_mlp2 (d, &d->guidance_in, "guidance_in.mlp.0", "guidance_in.mlp.2", in->freq_dim, h, h, error))
    return NULL;
  if (d->refiner) {
    if (!get_lin (d, &d->txt_embed, "txt_in.input_embedder", h, in->text_dim, FALSE, error) ||
        !get_mlp2 (d, &d->txt_t, "txt_in.t_embedder.mlp.0", "txt_in.t_embedder.mlp.2", in->freq_dim, h, h, error) ||
        !get_mlp2 (d, &d->txt_c, "txt_in.c_embedder.linear_1", "txt_in.c_embedder.linear_2", in->text_dim, h, h, error))
      return NULL;
    d->rblocks = g_new0 (RefinerBlock, MAX (in->depth_refiner, 1));
    for (int i = 0; i < in->depth_refiner; i++)
      if (!load_refiner_block (d, &d->rblocks[i], i, error))
        return NULL;
  } else if (!get_mlp2 (d, &d->txt_linear, "txt_in.linear_1", "txt_in.linear_2", in->text_dim, h, h, error)) {
    return NULL;
  }
  d->dblocks = g_new0 (DoubleBlock, MAX (in->depth_double, 1));
  for (int i = 0; i < in->depth_double; i++)
    if (!load_stream (d, &d->dblocks[i].img, i, "img", error) ||
        !load_stream (d, &d->dblocks[i].txt, i, "txt", error))
      return NULL;
  d->sblocks = g_new0 (SingleBlock, MAX (in->depth_single, 1));
  for (int i = 0; i < in->depth_single; i++)
    if (!load_single (d, &d->sblocks[i], i, error))
      return NULL;
  if (!get_lin (d, &d->final_mod, "final_layer.adaLN_modulation.1", 2 * h, h, FALSE, error) ||
      !get_lin (d, &d->final_lin, "final_layer.linear", in->out_channels * P, h, FALSE, error))
    return NULL;
  return g_steal_pointer (&d);
}

/* cfg from a config file beside the weights, when one describes a DiT's RoPE */
static gboolean
config_beside (HvDitConfig *cfg, const char *weights_path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (weights_path);
  const char *names[] = { "dit_config.json", "config.json" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *p = g_build_filename (dir, names[i], NULL);
    if (!g_file_test (p, G_FILE_TEST_IS_REGULAR))
      continue;
    HvDitConfig tmp = *cfg;
    int n_rope = 0;
    if (!config_load (&tmp, p, &n_rope, error))
      return FALSE;
    if (n_rope > 0) {         /* not some other model's config.json */
      *cfg = tmp;
      return TRUE;
    }
  }
  return TRUE;
}

HvDit *
hv_dit_open (const char *path, const HvDitConfig *cfg_or_null, HvBackend *b, GError **error)
{
  g_return_val_if_fail (path != NULL && b != NULL, NULL);
  g_autoptr(HvModelPaths) mp = NULL;
  const char *file = path, *map = NULL, *cfg_json = NULL;
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    mp = hv_model_paths_detect (path, 0, error);
    if (!mp)
      return NULL;
    if (!mp->dit) {
      g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "no DiT weights found in %s", path);
      return NULL;
    }
    file = mp->dit;
    map = mp->dit_fp8_map;
    cfg_json = mp->dit_config;
  }
  HvDitConfig cfg;
  if (cfg_or_null) {
    cfg = *cfg_or_null;
  } else {
    hv_dit_config_init (&cfg);
    if (cfg_json ? !hv_dit_config_load (&cfg, cfg_json, error) : !config_beside (&cfg, file, error))
      return NULL;
  }
  HvStore *s = hv_dit_load (file, map, error);
  if (!s)
    return NULL;
  HvDit *d = hv_dit_new (s, &cfg, b, error);
  if (!d) {
    hv_store_free (s);
    return NULL;
  }
  d->owned_store = s;
  return d;
}

void
hv_dit_free (HvDit *d)
{
  if (!d)
    return;
  hv_tensor_free (d->rope_cos);
  hv_tensor_free (d->rope_sin);
  hv_arena_free (d->arena);
  if (d->tensors)
    g_ptr_array_unref (d->tensors);
  g_free (d->rblocks);
  g_free (d->dblocks);
  g_free (d->sblocks);
  hv_store_free (d->owned_store);
  g_free (d);
}

const HvDitInfo *
hv_dit_info (HvDit *d)
{
  return &d->info;
}

HvBackend *
hv_dit_backend (HvDit *d)
{
  return d->b;
}

void
hv_dit_set_row_chunk (HvDit *d, int rows)
{
  d->row_chunk = rows > 0 ? rows : ROW_CHUNK;
}

void
hv_dit_set_capture (HvDit *d, HvDitCaptureFunc func, gpointer user_data)
{
  d->capture = func;
  d->capture_data = user_data;
}

/* ---- activation helpers ---------------------------------------------------------------------- */

static HvTensor *
act (HvDit *d, GError **error, int ndim, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
  const int64_t shape[4] = { s0, s1, s2, s3 };
  HvTensor *t = hv_arena_tensor (d->arena, HV_DTYPE_F32, ndim, shape);
  if (!t) {
    char buf[64];
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory for a DiT activation %s (%.1f MiB)",
                 d->b->name, hv_shape_str (ndim, shape, buf, sizeof buf),
                 (double) (s0 * (ndim > 1 ? s1 : 1) * (ndim > 2 ? s2 : 1) * (ndim > 3 ? s3 : 1)) * 4 / 1048576.0);
  }
  return t;
}

#define ACT(var, ...)                                          \
  g_autoptr(HvTensor) var = act (d, error, __VA_ARGS__);       \
  if (!var)                                                    \
    return FALSE

/* A header (no copy, no ownership) on the same data with another contiguous shape. */
static HvTensor
reshaped (const HvTensor *t, int ndim, int64_t s0, int64_t s1, int64_t s2, int64_t s3)
{
  HvTensor v = *t;
  const int64_t shape[4] = { s0, s1, s2, s3 };
  v.free_func = NULL;
  v.free_data = NULL;
  v.ndim = ndim;
  for (int i = 0; i < ndim; i++)
    v.shape[i] = shape[i];
  hv_tensor_set_contiguous_strides (&v);
  g_assert (hv_tensor_numel (&v) == hv_tensor_numel (t));
  return v;
}

/* Header on rows [start, start + n) of batch item b of t [B, N, ...] (contiguous), shaped
 * [1, n, c] (heads 0; c = the rest) or [1, n, heads, c / heads]. */
static HvTensor
rows (const HvTensor *t, int64_t b, int64_t start, int64_t n, int64_t heads)
{
  int64_t c = hv_tensor_numel (t) / (t->shape[0] * t->shape[1]);
  HvTensor v = heads ? reshaped (t, 4, t->shape[0], t->shape[1], heads, c / heads)
                     : reshaped (t, 3, t->shape[0], t->shape[1], c, 0);
  v.data = (char *) t->data + (gsize) ((b * t->shape[1] + start) * c) * sizeof (float);
  v.shape[0] = 1;
  v.shape[1] = n;
  hv_tensor_set_contiguous_strides (&v);
  return v;
}

/* Chunk i of k of a modulation vector stored as [k, B, C] (see chunked()). */
static HvTensor
chunk (const HvTensor *kbc, int i)
{
  HvTensor v = *kbc;
  v.free_func = NULL;
  v.free_data = NULL;
  v.ndim = 2;
  v.shape[0] = kbc->shape[1];
  v.shape[1] = kbc->shape[2];
  hv_tensor_set_contiguous_strides (&v);
  v.data = (char *) kbc->data + (gsize) (i * kbc->shape[1] * kbc->shape[2]) * sizeof (float);
  return v;
}

/* mod = Linear(svec) [B, k*C] regrouped as [k, B, C] so each chunk is contiguous. The result
 * is allocated before the temporary so that the temporary's arena bytes are freed on return. */
static HvTensor *
chunked (HvDit *d, const HvTensor *svec, const Lin *l, int k, const char *cap_name, GError **error)
{
  const int64_t B = svec->shape[0], C = d->info.hidden;
  g_autoptr(HvTensor) out = act (d, error, 3, k, B, C, 0);
  if (!out)
    return NULL;
  HV_ARENA_SCOPE (d->arena);
  g_autoptr(HvTensor) m = act (d, error, 2, B, k * C, 0, 0);
  if (!m)
    return NULL;
  hv_op_linear (d->b, m, svec, l->w, l->b);
  if (cap_name && d->capture)
    d->capture (cap_name, m, d->capture_data);
  HvTensor mv = reshaped (m, 3, B, k, C, 0);
  const int perm[3] = { 1, 0, 2 };
  hv_op_permute (d->b, out, &mv, perm);
  return g_steal_pointer (&out);
}

static void
cap (HvDit *d, const char *name, const HvTensor *t)
{
  if (d->capture)
    d->capture (name, t, d->capture_data);
}

static void G_GNUC_PRINTF (3, 4)
capf (HvDit *d, const HvTensor *t, const char *fmt, ...)
{
  if (!d->capture)
    return;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  d->capture (name, t, d->capture_data);
}

/* Captures t[:, start:start+n] (t [B, N, ...]) as a [B, n, ...] copy; heads > 0: 4-d view. */
static gboolean G_GNUC_PRINTF (7, 8)
cap_rows (HvDit *d, GError **error, const HvTensor *t, int64_t start, int64_t n, int64_t heads,
          const char *fmt, ...)
{
  if (!d->capture)
    return TRUE;
  int64_t B = t->shape[0], c = hv_tensor_numel (t) / (B * t->shape[1]);
  HvTensor src = heads ? reshaped (t, 4, B, t->shape[1], heads, c / heads) : reshaped (t, 3, B, t->shape[1], c, 0);
  HV_ARENA_SCOPE (d->arena);
  g_autoptr(HvTensor) tmp = heads ? act (d, error, 4, B, n, heads, c / heads) : act (d, error, 3, B, n, c, 0);
  if (!tmp)
    return FALSE;
  hv_op_slice (d->b, tmp, &src, 1, start);
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  d->capture (name, tmp, d->capture_data);
  return TRUE;
}

/* y = l2(silu(l1(x))) */
static gboolean
mlp2 (HvDit *d, HvTensor *y, const HvTensor *x, const Mlp2 *m, GError **error)
{
  HV_ARENA_SCOPE (d->arena);
  ACT (h, 2, x->shape[0], m->l1.w->shape[0], 0, 0);
  hv_op_linear (d->b, h, x, m->l1.w, m->l1.b);
  hv_op_unary (d->b, h, h, HV_UNARY_SILU);
  hv_op_linear (d->b, y, h, m->l2.w, m->l2.b);
  return TRUE;
}

/* Upstream timestep_embedding in fp32: f_i = exp(-ln(10000) * i / half), a = t * f_i,
 * [cos(a) | sin(a)] (cos first), zero-padded when dim is odd. */
static HvTensor *
timestep_freq (HvDit *d, const float *t, int64_t B, GError **error)
{
  const int dim = d->info.freq_dim, half = dim / 2;
  const float nlog = (float) -log (10000.0);
  g_autoptr(HvTensor) h = hv_tensor_new_4 (HV_DTYPE_F32, 2, B, dim, 0, 0);
  float *o = h->data;
  for (int64_t b = 0; b < B; b++)
    for (int i = 0; i < half; i++) {
      float e = (nlog * (float) i) / (float) half;
      float f = (float) exp ((double) e);
      float a = t[b] * f;
      o[b * dim + i] = (float) cos ((double) a);
      o[b * dim + half + i] = (float) sin ((double) a);
    }
  HvTensor *u = hv_arena_upload (d->arena, h);
  if (!u)
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory", d->b->name);
  return u;
}

static HvTensor *
upload_or_fail (HvDit *d, HvTensor *host, GError **error)
{
  HvTensor *u = hv_arena_upload (d->arena, host);
  hv_tensor_free (host);
  if (!u)
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory", d->b->name);
  return u;
}

/* ---- blocks -------------------------------------------------------------------------------- */

/* Token-wise parts (MLPs) run over chunks of at most d->row_chunk tokens of one batch item, so
 * their wide hidden activations ([tokens, 4 * hidden]) never exist for the whole sequence.
 * When capturing, full-size buffers are used instead so the intermediates can be handed out. */

/* Row b of a [B, C] vector as [1, C]. */
static HvTensor
vec_row (const HvTensor *v, int64_t b)
{
  HvTensor r = reshaped (v, 2, v->shape[0], v->shape[1], 0, 0);
  r.data = (char *) v->data + (gsize) (b * v->shape[1]) * sizeof (float);
  r.shape[0] = 1;
  hv_tensor_set_contiguous_strides (&r);
  return r;
}

/* A work buffer for rows [s, s + n) of batch item b: a view of the full buffer when capturing
 * (buf [B, N, c]), else of the chunk buffer (buf [1, row_chunk, c]). */
static HvTensor
work_rows (const HvTensor *buf, gboolean full, int64_t b, int64_t s, int64_t n)
{
  return full ? rows (buf, b, s, n, 0) : rows (buf, 0, 0, n, 0);
}

static HvTensor *
work_buf (HvDit *d, gboolean full, int64_t B, int64_t N, int64_t c, GError **error)
{
  return full ? act (d, error, 3, B, N, c, 0) : act (d, error, 3, 1, MIN (N, d->row_chunk), c, 0);
}

/* x += gate * fc2(act(fc1(modulate(LN(x), shift, scale)))); the MLP output is captured. */
static gboolean
gated_mlp (HvDit *d, HvTensor *x, const HvTensor *shift, const HvTensor *scale, const HvTensor *gate,
           const Lin *fc1, const Lin *fc2, const HvTensor *ln_w, const HvTensor *ln_b, HvUnary fn,
           const char *cap_name, GError **error)
{
  const int64_t B = x->shape[0], L = x->shape[1], C = x->shape[2], M = fc1->w->shape[0];
  const gboolean full = d->capture != NULL;
  HV_ARENA_SCOPE (d->arena);
  g_autoptr(HvTensor) nb = work_buf (d, full, B, L, C, error);
  g_autoptr(HvTensor) hb = nb ? work_buf (d, full, B, L, M, error) : NULL;
  g_autoptr(HvTensor) ob = hb ? work_buf (d, full, B, L, C, error) : NULL;
  if (!ob)
    return FALSE;
  for (int64_t b = 0; b < B; b++) {
    HvTensor sh = shift ? vec_row (shift, b) : (HvTensor) { 0 };
    HvTensor sc = scale ? vec_row (scale, b) : (HvTensor) { 0 };
    HvTensor g = vec_row (gate, b);
    for (int64_t s = 0; s < L; s += d->row_chunk) {
      const int64_t n = MIN (d->row_chunk, L - s);
      HvTensor xv = rows (x, b, s, n, 0);
      HvTensor nv = work_rows (nb, full, b, s, n), hv = work_rows (hb, full, b, s, n);
      HvTensor ov = work_rows (ob, full, b, s, n);
      if (ln_w || ln_b) {
        hv_op_layernorm (d->b, &nv, &xv, ln_w, ln_b, LN_EPS);
        if (shift || scale)
          hv_op_modulate (d->b, &nv, &nv, shift ? &sh : NULL, scale ? &sc : NULL);
      } else {
        hv_op_layernorm_modulate (d->b, &nv, &xv, shift ? &sh : NULL, scale ? &sc : NULL, LN_EPS);
      }
      hv_op_linear_act (d->b, &hv, &nv, fc1->w, fc1->b, fn);
      hv_op_linear (d->b, &ov, &hv, fc2->w, fc2->b);
      if (!full)
        hv_op_gate_add (d->b, &xv, &ov, &g);
    }
  }
  if (full) {
    cap (d, cap_name, ob);
    hv_op_gate_add (d->b, x, ob, gate);
  }
  return TRUE;
}

/* The token refiner: txt [B, L, hidden] from text_states. */
static gboolean
refiner (HvDit *d, HvTensor *txt, const HvTensor *text_states, const HvTensor *tfreq,
         const int32_t *mask, GError **error)
{
  const int64_t B = text_states->shape[0], L = text_states->shape[1], D1 = text_states->shape[2];
  const int64_t C = d->info.hidden, H = d->info.heads, D = d->info.head_dim;

  /* c = t_embedder(t) + c_embedder(mean of the raw text states over mask == 1) */
  HV_ARENA_SCOPE (d->arena);
  ACT (c, 2, B, C, 0, 0);
  {
    HV_ARENA_SCOPE (d->arena);
    g_autoptr(HvTensor) host = hv_backend_download (d->b, text_states);
    HvTensor *mh = hv_tensor_new_4 (HV_DTYPE_F32, 2, B, D1, 0, 0);
    const float *x = host->data;
    float *m = mh->data;
    for (int64_t b = 0; b < B; b++) {
      int n = 0;
      for (int64_t l = 0; l < L; l++)
        n += mask[b * L + l] != 0;
      for (int64_t j = 0; j < D1; j++) {
        double s = 0;
        for (int64_t l = 0; l < L; l++)
          if (mask[b * L + l])
            s += x[(b * L + l) * D1 + j];
        m[b * D1 + j] = (float) ((float) s / (float) n);
      }
    }
    g_autoptr(HvTensor) mean = upload_or_fail (d, mh, error);
    if (!mean)
      return FALSE;
    if (!mlp2 (d, c, tfreq, &d->txt_t, error))
      return FALSE;
    cap (d, "refiner.t_embedder_out", c);
    ACT (cc, 2, B, C, 0, 0);
    if (!mlp2 (d, cc, mean, &d->txt_c, error))
      return FALSE;
    cap (d, "refiner.c_embedder_out", cc);
    hv_op_add (d->b, c, c, cc);
  }
  hv_op_linear (d->b, txt, text_states, d->txt_embed.w, d->txt_embed.b);
  cap (d, "refiner.input_embedder_out", txt);

  /* mask: valid rows see valid keys; every row also sees key 0 (so padded rows see only it) */
  HvTensor *ah = hv_tensor_new_4 (HV_DTYPE_U8, 3, B, L, L, 0);
  guint8 *a = ah->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < L; i++)
      for (int64_t j = 0; j < L; j++)
        a[(b * L + i) * L + j] = j == 0 || (mask[b * L + i] && mask[b * L + j]);
  g_autoptr(HvTensor) allow = upload_or_fail (d, ah, error);
  if (!allow)
    return FALSE;
  const HvAttnMask am = { .allow = allow };

  hv_op_unary (d->b, c, c, HV_UNARY_SILU);
  for (int i = 0; i < d->info.depth_refiner; i++) {
    const RefinerBlock *r = &d->rblocks[i];
    HV_ARENA_SCOPE (d->arena);
    g_autofree char *ada_name = g_strdup_printf ("refiner.block%d.adaLN_out", i);
    g_autoptr(HvTensor) gates = chunked (d, c, &r->ada, 2, ada_name, error);
    if (!gates)
      return FALSE;
    HvTensor gate_msa = chunk (gates, 0), gate_mlp = chunk (gates, 1);
    {
      HV_ARENA_SCOPE (d->arena);
      ACT (q, 4, B, L, H, D);
      ACT (k, 4, B, L, H, D);
      ACT (v, 4, B, L, H, D);
      {
        HV_ARENA_SCOPE (d->arena);
        ACT (n, 3, B, L, C, 0);
        hv_op_layernorm (d->b, n, txt, r->n1w, r->n1b, LN_EPS);
        if (d->capture) {
          ACT (qkv, 3, B, L, 3 * C, 0);
          hv_op_linear (d->b, qkv, n, r->qkv.w, r->qkv.b);
          capf (d, qkv, "refiner.block%d.qkv_out", i);
        }
        HvTensor q3 = reshaped (q, 3, B, L, C, 0), k3 = reshaped (k, 3, B, L, C, 0), v3 = reshaped (v, 3, B, L, C, 0);
        hv_op_linear (d->b, &q3, n, r->q.w, r->q.b);
        hv_op_linear (d->b, &k3, n, r->k.w, r->k.b);
        hv_op_linear (d->b, &v3, n, r->v.w, r->v.b);
      }
      ACT (o, 4, B, L, H, D);
      hv_op_attention (d->b, o, q, k, v, &am, 1.0f / sqrtf ((float) D));
      HvTensor o3 = reshaped (o, 3, B, L, C, 0);
      capf (d, &o3, "refiner.block%d.attn_out", i);
      ACT (p, 3, B, L, C, 0);
      hv_op_linear (d->b, p, &o3, r->proj.w, r->proj.b);
      hv_op_gate_add (d->b, txt, p, &gate_msa);
    }
    g_autofree char *mlp_name = g_strdup_printf ("refiner.block%d.mlp_out", i);
    if (!gated_mlp (d, txt, NULL, NULL, &gate_mlp, &r->fc1, &r->fc2, r->n2w, r->n2b, HV_UNARY_SILU,
                    mlp_name, error))
      return FALSE;
    capf (d, txt, "refiner.block%d_out", i);
  }
  cap (d, "refiner_out", txt);
  return TRUE;
}

/* The norms and q/k/v of one stream of a double block, written into rows [start, start + n) of
 * the joint q, k, v [B, N, hidden]. */
static gboolean
stream_qkv (HvDit *d, const Stream *s, const HvTensor *x, const HvTensor *mods, HvTensor *q,
            HvTensor *k, HvTensor *v, int64_t start, const char *cap_name, GError **error)
{
  const int64_t B = x->shape[0], n = x->shape[1], C = x->shape[2], H = d->info.heads;
  HvTensor shift = chunk (mods, 0), scale = chunk (mods, 1);
  HV_ARENA_SCOPE (d->arena);
  ACT (xm, 3, B, n, C, 0);
  hv_op_layernorm_modulate (d->b, xm, x, &shift, &scale, LN_EPS);
  if (d->capture) {
    ACT (qkv, 3, B, n, 3 * C, 0);
    hv_op_linear (d->b, qkv, xm, s->qkv.w, s->qkv.b);
    cap (d, cap_name, qkv);
  }
  for (int64_t b = 0; b < B; b++) {
    HvTensor xb = rows (xm, b, 0, n, 0);
    HvTensor qb = rows (q, b, start, n, 0), kb = rows (k, b, start, n, 0), vb = rows (v, b, start, n, 0);
    hv_op_linear (d->b, &qb, &xb, s->q.w, s->q.b);
    hv_op_linear (d->b, &kb, &xb, s->k.w, s->k.b);
    hv_op_linear (d->b, &vb, &xb, s->v.w, s->v.b);
    if (s->q_norm) {
      HvTensor q4 = rows (q, b, start, n, H), k4 = rows (k, b, start, n, H);
      hv_op_rmsnorm (d->b, &q4, &q4, s->q_norm, QK_EPS);
      hv_op_rmsnorm (d->b, &k4, &k4, s->k_norm, QK_EPS);
    }
  }
  return TRUE;
}

/* x += gate * proj(attn rows [start, start + n)) */
static gboolean
stream_proj (HvDit *d, HvTensor *x, const HvTensor *attn, int64_t start, const Lin *proj,
             const HvTensor *gate, GError **error)
{
  const int64_t B = x->shape[0], n = x->shape[1], C = x->shape[2];
  HV_ARENA_SCOPE (d->arena);
  ACT (o, 3, B, n, C, 0);
  for (int64_t b = 0; b < B; b++) {
    HvTensor ab = rows (attn, b, start, n, 0), ob = rows (o, b, 0, n, 0);
    hv_op_linear (d->b, &ob, &ab, proj->w, proj->b);
  }
  hv_op_gate_add (d->b, x, o, gate);
  return TRUE;
}

static gboolean
double_block (HvDit *d, int i, HvTensor *img, HvTensor *txt, const HvTensor *svec,
              const HvAttnMask *mask, GError **error)
{
  const DoubleBlock *blk = &d->dblocks[i];
  const int64_t B = img->shape[0], Ni = img->shape[1], L = txt->shape[1], N = Ni + L;
  const int64_t C = d->info.hidden, H = d->info.heads, D = d->info.head_dim;
  char name[64];
  HV_ARENA_SCOPE (d->arena);

  g_snprintf (name, sizeof name, "double%d.img_mod_out", i);
  g_autoptr(HvTensor) im = chunked (d, svec, &blk->img.mod, 6, name, error);
  if (!im)
    return FALSE;
  g_snprintf (name, sizeof name, "double%d.txt_mod_out", i);
  g_autoptr(HvTensor) tm = chunked (d, svec, &blk->txt.mod, 6, name, error);
  if (!tm)
    return FALSE;

  {
    HV_ARENA_SCOPE (d->arena);
    ACT (attn, 3, B, N, C, 0);
    {
      HV_ARENA_SCOPE (d->arena);
      ACT (q, 3, B, N, C, 0);
      ACT (k, 3, B, N, C, 0);
      ACT (v, 3, B, N, C, 0);
      g_snprintf (name, sizeof name, "double%d.img_qkv_out", i);
      if (!stream_qkv (d, &blk->img, img, im, q, k, v, 0, name, error))
        return FALSE;
      g_snprintf (name, sizeof name, "double%d.txt_qkv_out", i);
      if (!stream_qkv (d, &blk->txt, txt, tm, q, k, v, Ni, name, error))
        return FALSE;
      if (!cap_rows (d, error, q, 0, Ni, H, "double%d.img_q_normed", i) ||
          !cap_rows (d, error, k, 0, Ni, H, "double%d.img_k_normed", i) ||
          !cap_rows (d, error, q, Ni, L, H, "double%d.txt_q_normed", i) ||
          !cap_rows (d, error, k, Ni, L, H, "double%d.txt_k_normed", i))
        return FALSE;
      HvTensor q4 = reshaped (q, 4, B, N, H, D), k4 = reshaped (k, 4, B, N, H, D);
      HvTensor v4 = reshaped (v, 4, B, N, H, D), a4 = reshaped (attn, 4, B, N, H, D);
      hv_op_rope (d->b, &q4, d->rope_cos, d->rope_sin, HV_ROPE_INTERLEAVED);
      hv_op_rope (d->b, &k4, d->rope_cos, d->rope_sin, HV_ROPE_INTERLEAVED);
      if (!cap_rows (d, error, q, 0, Ni, H, "double%d.img_q_rope", i) ||
          !cap_rows (d, error, k, 0, Ni, H, "double%d.img_k_rope", i))
        return FALSE;
      hv_op_attention (d->b, &a4, &q4, &k4, &v4, mask, 1.0f / sqrtf ((float) D));
    }
    if (!cap_rows (d, error, attn, 0, Ni, 0, "double%d.img_attn_out", i) ||
        !cap_rows (d, error, attn, Ni, L, 0, "double%d.txt_attn_out", i))
      return FALSE;
    HvTensor ig = chunk (im, 2), tg = chunk (tm, 2);
    if (!stream_proj (d, img, attn, 0, &blk->img.proj, &ig, error) ||
        !stream_proj (d, txt, attn, Ni, &blk->txt.proj, &tg, error))
      return FALSE;
  }
  HvTensor is2 = chunk (im, 3), isc2 = chunk (im, 4), ig2 = chunk (im, 5);
  HvTensor ts2 = chunk (tm, 3), tsc2 = chunk (tm, 4), tg2 = chunk (tm, 5);
  g_snprintf (name, sizeof name, "double%d.img_mlp_out", i);
  if (!gated_mlp (d, img, &is2, &isc2, &ig2, &blk->img.fc1, &blk->img.fc2, NULL, NULL,
                  HV_UNARY_GELU_TANH, name, error))
    return FALSE;
  g_snprintf (name, sizeof name, "double%d.txt_mlp_out", i);
  if (!gated_mlp (d, txt, &ts2, &tsc2, &tg2, &blk->txt.fc1, &blk->txt.fc2, NULL, NULL,
                  HV_UNARY_GELU_TANH, name, error))
    return FALSE;
  capf (d, img, "double%d.img", i);
  capf (d, txt, "double%d.txt", i);
  return TRUE;
}

static gboolean
single_block (HvDit *d, int i, HvTensor *x, const HvTensor *svec, const HvAttnMask *mask,
              GError **error)
{
  const SingleBlock *blk = &d->sblocks[i];
  const int64_t B = x->shape[0], N = x->shape[1];
  const int64_t C = d->info.hidden, H = d->info.heads, D = d->info.head_dim, M = blk->mlp_hidden;
  char name[64];
  HV_ARENA_SCOPE (d->arena);

  g_snprintf (name, sizeof name, "single%d.mod_out", i);
  g_autoptr(HvTensor) mods = chunked (d, svec, &blk->mod, 3, name, error);
  if (!mods)
    return FALSE;
  HvTensor shift = chunk (mods, 0), scale = chunk (mods, 1), gate = chunk (mods, 2);

  ACT (xm, 3, B, N, C, 0);
  hv_op_layernorm_modulate (d->b, xm, x, &shift, &scale, LN_EPS);
  if (d->capture) {
    HV_ARENA_SCOPE (d->arena);
    ACT (l1, 3, B, N, 3 * C + M, 0);
    hv_op_linear (d->b, l1, xm, blk->lin1.w, blk->lin1.b);
    capf (d, l1, "single%d.linear1_out", i);
  }
  ACT (attn, 4, B, N, H, D);
  {
    HV_ARENA_SCOPE (d->arena);
    ACT (q, 4, B, N, H, D);
    ACT (k, 4, B, N, H, D);
    ACT (v, 4, B, N, H, D);
    HvTensor q3 = reshaped (q, 3, B, N, C, 0), k3 = reshaped (k, 3, B, N, C, 0), v3 = reshaped (v, 3, B, N, C, 0);
    hv_op_linear (d->b, &q3, xm, blk->q.w, blk->q.b);
    hv_op_linear (d->b, &k3, xm, blk->k.w, blk->k.b);
    hv_op_linear (d->b, &v3, xm, blk->v.w, blk->v.b);
    if (blk->q_norm) {
      hv_op_rmsnorm (d->b, q, q, blk->q_norm, QK_EPS);
      hv_op_rmsnorm (d->b, k, k, blk->k_norm, QK_EPS);
    }
    capf (d, q, "single%d.q_normed", i);
    capf (d, k, "single%d.k_normed", i);
    /* RoPE on the img rows only: the tables cover the first Ni tokens of every batch item */
    hv_op_rope (d->b, q, d->rope_cos, d->rope_sin, HV_ROPE_INTERLEAVED);
    hv_op_rope (d->b, k, d->rope_cos, d->rope_sin, HV_ROPE_INTERLEAVED);
    hv_op_attention (d->b, attn, q, k, v, mask, 1.0f / sqrtf ((float) D));
  }
  /* x += gate * linear2([attn | gelu_tanh(mlp(xm))]), token chunk by token chunk */
  const gboolean full = d->capture != NULL;
  HvTensor a3 = reshaped (attn, 3, B, N, C, 0);
  g_autoptr(HvTensor) mb = work_buf (d, full, B, N, M, error);
  g_autoptr(HvTensor) cb = mb ? work_buf (d, full, B, N, C + M, error) : NULL;
  g_autoptr(HvTensor) ob = cb ? work_buf (d, full, B, N, C, error) : NULL;
  if (!ob)
    return FALSE;
  for (int64_t b = 0; b < B; b++) {
    HvTensor g = vec_row (&gate, b);
    for (int64_t s = 0; s < N; s += d->row_chunk) {
      const int64_t n = MIN (d->row_chunk, N - s);
      HvTensor xmv = rows (xm, b, s, n, 0), av = rows (&a3, b, s, n, 0), xv = rows (x, b, s, n, 0);
      HvTensor mv = work_rows (mb, full, b, s, n), cv = work_rows (cb, full, b, s, n);
      HvTensor ov = work_rows (ob, full, b, s, n);
      hv_op_linear_act (d->b, &mv, &xmv, blk->mlp.w, blk->mlp.b, HV_UNARY_GELU_TANH);
      hv_op_concat (d->b, &cv, &av, &mv, 2);
      hv_op_linear (d->b, &ov, &cv, blk->lin2.w, blk->lin2.b);
      if (!full)
        hv_op_gate_add (d->b, &xv, &ov, &g);
    }
  }
  if (full) {
    capf (d, cb, "single%d.linear2_in", i);
    hv_op_gate_add (d->b, x, ob, &gate);
  }
  capf (d, x, "single%d.x", i);
  return TRUE;
}

/* ---- patches ------------------------------------------------------------------------------- */

/* patches [B, Ni, C*pt*ph*pw] from x [B, C, T, H, W], feature order (c, o, p, q) as the Conv3d
 * weight [hidden, C, pt, ph, pw] flattens: three 4-d permutes. */
static gboolean
patchify (HvDit *d, HvTensor *patches, const HvTensor *x, GError **error)
{
  const int64_t B = x->shape[0], C = x->shape[1], T = x->shape[2], Hh = x->shape[3], W = x->shape[4];
  const int pt = d->info.patch[0], ph = d->info.patch[1], pw = d->info.patch[2];
  const int64_t Tp = T / pt, Hp = Hh / ph, Wp = W / pw, Ni = Tp * Hp * Wp, P = (int64_t) pt * ph * pw;
  const int perm[4] = { 0, 2, 1, 3 };
  HV_ARENA_SCOPE (d->arena);
  ACT (t1, 4, B * C * T * Hp, Wp, ph, pw);
  HvTensor xv = reshaped (x, 4, B * C * T * Hp, ph, Wp, pw);
  hv_op_permute (d->b, t1, &xv, perm);                 /* b c t h' w' p q */
  g_autoptr(HvTensor) t2 = NULL;
  if (pt > 1) {
    t2 = act (d, error, 4, B * C * Tp, Hp * Wp, pt, (int64_t) ph * pw);
    if (!t2)
      return FALSE;
    HvTensor v = reshaped (t1, 4, B * C * Tp, pt, Hp * Wp, (int64_t) ph * pw);
    hv_op_permute (d->b, t2, &v, perm);                /* b c t' h' w' o p q */
  }
  HvTensor v3 = reshaped (t2 ? t2 : t1, 4, B, C, Ni, P);
  HvTensor pv = reshaped (patches, 4, B, Ni, C, P);
  hv_op_permute (d->b, &pv, &v3, perm);                /* b (t'h'w') c (opq) */
  return TRUE;
}

/* out [B, C, T, H, W] from f [B, Ni, C*pt*ph*pw] (channel c*P + (o*ph + p)*pw + q). */
static gboolean
unpatchify (HvDit *d, HvTensor *out, const HvTensor *f, GError **error)
{
  const int64_t B = out->shape[0], C = out->shape[1], T = out->shape[2], Hh = out->shape[3], W = out->shape[4];
  const int pt = d->info.patch[0], ph = d->info.patch[1], pw = d->info.patch[2];
  const int64_t Tp = T / pt, Hp = Hh / ph, Wp = W / pw, Ni = Tp * Hp * Wp, P = (int64_t) pt * ph * pw;
  const int perm[4] = { 0, 2, 1, 3 };
  HV_ARENA_SCOPE (d->arena);
  ACT (u1, 4, B, C, Ni, P);
  HvTensor fv = reshaped (f, 4, B, Ni, C, P);
  hv_op_permute (d->b, u1, &fv, perm);                 /* b c t' h' w' o p q */
  g_autoptr(HvTensor) u2 = NULL;
  if (pt > 1) {
    u2 = act (d, error, 4, B * C * Tp, pt, Hp * Wp, (int64_t) ph * pw);
    if (!u2)
      return FALSE;
    HvTensor v = reshaped (u1, 4, B * C * Tp, Hp * Wp, pt, (int64_t) ph * pw);
    hv_op_permute (d->b, u2, &v, perm);                /* b c t' o h' w' p q */
  }
  HvTensor v3 = reshaped (u2 ? u2 : u1, 4, B * C * T * Hp, Wp, ph, pw);
  HvTensor ov = reshaped (out, 4, B * C * T * Hp, ph, Wp, pw);
  hv_op_permute (d->b, &ov, &v3, perm);                /* b c t h' p w' q */
  return TRUE;
}

static gboolean
ensure_rope (HvDit *d, int64_t t, int64_t h, int64_t w, GError **error)
{
  if (d->rope_cos && d->rope_grid[0] == t && d->rope_grid[1] == h && d->rope_grid[2] == w)
    return TRUE;
  g_clear_pointer (&d->rope_cos, hv_tensor_free);
  g_clear_pointer (&d->rope_sin, hv_tensor_free);
  g_autoptr(HvTensor) c = NULL;
  g_autoptr(HvTensor) s = NULL;
  if (!hv_rope_3d (d->info.rope_dim, d->info.rope_theta, t, h, w, &c, &s, error))
    return FALSE;
  d->rope_cos = hv_backend_upload (d->b, c);
  d->rope_sin = hv_backend_upload (d->b, s);
  if (!d->rope_cos || !d->rope_sin) {
    g_clear_pointer (&d->rope_cos, hv_tensor_free);
    g_clear_pointer (&d->rope_sin, hv_tensor_free);
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory for the RoPE tables", d->b->name);
    return FALSE;
  }
  d->rope_grid[0] = t;
  d->rope_grid[1] = h;
  d->rope_grid[2] = w;
  cap (d, "rope_cos", d->rope_cos);
  cap (d, "rope_sin", d->rope_sin);
  return TRUE;
}

/* ---- activation memory ---------------------------------------------------------------------- */

/* Arena bytes of `n` floats (or bytes, for the u8 mask), rounded as the arena rounds. */
#define F4(n) hv_arena_size ((gsize) (n) * 4)
#define U1(n) hv_arena_size ((gsize) (n))

/* The peak of the arena's bump pointer over one forward, phase by phase in the order the
 * forward allocates (each phase: what is live below it + its own peak). It follows the code
 * above allocation by allocation: test-arena checks that a forward never falls back and that
 * this equals the measured peak, so a change to the forward's allocations must come with the
 * matching change here. */
gsize
hv_dit_activation_bytes (HvDit *d, int64_t B, int64_t Ni, int64_t L)
{
  g_return_val_if_fail (d != NULL && B > 0 && Ni > 0 && L > 0, 0);
  const HvDitInfo *in = &d->info;
  const gboolean cap = d->capture != NULL;
  const int64_t C = in->hidden, N = Ni + L, F = in->freq_dim;
  const int64_t P = (int64_t) in->patch[0] * in->patch[1] * in->patch[2];
  /* rows of the MLP work buffers (work_buf): whole sequences when capturing, else one chunk */
  const int64_t ck = d->row_chunk;
#define ROWS(n) (cap ? B * (n) : MIN ((n), ck))

  /* embeddings: vec, tfreq stay; e, gfreq and an MLP hidden [B, C] on top */
  gsize bottom = F4 (B * C) + F4 (B * F);
  gsize peak = bottom + F4 (B * C) + (in->guidance_embed ? F4 (B * F) : 0) + F4 (B * C);
  bottom += F4 (B * N);                                             /* segs (i32) */

  /* img = img_in(patches); patchify's one or two permuted copies of x */
  const gsize img = F4 (B * Ni * C), txt = F4 (B * L * C), xs = F4 (B * N * C);
  const gsize px = F4 (B * Ni * in->in_channels * P);
  peak = MAX (peak, bottom + img + px + px + (in->patch[0] > 1 ? px : 0));

  /* txt: the token refiner (or the linear projection's hidden) with img and txt below */
  gsize base = bottom + img + txt;
  if (d->refiner) {
    const gsize c = F4 (B * C), m2 = F4 (B * 2 * C), blc = F4 (B * L * C);
    gsize blk = 0;
    for (int i = 0; i < in->depth_refiner; i++) {
      const int64_t Mr = d->rblocks[i].fc1.w->shape[0];
      gsize attn = 3 * blc + MAX (blc + (cap ? F4 (B * L * 3 * C) : 0), 2 * blc);
      gsize mlp = F4 (ROWS (L) * C) * 2 + F4 (ROWS (L) * Mr);
      blk = MAX (blk, m2 + MAX (m2, MAX (attn, mlp)));               /* gates + the rest */
    }
    gsize embed = F4 (B * in->text_dim) + F4 (B * C) + F4 (B * C);  /* mean, cc, MLP hidden */
    peak = MAX (peak, base + c + MAX (embed, U1 (B * L * L) + blk));
  } else {
    peak = MAX (peak, base + txt);
  }

  /* double blocks on img, txt: 6 modulation vectors per stream, then attention, then MLPs */
  {
    const gsize mods = 2 * F4 (6 * B * C), m6 = F4 (B * 6 * C);
    const gsize xm_i = F4 (B * Ni * C), xm_t = F4 (B * L * C);
    gsize qkv = MAX (xm_i + (cap ? F4 (B * Ni * 3 * C) : 0), xm_t + (cap ? F4 (B * L * 3 * C) : 0));
    /* attn, then q, k, v with one stream's xm; after them a projection output (or a capture) */
    gsize attn = xs + MAX (3 * xs + qkv, MAX (xm_i, xm_t));
    gsize mlp = 0;
    const int64_t n_rows[2] = { Ni, L };
    for (int s = 0; s < 2; s++)
      mlp = MAX (mlp, F4 (ROWS (n_rows[s]) * C) * 2 + F4 (ROWS (n_rows[s]) * in->mlp_hidden));
    if (in->depth_double > 0)
      peak = MAX (peak, base + mods + MAX (m6, MAX (attn, mlp)));
  }

  /* xs made above img and txt, then moved down into their place */
  peak = MAX (peak, base + xs);
  base = bottom + xs;

  /* single blocks on xs: 3 modulation vectors, xm, attention, then the chunked MLP */
  for (int i = 0; i < in->depth_single; i++) {
    const int64_t M = d->sblocks[i].mlp_hidden;
    const gsize mods = F4 (3 * B * C), m3 = F4 (B * 3 * C);
    gsize mlp = F4 (ROWS (N) * M) + F4 (ROWS (N) * (C + M)) + F4 (ROWS (N) * C);
    gsize after_xm = MAX (cap ? F4 (B * N * (3 * C + M)) : 0, xs + MAX (3 * xs, mlp));
    peak = MAX (peak, base + mods + MAX (m3, xs + after_xm));
  }

  /* final layer: 2 modulation vectors, its output, then the normed rows or unpatchify */
  {
    const gsize fm = F4 (2 * B * C), fo = F4 (B * Ni * in->out_channels * P);
    peak = MAX (peak, base + fm + MAX (F4 (B * 2 * C),
                                        fo + MAX (F4 (B * Ni * C), fo + (in->patch[0] > 1 ? fo : 0))));
  }
#undef ROWS
  return peak;
}

#undef F4
#undef U1

/* A new, empty arena without a block (the next forward sizes it, unless the arena is off). */
static void
drop_arena (HvDit *d)
{
  hv_arena_free (d->arena);
  d->arena = hv_arena_new (d->b, 0, NULL);
}

void
hv_dit_set_arena (HvDit *d, gboolean on)
{
  g_return_if_fail (d != NULL);
  d->arena_off = !on;
  if (!on)   /* every activation is then allocated on its own */
    drop_arena (d);
}

void
hv_dit_trim_memory (HvDit *d)
{
  g_return_if_fail (d != NULL);
  drop_arena (d);
  g_clear_pointer (&d->rope_cos, hv_tensor_free);
  g_clear_pointer (&d->rope_sin, hv_tensor_free);
}

void
hv_dit_arena_stats (HvDit *d, HvArenaStats *st)
{
  g_return_if_fail (d != NULL && st != NULL);
  hv_arena_stats (d->arena, st);
}

void
hv_dit_clear_arena_stats (HvDit *d)
{
  g_return_if_fail (d != NULL);
  hv_arena_clear_stats (d->arena);
}

/* ---- forward ------------------------------------------------------------------------------- */

static gboolean
check_inputs (HvDit *d, const HvTensor *out, const HvTensor *x, const float *t, const float *guidance,
              const HvTensor *ts, const int32_t *mask, const HvTensor *ts2, GError **error)
{
  const HvDitInfo *in = &d->info;
  char b1[80], b2[80];
  if (!out || !x || !t || !ts || !mask || !ts2) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "DiT forward: an input is missing");
    return FALSE;
  }
  if (in->guidance_embed && !guidance) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "this DiT is guidance-distilled: it needs an embedded guidance value");
    return FALSE;
  }
  const HvTensor *all[4] = { out, x, ts, ts2 };
  for (int i = 0; i < 4; i++)
    if (all[i]->dtype != HV_DTYPE_F32 || !hv_tensor_is_contiguous (all[i]) ||
        (all[i]->backend != d->b && !(hv_backend_is_host (d->b) && (!all[i]->backend || hv_backend_is_host (all[i]->backend))))) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "DiT forward: inputs and output must be contiguous f32 tensors on the %s backend", d->b->name);
      return FALSE;
    }
  if (x->ndim != 5 || x->shape[1] != in->in_channels || x->shape[0] < 1) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "DiT input latent is %s; expected [B, %d, T, H, W]",
                 hv_tensor_shape_str (x, b1, sizeof b1), in->in_channels);
    return FALSE;
  }
  const int64_t B = x->shape[0];
  for (int i = 0; i < 3; i++)
    if (x->shape[2 + i] % in->patch[i] || x->shape[2 + i] < in->patch[i]) {
      g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "DiT input latent %s: T, H, W must be positive multiples of the patch %dx%dx%d",
                   hv_tensor_shape_str (x, b1, sizeof b1), in->patch[0], in->patch[1], in->patch[2]);
      return FALSE;
    }
  if (out->ndim != 5 || out->shape[0] != B || out->shape[1] != in->out_channels ||
      out->shape[2] != x->shape[2] || out->shape[3] != x->shape[3] || out->shape[4] != x->shape[4]) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "DiT output is %s; expected [%" G_GINT64_FORMAT ", %d, %" G_GINT64_FORMAT
                 ", %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", hv_tensor_shape_str (out, b1, sizeof b1), B,
                 in->out_channels, x->shape[2], x->shape[3], x->shape[4]);
    return FALSE;
  }
  if (ts->ndim != 3 || ts->shape[0] != B || ts->shape[2] != in->text_dim || ts->shape[1] < 1 ||
      ts2->ndim != 2 || ts2->shape[0] != B || ts2->shape[1] != in->text_dim_2) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "DiT text inputs are %s and %s; expected [%" G_GINT64_FORMAT
                 ", L, %d] and [%" G_GINT64_FORMAT ", %d]", hv_tensor_shape_str (ts, b1, sizeof b1),
                 hv_tensor_shape_str (ts2, b2, sizeof b2), B, in->text_dim, B, in->text_dim_2);
    return FALSE;
  }
  for (int64_t b = 0; b < B; b++) {
    int64_t n = 0;
    for (int64_t l = 0; l < ts->shape[1]; l++)
      n += mask[b * ts->shape[1] + l] != 0;
    if (n == 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "text mask of batch item %" G_GINT64_FORMAT
                   " has no valid token (the prompt encoding is empty)", b);
      return FALSE;
    }
    if (!isfinite (t[b]) || (guidance && !isfinite (guidance[b]))) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "timestep or guidance of batch item %" G_GINT64_FORMAT " is not finite", b);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
hv_dit_forward (HvDit *d, HvTensor *out, const HvTensor *x, const float *t, const float *guidance,
                const HvTensor *text_states, const int32_t *text_mask, const HvTensor *text_states_2,
                GError **error)
{
  g_return_val_if_fail (d != NULL, FALSE);
  if (!check_inputs (d, out, x, t, guidance, text_states, text_mask, text_states_2, error))
    return FALSE;
  const HvDitInfo *in = &d->info;
  const int64_t B = x->shape[0], C = in->hidden, L = text_states->shape[1];
  const int64_t Tp = x->shape[2] / in->patch[0], Hp = x->shape[3] / in->patch[1], Wp = x->shape[4] / in->patch[2];
  const int64_t Ni = Tp * Hp * Wp, N = Ni + L;
  const int64_t P = (int64_t) in->patch[0] * in->patch[1] * in->patch[2];

  if (!ensure_rope (d, Tp, Hp, Wp, error))
    return FALSE;

  /* Every activation below comes from the arena, sized for this token count (a no-op after the
   * first step). If the block cannot be had, the forward still runs: what does not fit is
   * allocated tensor by tensor, as before the arena. */
  hv_arena_reset (d->arena);
  if (!d->arena_off) {
    g_autoptr(GError) local = NULL;
    if (!hv_arena_reserve (d->arena, hv_dit_activation_bytes (d, B, Ni, L), &local))
      g_debug ("DiT forward without its arena: %s", local->message);
  }
  HV_ARENA_SCOPE (d->arena);

  /* vec = time_in(t) + vector_in(text_states_2) + guidance_in(guidance) */
  ACT (vec, 2, B, C, 0, 0);
  g_autoptr(HvTensor) tfreq = timestep_freq (d, t, B, error);
  if (!tfreq || !mlp2 (d, vec, tfreq, &d->time_in, error))
    return FALSE;
  cap (d, "time_in_out", vec);
  {
    HV_ARENA_SCOPE (d->arena);
    ACT (e, 2, B, C, 0, 0);
    if (!mlp2 (d, e, text_states_2, &d->vector_in, error))
      return FALSE;
    cap (d, "vector_in_out", e);
    hv_op_add (d->b, vec, vec, e);
    if (in->guidance_embed) {
      g_autoptr(HvTensor) gfreq = timestep_freq (d, guidance, B, error);
      if (!gfreq || !mlp2 (d, e, gfreq, &d->guidance_in, error))
        return FALSE;
      cap (d, "guidance_in_out", e);
      hv_op_add (d->b, vec, vec, e);
    }
  }
  cap (d, "vec", vec);

  /* varlen segments: 1 = img + the first n_valid text tokens, 2 = the padded text tokens. Made
   * before img and txt so that these two are the top of the arena when the single blocks'
   * input replaces them (below). */
  g_autoptr(HvTensor) cu = hv_tensor_new_4 (HV_DTYPE_I32, 1, 2 * B + 1, 0, 0, 0);
  HvTensor *sh = hv_tensor_new_4 (HV_DTYPE_I32, 2, B, N, 0, 0);
  int32_t *seg = sh->data, *cus = cu->data;
  cus[0] = 0;
  for (int64_t b = 0; b < B; b++) {
    int64_t nv = 0;
    for (int64_t l = 0; l < L; l++)
      nv += text_mask[b * L + l] != 0;
    for (int64_t j = 0; j < N; j++)
      seg[b * N + j] = j < Ni + nv ? 1 : 2;
    cus[2 * b + 1] = (int32_t) (b * N + Ni + nv);
    cus[2 * b + 2] = (int32_t) ((b + 1) * N);
  }
  g_autoptr(HvTensor) segs = upload_or_fail (d, sh, error);
  if (!segs)
    return FALSE;
  const HvAttnMask mask = { .seg_q = segs, .seg_k = segs };
  const HvArenaMark streams_mark = hv_arena_mark (d->arena);

  ACT (img, 3, B, Ni, C, 0);
  {
    HV_ARENA_SCOPE (d->arena);
    ACT (patches, 3, B, Ni, in->in_channels * P, 0);
    if (!patchify (d, patches, x, error))
      return FALSE;
    hv_op_linear (d->b, img, patches, d->img_in.w, d->img_in.b);
  }
  cap (d, "img_in_out", img);

  ACT (txt, 3, B, L, C, 0);
  if (d->refiner) {
    if (!refiner (d, txt, text_states, tfreq, text_mask, error))
      return FALSE;
  } else {
    HV_ARENA_SCOPE (d->arena);
    ACT (h, 3, B, L, C, 0);
    hv_op_linear (d->b, h, text_states, d->txt_linear.l1.w, d->txt_linear.l1.b);
    hv_op_unary (d->b, h, h, HV_UNARY_SILU);
    hv_op_linear (d->b, txt, h, d->txt_linear.l2.w, d->txt_linear.l2.b);
  }
  g_clear_pointer (&tfreq, hv_tensor_free);
  cap (d, "cu_seqlens", cu);

  hv_op_unary (d->b, vec, vec, HV_UNARY_SILU);   /* every modulation reads SiLU(vec) */
  for (int i = 0; i < in->depth_double; i++) {
    if (!double_block (d, i, img, txt, vec, &mask, error) || !hv_backend_check (d->b, error))
      return FALSE;
  }

  /* xs = [img; txt] is made above them, then moved down into their place: the single blocks
   * run without the dead img and txt underneath (one exact copy of B x N x hidden) */
  g_autoptr(HvTensor) xs = act (d, error, 3, B, N, C, 0);
  if (!xs)
    return FALSE;
  hv_op_concat (d->b, xs, img, txt, 1);
  g_clear_pointer (&img, hv_tensor_free);
  g_clear_pointer (&txt, hv_tensor_free);
  xs = hv_arena_move_down (d->arena, streams_mark, g_steal_pointer (&xs));
  if (!xs) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory for the single blocks' input", d->b->name);
    return FALSE;
  }
  for (int i = 0; i < in->depth_single; i++) {
    if (!single_block (d, i, xs, vec, &mask, error) || !hv_backend_check (d->b, error))
      return FALSE;
  }

  /* final layer on the img rows: shift first, then scale */
  g_autoptr(HvTensor) fm = chunked (d, vec, &d->final_mod, 2, NULL, error);
  if (!fm)
    return FALSE;
  HvTensor shift = chunk (fm, 0), scale = chunk (fm, 1);
  ACT (fo, 3, B, Ni, in->out_channels * P, 0);
  {
    HV_ARENA_SCOPE (d->arena);
    ACT (xi, 3, B, Ni, C, 0);
    hv_op_slice (d->b, xi, xs, 1, 0);
    g_clear_pointer (&xs, hv_tensor_free);
    hv_op_layernorm_modulate (d->b, xi, xi, &shift, &scale, LN_EPS);
    hv_op_linear (d->b, fo, xi, d->final_lin.w, d->final_lin.b);
  }
  cap (d, "final_layer_out", fo);
  if (!unpatchify (d, out, fo, error))
    return FALSE;
  return hv_backend_check (d->b, error);
}
