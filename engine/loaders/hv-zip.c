/* hv-zip.c — see hv-zip.h. Record layouts from PKWARE's APPNOTE (sections 4.3.x). */
#include "hv-zip.h"
#include "../hv-error.h"
#include <string.h>

#define SIG_LOCAL   0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD    0x06054b50u
#define SIG_EOCD64  0x06064b50u
#define SIG_LOC64   0x07064b50u
#define MAX_ENTRIES (1u << 22)     /* far beyond any checkpoint; bounds the table */

static guint16
rd16 (const guint8 *p)
{
  return (guint16) (p[0] | p[1] << 8);
}

static guint32
rd32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

static guint64
rd64 (const guint8 *p)
{
  return (guint64) rd32 (p) | (guint64) rd32 (p + 4) << 32;
}

#define CORRUPT(...) do { g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, __VA_ARGS__); return FALSE; } while (0)

/* Fills in the 0xFFFF.. fields of a central entry from its zip64 extra field. */
static gboolean
apply_zip64 (const char *label, HvZipEntry *e, const guint8 *extra, guint len, gboolean need_size,
             gboolean need_comp, gboolean need_off, GError **error)
{
  guint i = 0;
  while (i + 4 <= len) {
    guint16 id = rd16 (extra + i), sz = rd16 (extra + i + 2);
    if (i + 4u + sz > len)
      break;
    if (id == 0x0001) {
      const guint8 *p = extra + i + 4;
      guint left = sz;
#define TAKE(field) do { if (left < 8) CORRUPT ("%s: zip64 field of '%s' is too short", label, e->name); \
                         field = rd64 (p); p += 8; left -= 8; } while (0)
      if (need_size) TAKE (e->size);
      if (need_comp) TAKE (e->comp_size);
      if (need_off) TAKE (e->local_off);
#undef TAKE
      return TRUE;
    }
    i += 4u + sz;
  }
  if (need_size || need_comp || need_off)
    CORRUPT ("%s: entry '%s' needs a zip64 field but has none", label, e->name);
  return TRUE;
}

/* The end-of-central-directory record: searched backwards over the comment space. */
static gboolean
find_eocd (const HvBlob *b, guint64 *eocd, GError **error)
{
  if (b->size < 22)
    CORRUPT ("%s: too small to be a zip archive (%zu bytes)", b->label, b->size);
  guint64 lo = b->size > 22 + 65535 ? b->size - 22 - 65535 : 0;
  for (guint64 p = b->size - 22 + 1; p-- > lo;) {
    if (rd32 (b->data + p) == SIG_EOCD && p + 22 + rd16 (b->data + p + 20) == b->size) {
      *eocd = p;
      return TRUE;
    }
  }
  CORRUPT ("%s: zip end-of-central-directory record not found (truncated file?)", b->label);
}

gboolean
hv_zip_open (HvZip *z, const HvBlob *b, GError **error)
{
  memset (z, 0, sizeof *z);
  z->blob = b;
  z->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  const char *label = b->label;
  const guint8 *d = b->data;
  guint64 eocd;
  if (!find_eocd (b, &eocd, error))
    return FALSE;
  guint64 n = rd16 (d + eocd + 10), cd_size = rd32 (d + eocd + 12), cd_off = rd32 (d + eocd + 16);
  guint16 disk = rd16 (d + eocd + 4), cd_disk = rd16 (d + eocd + 6);
  if ((disk != 0 && disk != 0xFFFF) || (cd_disk != 0 && cd_disk != 0xFFFF)) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: multi-volume zip archives are not supported", label);
    return FALSE;
  }
  /* zip64: the locator sits right before the classic record */
  if (eocd >= 20 && rd32 (d + eocd - 20) == SIG_LOC64) {
    guint64 r = rd64 (d + eocd - 20 + 8);
    if (r > eocd - 20 || eocd - 20 - r < 56 || rd32 (d + r) != SIG_EOCD64)
      CORRUPT ("%s: bad zip64 end-of-central-directory record", label);
    n = rd64 (d + r + 32);
    cd_size = rd64 (d + r + 40);
    cd_off = rd64 (d + r + 48);
    eocd = r;   /* the directory must end before the zip64 record */
  } else if (n == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    CORRUPT ("%s: zip64 archive without a zip64 locator", label);
  }
  if (cd_off > eocd || cd_size > eocd - cd_off)
    CORRUPT ("%s: zip central directory [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT ") lies outside the file",
             label, cd_off, cd_size);
  if (n > cd_size / 46 || n > MAX_ENTRIES)
    CORRUPT ("%s: zip claims %" G_GUINT64_FORMAT " entries in a %" G_GUINT64_FORMAT "-byte directory",
             label, n, cd_size);
  z->entries = g_new0 (HvZipEntry, n ? n : 1);
  guint64 p = cd_off, end = cd_off + cd_size;
  for (guint64 i = 0; i < n; i++) {
    if (end - p < 46 || rd32 (d + p) != SIG_CENTRAL)
      CORRUPT ("%s: zip central directory entry %" G_GUINT64_FORMAT " is damaged", label, i);
    guint name_len = rd16 (d + p + 28), extra_len = rd16 (d + p + 30), comment_len = rd16 (d + p + 32);
    if (end - p - 46 < (guint64) name_len + extra_len + comment_len)
      CORRUPT ("%s: zip central directory entry %" G_GUINT64_FORMAT " runs past the directory", label, i);
    HvZipEntry *e = &z->entries[z->n_entries++];
    e->name = g_strndup ((const char *) d + p + 46, name_len);
    if (strlen (e->name) != name_len)
      CORRUPT ("%s: zip entry name contains a NUL byte", label);
    e->flags = rd16 (d + p + 8);
    e->method = rd16 (d + p + 10);
    e->comp_size = rd32 (d + p + 20);
    e->size = rd32 (d + p + 24);
    e->local_off = rd32 (d + p + 42);
    if (!apply_zip64 (label, e, d + p + 46 + name_len, extra_len, e->size == 0xFFFFFFFFu,
                      e->comp_size == 0xFFFFFFFFu, e->local_off == 0xFFFFFFFFu, error))
      return FALSE;
    if (g_hash_table_contains (z->by_name, e->name))
      CORRUPT ("%s: zip entry '%s' appears twice", label, e->name);
    g_hash_table_insert (z->by_name, e->name, e);
    p += 46u + name_len + extra_len + comment_len;
  }
  return TRUE;
}

void
hv_zip_clear (HvZip *z)
{
  if (z->by_name)
    g_hash_table_unref (z->by_name);
  for (guint i = 0; i < z->n_entries; i++)
    g_free (z->entries[i].name);
  g_free (z->entries);
  memset (z, 0, sizeof *z);
}

const HvZipEntry *
hv_zip_find (HvZip *z, const char *name)
{
  return g_hash_table_lookup (z->by_name, name);
}

gboolean
hv_zip_data (HvZip *z, const HvZipEntry *e, guint64 *offset, GError **error)
{
  const HvBlob *b = z->blob;
  const char *label = b->label;
  if (e->flags & 1) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED, "%s: zip entry '%s' is encrypted", label, e->name);
    return FALSE;
  }
  if (e->method != 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED,
                 "%s: zip entry '%s' is compressed (method %u); torch.save stores entries uncompressed, "
                 "re-save the checkpoint with torch.save or convert it to safetensors", label, e->name, e->method);
    return FALSE;
  }
  if (e->comp_size != e->size)
    CORRUPT ("%s: stored zip entry '%s' has different packed and unpacked sizes", label, e->name);
  guint64 lo = e->local_off;
  if (lo > b->size || b->size - lo < 30 || rd32 (b->data + lo) != SIG_LOCAL)
    CORRUPT ("%s: zip local header of '%s' is missing or outside the file", label, e->name);
  guint64 start = lo + 30 + rd16 (b->data + lo + 26) + rd16 (b->data + lo + 28);
  if (start > b->size || b->size - start < e->size)
    CORRUPT ("%s: data of zip entry '%s' (%" G_GUINT64_FORMAT " bytes) runs past the end of the file",
             label, e->name, e->size);
  *offset = start;
  return TRUE;
}
