/* hv-safetensors.c — safetensors reader.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data block. Offsets are relative to the data block. Everything is checked before a
 * tensor is made: header length inside the file, offsets inside the data block, end - begin ==
 * dtype size × numel (no overflow), and no two tensors overlapping. A failed add leaves the
 * store half-filled; callers free it (hv_store_open does). */
#include "hv-blob.h"
#include "../hv-error.h"
#include <string.h>

#define MAX_HEADER (100u * 1024u * 1024u)   /* the format's own limit */
#define MAX_JSON_DEPTH 8                     /* real headers nest 3 deep */

typedef struct {
  const char *name;
  guint64 begin, end;
} Span;

static int
cmp_span (const void *a, const void *b)
{
  const Span *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static GHashTable *
parse_metadata (JsonNode *node)
{
  GHashTable *md = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  JsonObject *mo = json_node_get_object (node);
  g_autoptr(GList) keys = json_object_get_members (mo);
  for (GList *k = keys; k; k = k->next) {
    const char *v = hv_json_string (json_object_get_member (mo, k->data));
    if (v)
      g_hash_table_insert (md, g_strdup (k->data), g_strdup (v));
  }
  return md;
}

/* One header entry → a tensor span; FALSE with error naming the tensor. */
static gboolean
parse_entry (HvStore *s, const HvBlob *b, const char *name, JsonNode *node, guint64 data_off,
             guint64 data_len, Span *span, GError **error)
{
  const char *path = b->label;
#define FAIL(code, ...) do { g_set_error (error, HV_ERROR, code, __VA_ARGS__); return FALSE; } while (0)
  if (!JSON_NODE_HOLDS_OBJECT (node))
    FAIL (HV_ERROR_CORRUPT, "%s: entry '%s' is not an object", path, name);
  JsonObject *to = json_node_get_object (node);
  JsonNode *dtn = json_object_get_member (to, "dtype");
  const char *dts = hv_json_string (dtn);
  HvDType dt;
  if (!dts)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has no dtype string", path, name);
  if (!hv_dtype_from_safetensors (dts, &dt))
    FAIL (HV_ERROR_UNSUPPORTED, "%s: tensor '%s' has unsupported dtype '%s'", path, name, dts);
  JsonNode *shn = json_object_get_member (to, "shape");
  JsonNode *ofn = json_object_get_member (to, "data_offsets");
  if (!shn || !JSON_NODE_HOLDS_ARRAY (shn) || !ofn || !JSON_NODE_HOLDS_ARRAY (ofn))
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' lacks shape or data_offsets", path, name);
  JsonArray *sha = json_node_get_array (shn), *ofa = json_node_get_array (ofn);
  guint nd = json_array_get_length (sha);
  if (nd > HV_MAX_DIMS)
    FAIL (HV_ERROR_UNSUPPORTED, "%s: tensor '%s' has %u dims (at most %d supported)", path, name, nd, HV_MAX_DIMS);
  if (json_array_get_length (ofa) != 2)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' data_offsets must have 2 entries", path, name);
  int64_t shape[HV_MAX_DIMS];
  guint64 numel = 1;
  for (guint i = 0; i < nd; i++) {
    guint64 d;
    if (!hv_json_uint (json_array_get_element (sha, i), &d))
      FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has an invalid shape", path, name);
    if (d && numel > G_MAXINT64 / d)
      FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' shape overflows", path, name);
    numel *= d;
    shape[i] = (int64_t) d;
  }
  guint64 begin, end;
  if (!hv_json_uint (json_array_get_element (ofa, 0), &begin) ||
      !hv_json_uint (json_array_get_element (ofa, 1), &end))
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has invalid data_offsets", path, name);
  gsize esz = hv_dtype_size (dt);
  if (numel > G_MAXUINT64 / esz)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' size overflows", path, name);
  if (end < begin || end > data_len)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' data [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
          ") lies outside the data block (%" G_GUINT64_FORMAT " bytes)", path, name, begin, end, data_len);
  if (end - begin != numel * esz)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has %" G_GUINT64_FORMAT " bytes but %s x %" G_GUINT64_FORMAT
          " elements needs %" G_GUINT64_FORMAT, path, name, end - begin, dts, numel, numel * esz);
  if (hv_store_get (s, name))
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' is also in another file of this set", path, name);
#undef FAIL
  *span = (Span) { name, begin, end };
  HvTensor *t = hv_blob_tensor (b, dt, (int) nd, shape, data_off + begin);
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "%s: out of memory for tensor '%s'", path, name);
    return FALSE;
  }
  return hv_store_insert (s, name, t, error);
}

static gboolean
parse_blob (HvStore *s, const HvBlob *b, GError **error)
{
  const char *path = b->label;
  gsize size = b->size;
  if (size < 8) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: not a safetensors file (only %zu bytes)", path, size);
    return FALSE;
  }
  guint64 hlen;
  memcpy (&hlen, b->data, 8);
  hlen = GUINT64_FROM_LE (hlen);
  if (hlen < 2 || hlen > MAX_HEADER || hlen > size - 8) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                 "%s: safetensors header length %" G_GUINT64_FORMAT " does not fit the file (%zu bytes)",
                 path, hlen, size);
    return FALSE;
  }
  guint64 data_off = 8 + hlen, data_len = size - 8 - hlen;

  g_autofree char *what = g_strdup_printf ("%s: safetensors header", path);
  g_autoptr(JsonParser) parser = hv_json_parse (what, (const char *) b->data + 8, hlen, MAX_JSON_DEPTH, error);
  if (!parser)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: safetensors header is not a JSON object", path);
    return FALSE;
  }
  JsonObject *obj = json_node_get_object (root);
  g_autoptr(GList) members = json_object_get_members (obj);
  guint n = g_list_length (members);
  g_autofree Span *spans = g_new0 (Span, n ? n : 1);
  guint n_spans = 0;

  for (GList *l = members; l; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (obj, name);
    if (strcmp (name, "__metadata__") == 0) {
      if (!JSON_NODE_HOLDS_OBJECT (node)) {
        g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: __metadata__ is not an object", path);
        return FALSE;
      }
      hv_store_set_metadata_ (s, parse_metadata (node));
      continue;
    }
    if (!parse_entry (s, b, name, node, data_off, data_len, &spans[n_spans], error))
      return FALSE;
    n_spans++;
  }
  /* overlap: sort by start; empty tensors occupy nothing and cannot overlap */
  qsort (spans, n_spans, sizeof (Span), cmp_span);
  const Span *prev = NULL;
  for (guint i = 0; i < n_spans; i++) {
    if (spans[i].begin == spans[i].end)
      continue;
    if (prev && spans[i].begin < prev->end) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: tensors '%s' and '%s' overlap", path, prev->name, spans[i].name);
      return FALSE;
    }
    prev = &spans[i];
  }
  hv_store_set_path_ (s, path);
  return TRUE;
}

gboolean
hv_store_add_safetensors (HvStore *s, const char *path, GError **error)
{
  return hv_blob_parse_file (s, path, parse_blob, error);
}

gboolean
hv_store_add_safetensors_bytes (HvStore *s, const char *label, GBytes *bytes, GError **error)
{
  return hv_blob_parse_bytes (s, label, bytes, parse_blob, error);
}
