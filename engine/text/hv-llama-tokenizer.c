/* hv-llama-tokenizer.c — loading tokenizer.json / tokenizer.model and encoding.
 * See hv-llama-tokenizer.h for the rules. */
#include "hv-llama-tokenizer.h"
#include "hv-bpe.h"
#include "hv-error.h"
#include <json-glib/json-glib.h>
#include <string.h>

#define LLAMA3_N_RESERVED 256   /* special ids n_base .. n_base+255 */

struct _HvLlamaTokenizer {
  HvBpe *bpe;                /* keys are raw bytes */
  HvBpeSpecials *specials;
  HvBpeCache *cache;
  GRegex *re;
  gint32 byte_id[256];       /* the token of each single byte */
  gboolean whole_piece;      /* a piece that is a token is emitted as is */
  gint32 bos, pad;
  const char *format;
};

void
hv_llama_tokenizer_free (HvLlamaTokenizer *tok)
{
  if (!tok)
    return;
  hv_bpe_free (tok->bpe);
  hv_bpe_specials_free (tok->specials);
  hv_bpe_cache_free (tok->cache);
  if (tok->re)
    g_regex_unref (tok->re);
  g_free (tok);
}

/* The special-token names of the original Llama 3 (meta-llama/llama3 tokenizer.py). */
static char *
llama3_special_name (int i)
{
  switch (i) {
  case 0: return g_strdup ("<|begin_of_text|>");
  case 1: return g_strdup ("<|end_of_text|>");
  case 6: return g_strdup ("<|start_header_id|>");
  case 7: return g_strdup ("<|end_header_id|>");
  case 8: return g_strdup ("<|reserved_special_token_4|>");
  case 9: return g_strdup ("<|eot_id|>");
  default:
    return g_strdup_printf ("<|reserved_special_token_%d|>", i < 6 ? i - 2 : i - 5);
  }
}

/* Completes a loaded table: byte tokens, the llava extras, BOS/pad, the regex, the cache. */
static gboolean
finish (HvLlamaTokenizer *tok, const char *path, GError **error)
{
  for (int b = 0; b < 256; b++) {
    char c = (char) b;
    tok->byte_id[b] = hv_bpe_lookup (tok->bpe, &c, 1);
    if (tok->byte_id[b] < 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                   "%s: no token for byte 0x%02x, so not every text can be encoded (not a "
                   "byte-level BPE vocabulary?)", path, b);
      return FALSE;
    }
  }
  /* llava-llama-3-8b's tokenizer adds these three after the 256 Llama-3 specials. A name or
   * id the file already has is left alone. */
  static const char *const llava[] = { "<unk>", "<image>", "<pad>" };
  gint32 base = MAX (hv_bpe_id_end (tok->bpe), hv_bpe_specials_max_id (tok->specials) + 1);
  base = MAX (base, 128000 + LLAMA3_N_RESERVED);
  for (guint i = 0; i < G_N_ELEMENTS (llava); i++)
    if (hv_bpe_specials_id (tok->specials, llava[i]) < 0)
      hv_bpe_specials_add (tok->specials, llava[i], base + (gint32) i);
  tok->bos = hv_bpe_specials_id (tok->specials, "<|begin_of_text|>");
  tok->pad = hv_bpe_specials_id (tok->specials, "<pad>");
  if (tok->bos < 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                 "%s: no <|begin_of_text|> token: not a Llama-3 tokenizer", path);
    return FALSE;
  }
  tok->re = g_regex_new (HV_LLAMA3_PRETOKENIZE_REGEX, G_REGEX_OPTIMIZE, 0, error);
  if (!tok->re)
    return FALSE;
  tok->cache = hv_bpe_cache_new (1 << 16);
  return TRUE;
}

/* ---- tiktoken tokenizer.model ---- */

static HvLlamaTokenizer *
load_tiktoken (const char *path, const char *data, gsize size, GError **error)
{
  g_autoptr(HvLlamaTokenizer) tok = g_new0 (HvLlamaTokenizer, 1);
  tok->bpe = hv_bpe_new (HV_BPE_TOKEN_RANKS);
  tok->specials = hv_bpe_specials_new ();
  tok->whole_piece = TRUE;
  tok->format = "tiktoken";
  const char *cur = data, *p;
  gsize ll;
  guint line = 0;
  gint32 n_base = 0;
  while (hv_bpe_next_line (&cur, data + size, &p, &ll)) {
    line++;
    if (ll == 0)   /* blank line */
      continue;
    const char *le = p + ll;
    const char *sp = memchr (p, ' ', (gsize) (le - p));
    g_autofree char *b64 = sp ? g_strndup (p, (gsize) (sp - p)) : NULL;
    g_autofree char *rank_s = sp ? g_strndup (sp + 1, (gsize) (le - sp - 1)) : NULL;
    guint64 rank = 0;
    if (!sp || !g_ascii_string_to_unsigned (rank_s, 10, 0, G_MAXINT32 - 1, &rank, NULL) ||
        !*b64 || strspn (b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != strlen (b64)) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                   "%s:%u: expected 'base64-token rank' (tiktoken format)", path, line);
      return NULL;
    }
    gsize n;
    g_autofree guchar *bytes = g_base64_decode (b64, &n);
    if (n == 0) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s:%u: empty token", path, line);
      return NULL;
    }
    g_autoptr(GError) e = NULL;
    if (!hv_bpe_add_token (tok->bpe, (const char *) bytes, n, (gint32) rank, &e)) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s:%u: %s", path, line, e->message);
      return NULL;
    }
    n_base = MAX (n_base, (gint32) rank + 1);
  }
  if (hv_bpe_n_tokens (tok->bpe) == 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: no tokens in the file", path);
    return NULL;
  }
  /* tiktoken places the specials right after the ranks (Llama 3: 128000). */
  for (int i = 0; i < LLAMA3_N_RESERVED; i++) {
    g_autofree char *name = llama3_special_name (i);
    hv_bpe_specials_add (tok->specials, name, n_base + i);
  }
  if (!finish (tok, path, error))
    return NULL;
  return g_steal_pointer (&tok);
}

/* ---- HF tokenizer.json ---- */

/* A vocab or merge entry in byte-char spelling → raw bytes. */
static gboolean
unmap (const char *path, const char *what, const char *s, GByteArray *buf, GError **error)
{
  g_byte_array_set_size (buf, 0);
  if (!hv_bpe_unmap_key (s, -1, buf)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                 "%s: %s '%.64s' is not in byte-level (GPT-2 bytes_to_unicode) spelling", path,
                 what, s);
    return FALSE;
  }
  return TRUE;
}

static HvLlamaTokenizer *
load_hf_json (const char *path, const char *data, gsize size, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  g_autoptr(GError) e = NULL;
  if (!json_parser_load_from_data (parser, data, (gssize) size, &e)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: not valid JSON: %s", path, e->message);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *top = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *mnode = top ? json_object_get_member (top, "model") : NULL;
  JsonObject *model = mnode && JSON_NODE_HOLDS_OBJECT (mnode) ? json_node_get_object (mnode) : NULL;
  JsonNode *vnode = model ? json_object_get_member (model, "vocab") : NULL;
  JsonNode *gnode = model ? json_object_get_member (model, "merges") : NULL;
  if (!vnode || !JSON_NODE_HOLDS_OBJECT (vnode) || !gnode || !JSON_NODE_HOLDS_ARRAY (gnode)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                 "%s: expected an HF tokenizer.json with model.vocab and model.merges", path);
    return NULL;
  }
  const char *type = json_object_get_string_member_with_default (model, "type", "BPE");
  JsonNode *suffix = json_object_get_member (model, "end_of_word_suffix");
  JsonNode *prefix = json_object_get_member (model, "continuing_subword_prefix");
  if (g_strcmp0 (type, "BPE") != 0 || (suffix && !JSON_NODE_HOLDS_NULL (suffix)) ||
      (prefix && !JSON_NODE_HOLDS_NULL (prefix))) {
    g_set_error (error, HV_ERROR, HV_ERROR_UNSUPPORTED,
                 "%s: model is not a plain byte-level BPE (type %s, or word suffix/prefix set)",
                 path, type ? type : "?");
    return NULL;
  }

  g_autoptr(HvLlamaTokenizer) tok = g_new0 (HvLlamaTokenizer, 1);
  tok->bpe = hv_bpe_new (HV_BPE_MERGE_RANKS);
  tok->specials = hv_bpe_specials_new ();
  tok->whole_piece = json_object_get_boolean_member_with_default (model, "ignore_merges", FALSE);
  tok->format = "tokenizer.json";

  /* added tokens first: their vocab entries (if any) need not be byte-level */
  JsonNode *anode = json_object_get_member (top, "added_tokens");
  JsonArray *added = anode && JSON_NODE_HOLDS_ARRAY (anode) ? json_node_get_array (anode) : NULL;
  for (guint i = 0; added && i < json_array_get_length (added); i++) {
    JsonNode *en = json_array_get_element (added, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT (en) ? json_node_get_object (en) : NULL;
    const char *content = o ? json_object_get_string_member_with_default (o, "content", NULL) : NULL;
    gint64 id = o ? json_object_get_int_member_with_default (o, "id", -1) : -1;
    if (!content || id < 0 || id >= G_MAXINT32 || !hv_bpe_specials_add (tok->specials, content, (gint32) id)) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT,
                   "%s: added_tokens[%u] has no usable content/id, or repeats one", path, i);
      return NULL;
    }
  }

  g_autoptr(GByteArray) buf = g_byte_array_new ();
  JsonObject *vocab = json_node_get_object (vnode);
  JsonObjectIter it;
  const char *key;
  JsonNode *val;
  json_object_iter_init (&it, vocab);
  while (json_object_iter_next (&it, &key, &val)) {
    gint64 id = JSON_NODE_HOLDS_VALUE (val) ? json_node_get_int (val) : -1;
    if (id < 0 || id >= G_MAXINT32) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: vocab entry '%.64s' has no valid id",
                   path, key);
      return NULL;
    }
    if (hv_bpe_specials_name (tok->specials, (gint32) id))
      continue;   /* an added token listed in the vocab too */
    if (!unmap (path, "vocab entry", key, buf, error))
      return NULL;
    if (!hv_bpe_add_token (tok->bpe, (const char *) buf->data, buf->len, (gint32) id, error)) {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  }

  JsonArray *merges = json_node_get_array (gnode);
  guint nm = json_array_get_length (merges);
  g_autoptr(GByteArray) left = g_byte_array_new ();
  for (guint i = 0; i < nm; i++) {
    JsonNode *en = json_array_get_element (merges, i);
    g_autofree char *l = NULL;
    const char *r = NULL;
    /* "left right" (older files) or ["left", "right"] (tokenizers >= 0.20) */
    if (JSON_NODE_HOLDS_VALUE (en) && json_node_get_value_type (en) == G_TYPE_STRING) {
      const char *s = json_node_get_string (en);
      const char *spc = strchr (s, ' ');
      if (spc) {
        l = g_strndup (s, (gsize) (spc - s));
        r = spc + 1;
      }
    } else if (JSON_NODE_HOLDS_ARRAY (en) && json_array_get_length (json_node_get_array (en)) == 2) {
      JsonArray *pair = json_node_get_array (en);
      l = g_strdup (json_array_get_string_element (pair, 0));
      r = json_array_get_string_element (pair, 1);
    }
    if (!l || !r) {
      g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: merges[%u] is not a pair", path, i);
      return NULL;
    }
    if (!unmap (path, "merge", l, left, error) || !unmap (path, "merge", r, buf, error))
      return NULL;
    if (!hv_bpe_add_merge (tok->bpe, (const char *) left->data, left->len,
                           (const char *) buf->data, buf->len, (gint32) i, error)) {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  }
  if (!finish (tok, path, error))
    return NULL;
  return g_steal_pointer (&tok);
}

HvLlamaTokenizer *
hv_llama_tokenizer_new_from_file (const char *path, GError **error)
{
  g_autoptr(GError) e = NULL;
  g_autoptr(GMappedFile) file = g_mapped_file_new (path, FALSE, &e);
  if (!file) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "cannot read the Llama-3 tokenizer: %s",
                 e->message);
    return NULL;
  }
  const char *data = g_mapped_file_get_contents (file);
  gsize size = g_mapped_file_get_length (file);
  gsize i = 0;
  while (i < size && g_ascii_isspace (data[i]))
    i++;
  if (i < size && data[i] == '{')
    return load_hf_json (path, data, size, error);
  return load_tiktoken (path, data, size, error);
}

HvLlamaTokenizer *
hv_llama_tokenizer_new_from_dir (const char *dir, GError **error)
{
  static const char *const names[] = { "tokenizer.json", "tokenizer.model" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *path = g_build_filename (dir, names[i], NULL);
    if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
      return hv_llama_tokenizer_new_from_file (path, error);
  }
  g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
               "%s has neither tokenizer.json nor tokenizer.model (the Llama-3 tokenizer of the "
               "text encoder)", dir);
  return NULL;
}

/* ---- encoding ---- */

/* An HvBpePieceFunc: the piece's ids (the whole piece when it is a token and whole_piece). */
static void
encode_piece (gpointer data, const char *p, gsize n, GArray *ids)
{
  HvLlamaTokenizer *tok = data;
  if (hv_bpe_cache_get (tok->cache, p, n, ids))
    return;
  gint32 whole = tok->whole_piece ? hv_bpe_lookup (tok->bpe, p, n) : -1;
  if (whole >= 0) {
    g_array_append_val (ids, whole);
    hv_bpe_cache_put (tok->cache, p, n, &whole, 1);
    return;
  }
  hv_bpe_encode_bytes (tok->bpe, tok->cache, p, n, tok->byte_id, tok->byte_id, ids);
}

/* An HvBpeTextFunc: pre-tokenize (keeping text no alternative matched: the regex covers all,
 * HF keeps it), then BPE each piece. */
static gboolean
encode_ordinary (gpointer data, const char *s, gsize n, GArray *ids, GError **error)
{
  HvLlamaTokenizer *tok = data;
  return hv_bpe_split (tok->re, s, (gssize) n, TRUE, encode_piece, tok, ids, error);
}

gboolean
hv_llama_tokenizer_encode (HvLlamaTokenizer *tok, const char *text, gssize len,
                           gboolean add_bos, GArray *ids, GError **error)
{
  g_return_val_if_fail (tok != NULL, FALSE);
  return hv_bpe_encode_text (tok->specials, text, len, add_bos ? tok->bos : -1, -1,
                             encode_ordinary, tok, ids, error);
}

char *
hv_llama_tokenizer_decode (HvLlamaTokenizer *tok, const gint32 *ids, gsize n, gsize *len,
                           GError **error)
{
  g_autoptr(GString) out = g_string_new (NULL);
  for (gsize i = 0; i < n; i++) {
    const char *name = hv_bpe_specials_name (tok->specials, ids[i]);
    gsize kl;
    const char *key;
    if (name)
      g_string_append (out, name);
    else if ((key = hv_bpe_key (tok->bpe, ids[i], &kl)))
      g_string_append_len (out, key, (gssize) kl);
    else {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "token id %d is not in the vocabulary",
                   ids[i]);
      return NULL;
    }
  }
  if (len)
    *len = out->len;
  return g_string_free (g_steal_pointer (&out), FALSE);
}

gint32
hv_llama_tokenizer_bos (HvLlamaTokenizer *tok)
{
  return tok->bos;
}

gint32
hv_llama_tokenizer_pad (HvLlamaTokenizer *tok)
{
  return tok->pad;
}

gint32
hv_llama_tokenizer_special (HvLlamaTokenizer *tok, const char *name)
{
  return hv_bpe_specials_id (tok->specials, name);
}

gint32
hv_llama_tokenizer_vocab_end (HvLlamaTokenizer *tok)
{
  return MAX (hv_bpe_id_end (tok->bpe), hv_bpe_specials_max_id (tok->specials) + 1);
}

const char *
hv_llama_tokenizer_format (HvLlamaTokenizer *tok)
{
  return tok->format;
}
