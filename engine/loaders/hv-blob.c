/* hv-blob.c — bytes for the parsers (mapped file or memory) and small JSON helpers. */
#include "hv-blob.h"
#include "../hv-error.h"
#include <string.h>

gboolean
hv_blob_map (HvBlob *b, const char *path, GError **error)
{
  g_autoptr(GError) err = NULL;
  memset (b, 0, sizeof *b);
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%s: is a folder, expected a weights file", path);
    return FALSE;
  }
  GMappedFile *mf = g_mapped_file_new (path, FALSE, &err);
  if (!mf) {
    g_set_error (error, HV_ERROR,
                 g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? HV_ERROR_NOT_FOUND : HV_ERROR_FAILED,
                 "%s: cannot open: %s", path, err->message);
    return FALSE;
  }
  b->label = g_strdup (path);
  b->data = (const guint8 *) g_mapped_file_get_contents (mf);
  b->size = g_mapped_file_get_length (mf);
  b->owner = mf;
  b->ref = (gpointer (*) (gpointer)) g_mapped_file_ref;
  b->unref = (GDestroyNotify) g_mapped_file_unref;
  return TRUE;
}

void
hv_blob_from_bytes (HvBlob *b, const char *label, GBytes *bytes)
{
  gsize n = 0;
  memset (b, 0, sizeof *b);
  b->label = g_strdup (label);
  b->data = g_bytes_get_data (bytes, &n);
  b->size = n;
  b->owner = g_bytes_ref (bytes);
  b->ref = (gpointer (*) (gpointer)) g_bytes_ref;
  b->unref = (GDestroyNotify) g_bytes_unref;
}

void
hv_blob_clear (HvBlob *b)
{
  if (b->owner)
    b->unref (b->owner);
  g_free (b->label);
  memset (b, 0, sizeof *b);
}

gboolean
hv_blob_parse_file (HvStore *s, const char *path, HvBlobParseFunc parse, GError **error)
{
  HvBlob b;
  if (!hv_blob_map (&b, path, error))
    return FALSE;
  gboolean ok = parse (s, &b, error);
  hv_blob_clear (&b);   /* tensors keep their own references */
  return ok;
}

gboolean
hv_blob_parse_bytes (HvStore *s, const char *label, GBytes *bytes, HvBlobParseFunc parse,
                     GError **error)
{
  HvBlob b;
  hv_blob_from_bytes (&b, label, bytes);
  gboolean ok = parse (s, &b, error);
  hv_blob_clear (&b);
  return ok;
}

HvTensor *
hv_blob_tensor (const HvBlob *b, HvDType dt, int ndim, const int64_t *shape, guint64 offset)
{
  const guint8 *p = b->data + offset;
  /* Writers align tensor data (safetensors pads its header to 8 bytes, torch aligns storages
   * to 64); a file that does not gets an aligned copy, so element loads are never misaligned. */
  if ((guintptr) p % hv_dtype_size (dt)) {
    HvTensor *c = hv_tensor_new (dt, ndim, shape);
    if (c)
      memcpy (c->data, p, hv_tensor_nbytes (c));
    return c;
  }
  HvTensor *t = hv_tensor_new_borrowed (dt, ndim, shape, (void *) p, NULL, NULL);
  if (t) {
    t->free_data = b->ref (b->owner);
    t->free_func = b->unref;
  }
  return t;
}

gboolean
hv_json_depth_ok (const char *data, gsize len, int max_depth)
{
  int depth = 0;
  gboolean in_str = FALSE;
  for (gsize i = 0; i < len; i++) {
    char c = data[i];
    if (in_str) {
      if (c == '\\')
        i++;                      /* skip the escaped character */
      else if (c == '"')
        in_str = FALSE;
    } else if (c == '"') {
      in_str = TRUE;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return FALSE;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return TRUE;
}

JsonParser *
hv_json_parse (const char *label, const char *data, gsize len, int max_depth, GError **error)
{
  g_autoptr(GError) err = NULL;
  if (len > G_MAXSSIZE) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: JSON too large", label);
    return NULL;
  }
  if (!hv_json_depth_ok (data, len, max_depth)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: JSON nested deeper than %d levels", label, max_depth);
    return NULL;
  }
  /* json-glib wants valid UTF-8 and stops at NUL; both are errors here */
  if (memchr (data, 0, len) || !g_utf8_validate (data, (gssize) len, NULL)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: JSON is not valid UTF-8 text", label);
    return NULL;
  }
  JsonParser *p = json_parser_new_immutable ();
  if (!json_parser_load_from_data (p, data, (gssize) len, &err)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: invalid JSON: %s", label, err->message);
    g_object_unref (p);
    return NULL;
  }
  if (!json_parser_get_root (p)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: empty JSON", label);
    g_object_unref (p);
    return NULL;
  }
  return p;
}

JsonParser *
hv_json_load (const char *path, gsize max_size, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  g_autoptr(GError) err = NULL;
  if (!g_file_get_contents (path, &text, &len, &err)) {
    g_set_error (error, HV_ERROR,
                 g_error_matches (err, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? HV_ERROR_NOT_FOUND : HV_ERROR_FAILED,
                 "%s: cannot read: %s", path, err->message);
    return NULL;
  }
  if (len > max_size) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: %zu bytes is too large for a JSON file", path, len);
    return NULL;
  }
  return hv_json_parse (path, text, len, 64, error);
}

const char *
hv_json_string (JsonNode *n)
{
  if (!n || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

gboolean
hv_json_uint (JsonNode *n, guint64 *out)
{
  if (!n || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (n);
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}
