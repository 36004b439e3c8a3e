/* hv-validate.c — expected tensor sets of the DiT, the VAE and the text encoders, generated
 * from their configs, and one report of everything that does not match. */
#include "hv-layout.h"
#include "hv-blob.h"
#include "../hv-error.h"
#include <string.h>

/* ---- the report ---------------------------------------------------------------------------- */

typedef struct {
  int ndim;
  int64_t shape[HV_MAX_DIMS];
  gboolean optional;
} Want;

typedef struct {
  HvStore *s;
  const char *prefix;       /* every store name carries it (e.g. "model."), or "" */
  GHashTable *want;         /* full store name -> Want* */
  GPtrArray *order;         /* names in generation order */
  const char *const *ignore;/* store-name prefixes/suffixes that are never unexpected */
} Check;

static void
check_init (Check *c, HvStore *s, const char *prefix)
{
  memset (c, 0, sizeof *c);
  c->s = s;
  c->prefix = prefix ? prefix : "";
  c->want = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  c->order = g_ptr_array_new ();
}

static void
check_clear (Check *c)
{
  g_ptr_array_unref (c->order);
  g_hash_table_unref (c->want);
}

static void
want_v (Check *c, gboolean optional, const char *name, int ndim, const int64_t *shape)
{
  Want *w = g_new0 (Want, 1);
  w->ndim = ndim;
  w->optional = optional;
  memcpy (w->shape, shape, sizeof (int64_t) * (gsize) ndim);
  char *full = g_strconcat (c->prefix, name, NULL);
  if (!g_hash_table_contains (c->want, full))
    g_ptr_array_add (c->order, full);
  g_hash_table_insert (c->want, full, w);
}

/* want (c, "name", ndim, d0, d1, ...) */
static void
want (Check *c, const char *name, int ndim, ...)
{
  int64_t shape[HV_MAX_DIMS];
  va_list ap;
  va_start (ap, ndim);
  for (int i = 0; i < ndim; i++)
    shape[i] = va_arg (ap, int64_t);
  va_end (ap);
  want_v (c, FALSE, name, ndim, shape);
}

#define W1(name, a) want (c, name, 1, (int64_t) (a))
#define W2(name, a, b) want (c, name, 2, (int64_t) (a), (int64_t) (b))
#define W5(name, a, b, d, e, f) want (c, name, 5, (int64_t) (a), (int64_t) (b), (int64_t) (d), (int64_t) (e), (int64_t) (f))

static gboolean
ignored (const Check *c, const char *name)
{
  for (guint i = 0; c->ignore && c->ignore[i]; i++) {
    const char *p = c->ignore[i];
    if (p[0] == '*' ? g_str_has_suffix (name, p + 1) : g_str_has_prefix (name, p))
      return TRUE;
  }
  return FALSE;
}

/* `extra` (may be NULL) checks each present tensor and appends its own problems. */
static gboolean
check_finish (Check *c, const char *what,
              void (*extra) (const char *name, const HvTensor *t, GString *problems),
              GError **error)
{
  g_autoptr(GString) missing = g_string_new (NULL), shaped = g_string_new (NULL);
  g_autoptr(GString) unexpected = g_string_new (NULL), other = g_string_new (NULL);
  guint n_missing = 0, n_shaped = 0, n_unexpected = 0;
  char a[96], b[96];
  for (guint i = 0; i < c->order->len; i++) {
    const char *name = c->order->pdata[i];
    const Want *w = g_hash_table_lookup (c->want, name);
    const HvTensor *t = hv_store_get (c->s, name);
    if (!t) {
      if (!w->optional) {
        g_string_append_printf (missing, "\n    %s %s", name, hv_shape_str (w->ndim, w->shape, a, sizeof a));
        n_missing++;
      }
      continue;
    }
    gboolean ok = t->ndim == w->ndim;
    for (int d = 0; ok && d < w->ndim; d++)
      ok = t->shape[d] == w->shape[d];
    if (!ok) {
      g_string_append_printf (shaped, "\n    %s is %s, expected %s", name, hv_tensor_shape_str (t, a, sizeof a),
                              hv_shape_str (w->ndim, w->shape, b, sizeof b));
      n_shaped++;
    }
    if (extra)
      extra (name, t, other);
  }
  const char **names = hv_store_names (c->s);
  for (guint i = 0; names[i]; i++)
    if (!g_hash_table_contains (c->want, names[i]) && !ignored (c, names[i])) {
      g_string_append_printf (unexpected, "\n    %s %s", names[i],
                              hv_tensor_shape_str (hv_store_get (c->s, names[i]), a, sizeof a));
      n_unexpected++;
    }
  if (!n_missing && !n_shaped && !n_unexpected && !other->len)
    return TRUE;
  g_autoptr(GString) msg = g_string_new (NULL);
  g_string_append_printf (msg, "%s: %s does not match its config:", hv_store_path (c->s) ? hv_store_path (c->s) : "weights", what);
  if (n_missing)
    g_string_append_printf (msg, "\n  %u missing:%s", n_missing, missing->str);
  if (n_shaped)
    g_string_append_printf (msg, "\n  %u with the wrong shape:%s", n_shaped, shaped->str);
  if (n_unexpected)
    g_string_append_printf (msg, "\n  %u unexpected:%s", n_unexpected, unexpected->str);
  if (other->len)
    g_string_append_printf (msg, "\n  other problems:%s", other->str);
  g_set_error_literal (error, HV_ERROR, n_missing && !n_shaped ? HV_ERROR_NOT_FOUND : HV_ERROR_SHAPE, msg->str);
  return FALSE;
}

/* ---- config helpers ------------------------------------------------------------------------ */

/* An integer `key` at the top of `o` or one or two object levels down (configs nest it under
 * "model", "official_constructor", "text_config"...). */
static gboolean
find_int (JsonObject *o, const char *key, int depth, gint64 *out)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n && JSON_NODE_HOLDS_VALUE (n)) {
    GType t = json_node_get_value_type (n);
    if (t == G_TYPE_INT64 || t == G_TYPE_BOOLEAN || t == G_TYPE_DOUBLE) {
      *out = t == G_TYPE_INT64 ? json_node_get_int (n) : t == G_TYPE_BOOLEAN ? json_node_get_boolean (n)
                                                                            : (gint64) json_node_get_double (n);
      return TRUE;
    }
  }
  if (depth <= 0)
    return FALSE;
  g_autoptr(GList) members = json_object_get_members (o);
  for (GList *l = members; l; l = l->next) {
    JsonNode *c = json_object_get_member (o, l->data);
    if (JSON_NODE_HOLDS_OBJECT (c) && find_int (json_node_get_object (c), key, depth - 1, out))
      return TRUE;
  }
  return FALSE;
}

static JsonObject *
load_config (const char *path, JsonParser **parser, GError **error)
{
  *parser = hv_json_load (path, 64u * 1024 * 1024, error);
  if (!*parser)
    return NULL;
  JsonNode *root = json_parser_get_root (*parser);
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: config is not a JSON object", path);
    g_clear_object (parser);
    return NULL;
  }
  return json_node_get_object (root);
}

static int
dim (HvStore *s, const char *name, int d, int fallback)
{
  const HvTensor *t = hv_store_get (s, name);
  return t && d < t->ndim ? (int) t->shape[d] : fallback;
}

/* ---- DiT ------------------------------------------------------------------------------------ */

gboolean
hv_dit_shape_derive (HvStore *s, const char *config_json, HvDitShape *c, GError **error)
{
  memset (c, 0, sizeof *c);
  const HvTensor *img = hv_store_get (s, "img_in.proj.weight");
  if (!img || img->ndim != 5) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: not a HunyuanVideo DiT (no 5-D img_in.proj.weight)",
                 hv_store_path (s) ? hv_store_path (s) : "weights");
    return FALSE;
  }
  int H = c->hidden = (int) img->shape[0];
  c->in_channels = (int) img->shape[1];
  for (int i = 0; i < 3; i++)
    c->patch[i] = (int) img->shape[2 + i];
  c->n_double = hv_store_count_blocks (s, "double_blocks.");
  c->n_single = hv_store_count_blocks (s, "single_blocks.");
  c->n_refiner = hv_store_count_blocks (s, "txt_in.individual_token_refiner.blocks.");
  c->head_dim = dim (s, "double_blocks.0.img_attn_q_norm.weight", 0, dim (s, "single_blocks.0.q_norm.weight", 0, 0));
  c->mlp_hidden = dim (s, "double_blocks.0.img_mlp.fc1.weight", 0, 0);
  if (!c->mlp_hidden && hv_store_get (s, "single_blocks.0.linear1.weight"))
    c->mlp_hidden = dim (s, "single_blocks.0.linear1.weight", 0, 0) - 3 * H;
  if (c->mlp_hidden <= 0)
    c->mlp_hidden = 4 * H;
  c->refiner_mlp_hidden = dim (s, "txt_in.individual_token_refiner.blocks.0.mlp.fc1.weight", 0, 4 * H);
  int pp = c->patch[0] * c->patch[1] * c->patch[2];
  int fo = dim (s, "final_layer.linear.weight", 0, 0);
  c->out_channels = pp > 0 && fo > 0 && fo % pp == 0 ? fo / pp : c->in_channels;
  c->text_dim = dim (s, "txt_in.input_embedder.weight", 1, 4096);
  c->text_dim_2 = dim (s, "vector_in.in_layer.weight", 1, 768);
  c->freq_dim = dim (s, "time_in.mlp.0.weight", 1, 256);
  c->guidance_embed = hv_store_get (s, "guidance_in.mlp.0.weight") != NULL;

  if (config_json) {
    g_autoptr(JsonParser) parser = NULL;
    JsonObject *o = load_config (config_json, &parser, error);
    if (!o)
      return FALSE;
    gint64 v, hd;
    if (find_int (o, "heads_num", 2, &v) || find_int (o, "num_attention_heads", 2, &v)) {
      if (v <= 0 || H % v) {
        g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: %" G_GINT64_FORMAT " heads do not divide hidden size %d",
                     config_json, v, H);
        return FALSE;
      }
      if (c->head_dim && H / v != c->head_dim) {
        g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: %" G_GINT64_FORMAT " heads give head_dim %" G_GINT64_FORMAT
                     " but the q-norm weights have %d", config_json, v, H / v, c->head_dim);
        return FALSE;
      }
      if (find_int (o, "attention_head_dim", 2, &hd) && hd * v != H) {
        g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: heads x head_dim = %" G_GINT64_FORMAT " but hidden is %d",
                     config_json, hd * v, H);
        return FALSE;
      }
      c->heads = (int) v;
      c->head_dim = H / c->heads;
      c->heads_from_config = TRUE;
    }
    /* depths from the config, so a file missing whole trailing blocks is caught */
    if (find_int (o, "mm_double_blocks_depth", 2, &v) || find_int (o, "num_layers", 2, &v))
      c->n_double = (int) v;
    if (find_int (o, "mm_single_blocks_depth", 2, &v) || find_int (o, "num_single_layers", 2, &v))
      c->n_single = (int) v;
    if (find_int (o, "token_refiner_depth", 2, &v) || find_int (o, "num_refiner_layers", 2, &v))
      c->n_refiner = (int) v;
    if (find_int (o, "guidance_embed", 2, &v) || find_int (o, "guidance_embeds", 2, &v))
      c->guidance_embed = v != 0;
  }
  if (!c->heads) {
    if (!c->head_dim)
      c->head_dim = H % 128 == 0 ? 128 : 0;   /* the released models: 24 heads × 128 */
    if (!c->head_dim || H % c->head_dim) {
      g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: cannot tell the head count of hidden size %d "
                   "(no q-norm weights, no config)", hv_store_path (s) ? hv_store_path (s) : "weights", H);
      return FALSE;
    }
    c->heads = H / c->head_dim;
  }
  return TRUE;
}

static void
dit_want (Check *c, const HvDitShape *g)
{
  int H = g->hidden, M = g->mlp_hidden, hd = g->head_dim, R = g->refiner_mlp_hidden;
  char n[160];
#define P(...) (g_snprintf (n, sizeof n, __VA_ARGS__), n)
  W5 ("img_in.proj.weight", H, g->in_channels, g->patch[0], g->patch[1], g->patch[2]);
  W1 ("img_in.proj.bias", H);
  W2 ("txt_in.input_embedder.weight", H, g->text_dim);
  W1 ("txt_in.input_embedder.bias", H);
  W2 ("txt_in.t_embedder.mlp.0.weight", H, g->freq_dim);
  W1 ("txt_in.t_embedder.mlp.0.bias", H);
  W2 ("txt_in.t_embedder.mlp.2.weight", H, H);
  W1 ("txt_in.t_embedder.mlp.2.bias", H);
  W2 ("txt_in.c_embedder.linear_1.weight", H, g->text_dim);
  W1 ("txt_in.c_embedder.linear_1.bias", H);
  W2 ("txt_in.c_embedder.linear_2.weight", H, H);
  W1 ("txt_in.c_embedder.linear_2.bias", H);
  for (int i = 0; i < g->n_refiner; i++) {
    const char *b = "txt_in.individual_token_refiner.blocks";
    W1 (P ("%s.%d.norm1.weight", b, i), H);
    W1 (P ("%s.%d.norm1.bias", b, i), H);
    W2 (P ("%s.%d.self_attn_qkv.weight", b, i), 3 * H, H);
    W1 (P ("%s.%d.self_attn_qkv.bias", b, i), 3 * H);
    W2 (P ("%s.%d.self_attn_proj.weight", b, i), H, H);
    W1 (P ("%s.%d.self_attn_proj.bias", b, i), H);
    W1 (P ("%s.%d.norm2.weight", b, i), H);
    W1 (P ("%s.%d.norm2.bias", b, i), H);
    W2 (P ("%s.%d.mlp.fc1.weight", b, i), R, H);
    W1 (P ("%s.%d.mlp.fc1.bias", b, i), R);
    W2 (P ("%s.%d.mlp.fc2.weight", b, i), H, R);
    W1 (P ("%s.%d.mlp.fc2.bias", b, i), H);
    W2 (P ("%s.%d.adaLN_modulation.1.weight", b, i), 2 * H, H);
    W1 (P ("%s.%d.adaLN_modulation.1.bias", b, i), 2 * H);
  }
  static const char *const embedders[] = { "time_in", "guidance_in" };
  for (int e = 0; e < (g->guidance_embed ? 2 : 1); e++) {
    W2 (P ("%s.mlp.0.weight", embedders[e]), H, g->freq_dim);
    W1 (P ("%s.mlp.0.bias", embedders[e]), H);
    W2 (P ("%s.mlp.2.weight", embedders[e]), H, H);
    W1 (P ("%s.mlp.2.bias", embedders[e]), H);
  }
  W2 ("vector_in.in_layer.weight", H, g->text_dim_2);
  W1 ("vector_in.in_layer.bias", H);
  W2 ("vector_in.out_layer.weight", H, H);
  W1 ("vector_in.out_layer.bias", H);
  static const char *const streams[] = { "img", "txt" };
  for (int i = 0; i < g->n_double; i++)
    for (int s = 0; s < 2; s++) {
      const char *x = streams[s];
      W2 (P ("double_blocks.%d.%s_mod.linear.weight", i, x), 6 * H, H);
      W1 (P ("double_blocks.%d.%s_mod.linear.bias", i, x), 6 * H);
      W2 (P ("double_blocks.%d.%s_attn_qkv.weight", i, x), 3 * H, H);
      W1 (P ("double_blocks.%d.%s_attn_qkv.bias", i, x), 3 * H);
      W1 (P ("double_blocks.%d.%s_attn_q_norm.weight", i, x), hd);
      W1 (P ("double_blocks.%d.%s_attn_k_norm.weight", i, x), hd);
      W2 (P ("double_blocks.%d.%s_attn_proj.weight", i, x), H, H);
      W1 (P ("double_blocks.%d.%s_attn_proj.bias", i, x), H);
      W2 (P ("double_blocks.%d.%s_mlp.fc1.weight", i, x), M, H);
      W1 (P ("double_blocks.%d.%s_mlp.fc1.bias", i, x), M);
      W2 (P ("double_blocks.%d.%s_mlp.fc2.weight", i, x), H, M);
      W1 (P ("double_blocks.%d.%s_mlp.fc2.bias", i, x), H);
    }
  for (int i = 0; i < g->n_single; i++) {
    W2 (P ("single_blocks.%d.linear1.weight", i), 3 * H + M, H);
    W1 (P ("single_blocks.%d.linear1.bias", i), 3 * H + M);
    W2 (P ("single_blocks.%d.linear2.weight", i), H, H + M);
    W1 (P ("single_blocks.%d.linear2.bias", i), H);
    W1 (P ("single_blocks.%d.q_norm.weight", i), hd);
    W1 (P ("single_blocks.%d.k_norm.weight", i), hd);
    W2 (P ("single_blocks.%d.modulation.linear.weight", i), 3 * H, H);
    W1 (P ("single_blocks.%d.modulation.linear.bias", i), 3 * H);
  }
  int po = g->patch[0] * g->patch[1] * g->patch[2] * g->out_channels;
  W2 ("final_layer.linear.weight", po, H);
  W1 ("final_layer.linear.bias", po);
  W2 ("final_layer.adaLN_modulation.1.weight", 2 * H, H);
  W1 ("final_layer.adaLN_modulation.1.bias", 2 * H);
#undef P
}

static void
dit_dtype (const char *name, const HvTensor *t, GString *problems)
{
  if (!hv_dtype_is_float (t->dtype)) {
    g_string_append_printf (problems, "\n    %s has dtype %s, expected a float type", name, hv_dtype_name (t->dtype));
    return;
  }
  gboolean fp8 = t->dtype == HV_DTYPE_F8_E4M3 || t->dtype == HV_DTYPE_F8_E5M2;
  gboolean block_linear = (g_str_has_prefix (name, "double_blocks.") || g_str_has_prefix (name, "single_blocks.")) &&
                          g_str_has_suffix (name, ".weight") && t->ndim == 2;
  if (fp8 && !block_linear)
    g_string_append_printf (problems, "\n    %s is fp8, which only block Linear weights may be", name);
}

gboolean
hv_dit_validate (HvStore *s, const HvDitShape *g, GError **error)
{
  Check c;
  check_init (&c, s, "");
  dit_want (&c, g);
  gboolean ok = check_finish (&c, "DiT", dit_dtype, error);
  check_clear (&c);
  return ok;
}

void
hv_dit_expected (const HvDitShape *g, void (*fn) (const char *, int, const int64_t *, gpointer), gpointer data)
{
  g_autoptr(HvStore) empty = hv_store_new ();
  Check c;
  check_init (&c, empty, "");
  dit_want (&c, g);
  for (guint i = 0; i < c.order->len; i++) {
    const Want *w = g_hash_table_lookup (c.want, c.order->pdata[i]);
    fn (c.order->pdata[i], w->ndim, w->shape, data);
  }
  check_clear (&c);
}

/* ---- VAE ------------------------------------------------------------------------------------ */

static void
vae_resnet (Check *c, const char *p, int cin, int cout)
{
  char n[200];
#define P(x) (g_snprintf (n, sizeof n, "%s." x, p), n)
  W1 (P ("norm1.weight"), cin);
  W1 (P ("norm1.bias"), cin);
  W5 (P ("conv1.conv.weight"), cout, cin, 3, 3, 3);
  W1 (P ("conv1.conv.bias"), cout);
  W1 (P ("norm2.weight"), cout);
  W1 (P ("norm2.bias"), cout);
  W5 (P ("conv2.conv.weight"), cout, cout, 3, 3, 3);
  W1 (P ("conv2.conv.bias"), cout);
  if (cin != cout) {
    W5 (P ("conv_shortcut.conv.weight"), cout, cin, 1, 1, 1);
    W1 (P ("conv_shortcut.conv.bias"), cout);
  }
}

static void
vae_mid (Check *c, const char *p, int ch, gboolean attn)
{
  char n[200];
  if (attn) {
    static const char *const lin[] = { "to_q", "to_k", "to_v", "to_out.0" };
    W1 (P ("attentions.0.group_norm.weight"), ch);
    W1 (P ("attentions.0.group_norm.bias"), ch);
    for (int i = 0; i < 4; i++) {
      char m[200];
      g_snprintf (m, sizeof m, "%s.attentions.0.%s.weight", p, lin[i]);
      W2 (m, ch, ch);
      g_snprintf (m, sizeof m, "%s.attentions.0.%s.bias", p, lin[i]);
      W1 (m, ch);
    }
  }
  for (int r = 0; r < 2; r++) {
    char m[200];
    g_snprintf (m, sizeof m, "%s.resnets.%d", p, r);
    vae_resnet (c, m, ch, ch);
  }
#undef P
}

static gboolean
int_array (JsonObject *o, const char *key, int *out, int max, int *n)
{
  JsonNode *a = json_object_get_member (o, key);
  if (!a || !JSON_NODE_HOLDS_ARRAY (a))
    return FALSE;
  JsonArray *arr = json_node_get_array (a);
  *n = (int) json_array_get_length (arr);
  if (*n < 1 || *n > max)
    return FALSE;
  for (int i = 0; i < *n; i++) {
    guint64 v;
    if (!hv_json_uint (json_array_get_element (arr, (guint) i), &v) || v == 0 || v > (1u << 20))
      return FALSE;
    out[i] = (int) v;
  }
  return TRUE;
}

static const char *
common_prefix_of (HvStore *s, const char *const *cands)
{
  const char **names = hv_store_names (s);
  for (guint k = 0; cands[k]; k++) {
    gboolean all = names[0] != NULL;
    for (guint i = 0; all && names[i]; i++)
      all = g_str_has_prefix (names[i], cands[k]);
    if (all)
      return cands[k];
  }
  return "";
}

gboolean
hv_vae_validate (HvStore *s, const char *config_json, GError **error)
{
  g_autoptr(JsonParser) parser = NULL;
  JsonObject *o = load_config (config_json, &parser, error);
  if (!o)
    return FALSE;
  int bo[16], nb;
  gint64 lpb = 2, latent = 16, cin = 3, cout = 3, attn = 1;
  JsonNode *nested = json_object_get_member (o, "config");   /* a manifest: {"config": {...}, ...} */
  if (!json_object_has_member (o, "block_out_channels") && nested && JSON_NODE_HOLDS_OBJECT (nested))
    o = json_node_get_object (nested);
  if (!int_array (o, "block_out_channels", bo, 16, &nb)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: block_out_channels missing or invalid", config_json);
    return FALSE;
  }
  find_int (o, "layers_per_block", 0, &lpb);
  find_int (o, "latent_channels", 0, &latent);
  find_int (o, "in_channels", 0, &cin);
  find_int (o, "out_channels", 0, &cout);
  find_int (o, "mid_block_add_attention", 0, &attn);
  if (lpb < 1 || lpb > 64 || latent < 1 || cin < 1 || cout < 1) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: VAE config values out of range", config_json);
    return FALSE;
  }
  static const char *const prefixes[] = { "vae.", NULL };
  Check cc, *c = &cc;
  check_init (c, s, common_prefix_of (s, prefixes));
  char n[200];
  int last = bo[nb - 1];
  /* encoder */
  W5 ("encoder.conv_in.conv.weight", bo[0], cin, 3, 3, 3);
  W1 ("encoder.conv_in.conv.bias", bo[0]);
  for (int i = 0; i < nb; i++) {
    int in = i ? bo[i - 1] : bo[0];
    for (int r = 0; r < lpb; r++) {
      g_snprintf (n, sizeof n, "encoder.down_blocks.%d.resnets.%d", i, r);
      vae_resnet (c, n, r ? bo[i] : in, bo[i]);
    }
    if (i < nb - 1) {
      g_snprintf (n, sizeof n, "encoder.down_blocks.%d.downsamplers.0.conv.conv.weight", i);
      W5 (n, bo[i], bo[i], 3, 3, 3);
      g_snprintf (n, sizeof n, "encoder.down_blocks.%d.downsamplers.0.conv.conv.bias", i);
      W1 (n, bo[i]);
    }
  }
  vae_mid (c, "encoder.mid_block", last, attn != 0);
  W1 ("encoder.conv_norm_out.weight", last);
  W1 ("encoder.conv_norm_out.bias", last);
  W5 ("encoder.conv_out.conv.weight", 2 * latent, last, 3, 3, 3);
  W1 ("encoder.conv_out.conv.bias", 2 * latent);
  /* decoder: blocks in reverse channel order, one resnet more per block */
  W5 ("decoder.conv_in.conv.weight", last, latent, 3, 3, 3);
  W1 ("decoder.conv_in.conv.bias", last);
  vae_mid (c, "decoder.mid_block", last, attn != 0);
  int prev = last;
  for (int i = 0; i < nb; i++) {
    int ch = bo[nb - 1 - i];
    for (int r = 0; r <= lpb; r++) {
      g_snprintf (n, sizeof n, "decoder.up_blocks.%d.resnets.%d", i, r);
      vae_resnet (c, n, r ? ch : prev, ch);
    }
    if (i < nb - 1) {
      g_snprintf (n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.conv.conv.weight", i);
      W5 (n, ch, ch, 3, 3, 3);
      g_snprintf (n, sizeof n, "decoder.up_blocks.%d.upsamplers.0.conv.conv.bias", i);
      W1 (n, ch);
    }
    prev = ch;
  }
  /* the latent moments' 1×1×1 convolutions around the latent */
  W5 ("quant_conv.weight", 2 * latent, 2 * latent, 1, 1, 1);
  W1 ("quant_conv.bias", 2 * latent);
  W5 ("post_quant_conv.weight", latent, latent, 1, 1, 1);
  W1 ("post_quant_conv.bias", latent);
  W1 ("decoder.conv_norm_out.weight", bo[0]);
  W1 ("decoder.conv_norm_out.bias", bo[0]);
  W5 ("decoder.conv_out.conv.weight", cout, bo[0], 3, 3, 3);
  W1 ("decoder.conv_out.conv.bias", cout);
  gboolean ok = check_finish (c, "VAE", NULL, error);
  check_clear (c);
  return ok;
}

/* ---- text encoders ------------------------------------------------------------------------ */

static gboolean
cfg_int (JsonObject *o, const char *key, gint64 fallback, gint64 *out, const char *path, GError **error)
{
  if (!find_int (o, key, 1, out)) {
    if (fallback < 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: config has no \"%s\"", path, key);
      return FALSE;
    }
    *out = fallback;
  }
  if (*out < 0 || *out > (1 << 24)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: \"%s\" is out of range", path, key);
    return FALSE;
  }
  return TRUE;
}

static gboolean
llama_validate (HvStore *s, JsonObject *o, const char *path, GError **error)
{
  gint64 h, inter, layers, heads, kv, hd, vocab, abias = 0, mbias = 0;
  if (!cfg_int (o, "hidden_size", -1, &h, path, error) || !cfg_int (o, "intermediate_size", -1, &inter, path, error) ||
      !cfg_int (o, "num_hidden_layers", -1, &layers, path, error) ||
      !cfg_int (o, "num_attention_heads", -1, &heads, path, error) ||
      !cfg_int (o, "num_key_value_heads", heads, &kv, path, error) || heads == 0 ||
      !cfg_int (o, "head_dim", h / heads, &hd, path, error) || !cfg_int (o, "vocab_size", -1, &vocab, path, error))
    return FALSE;
  find_int (o, "attention_bias", 0, &abias);
  find_int (o, "mlp_bias", 0, &mbias);
  /* LlamaForCausalLM keeps the model under "model." and adds lm_head */
  gboolean causal = hv_store_get (s, "model.embed_tokens.weight") != NULL;
  static const char *const ignore[] = { "lm_head.", "*rotary_emb.inv_freq", NULL };
  Check cc, *c = &cc;
  check_init (c, s, causal ? "model." : "");
  c->ignore = ignore;
  char n[200];
  W2 ("embed_tokens.weight", vocab, h);
  W1 ("norm.weight", h);
  struct { const char *name; gint64 rows, cols; gboolean bias; } lin[] = {
    { "self_attn.q_proj", heads * hd, h, abias }, { "self_attn.k_proj", kv * hd, h, abias },
    { "self_attn.v_proj", kv * hd, h, abias }, { "self_attn.o_proj", h, heads * hd, abias },
    { "mlp.gate_proj", inter, h, mbias }, { "mlp.up_proj", inter, h, mbias }, { "mlp.down_proj", h, inter, mbias },
  };
  for (gint64 i = 0; i < layers; i++) {
    g_snprintf (n, sizeof n, "layers.%" G_GINT64_FORMAT ".input_layernorm.weight", i);
    W1 (n, h);
    g_snprintf (n, sizeof n, "layers.%" G_GINT64_FORMAT ".post_attention_layernorm.weight", i);
    W1 (n, h);
    for (guint k = 0; k < G_N_ELEMENTS (lin); k++) {
      g_snprintf (n, sizeof n, "layers.%" G_GINT64_FORMAT ".%s.weight", i, lin[k].name);
      W2 (n, lin[k].rows, lin[k].cols);
      if (lin[k].bias) {
        g_snprintf (n, sizeof n, "layers.%" G_GINT64_FORMAT ".%s.bias", i, lin[k].name);
        W1 (n, lin[k].rows);
      }
    }
  }
  gboolean ok = check_finish (c, "Llama text encoder", NULL, error);
  check_clear (c);
  return ok;
}

static gboolean
clip_validate (HvStore *s, JsonObject *o, const char *path, GError **error)
{
  JsonNode *tc = json_object_get_member (o, "text_config");   /* a full CLIPModel config */
  if (tc && JSON_NODE_HOLDS_OBJECT (tc))
    o = json_node_get_object (tc);
  gboolean full = hv_store_get (s, "text_model.embeddings.token_embedding.weight") != NULL;
  const char *pre = full ? "text_model." : "";
  g_autofree char *tok = g_strconcat (pre, "embeddings.token_embedding.weight", NULL);
  g_autofree char *pos = g_strconcat (pre, "embeddings.position_embedding.weight", NULL);
  gint64 h, inter, layers, vocab, npos;
  /* CLIPModel configs often leave text defaults out: take those from the tensors */
  if (!cfg_int (o, "hidden_size", dim (s, tok, 1, 512), &h, path, error) ||
      !cfg_int (o, "intermediate_size", 4 * h, &inter, path, error) ||
      !cfg_int (o, "num_hidden_layers", -1, &layers, path, error) ||
      !cfg_int (o, "vocab_size", dim (s, tok, 0, 49408), &vocab, path, error) ||
      !cfg_int (o, "max_position_embeddings", dim (s, pos, 0, 77), &npos, path, error))
    return FALSE;
  static const char *const ignore_full[] = { "vision_model.", "visual_projection.", "text_projection.", "logit_scale",
                                             "*position_ids", NULL };
  Check cc, *c = &cc;
  check_init (c, s, pre);
  c->ignore = ignore_full;
  char n[200];
  W2 ("embeddings.token_embedding.weight", vocab, h);
  W2 ("embeddings.position_embedding.weight", npos, h);
  W1 ("final_layer_norm.weight", h);
  W1 ("final_layer_norm.bias", h);
  static const char *const proj[] = { "q_proj", "k_proj", "v_proj", "out_proj" };
  for (gint64 i = 0; i < layers; i++) {
#define L(x) (g_snprintf (n, sizeof n, "encoder.layers.%" G_GINT64_FORMAT "." x, i), n)
    for (int k = 0; k < 4; k++) {
      g_snprintf (n, sizeof n, "encoder.layers.%" G_GINT64_FORMAT ".self_attn.%s.weight", i, proj[k]);
      W2 (n, h, h);
      g_snprintf (n, sizeof n, "encoder.layers.%" G_GINT64_FORMAT ".self_attn.%s.bias", i, proj[k]);
      W1 (n, h);
    }
    W1 (L ("layer_norm1.weight"), h);
    W1 (L ("layer_norm1.bias"), h);
    W1 (L ("layer_norm2.weight"), h);
    W1 (L ("layer_norm2.bias"), h);
    W2 (L ("mlp.fc1.weight"), inter, h);
    W1 (L ("mlp.fc1.bias"), inter);
    W2 (L ("mlp.fc2.weight"), h, inter);
    W1 (L ("mlp.fc2.bias"), h);
#undef L
  }
  gboolean ok = check_finish (c, "CLIP text encoder", NULL, error);
  check_clear (c);
  return ok;
}

gboolean
hv_text_validate (HvStore *s, const char *config_json, GError **error)
{
  g_autoptr(JsonParser) parser = NULL;
  JsonObject *o = load_config (config_json, &parser, error);
  if (!o)
    return FALSE;
  const char *mt = hv_json_string (json_object_get_member (o, "model_type"));
  if (g_strcmp0 (mt, "llama") == 0)
    return llama_validate (s, o, config_json, error);
  if (mt && g_str_has_prefix (mt, "clip"))
    return clip_validate (s, o, config_json, error);
  g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: text encoder model_type '%s' is not Llama or CLIP",
               config_json, mt ? mt : "(none)");
  return FALSE;
}
