/* hv-vae.c — VAE config, weight loading, and the public decode / encode / post-processing
 * entry points (see hv-vae.h). Layers are in hv-vae-model.c, tiling in hv-vae-tiling.c, the
 * exact chunked stream in hv-vae-stream.c. */
#include "hv-vae-private.h"
#include "hv-error.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* ---- config ---------------------------------------------------------------------------------- */

static gboolean
cfg_int (JsonObject *o, const char *key, int def, int lo, int hi, int *out, const char *file,
         GError **error)
{
  if (!json_object_has_member (o, key) || json_node_is_null (json_object_get_member (o, key))) {
    *out = def;
    return TRUE;
  }
  JsonNode *n = json_object_get_member (o, key);
  if (JSON_NODE_TYPE (n) != JSON_NODE_VALUE || json_node_get_value_type (n) != G_TYPE_INT64 ||
      json_node_get_int (n) < lo || json_node_get_int (n) > hi) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: \"%s\" must be an integer in [%d, %d]",
                 file, key, lo, hi);
    return FALSE;
  }
  *out = (int) json_node_get_int (n);
  return TRUE;
}

static gboolean
cfg_num (JsonObject *o, const char *key, double def, double *out, const char *file, GError **error)
{
  if (!json_object_has_member (o, key) || json_node_is_null (json_object_get_member (o, key))) {
    *out = def;
    return TRUE;
  }
  JsonNode *n = json_object_get_member (o, key);
  GType t = JSON_NODE_TYPE (n) == JSON_NODE_VALUE ? json_node_get_value_type (n) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: \"%s\" must be a number", file, key);
    return FALSE;
  }
  *out = json_node_get_double (n);
  if (!isfinite (*out)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: \"%s\" is not finite", file, key);
    return FALSE;
  }
  return TRUE;
}

static gboolean
is_pow2 (int v)
{
  return v > 0 && (v & (v - 1)) == 0;
}

static int
ilog2 (int v)
{
  int n = 0;
  while (v > 1) {
    v >>= 1;
    n++;
  }
  return n;
}

/* Block type names of upstream and of diffusers' AutoencoderKLHunyuanVideo. */
static gboolean
check_block_types (JsonObject *o, const char *key, const char *a, const char *b, int n,
                   const char *file, GError **error)
{
  if (!json_object_has_member (o, key))
    return TRUE;
  JsonNode *node = json_object_get_member (o, key);
  if (!JSON_NODE_HOLDS_ARRAY (node)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: \"%s\" must be an array", file, key);
    return FALSE;
  }
  JsonArray *arr = json_node_get_array (node);
  if ((int) json_array_get_length (arr) != n) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "%s: \"%s\" has %u entries but block_out_channels has %d", file, key,
                 json_array_get_length (arr), n);
    return FALSE;
  }
  for (int i = 0; i < n; i++) {
    const char *s = JSON_NODE_HOLDS_VALUE (json_array_get_element (arr, i))
                    ? json_array_get_string_element (arr, i) : NULL;
    if (!s || (strcmp (s, a) != 0 && strcmp (s, b) != 0)) {
      g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED,
                   "%s: %s[%d] is \"%s\"; only %s / %s are supported", file, key, i,
                   s ? s : "(not a string)", a, b);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
hv_vae_config_load (HvVaeConfig *cfg, const char *path, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) e = NULL;
  if (!json_parser_load_from_file (parser, path, &e)) {
    g_set_error (error, HV_ERROR, g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                 ? HV_ERROR_NOT_FOUND : HV_ERROR_INVALID, "VAE config %s: %s", path, e->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "VAE config %s is not a JSON object", path);
    return FALSE;
  }
  JsonObject *o = json_node_get_object (root);
  const char *cls = json_object_get_string_member_with_default (o, "_class_name", "AutoencoderKLCausal3D");
  const gboolean diffusers = g_strcmp0 (cls, "AutoencoderKLHunyuanVideo") == 0;
  if (!diffusers && g_strcmp0 (cls, "AutoencoderKLCausal3D") != 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED,
                 "%s: _class_name \"%s\" is not AutoencoderKLCausal3D or AutoencoderKLHunyuanVideo",
                 path, cls);
    return FALSE;
  }
  memset (cfg, 0, sizeof *cfg);
  /* defaults: the class's own (diffusers' are the released model's values) */
  if (json_object_has_member (o, "block_out_channels")) {
    JsonNode *n = json_object_get_member (o, "block_out_channels");
    JsonArray *a = JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
    guint len = a ? json_array_get_length (a) : 0;
    if (len < 1 || len > HV_VAE_MAX_BLOCKS) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "%s: block_out_channels must be an array of 1 to %d integers", path, HV_VAE_MAX_BLOCKS);
      return FALSE;
    }
    cfg->n_blocks = (int) len;
    for (guint i = 0; i < len; i++) {
      JsonNode *v = json_array_get_element (a, i);
      gint64 c = JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_INT64
                 ? json_node_get_int (v) : -1;
      if (c < 1 || c > 65536) {
        g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                     "%s: block_out_channels[%u] must be a positive integer", path, i);
        return FALSE;
      }
      cfg->block_out_channels[i] = (int) c;
    }
  } else if (diffusers) {
    const int def[4] = { 128, 256, 512, 512 };
    cfg->n_blocks = 4;
    memcpy (cfg->block_out_channels, def, sizeof def);
  } else {
    cfg->n_blocks = 1;
    cfg->block_out_channels[0] = 64;
  }
  int sample_size = 0;
  if (json_object_has_member (o, "sample_size") &&
      JSON_NODE_HOLDS_ARRAY (json_object_get_member (o, "sample_size"))) {
    JsonArray *a = json_object_get_array_member (o, "sample_size");   /* upstream takes [0] */
    JsonNode *v = json_array_get_length (a) ? json_array_get_element (a, 0) : NULL;
    sample_size = v && JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_INT64
                  ? (int) CLAMP (json_node_get_int (v), 0, 1 << 20) : 0;
    if (sample_size < 1) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: sample_size must hold positive integers", path);
      return FALSE;
    }
  } else if (!cfg_int (o, "sample_size", diffusers ? 256 : 32, 1, 1 << 20, &sample_size, path, error)) {
    return FALSE;
  }
  cfg->sample_size = sample_size;
  double scaling = 0, shift = 0;
  int tc_up = 0;
  if (!cfg_int (o, "in_channels", 3, 1, 64, &cfg->in_channels, path, error) ||
      !cfg_int (o, "out_channels", 3, 1, 64, &cfg->out_channels, path, error) ||
      !cfg_int (o, "latent_channels", diffusers ? 16 : 4, 1, 4096, &cfg->latent_channels, path, error) ||
      !cfg_int (o, "layers_per_block", diffusers ? 2 : 1, 1, 64, &cfg->layers_per_block, path, error) ||
      !cfg_int (o, "norm_num_groups", 32, 1, 65536, &cfg->norm_num_groups, path, error) ||
      /* diffusers has no sample_tsize: the released model's 64 keeps the official tiling */
      !cfg_int (o, "sample_tsize", 64, 1, 1 << 20, &cfg->sample_tsize, path, error) ||
      !cfg_int (o, "time_compression_ratio", 4, 1, 64, &tc_up, path, error) ||
      !cfg_int (o, "temporal_compression_ratio", tc_up, 1, 64, &cfg->time_compression_ratio, path, error) ||
      !cfg_int (o, "spatial_compression_ratio", 8, 1, 1024, &cfg->spatial_compression_ratio, path, error) ||
      !cfg_num (o, "scaling_factor", diffusers ? 0.476986 : 0.18215, &scaling, path, error) ||
      !cfg_num (o, "shift_factor", 0.0, &shift, path, error))
    return FALSE;
  cfg->scaling_factor = (float) scaling;
  cfg->shift_factor = (float) shift;
  cfg->mid_block_add_attention = json_object_get_boolean_member_with_default (o, "mid_block_add_attention", TRUE);
  if (scaling == 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: scaling_factor must not be 0", path);
    return FALSE;
  }
  const char *act = json_object_get_string_member_with_default (o, "act_fn", "silu");
  if (g_strcmp0 (act, "silu") != 0 && g_strcmp0 (act, "swish") != 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: act_fn \"%s\" is not supported (silu only)",
                 path, act ? act : "(null)");
    return FALSE;
  }
  if (cfg->time_compression_ratio != 4) {
    /* upstream's Encoder/DecoderCausal3D raise for anything else */
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED,
                 "%s: time_compression_ratio %d is not supported (upstream supports 4 only)", path,
                 cfg->time_compression_ratio);
    return FALSE;
  }
  if (!is_pow2 (cfg->spatial_compression_ratio)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: spatial_compression_ratio must be a power of 2", path);
    return FALSE;
  }
  for (int i = 0; i < cfg->n_blocks; i++)
    if (cfg->block_out_channels[i] % cfg->norm_num_groups != 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "%s: block_out_channels[%d] = %d is not a multiple of norm_num_groups %d", path, i,
                   cfg->block_out_channels[i], cfg->norm_num_groups);
      return FALSE;
    }
  if (!check_block_types (o, "down_block_types", "DownEncoderBlockCausal3D", "HunyuanVideoDownBlock3D",
                          cfg->n_blocks, path, error) ||
      !check_block_types (o, "up_block_types", "UpDecoderBlockCausal3D", "HunyuanVideoUpBlock3D",
                          cfg->n_blocks, path, error))
    return FALSE;
  return TRUE;
}

/* ---- weights --------------------------------------------------------------------------------- */

typedef struct {
  HvVae *vae;
  const char *prefix;
  GError *err;   /* first error; later loads are skipped */
} Loader;

static HvTensor *
load_w (Loader *L, const char *name, int ndim, const int64_t *shape)
{
  if (L->err)
    return NULL;
  g_autofree char *full = g_strconcat (L->prefix, name, NULL);
  const HvTensor *t = hv_store_require (L->vae->store, full, ndim, shape, &L->err);
  if (!t)
    return NULL;
  if (!hv_dtype_is_float (t->dtype)) {
    g_set_error (&L->err, HV_ERROR, HV_ERROR_SHAPE, "%s: tensor %s has dtype %s, expected a float type",
                 hv_store_path (L->vae->store), full, hv_dtype_name (t->dtype));
    return NULL;
  }
  HvTensor *w = hv_backend_weight (L->vae->backend, t);
  if (!w) {
    hv_vae_oom_ (&L->err, full);
    return NULL;
  }
  g_ptr_array_add (L->vae->owned, w);
  return w;
}

/* A causal conv "<base>.conv.weight" (plain=FALSE) or a plain 1x1x1 Conv3d "<base>.weight". */
static void
load_conv (Loader *L, VaeConv *c, const char *base, gboolean plain, int cin, int cout, int k,
           int st, int sh, int sw)
{
  g_autofree char *wn = g_strconcat (base, plain ? ".weight" : ".conv.weight", NULL);
  g_autofree char *bn = g_strconcat (base, plain ? ".bias" : ".conv.bias", NULL);
  const int64_t ws[5] = { cout, cin, k, k, k }, bs[1] = { cout };
  c->w = load_w (L, wn, 5, ws);
  c->b = load_w (L, bn, 1, bs);
  c->cin = cin;
  c->cout = cout;
  c->k = k;
  c->stride[0] = st;
  c->stride[1] = sh;
  c->stride[2] = sw;
}

static void
load_norm (Loader *L, VaeNorm *n, const char *base, int c)
{
  g_autofree char *wn = g_strconcat (base, ".weight", NULL);
  g_autofree char *bn = g_strconcat (base, ".bias", NULL);
  const int64_t s[1] = { c };
  n->w = load_w (L, wn, 1, s);
  n->b = load_w (L, bn, 1, s);
  n->c = c;
}

static void
load_resnet (Loader *L, VaeResnet *r, const char *base, int cin, int cout)
{
  g_autofree char *n1 = g_strconcat (base, ".norm1", NULL);
  g_autofree char *c1 = g_strconcat (base, ".conv1", NULL);
  g_autofree char *n2 = g_strconcat (base, ".norm2", NULL);
  g_autofree char *c2 = g_strconcat (base, ".conv2", NULL);
  g_autofree char *sc = g_strconcat (base, ".conv_shortcut", NULL);
  load_norm (L, &r->norm1, n1, cin);
  load_conv (L, &r->conv1, c1, FALSE, cin, cout, 3, 1, 1, 1);
  load_norm (L, &r->norm2, n2, cout);
  load_conv (L, &r->conv2, c2, FALSE, cout, cout, 3, 1, 1, 1);
  r->has_shortcut = cin != cout;
  if (r->has_shortcut)
    load_conv (L, &r->shortcut, sc, FALSE, cin, cout, 1, 1, 1, 1);
}

static void
load_mid (Loader *L, VaeMid *m, const char *coder, int c, gboolean attn)
{
  g_autofree char *r0 = g_strdup_printf ("%s.mid_block.resnets.0", coder);
  g_autofree char *r1 = g_strdup_printf ("%s.mid_block.resnets.1", coder);
  load_resnet (L, &m->res0, r0, c, c);
  load_resnet (L, &m->res1, r1, c, c);
  m->has_attn = attn;
  if (!attn)
    return;
  const int64_t mat[2] = { c, c }, vec[1] = { c };
  const char *proj[4] = { "to_q", "to_k", "to_v", "to_out.0" };
  HvTensor **dst[4][2] = { { &m->attn.q_w, &m->attn.q_b }, { &m->attn.k_w, &m->attn.k_b },
                           { &m->attn.v_w, &m->attn.v_b }, { &m->attn.o_w, &m->attn.o_b } };
  g_autofree char *gn = g_strdup_printf ("%s.mid_block.attentions.0.group_norm", coder);
  load_norm (L, &m->attn.norm, gn, c);
  for (int i = 0; i < 4; i++) {
    g_autofree char *wn = g_strdup_printf ("%s.mid_block.attentions.0.%s.weight", coder, proj[i]);
    g_autofree char *bn = g_strdup_printf ("%s.mid_block.attentions.0.%s.bias", coder, proj[i]);
    *dst[i][0] = load_w (L, wn, 2, mat);
    *dst[i][1] = load_w (L, bn, 1, vec);
  }
  m->attn.c = c;
}

/* upstream's rule (time_compression_ratio 4): block i scales space while i < log2(spatial
 * ratio) and time when i >= n - 1 - log2(time ratio), never in the last block */
static void
block_factors (const HvVaeConfig *cfg, int i, int *ft, int *fs)
{
  const int n = cfg->n_blocks;
  gboolean sp = i < ilog2 (cfg->spatial_compression_ratio);
  gboolean tm = i >= n - 1 - ilog2 (cfg->time_compression_ratio) && i != n - 1;
  *ft = tm ? 2 : 1;
  *fs = sp ? 2 : 1;
}

static void
load_decoder (Loader *L, HvVae *vae)
{
  const HvVaeConfig *cfg = &vae->cfg;
  const int n = cfg->n_blocks, top = cfg->block_out_channels[n - 1];
  VaeCoder *d = &vae->dec;
  load_conv (L, &vae->post_quant, "post_quant_conv", TRUE, cfg->latent_channels, cfg->latent_channels, 1, 1, 1, 1);
  load_conv (L, &d->conv_in, "decoder.conv_in", FALSE, cfg->latent_channels, top, 3, 1, 1, 1);
  load_mid (L, &d->mid, "decoder", top, cfg->mid_block_add_attention);
  d->n_blocks = n;
  int prev = top;
  for (int i = 0; i < n; i++) {
    VaeBlock *blk = &d->blocks[i];
    const int out = cfg->block_out_channels[n - 1 - i];
    blk->n_res = cfg->layers_per_block + 1;
    blk->res = g_new0 (VaeResnet, blk->n_res);
    for (int j = 0; j < blk->n_res; j++) {
      g_autofree char *base = g_strdup_printf ("decoder.up_blocks.%d.resnets.%d", i, j);
      load_resnet (L, &blk->res[j], base, j == 0 ? prev : out, out);
    }
    int ft, fs;
    block_factors (cfg, i, &ft, &fs);
    blk->factor[0] = ft;
    blk->factor[1] = blk->factor[2] = fs;
    blk->has_sampler = ft > 1 || fs > 1;
    if (blk->has_sampler) {
      g_autofree char *base = g_strdup_printf ("decoder.up_blocks.%d.upsamplers.0.conv", i);
      load_conv (L, &blk->sampler, base, FALSE, out, out, 3, 1, 1, 1);
    }
    prev = out;
  }
  load_norm (L, &d->norm_out, "decoder.conv_norm_out", cfg->block_out_channels[0]);
  load_conv (L, &d->conv_out, "decoder.conv_out", FALSE, cfg->block_out_channels[0], cfg->out_channels, 3, 1, 1, 1);
}

static void
load_encoder (Loader *L, HvVae *vae)
{
  const HvVaeConfig *cfg = &vae->cfg;
  const int n = cfg->n_blocks, top = cfg->block_out_channels[n - 1];
  VaeCoder *e = &vae->enc;
  load_conv (L, &e->conv_in, "encoder.conv_in", FALSE, cfg->in_channels, cfg->block_out_channels[0], 3, 1, 1, 1);
  e->n_blocks = n;
  int prev = cfg->block_out_channels[0];
  for (int i = 0; i < n; i++) {
    VaeBlock *blk = &e->blocks[i];
    const int out = cfg->block_out_channels[i];
    blk->n_res = cfg->layers_per_block;
    blk->res = g_new0 (VaeResnet, blk->n_res);
    for (int j = 0; j < blk->n_res; j++) {
      g_autofree char *base = g_strdup_printf ("encoder.down_blocks.%d.resnets.%d", i, j);
      load_resnet (L, &blk->res[j], base, j == 0 ? prev : out, out);
    }
    int ft, fs;
    block_factors (cfg, i, &ft, &fs);
    blk->has_sampler = ft > 1 || fs > 1;
    if (blk->has_sampler) {
      g_autofree char *base = g_strdup_printf ("encoder.down_blocks.%d.downsamplers.0.conv", i);
      load_conv (L, &blk->sampler, base, FALSE, out, out, 3, ft, fs, fs);
    }
    prev = out;
  }
  load_mid (L, &e->mid, "encoder", top, cfg->mid_block_add_attention);
  load_norm (L, &e->norm_out, "encoder.conv_norm_out", top);
  load_conv (L, &e->conv_out, "encoder.conv_out", FALSE, top, 2 * cfg->latent_channels, 3, 1, 1, 1);
  load_conv (L, &vae->quant, "quant_conv", TRUE, 2 * cfg->latent_channels, 2 * cfg->latent_channels, 1, 1, 1, 1);
}

/* The prefix in front of every name ("", "vae.", ...): whatever precedes the decoder's conv_in. */
static char *
find_prefix (HvStore *store)
{
  static const char key[] = "decoder.conv_in.conv.weight";
  const char **names = hv_store_names (store);
  for (guint i = 0; names && names[i]; i++) {
    gsize n = strlen (names[i]), k = strlen (key);
    if (n >= k && strcmp (names[i] + n - k, key) == 0 && (n == k || names[i][n - k - 1] == '.'))
      return g_strndup (names[i], n - k);
  }
  return NULL;
}

/* The VAE over vae->store and vae->cfg; `label` names the source in messages. */
static gboolean
vae_build (HvVae *vae, const char *label, GError **error)
{
  g_autofree char *prefix = find_prefix (vae->store);
  if (!prefix) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "%s has no tensor decoder.conv_in.conv.weight: not a HunyuanVideo VAE checkpoint",
                 label);
    return FALSE;
  }
  Loader L = { .vae = vae, .prefix = prefix };
  load_decoder (&L, vae);
  g_autofree char *enc_key = g_strconcat (prefix, "encoder.conv_in.conv.weight", NULL);
  vae->has_encoder = hv_store_get (vae->store, enc_key) != NULL;
  if (vae->has_encoder)
    load_encoder (&L, vae);
  if (L.err) {
    g_propagate_prefixed_error (error, L.err, "VAE weights (%s): ", label);
    return FALSE;
  }
  return TRUE;
}

static HvVae *
vae_alloc (HvBackend *backend)
{
  HvVae *vae = g_new0 (HvVae, 1);
  vae->backend = backend;
  vae->owned = g_ptr_array_new_with_free_func ((GDestroyNotify) hv_tensor_free);
  vae->stream_chunk = 1;
  vae->stream_cache = (gsize) 1 << 30;
  return vae;
}

HvVae *
hv_vae_new_from_files (const char *config_json, const char *weights, HvBackend *backend, GError **error)
{
  g_return_val_if_fail (config_json && weights && backend, NULL);
  g_autoptr(HvVae) vae = vae_alloc (backend);
  if (!hv_vae_config_load (&vae->cfg, config_json, error))
    return NULL;
  vae->store = hv_store_open (weights, error);
  if (!vae->store)
    return NULL;
  g_autofree char *label = g_strdup_printf ("%s, config %s", weights, config_json);
  if (!vae_build (vae, label, error))
    return NULL;
  return g_steal_pointer (&vae);
}

HvVae *
hv_vae_new_from_store (HvStore *store, const HvVaeConfig *cfg, HvBackend *backend, GError **error)
{
  g_return_val_if_fail (store && cfg && backend, NULL);
  g_autoptr(HvVae) vae = vae_alloc (backend);
  vae->store = store;
  vae->cfg = *cfg;
  if (cfg->n_blocks < 1 || cfg->n_blocks > HV_VAE_MAX_BLOCKS || cfg->latent_channels < 1 ||
      cfg->in_channels < 1 || cfg->out_channels < 1 || cfg->norm_num_groups < 1 ||
      cfg->scaling_factor == 0.0f || cfg->time_compression_ratio != 4 ||
      !is_pow2 (cfg->spatial_compression_ratio)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "VAE config: bad block count, channels, "
                 "compression ratios or scaling factor");
    return NULL;
  }
  for (int i = 0; i < cfg->n_blocks; i++)
    if (cfg->block_out_channels[i] < 1 || cfg->block_out_channels[i] % cfg->norm_num_groups != 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "VAE config: block_out_channels[%d] is not a positive multiple of %d groups", i,
                   cfg->norm_num_groups);
      return NULL;
    }
  if (!vae_build (vae, hv_store_path (store) ? hv_store_path (store) : "in-memory weights", error))
    return NULL;
  return g_steal_pointer (&vae);
}

HvVae *
hv_vae_new_from_path (const char *dir_or_file, HvBackend *backend, GError **error)
{
  g_return_val_if_fail (dir_or_file && backend, NULL);
  static const char *candidates[] = {
    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
    "vae_weights.safetensors", "model.safetensors", "pytorch_model.pt", "vae_weights.pt",
  };
  if (g_file_test (dir_or_file, G_FILE_TEST_IS_DIR)) {
    g_autofree char *config = g_build_filename (dir_or_file, "config.json", NULL);
    for (guint i = 0; i < G_N_ELEMENTS (candidates); i++) {
      g_autofree char *w = g_build_filename (dir_or_file, candidates[i], NULL);
      if (g_file_test (w, G_FILE_TEST_IS_REGULAR))
        return hv_vae_new_from_files (config, w, backend, error);
    }
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "VAE folder %s has no weights file (expected one of diffusion_pytorch_model.safetensors, "
                 "vae_weights.safetensors, model.safetensors, pytorch_model.pt, vae_weights.pt)", dir_or_file);
    return NULL;
  }
  if (!g_file_test (dir_or_file, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "VAE path %s does not exist", dir_or_file);
    return NULL;
  }
  g_autofree char *dir = g_path_get_dirname (dir_or_file);
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);
  return hv_vae_new_from_files (config, dir_or_file, backend, error);
}

void
hv_vae_free (HvVae *vae)
{
  if (!vae)
    return;
  for (int i = 0; i < HV_VAE_MAX_BLOCKS; i++) {
    g_free (vae->enc.blocks[i].res);
    g_free (vae->dec.blocks[i].res);
  }
  if (vae->owned)
    g_ptr_array_unref (vae->owned);
  hv_store_free (vae->store);
  g_free (vae);
}

const HvVaeConfig *
hv_vae_get_config (const HvVae *vae)
{
  return &vae->cfg;
}

gboolean
hv_vae_has_encoder (const HvVae *vae)
{
  return vae->has_encoder;
}

void
hv_vae_set_probe (HvVae *vae, HvVaeProbe probe, gpointer user_data)
{
  vae->probe = probe;
  vae->probe_data = user_data;
}

void
hv_vae_set_stream_chunk (HvVae *vae, int latent_frames)
{
  vae->stream_chunk = MAX (1, latent_frames);
}

void
hv_vae_set_stream_cache (HvVae *vae, gsize bytes)
{
  vae->stream_cache = bytes;
}

/* ---- shapes and tiling knobs -------------------------------------------------------------- */

static int
time_factor (const HvVae *vae)
{
  int f = 1;
  for (int i = 0; i < vae->dec.n_blocks; i++)
    f *= vae->dec.blocks[i].factor[0];
  return f;
}

int
hv_vae_space_factor_ (const HvVae *vae)
{
  int f = 1;
  for (int i = 0; i < vae->dec.n_blocks; i++)
    f *= vae->dec.blocks[i].factor[1];
  return f;
}

int
hv_vae_frames_for_latents (const HvVae *vae, int latent_frames)
{
  return latent_frames < 1 ? 0 : 1 + time_factor (vae) * (latent_frames - 1);
}

void
hv_vae_tiling_init (const HvVae *vae, HvVaeTiling *t)
{
  const HvVaeConfig *cfg = &vae->cfg;
  memset (t, 0, sizeof *t);
  t->spatial = t->temporal = TRUE;
  t->tile_sample_min_size = cfg->sample_size;
  t->tile_latent_min_size = (int) (cfg->sample_size / (double) (1 << (cfg->n_blocks - 1)));
  t->tile_sample_min_tsize = cfg->sample_tsize;
  t->tile_latent_min_tsize = cfg->sample_tsize / cfg->time_compression_ratio;
  t->tile_overlap_factor = 0.25;
}

/* Checks the knobs for one direction: decode cuts latent tiles and crops sample px, encode cuts
 * sample tiles and crops latents; either way the step must equal the crop in the same units. */
static gboolean
tiling_validate_dir (const HvVae *vae, const HvVaeTiling *t, gboolean encode, GError **error)
{
  if (!(t->tile_overlap_factor >= 0 && t->tile_overlap_factor < 1)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "VAE tiling: overlap factor %g is not in [0, 1)",
                 t->tile_overlap_factor);
    return FALSE;
  }
  const double f = t->tile_overlap_factor;
  const int sf = hv_vae_space_factor_ (vae), tf = time_factor (vae);
  if (t->spatial) {
    const int ls = t->tile_latent_min_size, ss = t->tile_sample_min_size;
    gboolean ok;
    if (encode) {   /* sample step (px) == kept latents x sf */
      int step = (int) (ss * (1 - f)), keep = ls - (int) (ls * f);
      ok = ls >= 1 && ss >= 1 && step >= 1 && keep * sf == step;
    } else {        /* latent step x sf == kept sample px */
      int step = (int) (ls * (1 - f)), keep = ss - (int) (ss * f);
      ok = ls >= 1 && ss >= 1 && step >= 1 && keep == step * sf;
    }
    if (!ok) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "VAE tiling: spatial tiles of %d latent / %d sample px with overlap %g do not "
                   "tile the frame for %s (the step must equal the kept part, at %d sample px per "
                   "latent); use sample size = %d x latent size", ls, ss, f,
                   encode ? "encoding" : "decoding", sf, sf);
      return FALSE;
    }
  }
  if (t->temporal) {
    const int lt = t->tile_latent_min_tsize, st = t->tile_sample_min_tsize;
    gboolean ok;
    if (encode) {
      int step = (int) (st * (1 - f)), keep = lt - (int) (lt * f);
      ok = lt >= 1 && st >= 1 && step >= 1 && keep * tf == step;
    } else {
      int step = (int) (lt * (1 - f)), keep = st - (int) (st * f);
      ok = lt >= 1 && step >= 1 && keep == step * tf;
    }
    if (!ok) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "VAE tiling: temporal tiles of %d latent / %d sample frames with overlap %g do "
                   "not tile the clip for %s (the step must equal the kept part, at %d sample "
                   "frames per latent frame); use sample tsize = %d x latent tsize", lt, st, f,
                   encode ? "encoding" : "decoding", tf, tf);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
hv_vae_tiling_validate (const HvVae *vae, const HvVaeTiling *t, GError **error)
{
  return tiling_validate_dir (vae, t, FALSE, error);
}

/* ---- decode ---------------------------------------------------------------------------------- */

/* A host f32 copy of t (any backend, any float dtype). */
static HvTensor *
host_f32 (HvVae *vae, const HvTensor *t)
{
  if (t->backend) {   /* hv_tensor_to_f32 takes plain host tensors only (CPU backend too) */
    g_autoptr(HvTensor) h = hv_backend_download (t->backend, t);
    return h ? hv_tensor_to_f32 (h) : NULL;
  }
  return hv_tensor_to_f32 (t);
}

static gboolean
check_latents (HvVae *vae, const HvTensor *z, GError **error)
{
  if (!z || z->ndim != 5 || z->shape[1] != vae->cfg.latent_channels || z->shape[0] < 1 ||
      z->shape[2] < 1 || z->shape[3] < 1 || z->shape[4] < 1 || !hv_dtype_is_float (z->dtype) ||
      !hv_tensor_is_contiguous (z)) {
    char buf[64] = "(none)";
    if (z)
      hv_tensor_shape_str (z, buf, sizeof buf);
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE,
                 "VAE decode: latents must be a contiguous float tensor [B, %d, T, h, w], got %s",
                 vae->cfg.latent_channels, buf);
    return FALSE;
  }
  return TRUE;
}

/* One sample of a host [B, ...] tensor as a tensor on the backend. */
static HvTensor *
upload_sample (HvVae *vae, const HvTensor *host, int64_t b)
{
  int64_t shape[5];
  for (int i = 0; i < 5; i++)
    shape[i] = host->shape[i];
  shape[0] = 1;
  int64_t per = hv_tensor_numel (host) / host->shape[0];
  g_autoptr(HvTensor) v = hv_tensor_new_borrowed (HV_DTYPE_F32, 5, shape, (float *) host->data + b * per,
                                                  NULL, NULL);
  return hv_backend_upload (vae->backend, v);
}

typedef struct {
  HvTensor *out;   /* host [B, C, T, H, W] */
  int64_t b;
} IntoVideo;

static gboolean
sink_into_video (const HvTensor *frames, int first, gpointer user, GError **error)
{
  IntoVideo *iv = user;
  HvTensor *o = iv->out;
  const int64_t C = o->shape[1], T = o->shape[2], HW = o->shape[3] * o->shape[4];
  const int64_t n = frames->shape[2];
  if (frames->shape[1] != C || frames->shape[3] != o->shape[3] || frames->shape[4] != o->shape[4] ||
      first + n > T) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "VAE: tiled decode produced frames of an "
                 "unexpected size (check the tiling knobs)");
    return FALSE;
  }
  float *dst = (float *) o->data + iv->b * C * T * HW;
  const float *src = frames->data;
  for (int64_t c = 0; c < C; c++)
    memcpy (dst + (c * T + first) * HW, src + c * n * HW, (size_t) (n * HW) * sizeof (float));
  return TRUE;
}

gboolean
hv_vae_decode_z (HvVae *vae, const HvTensor *z, const HvVaeTiling *tiling, HvTensor **decoded_out,
                 GError **error)
{
  g_return_val_if_fail (vae && decoded_out, FALSE);
  *decoded_out = NULL;
  if (!check_latents (vae, z, error))
    return FALSE;
  if (tiling && !hv_vae_tiling_validate (vae, tiling, error))
    return FALSE;
  g_autoptr(HvTensor) zh = host_f32 (vae, z);
  if (!zh)
    return hv_vae_oom_ (error, "the latents");
  const int64_t B = z->shape[0], T = z->shape[2], h = z->shape[3], w = z->shape[4];
  const int sf = hv_vae_space_factor_ (vae);
  const int64_t shape[5] = { B, vae->cfg.out_channels, hv_vae_frames_for_latents (vae, (int) T), h * sf, w * sf };
  g_autoptr(HvTensor) out = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  if (!out)
    return hv_vae_oom_ (error, "the decoded video");
  for (int64_t b = 0; b < B; b++) {
    g_autoptr(HvTensor) zs = upload_sample (vae, zh, b);
    if (!zs)
      return hv_vae_oom_ (error, "the latents");
    IntoVideo iv = { out, b };
    if (hv_vae_tiling_active_ (vae, zs, tiling)) {
      if (!hv_vae_tiled_decode_ (vae, zs, tiling, sink_into_video, &iv, NULL, error))
        return FALSE;
    } else {
      g_autoptr(HvTensor) d = hv_vae_decode_one_ (vae, zs, TRUE, error);
      if (!d)
        return FALSE;
      g_autoptr(HvTensor) dh = hv_backend_download (vae->backend, d);
      if (!dh)
        return hv_vae_oom_ (error, "the decoded video");
      if (!sink_into_video (dh, 0, &iv, error))
        return FALSE;
    }
  }
  *decoded_out = g_steal_pointer (&out);
  return TRUE;
}

/* z = latents / scaling_factor (+ shift): a true fp32 division as torch does on the CPU. */
static HvTensor *
unscale_latents (HvVae *vae, const HvTensor *latents)
{
  HvTensor *z = host_f32 (vae, latents);
  if (!z)
    return NULL;
  float *d = z->data;
  const float s = vae->cfg.scaling_factor, sh = vae->cfg.shift_factor;
  for (int64_t i = 0, n = hv_tensor_numel (z); i < n; i++)
    d[i] = sh != 0.0f ? d[i] / s + sh : d[i] / s;
  return z;
}

/* image = (x / 2 + 0.5).clamp(0, 1), fp32 */
static inline float
post_pixel (float x)
{
  float v = x / 2.0f + 0.5f;
  return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

gboolean
hv_vae_decode (HvVae *vae, const HvTensor *latents, const HvVaeTiling *tiling, HvTensor **video_out,
               GError **error)
{
  g_return_val_if_fail (vae && video_out, FALSE);
  *video_out = NULL;
  if (!check_latents (vae, latents, error))
    return FALSE;
  g_autoptr(HvTensor) z = unscale_latents (vae, latents);
  if (!z)
    return hv_vae_oom_ (error, "the latents");
  if (vae->probe)
    vae->probe ("z", z, vae->probe_data);
  HvTensor *v = NULL;
  if (!hv_vae_decode_z (vae, z, tiling, &v, error))
    return FALSE;
  float *d = v->data;
  for (int64_t i = 0, n = hv_tensor_numel (v); i < n; i++)
    d[i] = post_pixel (d[i]);
  *video_out = v;
  return TRUE;
}

/* ---- stream ---------------------------------------------------------------------------------- */

typedef enum { STREAM_WHOLE, STREAM_TILED, STREAM_EXACT } StreamMode;

struct _HvVaeStream {
  HvVae *vae;
  HvTensor *z;               /* unscaled latents [1, L, T, h, w] on the backend */
  StreamMode mode;
  HvVaeTiling tiling;
  VaeTiledState tiled;
  VaeExact *exact;           /* made by the first next (it runs the statistics passes) */
  const volatile int *cancel;
  int next;                  /* frames handed out */
  gboolean done;
};

void
hv_vae_stream_free (HvVaeStream *s)
{
  if (!s)
    return;
  hv_tensor_free (s->z);
  hv_vae_tiled_state_clear_ (&s->tiled);
  hv_vae_exact_free_ (s->exact);
  g_free (s);
}

HvVaeStream *
hv_vae_stream_new (HvVae *vae, const HvTensor *latents, const HvVaeTiling *tiling,
                   const volatile int *cancel, GError **error)
{
  g_return_val_if_fail (vae, NULL);
  if (!check_latents (vae, latents, error))
    return NULL;
  if (latents->shape[0] != 1) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "VAE stream: batch must be 1, got %" G_GINT64_FORMAT,
                 latents->shape[0]);
    return NULL;
  }
  if (tiling && !hv_vae_tiling_validate (vae, tiling, error))
    return NULL;
  g_autoptr(HvTensor) zh = unscale_latents (vae, latents);
  g_autoptr(HvVaeStream) s = g_new0 (HvVaeStream, 1);
  s->vae = vae;
  s->cancel = cancel;
  s->z = zh ? hv_backend_upload (vae->backend, zh) : NULL;
  if (!s->z) {
    hv_vae_oom_ (error, "the latents");
    return NULL;
  }
  if (tiling)
    s->tiling = *tiling;
  /* tiles when upstream would tile; a clip within one tile is decoded whole, as upstream does;
   * no tiling at all: the exact chunked stream */
  s->mode = hv_vae_tiling_active_ (vae, s->z, tiling) ? STREAM_TILED : tiling ? STREAM_WHOLE : STREAM_EXACT;
  return g_steal_pointer (&s);
}

/* The raw frames of the next chunk (NULL when none is left or a window keeps none). */
static gboolean
stream_raw (HvVaeStream *s, HvTensor **raw, GError **error)
{
  HvVae *vae = s->vae;
  *raw = NULL;
  switch (s->mode) {
  case STREAM_WHOLE: {
    s->done = TRUE;
    g_autoptr(HvTensor) d = hv_vae_decode_one_ (vae, s->z, FALSE, error);
    if (!d)
      return FALSE;
    if (!(*raw = hv_backend_download (vae->backend, d)))
      return hv_vae_oom_ (error, "the decoded video");
    return TRUE;
  }
  case STREAM_TILED:
    if (!hv_vae_tiled_next_ (vae, s->z, &s->tiling, &s->tiled, raw, s->cancel, error))
      return FALSE;
    s->done = s->tiled.done;
    return TRUE;
  case STREAM_EXACT:
    if (!s->exact && !(s->exact = hv_vae_exact_new_ (vae, s->z, s->cancel, error)))
      return FALSE;
    if (!hv_vae_exact_next_ (s->exact, raw, error))
      return FALSE;
    s->done = *raw == NULL;
    return TRUE;
  }
  return FALSE;
}

gboolean
hv_vae_stream_next (HvVaeStream *s, HvTensor **frames, int *first, GError **error)
{
  g_return_val_if_fail (s && frames, FALSE);
  *frames = NULL;
  while (!s->done) {
    if (s->cancel && *s->cancel) {
      g_set_error (error, HV_ERROR, HV_ERROR_CANCELLED, "VAE decode cancelled");
      return FALSE;
    }
    HvTensor *raw = NULL;
    if (!stream_raw (s, &raw, error)) {
      s->done = TRUE;
      return FALSE;
    }
    if (!raw)
      continue;
    float *d = raw->data;
    for (int64_t i = 0, n = hv_tensor_numel (raw); i < n; i++)
      d[i] = post_pixel (d[i]);
    if (first)
      *first = s->next;
    s->next += (int) raw->shape[2];
    *frames = raw;
    return TRUE;
  }
  return FALSE;
}

gboolean
hv_vae_decode_stream (HvVae *vae, const HvTensor *latents, const HvVaeTiling *tiling,
                      HvVaeFrameFunc on_frame, gpointer user_data, const volatile int *cancel,
                      GError **error)
{
  g_return_val_if_fail (vae && on_frame, FALSE);
  g_autoptr(HvVaeStream) s = hv_vae_stream_new (vae, latents, tiling, cancel, error);
  if (!s)
    return FALSE;
  GError *err = NULL;
  HvTensor *chunk;
  int first;
  while (hv_vae_stream_next (s, &chunk, &first, &err)) {
    g_autoptr(HvTensor) frames = chunk;
    const int64_t C = frames->shape[1], n = frames->shape[2], H = frames->shape[3], W = frames->shape[4];
    const int64_t HW = H * W, shape[3] = { C, H, W };
    g_autoptr(HvTensor) f = hv_tensor_new (HV_DTYPE_F32, 3, shape);
    if (!f)
      return hv_vae_oom_ (error, "a frame");
    for (int64_t t = 0; t < n; t++) {
      for (int64_t c = 0; c < C; c++)
        memcpy ((float *) f->data + c * HW, (const float *) frames->data + (c * n + t) * HW,
                (size_t) HW * sizeof (float));
      on_frame (first + (int) t, f, user_data);
    }
  }
  if (err) {
    g_propagate_error (error, err);
    return FALSE;
  }
  return TRUE;
}

/* ---- uint8 ----------------------------------------------------------------------------------- */

/* save_videos_grid: clamp(0, 1), then (x * 255) in fp32 and numpy's astype(uint8) truncation */
static inline guint8
to_u8 (float v)
{
  v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
  return (guint8) (v * 255.0f);
}

HvTensor *
hv_vae_frames_to_u8 (const HvTensor *video, GError **error)
{
  if (!video || video->ndim != 5 || video->shape[0] != 1 || video->dtype != HV_DTYPE_F32 ||
      !hv_tensor_is_contiguous (video) || (video->backend && !hv_backend_is_host (video->backend))) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE,
                 "hv_vae_frames_to_u8: expected a host f32 video [1, C, T, H, W]");
    return NULL;
  }
  const int64_t C = video->shape[1], T = video->shape[2], H = video->shape[3], W = video->shape[4];
  const int64_t shape[4] = { T, H, W, C };
  HvTensor *u = hv_tensor_new (HV_DTYPE_U8, 4, shape);
  if (!u) {
    hv_vae_oom_ (error, "the uint8 frames");
    return NULL;
  }
  const float *s = video->data;
  guint8 *d = u->data;
  for (int64_t t = 0; t < T; t++)
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++)
        for (int64_t c = 0; c < C; c++)
          d[((t * H + y) * W + x) * C + c] = to_u8 (s[((c * T + t) * H + y) * W + x]);
  return u;
}

void
hv_vae_frame_to_u8 (const HvTensor *frame, guint8 *dst)
{
  const int64_t C = frame->shape[0], HW = frame->shape[1] * frame->shape[2];
  const float *s = frame->data;
  for (int64_t i = 0; i < HW; i++)
    for (int64_t c = 0; c < C; c++)
      dst[i * C + c] = to_u8 (s[c * HW + i]);
}

/* ---- encode ---------------------------------------------------------------------------------- */

gboolean
hv_vae_encode (HvVae *vae, const HvTensor *video, const HvVaeTiling *tiling, HvTensor **moments_out,
               GError **error)
{
  g_return_val_if_fail (vae && moments_out, FALSE);
  *moments_out = NULL;
  if (!vae->has_encoder) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s holds no encoder weights",
                 hv_store_path (vae->store));
    return FALSE;
  }
  if (!video || video->ndim != 5 || video->shape[1] != vae->cfg.in_channels || video->shape[0] < 1 ||
      video->shape[2] < 1 || video->shape[3] < 1 || video->shape[4] < 1 ||
      !hv_dtype_is_float (video->dtype) || !hv_tensor_is_contiguous (video)) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "VAE encode: video must be a contiguous float "
                 "tensor [B, %d, T, H, W]", vae->cfg.in_channels);
    return FALSE;
  }
  if (tiling && !tiling_validate_dir (vae, tiling, TRUE, error))
    return FALSE;
  g_autoptr(HvTensor) vh = host_f32 (vae, video);
  if (!vh)
    return hv_vae_oom_ (error, "the video");
  g_autoptr(HvTensor) out = NULL;
  for (int64_t b = 0; b < video->shape[0]; b++) {
    g_autoptr(HvTensor) xs = upload_sample (vae, vh, b);
    if (!xs)
      return hv_vae_oom_ (error, "the video");
    g_autoptr(HvTensor) mh = NULL;
    if (hv_vae_encode_tiling_active_ (vae, xs, tiling)) {
      if (!(mh = hv_vae_tiled_encode_ (vae, xs, tiling, error)))
        return FALSE;
    } else {
      g_autoptr(HvTensor) m = hv_vae_encode_one_ (vae, xs, TRUE, error);
      if (!m)
        return FALSE;
      if (!(mh = hv_backend_download (vae->backend, m)))
        return hv_vae_oom_ (error, "the moments");
    }
    if (!out) {
      int64_t shape[5] = { video->shape[0], mh->shape[1], mh->shape[2], mh->shape[3], mh->shape[4] };
      out = hv_tensor_new (HV_DTYPE_F32, 5, shape);
      if (!out)
        return hv_vae_oom_ (error, "the moments");
    }
    memcpy ((float *) out->data + b * hv_tensor_numel (mh), mh->data, hv_tensor_nbytes (mh));
  }
  *moments_out = g_steal_pointer (&out);
  return TRUE;
}

void
hv_vae_posterior (const HvTensor *moments, HvTensor **mean, HvTensor **logvar, HvTensor **std)
{
  const int64_t B = moments->shape[0], C2 = moments->shape[1], L = C2 / 2;
  const int64_t per = hv_tensor_numel (moments) / (B * C2);   /* T*H*W */
  int64_t shape[5] = { B, L, moments->shape[2], moments->shape[3], moments->shape[4] };
  HvTensor *m = mean ? hv_tensor_new (HV_DTYPE_F32, 5, shape) : NULL;
  HvTensor *lv = logvar ? hv_tensor_new (HV_DTYPE_F32, 5, shape) : NULL;
  HvTensor *sd = std ? hv_tensor_new (HV_DTYPE_F32, 5, shape) : NULL;
  const float *s = moments->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < L; c++)
      for (int64_t i = 0; i < per; i++) {
        int64_t o = (b * L + c) * per + i;
        float mu = s[(b * C2 + c) * per + i];
        float l = s[(b * C2 + L + c) * per + i];
        l = l < -30.0f ? -30.0f : (l > 20.0f ? 20.0f : l);
        if (m)
          ((float *) m->data)[o] = mu;
        if (lv)
          ((float *) lv->data)[o] = l;
        if (sd)
          ((float *) sd->data)[o] = expf (0.5f * l);
      }
  if (mean)
    *mean = m;
  if (logvar)
    *logvar = lv;
  if (std)
    *std = sd;
}

HvTensor *
hv_vae_latents_from_moments (const HvVae *vae, const HvTensor *moments)
{
  HvTensor *mean = NULL;
  hv_vae_posterior (moments, &mean, NULL, NULL);
  float *d = mean->data;
  const float s = vae->cfg.scaling_factor, sh = vae->cfg.shift_factor;
  for (int64_t i = 0, n = hv_tensor_numel (mean); i < n; i++)
    d[i] = sh != 0.0f ? (d[i] - sh) * s : d[i] * s;
  return mean;
}
