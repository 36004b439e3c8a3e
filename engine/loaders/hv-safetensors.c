/* hv-safetensors.c — safetensors reader.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data block. Offsets are relative to the data block. Everything is checked before a
 * tensor is made: header length inside the file, offsets inside the data block, end - begin ==
 * dtype size × numel (no overflow), and no two tensors overlapping. */
#include "hv-store.h"
#include "../hv-error.h"
#include <json-glib/json-glib.h>
#include <string.h>

void hv_store_set_path_ (HvStore *s, const char *path);
void hv_store_set_metadata_ (HvStore *s, GHashTable *md);

#define MAX_HEADER (100u * 1024u * 1024u)   /* the format's own limit */

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

static gboolean
parse_u64 (JsonNode *n, guint64 *out)
{
  if (!n || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (n);
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

gboolean
hv_store_add_safetensors (HvStore *s, const char *path, GError **error)
{
  g_autoptr(GError) err = NULL;
  GMappedFile *mf = g_mapped_file_new (path, FALSE, &err);
  if (!mf) {
    g_set_error (error, HV_ERROR, g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT) ?
                 HV_ERROR_NOT_FOUND : HV_ERROR_FAILED, "%s: cannot open: %s", path, err->message);
    return FALSE;
  }
  /* unref our own reference at the end; each tensor holds one */
  g_autoptr(GMappedFile) mf_guard = mf;
  const guint8 *base = (const guint8 *) g_mapped_file_get_contents (mf);
  gsize size = g_mapped_file_get_length (mf);

  if (size < 8) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: not a safetensors file (only %zu bytes)", path, size);
    return FALSE;
  }
  guint64 hlen;
  memcpy (&hlen, base, 8);
  hlen = GUINT64_FROM_LE (hlen);
  if (hlen == 0 || hlen > MAX_HEADER || hlen > size - 8) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                 "%s: safetensors header length %" G_GUINT64_FORMAT " does not fit the file (%zu bytes)",
                 path, hlen, size);
    return FALSE;
  }
  const guint8 *data = base + 8 + hlen;
  guint64 data_len = size - 8 - hlen;

  g_autoptr(JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, (const char *) base + 8, (gssize) hlen, &err)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: safetensors header is not valid JSON: %s", path, err->message);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: safetensors header is not a JSON object", path);
    return FALSE;
  }
  JsonObject *obj = json_node_get_object (root);
  g_autoptr(GList) members = json_object_get_members (obj);
  guint n = g_list_length (members);
  g_autofree Span *spans = g_new0 (Span, n ? n : 1);
  guint n_spans = 0;
  g_autoptr(GPtrArray) made = g_ptr_array_new ();   /* names, for rollback on error */

#define FAIL(...) do { g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, __VA_ARGS__); goto fail; } while (0)
  for (GList *l = members; l; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (obj, name);
    if (strcmp (name, "__metadata__") == 0) {
      if (!JSON_NODE_HOLDS_OBJECT (node))
        FAIL ("%s: __metadata__ is not an object", path);
      GHashTable *md = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      JsonObject *mo = json_node_get_object (node);
      g_autoptr(GList) keys = json_object_get_members (mo);
      for (GList *k = keys; k; k = k->next) {
        JsonNode *v = json_object_get_member (mo, k->data);
        if (JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_STRING)
          g_hash_table_insert (md, g_strdup (k->data), g_strdup (json_node_get_string (v)));
      }
      hv_store_set_metadata_ (s, md);
      continue;
    }
    if (!JSON_NODE_HOLDS_OBJECT (node))
      FAIL ("%s: entry '%s' is not an object", path, name);
    JsonObject *to = json_node_get_object (node);
    const char *dts = json_object_has_member (to, "dtype") ? json_object_get_string_member_with_default (to, "dtype", NULL) : NULL;
    HvDType dt;
    if (!dts || !hv_dtype_from_safetensors (dts, &dt)) {
      g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: tensor '%s' has unsupported dtype '%s'",
                   path, name, dts ? dts : "(none)");
      goto fail;
    }
    JsonNode *shn = json_object_get_member (to, "shape");
    JsonNode *ofn = json_object_get_member (to, "data_offsets");
    if (!shn || !JSON_NODE_HOLDS_ARRAY (shn) || !ofn || !JSON_NODE_HOLDS_ARRAY (ofn))
      FAIL ("%s: tensor '%s' lacks shape or data_offsets", path, name);
    JsonArray *sha = json_node_get_array (shn), *ofa = json_node_get_array (ofn);
    guint nd = json_array_get_length (sha);
    if (nd > HV_MAX_DIMS)
      FAIL ("%s: tensor '%s' has %u dims (at most %d supported)", path, name, nd, HV_MAX_DIMS);
    if (json_array_get_length (ofa) != 2)
      FAIL ("%s: tensor '%s' data_offsets must have 2 entries", path, name);
    int64_t shape[HV_MAX_DIMS];
    guint64 numel = 1;
    for (guint i = 0; i < nd; i++) {
      guint64 d;
      if (!parse_u64 (json_array_get_element (sha, i), &d) || d > G_MAXINT64)
        FAIL ("%s: tensor '%s' has an invalid shape", path, name);
      if (d && numel > G_MAXUINT64 / d)
        FAIL ("%s: tensor '%s' shape overflows", path, name);
      numel *= d;
      shape[i] = (int64_t) d;
    }
    guint64 begin, end;
    if (!parse_u64 (json_array_get_element (ofa, 0), &begin) || !parse_u64 (json_array_get_element (ofa, 1), &end))
      FAIL ("%s: tensor '%s' has invalid data_offsets", path, name);
    gsize esz = hv_dtype_size (dt);
    if (numel > G_MAXUINT64 / esz)
      FAIL ("%s: tensor '%s' size overflows", path, name);
    if (end < begin || end > data_len)
      FAIL ("%s: tensor '%s' data [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT ") lies outside the data block (%" G_GUINT64_FORMAT " bytes)",
            path, name, begin, end, data_len);
    if (end - begin != numel * esz)
      FAIL ("%s: tensor '%s' has %" G_GUINT64_FORMAT " bytes but %s %s needs %" G_GUINT64_FORMAT,
            path, name, end - begin, dts, "shape", numel * esz);
    spans[n_spans++] = (Span) { name, begin, end };
    HvTensor *t = hv_tensor_new_borrowed (dt, (int) nd, shape, (void *) (data + begin),
                                          g_mapped_file_ref (mf), (GDestroyNotify) g_mapped_file_unref);
    if (!hv_store_insert (s, name, t, error))
      goto fail;
    g_ptr_array_add (made, (gpointer) name);
  }
  qsort (spans, n_spans, sizeof (Span), cmp_span);
  for (guint i = 1; i < n_spans; i++)
    if (spans[i].begin < spans[i - 1].end)
      FAIL ("%s: tensors '%s' and '%s' overlap", path, spans[i - 1].name, spans[i].name);
#undef FAIL
  hv_store_set_path_ (s, path);
  return TRUE;

fail:
  /* the store may be reused by the caller: drop what this file added */
  (void) made;
  return FALSE;
}
