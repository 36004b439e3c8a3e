/* test-ops.c — every op of the CPU backend against independently computed values: small
 * hand-computed cases and naive double-precision loops written here from the op definitions
 * (explicit mask matrices, explicit conv sums, weight values decoded by this file's own
 * format decoders). Shapes are chosen to cross the backend's internal block sizes. */
#include "hv-backend.h"
#include "hv-error.h"
#include <math.h>
#include <string.h>

static HvBackend *be;

/* ---- helpers ---------------------------------------------------------------------------- */

static guint32 rng_state = 12345;

static double
urand (void)   /* [0, 1) */
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return (rng_state >> 8) / 16777216.0;
}

static float
frand (float lo, float hi)
{
  return lo + (hi - lo) * (float) urand ();
}

static HvTensor *
rand_t (int nd, const int64_t *shape, float lo, float hi)
{
  HvTensor *t = hv_tensor_new_f32 (nd, shape);
  float *d = t->data;
  for (int64_t i = 0; i < hv_tensor_numel (t); i++)
    d[i] = frand (lo, hi);
  return t;
}

static HvTensor *
new_f32 (int nd, const int64_t *shape)
{
  return hv_backend_tensor_f32 (be, nd, shape);
}

static HvTensor *
from_array (int nd, const int64_t *shape, const float *v)
{
  HvTensor *t = hv_tensor_new_f32 (nd, shape);
  memcpy (t->data, v, hv_tensor_nbytes (t));
  return t;
}

/* max |got - exp| <= tol * max(1, max |exp|) */
static void
assert_close (const char *what, const float *got, const double *want, int64_t n, double tol)
{
  double mx = 1.0, err = 0.0;
  int64_t worst = -1;
  for (int64_t i = 0; i < n; i++)
    mx = MAX (mx, fabs (want[i]));
  for (int64_t i = 0; i < n; i++) {
    double e = fabs ((double) got[i] - want[i]);
    if (!(e <= err) || isnan (got[i])) {
      err = isnan (got[i]) ? INFINITY : e;
      worst = i;
    }
  }
  if (err > tol * mx)
    g_error ("%s: max error %g at %" G_GINT64_FORMAT " (got %g, expected %g), limit %g", what, err,
             worst, got[worst], want[worst], tol * mx);
}

static void
assert_close_f (const char *what, const float *got, const float *want, int64_t n, double tol)
{
  double *e = g_new (double, MAX (n, 1));
  for (int64_t i = 0; i < n; i++) e[i] = want[i];
  assert_close (what, got, e, n, tol);
  g_free (e);
}

/* The format definitions, written here independently of hv-tensor.c: a finite code of a
 * binary float with `eb` exponent and `mb` mantissa bits (sign above them, bias 2^(eb-1) - 1,
 * exponent field 0 = subnormal). */
static double
ref_float (guint32 c, int eb, int mb)
{
  int s = (c >> (eb + mb)) & 1, e = (c >> mb) & ((1 << eb) - 1), bias = (1 << (eb - 1)) - 1;
  double m = (double) (c & ((1u << mb) - 1)) / (double) (1u << mb);
  double v = e == 0 ? ldexp (m, 1 - bias) : ldexp (1.0 + m, e - bias);
  return s ? -v : v;
}

static double ref_e4m3 (guint8 c) { return ref_float (c, 4, 3); }
static double ref_e5m2 (guint8 c) { return ref_float (c, 5, 2); }
static double ref_half (guint16 h) { return ref_float (h, 5, 10); }
static double ref_bf16 (guint16 h) { return ref_float (h, 8, 7); }

/* A random weight tensor [N, K] in dtype dt: random finite codes; `vals` gets the real values
 * (code value × scale) decoded with the definitions above. */
static HvTensor *
rand_weight (HvDType dt, int nd, const int64_t *shape, float scale, double *vals)
{
  HvTensor *t = hv_tensor_new (dt, nd, shape);
  int64_t n = hv_tensor_numel (t);
  t->scale = scale;
  for (int64_t i = 0; i < n; i++) {
    switch (dt) {
      case HV_DTYPE_F32: {
        float f = frand (-1, 1);
        ((float *) t->data)[i] = f;
        vals[i] = f * (double) scale;
        break;
      }
      case HV_DTYPE_BF16: {   /* sign, exponent 2^-4..2^0, any mantissa */
        guint16 c = (guint16) (((urand () < 0.5) << 15) | ((123 + (int) (urand () * 5)) << 7) | (int) (urand () * 128));
        ((guint16 *) t->data)[i] = c;
        vals[i] = ref_bf16 (c) * scale;
        break;
      }
      case HV_DTYPE_F16: {    /* includes subnormals (exponent field 0) */
        guint16 c = (guint16) (((urand () < 0.5) << 15) | ((int) (urand () * 16) << 10) | (int) (urand () * 1024));
        ((guint16 *) t->data)[i] = c;
        vals[i] = ref_half (c) * scale;
        break;
      }
      case HV_DTYPE_F8_E4M3: {
        guint8 c = (guint8) (urand () * 255);   /* 0..254, 0x7f is NaN: avoid */
        if ((c & 0x7f) == 0x7f) c = 0x10;
        ((guint8 *) t->data)[i] = c;
        vals[i] = ref_e4m3 (c) * scale;
        break;
      }
      case HV_DTYPE_F8_E5M2: {  /* exponent field < 31: finite */
        guint8 c = (guint8) (((urand () < 0.5) << 7) | ((int) (urand () * 18) << 2) | (int) (urand () * 4));
        ((guint8 *) t->data)[i] = c;
        vals[i] = ref_e5m2 (c) * scale;
        break;
      }
      default:
        g_assert_not_reached ();
    }
  }
  return t;
}

/* ---- backend ------------------------------------------------------------------------------ */

static void
test_backend_new (void)
{
  GError *err = NULL;
  HvBackend *b = hv_backend_new ("cpu", 2, &err);
  g_assert_no_error (err);
  g_assert_nonnull (b);
  g_assert_true (hv_backend_is_host (b));
  g_assert_cmpint (b->n_threads, ==, 2);
  g_assert_true (hv_backend_check (b, &err));
  hv_backend_free (b);

  b = hv_backend_new ("cpu", 0, &err);
  g_assert_no_error (err);
  g_assert_cmpint (b->n_threads, >=, 1);
  hv_backend_free (b);

  g_assert_null (hv_backend_new ("tpu", 0, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&err);
  g_assert_null (hv_backend_new ("cuda:x", 0, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&err);
  g_assert_null (hv_backend_new ("cuda:", 0, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&err);
  if (!hv_backend_cuda_available ()) {
    g_assert_null (hv_backend_new ("cuda:0", 0, &err));
    g_assert_error (err, HV_ERROR, HV_ERROR_DEVICE);
    g_clear_error (&err);
  }
}

static void
test_backend_memory (void)
{
  int64_t shape[2] = { 33, 7 };
  HvTensor *t = hv_backend_tensor (be, HV_DTYPE_BF16, 2, shape);
  g_assert_nonnull (t);
  g_assert_true (t->backend == be);
  g_assert_cmpint (t->dtype, ==, HV_DTYPE_BF16);
  g_assert_cmpint ((guintptr) t->data % 64, ==, 0);
  memset (t->data, 0xab, hv_tensor_nbytes (t));   /* the whole block is writable */
  void *first = t->data;
  hv_tensor_free (t);
  /* a freed block of the same size is reused */
  t = hv_backend_tensor (be, HV_DTYPE_BF16, 2, shape);
  g_assert_true (t->data == first);
  hv_tensor_free (t);

  /* upload / download round trip keeps dtype, scale, bytes */
  HvTensor *h = hv_tensor_new (HV_DTYPE_F8_E4M3, 2, shape);
  h->scale = 0.25f;
  for (int i = 0; i < 33 * 7; i++) ((guint8 *) h->data)[i] = (guint8) (i * 7);
  HvTensor *u = hv_backend_upload (be, h);
  g_assert_true (u->backend == be && u->data != h->data);
  g_assert_cmpfloat (u->scale, ==, 0.25f);
  HvTensor *d = hv_backend_download (be, u);
  g_assert_null (d->backend);
  g_assert_cmpint (d->dtype, ==, HV_DTYPE_F8_E4M3);
  g_assert_cmpmem (d->data, 33 * 7, h->data, 33 * 7);
  /* a weight on the CPU is a view: same data, freeing it leaves the host tensor intact */
  HvTensor *w = hv_backend_weight (be, h);
  g_assert_true (w->data == h->data);
  g_assert_cmpfloat (w->scale, ==, 0.25f);
  hv_tensor_free (w);
  g_assert_cmpint (((guint8 *) h->data)[5], ==, 35);
  HvTensor *l = hv_backend_tensor_like (be, h);
  g_assert_cmpint (l->dtype, ==, HV_DTYPE_F32);
  g_assert_true (hv_tensor_same_shape (l, h));
  hv_tensor_free (l);
  hv_tensor_free (d);
  hv_tensor_free (u);
  hv_tensor_free (h);
}

/* ---- linear ------------------------------------------------------------------------------- */

static void
check_linear (HvBackend *b, HvDType dt, int64_t M, int64_t K, int64_t N, gboolean with_bias, float scale)
{
  int64_t xs[3] = { 1, M, K }, ws[2] = { N, K }, ys[3] = { 1, M, N };
  g_autoptr(HvTensor) x = rand_t (3, xs, -1, 1);
  double *wv = g_new (double, N * K);
  g_autoptr(HvTensor) w = rand_weight (dt, 2, ws, scale, wv);
  double *bvals = g_new (double, N);
  g_autoptr(HvTensor) bias = with_bias ? rand_weight (HV_DTYPE_BF16, 1, &N, 1.0f, bvals) : NULL;
  g_autoptr(HvTensor) y = hv_backend_tensor_f32 (b, 3, ys);
  g_autoptr(HvTensor) wb = hv_backend_weight (b, w);
  hv_op_linear (b, y, x, wb, bias);
  double *want = g_new (double, M * N);
  const float *X = x->data;
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      double s = with_bias ? bvals[n] : 0.0;
      for (int64_t k = 0; k < K; k++)
        s += (double) X[m * K + k] * wv[n * K + k];
      want[m * N + n] = s;
    }
  g_autofree char *what = g_strdup_printf ("linear %s M=%" G_GINT64_FORMAT " K=%" G_GINT64_FORMAT
                                           " N=%" G_GINT64_FORMAT, hv_dtype_name (dt), M, K, N);
  assert_close (what, y->data, want, M * N, 2e-5 * sqrt ((double) K));
  g_free (want);
  g_free (wv);
  g_free (bvals);
}

static void
test_linear (void)
{
  const char *kernels[] = { "generic", "avx2", "avx512", NULL };
  const HvDType dts[] = { HV_DTYPE_F32, HV_DTYPE_BF16, HV_DTYPE_F16, HV_DTYPE_F8_E4M3, HV_DTYPE_F8_E5M2 };
  for (int ki = 0; kernels[ki]; ki++) {
    g_setenv ("HV_CPU_GEMM", kernels[ki], TRUE);
    HvBackend *b = hv_backend_cpu_new (2);
    for (guint d = 0; d < G_N_ELEMENTS (dts); d++) {
      float scale = (dts[d] == HV_DTYPE_F8_E4M3 || dts[d] == HV_DTYPE_F8_E5M2) ? 0.0625f : 1.0f;
      check_linear (b, dts[d], 37, 300, 45, TRUE, scale);   /* crosses K block, ragged tiles */
    }
    check_linear (b, HV_DTYPE_BF16, 1, 64, 70, FALSE, 1.0f);
    check_linear (b, HV_DTYPE_F32, 300, 20, 130, TRUE, 1.0f); /* several row and column tasks */
    check_linear (b, HV_DTYPE_F32, 5, 1, 3, TRUE, 1.0f);
    hv_backend_free (b);
  }
  g_unsetenv ("HV_CPU_GEMM");

  /* hand-computed: x = [1 2; 3 4], W = [[1 0], [1 1], [0 -1]], b = [0.5, 0, 1] */
  int64_t xs[2] = { 2, 2 }, ws[2] = { 3, 2 }, ys[2] = { 2, 3 }, bs[1] = { 3 };
  g_autoptr(HvTensor) x = from_array (2, xs, (float[]) { 1, 2, 3, 4 });
  g_autoptr(HvTensor) w = from_array (2, ws, (float[]) { 1, 0, 1, 1, 0, -1 });
  g_autoptr(HvTensor) bias = from_array (1, bs, (float[]) { 0.5f, 0, 1 });
  g_autoptr(HvTensor) y = new_f32 (2, ys);
  hv_op_linear (be, y, x, w, bias);
  assert_close_f ("linear hand", y->data, (float[]) { 1.5f, 3, -1, 3.5f, 7, -3 }, 6, 1e-6);

  /* a conv-shaped weight [N, a, b] is flattened to K = a·b */
  int64_t w3s[3] = { 3, 1, 2 };
  g_assert_true (hv_tensor_reshape (w, 3, w3s));
  hv_op_linear (be, y, x, w, NULL);
  assert_close_f ("linear 3d weight", y->data, (float[]) { 1, 3, -2, 3, 7, -4 }, 6, 1e-6);
}

/* Every finite code of every weight dtype through the vector conversion of each kernel: with
 * x = identity [16, 16], y[m, n] = W[n, m] exactly. inf/NaN codes are replaced by 0 (0·inf). */
static void
test_linear_codes (void)
{
  const char *kernels[] = { "generic", "avx2", "avx512", NULL };
  const HvDType dts[] = { HV_DTYPE_BF16, HV_DTYPE_F16, HV_DTYPE_F8_E4M3, HV_DTYPE_F8_E5M2 };
  int64_t xs[2] = { 16, 16 };
  g_autoptr(HvTensor) x = hv_tensor_new_f32 (2, xs);
  for (int i = 0; i < 16; i++) ((float *) x->data)[i * 16 + i] = 1.0f;
  for (int ki = 0; kernels[ki]; ki++) {
    g_setenv ("HV_CPU_GEMM", kernels[ki], TRUE);
    HvBackend *b = hv_backend_cpu_new (1);
    for (guint d = 0; d < G_N_ELEMENTS (dts); d++) {
      int64_t ncodes = hv_dtype_size (dts[d]) == 1 ? 256 : 65536;
      int64_t ws[2] = { ncodes / 16, 16 }, ys[2] = { 16, ncodes / 16 };
      g_autoptr(HvTensor) w = hv_tensor_new (dts[d], 2, ws);
      double *want = g_new (double, ncodes);
      for (int64_t c = 0; c < ncodes; c++) {
        double v = dts[d] == HV_DTYPE_BF16 ? ref_bf16 ((guint16) c) : dts[d] == HV_DTYPE_F16 ? ref_half ((guint16) c)
                 : dts[d] == HV_DTYPE_F8_E4M3 ? ref_e4m3 ((guint8) c) : ref_e5m2 ((guint8) c);
        gboolean special = dts[d] == HV_DTYPE_BF16 ? ((c >> 7) & 255) == 255
                         : dts[d] == HV_DTYPE_F16 ? ((c >> 10) & 31) == 31
                         : dts[d] == HV_DTYPE_F8_E4M3 ? (c & 0x7f) == 0x7f : ((c >> 2) & 31) == 31;
        int64_t code = special ? 0 : c;
        if (hv_dtype_size (dts[d]) == 1) ((guint8 *) w->data)[c] = (guint8) code;
        else ((guint16 *) w->data)[c] = (guint16) code;
        want[c] = special ? 0.0 : v;
      }
      g_autoptr(HvTensor) y = hv_backend_tensor_f32 (b, 2, ys);
      hv_op_linear (b, y, x, w, NULL);
      const float *Y = y->data;
      for (int64_t c = 0; c < ncodes; c++) {
        float got = Y[(c % 16) * (ncodes / 16) + c / 16];
        if ((double) got != want[c])
          g_error ("%s kernel %s: code 0x%x gave %g, expected %g", hv_dtype_name (dts[d]), kernels[ki],
                   (int) c, got, want[c]);
      }
      g_free (want);
    }
    hv_backend_free (b);
  }
  g_unsetenv ("HV_CPU_GEMM");
}

/* ---- row ops -------------------------------------------------------------------------------- */

static void
test_layernorm (void)
{
  int64_t s[2] = { 5, 300 }, cs[1] = { 300 };
  g_autoptr(HvTensor) x = rand_t (2, s, -2, 3);
  g_autoptr(HvTensor) w = rand_t (1, cs, 0.5, 1.5);
  g_autoptr(HvTensor) bias = rand_t (1, cs, -1, 1);
  g_autoptr(HvTensor) y = new_f32 (2, s);
  double want[1500], exp0[1500];
  const float *X = x->data, *W = w->data, *Bv = bias->data;
  for (int r = 0; r < 5; r++) {
    double m = 0, v = 0;
    for (int i = 0; i < 300; i++) m += X[r * 300 + i];
    m /= 300;
    for (int i = 0; i < 300; i++) v += (X[r * 300 + i] - m) * (X[r * 300 + i] - m);
    v /= 300;
    for (int i = 0; i < 300; i++) {
      exp0[r * 300 + i] = (X[r * 300 + i] - m) / sqrt (v + 1e-6);
      want[r * 300 + i] = exp0[r * 300 + i] * W[i] + Bv[i];
    }
  }
  hv_op_layernorm (be, y, x, w, bias, 1e-6f);
  assert_close ("layernorm affine", y->data, want, 1500, 1e-5);
  hv_op_layernorm (be, y, x, NULL, NULL, 1e-6f);
  assert_close ("layernorm plain", y->data, exp0, 1500, 1e-5);
  hv_op_layernorm (be, x, x, w, bias, 1e-6f);   /* in place */
  assert_close ("layernorm in place", x->data, want, 1500, 1e-5);

  /* hand: [1, 3] -> mean 2, var 1 -> [-1, 1] (eps 0) */
  int64_t s2[2] = { 1, 2 };
  g_autoptr(HvTensor) h = from_array (2, s2, (float[]) { 1, 3 });
  hv_op_layernorm (be, h, h, NULL, NULL, 0.0f);
  assert_close_f ("layernorm hand", h->data, (float[]) { -1, 1 }, 2, 1e-6);
}

static void
test_rmsnorm (void)
{
  int64_t s[3] = { 2, 3, 128 }, cs[1] = { 128 };
  g_autoptr(HvTensor) x = rand_t (3, s, -2, 2);
  g_autoptr(HvTensor) w = rand_t (1, cs, 0.5, 1.5);
  g_autoptr(HvTensor) y = new_f32 (3, s);
  double want[768], exp0[768];
  const float *X = x->data, *W = w->data;
  for (int r = 0; r < 6; r++) {
    double ms = 0;
    for (int i = 0; i < 128; i++) ms += (double) X[r * 128 + i] * X[r * 128 + i];
    double rs = 1.0 / sqrt (ms / 128 + 1e-5);
    for (int i = 0; i < 128; i++) {
      exp0[r * 128 + i] = X[r * 128 + i] * rs;
      want[r * 128 + i] = exp0[r * 128 + i] * W[i];
    }
  }
  hv_op_rmsnorm (be, y, x, w, 1e-5f);
  assert_close ("rmsnorm", y->data, want, 768, 1e-5);
  hv_op_rmsnorm (be, y, x, NULL, 1e-5f);
  assert_close ("rmsnorm no weight", y->data, exp0, 768, 1e-5);
  /* hand: [3, 4] -> rms sqrt(12.5) */
  int64_t s2[1] = { 2 };
  g_autoptr(HvTensor) h = from_array (1, s2, (float[]) { 3, 4 });
  hv_op_rmsnorm (be, h, h, NULL, 0.0f);
  assert_close_f ("rmsnorm hand", h->data, (float[]) { 3 / sqrtf (12.5f), 4 / sqrtf (12.5f) }, 2, 1e-6);
}

static void
test_unary (void)
{
  int64_t s[1] = { 2001 };
  g_autoptr(HvTensor) x = rand_t (1, s, -8, 8);
  g_autoptr(HvTensor) y = new_f32 (1, s);
  const float *X = x->data;
  double *want = g_new (double, 2001);
  for (int op = HV_UNARY_SILU; op <= HV_UNARY_SIGMOID; op++) {
    for (int i = 0; i < 2001; i++) {
      double v = X[i];
      switch (op) {
        case HV_UNARY_SILU: want[i] = v / (1 + exp (-v)); break;
        case HV_UNARY_GELU_TANH: want[i] = 0.5 * v * (1 + tanh (sqrt (2 / G_PI) * (v + 0.044715 * v * v * v))); break;
        case HV_UNARY_GELU: want[i] = 0.5 * v * (1 + erf (v / sqrt (2))); break;
        case HV_UNARY_QUICK_GELU: want[i] = v / (1 + exp (-1.702 * v)); break;
        case HV_UNARY_SIGMOID: want[i] = 1 / (1 + exp (-v)); break;
      }
    }
    hv_op_unary (be, y, x, op);
    g_autofree char *what = g_strdup_printf ("unary %d", op);
    assert_close (what, y->data, want, 2001, 2e-6);
  }
  /* hand: silu(0) = 0, sigmoid(0) = 0.5, gelu(1) = 0.8413447 */
  int64_t s1[1] = { 1 };
  g_autoptr(HvTensor) one = from_array (1, s1, (float[]) { 1.0f });
  hv_op_unary (be, one, one, HV_UNARY_GELU);
  assert_close_f ("gelu(1)", one->data, (float[]) { 0.8413447f }, 1, 1e-6);
  g_free (want);
}

static void
test_softmax (void)
{
  int64_t s[2] = { 4, 77 };
  g_autoptr(HvTensor) x = rand_t (2, s, -5, 5);
  float *X = x->data;
  X[0] = 1000.0f;  /* a huge logit must not overflow */
  X[77 + 3] = -1000.0f;
  g_autoptr(HvTensor) y = new_f32 (2, s);
  double want[4 * 77];
  for (int r = 0; r < 4; r++) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < 77; i++) mx = MAX (mx, X[r * 77 + i]);
    for (int i = 0; i < 77; i++) sum += exp (X[r * 77 + i] - mx);
    for (int i = 0; i < 77; i++) want[r * 77 + i] = exp (X[r * 77 + i] - mx) / sum;
  }
  hv_op_softmax (be, y, x);
  assert_close ("softmax", y->data, want, 4 * 77, 1e-6);
  hv_op_softmax (be, x, x);
  assert_close ("softmax in place", x->data, want, 4 * 77, 1e-6);
  int64_t s2[1] = { 2 };
  g_autoptr(HvTensor) h = from_array (1, s2, (float[]) { 0, logf (3) });
  hv_op_softmax (be, h, h);
  assert_close_f ("softmax hand", h->data, (float[]) { 0.25f, 0.75f }, 2, 1e-6);
}

/* ---- attention ---------------------------------------------------------------------------- */

typedef struct {
  int64_t B, Lq, Lk, H, Hkv, D;
  gboolean causal, seg, allow, allow_bcast;
} AttCase;

static void
check_attention (HvBackend *bk, const AttCase *c)
{
  int64_t qs[4] = { c->B, c->Lq, c->H, c->D }, ks[4] = { c->B, c->Lk, c->Hkv, c->D };
  g_autoptr(HvTensor) q = rand_t (4, qs, -1.5, 1.5);
  g_autoptr(HvTensor) k = rand_t (4, ks, -1.5, 1.5);
  g_autoptr(HvTensor) v = rand_t (4, ks, -1, 1);
  g_autoptr(HvTensor) out = hv_backend_tensor_f32 (bk, 4, qs);
  int64_t sqs[2] = { c->B, c->Lq }, sks[2] = { c->B, c->Lk };
  int64_t as[3] = { c->allow_bcast ? 1 : c->B, c->Lq, c->Lk };
  g_autoptr(HvTensor) segq = hv_tensor_new (HV_DTYPE_I32, 2, sqs);
  g_autoptr(HvTensor) segk = hv_tensor_new (HV_DTYPE_I32, 2, sks);
  g_autoptr(HvTensor) allow = hv_tensor_new (HV_DTYPE_U8, 3, as);
  gint32 *sq = segq->data, *sk = segk->data;
  guint8 *al = allow->data;
  /* segments: runs of random length; query segment 9 exists in no key (empty rows) */
  for (int64_t i = 0; i < c->B * c->Lq; i++) sq[i] = (int) ((i % c->Lq) / 40) + (i % 13 == 5 ? 9 : 0);
  for (int64_t i = 0; i < c->B * c->Lk; i++) sk[i] = (int) ((i % c->Lk) / 50);
  for (int64_t i = 0; i < hv_tensor_numel (allow); i++) al[i] = urand () < 0.7;
  if (c->allow)   /* one query row with no allowed key at all */
    memset (al + 2 * c->Lk, 0, c->Lk);
  HvAttnMask mask = {
    .seg_q = c->seg ? segq : NULL, .seg_k = c->seg ? segk : NULL,
    .allow = c->allow ? allow : NULL, .causal = c->causal,
  };
  float scale = 1.0f / sqrtf ((float) c->D);
  hv_op_attention (bk, out, q, k, v, &mask, scale);

  const float *Q = q->data, *K = k->data, *V = v->data;
  int64_t n = hv_tensor_numel (out);
  double *want = g_new0 (double, n);
  double *sc = g_new (double, c->Lk);
  gboolean *ok = g_new (gboolean, c->Lk);
  int empty_rows = 0;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->H; h++) {
      int64_t hk = h / (c->H / c->Hkv);
      for (int64_t i = 0; i < c->Lq; i++) {
        double mx = -INFINITY;
        int any = 0;
        for (int64_t j = 0; j < c->Lk; j++) {
          ok[j] = TRUE;
          if (c->causal && j > i) ok[j] = FALSE;
          if (c->seg && sq[b * c->Lq + i] != sk[b * c->Lk + j]) ok[j] = FALSE;
          if (c->allow && !al[((c->allow_bcast ? 0 : b) * c->Lq + i) * c->Lk + j]) ok[j] = FALSE;
          double s = 0;
          for (int64_t d = 0; d < c->D; d++)
            s += (double) Q[((b * c->Lq + i) * c->H + h) * c->D + d] * K[((b * c->Lk + j) * c->Hkv + hk) * c->D + d];
          sc[j] = s * scale;
          if (ok[j]) { mx = MAX (mx, sc[j]); any = 1; }
        }
        double *o = want + ((b * c->Lq + i) * c->H + h) * c->D;
        if (!any) { empty_rows++; continue; }   /* zeros */
        double sum = 0;
        for (int64_t j = 0; j < c->Lk; j++) sum += ok[j] ? exp (sc[j] - mx) : 0;
        for (int64_t j = 0; j < c->Lk; j++) {
          if (!ok[j]) continue;
          double p = exp (sc[j] - mx) / sum;
          for (int64_t d = 0; d < c->D; d++)
            o[d] += p * V[((b * c->Lk + j) * c->Hkv + hk) * c->D + d];
        }
      }
    }
  if (c->seg || c->allow)
    g_assert_cmpint (empty_rows, >, 0);   /* the empty-row path is really exercised */
  g_autofree char *what = g_strdup_printf ("attention B%d Lq%d Lk%d H%d/%d D%d causal%d seg%d allow%d/%d",
                                           (int) c->B, (int) c->Lq, (int) c->Lk, (int) c->H, (int) c->Hkv,
                                           (int) c->D, c->causal, c->seg, c->allow, c->allow_bcast);
  assert_close (what, out->data, want, n, 2e-5);
  g_free (want);
  g_free (sc);
  g_free (ok);
}

static void
test_attention (void)
{
  const AttCase cases[] = {
    { 1, 5, 7, 2, 2, 8, FALSE, FALSE, FALSE, FALSE },
    { 2, 150, 200, 3, 3, 16, FALSE, FALSE, FALSE, FALSE },  /* crosses query and key blocks */
    { 1, 200, 200, 2, 2, 24, TRUE, FALSE, FALSE, FALSE },
    { 2, 130, 170, 2, 2, 8, FALSE, TRUE, FALSE, FALSE },
    { 2, 70, 140, 2, 2, 8, FALSE, FALSE, TRUE, FALSE },
    { 2, 70, 140, 2, 2, 8, FALSE, FALSE, TRUE, TRUE },
    { 1, 90, 90, 6, 2, 16, TRUE, TRUE, TRUE, TRUE },        /* GQA + all masks */
    { 2, 33, 260, 4, 1, 40, FALSE, TRUE, FALSE, FALSE },    /* one kv head */
    { 1, 300, 140, 2, 1, 8, TRUE, FALSE, FALSE, FALSE },    /* several query blocks */
    { 1, 520, 300, 4, 2, 8, TRUE, TRUE, TRUE, FALSE },
  };
  const char *kernels[] = { "generic", "avx2", "avx512", NULL };   /* each vector path */
  for (int ki = 0; kernels[ki]; ki++) {
    g_setenv ("HV_CPU_GEMM", kernels[ki], TRUE);
    HvBackend *b = hv_backend_cpu_new (2);
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      check_attention (b, &cases[i]);
    hv_backend_free (b);
  }
  g_unsetenv ("HV_CPU_GEMM");

  /* hand: one query, two keys with scores 0 and ln 3 -> weights 1/4, 3/4; mask NULL */
  int64_t qs[4] = { 1, 1, 1, 1 }, ks[4] = { 1, 2, 1, 1 };
  g_autoptr(HvTensor) q = from_array (4, qs, (float[]) { 1 });
  g_autoptr(HvTensor) k = from_array (4, ks, (float[]) { 0, logf (3) });
  g_autoptr(HvTensor) v = from_array (4, ks, (float[]) { 10, 2 });
  g_autoptr(HvTensor) o = new_f32 (4, qs);
  hv_op_attention (be, o, q, k, v, NULL, 1.0f);
  assert_close_f ("attention hand", o->data, (float[]) { 4.0f }, 1, 1e-6);
  /* causal with Lq = Lk = 2: query 0 sees only key 0 */
  g_autoptr(HvTensor) q2 = from_array (4, ks, (float[]) { 1, 1 });
  g_autoptr(HvTensor) o2 = new_f32 (4, ks);
  HvAttnMask m = { .causal = TRUE };
  hv_op_attention (be, o2, q2, k, v, &m, 1.0f);
  assert_close_f ("attention causal hand", o2->data, (float[]) { 10, 4 }, 2, 1e-6);
}

/* ---- rope, modulate, gate, binary, scale ----------------------------------------------------- */

static void
test_rope (void)
{
  /* hand: one token, D = 4, angle θ per pair given by cos/sin */
  int64_t xs[4] = { 1, 1, 1, 4 }, cs[2] = { 1, 4 };
  float c1 = cosf (0.3f), s1 = sinf (0.3f), c2 = cosf (1.1f), s2 = sinf (1.1f);
  g_autoptr(HvTensor) x = from_array (4, xs, (float[]) { 1, 2, 3, 4 });
  g_autoptr(HvTensor) ci = from_array (2, cs, (float[]) { c1, c1, c2, c2 });
  g_autoptr(HvTensor) si = from_array (2, cs, (float[]) { s1, s1, s2, s2 });
  hv_op_rope (be, x, ci, si, HV_ROPE_INTERLEAVED);
  assert_close_f ("rope interleaved hand", x->data,
                  (float[]) { 1 * c1 - 2 * s1, 2 * c1 + 1 * s1, 3 * c2 - 4 * s2, 4 * c2 + 3 * s2 }, 4, 1e-6);
  /* half: pairs (0,2), (1,3); cos/sin repeated as cat(f, f) */
  g_autoptr(HvTensor) xh = from_array (4, xs, (float[]) { 1, 2, 3, 4 });
  g_autoptr(HvTensor) ch = from_array (2, cs, (float[]) { c1, c2, c1, c2 });
  g_autoptr(HvTensor) sh = from_array (2, cs, (float[]) { s1, s2, s1, s2 });
  hv_op_rope (be, xh, ch, sh, HV_ROPE_HALF);
  assert_close_f ("rope half hand", xh->data,
                  (float[]) { 1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2 }, 4, 1e-6);

  /* larger: B 2, L 10, H 3, D 8, rotating only the first 7 tokens, arbitrary cos/sin */
  int64_t bs[4] = { 2, 10, 3, 8 }, tcs[2] = { 7, 8 };
  for (int mode = 0; mode < 2; mode++) {
    g_autoptr(HvTensor) bx = rand_t (4, bs, -1, 1);
    g_autoptr(HvTensor) bc = rand_t (2, tcs, -1, 1);
    g_autoptr(HvTensor) bsn = rand_t (2, tcs, -1, 1);
    const float *X0 = g_memdup2 (bx->data, hv_tensor_nbytes (bx));
    const float *C = bc->data, *S = bsn->data;
    double want[2 * 10 * 3 * 8];
    for (int b = 0; b < 2; b++)
      for (int l = 0; l < 10; l++)
        for (int h = 0; h < 3; h++)
          for (int d = 0; d < 8; d++) {
            int idx = ((b * 10 + l) * 3 + h) * 8 + d;
            const float *xv = X0 + ((b * 10 + l) * 3 + h) * 8;
            if (l >= 7) { want[idx] = xv[d]; continue; }
            double rot;   /* the rotated partner: interleaved (-x1, x0), half cat(-x2, x1) */
            if (mode == HV_ROPE_INTERLEAVED) rot = d % 2 == 0 ? -xv[d + 1] : xv[d - 1];
            else rot = d < 4 ? -xv[d + 4] : xv[d - 4];
            want[idx] = (double) xv[d] * C[l * 8 + d] + rot * S[l * 8 + d];
          }
    hv_op_rope (be, bx, bc, bsn, (HvRopeMode) mode);
    assert_close (mode ? "rope half" : "rope interleaved", bx->data, want, 480, 1e-6);
    g_free ((gpointer) X0);
  }
}

static void
test_modulate_gate (void)
{
  int64_t xs[3] = { 2, 3, 5 }, ms[2] = { 2, 5 }, cs[1] = { 5 };
  g_autoptr(HvTensor) x = rand_t (3, xs, -1, 1);
  g_autoptr(HvTensor) shift = rand_t (2, ms, -1, 1);
  g_autoptr(HvTensor) scale = rand_t (2, ms, -1, 1);
  g_autoptr(HvTensor) c1 = rand_t (1, cs, -1, 1);
  g_autoptr(HvTensor) y = new_f32 (3, xs);
  const float *X = x->data, *Sh = shift->data, *Sc = scale->data, *C1 = c1->data;
  double e[30], e_sh[30], e_sc[30], e_b[30];
  for (int b = 0; b < 2; b++)
    for (int l = 0; l < 3; l++)
      for (int c = 0; c < 5; c++) {
        int i = (b * 3 + l) * 5 + c;
        e[i] = X[i] * (1.0 + Sc[b * 5 + c]) + Sh[b * 5 + c];
        e_sh[i] = X[i] + Sh[b * 5 + c];
        e_sc[i] = X[i] * (1.0 + Sc[b * 5 + c]);
        e_b[i] = X[i] * (1.0 + C1[c]);
      }
  hv_op_modulate (be, y, x, shift, scale);
  assert_close ("modulate", y->data, e, 30, 1e-6);
  hv_op_modulate (be, y, x, shift, NULL);
  assert_close ("modulate shift only", y->data, e_sh, 30, 1e-6);
  hv_op_modulate (be, y, x, NULL, scale);
  assert_close ("modulate scale only", y->data, e_sc, 30, 1e-6);
  hv_op_modulate (be, y, x, NULL, c1);
  assert_close ("modulate [C] scale", y->data, e_b, 30, 1e-6);

  /* gate_add: x += gate[b] * y */
  g_autoptr(HvTensor) yy = rand_t (3, xs, -1, 1);
  const float *Yv = yy->data;
  double eg[30], ep[30];
  for (int i = 0; i < 30; i++) {
    eg[i] = X[i] + (double) Sc[(i / 15) * 5 + i % 5] * Yv[i];
    ep[i] = eg[i] + Yv[i];
  }
  hv_op_gate_add (be, x, yy, scale);
  assert_close ("gate_add", x->data, eg, 30, 1e-6);
  hv_op_gate_add (be, x, yy, NULL);
  assert_close ("gate_add no gate", x->data, ep, 30, 1e-6);
}

static void
test_binary_scale (void)
{
  int64_t as[3] = { 4, 3, 6 }, rs[1] = { 6 }, ms[2] = { 3, 6 };
  g_autoptr(HvTensor) a = rand_t (3, as, -2, 2);
  g_autoptr(HvTensor) full = rand_t (3, as, -2, 2);
  g_autoptr(HvTensor) row = rand_t (1, rs, -2, 2);
  g_autoptr(HvTensor) mat = rand_t (2, ms, -2, 2);
  g_autoptr(HvTensor) y = new_f32 (3, as);
  const float *A = a->data, *F = full->data, *R = row->data, *M = mat->data;
  const HvTensor *cs[3] = { full, row, mat };
  for (int ci = 0; ci < 3; ci++) {
    int64_t nc = hv_tensor_numel (cs[ci]);
    const float *C = ci == 0 ? F : ci == 1 ? R : M;
    for (int op = 0; op < 3; op++) {
      double e[72];
      for (int i = 0; i < 72; i++) {
        double c = C[i % nc];
        e[i] = op == 0 ? A[i] + c : op == 1 ? A[i] - c : A[i] * c;
      }
      if (op == 0) hv_op_add (be, y, a, cs[ci]);
      else if (op == 1) hv_op_sub (be, y, a, cs[ci]);
      else hv_op_mul (be, y, a, cs[ci]);
      g_autofree char *what = g_strdup_printf ("binary op %d with c %d", op, ci);
      assert_close (what, y->data, e, 72, 1e-6);
    }
  }
  double e[72];
  for (int i = 0; i < 72; i++) e[i] = A[i] + R[i % 6];
  hv_op_add (be, a, a, row);   /* in place */
  assert_close ("add in place", a->data, e, 72, 1e-6);
  for (int i = 0; i < 72; i++) e[i] = -0.5 * ((const float *) a->data)[i] + 3;
  hv_op_scale (be, y, a, -0.5f, 3.0f);
  assert_close ("scale", y->data, e, 72, 1e-6);
}

/* ---- data movement -------------------------------------------------------------------------- */

static void
test_copy (void)
{
  int64_t s[2] = { 3, 70 };
  double vals[210];
  const HvDType dts[] = { HV_DTYPE_BF16, HV_DTYPE_F16, HV_DTYPE_F8_E4M3, HV_DTYPE_F8_E5M2, HV_DTYPE_F32 };
  g_autoptr(HvTensor) y = new_f32 (2, s);
  for (guint d = 0; d < G_N_ELEMENTS (dts); d++) {
    g_autoptr(HvTensor) x = rand_weight (dts[d], 2, s, 0.5f, vals);
    hv_op_copy (be, y, x);
    assert_close (hv_dtype_name (dts[d]), y->data, vals, 210, 0);   /* exact */
  }
  /* f32 -> bf16 / f16 rounding to nearest even */
  int64_t s4[1] = { 4 };
  g_autoptr(HvTensor) src = from_array (1, s4, (float[]) { 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-11f, -2.5f });
  g_autoptr(HvTensor) yb = hv_backend_tensor (be, HV_DTYPE_BF16, 1, s4);
  g_autoptr(HvTensor) yh = hv_backend_tensor (be, HV_DTYPE_F16, 1, s4);
  hv_op_copy (be, yb, src);
  hv_op_copy (be, yh, src);
  const guint16 *ob = yb->data, *oh = yh->data;
  g_assert_cmphex (ob[0], ==, 0x3f80);   /* tie -> even (down) */
  g_assert_cmphex (ob[1], ==, 0x3f82);   /* tie -> even (up) */
  g_assert_cmphex (ob[3], ==, 0xc020);
  g_assert_cmphex (oh[2], ==, 0x3c00);   /* 1 + 2^-11: tie -> even */
  g_assert_cmphex (oh[3], ==, 0xc100);
  /* a strided view (a transpose made by strides) is gathered */
  int64_t ts[2] = { 4, 5 };
  g_autoptr(HvTensor) m = rand_t (2, ts, -1, 1);
  g_autoptr(HvTensor) tv = hv_tensor_view (m);
  tv->shape[0] = 5; tv->shape[1] = 4; tv->stride[0] = 1; tv->stride[1] = 5;
  int64_t ts2[2] = { 5, 4 };
  g_autoptr(HvTensor) ty = new_f32 (2, ts2);
  hv_op_copy (be, ty, tv);
  double e[20];
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 4; j++) e[i * 4 + j] = ((const float *) m->data)[j * 5 + i];
  assert_close ("copy strided", ty->data, e, 20, 0);
  /* large contiguous copy (parallel split) */
  int64_t bs[1] = { 100003 };
  g_autoptr(HvTensor) big = rand_t (1, bs, -1, 1);
  g_autoptr(HvTensor) bigy = new_f32 (1, bs);
  hv_op_copy (be, bigy, big);
  g_assert_cmpmem (bigy->data, 100003 * 4, big->data, 100003 * 4);
}

static void
test_slice_concat (void)
{
  int64_t xs[3] = { 2, 7, 3 }, ys[3] = { 2, 4, 3 }, cs[3] = { 2, 3, 3 };
  g_autoptr(HvTensor) x = rand_t (3, xs, -1, 1);
  g_autoptr(HvTensor) y = new_f32 (3, ys);
  hv_op_slice (be, y, x, 1, 2);
  const float *X = x->data;
  double e[42];
  for (int b = 0; b < 2; b++)
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 3; j++) e[(b * 4 + i) * 3 + j] = X[(b * 7 + i + 2) * 3 + j];
  assert_close ("slice", y->data, e, 24, 0);
  /* slice the last dim */
  int64_t ls[3] = { 2, 7, 1 };
  g_autoptr(HvTensor) yl = new_f32 (3, ls);
  hv_op_slice (be, yl, x, 2, 2);
  for (int i = 0; i < 14; i++) e[i] = X[i * 3 + 2];
  assert_close ("slice last", yl->data, e, 14, 0);

  g_autoptr(HvTensor) c = rand_t (3, cs, -1, 1);
  g_autoptr(HvTensor) cat = new_f32 (3, xs);
  hv_op_concat (be, cat, y, c, 1);
  const float *Yd = y->data, *C = c->data;
  for (int b = 0; b < 2; b++)
    for (int i = 0; i < 7; i++)
      for (int j = 0; j < 3; j++)
        e[(b * 7 + i) * 3 + j] = i < 4 ? Yd[(b * 4 + i) * 3 + j] : C[(b * 3 + i - 4) * 3 + j];
  assert_close ("concat", cat->data, e, 42, 0);
  /* concat on dim 0 is plain appending */
  int64_t c0[3] = { 4, 4, 3 };
  g_autoptr(HvTensor) cat0 = new_f32 (3, c0);
  hv_op_concat (be, cat0, y, y, 0);
  g_assert_cmpmem (cat0->data, 24 * 4, y->data, 24 * 4);
  g_assert_cmpmem ((float *) cat0->data + 24, 24 * 4, y->data, 24 * 4);
}

static void
test_permute (void)
{
  int64_t xs[5] = { 2, 3, 4, 5, 6 };
  g_autoptr(HvTensor) x = rand_t (5, xs, -1, 1);
  int perm[5] = { 0, 2, 4, 1, 3 };
  int64_t ys[5];
  for (int i = 0; i < 5; i++) ys[i] = xs[perm[i]];
  g_autoptr(HvTensor) y = new_f32 (5, ys);
  hv_op_permute (be, y, x, perm);
  const float *X = x->data, *Y = y->data;
  int64_t idx[5];
  for (idx[0] = 0; idx[0] < 2; idx[0]++)
    for (idx[1] = 0; idx[1] < 3; idx[1]++)
      for (idx[2] = 0; idx[2] < 4; idx[2]++)
        for (idx[3] = 0; idx[3] < 5; idx[3]++)
          for (idx[4] = 0; idx[4] < 6; idx[4]++) {
            int64_t xo = (((idx[0] * 3 + idx[1]) * 4 + idx[2]) * 5 + idx[3]) * 6 + idx[4];
            int64_t yo = (((idx[0] * ys[1] + idx[2]) * ys[2] + idx[4]) * ys[3] + idx[1]) * ys[4] + idx[3];
            g_assert_cmpfloat (Y[yo], ==, X[xo]);
          }
  /* 2-D transpose of an i32 tensor */
  int64_t ms[2] = { 3, 4 }, mt[2] = { 4, 3 };
  g_autoptr(HvTensor) m = hv_tensor_new (HV_DTYPE_I32, 2, ms);
  for (int i = 0; i < 12; i++) ((gint32 *) m->data)[i] = i;
  g_autoptr(HvTensor) t = hv_backend_tensor (be, HV_DTYPE_I32, 2, mt);
  hv_op_permute (be, t, m, (int[]) { 1, 0 });
  const gint32 expect[12] = { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 };
  g_assert_cmpmem (t->data, 48, expect, 48);
  /* bf16 (2-byte) permute */
  g_autoptr(HvTensor) hb = hv_tensor_new (HV_DTYPE_BF16, 2, ms);
  for (int i = 0; i < 12; i++) ((guint16 *) hb->data)[i] = (guint16) (i * 3);
  g_autoptr(HvTensor) tb = hv_backend_tensor (be, HV_DTYPE_BF16, 2, mt);
  hv_op_permute (be, tb, hb, (int[]) { 1, 0 });
  for (int i = 0; i < 12; i++) g_assert_cmpint (((guint16 *) tb->data)[i], ==, expect[i] * 3);
}

static void
test_get_rows (void)
{
  int64_t ts[2] = { 10, 6 }, is[1] = { 4 }, ys[2] = { 4, 6 };
  double vals[60];
  g_autoptr(HvTensor) table = rand_weight (HV_DTYPE_BF16, 2, ts, 1.0f, vals);
  g_autoptr(HvTensor) ids = hv_tensor_new (HV_DTYPE_I32, 1, is);
  gint32 id[4] = { 3, 0, 9, 3 };
  memcpy (ids->data, id, sizeof id);
  g_autoptr(HvTensor) y = new_f32 (2, ys);
  hv_op_get_rows (be, y, table, ids);
  double e[24];
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 6; c++) e[r * 6 + c] = vals[id[r] * 6 + c];
  assert_close ("get_rows", y->data, e, 24, 0);
  GError *err = NULL;
  g_assert_true (hv_backend_check (be, &err));
  /* an id outside the table is reported, not read */
  ((gint32 *) ids->data)[2] = 10;
  hv_op_get_rows (be, y, table, ids);
  g_assert_false (hv_backend_check (be, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&err);
  g_assert_true (hv_backend_check (be, &err));   /* the error was cleared */
  for (int c = 0; c < 6; c++) g_assert_cmpfloat (((float *) y->data)[12 + c], ==, 0.0f);
}

/* ---- 3-D ops -------------------------------------------------------------------------------- */

static void
check_conv3d (int64_t B, int64_t Ci, int64_t Co, const int64_t *in, const int64_t *ks,
              const int *stride, const int *pad, HvDType wdt, gboolean with_bias)
{
  int64_t xs[5] = { B, Ci, in[0], in[1], in[2] }, ws[5] = { Co, Ci, ks[0], ks[1], ks[2] };
  int64_t os[3];
  for (int i = 0; i < 3; i++) os[i] = (in[i] + 2 * pad[i] - ks[i]) / stride[i] + 1;
  int64_t ys[5] = { B, Co, os[0], os[1], os[2] };
  g_autoptr(HvTensor) x = rand_t (5, xs, -1, 1);
  int64_t nw = Co * Ci * ks[0] * ks[1] * ks[2];
  double *wv = g_new (double, nw), bvals[64];
  g_autoptr(HvTensor) w = rand_weight (wdt, 5, ws, 1.0f, wv);
  g_autoptr(HvTensor) bias = with_bias ? rand_weight (HV_DTYPE_F32, 1, &Co, 1.0f, bvals) : NULL;
  g_autoptr(HvTensor) y = new_f32 (5, ys);
  hv_op_conv3d (be, y, x, w, bias, stride, pad);
  const float *X = x->data;
  int64_t n = hv_tensor_numel (y);
  double *e = g_new (double, n);
  for (int64_t b = 0; b < B; b++)
    for (int64_t co = 0; co < Co; co++)
      for (int64_t t = 0; t < os[0]; t++)
        for (int64_t h = 0; h < os[1]; h++)
          for (int64_t wo = 0; wo < os[2]; wo++) {
            double s = with_bias ? bvals[co] : 0.0;
            for (int64_t ci = 0; ci < Ci; ci++)
              for (int64_t a = 0; a < ks[0]; a++)
                for (int64_t c = 0; c < ks[1]; c++)
                  for (int64_t d = 0; d < ks[2]; d++) {
                    int64_t ti = t * stride[0] - pad[0] + a, hi = h * stride[1] - pad[1] + c, wi = wo * stride[2] - pad[2] + d;
                    if (ti < 0 || ti >= in[0] || hi < 0 || hi >= in[1] || wi < 0 || wi >= in[2]) continue;
                    s += X[(((b * Ci + ci) * in[0] + ti) * in[1] + hi) * in[2] + wi] *
                         wv[(((co * Ci + ci) * ks[0] + a) * ks[1] + c) * ks[2] + d];
                  }
            e[(((b * Co + co) * os[0] + t) * os[1] + h) * os[2] + wo] = s;
          }
  g_autofree char *what = g_strdup_printf ("conv3d Ci%d Co%d %s", (int) Ci, (int) Co, hv_dtype_name (wdt));
  assert_close (what, y->data, e, n, 1e-5);
  g_free (e);
  g_free (wv);
}

static void
test_conv3d (void)
{
  /* 3×3×3, pad 1: K = 12·27 = 324 crosses the depth block; 270 positions cross the task size */
  check_conv3d (1, 12, 5, (int64_t[]) { 3, 9, 10 }, (int64_t[]) { 3, 3, 3 }, (int[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 }, HV_DTYPE_F32, TRUE);
  check_conv3d (2, 3, 33, (int64_t[]) { 5, 7, 8 }, (int64_t[]) { 3, 3, 3 }, (int[]) { 2, 2, 2 }, (int[]) { 0, 1, 1 }, HV_DTYPE_BF16, TRUE);
  check_conv3d (1, 4, 6, (int64_t[]) { 4, 6, 5 }, (int64_t[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 }, (int[]) { 0, 0, 0 }, HV_DTYPE_F16, FALSE);
  check_conv3d (1, 2, 3, (int64_t[]) { 6, 5, 7 }, (int64_t[]) { 3, 2, 3 }, (int[]) { 1, 2, 3 }, (int[]) { 2, 0, 1 }, HV_DTYPE_F32, FALSE);

  /* hand: 1×1×1×1×3 input [1 2 3], kernel [1 1 1] along w, pad 1 -> [3, 6, 5] */
  int64_t xs[5] = { 1, 1, 1, 1, 3 }, ws[5] = { 1, 1, 1, 1, 3 };
  g_autoptr(HvTensor) x = from_array (5, xs, (float[]) { 1, 2, 3 });
  g_autoptr(HvTensor) w = from_array (5, ws, (float[]) { 1, 1, 1 });
  g_autoptr(HvTensor) y = new_f32 (5, xs);
  hv_op_conv3d (be, y, x, w, NULL, (int[]) { 1, 1, 1 }, (int[]) { 0, 0, 1 });
  assert_close_f ("conv3d hand", y->data, (float[]) { 3, 6, 5 }, 3, 1e-6);
}

static void
test_pad3d (void)
{
  int64_t xs[5] = { 2, 3, 2, 3, 4 };
  int pads[6] = { 2, 0, 1, 1, 0, 3 };   /* causal time padding, h both sides, w right */
  int64_t ys[5] = { 2, 3, 4, 5, 7 };
  g_autoptr(HvTensor) x = rand_t (5, xs, -1, 1);
  g_autoptr(HvTensor) y = new_f32 (5, ys);
  const float *X = x->data;
  for (int mode = 0; mode < 2; mode++) {
    hv_op_pad3d (be, y, x, pads, (HvPadMode) mode);
    double e[2 * 3 * 4 * 5 * 7];
    for (int bc = 0; bc < 6; bc++)
      for (int t = 0; t < 4; t++)
        for (int h = 0; h < 5; h++)
          for (int w = 0; w < 7; w++) {
            int ti = t - 2, hi = h - 1, wi = w;
            int inside = ti >= 0 && ti < 2 && hi >= 0 && hi < 3 && wi < 4;
            double v;
            if (mode == HV_PAD_ZERO) {
              v = inside ? X[((bc * 2 + ti) * 3 + hi) * 4 + wi] : 0;
            } else {
              ti = CLAMP (ti, 0, 1); hi = CLAMP (hi, 0, 2); wi = CLAMP (wi, 0, 3);
              v = X[((bc * 2 + ti) * 3 + hi) * 4 + wi];
            }
            e[((bc * 4 + t) * 5 + h) * 7 + w] = v;
          }
    assert_close (mode ? "pad3d replicate" : "pad3d zero", y->data, e, 840, 0);
  }
}

static void
test_groupnorm (void)
{
  int64_t xs[5] = { 2, 6, 2, 3, 5 }, cs[1] = { 6 };
  g_autoptr(HvTensor) x = rand_t (5, xs, -1, 3);
  g_autoptr(HvTensor) w = rand_t (1, cs, 0.5, 1.5);
  g_autoptr(HvTensor) bias = rand_t (1, cs, -1, 1);
  g_autoptr(HvTensor) y = new_f32 (5, xs);
  const float *X = x->data, *W = w->data, *Bv = bias->data;
  int sp = 30, G = 3, cg = 2;
  double e[360], e0[360];
  for (int b = 0; b < 2; b++)
    for (int g = 0; g < G; g++) {
      double m = 0, v = 0;
      for (int c = g * cg; c < (g + 1) * cg; c++)
        for (int i = 0; i < sp; i++) m += X[(b * 6 + c) * sp + i];
      m /= cg * sp;
      for (int c = g * cg; c < (g + 1) * cg; c++)
        for (int i = 0; i < sp; i++) v += pow (X[(b * 6 + c) * sp + i] - m, 2);
      v /= cg * sp;
      for (int c = g * cg; c < (g + 1) * cg; c++)
        for (int i = 0; i < sp; i++) {
          int idx = (b * 6 + c) * sp + i;
          e0[idx] = (X[idx] - m) / sqrt (v + 1e-6);
          e[idx] = e0[idx] * W[c] + Bv[c];
        }
    }
  hv_op_groupnorm (be, y, x, 3, w, bias, 1e-6f);
  assert_close ("groupnorm", y->data, e, 360, 1e-5);
  hv_op_groupnorm (be, y, x, 3, NULL, NULL, 1e-6f);
  assert_close ("groupnorm plain", y->data, e0, 360, 1e-5);
  hv_op_groupnorm (be, x, x, 3, w, bias, 1e-6f);
  assert_close ("groupnorm in place", x->data, e, 360, 1e-5);
}

static void
test_upsample (void)
{
  int64_t xs[5] = { 1, 2, 2, 3, 2 }, ys[5] = { 1, 2, 2, 6, 6 };
  g_autoptr(HvTensor) x = rand_t (5, xs, -1, 1);
  g_autoptr(HvTensor) y = new_f32 (5, ys);
  int f[3] = { 1, 2, 3 };
  hv_op_upsample_nearest (be, y, x, f);
  const float *X = x->data;
  double e[144];
  for (int c = 0; c < 2; c++)
    for (int t = 0; t < 2; t++)
      for (int h = 0; h < 6; h++)
        for (int w = 0; w < 6; w++)
          e[((c * 2 + t) * 6 + h) * 6 + w] = X[((c * 2 + t) * 3 + h / 2) * 2 + w / 3];
  assert_close ("upsample", y->data, e, 144, 0);
  /* time ×2 */
  int64_t ys2[5] = { 1, 2, 4, 3, 2 };
  g_autoptr(HvTensor) y2 = new_f32 (5, ys2);
  hv_op_upsample_nearest (be, y2, x, (int[]) { 2, 1, 1 });
  for (int c = 0; c < 2; c++)
    for (int t = 0; t < 4; t++)
      g_assert_cmpmem ((float *) y2->data + (c * 4 + t) * 6, 24, X + (c * 2 + t / 2) * 6, 24);
}

/* Shape mismatches are programmer errors: the op is skipped with a critical, nothing written. */
static void
test_bad_shapes (void)
{
  if (g_test_subprocess ()) {
    int64_t a[2] = { 2, 3 }, c[2] = { 3, 2 };
    g_autoptr(HvTensor) x = new_f32 (2, a);
    g_autoptr(HvTensor) w = new_f32 (2, a);
    g_autoptr(HvTensor) y = new_f32 (2, c);
    hv_op_linear (be, y, x, w, NULL);
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*CRITICAL*hv_op_linear*");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  be = hv_backend_cpu_new (2);
  g_test_add_func ("/ops/backend-new", test_backend_new);
  g_test_add_func ("/ops/backend-memory", test_backend_memory);
  g_test_add_func ("/ops/linear", test_linear);
  g_test_add_func ("/ops/linear-codes", test_linear_codes);
  g_test_add_func ("/ops/layernorm", test_layernorm);
  g_test_add_func ("/ops/rmsnorm", test_rmsnorm);
  g_test_add_func ("/ops/unary", test_unary);
  g_test_add_func ("/ops/softmax", test_softmax);
  g_test_add_func ("/ops/attention", test_attention);
  g_test_add_func ("/ops/rope", test_rope);
  g_test_add_func ("/ops/modulate-gate", test_modulate_gate);
  g_test_add_func ("/ops/binary-scale", test_binary_scale);
  g_test_add_func ("/ops/copy", test_copy);
  g_test_add_func ("/ops/slice-concat", test_slice_concat);
  g_test_add_func ("/ops/permute", test_permute);
  g_test_add_func ("/ops/get-rows", test_get_rows);
  g_test_add_func ("/ops/conv3d", test_conv3d);
  g_test_add_func ("/ops/pad3d", test_pad3d);
  g_test_add_func ("/ops/groupnorm", test_groupnorm);
  g_test_add_func ("/ops/upsample", test_upsample);
  g_test_add_func ("/ops/bad-shapes", test_bad_shapes);
  int rc = g_test_run ();
  hv_backend_free (be);
  return rc;
}
