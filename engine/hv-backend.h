/* hv-backend.h — the one op interface. The CPU backend (hv-backend-cpu.c) is the reference and
 * is always built; the CUDA backend (hv-backend-cuda.c + kernels/) implements the same table.
 *
 * Conventions (llm.c style): output first, shapes read from the tensors, everything explicit.
 *  - Activations are f32, contiguous, allocated on the backend with hv_backend_tensor().
 *  - Weights may be f32, bf16, f16, f8_e4m3 or f8_e5m2 and are used in their stored dtype
 *    (fp8 real value = stored × t->scale). Get a weight onto a backend with hv_backend_weight():
 *    on the CPU this is a view of the mapped file (no copy), on CUDA it uploads once.
 *  - "rows": a tensor viewed as [R, C] where C is the last dim and R the product of the rest.
 *  - In-place use (y == x) is allowed where noted.
 *  - Ops do not return errors: a shape mismatch is a programmer error (g_return_if_fail); a
 *    device failure is recorded in the backend and reported by hv_backend_check(). */
#pragma once
#include "hv-tensor.h"
#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  HV_UNARY_SILU,        /* x * sigmoid(x) */
  HV_UNARY_GELU_TANH,   /* 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))) */
  HV_UNARY_GELU,        /* 0.5x(1+erf(x/sqrt 2)) */
  HV_UNARY_QUICK_GELU,  /* x * sigmoid(1.702x) (CLIP) */
  HV_UNARY_SIGMOID,
} HvUnary;

/* The `op` argument of HvBackendOps.binary (hv_op_add/sub/mul). */
typedef enum {
  HV_BINARY_ADD,
  HV_BINARY_SUB,
  HV_BINARY_MUL,
} HvBinary;

typedef enum {
  HV_ROPE_INTERLEAVED,  /* pairs (2j, 2j+1): HunyuanVideo DiT */
  HV_ROPE_HALF,         /* pairs (j, j+D/2): HF Llama rotate_half */
} HvRopeMode;

typedef enum {
  HV_PAD_ZERO,
  HV_PAD_REPLICATE,
} HvPadMode;

/* Which keys a query may attend to. All given conditions must hold. A query row with no
 * allowed key produces zeros. Mask tensors live on the same backend as q. */
typedef struct {
  const HvTensor *seg_q;   /* i32 [B, Lq] segment id per query, or NULL */
  const HvTensor *seg_k;   /* i32 [B, Lk] segment id per key: attend iff seg_q == seg_k */
  const HvTensor *allow;   /* u8 [B, Lq, Lk] (or [1, Lq, Lk], broadcast): 1 = may attend */
  gboolean causal;         /* key j only for j <= query i */
} HvAttnMask;

typedef struct _HvBackendOps HvBackendOps;

struct _HvBackend {
  const HvBackendOps *ops;
  const char *name;       /* "cpu", "cuda:0" */
  int n_threads;          /* CPU worker threads */
  GError *error;          /* first device error, sticky until hv_backend_check() */
  gpointer priv;
};

struct _HvBackendOps {
  void     (*destroy) (HvBackend *b);
  /* memory: NULL on failure */
  void    *(*alloc) (HvBackend *b, gsize nbytes);
  void     (*release) (HvBackend *b, void *p);
  void     (*upload) (HvBackend *b, void *dst, const void *host_src, gsize nbytes);
  void     (*download) (HvBackend *b, void *host_dst, const void *src, gsize nbytes);
  void     (*synchronize) (HvBackend *b);
  gboolean is_host;       /* data pointers are host memory (CPU backend) */

  void (*linear) (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias);
  /* optional (NULL: linear then unary) */
  void (*linear_act) (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, HvUnary act);
  void (*layernorm) (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, float eps);
  void (*rmsnorm) (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, float eps);
  void (*unary) (HvBackend *b, HvTensor *y, const HvTensor *x, HvUnary op);
  void (*softmax) (HvBackend *b, HvTensor *y, const HvTensor *x);
  void (*attention) (HvBackend *b, HvTensor *out, const HvTensor *q, const HvTensor *k, const HvTensor *v, const HvAttnMask *mask, float scale);
  void (*rope) (HvBackend *b, HvTensor *x, const HvTensor *cos, const HvTensor *sin, HvRopeMode mode);
  void (*modulate) (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift, const HvTensor *scale);
  /* optional (NULL: layernorm then modulate) */
  void (*layernorm_modulate) (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift, const HvTensor *scale, float eps);
  void (*gate_add) (HvBackend *b, HvTensor *x, const HvTensor *y, const HvTensor *gate);
  void (*binary) (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int op);
  void (*scale) (HvBackend *b, HvTensor *y, const HvTensor *x, float alpha, float beta);
  void (*copy) (HvBackend *b, HvTensor *y, const HvTensor *x);
  void (*slice) (HvBackend *b, HvTensor *y, const HvTensor *x, int dim, int64_t start);
  void (*concat) (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int dim);
  void (*permute) (HvBackend *b, HvTensor *y, const HvTensor *x, const int *perm);
  void (*get_rows) (HvBackend *b, HvTensor *y, const HvTensor *table, const HvTensor *ids);
  void (*conv3d) (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, const int *stride, const int *pad);
  void (*pad3d) (HvBackend *b, HvTensor *y, const HvTensor *x, const int *pads, HvPadMode mode);
  void (*groupnorm) (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w, const HvTensor *bias, float eps);
  /* optional (NULL: groupnorm then unary silu) */
  void (*groupnorm_silu) (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w, const HvTensor *bias, float eps);
  void (*upsample_nearest) (HvBackend *b, HvTensor *y, const HvTensor *x, const int *factors);
};

/* ---- backends ----------------------------------------------------------------------- */

/* "cpu", "cuda" or "cuda:N". n_threads 0 = all cores (CPU). */
HvBackend *hv_backend_new (const char *device, int n_threads, GError **error);
HvBackend *hv_backend_cpu_new (int n_threads);
/* NULL with HV_ERROR_DEVICE when CUDA support is not built in or no GPU is present. */
HvBackend *hv_backend_cuda_new (int device, GError **error);
gboolean   hv_backend_cuda_available (void);
void       hv_backend_free (HvBackend *b);
/* Waits for queued work and returns (and clears) the first device error. */
gboolean   hv_backend_check (HvBackend *b, GError **error);
gboolean   hv_backend_is_host (const HvBackend *b);

/* An activation tensor on b, contents undefined. NULL when out of memory. */
HvTensor  *hv_backend_tensor (HvBackend *b, HvDType dt, int ndim, const int64_t *shape);
HvTensor  *hv_backend_tensor_f32 (HvBackend *b, int ndim, const int64_t *shape);
/* Same shape as t, f32. */
HvTensor  *hv_backend_tensor_like (HvBackend *b, const HvTensor *t);
/* A copy of a host tensor on b (any dtype; scale kept). */
HvTensor  *hv_backend_upload (HvBackend *b, const HvTensor *host);
/* A weight on b: CPU backend returns a view of `host` (host must outlive it), CUDA uploads. */
HvTensor  *hv_backend_weight (HvBackend *b, const HvTensor *host);
/* A host copy of t, same dtype. */
HvTensor  *hv_backend_download (HvBackend *b, const HvTensor *t);
/* Frees the data of a tensor allocated by b (called by hv_tensor_free). */
void       hv_backend_free_data (HvBackend *b, HvTensor *t);

/* ---- ops (see the conventions above) --------------------------------------------------- */

/* y[.., N] = x[.., K] · Wᵀ + bias.  w: [N, K] or [N, ...] flattened to K (conv weights).
 * bias: [N] or NULL. */
void hv_op_linear (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias);
/* y = act(x · Wᵀ + bias): the activation in the GEMM's epilogue where the backend can (CUDA,
 * gelu_tanh on 16-bit weights), linear then unary elsewhere. */
void hv_op_linear_act (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, HvUnary act);
/* Normalize each row over the last dim (biased variance); w, bias: [C] or NULL. In place OK. */
void hv_op_layernorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, float eps);
/* y = x * rsqrt(mean(x²) + eps) * w over the last dim; w [C] or NULL. In place OK. */
void hv_op_rmsnorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, float eps);
/* Elementwise activation. In place OK. */
void hv_op_unary (HvBackend *b, HvTensor *y, const HvTensor *x, HvUnary op);
/* Softmax over the last dim. In place OK. */
void hv_op_softmax (HvBackend *b, HvTensor *y, const HvTensor *x);
/* out[B,Lq,H,D] = softmax(q·kᵀ·scale + mask) · v. q [B,Lq,H,D], k/v [B,Lk,Hkv,D] with H % Hkv
 * == 0 (GQA: head h uses kv head h / (H/Hkv)). mask may be NULL (full attention). */
void hv_op_attention (HvBackend *b, HvTensor *out, const HvTensor *q, const HvTensor *k, const HvTensor *v, const HvAttnMask *mask, float scale);
/* In place on x [B, L, H, D]: rotates tokens 0..n-1 of every batch, where cos/sin are [n, D]
 * (n <= L, one value per element as upstream repeats them). */
void hv_op_rope (HvBackend *b, HvTensor *x, const HvTensor *cos, const HvTensor *sin, HvRopeMode mode);
/* y[B,L,C] = x * (1 + scale[B,C]) + shift[B,C]; shift or scale may be NULL. In place OK. */
void hv_op_modulate (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift, const HvTensor *scale);
/* The DiT's adaLN: y = layernorm(x, no affine) * (1 + scale) + shift in one pass over x on
 * backends that fuse it (CUDA), layernorm then modulate elsewhere. In place OK. */
void hv_op_layernorm_modulate (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift, const HvTensor *scale, float eps);
/* x[B,L,C] += gate[B,C] * y[B,L,C]; gate NULL: x += y. */
void hv_op_gate_add (HvBackend *b, HvTensor *x, const HvTensor *y, const HvTensor *gate);
/* y = a (op) c. c has a's shape, or numel(c) divides numel(a) and c repeats over a's rows
 * (a viewed as [numel(a)/numel(c), numel(c)]). In place OK (y == a). */
void hv_op_add (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c);
void hv_op_sub (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c);
void hv_op_mul (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c);
/* y = alpha * x + beta. In place OK. */
void hv_op_scale (HvBackend *b, HvTensor *y, const HvTensor *x, float alpha, float beta);
/* y = x (same numel); x of any dtype (converted to y's f32, x->scale applied). */
void hv_op_copy (HvBackend *b, HvTensor *y, const HvTensor *x);
/* y = x.narrow(dim, start, y->shape[dim]) (all other dims equal). */
void hv_op_slice (HvBackend *b, HvTensor *y, const HvTensor *x, int dim, int64_t start);
/* y = cat([a, c], dim). */
void hv_op_concat (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int dim);
/* y = x.permute(perm).contiguous(); y's shape must be x's permuted. */
void hv_op_permute (HvBackend *b, HvTensor *y, const HvTensor *x, const int *perm);
/* y[n, C] = table[ids[n], :] (embedding); table any float dtype, ids i32 [n]. */
void hv_op_get_rows (HvBackend *b, HvTensor *y, const HvTensor *table, const HvTensor *ids);
/* y[B,Co,T',H',W'] = conv3d(x[B,Ci,T,H,W], w[Co,Ci,kt,kh,kw]) + bias, zero padding pad[3]
 * (t,h,w; both sides), stride[3]. Groups = 1. */
void hv_op_conv3d (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, const int *stride, const int *pad);
/* y = pad(x[B,C,T,H,W]) with pads[6] = {t_front, t_back, h_top, h_bottom, w_left, w_right}. */
void hv_op_pad3d (HvBackend *b, HvTensor *y, const HvTensor *x, const int *pads, HvPadMode mode);
/* GroupNorm over x[B, C, ...] with `groups` groups; w, bias [C] or NULL. In place OK. */
void hv_op_groupnorm (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w, const HvTensor *bias, float eps);
/* silu(groupnorm(x)): the VAE's norm + activation, one pass over x on backends that fuse it (CUDA). */
void hv_op_groupnorm_silu (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w, const HvTensor *bias, float eps);
/* y[B,C,T*ft,H*fh,W*fw] = nearest upsample of x[B,C,T,H,W]; factors = {ft, fh, fw}. */
void hv_op_upsample_nearest (HvBackend *b, HvTensor *y, const HvTensor *x, const int *factors);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvBackend, hv_backend_free)

G_END_DECLS
