/* groupnorm.cu — GroupNorm over x [B, C, S] (S = T·H·W for the VAE).
 *
 * A group is one contiguous span of (C/G)·S values, up to ~10⁸ in the real VAE, so a block per
 * group would leave the chip idle. Three launches instead: many blocks each reduce a chunk to
 * (count, mean, M2) with a two-pass sum over the chunk; one thread per group merges the chunks
 * (Chan et al.'s pairwise update, in double); a flat pass normalizes and applies w, bias. */
#include "cuda-common.cuh"

#define CHUNK 16384
#define THREADS 256

__global__ void
k_gn_partial (float *pmean, float *pm2, const float *x, int64_t group_n, int64_t nchunks)
{
  __shared__ float red[32];
  int64_t grp = blockIdx.y, chunk = blockIdx.x;
  const float *xs = x + grp * group_n + chunk * CHUNK;
  int64_t len = group_n - chunk * CHUNK;
  if (len > CHUNK)
    len = CHUNK;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
    s += xs[i];
  float mean = hv_block_sum (s, red) / (float) len;
  float d2 = 0.0f;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    float d = xs[i] - mean;
    d2 += d * d;
  }
  float m2 = hv_block_sum (d2, red);
  if (threadIdx.x == 0) {
    pmean[grp * nchunks + chunk] = mean;
    pm2[grp * nchunks + chunk] = m2;
  }
}

__global__ void
k_gn_merge (float2 *stats, const float *pmean, const float *pm2, int64_t ngroups, int64_t group_n,
            int64_t nchunks, float eps)
{
  int64_t grp = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
  if (grp >= ngroups)
    return;
  double n = 0.0, mean = 0.0, m2 = 0.0;
  for (int64_t c = 0; c < nchunks; c++) {
    double nb = (double) (group_n - c * CHUNK < CHUNK ? group_n - c * CHUNK : CHUNK);
    double mb = pmean[grp * nchunks + c], m2b = pm2[grp * nchunks + c];
    double nn = n + nb, delta = mb - mean;
    mean += delta * nb / nn;
    m2 += m2b + delta * delta * n * nb / nn;
    n = nn;
  }
  double var = m2 / n;
  stats[grp] = make_float2 ((float) mean, (float) (1.0 / sqrt (var + (double) eps)));
}

template <bool SILU>
__global__ void
k_gn_apply (float *y, const float *x, const float2 *stats, int64_t n, int64_t C, int64_t S,
            int64_t Cg, const void *w, int wdt, float wscale, const void *bias, int bdt, float bscale)
{
  HV_GRID_STRIDE (i, n) {
    int64_t bc = i / S, c = bc % C, b = bc / C;
    float2 st = stats[b * (C / Cg) + c / Cg];
    float v = (x[i] - st.x) * st.y;
    if (w)
      v *= hv_load_f32 (w, wdt, c) * wscale;
    if (bias)
      v += hv_load_f32 (bias, bdt, c) * bscale;
    if (SILU)
      v = v / (1.0f + expf (-v));   /* as hv_k_unary's silu */
    y[i] = v;
  }
}

int
hv_k_groupnorm_act (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t C, int64_t S, int G,
                    const void *w, int wdt, float wscale, const void *bias, int bdt, float bscale,
                    float eps, int silu)
{
  if (G <= 0 || C % G != 0)
    return hv_k_fail (ctx, "groupnorm: %lld channels do not split into %d groups", (long long) C, G);
  int64_t n = B * C * S;
  if (n == 0)
    return 0;
  int64_t Cg = C / G, group_n = Cg * S, ngroups = B * G;
  int64_t nchunks = (group_n + CHUNK - 1) / CHUNK;
  if (ngroups > 65535)
    return hv_k_fail (ctx, "groupnorm: %lld groups is too many", (long long) ngroups);
  size_t pbytes = (size_t) (ngroups * nchunks) * sizeof (float);
  char *work = (char *) hv_k_alloc (ctx, 2 * pbytes + (size_t) ngroups * sizeof (float2) + 16);
  if (!work)
    return 1;
  float *pmean = (float *) work, *pm2 = (float *) (work + pbytes);
  float2 *stats = (float2 *) (work + ((2 * pbytes + 15) & ~(size_t) 15));
  int rc = 1;
  dim3 g1 ((unsigned int) nchunks, (unsigned int) ngroups);
  k_gn_partial<<<g1, THREADS, 0, ctx->stream>>> (pmean, pm2, x, group_n, nchunks);
  if (hv_k_launched (ctx, "groupnorm (partial sums)"))
    goto out;
  k_gn_merge<<<(unsigned int) ((ngroups + 63) / 64), 64, 0, ctx->stream>>> (
      stats, pmean, pm2, ngroups, group_n, nchunks, eps);
  if (hv_k_launched (ctx, "groupnorm (merge)"))
    goto out;
  if (silu)
    k_gn_apply<true><<<hv_grid_1d (n, THREADS), THREADS, 0, ctx->stream>>> (
        y, x, stats, n, C, S, Cg, w, wdt, wscale, bias, bdt, bscale);
  else
    k_gn_apply<false><<<hv_grid_1d (n, THREADS), THREADS, 0, ctx->stream>>> (
        y, x, stats, n, C, S, Cg, w, wdt, wscale, bias, bdt, bscale);
  rc = hv_k_launched (ctx, "groupnorm (apply)");
out:
  hv_k_free (ctx, work);
  return rc;
}

int
hv_k_groupnorm (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t C, int64_t S, int G,
                const void *w, int wdt, float wscale, const void *bias, int bdt, float bscale,
                float eps)
{
  return hv_k_groupnorm_act (ctx, y, x, B, C, S, G, w, wdt, wscale, bias, bdt, bscale, eps, 0);
}
