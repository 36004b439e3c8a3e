/* hv-bpe.h — the byte-pair-encoding core shared by the Llama-3 and CLIP tokenizers.
 *
 * A token table maps byte strings (keys) to ids. The caller splits a pre-token into initial
 * symbols (ids) and hv_bpe_merge() repeatedly merges the adjacent pair of highest priority
 * (lowest rank; leftmost on ties) until no pair merges. Two ways of ranking a pair:
 *
 *   HV_BPE_MERGE_RANKS  an explicit merges list: rank = line of "left right" (HF
 *                       tokenizer.json, CLIP merges.txt)
 *   HV_BPE_TOKEN_RANKS  tiktoken: rank = id of the token whose bytes are left+right
 *
 * The merge loop keeps a heap of candidate pairs, so a piece of n symbols costs
 * O(n log n), not O(n^2): hostile input (a megabyte without spaces) cannot hang it.
 *
 * Also here: GPT-2's bytes_to_unicode mapping (vocab files spell bytes as printable
 * characters), a bounded thread-safe cache of piece → ids, and the set of special tokens. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  HV_BPE_MERGE_RANKS,
  HV_BPE_TOKEN_RANKS,
} HvBpeMode;

typedef struct _HvBpe HvBpe;

HvBpe      *hv_bpe_new (HvBpeMode mode);
void        hv_bpe_free (HvBpe *bpe);
HvBpeMode   hv_bpe_mode (const HvBpe *bpe);

/* Adds token `key` (len bytes, may hold any byte) with id >= 0. A duplicate key or id is an
 * HV_ERROR_CORRUPT error. */
gboolean    hv_bpe_add_token (HvBpe *bpe, const char *key, gsize len, gint32 id, GError **error);
/* The id of `key`, or -1. */
gint32      hv_bpe_lookup (const HvBpe *bpe, const char *key, gsize len);
/* The key of `id` (not NUL-terminated; *len set), or NULL. */
const char *hv_bpe_key (const HvBpe *bpe, gint32 id, gsize *len);
guint       hv_bpe_n_tokens (const HvBpe *bpe);
/* One past the largest id. */
gint32      hv_bpe_id_end (const HvBpe *bpe);

/* HV_BPE_MERGE_RANKS only: the pair (left, right) merges with priority `rank` into the
 * token whose key is left+right. All three must be tokens already (HV_ERROR_CORRUPT
 * otherwise). A repeated pair keeps its first (lowest) rank, as HF does. */
gboolean    hv_bpe_add_merge (HvBpe *bpe, const char *left, gsize llen, const char *right,
                              gsize rlen, gint32 rank, GError **error);
guint       hv_bpe_n_merges (const HvBpe *bpe);

/* Merges the n symbols in `ids` in place; returns the new count (<= n). */
gsize       hv_bpe_merge (const HvBpe *bpe, gint32 *ids, gsize n);

/* GPT-2 bytes_to_unicode: the printable character that stands for byte b. */
gunichar    hv_bpe_byte_char (guint8 b);
/* Inverse: the byte a character stands for, or -1. */
int         hv_bpe_char_byte (gunichar c);
/* The byte at position i (0..255) of bytes_to_unicode's order (printable bytes first): the
 * order of the first 256 entries of a CLIP vocabulary. */
guint8      hv_bpe_byte_at (int i);
/* Decodes a vocab key spelled in bytes_to_unicode characters to raw bytes (appended to
 * `out`). FALSE if it holds a character outside the mapping or is not UTF-8. */
gboolean    hv_bpe_unmap_key (const char *key, gssize len, GByteArray *out);

/* piece → ids cache. Bounded: cleared when it grows past `max_entries`. Thread-safe. */
typedef struct _HvBpeCache HvBpeCache;
HvBpeCache *hv_bpe_cache_new (guint max_entries);
void        hv_bpe_cache_free (HvBpeCache *cache);
/* Appends the cached ids of `piece` to `out` and returns TRUE, or FALSE if not cached. */
gboolean    hv_bpe_cache_get (HvBpeCache *cache, const char *piece, gsize len, GArray *out);
void        hv_bpe_cache_put (HvBpeCache *cache, const char *piece, gsize len, const gint32 *ids,
                              gsize n);

/* Special (added) tokens: names found verbatim in the raw text, leftmost first and, among
 * those starting at the same byte, longest first (HF added tokens, tiktoken
 * allowed_special="all"). */
typedef struct _HvBpeSpecials HvBpeSpecials;
HvBpeSpecials *hv_bpe_specials_new (void);
void        hv_bpe_specials_free (HvBpeSpecials *sp);
/* Adds name → id. FALSE (and no change) if the name or the id is taken already, or the
 * name is empty or 256 bytes or longer. */
gboolean    hv_bpe_specials_add (HvBpeSpecials *sp, const char *name, gint32 id);
gint32      hv_bpe_specials_id (const HvBpeSpecials *sp, const char *name);   /* -1 */
const char *hv_bpe_specials_name (const HvBpeSpecials *sp, gint32 id);       /* NULL */
gint32      hv_bpe_specials_max_id (const HvBpeSpecials *sp);                /* -1 if none */
/* The first special in text[0..len): TRUE with its offset, byte length and id. */
gboolean    hv_bpe_specials_find (const HvBpeSpecials *sp, const char *text, gsize len,
                                  gsize *at, gsize *match_len, gint32 *id);

/* ---- the encode steps both tokenizers share (hv-bpe-encode.c) ---- */

/* The next line of p[0..end) (*p advanced past it): *line and *len without the "\n" or
 * "\r\n". FALSE when nothing is left. Both tokenizers' text formats are line lists. */
gboolean    hv_bpe_next_line (const char **p, const char *end, const char **line, gsize *len);

/* Appends the BPE ids of piece p[0..n) (n > 0) to `ids` and caches them: byte i starts as
 * symbol byte_ids[p[i]], the last byte as last_ids[p[n-1]] (CLIP's "</w>" symbols; Llama
 * passes byte_ids again), then hv_bpe_merge() joins them. */
void        hv_bpe_encode_bytes (const HvBpe *bpe, HvBpeCache *cache, const char *p, gsize n,
                                 const gint32 *byte_ids, const gint32 *last_ids, GArray *ids);

/* A tokenizer's own step on one piece, or on a run of text holding no special token. */
typedef void     (*HvBpePieceFunc) (gpointer tok, const char *piece, gsize n, GArray *ids);
typedef gboolean (*HvBpeTextFunc) (gpointer tok, const char *text, gsize n, GArray *ids,
                                   GError **error);

/* Pre-tokenizes s[0..len) (len -1: NUL-terminated) with `re` and gives each non-empty match
 * to `piece`. With `keep_gaps` (len >= 0 then) text that no match covers is a piece too, as
 * HF keeps it. FALSE only when the regex engine fails (a PCRE2 resource limit). */
gboolean    hv_bpe_split (const GRegex *re, const char *s, gssize len, gboolean keep_gaps,
                          HvBpePieceFunc piece, gpointer tok, GArray *ids, GError **error);

/* The encode driver: checks text[0..len) is UTF-8 (len -1: NUL-terminated), appends `bos`
 * (if >= 0), the text with each special token as its id and the runs between them through
 * `ordinary`, then `eos` (if >= 0). On error `ids` is left as it was. */
gboolean    hv_bpe_encode_text (const HvBpeSpecials *sp, const char *text, gssize len, gint32 bos,
                                gint32 eos, HvBpeTextFunc ordinary, gpointer tok, GArray *ids,
                                GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvBpe, hv_bpe_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvBpeCache, hv_bpe_cache_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvBpeSpecials, hv_bpe_specials_free)

G_END_DECLS
