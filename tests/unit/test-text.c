/* test-text — the text encoders and the prompt → embeddings API.
 *
 * Needs HV_FIXTURES (tests/data/fixtures: the tiny Llama/CLIP of text/ and tokens/tokens.json)
 * and HV_TOKENIZERS (tests/data/tokenizers). The end-to-end test gives the tiny models
 * embedding tables as large as the real vocabularies (random rows), so the real tokenizers'
 * ids can run through them. */
#include "hv-backend.h"
#include "hv-error.h"
#include "text/hv-clip.h"
#include "text/hv-llama.h"
#include "text/hv-text.h"
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

static const char *fixtures;
static const char *tokenizers;
static HvBackend *backend;

static char *
text_dir (const char *sub)
{
  return g_build_filename (fixtures, "text", sub, NULL);
}

/* Writes `json` as config.json in a new temporary folder; returns the config path. */
static char *
write_config (const char *json)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("hv-text-XXXXXX", &error);
  g_assert_no_error (error);
  char *path = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (path, json, -1, &error));
  return path;
}

static void
remove_config (char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
}

static float *
download_f32 (const HvTensor *t)
{
  g_autoptr(HvTensor) h = hv_backend_download (t->backend, t);
  g_autoptr(HvTensor) f = hv_tensor_to_f32 (h);
  float *out = g_new (float, hv_tensor_numel (f));
  memcpy (out, f->data, hv_tensor_nbytes (f));
  return out;
}

static double
max_abs_diff (const float *a, const float *b, gsize n)
{
  double m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, fabs ((double) a[i] - b[i]));
  return m;
}

/* ---- configs ------------------------------------------------------------------------- */

#define TINY_LLAMA "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 3, " \
                   "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 1000"

static void
test_llama_config_variants (void)
{
  g_autoptr(GError) error = NULL;
  HvLlamaConfig c;

  /* transformers 4 layout: rope_theta at the top, rope_scaling null; defaults filled in */
  char *p = write_config ("{" TINY_LLAMA ", \"rope_theta\": 500000.0, \"rope_scaling\": null}");
  g_assert_true (hv_llama_config_load (p, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpint (c.head_dim, ==, 16);
  g_assert_cmpint (c.n_kv_heads, ==, 2);
  g_assert_cmpint (c.rope_type, ==, HV_LLAMA_ROPE_DEFAULT);
  g_assert_cmpfloat (c.rope_theta, ==, 500000.0);
  g_assert_cmpfloat_with_epsilon (c.rms_norm_eps, 1e-6, 1e-12);   /* LlamaConfig default */
  remove_config (p);

  /* Llava wrapper: the text_config is used */
  p = write_config ("{\"model_type\": \"llava\", \"text_config\": {" TINY_LLAMA ", \"rms_norm_eps\": 1e-5}}");
  g_assert_true (hv_llama_config_load (p, &c, &error));
  g_assert_cmpint (c.hidden_size, ==, 64);
  g_assert_cmpfloat (c.rope_theta, ==, 10000.0);
  remove_config (p);

  /* Llama 3.1 scaling: high frequencies kept, low ones divided by the factor, the band between
   * in between */
  p = write_config ("{\"hidden_size\": 4096, \"intermediate_size\": 14336, \"num_hidden_layers\": 32, "
                    "\"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"vocab_size\": 128256, "
                    "\"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
                    "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                    "\"original_max_position_embeddings\": 8192}}");
  g_assert_true (hv_llama_config_load (p, &c, &error));
  g_assert_no_error (error);
  g_assert_cmpint (c.rope_type, ==, HV_LLAMA_ROPE_LLAMA3);
  float scaled[64], plain[64];
  hv_llama_rope_inv_freq (&c, scaled);
  HvLlamaConfig d = c;
  d.rope_type = HV_LLAMA_ROPE_DEFAULT;
  hv_llama_rope_inv_freq (&d, plain);
  int n_high = 0, n_low = 0, n_mid = 0;
  for (int i = 0; i < 64; i++) {
    double wavelen = 2 * G_PI / plain[i];
    g_assert_cmpfloat (fabs (plain[i] - 1.0 / pow (500000.0, i / 64.0)), <=, 1e-6 * plain[i]);
    if (wavelen < 8192 / 4.0) {
      g_assert_cmpfloat (scaled[i], ==, plain[i]);
      n_high++;
    } else if (wavelen > 8192 / 1.0) {
      g_assert_cmpfloat (fabs (scaled[i] - plain[i] / 8), <=, 1e-6 * plain[i]);
      n_low++;
    } else {
      g_assert_cmpfloat (scaled[i], <, plain[i]);
      g_assert_cmpfloat (scaled[i], >, plain[i] / 8);
      n_mid++;
    }
  }
  g_assert_cmpint (n_high, >, 0);
  g_assert_cmpint (n_low, >, 0);
  g_assert_cmpint (n_mid, >, 0);
  remove_config (p);

  /* transformers 5 rope_parameters, linear scaling */
  p = write_config ("{" TINY_LLAMA ", \"rope_parameters\": {\"rope_type\": \"linear\", \"rope_theta\": 100.0, \"factor\": 4.0}}");
  g_assert_true (hv_llama_config_load (p, &c, &error));
  hv_llama_rope_inv_freq (&c, scaled);
  g_assert_cmpfloat (fabs (scaled[0] - 0.25), <, 1e-7);
  g_assert_cmpfloat (fabs (scaled[1] - 0.25 / pow (100.0, 2.0 / 16)), <, 1e-7);
  remove_config (p);

  /* what is refused, with the reason */
  static const struct { const char *json; int code; } bad[] = {
    { "{\"intermediate_size\": 128, \"num_hidden_layers\": 3, \"num_attention_heads\": 4}", HV_ERROR_NOT_FOUND },
    { "{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 3}", HV_ERROR_INVALID },
    { "{" TINY_LLAMA ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", HV_ERROR_UNSUPPORTED },
    { "{" TINY_LLAMA ", \"hidden_act\": \"gelu\"}", HV_ERROR_UNSUPPORTED },
    { "{" TINY_LLAMA ", \"attention_bias\": true}", HV_ERROR_UNSUPPORTED },
    { "{" TINY_LLAMA ", \"head_dim\": 15}", HV_ERROR_INVALID },
    { "{\"hidden_size\": \"64\"}", HV_ERROR_INVALID },
    { "[1, 2]", HV_ERROR_CORRUPT },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr(GError) e = NULL;
    p = write_config (bad[i].json);
    g_assert_false (hv_llama_config_load (p, &c, &e));
    g_assert_error (e, HV_ERROR, bad[i].code);
    remove_config (p);
  }
  /* not JSON at all */
  p = write_config ("{not json");
  g_assert_false (hv_llama_config_load (p, &c, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  remove_config (p);
}

/* ---- Llama --------------------------------------------------------------------------- */

static void
test_llama_errors (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *llama_dir = text_dir ("text_encoder");
  g_autofree char *clip_dir = text_dir ("text_encoder_2");
  g_autofree char *missing = text_dir ("no_such_folder");

  g_assert_null (hv_llama_new (missing, backend, 0, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_NOT_FOUND);
  g_clear_error (&error);
  /* a CLIP folder is no Llama: no embed_tokens under any known prefix */
  g_assert_null (hv_llama_new (clip_dir, backend, 0, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_null (hv_llama_new (llama_dir, backend, 4, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);

  g_autoptr(HvLlama) m = hv_llama_new (llama_dir, backend, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpint (hv_llama_n_loaded_layers (m), ==, 1);
  int32_t ids[6] = { 1, 2, 3, 4, 5, 6 }, mask[6] = { 1, 1, 1, 1, 1, 0 };
  g_autoptr(HvTensor) ok = hv_llama_encode (m, ids, mask, 2, 3, 2, 1, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ok->shape[0], ==, 2);
  g_assert_cmpint (ok->shape[1], ==, 2);
  g_assert_cmpint (ok->shape[2], ==, 64);
  /* skip 1 needs layer 1, which was not loaded */
  g_assert_null (hv_llama_encode (m, ids, mask, 2, 3, 1, 1, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (hv_llama_encode (m, ids, mask, 2, 3, 2, 3, &error));   /* crop = L */
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (hv_llama_forward (m, ids, mask, 0, 3, 1, FALSE, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  ids[4] = 1000;   /* one past the tiny vocabulary */
  g_assert_null (hv_llama_forward (m, ids, mask, 2, 3, 1, FALSE, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  ids[4] = -1;
  g_assert_null (hv_llama_forward (m, ids, mask, 2, 3, 1, FALSE, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

/* Rows are independent, and masked keys are invisible: with left padding, the ids under the
 * padding must not change the real positions. */
static void
test_llama_masking (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = text_dir ("text_encoder_llamamodel");
  g_autoptr(HvLlama) m = hv_llama_new (dir, backend, 0, &error);
  g_assert_no_error (error);
  enum { L = 12, D = 64 };
  int32_t ids[2 * L], mask[2 * L];
  for (int i = 0; i < L; i++) {
    ids[i] = 7 + 13 * i;             /* row 0: 4 left pads then 8 real */
    mask[i] = i >= 4;
    ids[L + i] = i < 4 ? 500 + i : ids[i];   /* row 1: other ids under the pads */
    mask[L + i] = mask[i];
  }
  g_autoptr(HvTensor) both = hv_llama_forward (m, ids, mask, 2, L, 3, FALSE, NULL, NULL, &error);
  g_assert_no_error (error);
  g_autofree float *y = download_f32 (both);
  /* real positions identical whatever sits under the padding */
  g_assert_cmpfloat (max_abs_diff (y + 4 * D, y + (L + 4) * D, (L - 4) * D), <=, 1e-5);
  /* padded positions differ (their own ids are different), so the comparison can fail */
  g_assert_cmpfloat (max_abs_diff (y, y + L * D, 4 * D), >, 1e-3);
  /* without the mask the real positions would see the padding */
  g_autoptr(HvTensor) nomask = hv_llama_forward (m, ids, NULL, 2, L, 3, FALSE, NULL, NULL, &error);
  g_autofree float *z = download_f32 (nomask);
  g_assert_cmpfloat (max_abs_diff (z + 4 * D, z + (L + 4) * D, (L - 4) * D), >, 1e-3);
  /* row 1 alone = row 1 of the batch */
  g_autoptr(HvTensor) one = hv_llama_forward (m, ids + L, mask + L, 1, L, 3, FALSE, NULL, NULL, &error);
  g_autofree float *w = download_f32 (one);
  g_assert_cmpfloat (max_abs_diff (w, y + L * D, L * D), <=, 1e-5);
}

/* ---- CLIP ---------------------------------------------------------------------------- */

static void
test_clip_pooling (void)
{
  HvClipConfig c = { .eos_token_id = 2 };
  int32_t ids[6] = { 49406, 320, 49407, 49407, 49407, 49407 };
  g_assert_cmpint (hv_clip_pooled_index (&c, ids, 6), ==, 2);   /* legacy: argmax, first max */
  c.eos_token_id = 320;
  g_assert_cmpint (hv_clip_pooled_index (&c, ids, 6), ==, 1);   /* first eos id */
  c.eos_token_id = 5;
  g_assert_cmpint (hv_clip_pooled_index (&c, ids, 6), ==, 0);   /* absent: position 0 */
}

static void
test_clip_errors (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *clip_dir = text_dir ("text_encoder_2");
  g_autofree char *llama_dir = text_dir ("text_encoder");
  g_assert_null (hv_clip_new (llama_dir, backend, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_autoptr(HvClip) clip = hv_clip_new (clip_dir, backend, &error);
  g_assert_no_error (error);
  int32_t ids[78] = { 0 };
  g_assert_null (hv_clip_forward (clip, ids, NULL, 1, 78, NULL, NULL, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  ids[3] = 1000;
  g_assert_null (hv_clip_forward (clip, ids, NULL, 1, 77, NULL, NULL, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

/* ---- the API end to end -------------------------------------------------------------- */

/* A copy of `src`'s tensors (views), names prefixed with `prefix`, with `table` replaced by
 * random rows: n_rows × width. */
static HvStore *
with_big_table (HvStore *src, const char *prefix, const char *table, int64_t n_rows, int64_t width)
{
  HvStore *s = hv_store_new ();
  g_autoptr(GError) error = NULL;
  const char **names = hv_store_names (src);
  for (guint i = 0; names[i]; i++) {
    HvTensor *t;
    if (strcmp (names[i], table) == 0) {
      int64_t shape[2] = { n_rows, width };
      t = hv_tensor_new (HV_DTYPE_BF16, 2, shape);
      uint16_t *p = t->data;
      guint32 x = 12345;
      for (int64_t j = 0; j < n_rows * width; j++) {
        x = x * 1664525u + 1013904223u;
        p[j] = hv_f32_to_bf16 (((x >> 8) / 16777216.0f - 0.5f) * 2.0f);
      }
    } else {
      t = hv_tensor_view (hv_store_get (src, names[i]));
    }
    g_autofree char *name = g_strconcat (prefix, names[i], NULL);
    g_assert_true (hv_store_insert (s, name, t, &error));
  }
  return s;
}

static JsonObject *
token_case (JsonParser *parser, const char *name)
{
  JsonArray *cases = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)), "cases");
  for (guint i = 0; i < json_array_get_length (cases); i++) {
    JsonObject *c = json_array_get_object_element (cases, i);
    if (strcmp (json_object_get_string_member (c, "name"), name) == 0)
      return c;
  }
  g_assert_not_reached ();
}

static int32_t *
json_ids (JsonObject *o, const char *member, int *n)
{
  JsonArray *a = json_object_get_array_member (o, member);
  *n = (int) json_array_get_length (a);
  int32_t *v = g_new (int32_t, *n);
  for (int i = 0; i < *n; i++)
    v[i] = (int32_t) json_array_get_int_element (a, i);
  return v;
}

static void
test_api_end_to_end (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *llama_dir = text_dir ("text_encoder_llamamodel");
  g_autofree char *clip_dir = text_dir ("text_encoder_2");
  g_autofree char *llama_cfg = g_build_filename (llama_dir, "config.json", NULL);
  g_autofree char *clip_cfg = g_build_filename (clip_dir, "config.json", NULL);
  g_autofree char *llama_file = g_build_filename (llama_dir, "model.safetensors", NULL);
  g_autofree char *clip_file = g_build_filename (clip_dir, "model.safetensors", NULL);
  g_autofree char *tok_llama = g_build_filename (tokenizers, "llama3", NULL);
  g_autofree char *tok_clip = g_build_filename (tokenizers, "clip", NULL);
  g_autofree char *tokens_json = g_build_filename (fixtures, "tokens", "tokens.json", NULL);

  /* the tiny models with real-size vocabularies; CLIP keys as in openai/clip-vit-large-patch14 */
  g_autoptr(HvStore) lsrc = hv_store_open (llama_file, &error);
  g_assert_no_error (error);
  g_autoptr(HvStore) csrc = hv_store_open (clip_file, &error);
  g_assert_no_error (error);
  HvLlamaConfig lc;
  HvClipConfig cc;
  g_assert_true (hv_llama_config_load (llama_cfg, &lc, &error));
  g_assert_true (hv_clip_config_load (clip_cfg, &cc, &error));
  lc.vocab_size = 128320;
  cc.vocab_size = 49408;
  cc.eos_token_id = 2;   /* the real CLIP-L config */
  HvStore *ls = with_big_table (lsrc, "", "embed_tokens.weight", lc.vocab_size, lc.hidden_size);
  HvStore *cs = with_big_table (csrc, "text_model.", "embeddings.token_embedding.weight", cc.vocab_size, cc.hidden_size);
  HvLlama *llama = hv_llama_new_from_store (ls, &lc, backend, HV_TEXT_SKIP_LAYER, &error);
  g_assert_no_error (error);
  HvClip *clip = hv_clip_new_from_store (cs, &cc, backend, &error);
  g_assert_no_error (error);
  HvLlamaTokenizer *lt = hv_llama_tokenizer_new_from_dir (tok_llama, &error);
  g_assert_no_error (error);
  HvClipTokenizer *ct = hv_clip_tokenizer_new_from_dir (tok_clip, &error);
  g_assert_no_error (error);
  HvTextEncoder *enc = hv_text_encoder_new_from_parts (llama, clip, lt, ct, &error);
  g_assert_no_error (error);

  g_autoptr(JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_file (parser, tokens_json, &error));
  JsonObject *seed = token_case (parser, "seed");
  JsonObject *neg = token_case (parser, "negative_prompt");
  const char *prompt = json_object_get_string_member (seed, "prompt");

  /* references: the models run on the ids of the tokens fixture */
  int n_pad, n_c;
  g_autofree int32_t *ids = json_ids (json_object_get_object_member (seed, "llama3_video_template"), "input_ids_padded", &n_pad);
  g_autofree int32_t *cids = json_ids (json_object_get_object_member (seed, "clip"), "ids_77", &n_c);
  g_assert_cmpint (n_pad, ==, 351);
  g_assert_cmpint (n_c, ==, 77);
  int n_real = (int) json_object_get_int_member (json_object_get_object_member (seed, "llama3_video_template"), "attention_mask_sum");
  int n_creal = (int) json_object_get_int_member (json_object_get_object_member (seed, "clip"), "attention_mask_sum");
  int32_t mask[351], cmask[77];
  for (int i = 0; i < 351; i++)
    mask[i] = i < n_real;
  for (int i = 0; i < 77; i++)
    cmask[i] = i < n_creal;
  g_autoptr(HvTensor) ref = hv_llama_encode (llama, ids, mask, 1, 351, HV_TEXT_SKIP_LAYER, 95, &error);
  g_assert_no_error (error);
  g_autoptr(HvTensor) ref2 = hv_clip_forward (clip, cids, cmask, 1, 77, NULL, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_autofree float *r = download_f32 (ref);
  g_autofree float *r2 = download_f32 (ref2);

  /* positive only, video template; surrounding whitespace is stripped as upstream does */
  g_autofree char *padded_prompt = g_strdup_printf (" \n %s\t ", prompt);
  HvTextEmbeds e;
  g_assert_true (hv_text_encode (enc, padded_prompt, NULL, HV_PROMPT_TEMPLATE_VIDEO, &e, &error));
  g_assert_no_error (error);
  g_assert_cmpint (e.batch, ==, 1);
  g_assert_cmpint (e.length, ==, 256);
  g_assert_false (e.truncated);
  g_assert_cmpint (e.text_states->ndim, ==, 3);
  g_assert_cmpint (e.text_states->shape[1], ==, 256);
  g_assert_cmpint (e.text_states->shape[2], ==, 64);
  g_assert_cmpint (e.text_states_2->shape[1], ==, 32);
  for (int i = 0; i < 256; i++)
    g_assert_cmpint (e.text_mask[i], ==, i < n_real - 95);
  g_autofree float *s1 = download_f32 (e.text_states);
  g_autofree float *p1 = download_f32 (e.text_states_2);
  g_assert_cmpfloat (max_abs_diff (s1, r, 256 * 64), <=, 1e-5);
  g_assert_cmpfloat (max_abs_diff (p1, r2, 32), <=, 1e-5);
  hv_text_embeds_clear (&e);

  /* negative + positive: [negative, positive], each row as if alone */
  const char *neg_prompt = json_object_get_string_member (neg, "prompt");
  HvTextEmbeds en, e2;
  g_assert_true (hv_text_encode (enc, neg_prompt, NULL, HV_PROMPT_TEMPLATE_VIDEO, &en, &error));
  g_assert_true (hv_text_encode (enc, prompt, neg_prompt, HV_PROMPT_TEMPLATE_VIDEO, &e2, &error));
  g_assert_no_error (error);
  g_assert_cmpint (e2.batch, ==, 2);
  g_assert_cmpint (e2.text_states->shape[0], ==, 2);
  g_autofree float *s2 = download_f32 (e2.text_states);
  g_autofree float *p2 = download_f32 (e2.text_states_2);
  g_autofree float *sn = download_f32 (en.text_states);
  g_autofree float *pn = download_f32 (en.text_states_2);
  g_assert_cmpfloat (max_abs_diff (s2, sn, 256 * 64), <=, 1e-5);
  g_assert_cmpfloat (max_abs_diff (s2 + 256 * 64, r, 256 * 64), <=, 1e-5);
  g_assert_cmpfloat (max_abs_diff (p2, pn, 32), <=, 1e-5);
  g_assert_cmpfloat (max_abs_diff (p2 + 32, r2, 32), <=, 1e-5);
  g_assert_cmpfloat (max_abs_diff (sn, r, 256 * 64), >, 1e-3);   /* the prompts differ */
  g_assert_cmpmem (e2.text_mask, 256 * sizeof (int32_t), en.text_mask, 256 * sizeof (int32_t));
  hv_text_embeds_clear (&en);

  /* image template: upstream keeps max_length 351, so 351 - 36 positions */
  HvTextEmbeds ei;
  g_assert_true (hv_text_encode (enc, prompt, NULL, HV_PROMPT_TEMPLATE_IMAGE, &ei, &error));
  g_assert_cmpint (ei.length, ==, 315);
  g_assert_cmpint (ei.text_states->shape[1], ==, 315);
  hv_text_embeds_clear (&ei);

  /* bad input: an error, no output */
  HvTextEmbeds bad;
  g_assert_false (hv_text_encode (enc, "caf\xc3", NULL, HV_PROMPT_TEMPLATE_VIDEO, &bad, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (bad.text_states);
  g_assert_null (bad.text_mask);

  /* the embeddings outlive the encoder */
  hv_text_encoder_free (enc);
  g_autofree float *s3 = download_f32 (e2.text_states);
  g_assert_cmpmem (s3, 2 * 256 * 64 * sizeof (float), s2, 2 * 256 * 64 * sizeof (float));
  hv_text_embeds_clear (&e2);
  g_assert_null (e2.text_states);
}

static void
test_api_errors (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *llama_dir = text_dir ("text_encoder");
  g_autofree char *clip_dir = text_dir ("text_encoder_2");
  g_autofree char *tok_llama = g_build_filename (tokenizers, "llama3", NULL);
  /* the fixture folders hold no tokenizer files */
  g_assert_null (hv_text_encoder_new (llama_dir, clip_dir, NULL, NULL, backend, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_null (hv_text_encoder_new (llama_dir, NULL, tok_llama, NULL, backend, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  fixtures = g_getenv ("HV_FIXTURES");
  tokenizers = g_getenv ("HV_TOKENIZERS");
  if (!fixtures || !tokenizers) {
    g_printerr ("test-text: set HV_FIXTURES and HV_TOKENIZERS (meson test sets them)\n");
    return 77;
  }
  backend = hv_backend_cpu_new (0);
  g_test_add_func ("/text/llama/config", test_llama_config_variants);
  g_test_add_func ("/text/llama/errors", test_llama_errors);
  g_test_add_func ("/text/llama/masking", test_llama_masking);
  g_test_add_func ("/text/clip/pooling", test_clip_pooling);
  g_test_add_func ("/text/clip/errors", test_clip_errors);
  g_test_add_func ("/text/api/end-to-end", test_api_end_to_end);
  g_test_add_func ("/text/api/errors", test_api_errors);
  int rc = g_test_run ();
  hv_backend_free (backend);
  return rc;
}
