/* hv-pt.c — PyTorch checkpoints written by torch.save (zip format, torch >= 1.6).
 *
 * The archive holds <prefix>/data.pkl (the pickled object), <prefix>/data/<key> (raw storages,
 * stored uncompressed) and <prefix>/byteorder. data.pkl runs through the restricted unpickler
 * (hv-pickle.c); each recorded _rebuild_tensor* call becomes a tensor borrowing its storage's
 * bytes in the mapping. Which dict is the state dict: a dict whose values are tensors; when the
 * top level holds none, "module" (the official DiT checkpoint), then "state_dict", "model",
 * "ema", then any other dict value, up to a few levels deep. */
#include "hv-zip.h"
#include "hv-pickle.h"
#include "../hv-error.h"
#include <string.h>

#define MAX_PICKLE  (512u * 1024u * 1024u)
#define MAX_DEPTH   4

typedef struct {
  HvStore *s;
  const HvBlob *b;
  HvZip zip;
  char *prefix;        /* "archive/" */
} Pt;

static gboolean
is_tensor (const HvPv *v)
{
  return v && v->kind == PV_CALL;
}

static guint
count_tensors (HvPv *d)
{
  guint n = 0;
  for (guint i = 1; i < d->items->len; i += 2)
    n += is_tensor (d->items->pdata[i]);
  return n;
}

/* `seen` guards against dicts reached many times through the memo (or cycles). */
static HvPv *
pick_state_dict (HvPv *d, int depth, GHashTable *seen)
{
  static const char *const prefer[] = { "module", "state_dict", "model", "ema" };
  if (!d || d->kind != PV_DICT || depth > MAX_DEPTH || !g_hash_table_add (seen, d))
    return NULL;
  if (count_tensors (d) > 0)
    return d;
  for (guint i = 0; i < G_N_ELEMENTS (prefer); i++) {
    HvPv *r = pick_state_dict (hv_pv_dict_get (d, prefer[i]), depth + 1, seen);
    if (r)
      return r;
  }
  for (guint i = 1; i < d->items->len; i += 2) {
    HvPv *r = pick_state_dict (d->items->pdata[i], depth + 1, seen);
    if (r)
      return r;
  }
  return NULL;
}

static gboolean
int_tuple (const HvPv *v, int max, int *n, int64_t *out)
{
  if (!v || (v->kind != PV_TUPLE && v->kind != PV_LIST) || v->items->len > (guint) max)
    return FALSE;
  for (guint i = 0; i < v->items->len; i++) {
    const HvPv *e = v->items->pdata[i];
    if (e->kind != PV_INT)
      return FALSE;
    out[i] = e->i;
  }
  *n = (int) v->items->len;
  return TRUE;
}

/* One recorded rebuild call → a tensor in the store. */
static gboolean
add_tensor (Pt *pt, const char *name, HvPv *call, GError **error)
{
  const char *label = pt->b->label;
#define FAIL(code, ...) do { g_set_error (error, HV_ERROR, code, __VA_ARGS__); return FALSE; } while (0)
  if (call->glob == HV_G_REBUILD_PARAMETER || call->glob == HV_G_REBUILD_PARAMETER_STATE) {
    if (call->items->len < 1 || !is_tensor (call->items->pdata[0]) ||
        ((HvPv *) call->items->pdata[0])->glob == HV_G_REBUILD_PARAMETER ||
        ((HvPv *) call->items->pdata[0])->glob == HV_G_REBUILD_PARAMETER_STATE)
      FAIL (HV_ERROR_CORRUPT, "%s: parameter '%s' does not wrap a tensor", label, name);
    call = call->items->pdata[0];
  }
  guint need = call->glob == HV_G_REBUILD_TENSOR_V3 ? 7 : 4;
  if (call->items->len < need)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' is rebuilt with %u arguments, expected at least %u",
          label, name, call->items->len, need);
  HvPv **a = (HvPv **) call->items->pdata;
  HvPv *st = a[0];
  if (st->kind != PV_PERSID || st->items->len != 5)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has no storage reference", label, name);
  HvPv **pid = (HvPv **) st->items->pdata;
  if (pid[0]->kind != PV_STR || strcmp (pid[0]->s, "storage") != 0 || pid[1]->kind != PV_GLOBAL ||
      pid[2]->kind != PV_STR || pid[4]->kind != PV_INT || pid[4]->i < 0)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has a malformed storage reference", label, name);
  /* dtype: from the typed storage class, or (v3) the dtype argument */
  HvDType dt = HV_DTYPE_F32;
  gboolean untyped = pid[1]->glob == HV_G_UNTYPED_STORAGE;
  if (pid[1]->glob == HV_G_TYPED_STORAGE)
    dt = pid[1]->dtype;
  else if (!untyped)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s': '%s' is not a storage type", label, name, pid[1]->s);
  if (call->glob == HV_G_REBUILD_TENSOR_V3) {
    if (a[6]->kind != PV_GLOBAL || a[6]->glob != HV_G_DTYPE)
      FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has no dtype", label, name);
    if (!untyped && a[6]->dtype != dt)
      FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' storage and dtype disagree", label, name);
    dt = a[6]->dtype;
  } else if (untyped) {
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' uses an untyped storage without a dtype", label, name);
  }
  gsize esz = hv_dtype_size (dt);
  /* the storage's bytes */
  g_autofree char *entry_name = g_strconcat (pt->prefix, "data/", pid[2]->s, NULL);
  const HvZipEntry *e = hv_zip_find (&pt->zip, entry_name);
  if (!e)
    FAIL (HV_ERROR_CORRUPT, "%s: storage '%s' of tensor '%s' is missing from the archive", label, entry_name, name);
  guint64 data_off;
  if (!hv_zip_data (&pt->zip, e, &data_off, error))
    return FALSE;
  guint64 st_numel = (guint64) pid[4]->i;       /* elements; bytes for untyped storages */
  guint64 st_bytes = untyped ? st_numel : st_numel * esz;
  if (!untyped && st_numel > G_MAXUINT64 / esz)
    FAIL (HV_ERROR_CORRUPT, "%s: storage of tensor '%s' is impossibly large", label, name);
  if (e->size < st_bytes)
    FAIL (HV_ERROR_CORRUPT, "%s: storage '%s' of tensor '%s' has %" G_GUINT64_FORMAT " bytes, needs %"
          G_GUINT64_FORMAT " (truncated?)", label, entry_name, name, e->size, st_bytes);
  /* view: offset, size, stride (contiguous only) */
  int64_t shape[HV_MAX_DIMS], stride[HV_MAX_DIMS];
  int nd, nd2;
  if (a[1]->kind != PV_INT || a[1]->i < 0)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has an invalid storage offset", label, name);
  if (!int_tuple (a[2], HV_MAX_DIMS, &nd, shape) || !int_tuple (a[3], HV_MAX_DIMS, &nd2, stride) || nd != nd2)
    FAIL (HV_ERROR_UNSUPPORTED, "%s: tensor '%s' has an invalid shape or stride, or more than %d dims",
          label, name, HV_MAX_DIMS);
  guint64 numel = 1;
  for (int i = 0; i < nd; i++) {
    if (shape[i] < 0 || (shape[i] && numel > (guint64) G_MAXINT64 / (guint64) shape[i]))
      FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' has an invalid shape", label, name);
    numel *= (guint64) shape[i];
  }
  int64_t want = 1;
  for (int i = nd - 1; i >= 0 && numel; i--) {
    if (shape[i] != 1 && stride[i] != want)
      FAIL (HV_ERROR_UNSUPPORTED, "%s: tensor '%s' is not contiguous (a strided view was saved); "
            "save tensor.contiguous() or convert to safetensors", label, name);
    want *= shape[i];
  }
  guint64 off = (guint64) a[1]->i;
  guint64 st_elems = st_bytes / esz;
  if (off > st_elems || numel > st_elems - off)
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' (%" G_GUINT64_FORMAT " elements at %" G_GUINT64_FORMAT
          ") runs past its storage (%" G_GUINT64_FORMAT " elements)", label, name, numel, off, st_elems);
  if (hv_store_get (pt->s, name))
    FAIL (HV_ERROR_CORRUPT, "%s: tensor '%s' appears twice", label, name);
#undef FAIL
  HvTensor *t = hv_blob_tensor (pt->b, dt, nd, shape, data_off + off * esz);
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "%s: out of memory for tensor '%s'", label, name);
    return FALSE;
  }
  return hv_store_insert (pt->s, name, t, error);
}

static gboolean
find_prefix (Pt *pt, GError **error)
{
  for (guint i = 0; i < pt->zip.n_entries; i++) {
    const char *n = pt->zip.entries[i].name;
    const char *slash = strchr (n, '/');
    if (slash && strcmp (slash + 1, "data.pkl") == 0) {
      if (pt->prefix) {
        g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: archive holds more than one data.pkl", pt->b->label);
        return FALSE;
      }
      pt->prefix = g_strndup (n, (gsize) (slash - n) + 1);
    }
  }
  if (!pt->prefix) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: zip archive without data.pkl, not a torch.save checkpoint",
                 pt->b->label);
    return FALSE;
  }
  g_autofree char *bo = g_strconcat (pt->prefix, "byteorder", NULL);
  const HvZipEntry *e = hv_zip_find (&pt->zip, bo);
  guint64 off;
  if (e) {
    if (!hv_zip_data (&pt->zip, e, &off, error))
      return FALSE;
    if (!(e->size == 6 && memcmp (pt->b->data + off, "little", 6) == 0)) {
      g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: checkpoint was saved big-endian", pt->b->label);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean
parse_archive (Pt *pt, GError **error)
{
  const HvBlob *b = pt->b;
  if (!hv_zip_open (&pt->zip, b, error) || !find_prefix (pt, error))
    return FALSE;
  g_autofree char *pkl_name = g_strconcat (pt->prefix, "data.pkl", NULL);
  const HvZipEntry *e = hv_zip_find (&pt->zip, pkl_name);
  guint64 off;
  if (!hv_zip_data (&pt->zip, e, &off, error))
    return FALSE;
  if (e->size > MAX_PICKLE) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: data.pkl of %" G_GUINT64_FORMAT " bytes is too large",
                 b->label, e->size);
    return FALSE;
  }
  g_autofree char *what = g_strdup_printf ("%s (%s)", b->label, pkl_name);
  g_autoptr(HvPickle) pk = hv_pickle_run (what, b->data + off, (gsize) e->size, error);
  if (!pk)
    return FALSE;
  g_autoptr(GHashTable) seen = g_hash_table_new (g_direct_hash, g_direct_equal);
  HvPv *sd = pick_state_dict (hv_pickle_result (pk), 0, seen);
  if (!sd) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: no state dict (a dict of tensors) in this checkpoint",
                 b->label);
    return FALSE;
  }
  for (guint i = 0; i + 1 < sd->items->len; i += 2) {
    HvPv *k = sd->items->pdata[i], *v = sd->items->pdata[i + 1];
    if (!is_tensor (v))
      continue;   /* e.g. a module's _extra_state: not a weight */
    if (k->kind != PV_STR) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: a tensor has a non-string name", b->label);
      return FALSE;
    }
    if (!add_tensor (pt, k->s, v, error))
      return FALSE;
  }
  hv_store_set_path_ (pt->s, b->label);
  return TRUE;
}

static gboolean
parse_blob (HvStore *s, const HvBlob *b, GError **error)
{
  Pt pt = { s, b };
  gboolean ok = parse_archive (&pt, error);
  hv_zip_clear (&pt.zip);
  g_free (pt.prefix);
  return ok;
}

gboolean
hv_store_add_pt (HvStore *s, const char *path, GError **error)
{
  return hv_blob_parse_file (s, path, parse_blob, error);
}

gboolean
hv_store_add_pt_bytes (HvStore *s, const char *label, GBytes *bytes, GError **error)
{
  return hv_blob_parse_bytes (s, label, bytes, parse_blob, error);
}
