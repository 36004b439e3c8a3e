/* hv-backend-cuda.c — the CUDA backend: the op table on top of libhvkernels (kernels/).
 *
 * One stream per backend; every op is queued on it and returns at once. Device memory comes
 * from a stream-ordered pool that keeps freed blocks (activations are allocated and freed all
 * through a forward pass), weights are uploaded once in their stored dtype by
 * hv_backend_weight(). A failure (CUDA, cuBLAS, out of memory inside an op) is recorded once in
 * b->error (HV_ERROR_DEVICE) and later ops are skipped until hv_backend_check() returns it, so
 * the first error is the one reported. The hv_op_* wrappers (hv-backend.c) have already
 * checked shapes and dtypes. */
#include "hv-backend.h"
#include "hv-backend-cuda.h"
#include "hv-config.h"
#include "hv-error.h"
#include "hv-kernels.h"
#include <cuda_runtime_api.h>
#include <stdarg.h>
#include <string.h>

G_STATIC_ASSERT ((int) HV_K_F32 == (int) HV_DTYPE_F32);
G_STATIC_ASSERT ((int) HV_K_F16 == (int) HV_DTYPE_F16);
G_STATIC_ASSERT ((int) HV_K_BF16 == (int) HV_DTYPE_BF16);
G_STATIC_ASSERT ((int) HV_K_F8_E4M3 == (int) HV_DTYPE_F8_E4M3);
G_STATIC_ASSERT ((int) HV_K_F8_E5M2 == (int) HV_DTYPE_F8_E5M2);
G_STATIC_ASSERT ((int) HV_K_I64 == (int) HV_DTYPE_I64);
G_STATIC_ASSERT ((int) HV_K_I32 == (int) HV_DTYPE_I32);
G_STATIC_ASSERT ((int) HV_K_U8 == (int) HV_DTYPE_U8);
G_STATIC_ASSERT ((int) HV_K_BOOL == (int) HV_DTYPE_BOOL);

typedef struct {
  HvKCtx *k;
  int device;
  char name[32];
} CudaPriv;

static const HvBackendOps cuda_ops;

static HvKCtx *
ctx_of (HvBackend *b)
{
  return ((CudaPriv *) b->priv)->k;
}

/* The context with its device current on this thread: every entry point goes through here. */
static HvKCtx *
bound (HvBackend *b)
{
  HvKCtx *k = ctx_of (b);
  hv_k_bind (k);
  return k;
}

static void
record (HvBackend *b, int code, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
record (HvBackend *b, int code, const char *fmt, ...)
{
  if (b->error)
    return;
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *what = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  b->error = g_error_new (HV_ERROR, code, "%s on %s: %s", what, b->name, hv_k_ctx_error (ctx_of (b)));
}

/* Runs a launcher unless an earlier error is pending; records its failure. */
#define RUN(b, opname, call) \
  do { \
    if ((b)->error) \
      return; \
    if ((call) != 0) \
      record ((b), HV_ERROR_DEVICE, "%s", (opname)); \
  } while (0)

/* ---- memory --------------------------------------------------------------------------------- */

static void *
cuda_alloc (HvBackend *b, gsize nbytes)
{
  /* NULL on failure: the caller reports out-of-memory with its own context */
  return hv_k_alloc (bound (b), nbytes);
}

static void
cuda_release (HvBackend *b, void *p)
{
  hv_k_free (bound (b), p);
}

static void
cuda_upload (HvBackend *b, void *dst, const void *host_src, gsize nbytes)
{
  RUN (b, "upload", hv_k_memcpy (bound (b), dst, host_src, nbytes, cudaMemcpyHostToDevice));
}

static void
cuda_download (HvBackend *b, void *host_dst, const void *src, gsize nbytes)
{
  if (b->error) {
    /* the device state is unknown: hand back something recognizably wrong, not stale memory */
    memset (host_dst, 0xff, nbytes);
    return;
  }
  if (hv_k_memcpy (bound (b), host_dst, src, nbytes, cudaMemcpyDeviceToHost))
    record (b, HV_ERROR_DEVICE, "download");
}

static void
cuda_synchronize (HvBackend *b)
{
  HvKCtx *k = bound (b);
  if (hv_k_synchronize (k))
    record (b, HV_ERROR_DEVICE, "GPU work");
  int64_t pos, id;
  if (hv_k_take_bad_index (k, &pos, &id) && !b->error)
    b->error = g_error_new (HV_ERROR, HV_ERROR_INVALID,
                            "Token id %" G_GINT64_FORMAT " at position %" G_GINT64_FORMAT
                            " is outside the embedding table", id, pos);
}

static void
cuda_destroy (HvBackend *b)
{
  CudaPriv *p = b->priv;
  hv_k_ctx_free (p->k);
  g_free (p);
  g_free (b);
}

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t
last_dim (const HvTensor *t)
{
  return t->ndim ? t->shape[t->ndim - 1] : 1;
}

static int64_t
rows_of (const HvTensor *t)
{
  int64_t c = last_dim (t);
  return c ? hv_tensor_numel (t) / c : 0;
}

#define DATA(t) ((t) ? (t)->data : NULL)
#define DT(t) ((t) ? (int) (t)->dtype : 0)
#define SC(t) ((t) ? (t)->scale : 1.0f)

/* ---- ops ------------------------------------------------------------------------------------ */

static void
cuda_linear (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias)
{
  int64_t N = w->shape[0], K = N ? hv_tensor_numel (w) / N : 0, M = K ? hv_tensor_numel (x) / K : 0;
  if (K == 0)
    M = rows_of (y);
  RUN (b, "linear", hv_k_linear (bound (b), y->data, x->data, M, K, w->data, w->dtype, w->scale, N,
                                 DATA (bias), DT (bias), SC (bias)));
}

static void
cuda_linear_act (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias,
                 HvUnary act)
{
  G_STATIC_ASSERT (HV_UNARY_GELU_TANH == HV_K_ACT_GELU_TANH);
  int64_t N = w->shape[0], K = N ? hv_tensor_numel (w) / N : 0, M = K ? hv_tensor_numel (x) / K : 0;
  if (K == 0)
    M = rows_of (y);
  RUN (b, "linear_act", hv_k_linear_act (bound (b), y->data, x->data, M, K, w->data, w->dtype, w->scale,
                                         N, DATA (bias), DT (bias), SC (bias), (int) act));
}

static void
cuda_layernorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, float eps)
{
  RUN (b, "layernorm", hv_k_layernorm (bound (b), y->data, x->data, rows_of (x), last_dim (x),
                                       DATA (w), DT (w), SC (w), DATA (bias), DT (bias), SC (bias), eps));
}

static void
cuda_rmsnorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, float eps)
{
  RUN (b, "rmsnorm", hv_k_rmsnorm (bound (b), y->data, x->data, rows_of (x), last_dim (x),
                                   DATA (w), DT (w), SC (w), eps));
}

static void
cuda_unary (HvBackend *b, HvTensor *y, const HvTensor *x, HvUnary op)
{
  RUN (b, "unary", hv_k_unary (bound (b), y->data, x->data, hv_tensor_numel (x), (int) op));
}

static void
cuda_softmax (HvBackend *b, HvTensor *y, const HvTensor *x)
{
  RUN (b, "softmax", hv_k_softmax (bound (b), y->data, x->data, rows_of (x), last_dim (x)));
}

static void
cuda_attention (HvBackend *b, HvTensor *out, const HvTensor *q, const HvTensor *k, const HvTensor *v,
                const HvAttnMask *mask, float scale)
{
  int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], D = q->shape[3];
  int64_t Lk = k->shape[1], Hkv = k->shape[2];
  HvKAttnMask m = { 0 };
  if (mask) {
    m.seg_q = mask->seg_q ? mask->seg_q->data : NULL;
    m.seg_k = mask->seg_k ? mask->seg_k->data : NULL;
    m.allow = mask->allow ? mask->allow->data : NULL;
    m.allow_batched = mask->allow && hv_tensor_numel (mask->allow) == B * Lq * Lk && B > 1;
    m.causal = mask->causal;
  }
  /* HV_CUDA_ATTN=f32 forces the fp32 kernel (tests compare both kernels) */
  const char *env = g_getenv ("HV_CUDA_ATTN");
  int generic = env && strcmp (env, "f32") == 0;
  RUN (b, "attention", hv_k_attention (bound (b), out->data, q->data, k->data, v->data, B, Lq, Lk,
                                       H, Hkv, D, &m, scale, generic));
}

static void
cuda_rope (HvBackend *b, HvTensor *x, const HvTensor *cos, const HvTensor *sin, HvRopeMode mode)
{
  int64_t D = x->shape[3];
  RUN (b, "rope", hv_k_rope (bound (b), x->data, cos->data, sin->data, x->shape[0], x->shape[1],
                             x->shape[2], D, D ? hv_tensor_numel (cos) / D : 0,
                             mode == HV_ROPE_HALF ? 1 : 0));
}

/* Elements per entry of a modulation vector m ([C] shared, or [B, C]) over x. */
static int64_t
per_vector (const HvTensor *x, const HvTensor *m)
{
  int64_t c = last_dim (x), nb = c ? hv_tensor_numel (m) / c : 1;
  return hv_tensor_numel (x) / MAX (nb, 1);
}

static void
cuda_modulate (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift, const HvTensor *scale)
{
  HvKCtx *k = bound (b);
  int64_t n = hv_tensor_numel (x), C = last_dim (x);
  if (n == 0)
    return;
  if (!shift || !scale || hv_tensor_numel (shift) == hv_tensor_numel (scale)) {
    const HvTensor *any = shift ? shift : scale;
    int64_t per = any ? per_vector (x, any) : n;
    RUN (b, "modulate", hv_k_modulate (k, y->data, x->data, DATA (shift), DATA (scale), n, C, per));
  } else {
    /* shift and scale broadcast differently: two passes, scale first as in x*(1+scale)+shift */
    RUN (b, "modulate", hv_k_modulate (k, y->data, x->data, NULL, scale->data, n, C, per_vector (x, scale)));
    RUN (b, "modulate", hv_k_modulate (k, y->data, y->data, shift->data, NULL, n, C, per_vector (x, shift)));
  }
}

static void
cuda_layernorm_modulate (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift,
                         const HvTensor *scale, float eps)
{
  int64_t C = last_dim (x);
  /* rows per modulation vector: per_vector counts elements */
  int64_t sh_rows = shift && C ? per_vector (x, shift) / C : 1;
  int64_t sc_rows = scale && C ? per_vector (x, scale) / C : 1;
  RUN (b, "layernorm_modulate", hv_k_layernorm_modulate (bound (b), y->data, x->data, rows_of (x), C,
                                                         DATA (shift), sh_rows, DATA (scale), sc_rows, eps));
}

static void
cuda_gate_add (HvBackend *b, HvTensor *x, const HvTensor *y, const HvTensor *gate)
{
  int64_t n = hv_tensor_numel (x);
  if (n == 0)
    return;
  RUN (b, "gate_add", hv_k_gate_add (bound (b), x->data, y->data, DATA (gate), n, last_dim (x),
                                     gate ? per_vector (x, gate) : n));
}

static void
cuda_binary (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int op)
{
  int64_t n = hv_tensor_numel (a);
  if (n == 0)
    return;
  RUN (b, "binary", hv_k_binary (bound (b), y->data, a->data, c->data, n, hv_tensor_numel (c), op));
}

static void
cuda_scale (HvBackend *b, HvTensor *y, const HvTensor *x, float alpha, float beta)
{
  RUN (b, "scale", hv_k_scale (bound (b), y->data, x->data, hv_tensor_numel (x), alpha, beta));
}

static void
cuda_copy (HvBackend *b, HvTensor *y, const HvTensor *x)
{
  HvKCtx *k = bound (b);
  if (hv_tensor_is_contiguous (x))
    RUN (b, "copy", hv_k_convert (k, y->data, y->dtype, x->data, x->dtype, hv_tensor_numel (x), x->scale));
  else
    RUN (b, "copy", hv_k_convert_strided (k, y->data, y->dtype, x->data, x->dtype, x->ndim, x->shape,
                                          x->stride, x->scale));
}

/* outer × (len) × inner elements around `dim`. */
static void
dim_split (const HvTensor *t, int dim, int64_t *outer, int64_t *inner)
{
  int64_t o = 1, in = 1;
  for (int i = 0; i < dim; i++)
    o *= t->shape[i];
  for (int i = dim + 1; i < t->ndim; i++)
    in *= t->shape[i];
  *outer = o;
  *inner = in;
}

static void
cuda_slice (HvBackend *b, HvTensor *y, const HvTensor *x, int dim, int64_t start)
{
  int64_t outer, inner;
  dim_split (x, dim, &outer, &inner);
  RUN (b, "slice", hv_k_slice (bound (b), y->data, x->data, outer, x->shape[dim], y->shape[dim],
                               start, inner, (int) hv_dtype_size (x->dtype)));
}

static void
cuda_concat (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int dim)
{
  int64_t outer, inner;
  dim_split (y, dim, &outer, &inner);
  RUN (b, "concat", hv_k_concat (bound (b), y->data, a->data, c->data, outer, a->shape[dim],
                                 c->shape[dim], inner, (int) hv_dtype_size (y->dtype)));
}

static void
cuda_permute (HvBackend *b, HvTensor *y, const HvTensor *x, const int *perm)
{
  if (hv_tensor_numel (x) == 0)
    return;
  if (x->ndim == 0) {
    RUN (b, "permute", hv_k_slice (bound (b), y->data, x->data, 1, 1, 1, 0, 1, (int) hv_dtype_size (x->dtype)));
    return;
  }
  RUN (b, "permute", hv_k_permute (bound (b), y->data, x->data, x->ndim, x->shape, perm,
                                   (int) hv_dtype_size (x->dtype)));
}

static void
cuda_get_rows (HvBackend *b, HvTensor *y, const HvTensor *table, const HvTensor *ids)
{
  RUN (b, "get_rows", hv_k_get_rows (bound (b), y->data, table->data, table->dtype, table->scale,
                                     table->shape[0], table->shape[1], ids->data, ids->dtype,
                                     hv_tensor_numel (ids)));
}

static void
cuda_conv3d (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias,
             const int *stride, const int *pad)
{
  int ks[3] = { (int) w->shape[2], (int) w->shape[3], (int) w->shape[4] };
  RUN (b, "conv3d", hv_k_conv3d (bound (b), y->data, x->data, x->shape[0], x->shape[1], x->shape[2],
                                 x->shape[3], x->shape[4], w->data, w->dtype, w->scale, w->shape[0],
                                 ks, stride, pad, DATA (bias), DT (bias), SC (bias)));
}

static void
cuda_pad3d (HvBackend *b, HvTensor *y, const HvTensor *x, const int *pads, HvPadMode mode)
{
  RUN (b, "pad3d", hv_k_pad3d (bound (b), y->data, x->data, x->shape[0] * x->shape[1], x->shape[2],
                               x->shape[3], x->shape[4], pads, mode == HV_PAD_REPLICATE ? 1 : 0));
}

static void
cuda_groupnorm (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w,
                const HvTensor *bias, float eps)
{
  int64_t B = x->shape[0], C = x->shape[1];
  int64_t S = (B * C) != 0 ? hv_tensor_numel (x) / (B * C) : 0;
  RUN (b, "groupnorm", hv_k_groupnorm (bound (b), y->data, x->data, B, C, S, groups, DATA (w), DT (w),
                                       SC (w), DATA (bias), DT (bias), SC (bias), eps));
}

static void
cuda_groupnorm_silu (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w,
                     const HvTensor *bias, float eps)
{
  int64_t B = x->shape[0], C = x->shape[1];
  int64_t S = (B * C) != 0 ? hv_tensor_numel (x) / (B * C) : 0;
  RUN (b, "groupnorm_silu", hv_k_groupnorm_act (bound (b), y->data, x->data, B, C, S, groups, DATA (w),
                                                DT (w), SC (w), DATA (bias), DT (bias), SC (bias), eps, 1));
}

static void
cuda_upsample_nearest (HvBackend *b, HvTensor *y, const HvTensor *x, const int *factors)
{
  RUN (b, "upsample_nearest", hv_k_upsample_nearest (bound (b), y->data, x->data,
                                                     x->shape[0] * x->shape[1], x->shape[2],
                                                     x->shape[3], x->shape[4], factors));
}

static const HvBackendOps cuda_ops = {
  .destroy = cuda_destroy,
  .alloc = cuda_alloc,
  .release = cuda_release,
  .upload = cuda_upload,
  .download = cuda_download,
  .synchronize = cuda_synchronize,
  .is_host = FALSE,
  .linear = cuda_linear,
  .linear_act = cuda_linear_act,
  .layernorm = cuda_layernorm,
  .rmsnorm = cuda_rmsnorm,
  .unary = cuda_unary,
  .softmax = cuda_softmax,
  .attention = cuda_attention,
  .rope = cuda_rope,
  .modulate = cuda_modulate,
  .layernorm_modulate = cuda_layernorm_modulate,
  .gate_add = cuda_gate_add,
  .binary = cuda_binary,
  .scale = cuda_scale,
  .copy = cuda_copy,
  .slice = cuda_slice,
  .concat = cuda_concat,
  .permute = cuda_permute,
  .get_rows = cuda_get_rows,
  .conv3d = cuda_conv3d,
  .pad3d = cuda_pad3d,
  .groupnorm = cuda_groupnorm,
  .groupnorm_silu = cuda_groupnorm_silu,
  .upsample_nearest = cuda_upsample_nearest,
};

/* ---- construction --------------------------------------------------------------------------- */

gboolean
hv_backend_cuda_available (void)
{
  int n = 0;
  if (cudaGetDeviceCount (&n) != cudaSuccess) {
    cudaGetLastError ();
    return FALSE;
  }
  return n > 0;
}

HvBackend *
hv_backend_cuda_new (int device, GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  char msg[512] = "";
  HvKCtx *k = NULL;
  if (hv_k_ctx_new (device, &k, msg, sizeof msg) != 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_DEVICE, "Cannot use cuda:%d: %s", device, msg);
    return NULL;
  }
  CudaPriv *p = g_new0 (CudaPriv, 1);
  p->k = k;
  p->device = device;
  g_snprintf (p->name, sizeof p->name, "cuda:%d", device);
  HvBackend *b = g_new0 (HvBackend, 1);
  b->ops = &cuda_ops;
  b->name = p->name;
  b->n_threads = 1;
  b->priv = p;
  g_debug ("CUDA backend on %s (%s, sm_%d, fp8 %s)", p->name, hv_k_ctx_device_name (k),
           hv_k_ctx_sm (k), hv_k_get_fp8_mode (k) == HV_K_FP8_TENSORCORE ? "tensor cores, two e4m3 terms"
           : hv_k_get_fp8_mode (k) == HV_K_FP8_FAST ? "tensor cores, one e4m3 term" : "via bf16");
  return b;
}

HvKCtx *
hv_backend_cuda_context (HvBackend *b)
{
  return b && b->ops == &cuda_ops ? bound (b) : NULL;
}

gboolean
hv_backend_cuda_mem_stats (HvBackend *b, gsize *used, gsize *peak)
{
  HvKCtx *k = hv_backend_cuda_context (b);
  size_t u = 0, p = 0;
  if (!k || hv_k_mem_stats (k, &u, &p) != 0)
    return FALSE;
  *used = u;
  *peak = p;
  return TRUE;
}

void
hv_backend_cuda_reset_peak (HvBackend *b)
{
  HvKCtx *k = hv_backend_cuda_context (b);
  if (k)
    hv_k_mem_reset_peak (k);
}
