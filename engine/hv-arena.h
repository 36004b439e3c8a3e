/* hv-arena.h — an arena for activations: one block of backend memory with a bump pointer.
 *
 * A model forward allocates many temporaries whose lifetimes nest like C scopes. Taking them
 * from one block allocated once (instead of one backend allocation each) means no allocator
 * work, no fragmentation and a peak that is known before the first op runs:
 *
 *   HvArenaMark m = hv_arena_mark (a);
 *   HvTensor *t = hv_arena_tensor (a, HV_DTYPE_F32, 3, shape);   // 256-byte aligned
 *   ...
 *   hv_arena_release (a, m);          // t's bytes are free again (stack discipline)
 *
 * or, tied to a C scope: `HV_ARENA_SCOPE (a);` releases at the end of the enclosing block.
 *
 * Tensors from the arena own no memory: hv_tensor_free() frees only the header, so freeing
 * them in any order (or never releasing a mark) is harmless; bytes come back only by
 * hv_arena_release() / hv_arena_reset(). The tensor must not be used after that.
 *
 * When a request does not fit in the block, the tensor comes from hv_backend_tensor() instead
 * (an ordinary tensor, freed by hv_tensor_free) and the fallback is counted: a planning mistake
 * costs speed, never correctness. The arena also tracks the demand: the bytes the bump pointer
 * would have reached with an unbounded block. That gives a measure mode: create the arena with
 * capacity 0, run once (everything falls back), read `demand_peak` from the stats (or call
 * hv_arena_fit) and the next run needs no fallback.
 *
 * An arena is used by one thread at a time. */
#pragma once
#include "hv-backend.h"
#include <glib.h>

G_BEGIN_DECLS

#define HV_ARENA_ALIGN 256   /* bytes; every tensor's data starts on this boundary */

typedef struct _HvArena HvArena;

/* A position of the bump pointer (see hv_arena_mark). */
typedef struct {
  gsize top;      /* bytes used in the block */
  gsize demand;   /* bytes an unbounded block would use */
} HvArenaMark;

typedef struct {
  gsize capacity;        /* bytes of the block (0: none, everything falls back) */
  gsize used;            /* bytes in use now */
  gsize peak;            /* most bytes in use at once in the block */
  gsize demand_peak;     /* most bytes an unbounded block would have had in use at once */
  guint64 n_tensors;     /* tensors handed out, from the block or not */
  guint64 n_fallback;    /* of those, how many came from hv_backend_tensor */
  guint64 fallback_bytes;
} HvArenaStats;

/* An arena on b with a block of `capacity` bytes (0 = none yet: measure mode). NULL with
 * HV_ERROR_NO_MEMORY when the block cannot be allocated. */
HvArena  *hv_arena_new (HvBackend *b, gsize capacity, GError **error);
/* Frees the block. Tensors from it must not be used any more (their headers may still be
 * freed, before or after). */
void      hv_arena_free (HvArena *a);
HvBackend *hv_arena_backend (HvArena *a);

/* Bytes a tensor of `nbytes` takes in an arena (rounded up to HV_ARENA_ALIGN; 0 counts as 1):
 * what sizing formulas add up. */
gsize     hv_arena_size (gsize nbytes);

/* A contiguous tensor (contents undefined) from the block, or from the backend when the block
 * is full. NULL only when the backend is out of memory too. */
HvTensor *hv_arena_tensor (HvArena *a, HvDType dt, int ndim, const int64_t *shape);
/* hv_arena_tensor of a host tensor's dtype and shape, filled with its data (scale kept). */
HvTensor *hv_arena_upload (HvArena *a, const HvTensor *host);

HvArenaMark hv_arena_mark (HvArena *a);
/* Frees everything allocated since `m` was taken. Marks must be released innermost first;
 * releasing an outer mark releases the inner ones with it. */
void      hv_arena_release (HvArena *a, HvArenaMark m);
/* Releases everything. */
void      hv_arena_reset (HvArena *a);

/* Makes the block at least `capacity` bytes (never shrinks). Only on an empty arena (after
 * hv_arena_reset): the old block's tensors would dangle. On failure the arena has no block
 * (still usable: everything falls back) and HV_ERROR_NO_MEMORY is set. */
gboolean  hv_arena_reserve (HvArena *a, gsize capacity, GError **error);
/* hv_arena_reserve (a, the demand peak seen so far): ends a measuring run. */
gboolean  hv_arena_fit (HvArena *a, GError **error);

/* Moves the f32 tensor t (scale 1, allocated after `m`) down to `m`: everything allocated
 * after m is released and t's contents are copied (hv_op_copy, exact) into a new tensor at m,
 * which is returned; t is freed. When the new place would overlap t (t lies below
 * m + its own size, e.g. because what it should replace fell back), nothing is released and t
 * itself is returned. NULL (t freed) only when out of memory. */
HvTensor *hv_arena_move_down (HvArena *a, HvArenaMark m, HvTensor *t);

void      hv_arena_stats (HvArena *a, HvArenaStats *st);
/* Restarts peak, demand_peak and the counters from the current use. */
void      hv_arena_clear_stats (HvArena *a);

/* ---- scopes: a mark released when the C block that declares it ends ---------------------- */

typedef struct {
  HvArena *arena;
  HvArenaMark mark;
} HvArenaScope;

static inline HvArenaScope
hv_arena_scope_begin (HvArena *a)
{
  HvArenaScope s = { a, hv_arena_mark (a) };
  return s;
}

static inline void
hv_arena_scope_end (HvArenaScope *s)
{
  if (s->arena)
    hv_arena_release (s->arena, s->mark);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (HvArenaScope, hv_arena_scope_end)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvArena, hv_arena_free)

/* Declare before the first allocation of a block: releases everything allocated after it when
 * the block is left (any way: end, return, break). */
#define HV_ARENA_SCOPE(a) \
  g_auto (HvArenaScope) G_PASTE (hv_arena_scope_, __LINE__) = hv_arena_scope_begin (a)

G_END_DECLS
