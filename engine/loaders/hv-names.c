/* hv-names.c — see hv-names.h. The rules are generated from the module structure (per-block
 * loops), mirroring how diffusers names HunyuanVideoTransformer3DModel's modules. */
#include "hv-names.h"
#include "hv-blob.h"
#include "../hv-error.h"
#include <string.h>
#include <stdlib.h>

struct _HvNameMap {
  GPtrArray *rules;          /* HvNameRule* */
  GHashTable *by_official;   /* official -> rule */
  GHashTable *by_part;       /* diffusers name -> rule */
};

static void
rule_free (gpointer p)
{
  HvNameRule *r = p;
  g_free (r->official);
  for (guint i = 0; i < r->n_parts; i++)
    g_free (r->parts[i]);
  g_free (r);
}

/* Adds one rule per suffix (".weight", ".bias"): official module `o` from diffusers modules. */
static void
add (HvNameMap *m, HvNameOp op, gboolean bias, const char *o, const char *p0, const char *p1,
     const char *p2, const char *p3)
{
  const char *parts[HV_NAME_MAX_PARTS] = { p0, p1, p2, p3 };
  static const char *const suffix[] = { ".weight", ".bias" };
  for (int s = 0; s < (bias ? 2 : 1); s++) {
    HvNameRule *r = g_new0 (HvNameRule, 1);
    r->official = g_strconcat (o, suffix[s], NULL);
    r->op = op;
    for (guint i = 0; i < HV_NAME_MAX_PARTS && parts[i]; i++)
      r->parts[r->n_parts++] = g_strconcat (parts[i], suffix[s], NULL);
    g_ptr_array_add (m->rules, r);
    g_hash_table_insert (m->by_official, r->official, r);
    for (guint i = 0; i < r->n_parts; i++)
      g_hash_table_insert (m->by_part, r->parts[i], r);
  }
}

#define COPY(o, d) add (m, HV_NAME_COPY, TRUE, o, d, NULL, NULL, NULL)
#define COPY_W(o, d) add (m, HV_NAME_COPY, FALSE, o, d, NULL, NULL, NULL)
#define QKV(o, q, k, v) add (m, HV_NAME_ROWS, TRUE, o, q, k, v, NULL)

/* g_strdup_printf shorthand for the per-block names; freed with the block's scratch list */
static const char *
fmt (GPtrArray *scratch, const char *format, ...) G_GNUC_PRINTF (2, 3);

static const char *
fmt (GPtrArray *scratch, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  char *s = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_ptr_array_add (scratch, s);
  return s;
}

HvNameMap *
hv_dit_name_map_new (int n_double, int n_single, int n_refiner)
{
  HvNameMap *m = g_new0 (HvNameMap, 1);
  m->rules = g_ptr_array_new_with_free_func (rule_free);
  m->by_official = g_hash_table_new (g_str_hash, g_str_equal);
  m->by_part = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GPtrArray) sc = g_ptr_array_new_with_free_func (g_free);

  COPY ("img_in.proj", "x_embedder.proj");
  COPY ("txt_in.input_embedder", "context_embedder.proj_in");
  COPY ("txt_in.t_embedder.mlp.0", "context_embedder.time_text_embed.timestep_embedder.linear_1");
  COPY ("txt_in.t_embedder.mlp.2", "context_embedder.time_text_embed.timestep_embedder.linear_2");
  COPY ("txt_in.c_embedder.linear_1", "context_embedder.time_text_embed.text_embedder.linear_1");
  COPY ("txt_in.c_embedder.linear_2", "context_embedder.time_text_embed.text_embedder.linear_2");
  for (int i = 0; i < n_refiner; i++) {
    const char *o = fmt (sc, "txt_in.individual_token_refiner.blocks.%d.", i);
    const char *d = fmt (sc, "context_embedder.token_refiner.refiner_blocks.%d.", i);
#define O(x) fmt (sc, "%s" x, o)
#define D(x) fmt (sc, "%s" x, d)
    COPY (O ("norm1"), D ("norm1"));
    QKV (O ("self_attn_qkv"), D ("attn.to_q"), D ("attn.to_k"), D ("attn.to_v"));
    COPY (O ("self_attn_proj"), D ("attn.to_out.0"));
    COPY (O ("norm2"), D ("norm2"));
    COPY (O ("mlp.fc1"), D ("ff.net.0.proj"));
    COPY (O ("mlp.fc2"), D ("ff.net.2"));
    COPY (O ("adaLN_modulation.1"), D ("norm_out.linear"));
  }
  COPY ("time_in.mlp.0", "time_text_embed.timestep_embedder.linear_1");
  COPY ("time_in.mlp.2", "time_text_embed.timestep_embedder.linear_2");
  COPY ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1");
  COPY ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2");
  COPY ("guidance_in.mlp.0", "time_text_embed.guidance_embedder.linear_1");
  COPY ("guidance_in.mlp.2", "time_text_embed.guidance_embedder.linear_2");
  for (int i = 0; i < n_double; i++) {
    const char *o = fmt (sc, "double_blocks.%d.", i);
    const char *d = fmt (sc, "transformer_blocks.%d.", i);
    COPY (O ("img_mod.linear"), D ("norm1.linear"));
    QKV (O ("img_attn_qkv"), D ("attn.to_q"), D ("attn.to_k"), D ("attn.to_v"));
    COPY_W (O ("img_attn_q_norm"), D ("attn.norm_q"));
    COPY_W (O ("img_attn_k_norm"), D ("attn.norm_k"));
    COPY (O ("img_attn_proj"), D ("attn.to_out.0"));
    COPY (O ("img_mlp.fc1"), D ("ff.net.0.proj"));
    COPY (O ("img_mlp.fc2"), D ("ff.net.2"));
    COPY (O ("txt_mod.linear"), D ("norm1_context.linear"));
    QKV (O ("txt_attn_qkv"), D ("attn.add_q_proj"), D ("attn.add_k_proj"), D ("attn.add_v_proj"));
    COPY_W (O ("txt_attn_q_norm"), D ("attn.norm_added_q"));
    COPY_W (O ("txt_attn_k_norm"), D ("attn.norm_added_k"));
    COPY (O ("txt_attn_proj"), D ("attn.to_add_out"));
    COPY (O ("txt_mlp.fc1"), D ("ff_context.net.0.proj"));
    COPY (O ("txt_mlp.fc2"), D ("ff_context.net.2"));
  }
  for (int i = 0; i < n_single; i++) {
    const char *o = fmt (sc, "single_blocks.%d.", i);
    const char *d = fmt (sc, "single_transformer_blocks.%d.", i);
    add (m, HV_NAME_ROWS, TRUE, O ("linear1"), D ("attn.to_q"), D ("attn.to_k"), D ("attn.to_v"), D ("proj_mlp"));
    COPY (O ("linear2"), D ("proj_out"));
    COPY_W (O ("q_norm"), D ("attn.norm_q"));
    COPY_W (O ("k_norm"), D ("attn.norm_k"));
    COPY (O ("modulation.linear"), D ("norm.linear"));
#undef O
#undef D
  }
  COPY ("final_layer.linear", "proj_out");
  add (m, HV_NAME_SWAP_HALVES, TRUE, "final_layer.adaLN_modulation.1", "norm_out.linear", NULL, NULL, NULL);
  return m;
}

void
hv_name_map_free (HvNameMap *m)
{
  if (!m)
    return;
  g_hash_table_unref (m->by_official);
  g_hash_table_unref (m->by_part);
  g_ptr_array_unref (m->rules);
  g_free (m);
}

guint
hv_name_map_size (const HvNameMap *m)
{
  return m->rules->len;
}

const HvNameRule *
hv_name_map_rule (const HvNameMap *m, guint i)
{
  return i < m->rules->len ? m->rules->pdata[i] : NULL;
}

const HvNameRule *
hv_name_map_by_official (const HvNameMap *m, const char *official)
{
  return g_hash_table_lookup (m->by_official, official);
}

const HvNameRule *
hv_name_map_by_part (const HvNameMap *m, const char *name, guint *part)
{
  const HvNameRule *r = g_hash_table_lookup (m->by_part, name);
  if (r && part)
    for (guint i = 0; i < r->n_parts; i++)
      if (strcmp (r->parts[i], name) == 0)
        *part = i;
  return r;
}

const char *
hv_name_op_str (HvNameOp op)
{
  return op == HV_NAME_ROWS ? "rows" : op == HV_NAME_SWAP_HALVES ? "swap_halves" : "copy";
}

/* ---- detection ----------------------------------------------------------------------------- */

int
hv_store_count_blocks (HvStore *s, const char *prefix)
{
  const char **names = hv_store_names (s);
  gsize pl = strlen (prefix);
  long best = -1;
  for (guint i = 0; names[i]; i++) {
    if (strncmp (names[i], prefix, pl) != 0 || !g_ascii_isdigit (names[i][pl]))
      continue;
    char *end;
    long v = strtol (names[i] + pl, &end, 10);
    if (*end == '.' && v >= 0 && v < 100000 && v > best)
      best = v;
  }
  return (int) (best + 1);
}

HvDitNames
hv_dit_names_detect (HvStore *s)
{
  if (hv_store_get (s, "img_in.proj.weight") || hv_store_count_blocks (s, "double_blocks.") > 0)
    return HV_DIT_NAMES_OFFICIAL;
  if (hv_store_get (s, "x_embedder.proj.weight") || hv_store_count_blocks (s, "transformer_blocks.") > 0)
    return HV_DIT_NAMES_DIFFUSERS;
  return HV_DIT_NAMES_UNKNOWN;
}

const char *
hv_dit_names_str (HvDitNames n)
{
  return n == HV_DIT_NAMES_OFFICIAL ? "official" : n == HV_DIT_NAMES_DIFFUSERS ? "diffusers" : "unknown";
}

/* ---- conversion ---------------------------------------------------------------------------- */

/* A view sharing `t`'s data; the source store is attached to the new one. */
static gboolean
put_view (HvStore *dst, const char *name, const HvTensor *t, GError **error)
{
  return hv_store_insert (dst, name, hv_tensor_view (t), error);
}

static HvTensor *
new_like (HvDType dt, int nd, const int64_t *shape, gboolean with_data)
{
  if (with_data)
    return hv_tensor_new (dt, nd, shape);
  return hv_tensor_new_borrowed (dt, nd, shape, NULL, NULL, NULL);   /* metadata only */
}

static gboolean
make_rows (HvStore *dst, const HvNameRule *r, const HvTensor **p, GString *problems, GError **error)
{
  int64_t shape[HV_MAX_DIMS];
  memcpy (shape, p[0]->shape, sizeof shape);
  shape[0] = 0;
  gboolean with_data = TRUE;
  for (guint i = 0; i < r->n_parts; i++) {
    gboolean same = p[i]->dtype == p[0]->dtype && p[i]->ndim == p[0]->ndim && p[i]->ndim >= 1 &&
                    p[i]->scale == p[0]->scale && hv_tensor_is_contiguous (p[i]);
    for (int d = 1; same && d < p[0]->ndim; d++)
      same = p[i]->shape[d] == p[0]->shape[d];
    if (!same) {
      g_string_append_printf (problems, "\n  %s: parts differ in dtype, scale or trailing shape (%s vs %s)",
                              r->official, r->parts[0], r->parts[i]);
      return TRUE;
    }
    shape[0] += p[i]->shape[0];
    with_data = with_data && p[i]->data;
  }
  HvTensor *t = new_like (p[0]->dtype, p[0]->ndim, shape, with_data);
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of memory building '%s'", r->official);
    return FALSE;
  }
  t->scale = p[0]->scale;
  if (with_data) {
    guint8 *o = t->data;
    for (guint i = 0; i < r->n_parts; i++) {
      gsize n = hv_tensor_nbytes (p[i]);
      memcpy (o, p[i]->data, n);
      o += n;
    }
  }
  return hv_store_insert (dst, r->official, t, error);
}

static gboolean
make_swap (HvStore *dst, const HvNameRule *r, const HvTensor *p, GString *problems, GError **error)
{
  if (p->ndim < 1 || p->shape[0] % 2 || !hv_tensor_is_contiguous (p)) {
    g_string_append_printf (problems, "\n  %s: cannot swap the halves of %s", r->official, r->parts[0]);
    return TRUE;
  }
  HvTensor *t = new_like (p->dtype, p->ndim, p->shape, p->data != NULL);
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of memory building '%s'", r->official);
    return FALSE;
  }
  t->scale = p->scale;
  if (p->data) {
    gsize half = hv_tensor_nbytes (p) / 2;
    memcpy (t->data, (const guint8 *) p->data + half, half);
    memcpy ((guint8 *) t->data + half, p->data, half);
  }
  return hv_store_insert (dst, r->official, t, error);
}

static const char *const wrapper_prefixes[] = { "model.diffusion_model.", "diffusion_model.", "module.", "model." };

/* The wrapper prefix every name carries, or NULL. */
static const char *
common_prefix (HvStore *s)
{
  const char **names = hv_store_names (s);
  if (!names[0])
    return NULL;
  for (guint k = 0; k < G_N_ELEMENTS (wrapper_prefixes); k++) {
    gboolean all = TRUE;
    for (guint i = 0; all && names[i]; i++)
      all = g_str_has_prefix (names[i], wrapper_prefixes[k]);
    if (all)
      return wrapper_prefixes[k];
  }
  return NULL;
}

HvStore *
hv_dit_store_to_official (HvStore *s_in, HvDitNames *names_out, GError **error)
{
  g_autoptr(HvStore) s = s_in;
  const char *prefix = common_prefix (s);
  if (prefix) {
    g_autoptr(HvStore) st = hv_store_new ();
    const char **names = hv_store_names (s);
    for (guint i = 0; names[i]; i++)
      if (!put_view (st, names[i] + strlen (prefix), hv_store_get (s, names[i]), error))
        return NULL;
    hv_store_set_path_ (st, hv_store_path (s));
    hv_store_attach (st, g_steal_pointer (&s), (GDestroyNotify) hv_store_free);
    s = g_steal_pointer (&st);
  }
  HvDitNames kind = hv_dit_names_detect (s);
  if (names_out)
    *names_out = kind;
  if (kind != HV_DIT_NAMES_DIFFUSERS)
    return g_steal_pointer (&s);

  g_autoptr(HvNameMap) m = hv_dit_name_map_new (hv_store_count_blocks (s, "transformer_blocks."),
                                                hv_store_count_blocks (s, "single_transformer_blocks."),
                                                hv_store_count_blocks (s, "context_embedder.token_refiner.refiner_blocks."));
  g_autoptr(HvStore) out = hv_store_new ();
  hv_store_set_path_ (out, hv_store_path (s));
  g_autoptr(GString) problems = g_string_new (NULL);
  for (guint i = 0; i < hv_name_map_size (m); i++) {
    const HvNameRule *r = hv_name_map_rule (m, i);
    const HvTensor *p[HV_NAME_MAX_PARTS];
    guint have = 0;
    for (guint k = 0; k < r->n_parts; k++)
      have += (p[k] = hv_store_get (s, r->parts[k])) != NULL;
    if (have == 0)
      continue;           /* absent (e.g. no guidance_in): the validator decides */
    if (have < r->n_parts) {
      g_string_append_printf (problems, "\n  %s: needs", r->official);
      for (guint k = 0; k < r->n_parts; k++)
        if (!p[k])
          g_string_append_printf (problems, " %s", r->parts[k]);
      continue;
    }
    gboolean ok = r->op == HV_NAME_COPY ? put_view (out, r->official, p[0], error)
                : r->op == HV_NAME_ROWS ? make_rows (out, r, p, problems, error)
                : make_swap (out, r, p[0], problems, error);
    if (!ok)
      return NULL;
  }
  /* names no rule knows stay as they are */
  const char **names = hv_store_names (s);
  for (guint i = 0; names[i]; i++)
    if (!hv_name_map_by_part (m, names[i], NULL) && !put_view (out, names[i], hv_store_get (s, names[i]), error))
      return NULL;
  if (problems->len) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "%s: cannot convert diffusers names:%s",
                 hv_store_path (s) ? hv_store_path (s) : "weights", problems->str);
    return NULL;
  }
  hv_store_attach (out, g_steal_pointer (&s), (GDestroyNotify) hv_store_free);
  return g_steal_pointer (&out);
}
