/* attention-wgmma-common.cuh — what the two Hopper attention kernels (attention-wgmma.cu,
 * attention-wgmma-ws.cu) do identically between their wgmma issues: the online softmax of one
 * 64-row × 128-key score tile in the wgmma accumulator layout (thread: rows g = lane/4 and g+8
 * of its warp's 16, columns 8c + 2·(lane%4) + {0,1}), and the O rescale + packing of P into
 * the register A operand of the next wgmma. */
#pragma once
#include "attention-common.cuh"
#include "wgmma.cuh"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
namespace hv_attn {

/* Online softmax of s (scores of key tile kt of query rows qa, qb): s becomes the
 * probabilities (not yet normalised), m/l are updated, a0/a1 = factor for the rows' old O. */
__device__ __forceinline__ void
wg_softmax (const AttnParams &p, int b, int kt, int64_t q0, int64_t q_last, int qmin, int qmax,
            int64_t qa, int64_t qb, int t4, float (&s)[64], float &m0, float &m1, float &l0,
            float &l1, float &a0, float &a1)
{
  using hv_wg::ex2;
  const int mode = tile_mode (p, b, kt, WG_BC, q0, q_last, qmin, qmax);
  const int64_t k0 = (int64_t) kt * WG_BC;
  float mx0 = -HV_CUDA_INF, mx1 = -HV_CUDA_INF;
#pragma unroll
  for (int c = 0; c < 16; c++) {   /* 8-column chunk c: s[4c..4c+3] */
#pragma unroll
    for (int e = 0; e < 4; e++)
      s[4 * c + e] *= p.scale_log2;
    if (mode == TILE_MASKED) {
      int64_t kj = k0 + c * 8 + 2 * t4;
      if (!allowed (p, b, qa, kj)) s[4 * c] = -HV_CUDA_INF;
      if (!allowed (p, b, qa, kj + 1)) s[4 * c + 1] = -HV_CUDA_INF;
      if (!allowed (p, b, qb, kj)) s[4 * c + 2] = -HV_CUDA_INF;
      if (!allowed (p, b, qb, kj + 1)) s[4 * c + 3] = -HV_CUDA_INF;
    }
    mx0 = fmaxf (mx0, fmaxf (s[4 * c], s[4 * c + 1]));
    mx1 = fmaxf (mx1, fmaxf (s[4 * c + 2], s[4 * c + 3]));
  }
  /* the 4 threads of a quad hold rows g and g+8 */
  mx0 = fmaxf (mx0, __shfl_xor_sync (0xffffffffu, mx0, 1));
  mx0 = fmaxf (mx0, __shfl_xor_sync (0xffffffffu, mx0, 2));
  mx1 = fmaxf (mx1, __shfl_xor_sync (0xffffffffu, mx1, 1));
  mx1 = fmaxf (mx1, __shfl_xor_sync (0xffffffffu, mx1, 2));
  const float mn0 = fmaxf (m0, mx0), mn1 = fmaxf (m1, mx1);
  /* a row with nothing allowed so far keeps max -inf: subtract 0 so exp2 gives 0, not NaN */
  const float mu0 = mn0 == -HV_CUDA_INF ? 0.0f : mn0;
  const float mu1 = mn1 == -HV_CUDA_INF ? 0.0f : mn1;
  a0 = ex2 (m0 - mu0);
  a1 = ex2 (m1 - mu1);
  m0 = mn0;
  m1 = mn1;
  float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
  for (int c = 0; c < 16; c++) {
    s[4 * c] = ex2 (s[4 * c] - mu0);
    s[4 * c + 1] = ex2 (s[4 * c + 1] - mu0);
    s[4 * c + 2] = ex2 (s[4 * c + 2] - mu1);
    s[4 * c + 3] = ex2 (s[4 * c + 3] - mu1);
    rs0 += s[4 * c] + s[4 * c + 1];
    rs1 += s[4 * c + 2] + s[4 * c + 3];
  }
  l0 = l0 * a0 + rs0;
  l1 = l1 * a1 + rs1;
}

/* With no P·V in flight: O rescaled, P packed as the A operand (k-step kk covers keys
 * 16kk..16kk+15 = accumulator chunks 2kk and 2kk+1). */
__device__ __forceinline__ void
wg_rescale_pack (float (&o)[64], uint32_t (&pf)[8][4], const float (&s)[64], float a0, float a1)
{
#pragma unroll
  for (int c = 0; c < 16; c++) {
    o[4 * c] *= a0;
    o[4 * c + 1] *= a0;
    o[4 * c + 2] *= a1;
    o[4 * c + 3] *= a1;
  }
#pragma unroll
  for (int kk = 0; kk < 8; kk++) {
    pf[kk][0] = pack_bf16 (s[8 * kk], s[8 * kk + 1]);       /* row g,   keys 2t, 2t+1 */
    pf[kk][1] = pack_bf16 (s[8 * kk + 2], s[8 * kk + 3]);   /* row g+8, keys 2t, 2t+1 */
    pf[kk][2] = pack_bf16 (s[8 * kk + 4], s[8 * kk + 5]);   /* row g,   keys 2t+8, 2t+9 */
    pf[kk][3] = pack_bf16 (s[8 * kk + 6], s[8 * kk + 7]);   /* row g+8, keys 2t+8, 2t+9 */
  }
}

} /* namespace hv_attn */
#endif
