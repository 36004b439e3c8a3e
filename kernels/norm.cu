/* norm.cu — row-wise layernorm, rmsnorm and softmax over the last dim.
 *
 * Rows of up to 1024 elements (head-dim QK norms, small models) get one warp each; wider rows
 * (the DiT's 3072) one block of 256 threads. Statistics are two-pass (mean, then squared
 * deviations) in fp32; the row is re-read from L1/L2, not kept in registers. In place is safe:
 * each thread writes only elements it alone reads in the last pass. */
#include "cuda-common.cuh"

#define WARP_MAX_C 1024
#define ROWS_PER_BLOCK 8     /* warps per block in the warp-per-row kernels */
#define BLOCK_THREADS 256

/* Sum / max over the threads that share a row: a warp (WARP) or the whole block. */
template <bool WARP>
static __device__ __forceinline__ float
row_sum (float v, float *red)
{
  if (WARP)
    return hv_warp_sum (v);
  return hv_block_sum (v, red);
}

template <bool WARP>
static __device__ __forceinline__ float
row_max (float v, float *red)
{
  if (WARP)
    return hv_warp_max (v);
  return hv_block_max (v, red);
}

/* Row index, first element and stride of this thread. */
template <bool WARP>
static __device__ __forceinline__ bool
row_of (int64_t rows, int64_t *row, int *t0, int *tstride)
{
  if (WARP) {
    *row = (int64_t) blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    *t0 = threadIdx.x & 31;
    *tstride = 32;
  } else {
    *row = blockIdx.x;
    *t0 = threadIdx.x;
    *tstride = blockDim.x;
  }
  return *row < rows;
}

/* Mean and 1/sqrt(biased variance + eps) of one row, two-pass. */
template <bool WARP>
static __device__ __forceinline__ void
row_moments (const float *xr, int C, int t0, int ts, float eps, float *red, float *mean, float *rstd)
{
  float s = 0.0f;
  for (int i = t0; i < C; i += ts)
    s += xr[i];
  const float m = row_sum<WARP> (s, red) / C;
  float d2 = 0.0f;
  for (int i = t0; i < C; i += ts) {
    float d = xr[i] - m;
    d2 += d * d;
  }
  *mean = m;
  *rstd = 1.0f / sqrtf (row_sum<WARP> (d2, red) / C + eps);
}

template <bool WARP>
__global__ void
k_layernorm (float *y, const float *x, int64_t rows, int C, const void *w, int wdt, float wscale,
             const void *bias, int bdt, float bscale, float eps)
{
  __shared__ float red[32];
  int64_t row;
  int t0, ts;
  /* whole blocks return together in block mode, so the barriers below stay uniform */
  if (!row_of<WARP> (rows, &row, &t0, &ts))
    return;
  const float *xr = x + row * C;
  float *yr = y + row * C;
  float mean, rstd;
  row_moments<WARP> (xr, C, t0, ts, eps, red, &mean, &rstd);
  for (int i = t0; i < C; i += ts) {
    float v = (xr[i] - mean) * rstd;
    if (w)
      v *= hv_load_f32 (w, wdt, i) * wscale;
    if (bias)
      v += hv_load_f32 (bias, bdt, i) * bscale;
    yr[i] = v;
  }
}

/* The adaLN of the DiT: the layernorm's last pass applies the modulation, so x is read (from
 * L2 after the first pass) and y written once instead of twice each. */
template <bool WARP>
__global__ void
k_layernorm_modulate (float *y, const float *x, int64_t rows, int C, const float *shift,
                      int64_t shift_rows, const float *scale, int64_t scale_rows, float eps)
{
  __shared__ float red[32];
  int64_t row;
  int t0, ts;
  if (!row_of<WARP> (rows, &row, &t0, &ts))
    return;
  const float *xr = x + row * C;
  float *yr = y + row * C;
  const float *sh = shift ? shift + (row / shift_rows) * C : NULL;
  const float *sc = scale ? scale + (row / scale_rows) * C : NULL;
  float mean, rstd;
  row_moments<WARP> (xr, C, t0, ts, eps, red, &mean, &rstd);
  for (int i = t0; i < C; i += ts) {
    float v = (xr[i] - mean) * rstd;
    if (sc)
      v = v * (1.0f + sc[i]);
    if (sh)
      v = v + sh[i];
    yr[i] = v;
  }
}

template <bool WARP>
__global__ void
k_rmsnorm (float *y, const float *x, int64_t rows, int C, const void *w, int wdt, float wscale,
           float eps)
{
  __shared__ float red[32];
  int64_t row;
  int t0, ts;
  if (!row_of<WARP> (rows, &row, &t0, &ts))
    return;
  const float *xr = x + row * C;
  float *yr = y + row * C;
  float s = 0.0f;
  for (int i = t0; i < C; i += ts)
    s += xr[i] * xr[i];
  float ms = row_sum<WARP> (s, red) / C;
  float r = 1.0f / sqrtf (ms + eps);
  for (int i = t0; i < C; i += ts) {
    float v = xr[i] * r;
    if (w)
      v *= hv_load_f32 (w, wdt, i) * wscale;
    yr[i] = v;
  }
}

template <bool WARP>
__global__ void
k_softmax (float *y, const float *x, int64_t rows, int C)
{
  __shared__ float red[32];
  int64_t row;
  int t0, ts;
  if (!row_of<WARP> (rows, &row, &t0, &ts))
    return;
  const float *xr = x + row * C;
  float *yr = y + row * C;
  float m = -HV_CUDA_INF;
  for (int i = t0; i < C; i += ts)
    m = fmaxf (m, xr[i]);
  m = row_max<WARP> (m, red);
  float s = 0.0f;
  for (int i = t0; i < C; i += ts)
    s += expf (xr[i] - m);
  s = row_sum<WARP> (s, red);
  float inv = 1.0f / s;
  for (int i = t0; i < C; i += ts)
    yr[i] = expf (xr[i] - m) * inv;
}

static bool
use_warp (int64_t C)
{
  return C <= WARP_MAX_C;
}

static unsigned int
warp_blocks (int64_t rows)
{
  return (unsigned int) ((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
}

static int
check_rows (HvKCtx *ctx, const char *what, int64_t rows, int64_t C)
{
  if (C > INT32_MAX || rows > (int64_t) INT32_MAX * ROWS_PER_BLOCK)
    return hv_k_fail (ctx, "%s: %lld rows of %lld is too large", what, (long long) rows, (long long) C);
  return 0;
}

int
hv_k_layernorm (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C, const void *w,
                int wdt, float wscale, const void *bias, int bdt, float bscale, float eps)
{
  if (rows == 0 || C == 0)
    return 0;
  if (check_rows (ctx, "layernorm", rows, C))
    return 1;
  if (use_warp (C))
    k_layernorm<true><<<warp_blocks (rows), ROWS_PER_BLOCK * 32, 0, ctx->stream>>> (
        y, x, rows, (int) C, w, wdt, wscale, bias, bdt, bscale, eps);
  else
    k_layernorm<false><<<(unsigned int) rows, BLOCK_THREADS, 0, ctx->stream>>> (
        y, x, rows, (int) C, w, wdt, wscale, bias, bdt, bscale, eps);
  return hv_k_launched (ctx, "layernorm");
}

int
hv_k_layernorm_modulate (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C,
                         const float *shift, int64_t shift_rows, const float *scale,
                         int64_t scale_rows, float eps)
{
  if (rows == 0 || C == 0)
    return 0;
  if (check_rows (ctx, "layernorm_modulate", rows, C))
    return 1;
  if ((shift && shift_rows <= 0) || (scale && scale_rows <= 0))
    return hv_k_fail (ctx, "layernorm_modulate: bad rows per modulation vector");
  if (use_warp (C))
    k_layernorm_modulate<true><<<warp_blocks (rows), ROWS_PER_BLOCK * 32, 0, ctx->stream>>> (
        y, x, rows, (int) C, shift, shift_rows, scale, scale_rows, eps);
  else
    k_layernorm_modulate<false><<<(unsigned int) rows, BLOCK_THREADS, 0, ctx->stream>>> (
        y, x, rows, (int) C, shift, shift_rows, scale, scale_rows, eps);
  return hv_k_launched (ctx, "layernorm_modulate");
}

int
hv_k_rmsnorm (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C, const void *w,
              int wdt, float wscale, float eps)
{
  if (rows == 0 || C == 0)
    return 0;
  if (check_rows (ctx, "rmsnorm", rows, C))
    return 1;
  if (use_warp (C))
    k_rmsnorm<true><<<warp_blocks (rows), ROWS_PER_BLOCK * 32, 0, ctx->stream>>> (
        y, x, rows, (int) C, w, wdt, wscale, eps);
  else
    k_rmsnorm<false><<<(unsigned int) rows, BLOCK_THREADS, 0, ctx->stream>>> (
        y, x, rows, (int) C, w, wdt, wscale, eps);
  return hv_k_launched (ctx, "rmsnorm");
}

int
hv_k_softmax (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C)
{
  if (rows == 0 || C == 0)
    return 0;
  if (check_rows (ctx, "softmax", rows, C))
    return 1;
  if (use_warp (C))
    k_softmax<true><<<warp_blocks (rows), ROWS_PER_BLOCK * 32, 0, ctx->stream>>> (y, x, rows, (int) C);
  else
    k_softmax<false><<<(unsigned int) rows, BLOCK_THREADS, 0, ctx->stream>>> (y, x, rows, (int) C);
  return hv_k_launched (ctx, "softmax");
}
