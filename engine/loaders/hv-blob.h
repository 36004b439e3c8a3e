/* hv-blob.h — (loader-internal) the bytes a parser reads: a mapped file or an in-memory buffer,
 * plus what keeps them alive. Tensors made from a blob borrow its bytes and hold a reference to
 * its owner, so the mapping lives exactly as long as some tensor uses it. The in-memory form
 * lets the fuzz harnesses and unit tests feed parsers without files. */
#pragma once
#include "hv-store.h"
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct {
  char *label;                  /* file name used in every message */
  const guint8 *data;
  gsize size;
  gpointer owner;               /* GMappedFile or GBytes */
  gpointer (*ref) (gpointer);
  GDestroyNotify unref;
} HvBlob;

/* Maps `path` read-only. */
gboolean  hv_blob_map (HvBlob *b, const char *path, GError **error);
/* Borrows `bytes` (takes a reference). */
void      hv_blob_from_bytes (HvBlob *b, const char *label, GBytes *bytes);
void      hv_blob_clear (HvBlob *b);
/* A format's parser: adds the tensors of one blob to the store. */
typedef gboolean (*HvBlobParseFunc) (HvStore *s, const HvBlob *b, GError **error);
/* Runs `parse` on the mapped file `path` / on `bytes` (named `label` in messages), then drops
 * the blob (the tensors keep their own references): the body of every
 * hv_store_add_<format>() and hv_store_add_<format>_bytes(). */
gboolean  hv_blob_parse_file (HvStore *s, const char *path, HvBlobParseFunc parse, GError **error);
gboolean  hv_blob_parse_bytes (HvStore *s, const char *label, GBytes *bytes, HvBlobParseFunc parse,
                               GError **error);
/* A tensor borrowing `nbytes` at `offset` of the blob (caller checked the bounds). */
HvTensor *hv_blob_tensor (const HvBlob *b, HvDType dt, int ndim, const int64_t *shape, guint64 offset);

/* JSON nesting depth of `data` (strings skipped) is at most `max_depth`. json-glib's parser
 * recurses per nesting level, so hostile headers are screened with this first. */
gboolean  hv_json_depth_ok (const char *data, gsize len, int max_depth);
/* Parses a JSON document from memory with the depth screen; errors name `label`. */
JsonParser *hv_json_parse (const char *label, const char *data, gsize len, int max_depth, GError **error);
/* Reads and parses a JSON file (at most `max_size` bytes). */
JsonParser *hv_json_load (const char *path, gsize max_size, GError **error);
/* The string of a JSON value node, or NULL when `n` is absent or not a string (no criticals). */
const char *hv_json_string (JsonNode *n);
/* An integer member >= 0, or FALSE. */
gboolean    hv_json_uint (JsonNode *n, guint64 *out);

/* store internals shared by the parsers */
void hv_store_set_path_ (HvStore *s, const char *path);
void hv_store_set_metadata_ (HvStore *s, GHashTable *md);

G_END_DECLS
