/* attention-common.cuh — what the attention kernels of attention.cu (mma.sync, fp32) and
 * attention-wgmma.cu (Hopper wgmma) share: the parameter block, the mask predicates, the
 * per-key-tile SKIP/FULL/MASKED classification and small cp.async helpers.
 *
 * The types live in a named namespace (not an anonymous one) because attention.cu passes an
 * AttnParams to the wgmma launcher defined in the other translation unit. */
#pragma once
#include "cuda-common.cuh"
#include <limits.h>

namespace hv_attn {

enum { TILE_SKIP = 0, TILE_FULL = 1, TILE_MASKED = 2 };

struct AttnParams {
  const __nv_bfloat16 *qh, *kh, *vh;   /* bf16 paths: q, k, v as [B, L, H(kv), D] */
  const __nv_bfloat16 *vt;             /* wgmma path: v as [B, Hkv, D, Lkp], zero-padded keys */
  int64_t Lkp;                         /* keys per row of vt (a multiple of the key tile) */
  const float *qf, *kf, *vf;           /* fp32 path */
  float *out;
  int64_t Lq, Lk;
  int H, Hkv, D;
  float scale_log2;                    /* softmax scale × log2(e): exponentials are exp2 */
  const int32_t *seg_q, *seg_k;
  const uint8_t *allow;
  int allow_batched;
  int causal;
  const int2 *ktile_mm;                /* [B, nkt] min/max of seg_k per key tile, or NULL */
  int nkt;                             /* key tiles of the kernel's tile size */
};

static __device__ __forceinline__ bool
allowed (const AttnParams &p, int b, int64_t qi, int64_t kj)
{
  if (qi >= p.Lq || kj >= p.Lk)
    return false;
  if (p.causal && kj > qi)
    return false;
  if (p.seg_q && p.seg_q[b * p.Lq + qi] != p.seg_k[b * p.Lk + kj])
    return false;
  if (p.allow && !p.allow[((p.allow_batched ? b * p.Lq : 0) + qi) * p.Lk + kj])
    return false;
  return true;
}

/* The same answer for every thread of the block (all inputs are block-uniform). */
static __device__ __forceinline__ int
tile_mode (const AttnParams &p, int b, int kt, int bc, int64_t q0, int64_t q_last, int qmin,
           int qmax)
{
  int64_t k0 = (int64_t) kt * bc;
  int64_t k_last = k0 + bc <= p.Lk ? k0 + bc - 1 : p.Lk - 1;
  if (p.causal && k0 > q_last)
    return TILE_SKIP;
  bool need = k0 + bc > p.Lk || p.allow != NULL;
  if (p.causal && k_last > q0)
    need = true;
  if (p.seg_q) {
    int2 km = p.ktile_mm[(int64_t) b * p.nkt + kt];
    if (km.y < qmin || km.x > qmax)
      return TILE_SKIP;
    if (!(qmin == qmax && km.x == km.y))
      need = true;
  }
  return need ? TILE_MASKED : TILE_FULL;
}

/* One past the last key tile of `bc` keys that a block whose last query row is q_last can
 * need: causal attention stops at the diagonal. */
static __device__ __forceinline__ int
key_tile_end (const AttnParams &p, int64_t q_last, int bc)
{
  int64_t end = (p.Lk + bc - 1) / bc;
  if (p.causal && q_last / bc + 1 < end)
    end = q_last / bc + 1;
  return (int) end;
}

/* The first key tile from kt on that tile_mode does not SKIP (kt_end when none); the same
 * answer for every thread of the block. */
static __device__ __forceinline__ int
next_active_tile (const AttnParams &p, int b, int kt, int kt_end, int bc, int64_t q0,
                  int64_t q_last, int qmin, int qmax)
{
  while (kt < kt_end && tile_mode (p, b, kt, bc, q0, q_last, qmin, qmax) == TILE_SKIP)
    kt++;
  return kt;
}

/* min/max of seg_q over this block's valid query rows, computed by warp 0 into s[0..1]. */
static __device__ __forceinline__ void
query_seg_range (const AttnParams &p, int b, int64_t q0, int rows, int *s)
{
  if (threadIdx.x >= 32)
    return;
  int mn = INT_MAX, mx = INT_MIN;
  if (p.seg_q) {
    for (int r = threadIdx.x; r < rows; r += 32) {
      int64_t qi = q0 + r;
      if (qi < p.Lq) {
        int v = p.seg_q[b * p.Lq + qi];
        mn = min (mn, v);
        mx = max (mx, v);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      mn = min (mn, __shfl_xor_sync (0xffffffffu, mn, o));
      mx = max (mx, __shfl_xor_sync (0xffffffffu, mx, o));
    }
  }
  if (threadIdx.x == 0) {
    s[0] = mn;
    s[1] = mx;
  }
}

/* 16-byte global→shared copy; src_bytes 0 writes zeros (tails). */
static __device__ __forceinline__ void
cp_async16 (void *smem, const void *gmem, int src_bytes)
{
  unsigned int s = (unsigned int) __cvta_generic_to_shared (smem);
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(s), "l"(gmem), "r"(src_bytes));
}

static __device__ __forceinline__ void
cp_async_commit ()
{
  asm volatile ("cp.async.commit_group;\n" ::);
}

static __device__ __forceinline__ void
cp_async_wait_all ()
{
  asm volatile ("cp.async.wait_group 0;\n" ::: "memory");
}

static __device__ __forceinline__ uint32_t
pack_bf16 (float lo, float hi)
{
  __nv_bfloat162 v = __floats2bfloat162_rn (lo, hi);   /* .x (low half) = lo */
  return *(const uint32_t *) &v;
}

/* ---- the Hopper kernel (attention-wgmma.cu) ------------------------------------------------ */

constexpr int WG_BR = 128;   /* query rows per block: two consumer warpgroups of 64 */
constexpr int WG_BC = 128;   /* keys per tile */

/* 1 when this build carries sm_90a code, the device is compute 9.0 and the kernel's image
 * for it is that sm_90a code (cudaFuncGetAttributes). Cached per device. */
int wgmma_available (HvKCtx *ctx);
/* vt [B, Hkv, D, Lkp] (bf16) = vᵀ of v [B, Lk, Hkv, D] (f32), keys Lk..Lkp-1 zero. */
int wgmma_pack_v (HvKCtx *ctx, __nv_bfloat16 *vt, const float *v, int64_t B, int64_t Lk,
                  int Hkv, int D, int64_t Lkp);
/* Launches the kernel; p.qh, p.kh, p.vt, p.Lkp (and the masks, with ktile_mm made for
 * WG_BC-key tiles) set; D == 128. */
int wgmma_launch (HvKCtx *ctx, const AttnParams &p, int64_t B);

/* ---- the warp-specialised Hopper kernel (attention-wgmma-ws.cu) ---------------------------- */
/* 1 when wgmma_available would say so for this kernel, the device's opt-in shared memory fits
 * its 225 KB and the driver exports cuTensorMapEncodeTiled. */
int wgmma_ws_available (HvKCtx *ctx);
/* Same inputs as wgmma_launch; fails (hv_k_fail) when a tensor map cannot be made. */
int wgmma_ws_launch (HvKCtx *ctx, const AttnParams &p, int64_t B);

} /* namespace hv_attn */
