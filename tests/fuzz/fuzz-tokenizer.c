/* fuzz-tokenizer.c — libFuzzer harness for the Llama-3 and CLIP tokenizers and the prompt
 * templates. Any input must give ids or a GError, never a crash, hang or leak; and for text
 * that encodes, the two Llama loaders (merge list vs tiktoken ranks) must agree, decoding
 * must give the bytes back, and the CLIP normalisation must equal GLib's NFC + lowercase.
 *
 *   tests/fuzz/run-fuzz.sh 60 tokenizer      (builds with -Dfuzz=true, seeds corpus/tokenizer/)
 *
 * The tokenizer folder (with llama3/ and clip/) comes from $HV_TOKENIZERS, else from
 * HV_TOKENIZERS_DIR given at build time. */
#include "hv-llama-tokenizer.h"
#include "hv-clip-tokenizer.h"
#include "hv-prompt.h"
#include "fuzz-common.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef HV_TOKENIZERS_DIR
#define HV_TOKENIZERS_DIR "tests/data/tokenizers"
#endif

static HvLlamaTokenizer *llama_json, *llama_tiktoken;
static HvClipTokenizer *clip;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_setup ();
  const char *dir = g_getenv ("HV_TOKENIZERS");
  if (!dir)
    dir = HV_TOKENIZERS_DIR;
  g_autofree char *json = g_build_filename (dir, "llama3", "tokenizer.json", NULL);
  g_autofree char *model = g_build_filename (dir, "llama3", "tokenizer.model", NULL);
  g_autofree char *cdir = g_build_filename (dir, "clip", NULL);
  GError *err = NULL;
  if (!(llama_json = hv_llama_tokenizer_new_from_file (json, &err)) ||
      !(llama_tiktoken = hv_llama_tokenizer_new_from_file (model, &err)) ||
      !(clip = hv_clip_tokenizer_new_from_dir (cdir, &err))) {
    g_printerr ("fuzz-tokenizer: %s (set HV_TOKENIZERS)\n", err->message);
    abort ();
  }
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *text = (const char *) data;
  g_autoptr(GArray) a = g_array_new (FALSE, FALSE, sizeof (gint32));
  g_autoptr(GArray) b = g_array_new (FALSE, FALSE, sizeof (gint32));
  g_autoptr(GArray) c = g_array_new (FALSE, FALSE, sizeof (gint32));
  g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL;
  gboolean ok1 = hv_llama_tokenizer_encode (llama_json, text, (gssize) size, FALSE, a, &e1);
  gboolean ok2 = hv_llama_tokenizer_encode (llama_tiktoken, text, (gssize) size, FALSE, b, &e2);
  gboolean ok3 = hv_clip_tokenizer_encode (clip, text, (gssize) size, TRUE, c, &e3);
  if (ok1 != ok2 || ok1 != ok3 || (!ok1 && (!e1 || !e2 || !e3)))
    abort ();   /* all three validate the same way */
  if (ok1) {
    if (a->len != b->len || (a->len && memcmp (a->data, b->data, a->len * sizeof (gint32)) != 0))
      abort ();   /* the two Llama loaders disagree */
    gsize n;
    g_autofree char *back = hv_llama_tokenizer_decode (llama_json, (const gint32 *) a->data,
                                                       a->len, &n, NULL);
    if (!back || n != size || (size && memcmp (back, data, size) != 0))
      abort ();   /* bytes lost or changed */
  }
  /* our linear NFC + lowercase against GLib's (quadratic, so short inputs only) */
  if (ok1 && size < 512) {
    g_autofree char *ours = hv_clip_normalize (text, (gssize) size);
    g_autofree char *nfc = g_utf8_normalize (text, (gssize) size, G_NORMALIZE_NFC);
    g_autoptr(GString) ref = g_string_new (NULL);
    for (const char *p = nfc; p && *p; p = g_utf8_next_char (p)) {
      gunichar ch = g_utf8_get_char (p);
      if (ch == 0x130)
        g_string_append (ref, "i\xcc\x87");
      else
        g_string_append_unichar (ref, g_unichar_tolower (ch));
    }
    if (!ours || !nfc || strcmp (ours, ref->str) != 0)
      abort ();
  }
  /* the prompt path (NUL-terminated, so text up to the first NUL) */
  g_autofree char *prompt = g_strndup (text, size);
  g_autoptr(HvTokenized) t = hv_prompt_llama_tokens (llama_tiktoken, prompt,
                                                     HV_PROMPT_TEMPLATE_VIDEO, NULL);
  g_autoptr(HvTokenized) u = hv_prompt_clip_tokens (clip, prompt, NULL);
  if ((t == NULL) != (u == NULL))
    abort ();
  if (t && (t->n != HV_PROMPT_TEXT_LEN + 95 || u->n != HV_PROMPT_CLIP_LEN ||
            t->n_real > t->n || u->n_real > u->n || u->ids[0] != 49406))
    abort ();
  return 0;
}
