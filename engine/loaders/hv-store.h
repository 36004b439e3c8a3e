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
 * *.index.json shard index. */
HvStore        *hv_store_open (const char *path, GError **error);
/* Adds the tensors of one safetensors file. */
gboolean        hv_store_add_safetensors (HvStore *s, const char *path, GError **error);
/* Adds the state dict of a torch.save zip checkpoint (.pt/.pth/.bin). Only the globals a state
 * dict needs are understood; anything else in the pickle is refused, never run. */
gboolean        hv_store_add_pt (HvStore *s, const char *path, GError **error);
/* Adds every shard of a *.index.json ("weight_map") from the index's folder. */
gboolean        hv_store_add_index (HvStore *s, const char *path, GError **error);
/* In-memory variants (tests, fuzzing): `label` stands for the file name in messages; tensors
 * keep a reference to `bytes`. */
gboolean        hv_store_add_safetensors_bytes (HvStore *s, const char *label, GBytes *bytes, GError **error);
gboolean        hv_store_add_pt_bytes (HvStore *s, const char *label, GBytes *bytes, GError **error);
/* Adds the names and shapes of a manifest JSON (manifests/dit_full.json: "keys" = [{"official",
 * "shape", "dtype_as_constructed", "diffusers": [{"key","shape"}...]}]; or vae/weights.json style
 * "keys" = {name: shape}) as metadata-only tensors (data NULL). `diffusers` picks the diffusers
 * names of a DiT manifest. */
gboolean        hv_store_add_manifest (HvStore *s, const char *path, gboolean diffusers, GError **error);
/* Adds a tensor (the store takes ownership). Fails on a duplicate name. */
gboolean        hv_store_insert (HvStore *s, const char *name, HvTensor *t, GError **error);
const HvTensor *hv_store_get (HvStore *s, const char *name);
/* For loaders that adjust a tensor in place (fp8 scale). */
HvTensor       *hv_store_get_mutable (HvStore *s, const char *name);
/* Removes a tensor and hands it to the caller (NULL if absent). */
HvTensor       *hv_store_take (HvStore *s, const char *name);
/* Keeps `data` alive until the store is freed (then `destroy (data)`): a store of views into
 * another store attaches that store. */
void            hv_store_attach (HvStore *s, gpointer data, GDestroyNotify destroy);
/* Sum of numel over all tensors. */
guint64         hv_store_n_params (HvStore *s);
/* TRUE when tensors have no data (a store built from a manifest). */
gboolean        hv_store_is_metadata_only (HvStore *s);
/* Like get, but a missing tensor, or one whose shape differs from `shape` (ndim entries; a
 * -1 entry matches anything) is an error naming the tensor and the file. */
const HvTensor *hv_store_require (HvStore *s, const char *name, int ndim, const int64_t *shape, GError **error);
guint           hv_store_n_tensors (HvStore *s);
/* Sorted names, owned by the store. */
const char    **hv_store_names (HvStore *s);
/* The file the store was opened from (the index for a sharded set). */
const char     *hv_store_path (HvStore *s);
/* Metadata string map of the safetensors header (__metadata__), may be NULL. */
GHashTable     *hv_store_metadata (HvStore *s);
void            hv_store_free (HvStore *s);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvStore, hv_store_free)

G_END_DECLS
