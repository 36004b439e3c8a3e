/* conv3d-wgmma.cu — 3D convolution for Hopper (sm_90a): implicit GEMM on warpgroup MMA (wgmma).
 * Same function as k_conv3d_igemm in conv3d.cu (any stride and zero padding, Ci/Co/position
 * tails, bias fused, fp32 NCTHW in and out, B batches); selected by hv_k_conv3d when
 * HV_CUDA_CONV=igemm-wgmma (see conv3d.cu), on compute 9.0 with sm_90a code in the build.
 *
 * Why: the VAE decode target (544×960×129, official tiling, <= 10 s on an H200) needs ~400-500
 * TF/s sustained over its convs; mma.sync (k_conv3d_igemm) is predicted at 300-380 TF/s, capped
 * by ldmatrix/register operand traffic (2 shared-memory wavefronts per HMMA). wgmma reads both
 * operands straight from shared memory through descriptors, 64×N×16 per warpgroup instruction.
 *
 * ---- design ----
 * y[co][p] = bias[co] + Σ_k W[co][k] · X(k, p): M = Co (wgmma's A = weights, 64 rows per
 * warpgroup), N = output positions (B = the gathered input), K = 64-channel chunks × taps,
 * chunk order (ci-chunk outer, tap inner) as in conv3d.cu (one chunk's taps re-read the same
 * 64 channels while they are hot).
 *  - Input: a pre-pass (k_conv_to_cl) converts one batch item of x (fp32 NCTHW) to channels-
 *    last bf16 xc[t][h][w][Cp], Cp = Ci rounded up to 64 with zero channels. Then one position's
 *    K chunk (64 channels of one tap) is 128 contiguous, 128-byte aligned bytes of xc: the B
 *    tile is filled by cp.async 16 B (8 per position row, no registers, no conversion in the
 *    main loop, channel tails are real zeros, no channel predicate). Why not gather fp32 from
 *    NCTHW inside the kernel (the brief's suggestion, as k_conv3d_igemm does): per 64-channel
 *    chunk and 256 positions that is 16,384 scalar 4-byte loads (vs 2,048 16-byte copies),
 *    64 KB per chunk through L1/L2 instead of 32 KB, and, to cover ~800 clk of L2 latency at
 *    ~2,000 clk per chunk, ~40 KB of loads in flight per SM — held in registers (80+ per
 *    producer thread beside 128 accumulators per consumer thread), where cp.async holds them
 *    in the stage buffers. The price is the pre-pass: 6 bytes per input element of device
 *    memory traffic (~0.2-0.3 ms for the 128-channel full-resolution conv below, ~10 % of it;
 *    ~3 % for 512 channels), and a bf16 copy of one batch item (budget: falls back above
 *    CW_XC_BUDGET).
 *  - Weights: repacked per call (k_conv_wpack64) to bf16 wp[co][(cc·taps + tap)·64 + r],
 *    ci = 64·cc + r, zero for ci >= Ci and for co >= Co up to a whole block tile (Cop rows),
 *    so a chunk is 128 contiguous bytes per co row and no copy needs a predicate.
 *  - Block tile: BM = 64·NWG output channels × BN = 128·NWG positions, NWG consumer warpgroups
 *    (NWG = 2 for Co > 64: 128 × 256, 256 threads; NWG = 1 for Co <= 64: 64 × 128). Warpgroup
 *    wg issues wgmma m64nBNk16 for Co rows 64·wg.. of the tile against all BN positions: A from
 *    shared memory rows 64·wg.., B = the whole position tile. N = 256 is the widest wgmma: the
 *    fewest shared-memory bytes per FLOP (A 2 KB + B 8 KB per 64×256×16 step). 128 fp32
 *    accumulators per thread.
 *  - Shared memory per stage: A [BM rows][64 bf16] and B [BN rows][64 bf16], both K-major with
 *    the 128-byte swizzle (row r's 16-byte chunk c at r·128 + ((c ^ (r & 7)) << 4), 1024-byte
 *    aligned 8-row atoms), i.e. exactly the layout and descriptors of attention-wgmma.cu
 *    (LBO 1 (unused), SBO 1024, base offset 0, swizzle mode 1; k-step kk at +32·kk bytes).
 *    NWG = 2: 16 + 32 = 48 KB per stage; STAGES = 4 (default) 192 KB, 3 (HV_CUDA_CONV_STAGES=3)
 *    144 KB, leaving more L1 for the input's tap-to-tap reuse; + 1 KB alignment slack.
 *  - Copies: thread tid owns 16-byte chunk q = tid & 7 of rows (tid >> 3) + j·NTHR/8 (8 input
 *    position rows and 4 weight rows per thread and chunk): a warp writes 4 whole 128-byte rows
 *    per cp.async (coalesced on the global side, conflict-free on the shared side), and
 *    (row & 7) is the same for all of a thread's rows, so the swizzled destinations are one
 *    register + immediates. Input copies
 *    are cp.async.ca (L1-allocating: tap dw+1 re-reads 255 of tap dw's 256 lines), weights
 *    cp.async.cg. A position's validity per tap comes from a 30-bit mask computed once per
 *    block (bit d: t-offset d inside [0, T); bits 10+d, 20+d: h, w), so kernels up to 10 taps
 *    per dimension; invalid taps and positions past P copy 0 bytes (zero fill).
 *  - Pipeline (no warp specialisation; every thread copies, as attention-wgmma.cu):
 *      prologue: copy chunks 0..STAGES-3, one cp.async group each;
 *      chunk c: cp.async.wait_group STAGES-3 (own copies of chunk c landed)
 *               fence.proxy.async (they were generic-proxy writes, wgmma reads async proxy)
 *               __syncthreads     (everyone's copies of c landed; every warpgroup has passed
 *                                  its wgmma.wait_group 1 of chunk c-1, so chunk c-2's wgmmas
 *                                  are complete in both warpgroups)
 *               wgmma.fence, 4 × wgmma (k-steps of 16), commit
 *               copy chunk c+STAGES-2 into stage (c-2) mod STAGES, commit a group (maybe empty)
 *               wgmma.wait_group 1 (chunk c-1's wgmmas done; chunk c's may run on)
 *    so one chunk's MMAs are always queued behind the running ones (the tensor core does not
 *    drain at the barrier) and copies run STAGES-2 chunks ahead.
 *  - Epilogue: d[i] of thread (warp w, lane 4g + t) = D[16w + g + 8·((i >> 1) & 1)][8·(i >> 2)
 *    + 2t + (i & 1)] (9.7.15.5.1.1.1): + bias[co], float2 stores to y NCTHW where P is even.
 * PTX ISA sections (8.x, 9.7.15 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"):
 * 9.7.15.5.1.2 shared memory matrix layout (K-major, 128-byte swizzle), 9.7.15.5.1.2.2 matrix
 * descriptor, 9.7.15.5.1.1.1 accumulator fragments of .m64nNk16, 9.7.15.6 wgmma.fence /
 * commit_group / wait_group; 9.7.9.25 cp.async (src-size 0 = zero fill).
 * tests/gpu/emulate-conv3d-wgmma.py replays the pre-pass, the weight packing, every copy's
 * source and swizzled destination, the descriptors (decoded per the ISA), the wgmma k-steps,
 * the accumulator layout, the epilogue and the stage/barrier order (asserting no copy lands in a
 * stage an unfinished wgmma may read and no wgmma reads a stage before its copies are waited,
 * fenced and barriered) on whole blocks against a direct convolution.
 *
 * ---- expected speed (a prediction written before any GPU run) ----
 * bench-cuda's conv: 128→128 3x3x3 at [1,128,17,256,256] (input 19×258×258) = 0.985 TFLOP.
 * H100/H200 SXM: 132 SMs, 4096 dense bf16 FLOP/clk/SM (989 TF/s at 1.83 GHz).
 *  - Tensor core: a chunk of a 128×256 block is 2·128·256·64 = 4.19 MFLOP = 1,024 clk at peak.
 *  - Shared memory per chunk: wgmma reads 2 × (8 KB A + 32 KB B) = 80 KB, cp.async writes 48 KB:
 *    128 KB per 1,024 clk, right at ~128 B/clk/SM: this is the kernel's own ceiling (~80-90 %
 *    of peak at best; wgmma's operand reads may be cheaper than generic wavefronts — unknown).
 *  - L2 → SM: 48 KB per chunk without L1 hits (16 KB weights, 32 KB input), ~27 KB if the
 *    cp.async.ca copies of taps dw+1, dw+2 hit L1; at 550 TF/s that is 6.4 / 3.6 TB/s of L2
 *    bandwidth — the likely limiter (H100 L2 ~5.5-7 TB/s measured by others): a big miss with
 *    STAGES=4 and a better number with HV_CUDA_CONV_STAGES=3 means the L1 reuse matters.
 *  - Per chunk ~25 instructions per thread besides the wgmma (8+4 cp.async, mask tests,
 *    64-bit addresses), one barrier: small against 1,024 clk.
 *  - Grid: 1,114,112 positions / 256 = 4,352 blocks of 256 threads, one per SM (195
 *    registers, 193 KB of shared memory) = 33.0 waves of 132: no tail to speak of.
 * Resources (ptxas, sm_90a, -Xptxas -v): NWG = 2: 195 registers (STAGES 4) / 198 (3); NWG = 1:
 * 142; no stack, no spills, no wgmma serialisation warning (C7510-C7515).
 * Prediction: main kernel 450-600 TF/s (1.65-2.2 ms), pre-pass 0.2-0.3 ms (972 MB at 3.3-4.8
 * TB/s), weight packing ~0.01 ms: 1.9-2.5 ms for the conv (≈ 390-520 TF/s end to end) against
 * igemm's predicted 2.6-3.3 ms. For the decode: ~2.4 × 1.6 PFLOP / ~450 TF/s ≈ 8.5 s of convs.
 * Risks for the first run: (1) L2 bandwidth as above; (2) wgmma serialisation (ptxas warns
 * C7510-C7515; none at the time of writing); (3) the carve-out: 192 KB of shared memory leaves
 * ~28 KB of L1, so the .ca reuse may vanish with STAGES=4; (4) never run: the emulator checks
 * layouts against the ISA text, not against silicon. */
#include "cuda-common.cuh"
#include "wgmma.cuh"
#include <stdlib.h>
#include <string.h>

namespace hv_conv {

int wgmma_supported (HvKCtx *ctx, int64_t Ci, int64_t T, int64_t H, int64_t W, int64_t Co,
                     const int *ks, int64_t Ho, int64_t Wo, int64_t P);
int wgmma_conv3d (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t Ci, int64_t T,
                  int64_t H, int64_t W, const void *w, int wdt, float wscale, int64_t Co,
                  const int *ks, const int *stride, const int *pad, const void *bias, int bdt,
                  float bscale, int64_t Ho, int64_t Wo, int64_t P);

namespace {

constexpr int CW_BK = 64;                                  /* channels per K chunk (128 bytes) */
constexpr int64_t CW_XC_BUDGET = (int64_t) 4 << 30;        /* bytes of the channels-last copy */
constexpr int CW_MAXK = 10;                                /* taps per dimension (mask bits) */

struct CwParams {
  const __nv_bfloat16 *xc;   /* one batch item, [T][H][W][Cp] */
  const __nv_bfloat16 *w;    /* [Cop][Kp] */
  float *y;                  /* one batch item, [Co][P] */
  const void *bias;
  int bdt;
  float bscale;
  int Co, Cp;
  int T, H, W;
  int Ho, Wo;
  int kt, kh, kw;
  int st, sh, sw;
  int pt, ph, pw;
  int nk;                    /* K chunks: Cp/64 · taps */
  int nco;                   /* co tiles */
  int64_t P, Kp;
};

/* Device helpers exist only in the sm_90a pass (an sm_80 pass compiles the kernel to a trap). */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
using namespace hv_wg;
#endif

/* A far-away base coordinate: no tap offset brings it into [0, dim) */
#define CW_OUTSIDE (-(1 << 30))

template <int NWG, int STAGES>
__global__ void __launch_bounds__ (128 * NWG, 1)
k_conv3d_wgmma (const __grid_constant__ CwParams p)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int NTHR = 128 * NWG, BM = 64 * NWG, BN = 128 * NWG, NA = BN / 2;
  constexpr uint32_t A_BYTES = BM * 128u, B_BYTES = BN * 128u, STAGE_BYTES = A_BYTES + B_BYTES;
  constexpr int RSTEP = NTHR / 8;             /* rows between a thread's copies */
  constexpr int BROWS = BN / RSTEP;           /* = 8 position rows per thread */
  constexpr int AROWS = BM / RSTEP;           /* = 4 weight rows per thread */
  static_assert (RSTEP % 8 == 0, "a thread's rows must share row & 7");
  extern __shared__ unsigned char cw_smem_raw[];
  const uint32_t base = ((uint32_t) __cvta_generic_to_shared (cw_smem_raw) + 1023u) & ~1023u;

  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int co0 = (int) (blockIdx.x % (unsigned int) p.nco) * BM;
  const int64_t p0 = (int64_t) (blockIdx.x / (unsigned int) p.nco) * BN;

  /* ---- copy roles: chunk q of rows r0 + j·RSTEP; swizzled offset (q ^ (r0 & 7)) << 4 ---- */
  const int q = tid & 7, r0 = tid >> 3;
  const uint32_t dst0 = (uint32_t) r0 * 128u + (uint32_t) ((q ^ (r0 & 7)) << 4);
  uint32_t vmask[BROWS], vbase[BROWS];
#pragma unroll
  for (int j = 0; j < BROWS; j++) {
    const int64_t pos = p0 + r0 + j * RSTEP;
    int bt = CW_OUTSIDE, bh = CW_OUTSIDE, bw = CW_OUTSIDE;
    if (pos < p.P) {
      const int ow = (int) (pos % p.Wo);
      const int64_t r = pos / p.Wo;
      bt = (int) (r / p.Ho) * p.st - p.pt;
      bh = (int) (r % p.Ho) * p.sh - p.ph;
      bw = ow * p.sw - p.pw;
    }
    uint32_t m = 0;
    for (int d = 0; d < p.kt; d++)
      m |= (uint32_t) ((unsigned) (bt + d) < (unsigned) p.T) << d;
    for (int d = 0; d < p.kh; d++)
      m |= (uint32_t) ((unsigned) (bh + d) < (unsigned) p.H) << (10 + d);
    for (int d = 0; d < p.kw; d++)
      m |= (uint32_t) ((unsigned) (bw + d) < (unsigned) p.W) << (20 + d);
    vmask[j] = m;
    /* flat offset of the tap-(0,0,0) input position, modulo 2^32: exact once a tap is valid */
    vbase[j] = ((uint32_t) bt * (uint32_t) p.H + (uint32_t) bh) * (uint32_t) p.W + (uint32_t) bw;
  }
  const __nv_bfloat16 *wrow = p.w + (int64_t) (co0 + r0) * p.Kp + q * 8;
  const __nv_bfloat16 *xq = p.xc + q * 8;

  /* the next chunk to copy: channel block lc, tap (ldt, ldh, ldw) */
  int lchunk = 0, lc = 0, ldt = 0, ldh = 0, ldw = 0;
  auto load_next = [&] () {
    if (lchunk < p.nk) {
      const uint32_t sa = base + (uint32_t) (lchunk % STAGES) * STAGE_BYTES + dst0, sb = sa + A_BYTES;
#pragma unroll
      for (int j = 0; j < AROWS; j++)
        cp_async16_s (sa + j * RSTEP * 128u, wrow + (int64_t) j * RSTEP * p.Kp + (int64_t) lchunk * CW_BK, 16);
      const uint32_t toff = ((uint32_t) ldt * (uint32_t) p.H + (uint32_t) ldh) * (uint32_t) p.W + (uint32_t) ldw;
      const int sh_t = ldt, sh_h = 10 + ldh, sh_w = 20 + ldw;
      const __nv_bfloat16 *xch = xq + lc * CW_BK;
#pragma unroll
      for (int j = 0; j < BROWS; j++) {
        const bool ok = ((vmask[j] >> sh_t) & (vmask[j] >> sh_h) & (vmask[j] >> sh_w) & 1u) != 0;
        const __nv_bfloat16 *src = ok ? xch + (int64_t) (vbase[j] + toff) * p.Cp : p.xc;
        cp_async16_ca (sb + j * RSTEP * 128u, src, ok ? 16 : 0);
      }
      lchunk++;
      if (++ldw == p.kw) {
        ldw = 0;
        if (++ldh == p.kh) {
          ldh = 0;
          if (++ldt == p.kt) {
            ldt = 0;
            lc++;
          }
        }
      }
    }
    cp_commit ();   /* one group per call, empty or not: wait_group counts stay uniform */
  };

  float acc[NA];
#pragma unroll
  for (int i = 0; i < NA; i++)
    acc[i] = 0.0f;

#pragma unroll
  for (int s = 0; s < STAGES - 2; s++)
    load_next ();

  /* this warpgroup's A rows start 64 rows = 8 KB into each stage's A tile */
  const uint32_t a_wg = base + (uint32_t) wg * 64u * 128u;
  for (int c = 0; c < p.nk; c++) {
    const uint32_t so = (uint32_t) (c % STAGES) * STAGE_BYTES;
    cp_wait<STAGES - 3> ();
    fence_proxy_async ();
    __syncthreads ();
    wg_fence ();
#pragma unroll
    for (int kk = 0; kk < CW_BK / 16; kk++)
      wgmma_acc (acc, desc_sw128 (a_wg + so + kk * 32u), desc_sw128 (base + so + A_BYTES + kk * 32u));
    wg_commit ();
    load_next ();   /* chunk c + STAGES - 2 into the stage chunk c - 2 used */
    wg_wait<1> ();
  }
  wg_wait<0> ();
  fence_regs (acc);

  /* ---- epilogue: d[i] at co row 16·warp + g + 8·((i >> 1) & 1), position 8·(i >> 2) + 2t + (i & 1) ---- */
  const int g = lane >> 2, t4 = lane & 3;
  const bool pair_ok = (p.P & 1) == 0 && ((uintptr_t) p.y & 7) == 0;   /* float2: 8-byte aligned */
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int co = co0 + wg * 64 + warp * 16 + g + 8 * h;
    if (co >= p.Co)
      continue;
    const float bv = p.bias ? hv_load_f32 (p.bias, p.bdt, co) * p.bscale : 0.0f;
    float *yr = p.y + (int64_t) co * p.P;
#pragma unroll
    for (int j = 0; j < BN / 8; j++) {
      const int64_t pos = p0 + j * 8 + 2 * t4;
      const float v0 = acc[4 * j + 2 * h] + bv, v1 = acc[4 * j + 2 * h + 1] + bv;
      if (pair_ok && pos + 1 < p.P) {
        *(float2 *) (yr + pos) = make_float2 (v0, v1);
      } else {
        if (pos < p.P)
          yr[pos] = v0;
        if (pos + 1 < p.P)
          yr[pos + 1] = v1;
      }
    }
  }
#else
  __trap ();
#endif
}

/* xc[pos][c] (bf16, c < Cp, zero for c >= Ci) = x[c][pos] (f32) of one batch item: 64 positions ×
 * 64 channels per block through shared memory; reads coalesced along positions, writes along
 * channels (a warp writes one 128-byte row). */
__global__ void __launch_bounds__ (256)
k_conv_to_cl (__nv_bfloat16 *xc, const float *x, int64_t Ci, int64_t THW, int Cp)
{
  __shared__ float tile[64][65];
  const int tx = threadIdx.x & 63, ty = threadIdx.x >> 6;
  const int64_t pos0 = (int64_t) blockIdx.x * 64;
  const int c0 = (int) blockIdx.y * 64;
  for (int r = ty; r < 64; r += 4) {
    const int64_t ci = c0 + r, pos = pos0 + tx;
    tile[r][tx] = ci < Ci && pos < THW ? x[ci * THW + pos] : 0.0f;
  }
  __syncthreads ();
  for (int i = threadIdx.x; i < 64 * 32; i += 256) {
    const int pp = i >> 5, cp = i & 31;
    const int64_t pos = pos0 + pp;
    if (pos < THW) {
      __nv_bfloat162 v = __floats2bfloat162_rn (tile[2 * cp][pp], tile[2 * cp + 1][pp]);
      *(__nv_bfloat162 *) (xc + pos * Cp + c0 + 2 * cp) = v;
    }
  }
}

/* wp[co][(cc·taps + tap)·64 + r] = w[co][ci = 64·cc + r][tap] · wscale (bf16); 0 for ci >= Ci or
 * co >= Co (rows up to Cop) */
__global__ void
k_conv_wpack64 (__nv_bfloat16 *wp, const void *w, int wdt, float wscale, int64_t Ci, int64_t Co,
                int64_t taps, int64_t Kp, int64_t n)
{
  HV_GRID_STRIDE (i, n) {
    const int64_t co = i / Kp, k = i % Kp;
    const int64_t chunk = k / CW_BK, r = k % CW_BK;
    const int64_t cc = chunk / taps, tap = chunk % taps, ci = cc * CW_BK + r;
    const float v = ci < Ci && co < Co ? hv_load_f32 (w, wdt, (co * Ci + ci) * taps + tap) * wscale : 0.0f;
    wp[i] = __float2bfloat16_rn (v);
  }
}

template <int NWG, int STAGES>
size_t
cw_smem_bytes ()
{
  return (size_t) STAGES * (64 * NWG + 128 * NWG) * 128 + 1024;
}

template <int NWG, int STAGES>
int
cw_launch (HvKCtx *ctx, const CwParams &p)
{
  const size_t smem = cw_smem_bytes<NWG, STAGES> ();
  /* set on every call: the attribute belongs to the current device */
  cudaError_t e = cudaFuncSetAttribute (k_conv3d_wgmma<NWG, STAGES>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem);
  if (e != cudaSuccess)
    return hv_k_fail (ctx, "conv3d (wgmma): cannot reserve %zu bytes of shared memory: %s", smem,
                      cudaGetErrorString (e));
  const int64_t npt = (p.P + 128 * NWG - 1) / (128 * NWG);
  k_conv3d_wgmma<NWG, STAGES><<<(unsigned int) (npt * p.nco), 128 * NWG, smem, ctx->stream>>> (p);
  return hv_k_launched (ctx, "conv3d (wgmma)");
}

/* HV_CUDA_CONV_STAGES=3: three shared-memory stages (144 KB, more L1 left) instead of four */
int
cw_stages (void)
{
  const char *env = getenv ("HV_CUDA_CONV_STAGES");
  return env && strcmp (env, "3") == 0 ? 3 : 4;
}

int
cw_image_ok (HvKCtx *ctx)
{
#if defined(HV_HAVE_SM90A)
  if (ctx->sm != 90)
    return 0;
  cudaFuncAttributes a;
  if (cudaFuncGetAttributes (&a, k_conv3d_wgmma<2, 4>) != cudaSuccess) {
    (void) cudaGetLastError ();   /* no image for this device: not an error of the next launch */
    return 0;
  }
  return a.binaryVersion == 90 && ctx->smem_optin >= cw_smem_bytes<2, 4> ();
#else
  (void) ctx;
  return 0;
#endif
}

} /* namespace */

/* Shapes the kernel takes: Hopper with sm_90a code; Ci >= 32 (a 64-channel chunk at least half
 * used) and Co >= 32; kernel extents <= 10 (the tap masks); int32 flat offsets within one
 * batch item; the bf16 channels-last copy of one batch item within CW_XC_BUDGET. */
int
wgmma_supported (HvKCtx *ctx, int64_t Ci, int64_t T, int64_t H, int64_t W, int64_t Co,
                 const int *ks, int64_t Ho, int64_t Wo, int64_t P)
{
  const int64_t Cp = (Ci + CW_BK - 1) / CW_BK * CW_BK, THW = T * H * W;
  const int64_t taps = (int64_t) ks[0] * ks[1] * ks[2];
  if (Ci < 32 || Co < 32 || Ci >= (1 << 20) || Co >= (1 << 20))
    return 0;
  if (ks[0] > CW_MAXK || ks[1] > CW_MAXK || ks[2] > CW_MAXK)
    return 0;
  const int64_t bm = Co <= 64 ? 64 : 128, bn = 2 * bm;
  const int64_t tiles = (P + bn - 1) / bn * ((Co + bm - 1) / bm);   /* the 1-D grid */
  if (THW >= ((int64_t) 1 << 31) || Ho * Wo >= ((int64_t) 1 << 31) || tiles >= ((int64_t) 1 << 31))
    return 0;
  if (Cp / CW_BK * taps >= (1 << 30) || THW * Cp * 2 > CW_XC_BUDGET)
    return 0;
  return cw_image_ok (ctx);
}

int
wgmma_conv3d (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t Ci, int64_t T, int64_t H,
              int64_t W, const void *w, int wdt, float wscale, int64_t Co, const int *ks,
              const int *stride, const int *pad, const void *bias, int bdt, float bscale,
              int64_t Ho, int64_t Wo, int64_t P)
{
  const int nwg = Co <= 64 ? 1 : 2, bm = 64 * nwg;
  const int64_t taps = (int64_t) ks[0] * ks[1] * ks[2];
  const int64_t Cp = (Ci + CW_BK - 1) / CW_BK * CW_BK, THW = T * H * W;
  const int64_t nco = (Co + bm - 1) / bm, Cop = nco * bm;
  CwParams p;
  memset (&p, 0, sizeof p);
  p.bias = bias;
  p.bdt = bdt;
  p.bscale = bscale;
  p.Co = (int) Co;
  p.Cp = (int) Cp;
  p.T = (int) T;
  p.H = (int) H;
  p.W = (int) W;
  p.Ho = (int) Ho;
  p.Wo = (int) Wo;
  p.kt = ks[0];
  p.kh = ks[1];
  p.kw = ks[2];
  p.st = stride[0];
  p.sh = stride[1];
  p.sw = stride[2];
  p.pt = pad[0];
  p.ph = pad[1];
  p.pw = pad[2];
  p.nk = (int) (Cp / CW_BK * taps);
  p.nco = (int) nco;
  p.P = P;
  p.Kp = Cp * taps;

  int rc = 1;
  const int64_t n = Cop * p.Kp;
  const int stages = cw_stages ();
  __nv_bfloat16 *wp = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) n * 2);
  __nv_bfloat16 *xc = wp ? (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) (THW * Cp) * 2) : NULL;
  if (!xc)
    goto out;
  k_conv_wpack64<<<hv_grid_1d (n, 256), 256, 0, ctx->stream>>> (wp, w, wdt, wscale, Ci, Co, taps, p.Kp, n);
  if (hv_k_launched (ctx, "conv3d (wgmma weight packing)"))
    goto out;
  p.w = wp;
  p.xc = xc;
  for (int64_t b = 0; b < B; b++) {
    dim3 grid ((unsigned int) ((THW + 63) / 64), (unsigned int) (Cp / 64));
    k_conv_to_cl<<<grid, 256, 0, ctx->stream>>> (xc, x + b * Ci * THW, Ci, THW, (int) Cp);
    if (hv_k_launched (ctx, "conv3d (wgmma channels-last copy)"))
      goto out;
    p.y = y + b * Co * P;
    if (nwg == 1 ? (stages == 3 ? cw_launch<1, 3> (ctx, p) : cw_launch<1, 4> (ctx, p))
                 : (stages == 3 ? cw_launch<2, 3> (ctx, p) : cw_launch<2, 4> (ctx, p)))
      goto out;
  }
  rc = 0;
out:
  hv_k_free (ctx, xc);
  hv_k_free (ctx, wp);
  return rc;
}

} /* namespace hv_conv */
