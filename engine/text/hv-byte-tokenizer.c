/* hv-byte-tokenizer.c — byte ids for the tiny model's encoders; see hv-byte-tokenizer.h. */
#include "hv-byte-tokenizer.h"
#include "hv-error.h"
#include <string.h>

/* `n` ids: `head` (len_head ids) then as many of `body`'s bytes as fit before `tail_id` (or no
 * tail when < 0), then `pad`. */
static HvTokenized *
make_tokens (const int32_t *head, int len_head, const guint8 *body, gsize len_body, int32_t tail_id,
             int n, int32_t pad)
{
  HvTokenized *t = g_new0 (HvTokenized, 1);
  t->n = n;
  t->ids = g_new (int64_t, n);
  t->mask = g_new0 (int64_t, n);
  const int room = n - len_head - (tail_id >= 0 ? 1 : 0);
  const int take = (int) MIN ((gsize) MAX (room, 0), len_body);
  int k = 0;
  for (int i = 0; i < len_head && k < n; i++)
    t->ids[k++] = head[i];
  for (int i = 0; i < take; i++)
    t->ids[k++] = (int64_t) body[i] + HV_BYTE_OFFSET;
  if (tail_id >= 0 && k < n)
    t->ids[k++] = tail_id;
  t->n_real = k;
  for (int i = 0; i < k; i++)
    t->mask[i] = 1;
  for (; k < n; k++)
    t->ids[k] = pad;
  t->n_untruncated = len_head + (int) MIN (len_body, (gsize) G_MAXINT / 2) + (tail_id >= 0 ? 1 : 0);
  return t;
}

static gboolean
check_text (const char *s, GError **error)
{
  if (!s || !g_utf8_validate (s, -1, NULL)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the prompt is missing or not valid UTF-8");
    return FALSE;
  }
  return TRUE;
}

HvTokenized *
hv_byte_llama_tokens (const char *prompt, HvPromptTemplate tmpl, int text_len, GError **error)
{
  if (!check_text (prompt, error))
    return NULL;
  if (text_len <= 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "text length must be > 0, got %d", text_len);
    return NULL;
  }
  const char *tpl = hv_prompt_template_text (tmpl);
  const char *hole = tpl ? strstr (tpl, "{}") : NULL;
  const int crop = 1 + (hole ? (int) (hole - tpl) : 0);
  g_autofree char *text = hv_prompt_apply_template (tmpl, prompt);
  const int32_t bos = HV_BYTE_BOS;
  HvTokenized *t = make_tokens (&bos, 1, (const guint8 *) text, strlen (text), -1, crop + text_len,
                                HV_BYTE_PAD);
  t->crop_start = crop;
  return t;
}

HvTokenized *
hv_byte_clip_tokens (const char *prompt, int max_len, GError **error)
{
  if (!check_text (prompt, error))
    return NULL;
  if (max_len < 2) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "CLIP length must be >= 2, got %d", max_len);
    return NULL;
  }
  const int32_t bos = HV_BYTE_BOS;
  return make_tokens (&bos, 1, (const guint8 *) prompt, strlen (prompt), HV_BYTE_EOS, max_len,
                      HV_BYTE_EOS);
}
