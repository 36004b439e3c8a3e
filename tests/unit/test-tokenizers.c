/* test-tokenizers.c — edge cases of the Llama-3 and CLIP tokenizers and the prompt templates
 * (the tokens fixture covers the reference ids of 45 prompts).
 *
 * Tokenizer files: $HV_TOKENIZERS (a folder with llama3/ and clip/), set by meson. */
#include "hv-bpe.h"
#include "hv-llama-tokenizer.h"
#include "hv-clip-tokenizer.h"
#include "hv-prompt.h"
#include "hv-error.h"
#include <glib/gstdio.h>
#include <string.h>

static HvLlamaTokenizer *llama_json, *llama_tiktoken;
static HvClipTokenizer *clip_files, *clip_gz;

static const char *
tokenizers_dir (void)
{
  const char *d = g_getenv ("HV_TOKENIZERS");
  return d ? d : "tests/data/tokenizers";
}

static GArray *
ids_new (void)
{
  return g_array_new (FALSE, FALSE, sizeof (gint32));
}

static GArray *
llama_ids (HvLlamaTokenizer *tok, const char *s, gssize len, gboolean bos)
{
  g_autoptr(GError) err = NULL;
  GArray *ids = ids_new ();
  g_assert_true (hv_llama_tokenizer_encode (tok, s, len, bos, ids, &err));
  g_assert_no_error (err);
  return ids;
}

static GArray *
clip_ids (HvClipTokenizer *tok, const char *s)
{
  g_autoptr(GError) err = NULL;
  GArray *ids = ids_new ();
  g_assert_true (hv_clip_tokenizer_encode (tok, s, -1, TRUE, ids, &err));
  g_assert_no_error (err);
  return ids;
}

static void
assert_same_ids (GArray *a, GArray *b)
{
  g_assert_cmpuint (a->len, ==, b->len);
  for (guint i = 0; i < a->len; i++)
    g_assert_cmpint (g_array_index (a, gint32, i), ==, g_array_index (b, gint32, i));
}

/* decode(encode(s)) == s, and both Llama loaders give the same ids */
static void
assert_llama_roundtrip (const char *s, gssize len)
{
  gsize n = len < 0 ? strlen (s) : (gsize) len;
  g_autoptr(GArray) a = llama_ids (llama_json, s, len, FALSE);
  g_autoptr(GArray) b = llama_ids (llama_tiktoken, s, len, FALSE);
  assert_same_ids (a, b);
  gsize dl;
  g_autoptr(GError) err = NULL;
  g_autofree char *back = hv_llama_tokenizer_decode (llama_json, (gint32 *) a->data, a->len, &dl, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (dl, ==, n);
  g_assert_true (memcmp (back, s, n) == 0);
}

/* ---- byte map and BPE core ---- */

static void
test_byte_map (void)
{
  gboolean seen[256] = { FALSE };
  for (int b = 0; b < 256; b++) {
    gunichar c = hv_bpe_byte_char ((guint8) b);
    g_assert_true (g_unichar_isgraph (c));
    g_assert_cmpint (hv_bpe_char_byte (c), ==, b);
    guint8 o = hv_bpe_byte_at (b);
    g_assert_false (seen[o]);
    seen[o] = TRUE;
  }
  g_assert_cmpuint (hv_bpe_byte_char (' '), ==, 0x120);   /* GPT-2's 'Ġ' */
  g_assert_cmpuint (hv_bpe_byte_char ('\n'), ==, 0x10A);  /* 'Ċ' */
  g_assert_cmpint (hv_bpe_byte_at (0), ==, '!');
  g_assert_cmpint (hv_bpe_char_byte (0x4E00), ==, -1);
}

static void
add (HvBpe *b, const char *key, gint32 id)
{
  g_autoptr(GError) err = NULL;
  g_assert_true (hv_bpe_add_token (b, key, strlen (key), id, &err));
  g_assert_no_error (err);
}

static gsize
merge_str (HvBpe *b, const char *s, gint32 *out)
{
  gsize n = strlen (s);
  for (gsize i = 0; i < n; i++)
    out[i] = hv_bpe_lookup (b, s + i, 1);
  return hv_bpe_merge (b, out, n);
}

static void
test_bpe_core (void)
{
  /* merges mode: the merge list order decides, not the ids */
  g_autoptr(HvBpe) m = hv_bpe_new (HV_BPE_MERGE_RANKS);
  add (m, "a", 0);
  add (m, "b", 1);
  add (m, "c", 2);
  add (m, "ab", 3);
  add (m, "bc", 4);
  add (m, "abc", 5);
  g_autoptr(GError) err = NULL;
  g_assert_true (hv_bpe_add_merge (m, "b", 1, "c", 1, 0, &err));   /* bc first */
  g_assert_true (hv_bpe_add_merge (m, "a", 1, "b", 1, 1, &err));
  g_assert_true (hv_bpe_add_merge (m, "a", 1, "bc", 2, 2, &err));
  gint32 out[16];
  g_assert_cmpuint (merge_str (m, "abc", out), ==, 1);
  g_assert_cmpint (out[0], ==, 5);
  g_assert_cmpuint (merge_str (m, "abab", out), ==, 2);
  g_assert_cmpint (out[0], ==, 3);
  g_assert_cmpint (out[1], ==, 3);
  /* a merge naming an unknown token is a corrupt file */
  g_assert_false (hv_bpe_add_merge (m, "c", 1, "c", 1, 3, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_CORRUPT);
  g_clear_error (&err);
  /* duplicate key or id */
  g_assert_false (hv_bpe_add_token (m, "ab", 2, 9, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_CORRUPT);
  g_clear_error (&err);
  g_assert_false (hv_bpe_add_token (m, "zz", 2, 0, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_CORRUPT);
  g_clear_error (&err);

  /* tiktoken mode: the rank of the concatenation decides; leftmost on ties */
  g_autoptr(HvBpe) t = hv_bpe_new (HV_BPE_TOKEN_RANKS);
  add (t, "a", 10);
  add (t, "b", 11);
  add (t, "c", 12);
  add (t, "ab", 1);
  add (t, "bc", 0);
  add (t, "aa", 2);
  g_assert_cmpuint (merge_str (t, "abc", out), ==, 2);   /* bc (rank 0) before ab */
  g_assert_cmpint (out[0], ==, 10);
  g_assert_cmpint (out[1], ==, 0);
  g_assert_cmpuint (merge_str (t, "aaa", out), ==, 2);   /* leftmost pair merges */
  g_assert_cmpint (out[0], ==, 2);
  g_assert_cmpint (out[1], ==, 10);
}

/* ---- Llama ---- */

static void
test_llama_basics (void)
{
  g_assert_cmpint (hv_llama_tokenizer_bos (llama_json), ==, 128000);
  g_assert_cmpint (hv_llama_tokenizer_pad (llama_json), ==, 128258);
  g_assert_cmpint (hv_llama_tokenizer_pad (llama_tiktoken), ==, 128258);
  g_assert_cmpint (hv_llama_tokenizer_special (llama_tiktoken, "<|eot_id|>"), ==, 128009);
  g_assert_cmpint (hv_llama_tokenizer_special (llama_tiktoken, "<|reserved_special_token_250|>"), ==, 128255);
  g_assert_cmpint (hv_llama_tokenizer_special (llama_json, "<image>"), ==, 128257);
  g_assert_cmpint (hv_llama_tokenizer_vocab_end (llama_json), ==, 128259);
  g_assert_cmpint (hv_llama_tokenizer_vocab_end (llama_tiktoken), ==, 128259);
  g_assert_cmpstr (hv_llama_tokenizer_format (llama_json), ==, "tokenizer.json");
  g_assert_cmpstr (hv_llama_tokenizer_format (llama_tiktoken), ==, "tiktoken");

  g_autoptr(GArray) e = llama_ids (llama_json, "", -1, FALSE);
  g_assert_cmpuint (e->len, ==, 0);
  g_autoptr(GArray) eb = llama_ids (llama_json, "", -1, TRUE);
  g_assert_cmpuint (eb->len, ==, 1);
  g_assert_cmpint (g_array_index (eb, gint32, 0), ==, 128000);
}

static void
test_llama_special_text (void)
{
  for (int k = 0; k < 2; k++) {
    HvLlamaTokenizer *tok = k ? llama_tiktoken : llama_json;
    g_autoptr(GArray) a = llama_ids (tok, "<|eot_id|><pad><image><|begin_of_text|>", -1, FALSE);
    gint32 want[] = { 128009, 128258, 128257, 128000 };
    g_assert_cmpuint (a->len, ==, G_N_ELEMENTS (want));
    for (guint i = 0; i < a->len; i++)
      g_assert_cmpint (g_array_index (a, gint32, i), ==, want[i]);
    /* an unfinished name is plain text */
    g_autoptr(GArray) b = llama_ids (tok, "x<|eot_id", -1, FALSE);
    for (guint i = 0; i < b->len; i++)
      g_assert_cmpint (g_array_index (b, gint32, i), <, 128000);
  }
  assert_llama_roundtrip ("say <|eot_id|> then<|start_header_id|>user<|end_header_id|>\n\nhi", -1);
}

static void
test_llama_roundtrip (void)
{
  const char *cases[] = {
    "A cat walks on the grass, realistic style.",
    "一只猫在草地上行走，写实风格。 Кошка идёт. Η γάτα. القطة. बिल्ली. แมว",
    "👨\u200d👩\u200d👧 family 👍🏽 🏳️\u200d🌈 ❤️ e\u0301 \u00a0\u2003\u3000",
    "IT'S THE CAT'S TOY, they'RE here 1234567 3.14159 \r\n\r\n\t\t  x   ",
    "\xf4\x8f\xbf\xbf max code point, \xc2\x80 C1 control, \x01\x1f\x7f",
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_llama_roundtrip (cases[i], -1);
}

/* Deterministic pseudo-random strings from a mixed alphabet: both loaders (different merge
 * strategies) must agree, and decoding gives the text back. */
static void
test_llama_random_agreement (void)
{
  static const char *const alphabet[] = {
    "a", "e", "t", "s", "T", "'", "'s", " ", "  ", "\n", "\r\n", "\t", "1", "42", ".", ",",
    "!?", "é", "ß", "Σ", "猫", "の", "🐶", "\u200d", "\u00a0", "<", "|", ">", "_", "-", "ing",
    "the", "Hello", "<|eot_id|>",
  };
  GRand *r = g_rand_new_with_seed (1234);
  for (int k = 0; k < 300; k++) {
    g_autoptr(GString) s = g_string_new (NULL);
    int len = g_rand_int_range (r, 0, 60);
    for (int i = 0; i < len; i++)
      g_string_append (s, alphabet[g_rand_int_range (r, 0, G_N_ELEMENTS (alphabet))]);
    assert_llama_roundtrip (s->str, (gssize) s->len);
  }
  g_rand_free (r);
}

/* Hostile sizes: the merge loop is O(n log n) and the regex linear on these. */
static void
test_llama_long_pieces (void)
{
  gsize n = 200000;
  g_autofree char *a = g_malloc (n + 1);
  memset (a, 'a', n);
  a[n] = '\0';
  gint64 t0 = g_get_monotonic_time ();
  assert_llama_roundtrip (a, -1);
  memset (a, ' ', n);
  assert_llama_roundtrip (a, -1);
  memset (a, '\n', n);
  assert_llama_roundtrip (a, -1);
  memset (a, '7', n);
  assert_llama_roundtrip (a, -1);
  g_test_message ("4 x 200000-byte pieces, both loaders: %.0f ms",
                  (g_get_monotonic_time () - t0) / 1e3);
}

static void
test_invalid_utf8 (void)
{
  const char *bad[] = { "abc\xff", "\xc3", "\xed\xa0\x80 surrogate", "\xc0\xaf overlong" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(GArray) ids = ids_new ();
    gint32 keep = 7;
    g_array_append_val (ids, keep);
    g_assert_false (hv_llama_tokenizer_encode (llama_json, bad[i], -1, TRUE, ids, &err));
    g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
    g_assert_cmpuint (ids->len, ==, 1);
    g_clear_error (&err);
    g_assert_false (hv_clip_tokenizer_encode (clip_files, bad[i], -1, TRUE, ids, &err));
    g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
    g_assert_cmpuint (ids->len, ==, 1);
    g_clear_error (&err);
    g_assert_null (hv_prompt_llama_tokens (llama_tiktoken, bad[i], HV_PROMPT_TEMPLATE_VIDEO, &err));
    g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
    g_clear_error (&err);
    g_assert_null (hv_prompt_clip_tokens (clip_gz, bad[i], &err));
    g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
  }
  /* an embedded NUL (explicit length) is refused too */
  g_autoptr(GError) err = NULL;
  g_autoptr(GArray) ids = ids_new ();
  g_assert_false (hv_llama_tokenizer_encode (llama_json, "a\0b", 3, FALSE, ids, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
}

/* ---- prompt templates ---- */

static void
test_prompt_empty (void)
{
  for (int k = 0; k < 2; k++) {
    HvPromptTemplate tm = k ? HV_PROMPT_TEMPLATE_IMAGE : HV_PROMPT_TEMPLATE_VIDEO;
    g_autoptr(GError) err = NULL;
    g_autoptr(HvTokenized) t = hv_prompt_llama_tokens (llama_json, "", tm, &err);
    g_assert_no_error (err);
    int crop = hv_prompt_template_crop_start (tm);
    g_assert_cmpint (t->crop_start, ==, crop);
    g_assert_cmpint (t->n, ==, HV_PROMPT_TEXT_LEN + crop);
    /* the prefix, then only <|eot_id|> */
    g_assert_cmpint (t->n_real, ==, crop + 1);
    g_assert_cmpint (t->ids[0], ==, 128000);
    g_assert_cmpint (t->ids[crop - 1], ==, 271);   /* "\n\n" */
    g_assert_cmpint (t->ids[crop], ==, 128009);
    for (int i = 0; i < t->n; i++) {
      g_assert_cmpint (t->mask[i], ==, i < t->n_real);
      if (i >= t->n_real)
        g_assert_cmpint (t->ids[i], ==, 128258);
    }
    const int64_t *ci, *cm;
    g_assert_cmpint (hv_tokenized_crop (t, &ci, &cm), ==, HV_PROMPT_TEXT_LEN);
    g_assert_cmpint (ci[0], ==, 128009);
    g_assert_cmpint (cm[0], ==, 1);
    g_assert_cmpint (cm[1], ==, 0);
    g_assert_false (hv_tokenized_truncated (t));
  }
  g_autoptr(GError) err = NULL;
  g_autoptr(HvTokenized) c = hv_prompt_clip_tokens (clip_files, "", &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->n, ==, 77);
  g_assert_cmpint (c->n_real, ==, 2);
  g_assert_cmpint (c->ids[0], ==, 49406);
  for (int i = 1; i < 77; i++)
    g_assert_cmpint (c->ids[i], ==, 49407);
  g_assert_cmpint (c->mask[1], ==, 1);
  g_assert_cmpint (c->mask[2], ==, 0);
}

/* The prefix of each template (with BOS) is crop_start tokens: the crop drops exactly it. */
static void
test_prompt_prefix_length (void)
{
  for (int k = 0; k < 2; k++) {
    HvPromptTemplate tm = k ? HV_PROMPT_TEMPLATE_IMAGE : HV_PROMPT_TEMPLATE_VIDEO;
    const char *tpl = hv_prompt_template_text (tm);
    const char *hole = strstr (tpl, "{}");
    g_assert_nonnull (hole);
    g_autoptr(GArray) p = llama_ids (llama_tiktoken, tpl, hole - tpl, TRUE);
    g_assert_cmpint ((int) p->len, ==, hv_prompt_template_crop_start (tm));
  }
  g_autofree char *s = hv_prompt_apply_template (HV_PROMPT_TEMPLATE_IMAGE, "{x} {}");
  g_assert_true (g_str_has_suffix (s, "\n\n{x} {}<|eot_id|>"));
  g_autofree char *none = hv_prompt_apply_template (HV_PROMPT_TEMPLATE_NONE, "plain");
  g_assert_cmpstr (none, ==, "plain");
  g_assert_true (g_str_has_prefix (HV_PROMPT_NEGATIVE_DEFAULT, "Aerial view, aerial view,"));
}

/* Tokenizing the whole templated string: leading whitespace merges into the template's last
 * token, so the prefix changes and the result differs from tokenizing the pieces. */
static void
test_prompt_leading_whitespace (void)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(HvTokenized) t = hv_prompt_llama_tokens (llama_json, "\nA cat", HV_PROMPT_TEMPLATE_VIDEO, &err);
  g_assert_no_error (err);
  g_assert_cmpint (t->ids[94], !=, 271);   /* "\n\n\n" is one token, not "\n\n" + "\n" */
  g_autofree char *text = hv_prompt_apply_template (HV_PROMPT_TEMPLATE_VIDEO, "\nA cat");
  g_autoptr(GArray) whole = llama_ids (llama_json, text, -1, TRUE);
  g_assert_cmpint (t->n_real, ==, (int) whole->len);
  for (guint i = 0; i < whole->len; i++)
    g_assert_cmpint (t->ids[i], ==, g_array_index (whole, gint32, i));
  /* pieces tokenized apart give other ids */
  const char *tpl = hv_prompt_template_text (HV_PROMPT_TEMPLATE_VIDEO);
  g_autoptr(GArray) pieces = llama_ids (llama_json, tpl, strstr (tpl, "{}") - tpl, TRUE);
  g_autoptr(GArray) rest = llama_ids (llama_json, "\nA cat<|eot_id|>", -1, FALSE);
  g_array_append_vals (pieces, rest->data, rest->len);
  gboolean differs = pieces->len != whole->len;
  for (guint i = 0; !differs && i < whole->len; i++)
    differs = g_array_index (pieces, gint32, i) != g_array_index (whole, gint32, i);
  g_assert_true (differs);
  /* a leading space on a word merges with the word, not the template */
  g_autoptr(HvTokenized) sp = hv_prompt_llama_tokens (llama_json, " cat", HV_PROMPT_TEMPLATE_VIDEO, &err);
  g_assert_cmpint (sp->ids[94], ==, 271);
  g_autoptr(GArray) space_cat = llama_ids (llama_json, " cat", -1, FALSE);
  g_assert_cmpuint (space_cat->len, ==, 1);
  g_assert_cmpint (sp->ids[95], ==, g_array_index (space_cat, gint32, 0));
}

static void
test_prompt_truncation (void)
{
  g_autoptr(GString) s = g_string_new (NULL);
  for (int i = 0; i < 400; i++)
    g_string_append_printf (s, "word%d ", i);
  for (int k = 0; k < 2; k++) {
    HvPromptTemplate tm = k ? HV_PROMPT_TEMPLATE_IMAGE : HV_PROMPT_TEMPLATE_VIDEO;
    g_autoptr(GError) err = NULL;
    g_autoptr(HvTokenized) t = hv_prompt_llama_tokens (llama_json, s->str, tm, &err);
    g_assert_no_error (err);
    int crop = hv_prompt_template_crop_start (tm);
    g_assert_cmpint (t->n, ==, 256 + crop);
    g_assert_cmpint (t->n_real, ==, t->n);
    g_assert_true (hv_tokenized_truncated (t));
    g_autofree char *text = hv_prompt_apply_template (tm, s->str);
    g_autoptr(GArray) full = llama_ids (llama_json, text, -1, TRUE);
    g_assert_cmpint (t->n_untruncated, ==, (int) full->len);
    g_assert_cmpint ((int) full->len, >, t->n);
    for (int i = 0; i < t->n; i++) {   /* the head is kept, no EOS/eot forced at the end */
      g_assert_cmpint (t->ids[i], ==, g_array_index (full, gint32, i));
      g_assert_cmpint (t->mask[i], ==, 1);
    }
  }
  /* another text_len */
  g_autoptr(GError) err = NULL;
  g_autoptr(HvTokenized) t8 = hv_prompt_llama_tokens_len (llama_json, "a b c d e f g h i j", HV_PROMPT_TEMPLATE_NONE, 8, &err);
  g_assert_no_error (err);
  g_assert_cmpint (t8->n, ==, 8);
  g_assert_cmpint (t8->ids[0], ==, 128000);
  g_assert_null (hv_prompt_llama_tokens_len (llama_json, "x", HV_PROMPT_TEMPLATE_NONE, 0, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_INVALID);
}

/* ---- CLIP ---- */

static void
test_clip_truncation (void)
{
  g_autoptr(GString) s = g_string_new (NULL);
  for (int i = 0; i < 120; i++)
    g_string_append (s, "cat ");
  g_autoptr(GArray) full = clip_ids (clip_files, s->str);
  g_assert_cmpuint (full->len, ==, 122);
  for (int k = 0; k < 2; k++) {
    g_autoptr(GError) err = NULL;
    g_autoptr(HvTokenized) t = hv_prompt_clip_tokens (k ? clip_gz : clip_files, s->str, &err);
    g_assert_no_error (err);
    g_assert_cmpint (t->n, ==, 77);
    g_assert_cmpint (t->n_real, ==, 77);
    g_assert_true (hv_tokenized_truncated (t));
    g_assert_cmpint (t->ids[0], ==, 49406);
    g_assert_cmpint (t->ids[76], ==, 49407);
    for (int i = 1; i < 76; i++)
      g_assert_cmpint (t->ids[i], ==, g_array_index (full, gint32, i));
  }
}

static void
test_clip_normalisation (void)
{
  /* NFC, lowercase, whitespace: all these give the same ids */
  g_autoptr(GArray) a = clip_ids (clip_files, "café crème");
  const char *same[] = { "Cafe\u0301 CRÈME", "  café\t\n crème  ", "CAFÉ\u00a0crème" };
  for (guint i = 0; i < G_N_ELEMENTS (same); i++) {
    g_autoptr(GArray) b = clip_ids (clip_files, same[i]);
    assert_same_ids (a, b);
    g_autoptr(GArray) c = clip_ids (clip_gz, same[i]);
    assert_same_ids (a, c);
  }
  /* Greek capital sigma lowercases per char (σ), with no final-ς rule */
  g_autoptr(GArray) s1 = clip_ids (clip_files, "ΟΔΟΣ");
  g_autoptr(GArray) s2 = clip_ids (clip_files, "οδοσ");
  assert_same_ids (s1, s2);
  g_autoptr(GArray) i1 = clip_ids (clip_files, "İ");
  g_autoptr(GArray) i2 = clip_ids (clip_files, "i\u0307");
  assert_same_ids (i1, i2);
  /* the last symbol of a word carries </w>; specials in the text are recognised */
  g_autoptr(GArray) w = clip_ids (clip_files, "cat<|endoftext|>");
  g_assert_cmpuint (w->len, ==, 4);
  gsize kl;
  const char *key = hv_clip_tokenizer_token (clip_files, g_array_index (w, gint32, 1), &kl);
  g_assert_nonnull (key);
  g_assert_cmpmem (key, kl, "cat</w>", 7);
  g_assert_cmpint (g_array_index (w, gint32, 2), ==, 49407);
}

/* Our linear NFC + lowercase equals GLib's g_utf8_normalize (then per-char lowercase) on
 * random strings of composing, reordering, Hangul and singleton-decomposing characters. */
static void
test_clip_nfc (void)
{
  static const char *const alphabet[] = {
    "e", "E", "A", " ", "\u00e9", "\u0301", "\u0327", "\u0323", "\u0308", "\u0344", "\u031b",
    "\uac00", "\u1100", "\u1161", "\u11a8", "\u212b", "\u2126", "\u0958", "\u0130", "\u03a3",
    "\u0390", "\u1e15", "\u0f73", "\u3099", "\u304b", "\u05b8", "\u0591",
  };
  GRand *r = g_rand_new_with_seed (99);
  for (int k = 0; k < 2000; k++) {
    g_autoptr(GString) s = g_string_new (NULL);
    int len = g_rand_int_range (r, 0, 24);
    for (int i = 0; i < len; i++)
      g_string_append (s, alphabet[g_rand_int_range (r, 0, G_N_ELEMENTS (alphabet))]);
    g_autofree char *ref_nfc = g_utf8_normalize (s->str, -1, G_NORMALIZE_NFC);
    g_autoptr(GString) ref = g_string_new (NULL);
    for (const char *p = ref_nfc; *p; p = g_utf8_next_char (p)) {
      gunichar c = g_utf8_get_char (p);
      if (c == 0x130)
        g_string_append (ref, "i\u0307");
      else
        g_string_append_unichar (ref, g_unichar_tolower (c));
    }
    g_autofree char *ours = hv_clip_normalize (s->str, -1);
    g_assert_cmpstr (ours, ==, ref->str);
  }
  g_rand_free (r);
  /* linear: 300000 composing pairs and a 100000-mark run take well under a second */
  g_autoptr(GString) big = g_string_new (NULL);
  for (int i = 0; i < 300000; i++)
    g_string_append (big, i % 2 ? "e\u0301" : "\u00e9");
  for (int i = 0; i < 100000; i++)
    g_string_append (big, i % 3 ? "\u0327" : "\u0301");
  gint64 t0 = g_get_monotonic_time ();
  g_autofree char *n = hv_clip_normalize (big->str, (gssize) big->len);
  g_assert_nonnull (n);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 5 * G_USEC_PER_SEC);
  g_assert_true (g_str_has_prefix (n, "\u00e9\u00e9\u00e9"));
}

/* ---- loading errors ---- */

static void
test_load_errors (void)
{
  g_autoptr(GError) err = NULL;
  g_assert_null (hv_llama_tokenizer_new_from_dir ("/nonexistent/hv-tok", &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_NOT_FOUND);
  g_clear_error (&err);
  g_assert_null (hv_clip_tokenizer_new_from_dir ("/nonexistent/hv-tok", &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_NOT_FOUND);
  g_clear_error (&err);

  g_autofree char *dir = g_dir_make_tmp ("hv-tok-XXXXXX", &err);
  g_assert_no_error (err);
  g_autofree char *model = g_build_filename (dir, "tokenizer.model", NULL);
  g_autofree char *json = g_build_filename (dir, "tokenizer.json", NULL);
  g_autofree char *vocab = g_build_filename (dir, "vocab.json", NULL);
  g_autofree char *merges = g_build_filename (dir, "merges.txt", NULL);
  g_autofree char *gz = g_build_filename (dir, "bpe_simple_vocab_16e6.txt.gz", NULL);
  const struct { const char *path, *text; } bad_llama[] = {
    { model, "not base64!! 0\n" },
    { model, "YQ== 0\nYg== x\n" },
    { model, "YQ== 0\nYQ== 1\n" },              /* repeated token */
    { model, "YQ== 0\nYg== 1\n" },              /* no token for most bytes */
    { json, "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [" },
    { json, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}, \"merges\": []}}" },
    { json, "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}" },
    { json, "{\"model\": {\"vocab\": {\"a b\": 0}, \"merges\": []}}" },   /* not byte-level */
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad_llama); i++) {
    g_assert_true (g_file_set_contents (bad_llama[i].path, bad_llama[i].text, -1, NULL));
    g_assert_null (hv_llama_tokenizer_new_from_file (bad_llama[i].path, &err));
    g_assert_nonnull (err);
    g_assert_true (err->domain == HV_ERROR);
    g_assert_true (err->code == HV_ERROR_CORRUPT || err->code == HV_ERROR_UNSUPPORTED);
    g_test_message ("bad llama file %u: %s", i, err->message);
    g_clear_error (&err);
  }
  g_assert_true (g_file_set_contents (vocab, "{\"a\": 0, \"b\": 1}", -1, NULL));
  g_assert_true (g_file_set_contents (merges, "#version: 0.2\na b\n", -1, NULL));
  g_assert_null (hv_clip_tokenizer_new_from_files (vocab, merges, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_CORRUPT);
  g_clear_error (&err);
  g_assert_true (g_file_set_contents (gz, "\x1f\x8b\x08\x00garbage", 12, NULL));
  g_assert_null (hv_clip_tokenizer_new_from_bpe_gz (gz, &err));
  g_assert_error (err, HV_ERROR, HV_ERROR_CORRUPT);
  g_clear_error (&err);
  g_remove (model);
  g_remove (json);
  g_remove (vocab);
  g_remove (merges);
  g_remove (gz);
  g_rmdir (dir);
}

/* ---- threads share one tokenizer (the piece cache is locked) ---- */

static gpointer
encode_many (gpointer data)
{
  GArray *out = ids_new ();
  for (int i = 0; i < 50; i++) {
    g_autofree char *s = g_strdup_printf ("thread %d run %d: a cat walks, 猫が歩く %d", GPOINTER_TO_INT (data), i, i * 7919);
    g_assert_true (hv_llama_tokenizer_encode (llama_tiktoken, s, -1, TRUE, out, NULL));
  }
  return out;
}

static void
test_threads (void)
{
  GThread *th[4];
  for (int i = 0; i < 4; i++)
    th[i] = g_thread_new ("tok", encode_many, GINT_TO_POINTER (i % 2));
  GArray *r[4];
  for (int i = 0; i < 4; i++)
    r[i] = g_thread_join (th[i]);
  assert_same_ids (r[0], r[2]);
  assert_same_ids (r[1], r[3]);
  for (int i = 0; i < 4; i++)
    g_array_unref (r[i]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr(GError) err = NULL;
  g_autofree char *l3 = g_build_filename (tokenizers_dir (), "llama3", NULL);
  g_autofree char *l3m = g_build_filename (l3, "tokenizer.model", NULL);
  g_autofree char *cl = g_build_filename (tokenizers_dir (), "clip", NULL);
  g_autofree char *clgz = g_build_filename (cl, "bpe_simple_vocab_16e6.txt.gz", NULL);
  llama_json = hv_llama_tokenizer_new_from_dir (l3, &err);   /* prefers tokenizer.json */
  g_assert_no_error (err);
  llama_tiktoken = hv_llama_tokenizer_new_from_file (l3m, &err);
  g_assert_no_error (err);
  clip_files = hv_clip_tokenizer_new_from_dir (cl, &err);
  g_assert_no_error (err);
  clip_gz = hv_clip_tokenizer_new_from_bpe_gz (clgz, &err);
  g_assert_no_error (err);

  g_test_add_func ("/bpe/byte-map", test_byte_map);
  g_test_add_func ("/bpe/core", test_bpe_core);
  g_test_add_func ("/llama/basics", test_llama_basics);
  g_test_add_func ("/llama/special-text", test_llama_special_text);
  g_test_add_func ("/llama/roundtrip-unicode", test_llama_roundtrip);
  g_test_add_func ("/llama/random-agreement", test_llama_random_agreement);
  g_test_add_func ("/llama/long-pieces", test_llama_long_pieces);
  g_test_add_func ("/tokenizers/invalid-utf8", test_invalid_utf8);
  g_test_add_func ("/prompt/empty", test_prompt_empty);
  g_test_add_func ("/prompt/prefix-length", test_prompt_prefix_length);
  g_test_add_func ("/prompt/leading-whitespace", test_prompt_leading_whitespace);
  g_test_add_func ("/prompt/truncation", test_prompt_truncation);
  g_test_add_func ("/clip/truncation", test_clip_truncation);
  g_test_add_func ("/clip/normalisation", test_clip_normalisation);
  g_test_add_func ("/clip/nfc", test_clip_nfc);
  g_test_add_func ("/tokenizers/load-errors", test_load_errors);
  g_test_add_func ("/tokenizers/threads", test_threads);
  int rc = g_test_run ();
  hv_llama_tokenizer_free (llama_json);
  hv_llama_tokenizer_free (llama_tiktoken);
  hv_clip_tokenizer_free (clip_files);
  hv_clip_tokenizer_free (clip_gz);
  return rc;
}
