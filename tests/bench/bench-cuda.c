/* bench-cuda — the CUDA backend at the sizes of the real model, beside the PyTorch anchor of
 * issue 7 (H200, PyTorch 2.11 / diffusers, bf16, random weights).
 *
 *   bench-cuda [--device N] [--only gemm,conv,attn,dit,vae] [--dit-sizes 480,544,720] [--reps N]
 *              [--fixtures DIR] [--vae-dtype f16|bf16]
 *
 *  gemm  bf16 GEMM 67,584×3072×12288 (the MLP down-projection at 544×960×129): cuBLASLt alone
 *        on bf16 operands (what torch times), and hv_op_linear end to end (f32 activations
 *        rounded to bf16, bias in the epilogue, f32 out)
 *  conv  one full-resolution VAE conv: 128 -> 128 channels, 3x3x3, x [1,128,19,258,258] (padded
 *        by the engine) -> y [1,128,17,256,256], f16 weights + bias, on each CUDA path
 *        (HV_CUDA_CONV=igemm: implicit GEMM, 8 warps of 64x32; igemm-wide: 4 warps of 64x64;
 *        igemm-wgmma: the Hopper wgmma kernel, 4 and 3 (HV_CUDA_CONV_STAGES=3) stages;
 *        im2col: column buffer + cuBLASLt), TFLOP/s
 *  attn  attention, 24 heads × 128, L = 67,576 and 119,056 (544×960×129 and 720×1280×129
 *        video tokens + 256 text): no mask (what SDPA times) and the DiT's segment mask, with
 *        the Hopper wgmma kernel and the mma.sync kernel side by side (HV_CUDA_ATTN)
 *  dit   one DiT step (one forward) at 480×848×65, 544×960×129, 720×1280×129 with random
 *        weights of the released model (20 double + 40 single blocks, hidden 3072, bf16;
 *        tensors of equal fan-in share one random block of memory on the host, each is
 *        uploaded), after one warm-up step at the first size; FLOP model of the issue:
 *        60 × (2 × 113M × L_img + 4 × L² × 3072), L = video + valid text tokens
 *  vae   VAE decode of latents [1, 16, 33, 68, 120] -> 544×960×129 with the official tiling,
 *        random real-width decoder weights (f16 by default, as the anchor; config and shapes of
 *        DIR/manifests/vae_full.json, default DIR tests/data/fixtures), after a warm-up decode
 *        at 320×320×17
 *
 * Times: device events around the op (gemm, attn; median of --reps after a warm-up), wall
 * clock around forward + synchronize (dit) and around the whole decode (vae). Inputs are
 * random (never zeros). Peak memory is the backend pool's high-water mark (weights included).
 * Ends with a table; exit 77 without a GPU. */
#include "bench-common.h"
#include "hv-backend.h"
#include "hv-backend-cuda.h"
#include "hv-dit.h"
#include "hv-vae.h"
#include "hv-error.h"
#include "hv-layout.h"
#include "hv-kernels.h"
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static HvBackend *be;
static HvKCtx *kc;
static int reps = 5;

typedef struct {
  char what[64];
  char ours[64];
  char anchor[64];
  char target[32];
} Row;

static GArray *rows;

static void
add_row (const char *what, const char *anchor, const char *target, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static void
add_row (const char *what, const char *anchor, const char *target, const char *fmt, ...)
{
  Row r;
  va_list ap;
  va_start (ap, fmt);
  g_vsnprintf (r.ours, sizeof r.ours, fmt, ap);
  va_end (ap);
  g_strlcpy (r.what, what, sizeof r.what);
  g_strlcpy (r.anchor, anchor, sizeof r.anchor);
  g_strlcpy (r.target, target, sizeof r.target);
  g_array_append_val (rows, r);
  printf ("bench-cuda: %-44s %s\n", what, r.ours);
  fflush (stdout);
}

static gboolean
check_backend (const char *what)
{
  g_autoptr(GError) e = NULL;
  if (hv_backend_check (be, &e))
    return TRUE;
  printf ("bench-cuda: %s failed: %s\n", what, e->message);
  return FALSE;
}

static HvTensor *
dev_random (HvDType dt, int nd, const int64_t *shape, float amp, guint64 seed)
{
  HvTensor *t = hv_backend_tensor (be, dt, nd, shape);
  if (!t)
    return NULL;
  if (hv_k_fill_random (kc, t->data, dt, hv_tensor_numel (t), seed, amp, 0.0f) != 0) {
    hv_tensor_free (t);
    return NULL;
  }
  return t;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

typedef void (*RunFn) (gpointer data);

/* Median device time (ms) of `n` runs after `warm` warm-up runs; < 0 on error. */
static double
time_ms (RunFn fn, gpointer data, int warm, int n)
{
  cudaStream_t s = hv_k_ctx_stream (kc);
  cudaEvent_t a, b;
  if (cudaEventCreate (&a) != cudaSuccess || cudaEventCreate (&b) != cudaSuccess)
    return -1.0;
  for (int i = 0; i < warm; i++)
    fn (data);
  if (!check_backend ("warm-up"))
    return -1.0;
  double *t = g_new (double, n);
  for (int i = 0; i < n; i++) {
    float ms = 0.0f;
    cudaEventRecord (a, s);
    fn (data);
    cudaEventRecord (b, s);
    cudaEventSynchronize (b);
    cudaEventElapsedTime (&ms, a, b);
    t[i] = ms;
  }
  cudaEventDestroy (a);
  cudaEventDestroy (b);
  qsort (t, n, sizeof *t, cmp_double);
  double med = t[n / 2];
  g_free (t);
  return check_backend ("timed runs") ? med : -1.0;
}

/* ---- GEMM ----------------------------------------------------------------------------------- */

typedef struct {
  int64_t M, N, K;
  void *xh, *wh;
  float *d;
  HvTensor *x, *w, *bias, *y;
} Gemm;

static void
run_gemm_raw (gpointer p)
{
  Gemm *g = p;
  /* column-major: D (N×M) = Wᵀ-as-stored (T) · x (N) */
  if (hv_k_gemm_bf16 (kc, 1, 0, g->N, g->M, g->K, g->wh, g->K, g->xh, g->K, g->d, g->N, 1.0f) != 0)
    printf ("bench-cuda: GEMM failed: %s\n", hv_k_ctx_error (kc));
}

static void
run_linear (gpointer p)
{
  Gemm *g = p;
  hv_op_linear (be, g->y, g->x, g->w, g->bias);
}

static void
bench_gemm (void)
{
  Gemm g = { 67584, 3072, 12288 };
  double flop = 2.0 * g.M * g.N * g.K;
  g.xh = hv_k_alloc (kc, (size_t) (g.M * g.K) * 2);
  g.wh = hv_k_alloc (kc, (size_t) (g.N * g.K) * 2);
  g.d = hv_k_alloc (kc, (size_t) (g.M * g.N) * 4);
  if (!g.xh || !g.wh || !g.d) {
    printf ("bench-cuda: GEMM buffers: %s\n", hv_k_ctx_error (kc));
    goto out;
  }
  hv_k_fill_random (kc, g.xh, HV_K_BF16, g.M * g.K, 1, 1.0f, 0.0f);
  hv_k_fill_random (kc, g.wh, HV_K_BF16, g.N * g.K, 2, 0.01f, 0.0f);
  double ms = time_ms (run_gemm_raw, &g, 3, reps * 2);
  if (ms > 0)
    add_row ("GEMM 67584x3072x12288 bf16 (cuBLASLt)", "6.30 ms = 810 TF/s", ">= 95%", "%.2f ms = %.0f TF/s",
             ms, flop / ms / 1e9);
  hv_k_free (kc, g.xh);
  hv_k_free (kc, g.d);
  g.xh = NULL;
  g.d = NULL;

  /* the op as the DiT calls it */
  g.x = dev_random (HV_DTYPE_F32, 2, (int64_t[]) { g.M, g.K }, 1.0f, 3);
  g.w = hv_backend_tensor (be, HV_DTYPE_BF16, 2, (int64_t[]) { g.N, g.K });
  g.bias = dev_random (HV_DTYPE_BF16, 1, (int64_t[]) { g.N }, 0.1f, 4);
  g.y = hv_backend_tensor (be, HV_DTYPE_F32, 2, (int64_t[]) { g.M, g.N });
  if (!g.x || !g.w || !g.bias || !g.y) {
    printf ("bench-cuda: linear buffers: out of GPU memory\n");
    goto out;
  }
  hv_k_fill_random (kc, g.w->data, HV_K_BF16, g.N * g.K, 5, 0.01f, 0.0f);
  ms = time_ms (run_linear, &g, 2, reps);
  if (ms > 0)
    add_row ("hv_op_linear same shape (f32 in/out, +bias)", "-", "-", "%.2f ms = %.0f TF/s", ms, flop / ms / 1e9);
out:
  hv_k_free (kc, g.xh);
  hv_k_free (kc, g.wh);
  hv_k_free (kc, g.d);
  hv_tensor_free (g.x);
  hv_tensor_free (g.w);
  hv_tensor_free (g.bias);
  hv_tensor_free (g.y);
  check_backend ("GEMM");
}

/* ---- conv3d ------------------------------------------------------------------------------ */

typedef struct {
  HvTensor *x, *w, *bias, *y;
} Conv;

static void
run_conv (gpointer p)
{
  Conv *c = p;
  const int one[3] = { 1, 1, 1 }, zero[3] = { 0, 0, 0 };
  hv_op_conv3d (be, c->y, c->x, c->w, c->bias, one, zero);
}

static void
bench_conv (void)
{
  Conv c = { 0 };
  const int64_t C = 128, To = 17, Ho = 256, Wo = 256;
  double flop = 2.0 * C * C * 27 * To * Ho * Wo;
  c.x = dev_random (HV_DTYPE_F32, 5, (int64_t[]) { 1, C, To + 2, Ho + 2, Wo + 2 }, 1.0f, 31);
  c.w = dev_random (HV_DTYPE_F16, 5, (int64_t[]) { C, C, 3, 3, 3 }, 0.03f, 32);
  c.bias = dev_random (HV_DTYPE_F16, 1, (int64_t[]) { C }, 0.1f, 33);
  c.y = hv_backend_tensor (be, HV_DTYPE_F32, 5, (int64_t[]) { 1, C, To, Ho, Wo });
  if (!c.x || !c.w || !c.bias || !c.y) {
    printf ("bench-cuda: conv3d: out of GPU memory\n");
    goto out;
  }
  /* igemm-wgmma: the Hopper kernel (conv3d-wgmma.cu; the default path where it cannot run),
   * with 4 and with 3 shared-memory stages (HV_CUDA_CONV_STAGES) */
  static const char *const paths[] = { "igemm", "igemm-wide", "igemm-wgmma", "igemm-wgmma", "im2col" };
  static const char *const label[] = { "igemm", "igemm-wide", "igemm-wgmma", "igemm-wgmma s3", "im2col" };
  static const char *const predicted[] = { "~2.5-3.3 ms predicted", "~2.5-3.3 ms predicted",
                                           "~1.9-2.5 ms predicted", "~1.9-2.5 ms predicted", "-" };
  for (int i = 0; i < 5; i++) {
    g_setenv ("HV_CUDA_CONV", paths[i], TRUE);
    if (i == 3)
      g_setenv ("HV_CUDA_CONV_STAGES", "3", TRUE);
    /* a path this device/build cannot run falls back silently: the row says what ran instead */
    const int ks[3] = { 3, 3, 3 }, one[3] = { 1, 1, 1 }, zero[3] = { 0, 0, 0 };
    const char *ran = hv_k_conv3d_kernel (kc, 1, C, To + 2, Ho + 2, Wo + 2, C, ks, one, zero);
    double ms = time_ms (run_conv, &c, 1, reps);
    g_unsetenv ("HV_CUDA_CONV");
    g_unsetenv ("HV_CUDA_CONV_STAGES");
    char what[112];
    if (strcmp (ran, paths[i]) == 0)
      g_snprintf (what, sizeof what, "conv3d 128->128 3x3x3 [1,128,17,256,256] %s", label[i]);
    else
      g_snprintf (what, sizeof what, "conv3d 128->128 3x3x3 [1,128,17,256,256] %s (%s)", label[i], ran);
    if (ms > 0)
      add_row (what, "-", predicted[i], "%.2f ms = %.0f TF/s", ms, flop / ms / 1e9);
  }
out:
  hv_tensor_free (c.x);
  hv_tensor_free (c.w);
  hv_tensor_free (c.bias);
  hv_tensor_free (c.y);
  check_backend ("conv3d");
}

/* ---- attention ------------------------------------------------------------------------------ */

typedef struct {
  HvTensor *q, *k, *v, *o, *sq;
  const HvAttnMask *mask;
} Attn;

static void
run_attn (gpointer p)
{
  Attn *a = p;
  hv_op_attention (be, a->o, a->q, a->k, a->v, a->mask, 1.0f / sqrtf (128.0f));
}

static void
bench_attention (int64_t L, const char *anchor, const char *target, int64_t n_valid_text)
{
  const int64_t shape[4] = { 1, L, 24, 128 };
  Attn a = { 0 };
  char what[64];
  double flop = 4.0 * (double) L * L * 24 * 128;
  a.q = dev_random (HV_DTYPE_F32, 4, shape, 1.0f, 11);
  a.k = dev_random (HV_DTYPE_F32, 4, shape, 1.0f, 12);
  a.v = dev_random (HV_DTYPE_F32, 4, shape, 1.0f, 13);
  a.o = hv_backend_tensor (be, HV_DTYPE_F32, 4, shape);
  if (!a.q || !a.k || !a.v || !a.o) {
    printf ("bench-cuda: attention L=%" G_GINT64_FORMAT ": out of GPU memory\n", L);
    goto out;
  }
  {
    int n = L > 100000 ? MAX (reps / 2, 2) : reps;
    /* the DiT's mask: video + valid text in segment 0, padded text in segment 1 */
    int64_t n_seg0 = L - 256 + n_valid_text;
    {
      g_autoptr(HvTensor) h = hv_tensor_new (HV_DTYPE_I32, 2, (int64_t[]) { 1, L });
      int32_t *p = h->data;
      for (int64_t i = 0; i < L; i++)
        p[i] = i < n_seg0 ? 0 : 1;
      a.sq = hv_backend_upload (be, h);
    }
    HvAttnMask m = { a.sq, a.sq, NULL, FALSE };
    /* FLOPs actually needed with the mask: both segments' own blocks */
    double fl = 4.0 * ((double) n_seg0 * n_seg0 + (double) (L - n_seg0) * (L - n_seg0)) * 24 * 128;
    /* each tensor-core kernel side by side (HV_CUDA_ATTN; the default on Hopper is wgmma); a
     * kernel this device/build cannot run is listed once, under the one that ran instead */
    g_autofree char *env_saved = g_strdup (g_getenv ("HV_CUDA_ATTN"));
    static const char *const kernels[] = { "wgmma", "wgmma-ws", "mma" };
    const char *ran_before = NULL;
    for (int ki = 0; ki < (int) G_N_ELEMENTS (kernels); ki++) {
      g_setenv ("HV_CUDA_ATTN", kernels[ki], TRUE);
      const char *kn = hv_k_attention_kernel (kc, 128, 0);
      if (ran_before && strcmp (kn, ran_before) == 0)
        continue;
      ran_before = kn;
      a.mask = NULL;
      double ms = time_ms (run_attn, &a, 1, n);
      g_snprintf (what, sizeof what, "attention L=%" G_GINT64_FORMAT " no mask, %s", L, kn);
      if (ms > 0)
        add_row (what, anchor, target, "%.1f ms = %.0f TF/s", ms, flop / ms / 1e9);
      a.mask = &m;
      ms = time_ms (run_attn, &a, 1, n);
      a.mask = NULL;
      g_snprintf (what, sizeof what, "attention L=%" G_GINT64_FORMAT " DiT mask, %s", L, kn);
      if (ms > 0)
        add_row (what, "-", "-", "%.1f ms = %.0f TF/s", ms, fl / ms / 1e9);
      if (strcmp (kn, "wgmma-ws") == 0 && hv_k_attention_ws_stuck (kc) > 0)
        add_row ("  (wgmma-ws rows above)", "-", "-", "INVALID: a barrier wait timed out");
    }
    if (env_saved)
      g_setenv ("HV_CUDA_ATTN", env_saved, TRUE);
    else
      g_unsetenv ("HV_CUDA_ATTN");
  }
out:
  hv_tensor_free (a.q);
  hv_tensor_free (a.k);
  hv_tensor_free (a.v);
  hv_tensor_free (a.o);
  hv_tensor_free (a.sq);
  check_backend ("attention");
}

/* ---- DiT step ---------------------------------------------------------------------------- */

/* Host memory shared by weights of equal fan-in: random bf16 of amplitude 1/sqrt(fan_in) (norm
 * weights 1 ± 0.1, biases ± 0.02), so activations stay in range through 60 blocks. */
typedef struct {
  GHashTable *need;   /* fan-in key -> max numel */
  GHashTable *pool;   /* fan-in key -> uint16_t* */
  HvStore *store;
  GError *error;
  guint64 bytes;
  guint64 rng;
} Pools;

static int64_t
fan_key (const char *name, int ndim, const int64_t *shape, int64_t n)
{
  if (ndim >= 2)
    return n / shape[0];           /* fan-in */
  return g_str_has_suffix (name, ".weight") ? -1 : -2;   /* norm weights, biases */
}

static void
pools_need (const char *name, int ndim, const int64_t *shape, gpointer data)
{
  Pools *p = data;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  gpointer key = GSIZE_TO_POINTER ((gsize) (fan_key (name, ndim, shape, n) + 16));
  int64_t have = GPOINTER_TO_SIZE (g_hash_table_lookup (p->need, key));
  if (n > have)
    g_hash_table_insert (p->need, key, GSIZE_TO_POINTER ((gsize) n));
}

static void
pools_fill (gpointer key, gpointer value, gpointer data)
{
  Pools *p = data;
  int64_t fan = (int64_t) GPOINTER_TO_SIZE (key) - 16, n = (int64_t) GPOINTER_TO_SIZE (value);
  float amp = fan == -1 ? 0.1f : fan == -2 ? 0.02f : 1.0f / sqrtf ((float) fan);
  float off = fan == -1 ? 1.0f : 0.0f;
  uint16_t *buf = g_malloc ((gsize) n * 2);
  for (int64_t i = 0; i < n; i++) {
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    float u = (float) ((p->rng >> 40) * (2.0 / 16777216.0)) - 1.0f;
    buf[i] = hv_f32_to_bf16 (off + amp * u);
  }
  g_hash_table_insert (p->pool, key, buf);
}

static void
pools_insert (const char *name, int ndim, const int64_t *shape, gpointer data)
{
  Pools *p = data;
  if (p->error)
    return;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  gpointer key = GSIZE_TO_POINTER ((gsize) (fan_key (name, ndim, shape, n) + 16));
  /* borrowed: the pool outlives the store; freeing the tensor frees only its header */
  HvTensor *t = hv_tensor_new_borrowed (HV_DTYPE_BF16, ndim, shape, g_hash_table_lookup (p->pool, key), NULL, NULL);
  p->bytes += (guint64) n * 2;
  hv_store_insert (p->store, name, t, &p->error);
}

typedef struct {
  const char *label;
  int T, H, W;                 /* latent */
  const char *anchor, *target;
} DitSize;

static void
bench_dit (const char *sizes)
{
  const DitSize all[] = {
    { "480", 17, 60, 106, "2.42 s", "<= 1.4 s" },
    { "544", 33, 68, 120, "10.92 s, peak 30.9 GB", "<= 6.5 s" },
    { "720", 33, 90, 160, "31.5 s, peak 36.3 GB", "<= 18 s" },
  };
  const HvDitShape shape = {
    .hidden = 3072, .heads = 24, .head_dim = 128, .mlp_hidden = 4 * 3072,
    .refiner_mlp_hidden = 4 * 3072, .n_double = 20, .n_single = 40, .n_refiner = 2,
    .in_channels = 16, .out_channels = 16, .patch = { 1, 2, 2 },
    .text_dim = 4096, .text_dim_2 = 768, .freq_dim = 256, .guidance_embed = TRUE,
  };
  const int64_t Ltxt = 256, n_valid = 64;
  Pools p = { g_hash_table_new (NULL, NULL), g_hash_table_new_full (NULL, NULL, NULL, g_free),
              hv_store_new (), NULL, 0, 0x9e3779b97f4a7c15ull };
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) want = g_strsplit (sizes, ",", -1);
  HvDit *d = NULL;
  gboolean warmed = FALSE;
  gsize used = 0, peak = 0;
  gint64 t1, t0 = g_get_monotonic_time ();
  hv_dit_expected (&shape, pools_need, &p);
  g_hash_table_foreach (p.need, pools_fill, &p);
  hv_dit_expected (&shape, pools_insert, &p);
  if (p.error) {
    printf ("bench-cuda: DiT weights: %s\n", p.error->message);
    g_clear_error (&p.error);
    goto out;
  }
  t1 = g_get_monotonic_time ();
  d = hv_dit_new (p.store, NULL, be, &error);
  if (!d || !check_backend ("DiT upload")) {
    printf ("bench-cuda: DiT: %s\n", error ? error->message : "upload failed");
    goto out;
  }
  hv_backend_cuda_mem_stats (be, &used, &peak);
  printf ("bench-cuda: random DiT 20+40 blocks, %.2f GB bf16: made in %.1f s, on the GPU in %.1f s "
          "(%.2f GB in use)\n", p.bytes / 1e9, (t1 - t0) / 1e6, (g_get_monotonic_time () - t1) / 1e6, used / 1e9);

  for (guint i = 0; i < G_N_ELEMENTS (all); i++) {
    const DitSize *s = &all[i];
    if (!g_strv_contains ((const char * const *) want, s->label))
      continue;
    const int64_t xs[5] = { 1, 16, s->T, s->H, s->W };
    const int64_t ts[3] = { 1, Ltxt, 4096 }, t2s[2] = { 1, 768 };
    g_autoptr(HvTensor) x = dev_random (HV_DTYPE_F32, 5, xs, 1.0f, 21);
    g_autoptr(HvTensor) out = hv_backend_tensor (be, HV_DTYPE_F32, 5, xs);
    g_autoptr(HvTensor) txt = dev_random (HV_DTYPE_F32, 3, ts, 1.0f, 22);
    g_autoptr(HvTensor) txt2 = dev_random (HV_DTYPE_F32, 2, t2s, 1.0f, 23);
    int32_t mask[256];
    for (int j = 0; j < Ltxt; j++)
      mask[j] = j < n_valid;
    const float tstep = 500.0f, guid = 6000.0f;
    if (!x || !out || !txt || !txt2) {
      printf ("bench-cuda: DiT %s: out of GPU memory for the inputs\n", s->label);
      break;
    }
    if (!warmed) {
      if (!hv_dit_forward (d, out, x, &tstep, &guid, txt, mask, txt2, &error) || !check_backend ("DiT warm-up")) {
        printf ("bench-cuda: DiT warm-up: %s\n", error ? error->message : "failed");
        break;
      }
      warmed = TRUE;
    }
    hv_backend_cuda_reset_peak (be);
    gint64 a = g_get_monotonic_time ();
    gboolean ok = hv_dit_forward (d, out, x, &tstep, &guid, txt, mask, txt2, &error) && check_backend ("DiT step");
    double sec = (g_get_monotonic_time () - a) / 1e6;
    if (!ok) {
      printf ("bench-cuda: DiT %s: %s\n", s->label, error ? error->message : "failed");
      break;
    }
    g_autoptr(HvTensor) host = hv_backend_download (be, out);
    gboolean finite = TRUE;
    for (int64_t j = 0; j < hv_tensor_numel (host); j++)
      finite &= isfinite (((float *) host->data)[j]) != 0;
    hv_backend_cuda_mem_stats (be, &used, &peak);
    int64_t Limg = (int64_t) s->T * (s->H / 2) * (s->W / 2), L = Limg + n_valid;
    double flop = 60.0 * (2.0 * 113e6 * Limg + 4.0 * (double) L * L * 3072);
    char what[64];
    g_snprintf (what, sizeof what, "DiT step %s (%" G_GINT64_FORMAT " video tokens)",
                i == 0 ? "480x848x65" : i == 1 ? "544x960x129" : "720x1280x129", Limg);
    add_row (what, s->anchor, s->target, "%.2f s = %.0f TF/s, peak %.1f GB%s", sec, flop / sec / 1e12,
             peak / 1e9, finite ? "" : " NON-FINITE");
  }
out:
  hv_dit_free (d);
  hv_store_free (p.store);
  g_hash_table_destroy (p.need);
  g_hash_table_destroy (p.pool);
  check_backend ("DiT");
}

/* ---- VAE decode --------------------------------------------------------------------------- */

/* The real-width causal 3D VAE decoder (random weights in `dt`, bench-common.c) on latents
 * [1, 16, 33, 68, 120] -> 544x960x129 with the official tiling (hv_vae_tiling_init: 256 px /
 * 64 frame tiles, overlap 0.25), as the anchor (diffusers, tiled, fp16) does. Timed: one
 * hv_vae_decode_z (host latents in, host f32 video out: upload and download included) after a
 * warm-up decode of 320x320x17 (4 spatial tiles). */
static void
bench_vae (const char *fixtures, HvDType dt)
{
  g_autoptr(GError) error = NULL;
  gsize used = 0, peak = 0;
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr(HvVae) vae = hv_bench_real_vae (fixtures, dt, be, &error);
  if (!vae || !check_backend ("VAE upload")) {
    printf ("bench-cuda: VAE: %s\n", error ? error->message : "upload failed");
    return;
  }
  hv_backend_cuda_mem_stats (be, &used, &peak);
  printf ("bench-cuda: random real-width VAE decoder (%s weights): made and on the GPU in %.1f s "
          "(%.2f GB in use)\n", hv_dtype_name (dt), (g_get_monotonic_time () - t0) / 1e6, used / 1e9);
  fflush (stdout);
  HvVaeTiling tiling;
  hv_vae_tiling_init (vae, &tiling);
  const int64_t warm_shape[5] = { 1, 16, 5, 40, 40 }, shape[5] = { 1, 16, 33, 68, 120 };
  for (int pass = 0; pass < 2; pass++) {
    const int64_t *zs = pass == 0 ? warm_shape : shape;
    g_autoptr(HvTensor) z = hv_tensor_new (HV_DTYPE_F32, 5, zs);
    if (!z) {
      printf ("bench-cuda: VAE: out of host memory for the latents\n");
      return;
    }
    guint32 seed = 77 + pass;
    for (int64_t i = 0; i < hv_tensor_numel (z); i++)
      ((float *) z->data)[i] = hv_bench_lcg (&seed);
    g_autoptr(HvTensor) video = NULL;
    hv_backend_cuda_reset_peak (be);
    gint64 a = g_get_monotonic_time ();
    gboolean ok = hv_vae_decode_z (vae, z, &tiling, &video, &error) && check_backend ("VAE decode");
    double sec = (g_get_monotonic_time () - a) / 1e6;
    if (!ok) {
      printf ("bench-cuda: VAE %s: %s\n", pass == 0 ? "warm-up" : "decode", error ? error->message : "failed");
      return;
    }
    if (pass == 0)
      continue;
    hv_backend_cuda_mem_stats (be, &used, &peak);
    gboolean finite = TRUE;
    for (int64_t j = 0; j < hv_tensor_numel (video); j++)
      finite &= isfinite (((float *) video->data)[j]) != 0;
    char what[64];
    g_snprintf (what, sizeof what, "VAE decode 544x960x129 tiled (%s weights)", hv_dtype_name (dt));
    add_row (what, "14.8 s, peak 4.6 GB (fp16)", "<= 10 s", "%.2f s, peak %.1f GB%s", sec, peak / 1e9,
             finite ? "" : " NON-FINITE");
  }
}

int
main (int argc, char **argv)
{
  int device = 0;
  g_autofree char *only = NULL;
  g_autofree char *dit_sizes = NULL;
  g_autofree char *fixtures = NULL;
  g_autofree char *vae_dtype = NULL;
  GOptionEntry entries[] = {
    { "device", 'd', 0, G_OPTION_ARG_INT, &device, "CUDA device index", "N" },
    { "only", 0, 0, G_OPTION_ARG_STRING, &only, "comma list of gemm, conv, attn, dit, vae (default all)", "LIST" },
    { "dit-sizes", 0, 0, G_OPTION_ARG_STRING, &dit_sizes, "comma list of 480, 544, 720 (default all)", "LIST" },
    { "fixtures", 0, 0, G_OPTION_ARG_FILENAME, &fixtures, "vae: the fixtures folder with manifests/vae_full.json "
      "(default tests/data/fixtures)", "DIR" },
    { "vae-dtype", 0, 0, G_OPTION_ARG_STRING, &vae_dtype, "vae: weight dtype f16 or bf16 (default f16)", "DT" },
    { "reps", 'r', 0, G_OPTION_ARG_INT, &reps, "timed repetitions (median; default 5)", "N" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("— the CUDA backend at the real model's sizes");
  g_autoptr(GError) error = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "bench-cuda: %s\n", error->message);
    return 2;
  }
  reps = MAX (reps, 1);
  static const char *const sections[] = { "gemm", "conv", "attn", "dit", "vae", NULL };
  g_auto(GStrv) parts = g_strsplit (only ? only : "gemm,conv,attn,dit,vae", ",", -1);
  for (int i = 0; parts[i]; i++)
    if (!g_strv_contains (sections, parts[i])) {
      fprintf (stderr, "bench-cuda: unknown section '%s' in --only (gemm, conv, attn, dit, vae)\n", parts[i]);
      return 2;
    }
  HvDType vdt = HV_DTYPE_F16;
  if (vae_dtype && strcmp (vae_dtype, "f16") != 0) {
    if (strcmp (vae_dtype, "bf16") != 0) {
      fprintf (stderr, "bench-cuda: --vae-dtype must be f16 or bf16, not '%s'\n", vae_dtype);
      return 2;
    }
    vdt = HV_DTYPE_BF16;
  }
  be = hv_backend_cuda_new (device, &error);
  if (!be) {
    printf ("no CUDA device: skipping (%s)\n", error->message);
    return g_error_matches (error, HV_ERROR, HV_ERROR_DEVICE) ? 77 : 1;
  }
  kc = hv_backend_cuda_context (be);
  rows = g_array_new (FALSE, FALSE, sizeof (Row));
  printf ("bench-cuda: %s (sm_%d); anchor: H200, PyTorch 2.11 / diffusers\n", hv_k_ctx_device_name (kc), hv_k_ctx_sm (kc));

  if (g_strv_contains ((const char * const *) parts, "gemm"))
    bench_gemm ();
  if (g_strv_contains ((const char * const *) parts, "conv"))
    bench_conv ();
  if (g_strv_contains ((const char * const *) parts, "attn")) {
    bench_attention (67576, "FA2 153 ms; cuDNN 96.8 ms (L=67,596)", "<= 90 ms", 64);
    bench_attention (119056, "FA2 482 ms; cuDNN 304 ms", "<= 280 ms", 64);
  }
  if (g_strv_contains ((const char * const *) parts, "dit"))
    bench_dit (dit_sizes ? dit_sizes : "480,544,720");
  if (g_strv_contains ((const char * const *) parts, "vae"))
    bench_vae (fixtures ? fixtures : "tests/data/fixtures", vdt);

  printf ("\n%-44s | %-36s | %-38s | %s\n", "what", hv_k_ctx_device_name (kc), "anchor (H200, PyTorch)", "target");
  for (guint i = 0; i < rows->len; i++) {
    Row *r = &g_array_index (rows, Row, i);
    printf ("%-44s | %-36s | %-38s | %s\n", r->what, r->ours, r->anchor, r->target);
  }
  g_array_free (rows, TRUE);
  hv_backend_free (be);
  return 0;
}
