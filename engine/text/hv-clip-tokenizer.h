/* hv-clip-tokenizer.h — the CLIP ViT-L/14 BPE tokenizer of text_encoder_2.
 *
 * Sources: HF vocab.json + merges.txt, or OpenAI's bpe_simple_vocab_16e6.txt.gz (the vocab
 * is then built the way clip/simple_tokenizer.py and HF's CLIPTokenizer build it).
 *
 * Encoding follows HF's CLIPTokenizer (tokenizers pipeline, the reference of the fixtures):
 *   1. "<|startoftext|>" / "<|endoftext|>" in the raw text are those specials;
 *   2. the rest: NFC, lowercase char by char (no Greek final-sigma rule; İ → i + U+0307);
 *   3. split with the CLIP regex, whitespace dropped (so \s+ → " " needs no separate step);
 *   4. GPT-2 byte→char mapping, BPE where the last symbol carries "</w>".
 * Not done (other CLIP front ends do them): ftfy fixes, html unescape, the slow
 * tokenizer's CJK spacing and control-character removal.
 * BOS 49406, EOS = pad 49407. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

typedef struct _HvClipTokenizer HvClipTokenizer;

#define HV_CLIP_PRETOKENIZE_REGEX \
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"

/* A folder with vocab.json + merges.txt (preferred) or bpe_simple_vocab_16e6.txt.gz. */
HvClipTokenizer *hv_clip_tokenizer_new_from_dir (const char *dir, GError **error);
HvClipTokenizer *hv_clip_tokenizer_new_from_files (const char *vocab_json, const char *merges_txt,
                                                   GError **error);
HvClipTokenizer *hv_clip_tokenizer_new_from_bpe_gz (const char *path, GError **error);
void             hv_clip_tokenizer_free (HvClipTokenizer *tok);

/* Appends the ids (gint32) of `text` (len bytes, -1 = NUL-terminated) to `ids`, between BOS
 * and EOS if add_bos_eos; no truncation. Text that is not UTF-8 (or holds a NUL) is an
 * HV_ERROR_INVALID error and leaves `ids` as it was. */
gboolean hv_clip_tokenizer_encode (HvClipTokenizer *tok, const char *text, gssize len,
                                   gboolean add_bos_eos, GArray *ids, GError **error);

/* Step 2 alone: NFC then per-char lowercase (len -1 = NUL-terminated); NULL if `s` is not
 * UTF-8. Linear time, unlike g_utf8_normalize on long runs of composing characters. */
char    *hv_clip_normalize (const char *s, gssize len);

gint32   hv_clip_tokenizer_bos (HvClipTokenizer *tok);
gint32   hv_clip_tokenizer_eos (HvClipTokenizer *tok);
gint32   hv_clip_tokenizer_pad (HvClipTokenizer *tok);
/* The vocab text of `id` ("cat</w>"), or NULL. */
const char *hv_clip_tokenizer_token (HvClipTokenizer *tok, gint32 id, gsize *len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvClipTokenizer, hv_clip_tokenizer_free)

G_END_DECLS
