/* rope.cu — rotary position embedding in place on x [B, L, H, D].
 *
 * out = x·cos + rotate(x)·sin with one cos/sin value per element (upstream repeats each
 * frequency over its pair). rotate pairs element i0 with i1: interleaved (HunyuanVideo) pairs
 * (2j, 2j+1), half (HF Llama rotate_half) pairs (j, j + D/2); rotate(x)[i0] = -x[i1],
 * rotate(x)[i1] = x[i0]. One thread per pair; tokens >= n are left alone. */
#include "cuda-common.cuh"

#define THREADS 256

__global__ void
k_rope (float *x, const float *cs, const float *sn, int64_t npairs, int64_t L, int64_t H,
        int64_t D, int64_t n, int half)
{
  int64_t D2 = D / 2;
  HV_GRID_STRIDE (p, npairs) {
    int64_t j = p % D2, r = p / D2;
    int64_t h = r % H; r /= H;
    int64_t l = r % n, b = r / n;
    int64_t i0 = half ? j : 2 * j;
    int64_t i1 = half ? j + D2 : 2 * j + 1;
    float *xr = x + ((b * L + l) * H + h) * D;
    const float *cr = cs + l * D, *sr = sn + l * D;
    float x0 = xr[i0], x1 = xr[i1];
    xr[i0] = x0 * cr[i0] - x1 * sr[i0];
    xr[i1] = x1 * cr[i1] + x0 * sr[i1];
  }
}

int
hv_k_rope (HvKCtx *ctx, float *x, const float *cos, const float *sin, int64_t B, int64_t L,
           int64_t H, int64_t D, int64_t n, int mode)
{
  if (D % 2 != 0 || n > L)
    return hv_k_fail (ctx, "rope: head dim %lld must be even and %lld rotated tokens at most %lld",
                      (long long) D, (long long) n, (long long) L);
  int64_t npairs = B * n * H * (D / 2);
  if (npairs == 0)
    return 0;
  k_rope<<<hv_grid_1d (npairs, THREADS), THREADS, 0, ctx->stream>>> (x, cos, sin, npairs, L, H, D, n, mode == 1);
  return hv_k_launched (ctx, "rope");
}
