/* conv3d.cu — 3D convolution (the causal VAE): an implicit-GEMM tensor-core kernel, with
 * im2col + cuBLASLt as the fallback.
 *
 * y[b][co][p] = bias[co] + Σ_k W[co][k] · X_b(k, p), p = output position (ot, oh, ow), k = (ci,
 * tap), tap = (dt, dh, dw). The engine pads causally itself, so the VAE's convs arrive as
 * stride-1 3x3x3 (or 1x1x1) with zero padding 0; the kernel takes any stride and zero padding.
 *
 * ---- implicit GEMM (k_conv3d_igemm, sm_80+) ----
 * No column buffer. A block owns BM output channels × 128 output positions of one batch item
 * (BM = 128, 64 or 32 by Co) and walks K in chunks of 32 input channels of one tap; the chunk
 * order is (ci-chunk outer, tap inner) so that one chunk's 27 taps re-read the same 32 input
 * channels while they are hot in L1 (tap-outer would stream all Ci channels 27 times through L2).
 *  - A (weights): repacked once per call to bf16 Wp[co][(cc·taps + tap)·32 + r], ci = 32·cc + r,
 *    zero for ci >= Ci, so a chunk is 32 contiguous bf16 (64 B) per co row: cp.async 16 B into
 *    As[BM][40] (rows padded to 80 B: the 8 row addresses of an ldmatrix phase fall in 8
 *    different 16-byte bank groups, 80·r mod 128 distinct for r = 0..7).
 *  - B (input): gathered straight from x (fp32 NCTHW). Thread t owns positions n, n+1
 *    (n = 2·(t mod 64)) and channels kq + 4j (kq = t / 64, j = 0..7; the 128-thread variant:
 *    kq + 2j, j = 0..15): for a fixed channel and
 *    tap, consecutive positions are consecutive input w, so a warp's loads coalesce. Values
 *    outside the input (zero padding), past P, or of channels >= Ci load as 0, are rounded to
 *    bf16 and stored as bf16 pairs into Bs[32][136] (rows padded to 272 B: ldmatrix.trans
 *    phases conflict-free; a warp's 32 stores are 32 consecutive words).
 *  - Pipeline, two stages, one barrier per chunk: at chunk c, after the barrier, issue cp.async
 *    for A(c+1) and the global loads for B(c+1) into registers, run chunk c's mma.sync, then
 *    convert and store B(c+1) — the loads' latency hides behind the tensor-core work.
 *  - 8 warps as 2 (co) × 4 (positions): warp tile 16·MT co × 32 positions, mma.sync
 *    m16n8k16 bf16 → fp32; A fragments by ldmatrix.x4 (rows = co, as the attention kernel's
 *    Q), B fragments by ldmatrix.x4.trans from the [k][position] tile (as its V). Variant
 *    "wide" (HV_CUDA_CONV=igemm-wide, Co > 64 only): 4 warps as 2 × 2, warp tile 64 × 64.
 *  - Epilogue: + bias[co] (any dtype), fp32 stores to y NCTHW, float2 where P is even.
 * tests/gpu/emulate-conv3d.py replays all of this lane by lane (gather, padding, ldmatrix and
 * mma fragments per the PTX ISA, epilogue, bank conflicts) against a direct convolution.
 * Resources (ptxas, sm_90a): default 126 registers, 37,888 B static shared memory, no spills,
 * 2 blocks (16 warps) per SM; wide 246 registers, 2 blocks (8 warps) per SM.
 *
 * Expected speed (a prediction written before any GPU run; bench-cuda's conv rows measure it):
 * the full-resolution 128→128 3x3x3 conv at [1,128,17,256,256] (input 19×258×258, padded by
 * the engine) is 2·128·3456·17·65536 = 0.985 TFLOP. H100/H200 SXM: 132 SMs, dense bf16 peak
 * 4096 FLOP/clk/SM (989 TF/s at 1.83 GHz); mma.sync (no wgmma) reaches at most ~2/3 of that.
 * Per K chunk (32) and warp of the default kernel (64×32 tile): 32 HMMA of 4096 FLOP against
 * 12 ldmatrix.x4 (4 wavefronts each), 8 gather stores and 2 cp.async of 16 B/lane (≈ 8
 * wavefronts) = ~64 shared-memory wavefronts, i.e. 2 per HMMA: at one wavefront per clock the
 * SM sustains ≤ 2048 FLOP/clk (≈ 495 TF/s). Issue: ~280 PTX instructions per 32 HMMA, ~4
 * warps per scheduler, enough to stay near that bound only if the gather's L1/L2 hits keep
 * coming (ci-chunk-outer order: ~190 FLOP per byte from L2, ~1.9 TB/s at 350 TF/s).
 * Prediction: 300-380 TF/s, 2.6-3.3 ms for this conv (≈ 0.16-0.2 s per 60-TFLOP conv of the
 * untiled 544×960×129 decode). Wide: 1.5 wavefronts per HMMA (bound ≈ 660 TF/s) but half the
 * warps to hide latency: 300-450 TF/s, 2.2-3.3 ms. im2col moves 2 × 3456 × 2 B per output
 * position through DRAM (≈ 15 GB here, ≥ 5 ms) and its gather does 64-bit divisions per
 * element: expect 15-30 ms. A miss low in both kernels points at the gather (L1/L2), a miss
 * of the default kernel alone at shared-memory bandwidth (then prefer wide).
 *
 * ---- im2col (fallback) ----
 * For batch b and output positions p0..p0+pc: col [K = Ci·kt·kh·kw][pc] (bf16, zero padding
 * applied while gathering), then y[b][co][p0 + pp] = Σ_k W[co][k] · col[k][pp]. In cuBLAS's
 * column-major terms: D (pc × Co, ld P) = col (pc × K, ld ldc) · Wᵀ-as-stored (K × Co, ld K),
 * no transposes. Chunks keep the col buffer under COL_BUDGET bytes; fp32 accumulation.
 *
 * Which path: HV_CUDA_CONV=im2col forces im2col, HV_CUDA_CONV=igemm the implicit GEMM wherever
 * it can run (sm_80+, a channel volume T·H·W < 2^31, B <= 65535), HV_CUDA_CONV=igemm-wide the
 * same with the wide variant where Co > 64, HV_CUDA_CONV=igemm-wgmma the Hopper wgmma kernel of
 * conv3d-wgmma.cu where it runs (compute 9.0, sm_90a code, Ci and Co >= 32), else the default
 * choice (igemm, then im2col); by default the implicit GEMM
 * runs when it can and Ci >= 16 (for Ci = 3 the 32-channel K chunk would be mostly zeros and
 * im2col's column buffer is small). Read on every call, so a test can switch per case. A forced
 * path that cannot run falls back silently: hv_k_conv3d_kernel says which path a shape takes now
 * (bench-cuda and test-backend-ops print it where it differs from the request). */
#include "cuda-common.cuh"
#include <stdlib.h>
#include <string.h>

#define THREADS 256
#define COL_BUDGET ((int64_t) 256 << 20)

/* conv3d-wgmma.cu: the Hopper (sm_90a) implicit GEMM on wgmma */
namespace hv_conv {
int wgmma_supported (HvKCtx *ctx, int64_t Ci, int64_t T, int64_t H, int64_t W, int64_t Co,
                     const int *ks, int64_t Ho, int64_t Wo, int64_t P);
int wgmma_conv3d (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t Ci, int64_t T,
                  int64_t H, int64_t W, const void *w, int wdt, float wscale, int64_t Co,
                  const int *ks, const int *stride, const int *pad, const void *bias, int bdt,
                  float bscale, int64_t Ho, int64_t Wo, int64_t P);
}

struct Im2col {
  int64_t Ci, T, H, W;
  int64_t To, Ho, Wo;
  int kt, kh, kw;
  int st, sh, sw;
  int pt, ph, pw;
};

__global__ void
k_im2col (__nv_bfloat16 *col, const float *x, Im2col g, int64_t p0, int64_t pc, int64_t ldc,
          int64_t n)
{
  HV_GRID_STRIDE (i, n) {
    int64_t k = i / pc, pp = i % pc, p = p0 + pp;
    int64_t ow = p % g.Wo, r = p / g.Wo;
    int64_t oh = r % g.Ho, ot = r / g.Ho;
    int64_t iw = k % g.kw;
    r = k / g.kw;
    int64_t ih = r % g.kh;
    r /= g.kh;
    int64_t it = r % g.kt, ci = r / g.kt;
    int64_t t = ot * g.st - g.pt + it, h = oh * g.sh - g.ph + ih, w = ow * g.sw - g.pw + iw;
    float v = 0.0f;
    if (t >= 0 && t < g.T && h >= 0 && h < g.H && w >= 0 && w < g.W)
      v = x[((ci * g.T + t) * g.H + h) * g.W + w];
    col[k * ldc + pp] = __float2bfloat16_rn (v);
  }
}

namespace {

/* ---- implicit GEMM ------------------------------------------------------------------------- */

constexpr int IG_BN = 128;            /* output positions per block */
constexpr int IG_BK = 32;             /* input channels per K chunk (one tap) */
constexpr int IG_LDA = IG_BK + 8;     /* As row: 40 bf16 = 80 B */
constexpr int IG_LDB = IG_BN + 8;     /* Bs row: 136 bf16 = 272 B */

struct IgParams {
  const float *x;
  const __nv_bfloat16 *w;   /* packed, [Co][Kp] */
  float *y;
  const void *bias;
  int bdt;
  float bscale;
  int Ci, Co;
  int T, H, W;
  int Ho, Wo;
  int kt, kh, kw;
  int st, sh, sw;
  int pt, ph, pw;
  int nk;                   /* K chunks: ceil(Ci/32) · taps */
  int nco;                  /* co tiles */
  int64_t THW, P, Kp;
};

__device__ __forceinline__ void
ig_cp_async16 (unsigned int s, const void *gmem, int src_bytes)
{
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(s), "l"(gmem), "r"(src_bytes));
}

/* ldmatrix on a shared-memory address (the kernel precomputes its addresses as 32-bit
 * shared-window offsets so that the per-fragment offsets fold into immediates) */
__device__ __forceinline__ void
ig_ldmatrix_x4 (uint32_t *r, unsigned int a)
{
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

__device__ __forceinline__ void
ig_ldmatrix_x4_trans (uint32_t *r, unsigned int a)
{
  asm volatile ("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

__device__ __forceinline__ void
ig_sts32 (unsigned int a, uint32_t v)
{
  asm volatile ("st.shared.u32 [%0], %1;\n" :: "r"(a), "r"(v) : "memory");
}

/* c (16×8 fp32) += a (16×16 bf16, row) · b (16×8 bf16, col); PTX ISA "Matrix Fragments for
 * mma.m16n8k16 with floating point type": a0..a3 = (row g, k 2t..2t+1), (g+8, 2t), (g, 2t+8),
 * (g+8, 2t+8); b0, b1 = (k 2t..2t+1, col g), (k 2t+8.., g); c0..c3 = (g, 2t), (g, 2t+1),
 * (g+8, 2t), (g+8, 2t+1), with g = lane / 4, t = lane % 4. */
__device__ __forceinline__ void
ig_mma (float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
  asm volatile ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ok ? *src : 0 as one predicated load (no branch around it; src is not touched when !ok) */
__device__ __forceinline__ float
ig_load_or_zero (const float *src, bool ok)
{
  float v;
  asm ("{\n .reg .pred p;\n setp.ne.b32 p, %2, 0;\n mov.b32 %0, 0;\n"
       " @p ld.global.nc.f32 %0, [%1];\n}\n" : "=f"(v) : "l"(src), "r"((int) ok));
  return v;
}

__device__ __forceinline__ uint32_t
ig_pack_bf16 (float lo, float hi)
{
  __nv_bfloat162 v = __floats2bfloat162_rn (lo, hi);   /* .x (low half) = lo */
  return *(const uint32_t *) &v;
}

/* A far-away base coordinate: (unsigned) (base + d) >= dim for every tap offset d, so a
 * position past P gathers zeros without a separate test. */
#define IG_OUTSIDE (-(1 << 30))

/* MT: m16 tiles per warp (BM = 32·MT channels, 2 warp rows); WN: warps along the 128
 * positions (4: 256 threads, warp tile 16·MT × 32; 2: 128 threads, warp tile 16·MT × 64, fewer
 * ldmatrix per mma, twice the registers per thread). */
template <int MT, int WN>
__global__ void __launch_bounds__ (64 * WN, 2)
k_conv3d_igemm (IgParams p)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  constexpr int NTHR = 64 * WN;                         /* 2 × WN warps */
  constexpr int NT = IG_BN / 8 / WN;                    /* n8 tiles per warp */
  constexpr int GR = IG_BK / WN;                        /* channel rows per gathering thread */
  constexpr int BM = 32 * MT;                           /* 2 warp rows of 16·MT channels */
  constexpr int A_STAGE = BM * IG_LDA * 2;              /* bytes */
  constexpr int B_STAGE = IG_BK * IG_LDB * 2;
  constexpr int A_LOADS = (BM * 4 + NTHR - 1) / NTHR;  /* 16-byte copies per thread */
  __shared__ __align__ (128) unsigned char smem[2 * A_STAGE + 2 * B_STAGE];
  const unsigned int sA = (unsigned int) __cvta_generic_to_shared (smem), sB = sA + 2 * A_STAGE;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WN, wn = warp % WN;
  const int co0 = (int) (blockIdx.x % (unsigned int) p.nco) * BM;
  const int64_t p0 = (int64_t) (blockIdx.x / (unsigned int) p.nco) * IG_BN;
  const int b = blockIdx.y;
  const float *xb = p.x + (int64_t) b * p.Ci * p.THW;

  /* ---- gather role: positions gn, gn+1 of the tile; channel rows kq + WN·j of each chunk ---- */
  const int gn = 2 * (tid & 63), kq = tid >> 6;
  int bt[2], bh[2], bw[2];
#pragma unroll
  for (int e = 0; e < 2; e++) {
    int64_t pos = p0 + gn + e;
    if (pos < p.P) {
      int ow = (int) (pos % p.Wo);
      int64_t r = pos / p.Wo;
      int oh = (int) (r % p.Ho), ot = (int) (r / p.Ho);
      bt[e] = ot * p.st - p.pt;
      bh[e] = oh * p.sh - p.ph;
      bw[e] = ow * p.sw - p.pw;
    } else {
      bt[e] = bh[e] = bw[e] = IG_OUTSIDE;
    }
  }
  const int64_t s4 = WN * p.THW;   /* between this thread's channel rows */
  const unsigned int sts_addr = sB + (kq * IG_LDB + gn) * 2;
  float v[2][GR];

  /* global loads of chunk (ci0, tap) into v: 0 outside the input, past P or past Ci */
  auto gather = [&] (int ci0, int dt, int dh, int dw) {
    const int nci = p.Ci - ci0 - kq;   /* row j is a real channel when WN·j < nci */
#pragma unroll
    for (int e = 0; e < 2; e++) {
      const int it = bt[e] + dt, ih = bh[e] + dh, iw = bw[e] + dw;
      const bool ok = (unsigned) it < (unsigned) p.T && (unsigned) ih < (unsigned) p.H &&
                      (unsigned) iw < (unsigned) p.W;
      /* unsigned: the offset of an outside tap wraps harmlessly and is replaced by 0 */
      const unsigned int off = ((unsigned) it * p.H + ih) * p.W + iw;
      const float *src = xb + (int64_t) (ci0 + kq) * p.THW + (ok ? off : 0u);
#pragma unroll
      for (int j = 0; j < GR; j++) {
        v[e][j] = ig_load_or_zero (src, ok && WN * j < nci);
        src += s4;
      }
    }
  };
  auto store_b = [&] (unsigned int stage) {
#pragma unroll
    for (int j = 0; j < GR; j++)
      ig_sts32 (sts_addr + stage + j * WN * IG_LDB * 2, ig_pack_bf16 (v[0][j], v[1][j]));
  };
  /* weights of chunk c: BM rows × 4 × 16 B; rows past Co are zero-filled */
  auto load_a = [&] (unsigned int stage, int c) {
#pragma unroll
    for (int l = 0; l < A_LOADS; l++) {
      const int i = tid + l * NTHR, r = i >> 2, ch = i & 3, co = co0 + r;
      if ((BM * 4) % NTHR == 0 || i < BM * 4) {
        const bool ok = co < p.Co;
        ig_cp_async16 (sA + stage + (r * IG_LDA + ch * 8) * 2,
                       p.w + (int64_t) (ok ? co : 0) * p.Kp + (int64_t) c * IG_BK + ch * 8, ok ? 16 : 0);
      }
    }
    asm volatile ("cp.async.commit_group;\n" ::);
  };

  /* fragment addresses: A as the attention kernel's Q (row lane & 15, k half lane >> 4),
   * B as its V (k row (lane & 7) + 8·((lane >> 3) & 1), position half lane >> 4) */
  const unsigned int lda_addr = sA + ((wm * 16 * MT + (lane & 15)) * IG_LDA + (lane >> 4) * 8) * 2;
  const unsigned int ldb_addr = sB + (((lane & 7) + ((lane >> 3) & 1) * 8) * IG_LDB + wn * 8 * NT + (lane >> 4) * 8) * 2;

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
      acc[mt][nt][0] = acc[mt][nt][1] = acc[mt][nt][2] = acc[mt][nt][3] = 0.0f;

  /* the chunk being gathered: channel block gc, tap (gdt, gdh, gdw); chunk c = gc·taps + tap */
  int gc = 0, gdt = 0, gdh = 0, gdw = 0;
  load_a (0, 0);
  gather (0, 0, 0, 0);
  store_b (0);

  for (int c = 0; c < p.nk; c++) {
    const unsigned int s = c & 1;
    asm volatile ("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads ();   /* stage s complete; every warp is done reading stage s^1 */
    const bool more = c + 1 < p.nk;
    if (more) {
      if (++gdw == p.kw) {
        gdw = 0;
        if (++gdh == p.kh) {
          gdh = 0;
          if (++gdt == p.kt) {
            gdt = 0;
            gc++;
          }
        }
      }
      load_a ((s ^ 1) * A_STAGE, c + 1);
      gather (gc * IG_BK, gdt, gdh, gdw);
    }

    const unsigned int la = lda_addr + s * A_STAGE, lb = ldb_addr + s * B_STAGE;
#pragma unroll
    for (int ks = 0; ks < IG_BK / 16; ks++) {
      uint32_t af[MT][4], bf[NT / 2][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
        ig_ldmatrix_x4 (af[mt], la + (mt * 16 * IG_LDA + ks * 16) * 2);
#pragma unroll
      for (int np = 0; np < NT / 2; np++)
        ig_ldmatrix_x4_trans (bf[np], lb + (ks * 16 * IG_LDB + np * 16) * 2);
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
          ig_mma (acc[mt][nt], af[mt], bf[nt >> 1][(nt & 1) * 2], bf[nt >> 1][(nt & 1) * 2 + 1]);
    }

    if (more)
      store_b ((s ^ 1) * B_STAGE);
  }

  /* ---- epilogue: rows co = co0 + wm·16·MT + mt·16 + g (+8), positions wn·8·NT + nt·8 + 2t (+1) ---- */
  const int g = lane >> 2, t4 = lane & 3;
  const bool pair_ok = (p.P & 1) == 0 && ((uintptr_t) p.y & 7) == 0;   /* float2 stores stay 8-byte aligned */
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int co = co0 + wm * 16 * MT + mt * 16 + g + half * 8;
      if (co >= p.Co)
        continue;
      const float bv = p.bias ? hv_load_f32 (p.bias, p.bdt, co) * p.bscale : 0.0f;
      float *yr = p.y + ((int64_t) b * p.Co + co) * p.P;
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
        const int64_t pos = p0 + wn * 8 * NT + nt * 8 + 2 * t4;
        const float v0 = acc[mt][nt][half * 2] + bv, v1 = acc[mt][nt][half * 2 + 1] + bv;
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
  }
#endif
}

/* wp[co][(cc·taps + tap)·32 + r] = w[co][ci = 32·cc + r][tap] · wscale (bf16), 0 for ci >= Ci */
__global__ void
k_conv_wpack (__nv_bfloat16 *wp, const void *w, int wdt, float wscale, int64_t Ci, int64_t taps,
              int64_t Kp, int64_t n)
{
  HV_GRID_STRIDE (i, n) {
    int64_t co = i / Kp, k = i % Kp;
    int64_t chunk = k / IG_BK, r = k % IG_BK;
    int64_t cc = chunk / taps, tap = chunk % taps, ci = cc * IG_BK + r;
    float v = ci < Ci ? hv_load_f32 (w, wdt, (co * Ci + ci) * taps + tap) * wscale : 0.0f;
    wp[i] = __float2bfloat16_rn (v);
  }
}

template <int MT, int WN>
int
launch_igemm (HvKCtx *ctx, IgParams &p, int64_t B)
{
  const int64_t npt = (p.P + IG_BN - 1) / IG_BN;
  p.nco = (int) ((p.Co + 32 * MT - 1) / (32 * MT));
  dim3 grid ((unsigned int) (npt * p.nco), (unsigned int) B);
  k_conv3d_igemm<MT, WN><<<grid, 64 * WN, 0, ctx->stream>>> (p);
  return hv_k_launched (ctx, "conv3d (implicit GEMM)");
}

/* 0 automatic, 1 im2col, 2 implicit GEMM, 3 implicit GEMM with 64-position warp tiles where
 * Co > 64, 4 the Hopper wgmma kernel (conv3d-wgmma.cu) where it runs, else as 0 (environment
 * HV_CUDA_CONV) */
int
conv_mode (void)
{
  const char *env = getenv ("HV_CUDA_CONV");
  if (env && strcmp (env, "im2col") == 0)
    return 1;
  if (env && strcmp (env, "igemm") == 0)
    return 2;
  if (env && strcmp (env, "igemm-wide") == 0)
    return 3;
  if (env && strcmp (env, "igemm-wgmma") == 0)
    return 4;
  return 0;
}

int
conv3d_igemm (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t Ci, int64_t T, int64_t H,
              int64_t W, const void *w, int wdt, float wscale, int64_t Co, const int *ks,
              const int *stride, const int *pad, const void *bias, int bdt, float bscale,
              int64_t Ho, int64_t Wo, int64_t P, bool wide)
{
  const int64_t taps = (int64_t) ks[0] * ks[1] * ks[2], ncc = (Ci + IG_BK - 1) / IG_BK;
  IgParams p;
  memset (&p, 0, sizeof p);
  p.x = x;
  p.y = y;
  p.bias = bias;
  p.bdt = bdt;
  p.bscale = bscale;
  p.Ci = (int) Ci;
  p.Co = (int) Co;
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
  p.nk = (int) (ncc * taps);
  p.THW = T * H * W;
  p.P = P;
  p.Kp = ncc * taps * IG_BK;

  __nv_bfloat16 *wp = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) (Co * p.Kp) * 2);
  if (!wp)
    return 1;
  int rc = 1;
  int64_t n = Co * p.Kp;
  k_conv_wpack<<<hv_grid_1d (n, THREADS), THREADS, 0, ctx->stream>>> (wp, w, wdt, wscale, Ci, taps, p.Kp, n);
  if (hv_k_launched (ctx, "conv3d (weight packing)"))
    goto out;
  p.w = wp;
  rc = Co <= 32 ? launch_igemm<1, 4> (ctx, p, B) : Co <= 64 ? launch_igemm<2, 4> (ctx, p, B)
     : wide ? launch_igemm<4, 2> (ctx, p, B) : launch_igemm<4, 4> (ctx, p, B);
out:
  hv_k_free (ctx, wp);
  return rc;
}

/* The path hv_k_conv3d takes for this shape now (HV_CUDA_CONV is read here). */
enum ConvPath { CONV_IM2COL, CONV_IGEMM, CONV_IGEMM_WIDE, CONV_WGMMA };

ConvPath
conv_path (HvKCtx *ctx, int64_t B, int64_t Ci, int64_t T, int64_t H, int64_t W, int64_t Co,
           const int *ks, const int *pad, int64_t Ho, int64_t Wo, int64_t P)
{
  /* the implicit GEMM's limits: int32 offsets within one channel's volume (padding included),
   * one grid dimension per batch item, a 1-D grid of tiles */
  const int mode = conv_mode ();
  const int64_t ncc = (Ci + IG_BK - 1) / IG_BK, taps = (int64_t) ks[0] * ks[1] * ks[2];
  const int64_t tiles = (P + IG_BN - 1) / IG_BN * ((Co + 31) / 32);
  const bool igemm_ok = ctx->sm >= 80 && Ci > 0 && Ci < (1 << 24) && Co < (1 << 24) && taps > 0 &&
                        (T + 2 * pad[0]) * (H + 2 * pad[1]) * (W + 2 * pad[2]) < ((int64_t) 1 << 31) &&
                        ncc * taps < (1 << 30) && B <= 65535 && tiles < ((int64_t) 1 << 31) &&
                        Ho * Wo < ((int64_t) 1 << 31);
  if (mode == 4 && igemm_ok && hv_conv::wgmma_supported (ctx, Ci, T, H, W, Co, ks, Ho, Wo, P))
    return CONV_WGMMA;
  if (igemm_ok && (mode == 2 || mode == 3 || ((mode == 0 || mode == 4) && Ci >= 16)))
    return mode == 3 && Co > 64 ? CONV_IGEMM_WIDE : CONV_IGEMM;
  return CONV_IM2COL;
}

void
conv_out_dims (int64_t T, int64_t H, int64_t W, const int *ks, const int *stride, const int *pad,
               int64_t *To, int64_t *Ho, int64_t *Wo)
{
  *To = (T + 2 * pad[0] - ks[0]) / stride[0] + 1;
  *Ho = (H + 2 * pad[1] - ks[1]) / stride[1] + 1;
  *Wo = (W + 2 * pad[2] - ks[2]) / stride[2] + 1;
}

} /* namespace */

const char *
hv_k_conv3d_kernel (HvKCtx *ctx, int64_t B, int64_t Ci, int64_t T, int64_t H, int64_t W,
                    int64_t Co, const int *ksize, const int *stride, const int *pad)
{
  int64_t To, Ho, Wo;
  conv_out_dims (T, H, W, ksize, stride, pad, &To, &Ho, &Wo);
  if (B == 0 || Co == 0 || To * Ho * Wo <= 0 || Ci * ksize[0] * ksize[1] * ksize[2] == 0)
    return "none";
  switch (conv_path (ctx, B, Ci, T, H, W, Co, ksize, pad, Ho, Wo, To * Ho * Wo)) {
  case CONV_WGMMA: return "igemm-wgmma";
  case CONV_IGEMM: return "igemm";
  case CONV_IGEMM_WIDE: return "igemm-wide";
  default: return "im2col";
  }
}

int
hv_k_conv3d (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t Ci, int64_t T, int64_t H,
             int64_t W, const void *w, int wdt, float wscale, int64_t Co, const int *ks,
             const int *stride, const int *pad, const void *bias, int bdt, float bscale)
{
  Im2col g = { Ci, T, H, W, 0, 0, 0, ks[0], ks[1], ks[2], stride[0], stride[1], stride[2],
               pad[0], pad[1], pad[2] };
  conv_out_dims (T, H, W, ks, stride, pad, &g.To, &g.Ho, &g.Wo);
  int64_t P = g.To * g.Ho * g.Wo, K = Ci * ks[0] * ks[1] * ks[2];
  if (B == 0 || Co == 0 || P <= 0)
    return 0;
  if (K == 0) {
    /* no input channels or an empty kernel: y = bias (0 without one); every path below
     * divides by K or copies from the empty weights */
    cudaError_t e = cudaMemsetAsync (y, 0, (size_t) (B * Co * P) * 4, ctx->stream);
    if (e != cudaSuccess)
      return hv_k_fail (ctx, "conv3d: cudaMemsetAsync: %s", cudaGetErrorString (e));
    return bias ? hv_k_channel_bias (ctx, y, bias, bdt, bscale, B, Co, P) : 0;
  }

  const ConvPath path = conv_path (ctx, B, Ci, T, H, W, Co, ks, pad, g.Ho, g.Wo, P);
  switch (path) {
  case CONV_WGMMA:
    return hv_conv::wgmma_conv3d (ctx, y, x, B, Ci, T, H, W, w, wdt, wscale, Co, ks, stride, pad,
                                  bias, bdt, bscale, g.Ho, g.Wo, P);
  case CONV_IGEMM:
  case CONV_IGEMM_WIDE:
    return conv3d_igemm (ctx, y, x, B, Ci, T, H, W, w, wdt, wscale, Co, ks, stride, pad, bias, bdt,
                         bscale, g.Ho, g.Wo, P, path == CONV_IGEMM_WIDE);
  default:
    break;
  }

  int rc = 1;
  void *wtmp = NULL;
  const void *wb = w;
  __nv_bfloat16 *col = NULL;
  int64_t pc_max;
  if (wdt != HV_K_BF16 || wscale != 1.0f || ((uintptr_t) w & 15) != 0) {
    wtmp = hv_k_alloc (ctx, (size_t) (Co * K) * 2);
    if (!wtmp)
      return 1;
    if (hv_k_convert (ctx, wtmp, HV_K_BF16, w, wdt, Co * K, wscale))
      goto out;
    wb = wtmp;
  }
  pc_max = COL_BUDGET / (K * 2);
  pc_max = pc_max / 64 * 64;
  if (pc_max < 64)
    pc_max = 64;
  if (pc_max > (P + 7) / 8 * 8)
    pc_max = (P + 7) / 8 * 8;
  col = (__nv_bfloat16 *) hv_k_alloc (ctx, (size_t) (K * pc_max) * 2);
  if (!col)
    goto out;
  for (int64_t b = 0; b < B; b++) {
    const float *xb = x + b * Ci * T * H * W;
    float *yb = y + b * Co * P;
    for (int64_t p0 = 0; p0 < P; p0 += pc_max) {
      int64_t pc = P - p0 < pc_max ? P - p0 : pc_max;
      int64_t ldc = (pc + 7) / 8 * 8;   /* 16-byte aligned columns for the GEMM */
      int64_t n = K * pc;
      k_im2col<<<hv_grid_1d (n, THREADS), THREADS, 0, ctx->stream>>> (col, xb, g, p0, pc, ldc, n);
      if (hv_k_launched (ctx, "conv3d (im2col)"))
        goto out;
      if (hv_k_gemm_bf16 (ctx, 0, 0, pc, Co, K, col, ldc, wb, K, yb + p0, P, 1.0f))
        goto out;
    }
  }
  if (bias && hv_k_channel_bias (ctx, y, bias, bdt, bscale, B, Co, P))
    goto out;
  rc = 0;
out:
  hv_k_free (ctx, col);
  hv_k_free (ctx, wtmp);
  return rc;
}
