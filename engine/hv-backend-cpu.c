/* hv-backend-cpu.c — the CPU reference backend: every op of HvBackendOps in plain C, OpenMP
 * parallel (serial without OpenMP), fp32 accumulation.
 *
 * The matrix products (linear, attention, conv3d) share one small packed GEMM: a panel of B
 * (weight rows, converted from their stored dtype a tile at a time, never the whole matrix) is
 * packed into a per-thread buffer and multiplied by a register-blocked micro-kernel. The
 * micro-kernel is picked at backend creation from the CPU's features (AVX-512, AVX2+FMA or
 * portable C); HV_CPU_GEMM=generic|avx2|avx512 forces one (tests use it to cover each path). */
#include "hv-backend.h"
#include "hv-error.h"
#include <math.h>
#include <string.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HV_X86 1
#else
#define HV_X86 0
#endif

#ifdef __clang__
/* clang reports `omp simd` loops it could not vectorize; they are correct as scalar loops */
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

#ifdef _OPENMP
#define OMP(x) _Pragma (#x)
#else
#define OMP(x)
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define UNROLL(n) _Pragma (G_STRINGIFY (GCC unroll n))
#else
#define UNROLL(n)
#endif

/* Below this many elements an elementwise op runs on one thread, below PAR_MIN_FLOPS a matrix
 * op: waking the team (and libgomp's spinning after it) costs more than the work. */
#define PAR_MIN 65536
#define PAR_MIN_FLOPS 4000000.0

/* ---- backend state ----------------------------------------------------------------------- */

typedef struct {
  int mr, nr;   /* register block: rows of A, columns of B */
  /* acc[mr][nr] = A[0..mv, 0..kc] · bp (packed [kc][nr]); C[0..mv, 0..nv] += acc. */
  void (*run) (int64_t kc, const float *a, int64_t lda, int mv, const float *bp, float *c,
               int64_t ldc, int nv);
  const char *name;
  /* vector helpers of the same ISA */
  float (*dot) (const float *a, const float *b, int64_t n);
  /* x[i] *= s; returns max x[i] (-inf for n == 0) */
  float (*scale_max) (float *x, int64_t n, float s);
  /* x[i] = exp(x[i] - m) (0 for -inf); returns the sum */
  float (*exp_sum) (float *x, int64_t n, float m);
  /* dst[0..n) = element off.. of src (dtype dt) × scale, like cvt_run */
  void (*cvt) (float *dst, const void *src, HvDType dt, int64_t off, int64_t n, float scale);
} Kernel;

typedef struct {
  GMutex lock;
  GHashTable *cache;     /* rounded size -> GSList of free blocks */
  gsize cached;          /* bytes held in the cache */
  const Kernel *kern;
} CpuPriv;

static CpuPriv *
priv (HvBackend *b)
{
  return b->priv;
}

static int
nthreads (HvBackend *b)
{
  return b->n_threads > 0 ? b->n_threads : 1;
}

static void
record_error (HvBackend *b, int code, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
record_error (HvBackend *b, int code, const char *fmt, ...)
{
  CpuPriv *p = priv (b);
  va_list ap;
  va_start (ap, fmt);
  g_mutex_lock (&p->lock);
  if (!b->error)
    b->error = g_error_new_valist (HV_ERROR, code, fmt, ap);
  g_mutex_unlock (&p->lock);
  va_end (ap);
}

/* ---- memory: 64-byte aligned blocks, freed blocks kept by size for reuse ------------------ */

#define ALIGN 64
#define CACHE_LIMIT ((gsize) 2 << 30)   /* bytes of free blocks kept at most */

typedef struct {
  void *base;
  gsize size;   /* rounded size, the cache key */
} BlockHdr;

/* Round sizes so that slightly different shapes share blocks: 256 B granularity up to 64 KiB,
 * then 1/8 of the power of two. */
static gsize
round_size (gsize n)
{
  if (n <= 65536)
    return (n + 255) & ~(gsize) 255;
  gsize p = 65536;
  while (p * 2 < n)
    p *= 2;
  gsize step = p / 8;
  return (n + step - 1) / step * step;
}

static void *
raw_alloc (gsize size)
{
  void *base = g_try_malloc (size + ALIGN + sizeof (BlockHdr));
  if (!base)
    return NULL;
  uintptr_t p = ((uintptr_t) base + sizeof (BlockHdr) + ALIGN - 1) & ~(uintptr_t) (ALIGN - 1);
  BlockHdr *h = (BlockHdr *) p - 1;
  h->base = base;
  h->size = size;
  return (void *) p;
}

static void
raw_free (void *p)
{
  g_free (((BlockHdr *) p - 1)->base);
}

static void
free_block_list (gpointer key, gpointer list, gpointer user_data)
{
  g_slist_free_full (list, raw_free);
}

static void *
cpu_alloc (HvBackend *b, gsize nbytes)
{
  CpuPriv *pv = priv (b);
  gsize size = round_size (nbytes);
  void *p = NULL;
  g_mutex_lock (&pv->lock);
  GSList *l = g_hash_table_lookup (pv->cache, GSIZE_TO_POINTER (size));
  if (l) {
    p = l->data;
    l = g_slist_delete_link (l, l);
    if (l)
      g_hash_table_insert (pv->cache, GSIZE_TO_POINTER (size), l);
    else
      g_hash_table_steal (pv->cache, GSIZE_TO_POINTER (size));
    pv->cached -= size;
  }
  g_mutex_unlock (&pv->lock);
  if (p)
    return p;
  p = raw_alloc (size);
  if (!p) {   /* out of memory: give the cached blocks back and try once more */
    g_mutex_lock (&pv->lock);
    g_hash_table_foreach (pv->cache, free_block_list, NULL);
    g_hash_table_remove_all (pv->cache);
    pv->cached = 0;
    g_mutex_unlock (&pv->lock);
    p = raw_alloc (size);
  }
  return p;
}

static void
cpu_release (HvBackend *b, void *p)
{
  if (!p)
    return;
  CpuPriv *pv = priv (b);
  gsize size = ((BlockHdr *) p - 1)->size;
  g_mutex_lock (&pv->lock);
  if (pv->cached + size <= CACHE_LIMIT) {
    GSList *l = g_hash_table_lookup (pv->cache, GSIZE_TO_POINTER (size));
    g_hash_table_insert (pv->cache, GSIZE_TO_POINTER (size), g_slist_prepend (l, p));
    pv->cached += size;
    p = NULL;
  }
  g_mutex_unlock (&pv->lock);
  if (p)
    raw_free (p);
}

static void
cpu_copy_bytes (HvBackend *b, void *dst, const void *src, gsize n)
{
  memcpy (dst, src, n);
}

static void
cpu_synchronize (HvBackend *b)
{
}

static void
cpu_destroy (HvBackend *b)
{
  CpuPriv *pv = priv (b);
  g_hash_table_foreach (pv->cache, free_block_list, NULL);
  g_hash_table_destroy (pv->cache);
  g_mutex_clear (&pv->lock);
  g_free (pv);
  g_free (b);
}

/* ---- dtype conversion of runs of elements ---------------------------------------------------- */

static float lut_e4m3[256], lut_e5m2[256];

static void
init_luts (void)
{
  static gsize done = 0;
  if (g_once_init_enter (&done)) {
    for (int i = 0; i < 256; i++) {
      lut_e4m3[i] = hv_f8_e4m3_to_f32 ((uint8_t) i);
      lut_e5m2[i] = hv_f8_e5m2_to_f32 ((uint8_t) i);
    }
    g_once_init_leave (&done, 1);
  }
}

/* dst[0..n) = element off.. of src (dtype dt) × scale. */
static void
cvt_run (float *restrict dst, const void *src, HvDType dt, int64_t off, int64_t n, float scale)
{
  switch (dt) {
    case HV_DTYPE_F32: {
      const float *s = (const float *) src + off;
      if (scale == 1.0f)
        memcpy (dst, s, (size_t) n * 4);
      else
        for (int64_t i = 0; i < n; i++) dst[i] = s[i] * scale;
      return;
    }
    case HV_DTYPE_BF16: {
      const uint16_t *s = (const uint16_t *) src + off;
      for (int64_t i = 0; i < n; i++)
        dst[i] = hv_f32_from_bits ((uint32_t) s[i] << 16);   /* inline hv_bf16_to_f32 */
      break;
    }
    case HV_DTYPE_F16: {
      const uint16_t *s = (const uint16_t *) src + off;
      for (int64_t i = 0; i < n; i++) dst[i] = hv_f16_to_f32 (s[i]);
      break;
    }
    case HV_DTYPE_F8_E4M3:
    case HV_DTYPE_F8_E5M2: {
      const uint8_t *s = (const uint8_t *) src + off;
      const float *lut = dt == HV_DTYPE_F8_E4M3 ? lut_e4m3 : lut_e5m2;
      for (int64_t i = 0; i < n; i++) dst[i] = lut[s[i]];
      break;
    }
    default:
      hv_convert_to_f32 (dst, (const char *) src + off * (int64_t) hv_dtype_size (dt), dt, (size_t) n, 1.0f);
      break;
  }
  if (scale != 1.0f)
    for (int64_t i = 0; i < n; i++) dst[i] *= scale;
}

/* A small float vector (bias, norm weight, ...) as f32, or NULL for NULL. g_free it. */
static float *
vec_f32 (const HvTensor *t)
{
  if (!t)
    return NULL;
  int64_t n = hv_tensor_numel (t);
  float *v = g_new (float, MAX (n, 1));
  cvt_run (v, t->data, t->dtype, 0, n, t->scale);
  return v;
}

/* ---- packed GEMM -------------------------------------------------------------------------- */

#define KC 256   /* depth of one packed panel */

typedef struct {
  const void *data;
  HvDType dt;
  float scale;
  int64_t ld;     /* elements between stored rows */
  gboolean kn;    /* FALSE: stored [N][K] (weights, keys); TRUE: stored [K][N] (values) */
} Bmat;

/* bp[k][nr] = B(n0 + j, k0 + k) for j < nv, zero for nv <= j < nr. tmp holds KC floats. */
static void
pack_b (const Kernel *kr, float *restrict bp, const Bmat *B, int64_t n0, int nv, int nr, int64_t k0,
        int64_t kc, float *restrict tmp)
{
  if (!B->kn) {
    for (int j = 0; j < nv; j++) {
      const float *src;
      if (B->dt == HV_DTYPE_F32 && B->scale == 1.0f) {
        src = (const float *) B->data + (n0 + j) * B->ld + k0;
      } else {
        kr->cvt (tmp, B->data, B->dt, (n0 + j) * B->ld + k0, kc, B->scale);
        src = tmp;
      }
      for (int64_t k = 0; k < kc; k++)
        bp[k * nr + j] = src[k];
    }
    if (nv < nr)
      for (int64_t k = 0; k < kc; k++)
        for (int j = nv; j < nr; j++)
          bp[k * nr + j] = 0.0f;
  } else {
    for (int64_t k = 0; k < kc; k++) {
      kr->cvt (bp + k * nr, B->data, B->dt, (k0 + k) * B->ld + n0, nv, B->scale);
      for (int j = nv; j < nr; j++)
        bp[k * nr + j] = 0.0f;
    }
  }
}

/* Adds a finished register tile to C, clipped to mv × nv. */
static inline void
tile_add (float *c, int64_t ldc, const float *tile, int nr, int mv, int nv)
{
  for (int i = 0; i < mv; i++)
    for (int j = 0; j < nv; j++)
      c[i * ldc + j] += tile[i * nr + j];
}

/* Portable kernel: 4 × 8. */
static void
ukr_generic (int64_t kc, const float *a, int64_t lda, int mv, const float *bp, float *c,
             int64_t ldc, int nv)
{
  float acc[4][8] = { { 0 } };
  const float *ar[4];
  for (int i = 0; i < 4; i++)
    ar[i] = a + (i < mv ? i : mv - 1) * lda;
  for (int64_t k = 0; k < kc; k++) {
    const float *b = bp + k * 8;
    for (int i = 0; i < 4; i++) {
      float av = ar[i][k];
      for (int j = 0; j < 8; j++)
        acc[i][j] += av * b[j];
    }
  }
  tile_add (c, ldc, &acc[0][0], 8, mv, nv);
}

static float
dot_generic (const float *a, const float *b, int64_t n)
{
  float acc[8] = { 0 };   /* 8 partial sums: vectorizable, and less rounding than one chain */
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++)
      acc[j] += a[i + j] * b[i + j];
  float s = 0.0f;
  for (; i < n; i++)
    s += a[i] * b[i];
  for (int j = 0; j < 8; j++)
    s += acc[j];
  return s;
}

static float
scale_max_generic (float *x, int64_t n, float sc)
{
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    x[i] *= sc;
    mx = x[i] > mx ? x[i] : mx;
  }
  return mx;
}

static float
exp_sum_generic (float *x, int64_t n, float m)
{
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    x[i] = expf (x[i] - m);
    s += x[i];
  }
  return s;
}

static const Kernel kern_generic = { 4, 8, ukr_generic, "generic", dot_generic, scale_max_generic, exp_sum_generic, cvt_run };

#if HV_X86
/* AVX2 + FMA: 6 rows × 16 columns = 12 accumulators in ymm registers. */
__attribute__ ((target ("avx2,fma"))) static void
ukr_avx2 (int64_t kc, const float *a, int64_t lda, int mv, const float *bp, float *c,
          int64_t ldc, int nv)
{
  __m256 acc[6][2];
  const float *ar[6];
  UNROLL (6)
  for (int i = 0; i < 6; i++) {
    ar[i] = a + (i < mv ? i : mv - 1) * lda;
    acc[i][0] = _mm256_setzero_ps ();
    acc[i][1] = _mm256_setzero_ps ();
  }
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps (bp + k * 16);
    __m256 b1 = _mm256_loadu_ps (bp + k * 16 + 8);
    UNROLL (6)
    for (int i = 0; i < 6; i++) {
      __m256 av = _mm256_broadcast_ss (ar[i] + k);
      acc[i][0] = _mm256_fmadd_ps (av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps (av, b1, acc[i][1]);
    }
  }
  if (mv == 6 && nv == 16) {
    UNROLL (6)
    for (int i = 0; i < 6; i++) {
      float *ci = c + i * ldc;
      _mm256_storeu_ps (ci, _mm256_add_ps (_mm256_loadu_ps (ci), acc[i][0]));
      _mm256_storeu_ps (ci + 8, _mm256_add_ps (_mm256_loadu_ps (ci + 8), acc[i][1]));
    }
  } else {
    float tile[6 * 16];
    for (int i = 0; i < 6; i++) {
      _mm256_storeu_ps (tile + i * 16, acc[i][0]);
      _mm256_storeu_ps (tile + i * 16 + 8, acc[i][1]);
    }
    tile_add (c, ldc, tile, 16, mv, nv);
  }
}

/* exp for x <= 0 (softmax): Cephes polynomial on x - n·ln2, |error| ~ 1 ulp; x < -87.3 -> 0. */
__attribute__ ((target ("avx2,fma"))) static inline __m256
exp_avx2 (__m256 x)
{
  __m256 under = _mm256_cmp_ps (x, _mm256_set1_ps (-87.3f), _CMP_LT_OQ);
  x = _mm256_max_ps (x, _mm256_set1_ps (-87.3f));
  __m256 n = _mm256_round_ps (_mm256_mul_ps (x, _mm256_set1_ps (1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps (n, _mm256_set1_ps (0.693359375f), x);
  r = _mm256_fnmadd_ps (n, _mm256_set1_ps (-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps (1.9875691500e-4f);
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (1.3981999507e-3f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (8.3334519073e-3f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (4.1665795894e-2f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (1.6666665459e-1f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (5.0000001201e-1f));
  __m256 y = _mm256_fmadd_ps (p, _mm256_mul_ps (r, r), _mm256_add_ps (r, _mm256_set1_ps (1.0f)));
  __m256i e = _mm256_slli_epi32 (_mm256_add_epi32 (_mm256_cvtps_epi32 (n), _mm256_set1_epi32 (127)), 23);
  y = _mm256_mul_ps (y, _mm256_castsi256_ps (e));
  return _mm256_andnot_ps (under, y);
}

__attribute__ ((target ("avx2,fma"))) static float
hsum_avx2 (__m256 v)
{
  __m128 s = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));
  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

__attribute__ ((target ("avx2,fma"))) static float
dot_avx2 (const float *a, const float *b, int64_t n)
{
  __m256 s0 = _mm256_setzero_ps (), s1 = _mm256_setzero_ps ();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps (_mm256_loadu_ps (a + i), _mm256_loadu_ps (b + i), s0);
    s1 = _mm256_fmadd_ps (_mm256_loadu_ps (a + i + 8), _mm256_loadu_ps (b + i + 8), s1);
  }
  float s = hsum_avx2 (_mm256_add_ps (s0, s1));
  for (; i < n; i++)
    s += a[i] * b[i];
  return s;
}

__attribute__ ((target ("avx2,fma"))) static float
scale_max_avx2 (float *x, int64_t n, float sc)
{
  __m256 vs = _mm256_set1_ps (sc), mx = _mm256_set1_ps (-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps (_mm256_loadu_ps (x + i), vs);
    _mm256_storeu_ps (x + i, v);
    mx = _mm256_max_ps (mx, v);
  }
  float buf[8], m = -INFINITY;
  _mm256_storeu_ps (buf, mx);
  for (int j = 0; j < 8; j++) m = MAX (m, buf[j]);
  for (; i < n; i++) {
    x[i] *= sc;
    m = MAX (m, x[i]);
  }
  return m;
}

__attribute__ ((target ("avx2,fma"))) static float
exp_sum_avx2 (float *x, int64_t n, float m)
{
  __m256 vm = _mm256_set1_ps (m), sum = _mm256_setzero_ps ();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = exp_avx2 (_mm256_sub_ps (_mm256_loadu_ps (x + i), vm));
    _mm256_storeu_ps (x + i, v);
    sum = _mm256_add_ps (sum, v);
  }
  float s = hsum_avx2 (sum);
  for (; i < n; i++) {
    x[i] = expf (x[i] - m);
    s += x[i];
  }
  return s;
}


/* Weight runs to f32, 8 at a time. bf16: shift into the high half. f16 and e5m2 (= f16 with the
 * low byte zero): F16C. e4m3: the 7 magnitude bits moved into an f32's exponent/mantissa;
 * 0x7f is NaN. All exact. */
__attribute__ ((target ("avx2,fma,f16c"))) static void
cvt_avx2 (float *restrict dst, const void *src, HvDType dt, int64_t off, int64_t n, float scale)
{
  int64_t i = 0;
  __m256 vs = _mm256_set1_ps (scale);
  switch (dt) {
    case HV_DTYPE_BF16: {
      const uint16_t *s = (const uint16_t *) src + off;
      for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) (s + i)));
        _mm256_storeu_ps (dst + i, _mm256_mul_ps (_mm256_castsi256_ps (_mm256_slli_epi32 (v, 16)), vs));
      }
      break;
    }
    case HV_DTYPE_F16: {
      const uint16_t *s = (const uint16_t *) src + off;
      for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps (dst + i, _mm256_mul_ps (_mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (s + i))), vs));
      break;
    }
    case HV_DTYPE_F8_E5M2: {
      const uint8_t *s = (const uint8_t *) src + off;
      for (; i + 8 <= n; i += 8) {
        __m128i b = _mm_loadl_epi64 ((const __m128i *) (s + i));
        __m128i h = _mm_slli_epi16 (_mm_cvtepu8_epi16 (b), 8);
        _mm256_storeu_ps (dst + i, _mm256_mul_ps (_mm256_cvtph_ps (h), vs));
      }
      break;
    }
    case HV_DTYPE_F8_E4M3: {
      const uint8_t *s = (const uint8_t *) src + off;
      const __m256 k9 = _mm256_set1_ps (0x1p-9f);
      for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu8_epi32 (_mm_loadl_epi64 ((const __m128i *) (s + i)));
        __m256i mag = _mm256_and_si256 (v, _mm256_set1_epi32 (0x7f));
        __m256i sign = _mm256_slli_epi32 (_mm256_and_si256 (v, _mm256_set1_epi32 (0x80)), 24);
        /* normal codes: exponent rebased by 120; subnormals (mag < 8): mag · 2^-9. No f32
         * subnormal is formed, so flush-to-zero modes cannot change the result. */
        __m256 fn = _mm256_castsi256_ps (_mm256_add_epi32 (_mm256_slli_epi32 (mag, 20), _mm256_set1_epi32 (120 << 23)));
        __m256 fs = _mm256_mul_ps (_mm256_cvtepi32_ps (mag), k9);
        __m256 f = _mm256_blendv_ps (fn, fs, _mm256_castsi256_ps (_mm256_cmpgt_epi32 (_mm256_set1_epi32 (8), mag)));
        __m256 nan = _mm256_castsi256_ps (_mm256_cmpeq_epi32 (mag, _mm256_set1_epi32 (0x7f)));
        f = _mm256_or_ps (f, nan);   /* all-ones bits: a NaN */
        f = _mm256_or_ps (f, _mm256_castsi256_ps (sign));
        _mm256_storeu_ps (dst + i, _mm256_mul_ps (f, vs));
      }
      break;
    }
    default:
      break;
  }
  if (i < n)
    cvt_run (dst + i, src, dt, off + i, n - i, scale);
}

static const Kernel kern_avx2 = { 6, 16, ukr_avx2, "avx2", dot_avx2, scale_max_avx2, exp_sum_avx2, cvt_avx2 };

/* AVX-512: 8 rows × 32 columns = 16 accumulators in zmm registers. */
__attribute__ ((target ("avx512f"))) static void
ukr_avx512 (int64_t kc, const float *a, int64_t lda, int mv, const float *bp, float *c,
            int64_t ldc, int nv)
{
  __m512 acc[8][2];
  const float *ar[8];
  UNROLL (8)
  for (int i = 0; i < 8; i++) {
    ar[i] = a + (i < mv ? i : mv - 1) * lda;
    acc[i][0] = _mm512_setzero_ps ();
    acc[i][1] = _mm512_setzero_ps ();
  }
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps (bp + k * 32);
    __m512 b1 = _mm512_loadu_ps (bp + k * 32 + 16);
    UNROLL (8)
    for (int i = 0; i < 8; i++) {
      __m512 av = _mm512_set1_ps (ar[i][k]);
      acc[i][0] = _mm512_fmadd_ps (av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps (av, b1, acc[i][1]);
    }
  }
  if (mv == 8 && nv == 32) {
    UNROLL (8)
    for (int i = 0; i < 8; i++) {
      float *ci = c + i * ldc;
      _mm512_storeu_ps (ci, _mm512_add_ps (_mm512_loadu_ps (ci), acc[i][0]));
      _mm512_storeu_ps (ci + 16, _mm512_add_ps (_mm512_loadu_ps (ci + 16), acc[i][1]));
    }
  } else {
    float tile[8 * 32];
    for (int i = 0; i < 8; i++) {
      _mm512_storeu_ps (tile + i * 32, acc[i][0]);
      _mm512_storeu_ps (tile + i * 32 + 16, acc[i][1]);
    }
    tile_add (c, ldc, tile, 32, mv, nv);
  }
}

__attribute__ ((target ("avx512f"))) static inline __m512
exp_avx512 (__m512 x)
{
  __mmask16 under = _mm512_cmp_ps_mask (x, _mm512_set1_ps (-87.3f), _CMP_LT_OQ);
  x = _mm512_max_ps (x, _mm512_set1_ps (-87.3f));
  __m512 n = _mm512_roundscale_ps (_mm512_mul_ps (x, _mm512_set1_ps (1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps (n, _mm512_set1_ps (0.693359375f), x);
  r = _mm512_fnmadd_ps (n, _mm512_set1_ps (-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps (1.9875691500e-4f);
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.3981999507e-3f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (8.3334519073e-3f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (4.1665795894e-2f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.6666665459e-1f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (5.0000001201e-1f));
  __m512 y = _mm512_fmadd_ps (p, _mm512_mul_ps (r, r), _mm512_add_ps (r, _mm512_set1_ps (1.0f)));
  return _mm512_maskz_mov_ps ((__mmask16) ~under, _mm512_scalef_ps (y, n));
}

__attribute__ ((target ("avx512f"))) static float
dot_avx512 (const float *a, const float *b, int64_t n)
{
  __m512 s0 = _mm512_setzero_ps (), s1 = _mm512_setzero_ps ();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps (_mm512_loadu_ps (a + i), _mm512_loadu_ps (b + i), s0);
    s1 = _mm512_fmadd_ps (_mm512_loadu_ps (a + i + 16), _mm512_loadu_ps (b + i + 16), s1);
  }
  if (i + 16 <= n) {
    s0 = _mm512_fmadd_ps (_mm512_loadu_ps (a + i), _mm512_loadu_ps (b + i), s0);
    i += 16;
  }
  if (i < n) {
    __mmask16 k = (__mmask16) ((1u << (n - i)) - 1);
    s1 = _mm512_fmadd_ps (_mm512_maskz_loadu_ps (k, a + i), _mm512_maskz_loadu_ps (k, b + i), s1);
  }
  return _mm512_reduce_add_ps (_mm512_add_ps (s0, s1));
}

__attribute__ ((target ("avx512f"))) static float
scale_max_avx512 (float *x, int64_t n, float sc)
{
  __m512 vs = _mm512_set1_ps (sc), mx = _mm512_set1_ps (-INFINITY);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = n - i >= 16 ? (__mmask16) 0xffff : (__mmask16) ((1u << (n - i)) - 1);
    __m512 v = _mm512_mul_ps (_mm512_maskz_loadu_ps (k, x + i), vs);
    _mm512_mask_storeu_ps (x + i, k, v);
    mx = _mm512_mask_max_ps (mx, k, mx, v);
  }
  return _mm512_reduce_max_ps (mx);
}

__attribute__ ((target ("avx512f"))) static float
exp_sum_avx512 (float *x, int64_t n, float m)
{
  __m512 vm = _mm512_set1_ps (m), sum = _mm512_setzero_ps ();
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = n - i >= 16 ? (__mmask16) 0xffff : (__mmask16) ((1u << (n - i)) - 1);
    __m512 v = exp_avx512 (_mm512_sub_ps (_mm512_maskz_loadu_ps (k, x + i), vm));
    _mm512_mask_storeu_ps (x + i, k, v);
    sum = _mm512_mask_add_ps (sum, k, sum, v);
  }
  return _mm512_reduce_add_ps (sum);
}


/* As cvt_avx2, 16 at a time. */
__attribute__ ((target ("avx512f,avx512bw"))) static void
cvt_avx512 (float *restrict dst, const void *src, HvDType dt, int64_t off, int64_t n, float scale)
{
  int64_t i = 0;
  __m512 vs = _mm512_set1_ps (scale);
  switch (dt) {
    case HV_DTYPE_BF16: {
      const uint16_t *s = (const uint16_t *) src + off;
      for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32 (_mm256_loadu_si256 ((const __m256i *) (s + i)));
        _mm512_storeu_ps (dst + i, _mm512_mul_ps (_mm512_castsi512_ps (_mm512_slli_epi32 (v, 16)), vs));
      }
      break;
    }
    case HV_DTYPE_F16: {
      const uint16_t *s = (const uint16_t *) src + off;
      for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps (dst + i, _mm512_mul_ps (_mm512_cvtph_ps (_mm256_loadu_si256 ((const __m256i *) (s + i))), vs));
      break;
    }
    case HV_DTYPE_F8_E5M2: {
      const uint8_t *s = (const uint8_t *) src + off;
      for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_slli_epi16 (_mm256_cvtepu8_epi16 (_mm_loadu_si128 ((const __m128i *) (s + i))), 8);
        _mm512_storeu_ps (dst + i, _mm512_mul_ps (_mm512_cvtph_ps (h), vs));
      }
      break;
    }
    case HV_DTYPE_F8_E4M3: {
      const uint8_t *s = (const uint8_t *) src + off;
      const __m512 k9 = _mm512_set1_ps (0x1p-9f);
      for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu8_epi32 (_mm_loadu_si128 ((const __m128i *) (s + i)));
        __m512i mag = _mm512_and_si512 (v, _mm512_set1_epi32 (0x7f));
        __m512i sign = _mm512_slli_epi32 (_mm512_and_si512 (v, _mm512_set1_epi32 (0x80)), 24);
        __m512 f = _mm512_castsi512_ps (_mm512_add_epi32 (_mm512_slli_epi32 (mag, 20), _mm512_set1_epi32 (120 << 23)));
        __mmask16 sub = _mm512_cmplt_epi32_mask (mag, _mm512_set1_epi32 (8));
        f = _mm512_mask_mov_ps (f, sub, _mm512_mul_ps (_mm512_cvtepi32_ps (mag), k9));
        __mmask16 nan = _mm512_cmpeq_epi32_mask (mag, _mm512_set1_epi32 (0x7f));
        f = _mm512_mask_mov_ps (f, nan, _mm512_set1_ps (NAN));
        f = _mm512_castsi512_ps (_mm512_or_si512 (_mm512_castps_si512 (f), sign));
        _mm512_storeu_ps (dst + i, _mm512_mul_ps (f, vs));
      }
      break;
    }
    default:
      break;
  }
  if (i < n)
    cvt_run (dst + i, src, dt, off + i, n - i, scale);
}

static const Kernel kern_avx512 = { 8, 32, ukr_avx512, "avx512", dot_avx512, scale_max_avx512, exp_sum_avx512, cvt_avx512 };
#endif

static const Kernel *
pick_kernel (void)
{
  const char *force = g_getenv ("HV_CPU_GEMM");
#if HV_X86
  __builtin_cpu_init ();
  gboolean has512 = __builtin_cpu_supports ("avx512f");
  gboolean has2 = __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma");
  if (force && strcmp (force, "generic") == 0)
    return &kern_generic;
  if (force && strcmp (force, "avx2") == 0 && has2)
    return &kern_avx2;
  if (force && strcmp (force, "avx512") == 0 && has512)
    return &kern_avx512;
  if (has512)
    return &kern_avx512;
  if (has2)
    return &kern_avx2;
#endif
  (void) force;
  return &kern_generic;
}

/* Per-thread scratch of the GEMM: one packed panel and one converted row. */
typedef struct {
  float *bp;
  float *tmp;
} GemmScratch;

/* Per-thread scratch comes from the block cache, so repeated ops reuse the same pages instead
 * of having malloc hand memory back to the kernel and fault it in again on every call. */
static void *
scratch_get (HvBackend *b, gsize n)
{
  void *p = cpu_alloc (b, MAX (n, 1));
  if (!p)
    g_error ("out of memory allocating %" G_GSIZE_FORMAT " bytes of scratch", n);
  return p;
}

static void
scratch_put (HvBackend *b, void *p)
{
  if (p)
    cpu_release (b, p);
}

static void
scratch_init (HvBackend *b, GemmScratch *s, const Kernel *kr)
{
  s->bp = scratch_get (b, sizeof (float) * KC * kr->nr);
  s->tmp = scratch_get (b, sizeof (float) * KC);
}

static void
scratch_clear (HvBackend *b, GemmScratch *s)
{
  scratch_put (b, s->bp);
  scratch_put (b, s->tmp);
}

/* C[M, N] += A[M, K] · B(bn0 + n, bk0 + k)ᵀ on the calling thread. */
static void
gemm_serial (const Kernel *kr, GemmScratch *s, int64_t M, int64_t N, int64_t K,
             const float *A, int64_t lda, const Bmat *B, int64_t bn0, int64_t bk0,
             float *C, int64_t ldc)
{
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    int64_t kc = MIN (KC, K - k0);
    for (int64_t n0 = 0; n0 < N; n0 += kr->nr) {
      int nv = (int) MIN (kr->nr, N - n0);
      pack_b (kr, s->bp, B, bn0 + n0, nv, kr->nr, bk0 + k0, kc, s->tmp);
      for (int64_t m0 = 0; m0 < M; m0 += kr->mr)
        kr->run (kc, A + m0 * lda + k0, lda, (int) MIN (kr->mr, M - m0), s->bp,
                 C + m0 * ldc + n0, ldc, nv);
    }
  }
}

/* ---- linear ------------------------------------------------------------------------------- */

#define LIN_MC 256   /* rows of x per task (at least), see cpu_linear */
#define LIN_NC 128   /* output columns per task */

static void
cpu_linear (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias)
{
  const Kernel *kr = priv (b)->kern;
  int64_t N = w->shape[0];
  int64_t K = N ? hv_tensor_numel (w) / N : 0;
  int64_t M = K ? hv_tensor_numel (x) / K : hv_tensor_numel (y) / MAX (N, 1);
  const float *X = x->data;
  float *Y = y->data;
  g_autofree float *bv = vec_f32 (bias);
  Bmat B = { w->data, w->dtype, w->scale, K, FALSE };
  int nt = nthreads (b);
  if (M < kr->mr) {
    /* few rows (modulation vectors, single tokens): dot products straight from each
     * converted weight row; the packed kernel would waste most of its register tile */
    int64_t nchunk = (N + 63) / 64;
    OMP (omp parallel num_threads (nt) if (nchunk > 1 && 2.0 * M * N * K > PAR_MIN_FLOPS))
    {
      float *tmp = scratch_get (b, sizeof (float) * MAX (K, 1));
      OMP (omp for schedule (static))
      for (int64_t c = 0; c < nchunk; c++)
        for (int64_t n = c * 64; n < MIN (N, c * 64 + 64); n++) {
          const float *wr;
          if (w->dtype == HV_DTYPE_F32 && w->scale == 1.0f) {
            wr = (const float *) w->data + n * K;
          } else {
            kr->cvt (tmp, w->data, w->dtype, n * K, K, w->scale);
            wr = tmp;
          }
          for (int64_t m = 0; m < M; m++)
            Y[m * N + n] = kr->dot (X + m * K, wr, K) + (bv ? bv[n] : 0.0f);
        }
      scratch_put (b, tmp);
    }
    return;
  }
  /* Each task packs its weight panels once and reuses them for all its rows, so rows are split
   * only as far as needed to give every thread several tasks. */
  int64_t tn = (N + LIN_NC - 1) / LIN_NC;
  int64_t mc_task = LIN_MC;
  while (mc_task < M && tn * ((M + mc_task * 2 - 1) / (mc_task * 2)) >= 4 * nt)
    mc_task *= 2;
  int64_t tm = (M + mc_task - 1) / mc_task;
  int64_t ntasks = tm * tn;

  OMP (omp parallel num_threads (nt) if (ntasks > 1 && 2.0 * M * N * K > PAR_MIN_FLOPS))
  {
    GemmScratch s;
    scratch_init (b, &s, kr);
    OMP (omp for schedule (dynamic, 1))
    for (int64_t t = 0; t < ntasks; t++) {
      int64_t m0 = (t / tn) * mc_task, n0 = (t % tn) * LIN_NC;
      int64_t mc = MIN (mc_task, M - m0), nc = MIN (LIN_NC, N - n0);
      for (int64_t i = 0; i < mc; i++) {
        float *yr = Y + (m0 + i) * N + n0;
        if (bv)
          memcpy (yr, bv + n0, sizeof (float) * nc);
        else
          memset (yr, 0, sizeof (float) * nc);
      }
      gemm_serial (kr, &s, mc, nc, K, X + m0 * K, K, &B, n0, 0, Y + m0 * N + n0, N);
    }
    scratch_clear (b, &s);
  }
}

/* ---- row ops -------------------------------------------------------------------------------- */

/* The per-row loops below are vectorized with `omp simd` (fp32 reductions may be split into
 * lanes) and, with GCC on x86-64 Linux, compiled for AVX-512, AVX2 and the baseline, the best
 * picked at load time (target_clones). Without OpenMP they are plain loops. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && defined(_OPENMP)
#define HV_CLONES __attribute__ ((target_clones ("avx512f", "avx2", "default")))
#else
#define HV_CLONES
#endif

/* exp(x) for the activations and softmax: Cephes polynomial, ~2 ulp; 0 below -87.3 (where the
 * true value is subnormal), exp(88) above 88. Branch-free so that it vectorizes. */
static inline float
vexpf (float x)
{
  float xc = x > 88.0f ? 88.0f : x;
  xc = xc < -87.3f ? -87.3f : xc;
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to nearest */
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t) n + 127) << 23;
  float two_n;
  memcpy (&two_n, &bits, 4);
  return x < -87.3f ? 0.0f : e * two_n;
}

HV_CLONES static float
row_sum (const float *x, int64_t n)
{
  float s = 0.0f;
  OMP (omp simd reduction (+:s))
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

HV_CLONES static float
row_sqdev (const float *x, int64_t n, float m)
{
  float s = 0.0f;
  OMP (omp simd reduction (+:s))
  for (int64_t i = 0; i < n; i++) {
    float d = x[i] - m;
    s += d * d;
  }
  return s;
}

/* Σx and Σ(x-m)² in fp32 lanes over blocks of 256, the blocks added in double: accurate to
 * ~1e-7 relative even for rows of 10⁵ elements with a large mean. */
static double
sum_blocked (const float *x, int64_t n)
{
  double s = 0;
  for (int64_t i = 0; i < n; i += 256) s += row_sum (x + i, MIN (256, n - i));
  return s;
}

static double
sqdev_blocked (const float *x, int64_t n, float m)
{
  double s = 0;
  for (int64_t i = 0; i < n; i += 256) s += row_sqdev (x + i, MIN (256, n - i), m);
  return s;
}

/* y = (x - m) · r · w + b; w, b may be NULL. */
HV_CLONES static void
row_norm (float *y, const float *x, int64_t n, float m, float r, const float *w, const float *b)
{
  if (w && b) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) * r * w[i] + b[i];
  } else if (w) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) * r * w[i];
  } else if (b) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) * r + b[i];
  } else {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) * r;
  }
}

static void
cpu_layernorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, float eps)
{
  int64_t C = x->shape[x->ndim - 1], R = C ? hv_tensor_numel (x) / C : 0;
  g_autofree float *wv = vec_f32 (w);
  g_autofree float *bv = vec_f32 (bias);
  const float *X = x->data;
  float *Y = y->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (R * C > PAR_MIN))
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    float mean = (float) (sum_blocked (xr, C) / C);
    float rstd = (float) (1.0 / sqrt (sqdev_blocked (xr, C, mean) / C + eps));
    row_norm (Y + r * C, xr, C, mean, rstd, wv, bv);
  }
}

static void
cpu_rmsnorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, float eps)
{
  int64_t C = x->shape[x->ndim - 1], R = C ? hv_tensor_numel (x) / C : 0;
  g_autofree float *wv = vec_f32 (w);
  const float *X = x->data;
  float *Y = y->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (R * C > PAR_MIN))
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    float rs = (float) (1.0 / sqrt (sqdev_blocked (xr, C, 0.0f) / C + eps));
    row_norm (Y + r * C, xr, C, 0.0f, rs, wv, NULL);
  }
}

HV_CLONES static float
row_max (const float *x, int64_t n)
{
  float m = -INFINITY;
  OMP (omp simd reduction (max:m))
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

/* y = exp(x - m); returns Σy */
HV_CLONES static float
row_exp (float *y, const float *x, int64_t n, float m)
{
  float s = 0.0f;
  OMP (omp simd reduction (+:s))
  for (int64_t i = 0; i < n; i++) {
    y[i] = vexpf (x[i] - m);
    s += y[i];
  }
  return s;
}

HV_CLONES static void
row_scale (float *y, const float *x, int64_t n, float alpha, float beta)
{
  OMP (omp simd)
  for (int64_t i = 0; i < n; i++) y[i] = alpha * x[i] + beta;
}

static void
cpu_softmax (HvBackend *b, HvTensor *y, const HvTensor *x)
{
  int64_t C = x->shape[x->ndim - 1], R = C ? hv_tensor_numel (x) / C : 0;
  const float *X = x->data;
  float *Y = y->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (R * C > PAR_MIN))
  for (int64_t r = 0; r < R; r++) {
    const float *xr = X + r * C;
    float *yr = Y + r * C;
    float mx = row_max (xr, C);
    double s = 0;
    for (int64_t i = 0; i < C; i += 256) s += row_exp (yr + i, xr + i, MIN (256, C - i), mx);
    row_scale (yr, yr, C, (float) (1.0 / s), 0.0f);
  }
}

/* y = x · sigmoid(a·x + c·x³) (times x only when mul_x). silu: a = 1; quick_gelu: a = 1.702;
 * gelu_tanh: 0.5(1 + tanh u) = sigmoid(2u), u = √(2/π)(x + 0.044715x³). */
HV_CLONES static void
row_sigmoid_act (float *y, const float *x, int64_t n, float a, float c, gboolean mul_x)
{
  if (mul_x) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) {
      float v = x[i];
      y[i] = v / (1.0f + vexpf (-(a * v + c * v * v * v)));
    }
  } else {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) {
      float v = x[i];
      y[i] = 1.0f / (1.0f + vexpf (-(a * v + c * v * v * v)));
    }
  }
}

#define ELT_CHUNK 4096   /* elements per call of a row helper in flat elementwise ops */

static void
cpu_unary (HvBackend *b, HvTensor *y, const HvTensor *x, HvUnary op)
{
  int64_t n = hv_tensor_numel (x), nch = (n + ELT_CHUNK - 1) / ELT_CHUNK;
  const float *X = x->data;
  float *Y = y->data;
  const float k2 = 2.0f * 0.7978845608028654f;   /* 2·√(2/π) */
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (n > PAR_MIN))
  for (int64_t c = 0; c < nch; c++) {
    int64_t i0 = c * ELT_CHUNK, len = MIN (ELT_CHUNK, n - i0);
    switch (op) {
      case HV_UNARY_SILU: row_sigmoid_act (Y + i0, X + i0, len, 1.0f, 0.0f, TRUE); break;
      case HV_UNARY_GELU_TANH: row_sigmoid_act (Y + i0, X + i0, len, k2, k2 * 0.044715f, TRUE); break;
      case HV_UNARY_QUICK_GELU: row_sigmoid_act (Y + i0, X + i0, len, 1.702f, 0.0f, TRUE); break;
      case HV_UNARY_SIGMOID: row_sigmoid_act (Y + i0, X + i0, len, 1.0f, 0.0f, FALSE); break;
      case HV_UNARY_GELU:
        for (int64_t i = i0; i < i0 + len; i++) Y[i] = 0.5f * X[i] * (1.0f + erff (X[i] * 0.70710678118654752f));
        break;
    }
  }
}

/* ---- attention ---------------------------------------------------------------------------- */

#define ATT_QB 256   /* queries per task: K and V blocks are packed once per task */
#define ATT_KB 128   /* keys per step of the online softmax */

static void
cpu_attention (HvBackend *b, HvTensor *out, const HvTensor *q, const HvTensor *k, const HvTensor *v,
               const HvAttnMask *mask, float scale)
{
  const Kernel *kr = priv (b)->kern;
  int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], D = q->shape[3];
  int64_t Lk = k->shape[1], Hkv = k->shape[2], G = H / Hkv;
  const int32_t *segq = mask && mask->seg_q ? mask->seg_q->data : NULL;
  const int32_t *segk = mask && mask->seg_k ? mask->seg_k->data : NULL;
  const uint8_t *allow = mask && mask->allow ? mask->allow->data : NULL;
  gboolean allow_b = allow && hv_tensor_numel (mask->allow) == B * Lq * Lk && B > 1;
  gboolean causal = mask && mask->causal;
  const float *Q = q->data, *Kd = k->data, *V = v->data;
  float *O = out->data;
  int64_t nqb = (Lq + ATT_QB - 1) / ATT_QB;
  int64_t ntasks = B * H * nqb;

  OMP (omp parallel num_threads (nthreads (b)) if (ntasks > 1 && 4.0 * B * H * Lq * Lk * D > PAR_MIN_FLOPS))
  {
    GemmScratch s;
    scratch_init (b, &s, kr);
    float *S = scratch_get (b, sizeof (float) * ATT_QB * ATT_KB);
    float *acc = scratch_get (b, sizeof (float) * ATT_QB * MAX (D, 1));
    float *mrow = scratch_get (b, sizeof (float) * ATT_QB);
    float *lrow = scratch_get (b, sizeof (float) * ATT_QB);
    OMP (omp for schedule (dynamic, 1))
    for (int64_t t = 0; t < ntasks; t++) {
      int64_t bi = t / (H * nqb), h = (t / nqb) % H, q0 = (t % nqb) * ATT_QB;
      int64_t qn = MIN (ATT_QB, Lq - q0), hk = h / G;
      const float *qa = Q + ((bi * Lq + q0) * H + h) * D;
      Bmat kb = { Kd + (bi * Lk * Hkv + hk) * D, HV_DTYPE_F32, 1.0f, Hkv * D, FALSE };
      Bmat vb = { V + (bi * Lk * Hkv + hk) * D, HV_DTYPE_F32, 1.0f, Hkv * D, TRUE };
      const uint8_t *al = allow ? allow + (allow_b ? bi * Lq * Lk : 0) : NULL;
      memset (acc, 0, sizeof (float) * qn * D);
      for (int64_t i = 0; i < qn; i++) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
      }
      for (int64_t k0 = 0; k0 < Lk; k0 += ATT_KB) {
        if (causal && k0 > q0 + qn - 1)
          break;
        int64_t kn = MIN (ATT_KB, Lk - k0);
        memset (S, 0, sizeof (float) * qn * kn);
        gemm_serial (kr, &s, qn, kn, D, qa, H * D, &kb, k0, 0, S, kn);
        for (int64_t i = 0; i < qn; i++) {
          int64_t qi = q0 + i;
          float *row = S + i * kn;
          float mx;
          if (segq || al) {   /* general mask: test each key */
            mx = -INFINITY;
            for (int64_t j = 0; j < kn; j++) {
              int64_t kj = k0 + j;
              gboolean ok = !(causal && kj > qi);
              if (segq && segq[bi * Lq + qi] != segk[bi * Lk + kj]) ok = FALSE;
              if (al && !al[qi * Lk + kj]) ok = FALSE;
              row[j] = ok ? row[j] * scale : -INFINITY;
              mx = MAX (mx, row[j]);
            }
          } else {            /* full or causal: a prefix of the block is allowed */
            int64_t lim = causal ? CLAMP (qi - k0 + 1, 0, kn) : kn;
            mx = kr->scale_max (row, lim, scale);
            for (int64_t j = lim; j < kn; j++) row[j] = -INFINITY;
          }
          if (mx == -INFINITY) {        /* nothing allowed in this block */
            memset (row, 0, sizeof (float) * kn);
            continue;
          }
          float mnew = MAX (mrow[i], mx);
          float corr = expf (mrow[i] - mnew);   /* 0 when mrow was -inf */
          float sum = kr->exp_sum (row, kn, mnew);
          lrow[i] = lrow[i] * corr + sum;
          mrow[i] = mnew;
          if (corr != 1.0f) {
            float *ar = acc + i * D;
            for (int64_t d = 0; d < D; d++) ar[d] *= corr;
          }
        }
        gemm_serial (kr, &s, qn, D, kn, S, kn, &vb, 0, k0, acc, D);
      }
      for (int64_t i = 0; i < qn; i++) {
        float *orow = O + ((bi * Lq + q0 + i) * H + h) * D;
        float inv = lrow[i] > 0.0f ? 1.0f / lrow[i] : 0.0f;
        for (int64_t d = 0; d < D; d++) orow[d] = acc[i * D + d] * inv;
      }
    }
    scratch_put (b, S);
    scratch_put (b, acc);
    scratch_put (b, mrow);
    scratch_put (b, lrow);
    scratch_clear (b, &s);
  }
}

/* ---- elementwise ---------------------------------------------------------------------------- */

static void
cpu_rope (HvBackend *b, HvTensor *x, const HvTensor *cos, const HvTensor *sin, HvRopeMode mode)
{
  int64_t B = x->shape[0], L = x->shape[1], H = x->shape[2], D = x->shape[3];
  int64_t n = hv_tensor_numel (cos) / D, half = D / 2;
  const float *cs = cos->data, *sn = sin->data;
  float *X = x->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (B * n * H * D > PAR_MIN))
  for (int64_t r = 0; r < B * n; r++) {
    int64_t bi = r / n, l = r % n;
    const float *c = cs + l * D, *s = sn + l * D;
    for (int64_t h = 0; h < H; h++) {
      float *v = X + ((bi * L + l) * H + h) * D;
      if (mode == HV_ROPE_INTERLEAVED) {
        for (int64_t j = 0; j < D; j += 2) {
          float a = v[j], e = v[j + 1];
          v[j] = a * c[j] - e * s[j];
          v[j + 1] = e * c[j + 1] + a * s[j + 1];
        }
      } else {
        for (int64_t j = 0; j < half; j++) {
          float a = v[j], e = v[j + half];
          v[j] = a * c[j] - e * s[j];
          v[j + half] = e * c[j + half] + a * s[j + half];
        }
      }
    }
  }
}

/* Row r of x [.., C] uses row (r / rows_per) of a [Bm, C] modulation vector. */
static int64_t
mod_rows_per (const HvTensor *x, const HvTensor *m)
{
  int64_t C = x->shape[x->ndim - 1], R = hv_tensor_numel (x) / MAX (C, 1);
  int64_t Bm = hv_tensor_numel (m) / MAX (C, 1);
  return MAX (R / MAX (Bm, 1), 1);
}

HV_CLONES static void
row_modulate (float *y, const float *x, int64_t n, const float *sc, const float *sh)
{
  if (sc && sh) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * (1.0f + sc[i]) + sh[i];
  } else if (sc) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * (1.0f + sc[i]);
  } else if (sh) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] + sh[i];
  } else if (y != x) {
    memcpy (y, x, sizeof (float) * n);
  }
}

static void
cpu_modulate (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift, const HvTensor *scale)
{
  int64_t C = x->shape[x->ndim - 1], R = C ? hv_tensor_numel (x) / C : 0;
  const float *X = x->data, *sh = shift ? shift->data : NULL, *sc = scale ? scale->data : NULL;
  int64_t rsh = shift ? mod_rows_per (x, shift) : 1, rsc = scale ? mod_rows_per (x, scale) : 1;
  float *Y = y->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (R * C > PAR_MIN))
  for (int64_t r = 0; r < R; r++)
    row_modulate (Y + r * C, X + r * C, C, sc ? sc + (r / rsc) * C : NULL, sh ? sh + (r / rsh) * C : NULL);
}

/* x += g · y (g NULL: x += y) */
HV_CLONES static void
row_gate_add (float *x, const float *y, const float *g, int64_t n)
{
  if (g) {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) x[i] += g[i] * y[i];
  } else {
    OMP (omp simd)
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
  }
}

static void
cpu_gate_add (HvBackend *b, HvTensor *x, const HvTensor *y, const HvTensor *gate)
{
  int64_t C = x->shape[x->ndim - 1], R = C ? hv_tensor_numel (x) / C : 0;
  const float *Yd = y->data, *g = gate ? gate->data : NULL;
  int64_t rg = gate ? mod_rows_per (x, gate) : 1;
  float *X = x->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (R * C > PAR_MIN))
  for (int64_t r = 0; r < R; r++)
    row_gate_add (X + r * C, Yd + r * C, g ? g + (r / rg) * C : NULL, C);
}

HV_CLONES static void
row_binary (float *y, const float *a, const float *c, int64_t n, int op)
{
  switch (op) {
    case HV_BINARY_ADD:
      OMP (omp simd)
      for (int64_t i = 0; i < n; i++) y[i] = a[i] + c[i];
      break;
    case HV_BINARY_SUB:
      OMP (omp simd)
      for (int64_t i = 0; i < n; i++) y[i] = a[i] - c[i];
      break;
    case HV_BINARY_MUL:
      OMP (omp simd)
      for (int64_t i = 0; i < n; i++) y[i] = a[i] * c[i];
      break;
    default:
      break;
  }
}

static void
cpu_binary (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int op)
{
  int64_t na = hv_tensor_numel (a), nc = hv_tensor_numel (c);
  const float *A = a->data, *Cd = c->data;
  float *Y = y->data;
  if (nc == 0)
    return;
  if (nc == na) {   /* same shape: split into chunks */
    int64_t nch = (na + ELT_CHUNK - 1) / ELT_CHUNK;
    OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (na > PAR_MIN))
    for (int64_t ch = 0; ch < nch; ch++) {
      int64_t i0 = ch * ELT_CHUNK;
      row_binary (Y + i0, A + i0, Cd + i0, MIN (ELT_CHUNK, na - i0), op);
    }
    return;
  }
  int64_t R = na / nc;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (na > PAR_MIN))
  for (int64_t r = 0; r < R; r++)
    row_binary (Y + r * nc, A + r * nc, Cd, nc, op);
}

static void
cpu_scale (HvBackend *b, HvTensor *y, const HvTensor *x, float alpha, float beta)
{
  int64_t n = hv_tensor_numel (x), nch = (n + ELT_CHUNK - 1) / ELT_CHUNK;
  const float *X = x->data;
  float *Y = y->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (n > PAR_MIN))
  for (int64_t c = 0; c < nch; c++) {
    int64_t i0 = c * ELT_CHUNK;
    row_scale (Y + i0, X + i0, MIN (ELT_CHUNK, n - i0), alpha, beta);
  }
}

/* ---- data movement -------------------------------------------------------------------------- */

/* y (contiguous f32/f16/bf16) = x (any dtype, any strides) × x->scale. */
static void
cpu_copy (HvBackend *b, HvTensor *y, const HvTensor *x)
{
  int64_t n = hv_tensor_numel (x);
  if (n == 0)
    return;
  int nd = MAX (x->ndim, 1);
  int64_t shape[HV_MAX_DIMS], stride[HV_MAX_DIMS];
  for (int i = 0; i < HV_MAX_DIMS; i++) {
    shape[i] = i < x->ndim ? x->shape[i] : 1;
    stride[i] = i < x->ndim ? x->stride[i] : 1;
  }
  int64_t inner = shape[nd - 1], R = n / inner;
  gboolean contig = hv_tensor_is_contiguous (x);
  if (contig) {
    inner = n;
    R = 1;
    if (n > PAR_MIN) {   /* split a contiguous copy into parallel runs */
      R = nthreads (b) * 4;
      inner = (n + R - 1) / R;
    }
  }
  OMP (omp parallel num_threads (nthreads (b)) if (n > PAR_MIN))
  {
    float *tmp = y->dtype == HV_DTYPE_F32 ? NULL : scratch_get (b, sizeof (float) * MAX (inner, 1));
    OMP (omp for schedule (static))
    for (int64_t r = 0; r < R; r++) {
      int64_t len = contig ? MIN (inner, n - r * inner) : inner;
      if (len <= 0)
        continue;
      int64_t dst_off = r * inner, src_off;
      if (contig) {
        src_off = dst_off;
      } else {   /* row r of x viewed as [R, inner] */
        int64_t rem = r;
        src_off = 0;
        for (int i = nd - 2; i >= 0; i--) {
          src_off += (rem % shape[i]) * stride[i];
          rem /= shape[i];
        }
      }
      float *dst = y->dtype == HV_DTYPE_F32 ? (float *) y->data + dst_off : tmp;
      if (contig || stride[nd - 1] == 1) {
        cvt_run (dst, x->data, x->dtype, src_off, len, x->scale);
      } else {
        for (int64_t i = 0; i < len; i++)
          cvt_run (dst + i, x->data, x->dtype, src_off + i * stride[nd - 1], 1, x->scale);
      }
      if (y->dtype == HV_DTYPE_BF16) {
        uint16_t *o = (uint16_t *) y->data + dst_off;
        for (int64_t i = 0; i < len; i++) o[i] = hv_f32_to_bf16 (tmp[i]);
      } else if (y->dtype == HV_DTYPE_F16) {
        uint16_t *o = (uint16_t *) y->data + dst_off;
        for (int64_t i = 0; i < len; i++) o[i] = hv_f32_to_f16 (tmp[i]);
      }
    }
    scratch_put (b, tmp);
  }
}

/* outer × (len × inner bytes) runs along `dim`. */
static void
dim_split (const HvTensor *t, int dim, int64_t *outer, int64_t *inner_bytes)
{
  int64_t o = 1, in = (int64_t) hv_dtype_size (t->dtype);
  for (int i = 0; i < dim; i++) o *= t->shape[i];
  for (int i = dim + 1; i < t->ndim; i++) in *= t->shape[i];
  *outer = o;
  *inner_bytes = in;
}

static void
cpu_slice (HvBackend *b, HvTensor *y, const HvTensor *x, int dim, int64_t start)
{
  int64_t outer, inner;
  dim_split (x, dim, &outer, &inner);
  int64_t xrun = x->shape[dim] * inner, yrun = y->shape[dim] * inner;
  const char *X = x->data;
  char *Y = y->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (outer * yrun > PAR_MIN * 4))
  for (int64_t o = 0; o < outer; o++)
    memcpy (Y + o * yrun, X + o * xrun + start * inner, (size_t) yrun);
}

static void
cpu_concat (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int dim)
{
  int64_t outer, inner;
  dim_split (y, dim, &outer, &inner);
  int64_t arun = a->shape[dim] * inner, crun = c->shape[dim] * inner, yrun = arun + crun;
  const char *A = a->data, *Cd = c->data;
  char *Y = y->data;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (outer * yrun > PAR_MIN * 4))
  for (int64_t o = 0; o < outer; o++) {
    memcpy (Y + o * yrun, A + o * arun, (size_t) arun);
    memcpy (Y + o * yrun + arun, Cd + o * crun, (size_t) crun);
  }
}

#define PERMUTE_LOOP(T)                                                                     \
  OMP (omp parallel for num_threads (nthreads (b)) collapse (2) schedule (static) if (n > PAR_MIN)) \
  for (int64_t i0 = 0; i0 < s[0]; i0++)                                                     \
    for (int64_t i1 = 0; i1 < s[1]; i1++) {                                                 \
      T *yo = (T *) y->data + (i0 * s[1] + i1) * s[2] * s[3] * s[4];                        \
      const T *xo = (const T *) x->data + i0 * st[0] + i1 * st[1];                          \
      for (int64_t i2 = 0; i2 < s[2]; i2++)                                                 \
        for (int64_t i3 = 0; i3 < s[3]; i3++) {                                             \
          const T *xi = xo + i2 * st[2] + i3 * st[3];                                       \
          for (int64_t i4 = 0; i4 < s[4]; i4++)                                             \
            *yo++ = xi[i4 * st[4]];                                                         \
        }                                                                                   \
    }

static void
cpu_permute (HvBackend *b, HvTensor *y, const HvTensor *x, const int *perm)
{
  int64_t xs[HV_MAX_DIMS], s[HV_MAX_DIMS], st[HV_MAX_DIMS];
  int nd = x->ndim, pad = HV_MAX_DIMS - nd;
  int64_t n = hv_tensor_numel (x);
  xs[nd > 0 ? nd - 1 : 0] = 1;
  for (int i = nd - 2; i >= 0; i--) xs[i] = xs[i + 1] * x->shape[i + 1];
  /* y's dims right-aligned in 5 loops; missing leading dims have size 1 */
  for (int i = 0; i < HV_MAX_DIMS; i++) {
    s[i] = i < pad ? 1 : y->shape[i - pad];
    st[i] = i < pad ? 0 : xs[perm[i - pad]];
  }
  if (n == 0)
    return;
  switch (hv_dtype_size (x->dtype)) {
    case 1: { PERMUTE_LOOP (uint8_t) break; }
    case 2: { PERMUTE_LOOP (uint16_t) break; }
    case 4: { PERMUTE_LOOP (uint32_t) break; }
    case 8: { PERMUTE_LOOP (uint64_t) break; }
    default: g_return_if_reached ();
  }
}

static void
cpu_get_rows (HvBackend *b, HvTensor *y, const HvTensor *table, const HvTensor *ids)
{
  int64_t V = table->shape[0], C = table->shape[1], n = hv_tensor_numel (ids);
  float *Y = y->data;
  for (int64_t r = 0; r < n; r++) {
    int64_t id = ids->dtype == HV_DTYPE_I32 ? ((const int32_t *) ids->data)[r]
                                           : ((const int64_t *) ids->data)[r];
    if (id < 0 || id >= V) {
      memset (Y + r * C, 0, sizeof (float) * C);
      record_error (b, HV_ERROR_INVALID, "Token id %" G_GINT64_FORMAT " at position %" G_GINT64_FORMAT
                    " is outside the embedding table (%" G_GINT64_FORMAT " rows)", id, r, V);
      continue;
    }
    cvt_run (Y + r * C, table->data, table->dtype, id * C, C, table->scale);
  }
}

/* ---- 3-D ops on [B, C, T, H, W] ---------------------------------------------------------------- */

/* conv3d as y[co, p] = bias[co] + Σ_k W[co, k] · col[k, p] (k = ci, dt, dh, dw; p = output
 * position). The im2col matrix is never built: each packed panel of col (KC taps × nr
 * consecutive positions) is gathered straight from x, which for positions on one output row is a
 * shifted copy of an input row. The weights are the GEMM's A (converted KC columns at a time),
 * so the results land in y's [Co, P] layout directly. */
#define CONV_MC 256   /* output positions per task */

typedef struct {
  int64_t off;      /* ci · T·H·W */
  int dt, dh, dw;
} ConvTap;

static void
pack_im2col (float *restrict bp, int nr, const float *xb, int64_t T, int64_t H, int64_t W,
             const ConvTap *taps, int64_t kc, const int64_t *pt, int nv, int sw, gboolean one_row)
{
  for (int64_t kk = 0; kk < kc; kk++) {
    float *dst = bp + kk * nr;
    const ConvTap *tp = &taps[kk];
    if (one_row) {
      int64_t ti = pt[0] + tp->dt, hi = pt[1] + tp->dh, w0 = pt[2] + tp->dw;
      int j = 0;
      if (ti >= 0 && ti < T && hi >= 0 && hi < H) {
        const float *xr = xb + tp->off + (ti * H + hi) * W;
        if (sw == 1) {
          for (; j < nv && w0 + j < 0; j++) dst[j] = 0.0f;
          int64_t jend = MIN ((int64_t) nv, W - w0);
          for (; j < jend; j++) dst[j] = xr[w0 + j];
        } else {
          for (; j < nv; j++) {
            int64_t wi = w0 + (int64_t) j * sw;
            dst[j] = wi >= 0 && wi < W ? xr[wi] : 0.0f;
          }
        }
      }
      for (; j < nr; j++) dst[j] = 0.0f;
    } else {
      for (int j = 0; j < nv; j++) {
        int64_t ti = pt[3 * j] + tp->dt, hi = pt[3 * j + 1] + tp->dh, wi = pt[3 * j + 2] + tp->dw;
        dst[j] = ti >= 0 && ti < T && hi >= 0 && hi < H && wi >= 0 && wi < W
                 ? xb[tp->off + (ti * H + hi) * W + wi] : 0.0f;
      }
      for (int j = nv; j < nr; j++) dst[j] = 0.0f;
    }
  }
}

static void
cpu_conv3d (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias,
            const int *stride, const int *pad)
{
  const Kernel *kr = priv (b)->kern;
  int64_t Bn = x->shape[0], Ci = x->shape[1], T = x->shape[2], H = x->shape[3], W = x->shape[4];
  int64_t Co = w->shape[0], kt = w->shape[2], kh = w->shape[3], kw = w->shape[4];
  int64_t To = y->shape[2], Ho = y->shape[3], Wo = y->shape[4];
  int64_t P = To * Ho * Wo, Kd = Ci * kt * kh * kw, taps = kt * kh * kw;
  int64_t npt = (P + CONV_MC - 1) / CONV_MC, ntasks = Bn * npt;
  const float *X = x->data;
  float *Y = y->data;
  g_autofree float *bv = vec_f32 (bias);
  gboolean w_direct = w->dtype == HV_DTYPE_F32 && w->scale == 1.0f;
  int nr = kr->nr;
  if (P == 0 || Co == 0)
    return;

  /* the taps of every k, shared by all threads */
  ConvTap *tap = g_new (ConvTap, MAX (Kd, 1));
  for (int64_t k = 0; k < Kd; k++) {
    int64_t ci = k / taps, r = k % taps;
    tap[k].off = ci * T * H * W;
    tap[k].dt = (int) (r / (kh * kw));
    tap[k].dh = (int) ((r / kw) % kh);
    tap[k].dw = (int) (r % kw);
  }

  OMP (omp parallel num_threads (nthreads (b)) if (ntasks > 1 && 2.0 * Bn * P * Co * Kd > PAR_MIN_FLOPS))
  {
    float *bp = scratch_get (b, sizeof (float) * KC * nr);
    float *Af = w_direct ? NULL : scratch_get (b, sizeof (float) * Co * KC);
    int64_t *pt = scratch_get (b, sizeof (int64_t) * 3 * nr);
    OMP (omp for schedule (dynamic, 1))
    for (int64_t t = 0; t < ntasks; t++) {
      int64_t bi = t / npt, p0 = (t % npt) * CONV_MC, mc = MIN (CONV_MC, P - p0);
      const float *xb = X + bi * Ci * T * H * W;
      float *yb = Y + bi * Co * P;
      for (int64_t o = 0; o < Co; o++)
        for (int64_t m = 0; m < mc; m++)
          yb[o * P + p0 + m] = bv ? bv[o] : 0.0f;
      for (int64_t k0 = 0; k0 < Kd; k0 += KC) {
        int64_t kc = MIN (KC, Kd - k0);
        const float *A;
        int64_t lda;
        if (w_direct) {
          A = (const float *) w->data + k0;
          lda = Kd;
        } else {
          for (int64_t o = 0; o < Co; o++)
            kr->cvt (Af + o * kc, w->data, w->dtype, o * Kd + k0, kc, w->scale);
          A = Af;
          lda = kc;
        }
        for (int64_t q0 = 0; q0 < mc; q0 += nr) {
          int nv = (int) MIN (nr, mc - q0);
          int64_t pa = p0 + q0;   /* first position of the panel */
          gboolean one_row = (pa % Wo) + nv <= Wo;
          for (int j = 0; j < (one_row ? 1 : nv); j++) {   /* input corner of each position */
            int64_t p = pa + j;
            pt[3 * j] = (p / (Ho * Wo)) * stride[0] - pad[0];
            pt[3 * j + 1] = ((p / Wo) % Ho) * stride[1] - pad[1];
            pt[3 * j + 2] = (p % Wo) * stride[2] - pad[2];
          }
          pack_im2col (bp, nr, xb, T, H, W, tap + k0, kc, pt, nv, stride[2], one_row);
          for (int64_t o = 0; o < Co; o += kr->mr)
            kr->run (kc, A + o * lda, lda, (int) MIN (kr->mr, Co - o), bp, yb + o * P + pa, P, nv);
        }
      }
    }
    scratch_put (b, bp);
    scratch_put (b, Af);
    scratch_put (b, pt);
  }
  g_free (tap);
}

static inline int64_t
clamp64 (int64_t v, int64_t lo, int64_t hi)
{
  return v < lo ? lo : v > hi ? hi : v;
}

static void
cpu_pad3d (HvBackend *b, HvTensor *y, const HvTensor *x, const int *pads, HvPadMode mode)
{
  int64_t BC = x->shape[0] * x->shape[1], T = x->shape[2], H = x->shape[3], W = x->shape[4];
  int64_t To = y->shape[2], Ho = y->shape[3], Wo = y->shape[4];
  const float *X = x->data;
  float *Y = y->data;
  int64_t rows = BC * To * Ho;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (rows * Wo > PAR_MIN))
  for (int64_t r = 0; r < rows; r++) {
    int64_t bc = r / (To * Ho), to = (r / Ho) % To, ho = r % Ho;
    int64_t ti = to - pads[0], hi = ho - pads[2];
    float *yr = Y + r * Wo;
    gboolean inside = ti >= 0 && ti < T && hi >= 0 && hi < H;
    if (mode == HV_PAD_ZERO && !inside) {
      memset (yr, 0, sizeof (float) * Wo);
      continue;
    }
    ti = clamp64 (ti, 0, T - 1);
    hi = clamp64 (hi, 0, H - 1);
    const float *xr = X + ((bc * T + ti) * H + hi) * W;
    for (int64_t wo = 0; wo < Wo; wo++) {
      int64_t wi = wo - pads[4];
      if (wi >= 0 && wi < W)
        yr[wo] = xr[wi];
      else
        yr[wo] = mode == HV_PAD_ZERO ? 0.0f : xr[clamp64 (wi, 0, W - 1)];
    }
  }
}

static void
cpu_groupnorm (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w,
               const HvTensor *bias, float eps)
{
  int64_t Bn = x->shape[0], C = x->shape[1];
  int64_t sp = C ? hv_tensor_numel (x) / (Bn * C) : 0, cg = C / groups;
  g_autofree float *wv = vec_f32 (w);
  g_autofree float *bv = vec_f32 (bias);
  const float *X = x->data;
  float *Y = y->data;
  int64_t n = Bn * groups;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (dynamic, 1) if (n > 1 && sp * C > PAR_MIN))
  for (int64_t t = 0; t < n; t++) {
    int64_t bi = t / groups, g = t % groups;
    const float *xg = X + (bi * C + g * cg) * sp;
    float *yg = Y + (bi * C + g * cg) * sp;
    int64_t cnt = cg * sp;
    float fm = (float) (sum_blocked (xg, cnt) / MAX (cnt, 1));
    float rstd = (float) (1.0 / sqrt (sqdev_blocked (xg, cnt, fm) / MAX (cnt, 1) + eps));
    for (int64_t c = 0; c < cg; c++) {
      int64_t ch = g * cg + c;
      float a = rstd * (wv ? wv[ch] : 1.0f);
      row_scale (yg + c * sp, xg + c * sp, sp, a, (bv ? bv[ch] : 0.0f) - fm * a);
    }
  }
}

static void
cpu_upsample_nearest (HvBackend *b, HvTensor *y, const HvTensor *x, const int *f)
{
  int64_t BC = x->shape[0] * x->shape[1], T = x->shape[2], H = x->shape[3], W = x->shape[4];
  int64_t To = y->shape[2], Ho = y->shape[3], Wo = y->shape[4];
  const float *X = x->data;
  float *Y = y->data;
  int64_t rows = BC * To * Ho;
  OMP (omp parallel for num_threads (nthreads (b)) schedule (static) if (rows * Wo > PAR_MIN))
  for (int64_t r = 0; r < rows; r++) {
    int64_t bc = r / (To * Ho), to = (r / Ho) % To, ho = r % Ho;
    const float *xr = X + ((bc * T + to / f[0]) * H + ho / f[1]) * W;
    float *yr = Y + r * Wo;
    for (int64_t wo = 0; wo < Wo; wo++) yr[wo] = xr[wo / f[2]];
  }
}

/* ---- the table ------------------------------------------------------------------------------ */

static const HvBackendOps cpu_ops = {
  .destroy = cpu_destroy,
  .alloc = cpu_alloc,
  .release = cpu_release,
  .upload = cpu_copy_bytes,
  .download = cpu_copy_bytes,
  .synchronize = cpu_synchronize,
  .is_host = TRUE,
  .linear = cpu_linear,
  .layernorm = cpu_layernorm,
  .rmsnorm = cpu_rmsnorm,
  .unary = cpu_unary,
  .softmax = cpu_softmax,
  .attention = cpu_attention,
  .rope = cpu_rope,
  .modulate = cpu_modulate,
  .gate_add = cpu_gate_add,
  .binary = cpu_binary,
  .scale = cpu_scale,
  .copy = cpu_copy,
  .slice = cpu_slice,
  .concat = cpu_concat,
  .permute = cpu_permute,
  .get_rows = cpu_get_rows,
  .conv3d = cpu_conv3d,
  .pad3d = cpu_pad3d,
  .groupnorm = cpu_groupnorm,
  .upsample_nearest = cpu_upsample_nearest,
};

HvBackend *
hv_backend_cpu_new (int n_threads)
{
  init_luts ();
  HvBackend *b = g_new0 (HvBackend, 1);
  CpuPriv *p = g_new0 (CpuPriv, 1);
  g_mutex_init (&p->lock);
  p->cache = g_hash_table_new (g_direct_hash, g_direct_equal);   /* lists freed in cpu_destroy */
  p->kern = pick_kernel ();
  b->ops = &cpu_ops;
  b->name = "cpu";
  b->priv = p;
  if (n_threads <= 0) {
#ifdef _OPENMP
    n_threads = omp_get_num_procs ();
#else
    n_threads = 1;
#endif
  }
  b->n_threads = n_threads;
  return b;
}
