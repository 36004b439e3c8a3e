/* conv3d.cu — 3D convolution (the causal VAE) as im2col + one cuBLASLt bf16 GEMM per chunk.
 *
 * For batch b and output positions p0..p0+pc: col [K = Ci·kt·kh·kw][pc] (bf16, zero padding
 * applied while gathering), then y[b][co][p0 + pp] = Σ_k W[co][k] · col[k][pp]. In cuBLAS's
 * column-major terms: D (pc × Co, ld P) = col (pc × K, ld ldc) · Wᵀ-as-stored (K × Co, ld K),
 * no transposes. Chunks keep the col buffer under COL_BUDGET bytes; fp32 accumulation. */
#include "cuda-common.cuh"

#define THREADS 256
#define COL_BUDGET ((int64_t) 256 << 20)

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

int
hv_k_conv3d (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t Ci, int64_t T, int64_t H,
             int64_t W, const void *w, int wdt, float wscale, int64_t Co, const int *ks,
             const int *stride, const int *pad, const void *bias, int bdt, float bscale)
{
  Im2col g = { Ci, T, H, W, 0, 0, 0, ks[0], ks[1], ks[2], stride[0], stride[1], stride[2],
               pad[0], pad[1], pad[2] };
  g.To = (T + 2 * pad[0] - ks[0]) / stride[0] + 1;
  g.Ho = (H + 2 * pad[1] - ks[1]) / stride[1] + 1;
  g.Wo = (W + 2 * pad[2] - ks[2]) / stride[2] + 1;
  int64_t P = g.To * g.Ho * g.Wo, K = Ci * ks[0] * ks[1] * ks[2];
  if (B == 0 || Co == 0 || P <= 0)
    return 0;

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
