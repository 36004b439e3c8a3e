/* fixture-tokens.c — the `tokens` fixture kind: every prompt of tokens.json through both
 * Llama-3 loaders (tokenizer.json, tiktoken tokenizer.model) and both CLIP loaders
 * (vocab.json + merges.txt, bpe_simple_vocab_16e6.txt.gz), each id list compared exactly.
 *
 * Per case and Llama loader: raw ids, ids with BOS, the whole templated string, the padded
 * 351 ids, the attention mask (the fixture stores its sum; masks are 1...1 0...0), the ids
 * left after the crop, and whether the first 95 ids are the template prefix. Per case and
 * CLIP loader: ids with BOS/EOS untruncated, the padded 77, the mask. Once per Llama loader:
 * both template prefixes against meta.json's crop_start checks; once: the template texts and
 * the negative prompt against meta.json / manifests/text_constants.json.
 *
 * Tokenizer files: --tokenizers DIR, else tokenizers/ beside the fixtures folder. Prints load
 * time and encode speed per loader. */
#include "fixture.h"
#include "hv-error.h"
#include "hv-llama-tokenizer.h"
#include "hv-clip-tokenizer.h"
#include "hv-prompt.h"
#include <stdio.h>
#include <string.h>

/* A JSON array of integers (member `name` of `o`) as int64; NULL if absent. */
static GArray *
json_ints (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  if (!n || !JSON_NODE_HOLDS_ARRAY (n))
    return NULL;
  JsonArray *a = json_node_get_array (n);
  GArray *out = g_array_sized_new (FALSE, FALSE, sizeof (int64_t), json_array_get_length (a));
  for (guint i = 0; i < json_array_get_length (a); i++) {
    int64_t v = json_array_get_int_element (a, i);
    g_array_append_val (out, v);
  }
  return out;
}

static JsonObject *
member_object (JsonObject *o, const char *name)
{
  JsonNode *n = o ? json_object_get_member (o, name) : NULL;
  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

/* Compares expected member `field` of `o` with ours (int64 or gint32 source). */
static void
compare_i64 (HvFixture *fx, const char *label, JsonObject *o, const char *field,
             const int64_t *ours, gsize n)
{
  g_autoptr(GArray) exp = json_ints (o, field);
  if (!exp) {
    hv_fixture_check (fx, label, FALSE, "the fixture has no '%s'", field);
    return;
  }
  hv_fixture_compare_ints (fx, label, (const int64_t *) exp->data, exp->len, ours, n);
}

static void
compare_i32 (HvFixture *fx, const char *label, JsonObject *o, const char *field,
             const gint32 *ours, gsize n)
{
  g_autofree int64_t *o64 = g_new (int64_t, MAX (n, 1));
  for (gsize i = 0; i < n; i++)
    o64[i] = ours[i];
  compare_i64 (fx, label, o, field, o64, n);
}

/* The mask the fixture describes by its sum: `sum` ones then zeros. */
static void
compare_mask (HvFixture *fx, const char *label, JsonObject *o, const HvTokenized *t)
{
  gint64 sum = json_object_get_int_member_with_default (o, "attention_mask_sum", -1);
  g_autofree int64_t *exp = g_new0 (int64_t, t->n);
  for (gint64 i = 0; i < MIN (sum, t->n); i++)
    exp[i] = 1;
  if (sum < 0 || sum > t->n)
    hv_fixture_check (fx, label, FALSE, "fixture mask sum %" G_GINT64_FORMAT " is unusable", sum);
  else
    hv_fixture_compare_ints (fx, label, exp, (size_t) t->n, t->mask, (size_t) t->n);
}

typedef struct {
  JsonArray *cases;
  JsonObject *meta_llama;   /* meta.json "llama3", may be NULL */
  gint64 n_tokens;          /* ids produced, for the speed line */
  gint64 encode_us;
} Ctx;

/* Case i of the sidecar's list, or NULL (with a FAIL line) when it is not an object. */
static JsonObject *
case_object (HvFixture *fx, Ctx *ctx, guint i)
{
  JsonNode *en = json_array_get_element (ctx->cases, i);
  if (JSON_NODE_HOLDS_OBJECT (en))
    return json_node_get_object (en);
  hv_fixture_check (fx, "cases", FALSE, "case %u is not an object", i);
  return NULL;
}

static const char *
case_name (JsonObject *c, guint i, char *buf, gsize size)
{
  const char *n = json_object_get_string_member_with_default (c, "name", NULL);
  if (n)
    return n;
  g_snprintf (buf, size, "case%u", i);
  return buf;
}

static void
run_llama_case (HvFixture *fx, Ctx *ctx, HvLlamaTokenizer *tok, const char *loader,
                JsonObject *c, const char *name, GArray *prefix_video)
{
  const char *prompt = json_object_get_string_member_with_default (c, "prompt", NULL);
  JsonObject *l3 = member_object (c, "llama3");
  JsonObject *tv = member_object (c, "llama3_video_template");
  if (!prompt || !l3 || !tv) {
    hv_fixture_check (fx, name, FALSE, "case lacks prompt / llama3 / llama3_video_template");
    return;
  }
  g_autofree char *lab = NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint32));

  for (int bos = 0; bos < 2; bos++) {
    g_free (lab);
    lab = g_strdup_printf ("%s/%s/%s", loader, name, bos ? "ids_with_bos" : "ids");
    g_array_set_size (ids, 0);
    gint64 t0 = g_get_monotonic_time ();
    if (!hv_llama_tokenizer_encode (tok, prompt, -1, bos, ids, &err)) {
      hv_fixture_check (fx, lab, FALSE, "%s", err->message);
      g_clear_error (&err);
      continue;
    }
    ctx->encode_us += g_get_monotonic_time () - t0;
    ctx->n_tokens += ids->len;
    compare_i32 (fx, lab, l3, bos ? "ids_with_bos" : "ids", (const gint32 *) ids->data, ids->len);
  }

  /* the whole templated string, untruncated */
  g_autofree char *text = hv_prompt_apply_template (HV_PROMPT_TEMPLATE_VIDEO, prompt);
  g_array_set_size (ids, 0);
  g_free (lab);
  lab = g_strdup_printf ("%s/%s/input_ids", loader, name);
  if (!hv_llama_tokenizer_encode (tok, text, -1, TRUE, ids, &err)) {
    hv_fixture_check (fx, lab, FALSE, "%s", err->message);
    g_clear_error (&err);
  } else {
    compare_i32 (fx, lab, tv, "input_ids", (const gint32 *) ids->data, ids->len);
  }

  gint64 t0 = g_get_monotonic_time ();
  g_autoptr(HvTokenized) t = hv_prompt_llama_tokens (tok, prompt, HV_PROMPT_TEMPLATE_VIDEO, &err);
  g_free (lab);
  lab = g_strdup_printf ("%s/%s/input_ids_padded", loader, name);
  if (!t) {
    hv_fixture_check (fx, lab, FALSE, "%s", err->message);
    return;
  }
  ctx->encode_us += g_get_monotonic_time () - t0;
  ctx->n_tokens += t->n_untruncated;
  compare_i64 (fx, lab, tv, "input_ids_padded", t->ids, (gsize) t->n);
  g_free (lab);
  lab = g_strdup_printf ("%s/%s/attention_mask", loader, name);
  compare_mask (fx, lab, tv, t);

  g_free (lab);
  lab = g_strdup_printf ("%s/%s/cropped_ids", loader, name);
  const int64_t *cids;
  hv_tokenized_crop (t, &cids, NULL);
  compare_i64 (fx, lab, tv, "cropped_ids", cids, (gsize) MAX (0, t->n_real - t->crop_start));

  g_free (lab);
  lab = g_strdup_printf ("%s/%s/prefix_unchanged", loader, name);
  if (!prefix_video || !json_object_has_member (tv, "prefix_unchanged")) {
    hv_fixture_check (fx, lab, FALSE, "no prefix ids (meta.json) or no prefix_unchanged");
  } else {
    gboolean same = prefix_video->len == (guint) t->crop_start;
    for (guint i = 0; same && i < prefix_video->len; i++)
      same = t->ids[i] == g_array_index (prefix_video, int64_t, i);
    gboolean exp = json_object_get_boolean_member (tv, "prefix_unchanged");
    hv_fixture_check (fx, lab, same == exp, "first %d ids %s the template prefix (expected %s)",
                      t->crop_start, same ? "are" : "are not", exp ? "are" : "are not");
  }
}

/* The template before "{}", with BOS, must give meta.json's prefix ids, crop_start long. */
static void
check_prefixes (HvFixture *fx, Ctx *ctx, HvLlamaTokenizer *tok, const char *loader)
{
  static const struct { const char *key, *text_key; HvPromptTemplate t; } tm[] = {
    { "video", "video_template", HV_PROMPT_TEMPLATE_VIDEO },
    { "image", "image_template", HV_PROMPT_TEMPLATE_IMAGE },
  };
  JsonObject *checks = member_object (ctx->meta_llama, "crop_start_checks");
  for (guint k = 0; k < G_N_ELEMENTS (tm); k++) {
    g_autofree char *lab = g_strdup_printf ("%s/%s_template_prefix", loader, tm[k].key);
    JsonObject *c = member_object (checks, tm[k].key);
    if (!c) {
      hv_fixture_check (fx, lab, FALSE, "meta.json has no crop_start_checks.%s", tm[k].key);
      continue;
    }
    const char *tpl = hv_prompt_template_text (tm[k].t);
    const char *hole = strstr (tpl, "{}");
    g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint32));
    g_autoptr(GError) err = NULL;
    if (!hv_llama_tokenizer_encode (tok, tpl, hole - tpl, TRUE, ids, &err)) {
      hv_fixture_check (fx, lab, FALSE, "%s", err->message);
      continue;
    }
    compare_i32 (fx, lab, c, "prefix_ids_with_bos", (const gint32 *) ids->data, ids->len);
    g_free (lab);
    lab = g_strdup_printf ("%s/%s_crop_start", loader, tm[k].key);
    gint64 up = json_object_get_int_member_with_default (c, "crop_start_upstream", -1);
    hv_fixture_check (fx, lab, up == hv_prompt_template_crop_start (tm[k].t) &&
                      (gint64) ids->len == up,
                      "crop_start %d, prefix with BOS %u tokens, upstream %" G_GINT64_FORMAT,
                      hv_prompt_template_crop_start (tm[k].t), ids->len, up);
  }
}

static void
run_clip_case (HvFixture *fx, Ctx *ctx, HvClipTokenizer *tok, const char *loader, JsonObject *c,
               const char *name)
{
  const char *prompt = json_object_get_string_member_with_default (c, "prompt", NULL);
  JsonObject *cl = member_object (c, "clip");
  if (!prompt || !cl) {
    hv_fixture_check (fx, name, FALSE, "case lacks prompt / clip");
    return;
  }
  g_autoptr(GError) err = NULL;
  g_autofree char *lab = g_strdup_printf ("%s/%s/ids", loader, name);
  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  gint64 t0 = g_get_monotonic_time ();
  if (!hv_clip_tokenizer_encode (tok, prompt, -1, TRUE, ids, &err)) {
    hv_fixture_check (fx, lab, FALSE, "%s", err->message);
    g_clear_error (&err);
  } else {
    ctx->encode_us += g_get_monotonic_time () - t0;
    ctx->n_tokens += ids->len;
    compare_i32 (fx, lab, cl, "ids", (const gint32 *) ids->data, ids->len);
  }
  g_free (lab);
  lab = g_strdup_printf ("%s/%s/ids_77", loader, name);
  g_autoptr(HvTokenized) t = hv_prompt_clip_tokens (tok, prompt, &err);
  if (!t) {
    hv_fixture_check (fx, lab, FALSE, "%s", err->message);
    return;
  }
  compare_i64 (fx, lab, cl, "ids_77", t->ids, (gsize) t->n);
  g_free (lab);
  lab = g_strdup_printf ("%s/%s/attention_mask", loader, name);
  compare_mask (fx, lab, cl, t);
}

static void
speed_line (const char *loader, gint64 load_us, Ctx *ctx)
{
  printf ("TIME tokens/%s: load %.1f ms, encode %" G_GINT64_FORMAT " tokens in %.2f ms (%.0f tokens/s, first pass, cache cold)\n",
          loader, load_us / 1e3, ctx->n_tokens, ctx->encode_us / 1e3,
          ctx->encode_us > 0 ? ctx->n_tokens * 1e6 / ctx->encode_us : 0.0);
  ctx->n_tokens = ctx->encode_us = 0;
}

/* meta.json's template texts and text_constants.json's negative prompt against ours. */
static void
check_constants (HvFixture *fx, Ctx *ctx)
{
  static const struct { const char *key; HvPromptTemplate t; } tm[] = {
    { "video_template", HV_PROMPT_TEMPLATE_VIDEO },
    { "image_template", HV_PROMPT_TEMPLATE_IMAGE },
  };
  for (guint k = 0; k < G_N_ELEMENTS (tm); k++) {
    const char *exp = ctx->meta_llama ?
      json_object_get_string_member_with_default (ctx->meta_llama, tm[k].key, NULL) : NULL;
    hv_fixture_check (fx, tm[k].key, exp && strcmp (exp, hv_prompt_template_text (tm[k].t)) == 0,
                      "%s", exp ? "text as in meta.json" : "meta.json lacks it");
  }
  g_autofree char *path = g_build_filename (fx->dir, "..", "manifests", "text_constants.json", NULL);
  g_autoptr(JsonParser) p = json_parser_new ();
  const char *neg = NULL;
  if (json_parser_load_from_file (p, path, NULL) && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (p)))
    neg = json_object_get_string_member_with_default (json_node_get_object (json_parser_get_root (p)),
                                                      "NEGATIVE_PROMPT", NULL);
  hv_fixture_check (fx, "negative_prompt", neg && strcmp (neg, HV_PROMPT_NEGATIVE_DEFAULT) == 0,
                    "%s", neg ? "as in text_constants.json" : "text_constants.json not readable");
}

gboolean
hv_fixture_run_tokens (HvFixture *fx, GError **error)
{
  JsonNode *cn = json_object_get_member (fx->root, "cases");
  if (!cn || !JSON_NODE_HOLDS_ARRAY (cn)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: no 'cases' array", fx->sidecar);
    return FALSE;
  }
  g_autofree char *dir = fx->tokenizers ? g_strdup (fx->tokenizers)
                                        : g_build_filename (fx->dir, "..", "..", "tokenizers", NULL);
  Ctx ctx = { .cases = json_node_get_array (cn) };
  guint nc = json_array_get_length (ctx.cases);

  g_autofree char *meta_path = hv_fixture_path (fx, "meta.json");
  g_autoptr(JsonParser) mp = json_parser_new ();
  if (json_parser_load_from_file (mp, meta_path, NULL) && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (mp)))
    ctx.meta_llama = member_object (json_node_get_object (json_parser_get_root (mp)), "llama3");
  g_autoptr(GArray) prefix_video =
    json_ints (member_object (member_object (ctx.meta_llama, "crop_start_checks"), "video"),
               "prefix_ids_with_bos");
  check_constants (fx, &ctx);

  const char *llama_files[] = { "tokenizer.json", "tokenizer.model" };
  for (guint l = 0; l < G_N_ELEMENTS (llama_files); l++) {
    g_autofree char *path = g_build_filename (dir, "llama3", llama_files[l], NULL);
    g_autoptr(GError) err = NULL;
    gint64 t0 = g_get_monotonic_time ();
    g_autoptr(HvLlamaTokenizer) tok = hv_llama_tokenizer_new_from_file (path, &err);
    gint64 load_us = g_get_monotonic_time () - t0;
    if (!tok) {
      hv_fixture_check (fx, llama_files[l], FALSE, "%s", err->message);
      continue;
    }
    for (guint i = 0; i < nc; i++) {
      JsonObject *c = case_object (fx, &ctx, i);
      char buf[32];
      if (c)
        run_llama_case (fx, &ctx, tok, llama_files[l], c, case_name (c, i, buf, sizeof buf),
                        prefix_video);
    }
    check_prefixes (fx, &ctx, tok, llama_files[l]);
    speed_line (llama_files[l], load_us, &ctx);
  }

  const char *clip_loaders[] = { "vocab.json+merges.txt", "bpe_simple_vocab_16e6.txt.gz" };
  for (guint l = 0; l < G_N_ELEMENTS (clip_loaders); l++) {
    g_autoptr(GError) err = NULL;
    g_autofree char *vocab = g_build_filename (dir, "clip", "vocab.json", NULL);
    g_autofree char *merges = g_build_filename (dir, "clip", "merges.txt", NULL);
    g_autofree char *gz = g_build_filename (dir, "clip", "bpe_simple_vocab_16e6.txt.gz", NULL);
    gint64 t0 = g_get_monotonic_time ();
    g_autoptr(HvClipTokenizer) tok = l == 0 ? hv_clip_tokenizer_new_from_files (vocab, merges, &err)
                                            : hv_clip_tokenizer_new_from_bpe_gz (gz, &err);
    gint64 load_us = g_get_monotonic_time () - t0;
    if (!tok) {
      hv_fixture_check (fx, clip_loaders[l], FALSE, "%s", err->message);
      continue;
    }
    for (guint i = 0; i < nc; i++) {
      JsonObject *c = case_object (fx, &ctx, i);
      char buf[32];
      if (c)
        run_clip_case (fx, &ctx, tok, clip_loaders[l], c, case_name (c, i, buf, sizeof buf));
    }
    speed_line (clip_loaders[l], load_us, &ctx);
  }
  return TRUE;
}
