/* attention-wgmma.cu — fused attention for Hopper (sm_90a) with warpgroup MMA (wgmma), head dim
 * 128: the DiT (24 heads), the token refiner and the Llama text encoder (32/8 heads, causal).
 * Same semantics as k_flash_mma in attention.cu (masks, GQA, tails, rows with no allowed key
 * give 0); selected at run time by hv_k_attention when the device is compute 9.0 and this build
 * carries sm_90a code (HV_CUDA_ATTN=wgmma|mma|f32 overrides, see attention.cu).
 *
 * Why: at the DiT's sizes attention is 80-87 % of a step and the issue's targets (L = 67,576:
 * <= 90 ms; L = 119,056: <= 280 ms, 24 heads x 128, H200) need ~620 TFLOP/s; mma.sync tops out
 * near 350 on Hopper (it issues from one warp at a time and reads operands through registers),
 * wgmma reads B (and here A for Q·Kᵀ) straight from shared memory and runs 64×N×16 per issue.
 *
 * Design (one block = 128 query rows of one (batch, head); 256 threads = 2 warpgroups):
 *  - Each warpgroup owns 64 query rows: S = Q·Kᵀ with wgmma m64n128k16 (A = Q and B = K from
 *    shared memory through descriptors), online softmax in registers, O += P·V with wgmma
 *    m64n128k16 where A = P comes from registers: the f32 accumulator layout of S (thread holds
 *    rows g, g+8 and column pairs 2t, 2t+1 of every 8-column chunk) is, chunk pair by chunk pair,
 *    the bf16 A-fragment layout, so P never touches shared memory (as in k_flash_mma).
 *  - Keys in tiles of 128. V is transposed once into vt [B, Hkv, D, Lkp] (bf16, keys padded
 *    with zeros to a whole tile) by k_pack_vt, so that both B operands are K-major and use one
 *    descriptor scheme (128-byte swizzle, LBO unused, SBO = 1024 B) and the V loads need no
 *    predicate. Q and K come from the existing bf16 conversion ([B, L, H, D]), tails
 *    zero-filled by cp.async.
 *  - Shared memory: every tile is 128 rows × 128 bf16 = 32 KB, stored as two 64-column blocks
 *    [2][128 rows][64] (each a 128B-swizzle region: row r's 16-byte chunk c at c ^ (r & 7) in
 *    its 1024-byte 8-row atom), 1024-byte aligned. Q (1) + K (2 stages) + Vᵀ (2 stages) =
 *    160 KB (+1 KB alignment slack): one block per SM (registers decide that anyway).
 *  - Loads: cp.async 16 B by all 256 threads (8 per thread per tile and operand), K two tiles
 *    ahead and V one tile ahead; completion by cp.async.wait_group + fence.proxy.async (the
 *    tensor core reads shared memory through the async proxy) + __syncthreads, once per tile.
 *    No producer warp / TMA: simpler to get right without a GPU to test on; the cost is issue
 *    slots for 16 cp.async per thread per tile (small against ~2,000 cycles of MMA per tile).
 *  - Overlap inside a warpgroup (FA3's intra-warpgroup pipelining, without warp
 *    specialisation): iteration j issues S_{j+1} = Q·K_{j+1}ᵀ and then O += P_j·V_j, waits for
 *    S_{j+1} only, runs the softmax of S_{j+1} on the CUDA cores while the tensor core does
 *    P_j·V_j, then waits, rescales O and packs P_{j+1}. Live registers: S (64) + O (64) +
 *    P (32 bf16x2) + addressing ≈ 170 of the 255 that launch bounds (256, 1) allow. (A first
 *    version also overlapped P·V with the next softmax using two S register sets: 242
 *    registers and ptxas serialised the wgmmas, warning C7511.)
 *  - Masks exactly as k_flash_mma: per key tile SKIP (never loaded or computed), FULL (no test)
 *    or MASKED (per-element test); segment tiles' seg_k min/max come from k_seg_tiles with
 *    128-key tiles.
 *
 * PTX ISA sections relied on (PTX ISA 8.x, "Asynchronous Warpgroup Level Matrix Multiply-
 * Accumulate", 9.7.15): 9.7.15.5.1.1.1 register fragments for .m64nNk16 (A: four .b32 holding
 * (g, 2t..2t+1), (g+8, ..), (g, 2t+8..), (g+8, 2t+8..) of the warp's 16-row slab; D: d[i] at
 * row 16·warp + g + 8·((i>>1)&1), column 8·(i>>2) + 2t + (i&1)); 9.7.15.5.1.2 shared memory
 * layout (K-major, 128-byte swizzle atom = 8 rows × 128 B); 9.7.15.5.1.2.2 matrix descriptor
 * (bits 0-13 start address >> 4, 16-29 LBO >> 4, 32-45 SBO >> 4, 49-51 base offset = 0 for
 * 1024-aligned atoms, 62-63 swizzle = 1 for 128 B); 9.7.15.6 wgmma.fence / commit_group /
 * wait_group; 9.7.15.5.2 wgmma.mma_async (scale-d = 0 ignores the old accumulator).
 * tests/gpu/emulate-wgmma.py replays this kernel's descriptors, smem addresses and fragment
 * conversions against those definitions.
 *
 * Expected performance (a prediction for the first GPU run to be compared with; H100/H200 SXM,
 * dense bf16 989 TFLOP/s at 1.83 GHz = 7.5 TFLOP/s = ~4,100 FLOP/clk per SM). Per block and key
 * tile: tensor core 2 warpgroups × 2 GEMMs × 2·64·128·128 = 8.4 MFLOP = ~2,050 clk (S: ~1,025,
 * P·V: ~1,025); softmax 2 × 64 × 128 = 16,384 exp2 = 1,024 clk of MUFU (16/clk/SM) plus
 * ~400-600 clk of FP32/ALU issue (scale, max, subtract, sums, O rescale, bf16 packing) —
 * overlapped with P·V but not with S (both warpgroups meet at the barrier each tile, so they
 * run in near lockstep); then rescale/pack + cp.async issue + barrier ~200 clk. So one tile
 * ≈ 1,025 + max(1,025, ~1,400) + ~200 ≈ 2,600 clk against 2,050: at best ~78 % of peak;
 * with the usual losses (L2 latency on the K/V stream that all 132 resident blocks of a head
 * share, issue stalls) my estimate is 520 TFLOP/s (range 450-600), i.e. at 24 heads × 128:
 *   L = 67,576  (5.61e13 FLOP, 528 × 24 = 12,672 blocks = 96 waves):  ~108 ms (94-125)
 *   L = 119,056 (1.74e14 FLOP, 931 × 24 blocks = 169 waves):          ~335 ms (290-387)
 * against the mma.sync kernel's ~300-350 TFLOP/s (~160-190 ms at 67,576). The DiT segment
 * mask removes only the 192 padded text keys (~0.6 %). Reaching the targets (<= 90 / 280 ms,
 * ~620 TFLOP/s) needs the softmax to overlap S as well: ping-pong the two warpgroups with named
 * barriers (one's softmax during the other's GEMMs, FA3's scheduling), then TMA loads from a
 * producer warp with setmaxnreg to free issue slots and registers, and 176-key tiles. */
#include "attention-common.cuh"
#include "wgmma.cuh"
#include "attention-wgmma-common.cuh"

namespace hv_attn {
namespace {

constexpr int WG_D = 128;
constexpr int WG_THREADS = 256;
constexpr uint32_t TILE_BYTES = 128u * 128u * 2u;   /* one 128×128 bf16 tile (Q, K or Vᵀ) */
constexpr int KSTAGES = 2, VSTAGES = 2;
constexpr size_t WG_SMEM = (size_t) (1 + KSTAGES + VSTAGES) * TILE_BYTES + 1024;

/* Everything the kernel body uses exists only in the sm_90a pass (an sm_80 pass of the same
 * file compiles the kernel to a trap and would warn about unused helpers). */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
constexpr uint32_t CB_BYTES = 128u * 128u;   /* one 64-column block of a tile */

/* Byte offset of (row, 16-byte chunk 0..15) in a tile stored as [2][128 rows][64 bf16] with the
 * 128-byte swizzle: the chunk index within the row's 128 bytes is XORed with row & 7. */
__device__ __forceinline__ uint32_t
sw128 (int row, int chunk)
{
  return (uint32_t) (chunk >> 3) * CB_BYTES + (uint32_t) row * 128u + (uint32_t) (((chunk & 7) ^ (row & 7)) << 4);
}

using namespace hv_wg;
#endif

__global__ void __launch_bounds__ (WG_THREADS, 1)
k_flash_wgmma (const __grid_constant__ AttnParams p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char wg_smem_raw[];
  __shared__ int s_qseg[2];
  /* 1024-byte alignment of every tile: the swizzle pattern repeats on 1024-byte boundaries
   * and the descriptors say base offset 0 */
  const uint32_t raw = (uint32_t) __cvta_generic_to_shared (wg_smem_raw);
  const uint32_t sQ = (raw + 1023u) & ~1023u;
  const uint32_t sK = sQ + TILE_BYTES, sV = sK + KSTAGES * TILE_BYTES;

  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int b = blockIdx.z, h = blockIdx.y;
  const int hk = h / (p.H / p.Hkv);
  const int64_t q0 = (int64_t) blockIdx.x * WG_BR;
  const int64_t q_last = (q0 + WG_BR <= p.Lq ? q0 + WG_BR : p.Lq) - 1;
  const int64_t qts = (int64_t) p.H * WG_D, kts = (int64_t) p.Hkv * WG_D;
  const __nv_bfloat16 *qg = p.qh + (int64_t) b * p.Lq * qts + (int64_t) h * WG_D;
  const __nv_bfloat16 *kg = p.kh + (int64_t) b * p.Lk * kts + (int64_t) hk * WG_D;
  const __nv_bfloat16 *vg = p.vt + ((int64_t) b * p.Hkv + hk) * WG_D * p.Lkp;

  /* Q tile: rows past Lq are zero-filled (computed, never stored) */
  for (int idx = tid; idx < WG_BR * 16; idx += WG_THREADS) {
    int r = idx >> 4, c = idx & 15;
    int64_t qi = q0 + r;
    bool ok = qi < p.Lq;
    cp_async16_s (sQ + sw128 (r, c), qg + (ok ? qi : 0) * qts + c * 8, ok ? 16 : 0);
  }
  query_seg_range (p, b, q0, WG_BR, s_qseg);
  __syncthreads ();
  const int qmin = s_qseg[0], qmax = s_qseg[1];

  const int kt_end = key_tile_end (p, q_last, WG_BC);
  auto next_active = [&] (int kt) {
    return next_active_tile (p, b, kt, kt_end, WG_BC, q0, q_last, qmin, qmax);
  };
  /* K tile: key rows past Lk zero-filled (their scores are masked; zeros keep them finite) */
  auto load_k = [&] (int kt, int stage) {
    const int64_t k0 = (int64_t) kt * WG_BC;
    const uint32_t dst = sK + (uint32_t) stage * TILE_BYTES;
    for (int idx = tid; idx < WG_BC * 16; idx += WG_THREADS) {
      int r = idx >> 4, c = idx & 15;
      int64_t kj = k0 + r;
      bool ok = kj < p.Lk;
      cp_async16_s (dst + sw128 (r, c), kg + (ok ? kj : 0) * kts + c * 8, ok ? 16 : 0);
    }
  };
  /* Vᵀ tile: row d holds keys k0..k0+127 (vt is zero-padded to whole tiles: no predicate) */
  auto load_v = [&] (int kt, int stage) {
    const int64_t k0 = (int64_t) kt * WG_BC;
    const uint32_t dst = sV + (uint32_t) stage * TILE_BYTES;
    for (int idx = tid; idx < WG_D * 16; idx += WG_THREADS) {
      int d = idx >> 4, c = idx & 15;
      cp_async16_s (dst + sw128 (d, c), vg + (int64_t) d * p.Lkp + k0 + c * 8, 16);
    }
  };

  /* active key tiles j, j+1, j+2 of this block */
  int kt_cur = next_active (0);
  int kt_n1 = kt_cur < kt_end ? next_active (kt_cur + 1) : kt_end;
  int kt_n2 = kt_n1 < kt_end ? next_active (kt_n1 + 1) : kt_end;

  if (kt_cur < kt_end) {
    load_k (kt_cur, 0);
    load_v (kt_cur, 0);
  }
  cp_async_commit ();
  if (kt_n1 < kt_end)
    load_k (kt_n1, 1);
  cp_async_commit ();
  cp_async_wait_all ();
  fence_proxy_async ();   /* cp.async wrote (generic proxy), wgmma reads (async proxy) */
  __syncthreads ();

  /* this warpgroup's 64 query rows start 64 × 128 B = 8 KB into each column block of Q */
  const uint32_t sQw = sQ + (uint32_t) wg * 64u * 128u;
  const int64_t qa = q0 + wg * 64 + warp * 16 + g, qb = qa + 8;   /* this thread's two rows */

  float s[64], o[64];
  uint32_t pf[8][4];
#pragma unroll
  for (int i = 0; i < 64; i++)
    s[i] = o[i] = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; i++)
    pf[i][0] = pf[i][1] = pf[i][2] = pf[i][3] = 0u;
  float m0 = -HV_CUDA_INF, m1 = -HV_CUDA_INF, l0 = 0.0f, l1 = 0.0f, a0 = 0.0f, a1 = 0.0f;

  /* S = Q · K(stage)ᵀ: 8 k-steps of 16 over D; k-step kk is column block kk / 4, 32 bytes
   * further per step inside the 128-byte swizzled row (the hardware applies the XOR to the
   * address it forms, so advancing the start address by 32 B selects the logical chunk pair).
   * scale-d = 0 on the first step: the old contents of s are ignored. */
  auto issue_s = [&] (int stage) {
    const uint32_t kb = sK + (uint32_t) stage * TILE_BYTES;
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
      const uint32_t off = (uint32_t) (kk >> 2) * CB_BYTES + (uint32_t) (kk & 3) * 32u;
      wgmma_ss (s, desc_sw128 (sQw + off), desc_sw128 (kb + off), kk > 0);
    }
    wg_commit ();
  };
  /* O += P · V(stage): 8 k-steps of 16 keys; B = Vᵀ tile (rows d, K-major over keys) */
  auto issue_pv = [&] (int stage) {
    const uint32_t vb = sV + (uint32_t) stage * TILE_BYTES;
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
      const uint32_t off = (uint32_t) (kk >> 2) * CB_BYTES + (uint32_t) (kk & 3) * 32u;
      wgmma_rs (o, pf[kk], desc_sw128 (vb + off));
    }
    wg_commit ();
  };
  /* online softmax of s (scores of key tile kt): s becomes the probabilities (not yet
   * normalised), m/l updated, a0/a1 = factor for the rows' old O */
  auto softmax = [&] (int kt) {
    wg_softmax (p, b, kt, q0, q_last, qmin, qmax, qa, qb, t4, s, m0, m1, l0, l1, a0, a1);
  };
  /* after softmax, with no P·V in flight: O rescaled, P packed as the A operand (k-step kk
   * covers keys 16kk..16kk+15 = accumulator chunks 2kk and 2kk+1) */
  auto rescale_pack = [&] () {
    wg_rescale_pack (o, pf, s, a0, a1);
  };

  if (kt_cur < kt_end) {
    wg_fence ();
    issue_s (0);
    wg_wait<0> ();
    fence_regs (s);
    softmax (kt_cur);
    rescale_pack ();
    /* Iteration 0 refills K stage 0 (K_2) with cp.async from all 256 threads: the other
     * warpgroup's S_0 may still be reading that stage until it passes its wg_wait<0>. (Later
     * iterations are covered by the barrier at the end of the previous one.) */
    __syncthreads ();
    /* Iteration j: P_j (registers) and K_{j+1}, V_j (stage (j+1)&1, j&1) are ready. Issue
     * S_{j+1} and then P_j·V_j; the softmax of S_{j+1} runs on the CUDA cores while the
     * tensor core does P_j·V_j; then O is rescaled and P_{j+1} packed. Stages: K_{j+2} goes
     * where K_j was (S_j finished in iteration j-1), V_{j+1} where V_{j-1} was (P·V_{j-1}
     * finished in iteration j-1), both before this iteration's barrier. */
    int j = 0;
    for (; kt_n1 < kt_end; j++) {   /* straight-line body: ptxas tracks the wgmma groups */
      if (kt_n2 < kt_end)
        load_k (kt_n2, j & 1);
      load_v (kt_n1, (j + 1) & 1);
      cp_async_commit ();
      wg_fence ();   /* s, pf and o were written by ordinary code */
      issue_s ((j + 1) & 1);
      issue_pv (j & 1);
      wg_wait<1> ();   /* S_{j+1} done, P_j·V_j may still run */
      fence_regs (s);
      softmax (kt_n1);
      wg_wait<0> ();
      fence_regs (o);
      fence_regs (pf);
      rescale_pack ();
      /* K_{j+2} and V_{j+1} have landed; every warpgroup is done with the stages the next
       * iteration overwrites */
      cp_async_wait_all ();
      fence_proxy_async ();
      __syncthreads ();
      kt_n1 = kt_n2;
      kt_n2 = kt_n2 < kt_end ? next_active (kt_n2 + 1) : kt_end;
    }
    /* the last tile's P·V */
    wg_fence ();
    issue_pv (j & 1);
    wg_wait<0> ();
    fence_regs (o);
  }

  l0 += __shfl_xor_sync (0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync (0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  float *og = p.out + (int64_t) b * p.Lq * qts + (int64_t) h * WG_D;
  if (qa < p.Lq) {
#pragma unroll
    for (int c = 0; c < 16; c++)
      *(float2 *) (og + qa * qts + c * 8 + 2 * t4) = make_float2 (o[4 * c] * inv0, o[4 * c + 1] * inv0);
  }
  if (qb < p.Lq) {
#pragma unroll
    for (int c = 0; c < 16; c++)
      *(float2 *) (og + qb * qts + c * 8 + 2 * t4) = make_float2 (o[4 * c + 2] * inv1, o[4 * c + 3] * inv1);
  }
#else
  __trap ();
#endif
}

/* vt [b][hk][d][k] (bf16, k < Lkp, zero for k >= Lk) from v [b][k][hk][d] (f32): 64 keys ×
 * 64 dims per block through shared memory, both sides coalesced. */
__global__ void __launch_bounds__ (256)
k_pack_vt (__nv_bfloat16 *vt, const float *v, int64_t Lk, int Hkv, int D, int64_t Lkp)
{
  __shared__ float tile[64][65];
  const int tx = threadIdx.x & 63, ty = threadIdx.x >> 6;
  const int b = blockIdx.z, nd = D / 64;
  const int hk = blockIdx.y / nd, d0 = (blockIdx.y % nd) * 64;
  const int64_t k0 = (int64_t) blockIdx.x * 64;
  for (int r = ty; r < 64; r += 4) {
    int64_t kj = k0 + r;
    tile[r][tx] = kj < Lk ? v[(((int64_t) b * Lk + kj) * Hkv + hk) * D + d0 + tx] : 0.0f;
  }
  __syncthreads ();
  for (int r = ty; r < 64; r += 4)
    vt[(((int64_t) b * Hkv + hk) * D + d0 + r) * Lkp + k0 + tx] = __float2bfloat16_rn (tile[tx][r]);
}

} /* namespace */

int
wgmma_available (HvKCtx *ctx)
{
#if defined(HV_HAVE_SM90A)
  if (ctx->sm != 90)
    return 0;
  cudaFuncAttributes a;
  if (cudaFuncGetAttributes (&a, k_flash_wgmma) != cudaSuccess) {
    (void) cudaGetLastError ();   /* no image for this device: not an error of the next launch */
    return 0;
  }
  /* the image the runtime picked for this 9.0 device: sm_90a (90; an sm_90a,sm_80 build
   * also gets it, the runtime prefers the newer one) or sm_80 (80: a trap stub); >= rather
   * than == so that the check does not hinge on how the 'a' variant is numbered */
  return a.binaryVersion >= 90;
#else
  (void) ctx;
  return 0;
#endif
}

int
wgmma_pack_v (HvKCtx *ctx, __nv_bfloat16 *vt, const float *v, int64_t B, int64_t Lk, int Hkv,
              int D, int64_t Lkp)
{
  if (D % 64 != 0 || Lkp % 64 != 0)
    return hv_k_fail (ctx, "attention: cannot transpose v with head dim %d, %lld keys", D, (long long) Lkp);
  dim3 grid ((unsigned int) (Lkp / 64), (unsigned int) (Hkv * (D / 64)), (unsigned int) B);
  k_pack_vt<<<grid, 256, 0, ctx->stream>>> (vt, v, Lk, Hkv, D, Lkp);
  return hv_k_launched (ctx, "attention (v transpose)");
}

int
wgmma_launch (HvKCtx *ctx, const AttnParams &p, int64_t B)
{
  if (p.D != WG_D || p.Lkp % WG_BC != 0)
    return hv_k_fail (ctx, "attention: the wgmma kernel needs head dim %d (got %d)", WG_D, p.D);
  /* set on every call: the attribute belongs to the current device */
  cudaError_t e = cudaFuncSetAttribute (k_flash_wgmma, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) WG_SMEM);
  if (e != cudaSuccess)
    return hv_k_fail (ctx, "attention: cannot reserve %zu bytes of shared memory: %s", WG_SMEM, cudaGetErrorString (e));
  dim3 grid ((unsigned int) ((p.Lq + WG_BR - 1) / WG_BR), (unsigned int) p.H, (unsigned int) B);
  k_flash_wgmma<<<grid, WG_THREADS, WG_SMEM, ctx->stream>>> (p);
  return hv_k_launched (ctx, "attention (wgmma)");
}

} /* namespace hv_attn */
