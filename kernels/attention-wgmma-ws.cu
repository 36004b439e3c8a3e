/* attention-wgmma-ws.cu — FA3-style fused attention for Hopper (sm_90a), head dim 128: warp
 * specialisation (one TMA producer warpgroup, two wgmma consumer warpgroups), a K/Vᵀ ring of
 * shared-memory stages with full/empty mbarriers, and inter-warpgroup ping-pong so that one
 * consumer's softmax runs under the other consumer's GEMMs. Same semantics as k_flash_wgmma and
 * k_flash_mma (segment mask with SKIP/FULL/MASKED key tiles, allow mask, causal, GQA, Lq != Lk,
 * tails, rows with no allowed key give 0). Selected with HV_CUDA_ATTN=wgmma-ws on a compute 9.0
 * device with an sm_90a build (attention.cu); it takes the same prepared inputs as
 * k_flash_wgmma (q, k rounded to bf16 as [B, L, H, D]; vᵀ as [B, Hkv, D, Lkp]; 128-key tile
 * min/max of seg_k); a tensor map that cannot be made is an error (no silent fallback).
 *
 * Why: k_flash_wgmma (all threads load with cp.async, both warpgroups in lockstep) leaves the
 * softmax of S_{j+1} exposed (only P·V_j hides it); predicted ~520 TFLOP/s, ~108 ms at
 * L = 67,576 against the issue's <= 90 ms (<= 280 ms at L = 119,056), i.e. >= ~620 TFLOP/s.
 * FlashAttention-3 (Shah, Bikshandi, Zhang, Thakkar, Ramani, Dao 2024, Dao-AILab/flash-attention
 * hopper/; read for semantics, this is our own code) reaches 600-660 TFLOP/s at head dim 128
 * with the schedule below.
 *
 * Block = 128 query rows of one (batch, head), 384 threads = 3 warpgroups, launch bounds
 * (384, 1) so ptxas starts every thread at 168 registers (65,536 / 384, rounded down to 8):
 *  - warpgroup 0, the producer: setmaxnreg.dec to 24 registers; one thread issues every load as
 *    a TMA box copy (cp.async.bulk.tensor, completion counted in bytes on an mbarrier): Q once
 *    (4-d map over [B, Lq, H, D], box 64 × 1 × 128 × 1, rows past Lq zero-filled by the copy
 *    engine), then per active key tile the K tile (4-d map over [B, Lk, Hkv, D], keys past Lk
 *    zero-filled) and the Vᵀ tile (2-d map over [B·Hkv·D, Lkp]), each as two boxes of
 *    64 columns × 128 rows with the 128-byte swizzle, which lays the box out exactly as the
 *    wgmma K-major SW128 operand layout of k_flash_wgmma (row r's 16-byte chunk c at
 *    c ^ (r & 7) inside its 1024-byte 8-row atom, every box 1024-byte aligned).
 *  - warpgroups 1 and 2, the consumers: setmaxnreg.inc to 240; 64 query rows each; the same
 *    per-tile math as k_flash_wgmma (S = Q·Kᵀ wgmma m64n128k16 from shared memory, online
 *    softmax in registers, P kept in registers as the A operand of O += P·Vᵀ), the same
 *    intra-warpgroup overlap (S_{j+1} and P_j·V_j issued together, the softmax of S_{j+1}
 *    under P_j·V_j).
 *  - Ring: NST = 3 stages of K and of Vᵀ (32 KB each) + Q = 224 KB (+1 KB alignment slack).
 *    full_k[s] / full_v[s]: count 1 (the producer's arrive.expect_tx) + 32,768 tx bytes;
 *    empty_k[s] / empty_v[s]: count 8 (lane 0 of each consumer warp, after its
 *    wgmma.wait_group says the wgmma that read the stage is done). Active tile i (the i-th
 *    tile not SKIPped) lives in stage i % NST; its u-th use (u = i / NST) waits on the full
 *    barrier with parity u & 1; the producer refills stage s for use u >= 1 after waiting on
 *    the empty barrier with parity (u - 1) & 1.
 *  - Ping-pong: named barriers 1 and 2 (256 threads: 128 waiting with bar.sync, 128 of the
 *    other consumer arriving with bar.arrive) hand the right to issue wgmmas back and forth:
 *    consumer c waits on barrier 1 + c before each issue round and arrives on 2 - c after it;
 *    consumer 1 arrives once on barrier 1 up front and skips its arrive after its last round,
 *    so every barrier instance completes exactly (R rounds: R syncs, R arrives). The tensor
 *    core then runs consumer 0's S+P·V while consumer 1 does its softmax and the other way
 *    round.
 *
 * PTX ISA sections relied on (PTX ISA 8.x): 9.7.15 wgmma (fragments, SW128 K-major layout,
 * descriptors; exactly as in attention-wgmma.cu, whose helpers are mirrored below), the
 * mbarrier section (init, arrive, arrive.expect_tx, try_wait.parity: waits for the completion of the
 * phase with the given parity), cp.async.bulk.tensor (.tile mode,
 * .mbarrier::complete_tx::bytes: the copy engine signals the barrier with the box's byte count,
 * out-of-bound elements included and zero-filled), bar.sync / bar.arrive (named barriers
 * with a thread count), setmaxnreg (per-warpgroup register reallocation; section numbers vary
 * between ISA versions, hence names);
 * CUDA driver API cuTensorMapEncodeTiled (CU_TENSOR_MAP_SWIZZLE_128B: 16-byte chunks permuted
 * within each 128-byte span, pattern repeating every 1,024 bytes; inner box extent × element
 * size <= 128 bytes). tests/gpu/emulate-wgmma-ws.py replays the TMA placement, the barrier
 * protocol under random interleavings (stages, parities, ping-pong order, no stage refilled
 * before every consumer warp released it) and the whole block against float64.
 *
 * Expected performance (a prediction to compare with the first GPU run; H100/H200 SXM, dense
 * bf16 989 TFLOP/s ≈ 4,100 FLOP/clk per SM at 1.83 GHz). Per key tile and block the tensor
 * core needs 2 consumers × (S + P·V) = 8.4 MFLOP ≈ 2,050 clk; each consumer's own chain is S
 * (~512 clk) → softmax (~1,000 clk of exp2/FMA/shuffles for 64 × 128 scores on one warpgroup,
 * MUFU 16/clk/SM shared but only one consumer in softmax at a time) → rescale/pack/issue
 * (~150 clk) ≈ 1,700-2,100 clk, and its P·V (512 clk) plus the other consumer's S + P·V
 * (1,025 clk) fit under it. So the period per tile is bounded by the tensor core (~2,050) plus
 * residual bubbles (ping-pong hand-off latency, wgmma pipeline drain at each wait, the O
 * rescale on the critical path): ~2,300-2,600 clk, i.e. 80-90 % of peak in the loop; with the
 * usual losses (L2 latency/bandwidth of the K/V stream: every block reads its head's whole K
 * and Vᵀ, ~4.5 TB/s of L2→SM traffic at 600 TF/s; 96-169 waves with a partial last wave;
 * prologue/epilogue per block) my estimate is ~600 TFLOP/s (range 500-680), i.e. at
 * 24 heads × 128:
 *   L = 67,576  (5.61e13 FLOP):  ~94 ms  (83-112)   target <= 90
 *   L = 119,056 (1.74e14 FLOP): ~290 ms (256-348)   target <= 280
 * against k_flash_wgmma's predicted ~520 TF/s. Reaching the targets for sure would take what
 * FA3 adds beyond this (176-key tiles for D = 128, a persistent grid with an LPT tile order,
 * the O rescale moved off the critical path, fp8 is out of scope).
 *
 * Risks for the first GPU run (none of this has run on a GPU):
 *  - TMA swizzle vs the wgmma descriptor: both are the documented 128-byte pattern (CUTLASS's
 *    SW128 K-major atom is loaded by TMA the same way); a mismatch gives wrong values, which
 *    the op tests catch (the wgmma kernel keeps working: it is a separate path).
 *  - a protocol error (wrong parity, lost tx bytes) would hang: every mbarrier wait gives up
 *    after ~2^31 clock ticks (~1 s) and sets hv_ws_stuck, after which no wait blocks, so the
 *    kernel finishes with wrong values (the op tests fail) instead of hanging the run. (Not a
 *    trap: a trap in the consumer path made ptxas drop the setmaxnreg budget.)
 *  - setmaxnreg ignored by ptxas (warning C7508) would leave the consumers at 168 registers;
 *    at present ptxas reports 168 at entry, no spills and no C75xx warnings, i.e. the consumer
 *    path (~212 registers when compiled alone) is allocated within its 240.
 *  - the producer issues K_i before waiting for Vᵀ_{i-3}'s stage, so a slow consumer P·V delays
 *    the next K load; 3 stages should hide it (FA3 orders loads the same way).
 *  - if ptxas or the hardware serialises the two consumers' wgmmas more than predicted, the
 *    ping-pong only adds barrier latency: compare with k_flash_wgmma in bench-cuda.
 *  - ptxas serialising the wgmmas (warnings C7510-C7515) would cut the speed roughly in half;
 *    none at present.
 *  - tensor map limits (strides multiple of 16 bytes, < 2^40; dims < 2^32; base 16-byte
 *    aligned): checked by cuTensorMapEncodeTiled, whose failure is reported as an error (the
 *    bench and tests would otherwise label k_flash_wgmma's results as this kernel's). */
#include "attention-common.cuh"
#include "wgmma.cuh"
#include "attention-wgmma-common.cuh"
#include <cuda.h>            /* CUtensorMap and its enums only: no -lcuda, the entry point */
#include <cudaTypedefs.h>    /* comes from cudaGetDriverEntryPointByVersion */

namespace hv_attn {

/* Set (never cleared) once an mbarrier wait of k_flash_ws timed out (see mbar_wait). Outside
 * the anonymous namespace and the sm_90a-only section: the host stub of every pass names it. */
__device__ int hv_ws_stuck;

namespace {

constexpr int WS_D = 128;
constexpr int WS_THREADS = 384;                      /* producer + 2 consumer warpgroups */
constexpr uint32_t WS_TILE = 128u * 128u * 2u;       /* one 128 × 128 bf16 tile */
constexpr int NST = 3;                               /* K and Vᵀ stages */
constexpr int NBAR = 1 + 4 * NST;                    /* q, full_k, full_v, empty_k, empty_v */
constexpr size_t WS_SMEM = (size_t) (1 + 2 * NST) * WS_TILE + 1024 + 8 * NBAR;
constexpr int PRODUCER_REGS = 24, CONSUMER_REGS = 240;
static_assert (WS_SMEM <= 227 * 1024, "shared memory of one block on sm_90");
static_assert (128 * PRODUCER_REGS + 256 * CONSUMER_REGS <= 65536, "register file");

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
constexpr uint32_t CB_BYTES = 128u * 128u;   /* one 64-column block of a tile (one TMA box) */
constexpr int CONSUMER_WARPS = 8;             /* arrivals on an empty barrier */

using namespace hv_wg;

/* ---- mbarriers, TMA, named barriers, register reallocation --------------------------------- */

__device__ __forceinline__ void
mbar_init (uint32_t bar, uint32_t count)
{
  asm volatile ("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(bar), "r"(count) : "memory");
}

/* the producer's arrival that also announces the bytes the copy engine will deliver */
__device__ __forceinline__ void
mbar_expect_tx (uint32_t bar, uint32_t bytes)
{
  asm volatile ("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void
mbar_arrive (uint32_t bar)
{
  asm volatile ("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(bar) : "memory");
}

__device__ __forceinline__ bool
mbar_try (uint32_t bar, uint32_t parity)
{
  uint32_t ok;
  asm volatile ("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
  return ok != 0;
}

/* Waits for the completion of the phase with this parity. A protocol error (wrong parity, lost
 * bytes) would hang the bounded GPU run: a wait gives up after ~2^31 clock ticks (~1 s; a
 * legitimate one takes microseconds) and marks the kernel stuck, after which every wait that
 * would block gives up at once: the results are then garbage (the op tests say so) instead of
 * a hang. Not __trap: a trap in the consumer path makes ptxas ignore setmaxnreg for it (168
 * registers, 208 bytes of spills, serialised wgmma, seen with nvcc 13.0). */
__device__ __forceinline__ void
mbar_wait (uint32_t bar, uint32_t parity)
{
  if (mbar_try (bar, parity) || *(volatile int *) &hv_ws_stuck)
    return;
  const long long t0 = clock64 ();
  while (!mbar_try (bar, parity))
    if (clock64 () - t0 > (1LL << 31)) {
      hv_ws_stuck = 1;
      break;
    }
}

/* One TMA box (tile mode) into shared memory; completion counted in bytes on `bar`. */
__device__ __forceinline__ void
tma_4d (uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, int c3, uint32_t bar)
{
  asm volatile ("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                " [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
                :: "r"(dst), "l"((uint64_t) map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar) : "memory");
}

__device__ __forceinline__ void
tma_2d (uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar)
{
  asm volatile ("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                " [%0], [%1, {%2, %3}], [%4];\n"
                :: "r"(dst), "l"((uint64_t) map), "r"(c0), "r"(c1), "r"(bar) : "memory");
}

__device__ __forceinline__ void
tma_prefetch_map (const CUtensorMap *map)
{
  asm volatile ("prefetch.tensormap [%0];\n" :: "l"((uint64_t) map) : "memory");
}

/* barrier ids as immediates: 0 is __syncthreads, 1 and 2 the ping-pong pair */
template <int ID>
__device__ __forceinline__ void
named_sync ()
{
  asm volatile ("bar.sync %0, 256;\n" :: "n"(ID) : "memory");
}

template <int ID>
__device__ __forceinline__ void
named_arrive ()
{
  asm volatile ("bar.arrive %0, 256;\n" :: "n"(ID) : "memory");
}

/* consumer c waits on barrier 1 + c and signals barrier 2 - c */
__device__ __forceinline__ void
sched_sync (int c)
{
  if (c == 0)
    named_sync<1> ();
  else
    named_sync<2> ();
}

__device__ __forceinline__ void
sched_arrive (int c)
{
  if (c == 0)
    named_arrive<2> ();
  else
    named_arrive<1> ();
}

/* The consumer warpgroup c (0 or 1) of k_flash_ws: its 64 query rows from start to end. A
 * function of its own so that the kernel is one if/else over the roles (what setmaxnreg needs). */
__device__ __forceinline__ void
consume (const AttnParams &p, int c, uint32_t sQ, uint32_t sK, uint32_t sV, uint32_t bar_q, int64_t q0,
         int64_t q_last, int qmin, int qmax, int kt_end)
{
  const int b = blockIdx.z, h = blockIdx.y;
  auto full_k = [&] (int st) { return bar_q + 8u * (uint32_t) (1 + st); };
  auto full_v = [&] (int st) { return bar_q + 8u * (uint32_t) (1 + NST + st); };
  auto empty_k = [&] (int st) { return bar_q + 8u * (uint32_t) (1 + 2 * NST + st); };
  auto empty_v = [&] (int st) { return bar_q + 8u * (uint32_t) (1 + 3 * NST + st); };
  auto next_active = [&] (int kt) {
    return next_active_tile (p, b, kt, kt_end, WG_BC, q0, q_last, qmin, qmax);
  };
  const int tid = threadIdx.x, warp = (tid >> 5) & 3, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  /* this consumer's 64 query rows start 64 × 128 B = 8 KB into each column block of Q */
  const uint32_t sQw = sQ + (uint32_t) c * 64u * 128u;
  const int64_t qa = q0 + c * 64 + warp * 16 + g, qb = qa + 8;   /* this thread's two rows */
  const int64_t qts = (int64_t) p.H * WS_D;

  float s[64], o[64];
  uint32_t pf[8][4];
#pragma unroll
  for (int i = 0; i < 64; i++)
    s[i] = o[i] = 0.0f;
#pragma unroll
  for (int i = 0; i < 8; i++)
    pf[i][0] = pf[i][1] = pf[i][2] = pf[i][3] = 0u;
  float m0 = -HV_CUDA_INF, m1 = -HV_CUDA_INF, l0 = 0.0f, l1 = 0.0f, a0 = 0.0f, a1 = 0.0f;

  /* S = Q · K(stage)ᵀ: 8 k-steps of 16 over D (k-step kk: column block kk / 4, 32 bytes per
   * step inside the swizzled 128-byte row) */
  auto issue_s = [&] (int stage) {
    const uint32_t kb = sK + (uint32_t) stage * WS_TILE;
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
      const uint32_t off = (uint32_t) (kk >> 2) * CB_BYTES + (uint32_t) (kk & 3) * 32u;
      wgmma_ss (s, desc_sw128 (sQw + off), desc_sw128 (kb + off), kk > 0);
    }
    wg_commit ();
  };
  /* O += P · V(stage): 8 k-steps of 16 keys; B = the Vᵀ tile (rows d, K-major over keys) */
  auto issue_pv = [&] (int stage) {
    const uint32_t vb = sV + (uint32_t) stage * WS_TILE;
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
      const uint32_t off = (uint32_t) (kk >> 2) * CB_BYTES + (uint32_t) (kk & 3) * 32u;
      wgmma_rs (o, pf[kk], desc_sw128 (vb + off));
    }
    wg_commit ();
  };
  /* this warp is done reading the stage (its wgmma.wait_group returned): one arrival per warp */
  auto release = [&] (uint32_t bar) {
    if (lane == 0)
      mbar_arrive (bar);
  };
  /* online softmax of s (scores of key tile kt), exactly as k_flash_wgmma */
  auto softmax = [&] (int kt) {
    wg_softmax (p, b, kt, q0, q_last, qmin, qmax, qa, qb, t4, s, m0, m1, l0, l1, a0, a1);
  };
  /* with no P·V in flight: O rescaled, P packed as the A operand (k-step kk = keys 16kk..+15) */
  auto rescale_pack = [&] () {
    wg_rescale_pack (o, pf, s, a0, a1);
  };

  /* the producer's Q copy: awaited even when no tile is active (see the producer) */
  mbar_wait (bar_q, 0);
  int kt = next_active (0);
  if (kt < kt_end) {
    /* round 0 (S_0). Consumer 1 lets consumer 0 issue first. */
    if (c == 1)
      named_arrive<1> ();
    int sc = 0, pc = 0;   /* stage and parity of active tile i (the one whose P is ready) */
    mbar_wait (full_k (0), 0);
    sched_sync (c);
    wg_fence ();
    issue_s (0);
    sched_arrive (c);
    wg_wait<0> ();
    fence_regs (s);
    release (empty_k (0));
    softmax (kt);
    rescale_pack ();
    /* rounds 1..n-1: S_{i+1} and P_i·V_i, softmax of S_{i+1} under P_i·V_i */
    for (int ktn = next_active (kt + 1); ktn < kt_end; ktn = next_active (ktn + 1)) {
      const int sn = sc + 1 == NST ? 0 : sc + 1;
      const int pn = sc + 1 == NST ? pc ^ 1 : pc;
      mbar_wait (full_k (sn), (uint32_t) pn);
      mbar_wait (full_v (sc), (uint32_t) pc);
      sched_sync (c);
      wg_fence ();   /* s, pf and o were written by ordinary code */
      issue_s (sn);
      issue_pv (sc);
      sched_arrive (c);
      wg_wait<1> ();   /* S_{i+1} done, P_i·V_i may still run */
      fence_regs (s);
      release (empty_k (sn));
      softmax (ktn);
      wg_wait<0> ();
      fence_regs (o);
      fence_regs (pf);
      release (empty_v (sc));
      rescale_pack ();
      sc = sn;
      pc = pn;
    }
    /* round n: the last tile's P·V. Consumer 1's arrive here would have no matching sync. */
    mbar_wait (full_v (sc), (uint32_t) pc);
    sched_sync (c);
    wg_fence ();
    issue_pv (sc);
    if (c == 0)
      sched_arrive (c);
    wg_wait<0> ();
    fence_regs (o);
    release (empty_v (sc));
  }

  l0 += __shfl_xor_sync (0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync (0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync (0xffffffffu, l1, 2);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  float *og = p.out + (int64_t) b * p.Lq * qts + (int64_t) h * WS_D;
  if (qa < p.Lq) {
#pragma unroll
    for (int cc = 0; cc < 16; cc++)
      *(float2 *) (og + qa * qts + cc * 8 + 2 * t4) = make_float2 (o[4 * cc] * inv0, o[4 * cc + 1] * inv0);
  }
  if (qb < p.Lq) {
#pragma unroll
    for (int cc = 0; cc < 16; cc++)
      *(float2 *) (og + qb * qts + cc * 8 + 2 * t4) = make_float2 (o[4 * cc + 2] * inv1, o[4 * cc + 3] * inv1);
  }
}
#endif

__global__ void __launch_bounds__ (WS_THREADS, 1)
k_flash_ws (const __grid_constant__ AttnParams p, const __grid_constant__ CUtensorMap tm_q,
            const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char ws_smem_raw[];
  __shared__ int s_qseg[2];
  /* every tile 1024-byte aligned (swizzle atoms, descriptors with base offset 0) */
  const uint32_t raw = (uint32_t) __cvta_generic_to_shared (ws_smem_raw);
  const uint32_t sQ = (raw + 1023u) & ~1023u;
  const uint32_t sK = sQ + WS_TILE, sV = sK + NST * WS_TILE;
  const uint32_t bar_q = sV + NST * WS_TILE;          /* then full_k, full_v, empty_k, empty_v */
  auto full_k = [&] (int s) { return bar_q + 8u * (uint32_t) (1 + s); };
  auto full_v = [&] (int s) { return bar_q + 8u * (uint32_t) (1 + NST + s); };
  auto empty_k = [&] (int s) { return bar_q + 8u * (uint32_t) (1 + 2 * NST + s); };
  auto empty_v = [&] (int s) { return bar_q + 8u * (uint32_t) (1 + 3 * NST + s); };

  const int tid = threadIdx.x, wg = tid >> 7;
  const int b = blockIdx.z, h = blockIdx.y;
  const int hk = h / (p.H / p.Hkv);
  const int64_t q0 = (int64_t) blockIdx.x * WG_BR;
  const int64_t q_last = (q0 + WG_BR <= p.Lq ? q0 + WG_BR : p.Lq) - 1;

  if (tid == 0) {
    mbar_init (bar_q, 1);
    for (int s = 0; s < NST; s++) {
      mbar_init (full_k (s), 1);
      mbar_init (full_v (s), 1);
      mbar_init (empty_k (s), CONSUMER_WARPS);
      mbar_init (empty_v (s), CONSUMER_WARPS);
    }
    /* make the initialisation visible to the other threads and to the copy engine */
    asm volatile ("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  query_seg_range (p, b, q0, WG_BR, s_qseg);   /* warp 0 */
  __syncthreads ();   /* the last block-wide barrier: the roles never meet again */
  const int qmin = s_qseg[0], qmax = s_qseg[1];

  const int kt_end = key_tile_end (p, q_last, WG_BC);
  /* every role walks the same list of active key tiles (tile_mode is block-uniform) */
  auto next_active = [&] (int kt) {
    return next_active_tile (p, b, kt, kt_end, WG_BC, q0, q_last, qmin, qmax);
  };

  if (wg == 0) {
    /* ---- producer ---- */
    asm volatile ("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(PRODUCER_REGS));
    if (tid == 0) {
      tma_prefetch_map (&tm_q);
      tma_prefetch_map (&tm_k);
      tma_prefetch_map (&tm_v);
      /* Q: always loaded (and always awaited by the consumers), so that no copy is still
       * writing this block's shared memory when the block exits */
      mbar_expect_tx (bar_q, WS_TILE);
      tma_4d (sQ, &tm_q, 0, h, (int) q0, b, bar_q);
      tma_4d (sQ + CB_BYTES, &tm_q, 64, h, (int) q0, b, bar_q);
      const int vrow = (b * p.Hkv + hk) * WS_D;   /* first row of this head in the Vᵀ map */
      int s = 0, u = 0;                           /* stage and use of active tile i */
      for (int kt = next_active (0); kt < kt_end; kt = next_active (kt + 1)) {
        if (u > 0)
          mbar_wait (empty_k (s), (uint32_t) ((u - 1) & 1));
        mbar_expect_tx (full_k (s), WS_TILE);
        tma_4d (sK + (uint32_t) s * WS_TILE, &tm_k, 0, hk, kt * WG_BC, b, full_k (s));
        tma_4d (sK + (uint32_t) s * WS_TILE + CB_BYTES, &tm_k, 64, hk, kt * WG_BC, b, full_k (s));
        if (u > 0)
          mbar_wait (empty_v (s), (uint32_t) ((u - 1) & 1));
        mbar_expect_tx (full_v (s), WS_TILE);
        tma_2d (sV + (uint32_t) s * WS_TILE, &tm_v, kt * WG_BC, vrow, full_v (s));
        tma_2d (sV + (uint32_t) s * WS_TILE + CB_BYTES, &tm_v, kt * WG_BC + 64, vrow, full_v (s));
        if (++s == NST) {
          s = 0;
          u++;
        }
      }
    }
  } else {
    /* ---- consumers ---- */
    asm volatile ("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(CONSUMER_REGS));
    consume (p, wg - 1, sQ, sK, sV, bar_q, q0, q_last, qmin, qmax, kt_end);
  }
#else
  __trap ();
#endif
}

/* cuTensorMapEncodeTiled from the driver through the runtime (no -lcuda link); NULL when the
 * driver has none. Looked up once per process. */
PFN_cuTensorMapEncodeTiled_v12000
encode_fn ()
{
  static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
  static int tried = 0;
  if (!tried) {
    void *f = NULL;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion ("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) == cudaSuccess
        && q == cudaDriverEntryPointSuccess)
      fn = (PFN_cuTensorMapEncodeTiled_v12000) f;
    else
      (void) cudaGetLastError ();
    tried = 1;
  }
  return fn;
}

/* A bf16 tensor map with 64-element × `rows` boxes (128 bytes wide: the 128-byte swizzle span),
 * zero fill outside the tensor. dims/strides innermost first; strides in bytes for dims 1.. */
CUresult
encode_map (CUtensorMap *m, const void *base, int rank, const cuuint64_t *dims, const cuuint64_t *strides,
            const cuuint32_t *box)
{
  PFN_cuTensorMapEncodeTiled_v12000 fn = encode_fn ();
  if (!fn)
    return CUDA_ERROR_NOT_FOUND;
  const cuuint32_t estr[4] = { 1, 1, 1, 1 };
  CUresult r = fn (m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, (cuuint32_t) rank, (void *) base, dims, strides, box,
                   estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r;
}

} /* namespace */

int
wgmma_ws_available (HvKCtx *ctx)
{
#if defined(HV_HAVE_SM90A)
  if (ctx->sm != 90 || ctx->smem_optin < WS_SMEM || !encode_fn ())
    return 0;
  cudaFuncAttributes a;
  if (cudaFuncGetAttributes (&a, k_flash_ws) != cudaSuccess) {
    (void) cudaGetLastError ();
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
wgmma_ws_launch (HvKCtx *ctx, const AttnParams &p, int64_t B)
{
  if (p.D != WS_D || p.Lkp % WG_BC != 0)
    return hv_k_fail (ctx, "attention: the wgmma-ws kernel needs head dim %d (got %d)", WS_D, p.D);
  alignas (64) CUtensorMap mq, mk, mv;
  const cuuint64_t el = 2;
  /* q [B, Lq, H, D], k [B, Lk, Hkv, D]: box = 64 dims × 1 head × 128 rows × 1 batch */
  const cuuint64_t qd[4] = { WS_D, (cuuint64_t) p.H, (cuuint64_t) p.Lq, (cuuint64_t) B };
  const cuuint64_t qs[3] = { WS_D * el, (cuuint64_t) p.H * WS_D * el, (cuuint64_t) (p.Lq * p.H * WS_D) * el };
  const cuuint64_t kd[4] = { WS_D, (cuuint64_t) p.Hkv, (cuuint64_t) p.Lk, (cuuint64_t) B };
  const cuuint64_t ks[3] = { WS_D * el, (cuuint64_t) p.Hkv * WS_D * el, (cuuint64_t) (p.Lk * p.Hkv * WS_D) * el };
  const cuuint32_t box4[4] = { 64, 1, 128, 1 };
  /* vt [B·Hkv·D rows, Lkp keys]: box = 64 keys × 128 rows (the 128 dims of one head) */
  const cuuint64_t vd[2] = { (cuuint64_t) p.Lkp, (cuuint64_t) B * p.Hkv * WS_D };
  const cuuint64_t vs[1] = { (cuuint64_t) p.Lkp * el };
  const cuuint32_t box2[2] = { 64, 128 };
  /* No silent fallback to k_flash_wgmma: this kernel runs only on request (HV_CUDA_ATTN=
   * wgmma-ws), and the tests and bench-cuda label their results with the kernel they asked for;
   * with D = 128 and our own (256-byte aligned) buffers every map is valid, so a failure here
   * is a bug in the arguments above, which the run must report. */
  const char *which = "q";
  CUresult r = encode_map (&mq, p.qh, 4, qd, qs, box4);
  if (r == CUDA_SUCCESS) {
    which = "k";
    r = encode_map (&mk, p.kh, 4, kd, ks, box4);
  }
  if (r == CUDA_SUCCESS) {
    which = "v";
    r = encode_map (&mv, p.vt, 2, vd, vs, box2);
  }
  if (r != CUDA_SUCCESS)
    return hv_k_fail (ctx, "attention (wgmma-ws): cuTensorMapEncodeTiled for %s failed (CUresult %d); "
                      "HV_CUDA_ATTN=wgmma runs the other Hopper kernel", which, (int) r);
  cudaError_t e = cudaFuncSetAttribute (k_flash_ws, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) WS_SMEM);
  if (e != cudaSuccess)
    return hv_k_fail (ctx, "attention: cannot reserve %zu bytes of shared memory: %s", WS_SMEM, cudaGetErrorString (e));
  dim3 grid ((unsigned int) ((p.Lq + WG_BR - 1) / WG_BR), (unsigned int) p.H, (unsigned int) B);
  k_flash_ws<<<grid, WS_THREADS, WS_SMEM, ctx->stream>>> (p, mq, mk, mv);
  return hv_k_launched (ctx, "attention (wgmma-ws)");
}

} /* namespace hv_attn */

/* 1 if an mbarrier wait of k_flash_ws gave up since the last call (a protocol error: its
 * results are garbage), 0 if not, -1 if the flag cannot be read; clears the flag. Synchronizes. */
int
hv_k_attention_ws_stuck (HvKCtx *ctx)
{
  int v = 0, zero = 0;
  if (cudaStreamSynchronize (ctx->stream) != cudaSuccess ||
      cudaMemcpyFromSymbol (&v, hv_attn::hv_ws_stuck, sizeof v) != cudaSuccess) {
    (void) cudaGetLastError ();
    return -1;
  }
  if (v && cudaMemcpyToSymbol (hv_attn::hv_ws_stuck, &zero, sizeof zero) != cudaSuccess)
    (void) cudaGetLastError ();
  return v;
}
