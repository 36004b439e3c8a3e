/* hv-rng.c — torch's random number generators re-done in plain C (see hv-rng.h).
 *
 * CPU generator (torch CPUGeneratorImpl): mt19937 seeded with the low 32 bits of the seed;
 * random() is one mt19937 word, random64() is two (first word high). torch.rand uses one word
 * per element masked to the dtype's mantissa digits (24 f32, 11 f16, 8 bf16). torch.randn:
 *  - numel >= 16: "normal_fill": every element first gets a uniform, then each block of 16 is
 *    turned into normals by Box-Muller over pairs (j, j + 8); when numel % 16 != 0 the last 16
 *    elements are drawn again (16 fresh uniforms) and transformed again. f32 on x86 builds goes
 *    through avx_mathfun's log/sincos polynomials, which we evaluate here operation by operation
 *    in the same order. torch compiles that code with FMA enabled and GCC fuses each multiply
 *    whose only use is an add into an FMA (the intrinsics are plain vector arithmetic); the
 *    fmaf() calls below are exactly those fusions (the project itself builds with
 *    -ffp-contract=off, so nothing else is fused). This matches torch 2.11 bit for bit.
 *  - numel < 16: one double Box-Muller per two elements from 53-bit uniforms; the second value
 *    is cached in the generator and used by the next scalar draw.
 *
 * CUDA generator (torch CUDAGeneratorImpl + curand Philox4_32_10): the kernel runs a grid-stride
 * loop with 256-thread blocks, grid = min(ceil(n / 256), SMs * threads_per_SM / 256); thread idx
 * uses Philox subsequence idx starting at the generator's offset and produces 4 values per
 * iteration (curand_normal4 / curand_uniform4), value k of an iteration going to element
 * idx + k * stride. The generator's offset then grows by 4 per iteration. Normals come from
 * curand's Box-Muller: u = x 2^-32 + 2^-33, v = y 2pi 2^-32 + pi 2^-32, sqrt(-2 log u) * (sin v,
 * cos v), where the device evaluates sin/cos with the hardware approximation __sincosf; we use
 * the exact sine of the same reduced argument, so CUDA-generator values can differ from the
 * GPU's in the last bits: up to ~1e-6 in fp32 (about a quarter of the values are bit-exact),
 * which flips roughly 1 in 600 fp16 values by one unit where the value sits on a rounding
 * boundary (bf16: rarer). The Philox streams, the layout and the offsets are exact. */
#include "hv-rng.h"
#include "hv-error.h"
#include <float.h>
#include <math.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

struct _HvRng {
  HvRngKind kind;
  uint64_t seed;
  /* CPU */
  uint32_t mt[MT_N];
  int mt_left, mt_next;
  gboolean have_next_double;
  double next_double;
  HvRngCpuMath cpu_math;
  /* CUDA */
  uint64_t philox_offset;
  int sm_count, threads_per_sm;
};

/* ---- small float helpers -------------------------------------------------------------- */

/* Rounds an f32 value to the output dtype (round to nearest even) and back. */
static inline float
round_to (float x, HvRngDType dt)
{
  switch (dt) {
  case HV_RNG_F16:
    return hv_f16_to_f32 (hv_f32_to_f16 (x));
  case HV_RNG_BF16:
    return hv_bf16_to_f32 (hv_f32_to_bf16 (x));
  case HV_RNG_F32:
  default:
    return x;
  }
}

/* ---- mt19937 (torch's at::mt19937) ------------------------------------------------------ */

static void
mt_seed (HvRng *r, uint64_t seed)
{
  r->mt[0] = (uint32_t) (seed & 0xffffffffu);
  for (int j = 1; j < MT_N; j++)
    r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + (uint32_t) j;
  r->mt_left = 1;
  r->mt_next = 0;
}

static void
mt_twist (HvRng *r)
{
  uint32_t *s = r->mt;
  for (int k = 0; k < MT_N; k++) {
    uint32_t y = (s[k] & 0x80000000u) | (s[(k + 1) % MT_N] & 0x7fffffffu);
    s[k] = s[(k + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
  }
  r->mt_left = MT_N;
  r->mt_next = 0;
}

static uint32_t
mt_next (HvRng *r)
{
  /* torch decrements first: a fresh generator twists before its first output */
  if (--r->mt_left == 0)
    mt_twist (r);
  uint32_t y = r->mt[r->mt_next++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

static uint64_t
mt_next64 (HvRng *r)
{
  uint64_t hi = mt_next (r);
  uint64_t lo = mt_next (r);
  return (hi << 32) | lo;
}

/* uniform_real_distribution<T>(0, 1): mask to T's digits, scale by 2^-digits */
static inline float
uniform_bits (uint32_t v, int digits)
{
  return (float) (v & ((1u << digits) - 1u)) * ldexpf (1.0f, -digits);
}

static inline int
dtype_digits (HvRngDType dt)
{
  return dt == HV_RNG_F16 ? 11 : dt == HV_RNG_BF16 ? 8 : 24;
}

static inline double
uniform_double (HvRng *r)
{
  return (double) (mt_next64 (r) & ((UINT64_C (1) << 53) - 1)) * (1.0 / (double) (UINT64_C (1) << 53));
}

/* at::normal_distribution<double>(0, 1) with the generator's cached second value */
static double
normal_double (HvRng *r)
{
  if (r->have_next_double) {
    r->have_next_double = FALSE;
    return r->next_double * 1.0 + 0.0;
  }
  double u1 = uniform_double (r);
  double u2 = uniform_double (r);
  double radius = sqrt (-2.0 * log1p (-u2));
  double theta = 2.0 * G_PI * u1;
  r->next_double = radius * sin (theta);
  r->have_next_double = TRUE;
  return radius * cos (theta) * 1.0 + 0.0;
}

/* ---- avx_mathfun (Cephes) log and sincos, one lane ------------------------------------- */

static float
avx_logf (float x)
{
  gboolean invalid = !(x > 0.0f);   /* _CMP_LE_OS, NaN counts as invalid too */
  if (!(x >= FLT_MIN))
    x = FLT_MIN;                    /* max_ps(x, min_norm_pos) keeps the second operand on NaN */
  uint32_t bits = hv_f32_bits (x);
  int32_t imm0 = (int32_t) (bits >> 23);
  float m = hv_f32_from_bits ((bits & ~0x7f800000u) | hv_f32_bits (0.5f));
  imm0 -= 0x7f;
  float e = (float) imm0;
  e = e + 1.0f;
  gboolean below = m < (float) 0.707106781186547524;
  float tmp = below ? m : 0.0f;
  m = m - 1.0f;
  e = e - (below ? 1.0f : 0.0f);
  m = m + tmp;
  float z = m * m;
  float y = (float) 7.0376836292E-2;
  y = fmaf (y, m, (float) -1.1514610310E-1);
  y = fmaf (y, m, (float) 1.1676998740E-1);
  y = fmaf (y, m, (float) -1.2420140846E-1);
  y = fmaf (y, m, (float) 1.4249322787E-1);
  y = fmaf (y, m, (float) -1.6668057665E-1);
  y = fmaf (y, m, (float) 2.0000714765E-1);
  y = fmaf (y, m, (float) -2.4999993993E-1);
  y = fmaf (y, m, (float) 3.3333331174E-1);
  y = y * m;
  y = fmaf (y, z, e * (float) -2.12194440e-4);
  y = fmaf (-z, 0.5f, y);
  m = m + y;
  m = fmaf (e, (float) 0.693359375, m);
  return invalid ? hv_f32_from_bits (0x7fc00000u) : m;
}

static void
avx_sincosf (float x, float *s, float *c)
{
  uint32_t sign_sin = hv_f32_bits (x) & 0x80000000u;
  x = hv_f32_from_bits (hv_f32_bits (x) & 0x7fffffffu);
  float y = x * (float) 1.27323954473516;
  int32_t j = (int32_t) y;          /* cvttps: truncation */
  j = (j + 1) & ~1;
  y = (float) j;
  uint32_t swap_sin = ((uint32_t) j & 4u) << 29;
  gboolean poly_sin = (j & 2) == 0;
  x = fmaf (y, (float) -0.78515625, x);
  x = fmaf (y, (float) -2.4187564849853515625e-4, x);
  x = fmaf (y, (float) -3.77489497744594108e-8, x);
  uint32_t sign_cos = (~(uint32_t) (j - 2) & 4u) << 29;
  sign_sin ^= swap_sin;
  float z = x * x;
  float yc = (float) 2.443315711809948E-005;
  yc = fmaf (yc, z, (float) -1.388731625493765E-003);
  yc = fmaf (yc, z, (float) 4.166664568298827E-002);
  yc = yc * z;
  yc = fmaf (yc, z, -(z * 0.5f));
  yc = yc + 1.0f;
  float ys = (float) -1.9515295891E-4;
  ys = fmaf (ys, z, (float) 8.3321608736E-3);
  ys = fmaf (ys, z, (float) -1.6666654611E-1);
  ys = ys * z;
  ys = fmaf (ys, x, x);
  /* select with the same additions of +0 the vector code does */
  float ysin2 = poly_sin ? ys : 0.0f;
  float ysin1 = poly_sin ? 0.0f : yc;
  ys = ys - ysin2;
  yc = yc - ysin1;
  float vs = ysin1 + ysin2;
  float vc = yc + ys;
  *s = hv_f32_from_bits (hv_f32_bits (vs) ^ sign_sin);
  *c = hv_f32_from_bits (hv_f32_bits (vc) ^ sign_cos);
}

/* ---- CPU randn / rand -------------------------------------------------------------------- */

/* normal_fill_16 for f32: pairs (j, j + 8) of uniforms in d[] become normals in place */
static void
normal16_f32 (float *d, HvRngCpuMath math)
{
  for (int j = 0; j < 8; j++) {
    float u1 = 1.0f - d[j];
    float u2 = d[j + 8];
    float radius, sn, cs;
    if (math == HV_RNG_CPU_MATH_AVX2) {
      radius = sqrtf (-2.0f * avx_logf (u1));
      float theta = (float) (2.0 * G_PI) * u2;
      avx_sincosf (theta, &sn, &cs);
    } else {
      radius = sqrtf (-2.0f * logf (u1));
      float theta = (float) (2.0 * G_PI * (double) u2);
      sn = sinf (theta);
      cs = cosf (theta);
    }
    d[j] = fmaf (radius * cs, 1.0f, 0.0f);
    d[j + 8] = fmaf (radius * sn, 1.0f, 0.0f);
  }
}

/* normal_fill_16 for c10::Half / c10::BFloat16 (not covered by the golden fixtures): c10's
 * std::log/sqrt/cos/sin overloads for 16-bit types return the 16-bit type, and 16-bit
 * arithmetic rounds every result, so each intermediate is rounded to dt; theta is computed in
 * double (pi is a double constant) and converted through float. */
static void
normal16_half (float *d, HvRngDType dt)
{
  for (int j = 0; j < 8; j++) {
    float u1 = round_to (1.0f - d[j], dt);
    float u2 = d[j + 8];
    float lg = round_to (logf (u1), dt);
    float radius = round_to (sqrtf (round_to (-2.0f * lg, dt)), dt);
    float theta = round_to ((float) (2.0 * G_PI * (double) u2), dt);
    d[j] = round_to (radius * round_to (cosf (theta), dt), dt);
    d[j + 8] = round_to (radius * round_to (sinf (theta), dt), dt);
  }
}

static void
cpu_normal_fill (HvRng *r, float *out, size_t n, HvRngDType dt)
{
  int digits = dtype_digits (dt);
  for (size_t i = 0; i < n; i++)
    out[i] = uniform_bits (mt_next (r), digits);
  for (size_t i = 0; i + 16 <= n; i += 16) {
    if (dt == HV_RNG_F32)
      normal16_f32 (out + i, r->cpu_math);
    else
      normal16_half (out + i, dt);
  }
  if (n % 16 != 0) {
    /* torch recomputes the last 16 values from 16 fresh uniforms */
    float *tail = out + n - 16;
    for (int i = 0; i < 16; i++)
      tail[i] = uniform_bits (mt_next (r), digits);
    if (dt == HV_RNG_F32)
      normal16_f32 (tail, r->cpu_math);
    else
      normal16_half (tail, dt);
  }
}

static void
cpu_randn (HvRng *r, float *out, size_t n, HvRngDType dt)
{
  if (n >= 16) {
    cpu_normal_fill (r, out, n, dt);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    /* static_cast<scalar_t>(double): c10's 16-bit types convert through float */
    out[i] = round_to ((float) normal_double (r), dt);
  }
}

static void
cpu_rand (HvRng *r, float *out, size_t n, HvRngDType dt)
{
  int digits = dtype_digits (dt);
  for (size_t i = 0; i < n; i++)
    out[i] = uniform_bits (mt_next (r), digits);
}

/* ---- Philox4x32-10 (curand) -------------------------------------------------------------- */

void
hv_philox4x32_10 (const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t) 0xD2511F53u * c0;
    uint64_t p1 = (uint64_t) 0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t) (p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t) p1;
    uint32_t n2 = (uint32_t) (p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t) p0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* curand's Philox_State_Incr(state, n), carry quirks included */
static void
philox_incr_n (uint32_t c[4], uint64_t n)
{
  uint32_t nlo = (uint32_t) n, nhi = (uint32_t) (n >> 32);
  c[0] += nlo;
  if (c[0] < nlo)
    nhi++;
  c[1] += nhi;
  if (nhi <= c[1])
    return;
  if (++c[2])
    return;
  ++c[3];
}

static void
philox_incr (uint32_t c[4])
{
  if (++c[0])
    return;
  if (++c[1])
    return;
  if (++c[2])
    return;
  ++c[3];
}

/* ---- the device's float math, as far as it is reproducible ------------------------------- */

/* float multiply rounded toward zero (FMUL.RZ) */
static inline float
mul_rz (float a, float b)
{
  double p = (double) a * (double) b;   /* exact: 48 significant bits */
  float f = (float) p;
  if (fabs ((double) f) > fabs (p))
    f = nextafterf (f, 0.0f);
  return f;
}

/* logf as the CUDA math library computes it (non-fast-math), as far as we know it: reduction
 * to [2/3, 4/3) and an FMA polynomial for log1p, within 0.85 ulp. Checked against GPU output
 * through the Box-Muller radius: it explains all but ~0.1% of the fixture values, where a
 * correctly rounded logf misses twice as many. */
static float
cuda_logf (float a)
{
  float i = 0.0f;
  if (a < 1.17549435e-38f) {
    a = a * 8388608.0f;
    i = -23.0f;
  }
  int32_t e = (int32_t) ((hv_f32_bits (a) - hv_f32_bits (0.666666667f)) & 0xff800000u);
  float m = hv_f32_from_bits (hv_f32_bits (a) - (uint32_t) e);
  i = fmaf ((float) e, 1.19209290e-7f, i);
  float f = m - 1.0f;
  float s = f * f;
  float r = -0.130310059f;
  float t = 0.140869141f;
  r = fmaf (r, s, -0.121483512f);
  t = fmaf (t, s, 0.139814854f);
  r = fmaf (r, s, -0.166846126f);
  t = fmaf (t, s, 0.200120345f);
  r = fmaf (r, s, -0.249996200f);
  r = fmaf (t, f, r);
  r = fmaf (r, f, 0.333331972f);
  r = fmaf (r, f, -0.500000000f);
  r = fmaf (r, s, f);
  r = fmaf (i, 0.693147182f, r);
  if (!(a > 0.0f && a <= 3.40282347e+38f)) {
    r = a + a;
    if (a < 0.0f)
      r = hv_f32_from_bits (0x7fc00000u);
    if (a == 0.0f)
      r = -INFINITY;
  }
  return r;
}

/* __sincosf: the argument is scaled to turns with a truncating multiply, then the special
 * function unit approximates sin/cos(2 pi t). We return the correctly rounded values of
 * sin/cos(2 pi t); the hardware's own approximation is within ~2^-21.4 of them. */
static inline void
cuda_sincosf (float v, float *s, float *c)
{
  double t = (double) mul_rz (v, 0.159154937f) * (2.0 * G_PI);
  *s = (float) sin (t);
  *c = (float) cos (t);
}

#define CURAND_2POW32_INV 2.3283064e-10f
#define CURAND_2POW32_INV_2PI (2.3283064e-10f * 6.2831855f)

/* _curand_box_muller(x, y) -> (sin, cos) * sqrt(-2 log u) */
static inline void
curand_box_muller (uint32_t x, uint32_t y, float *r0, float *r1)
{
  float u = fmaf ((float) x, CURAND_2POW32_INV, CURAND_2POW32_INV / 2.0f);
  float v = fmaf ((float) y, CURAND_2POW32_INV_2PI, CURAND_2POW32_INV_2PI / 2.0f);
  float s = sqrtf (-2.0f * cuda_logf (u));
  float sn, cs;
  cuda_sincosf (v, &sn, &cs);
  *r0 = sn * s;
  *r1 = cs * s;
}

static void
cuda_generate (HvRng *r, float *out, size_t n, HvRngDType dt, gboolean normal)
{
  if (n == 0)
    return;
  const uint64_t block = 256;
  uint64_t blocks_per_sm = (uint64_t) r->threads_per_sm / block;
  if (blocks_per_sm < 1)
    blocks_per_sm = 1;
  uint64_t grid = ((uint64_t) n + block - 1) / block;
  grid = MIN (grid, (uint64_t) r->sm_count * blocks_per_sm);
  const uint64_t stride = block * grid;
  const uint64_t iters = ((uint64_t) n - 1) / (stride * 4) + 1;
  /* philox_cuda_state(counter_offset): offset handed out, then advanced (multiple of 4) */
  const uint64_t offset = r->philox_offset;
  r->philox_offset += ((iters * 4 + 3) / 4) * 4;
  const uint32_t key[2] = { (uint32_t) r->seed, (uint32_t) (r->seed >> 32) };
  const uint64_t n_threads = MIN (stride, (uint64_t) n);

#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n >= 65536)
#endif
  for (int64_t ti = 0; ti < (int64_t) n_threads; ti++) {
    uint64_t idx = (uint64_t) ti;
    uint32_t ctr[4] = { 0, 0, (uint32_t) idx, (uint32_t) (idx >> 32) };
    philox_incr_n (ctr, offset / 4);   /* offset is a multiple of 4: no partial block */
    for (uint64_t it = 0; it < iters; it++) {
      uint64_t li0 = idx + it * stride * 4;
      if (li0 >= n)
        break;
      uint32_t x[4];
      hv_philox4x32_10 (ctr, key, x);
      philox_incr (ctr);
      float v[4];
      if (normal) {
        curand_box_muller (x[0], x[1], &v[0], &v[1]);
        curand_box_muller (x[2], x[3], &v[2], &v[3]);
      } else {
        for (int k = 0; k < 4; k++) {
          /* curand_uniform is in (0, 1]; torch maps a value that rounds to 1 onto 0 */
          float u = fmaf ((float) x[k], CURAND_2POW32_INV, CURAND_2POW32_INV / 2.0f);
          float w = round_to (u, dt);
          v[k] = w == 1.0f ? 0.0f : w;
        }
      }
      for (int k = 0; k < 4; k++) {
        uint64_t li = li0 + stride * (uint64_t) k;
        if (li < n)
          out[li] = normal ? round_to (v[k], dt) : v[k];
      }
    }
  }
}

/* ---- public API ---------------------------------------------------------------------------- */

HvRng *
hv_rng_new (HvRngKind kind, uint64_t seed)
{
  HvRng *r = g_new0 (HvRng, 1);
  r->kind = kind;
  r->seed = seed;
  r->cpu_math = HV_RNG_CPU_MATH_AVX2;
  r->sm_count = HV_RNG_CUDA_DEFAULT_SM_COUNT;
  r->threads_per_sm = HV_RNG_CUDA_DEFAULT_THREADS_PER_SM;
  if (kind == HV_RNG_CPU)
    mt_seed (r, seed);
  return r;
}

void
hv_rng_free (HvRng *r)
{
  g_free (r);
}

HvRngKind
hv_rng_kind (const HvRng *r)
{
  return r->kind;
}

void
hv_rng_set_cpu_math (HvRng *r, HvRngCpuMath math)
{
  g_return_if_fail (r != NULL);
  r->cpu_math = math;
}

void
hv_rng_set_cuda_device (HvRng *r, int sm_count, int max_threads_per_sm)
{
  g_return_if_fail (r != NULL);
  if (sm_count >= 1)
    r->sm_count = sm_count;
  if (max_threads_per_sm >= 1)
    r->threads_per_sm = max_threads_per_sm;
}

uint64_t
hv_rng_cuda_offset (const HvRng *r)
{
  return r->philox_offset;
}

uint32_t
hv_rng_next_u32 (HvRng *r)
{
  g_return_val_if_fail (r != NULL && r->kind == HV_RNG_CPU, 0);
  return mt_next (r);
}

void
hv_rng_randn (HvRng *r, float *out, size_t n, HvRngDType dt)
{
  g_return_if_fail (r != NULL && (out != NULL || n == 0));
  if (r->kind == HV_RNG_CPU)
    cpu_randn (r, out, n, dt);
  else
    cuda_generate (r, out, n, dt, TRUE);
}

void
hv_rng_rand (HvRng *r, float *out, size_t n, HvRngDType dt)
{
  g_return_if_fail (r != NULL && (out != NULL || n == 0));
  if (r->kind == HV_RNG_CPU)
    cpu_rand (r, out, n, dt);
  else
    cuda_generate (r, out, n, dt, FALSE);
}

HvTensor *
hv_noise_latents (HvRngKind kind, HvRngDType dt, uint64_t seed, const int64_t shape[5],
                  GError **error)
{
  char buf[96];
  int64_t numel = 1;
  for (int i = 0; i < 5; i++) {
    /* torch splits tensors of 2^31 elements and more into several launches; not modelled */
    if (shape[i] <= 0 || shape[i] > (INT64_C (1) << 31) / numel) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "noise shape %s: every dimension must be positive and the total below 2^31",
                   hv_shape_str (5, shape, buf, sizeof buf));
      return NULL;
    }
    numel *= shape[i];
  }
  if (numel >= (INT64_C (1) << 31)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "noise shape %s has 2^31 elements or more",
                 hv_shape_str (5, shape, buf, sizeof buf));
    return NULL;
  }
  HvTensor *t = hv_tensor_new_f32 (5, shape);
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "cannot allocate noise of shape %s",
                 hv_shape_str (5, shape, buf, sizeof buf));
    return NULL;
  }
  g_autoptr(HvRng) r = hv_rng_new (kind, seed);
  hv_rng_randn (r, hv_tensor_f32 (t), (size_t) numel, dt);
  return t;
}
