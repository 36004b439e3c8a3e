/* hv-zip.h — (loader-internal) a minimal read-only ZIP reader over bytes already in memory
 * (a mapped checkpoint). It reads the central directory (zip64 included, as torch writes for
 * checkpoints over 4 GiB) and hands out entries stored without compression, which is how
 * torch.save writes them; compressed or encrypted entries are refused when used. */
#pragma once
#include "hv-blob.h"

G_BEGIN_DECLS

typedef struct {
  char *name;
  guint16 method, flags;
  guint64 comp_size, size, local_off;
} HvZipEntry;

typedef struct {
  const HvBlob *blob;
  HvZipEntry *entries;
  guint n_entries;
  GHashTable *by_name;   /* name -> HvZipEntry* */
} HvZip;

gboolean          hv_zip_open (HvZip *z, const HvBlob *blob, GError **error);
void              hv_zip_clear (HvZip *z);
const HvZipEntry *hv_zip_find (HvZip *z, const char *name);
/* Offset of the entry's bytes inside the blob (checks the local header, the method and the
 * bounds). */
gboolean          hv_zip_data (HvZip *z, const HvZipEntry *e, guint64 *offset, GError **error);

G_END_DECLS
