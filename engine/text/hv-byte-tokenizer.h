/* hv-byte-tokenizer.h — the byte-level vocabulary of the built-in tiny model.
 *
 * The tiny model (hv-tiny.h) has no tokenizer files, so its two text encoders read bytes:
 * id = byte + HV_BYTE_OFFSET, with three specials below them. The token batches have the
 * same form as the real ones (hv-prompt.h):
 *  - Llama side: BOS + the bytes of the prompt in the template, cut to crop_start + text_len
 *    ids and right-padded with PAD; crop_start = BOS + the template's bytes before "{}" (the
 *    encoder output drops them, as upstream drops the template's tokens).
 *  - CLIP side: BOS + the prompt's first max_len - 2 bytes + EOS, padded with EOS. EOS is the
 *    largest id, so pooling at "the first EOS" and at "argmax(ids)" agree, as for CLIP-L. */
#pragma once
#include "hv-prompt.h"

G_BEGIN_DECLS

#define HV_BYTE_PAD 0
#define HV_BYTE_BOS 1
#define HV_BYTE_OFFSET 2                    /* byte b has id b + 2 */
#define HV_BYTE_EOS (HV_BYTE_OFFSET + 256)  /* 258, the largest id */
#define HV_BYTE_VOCAB (HV_BYTE_EOS + 1)

/* Llama-side ids of `prompt` in template `tmpl`, n = crop_start + text_len (text_len > 0). */
HvTokenized *hv_byte_llama_tokens (const char *prompt, HvPromptTemplate tmpl, int text_len,
                                   GError **error);
/* CLIP-side ids of `prompt`, n = max_len (>= 2). */
HvTokenized *hv_byte_clip_tokens (const char *prompt, int max_len, GError **error);

G_END_DECLS
