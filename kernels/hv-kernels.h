/* hv-kernels.h — the CUDA kernels of hyvideo behind a plain C interface (libhvkernels).
 *
 * Everything runs on the stream of an HvKCtx, in order, asynchronously. Every launcher returns
 * 0 on success; on failure it returns nonzero and hv_k_ctx_error() says what failed (the CUDA
 * or cuBLAS error, the op and the shape). Pointers are device pointers unless said otherwise.
 * Activations are f32 and contiguous; weights come in their stored dtype (HvKDType, numbered
 * like HvDType) with a per-tensor scale (fp8 real value = stored × scale; 1 otherwise).
 *
 * Used by engine/hv-backend-cuda.c, the benchmark and the op tests. */
#pragma once
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same numbering as HvDType in engine/hv-tensor.h (checked there at compile time). */
typedef enum {
  HV_K_F32 = 0,
  HV_K_F16 = 1,
  HV_K_BF16 = 2,
  HV_K_F8_E4M3 = 3,
  HV_K_F8_E5M2 = 4,
  HV_K_I64 = 5,
  HV_K_I32 = 6,
  HV_K_U8 = 7,
  HV_K_BOOL = 8,
} HvKDType;

typedef struct HvKCtx HvKCtx;

/* Device `device`, a non-blocking stream, a cuBLASLt handle with its workspace, and a stream-
 * ordered memory pool that keeps freed memory for reuse. Returns 0, or nonzero with a message in
 * msg (no device, driver too old, ...). */
int          hv_k_ctx_new (int device, HvKCtx **out, char *msg, size_t msglen);
void         hv_k_ctx_free (HvKCtx *ctx);
cudaStream_t hv_k_ctx_stream (HvKCtx *ctx);
/* Makes the context's device current for the calling thread (CUDA's current device is per
 * thread; the engine may call from a worker thread). Cheap when it already is. */
void         hv_k_bind (HvKCtx *ctx);
/* Compute capability as 10*major + minor (90 = Hopper). */
int          hv_k_ctx_sm (HvKCtx *ctx);
const char  *hv_k_ctx_device_name (HvKCtx *ctx);
/* Message of the last failure (empty if none). */
const char  *hv_k_ctx_error (HvKCtx *ctx);
/* Stream-ordered device memory (from the pool). NULL on failure (message in the ctx). */
void        *hv_k_alloc (HvKCtx *ctx, size_t nbytes);
void         hv_k_free (HvKCtx *ctx, void *p);
/* Bytes in use now and at most since the last reset (pool statistics). */
int          hv_k_mem_stats (HvKCtx *ctx, size_t *used, size_t *peak);
void         hv_k_mem_reset_peak (HvKCtx *ctx);
int          hv_k_synchronize (HvKCtx *ctx);
/* After hv_k_synchronize: 1 (and the first offending position and id) if a get_rows since the
 * last call met an id outside its table; resets the record. */
int          hv_k_take_bad_index (HvKCtx *ctx, int64_t *pos, int64_t *id);
int          hv_k_memcpy (HvKCtx *ctx, void *dst, const void *src, size_t nbytes, int kind);

/* How fp8 weights are multiplied (environment HV_CUDA_FP8 = "fp8" | "fast" | "bf16" overrides):
 * - HV_K_FP8_TENSORCORE (default on sm_89+): the cuBLASLt fp8 GEMM with the checkpoint's scale,
 *   the activations as two e4m3 terms, x ≈ s1·q1 + s2·q2 (q1 = e4m3(x/s1), q2 = e4m3 of the
 *   remainder, per-tensor scales amax/448), two fp8 GEMMs into one fp32 result. One e4m3 term
 *   alone has 3 mantissa bits (~3% error per element and per linear, over the fixtures' 1e-2);
 *   the second term brings that to ~0.1%, below bf16 rounding of the activations.
 * - HV_K_FP8_FAST: one e4m3 term, one fp8 GEMM: fastest, ~3% error per linear.
 * - HV_K_FP8_DEQUANT: the weight widened to bf16, the bf16 GEMM (what sm < 89 always uses, and
 *   the official code's arithmetic). */
typedef enum { HV_K_FP8_TENSORCORE = 0, HV_K_FP8_DEQUANT = 1, HV_K_FP8_FAST = 2 } HvKFp8Mode;
void         hv_k_set_fp8_mode (HvKCtx *ctx, HvKFp8Mode mode);
HvKFp8Mode   hv_k_get_fp8_mode (HvKCtx *ctx);

/* ---- GEMM (gemm.cu) ------------------------------------------------------------------------ */

/* y[M, N] = x[M, K] · W[N, K]ᵀ · wscale + bias[N].  Row-major. W in its stored dtype:
 * bf16 → x rounded to bf16, bf16 × bf16 with fp32 accumulation (cuBLASLt, bias in the
 * epilogue); f16 → the same in f16; f32 → TF32 tensor cores; fp8 → see HvKFp8Mode. */
int hv_k_linear (HvKCtx *ctx, float *y, const float *x, int64_t M, int64_t K,
                 const void *w, int wdt, float wscale, int64_t N,
                 const void *bias, int bdt, float bscale);
/* y = act(hv_k_linear(...)); act is a hv_k_unary op. gelu_tanh on bf16/f16 weights runs in
 * cuBLASLt's epilogue (no extra pass over y); anything else is the GEMM then hv_k_unary. */
#define HV_K_ACT_GELU_TANH 1
int hv_k_linear_act (HvKCtx *ctx, float *y, const float *x, int64_t M, int64_t K,
                     const void *w, int wdt, float wscale, int64_t N,
                     const void *bias, int bdt, float bscale, int act);

/* Column-major D[m, n] (ldd) = alpha · op(A)[m, k] · op(B)[k, n] with A, B bf16 (cuBLAS
 * convention; trans = 1 for a transposed operand). D is f32. Used by conv3d. */
int hv_k_gemm_bf16 (HvKCtx *ctx, int transa, int transb, int64_t m, int64_t n, int64_t k,
                    const void *a, int64_t lda, const void *b, int64_t ldb,
                    float *d, int64_t ldd, float alpha);

/* ---- elementwise (elementwise.cu) ---------------------------------------------------------- */

/* op: HvUnary numbering (silu, gelu_tanh, gelu, quick_gelu, sigmoid). */
int hv_k_unary (HvKCtx *ctx, float *y, const float *x, int64_t n, int op);
/* y[i] = a[i] (op) c[i % nc]; op: 0 add, 1 sub, 2 mul. */
int hv_k_binary (HvKCtx *ctx, float *y, const float *a, const float *c, int64_t n, int64_t nc, int op);
int hv_k_scale (HvKCtx *ctx, float *y, const float *x, int64_t n, float alpha, float beta);
/* x viewed as [nb, per_b / C, C]; shift/scale [nb, C] (nb = 1: shared). NULL = absent. */
int hv_k_modulate (HvKCtx *ctx, float *y, const float *x, const float *shift, const float *scale,
                   int64_t n, int64_t C, int64_t per_b);
/* x += gate * y, same layout as modulate; gate NULL: x += y. */
int hv_k_gate_add (HvKCtx *ctx, float *x, const float *y, const float *gate,
                   int64_t n, int64_t C, int64_t per_b);
/* y (f32, f16 or bf16) = x (any dtype) × scale. */
int hv_k_convert (HvKCtx *ctx, void *y, int ydt, const void *x, int xdt, int64_t n, float scale);
/* The same from a strided x (shape/stride in elements, ndim <= 5) into contiguous y. */
int hv_k_convert_strided (HvKCtx *ctx, void *y, int ydt, const void *x, int xdt, int ndim,
                          const int64_t *shape, const int64_t *stride, float scale);
/* y = x.narrow(1, start, dy) on views [outer, dx, inner] / [outer, dy, inner]; esize bytes each. */
int hv_k_slice (HvKCtx *ctx, void *y, const void *x, int64_t outer, int64_t dx, int64_t dy,
                int64_t start, int64_t inner, int esize);
/* y [outer, da + dc, inner] = cat(a [outer, da, inner], c [outer, dc, inner]). */
int hv_k_concat (HvKCtx *ctx, void *y, const void *a, const void *c, int64_t outer, int64_t da,
                 int64_t dc, int64_t inner, int esize);
/* y = x.permute(perm).contiguous(); xshape: x's shape, ndim <= 5. */
int hv_k_permute (HvKCtx *ctx, void *y, const void *x, int ndim, const int64_t *xshape,
                  const int *perm, int esize);
/* y[i, :] = table[ids[i], :] × tscale; ids i32 or i64. An id outside [0, rows) gives a zero row
 * and is reported by hv_k_take_bad_index() after the next synchronize. */
int hv_k_get_rows (HvKCtx *ctx, float *y, const void *table, int tdt, float tscale, int64_t rows,
                   int64_t C, const void *ids, int ids_dt, int64_t n);
/* x [BC, T, H, W] → y [BC, T', H', W'], pads {t0, t1, h0, h1, w0, w1}; mode 0 zero, 1 replicate. */
int hv_k_pad3d (HvKCtx *ctx, float *y, const float *x, int64_t BC, int64_t T, int64_t H, int64_t W,
                const int *pads, int mode);
int hv_k_upsample_nearest (HvKCtx *ctx, float *y, const float *x, int64_t BC, int64_t T, int64_t H,
                           int64_t W, const int *factors);
/* y[b, c, s] += bias[c] for y [B, C, S]. */
int hv_k_channel_bias (HvKCtx *ctx, float *y, const void *bias, int bdt, float bscale,
                       int64_t B, int64_t C, int64_t S);
/* p (f32, bf16 or f16) = off + amp·U(-1, 1), a counter-based hash of (seed, index): benchmarks
 * and tests fill large device buffers without a host copy. */
int hv_k_fill_random (HvKCtx *ctx, void *p, int dt, int64_t n, uint64_t seed, float amp, float off);
/* d_scale[0] = max|x| / fp8_max (1 when x is all zero), computed on the device. */
int hv_k_absmax_scale (HvKCtx *ctx, float *d_scale, const float *x, int64_t n, float fp8_max);
/* y (e4m3) = saturate(x / d_scale[0]). */
int hv_k_quantize_e4m3 (HvKCtx *ctx, void *y, const float *x, int64_t n, const float *d_scale);
/* The second e4m3 term of x: r = x − s1·q1 (q1 = e4m3(x / d_scale1[0]), written to q1);
 * d_scale2[0] = max|r| / 448 (1 when r is all zero); q2 = e4m3(r / d_scale2[0]). */
int hv_k_quantize_e4m3_split (HvKCtx *ctx, void *q1, void *q2, const float *x, int64_t n,
                              const float *d_scale1, float *d_scale2);

/* ---- norms (norm.cu, groupnorm.cu) --------------------------------------------------------- */

/* Over the last dim C of x [rows, C]; w/bias [C] in any float dtype (NULL = absent). */
int hv_k_layernorm (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C,
                    const void *w, int wdt, float wscale, const void *bias, int bdt, float bscale,
                    float eps);
/* y = layernorm(x) * (1 + scale[v]) + shift[v] (no affine), v = row / *_rows: the modulation
 * vector of a row's batch. shift / scale may be NULL. */
int hv_k_layernorm_modulate (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C,
                             const float *shift, int64_t shift_rows, const float *scale,
                             int64_t scale_rows, float eps);
int hv_k_rmsnorm (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C,
                  const void *w, int wdt, float wscale, float eps);
int hv_k_softmax (HvKCtx *ctx, float *y, const float *x, int64_t rows, int64_t C);
/* x [B, C, S], groups of C/G channels. */
int hv_k_groupnorm (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t C, int64_t S, int G,
                    const void *w, int wdt, float wscale, const void *bias, int bdt, float bscale,
                    float eps);
/* The same with SiLU applied in the normalizing pass when silu != 0 (the VAE's norm + act). */
int hv_k_groupnorm_act (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t C, int64_t S,
                        int G, const void *w, int wdt, float wscale, const void *bias, int bdt,
                        float bscale, float eps, int silu);

/* ---- rope (rope.cu) ------------------------------------------------------------------------ */

/* In place on x [B, L, H, D]; cos/sin [n, D] f32 rotate tokens 0..n-1; mode HvRopeMode. */
int hv_k_rope (HvKCtx *ctx, float *x, const float *cos, const float *sin, int64_t B, int64_t L,
               int64_t H, int64_t D, int64_t n, int mode);

/* ---- attention (attention.cu) -------------------------------------------------------------- */

typedef struct {
  const int32_t *seg_q, *seg_k;  /* [B, Lq], [B, Lk] or NULL */
  const uint8_t *allow;          /* [B or 1, Lq, Lk] or NULL */
  int allow_batched;             /* allow has a batch dim */
  int causal;
} HvKAttnMask;

/* out [B, Lq, H, D] = softmax(q kᵀ · scale + mask) v; k, v [B, Lk, Hkv, D]. Rows with no allowed
 * key give zeros. D = 128 on a compute 9.0 device with an sm_90a build: fused bf16 wgmma kernel
 * (attention-wgmma.cu); D = 32, 64, 128 (sm_80+): fused bf16 tensor-core kernel (mma.sync,
 * online softmax, fp32 accumulation); any other D <= 512: fused fp32 kernel. force_generic
 * (tests) selects the fp32 kernel always; environment HV_CUDA_ATTN = wgmma | mma | f32 picks
 * one (a kernel that cannot run the case falls back along wgmma → mma → f32). */
int hv_k_attention (HvKCtx *ctx, float *out, const float *q, const float *k, const float *v,
                    int64_t B, int64_t Lq, int64_t Lk, int64_t H, int64_t Hkv, int64_t D,
                    const HvKAttnMask *mask, float scale, int force_generic);
#define HV_K_ATTN_MAX_D 512
/* Which kernel hv_k_attention would run for head dim D now: "wgmma", "mma" or "f32". */
const char *hv_k_attention_kernel (HvKCtx *ctx, int64_t D, int force_generic);
/* 1 if a bounded mbarrier wait of the wgmma-ws kernel gave up since the last call (its output
 * is then wrong), 0 if not, -1 if unknown; clears the record. Synchronizes. */
int hv_k_attention_ws_stuck (HvKCtx *ctx);

/* ---- conv3d (conv3d.cu, conv3d-wgmma.cu) -------------------------------------------------- */

/* y [B, Co, To, Ho, Wo] = conv3d(x [B, Ci, T, H, W], w [Co, Ci, kt, kh, kw]) + bias, zero
 * padding; bf16 operands, fp32 accumulation. Paths (HV_CUDA_CONV, read on every call): the
 * implicit-GEMM mma.sync kernel (default where Ci >= 16, "igemm", "igemm-wide"), the Hopper
 * wgmma kernel ("igemm-wgmma": compute 9.0 with sm_90a code, Ci and Co >= 32; it needs a bf16
 * channels-last copy of one batch item, <= 4 GiB; HV_CUDA_CONV_STAGES=3 for 3 pipeline stages
 * instead of 4), im2col in bf16 (chunked to bound memory) + cuBLASLt bf16 GEMM ("im2col", and
 * whatever the others cannot take). */
int hv_k_conv3d (HvKCtx *ctx, float *y, const float *x, int64_t B, int64_t Ci, int64_t T,
                 int64_t H, int64_t W, const void *w, int wdt, float wscale, int64_t Co,
                 const int *ksize, const int *stride, const int *pad, const void *bias, int bdt,
                 float bscale);
/* Which path hv_k_conv3d would run for this shape now: "igemm-wgmma", "igemm", "igemm-wide",
 * "im2col" ("none" for an empty output or an empty K). A requested path that cannot run falls
 * back silently; benchmarks and tests use this to report what actually ran. */
const char *hv_k_conv3d_kernel (HvKCtx *ctx, int64_t B, int64_t Ci, int64_t T, int64_t H,
                                int64_t W, int64_t Co, const int *ksize, const int *stride,
                                const int *pad);

#ifdef __cplusplus
}
#endif
