/* hv-tiny.c — the built-in tiny model: weights made in memory; see hv-tiny.h. */
#include "hv-tiny.h"
#include "hv-error.h"
#include "hv-rng.h"
#include "loaders/hv-layout.h"
#include "text/hv-byte-tokenizer.h"
#include <math.h>
#include <string.h>

#define TINY_SEED 20241203u

/* ---- weights ---------------------------------------------------------------------------------- */

typedef struct {
  HvStore *store;
  HvDType dtype;
  GError *err;    /* first error; later tensors are skipped */
} Maker;

/* Norm weights are 1 (every LayerNorm/RMSNorm/GroupNorm scale has "norm" in its name), other
 * 1-d tensors are biases (0), embedding tables N(0, 1), the rest N(0, 1/fan_in). */
static void
make (Maker *m, const char *name, int ndim, const int64_t *shape)
{
  if (m->err)
    return;
  g_autoptr(HvTensor) t = hv_tensor_new (m->dtype, ndim, shape);
  const int64_t n = hv_tensor_numel (t);
  g_autofree float *v = g_new0 (float, n);
  const gboolean is_1d = ndim == 1;
  if (is_1d && strstr (name, "norm")) {
    for (int64_t i = 0; i < n; i++)
      v[i] = 1.0f;
  } else if (!is_1d) {
    int64_t fan_in = 1;
    for (int i = 1; i < ndim; i++)
      fan_in *= shape[i];
    const gboolean table = strstr (name, "embed_tokens") || strstr (name, "embedding.weight");
    float std = table ? 1.0f : (float) (1.0 / sqrt ((double) fan_in));
    /* the VAE's last conv at half scale: pixels x / 2 + 0.5 mostly inside [0, 1], not clipped */
    if (g_str_has_prefix (name, "decoder.conv_out."))
      std *= 0.5f;
    g_autoptr(HvRng) r = hv_rng_new (HV_RNG_CPU, TINY_SEED + g_str_hash (name));
    hv_rng_randn (r, v, (size_t) n, HV_RNG_F32);
    for (int64_t i = 0; i < n; i++)
      v[i] *= std;
  }
  if (m->dtype == HV_DTYPE_F32) {
    memcpy (t->data, v, (size_t) n * sizeof (float));
  } else {
    uint16_t *d = t->data;
    for (int64_t i = 0; i < n; i++)
      d[i] = hv_f32_to_bf16 (v[i]);
  }
  hv_store_insert (m->store, name, g_steal_pointer (&t), &m->err);
}

static void
make_v (Maker *m, const char *name, int ndim, ...)
{
  int64_t shape[HV_MAX_DIMS];
  va_list ap;
  va_start (ap, ndim);
  for (int i = 0; i < ndim; i++)
    shape[i] = va_arg (ap, int64_t);
  va_end (ap);
  make (m, name, ndim, shape);
}
#define MK(m, name, ...) make_v ((m), (name), __VA_ARGS__)
#define D(x) ((int64_t) (x))

static HvStore *
maker_finish (Maker *m, GError **error)
{
  if (m->err) {
    g_propagate_prefixed_error (error, m->err, "building the tiny model: ");
    hv_store_free (m->store);
    return NULL;
  }
  return m->store;
}

/* ---- DiT ------------------------------------------------------------------------------------- */

static void
dit_tensor (const char *name, int ndim, const int64_t *shape, gpointer data)
{
  make (data, name, ndim, shape);
}

HvStore *
hv_tiny_dit_store (GError **error)
{
  HvDitShape g = {
    .hidden = 64, .heads = 2, .head_dim = 32, .mlp_hidden = 256, .refiner_mlp_hidden = 256,
    .n_double = 2, .n_single = 2, .n_refiner = 2, .in_channels = 16, .out_channels = 16,
    .patch = { 1, 2, 2 }, .text_dim = 64, .text_dim_2 = 32, .freq_dim = 256, .guidance_embed = TRUE,
  };
  Maker m = { .store = hv_store_new (), .dtype = HV_DTYPE_BF16 };
  hv_dit_expected (&g, dit_tensor, &m);   /* the validator's list of official names */
  return maker_finish (&m, error);
}

void
hv_tiny_dit_config (HvDitConfig *cfg)
{
  hv_dit_config_init (cfg);
  cfg->heads_num = 2;
  cfg->rope_dim[0] = 8;
  cfg->rope_dim[1] = 12;
  cfg->rope_dim[2] = 12;
  cfg->rope_theta = 256.0f;
}

/* ---- VAE (decoder; upstream names) ------------------------------------------------------------ */

static void
vae_conv (Maker *m, const char *base, int cin, int cout, int k)
{
  g_autofree char *w = g_strconcat (base, ".conv.weight", NULL);
  g_autofree char *b = g_strconcat (base, ".conv.bias", NULL);
  MK (m, w, 5, D (cout), D (cin), D (k), D (k), D (k));
  MK (m, b, 1, D (cout));
}

static void
vae_norm (Maker *m, const char *base, int c)
{
  g_autofree char *w = g_strconcat (base, ".weight", NULL);
  g_autofree char *b = g_strconcat (base, ".bias", NULL);
  MK (m, w, 1, D (c));
  MK (m, b, 1, D (c));
}

static void
vae_resnet (Maker *m, const char *base, int cin, int cout)
{
  g_autofree char *n1 = g_strconcat (base, ".norm1", NULL);
  g_autofree char *c1 = g_strconcat (base, ".conv1", NULL);
  g_autofree char *n2 = g_strconcat (base, ".norm2", NULL);
  g_autofree char *c2 = g_strconcat (base, ".conv2", NULL);
  g_autofree char *sc = g_strconcat (base, ".conv_shortcut", NULL);
  vae_norm (m, n1, cin);
  vae_conv (m, c1, cin, cout, 3);
  vae_norm (m, n2, cout);
  vae_conv (m, c2, cout, cout, 3);
  if (cin != cout)
    vae_conv (m, sc, cin, cout, 1);
}

static void
tiny_vae_config (HvVaeConfig *c)
{
  static const int blocks[] = { 8, 16, 16, 32 };
  *c = (HvVaeConfig) {
    .in_channels = 3, .out_channels = 3, .latent_channels = 16, .n_blocks = 4, .layers_per_block = 1,
    .norm_num_groups = 4, .sample_size = 256, .sample_tsize = 16, .time_compression_ratio = 4,
    .spatial_compression_ratio = 8, .scaling_factor = 0.476986f, .shift_factor = 0.0f,
    .mid_block_add_attention = TRUE,
  };
  memcpy (c->block_out_channels, blocks, sizeof blocks);
}

static HvStore *
tiny_vae_store (const HvVaeConfig *c, GError **error)
{
  Maker m = { .store = hv_store_new (), .dtype = HV_DTYPE_F32 };
  const int L = c->latent_channels, n = c->n_blocks, top = c->block_out_channels[n - 1];
  MK (&m, "post_quant_conv.weight", 5, D (L), D (L), D (1), D (1), D (1));
  MK (&m, "post_quant_conv.bias", 1, D (L));
  vae_conv (&m, "decoder.conv_in", L, top, 3);
  vae_resnet (&m, "decoder.mid_block.resnets.0", top, top);
  vae_resnet (&m, "decoder.mid_block.resnets.1", top, top);
  vae_norm (&m, "decoder.mid_block.attentions.0.group_norm", top);
  static const char *const proj[] = { "to_q", "to_k", "to_v", "to_out.0" };
  for (int i = 0; i < 4; i++) {
    g_autofree char *w = g_strdup_printf ("decoder.mid_block.attentions.0.%s.weight", proj[i]);
    g_autofree char *b = g_strdup_printf ("decoder.mid_block.attentions.0.%s.bias", proj[i]);
    MK (&m, w, 2, D (top), D (top));
    MK (&m, b, 1, D (top));
  }
  /* upsamplers where upstream puts them: spatial in the first log2(8) blocks, temporal from
   * block n-1-log2(4), never in the last block */
  int prev = top;
  for (int i = 0; i < n; i++) {
    const int out = c->block_out_channels[n - 1 - i];
    for (int j = 0; j < c->layers_per_block + 1; j++) {
      g_autofree char *base = g_strdup_printf ("decoder.up_blocks.%d.resnets.%d", i, j);
      vae_resnet (&m, base, j == 0 ? prev : out, out);
    }
    if (i < 3 || (i >= n - 3 && i != n - 1)) {
      g_autofree char *base = g_strdup_printf ("decoder.up_blocks.%d.upsamplers.0.conv", i);
      vae_conv (&m, base, out, out, 3);
    }
    prev = out;
  }
  vae_norm (&m, "decoder.conv_norm_out", c->block_out_channels[0]);
  vae_conv (&m, "decoder.conv_out", c->block_out_channels[0], c->out_channels, 3);
  return maker_finish (&m, error);
}

HvVae *
hv_tiny_vae_new (HvBackend *b, GError **error)
{
  HvVaeConfig cfg;
  tiny_vae_config (&cfg);
  HvStore *s = tiny_vae_store (&cfg, error);
  return s ? hv_vae_new_from_store (s, &cfg, b, error) : NULL;
}

/* ---- text encoders ---------------------------------------------------------------------------- */

struct _HvTinyText {
  HvLlama *llama;
  HvClip *clip;
};

static HvStore *
tiny_llama_store (const HvLlamaConfig *c, GError **error)
{
  Maker m = { .store = hv_store_new (), .dtype = HV_DTYPE_BF16 };
  const int64_t Dm = c->hidden_size, I = c->intermediate_size, Q = (int64_t) c->n_heads * c->head_dim,
                KV = (int64_t) c->n_kv_heads * c->head_dim;
  MK (&m, "embed_tokens.weight", 2, D (c->vocab_size), Dm);
  for (int i = 0; i < c->n_layers; i++) {
    g_autofree char *in_norm = g_strdup_printf ("layers.%d.input_layernorm.weight", i);
    g_autofree char *q = g_strdup_printf ("layers.%d.self_attn.q_proj.weight", i);
    g_autofree char *k = g_strdup_printf ("layers.%d.self_attn.k_proj.weight", i);
    g_autofree char *v = g_strdup_printf ("layers.%d.self_attn.v_proj.weight", i);
    g_autofree char *o = g_strdup_printf ("layers.%d.self_attn.o_proj.weight", i);
    g_autofree char *pn = g_strdup_printf ("layers.%d.post_attention_layernorm.weight", i);
    g_autofree char *gate = g_strdup_printf ("layers.%d.mlp.gate_proj.weight", i);
    g_autofree char *up = g_strdup_printf ("layers.%d.mlp.up_proj.weight", i);
    g_autofree char *down = g_strdup_printf ("layers.%d.mlp.down_proj.weight", i);
    MK (&m, in_norm, 1, Dm);
    MK (&m, q, 2, Q, Dm);
    MK (&m, k, 2, KV, Dm);
    MK (&m, v, 2, KV, Dm);
    MK (&m, o, 2, Dm, Q);
    MK (&m, pn, 1, Dm);
    MK (&m, gate, 2, I, Dm);
    MK (&m, up, 2, I, Dm);
    MK (&m, down, 2, Dm, I);
  }
  MK (&m, "norm.weight", 1, Dm);
  return maker_finish (&m, error);
}

static HvStore *
tiny_clip_store (const HvClipConfig *c, GError **error)
{
  Maker m = { .store = hv_store_new (), .dtype = HV_DTYPE_BF16 };
  const int64_t Dm = c->hidden_size, I = c->intermediate_size;
  MK (&m, "text_model.embeddings.token_embedding.weight", 2, D (c->vocab_size), Dm);
  MK (&m, "text_model.embeddings.position_embedding.weight", 2, D (c->max_position_embeddings), Dm);
  static const char *const sq[] = { "q_proj", "k_proj", "v_proj", "out_proj" };
  for (int i = 0; i < c->n_layers; i++) {
    g_autofree char *p = g_strdup_printf ("text_model.encoder.layers.%d.", i);
    g_autofree char *ln1 = g_strconcat (p, "layer_norm1", NULL);
    g_autofree char *ln2 = g_strconcat (p, "layer_norm2", NULL);
    vae_norm (&m, ln1, (int) Dm);
    vae_norm (&m, ln2, (int) Dm);
    for (int j = 0; j < 4; j++) {
      g_autofree char *w = g_strdup_printf ("%sself_attn.%s.weight", p, sq[j]);
      g_autofree char *b = g_strdup_printf ("%sself_attn.%s.bias", p, sq[j]);
      MK (&m, w, 2, Dm, Dm);
      MK (&m, b, 1, Dm);
    }
    g_autofree char *f1w = g_strconcat (p, "mlp.fc1.weight", NULL);
    g_autofree char *f1b = g_strconcat (p, "mlp.fc1.bias", NULL);
    g_autofree char *f2w = g_strconcat (p, "mlp.fc2.weight", NULL);
    g_autofree char *f2b = g_strconcat (p, "mlp.fc2.bias", NULL);
    MK (&m, f1w, 2, I, Dm);
    MK (&m, f1b, 1, I);
    MK (&m, f2w, 2, Dm, I);
    MK (&m, f2b, 1, Dm);
  }
  vae_norm (&m, "text_model.final_layer_norm", (int) Dm);
  return maker_finish (&m, error);
}

void
hv_tiny_text_free (HvTinyText *t)
{
  if (!t)
    return;
  hv_llama_free (t->llama);
  hv_clip_free (t->clip);
  g_free (t);
}

HvTinyText *
hv_tiny_text_new (HvBackend *b, GError **error)
{
  const HvLlamaConfig lc = {
    .vocab_size = HV_BYTE_VOCAB, .hidden_size = 64, .intermediate_size = 128, .n_layers = 4,
    .n_heads = 4, .n_kv_heads = 2, .head_dim = 16, .max_position_embeddings = 1024,
    .rms_norm_eps = 1e-5f, .rope_theta = 500000.0, .rope_type = HV_LLAMA_ROPE_DEFAULT,
    .rope_factor = 1.0,
  };
  const HvClipConfig cc = {
    .vocab_size = HV_BYTE_VOCAB, .hidden_size = 32, .intermediate_size = 64, .n_layers = 2,
    .n_heads = 4, .max_position_embeddings = HV_PROMPT_CLIP_LEN, .layer_norm_eps = 1e-5f,
    .act = HV_UNARY_QUICK_GELU, .eos_token_id = HV_BYTE_EOS,
  };
  g_autoptr(HvTinyText) t = g_new0 (HvTinyText, 1);
  HvStore *ls = tiny_llama_store (&lc, error);
  if (!ls || !(t->llama = hv_llama_new_from_store (ls, &lc, b, HV_TEXT_SKIP_LAYER, error)))
    return NULL;
  HvStore *cs = tiny_clip_store (&cc, error);
  if (!cs || !(t->clip = hv_clip_new_from_store (cs, &cc, b, error)))
    return NULL;
  return g_steal_pointer (&t);
}

gboolean
hv_tiny_text_encode (HvTinyText *t, const char *prompt, const char *negative_prompt,
                     HvPromptTemplate tmpl, HvTextEmbeds *out, GError **error)
{
  g_return_val_if_fail (t && out, FALSE);
  memset (out, 0, sizeof *out);
  if (!prompt || !g_utf8_validate (prompt, -1, NULL) ||
      (negative_prompt && !g_utf8_validate (negative_prompt, -1, NULL))) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the prompt is missing or not valid UTF-8");
    return FALSE;
  }
  const char *texts[2];
  const int B = hv_text_batch (prompt, negative_prompt, texts);

  g_autoptr(HvTokenized) l0 = NULL, l1 = NULL, c0 = NULL, c1 = NULL;
  HvTokenized **lt[2] = { &l0, &l1 }, **ct[2] = { &c0, &c1 };
  for (int b = 0; b < B; b++) {
    g_autofree char *text = hv_text_strip (texts[b]);
    if (!(*lt[b] = hv_byte_llama_tokens (text, tmpl, HV_TINY_TEXT_LEN, error)) ||
        !(*ct[b] = hv_byte_clip_tokens (text, HV_PROMPT_CLIP_LEN, error)))
      return FALSE;
  }
  const HvTokenized *ltok[2] = { l0, l1 }, *ctok[2] = { c0, c1 };
  return hv_text_encode_tokens (t->llama, t->clip, ltok, ctok, B, out, error);
}
