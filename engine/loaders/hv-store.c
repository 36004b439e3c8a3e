/* hv-store.c — the named tensor set shared by all checkpoint parsers. */
#include "hv-store.h"
#include "../hv-error.h"
#include <string.h>
#include <errno.h>
#include <stdio.h>

struct _HvStore {
  GHashTable *tensors;   /* name -> HvTensor* (owned) */
  char *path;
  const char **sorted;   /* cache for hv_store_names */
  GHashTable *metadata;
  GPtrArray *attached;   /* (data, destroy) pairs */
};

HvStore *
hv_store_new (void)
{
  HvStore *s = g_new0 (HvStore, 1);
  s->tensors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) hv_tensor_free);
  return s;
}

void
hv_store_free (HvStore *s)
{
  if (!s)
    return;
  g_hash_table_unref (s->tensors);
  /* after the tensors: they may be views into what is attached */
  if (s->attached) {
    for (guint i = 0; i + 1 < s->attached->len; i += 2)
      ((GDestroyNotify) s->attached->pdata[i + 1]) (s->attached->pdata[i]);
    g_ptr_array_unref (s->attached);
  }
  if (s->metadata)
    g_hash_table_unref (s->metadata);
  g_free (s->sorted);
  g_free (s->path);
  g_free (s);
}

void hv_store_set_path_ (HvStore *s, const char *path);
void hv_store_set_metadata_ (HvStore *s, GHashTable *md);

void
hv_store_set_path_ (HvStore *s, const char *path)
{
  if (!s->path)
    s->path = g_strdup (path);
}

void
hv_store_set_metadata_ (HvStore *s, GHashTable *md)
{
  if (s->metadata)
    g_hash_table_unref (s->metadata);
  s->metadata = md;
}

gboolean
hv_store_insert (HvStore *s, const char *name, HvTensor *t, GError **error)
{
  if (g_hash_table_contains (s->tensors, name)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "tensor '%s' appears twice", name);
    hv_tensor_free (t);
    return FALSE;
  }
  g_hash_table_insert (s->tensors, g_strdup (name), t);
  g_clear_pointer (&s->sorted, g_free);
  return TRUE;
}

const HvTensor *
hv_store_get (HvStore *s, const char *name)
{
  return g_hash_table_lookup (s->tensors, name);
}

HvTensor *
hv_store_get_mutable (HvStore *s, const char *name)
{
  return g_hash_table_lookup (s->tensors, name);
}

HvTensor *
hv_store_take (HvStore *s, const char *name)
{
  gpointer key = NULL, value = NULL;
  if (!g_hash_table_steal_extended (s->tensors, name, &key, &value))
    return NULL;
  g_free (key);
  g_clear_pointer (&s->sorted, g_free);
  return value;
}

void
hv_store_attach (HvStore *s, gpointer data, GDestroyNotify destroy)
{
  if (!s->attached)
    s->attached = g_ptr_array_new ();
  g_ptr_array_add (s->attached, data);
  g_ptr_array_add (s->attached, (gpointer) destroy);
}

guint64
hv_store_n_params (HvStore *s)
{
  GHashTableIter it;
  gpointer v;
  guint64 n = 0;
  g_hash_table_iter_init (&it, s->tensors);
  while (g_hash_table_iter_next (&it, NULL, &v))
    n += (guint64) hv_tensor_numel (v);
  return n;
}

gboolean
hv_store_is_metadata_only (HvStore *s)
{
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init (&it, s->tensors);
  while (g_hash_table_iter_next (&it, NULL, &v))
    if (((HvTensor *) v)->data)
      return FALSE;
  return g_hash_table_size (s->tensors) > 0;
}

const HvTensor *
hv_store_require (HvStore *s, const char *name, int ndim, const int64_t *shape, GError **error)
{
  const HvTensor *t = hv_store_get (s, name);
  char want[128], got[128];
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: tensor '%s' is missing",
                 s->path ? s->path : "weights", name);
    return NULL;
  }
  gboolean ok = t->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++)
    ok = shape[i] < 0 || shape[i] == t->shape[i];
  if (!ok) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: tensor '%s' has shape %s, expected %s",
                 s->path ? s->path : "weights", name, hv_tensor_shape_str (t, got, sizeof got),
                 hv_shape_str (ndim, shape, want, sizeof want));
    return NULL;
  }
  return t;
}

guint
hv_store_n_tensors (HvStore *s)
{
  return g_hash_table_size (s->tensors);
}

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

const char **
hv_store_names (HvStore *s)
{
  if (!s->sorted) {
    guint n = 0;
    s->sorted = (const char **) g_hash_table_get_keys_as_array (s->tensors, &n);
    qsort (s->sorted, n, sizeof (char *), cmp_str);
  }
  return s->sorted;
}

const char *
hv_store_path (HvStore *s)
{
  return s->path;
}

GHashTable *
hv_store_metadata (HvStore *s)
{
  return s->metadata;
}

/* Adds one file by its content (magic), not its name: zip → torch checkpoint, a bare pickle →
 * the legacy torch format (refused with advice), else safetensors. */
gboolean hv_store_add_file_ (HvStore *s, const char *path, GError **error);

gboolean
hv_store_add_file_ (HvStore *s, const char *path, GError **error)
{
  guint8 magic[8] = { 0 };
  FILE *f = fopen (path, "rb");
  if (!f) {
    g_set_error (error, HV_ERROR, errno == ENOENT ? HV_ERROR_NOT_FOUND : HV_ERROR_FAILED, "%s: cannot open: %s",
                 path, g_strerror (errno));
    return FALSE;
  }
  size_t got = fread (magic, 1, sizeof magic, f);
  fclose (f);
  if (got >= 4 && magic[0] == 'P' && magic[1] == 'K')
    return hv_store_add_pt (s, path, error);
  if (got >= 2 && magic[0] == 0x80 && magic[1] <= 5) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED,
                 "%s: legacy (pre-1.6) torch.save format; re-save it with a recent torch or convert it to safetensors",
                 path);
    return FALSE;
  }
  return hv_store_add_safetensors (s, path, error);
}

HvStore *
hv_store_open (const char *path, GError **error)
{
  g_autoptr(HvStore) s = hv_store_new ();
  hv_store_set_path_ (s, path);
  gboolean ok = g_str_has_suffix (path, ".index.json") ? hv_store_add_index (s, path, error)
                                                        : hv_store_add_file_ (s, path, error);
  return ok ? g_steal_pointer (&s) : NULL;
}
