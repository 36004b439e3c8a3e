/* hv-clip-tokenizer.c — loading vocab.json/merges.txt or the OpenAI .gz, and encoding.
 * See hv-clip-tokenizer.h. The BPE table is keyed by the vocab's own spelling (GPT-2 byte
 * chars, "</w>" ends), so pieces are mapped to that spelling before merging. */
#include "hv-clip-tokenizer.h"
#include "hv-bpe.h"
#include "hv-error.h"
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <string.h>

/* clip/simple_tokenizer.py uses lines[1 : 49152-256-2+1] of the .gz: 48894 merges. */
#define CLIP_N_MERGES (49152 - 256 - 2)
#define END_OF_WORD "</w>"

struct _HvClipTokenizer {
  HvBpe *bpe;
  HvBpeSpecials *specials;
  HvBpeCache *cache;
  GRegex *re;
  gint32 byte_sym[256];       /* id of the byte's char */
  gint32 byte_sym_end[256];   /* id of the byte's char + "</w>" */
  gint32 bos, eos, pad;
};

void
hv_clip_tokenizer_free (HvClipTokenizer *tok)
{
  if (!tok)
    return;
  hv_bpe_free (tok->bpe);
  hv_bpe_specials_free (tok->specials);
  hv_bpe_cache_free (tok->cache);
  if (tok->re)
    g_regex_unref (tok->re);
  g_free (tok);
}

static HvClipTokenizer *
clip_new (void)
{
  HvClipTokenizer *tok = g_new0 (HvClipTokenizer, 1);
  tok->bpe = hv_bpe_new (HV_BPE_MERGE_RANKS);
  tok->specials = hv_bpe_specials_new ();
  return tok;
}

/* Byte symbols, specials, regex, cache: everything after the vocab and merges. */
static gboolean
finish (HvClipTokenizer *tok, const char *path, GError **error)
{
  for (int b = 0; b < 256; b++) {
    char s[16];
    int n = g_unichar_to_utf8 (hv_bpe_byte_char ((guint8) b), s);
    tok->byte_sym[b] = hv_bpe_lookup (tok->bpe, s, (gsize) n);
    memcpy (s + n, END_OF_WORD, strlen (END_OF_WORD));
    tok->byte_sym_end[b] = hv_bpe_lookup (tok->bpe, s, (gsize) n + strlen (END_OF_WORD));
    if (tok->byte_sym[b] < 0 || tok->byte_sym_end[b] < 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                   "%s: the vocabulary lacks the token of byte 0x%02x (with or without </w>): "
                   "not a CLIP vocabulary", path, b);
      return FALSE;
    }
  }
  tok->bos = hv_bpe_lookup (tok->bpe, "<|startoftext|>", strlen ("<|startoftext|>"));
  tok->eos = hv_bpe_lookup (tok->bpe, "<|endoftext|>", strlen ("<|endoftext|>"));
  if (tok->bos < 0 || tok->eos < 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                 "%s: the vocabulary lacks <|startoftext|> or <|endoftext|>", path);
    return FALSE;
  }
  tok->pad = tok->eos;
  hv_bpe_specials_add (tok->specials, "<|startoftext|>", tok->bos);
  hv_bpe_specials_add (tok->specials, "<|endoftext|>", tok->eos);
  tok->re = g_regex_new (HV_CLIP_PRETOKENIZE_REGEX, G_REGEX_OPTIMIZE, 0, error);
  if (!tok->re)
    return FALSE;
  tok->cache = hv_bpe_cache_new (1 << 16);
  return TRUE;
}

/* One merges line "left right" (CR, if any, already cut). */
static gboolean
add_merge_line (HvClipTokenizer *tok, const char *path, const char *line, gsize len, gint32 rank,
                GError **error)
{
  const char *sp = memchr (line, ' ', len);
  if (!sp || sp == line || sp + 1 == line + len || memchr (sp + 1, ' ', (gsize) (line + len - sp - 1))) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: merge %d is not 'left right': '%.*s'",
                 path, rank, (int) MIN (len, 80), line);
    return FALSE;
  }
  if (!hv_bpe_add_merge (tok->bpe, line, (gsize) (sp - line), sp + 1,
                         (gsize) (line + len - sp - 1), rank, error)) {
    g_prefix_error (error, "%s: ", path);
    return FALSE;
  }
  return TRUE;
}

HvClipTokenizer *
hv_clip_tokenizer_new_from_files (const char *vocab_json, const char *merges_txt, GError **error)
{
  g_autoptr(HvClipTokenizer) tok = clip_new ();
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  g_autoptr(GError) e = NULL;
  if (!json_parser_load_from_file (parser, vocab_json, &e)) {
    g_set_error (error, HV_ERROR, g_error_matches (e, G_FILE_ERROR, G_FILE_ERROR_NOENT) ?
                 HV_ERROR_NOT_FOUND : HV_ERROR_CORRUPT,
                 "cannot read the CLIP vocabulary %s: %s", vocab_json, e->message);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: expected a JSON object token → id",
                 vocab_json);
    return NULL;
  }
  JsonObjectIter it;
  const char *key;
  JsonNode *val;
  json_object_iter_init (&it, json_node_get_object (root));
  while (json_object_iter_next (&it, &key, &val)) {
    gint64 id = JSON_NODE_HOLDS_VALUE (val) ? json_node_get_int (val) : -1;
    if (id < 0 || id >= G_MAXINT32) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: entry '%.64s' has no valid id",
                   vocab_json, key);
      return NULL;
    }
    if (!hv_bpe_add_token (tok->bpe, key, strlen (key), (gint32) id, error)) {
      g_prefix_error (error, "%s: ", vocab_json);
      return NULL;
    }
  }

  g_autofree char *text = NULL;
  gsize size;
  if (!g_file_get_contents (merges_txt, &text, &size, &e)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "cannot read the CLIP merges: %s",
                 e->message);
    return NULL;
  }
  gint32 rank = 0;
  const char *p = text, *line;
  gsize n;
  while (hv_bpe_next_line (&p, text + size, &line, &n)) {
    if (n > 0 && !(rank == 0 && g_str_has_prefix (line, "#version"))) {
      if (!add_merge_line (tok, merges_txt, line, n, rank++, error))
        return NULL;
    }
  }
  if (!finish (tok, vocab_json, error))
    return NULL;
  return g_steal_pointer (&tok);
}

HvClipTokenizer *
hv_clip_tokenizer_new_from_bpe_gz (const char *path, GError **error)
{
  g_autoptr(GError) e = NULL;
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GFileInputStream) raw = g_file_read (file, NULL, &e);
  if (!raw) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "cannot read the CLIP merges: %s",
                 e->message);
    return NULL;
  }
  g_autoptr(GZlibDecompressor) gunzip = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
  g_autoptr(GInputStream) plain = g_converter_input_stream_new (G_INPUT_STREAM (raw),
                                                                G_CONVERTER (gunzip));
  g_autoptr(GDataInputStream) lines = g_data_input_stream_new (plain);
  g_data_input_stream_set_newline_type (lines, G_DATA_STREAM_NEWLINE_TYPE_ANY);

  /* Only the header and the first CLIP_N_MERGES lines are read: the file has 262144
   * merges, CLIP uses the first 48894, and the rest need not be decompressed. */
  g_autoptr(GPtrArray) merges = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i <= CLIP_N_MERGES; i++) {
    gsize n;
    char *line = g_data_input_stream_read_line_utf8 (lines, &n, NULL, &e);
    if (!line) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                   "%s: %s at line %d (expected a header and %d merges)", path,
                   e ? e->message : "ends", i + 1, CLIP_N_MERGES);
      return NULL;
    }
    if (i > 0)
      g_ptr_array_add (merges, line);
    else
      g_free (line);
  }

  /* vocab: the 256 byte chars, the same with </w>, each merge joined, the two specials */
  g_autoptr(HvClipTokenizer) tok = clip_new ();
  gint32 id = 0;
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < 256; i++) {
      char s[16];
      int n = g_unichar_to_utf8 (hv_bpe_byte_char (hv_bpe_byte_at (i)), s);
      if (w) {
        memcpy (s + n, END_OF_WORD, strlen (END_OF_WORD));
        n += (int) strlen (END_OF_WORD);
      }
      if (!hv_bpe_add_token (tok->bpe, s, (gsize) n, id++, error))
        return NULL;
    }
  for (guint i = 0; i < merges->len; i++) {
    const char *m = merges->pdata[i];
    const char *sp = strchr (m, ' ');
    if (!sp || sp == m || !sp[1] || strchr (sp + 1, ' ')) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: line %u is not 'left right': '%.80s'",
                   path, i + 2, m);
      return NULL;
    }
    g_autofree char *joined = g_strdup_printf ("%.*s%s", (int) (sp - m), m, sp + 1);
    if (!hv_bpe_add_token (tok->bpe, joined, strlen (joined), id++, error)) {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  }
  if (!hv_bpe_add_token (tok->bpe, "<|startoftext|>", strlen ("<|startoftext|>"), id++, error) ||
      !hv_bpe_add_token (tok->bpe, "<|endoftext|>", strlen ("<|endoftext|>"), id++, error))
    return NULL;
  for (guint i = 0; i < merges->len; i++) {
    const char *m = merges->pdata[i];
    if (!add_merge_line (tok, path, m, strlen (m), (gint32) i, error))
      return NULL;
  }
  if (!finish (tok, path, error))
    return NULL;
  return g_steal_pointer (&tok);
}

HvClipTokenizer *
hv_clip_tokenizer_new_from_dir (const char *dir, GError **error)
{
  g_autofree char *vocab = g_build_filename (dir, "vocab.json", NULL);
  g_autofree char *merges = g_build_filename (dir, "merges.txt", NULL);
  g_autofree char *gz = g_build_filename (dir, "bpe_simple_vocab_16e6.txt.gz", NULL);
  if (g_file_test (vocab, G_FILE_TEST_IS_REGULAR) && g_file_test (merges, G_FILE_TEST_IS_REGULAR))
    return hv_clip_tokenizer_new_from_files (vocab, merges, error);
  if (g_file_test (gz, G_FILE_TEST_IS_REGULAR))
    return hv_clip_tokenizer_new_from_bpe_gz (gz, error);
  g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
               "%s has neither vocab.json + merges.txt nor bpe_simple_vocab_16e6.txt.gz (the "
               "CLIP tokenizer)", dir);
  return NULL;
}

/* ---- encoding ---- */

/* Stable order of a run of non-starters by combining class (canonical ordering). */
static gint
cmp_ccc (gconstpointer a, gconstpointer b, gpointer unused)
{
  return g_unichar_combining_class (*(const gunichar *) a) -
         g_unichar_combining_class (*(const gunichar *) b);
}

/* NFC of n chars into a new array (*out_n set). The same steps as GLib's
 * g_utf8_normalize (canonical decomposition, canonical ordering, its composition loop) but
 * linear: GLib shifts the buffer on every composition and bubble-sorts runs of marks, which
 * takes seconds on a long run of "é". */
static gunichar *
nfc (const gunichar *in, glong n, glong *out_n)
{
  GArray *d = g_array_sized_new (FALSE, FALSE, sizeof (gunichar), (guint) n + 16);
  for (glong i = 0; i < n; i++) {
    gunichar buf[G_UNICHAR_MAX_DECOMPOSITION_LENGTH];
    gsize k = g_unichar_fully_decompose (in[i], FALSE, buf, G_N_ELEMENTS (buf));
    g_array_append_vals (d, buf, (guint) k);
  }
  gunichar *w = (gunichar *) d->data;
  glong m = d->len;
  for (glong i = 0; i < m;) {   /* canonical ordering, run by run */
    glong j = i;
    while (j < m && g_unichar_combining_class (w[j]) != 0)
      j++;
    if (j - i > 1)
      g_qsort_with_data (w + i, (gint) (j - i), sizeof (gunichar), cmp_ccc, NULL);   /* stable */
    i = j > i ? j : i + 1;
  }
  glong o = 0, last_start = 0;
  int last_cc = 0;
  for (glong i = 0; i < m; i++) {
    gunichar c = w[i], comp;
    int cc = g_unichar_combining_class (c);
    if (o > 0 && (last_cc == 0 || last_cc < cc) && g_unichar_compose (w[last_start], c, &comp)) {
      w[last_start] = comp;
      last_cc = o - 1 == last_start ? 0 : g_unichar_combining_class (w[o - 1]);
      continue;
    }
    if (cc == 0)
      last_start = o;
    w[o++] = c;
    last_cc = cc;
  }
  *out_n = o;
  return (gunichar *) g_array_free (d, FALSE);
}

char *
hv_clip_normalize (const char *s, gssize len)
{
  glong n, m;
  g_autofree gunichar *u = g_utf8_to_ucs4 (s, len, NULL, &n, NULL);
  if (!u)
    return NULL;
  g_autofree gunichar *c = nfc (u, n, &m);
  GString *out = g_string_sized_new ((gsize) m + 8);
  for (glong i = 0; i < m; i++) {
    /* per char as Rust's char::to_lowercase (HF's Lowercase): simple mappings except
     * U+0130 → "i" U+0307. Not g_utf8_strdown: it has the final-sigma rule and a locale. */
    if (c[i] == 0x130)
      g_string_append (out, "i\xcc\x87");
    else
      g_string_append_unichar (out, g_unichar_tolower (c[i]));
  }
  return g_string_free (out, FALSE);
}

/* An HvBpePieceFunc: the piece's ids, the last byte with "</w>". */
static void
encode_piece (gpointer data, const char *p, gsize n, GArray *ids)
{
  HvClipTokenizer *tok = data;
  if (!hv_bpe_cache_get (tok->cache, p, n, ids))
    hv_bpe_encode_bytes (tok->bpe, tok->cache, p, n, tok->byte_sym, tok->byte_sym_end, ids);
}

/* An HvBpeTextFunc: normalise, split (only the matches are kept), BPE. */
static gboolean
encode_ordinary (gpointer data, const char *s, gsize n, GArray *ids, GError **error)
{
  HvClipTokenizer *tok = data;
  g_autofree char *norm = hv_clip_normalize (s, (gssize) n);
  if (!norm) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "prompt is not valid UTF-8");
    return FALSE;
  }
  return hv_bpe_split (tok->re, norm, -1, FALSE, encode_piece, tok, ids, error);
}

gboolean
hv_clip_tokenizer_encode (HvClipTokenizer *tok, const char *text, gssize len,
                          gboolean add_bos_eos, GArray *ids, GError **error)
{
  g_return_val_if_fail (tok != NULL, FALSE);
  return hv_bpe_encode_text (tok->specials, text, len, add_bos_eos ? tok->bos : -1,
                             add_bos_eos ? tok->eos : -1, encode_ordinary, tok, ids, error);
}

gint32
hv_clip_tokenizer_bos (HvClipTokenizer *tok)
{
  return tok->bos;
}

gint32
hv_clip_tokenizer_eos (HvClipTokenizer *tok)
{
  return tok->eos;
}

gint32
hv_clip_tokenizer_pad (HvClipTokenizer *tok)
{
  return tok->pad;
}

const char *
hv_clip_tokenizer_token (HvClipTokenizer *tok, gint32 id, gsize *len)
{
  return hv_bpe_key (tok->bpe, id, len);
}
