/* hv-shards.c — sharded checkpoints: NAME.safetensors.index.json (diffusers, transformers)
 * and pytorch_model.bin.index.json, {"metadata": {...}, "weight_map": {tensor: shard file}}.
 * Every shard named in the map is added once (files in the index's folder); afterwards every
 * tensor the map names must be present. */
#include "hv-blob.h"
#include "../hv-error.h"
#include <string.h>

#define MAX_INDEX (64u * 1024u * 1024u)

gboolean hv_store_add_file_ (HvStore *s, const char *path, GError **error);

gboolean
hv_store_add_index (HvStore *s, const char *path, GError **error)
{
  g_autoptr(JsonParser) parser = hv_json_load (path, MAX_INDEX, error);
  if (!parser)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  JsonNode *wm = JSON_NODE_HOLDS_OBJECT (root) ? json_object_get_member (json_node_get_object (root), "weight_map") : NULL;
  if (!wm || !JSON_NODE_HOLDS_OBJECT (wm)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: shard index has no \"weight_map\" object", path);
    return FALSE;
  }
  JsonObject *map = json_node_get_object (wm);
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr(GList) names = json_object_get_members (map);
  g_autoptr(GHashTable) done = g_hash_table_new (g_str_hash, g_str_equal);
  if (!names) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: shard index lists no tensors", path);
    return FALSE;
  }
  for (GList *l = names; l; l = l->next) {
    const char *file = hv_json_string (json_object_get_member (map, l->data));
    if (!file || !*file) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: shard of tensor '%s' is not a file name", path,
                   (const char *) l->data);
      return FALSE;
    }
    /* shards live beside the index: no folders, no way out of it */
    if (strchr (file, '/') || strchr (file, '\\') || strcmp (file, "..") == 0 || strcmp (file, ".") == 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: shard name '%s' is not a plain file name", path, file);
      return FALSE;
    }
    if (g_hash_table_contains (done, file))
      continue;
    g_hash_table_add (done, (gpointer) file);
    g_autofree char *shard = g_build_filename (dir, file, NULL);
    if (!g_file_test (shard, G_FILE_TEST_EXISTS)) {
      g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: shard '%s' (holding '%s') is missing", path, shard,
                   (const char *) l->data);
      return FALSE;
    }
    if (!hv_store_add_file_ (s, shard, error))
      return FALSE;
  }
  for (GList *l = names; l; l = l->next)
    if (!hv_store_get (s, l->data)) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: tensor '%s' is not in its shard '%s'", path,
                   (const char *) l->data, hv_json_string (json_object_get_member (map, l->data)));
      return FALSE;
    }
  return TRUE;
}
