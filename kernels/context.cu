/* context.cu — the HvKCtx: device, stream, memory pool, cuBLASLt handle, error messages. */
#include "cuda-common.cuh"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cuBLASLt's recommended workspace on Hopper; also enough for every algorithm on Ampere. */
#define HV_K_WORKSPACE_BYTES (32u << 20)

int
hv_k_fail (HvKCtx *ctx, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (ctx->err, sizeof ctx->err, fmt, ap);
  va_end (ap);
  return 1;
}

int
hv_k_launched (HvKCtx *ctx, const char *what)
{
  cudaError_t e = cudaGetLastError ();
  if (e == cudaSuccess)
    return 0;
  return hv_k_fail (ctx, "CUDA kernel %s failed: %s (%s; an asynchronous error may come from an "
                    "earlier op)", what, cudaGetErrorString (e), cudaGetErrorName (e));
}

/* Does nothing: asking for its attributes tells whether this build has machine code for the
 * device (the library is built for -Dgpu_arch only, without PTX to JIT-compile). */
__global__ void
k_probe (int *p)
{
  if (p)
    *p = 1;
}

#define HV_STR2(...) #__VA_ARGS__
#define HV_STR(...) HV_STR2 (__VA_ARGS__)
#ifdef __CUDA_ARCH_LIST__
#define HV_ARCHS HV_STR (__CUDA_ARCH_LIST__)
#else
#define HV_ARCHS "?"
#endif

static int
fail_msg (char *msg, size_t len, const char *what, cudaError_t e)
{
  if (msg && len)
    snprintf (msg, len, "%s: %s (%s)", what, cudaGetErrorString (e), cudaGetErrorName (e));
  return 1;
}

int
hv_k_ctx_new (int device, HvKCtx **out, char *msg, size_t msglen)
{
  *out = NULL;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount (&count);
  if (e != cudaSuccess)
    return fail_msg (msg, msglen, "no usable CUDA device (cudaGetDeviceCount)", e);
  if (device < 0 || device >= count) {
    snprintf (msg, msglen, "CUDA device %d does not exist (this machine has %d)", device, count);
    return 1;
  }
  if ((e = cudaSetDevice (device)) != cudaSuccess)
    return fail_msg (msg, msglen, "cudaSetDevice", e);
  cudaDeviceProp prop;
  if ((e = cudaGetDeviceProperties (&prop, device)) != cudaSuccess)
    return fail_msg (msg, msglen, "cudaGetDeviceProperties", e);
  if (prop.major < 8) {
    snprintf (msg, msglen, "CUDA device %d (%s) has compute capability %d.%d; hyvideo needs 8.0 or "
              "newer (Ampere, Ada, Hopper)", device, prop.name, prop.major, prop.minor);
    return 1;
  }

  /* An sm_90a-only build on an Ampere card (or a newer chip) would fail at the first kernel
   * launch with "no kernel image": say so here, with what to do. */
  cudaFuncAttributes fa;
  if ((e = cudaFuncGetAttributes (&fa, k_probe)) != cudaSuccess) {
    cudaGetLastError ();
    snprintf (msg, msglen, "CUDA device %d (%s, compute capability %d.%d) cannot run this build's GPU "
              "code (it has machine code only for compute capability x10 = %s: %s); rebuild with "
              "-Dgpu_arch=sm_%d%d%s",
              device, prop.name, prop.major, prop.minor, HV_ARCHS, cudaGetErrorString (e),
              prop.major, prop.minor, prop.major == 9 ? "a" : "");
    return 1;
  }

  int pools = 0;
  cublasStatus_t st;
  HvKCtx *ctx = (HvKCtx *) calloc (1, sizeof *ctx);
  if (!ctx) {
    snprintf (msg, msglen, "out of host memory");
    return 1;
  }
  ctx->device = device;
  ctx->sm = prop.major * 10 + prop.minor;
  ctx->num_sms = prop.multiProcessorCount;
  ctx->smem_optin = prop.sharedMemPerBlockOptin;
  snprintf (ctx->name, sizeof ctx->name, "%s", prop.name);
  ctx->fp8_mode = ctx->sm >= 89 ? HV_K_FP8_TENSORCORE : HV_K_FP8_DEQUANT;
  const char *env = getenv ("HV_CUDA_FP8");
  if (env && strcmp (env, "bf16") == 0)
    ctx->fp8_mode = HV_K_FP8_DEQUANT;
  else if (env && strcmp (env, "fast") == 0 && ctx->sm >= 89)
    ctx->fp8_mode = HV_K_FP8_FAST;

  if ((e = cudaStreamCreateWithFlags (&ctx->stream, cudaStreamNonBlocking)) != cudaSuccess) {
    fail_msg (msg, msglen, "cudaStreamCreate", e);
    goto fail;
  }

  /* A pool of our own: freed blocks stay cached (release threshold = max) so the many short-
   * lived activations of a forward pass cost no cudaMalloc, and its statistics give the peak. */
  cudaDeviceGetAttribute (&pools, cudaDevAttrMemoryPoolsSupported, device);
  if (pools) {
    cudaMemPoolProps props;
    memset (&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    if ((e = cudaMemPoolCreate (&ctx->pool, &props)) != cudaSuccess) {
      fail_msg (msg, msglen, "cudaMemPoolCreate", e);
      goto fail;
    }
    uint64_t threshold = UINT64_MAX;
    cudaMemPoolSetAttribute (ctx->pool, cudaMemPoolAttrReleaseThreshold, &threshold);
  }

  st = cublasLtCreate (&ctx->lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    snprintf (msg, msglen, "cublasLtCreate failed: %s", cublasLtGetStatusString (st));
    goto fail;
  }
  /* device memory, read back after a synchronize: atomics on mapped host memory are not
   * guaranteed over every PCIe link (a VM's passthrough included) */
  if ((e = cudaMalloc ((void **) &ctx->bad_dev, sizeof *ctx->bad_dev)) != cudaSuccess ||
      (e = cudaMemsetAsync (ctx->bad_dev, 0, sizeof *ctx->bad_dev, ctx->stream)) != cudaSuccess) {
    fail_msg (msg, msglen, "cudaMalloc (bad-index record)", e);
    goto fail;
  }
  ctx->ws_size = HV_K_WORKSPACE_BYTES;
  ctx->workspace = hv_k_alloc (ctx, ctx->ws_size);
  if (!ctx->workspace) {
    snprintf (msg, msglen, "cannot allocate the cuBLASLt workspace: %s", ctx->err);
    goto fail;
  }
  ctx->err[0] = '\0';
  *out = ctx;
  return 0;

fail:
  hv_k_ctx_free (ctx);
  return 1;
}

void
hv_k_ctx_free (HvKCtx *ctx)
{
  if (!ctx)
    return;
  cudaSetDevice (ctx->device);
  if (ctx->stream)
    cudaStreamSynchronize (ctx->stream);
  if (ctx->workspace)
    hv_k_free (ctx, ctx->workspace);
  hv_k_gemm_cache_free (ctx);
  if (ctx->lt)
    cublasLtDestroy (ctx->lt);
  if (ctx->stream) {
    cudaStreamSynchronize (ctx->stream);
    cudaStreamDestroy (ctx->stream);
  }
  /* Destroying the pool returns its cached memory; blocks still allocated (tensors not freed
   * before the backend) are released with it. */
  if (ctx->pool)
    cudaMemPoolDestroy (ctx->pool);
  if (ctx->bad_dev)
    cudaFree (ctx->bad_dev);
  free (ctx);
}

void
hv_k_bind (HvKCtx *ctx)
{
  int cur = -1;
  if (cudaGetDevice (&cur) != cudaSuccess || cur != ctx->device)
    cudaSetDevice (ctx->device);
}

cudaStream_t
hv_k_ctx_stream (HvKCtx *ctx)
{
  return ctx->stream;
}

int
hv_k_ctx_sm (HvKCtx *ctx)
{
  return ctx->sm;
}

const char *
hv_k_ctx_device_name (HvKCtx *ctx)
{
  return ctx->name;
}

const char *
hv_k_ctx_error (HvKCtx *ctx)
{
  return ctx->err;
}

void
hv_k_set_fp8_mode (HvKCtx *ctx, HvKFp8Mode mode)
{
  /* the fp8 tensor cores exist from sm_89 (Ada) on */
  ctx->fp8_mode = ctx->sm >= 89 ? mode : HV_K_FP8_DEQUANT;
}

HvKFp8Mode
hv_k_get_fp8_mode (HvKCtx *ctx)
{
  return ctx->fp8_mode;
}

void *
hv_k_alloc (HvKCtx *ctx, size_t nbytes)
{
  void *p = NULL;
  cudaError_t e;
  if (nbytes == 0)
    nbytes = 1;
  if (ctx->pool)
    e = cudaMallocFromPoolAsync (&p, nbytes, ctx->pool, ctx->stream);
  else
    e = cudaMalloc (&p, nbytes);
  if (e == cudaErrorMemoryAllocation && ctx->pool) {
    /* The pool keeps every freed block (release threshold = max); fragmented, those can add up
     * to the memory a large request needs. Let queued frees complete, hand the unused blocks
     * back to the device and try once more. */
    cudaGetLastError ();
    cudaStreamSynchronize (ctx->stream);
    cudaMemPoolTrimTo (ctx->pool, 0);
    e = cudaMallocFromPoolAsync (&p, nbytes, ctx->pool, ctx->stream);
  }
  if (e != cudaSuccess) {
    p = NULL;
    cudaGetLastError ();   /* an allocation failure is not sticky: clear it */
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo (&free_b, &total_b);
    hv_k_fail (ctx, "out of GPU memory: cannot allocate %.1f MiB (%s; %.1f of %.1f GiB free)",
               nbytes / 1048576.0, cudaGetErrorString (e), free_b / 1073741824.0,
               total_b / 1073741824.0);
    return NULL;
  }
  if (!ctx->pool) {
    ctx->plain_used += nbytes;   /* approximate: frees are not sized */
    if (ctx->plain_used > ctx->plain_peak)
      ctx->plain_peak = ctx->plain_used;
  }
  return p;
}

void
hv_k_free (HvKCtx *ctx, void *p)
{
  if (!p)
    return;
  if (ctx->pool)
    cudaFreeAsync (p, ctx->stream);
  else
    cudaFree (p);
}

int
hv_k_mem_stats (HvKCtx *ctx, size_t *used, size_t *peak)
{
  if (!ctx->pool) {
    *used = ctx->plain_used;
    *peak = ctx->plain_peak;
    return 0;
  }
  uint64_t u = 0, h = 0;
  cudaError_t e = cudaMemPoolGetAttribute (ctx->pool, cudaMemPoolAttrUsedMemCurrent, &u);
  if (e == cudaSuccess)
    e = cudaMemPoolGetAttribute (ctx->pool, cudaMemPoolAttrUsedMemHigh, &h);
  if (e != cudaSuccess)
    return hv_k_fail (ctx, "cudaMemPoolGetAttribute: %s", cudaGetErrorString (e));
  *used = (size_t) u;
  *peak = (size_t) h;
  return 0;
}

void
hv_k_mem_reset_peak (HvKCtx *ctx)
{
  if (ctx->pool) {
    uint64_t zero = 0;
    cudaMemPoolSetAttribute (ctx->pool, cudaMemPoolAttrUsedMemHigh, &zero);
  } else {
    ctx->plain_peak = ctx->plain_used;
  }
}

int
hv_k_synchronize (HvKCtx *ctx)
{
  cudaError_t e = cudaStreamSynchronize (ctx->stream);
  if (e == cudaSuccess)
    e = cudaGetLastError ();
  if (e != cudaSuccess)
    return hv_k_fail (ctx, "CUDA error while running queued GPU work: %s (%s)",
                      cudaGetErrorString (e), cudaGetErrorName (e));
  return 0;
}

int
hv_k_take_bad_index (HvKCtx *ctx, int64_t *pos, int64_t *id)
{
  HvKBadIndex h;
  memset (&h, 0, sizeof h);
  cudaError_t e = cudaMemcpyAsync (&h, ctx->bad_dev, sizeof h, cudaMemcpyDeviceToHost, ctx->stream);
  if (e == cudaSuccess)
    e = cudaStreamSynchronize (ctx->stream);
  if (e != cudaSuccess || !h.set) {
    if (e != cudaSuccess)
      cudaGetLastError ();   /* hv_k_synchronize has reported the stream's failure already */
    return 0;
  }
  *pos = h.pos;
  *id = h.id;
  cudaMemsetAsync (ctx->bad_dev, 0, sizeof h, ctx->stream);
  return 1;
}

int
hv_k_memcpy (HvKCtx *ctx, void *dst, const void *src, size_t nbytes, int kind)
{
  cudaError_t e = cudaMemcpyAsync (dst, src, nbytes, (cudaMemcpyKind) kind, ctx->stream);
  if (e == cudaSuccess && kind == cudaMemcpyDeviceToHost)
    e = cudaStreamSynchronize (ctx->stream);
  if (e != cudaSuccess)
    return hv_k_fail (ctx, "cudaMemcpy of %.1f MiB failed: %s (%s)", nbytes / 1048576.0,
                      cudaGetErrorString (e), cudaGetErrorName (e));
  return 0;
}
