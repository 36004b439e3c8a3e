/* hv-arena.c — bump allocation of activations from one backend block (see hv-arena.h). */
#include "hv-arena.h"
#include "hv-error.h"
#include <string.h>

struct _HvArena {
  HvBackend *b;
  void *block;          /* from b->ops->alloc (NULL: no block) */
  char *base;           /* block rounded up to HV_ARENA_ALIGN */
  gsize capacity;       /* usable bytes from base */
  gsize top;            /* bytes in use from base */
  gsize demand;         /* bytes an unbounded block would have in use */
  gsize peak, demand_peak;
  guint64 n_tensors, n_fallback, fallback_bytes;
};

gsize
hv_arena_size (gsize nbytes)
{
  return (MAX (nbytes, 1) + HV_ARENA_ALIGN - 1) & ~(gsize) (HV_ARENA_ALIGN - 1);
}

static void
drop_block (HvArena *a)
{
  if (a->block)
    a->b->ops->release (a->b, a->block);
  a->block = NULL;
  a->base = NULL;
  a->capacity = 0;
}

HvArena *
hv_arena_new (HvBackend *b, gsize capacity, GError **error)
{
  g_return_val_if_fail (b != NULL, NULL);
  HvArena *a = g_new0 (HvArena, 1);
  a->b = b;
  if (capacity && !hv_arena_reserve (a, capacity, error)) {
    g_free (a);
    return NULL;
  }
  return a;
}

void
hv_arena_free (HvArena *a)
{
  if (!a)
    return;
  drop_block (a);
  g_free (a);
}

HvBackend *
hv_arena_backend (HvArena *a)
{
  return a->b;
}

gboolean
hv_arena_reserve (HvArena *a, gsize capacity, GError **error)
{
  g_return_val_if_fail (a != NULL, FALSE);
  g_return_val_if_fail (a->top == 0 && a->demand == 0, FALSE);
  capacity = hv_arena_size (capacity);
  if (capacity <= a->capacity)
    return TRUE;
  /* the old block first: on a GPU both at once may not fit */
  drop_block (a);
  a->block = a->b->ops->alloc (a->b, capacity + HV_ARENA_ALIGN - 1);
  if (!a->block) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory for an activation arena of %.1f MiB",
                 a->b->name, capacity / 1048576.0);
    return FALSE;
  }
  /* device pointers are plain addresses too: aligning the integer value is valid on any backend */
  guintptr p = ((guintptr) a->block + HV_ARENA_ALIGN - 1) & ~(guintptr) (HV_ARENA_ALIGN - 1);
  a->base = (char *) p;
  a->capacity = capacity;
  return TRUE;
}

gboolean
hv_arena_fit (HvArena *a, GError **error)
{
  g_return_val_if_fail (a != NULL, FALSE);
  return hv_arena_reserve (a, a->demand_peak, error);
}

/* Arena tensors own nothing: freeing the header leaves the block alone. */
static void
arena_data_noop (gpointer p)
{
}

HvTensor *
hv_arena_tensor (HvArena *a, HvDType dt, int ndim, const int64_t *shape)
{
  g_return_val_if_fail (a != NULL, NULL);
  g_return_val_if_fail (ndim >= 0 && ndim <= HV_MAX_DIMS && dt < HV_DTYPE_COUNT, NULL);
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    g_return_val_if_fail (shape[i] >= 0, NULL);
    numel *= shape[i];
  }
  gsize size = hv_arena_size ((gsize) numel * hv_dtype_size (dt));
  a->n_tensors++;
  a->demand += size;
  a->demand_peak = MAX (a->demand_peak, a->demand);
  if (a->top + size > a->capacity) {
    HvTensor *t = hv_backend_tensor (a->b, dt, ndim, shape);
    if (t) {
      a->n_fallback++;
      a->fallback_bytes += size;
    }
    /* the demand stays counted even on failure: the caller reports the error */
    return t;
  }
  HvTensor *t = g_new0 (HvTensor, 1);
  t->dtype = dt;
  t->ndim = ndim;
  if (ndim)
    memcpy (t->shape, shape, sizeof (int64_t) * ndim);
  hv_tensor_set_contiguous_strides (t);
  t->scale = 1.0f;
  t->data = a->base + a->top;
  t->backend = a->b;
  t->free_func = arena_data_noop;
  a->top += size;
  a->peak = MAX (a->peak, a->top);
  return t;
}

HvTensor *
hv_arena_upload (HvArena *a, const HvTensor *host)
{
  g_return_val_if_fail (a != NULL && host != NULL, NULL);
  g_return_val_if_fail (host->backend == NULL || host->backend->ops->is_host, NULL);
  g_return_val_if_fail (hv_tensor_is_contiguous (host), NULL);
  HvTensor *t = hv_arena_tensor (a, host->dtype, host->ndim, host->shape);
  if (!t)
    return NULL;
  t->scale = host->scale;
  gsize n = hv_tensor_nbytes (host);
  if (n)
    a->b->ops->upload (a->b, t->data, host->data, n);
  return t;
}

HvArenaMark
hv_arena_mark (HvArena *a)
{
  HvArenaMark m = { a->top, a->demand };
  return m;
}

void
hv_arena_release (HvArena *a, HvArenaMark m)
{
  g_return_if_fail (a != NULL);
  /* a mark above the pointer was released already by an outer one: a scope bug */
  g_return_if_fail (m.top <= a->top && m.demand <= a->demand);
  a->top = m.top;
  a->demand = m.demand;
}

void
hv_arena_reset (HvArena *a)
{
  g_return_if_fail (a != NULL);
  a->top = 0;
  a->demand = 0;
}

/* Does t's data lie in [base + from, base + to)? Fallback tensors lie outside the block. */
static gboolean
in_block (HvArena *a, const HvTensor *t, gsize from, gsize to)
{
  if (!a->base)
    return FALSE;
  guintptr p = (guintptr) t->data, lo = (guintptr) a->base;
  return p >= lo + from && p < lo + to;
}

HvTensor *
hv_arena_move_down (HvArena *a, HvArenaMark m, HvTensor *t)
{
  g_return_val_if_fail (a != NULL && t != NULL, t);
  g_return_val_if_fail (m.top <= a->top && m.demand <= a->demand, t);
  g_return_val_if_fail (t->dtype == HV_DTYPE_F32 && t->scale == 1.0f && hv_tensor_is_contiguous (t), t);
  const gsize size = hv_arena_size (hv_tensor_nbytes (t));
  /* the new place [m.top, m.top + size) must not overlap t: t in the block at or above its end,
   * or t outside the block (a fallback) */
  if (in_block (a, t, 0, m.top + size))
    return t;
  hv_arena_release (a, m);
  HvTensor *n = hv_arena_tensor (a, t->dtype, t->ndim, t->shape);
  if (n)
    hv_op_copy (a->b, n, t);   /* f32 to f32 with scale 1: an exact copy */
  hv_tensor_free (t);   /* a header only, or a fallback tensor's own memory */
  return n;
}

void
hv_arena_stats (HvArena *a, HvArenaStats *st)
{
  g_return_if_fail (a != NULL && st != NULL);
  st->capacity = a->capacity;
  st->used = a->top;
  st->peak = a->peak;
  st->demand_peak = a->demand_peak;
  st->n_tensors = a->n_tensors;
  st->n_fallback = a->n_fallback;
  st->fallback_bytes = a->fallback_bytes;
}

void
hv_arena_clear_stats (HvArena *a)
{
  g_return_if_fail (a != NULL);
  a->peak = a->top;
  a->demand_peak = a->demand;
  a->n_tensors = a->n_fallback = a->fallback_bytes = 0;
}
