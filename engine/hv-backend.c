/* hv-backend.c — backend selection, tensors on a backend, and the hv_op_* wrappers.
 *
 * The wrappers check shapes and dtypes (a mismatch is a programmer error: g_return_if_fail, the
 * op is skipped) and then call the backend's table. They are the only place that knows the op
 * contracts, so every backend gets the same checks. */
#include "hv-backend.h"
#include "hv-config.h"
#include "hv-error.h"
#include <string.h>

/* ---- backends ------------------------------------------------------------------------- */

HvBackend *
hv_backend_new (const char *device, int n_threads, GError **error)
{
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  if (device == NULL || g_ascii_strcasecmp (device, "cpu") == 0)
    return hv_backend_cpu_new (n_threads);
  if (g_ascii_strcasecmp (device, "cuda") == 0)
    return hv_backend_cuda_new (0, error);
  if (g_ascii_strncasecmp (device, "cuda:", 5) == 0) {
    const char *num = device + 5;
    guint64 idx = 0;
    if (*num == '\0' || !g_ascii_string_to_unsigned (num, 10, 0, 1023, &idx, NULL)) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "Invalid device \"%s\": expected \"cuda:N\" with N a GPU index", device);
      return NULL;
    }
    return hv_backend_cuda_new ((int) idx, error);
  }
  g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
               "Unknown device \"%s\": use \"cpu\", \"cuda\" or \"cuda:N\"", device);
  return NULL;
}

#if !HV_HAVE_CUDA
HvBackend *
hv_backend_cuda_new (int device, GError **error)
{
  g_set_error (error, HV_ERROR, HV_ERROR_DEVICE,
               "Cannot use cuda:%d: this build has no CUDA support (rebuild with -Dcuda=enabled)",
               device);
  return NULL;
}

gboolean
hv_backend_cuda_available (void)
{
  return FALSE;
}
#endif

void
hv_backend_free (HvBackend *b)
{
  if (!b)
    return;
  g_clear_error (&b->error);
  b->ops->destroy (b);   /* frees b itself */
}

gboolean
hv_backend_check (HvBackend *b, GError **error)
{
  g_return_val_if_fail (b != NULL, FALSE);
  if (b->ops->synchronize)
    b->ops->synchronize (b);
  if (b->error) {
    g_propagate_error (error, b->error);
    b->error = NULL;
    return FALSE;
  }
  return TRUE;
}

gboolean
hv_backend_is_host (const HvBackend *b)
{
  return b && b->ops->is_host;
}

/* ---- tensors on a backend ----------------------------------------------------------------- */

HvTensor *
hv_backend_tensor (HvBackend *b, HvDType dt, int ndim, const int64_t *shape)
{
  g_return_val_if_fail (b != NULL, NULL);
  g_return_val_if_fail (ndim >= 0 && ndim <= HV_MAX_DIMS, NULL);
  g_return_val_if_fail (dt < HV_DTYPE_COUNT, NULL);
  HvTensor *t = g_new0 (HvTensor, 1);
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      g_free (t);
      g_return_val_if_reached (NULL);
    }
    t->shape[i] = shape[i];
  }
  hv_tensor_set_contiguous_strides (t);
  t->scale = 1.0f;
  gsize n = hv_tensor_nbytes (t);
  t->data = b->ops->alloc (b, n ? n : 1);
  if (!t->data) {
    g_free (t);
    return NULL;
  }
  t->backend = b;
  return t;
}

HvTensor *
hv_backend_tensor_f32 (HvBackend *b, int ndim, const int64_t *shape)
{
  return hv_backend_tensor (b, HV_DTYPE_F32, ndim, shape);
}

HvTensor *
hv_backend_tensor_like (HvBackend *b, const HvTensor *t)
{
  g_return_val_if_fail (t != NULL, NULL);
  return hv_backend_tensor (b, HV_DTYPE_F32, t->ndim, t->shape);
}

HvTensor *
hv_backend_upload (HvBackend *b, const HvTensor *host)
{
  g_return_val_if_fail (b != NULL && host != NULL, NULL);
  g_return_val_if_fail (host->backend == NULL || host->backend->ops->is_host, NULL);
  g_return_val_if_fail (hv_tensor_is_contiguous (host), NULL);
  HvTensor *t = hv_backend_tensor (b, host->dtype, host->ndim, host->shape);
  if (!t)
    return NULL;
  t->scale = host->scale;
  gsize n = hv_tensor_nbytes (host);
  if (n)
    b->ops->upload (b, t->data, host->data, n);
  return t;
}

/* Weight views on the host backend borrow the caller's data: freeing them must not release it. */
static void
borrowed_noop (gpointer p)
{
}

HvTensor *
hv_backend_weight (HvBackend *b, const HvTensor *host)
{
  g_return_val_if_fail (b != NULL && host != NULL, NULL);
  if (b->ops->is_host) {
    HvTensor *v = hv_tensor_view (host);
    v->backend = b;
    v->free_func = borrowed_noop;
    return v;
  }
  return hv_backend_upload (b, host);
}

HvTensor *
hv_backend_download (HvBackend *b, const HvTensor *t)
{
  g_return_val_if_fail (b != NULL && t != NULL, NULL);
  g_return_val_if_fail (hv_tensor_is_contiguous (t), NULL);
  HvTensor *h = hv_tensor_new (t->dtype, t->ndim, t->shape);
  if (!h)
    return NULL;
  h->scale = t->scale;
  gsize n = hv_tensor_nbytes (t);
  if (n == 0)
    return h;
  if (t->backend == NULL || t->backend->ops->is_host)
    memcpy (h->data, t->data, n);
  else
    b->ops->download (b, h->data, t->data, n);
  return h;
}

void
hv_backend_free_data (HvBackend *b, HvTensor *t)
{
  if (!b || !t || !t->data)
    return;
  b->ops->release (b, t->data);
  t->data = NULL;
}

/* ---- op wrappers -------------------------------------------------------------------------- */

/* A tensor an op may read or write on b: host backends also take plain host tensors. */
static gboolean
on_backend (HvBackend *b, const HvTensor *t)
{
  if (t->backend == b)
    return TRUE;
  return b->ops->is_host && (t->backend == NULL || t->backend->ops->is_host);
}

static gboolean
is_act (HvBackend *b, const HvTensor *t)
{
  return t && t->dtype == HV_DTYPE_F32 && hv_tensor_is_contiguous (t) && on_backend (b, t);
}

static gboolean
is_weight (HvBackend *b, const HvTensor *t)
{
  return t && hv_dtype_is_float (t->dtype) && hv_tensor_is_contiguous (t) && on_backend (b, t);
}

static int64_t
last_dim (const HvTensor *t)
{
  return t->ndim ? t->shape[t->ndim - 1] : 1;
}

#define CHECK_B(b) g_return_if_fail ((b) != NULL && (b)->ops != NULL)

/* A macro, so that a failed check is reported under the op's own name. */
#define CHECK_LINEAR(b, y, x, w, bias) \
  G_STMT_START { \
    g_return_if_fail (is_act (b, y) && is_act (b, x) && is_weight (b, w)); \
    g_return_if_fail ((w)->ndim >= 2); \
    int64_t n_ = (w)->shape[0]; \
    int64_t k_ = hv_tensor_numel (w) / MAX (n_, 1); \
    g_return_if_fail (last_dim (x) == k_ && last_dim (y) == n_); \
    g_return_if_fail (hv_tensor_numel (x) / MAX (k_, 1) == hv_tensor_numel (y) / MAX (n_, 1)); \
    g_return_if_fail ((bias) == NULL || (is_weight (b, bias) && hv_tensor_numel (bias) == n_)); \
  } G_STMT_END

void
hv_op_linear (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias)
{
  CHECK_B (b);
  CHECK_LINEAR (b, y, x, w, bias);
  b->ops->linear (b, y, x, w, bias);
}

void
hv_op_linear_act (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias,
                  HvUnary act)
{
  CHECK_B (b);
  CHECK_LINEAR (b, y, x, w, bias);
  if (b->ops->linear_act) {
    b->ops->linear_act (b, y, x, w, bias, act);
    return;
  }
  b->ops->linear (b, y, x, w, bias);
  b->ops->unary (b, y, y, act);
}

void
hv_op_layernorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, float eps)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_same_shape (x, y));
  int64_t c = last_dim (x);
  g_return_if_fail (w == NULL || (is_weight (b, w) && hv_tensor_numel (w) == c));
  g_return_if_fail (bias == NULL || (is_weight (b, bias) && hv_tensor_numel (bias) == c));
  b->ops->layernorm (b, y, x, w, bias, eps);
}

void
hv_op_rmsnorm (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, float eps)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_same_shape (x, y));
  g_return_if_fail (w == NULL || (is_weight (b, w) && hv_tensor_numel (w) == last_dim (x)));
  b->ops->rmsnorm (b, y, x, w, eps);
}

void
hv_op_unary (HvBackend *b, HvTensor *y, const HvTensor *x, HvUnary op)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_numel (x) == hv_tensor_numel (y));
  g_return_if_fail (op <= HV_UNARY_SIGMOID);
  b->ops->unary (b, y, x, op);
}

void
hv_op_softmax (HvBackend *b, HvTensor *y, const HvTensor *x)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_same_shape (x, y));
  b->ops->softmax (b, y, x);
}

static gboolean
is_ids (HvBackend *b, const HvTensor *t)
{
  return t->dtype == HV_DTYPE_I32 && hv_tensor_is_contiguous (t) && on_backend (b, t);
}

void
hv_op_attention (HvBackend *b, HvTensor *out, const HvTensor *q, const HvTensor *k, const HvTensor *v, const HvAttnMask *mask, float scale)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, out) && is_act (b, q) && is_act (b, k) && is_act (b, v));
  g_return_if_fail (q->ndim == 4 && k->ndim == 4 && hv_tensor_same_shape (q, out) && hv_tensor_same_shape (k, v));
  int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], D = q->shape[3];
  int64_t Lk = k->shape[1], Hkv = k->shape[2];
  g_return_if_fail (k->shape[0] == B && k->shape[3] == D && Hkv > 0 && H % Hkv == 0);
  if (mask) {
    g_return_if_fail ((mask->seg_q == NULL) == (mask->seg_k == NULL));
    if (mask->seg_q) {
      g_return_if_fail (is_ids (b, mask->seg_q) && hv_tensor_numel (mask->seg_q) == B * Lq);
      g_return_if_fail (is_ids (b, mask->seg_k) && hv_tensor_numel (mask->seg_k) == B * Lk);
    }
    if (mask->allow) {
      const HvTensor *a = mask->allow;
      g_return_if_fail ((a->dtype == HV_DTYPE_U8 || a->dtype == HV_DTYPE_BOOL) && hv_tensor_is_contiguous (a) && on_backend (b, a));
      g_return_if_fail (hv_tensor_numel (a) == B * Lq * Lk || hv_tensor_numel (a) == Lq * Lk);
    }
  }
  b->ops->attention (b, out, q, k, v, mask, scale);
}

void
hv_op_rope (HvBackend *b, HvTensor *x, const HvTensor *cos, const HvTensor *sin, HvRopeMode mode)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, x) && x->ndim == 4 && is_act (b, cos) && is_act (b, sin));
  int64_t D = x->shape[3];
  g_return_if_fail (D % 2 == 0 && hv_tensor_same_shape (cos, sin) && last_dim (cos) == D);
  g_return_if_fail (hv_tensor_numel (cos) / MAX (D, 1) <= x->shape[1]);
  g_return_if_fail (mode == HV_ROPE_INTERLEAVED || mode == HV_ROPE_HALF);
  b->ops->rope (b, x, cos, sin, mode);
}

/* shift/scale/gate: [B, C] for x [B, L, C], or [C] / [1, C] shared by every batch. */
static gboolean
is_mod_vector (HvBackend *b, const HvTensor *m, const HvTensor *x)
{
  if (!is_act (b, m))
    return FALSE;
  int64_t c = last_dim (x), n = hv_tensor_numel (m);
  return n == c || (x->ndim >= 2 && n == x->shape[0] * c);
}

void
hv_op_modulate (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift, const HvTensor *scale)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_same_shape (x, y));
  g_return_if_fail (shift == NULL || is_mod_vector (b, shift, x));
  g_return_if_fail (scale == NULL || is_mod_vector (b, scale, x));
  b->ops->modulate (b, y, x, shift, scale);
}

void
hv_op_layernorm_modulate (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *shift,
                          const HvTensor *scale, float eps)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_same_shape (x, y));
  g_return_if_fail (shift == NULL || is_mod_vector (b, shift, x));
  g_return_if_fail (scale == NULL || is_mod_vector (b, scale, x));
  if (b->ops->layernorm_modulate) {
    b->ops->layernorm_modulate (b, y, x, shift, scale, eps);
    return;
  }
  b->ops->layernorm (b, y, x, NULL, NULL, eps);
  if (shift || scale)
    b->ops->modulate (b, y, y, shift, scale);
}

void
hv_op_gate_add (HvBackend *b, HvTensor *x, const HvTensor *y, const HvTensor *gate)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, x) && is_act (b, y) && hv_tensor_numel (x) == hv_tensor_numel (y));
  g_return_if_fail (gate == NULL || is_mod_vector (b, gate, x));
  b->ops->gate_add (b, x, y, gate);
}

static void
binary (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, HvBinary op)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, a) && is_act (b, c));
  int64_t na = hv_tensor_numel (a), nc = hv_tensor_numel (c);
  g_return_if_fail (hv_tensor_numel (y) == na);
  g_return_if_fail (nc > 0 ? na % nc == 0 : na == 0);
  b->ops->binary (b, y, a, c, op);
}

void
hv_op_add (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c)
{
  binary (b, y, a, c, HV_BINARY_ADD);
}

void
hv_op_sub (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c)
{
  binary (b, y, a, c, HV_BINARY_SUB);
}

void
hv_op_mul (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c)
{
  binary (b, y, a, c, HV_BINARY_MUL);
}

void
hv_op_scale (HvBackend *b, HvTensor *y, const HvTensor *x, float alpha, float beta)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_numel (x) == hv_tensor_numel (y));
  b->ops->scale (b, y, x, alpha, beta);
}

void
hv_op_copy (HvBackend *b, HvTensor *y, const HvTensor *x)
{
  CHECK_B (b);
  g_return_if_fail (y && x && on_backend (b, y) && on_backend (b, x));
  g_return_if_fail (hv_tensor_is_contiguous (y));
  g_return_if_fail (y->dtype == HV_DTYPE_F32 || y->dtype == HV_DTYPE_F16 || y->dtype == HV_DTYPE_BF16);
  g_return_if_fail (x->dtype < HV_DTYPE_COUNT && hv_tensor_numel (x) == hv_tensor_numel (y));
  b->ops->copy (b, y, x);
}

/* All dims equal except `dim`. */
static gboolean
same_but (const HvTensor *a, const HvTensor *c, int dim)
{
  if (a->ndim != c->ndim)
    return FALSE;
  for (int i = 0; i < a->ndim; i++)
    if (i != dim && a->shape[i] != c->shape[i])
      return FALSE;
  return TRUE;
}

static gboolean
is_plain (HvBackend *b, const HvTensor *t)
{
  return t && hv_tensor_is_contiguous (t) && on_backend (b, t);
}

void
hv_op_slice (HvBackend *b, HvTensor *y, const HvTensor *x, int dim, int64_t start)
{
  CHECK_B (b);
  g_return_if_fail (is_plain (b, y) && is_plain (b, x) && x->dtype == y->dtype);
  g_return_if_fail (dim >= 0 && dim < x->ndim && same_but (x, y, dim));
  g_return_if_fail (start >= 0 && start + y->shape[dim] <= x->shape[dim]);
  b->ops->slice (b, y, x, dim, start);
}

void
hv_op_concat (HvBackend *b, HvTensor *y, const HvTensor *a, const HvTensor *c, int dim)
{
  CHECK_B (b);
  g_return_if_fail (is_plain (b, y) && is_plain (b, a) && is_plain (b, c));
  g_return_if_fail (a->dtype == y->dtype && c->dtype == y->dtype);
  g_return_if_fail (dim >= 0 && dim < y->ndim && same_but (a, y, dim) && same_but (c, y, dim));
  g_return_if_fail (a->shape[dim] + c->shape[dim] == y->shape[dim]);
  b->ops->concat (b, y, a, c, dim);
}

void
hv_op_permute (HvBackend *b, HvTensor *y, const HvTensor *x, const int *perm)
{
  CHECK_B (b);
  g_return_if_fail (is_plain (b, y) && is_plain (b, x) && x->dtype == y->dtype && perm);
  g_return_if_fail (x->ndim == y->ndim);
  guint seen = 0;
  for (int i = 0; i < x->ndim; i++) {
    g_return_if_fail (perm[i] >= 0 && perm[i] < x->ndim && !(seen & (1u << perm[i])));
    seen |= 1u << perm[i];
    g_return_if_fail (y->shape[i] == x->shape[perm[i]]);
  }
  b->ops->permute (b, y, x, perm);
}

void
hv_op_get_rows (HvBackend *b, HvTensor *y, const HvTensor *table, const HvTensor *ids)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_weight (b, table) && table->ndim == 2);
  g_return_if_fail (ids && (ids->dtype == HV_DTYPE_I32 || ids->dtype == HV_DTYPE_I64) && is_plain (b, ids));
  g_return_if_fail (last_dim (y) == table->shape[1]);
  g_return_if_fail (hv_tensor_numel (y) == hv_tensor_numel (ids) * table->shape[1]);
  b->ops->get_rows (b, y, table, ids);
}

void
hv_op_conv3d (HvBackend *b, HvTensor *y, const HvTensor *x, const HvTensor *w, const HvTensor *bias, const int *stride, const int *pad)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && is_weight (b, w) && stride && pad);
  g_return_if_fail (x->ndim == 5 && y->ndim == 5 && w->ndim == 5);
  g_return_if_fail (w->shape[1] == x->shape[1] && w->shape[0] == y->shape[1] && x->shape[0] == y->shape[0]);
  for (int i = 0; i < 3; i++) {
    g_return_if_fail (stride[i] >= 1 && pad[i] >= 0);
    int64_t o = (x->shape[2 + i] + 2 * pad[i] - w->shape[2 + i]) / stride[i] + 1;
    g_return_if_fail (x->shape[2 + i] + 2 * pad[i] >= w->shape[2 + i] && y->shape[2 + i] == o);
  }
  g_return_if_fail (bias == NULL || (is_weight (b, bias) && hv_tensor_numel (bias) == w->shape[0]));
  b->ops->conv3d (b, y, x, w, bias, stride, pad);
}

void
hv_op_pad3d (HvBackend *b, HvTensor *y, const HvTensor *x, const int *pads, HvPadMode mode)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && x->ndim == 5 && y->ndim == 5 && pads);
  g_return_if_fail (x->shape[0] == y->shape[0] && x->shape[1] == y->shape[1]);
  for (int i = 0; i < 3; i++) {
    g_return_if_fail (pads[2 * i] >= 0 && pads[2 * i + 1] >= 0);
    g_return_if_fail (y->shape[2 + i] == x->shape[2 + i] + pads[2 * i] + pads[2 * i + 1]);
    g_return_if_fail (mode == HV_PAD_ZERO || x->shape[2 + i] > 0);
  }
  g_return_if_fail (mode == HV_PAD_ZERO || mode == HV_PAD_REPLICATE);
  b->ops->pad3d (b, y, x, pads, mode);
}

/* A macro, so that a failed check is reported under the op's own name. */
#define CHECK_GROUPNORM(b, y, x, groups, w, bias) \
  G_STMT_START { \
    g_return_if_fail (is_act (b, y) && is_act (b, x) && hv_tensor_same_shape (x, y) && (x)->ndim >= 2); \
    int64_t c_ = (x)->shape[1]; \
    g_return_if_fail ((groups) > 0 && c_ % (groups) == 0); \
    g_return_if_fail ((w) == NULL || (is_weight (b, w) && hv_tensor_numel (w) == c_)); \
    g_return_if_fail ((bias) == NULL || (is_weight (b, bias) && hv_tensor_numel (bias) == c_)); \
  } G_STMT_END

void
hv_op_groupnorm (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w, const HvTensor *bias, float eps)
{
  CHECK_B (b);
  CHECK_GROUPNORM (b, y, x, groups, w, bias);
  b->ops->groupnorm (b, y, x, groups, w, bias, eps);
}

void
hv_op_groupnorm_silu (HvBackend *b, HvTensor *y, const HvTensor *x, int groups, const HvTensor *w,
                      const HvTensor *bias, float eps)
{
  CHECK_B (b);
  CHECK_GROUPNORM (b, y, x, groups, w, bias);
  if (b->ops->groupnorm_silu) {
    b->ops->groupnorm_silu (b, y, x, groups, w, bias, eps);
    return;
  }
  b->ops->groupnorm (b, y, x, groups, w, bias, eps);
  b->ops->unary (b, y, y, HV_UNARY_SILU);
}

void
hv_op_upsample_nearest (HvBackend *b, HvTensor *y, const HvTensor *x, const int *factors)
{
  CHECK_B (b);
  g_return_if_fail (is_act (b, y) && is_act (b, x) && x->ndim == 5 && y->ndim == 5 && factors);
  g_return_if_fail (x->shape[0] == y->shape[0] && x->shape[1] == y->shape[1]);
  for (int i = 0; i < 3; i++)
    g_return_if_fail (factors[i] >= 1 && y->shape[2 + i] == x->shape[2 + i] * factors[i]);
  b->ops->upsample_nearest (b, y, x, factors);
}
