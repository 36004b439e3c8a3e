/* hv-prompt.h — HunyuanVideo's prompt templates and the fixed-length token batches the text
 * encoders take (upstream TextEncoder.text2tokens).
 *
 * Llama: template.format(prompt) is tokenized as ONE string (a prompt starting with
 * whitespace merges with the template's last token "\n\n"), BOS first, truncated to
 * text_len + crop_start ids, right-padded with <pad> (128258) to that length; attention mask
 * 1 on real tokens. The encoder output is later cropped by crop_start (which counts BOS):
 * hv_tokenized_crop() gives those last text_len ids and mask entries.
 * CLIP: no template; BOS + first 75 + EOS, right-padded with EOS (49407) to 77.
 *
 * Upstream's sampler strips the prompt (str.strip) before this; these functions do not. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "hv-llama-tokenizer.h"
#include "hv-clip-tokenizer.h"

G_BEGIN_DECLS

typedef enum {
  HV_PROMPT_TEMPLATE_VIDEO,   /* dit-llm-encode-video, crop_start 95 (video_length > 1) */
  HV_PROMPT_TEMPLATE_IMAGE,   /* dit-llm-encode, crop_start 36 (a single frame) */
  HV_PROMPT_TEMPLATE_NONE,    /* the prompt as is, crop_start 0 */
} HvPromptTemplate;

#define HV_PROMPT_TEXT_LEN 256   /* Llama tokens after the crop (text_len) */
#define HV_PROMPT_CLIP_LEN 77    /* CLIP tokens (text_len_2) */

/* upstream constants.NEGATIVE_PROMPT (used only with real CFG, cfg_scale != 1) */
#define HV_PROMPT_NEGATIVE_DEFAULT \
  "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad " \
  "hands, bad teeth, bad eyes, bad limbs, distortion"

/* The template text ("...{}..."; NULL for NONE) and its crop_start. */
const char *hv_prompt_template_text (HvPromptTemplate tmpl);
int         hv_prompt_template_crop_start (HvPromptTemplate tmpl);
/* The template with `prompt` in place of "{}" (Python str.format with one argument). */
char       *hv_prompt_apply_template (HvPromptTemplate tmpl, const char *prompt);

typedef struct {
  int64_t *ids;       /* n ids (pad after the real ones) */
  int64_t *mask;      /* n entries, 1 = real token, 0 = pad */
  int n;              /* text_len + crop_start (Llama) or 77 (CLIP) */
  int n_real;         /* sum of mask */
  int crop_start;     /* leading ids the encoder output drops (0 for CLIP) */
  int n_untruncated;  /* ids before truncation (> n means the prompt was cut) */
} HvTokenized;

void     hv_tokenized_free (HvTokenized *t);
/* The part after the crop: n - crop_start ids and mask entries (pointers into t). */
int      hv_tokenized_crop (const HvTokenized *t, const int64_t **ids, const int64_t **mask);
gboolean hv_tokenized_truncated (const HvTokenized *t);

/* Llama ids for `prompt` in template `tmpl`, padded to HV_PROMPT_TEXT_LEN + crop_start. */
HvTokenized *hv_prompt_llama_tokens (HvLlamaTokenizer *tok, const char *prompt,
                                     HvPromptTemplate tmpl, GError **error);
/* Same with another text_len (> 0). */
HvTokenized *hv_prompt_llama_tokens_len (HvLlamaTokenizer *tok, const char *prompt,
                                         HvPromptTemplate tmpl, int text_len, GError **error);
/* CLIP ids for `prompt`, HV_PROMPT_CLIP_LEN long. */
HvTokenized *hv_prompt_clip_tokens (HvClipTokenizer *tok, const char *prompt, GError **error);
/* Same with another length (>= 2). */
HvTokenized *hv_prompt_clip_tokens_len (HvClipTokenizer *tok, const char *prompt, int max_len,
                                        GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvTokenized, hv_tokenized_free)

G_END_DECLS
