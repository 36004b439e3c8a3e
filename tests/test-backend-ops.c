/* test-backend-ops — every op on the CPU backend (the reference) and the CUDA backend with the
 * same random inputs, like ggml's test-backend-ops.
 *
 *   test-backend-ops [-v] [-s SEED] [FILTER]
 *
 * For each case: inputs drawn fresh (seed printed, -s repeats a run), outputs poisoned with NaN
 * on both backends before the op (an element the op forgets to write shows up as NaN), then
 * the GPU result must be finite where the CPU's is and ‖gpu − cpu‖₂ / ‖cpu‖₂ must stay under
 * the case's bound. Bounds follow the arithmetic: fp32 ops ~1e-6; GEMMs whose inputs are exactly
 * representable in the GPU's input type (bf16 / e4m3) are exact products with fp32 sums, so
 * ~1e-6 too; bf16-rounded inputs ~3e-3 (bound 1e-2, the fixtures' CUDA tolerance); fp8
 * activations ~3e-2. Data movers must match bit for bit.
 *
 * Exit 77 ("skip") when there is no CUDA device or the build has no CUDA. --cpu-vs-cpu runs the
 * same cases with a second CPU backend in place of CUDA: it checks the harness itself (every
 * case valid for the op wrappers, every output written, exact agreement) where no GPU is. */
#include "hv-backend.h"
#include "hv-config.h"
#include "hv-error.h"
#if HV_HAVE_CUDA
#include "hv-backend-cuda.h"
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static HvBackend *cpu, *gpu;
static const char *filter;
static gboolean verbose;
static int n_pass, n_fail, n_run;
static guint64 rng;

#define SHAPE(...) (int) (sizeof ((int64_t[]) { __VA_ARGS__ }) / sizeof (int64_t)), (int64_t[]) { __VA_ARGS__ }

/* ---- random inputs ---------------------------------------------------------------------- */

static guint64
next_u64 (void)   /* splitmix64 */
{
  guint64 z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static float
urand (void)   /* [-1, 1) */
{
  return (float) ((next_u64 () >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float
round_bf16 (float v)
{
  return hv_bf16_to_f32 (hv_f32_to_bf16 (v));
}

typedef enum { VAL_F32, VAL_BF16_EXACT } ValKind;

/* Host tensor of dtype dt with values amp·U(-1,1) (+ off). f32 tensors may be restricted to
 * bf16-representable values; f8 tensors store value/scale. */
static HvTensor *
host_rand (HvDType dt, int nd, const int64_t *shape, float amp, float off, ValKind kind, float scale)
{
  HvTensor *t = hv_tensor_new (dt, nd, shape);
  int64_t n = hv_tensor_numel (t);
  t->scale = (dt == HV_DTYPE_F8_E4M3 || dt == HV_DTYPE_F8_E5M2) ? scale : 1.0f;
  for (int64_t i = 0; i < n; i++) {
    float v = off + amp * urand ();
    switch (dt) {
      case HV_DTYPE_F32:
        ((float *) t->data)[i] = kind == VAL_BF16_EXACT ? round_bf16 (v) : v;
        break;
      case HV_DTYPE_BF16:
        ((uint16_t *) t->data)[i] = hv_f32_to_bf16 (v);
        break;
      case HV_DTYPE_F16:
        ((uint16_t *) t->data)[i] = hv_f32_to_f16 (v);
        break;
      case HV_DTYPE_F8_E4M3:
        ((uint8_t *) t->data)[i] = hv_f32_to_f8_e4m3 (v / scale);
        break;
      case HV_DTYPE_F8_E5M2: {
        /* e5m2 is the top byte of f16 (round to nearest even on the dropped byte) */
        uint16_t h = hv_f32_to_f16 (v / scale);
        uint16_t r = (uint16_t) (h + 0x7f + ((h >> 8) & 1));
        ((uint8_t *) t->data)[i] = (uint8_t) (r >> 8);
        break;
      }
      case HV_DTYPE_I32:
        ((int32_t *) t->data)[i] = (int32_t) (next_u64 () % 1000) - 500;
        break;
      case HV_DTYPE_U8:
        ((uint8_t *) t->data)[i] = (uint8_t) next_u64 ();
        break;
      default:
        g_assert_not_reached ();
    }
  }
  return t;
}

static HvTensor *
rand_f32 (int nd, const int64_t *shape, float amp)
{
  return host_rand (HV_DTYPE_F32, nd, shape, amp, 0.0f, VAL_F32, 1.0f);
}

static HvTensor *
rand_bf16x (int nd, const int64_t *shape, float amp)   /* f32 holding bf16-exact values */
{
  return host_rand (HV_DTYPE_F32, nd, shape, amp, 0.0f, VAL_BF16_EXACT, 1.0f);
}

/* ---- a tensor on both backends ----------------------------------------------------------- */

typedef struct {
  HvTensor *c, *g;
} Pair;

static Pair
up (const HvTensor *h)
{
  Pair p = { hv_backend_upload (cpu, h), hv_backend_upload (gpu, h) };
  g_assert (p.c && p.g);
  return p;
}

/* Uploads and frees the host tensor. */
static Pair
up_free (HvTensor *h)
{
  Pair p = up (h);
  hv_tensor_free (h);
  return p;
}

/* An output on both backends, every byte 0xff (NaN for f32/bf16/f16). */
static Pair
out_t (HvDType dt, int nd, const int64_t *shape)
{
  g_autoptr(HvTensor) h = hv_tensor_new (dt, nd, shape);
  memset (h->data, 0xff, hv_tensor_nbytes (h));
  return up (h);
}

static void
pair_clear (Pair *p)
{
  g_clear_pointer (&p->c, hv_tensor_free);
  g_clear_pointer (&p->g, hv_tensor_free);
}

/* ---- checking ------------------------------------------------------------------------------ */

static gboolean
selected (const char *name)
{
  return !filter || strstr (name, filter) != NULL;
}

static void
report (const char *name, gboolean ok, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
report (const char *name, gboolean ok, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  n_run++;
  if (ok)
    n_pass++;
  else
    n_fail++;
  if (!ok || verbose)
    printf ("%s %-48s %s\n", ok ? "ok  " : "FAIL", name, msg);
}

/* Both backends finished without error. */
static gboolean
backends_ok (const char *name)
{
  g_autoptr(GError) e1 = NULL;
  g_autoptr(GError) e2 = NULL;
  gboolean c = hv_backend_check (cpu, &e1), g = hv_backend_check (gpu, &e2);
  if (!c)
    report (name, FALSE, "CPU backend error: %s", e1->message);
  if (!g)
    report (name, FALSE, "CUDA backend error: %s", e2->message);
  return c && g;
}

/* "[i0,i1,...]" of flat index i in tensor t. */
static void
format_index (char *buf, gsize len, const HvTensor *t, int64_t i)
{
  int64_t idx[8] = { 0 };
  for (int d = t->ndim - 1; d >= 0; d--) {
    idx[d] = t->shape[d] ? i % t->shape[d] : 0;
    i = t->shape[d] ? i / t->shape[d] : 0;
  }
  gsize o = g_snprintf (buf, len, "[");
  for (int d = 0; d < t->ndim && o < len; d++)
    o += g_snprintf (buf + o, len - o, "%s%" G_GINT64_FORMAT, d ? "," : "", idx[d]);
  if (o < len)
    g_snprintf (buf + o, len - o, "]");
}

/* After a failed comparison: where the GPU is off, so that a layout or indexing error shows
 * its pattern (which rows / columns / heads) in the first GPU run's log. */
static void
describe_errors (const HvTensor *t, const float *c, const float *g, int64_t n, double bound,
                 double rms)
{
  const double thr = 3.0 * bound * rms;
  int64_t nbad = 0, worst = 0;
  double wd = -1.0;
  char shown[512] = "";
  gsize used = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs ((double) g[i] - c[i]);
    if (d > wd) {
      wd = d;
      worst = i;
    }
    if (d > thr && nbad++ < 6 && used < sizeof shown - 64) {
      char ix[96];
      format_index (ix, sizeof ix, t, i);
      used += g_snprintf (shown + used, sizeof shown - used, " %s gpu %.4g cpu %.4g;", ix, g[i], c[i]);
    }
  }
  char wi[96];
  format_index (wi, sizeof wi, t, worst);
  printf ("     worst at %s: gpu %.6g cpu %.6g; %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
          " elements off by > %.2e:%s\n", wi, g[worst], c[worst], nbad, n, thr, shown);
}

/* Compares output pair `o` (float dtype): finite where the CPU is finite, relative L2 error. */
static gboolean
check (const char *name, const Pair *o, double bound)
{
  if (!backends_ok (name))
    return FALSE;
  g_autoptr(HvTensor) hc_raw = hv_backend_download (cpu, o->c);
  g_autoptr(HvTensor) hg_raw = hv_backend_download (gpu, o->g);
  g_autoptr(HvTensor) hc = hv_tensor_to_f32 (hc_raw);
  g_autoptr(HvTensor) hg = hv_tensor_to_f32 (hg_raw);
  const float *c = hc->data, *g = hg->data;
  int64_t n = hv_tensor_numel (hc), bad = -1, nonfinite = 0;
  double num = 0.0, den = 0.0, maxabs = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite (c[i])) {
      /* every case has finite inputs and outputs: a NaN here is the poison, never written */
      report (name, FALSE, "the CPU reference is not finite at %" G_GINT64_FORMAT " (%g): op not run?", i, c[i]);
      return FALSE;
    }
    if (!isfinite (g[i])) {
      nonfinite++;
      if (bad < 0)
        bad = i;
      continue;
    }
    double d = (double) g[i] - c[i];
    num += d * d;
    den += (double) c[i] * c[i];
    maxabs = MAX (maxabs, fabs (d));
  }
  double rel = den > 0 ? sqrt (num / den) : sqrt (num);
  gboolean ok = bad < 0 && rel <= bound;
  if (bad >= 0)
    report (name, FALSE, "element %" G_GINT64_FORMAT " is %g on the GPU (cpu %g; %" G_GINT64_FORMAT
            " non-finite; NaN = never written?)", bad, g[bad], c[bad], nonfinite);
  else
    report (name, ok, "rel L2 %.2e (bound %.0e), max |diff| %.2e, n %" G_GINT64_FORMAT, rel, bound, maxabs, n);
  if (bad < 0 && !ok)
    describe_errors (hc, c, g, n, bound, n ? sqrt (den / n) : 0.0);
  return ok;
}

/* Bit-exact comparison (data movers, any dtype). */
static gboolean
check_exact (const char *name, const Pair *o)
{
  if (!backends_ok (name))
    return FALSE;
  g_autoptr(HvTensor) hc = hv_backend_download (cpu, o->c);
  g_autoptr(HvTensor) hg = hv_backend_download (gpu, o->g);
  gsize nb = hv_tensor_nbytes (hc);
  const guint8 *a = hc->data, *b = hg->data;
  for (gsize i = 0; i < nb; i++)
    if (a[i] != b[i]) {
      report (name, FALSE, "byte %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " differs (cpu 0x%02x gpu 0x%02x)",
              i, nb, a[i], b[i]);
      return FALSE;
    }
  report (name, TRUE, "bit-exact, %" G_GSIZE_FORMAT " bytes", nb);
  return TRUE;
}

/* ---- cases ------------------------------------------------------------------------------ */

static void
set_fp8_mode (int mode)
{
#if HV_HAVE_CUDA
  HvKCtx *k = hv_backend_cuda_context (gpu);
  if (k)
    hv_k_set_fp8_mode (k, mode);
#endif
}

static int
fp8_tensor_cores (void)
{
#if HV_HAVE_CUDA
  HvKCtx *k = hv_backend_cuda_context (gpu);
  return k && hv_k_get_fp8_mode (k) != HV_K_FP8_DEQUANT;
#else
  return 0;
#endif
}

static void
linear_case (const char *name, int64_t M, int64_t K, int64_t N, HvDType wdt, HvDType bdt,
             gboolean x_exact, double bound)
{
  if (!selected (name))
    return;
  float wscale = 1.0f / 64;   /* fp8: stored values span the e4m3 range */
  HvTensor *hx;
  if (x_exact && (wdt == HV_DTYPE_F8_E4M3 || wdt == HV_DTYPE_F8_E5M2)) {
    /* e4m3 values × 2^-6 with one at the top of the range: quantizing x with amax/448 as the
     * scale is then exact, and so is every product */
    hx = hv_tensor_new (HV_DTYPE_F32, 2, (int64_t[]) { M, K });
    float *p = hx->data;
    for (int64_t i = 0; i < M * K; i++) {
      uint8_t code = (uint8_t) (next_u64 () & 0xff);
      if ((code & 0x7f) == 0x7f)
        code = 0x10;   /* not NaN */
      p[i] = hv_f8_e4m3_to_f32 (code) / 64.0f;
    }
    p[(M * K) / 2] = -448.0f / 64.0f;
  } else {
    hx = x_exact ? rand_bf16x (2, (int64_t[]) { M, K }, 2.0f) : rand_f32 (2, (int64_t[]) { M, K }, 2.0f);
  }
  Pair x = up_free (hx);
  Pair w = up_free (host_rand (wdt, 2, (int64_t[]) { N, K }, 1.0f / sqrtf ((float) K) * 4, 0.0f, VAL_F32, wscale));
  Pair b = { NULL, NULL };
  if (bdt != HV_DTYPE_COUNT)
    b = up_free (host_rand (bdt, 1, (int64_t[]) { N }, 0.5f, 0.0f, VAL_F32, 1.0f));
  Pair y = out_t (HV_DTYPE_F32, 2, (int64_t[]) { M, N });
  hv_op_linear (cpu, y.c, x.c, w.c, b.c);
  hv_op_linear (gpu, y.g, x.g, w.g, b.g);
  check (name, &y, bound);
  pair_clear (&x);
  pair_clear (&w);
  pair_clear (&b);
  pair_clear (&y);
}

static void
test_linear (void)
{
  const HvDType none = HV_DTYPE_COUNT;
  linear_case ("linear bf16 exact-x 37x96x80 +bias", 37, 96, 80, HV_DTYPE_BF16, HV_DTYPE_BF16, TRUE, 2e-6);
  linear_case ("linear bf16 130x256x192 +f32 bias", 130, 256, 192, HV_DTYPE_BF16, HV_DTYPE_F32, FALSE, 1e-2);
  linear_case ("linear bf16 exact-x 1x72x40 (odd K)", 1, 72, 40, HV_DTYPE_BF16, none, TRUE, 2e-6);
  linear_case ("linear bf16 exact-x 3x33x7 (unaligned)", 3, 33, 7, HV_DTYPE_BF16, HV_DTYPE_BF16, TRUE, 2e-6);
  linear_case ("linear bf16 exact-x 1000x3072x512", 1000, 3072, 512, HV_DTYPE_BF16, HV_DTYPE_BF16, TRUE, 5e-6);
  linear_case ("linear f32 (tf32) 64x128x96 +bias", 64, 128, 96, HV_DTYPE_F32, HV_DTYPE_F32, FALSE, 3e-3);
  linear_case ("linear f16 67x128x48 +bias", 67, 128, 48, HV_DTYPE_F16, HV_DTYPE_F16, FALSE, 3e-3);

  /* linear with the activation in the GEMM epilogue (gelu_tanh on 16-bit weights), and the
   * fallback (GEMM then unary) for other weights / activations */
  {
    static const struct { const char *name; HvDType wdt; HvUnary act; } la[] = {
      { "linear_act bf16 gelu_tanh 300x3072x384 +bias (epilogue)", HV_DTYPE_BF16, HV_UNARY_GELU_TANH },
      { "linear_act f16 gelu_tanh 70x256x96 (epilogue)", HV_DTYPE_F16, HV_UNARY_GELU_TANH },
      { "linear_act bf16 silu 70x256x96 +bias", HV_DTYPE_BF16, HV_UNARY_SILU },
      { "linear_act f32 gelu_tanh 33x64x40 +bias", HV_DTYPE_F32, HV_UNARY_GELU_TANH },
    };
    for (guint i = 0; i < G_N_ELEMENTS (la); i++) {
      if (!selected (la[i].name))
        continue;
      int64_t M = i == 0 ? 300 : i == 3 ? 33 : 70, K = i == 0 ? 3072 : i == 3 ? 64 : 256;
      int64_t N = i == 0 ? 384 : i == 3 ? 40 : 96;
      gboolean with_bias = i != 1;
      Pair x = up_free (rand_f32 (2, (int64_t[]) { M, K }, 2.0f));
      Pair w = up_free (host_rand (la[i].wdt, 2, (int64_t[]) { N, K }, 2.0f / sqrtf ((float) K), 0.0f, VAL_F32, 1.0f));
      Pair b = { NULL, NULL };
      if (with_bias)
        b = up_free (host_rand (HV_DTYPE_BF16, 1, (int64_t[]) { N }, 0.5f, 0.0f, VAL_F32, 1.0f));
      Pair y = out_t (HV_DTYPE_F32, 2, (int64_t[]) { M, N });
      hv_op_linear_act (cpu, y.c, x.c, w.c, b.c, la[i].act);
      hv_op_linear_act (gpu, y.g, x.g, w.g, b.g, la[i].act);
      check (la[i].name, &y, 1e-2);
      pair_clear (&x);
      pair_clear (&w);
      pair_clear (&b);
      pair_clear (&y);
    }
  }

  /* fp8 weights: every route of the CUDA backend (on a CPU stand-in or below sm_89 each mode
   * falls back to bf16, and the names say so) */
  static const char *const route[] = { "fp8 TC, two e4m3 terms", "via bf16", "fp8 TC, one e4m3 term" };
  for (int mode = 0; mode < 3; mode++) {
    set_fp8_mode (mode);
    gboolean tc = fp8_tensor_cores ();
    gboolean one_term = tc && mode == 2;
    const char *rn = tc ? route[mode] : route[1];
    char n1[96], n2[96], n3[96], n4[96], n5[96];
    g_snprintf (n1, sizeof n1, "linear e4m3 exact-x 48x128x64 +bias [%s]", rn);
    g_snprintf (n2, sizeof n2, "linear e4m3 200x256x96 +bias [%s]", rn);
    g_snprintf (n3, sizeof n3, "linear e4m3 9x40x24 (K%%16 != 0) [%s]", rn);
    g_snprintf (n4, sizeof n4, "linear e5m2 64x64x32 [%s]", rn);
    g_snprintf (n5, sizeof n5, "linear e4m3 300x3072x128 [%s]", rn);
    /* exact products; Hopper's fp8 MMA sums in reduced precision between fp32 promotions */
    linear_case (n1, 48, 128, 64, HV_DTYPE_F8_E4M3, HV_DTYPE_BF16, TRUE, tc ? 5e-4 : 2e-6);
    /* one e4m3 term: ~3% per element; two terms: ~0.1%; bf16 activations: ~0.2% */
    linear_case (n2, 200, 256, 96, HV_DTYPE_F8_E4M3, HV_DTYPE_BF16, FALSE, one_term ? 6e-2 : 1e-2);
    linear_case (n3, 9, 40, 24, HV_DTYPE_F8_E4M3, none, FALSE, 1e-2);
    linear_case (n4, 64, 64, 32, HV_DTYPE_F8_E5M2, none, FALSE, one_term ? 6e-2 : 1e-2);
    linear_case (n5, 300, 3072, 128, HV_DTYPE_F8_E4M3, HV_DTYPE_BF16, FALSE, one_term ? 6e-2 : 1e-2);
  }
  set_fp8_mode (0);
}

static void
norm_case (const char *name, int kind, int nd, const int64_t *shape, HvDType wdt, gboolean with_bias,
           gboolean in_place)
{
  if (!selected (name))
    return;
  int64_t C = shape[nd - 1];
  Pair x = up_free (host_rand (HV_DTYPE_F32, nd, shape, 3.0f, 0.7f, VAL_F32, 1.0f));
  Pair w = { NULL, NULL }, bias = { NULL, NULL };
  if (wdt != HV_DTYPE_COUNT)
    w = up_free (host_rand (wdt, 1, &C, 0.3f, 1.0f, VAL_F32, 1.0f));
  if (with_bias)
    bias = up_free (host_rand (HV_DTYPE_BF16, 1, &C, 0.3f, 0.0f, VAL_F32, 1.0f));
  Pair y = in_place ? x : out_t (HV_DTYPE_F32, nd, shape);
  if (kind == 0) {
    hv_op_layernorm (cpu, y.c, x.c, w.c, bias.c, 1e-6f);
    hv_op_layernorm (gpu, y.g, x.g, w.g, bias.g, 1e-6f);
  } else if (kind == 1) {
    hv_op_rmsnorm (cpu, y.c, x.c, w.c, 1e-6f);
    hv_op_rmsnorm (gpu, y.g, x.g, w.g, 1e-6f);
  } else {
    hv_op_softmax (cpu, y.c, x.c);
    hv_op_softmax (gpu, y.g, x.g);
  }
  check (name, &y, 2e-6);
  if (!in_place)
    pair_clear (&y);
  pair_clear (&x);
  pair_clear (&w);
  pair_clear (&bias);
}

static void
test_norms (void)
{
  const HvDType none = HV_DTYPE_COUNT;
  norm_case ("layernorm [3,7,3072] w,b bf16", 0, SHAPE (3, 7, 3072), HV_DTYPE_BF16, TRUE, FALSE);
  norm_case ("layernorm [5,96] no affine, in place", 0, SHAPE (5, 96), none, FALSE, TRUE);
  norm_case ("layernorm [4,1030] w f32", 0, SHAPE (4, 1030), HV_DTYPE_F32, FALSE, FALSE);
  norm_case ("rmsnorm [4,9,2,128] w bf16", 1, SHAPE (4, 9, 2, 128), HV_DTYPE_BF16, FALSE, FALSE);
  norm_case ("rmsnorm [3,2000] w f32, in place", 1, SHAPE (3, 2000), HV_DTYPE_F32, FALSE, TRUE);
  norm_case ("rmsnorm [6,33] no w", 1, SHAPE (6, 33), none, FALSE, FALSE);
  norm_case ("softmax [7,33]", 2, SHAPE (7, 33), none, FALSE, FALSE);
  norm_case ("softmax [3,1500] in place", 2, SHAPE (3, 1500), none, FALSE, TRUE);
}

static void
test_unary (void)
{
  static const char *names[] = { "silu", "gelu_tanh", "gelu", "quick_gelu", "sigmoid" };
  for (int op = HV_UNARY_SILU; op <= HV_UNARY_SIGMOID; op++)
    for (int odd = 0; odd < 2; odd++) {
      char name[64];
      g_snprintf (name, sizeof name, "unary %s [%d]", names[op], odd ? 1001 : 4096);
      if (!selected (name))
        continue;
      int64_t n = odd ? 1001 : 4096;
      Pair x = up_free (rand_f32 (1, &n, 8.0f));
      Pair y = out_t (HV_DTYPE_F32, 1, &n);
      hv_op_unary (cpu, y.c, x.c, op);
      hv_op_unary (gpu, y.g, x.g, op);
      check (name, &y, 2e-6);
      pair_clear (&x);
      pair_clear (&y);
    }
}

/* Segment ids: per batch, the first `split[b]` tokens in segment 0, the rest in segment 1. */
static HvTensor *
seg_ids (int64_t B, int64_t L, const int64_t *split)
{
  HvTensor *t = hv_tensor_new (HV_DTYPE_I32, 2, (int64_t[]) { B, L });
  int32_t *p = t->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < L; i++)
      p[b * L + i] = i < split[b] ? 0 : 1;
  return t;
}

typedef struct {
  int64_t B, Lq, Lk, H, Hkv, D;
  gboolean seg, causal, allow;
  gboolean force_f32;
  double bound;
  const char *kernel;   /* HV_CUDA_ATTN for the GPU side ("wgmma", "mma"); NULL: the default */
} AttnCase;

static void
attention_case (const char *name, const AttnCase *a)
{
  if (!selected (name))
    return;
  const int64_t qs[4] = { a->B, a->Lq, a->H, a->D }, ks[4] = { a->B, a->Lk, a->Hkv, a->D };
  /* bf16-exact inputs: the tensor-core kernel's only rounding is then P (probabilities) */
  Pair q = up_free (rand_bf16x (4, qs, 2.0f));
  Pair k = up_free (rand_bf16x (4, ks, 2.0f));
  Pair v = up_free (rand_bf16x (4, ks, 1.0f));
  Pair sq = { NULL, NULL }, sk = { NULL, NULL }, al = { NULL, NULL };
  HvAttnMask mc = { 0 }, mg = { 0 };
  if (a->seg) {
    int64_t splitq[4], splitk[4];
    for (int b = 0; b < a->B && b < 4; b++) {
      splitq[b] = a->Lq * (7 + b) / 10;   /* different boundary per batch */
      splitk[b] = a->Lk * (7 + b) / 10;
    }
    sq = up_free (seg_ids (a->B, a->Lq, splitq));
    sk = up_free (seg_ids (a->B, a->Lk, splitk));
    mc.seg_q = sq.c; mc.seg_k = sk.c;
    mg.seg_q = sq.g; mg.seg_k = sk.g;
  }
  if (a->allow) {
    HvTensor *h = hv_tensor_new (HV_DTYPE_U8, 3, (int64_t[]) { a->B, a->Lq, a->Lk });
    guint8 *p = h->data;
    for (int64_t i = 0; i < hv_tensor_numel (h); i++)
      p[i] = (next_u64 () % 4) != 0;
    /* query row 1 of batch 0 sees nothing: its output must be zeros */
    if (a->Lq > 1)
      memset (p + a->Lk, 0, a->Lk);
    al = up_free (h);
    mc.allow = al.c;
    mg.allow = al.g;
  }
  mc.causal = mg.causal = a->causal;
  gboolean masked = a->seg || a->allow || a->causal;
  Pair o = out_t (HV_DTYPE_F32, 4, qs);
  float scale = 1.0f / sqrtf ((float) a->D);
  hv_op_attention (cpu, o.c, q.c, k.c, v.c, masked ? &mc : NULL, scale);
  /* the kernel choice is read from the environment at each call; restore the caller's */
  g_autofree char *env_saved = g_strdup (g_getenv ("HV_CUDA_ATTN"));
  if (a->force_f32 || a->kernel)
    g_setenv ("HV_CUDA_ATTN", a->force_f32 ? "f32" : a->kernel, TRUE);
  const char *ran_attn = NULL;
#if HV_HAVE_CUDA
  /* a forced kernel this device/build cannot run falls back silently: say so */
  HvKCtx *kctx_attn = hv_backend_cuda_context (gpu);
  if (kctx_attn && a->kernel)
    ran_attn = hv_k_attention_kernel (kctx_attn, a->D, 0);
#endif
  hv_op_attention (gpu, o.g, q.g, k.g, v.g, masked ? &mg : NULL, scale);
  if (env_saved)
    g_setenv ("HV_CUDA_ATTN", env_saved, TRUE);
  else
    g_unsetenv ("HV_CUDA_ATTN");
  check (name, &o, a->bound);
  if (ran_attn && strcmp (ran_attn, a->kernel) != 0)
    printf ("     (ran %s: HV_CUDA_ATTN=%s cannot take this case here)\n", ran_attn, a->kernel);
  pair_clear (&q);
  pair_clear (&k);
  pair_clear (&v);
  pair_clear (&sq);
  pair_clear (&sk);
  pair_clear (&al);
  pair_clear (&o);
}

static void
test_attention (void)
{
  /* tensor-core kernel: P is rounded to bf16 (2^-9 relative) before P·V */
  const double tc = 6e-3, f32 = 2e-5;
  attention_case ("attention D128 B2 L200 H4 full", &(AttnCase) { 2, 200, 200, 4, 4, 128, .bound = tc });
  attention_case ("attention D128 B2 L300 H3 segments (DiT mask)", &(AttnCase) { 2, 300, 300, 3, 3, 128, .seg = TRUE, .bound = tc });
  attention_case ("attention D128 B1 L1000 H2 segments", &(AttnCase) { 1, 1000, 1000, 2, 2, 128, .seg = TRUE, .bound = tc });
  attention_case ("attention D64 B1 L150 H8/2 GQA causal", &(AttnCase) { 1, 150, 150, 8, 2, 64, .causal = TRUE, .bound = tc });
  attention_case ("attention D32 B2 L70 H2 allow mask", &(AttnCase) { 2, 70, 70, 2, 2, 32, .allow = TRUE, .bound = tc });
  attention_case ("attention D32 B2 L88 H2 segments+causal", &(AttnCase) { 2, 88, 88, 2, 2, 32, .seg = TRUE, .causal = TRUE, .bound = tc });
  attention_case ("attention D128 Lq5 Lk333 H4/4", &(AttnCase) { 1, 5, 333, 4, 4, 128, .bound = tc });
  attention_case ("attention D128 Lq333 Lk5 causal", &(AttnCase) { 1, 333, 5, 2, 1, 128, .causal = TRUE, .bound = tc });
  attention_case ("attention D128 L1 H1", &(AttnCase) { 1, 1, 1, 1, 1, 128, .bound = tc });
  attention_case ("attention D80 (fp32 kernel) segments", &(AttnCase) { 2, 90, 90, 2, 2, 80, .seg = TRUE, .bound = f32 });
  attention_case ("attention D512 (fp32 kernel) L96 causal", &(AttnCase) { 1, 96, 96, 1, 1, 512, .causal = TRUE, .bound = f32 });
  attention_case ("attention D16 (fp32 kernel) GQA allow", &(AttnCase) { 2, 40, 50, 4, 2, 16, .allow = TRUE, .bound = f32 });
  attention_case ("attention D128 forced fp32 kernel, segments", &(AttnCase) { 2, 130, 130, 2, 2, 128, .seg = TRUE, .force_f32 = TRUE, .bound = f32 });
  attention_case ("attention D64 forced fp32 kernel, causal GQA", &(AttnCase) { 1, 77, 77, 4, 2, 64, .causal = TRUE, .force_f32 = TRUE, .bound = f32 });

  /* each tensor-core kernel forced (HV_CUDA_ATTN): the Hopper wgmma kernel (D = 128, sm_90a
   * build on a compute 9.0 device; elsewhere the request falls back to mma.sync) and mma.sync.
   * Shapes: 128-row query blocks / 128-key tiles with tails, the DiT segment mask with padded
   * text (SKIPped key tiles), Llama's GQA 32/8-style causal, Lq != Lk, a row that sees nothing. */
  static const char *const kernels[] = { "wgmma", "mma", "wgmma-ws" };   /* wgmma-ws: the warp-specialised variant */
  for (int i = 0; i < (int) G_N_ELEMENTS (kernels); i++) {
    const char *kn = kernels[i];
    char name[96];
#define ATTN_K(label, ...) \
    do { \
      g_snprintf (name, sizeof name, "attention %s D128 %s", kn, label); \
      attention_case (name, &(AttnCase) { __VA_ARGS__, .bound = tc, .kernel = kn }); \
    } while (0)
    ATTN_K ("B2 L200 H4 full", 2, 200, 200, 4, 4, 128);
    ATTN_K ("B2 L333 H3 segments (DiT mask)", 2, 333, 333, 3, 3, 128, .seg = TRUE);
    ATTN_K ("B1 L700 H2 segments, padded text SKIPped", 1, 700, 700, 2, 2, 128, .seg = TRUE);
    ATTN_K ("B1 L300 H8/2 GQA causal", 1, 300, 300, 8, 2, 128, .causal = TRUE);
    ATTN_K ("B2 L150 H2 allow mask", 2, 150, 150, 2, 2, 128, .allow = TRUE);
    ATTN_K ("B2 L260 H2 segments+causal", 2, 260, 260, 2, 2, 128, .seg = TRUE, .causal = TRUE);
    ATTN_K ("Lq5 Lk333 H4/4", 1, 5, 333, 4, 4, 128);
    ATTN_K ("Lq333 Lk5 causal", 1, 333, 5, 2, 1, 128, .causal = TRUE);
    ATTN_K ("Lq200 Lk1000 H2/1", 1, 200, 1000, 2, 1, 128);
    ATTN_K ("L1 H1", 1, 1, 1, 1, 1, 128);
#undef ATTN_K
  }
#if HV_HAVE_CUDA
  /* wgmma-ws turns a hang into a timed-out wait (and wrong values): say which it was */
  HvKCtx *k = hv_backend_cuda_context (gpu);
  if (k && selected ("attention wgmma-ws") && hv_k_attention_ws_stuck (k) > 0) {
    printf ("FAIL attention wgmma-ws: an mbarrier wait timed out (a protocol error in k_flash_ws)\n");
    n_run++;
    n_fail++;
  }
#endif
}

static void
test_rope (void)
{
  for (int mode = 0; mode < 2; mode++) {
    const char *name = mode ? "rope half [2,50,3,64] n40" : "rope interleaved [2,50,3,64] n40";
    if (!selected (name))
      continue;
    Pair x = up_free (rand_f32 (SHAPE (2, 50, 3, 64), 2.0f));
    Pair c = up_free (rand_f32 (SHAPE (40, 64), 1.0f));
    Pair s = up_free (rand_f32 (SHAPE (40, 64), 1.0f));
    hv_op_rope (cpu, x.c, c.c, s.c, mode ? HV_ROPE_HALF : HV_ROPE_INTERLEAVED);
    hv_op_rope (gpu, x.g, c.g, s.g, mode ? HV_ROPE_HALF : HV_ROPE_INTERLEAVED);
    check (name, &x, 2e-6);
    pair_clear (&x);
    pair_clear (&c);
    pair_clear (&s);
  }
}

/* shift/scale/gate widths: 0 = absent, 1 = shared [C], 2 = per batch [B, C] */
static void
modulate_case (const char *name, int64_t B, int64_t L, int64_t C, int shift_kind, int scale_kind, gboolean gate)
{
  if (!selected (name))
    return;
  const int64_t xs[3] = { B, L, C };
  Pair x = up_free (rand_f32 (3, xs, 2.0f));
  Pair sh = { NULL, NULL }, sc = { NULL, NULL };
  if (shift_kind)
    sh = up_free (shift_kind == 1 ? rand_f32 (1, &C, 1.0f) : rand_f32 (2, (int64_t[]) { B, C }, 1.0f));
  if (scale_kind)
    sc = up_free (scale_kind == 1 ? rand_f32 (1, &C, 1.0f) : rand_f32 (2, (int64_t[]) { B, C }, 1.0f));
  if (gate) {
    Pair y = up_free (rand_f32 (3, xs, 1.0f));
    hv_op_gate_add (cpu, x.c, y.c, sc.c);
    hv_op_gate_add (gpu, x.g, y.g, sc.g);
    check (name, &x, 2e-6);
    pair_clear (&y);
  } else {
    Pair y = out_t (HV_DTYPE_F32, 3, xs);
    hv_op_modulate (cpu, y.c, x.c, sh.c, sc.c);
    hv_op_modulate (gpu, y.g, x.g, sh.g, sc.g);
    check (name, &y, 2e-6);
    pair_clear (&y);
  }
  pair_clear (&x);
  pair_clear (&sh);
  pair_clear (&sc);
}

/* The fused adaLN (layernorm without affine, then modulate); in place when inplace. */
static void
ln_modulate_case (const char *name, int64_t B, int64_t L, int64_t C, int shift_kind, int scale_kind,
                  gboolean inplace)
{
  if (!selected (name))
    return;
  const int64_t xs[3] = { B, L, C };
  Pair x = up_free (rand_f32 (3, xs, 3.0f));
  Pair sh = { NULL, NULL }, sc = { NULL, NULL };
  if (shift_kind)
    sh = up_free (shift_kind == 1 ? rand_f32 (1, &C, 1.0f) : rand_f32 (2, (int64_t[]) { B, C }, 1.0f));
  if (scale_kind)
    sc = up_free (scale_kind == 1 ? rand_f32 (1, &C, 1.0f) : rand_f32 (2, (int64_t[]) { B, C }, 1.0f));
  if (inplace) {
    hv_op_layernorm_modulate (cpu, x.c, x.c, sh.c, sc.c, 1e-6f);
    hv_op_layernorm_modulate (gpu, x.g, x.g, sh.g, sc.g, 1e-6f);
    check (name, &x, 1e-5);
  } else {
    Pair y = out_t (HV_DTYPE_F32, 3, xs);
    hv_op_layernorm_modulate (cpu, y.c, x.c, sh.c, sc.c, 1e-6f);
    hv_op_layernorm_modulate (gpu, y.g, x.g, sh.g, sc.g, 1e-6f);
    check (name, &y, 1e-5);
    pair_clear (&y);
  }
  pair_clear (&x);
  pair_clear (&sh);
  pair_clear (&sc);
}

static void
test_modulate (void)
{
  ln_modulate_case ("layernorm_modulate [2,40,3072] shift+scale [B,C]", 2, 40, 3072, 2, 2, FALSE);
  ln_modulate_case ("layernorm_modulate [2,40,3072] in place", 2, 40, 3072, 2, 2, TRUE);
  ln_modulate_case ("layernorm_modulate [3,10,33] shift [C] scale [B,C]", 3, 10, 33, 1, 2, FALSE);
  ln_modulate_case ("layernorm_modulate [1,9,96] scale only", 1, 9, 96, 0, 1, FALSE);
  ln_modulate_case ("layernorm_modulate [2,5,64] neither", 2, 5, 64, 0, 0, TRUE);
  modulate_case ("modulate [2,77,96] shift+scale [B,C]", 2, 77, 96, 2, 2, FALSE);
  modulate_case ("modulate [2,77,96] shift only", 2, 77, 96, 2, 0, FALSE);
  modulate_case ("modulate [2,77,96] scale only, shared", 2, 77, 96, 0, 1, FALSE);
  modulate_case ("modulate [3,10,33] shift [C] scale [B,C]", 3, 10, 33, 1, 2, FALSE);
  modulate_case ("gate_add [2,77,96] gate [B,C]", 2, 77, 96, 0, 2, TRUE);
  modulate_case ("gate_add [3,11,33] gate [C]", 3, 11, 33, 0, 1, TRUE);
  modulate_case ("gate_add [2,5,64] no gate", 2, 5, 64, 0, 0, TRUE);
}

static void
test_binary (void)
{
  static const char *ops[] = { "add", "sub", "mul" };
  const int64_t shapes[][2] = { { 1001, 1001 }, { 4096, 4096 }, { 4096, 64 }, { 999, 37 }, { 960, 1 } };
  for (int op = 0; op < 3; op++)
    for (guint s = 0; s < G_N_ELEMENTS (shapes); s++) {
      char name[64];
      g_snprintf (name, sizeof name, "binary %s [%" G_GINT64_FORMAT "] by [%" G_GINT64_FORMAT "]",
                  ops[op], shapes[s][0], shapes[s][1]);
      if (!selected (name))
        continue;
      Pair a = up_free (rand_f32 (1, &shapes[s][0], 3.0f));
      Pair c = up_free (rand_f32 (1, &shapes[s][1], 3.0f));
      Pair y = out_t (HV_DTYPE_F32, 1, &shapes[s][0]);
      void (*fn) (HvBackend *, HvTensor *, const HvTensor *, const HvTensor *) =
        op == 0 ? hv_op_add : op == 1 ? hv_op_sub : hv_op_mul;
      fn (cpu, y.c, a.c, c.c);
      fn (gpu, y.g, a.g, c.g);
      check (name, &y, 2e-6);
      pair_clear (&a);
      pair_clear (&c);
      pair_clear (&y);
    }
  if (selected ("scale [777]")) {
    int64_t n = 777;
    Pair x = up_free (rand_f32 (1, &n, 3.0f));
    Pair y = out_t (HV_DTYPE_F32, 1, &n);
    hv_op_scale (cpu, y.c, x.c, -1.75f, 0.125f);
    hv_op_scale (gpu, y.g, x.g, -1.75f, 0.125f);
    check ("scale [777]", &y, 2e-6);
    pair_clear (&x);
    pair_clear (&y);
  }
}

static void
copy_case (const char *name, HvDType xdt, HvDType ydt, float scale)
{
  if (!selected (name))
    return;
  const int64_t s[3] = { 3, 17, 29 };
  Pair x = up_free (host_rand (xdt, 3, s, 3.0f, 0.0f, VAL_F32, scale));
  Pair y = out_t (ydt, 3, s);
  hv_op_copy (cpu, y.c, x.c);
  hv_op_copy (gpu, y.g, x.g);
  check_exact (name, &y);
  pair_clear (&x);
  pair_clear (&y);
}

static void
test_copy (void)
{
  copy_case ("copy bf16 -> f32", HV_DTYPE_BF16, HV_DTYPE_F32, 1.0f);
  copy_case ("copy f16 -> f32", HV_DTYPE_F16, HV_DTYPE_F32, 1.0f);
  copy_case ("copy e4m3 (scale 0.37) -> f32", HV_DTYPE_F8_E4M3, HV_DTYPE_F32, 0.37f);
  copy_case ("copy e5m2 (scale 2) -> f32", HV_DTYPE_F8_E5M2, HV_DTYPE_F32, 2.0f);
  copy_case ("copy f32 -> bf16", HV_DTYPE_F32, HV_DTYPE_BF16, 1.0f);
  copy_case ("copy f32 -> f16", HV_DTYPE_F32, HV_DTYPE_F16, 1.0f);
  copy_case ("copy i32 -> f32", HV_DTYPE_I32, HV_DTYPE_F32, 1.0f);
  copy_case ("copy u8 -> f32", HV_DTYPE_U8, HV_DTYPE_F32, 1.0f);

  /* a transposed (strided) view as the source */
  const char *name = "copy strided view [5,7,3] (dims 0,1 swapped)";
  if (selected (name)) {
    Pair x = up_free (rand_f32 (SHAPE (7, 5, 3), 3.0f));
    /* header-only views (they keep each backend pointer); data is cleared before freeing them
     * so that x's memory is released once, by x */
    HvTensor *views[2] = { hv_tensor_view (x.c), hv_tensor_view (x.g) };
    for (int i = 0; i < 2; i++) {
      views[i]->shape[0] = 5;
      views[i]->shape[1] = 7;
      views[i]->stride[0] = 3;
      views[i]->stride[1] = 15;
    }
    Pair y = out_t (HV_DTYPE_F32, SHAPE (5, 7, 3));
    hv_op_copy (cpu, y.c, views[0]);
    hv_op_copy (gpu, y.g, views[1]);
    check_exact (name, &y);
    for (int i = 0; i < 2; i++) {
      views[i]->data = NULL;
      hv_tensor_free (views[i]);
    }
    pair_clear (&x);
    pair_clear (&y);
  }
}

static void
test_movers (void)
{
  if (selected ("slice f32 dim1")) {
    Pair x = up_free (rand_f32 (SHAPE (3, 10, 5), 1.0f));
    Pair y = out_t (HV_DTYPE_F32, SHAPE (3, 4, 5));
    hv_op_slice (cpu, y.c, x.c, 1, 2);
    hv_op_slice (gpu, y.g, x.g, 1, 2);
    check_exact ("slice f32 dim1", &y);
    pair_clear (&x);
    pair_clear (&y);
  }
  if (selected ("slice i32 dim0")) {
    Pair x = up_free (host_rand (HV_DTYPE_I32, SHAPE (9, 6), 1.0f, 0.0f, VAL_F32, 1.0f));
    Pair y = out_t (HV_DTYPE_I32, SHAPE (3, 6));
    hv_op_slice (cpu, y.c, x.c, 0, 5);
    hv_op_slice (gpu, y.g, x.g, 0, 5);
    check_exact ("slice i32 dim0", &y);
    pair_clear (&x);
    pair_clear (&y);
  }
  if (selected ("slice bf16 last dim")) {
    Pair x = up_free (host_rand (HV_DTYPE_BF16, SHAPE (4, 3, 11), 1.0f, 0.0f, VAL_F32, 1.0f));
    Pair y = out_t (HV_DTYPE_BF16, SHAPE (4, 3, 6));
    hv_op_slice (cpu, y.c, x.c, 2, 5);
    hv_op_slice (gpu, y.g, x.g, 2, 5);
    check_exact ("slice bf16 last dim", &y);
    pair_clear (&x);
    pair_clear (&y);
  }
  if (selected ("concat f32 dim2")) {
    Pair a = up_free (rand_f32 (SHAPE (2, 3, 4, 5), 1.0f));
    Pair c = up_free (rand_f32 (SHAPE (2, 3, 7, 5), 1.0f));
    Pair y = out_t (HV_DTYPE_F32, SHAPE (2, 3, 11, 5));
    hv_op_concat (cpu, y.c, a.c, c.c, 2);
    hv_op_concat (gpu, y.g, a.g, c.g, 2);
    check_exact ("concat f32 dim2", &y);
    pair_clear (&a);
    pair_clear (&c);
    pair_clear (&y);
  }
  if (selected ("concat f32 dim0")) {
    Pair a = up_free (rand_f32 (SHAPE (3, 8), 1.0f));
    Pair c = up_free (rand_f32 (SHAPE (1, 8), 1.0f));
    Pair y = out_t (HV_DTYPE_F32, SHAPE (4, 8));
    hv_op_concat (cpu, y.c, a.c, c.c, 0);
    hv_op_concat (gpu, y.g, a.g, c.g, 0);
    check_exact ("concat f32 dim0", &y);
    pair_clear (&a);
    pair_clear (&c);
    pair_clear (&y);
  }
  if (selected ("permute f32 5-d {0,2,1,4,3}")) {
    Pair x = up_free (rand_f32 (SHAPE (2, 3, 4, 5, 6), 1.0f));
    Pair y = out_t (HV_DTYPE_F32, SHAPE (2, 4, 3, 6, 5));
    hv_op_permute (cpu, y.c, x.c, (int[]) { 0, 2, 1, 4, 3 });
    hv_op_permute (gpu, y.g, x.g, (int[]) { 0, 2, 1, 4, 3 });
    check_exact ("permute f32 5-d {0,2,1,4,3}", &y);
    pair_clear (&x);
    pair_clear (&y);
  }
  if (selected ("permute u8 4-d {3,1,0,2}")) {
    Pair x = up_free (host_rand (HV_DTYPE_U8, SHAPE (2, 3, 4, 5), 1.0f, 0.0f, VAL_F32, 1.0f));
    Pair y = out_t (HV_DTYPE_U8, SHAPE (5, 3, 2, 4));
    hv_op_permute (cpu, y.c, x.c, (int[]) { 3, 1, 0, 2 });
    hv_op_permute (gpu, y.g, x.g, (int[]) { 3, 1, 0, 2 });
    check_exact ("permute u8 4-d {3,1,0,2}", &y);
    pair_clear (&x);
    pair_clear (&y);
  }
  for (int which = 0; which < 3; which++) {
    static const char *names[] = { "get_rows bf16 table, i32 ids", "get_rows f32 table, i64 ids",
                                   "get_rows e4m3 table (scale 0.1)" };
    if (!selected (names[which]))
      continue;
    HvDType tdt = which == 0 ? HV_DTYPE_BF16 : which == 1 ? HV_DTYPE_F32 : HV_DTYPE_F8_E4M3;
    Pair t = up_free (host_rand (tdt, SHAPE (50, 64), 2.0f, 0.0f, VAL_F32, 0.1f));
    HvTensor *ids = hv_tensor_new (which == 1 ? HV_DTYPE_I64 : HV_DTYPE_I32, 1, (int64_t[]) { 17 });
    for (int i = 0; i < 17; i++) {
      int64_t v = (int64_t) (next_u64 () % 50);
      if (which == 1) ((int64_t *) ids->data)[i] = v; else ((int32_t *) ids->data)[i] = (int32_t) v;
    }
    Pair id = up_free (ids);
    Pair y = out_t (HV_DTYPE_F32, SHAPE (17, 64));
    hv_op_get_rows (cpu, y.c, t.c, id.c);
    hv_op_get_rows (gpu, y.g, t.g, id.g);
    check_exact (names[which], &y);
    pair_clear (&t);
    pair_clear (&id);
    pair_clear (&y);
  }
  if (selected ("get_rows bad id is an error")) {
    Pair t = up_free (rand_f32 (SHAPE (10, 8), 1.0f));
    HvTensor *ids = hv_tensor_new (HV_DTYPE_I32, 1, (int64_t[]) { 3 });
    ((int32_t *) ids->data)[0] = 1;
    ((int32_t *) ids->data)[1] = 10;   /* one past the end */
    ((int32_t *) ids->data)[2] = 2;
    Pair id = up_free (ids);
    Pair y = out_t (HV_DTYPE_F32, SHAPE (3, 8));
    hv_op_get_rows (gpu, y.g, t.g, id.g);
    g_autoptr(GError) e = NULL;
    gboolean ok = hv_backend_check (gpu, &e);
    report ("get_rows bad id is an error", !ok && g_error_matches (e, HV_ERROR, HV_ERROR_INVALID),
            "%s", e ? e->message : "no error reported");
    pair_clear (&t);
    pair_clear (&id);
    pair_clear (&y);
  }
}

/* path: NULL = the backend's choice; "im2col" / "igemm" / "igemm-wide" / "igemm-wgmma" forces
 * a CUDA conv3d path (HV_CUDA_CONV, read on every call) */
static void
conv_case_path (const char *name, const char *path, int64_t B, int64_t Ci, int64_t T, int64_t H,
                int64_t W, int64_t Co, const int *k, const int *stride, const int *pad, HvDType wdt,
                gboolean bias, double bound)
{
  if (!selected (name))
    return;
  int64_t To = (T + 2 * pad[0] - k[0]) / stride[0] + 1;
  int64_t Ho = (H + 2 * pad[1] - k[1]) / stride[1] + 1;
  int64_t Wo = (W + 2 * pad[2] - k[2]) / stride[2] + 1;
  /* bf16-exact activations and bf16 weights: the GPU GEMM's products are exact */
  Pair x = up_free (rand_bf16x (SHAPE (B, Ci, T, H, W), 2.0f));
  Pair w = up_free (host_rand (wdt, SHAPE (Co, Ci, k[0], k[1], k[2]), 0.3f, 0.0f, VAL_F32, 1.0f));
  Pair bb = { NULL, NULL };
  if (bias)
    bb = up_free (host_rand (HV_DTYPE_BF16, 1, &Co, 0.5f, 0.0f, VAL_F32, 1.0f));
  Pair y = out_t (HV_DTYPE_F32, SHAPE (B, Co, To, Ho, Wo));
  hv_op_conv3d (cpu, y.c, x.c, w.c, bb.c, stride, pad);
  if (path)
    g_setenv ("HV_CUDA_CONV", path, TRUE);
  const char *ran = NULL;
#if HV_HAVE_CUDA
  /* a forced path this device/build or shape cannot take falls back silently: say so */
  HvKCtx *kctx = hv_backend_cuda_context (gpu);
  if (kctx && path)
    ran = hv_k_conv3d_kernel (kctx, B, Ci, T, H, W, Co, k, stride, pad);
#endif
  hv_op_conv3d (gpu, y.g, x.g, w.g, bb.g, stride, pad);
  g_unsetenv ("HV_CUDA_CONV");
  check (name, &y, bound);
  if (ran && strcmp (ran, path) != 0)
    printf ("     (ran %s: HV_CUDA_CONV=%s cannot take this case here)\n", ran, path);
  pair_clear (&x);
  pair_clear (&w);
  pair_clear (&bb);
  pair_clear (&y);
}

static void
conv_case (const char *name, int64_t B, int64_t Ci, int64_t T, int64_t H, int64_t W, int64_t Co,
           const int *k, const int *stride, const int *pad, HvDType wdt, gboolean bias, double bound)
{
  conv_case_path (name, NULL, B, Ci, T, H, W, Co, k, stride, pad, wdt, bias, bound);
}

/* The same case on each CUDA path: the implicit-GEMM kernel (igemm-wide: its 4-warp variant,
 * different only for Co > 64; igemm-wgmma: the Hopper wgmma kernel where it runs — compute 9.0,
 * Ci and Co >= 32 — else the default path) and the im2col + cuBLASLt fallback. */
static void
conv_case_both (const char *what, int64_t B, int64_t Ci, int64_t T, int64_t H, int64_t W,
                int64_t Co, const int *k, const int *stride, const int *pad, HvDType wdt,
                gboolean bias, double bound)
{
  static const char *const paths[] = { "igemm", "igemm-wide", "igemm-wgmma", "im2col" };
  for (int i = 0; i < 4; i++) {
    g_autofree char *name = g_strdup_printf ("conv3d %s %s", paths[i], what);
    conv_case_path (name, paths[i], B, Ci, T, H, W, Co, k, stride, pad, wdt, bias, bound);
  }
}

static void
test_conv (void)
{
  /* implicit GEMM: K chunks of 32 channels of one tap, tiles of 128 positions x 32/64/128 Co */
  conv_case_both ("3x3x3 p1 Ci40 Co40 odd T/H/W +bias", 1, 40, 5, 9, 11, 40, (int[]) { 3, 3, 3 },
                  (int[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case_both ("1x1x1 Ci64 Co130 B2", 2, 64, 3, 8, 12, 130, (int[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 },
                  (int[]) { 0, 0, 0 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case_both ("3x3x3 s2 p1 Ci32 Co16 B2", 2, 32, 5, 9, 10, 16, (int[]) { 3, 3, 3 }, (int[]) { 2, 2, 2 },
                  (int[]) { 1, 1, 1 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case_both ("3x3x3 p0 Ci128 Co128 (VAE, pre-padded)", 1, 128, 4, 18, 34, 128, (int[]) { 3, 3, 3 },
                  (int[]) { 1, 1, 1 }, (int[]) { 0, 0, 0 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case_both ("3x3x3 p1 Ci32 Co3 (conv_out)", 1, 32, 3, 6, 7, 3, (int[]) { 3, 3, 3 }, (int[]) { 1, 1, 1 },
                  (int[]) { 1, 1, 1 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case_both ("3x3x3 p(0,1,1) Ci3 Co20 (conv_in)", 1, 3, 4, 7, 9, 20, (int[]) { 3, 3, 3 }, (int[]) { 1, 1, 1 },
                  (int[]) { 0, 1, 1 }, HV_DTYPE_BF16, FALSE, 2e-6);
  conv_case_both ("3x3x3 p0 Ci48 Co72 f16 weights", 1, 48, 3, 7, 9, 72, (int[]) { 3, 3, 3 }, (int[]) { 1, 1, 1 },
                  (int[]) { 0, 0, 0 }, HV_DTYPE_F16, TRUE, 1e-2);
  /* wgmma kernel shapes: 64-channel K chunks with a Ci tail, Co tiles of 128 (two warpgroups)
   * and 64 (one), several 256-position tiles, stride 2 */
  conv_case_both ("3x3x3 s2 p1 Ci33 Co72 B2", 2, 33, 5, 9, 11, 72, (int[]) { 3, 3, 3 }, (int[]) { 2, 2, 2 },
                  (int[]) { 1, 1, 1 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case_both ("3x3x3 p1 Ci96 Co48 [1,96,3,11,25]", 1, 96, 3, 11, 25, 48, (int[]) { 3, 3, 3 },
                  (int[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case_both ("1x1x1 Ci70 Co130 B2 P=600", 2, 70, 2, 10, 30, 130, (int[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 },
                  (int[]) { 0, 0, 0 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case ("conv3d 3x3x3 s1 p1 bf16 +bias", 1, 8, 5, 9, 11, 16, (int[]) { 3, 3, 3 }, (int[]) { 1, 1, 1 },
             (int[]) { 1, 1, 1 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case ("conv3d 3x3x3 s(1,2,2) p(0,1,1) B2", 2, 6, 4, 10, 12, 8, (int[]) { 3, 3, 3 }, (int[]) { 1, 2, 2 },
             (int[]) { 0, 1, 1 }, HV_DTYPE_BF16, TRUE, 2e-6);
  conv_case ("conv3d 1x1x1 bf16", 1, 32, 3, 8, 12, 16, (int[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 },
             (int[]) { 0, 0, 0 }, HV_DTYPE_BF16, FALSE, 2e-6);
  conv_case ("conv3d 3x1x1 f32 weights (via bf16)", 1, 4, 6, 5, 7, 5, (int[]) { 3, 1, 1 }, (int[]) { 2, 1, 1 },
             (int[]) { 1, 0, 0 }, HV_DTYPE_F32, TRUE, 1e-2);
}

static void
test_3d (void)
{
  for (int mode = 0; mode < 2; mode++) {
    const char *name = mode ? "pad3d replicate {2,0,1,2,0,3}" : "pad3d zero {2,0,1,2,0,3}";
    if (!selected (name))
      continue;
    Pair x = up_free (rand_f32 (SHAPE (2, 3, 4, 5, 6), 1.0f));
    Pair y = out_t (HV_DTYPE_F32, SHAPE (2, 3, 6, 8, 9));
    const int pads[6] = { 2, 0, 1, 2, 0, 3 };
    hv_op_pad3d (cpu, y.c, x.c, pads, mode ? HV_PAD_REPLICATE : HV_PAD_ZERO);
    hv_op_pad3d (gpu, y.g, x.g, pads, mode ? HV_PAD_REPLICATE : HV_PAD_ZERO);
    check_exact (name, &y);
    pair_clear (&x);
    pair_clear (&y);
  }
  for (int f = 0; f < 2; f++) {
    const char *name = f ? "upsample nearest {1,2,2}" : "upsample nearest {2,2,2}";
    if (!selected (name))
      continue;
    const int fac[3] = { f ? 1 : 2, 2, 2 };
    Pair x = up_free (rand_f32 (SHAPE (1, 4, 3, 5, 6), 1.0f));
    Pair y = out_t (HV_DTYPE_F32, SHAPE (1, 4, 3 * fac[0], 10, 12));
    hv_op_upsample_nearest (cpu, y.c, x.c, fac);
    hv_op_upsample_nearest (gpu, y.g, x.g, fac);
    check_exact (name, &y);
    pair_clear (&x);
    pair_clear (&y);
  }
  for (int big = 0; big < 2; big++) {
    const char *name = big ? "groupnorm [1,8,4,64,80] 2 groups (multi-chunk)" : "groupnorm [2,32,3,7,9] 8 groups w,b";
    if (!selected (name))
      continue;
    Pair x = big ? up_free (host_rand (HV_DTYPE_F32, SHAPE (1, 8, 4, 64, 80), 2.0f, 3.0f, VAL_F32, 1.0f))
                 : up_free (host_rand (HV_DTYPE_F32, SHAPE (2, 32, 3, 7, 9), 2.0f, -1.0f, VAL_F32, 1.0f));
    int64_t C = big ? 8 : 32;
    Pair w = up_free (host_rand (HV_DTYPE_BF16, 1, &C, 0.3f, 1.0f, VAL_F32, 1.0f));
    Pair b = up_free (host_rand (HV_DTYPE_BF16, 1, &C, 0.3f, 0.0f, VAL_F32, 1.0f));
    Pair y = out_t (HV_DTYPE_F32, x.c->ndim, x.c->shape);
    hv_op_groupnorm (cpu, y.c, x.c, big ? 2 : 8, w.c, b.c, 1e-6f);
    hv_op_groupnorm (gpu, y.g, x.g, big ? 2 : 8, w.g, b.g, 1e-6f);
    check (name, &y, 1e-5);
    /* the VAE's fused norm + SiLU on the same input */
    g_autofree char *fused = g_strconcat (name, " + silu (fused)", NULL);
    hv_op_groupnorm_silu (cpu, y.c, x.c, big ? 2 : 8, w.c, b.c, 1e-6f);
    hv_op_groupnorm_silu (gpu, y.g, x.g, big ? 2 : 8, w.g, b.g, 1e-6f);
    check (fused, &y, 1e-5);
    pair_clear (&x);
    pair_clear (&w);
    pair_clear (&b);
    pair_clear (&y);
  }
}

typedef struct {
  const char *name;
  void (*run) (void);
} Group;

static const Group groups[] = {
  { "linear", test_linear }, { "norms", test_norms }, { "unary", test_unary },
  { "attention", test_attention }, { "rope", test_rope }, { "modulate", test_modulate },
  { "binary", test_binary }, { "copy", test_copy }, { "movers", test_movers },
  { "conv", test_conv }, { "3d", test_3d },
};

/* Both backends, or an exit status: 77 without a GPU, 1 on another error. */
static int
open_backends (gboolean cpu_vs_cpu)
{
  g_autoptr(GError) error = NULL;
  gpu = cpu_vs_cpu ? hv_backend_cpu_new (0) : hv_backend_cuda_new (0, &error);
  if (!gpu) {
    if (g_error_matches (error, HV_ERROR, HV_ERROR_DEVICE)) {
      printf ("no CUDA device: skipping (%s)\n", error->message);
      return 77;
    }
    fprintf (stderr, "test-backend-ops: %s\n", error->message);
    return 1;
  }
  cpu = hv_backend_cpu_new (0);
  return 0;
}

/* --isolate: each group of cases in its own process, so that a sticky CUDA error (an illegal
 * address poisons the context), a crash or a hang costs one group's results, not the rest of
 * the run. The parent never touches CUDA (a context does not survive fork). Group g draws its
 * inputs from seed + g. */
static int
run_isolated (gboolean cpu_vs_cpu, gint64 seed, int group_timeout)
{
  for (guint g = 0; g < G_N_ELEMENTS (groups); g++) {
    int fds[2];
    if (pipe (fds) != 0) {
      perror ("test-backend-ops: pipe");
      return 1;
    }
    fflush (stdout);
    pid_t pid = fork ();
    if (pid < 0) {
      perror ("test-backend-ops: fork");
      return 1;
    }
    if (pid == 0) {
      close (fds[0]);
      alarm ((unsigned) group_timeout);
      n_pass = n_fail = n_run = 0;   /* this group's alone: the parent sums them */
      int rc = open_backends (cpu_vs_cpu);
      if (rc == 0) {
        rng = (guint64) seed + g;
        groups[g].run ();
        /* an error the CUDA backend recorded after the group's last check counts too */
        (void) backends_ok (groups[g].name);
      }
      int counts[4] = { n_pass, n_fail, n_run, rc };
      fflush (stdout);
      if (write (fds[1], counts, sizeof counts) != (ssize_t) sizeof counts)
        _exit (3);
      _exit (0);
    }
    close (fds[1]);
    int counts[4] = { 0 }, status = 0;
    ssize_t got = read (fds[0], counts, sizeof counts);
    close (fds[0]);
    waitpid (pid, &status, 0);
    if (got == (ssize_t) sizeof counts && WIFEXITED (status) && WEXITSTATUS (status) == 0) {
      if (counts[3] == 77 || counts[3] == 1)
        return counts[3];
      n_pass += counts[0];
      n_fail += counts[1];
      n_run += counts[2];
      continue;
    }
    n_run++;
    n_fail++;
    if (WIFSIGNALED (status))
      printf ("FAIL group %s: the process died of signal %d%s (cases before it in the group: see "
              "above)\n", groups[g].name, WTERMSIG (status),
              WTERMSIG (status) == SIGALRM ? " (over its time limit: a hang?)" : "");
    else
      printf ("FAIL group %s: the process ended without its counts (exit %d)\n", groups[g].name,
              WIFEXITED (status) ? WEXITSTATUS (status) : -1);
  }
  return -1;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  gint64 seed = 0;
  gboolean cpu_vs_cpu = FALSE, isolate = FALSE;
  int group_timeout = 60;
  GOptionEntry entries[] = {
    { "cpu-vs-cpu", 0, 0, G_OPTION_ARG_NONE, &cpu_vs_cpu, "check this harness: a second CPU backend stands in for CUDA", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "print every case, not only failures", NULL },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "random seed (default: from the clock, printed)", "N" },
    { "isolate", 'i', 0, G_OPTION_ARG_NONE, &isolate, "run each group of cases in its own process (a crash, hang or sticky CUDA error costs one group)", NULL },
    { "group-timeout", 0, 0, G_OPTION_ARG_INT, &group_timeout, "with --isolate: seconds a group may take (default 60)", "S" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("[FILTER] — every op on CPU and CUDA, compared");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "test-backend-ops: %s\n", error->message);
    return 2;
  }
  filter = argc > 1 ? argv[1] : NULL;
  /* an op wrapper that rejects a case (g_return_if_fail) must fail the run, not leave both
   * outputs poisoned alike */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  if (seed == 0)
    seed = g_get_real_time ();

  if (isolate) {
    printf ("test-backend-ops: seed %" G_GINT64_FORMAT " (repeat with -s and --isolate), each group "
            "in its own process\n", seed);
    int rc = run_isolated (cpu_vs_cpu, seed, MAX (group_timeout, 1));
    if (rc >= 0)
      return rc;
  } else {
    int rc = open_backends (cpu_vs_cpu);
    if (rc != 0)
      return rc;
    rng = (guint64) seed;
    printf ("test-backend-ops: seed %" G_GINT64_FORMAT " (repeat with -s), GPU backend %s, fp8 %s\n",
            seed, gpu->name, fp8_tensor_cores () ? "tensor cores" : "via bf16");
    for (guint g = 0; g < G_N_ELEMENTS (groups); g++)
      groups[g].run ();
    hv_backend_free (gpu);
    hv_backend_free (cpu);
  }

  printf ("test-backend-ops: %d passed, %d failed (of %d)\n", n_pass, n_fail, n_run);
  if (n_run == 0) {
    fprintf (stderr, "test-backend-ops: no case matches '%s'\n", filter ? filter : "");
    return 1;
  }
  return n_fail == 0 ? 0 : 1;
}
