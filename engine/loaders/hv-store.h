/* hv-store.h — a set of named tensors read from checkpoint files.
 *
 * Parsers read metadata only (name, dtype, shape, offset); tensor data stays in the mapped
 * file and tensors borrow it. Every tensor handed out stays valid until the store is freed.
 * One store can hold several files (a sharded set); names must be unique across them. */
#pragma once
#include "../hv-tensor.h"
#include <glib.h>

G_BEGIN_DECLS

typedef struct _HvStore HvStore;

HvStore        *hv_store_new (void);
/* Opens a file by its content: safetensors, PyTorch zip (.pt/.pth/.bin) or a
 * *.safetensors.index.json shard index. */
HvStore        *hv_store_open (const char *path, GError **error);
/* Adds the tensors of one safetensors file. */
gboolean        hv_store_add_safetensors (HvStore *s, const char *path, GError **error);
/* Adds a tensor (the store takes ownership). Fails on a duplicate name. */
gboolean        hv_store_insert (HvStore *s, const char *name, HvTensor *t, GError **error);
const HvTensor *hv_store_get (HvStore *s, const char *name);
/* Like get, but a missing tensor, or one whose shape differs from `shape` (ndim entries; a
 * -1 entry matches anything) is an error naming the tensor and the file. */
const HvTensor *hv_store_require (HvStore *s, const char *name, int ndim, const int64_t *shape, GError **error);
guint           hv_store_n_tensors (HvStore *s);
/* Sorted names, owned by the store. */
const char    **hv_store_names (HvStore *s);
/* The file the store was opened from (the first one for a sharded set). */
const char     *hv_store_path (HvStore *s);
/* Metadata string map of the safetensors header (__metadata__), may be NULL. */
GHashTable     *hv_store_metadata (HvStore *s);
void            hv_store_free (HvStore *s);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvStore, hv_store_free)

G_END_DECLS
