/* bench-text — encode time of the text encoders.
 *
 *   bench-text [--backend cpu|cuda] [--threads N] [--tokens 351] [--iters 3] [TEXT_FIXTURE_DIR]
 *
 * 1. the tiny fixture encoders (TEXT_FIXTURE_DIR/text_encoder, text_encoder_2) at HunyuanVideo's
 *    sequence lengths (Llama: B=2 × tokens, CLIP: B=2 × 77);
 * 2. one decoder layer of the real llava-llama-3-8b width (4096 wide, 32 heads, 8 kv heads,
 *    head_dim 128, 14336 intermediate) with random bf16 weights made in memory, B=1 × tokens.
 * Prints one line per case: mean milliseconds per encode (after one warm-up) and GFLOP/s. */
#include "hv-backend.h"
#include "hv-error.h"
#include "text/hv-clip.h"
#include "text/hv-llama.h"
#include <stdio.h>
#include <string.h>

static double
now_ms (void)
{
  return (double) g_get_monotonic_time () / 1000.0;
}

static guint64 rng_state = 0x9e3779b97f4a7c15ull;

static float
rng_uniform (void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float) ((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static HvTensor *
random_bf16 (int ndim, int64_t d0, int64_t d1, float amp, float offset)
{
  int64_t shape[2] = { d0, d1 };
  HvTensor *t = hv_tensor_new (HV_DTYPE_BF16, ndim, shape);
  uint16_t *p = t->data;
  for (int64_t i = 0; i < hv_tensor_numel (t); i++)
    p[i] = hv_f32_to_bf16 (offset + amp * rng_uniform ());
  return t;
}

static void
fill_ids (int32_t *ids, int32_t *mask, int B, int L, int vocab, int n_real)
{
  for (int b = 0; b < B; b++)
    for (int i = 0; i < L; i++) {
      ids[b * L + i] = (int32_t) ((i * 7919 + b * 104729 + 13) % vocab);
      mask[b * L + i] = i < n_real;
    }
}

static void
report (const char *what, double ms, double gflop)
{
  if (gflop > 0)
    printf ("bench-text: %-58s %9.2f ms  (%.1f GFLOP/s)\n", what, ms, gflop / (ms / 1000.0));
  else
    printf ("bench-text: %-58s %9.2f ms\n", what, ms);
  fflush (stdout);
}

/* Matmul FLOPs of `layers` Llama layers over B×L tokens (attention: the causal half). */
static double
llama_gflop (const HvLlamaConfig *c, int layers, int B, int L)
{
  double n = (double) B * L, D = c->hidden_size, qd = (double) c->n_heads * c->head_dim;
  double kvd = (double) c->n_kv_heads * c->head_dim, I = c->intermediate_size;
  double proj = 2 * n * D * (qd + 2 * kvd) + 2 * n * qd * D + 2 * n * 3 * D * I;
  double attn = 2.0 * 2.0 * B * ((double) L * (L + 1) / 2) * qd;
  return layers * (proj + attn) / 1e9;
}

static gboolean
bench_tiny (const char *dir, HvBackend *backend, int tokens, int iters, GError **error)
{
  g_autofree char *llama_dir = g_build_filename (dir, "text_encoder", NULL);
  g_autofree char *clip_dir = g_build_filename (dir, "text_encoder_2", NULL);
  const int skip = 2;
  g_autoptr(HvLlama) llama = hv_llama_new (llama_dir, backend, skip, error);
  if (!llama)
    return FALSE;
  const HvLlamaConfig *lc = hv_llama_get_config (llama);
  const int B = 2, L = tokens, crop = MIN (95, tokens - 1);
  g_autofree int32_t *ids = g_new (int32_t, B * L);
  g_autofree int32_t *mask = g_new (int32_t, B * L);
  fill_ids (ids, mask, B, L, lc->vocab_size, L * 2 / 5);
  double t = 0;
  for (int it = 0; it <= iters; it++) {
    double t0 = now_ms ();
    g_autoptr(HvTensor) out = hv_llama_encode (llama, ids, mask, B, L, skip, crop, error);
    if (!out)
      return FALSE;
    if (it > 0)
      t += now_ms () - t0;
  }
  g_autofree char *what = g_strdup_printf ("tiny Llama (%d wide, %d of %d layers) %dx%d", lc->hidden_size,
                                           lc->n_layers - skip, lc->n_layers, B, L);
  report (what, t / iters, llama_gflop (lc, lc->n_layers - skip, B, L));

  g_autoptr(HvClip) clip = hv_clip_new (clip_dir, backend, error);
  if (!clip)
    return FALSE;
  const HvClipConfig *cc = hv_clip_get_config (clip);
  const int Lc = cc->max_position_embeddings;
  g_autofree int32_t *cids = g_new (int32_t, B * Lc);
  g_autofree int32_t *cmask = g_new (int32_t, B * Lc);
  fill_ids (cids, cmask, B, Lc, cc->vocab_size, Lc / 3);
  t = 0;
  for (int it = 0; it <= iters; it++) {
    double t0 = now_ms ();
    g_autoptr(HvTensor) out = hv_clip_forward (clip, cids, cmask, B, Lc, NULL, NULL, NULL, NULL, error);
    if (!out)
      return FALSE;
    if (it > 0)
      t += now_ms () - t0;
  }
  g_autofree char *what2 = g_strdup_printf ("tiny CLIP (%d wide, %d layers) %dx%d", cc->hidden_size,
                                            cc->n_layers, B, Lc);
  report (what2, t / iters, 0);
  return TRUE;
}

static gboolean
bench_real_layer (HvBackend *backend, int tokens, int iters, GError **error)
{
  const HvLlamaConfig cfg = {
    .vocab_size = 1024,   /* the real table has 128320 rows; only the lookup touches it */
    .hidden_size = 4096,
    .intermediate_size = 14336,
    .n_layers = 1,
    .n_heads = 32,
    .n_kv_heads = 8,
    .head_dim = 128,
    .max_position_embeddings = 8192,
    .rms_norm_eps = 1e-5f,
    .rope_theta = 500000.0,
    .rope_type = HV_LLAMA_ROPE_DEFAULT,
  };
  const int64_t D = cfg.hidden_size, I = cfg.intermediate_size, KV = (int64_t) cfg.n_kv_heads * cfg.head_dim;
  double t0 = now_ms ();
  HvStore *store = hv_store_new ();
  const float a = 0.02f;
  struct { const char *name; int nd; int64_t d0, d1; float amp, off; } ws[] = {
    { "embed_tokens.weight", 2, cfg.vocab_size, D, 1.0f, 0 },
    { "layers.0.input_layernorm.weight", 1, D, 0, 0.1f, 1.0f },
    { "layers.0.self_attn.q_proj.weight", 2, D, D, a, 0 },
    { "layers.0.self_attn.k_proj.weight", 2, KV, D, a, 0 },
    { "layers.0.self_attn.v_proj.weight", 2, KV, D, a, 0 },
    { "layers.0.self_attn.o_proj.weight", 2, D, D, a, 0 },
    { "layers.0.post_attention_layernorm.weight", 1, D, 0, 0.1f, 1.0f },
    { "layers.0.mlp.gate_proj.weight", 2, I, D, a, 0 },
    { "layers.0.mlp.up_proj.weight", 2, I, D, a, 0 },
    { "layers.0.mlp.down_proj.weight", 2, D, I, a, 0 },
    { "norm.weight", 1, D, 0, 0.1f, 1.0f },
  };
  for (guint i = 0; i < G_N_ELEMENTS (ws); i++)
    if (!hv_store_insert (store, ws[i].name, random_bf16 (ws[i].nd, ws[i].d0, ws[i].d1, ws[i].amp, ws[i].off), error)) {
      hv_store_free (store);
      return FALSE;
    }
  g_autoptr(HvLlama) llama = hv_llama_new_from_store (store, &cfg, backend, 0, error);
  if (!llama)
    return FALSE;
  printf ("bench-text: (made %.0f MB of random bf16 weights in %.0f ms)\n",
          (double) (D * D * 2 + 2 * KV * D + 3 * D * I) * 2 / 1e6, now_ms () - t0);
  const int B = 1, L = tokens;
  g_autofree int32_t *ids = g_new (int32_t, B * L);
  g_autofree int32_t *mask = g_new (int32_t, B * L);
  fill_ids (ids, mask, B, L, cfg.vocab_size, L * 2 / 5);
  double t = 0;
  for (int it = 0; it <= iters; it++) {
    double s = now_ms ();
    g_autoptr(HvTensor) out = hv_llama_forward (llama, ids, mask, B, L, 1, FALSE, NULL, NULL, error);
    if (!out)
      return FALSE;
    if (it > 0)
      t += now_ms () - s;
  }
  g_autofree char *what = g_strdup_printf ("real-width Llama layer (4096/32h/8kv/14336) 1x%d", L);
  report (what, t / iters, llama_gflop (&cfg, 1, B, L));
  printf ("bench-text: => the 30 layers HunyuanVideo runs: about %.1f s per prompt\n", 30 * t / iters / 1000.0);
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autofree char *backend_name = NULL;
  int threads = 0, tokens = 351, iters = 3;
  gboolean skip_real = FALSE;
  g_auto(GStrv) rest = NULL;
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend_name, "cpu (default) or cuda[:N]", "NAME" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "CPU threads (0 = all cores)", "N" },
    { "tokens", 'n', 0, G_OPTION_ARG_INT, &tokens, "Llama sequence length (default 351)", "N" },
    { "iters", 'i', 0, G_OPTION_ARG_INT, &iters, "timed runs per case (default 3)", "N" },
    { "no-real", 0, 0, G_OPTION_ARG_NONE, &skip_real, "skip the real-width layer", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, "[TEXT_FIXTURE_DIR]" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("[TEXT_FIXTURE_DIR] — text encoder timings");
  g_autoptr(GError) error = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "bench-text: %s\n", error->message);
    return 2;
  }
  if (tokens < 2 || tokens > 8192 || iters < 1) {
    fprintf (stderr, "bench-text: --tokens must be 2..8192 and --iters >= 1\n");
    return 2;
  }
  g_autoptr(HvBackend) backend = hv_backend_new (backend_name ? backend_name : "cpu", threads, &error);
  if (!backend) {
    fprintf (stderr, "bench-text: %s\n", error->message);
    return g_error_matches (error, HV_ERROR, HV_ERROR_DEVICE) ? 77 : 2;
  }
  printf ("bench-text: backend %s, %d threads\n", backend->name, backend->n_threads);
  if (rest && rest[0] && !bench_tiny (rest[0], backend, tokens, iters, &error)) {
    fprintf (stderr, "bench-text: %s\n", error->message);
    return 1;
  }
  if (!skip_real && !bench_real_layer (backend, tokens, iters, &error)) {
    fprintf (stderr, "bench-text: %s\n", error->message);
    return 1;
  }
  return 0;
}
