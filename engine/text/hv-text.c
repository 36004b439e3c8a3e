/* hv-text.c — prompt → (text_states, text_mask, text_states_2); see hv-text.h. */
#include "hv-text.h"
#include "hv-error.h"
#include <string.h>

struct _HvTextEncoder {
  HvLlama *llama;
  HvClip *clip;
  HvLlamaTokenizer *llama_tok;
  HvClipTokenizer *clip_tok;
};

void
hv_text_embeds_clear (HvTextEmbeds *e)
{
  if (!e)
    return;
  hv_tensor_free (e->text_states);
  hv_tensor_free (e->text_states_2);
  g_free (e->text_mask);
  memset (e, 0, sizeof *e);
}

void
hv_text_encoder_free (HvTextEncoder *enc)
{
  if (!enc)
    return;
  hv_llama_free (enc->llama);
  hv_clip_free (enc->clip);
  hv_llama_tokenizer_free (enc->llama_tok);
  hv_clip_tokenizer_free (enc->clip_tok);
  g_free (enc);
}

HvTextEncoder *
hv_text_encoder_new (const char *llama_dir, const char *clip_dir, const char *llama_tokenizer_dir,
                     const char *clip_tokenizer_dir, HvBackend *backend, GError **error)
{
  g_return_val_if_fail (backend, NULL);
  if (!llama_dir || !clip_dir) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "both text encoders (Llama and CLIP folders) are needed");
    return NULL;
  }
  g_autoptr(HvTextEncoder) enc = g_new0 (HvTextEncoder, 1);
  /* tokenizers first: they are quick to fail on a wrong folder */
  const char *ltd = llama_tokenizer_dir ? llama_tokenizer_dir : llama_dir;
  const char *ctd = clip_tokenizer_dir ? clip_tokenizer_dir : clip_dir;
  if (!(enc->llama_tok = hv_llama_tokenizer_new_from_dir (ltd, error)) ||
      !(enc->clip_tok = hv_clip_tokenizer_new_from_dir (ctd, error)))
    return NULL;
  if (!(enc->llama = hv_llama_new (llama_dir, backend, HV_TEXT_SKIP_LAYER, error)) ||
      !(enc->clip = hv_clip_new (clip_dir, backend, error)))
    return NULL;
  return g_steal_pointer (&enc);
}

HvTextEncoder *
hv_text_encoder_new_from_parts (HvLlama *llama, HvClip *clip, HvLlamaTokenizer *llama_tok,
                                HvClipTokenizer *clip_tok, GError **error)
{
  g_return_val_if_fail (llama && clip && llama_tok && clip_tok, NULL);
  g_autoptr(HvTextEncoder) enc = g_new0 (HvTextEncoder, 1);
  enc->llama = llama;
  enc->clip = clip;
  enc->llama_tok = llama_tok;
  enc->clip_tok = clip_tok;
  const HvLlamaConfig *c = hv_llama_get_config (llama);
  if (hv_llama_n_loaded_layers (llama) < c->n_layers - HV_TEXT_SKIP_LAYER) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the Llama encoder needs %d layers loaded, it has %d",
                 c->n_layers - HV_TEXT_SKIP_LAYER, hv_llama_n_loaded_layers (llama));
    return NULL;
  }
  return g_steal_pointer (&enc);
}

int
hv_text_length (HvPromptTemplate tmpl)
{
  /* upstream: max_length = text_len + crop_start(video template) for every data type */
  if (tmpl == HV_PROMPT_TEMPLATE_IMAGE)
    return HV_PROMPT_TEXT_LEN + hv_prompt_template_crop_start (HV_PROMPT_TEMPLATE_VIDEO) -
           hv_prompt_template_crop_start (HV_PROMPT_TEMPLATE_IMAGE);
  return HV_PROMPT_TEXT_LEN;
}

int
hv_text_batch (const char *prompt, const char *negative_prompt, const char *texts[2])
{
  int B = 0;
  if (negative_prompt)
    texts[B++] = negative_prompt;
  texts[B++] = prompt;
  return B;
}

char *
hv_text_strip (const char *s)
{
  const char *b = s, *e = s + strlen (s);
  while (*b && g_unichar_isspace (g_utf8_get_char (b)))
    b = g_utf8_next_char (b);
  while (e > b) {
    const char *p = g_utf8_find_prev_char (b, e);
    if (!p || !g_unichar_isspace (g_utf8_get_char (p)))
      break;
    e = p;
  }
  return g_strndup (b, (gsize) (e - b));
}

gboolean
hv_text_encode_tokens (HvLlama *llama, HvClip *clip, const HvTokenized *const *ltok,
                       const HvTokenized *const *ctok, int B, HvTextEmbeds *out, GError **error)
{
  const int L = ltok[0]->n, crop = ltok[0]->crop_start, Lc = ctok[0]->n;
  g_autofree int32_t *ids = g_new (int32_t, (gsize) B * L);
  g_autofree int32_t *mask = g_new (int32_t, (gsize) B * L);
  g_autofree int32_t *cids = g_new (int32_t, (gsize) B * Lc);
  g_autofree int32_t *cmask = g_new (int32_t, (gsize) B * Lc);
  for (int b = 0; b < B; b++) {
    const HvTokenized *l = ltok[b], *c = ctok[b];
    if (l->n != L || l->crop_start != crop || c->n != Lc) {
      g_set_error (error, HV_ERROR, HV_ERROR_FAILED, "token batches of different lengths");
      return FALSE;
    }
    for (int i = 0; i < L; i++) {
      ids[b * L + i] = (int32_t) l->ids[i];
      mask[b * L + i] = (int32_t) l->mask[i];
    }
    for (int i = 0; i < Lc; i++) {
      cids[b * Lc + i] = (int32_t) c->ids[i];
      cmask[b * Lc + i] = (int32_t) c->mask[i];
    }
    out->truncated |= hv_tokenized_truncated (l) || hv_tokenized_truncated (c);
  }
  g_autoptr(HvTensor) states = hv_llama_encode (llama, ids, mask, B, L, HV_TEXT_SKIP_LAYER, crop, error);
  if (!states)
    return FALSE;
  HvTensor *pooled = hv_clip_forward (clip, cids, cmask, B, Lc, NULL, NULL, NULL, NULL, error);
  if (!pooled)
    return FALSE;
  out->text_states = g_steal_pointer (&states);
  out->text_states_2 = pooled;
  out->batch = B;
  out->length = L - crop;
  out->text_mask = g_new (int32_t, (gsize) B * out->length);
  for (int b = 0; b < B; b++)
    memcpy (out->text_mask + (gsize) b * out->length, mask + (gsize) b * L + crop,
            (gsize) out->length * sizeof (int32_t));
  return TRUE;
}

gboolean
hv_text_encode (HvTextEncoder *enc, const char *prompt, const char *negative_prompt,
                HvPromptTemplate tmpl, HvTextEmbeds *out, GError **error)
{
  g_return_val_if_fail (enc && out, FALSE);
  memset (out, 0, sizeof *out);
  if (!prompt) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "no prompt given");
    return FALSE;
  }
  if (!enc->llama || !enc->clip) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the text encoder was already released");
    return FALSE;
  }
  const char *texts[2];
  const int B = hv_text_batch (prompt, negative_prompt, texts);

  const int text_len = hv_text_length (tmpl);
  HvTokenized *ltok[2] = { NULL, NULL }, *ctok[2] = { NULL, NULL };
  gboolean ok = FALSE;
  for (int b = 0; b < B; b++) {
    if (!g_utf8_validate (texts[b], -1, NULL)) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the prompt is not valid UTF-8");
      goto out;
    }
    g_autofree char *text = hv_text_strip (texts[b]);
    if (!(ltok[b] = hv_prompt_llama_tokens_len (enc->llama_tok, text, tmpl, text_len, error)) ||
        !(ctok[b] = hv_prompt_clip_tokens (enc->clip_tok, text, error)))
      goto out;
  }
  ok = hv_text_encode_tokens (enc->llama, enc->clip, (const HvTokenized *const *) ltok,
                              (const HvTokenized *const *) ctok, B, out, error);
out:
  for (int b = 0; b < 2; b++) {
    hv_tokenized_free (ltok[b]);
    hv_tokenized_free (ctok[b]);
  }
  if (!ok)
    hv_text_embeds_clear (out);
  return ok;
}
