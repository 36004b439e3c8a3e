/* attention.cu — fused attention (flash-attention style: online softmax, no Lq×Lk matrix in
 * memory) with HunyuanVideo's masks.
 *
 * Three kernels:
 *  - k_flash_wgmma (attention-wgmma.cu): D = 128 on Hopper (sm_90a build, compute 9.0 device),
 *    warpgroup MMA; the default there (HV_CUDA_ATTN=mma or f32 selects the others).
 *  - k_flash_mma: D = 32, 64, 128 on sm_80+. q, k, v are first rounded to bf16 (one pass each);
 *    a block of 4 warps owns 64 query rows of one head (16 per warp), streams 64-key tiles of K
 *    and V through double-buffered shared memory (cp.async), computes S = Q·Kᵀ and O += P·V
 *    with mma.sync m16n8k16 (bf16 in, fp32 accumulate) and keeps the softmax state (row max,
 *    row sum) in registers. Shared-memory rows are XOR-swizzled in 16-byte chunks so ldmatrix
 *    is free of bank conflicts.
 *  - k_flash_f32: any D <= 512 (the VAE's 512-wide mid-block attention, odd head sizes), all
 *    fp32 CUDA-core arithmetic, 16 queries × 16 keys per step.
 *
 * Masks: key tiles are classified once per block (uniform branch): SKIP (no key allowed for any
 * query of the block: disjoint segments, or entirely above the causal diagonal), FULL (every
 * pair allowed: no per-element test) or MASKED (per-element test). For the DiT's segment mask
 * (video + valid text in one segment, padded text in another) almost every tile is FULL and the
 * padded keys' tiles are SKIPped. Rows with no allowed key produce zeros. */
#include "attention-common.cuh"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

namespace {

using namespace hv_attn;

/* ---- the bf16 tensor-core kernel ------------------------------------------------------------ */

__device__ __forceinline__ void
ldmatrix_x4 (uint32_t *r, const void *smem)
{
  unsigned int a = (unsigned int) __cvta_generic_to_shared (smem);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

__device__ __forceinline__ void
ldmatrix_x4_trans (uint32_t *r, const void *smem)
{
  unsigned int a = (unsigned int) __cvta_generic_to_shared (smem);
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

/* c (16×8 fp32) += a (16×16 bf16, row) · b (16×8 bf16, col) */
__device__ __forceinline__ void
mma_bf16 (float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Element offset of (row, 16-byte chunk) in a swizzled [rows][D] bf16 tile. */
template <int D>
__device__ __forceinline__ int
swz (int row, int chunk)
{
  constexpr int NCH = D / 8;
  constexpr int MASK = (NCH < 8 ? NCH : 8) - 1;
  return row * D + ((chunk ^ (row & MASK)) << 3);
}

constexpr int MMA_WARPS = 4;
constexpr int MMA_BR = MMA_WARPS * 16;   /* query rows per block */
constexpr int MMA_BC = 64;               /* keys per tile */

template <int D>
constexpr size_t
mma_smem_bytes ()
{
  return (size_t) (MMA_BR + 4 * MMA_BC) * D * 2;   /* Q + double-buffered K and V */
}

template <int D>
__global__ void __launch_bounds__ (MMA_WARPS * 32)
k_flash_mma (AttnParams p)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  constexpr int NT = MMA_WARPS * 32, BR = MMA_BR, BC = MMA_BC, NCH = D / 8;
  extern __shared__ __align__ (128) unsigned char smem_raw[];
  __nv_bfloat16 *Qs = (__nv_bfloat16 *) smem_raw;
  __nv_bfloat16 *Ks = Qs + BR * D;            /* [2][BC][D] */
  __nv_bfloat16 *Vs = Ks + 2 * BC * D;        /* [2][BC][D] */
  __shared__ int s_qseg[2];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int b = blockIdx.z, h = blockIdx.y;
  const int hk = h / (p.H / p.Hkv);
  const int64_t q0 = (int64_t) blockIdx.x * BR;
  const int64_t q_last = (q0 + BR <= p.Lq ? q0 + BR : p.Lq) - 1;
  const int64_t qts = (int64_t) p.H * D, kts = (int64_t) p.Hkv * D;
  const __nv_bfloat16 *qg = p.qh + (int64_t) b * p.Lq * qts + (int64_t) h * D;
  const __nv_bfloat16 *kg = p.kh + (int64_t) b * p.Lk * kts + (int64_t) hk * D;
  const __nv_bfloat16 *vg = p.vh + (int64_t) b * p.Lk * kts + (int64_t) hk * D;

  /* Q tile: rows past Lq are zero-filled (computed, never stored) */
  for (int idx = tid; idx < BR * NCH; idx += NT) {
    int r = idx / NCH, c = idx % NCH;
    int64_t qi = q0 + r;
    bool ok = qi < p.Lq;
    cp_async16 (&Qs[swz<D> (r, c)], qg + (ok ? qi : 0) * qts + c * 8, ok ? 16 : 0);
  }
  query_seg_range (p, b, q0, BR, s_qseg);
  __syncthreads ();
  const int qmin = s_qseg[0], qmax = s_qseg[1];

  const int kt_end = key_tile_end (p, q_last, BC);

  /* K and V tiles: keys past Lk are zero-filled so that 0-probability keys add 0 (not NaN) */
  auto load_kv = [&] (int kt, int buf) {
    int64_t k0 = (int64_t) kt * BC;
    __nv_bfloat16 *kd = Ks + buf * BC * D, *vd = Vs + buf * BC * D;
    for (int idx = tid; idx < BC * NCH; idx += NT) {
      int r = idx / NCH, c = idx % NCH;
      int64_t kj = k0 + r;
      bool ok = kj < p.Lk;
      int64_t off = (ok ? kj : 0) * kts + c * 8;
      cp_async16 (&kd[swz<D> (r, c)], kg + off, ok ? 16 : 0);
      cp_async16 (&vd[swz<D> (r, c)], vg + off, ok ? 16 : 0);
    }
  };
  auto next_active = [&] (int kt) {
    return next_active_tile (p, b, kt, kt_end, BC, q0, q_last, qmin, qmax);
  };

  int kt = next_active (0);
  if (kt < kt_end)
    load_kv (kt, 0);
  cp_async_commit ();
  cp_async_wait_all ();
  __syncthreads ();

  /* this warp's 16 query rows as mma A fragments, kept in registers for the whole loop */
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kc = 0; kc < D / 16; kc++)
    ldmatrix_x4 (qf[kc], &Qs[swz<D> (warp * 16 + (lane & 15), kc * 2 + (lane >> 4))]);

  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; j++)
    o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  /* softmax state of rows g and g+8 (g = lane / 4); l is this thread's partial sum */
  float m0 = -HV_CUDA_INF, m1 = -HV_CUDA_INF, l0 = 0.0f, l1 = 0.0f;
  const int g = lane >> 2, t4 = lane & 3;
  const int64_t qa = q0 + warp * 16 + g, qb = qa + 8;

  int buf = 0;
  while (kt < kt_end) {
    const int mode = tile_mode (p, b, kt, BC, q0, q_last, qmin, qmax);
    const int kt_next = next_active (kt + 1);
    if (kt_next < kt_end)
      load_kv (kt_next, buf ^ 1);   /* overlaps with this tile's math */
    cp_async_commit ();

    const __nv_bfloat16 *Kb = Ks + buf * BC * D, *Vb = Vs + buf * BC * D;
    float s[BC / 8][4];
#pragma unroll
    for (int j = 0; j < BC / 8; j++)
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
#pragma unroll
      for (int pp = 0; pp < BC / 16; pp++) {
        uint32_t kb[4];
        ldmatrix_x4 (kb, &Kb[swz<D> (pp * 16 + (lane & 7) + ((lane >> 4) << 3), kc * 2 + ((lane >> 3) & 1))]);
        mma_bf16 (s[2 * pp], qf[kc], kb[0], kb[1]);
        mma_bf16 (s[2 * pp + 1], qf[kc], kb[2], kb[3]);
      }
    }

    const int64_t k0 = (int64_t) kt * BC;
    float mx0 = -HV_CUDA_INF, mx1 = -HV_CUDA_INF;
#pragma unroll
    for (int j = 0; j < BC / 8; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++)
        s[j][e] *= p.scale_log2;
      if (mode == TILE_MASKED) {
        int64_t kj = k0 + j * 8 + 2 * t4;
        if (!allowed (p, b, qa, kj)) s[j][0] = -HV_CUDA_INF;
        if (!allowed (p, b, qa, kj + 1)) s[j][1] = -HV_CUDA_INF;
        if (!allowed (p, b, qb, kj)) s[j][2] = -HV_CUDA_INF;
        if (!allowed (p, b, qb, kj + 1)) s[j][3] = -HV_CUDA_INF;
      }
      mx0 = fmaxf (mx0, fmaxf (s[j][0], s[j][1]));
      mx1 = fmaxf (mx1, fmaxf (s[j][2], s[j][3]));
    }
    /* the 4 threads of a quad share rows g and g+8 */
    mx0 = fmaxf (mx0, __shfl_xor_sync (0xffffffffu, mx0, 1));
    mx0 = fmaxf (mx0, __shfl_xor_sync (0xffffffffu, mx0, 2));
    mx1 = fmaxf (mx1, __shfl_xor_sync (0xffffffffu, mx1, 1));
    mx1 = fmaxf (mx1, __shfl_xor_sync (0xffffffffu, mx1, 2));
    const float mn0 = fmaxf (m0, mx0), mn1 = fmaxf (m1, mx1);
    /* a row with nothing allowed so far keeps max -inf: subtract 0 so exp2 gives 0, not NaN */
    const float mu0 = mn0 == -HV_CUDA_INF ? 0.0f : mn0;
    const float mu1 = mn1 == -HV_CUDA_INF ? 0.0f : mn1;
    const float a0 = exp2f (m0 - mu0), a1 = exp2f (m1 - mu1);
    m0 = mn0;
    m1 = mn1;
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int j = 0; j < BC / 8; j++) {
      s[j][0] = exp2f (s[j][0] - mu0);
      s[j][1] = exp2f (s[j][1] - mu0);
      s[j][2] = exp2f (s[j][2] - mu1);
      s[j][3] = exp2f (s[j][3] - mu1);
      rs0 += s[j][0] + s[j][1];
      rs1 += s[j][2] + s[j][3];
    }
    l0 = l0 * a0 + rs0;
    l1 = l1 * a1 + rs1;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
      o[j][0] *= a0;
      o[j][1] *= a0;
      o[j][2] *= a1;
      o[j][3] *= a1;
    }

    /* O += P · V; P's accumulator layout is exactly the A-fragment layout of the next mma */
#pragma unroll
    for (int kk = 0; kk < BC / 16; kk++) {
      uint32_t pa[4];
      pa[0] = pack_bf16 (s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack_bf16 (s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack_bf16 (s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack_bf16 (s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t vb[4];
        ldmatrix_x4_trans (vb, &Vb[swz<D> (kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), dp * 2 + (lane >> 4))]);
        mma_bf16 (o[2 * dp], pa, vb[0], vb[1]);
        mma_bf16 (o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }

    /* the next tile has landed and every warp is done with this buffer */
    cp_async_wait_all ();
    __syncthreads ();
    buf ^= 1;
    kt = kt_next;
  }

  l0 += __shfl_xor_sync (0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync (0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  float *og = p.out + (int64_t) b * p.Lq * qts + (int64_t) h * D;
  if (qa < p.Lq) {
#pragma unroll
    for (int j = 0; j < D / 8; j++)
      *(float2 *) (og + qa * qts + j * 8 + 2 * t4) = make_float2 (o[j][0] * inv0, o[j][1] * inv0);
  }
  if (qb < p.Lq) {
#pragma unroll
    for (int j = 0; j < D / 8; j++)
      *(float2 *) (og + qb * qts + j * 8 + 2 * t4) = make_float2 (o[j][2] * inv1, o[j][3] * inv1);
  }
#else
  __trap ();
#endif
}

/* ---- the fp32 kernel for any head dim --------------------------------------------------------- */

constexpr int F_BR = 16, F_BC = 16, F_THREADS = 128;   /* 8 threads per query row */

size_t
f32_smem_bytes (int D)
{
  /* Q and K rows padded by one float (no bank conflicts across rows), V, P */
  return (size_t) (2 * F_BR * (D + 1) + F_BC * D + F_BR * (F_BC + 1)) * sizeof (float);
}

template <int DPT>   /* output values per thread: ceil(D / 8) <= DPT */
__global__ void __launch_bounds__ (F_THREADS)
k_flash_f32 (AttnParams p)
{
  extern __shared__ __align__ (16) float fsm[];
  const int D = p.D, DP = D + 1;
  float *Qs = fsm;                    /* [F_BR][D+1] */
  float *Ks = Qs + F_BR * DP;         /* [F_BC][D+1] */
  float *Vs = Ks + F_BC * DP;         /* [F_BC][D] */
  float *Ps = Vs + F_BC * D;          /* [F_BR][F_BC+1] */
  __shared__ int s_qseg[2];

  const int tid = threadIdx.x, r = tid >> 3, sub = tid & 7;
  const int b = blockIdx.z, h = blockIdx.y;
  const int hk = h / (p.H / p.Hkv);
  const int64_t q0 = (int64_t) blockIdx.x * F_BR;
  const int64_t q_last = (q0 + F_BR <= p.Lq ? q0 + F_BR : p.Lq) - 1;
  const int64_t qts = (int64_t) p.H * D, kts = (int64_t) p.Hkv * D;
  const float *qg = p.qf + (int64_t) b * p.Lq * qts + (int64_t) h * D;
  const float *kg = p.kf + (int64_t) b * p.Lk * kts + (int64_t) hk * D;
  const float *vg = p.vf + (int64_t) b * p.Lk * kts + (int64_t) hk * D;

  for (int idx = tid; idx < F_BR * D; idx += F_THREADS) {
    int rr = idx / D, d = idx % D;
    int64_t qi = q0 + rr;
    Qs[rr * DP + d] = qi < p.Lq ? qg[qi * qts + d] : 0.0f;
  }
  query_seg_range (p, b, q0, F_BR, s_qseg);
  __syncthreads ();
  const int qmin = s_qseg[0], qmax = s_qseg[1];

  const int kt_end = key_tile_end (p, q_last, F_BC);

  float o[DPT];
#pragma unroll
  for (int i = 0; i < DPT; i++)
    o[i] = 0.0f;
  float m = -HV_CUDA_INF, l = 0.0f;
  const int64_t qi = q0 + r;

  for (int kt = 0; kt < kt_end; kt++) {
    const int mode = tile_mode (p, b, kt, F_BC, q0, q_last, qmin, qmax);
    if (mode == TILE_SKIP)
      continue;   /* uniform: every thread skips */
    const int64_t k0 = (int64_t) kt * F_BC;
    for (int idx = tid; idx < F_BC * D; idx += F_THREADS) {
      int rr = idx / D, d = idx % D;
      int64_t kj = k0 + rr;
      bool ok = kj < p.Lk;
      Ks[rr * DP + d] = ok ? kg[kj * kts + d] : 0.0f;
      Vs[rr * D + d] = ok ? vg[kj * kts + d] : 0.0f;
    }
    __syncthreads ();

    float s0 = 0.0f, s1 = 0.0f;
    const float *qr = Qs + r * DP, *ka = Ks + sub * DP, *kb = Ks + (sub + 8) * DP;
    for (int d = 0; d < D; d++) {
      float qv = qr[d];
      s0 += qv * ka[d];
      s1 += qv * kb[d];
    }
    s0 *= p.scale_log2;
    s1 *= p.scale_log2;
    if (mode == TILE_MASKED) {
      if (!allowed (p, b, qi, k0 + sub)) s0 = -HV_CUDA_INF;
      if (!allowed (p, b, qi, k0 + sub + 8)) s1 = -HV_CUDA_INF;
    }
    /* the 8 threads of row r are 8 consecutive lanes */
    float mx = fmaxf (s0, s1);
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 1));
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 2));
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, 4));
    const float mn = fmaxf (m, mx);
    const float mu = mn == -HV_CUDA_INF ? 0.0f : mn;
    const float alpha = exp2f (m - mu);
    m = mn;
    const float p0 = exp2f (s0 - mu), p1 = exp2f (s1 - mu);
    l = l * alpha + p0 + p1;
    Ps[r * (F_BC + 1) + sub] = p0;
    Ps[r * (F_BC + 1) + sub + 8] = p1;
    __syncwarp ();
    const float *pr = Ps + r * (F_BC + 1);
#pragma unroll
    for (int i = 0; i < DPT; i++) {
      int d = sub + 8 * i;
      if (d < D) {
        float acc = o[i] * alpha;
#pragma unroll
        for (int c = 0; c < F_BC; c++)
          acc += pr[c] * Vs[c * D + d];
        o[i] = acc;
      }
    }
    __syncthreads ();   /* before the next tile overwrites K, V, P */
  }

  l += __shfl_xor_sync (0xffffffffu, l, 1);
  l += __shfl_xor_sync (0xffffffffu, l, 2);
  l += __shfl_xor_sync (0xffffffffu, l, 4);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  if (qi < p.Lq) {
    float *og = p.out + (int64_t) b * p.Lq * qts + (int64_t) h * D + qi * qts;
#pragma unroll
    for (int i = 0; i < DPT; i++) {
      int d = sub + 8 * i;
      if (d < D)
        og[d] = o[i] * inv;
    }
  }
}

/* min/max of seg_k over each key tile of `bc` keys, per batch. */
__global__ void
k_seg_tiles (int2 *mm, const int32_t *seg_k, int64_t Lk, int nkt, int bc, int B)
{
  int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t) B * nkt)
    return;
  int b = (int) (i / nkt), kt = (int) (i % nkt);
  int mn = INT_MAX, mx = INT_MIN;
  for (int64_t j = (int64_t) kt * bc; j < (int64_t) (kt + 1) * bc && j < Lk; j++) {
    int v = seg_k[b * Lk + j];
    mn = min (mn, v);
    mx = max (mx, v);
  }
  mm[i] = make_int2 (mn, mx);
}

template <int D>
int
launch_mma (HvKCtx *ctx, const AttnParams &p, int64_t B)
{
  constexpr size_t smem = mma_smem_bytes<D> ();
  /* set on every call: the attribute belongs to the current device */
  cudaError_t e = cudaFuncSetAttribute (k_flash_mma<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem);
  if (e != cudaSuccess)
    return hv_k_fail (ctx, "attention: cannot reserve %zu bytes of shared memory: %s", smem, cudaGetErrorString (e));
  dim3 grid ((unsigned int) ((p.Lq + MMA_BR - 1) / MMA_BR), (unsigned int) p.H, (unsigned int) B);
  k_flash_mma<D><<<grid, MMA_WARPS * 32, smem, ctx->stream>>> (p);
  return hv_k_launched (ctx, "attention (bf16 mma)");
}

template <int DPT>
int
launch_f32 (HvKCtx *ctx, const AttnParams &p, int64_t B)
{
  size_t smem = f32_smem_bytes (p.D);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute (k_flash_f32<DPT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem);
    if (e != cudaSuccess)
      return hv_k_fail (ctx, "attention: cannot reserve %zu bytes of shared memory: %s", smem, cudaGetErrorString (e));
  }
  dim3 grid ((unsigned int) ((p.Lq + F_BR - 1) / F_BR), (unsigned int) p.H, (unsigned int) B);
  k_flash_f32<DPT><<<grid, F_THREADS, smem, ctx->stream>>> (p);
  return hv_k_launched (ctx, "attention (fp32)");
}

enum { KERNEL_F32 = 0, KERNEL_MMA = 1, KERNEL_WGMMA = 2, KERNEL_WGMMA_WS = 3 };

/* force_generic (tests) or HV_CUDA_ATTN=f32 → fp32 kernel; HV_CUDA_ATTN=mma → mma.sync kernel;
 * otherwise (unset or "wgmma") the Hopper wgmma kernel for D = 128 where the device is compute
 * 9.0 and this build has sm_90a code, else mma.sync (sm_80+, D = 32/64/128), else fp32.
 * HV_CUDA_ATTN=wgmma-ws asks for the warp-specialised variant (attention-wgmma-ws.cu), which
 * falls back like wgmma where it cannot run. */
int
choose_kernel (HvKCtx *ctx, int64_t D, int force_generic)
{
  const char *env = getenv ("HV_CUDA_ATTN");
  const bool env_f32 = env && strcmp (env, "f32") == 0, env_mma = env && strcmp (env, "mma") == 0;
  if (force_generic || env_f32 || ctx->sm < 80 || !(D == 32 || D == 64 || D == 128))
    return KERNEL_F32;
  if (env && strcmp (env, "wgmma-ws") == 0 && D == 128 && wgmma_ws_available (ctx))
    return KERNEL_WGMMA_WS;
  if (!env_mma && D == 128 && wgmma_available (ctx))
    return KERNEL_WGMMA;
  return KERNEL_MMA;
}

} /* namespace */

const char *
hv_k_attention_kernel (HvKCtx *ctx, int64_t D, int force_generic)
{
  static const char *const names[] = { "f32", "mma", "wgmma", "wgmma-ws" };
  return names[choose_kernel (ctx, D, force_generic)];
}

int
hv_k_attention (HvKCtx *ctx, float *out, const float *q, const float *k, const float *v,
                int64_t B, int64_t Lq, int64_t Lk, int64_t H, int64_t Hkv, int64_t D,
                const HvKAttnMask *mask, float scale, int force_generic)
{
  if (B == 0 || Lq == 0 || H == 0 || D == 0)
    return 0;
  if (D > HV_K_ATTN_MAX_D)
    return hv_k_fail (ctx, "attention: head dim %lld is larger than the supported %d",
                      (long long) D, HV_K_ATTN_MAX_D);
  if (Hkv <= 0 || H % Hkv != 0 || H > 65535 || B > 65535)
    return hv_k_fail (ctx, "attention: unsupported heads %lld / kv heads %lld / batch %lld",
                      (long long) H, (long long) Hkv, (long long) B);
  if (Lk == 0) {
    /* nothing to attend to: every row is "no allowed key" */
    cudaError_t e = cudaMemsetAsync (out, 0, (size_t) (B * Lq * H * D) * 4, ctx->stream);
    return e == cudaSuccess ? 0 : hv_k_fail (ctx, "attention: cudaMemsetAsync: %s", cudaGetErrorString (e));
  }

  AttnParams p;
  memset (&p, 0, sizeof p);
  p.out = out;
  p.Lq = Lq;
  p.Lk = Lk;
  p.H = (int) H;
  p.Hkv = (int) Hkv;
  p.D = (int) D;
  p.scale_log2 = scale * 1.4426950408889634f;
  if (mask) {
    p.seg_q = mask->seg_q;
    p.seg_k = mask->seg_q ? mask->seg_k : NULL;
    p.allow = mask->allow;
    p.allow_batched = mask->allow_batched;
    p.causal = mask->causal;
  }
  const int which = choose_kernel (ctx, D, force_generic);
  const bool wg = which == KERNEL_WGMMA || which == KERNEL_WGMMA_WS, mma = which == KERNEL_MMA;
  const int bc = wg ? WG_BC : mma ? MMA_BC : F_BC;
  int rc = 1;
  int2 *mm = NULL;
  __nv_bfloat16 *qh = NULL, *kh = NULL, *vh = NULL;

  if (p.seg_q) {
    p.nkt = (int) ((Lk + bc - 1) / bc);
    mm = (int2 *) hv_k_alloc (ctx, (size_t) (B * p.nkt) * sizeof (int2));
    if (!mm)
      return 1;
    int64_t n = B * p.nkt;
    k_seg_tiles<<<(unsigned int) ((n + 127) / 128), 128, 0, ctx->stream>>> (mm, p.seg_k, Lk, p.nkt, bc, (int) B);
    if (hv_k_launched (ctx, "attention (segment tiles)"))
      goto out;
    p.ktile_mm = mm;
  }

  if (wg) {
    /* q, k rounded to bf16 as for mma.sync; v transposed to [B, Hkv, D, Lkp] in the same pass */
    int64_t nq = B * Lq * H * D, nk = B * Lk * Hkv * D;
    p.Lkp = (Lk + WG_BC - 1) / WG_BC * WG_BC;
    qh = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) nq * 2);
    kh = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) nk * 2);
    vh = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) (B * Hkv * D * p.Lkp) * 2);
    if (!qh || !kh || !vh)
      goto out;
    if (hv_k_convert (ctx, qh, HV_K_BF16, q, HV_K_F32, nq, 1.0f) ||
        hv_k_convert (ctx, kh, HV_K_BF16, k, HV_K_F32, nk, 1.0f) ||
        wgmma_pack_v (ctx, vh, v, B, Lk, (int) Hkv, (int) D, p.Lkp))
      goto out;
    p.qh = qh;
    p.kh = kh;
    p.vt = vh;
    rc = which == KERNEL_WGMMA_WS ? wgmma_ws_launch (ctx, p, B) : wgmma_launch (ctx, p, B);
  } else if (mma) {
    int64_t nq = B * Lq * H * D, nk = B * Lk * Hkv * D;
    qh = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) nq * 2);
    kh = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) nk * 2);
    vh = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) nk * 2);
    if (!qh || !kh || !vh)
      goto out;
    if (hv_k_convert (ctx, qh, HV_K_BF16, q, HV_K_F32, nq, 1.0f) ||
        hv_k_convert (ctx, kh, HV_K_BF16, k, HV_K_F32, nk, 1.0f) ||
        hv_k_convert (ctx, vh, HV_K_BF16, v, HV_K_F32, nk, 1.0f))
      goto out;
    p.qh = qh;
    p.kh = kh;
    p.vh = vh;
    rc = D == 32 ? launch_mma<32> (ctx, p, B) : D == 64 ? launch_mma<64> (ctx, p, B) : launch_mma<128> (ctx, p, B);
  } else {
    p.qf = q;
    p.kf = k;
    p.vf = v;
    int dpt = (int) ((D + 7) / 8);
    rc = dpt <= 4 ? launch_f32<4> (ctx, p, B) : dpt <= 8 ? launch_f32<8> (ctx, p, B)
       : dpt <= 16 ? launch_f32<16> (ctx, p, B) : dpt <= 32 ? launch_f32<32> (ctx, p, B)
       : launch_f32<64> (ctx, p, B);
  }
out:
  hv_k_free (ctx, vh);
  hv_k_free (ctx, kh);
  hv_k_free (ctx, qh);
  hv_k_free (ctx, mm);
  return rc;
}
