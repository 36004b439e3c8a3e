/* hv-text.h — prompt → text embeddings: HunyuanVideo's two text encoders behind one call.
 *
 *   text_states    the Llama encoder (llava-llama-3-8b): the prompt in the video or image
 *                  template, hidden state hidden_states[-3] (skip layer 2, no final norm),
 *                  template positions cropped off  → [B, L, 4096]
 *   text_mask      1 on the prompt's real tokens (right padding)   → [B, L]
 *   text_states_2  CLIP-L pooler_output of the bare prompt          → [B, 768]
 *
 * With a negative prompt the batch is B = 2 in the order upstream concatenates it for
 * classifier-free guidance: [negative, positive]. Prompts are stripped of surrounding
 * whitespace first, as upstream's sampler does.
 *
 * L follows upstream: the Llama tokenizer's max_length is text_len (256) + the VIDEO
 * template's crop_start (95) whichever template is used, so L = 256 for video and
 * 351 - 36 = 315 for the image template (HV_PROMPT_TEMPLATE_NONE: 256).
 *
 * The encoders hold ~16 GB (fp16/bf16 8B Llama) of weights: free the encoder with
 * hv_text_encoder_free() once the prompts are encoded and before the DiT is loaded. The
 * embeddings stay valid (they belong to the backend, not to the encoder). */
#pragma once
#include "hv-backend.h"
#include "hv-prompt.h"
#include "hv-llama.h"
#include "hv-clip.h"
#include <glib.h>

G_BEGIN_DECLS

#define HV_TEXT_SKIP_LAYER 2   /* hidden_state_skip_layer */

typedef struct {
  HvTensor *text_states;    /* [B, L, D] f32 on the backend */
  int32_t *text_mask;       /* [B, L] host, 1 = real token */
  HvTensor *text_states_2;  /* [B, D2] f32 on the backend */
  int batch;                /* 1, or 2 = [negative, positive] */
  int length;               /* L */
  gboolean truncated;       /* a prompt was longer than L (Llama) or 75 (CLIP) tokens and was cut */
} HvTextEmbeds;

/* Frees the tensors and the mask and zeroes the struct. */
void hv_text_embeds_clear (HvTextEmbeds *e);

typedef struct _HvTextEncoder HvTextEncoder;

/* llama_dir / clip_dir: the text_encoder and text_encoder_2 checkpoint folders (config.json +
 * weights). The tokenizer folders default (NULL) to the model folders: the Llama one holds
 * tokenizer.json or tokenizer.model, the CLIP one vocab.json + merges.txt or
 * bpe_simple_vocab_16e6.txt.gz. Only the Llama layers the output needs are loaded. */
HvTextEncoder *hv_text_encoder_new (const char *llama_dir, const char *clip_dir,
                                    const char *llama_tokenizer_dir, const char *clip_tokenizer_dir,
                                    HvBackend *backend, GError **error);
/* The same from parts already open (all four taken over, freed with the encoder; also on
 * error). The Llama model must have the layers up to n_layers - HV_TEXT_SKIP_LAYER loaded. */
HvTextEncoder *hv_text_encoder_new_from_parts (HvLlama *llama, HvClip *clip,
                                               HvLlamaTokenizer *llama_tok,
                                               HvClipTokenizer *clip_tok, GError **error);
void           hv_text_encoder_free (HvTextEncoder *enc);

/* Encodes `prompt` (and `negative_prompt` unless NULL) with template `tmpl` into `out` (which
 * the call overwrites; clear it with hv_text_embeds_clear()). */
gboolean hv_text_encode (HvTextEncoder *enc, const char *prompt, const char *negative_prompt,
                         HvPromptTemplate tmpl, HvTextEmbeds *out, GError **error);

/* The Llama sequence length L for a template (see above). */
int      hv_text_length (HvPromptTemplate tmpl);

/* The steps around tokenizing, shared with the built-in tiny model (hv-tiny.c), whose byte
 * tokenizers feed the same encoders.
 * The batch's prompts in upstream's order, texts[] = [negative, positive] or [prompt]:
 * returns B. */
int      hv_text_batch (const char *prompt, const char *negative_prompt, const char *texts[2]);
/* Python's str.strip() (Unicode whitespace off both ends) of valid UTF-8 `s`, as upstream's
 * sampler applies to prompts. */
char    *hv_text_strip (const char *s);
/* Runs the Llama (hidden_states[-3], cropped) and CLIP encoders over B token rows ltok[b] /
 * ctok[b] (rows of one encoder all of one length) and fills `out`. out->truncated is set as
 * the rows are read; on error the rest of `out` is left alone. */
gboolean hv_text_encode_tokens (HvLlama *llama, HvClip *clip, const HvTokenized *const *ltok,
                                const HvTokenized *const *ctok, int B, HvTextEmbeds *out,
                                GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvTextEncoder, hv_text_encoder_free)

G_END_DECLS
