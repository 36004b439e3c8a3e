/* hv-manifest.c — metadata-only stores from manifest JSON files (names and shapes of a full
 * model without its weights), so the full-size name/shape set can be checked anywhere. */
#include "hv-blob.h"
#include "../hv-error.h"
#include <string.h>

#define MAX_MANIFEST (256u * 1024u * 1024u)

static gboolean
add_meta (HvStore *s, const char *path, const char *name, JsonNode *shape_node, HvDType dt, GError **error)
{
  int64_t shape[HV_MAX_DIMS];
  if (!name || !shape_node || !JSON_NODE_HOLDS_ARRAY (shape_node)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: entry '%s' has no name or shape", path, name ? name : "?");
    return FALSE;
  }
  JsonArray *a = json_node_get_array (shape_node);
  guint nd = json_array_get_length (a);
  if (nd > HV_MAX_DIMS) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: '%s' has %u dims", path, name, nd);
    return FALSE;
  }
  for (guint i = 0; i < nd; i++) {
    guint64 d;
    if (!hv_json_uint (json_array_get_element (a, i), &d) || d > (1ull << 40)) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: '%s' has an invalid shape", path, name);
      return FALSE;
    }
    shape[i] = (int64_t) d;
  }
  if (hv_store_get (s, name)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: '%s' is listed twice", path, name);
    return FALSE;
  }
  return hv_store_insert (s, name, hv_tensor_new_borrowed (dt, (int) nd, shape, NULL, NULL, NULL), error);
}

static HvDType
dtype_of (JsonObject *e)
{
  const char *d = hv_json_string (json_object_get_member (e, "dtype_as_constructed"));
  if (!d)
    d = hv_json_string (json_object_get_member (e, "dtype"));
  if (g_strcmp0 (d, "float32") == 0 || g_strcmp0 (d, "F32") == 0)
    return HV_DTYPE_F32;
  if (g_strcmp0 (d, "float16") == 0 || g_strcmp0 (d, "F16") == 0)
    return HV_DTYPE_F16;
  return HV_DTYPE_BF16;
}

gboolean
hv_store_add_manifest (HvStore *s, const char *path, gboolean diffusers, GError **error)
{
  g_autoptr(JsonParser) parser = hv_json_load (path, MAX_MANIFEST, error);
  if (!parser)
    return FALSE;
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *o = JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *keys = o ? json_object_get_member (o, "keys") : NULL;
  if (!keys && o)
    keys = json_object_get_member (o, "state_dict");
  if (keys && JSON_NODE_HOLDS_OBJECT (keys)) {           /* {name: shape} */
    JsonObject *ko = json_node_get_object (keys);
    g_autoptr(GList) names = json_object_get_members (ko);
    for (GList *l = names; l; l = l->next)
      if (!add_meta (s, path, l->data, json_object_get_member (ko, l->data), HV_DTYPE_BF16, error))
        return FALSE;
  } else if (keys && JSON_NODE_HOLDS_ARRAY (keys)) {     /* [{official, shape, diffusers: [...]}] */
    JsonArray *ka = json_node_get_array (keys);
    for (guint i = 0; i < json_array_get_length (ka); i++) {
      JsonNode *en = json_array_get_element (ka, i);
      if (!JSON_NODE_HOLDS_OBJECT (en)) {
        g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: keys[%u] is not an object", path, i);
        return FALSE;
      }
      JsonObject *e = json_node_get_object (en);
      HvDType dt = dtype_of (e);
      if (!diffusers) {
        if (!add_meta (s, path, hv_json_string (json_object_get_member (e, "official")),
                       json_object_get_member (e, "shape"), dt, error))
          return FALSE;
        continue;
      }
      JsonNode *dn = json_object_get_member (e, "diffusers");
      if (!dn || !JSON_NODE_HOLDS_ARRAY (dn)) {
        g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: keys[%u] has no diffusers list", path, i);
        return FALSE;
      }
      JsonArray *da = json_node_get_array (dn);
      for (guint k = 0; k < json_array_get_length (da); k++) {
        JsonNode *pn = json_array_get_element (da, k);
        JsonObject *po = JSON_NODE_HOLDS_OBJECT (pn) ? json_node_get_object (pn) : NULL;
        if (!po || !add_meta (s, path, hv_json_string (json_object_get_member (po, "key")),
                              json_object_get_member (po, "shape"), dt, error)) {
          if (!po)
            g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: keys[%u].diffusers[%u] is not an object", path, i, k);
          return FALSE;
        }
      }
    }
  } else {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: not a manifest (no \"keys\" or \"state_dict\")", path);
    return FALSE;
  }
  hv_store_set_path_ (s, path);
  return TRUE;
}
