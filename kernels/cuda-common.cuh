/* cuda-common.cuh — helpers shared by the kernels: dtype decoding, reductions, launch sizes.
 * Device code only; every launcher returns the launch's cudaError_t (cudaGetLastError) so the
 * host side can turn it into a GError. */
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>
#include <math.h>
#include "hv-kernels.h"

#define HV_CUDA_INF __int_as_float (0x7f800000)

/* Launch geometry for a flat loop over n elements: enough blocks to fill the chip, the rest is
 * done by grid-stride loops. */
static inline unsigned int
hv_grid_1d (int64_t n, int threads)
{
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1)
    blocks = 1;
  if (blocks > 65535LL * 32)
    blocks = 65535LL * 32;
  return (unsigned int) blocks;
}

#define HV_GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (int64_t) gridDim.x * blockDim.x)

/* One element of any storage dtype as f32 (HvDType values, see hv-kernels.h). fp8 values are
 * multiplied by `scale` by the caller where needed; integers convert exactly like a C cast. */
static __device__ __forceinline__ float
hv_load_f32 (const void *p, int dtype, int64_t i)
{
  switch (dtype) {
  case HV_K_F32: return ((const float *) p)[i];
  case HV_K_F16: return __half2float (((const __half *) p)[i]);
  case HV_K_BF16: return __bfloat162float (((const __nv_bfloat16 *) p)[i]);
  case HV_K_F8_E4M3: {
    __nv_fp8_e4m3 v;
    v.__x = ((const __nv_fp8_storage_t *) p)[i];
    return (float) v;
  }
  case HV_K_F8_E5M2: {
    __nv_fp8_e5m2 v;
    v.__x = ((const __nv_fp8_storage_t *) p)[i];
    return (float) v;
  }
  case HV_K_I64: return (float) ((const int64_t *) p)[i];
  case HV_K_I32: return (float) ((const int32_t *) p)[i];
  case HV_K_U8:
  case HV_K_BOOL: return (float) ((const uint8_t *) p)[i];
  default: return __int_as_float (0x7fc00000);
  }
}

/* Optional per-channel vector (norm weight / bias): `def` when absent. */
static __device__ __forceinline__ float
hv_load_opt (const void *p, int dtype, float scale, int64_t i, float def)
{
  return p ? hv_load_f32 (p, dtype, i) * scale : def;
}

static __device__ __forceinline__ float
hv_warp_sum (float v)
{
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

static __device__ __forceinline__ float
hv_warp_max (float v)
{
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, o));
  return v;
}

/* Block-wide sum/max; every thread gets the result. `red` is 32 floats of shared memory; the
 * trailing barrier lets the caller reuse it right away. blockDim.x must be a multiple of 32. */
static __device__ __forceinline__ float
hv_block_sum (float v, float *red)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = hv_warp_sum (v);
  if (lane == 0)
    red[warp] = v;
  __syncthreads ();
  float r = lane < nw ? red[lane] : 0.0f;
  r = hv_warp_sum (r);
  __syncthreads ();
  return r;
}

static __device__ __forceinline__ float
hv_block_max (float v, float *red)
{
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = hv_warp_max (v);
  if (lane == 0)
    red[warp] = v;
  __syncthreads ();
  float r = lane < nw ? red[lane] : -HV_CUDA_INF;
  r = hv_warp_max (r);
  __syncthreads ();
  return r;
}

static inline cudaError_t
hv_launch_status (void)
{
  return cudaGetLastError ();
}

/* ---- the context (see hv-kernels.h) ------------------------------------------------------- */
#include <cublasLt.h>

struct HvKBadIndex {
  int set;
  int pad;
  long long pos, id;
};

struct HvKCtx {
  int device;
  int sm;                    /* 10*major + minor */
  int num_sms;
  size_t smem_optin;         /* max dynamic shared memory per block after opting in */
  char name[256];
  cudaStream_t stream;
  cudaMemPool_t pool;        /* NULL: no stream-ordered allocator, plain cudaMalloc */
  size_t plain_used, plain_peak;
  cublasLtHandle_t lt;
  void *workspace;
  size_t ws_size;
  void *algo_cache;          /* gemm.cu's heuristic cache */
  HvKFp8Mode fp8_mode;
  HvKBadIndex *bad_dev;      /* device memory: written by get_rows, read back after a sync */
  char err[768];
};

/* Records a failure message in the context; returns 1 so launchers can `return hv_k_fail(...)`. */
int hv_k_fail (HvKCtx *ctx, const char *fmt, ...)
#ifdef __GNUC__
  __attribute__ ((format (printf, 2, 3)))
#endif
  ;
/* The status of the launch just made (and of any asynchronous failure before it). */
int hv_k_launched (HvKCtx *ctx, const char *what);
/* Forgets the gemm.cu algorithm cache (context teardown). */
void hv_k_gemm_cache_free (HvKCtx *ctx);
