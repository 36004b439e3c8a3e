/* gemm.cu — matrix products through cuBLASLt (host code).
 *
 * hv_k_linear maps the engine's row-major y[M,N] = x[M,K]·W[N,K]ᵀ onto cuBLAS's column-major
 * world: yᵀ (N×M, ld N) = op_T(W as K×N, ld K) · xᵀ (K×M, ld K). That is the "TN" layout, the
 * one the fp8 kernels require. Bias goes into the epilogue. Algorithms come from cuBLASLt's
 * heuristic once per shape/type/alignment and are cached. */
#include "cuda-common.cuh"
#include <stdlib.h>
#include <string.h>

namespace {

struct MatmulArgs {
  cublasOperation_t ta, tb;
  int64_t m, n, k;
  const void *a;
  cudaDataType_t at;
  int64_t lda;
  const void *b;
  cudaDataType_t bt;
  int64_t ldb;
  float *d;
  int64_t ldd;
  float alpha;
  const float *b_scale;        /* device pointer or NULL */
  const void *bias;            /* device pointer or NULL, length m */
  cudaDataType_t biast;
  cublasComputeType_t compute;
  float beta;                  /* 0: D = alpha·op(A)·op(B) (+ bias); 1: accumulate into D */
  bool gelu;                   /* gelu_tanh in the epilogue, after bias (and beta·C) */
};

/* The cache key: everything that decides which algorithm is valid and fast. */
struct AlgoKey {
  int ta, tb, at, bt, biast, compute, has_bias, has_bscale, has_beta, gelu;
  int64_t m, n, k, lda, ldb, ldd;
  unsigned align_a, align_b, align_d, align_bias;
};

/* A plain array searched linearly: a run has a few dozen distinct GEMM shapes. (No C++ runtime
 * in this library, so that C programs link it without libstdc++.) */
#define CACHE_MAX 4096
struct AlgoCache {
  int n;
  AlgoKey key[CACHE_MAX];
  cublasLtMatmulAlgo_t algo[CACHE_MAX];
};

const cublasLtMatmulAlgo_t *
cache_find (AlgoCache *c, const AlgoKey &k)
{
  for (int i = 0; i < c->n; i++)
    if (memcmp (&c->key[i], &k, sizeof k) == 0)
      return &c->algo[i];
  return NULL;
}

void
cache_put (AlgoCache *c, const AlgoKey &k, const cublasLtMatmulAlgo_t &a)
{
  if (c->n < CACHE_MAX) {
    c->key[c->n] = k;
    c->algo[c->n] = a;
    c->n++;
  }
}

unsigned
alignment_of (const void *p, int64_t ld, size_t esize)
{
  uintptr_t v = (uintptr_t) p | (uintptr_t) (ld * (int64_t) esize);
  unsigned a = 256;
  while (a > 1 && (v & (a - 1)))
    a >>= 1;
  return a;
}

size_t
type_size (cudaDataType_t t)
{
  switch (t) {
  case CUDA_R_32F: return 4;
  case CUDA_R_16F:
  case CUDA_R_16BF: return 2;
  default: return 1;
  }
}

const char *
st_str (cublasStatus_t st)
{
  return cublasLtGetStatusString (st);
}

int
kdtype (cudaDataType_t t)
{
  switch (t) {
  case CUDA_R_32F: return HV_K_F32;
  case CUDA_R_16F: return HV_K_F16;
  case CUDA_R_16BF: return HV_K_BF16;
  case CUDA_R_8F_E4M3: return HV_K_F8_E4M3;
  case CUDA_R_8F_E5M2: return HV_K_F8_E5M2;
  default: return -1;
  }
}

/* The plain tiled product for what cuBLASLt has no algorithm for (odd alignments, small odd
 * shapes): same column-major contract as MatmulArgs, fp32 throughout. Correct, not fast. */
#define NB 16
__global__ void
k_gemm_naive (int64_t m, int64_t n, int64_t k, const void *a, int adt, int64_t lda, int ta,
              const void *b, int bdt, int64_t ldb, int tb, float *d, int64_t ldd, float alpha,
              const float *b_scale, const void *bias, int biasdt, float beta, bool gelu)
{
  __shared__ float As[NB][NB + 1], Bs[NB][NB + 1];
  int tx = threadIdx.x, ty = threadIdx.y;
  int64_t i = (int64_t) blockIdx.x * NB + tx, j = (int64_t) blockIdx.y * NB + ty;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < k; k0 += NB) {
    /* As[tx][c] = opA (i, k0 + c), Bs[r][ty] = opB (k0 + r, j) */
    int64_t ia = (int64_t) blockIdx.x * NB + tx, ka = k0 + ty;
    As[tx][ty] = ia < m && ka < k ? hv_load_f32 (a, adt, ta ? ka + ia * lda : ia + ka * lda) : 0.0f;
    int64_t kb = k0 + tx, jb = (int64_t) blockIdx.y * NB + ty;
    Bs[tx][ty] = kb < k && jb < n ? hv_load_f32 (b, bdt, tb ? jb + kb * ldb : kb + jb * ldb) : 0.0f;
    __syncthreads ();
#pragma unroll
    for (int c = 0; c < NB; c++)
      acc += As[tx][c] * Bs[c][ty];
    __syncthreads ();
  }
  if (i < m && j < n) {
    float v = acc * alpha * (b_scale ? *b_scale : 1.0f);
    if (bias)
      v += hv_load_f32 (bias, biasdt, i);
    if (beta != 0.0f)
      v += beta * d[i + j * ldd];
    if (gelu)
      v = 0.5f * v * (1.0f + tanhf (0.7978845608028654f * (v + 0.044715f * v * v * v)));
    d[i + j * ldd] = v;
  }
}

int
matmul_naive (HvKCtx *ctx, const MatmulArgs &p)
{
  if (p.m > (int64_t) 65535 * NB * 1024 || p.n > (int64_t) 65535 * NB)
    return hv_k_fail (ctx, "GEMM %lld×%lld×%lld: too large for the fallback kernel",
                      (long long) p.m, (long long) p.n, (long long) p.k);
  dim3 grid ((unsigned int) ((p.m + NB - 1) / NB), (unsigned int) ((p.n + NB - 1) / NB));
  k_gemm_naive<<<grid, dim3 (NB, NB), 0, ctx->stream>>> (
      p.m, p.n, p.k, p.a, kdtype (p.at), p.lda, p.ta == CUBLAS_OP_T, p.b, kdtype (p.bt), p.ldb,
      p.tb == CUBLAS_OP_T, p.d, p.ldd, p.alpha, p.b_scale, p.bias, p.bias ? kdtype (p.biast) : 0,
      p.beta, p.gelu);
  return hv_k_launched (ctx, "GEMM (fallback kernel)");
}

/* Runs one matmul. When cuBLASLt has no algorithm for the combination: with no_algo, it is set
 * and the call fails (the caller has another formulation); without, the fallback kernel runs. */
int
matmul (HvKCtx *ctx, const MatmulArgs &p, bool *no_algo)
{
  if (no_algo)
    *no_algo = false;
  cublasLtMatmulDesc_t op = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  cublasStatus_t st;
  int rc = 1;
  const float beta = p.beta;
  AlgoCache *cache = (AlgoCache *) ctx->algo_cache;
  AlgoKey key;
  memset (&key, 0, sizeof key);   /* padding bytes take part in the comparison */

#define LT(call) do { st = (call); if (st != CUBLAS_STATUS_SUCCESS) { \
      hv_k_fail (ctx, "cuBLASLt %s failed: %s (GEMM %lld×%lld×%lld)", #call, st_str (st), \
                 (long long) p.m, (long long) p.n, (long long) p.k); goto out; } } while (0)

  LT (cublasLtMatmulDescCreate (&op, p.compute, CUDA_R_32F));
  LT (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_TRANSA, &p.ta, sizeof p.ta));
  LT (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_TRANSB, &p.tb, sizeof p.tb));
  if (p.bias || p.gelu) {
    /* cuBLASLt's GELU epilogue is the tanh approximation (what gelu_tanh computes) */
    cublasLtEpilogue_t epi = p.bias ? (p.gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                    : CUBLASLT_EPILOGUE_GELU;
    LT (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  }
  if (p.bias) {
    int32_t bt = (int32_t) p.biast;
    LT (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof p.bias));
    LT (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  }
  if (p.b_scale)
    LT (cublasLtMatmulDescSetAttribute (op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &p.b_scale,
                                        sizeof p.b_scale));
  if (p.ta == CUBLAS_OP_N)
    LT (cublasLtMatrixLayoutCreate (&la, p.at, p.m, p.k, p.lda));
  else
    LT (cublasLtMatrixLayoutCreate (&la, p.at, p.k, p.m, p.lda));
  if (p.tb == CUBLAS_OP_N)
    LT (cublasLtMatrixLayoutCreate (&lb, p.bt, p.k, p.n, p.ldb));
  else
    LT (cublasLtMatrixLayoutCreate (&lb, p.bt, p.n, p.k, p.ldb));
  LT (cublasLtMatrixLayoutCreate (&ld, CUDA_R_32F, p.m, p.n, p.ldd));

  key.ta = p.ta; key.tb = p.tb; key.at = p.at; key.bt = p.bt; key.biast = p.biast;
  key.compute = p.compute; key.has_bias = p.bias != NULL; key.has_bscale = p.b_scale != NULL;
  key.has_beta = p.beta != 0.0f;
  key.gelu = p.gelu;
  key.m = p.m; key.n = p.n; key.k = p.k; key.lda = p.lda; key.ldb = p.ldb; key.ldd = p.ldd;
  key.align_a = alignment_of (p.a, p.lda, type_size (p.at));
  key.align_b = alignment_of (p.b, p.ldb, type_size (p.bt));
  key.align_d = alignment_of (p.d, p.ldd, 4);
  key.align_bias = p.bias ? alignment_of (p.bias, 0, 1) : 256;

  {
    cublasLtMatmulAlgo_t algo;
    const cublasLtMatmulAlgo_t *hit = cache ? cache_find (cache, key) : NULL;
    if (hit) {
      algo = *hit;
    } else {
      cublasLtMatmulHeuristicResult_t res[1];
      int found = 0;
      uint64_t ws = ctx->ws_size;
      uint32_t aa = key.align_a, ab = key.align_b, ad = key.align_d;
      LT (cublasLtMatmulPreferenceCreate (&pref));
      LT (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
      LT (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
      LT (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab));
      LT (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad));
      LT (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad));
      st = cublasLtMatmulAlgoGetHeuristic (ctx->lt, op, la, lb, ld, ld, pref, 1, res, &found);
      if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
        if (!no_algo) {
          rc = matmul_naive (ctx, p);
          goto out;
        }
        *no_algo = true;
        hv_k_fail (ctx, "cuBLASLt has no algorithm for GEMM %lld×%lld×%lld (A type %d, B type %d, "
                   "alignments %u/%u/%u): %s", (long long) p.m, (long long) p.n, (long long) p.k,
                   (int) p.at, (int) p.bt, aa, ab, ad,
                   st != CUBLAS_STATUS_SUCCESS ? st_str (st) : "none found");
        goto out;
      }
      algo = res[0].algo;
      if (cache)
        cache_put (cache, key, algo);
    }
    st = cublasLtMatmul (ctx->lt, op, &p.alpha, p.a, la, p.b, lb, &beta, p.d, ld, p.d, ld, &algo,
                         ctx->workspace, ctx->ws_size, ctx->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
      /* the heuristic offered an algorithm that then refused the problem: same way out as
       * when it offers none */
      if (!no_algo) {
        rc = matmul_naive (ctx, p);
        goto out;
      }
      *no_algo = true;
    }
    if (st != CUBLAS_STATUS_SUCCESS) {
      hv_k_fail (ctx, "cuBLASLt cublasLtMatmul failed: %s (GEMM %lld×%lld×%lld, A type %d, B type %d)",
                 st_str (st), (long long) p.m, (long long) p.n, (long long) p.k, (int) p.at, (int) p.bt);
      goto out;
    }
  }
  rc = 0;
#undef LT
out:
  if (pref) cublasLtMatmulPreferenceDestroy (pref);
  if (ld) cublasLtMatrixLayoutDestroy (ld);
  if (lb) cublasLtMatrixLayoutDestroy (lb);
  if (la) cublasLtMatrixLayoutDestroy (la);
  if (op) cublasLtMatmulDescDestroy (op);
  return rc;
}

AlgoCache *
cache_of (HvKCtx *ctx)
{
  if (!ctx->algo_cache)
    ctx->algo_cache = calloc (1, sizeof (AlgoCache));   /* NULL: run without a cache */
  return (AlgoCache *) ctx->algo_cache;
}

/* A device copy of `bias` in dtype `want` (f32 or bf16), or the pointer itself when it already
 * is one with scale 1 and 16-byte alignment. *tmp receives what the caller must free. */
int
bias_as (HvKCtx *ctx, const void *bias, int bdt, float bscale, int64_t n, int want,
         const void **out, void **tmp)
{
  *tmp = NULL;
  *out = NULL;
  if (!bias)
    return 0;
  if (bdt == want && bscale == 1.0f && ((uintptr_t) bias & 15) == 0) {
    *out = bias;
    return 0;
  }
  void *t = hv_k_alloc (ctx, (size_t) n * (want == HV_K_F32 ? 4 : 2));
  if (!t)
    return 1;
  if (hv_k_convert (ctx, t, want, bias, bdt, n, bscale)) {
    hv_k_free (ctx, t);
    return 1;
  }
  *tmp = t;
  *out = t;
  return 0;
}

/* y = x·Wᵀ with W in bf16/f16 (16-bit path): x is rounded to W's type first. */
int
linear_16 (HvKCtx *ctx, float *y, const float *x, int64_t M, int64_t K, const void *w, int wdt,
           float alpha, int64_t N, const void *bias, int bdt, float bscale, bool gelu = false)
{
  int rc = 1;
  const void *bias_p = NULL;
  void *bias_tmp = NULL;
  void *xh = hv_k_alloc (ctx, (size_t) M * K * 2);
  if (!xh)
    return 1;
  if (hv_k_convert (ctx, xh, wdt, x, HV_K_F32, M * K, 1.0f))
    goto out;
  if (bias_as (ctx, bias, bdt, bscale, N, HV_K_F32, &bias_p, &bias_tmp))
    goto out;
  {
    cudaDataType_t t = wdt == HV_K_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    MatmulArgs p = { CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, t, K, xh, t, K, y, N, alpha, NULL,
                     bias_p, CUDA_R_32F, CUBLAS_COMPUTE_32F, 0.0f, gelu };
    rc = matmul (ctx, p, NULL);
  }
out:
  hv_k_free (ctx, bias_tmp);
  hv_k_free (ctx, xh);
  return rc;
}

/* fp8 weights on the fp8 tensor cores: x → e4m3 with a per-tensor scale computed on the device
 * (amax / 448), D = wscale · scale_x · (W8 · x8) + bias. With `split`, x ≈ s1·q1 + s2·q2 (the
 * second term quantizes what the first left out) and a second fp8 GEMM adds wscale·s2·(W8·q2)
 * into D (beta 1). *no_algo: cuBLASLt refused the shape. */
int
linear_fp8 (HvKCtx *ctx, float *y, const float *x, int64_t M, int64_t K, const void *w, int wdt,
            float wscale, int64_t N, const void *bias, int bdt, float bscale, bool split,
            bool *no_algo)
{
  int rc = 1;
  const void *bias_p = NULL;
  void *bias_tmp = NULL;
  float *d_scale = (float *) hv_k_alloc (ctx, 256);   /* [0] s1, [32] s2: separate 128-byte lines */
  void *xq = hv_k_alloc (ctx, (size_t) M * K);
  void *xq2 = split ? hv_k_alloc (ctx, (size_t) M * K) : NULL;
  *no_algo = false;
  if (!d_scale || !xq || (split && !xq2))
    goto out;
  if (hv_k_absmax_scale (ctx, d_scale, x, M * K, 448.0f))
    goto out;
  if (split ? hv_k_quantize_e4m3_split (ctx, xq, xq2, x, M * K, d_scale, d_scale + 32)
            : hv_k_quantize_e4m3 (ctx, xq, x, M * K, d_scale))
    goto out;
  /* fp8 GEMMs with f32 output take a bf16 bias */
  if (bias_as (ctx, bias, bdt, bscale, N, HV_K_BF16, &bias_p, &bias_tmp))
    goto out;
  {
    cudaDataType_t at = wdt == HV_K_F8_E4M3 ? CUDA_R_8F_E4M3 : CUDA_R_8F_E5M2;
    MatmulArgs p = { CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, at, K, xq, CUDA_R_8F_E4M3, K, y, N,
                     wscale, d_scale, bias_p, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 0.0f, false };
    rc = matmul (ctx, p, no_algo);
    if (rc == 0 && split) {
      MatmulArgs p2 = { CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, at, K, xq2, CUDA_R_8F_E4M3, K, y, N,
                        wscale, d_scale + 32, NULL, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 1.0f, false };
      rc = matmul (ctx, p2, no_algo);
    }
  }
out:
  hv_k_free (ctx, bias_tmp);
  hv_k_free (ctx, xq2);
  hv_k_free (ctx, xq);
  hv_k_free (ctx, d_scale);
  return rc;
}

} /* namespace */

void
hv_k_gemm_cache_free (HvKCtx *ctx)
{
  free (ctx->algo_cache);
  ctx->algo_cache = NULL;
}

int
hv_k_gemm_bf16 (HvKCtx *ctx, int transa, int transb, int64_t m, int64_t n, int64_t k,
                const void *a, int64_t lda, const void *b, int64_t ldb, float *d, int64_t ldd,
                float alpha)
{
  cache_of (ctx);
  MatmulArgs p = { transa ? CUBLAS_OP_T : CUBLAS_OP_N, transb ? CUBLAS_OP_T : CUBLAS_OP_N,
                   m, n, k, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb, d, ldd, alpha, NULL, NULL,
                   CUDA_R_32F, CUBLAS_COMPUTE_32F, 0.0f, false };
  return matmul (ctx, p, NULL);
}

int
hv_k_linear (HvKCtx *ctx, float *y, const float *x, int64_t M, int64_t K,
             const void *w, int wdt, float wscale, int64_t N,
             const void *bias, int bdt, float bscale)
{
  cache_of (ctx);
  if (M == 0 || N == 0)
    return 0;
  if (K == 0) {
    /* an empty sum: y = bias (or 0) */
    cudaError_t e = cudaMemsetAsync (y, 0, (size_t) M * N * 4, ctx->stream);
    if (e != cudaSuccess)
      return hv_k_fail (ctx, "cudaMemsetAsync: %s", cudaGetErrorString (e));
    return bias ? hv_k_channel_bias (ctx, y, bias, bdt, bscale, M, N, 1) : 0;
  }
  switch (wdt) {
  case HV_K_BF16:
  case HV_K_F16:
    return linear_16 (ctx, y, x, M, K, w, wdt, wscale, N, bias, bdt, bscale);
  case HV_K_F32: {
    const void *bias_p = NULL;
    void *bias_tmp = NULL;
    if (bias_as (ctx, bias, bdt, bscale, N, HV_K_F32, &bias_p, &bias_tmp))
      return 1;
    MatmulArgs p = { CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, CUDA_R_32F, K, x, CUDA_R_32F, K, y, N,
                     wscale, NULL, bias_p, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, 0.0f, false };
    int rc = matmul (ctx, p, NULL);
    hv_k_free (ctx, bias_tmp);
    return rc;
  }
  case HV_K_F8_E4M3:
  case HV_K_F8_E5M2: {
    if (ctx->fp8_mode != HV_K_FP8_DEQUANT && ctx->sm >= 89 && K % 16 == 0 && N % 16 == 0) {
      bool no_algo = false;
      int rc = linear_fp8 (ctx, y, x, M, K, w, wdt, wscale, N, bias, bdt, bscale,
                           ctx->fp8_mode == HV_K_FP8_TENSORCORE, &no_algo);
      if (rc == 0 || !no_algo)
        return rc;
      /* cuBLASLt refused this shape: the bf16 route below still gives the right answer */
      ctx->err[0] = '\0';
    }
    void *wb = hv_k_alloc (ctx, (size_t) N * K * 2);
    if (!wb)
      return 1;
    int rc = hv_k_convert (ctx, wb, HV_K_BF16, w, wdt, N * K, wscale);
    if (rc == 0)
      rc = linear_16 (ctx, y, x, M, K, wb, HV_K_BF16, 1.0f, N, bias, bdt, bscale);
    hv_k_free (ctx, wb);
    return rc;
  }
  default:
    return hv_k_fail (ctx, "linear: weight dtype %d is not a float type", wdt);
  }
}

int
hv_k_linear_act (HvKCtx *ctx, float *y, const float *x, int64_t M, int64_t K,
                 const void *w, int wdt, float wscale, int64_t N,
                 const void *bias, int bdt, float bscale, int act)
{
  cache_of (ctx);
  if (act == HV_K_ACT_GELU_TANH && (wdt == HV_K_BF16 || wdt == HV_K_F16) && M > 0 && N > 0 && K > 0)
    return linear_16 (ctx, y, x, M, K, w, wdt, wscale, N, bias, bdt, bscale, true);
  if (hv_k_linear (ctx, y, x, M, K, w, wdt, wscale, N, bias, bdt, bscale))
    return 1;
  return hv_k_unary (ctx, y, y, M * N, act);
}
