/* hv-test-build.h — builders for checkpoint files in memory, shared by the loader unit tests
 * and the fuzz harnesses: a pickle opcode emitter, a ZIP writer (stored entries, optionally
 * zip64 records) and torch.save-like archives, and a safetensors writer. Header-only; every
 * function is static. Nothing here validates: tests use it to make broken files on purpose. */
#pragma once
#include <glib.h>
#include <string.h>

/* ---- pickle ---------------------------------------------------------------------------------- */

static inline void
pk_byte (GByteArray *b, guint8 v)
{
  g_byte_array_append (b, &v, 1);
}

static inline void
pk_le (GByteArray *b, guint64 v, guint n)
{
  for (guint i = 0; i < n; i++)
    pk_byte (b, (guint8) (v >> (8 * i)));
}

static inline void
pk_str (GByteArray *b, const char *s)
{
  pk_byte (b, 'X');
  pk_le (b, strlen (s), 4);
  g_byte_array_append (b, (const guint8 *) s, (guint) strlen (s));
}

static inline void
pk_int (GByteArray *b, gint64 v)
{
  if (v >= 0 && v < 256) {
    pk_byte (b, 'K');
    pk_byte (b, (guint8) v);
  } else if (v >= G_MININT32 && v <= G_MAXINT32) {
    pk_byte (b, 'J');
    pk_le (b, (guint64) (guint32) (gint32) v, 4);
  } else {
    pk_byte (b, 0x8a);
    pk_byte (b, 8);
    pk_le (b, (guint64) v, 8);
  }
}

static inline void
pk_global (GByteArray *b, const char *module, const char *name)
{
  pk_byte (b, 'c');
  g_byte_array_append (b, (const guint8 *) module, (guint) strlen (module));
  pk_byte (b, '\n');
  g_byte_array_append (b, (const guint8 *) name, (guint) strlen (name));
  pk_byte (b, '\n');
}

static inline void
pk_int_tuple (GByteArray *b, int n, const gint64 *v)
{
  pk_byte (b, '(');
  for (int i = 0; i < n; i++)
    pk_int (b, v[i]);
  pk_byte (b, 't');
}

/* torch._utils._rebuild_tensor_v2(persid(('storage', torch.<storage_type>, key, 'cpu', numel)),
 * offset, shape, stride, False, OrderedDict()) — what torch.save writes for a tensor. */
static inline void
pk_tensor_v2 (GByteArray *b, const char *storage_type, const char *key, gint64 numel, gint64 offset,
              int ndim, const gint64 *shape, const gint64 *stride)
{
  pk_global (b, "torch._utils", "_rebuild_tensor_v2");
  pk_byte (b, '(');
  pk_byte (b, '(');
  pk_str (b, "storage");
  pk_global (b, "torch", storage_type);
  pk_str (b, key);
  pk_str (b, "cpu");
  pk_int (b, numel);
  pk_byte (b, 't');
  pk_byte (b, 'Q');
  pk_int (b, offset);
  pk_int_tuple (b, ndim, shape);
  pk_int_tuple (b, ndim, stride);
  pk_byte (b, 0x89);
  pk_global (b, "collections", "OrderedDict");
  pk_byte (b, ')');
  pk_byte (b, 'R');
  pk_byte (b, 't');
  pk_byte (b, 'R');
}

/* ---- zip ------------------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  const guint8 *data;
  gsize len;
  guint16 method;     /* 0 stored; anything else is only claimed */
  guint16 flags;
} TbEntry;

static inline GBytes *
tb_zip (const TbEntry *e, guint n, gboolean zip64)
{
  GByteArray *b = g_byte_array_new ();
  g_autofree guint64 *offs = g_new0 (guint64, n ? n : 1);
  for (guint i = 0; i < n; i++) {
    offs[i] = b->len;
    guint nl = (guint) strlen (e[i].name);
    pk_le (b, 0x04034b50, 4);
    pk_le (b, 45, 2);
    pk_le (b, e[i].flags, 2);
    pk_le (b, e[i].method, 2);
    pk_le (b, 0, 4);             /* time, date */
    pk_le (b, 0, 4);             /* crc (not checked) */
    pk_le (b, e[i].len, 4);
    pk_le (b, e[i].len, 4);
    pk_le (b, nl, 2);
    pk_le (b, 0, 2);
    g_byte_array_append (b, (const guint8 *) e[i].name, nl);
    g_byte_array_append (b, e[i].data, (guint) e[i].len);
  }
  guint64 cd = b->len;
  for (guint i = 0; i < n; i++) {
    guint nl = (guint) strlen (e[i].name);
    pk_le (b, 0x02014b50, 4);
    pk_le (b, 45, 2);
    pk_le (b, 45, 2);
    pk_le (b, e[i].flags, 2);
    pk_le (b, e[i].method, 2);
    pk_le (b, 0, 4);
    pk_le (b, 0, 4);
    pk_le (b, zip64 ? 0xFFFFFFFFu : e[i].len, 4);
    pk_le (b, zip64 ? 0xFFFFFFFFu : e[i].len, 4);
    pk_le (b, nl, 2);
    pk_le (b, zip64 ? 28 : 0, 2);   /* extra */
    pk_le (b, 0, 2);                /* comment */
    pk_le (b, 0, 2);                /* disk */
    pk_le (b, 0, 2);
    pk_le (b, 0, 4);
    pk_le (b, zip64 ? 0xFFFFFFFFu : offs[i], 4);
    g_byte_array_append (b, (const guint8 *) e[i].name, nl);
    if (zip64) {
      pk_le (b, 1, 2);
      pk_le (b, 24, 2);
      pk_le (b, e[i].len, 8);
      pk_le (b, e[i].len, 8);
      pk_le (b, offs[i], 8);
    }
  }
  guint64 cd_size = b->len - cd;
  if (zip64) {
    guint64 rec = b->len;
    pk_le (b, 0x06064b50, 4);
    pk_le (b, 44, 8);
    pk_le (b, 45, 2);
    pk_le (b, 45, 2);
    pk_le (b, 0, 4);
    pk_le (b, 0, 4);
    pk_le (b, n, 8);
    pk_le (b, n, 8);
    pk_le (b, cd_size, 8);
    pk_le (b, cd, 8);
    pk_le (b, 0x07064b50, 4);
    pk_le (b, 0, 4);
    pk_le (b, rec, 8);
    pk_le (b, 1, 4);
  }
  pk_le (b, 0x06054b50, 4);
  pk_le (b, 0, 2);
  pk_le (b, 0, 2);
  pk_le (b, zip64 ? 0xFFFF : n, 2);
  pk_le (b, zip64 ? 0xFFFF : n, 2);
  pk_le (b, zip64 ? 0xFFFFFFFFu : cd_size, 4);
  pk_le (b, zip64 ? 0xFFFFFFFFu : cd, 4);
  pk_le (b, 0, 2);
  return g_byte_array_free_to_bytes (b);
}

/* A torch.save-like archive: archive/data.pkl, archive/byteorder, archive/data/<i> for each
 * storage (n_storages of `storage_len` bytes holding 0, 1, 2, ...). */
static inline GBytes *
tb_torch_zip (GBytes *pickle, guint n_storages, gsize storage_len, guint16 pkl_method, gboolean zip64)
{
  g_autofree guint8 *st = g_malloc (storage_len ? storage_len : 1);
  for (gsize i = 0; i < storage_len; i++)
    st[i] = (guint8) i;
  TbEntry e[2 + 16];
  g_autofree char **names = g_new0 (char *, n_storages + 1);
  gsize plen;
  const guint8 *p = g_bytes_get_data (pickle, &plen);
  guint n = 0;
  e[n++] = (TbEntry) { "archive/data.pkl", p, plen, pkl_method, 0 };
  e[n++] = (TbEntry) { "archive/byteorder", (const guint8 *) "little", 6, 0, 0 };
  for (guint i = 0; i < n_storages && i < 16; i++) {
    names[i] = g_strdup_printf ("archive/data/%u", i);
    e[n++] = (TbEntry) { names[i], st, storage_len, 0, 0 };
  }
  GBytes *z = tb_zip (e, n, zip64);
  for (guint i = 0; i < n_storages; i++)
    g_free (names[i]);
  return z;
}

/* ---- safetensors ------------------------------------------------------------------------------ */

/* u64 header length (as given, or the real one when hlen_override < 0), the header text, data. */
static inline GBytes *
tb_safetensors (const char *header, gint64 hlen_override, const void *data, gsize len)
{
  GByteArray *b = g_byte_array_new ();
  gsize hl = strlen (header);
  pk_le (b, hlen_override >= 0 ? (guint64) hlen_override : hl, 8);
  g_byte_array_append (b, (const guint8 *) header, (guint) hl);
  if (len)
    g_byte_array_append (b, data, (guint) len);
  return g_byte_array_free_to_bytes (b);
}
