/* bench-dit — time per denoise step (one DiT forward + the Euler update) and peak memory.
 *
 *   bench-dit [--backend cpu|cuda] [--threads N] [--sizes tiny,small,full] [--steps N] [DIT_FIXTURE_DIR]
 *
 *   tiny   the fixture DiT (DIT_FIXTURE_DIR/dit_weights.safetensors, 2+2 blocks, hidden 64) at the
 *          fixture size: latent [1,16,3,8,12] (72 img tokens) + 16 text tokens
 *   small  a random-weight DiT of the released width (hidden 3072, 24 heads × 128, MLP ×4, text
 *          4096 / 768, refiner 2 blocks) with 1 double + 1 single block, bf16 weights made in
 *          memory (deterministic), at 128×128×9: latent [1,16,3,16,16] (192 img tokens) + 256 text
 *   full   the same model at 480×848×65: latent [1,16,17,60,106] (27,030 img tokens) + 256 text
 *          (minutes per step on a few CPU cores)
 *
 * Sizes run in the order given; the peak RSS printed after each is the process maximum so far
 * (getrusage), so give sizes smallest first. Weights stay bf16 (mapped file / in-memory bf16); the
 * line also prints the weights' own size so the activation overhead can be read off. */
#include "hv-backend.h"
#include "hv-denoise.h"
#include "hv-dit.h"
#include "hv-error.h"
#include "hv-layout.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static guint64 rng_state = 0x243f6a8885a308d3ull;

static float
rng_uniform (void)   /* xorshift64 → [-1, 1) */
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float) ((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static double
peak_rss_mib (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;   /* KiB on Linux */
}

typedef struct {
  HvStore *store;
  GError *error;
  guint64 bytes;
} Fill;

/* One random bf16 tensor per expected name: Linear/Conv weights uniform ±1/sqrt(fan_in), norm
 * weights 1 ± 0.1, biases ±0.02, so activations stay finite through the blocks. */
static void
add_random (const char *name, int ndim, const int64_t *shape, gpointer data)
{
  Fill *f = data;
  if (f->error)
    return;
  HvTensor *t = hv_tensor_new (HV_DTYPE_BF16, ndim, shape);
  int64_t n = hv_tensor_numel (t);
  uint16_t *p = t->data;
  float amp, off = 0.0f;
  if (ndim >= 2) {
    amp = 1.0f / sqrtf ((float) (n / shape[0]));
  } else if (g_str_has_suffix (name, ".weight")) {
    amp = 0.1f;
    off = 1.0f;
  } else {
    amp = 0.02f;
  }
  for (int64_t i = 0; i < n; i++)
    p[i] = hv_f32_to_bf16 (off + amp * rng_uniform ());
  f->bytes += hv_tensor_nbytes (t);
  hv_store_insert (f->store, name, t, &f->error);
}

static HvDit *
real_width_dit (HvBackend *b, HvStore **store_out, guint64 *bytes, GError **error)
{
  const HvDitShape shape = {
    .hidden = 3072, .heads = 24, .head_dim = 128, .mlp_hidden = 4 * 3072,
    .refiner_mlp_hidden = 4 * 3072, .n_double = 1, .n_single = 1, .n_refiner = 2,
    .in_channels = 16, .out_channels = 16, .patch = { 1, 2, 2 },
    .text_dim = 4096, .text_dim_2 = 768, .freq_dim = 256, .guidance_embed = TRUE,
  };
  Fill f = { .store = hv_store_new () };
  hv_dit_expected (&shape, add_random, &f);
  if (f.error) {
    g_propagate_error (error, f.error);
    hv_store_free (f.store);
    return NULL;
  }
  *bytes = f.bytes;
  HvDit *d = hv_dit_new (f.store, NULL, b, error);   /* defaults: rope [16,56,56], theta 256 */
  if (!d) {
    hv_store_free (f.store);
    return NULL;
  }
  *store_out = f.store;   /* must outlive the DiT */
  return d;
}

/* Matmul GFLOP of one forward (projections and attention scores/values). */
static double
forward_gflop (const HvDitInfo *in, int64_t B, int64_t Ni, int64_t L)
{
  double h = in->hidden, m = in->mlp_hidden, N = (double) (Ni + L);
  double dbl = 2.0 * (Ni + L) * (3 * h * h + h * h + 2 * h * m) + 4.0 * N * N * h;
  double sgl = 2.0 * N * (h * (3 * h + m) + (h + m) * h) + 4.0 * N * N * h;
  double ref = 2.0 * L * (3 * h * h + h * h + 2 * h * 4 * h) + 4.0 * L * L * h;
  return B * (in->depth_double * dbl + in->depth_single * sgl + in->depth_refiner * ref) / 1e9;
}

static HvTensor *
random_act (HvBackend *b, int ndim, const int64_t *shape, float amp)
{
  g_autoptr(HvTensor) h = hv_tensor_new (HV_DTYPE_F32, ndim, shape);
  float *p = h->data;
  for (int64_t i = 0; i < hv_tensor_numel (h); i++)
    p[i] = amp * rng_uniform ();
  return hv_backend_upload (b, h);
}

/* Times `steps` denoise steps (after `warmup` untimed ones) at latent [1,16,T,H,W] + L text. */
static gboolean
bench_steps (const char *label, HvDit *d, HvBackend *b, int64_t T, int64_t H, int64_t W, int64_t L,
             int64_t n_valid, int warmup, int steps, guint64 weight_bytes, GError **error)
{
  const HvDitInfo *in = hv_dit_info (d);
  const int64_t xs[5] = { 1, in->in_channels, T, H, W };
  const int64_t ss[3] = { 1, L, in->text_dim }, ps[2] = { 1, in->text_dim_2 };
  g_autoptr(HvTensor) lat = random_act (b, 5, xs, 1.0f);
  g_autoptr(HvTensor) states = random_act (b, 3, ss, 1.0f);
  g_autoptr(HvTensor) pooled = random_act (b, 2, ps, 1.0f);
  g_autofree int32_t *mask = g_new (int32_t, L);
  for (int64_t i = 0; i < L; i++)
    mask[i] = i < n_valid;
  HvDitCond pos = { states, mask, pooled };
  HvDenoiseParams p;
  hv_denoise_params_init (&p);
  p.steps = warmup + steps;
  g_autoptr(HvDenoiser) dn = hv_denoiser_new (d, &p, &pos, NULL, error);
  if (!dn)
    return FALSE;
  for (int i = 0; i < warmup; i++)
    if (!hv_denoiser_step (dn, i, lat, error))
      return FALSE;
  gint64 t0 = g_get_monotonic_time ();
  for (int i = warmup; i < warmup + steps; i++)
    if (!hv_denoiser_step (dn, i, lat, error))
      return FALSE;
  double ms = (g_get_monotonic_time () - t0) / 1000.0 / steps;
  g_autoptr(HvTensor) host = hv_backend_download (b, lat);
  gboolean finite = TRUE;
  for (int64_t i = 0; i < hv_tensor_numel (host); i++)
    finite &= isfinite (((float *) host->data)[i]);
  const int64_t Ni = (T / in->patch[0]) * (H / in->patch[1]) * (W / in->patch[2]);
  double gf = forward_gflop (in, 1, Ni, L);
  printf ("bench-dit: %-6s hidden %d, %d+%d blocks, latent [1,%d,%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
          ",%" G_GINT64_FORMAT "] = %" G_GINT64_FORMAT " img + %" G_GINT64_FORMAT " txt tokens: %.1f ms/step "
          "(%.1f GFLOP/s), weights %.1f MiB%s, peak RSS %.1f MiB%s\n",
          label, in->hidden, in->depth_double, in->depth_single, in->in_channels, T, H, W, Ni, L, ms,
          gf / (ms / 1000.0), weight_bytes / 1048576.0, weight_bytes ? "" : " (mapped file)", peak_rss_mib (), finite ? "" : " (non-finite output!)");
  fflush (stdout);
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autofree char *backend_name = NULL;
  g_autofree char *sizes = NULL;
  int threads = 0, steps = 0;
  g_auto(GStrv) rest = NULL;
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend_name, "cpu (default) or cuda[:N]", "NAME" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "CPU threads (0 = all cores)", "N" },
    { "sizes", 's', 0, G_OPTION_ARG_STRING, &sizes, "comma list of tiny, small, full (default tiny,small)", "LIST" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps, "timed steps per size (default 20 tiny, 2 small, 1 full)", "N" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, "[DIT_FIXTURE_DIR]" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("[DIT_FIXTURE_DIR] — DiT step time and memory");
  g_autoptr(GError) error = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "bench-dit: %s\n", error->message);
    return 2;
  }
  g_autoptr(HvBackend) b = hv_backend_new (backend_name ? backend_name : "cpu", threads, &error);
  if (!b) {
    fprintf (stderr, "bench-dit: %s\n", error->message);
    return g_error_matches (error, HV_ERROR, HV_ERROR_DEVICE) ? 77 : 2;
  }
  g_auto(GStrv) list = g_strsplit (sizes ? sizes : "tiny,small", ",", -1);
  g_autoptr(HvStore) real_store = NULL;   /* declared first: freed after the DiT using it */
  g_autoptr(HvDit) real = NULL;
  guint64 real_bytes = 0;
  printf ("bench-dit: backend %s, %d threads\n", b->name, b->n_threads);
  for (int i = 0; list[i]; i++) {
    const char *s = list[i];
    gboolean ok;
    if (strcmp (s, "tiny") == 0) {
      if (!rest || !rest[0]) {
        fprintf (stderr, "bench-dit: tiny needs the DiT fixture folder as argument\n");
        return 2;
      }
      g_autofree char *path = g_build_filename (rest[0], "dit_weights.safetensors", NULL);
      g_autoptr(HvDit) d = hv_dit_open (path, NULL, b, &error);
      ok = d && bench_steps ("tiny", d, b, 3, 8, 12, 16, 11, 1, steps ? steps : 20, 0, &error);
    } else if (strcmp (s, "small") == 0 || strcmp (s, "full") == 0) {
      if (!real) {
        gint64 t0 = g_get_monotonic_time ();
        real = real_width_dit (b, &real_store, &real_bytes, &error);
        if (!real)
          break;
        printf ("bench-dit: made the random real-width 1+1-block DiT (%.1f MiB bf16) in %.1f s\n",
                real_bytes / 1048576.0, (g_get_monotonic_time () - t0) / 1e6);
      }
      if (s[0] == 's')
        ok = bench_steps ("small", real, b, 3, 16, 16, 256, 40, 1, steps ? steps : 2, real_bytes, &error);
      else
        ok = bench_steps ("full", real, b, 17, 60, 106, 256, 40, 0, steps ? steps : 1, real_bytes, &error);
    } else {
      fprintf (stderr, "bench-dit: unknown size '%s' (tiny, small, full)\n", s);
      return 2;
    }
    if (!ok)
      break;
  }
  if (error) {
    fprintf (stderr, "bench-dit: %s\n", error->message);
    return 1;
  }
  return 0;
}
