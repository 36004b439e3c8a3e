/* hv-prompt.c — templates (verbatim from upstream hyvideo/constants.py PROMPT_TEMPLATE) and
 * fixed-length, padded, masked token batches. See hv-prompt.h. */
#include "hv-prompt.h"
#include "hv-error.h"
#include <string.h>

static const char video_template[] =
  "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following "
  "aspects: 1. The main content and theme of the video.2. The color, shape, size, texture, "
  "quantity, text, and spatial relationships of the objects.3. Actions, events, behaviors "
  "temporal relationships, physical movement changes of the objects.4. background environment, "
  "light, style and atmosphere.5. camera angles, movements, and transitions used in the video:"
  "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>";

static const char image_template[] =
  "<|start_header_id|>system<|end_header_id|>\n\nDescribe the image by detailing the color, "
  "shape, size, texture, quantity, text, spatial relationships of the objects and background:"
  "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>";

const char *
hv_prompt_template_text (HvPromptTemplate tmpl)
{
  switch (tmpl) {
  case HV_PROMPT_TEMPLATE_VIDEO: return video_template;
  case HV_PROMPT_TEMPLATE_IMAGE: return image_template;
  default: return NULL;
  }
}

int
hv_prompt_template_crop_start (HvPromptTemplate tmpl)
{
  /* the template's tokens before "{}", BOS included (checked by the tokens fixture) */
  switch (tmpl) {
  case HV_PROMPT_TEMPLATE_VIDEO: return 95;
  case HV_PROMPT_TEMPLATE_IMAGE: return 36;
  default: return 0;
  }
}

char *
hv_prompt_apply_template (HvPromptTemplate tmpl, const char *prompt)
{
  const char *t = hv_prompt_template_text (tmpl);
  if (!prompt)
    prompt = "";
  if (!t)
    return g_strdup (prompt);
  const char *hole = strstr (t, "{}");
  return g_strdup_printf ("%.*s%s%s", (int) (hole - t), t, prompt, hole + 2);
}

void
hv_tokenized_free (HvTokenized *t)
{
  if (!t)
    return;
  g_free (t->ids);
  g_free (t->mask);
  g_free (t);
}

int
hv_tokenized_crop (const HvTokenized *t, const int64_t **ids, const int64_t **mask)
{
  if (ids)
    *ids = t->ids + t->crop_start;
  if (mask)
    *mask = t->mask + t->crop_start;
  return t->n - t->crop_start;
}

gboolean
hv_tokenized_truncated (const HvTokenized *t)
{
  return t->n_untruncated > t->n;
}

/* ids[0..n_ids) cut to `len` (keeping `keep_last` at the end, for CLIP's EOS) and padded. */
static HvTokenized *
pack (const gint32 *ids, int n_ids, int len, int crop_start, gint32 pad, int keep_last)
{
  HvTokenized *t = g_new0 (HvTokenized, 1);
  t->n = len;
  t->crop_start = crop_start;
  t->n_untruncated = n_ids;
  t->ids = g_new (int64_t, len);
  t->mask = g_new0 (int64_t, len);
  int n_real = MIN (n_ids, len);
  int head = n_ids > len ? len - keep_last : n_real;
  for (int i = 0; i < head; i++)
    t->ids[i] = ids[i];
  for (int i = head; i < n_real; i++)   /* the kept tail (n_ids > len only) */
    t->ids[i] = ids[n_ids - (n_real - i)];
  for (int i = n_real; i < len; i++)
    t->ids[i] = pad;
  for (int i = 0; i < n_real; i++)
    t->mask[i] = 1;
  t->n_real = n_real;
  return t;
}

HvTokenized *
hv_prompt_llama_tokens_len (HvLlamaTokenizer *tok, const char *prompt, HvPromptTemplate tmpl,
                            int text_len, GError **error)
{
  if (text_len <= 0 || text_len > (1 << 20)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "text length %d is out of range", text_len);
    return NULL;
  }
  if (hv_llama_tokenizer_pad (tok) < 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the Llama tokenizer has no <pad> token");
    return NULL;
  }
  g_autofree char *text = hv_prompt_apply_template (tmpl, prompt);
  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  if (!hv_llama_tokenizer_encode (tok, text, -1, TRUE, ids, error))
    return NULL;
  if (ids->len > G_MAXINT / 2) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "prompt is too long");
    return NULL;
  }
  int crop = hv_prompt_template_crop_start (tmpl);
  return pack ((const gint32 *) ids->data, (int) ids->len, text_len + crop, crop,
               hv_llama_tokenizer_pad (tok), 0);
}

HvTokenized *
hv_prompt_llama_tokens (HvLlamaTokenizer *tok, const char *prompt, HvPromptTemplate tmpl,
                        GError **error)
{
  return hv_prompt_llama_tokens_len (tok, prompt, tmpl, HV_PROMPT_TEXT_LEN, error);
}

HvTokenized *
hv_prompt_clip_tokens_len (HvClipTokenizer *tok, const char *prompt, int max_len,
                           GError **error)
{
  if (max_len < 2 || max_len > (1 << 20)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "CLIP length %d is out of range", max_len);
    return NULL;
  }
  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  if (!hv_clip_tokenizer_encode (tok, prompt ? prompt : "", -1, TRUE, ids, error))
    return NULL;
  if (ids->len > G_MAXINT / 2) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "prompt is too long");
    return NULL;
  }
  /* BOS + first max_len-2 + EOS: truncation happens before the specials are added */
  return pack ((const gint32 *) ids->data, (int) ids->len, max_len, 0,
               hv_clip_tokenizer_pad (tok), 1);
}

HvTokenized *
hv_prompt_clip_tokens (HvClipTokenizer *tok, const char *prompt, GError **error)
{
  return hv_prompt_clip_tokens_len (tok, prompt, HV_PROMPT_CLIP_LEN, error);
}
