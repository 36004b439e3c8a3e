/* hv-bpe-encode.c — the encode steps the Llama-3 and CLIP tokenizers share (see hv-bpe.h):
 * the line reader of their text formats, bytes → merged ids, the regex split and the
 * special-token driver. Written once so that both validate, split and roll back alike. */
#include "hv-bpe.h"
#include "hv-error.h"
#include <string.h>

gboolean
hv_bpe_next_line (const char **p, const char *end, const char **line, gsize *len)
{
  if (*p >= end)
    return FALSE;
  const char *nl = memchr (*p, '\n', (gsize) (end - *p));
  const char *le = nl ? nl : end;
  if (le > *p && le[-1] == '\r')
    le--;
  *line = *p;
  *len = (gsize) (le - *p);
  *p = nl ? nl + 1 : end;
  return TRUE;
}

void
hv_bpe_encode_bytes (const HvBpe *bpe, HvBpeCache *cache, const char *p, gsize n,
                     const gint32 *byte_ids, const gint32 *last_ids, GArray *ids)
{
  guint at = ids->len;
  g_array_set_size (ids, at + (guint) n);
  gint32 *sym = &g_array_index (ids, gint32, at);
  for (gsize i = 0; i < n; i++)
    sym[i] = (i + 1 < n ? byte_ids : last_ids)[(guint8) p[i]];
  gsize m = hv_bpe_merge (bpe, sym, n);
  g_array_set_size (ids, at + (guint) m);
  hv_bpe_cache_put (cache, p, n, &g_array_index (ids, gint32, at), m);
}

gboolean
hv_bpe_split (const GRegex *re, const char *s, gssize len, gboolean keep_gaps,
              HvBpePieceFunc piece, gpointer tok, GArray *ids, GError **error)
{
  g_return_val_if_fail (!keep_gaps || len >= 0, FALSE);
  g_autoptr(GMatchInfo) mi = NULL;
  g_autoptr(GError) e = NULL;
  gsize pos = 0;
  g_regex_match_full (re, s, len, 0, 0, &mi, &e);
  while (!e && g_match_info_matches (mi)) {
    int a, b;
    g_match_info_fetch_pos (mi, 0, &a, &b);
    if (keep_gaps && (gsize) a > pos)   /* text no alternative matched */
      piece (tok, s + pos, (gsize) a - pos, ids);
    if (b > a)
      piece (tok, s + a, (gsize) (b - a), ids);
    pos = (gsize) b;
    g_match_info_next (mi, &e);
  }
  if (e) {   /* a PCRE2 resource limit, not a property of the text */
    g_set_error (error, HV_ERROR, HV_ERROR_FAILED, "pre-tokenizer regex failed: %s", e->message);
    return FALSE;
  }
  if (keep_gaps && pos < (gsize) len)
    piece (tok, s + pos, (gsize) len - pos, ids);
  return TRUE;
}

gboolean
hv_bpe_encode_text (const HvBpeSpecials *sp, const char *text, gssize len, gint32 bos, gint32 eos,
                    HvBpeTextFunc ordinary, gpointer tok, GArray *ids, GError **error)
{
  g_return_val_if_fail (sp && ids && g_array_get_element_size (ids) == sizeof (gint32), FALSE);
  g_return_val_if_fail (text || len <= 0, FALSE);
  gsize n = len < 0 ? (text ? strlen (text) : 0) : (gsize) len;
  const char *bad;
  if (n && !g_utf8_validate_len (text, n, &bad)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "prompt is not valid UTF-8 (bad byte 0x%02x at offset %zu)",
                 (guint8) *bad, (gsize) (bad - text));
    return FALSE;
  }
  guint start = ids->len;
  if (bos >= 0)
    g_array_append_val (ids, bos);
  gsize pos = 0;
  while (pos < n) {
    gsize at, ml;
    gint32 sid;
    gboolean found = hv_bpe_specials_find (sp, text + pos, n - pos, &at, &ml, &sid);
    gsize seg = found ? at : n - pos;
    if (seg > 0 && !ordinary (tok, text + pos, seg, ids, error)) {
      g_array_set_size (ids, start);
      return FALSE;
    }
    pos += seg;
    if (found) {
      g_array_append_val (ids, sid);
      pos += ml;
    }
  }
  if (eos >= 0)
    g_array_append_val (ids, eos);
  return TRUE;
}
