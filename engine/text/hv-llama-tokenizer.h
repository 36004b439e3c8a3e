/* hv-llama-tokenizer.h — the Llama-3 byte-level BPE tokenizer of the llava-llama-3-8b text
 * encoder, read from the checkpoint's own files.
 *
 * Two sources, same ids:
 *   tokenizer.json   HF `tokenizers` format (vocab in GPT-2 byte-char spelling, merges,
 *                    added_tokens; "ignore_merges" honoured)
 *   tokenizer.model  tiktoken format ("base64(bytes) rank" per line; merges by the rank of
 *                    the concatenation)
 *
 * Encoding (as tiktoken with allowed_special="all" and as HF added tokens):
 *   1. special-token text anywhere in the input is that special token (leftmost, longest);
 *   2. the rest is split by the Llama-3 pre-tokenizer regex (GRegex, Unicode properties);
 *   3. a piece that is itself a token is emitted, else byte-level BPE.
 * No normalisation. The pre-tokenizer is always the regex below (tokenizer.json's own is not
 * read), and added tokens' lstrip/rstrip/normalized flags are ignored (all false in Llama 3).
 * Specials: 128000-128255 (Llama 3 names) and llava's 128256 <unk>,
 * 128257 <image>, 128258 <pad> (added when the file lacks them). BOS 128000, pad 128258.
 *
 * A tokenizer is immutable after loading except for its piece cache (locked), so one can be
 * used from several threads. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

typedef struct _HvLlamaTokenizer HvLlamaTokenizer;

/* The Llama-3 pre-tokenizer regex (meta-llama/llama3 pat_str). */
#define HV_LLAMA3_PRETOKENIZE_REGEX \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* A folder holding tokenizer.json (preferred) or tokenizer.model. */
HvLlamaTokenizer *hv_llama_tokenizer_new_from_dir (const char *dir, GError **error);
/* One file; the format is recognised by content (JSON object or tiktoken lines). */
HvLlamaTokenizer *hv_llama_tokenizer_new_from_file (const char *path, GError **error);
void              hv_llama_tokenizer_free (HvLlamaTokenizer *tok);

/* Appends the ids (gint32) of `text` (len bytes, -1 = NUL-terminated) to `ids`, after the
 * BOS if add_bos. Text that is not UTF-8 (or holds a NUL) is an HV_ERROR_INVALID error and
 * leaves `ids` as it was. */
gboolean    hv_llama_tokenizer_encode (HvLlamaTokenizer *tok, const char *text, gssize len,
                                       gboolean add_bos, GArray *ids, GError **error);
/* The bytes of ids (specials by name), NUL-terminated; *len (if non-NULL) excludes the NUL.
 * Not necessarily UTF-8 when ids split a character. An unknown id is an error. */
char       *hv_llama_tokenizer_decode (HvLlamaTokenizer *tok, const gint32 *ids, gsize n,
                                       gsize *len, GError **error);

gint32      hv_llama_tokenizer_bos (HvLlamaTokenizer *tok);
gint32      hv_llama_tokenizer_pad (HvLlamaTokenizer *tok);
/* The id of special token `name` ("<|eot_id|>"), or -1. */
gint32      hv_llama_tokenizer_special (HvLlamaTokenizer *tok, const char *name);
/* One past the largest id, specials included (128259 for llava-llama-3). */
gint32      hv_llama_tokenizer_vocab_end (HvLlamaTokenizer *tok);
/* "tokenizer.json" or "tiktoken": which loader read it. */
const char *hv_llama_tokenizer_format (HvLlamaTokenizer *tok);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvLlamaTokenizer, hv_llama_tokenizer_free)

G_END_DECLS
