/* test-rng.c — properties of the torch-compatible generators and of the flow-matching
 * scheduler that hold independently of the golden fixtures: published reference values of
 * mt19937 and Philox4x32-10, how torch consumes the streams (successive draws, the cached
 * second Box-Muller value, the CUDA grid-stride layout and offsets), statistics, and the
 * scheduler's invariants. */
#include "hv-rng.h"
#include "hv-scheduler.h"
#include "hv-backend.h"
#include "hv-error.h"
#include <math.h>
#include <string.h>

/* ---- mt19937 ---------------------------------------------------------------------------- */

static void
test_mt19937_reference (void)
{
  /* std::mt19937 default seed 5489: first output, and the 10000th (required by C++11) */
  g_autoptr(HvRng) r = hv_rng_new (HV_RNG_CPU, 5489);
  g_assert_cmpuint (hv_rng_next_u32 (r), ==, 3499211612u);
  for (int i = 2; i < 10000; i++)
    hv_rng_next_u32 (r);
  g_assert_cmpuint (hv_rng_next_u32 (r), ==, 4123659995u);
}

static void
test_mt19937_seed_low_bits (void)
{
  /* torch seeds mt19937 with the low 32 bits of the 64-bit seed */
  g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CPU, 42);
  g_autoptr(HvRng) b = hv_rng_new (HV_RNG_CPU, 42 + (UINT64_C (7) << 32));
  g_autoptr(HvRng) c = hv_rng_new (HV_RNG_CPU, 43);
  for (int i = 0; i < 700; i++) {   /* past one twist of the 624-word state */
    uint32_t va = hv_rng_next_u32 (a);
    g_assert_cmpuint (va, ==, hv_rng_next_u32 (b));
    if (i == 0)
      g_assert_cmpuint (va, !=, hv_rng_next_u32 (c));
  }
}

/* ---- Philox ----------------------------------------------------------------------------- */

static void
test_philox_kat (void)
{
  /* Random123 kat_vectors, "philox4x32 10" lines: counter, key -> output */
  static const struct {
    uint32_t ctr[4], key[2], out[4];
  } kat[] = {
    { { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
    { { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, { 0xffffffff, 0xffffffff },
      { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
    { { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, { 0xa4093822, 0x299f31d0 },
      { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (kat); i++) {
    uint32_t out[4];
    hv_philox4x32_10 (kat[i].ctr, kat[i].key, out);
    for (int k = 0; k < 4; k++)
      g_assert_cmphex (out[k], ==, kat[i].out[k]);
  }
}

/* ---- CPU generator ---------------------------------------------------------------------- */

static void
test_cpu_rand_bits (void)
{
  /* torch.rand: one mt19937 word per element, masked to the dtype's mantissa digits */
  const size_t n = 37;
  float f32[37], f16[37], bf16[37];
  g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CPU, 7);
  hv_rng_rand (a, f32, n, HV_RNG_F32);
  hv_rng_rand (a, f16, n, HV_RNG_F16);
  hv_rng_rand (a, bf16, n, HV_RNG_BF16);
  g_autoptr(HvRng) w = hv_rng_new (HV_RNG_CPU, 7);
  for (size_t i = 0; i < n; i++)
    g_assert_cmpfloat (f32[i], ==, (float) ldexp (hv_rng_next_u32 (w) & 0xffffff, -24));
  for (size_t i = 0; i < n; i++)
    g_assert_cmpfloat (f16[i], ==, (float) ldexp (hv_rng_next_u32 (w) & 0x7ff, -11));
  for (size_t i = 0; i < n; i++)
    g_assert_cmpfloat (bf16[i], ==, (float) ldexp (hv_rng_next_u32 (w) & 0xff, -8));
}

/* a randn of n >= 16 values uses n words, plus 16 more when n % 16 != 0 (tail redrawn) */
static void
test_cpu_randn_consumption (void)
{
  const size_t sizes[] = { 16, 20, 32, 47, 4608 };
  for (guint k = 0; k < G_N_ELEMENTS (sizes); k++) {
    size_t n = sizes[k];
    g_autofree float *v = g_new (float, n);
    g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CPU, 1234);
    g_autoptr(HvRng) b = hv_rng_new (HV_RNG_CPU, 1234);
    hv_rng_randn (a, v, n, HV_RNG_F32);
    size_t used = n + (n % 16 ? 16 : 0);
    for (size_t i = 0; i < used; i++)
      hv_rng_next_u32 (b);
    g_assert_cmpuint (hv_rng_next_u32 (a), ==, hv_rng_next_u32 (b));
  }
}

static void
test_cpu_randn_vector_path (void)
{
  /* numel >= 16: Box-Muller over pairs (j, j+8) of each block of 16 uniforms */
  float v[32];
  g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CPU, 99);
  hv_rng_randn (a, v, 32, HV_RNG_F32);
  g_autoptr(HvRng) w = hv_rng_new (HV_RNG_CPU, 99);
  double u[32];
  for (int i = 0; i < 32; i++)
    u[i] = ldexp (hv_rng_next_u32 (w) & 0xffffff, -24);
  for (int blk = 0; blk < 32; blk += 16)
    for (int j = 0; j < 8; j++) {
      double r = sqrt (-2.0 * log (1.0 - u[blk + j]));
      double th = 2.0 * G_PI * u[blk + j + 8];
      g_assert_cmpfloat_with_epsilon (v[blk + j], r * cos (th), 2e-5);
      g_assert_cmpfloat_with_epsilon (v[blk + j + 8], r * sin (th), 2e-5);
    }
}

static void
test_cpu_randn_scalar_cache (void)
{
  /* numel < 16: double Box-Muller with the second value cached in the generator, so small
   * successive draws concatenate: randn(3) + randn(1) == randn(4) */
  float a4[4], b3[3], b1[1];
  g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CPU, 5);
  g_autoptr(HvRng) b = hv_rng_new (HV_RNG_CPU, 5);
  hv_rng_randn (a, a4, 4, HV_RNG_F32);
  hv_rng_randn (b, b3, 3, HV_RNG_F32);
  hv_rng_randn (b, b1, 1, HV_RNG_F32);
  g_assert_cmpmem (a4, 3 * sizeof (float), b3, 3 * sizeof (float));
  g_assert_cmpfloat (a4[3], ==, b1[0]);
  /* the pair comes from two 53-bit uniforms (two words each, first word high) */
  g_autoptr(HvRng) w = hv_rng_new (HV_RNG_CPU, 5);
  double u[2];
  for (int k = 0; k < 2; k++) {
    uint64_t hi = hv_rng_next_u32 (w), lo = hv_rng_next_u32 (w);
    u[k] = ldexp ((double) (((hi << 32) | lo) & ((UINT64_C (1) << 53) - 1)), -53);
  }
  double r = sqrt (-2.0 * log1p (-u[1]));
  g_assert_cmpfloat (a4[0], ==, (float) (r * cos (2.0 * G_PI * u[0])));
  g_assert_cmpfloat (a4[1], ==, (float) (r * sin (2.0 * G_PI * u[0])));
}

static void
test_cpu_randn_half (void)
{
  /* fp16 / bf16 (numel >= 16): 11- / 8-bit uniforms, Box-Muller over (j, j+8) in the 16-bit
   * type; every value is representable and close to the exact transform of its uniforms */
  const HvRngDType dts[2] = { HV_RNG_F16, HV_RNG_BF16 };
  const int digits[2] = { 11, 8 };
  for (int k = 0; k < 2; k++) {
    float v[32];
    g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CPU, 21);
    hv_rng_randn (a, v, 32, dts[k]);
    g_autoptr(HvRng) w = hv_rng_new (HV_RNG_CPU, 21);
    double u[32];
    for (int i = 0; i < 32; i++)
      u[i] = ldexp (hv_rng_next_u32 (w) & ((1u << digits[k]) - 1), -digits[k]);
    for (int i = 0; i < 32; i++) {
      float back = k == 0 ? hv_f16_to_f32 (hv_f32_to_f16 (v[i])) : hv_bf16_to_f32 (hv_f32_to_bf16 (v[i]));
      g_assert_cmpfloat (v[i], ==, back);
      int blk = i & ~15, j = i & 7;
      double r = sqrt (-2.0 * log (1.0 - u[blk + j]));
      double th = 2.0 * G_PI * u[blk + j + 8];
      double want = (i & 8) ? r * sin (th) : r * cos (th);
      g_assert_cmpfloat_with_epsilon (v[i], want, k == 0 ? 0.02 : 0.15);
    }
  }
}

static void
test_cpu_math_modes (void)
{
  /* avx_mathfun polynomials and libm agree to a few ulps */
  const size_t n = 4096;
  g_autofree float *x = g_new (float, n);
  g_autofree float *y = g_new (float, n);
  g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CPU, 3);
  g_autoptr(HvRng) b = hv_rng_new (HV_RNG_CPU, 3);
  hv_rng_set_cpu_math (b, HV_RNG_CPU_MATH_LIBM);
  hv_rng_randn (a, x, n, HV_RNG_F32);
  hv_rng_randn (b, y, n, HV_RNG_F32);
  size_t same = 0;
  for (size_t i = 0; i < n; i++) {
    g_assert_cmpfloat_with_epsilon (x[i], y[i], 1e-5);
    same += x[i] == y[i];
  }
  g_assert_cmpuint (same, >, n / 4);
}

static void
check_moments (const float *v, size_t n, double tol_mean, double tol_var)
{
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    g_assert_true (isfinite (v[i]));
    s += v[i];
    s2 += (double) v[i] * v[i];
  }
  double mean = s / n, var = s2 / n - mean * mean;
  g_assert_cmpfloat (fabs (mean), <, tol_mean);
  g_assert_cmpfloat (fabs (var - 1.0), <, tol_var);
}

static void
test_randn_moments (void)
{
  const size_t n = 200000;
  g_autofree float *v = g_new (float, n);
  for (int kind = 0; kind < 2; kind++) {
    g_autoptr(HvRng) r = hv_rng_new (kind ? HV_RNG_CUDA : HV_RNG_CPU, 2024);
    hv_rng_randn (r, v, n, HV_RNG_F32);
    /* 5 sigma: 5/sqrt(n) for the mean, 5*sqrt(2/n) for the variance */
    check_moments (v, n, 0.012, 0.016);
  }
}

/* ---- CUDA generator --------------------------------------------------------------------- */

/* curand's Box-Muller of one Philox block in double precision: (sin, cos, sin, cos) * radius */
static void
ref_box_muller4 (const uint32_t x[4], double out[4])
{
  for (int p = 0; p < 2; p++) {
    double u = (double) (float) x[2 * p] * 0x1p-32 + 0x1p-33;
    double v = ((double) (float) x[2 * p + 1] * 0x1p-32 + 0x1p-33) * 2.0 * G_PI;
    double r = sqrt (-2.0 * log (u));
    out[2 * p] = r * sin (v);
    out[2 * p + 1] = r * cos (v);
  }
}

static void
test_cuda_small_layout (void)
{
  /* n <= threads: element i is the first normal of Philox subsequence i; the offset then
   * advances by 4 and the next draw starts one counter block later */
  const size_t n = 300;
  float a[300], b[300];
  const uint64_t seed = 0x123456789abcULL;
  g_autoptr(HvRng) r = hv_rng_new (HV_RNG_CUDA, seed);
  g_assert_cmpuint (hv_rng_cuda_offset (r), ==, 0);
  hv_rng_randn (r, a, n, HV_RNG_F32);
  g_assert_cmpuint (hv_rng_cuda_offset (r), ==, 4);
  hv_rng_randn (r, b, n, HV_RNG_F32);
  g_assert_cmpuint (hv_rng_cuda_offset (r), ==, 8);
  const uint32_t key[2] = { (uint32_t) seed, (uint32_t) (seed >> 32) };
  for (size_t i = 0; i < n; i++) {
    for (uint32_t block = 0; block < 2; block++) {
      uint32_t ctr[4] = { block, 0, (uint32_t) i, 0 }, x[4];
      double ref[4];
      hv_philox4x32_10 (ctr, key, x);
      ref_box_muller4 (x, ref);
      g_assert_cmpfloat_with_epsilon ((block ? b : a)[i], ref[0], 1e-5);
    }
  }
}

static void
test_cuda_grid_stride_layout (void)
{
  /* a 1-SM "device" with 256 threads: stride 256, 4 values per thread and iteration */
  const size_t n = 2000;   /* 2 iterations of 1024 */
  g_autofree float *v = g_new (float, n);
  g_autoptr(HvRng) r = hv_rng_new (HV_RNG_CUDA, 77);
  hv_rng_set_cuda_device (r, 1, 256);
  hv_rng_randn (r, v, n, HV_RNG_F32);
  g_assert_cmpuint (hv_rng_cuda_offset (r), ==, 8);
  const uint32_t key[2] = { 77, 0 };
  for (uint32_t idx = 0; idx < 256; idx++)
    for (uint32_t it = 0; it < 2; it++) {
      uint32_t ctr[4] = { it, 0, idx, 0 }, x[4];
      double ref[4];
      hv_philox4x32_10 (ctr, key, x);
      ref_box_muller4 (x, ref);
      for (int k = 0; k < 4; k++) {
        size_t li = idx + 256 * (size_t) k + 1024 * (size_t) it;
        if (li < n)
          g_assert_cmpfloat_with_epsilon (v[li], ref[k], 1e-5);
      }
    }
  /* the default device (132 SMs x 2048 threads) spans 270336 threads: same values there */
  g_autoptr(HvRng) d = hv_rng_new (HV_RNG_CUDA, 77);
  float w[2000];
  hv_rng_randn (d, w, n, HV_RNG_F32);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t ctr[4] = { 0, 0, i, 0 }, x[4];
    double ref[4];
    hv_philox4x32_10 (ctr, key, x);
    ref_box_muller4 (x, ref);
    g_assert_cmpfloat_with_epsilon (w[i], ref[0], 1e-5);
  }
}

static void
test_cuda_half_is_rounded_float (void)
{
  /* fp16 / bf16 randn: the float normal rounded to nearest even, same stream */
  const size_t n = 5000;
  g_autofree float *f = g_new (float, n);
  g_autofree float *h = g_new (float, n);
  g_autofree float *bf = g_new (float, n);
  g_autoptr(HvRng) a = hv_rng_new (HV_RNG_CUDA, 11);
  g_autoptr(HvRng) b = hv_rng_new (HV_RNG_CUDA, 11);
  g_autoptr(HvRng) c = hv_rng_new (HV_RNG_CUDA, 11);
  hv_rng_randn (a, f, n, HV_RNG_F32);
  hv_rng_randn (b, h, n, HV_RNG_F16);
  hv_rng_randn (c, bf, n, HV_RNG_BF16);
  for (size_t i = 0; i < n; i++) {
    g_assert_cmpfloat (h[i], ==, hv_f16_to_f32 (hv_f32_to_f16 (f[i])));
    g_assert_cmpfloat (bf[i], ==, hv_bf16_to_f32 (hv_f32_to_bf16 (f[i])));
  }
}

static void
test_cuda_rand (void)
{
  const size_t n = 1000;
  float v[1000];
  g_autoptr(HvRng) r = hv_rng_new (HV_RNG_CUDA, 3);
  hv_rng_rand (r, v, n, HV_RNG_F32);
  const uint32_t key[2] = { 3, 0 };
  for (uint32_t i = 0; i < n; i++) {
    uint32_t ctr[4] = { 0, 0, i, 0 }, x[4];
    hv_philox4x32_10 (ctr, key, x);
    /* curand_uniform: x * 2^-32 + 2^-33 in (0, 1], 1 mapped to 0 by torch */
    float u = (float) x[0] * 0x1p-32f + 0x1p-33f;
    g_assert_cmpfloat (v[i], ==, u == 1.0f ? 0.0f : u);
    g_assert_cmpfloat (v[i], >=, 0.0f);
    g_assert_cmpfloat (v[i], <, 1.0f);
  }
}

/* ---- initial noise ---------------------------------------------------------------------- */

static void
test_noise_latents (void)
{
  const int64_t shape[5] = { 1, 16, 5, 8, 12 };
  g_autoptr(GError) error = NULL;
  g_autoptr(HvTensor) t = hv_noise_latents (HV_RNG_CUDA, HV_RNG_F16, 42, shape, &error);
  g_assert_no_error (error);
  g_assert_nonnull (t);
  g_assert_cmpint (t->dtype, ==, HV_DTYPE_F32);
  g_assert_cmpint (t->ndim, ==, 5);
  g_assert_cmpint (hv_tensor_numel (t), ==, 7680);
  g_autofree float *ref = g_new (float, 7680);
  g_autoptr(HvRng) r = hv_rng_new (HV_RNG_CUDA, 42);
  hv_rng_randn (r, ref, 7680, HV_RNG_F16);
  g_assert_cmpmem (t->data, 7680 * sizeof (float), ref, 7680 * sizeof (float));

  const int64_t bad[5] = { 1, 16, 0, 8, 12 };
  g_autoptr(HvTensor) none = hv_noise_latents (HV_RNG_CPU, HV_RNG_F32, 1, bad, &error);
  g_assert_null (none);
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  const int64_t huge[5] = { 1 << 20, 1 << 20, 1 << 20, 1, 1 };
  g_autoptr(HvTensor) none2 = hv_noise_latents (HV_RNG_CPU, HV_RNG_F32, 1, huge, &error);
  g_assert_null (none2);
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

/* ---- scheduler ---------------------------------------------------------------------------- */

static void
test_scheduler_invariants (void)
{
  g_autoptr(GError) error = NULL;
  for (int rev = 0; rev < 2; rev++) {
    g_autoptr(HvScheduler) s = hv_scheduler_new (25, 7.0f, rev, &error);
    g_assert_no_error (error);
    g_assert_cmpfloat (s->sigmas[0], ==, rev ? 1.0f : 0.0f);
    g_assert_cmpfloat (s->sigmas[25], ==, rev ? 0.0f : 1.0f);
    for (int i = 0; i < 25; i++) {
      g_assert_true (rev ? s->sigmas[i + 1] < s->sigmas[i] : s->sigmas[i + 1] > s->sigmas[i]);
      g_assert_cmpfloat (s->timesteps[i], ==, s->sigmas[i] * 1000.0f);
      /* the shift formula, in double, within fp32 rounding */
      double lin = 1.0 - i / 25.0;
      double sig = 7.0 * lin / (1.0 + 6.0 * lin);
      g_assert_cmpfloat_with_epsilon (s->sigmas[i], rev ? sig : 1.0 - sig, 3e-7);
    }
  }
  /* shift 1: plain linspace */
  g_autoptr(HvScheduler) lin = hv_scheduler_new (8, 1.0f, TRUE, &error);
  for (int i = 0; i <= 8; i++)
    g_assert_cmpfloat (lin->sigmas[i], ==, 1.0f - i / 8.0f);
}

static void
test_scheduler_bad_input (void)
{
  g_autoptr(GError) error = NULL;
  g_assert_null (hv_scheduler_new (0, 7.0f, TRUE, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (hv_scheduler_new (10, 0.0f, TRUE, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (hv_scheduler_new (10, NAN, TRUE, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

static void
test_scheduler_step (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(HvScheduler) s = hv_scheduler_new (4, 5.0f, TRUE, &error);
  const int64_t shape[2] = { 3, 7 };
  g_autoptr(HvTensor) hx = hv_tensor_new_f32 (2, shape);
  g_autoptr(HvTensor) hv = hv_tensor_new_f32 (2, shape);
  float *x0 = hv_tensor_f32 (hx), *v0 = hv_tensor_f32 (hv);
  for (int i = 0; i < 21; i++) {
    x0[i] = 0.37f * (float) (i - 10);
    v0[i] = 1.0f / (float) (i + 1);
  }
  g_autoptr(HvTensor) x = hv_backend_upload (b, hx);
  g_autoptr(HvTensor) v = hv_backend_upload (b, hv);
  for (int step = 0; step < 4; step++) {
    g_autoptr(HvTensor) before = hv_backend_download (b, x);
    hv_scheduler_step (s, b, step, x, v);
    g_assert_true (hv_backend_check (b, &error));
    g_autoptr(HvTensor) after = hv_backend_download (b, x);
    float dt = s->sigmas[step + 1] - s->sigmas[step];
    for (int i = 0; i < 21; i++) {
      float want = ((float *) before->data)[i] + v0[i] * dt;
      g_assert_cmpfloat (((float *) after->data)[i], ==, want);
    }
  }
  /* four Euler steps from sigma 1 to 0 move x by -v in total */
  g_autoptr(HvTensor) end = hv_backend_download (b, x);
  for (int i = 0; i < 21; i++)
    g_assert_cmpfloat_with_epsilon (((float *) end->data)[i], x0[i] - v0[i], 4e-6);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/rng/mt19937/reference", test_mt19937_reference);
  g_test_add_func ("/rng/mt19937/seed-low-bits", test_mt19937_seed_low_bits);
  g_test_add_func ("/rng/philox/kat", test_philox_kat);
  g_test_add_func ("/rng/cpu/rand-bits", test_cpu_rand_bits);
  g_test_add_func ("/rng/cpu/randn-consumption", test_cpu_randn_consumption);
  g_test_add_func ("/rng/cpu/randn-vector-path", test_cpu_randn_vector_path);
  g_test_add_func ("/rng/cpu/randn-scalar-cache", test_cpu_randn_scalar_cache);
  g_test_add_func ("/rng/cpu/randn-half", test_cpu_randn_half);
  g_test_add_func ("/rng/cpu/math-modes", test_cpu_math_modes);
  g_test_add_func ("/rng/randn-moments", test_randn_moments);
  g_test_add_func ("/rng/cuda/small-layout", test_cuda_small_layout);
  g_test_add_func ("/rng/cuda/grid-stride-layout", test_cuda_grid_stride_layout);
  g_test_add_func ("/rng/cuda/half-is-rounded-float", test_cuda_half_is_rounded_float);
  g_test_add_func ("/rng/cuda/rand", test_cuda_rand);
  g_test_add_func ("/rng/noise-latents", test_noise_latents);
  g_test_add_func ("/scheduler/invariants", test_scheduler_invariants);
  g_test_add_func ("/scheduler/bad-input", test_scheduler_bad_input);
  g_test_add_func ("/scheduler/step", test_scheduler_step);
  return g_test_run ();
}
