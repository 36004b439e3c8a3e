/* fixture-dit.c — the DiT kinds:
 *   dit_forward      one forward; every mid.* intermediate the DiT captures, the RoPE tables
 *                    (in.freqs_cos/sin) and `out`
 *   dit_forward_fp8  the same inputs through the fp8 checkpoint (weights × per-tensor scale)
 *   denoise          the 4-step loop with embedded guidance: t, guidance, noise_pred and latents
 *                    of every step, the final latents, and the bf16-rounded guidance variant
 *   cfg_denoise      a batch-2 [negative, positive] forward and the real-CFG loop
 * Each kind runs with the DiT loaded from every weights file of the fixture's folder
 * (official-name safetensors, the official .pt, diffusers-name safetensors; for fp8 the fp8
 * .safetensors and .pt with their scale maps), or only from --weights FILE. Every printed line
 * names the file it used. */
#include "fixture.h"
#include "hv-denoise.h"
#include "hv-dit.h"
#include "hv-error.h"
#include <stdio.h>
#include <string.h>

static const char *const bf16_files[] = {
  "dit_weights.safetensors", "dit_weights.pt", "dit_weights_diffusers.safetensors", NULL
};
static const char *const fp8_files[] = {
  "dit_weights_fp8.safetensors", "dit_weights_fp8.pt", NULL
};

typedef struct {
  HvFixture *fx;
  const char *tag;        /* weights file of this run */
  const char *prefix;     /* fixture name prefix of captured tensors ("mid.", "fwd.") */
  GHashTable *seen;       /* fixture tensor names compared */
} Run;

/* Compares ours with fixture tensor `name`, labelled with the weights file. */
static void
compare (Run *r, const char *name, const HvTensor *ours)
{
  g_autofree char *label = g_strdup_printf ("%s [%s]", name, r->tag);
  const HvTensor *exp = hv_fixture_tensor (r->fx, name);
  if (r->seen)
    g_hash_table_add (r->seen, g_strdup (name));
  if (!exp) {
    hv_fixture_check (r->fx, label, FALSE, "no expected tensor of that name");
    return;
  }
  g_autoptr(HvTensor) host = ours->backend ? hv_backend_download (ours->backend, ours) : hv_tensor_view (ours);
  g_autoptr(HvTensor) f = hv_tensor_to_f32 (host);
  hv_fixture_compare_f32 (r->fx, label, exp, f->data, (size_t) hv_tensor_numel (f));
}

static void
on_capture (const char *name, const HvTensor *t, gpointer data)
{
  Run *r = data;
  if (strcmp (name, "rope_cos") == 0 || strcmp (name, "rope_sin") == 0) {
    const char *exp = name[5] == 'c' ? "in.freqs_cos" : "in.freqs_sin";
    if (hv_fixture_tensor (r->fx, exp))
      compare (r, exp, t);
    return;
  }
  g_autofree char *full = g_strconcat (r->prefix, name, NULL);
  if (hv_fixture_tensor (r->fx, full))
    compare (r, full, t);
}

/* int64/int32 fixture mask as int32 host values */
static int32_t *
mask_i32 (HvFixture *fx, const char *name, int64_t *n_out, GError **error)
{
  const HvTensor *m = hv_fixture_tensor (fx, name);
  if (!m || (m->dtype != HV_DTYPE_I64 && m->dtype != HV_DTYPE_I32)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "fixture %s has no integer tensor '%s'", fx->name, name);
    return NULL;
  }
  int64_t n = hv_tensor_numel (m);
  int32_t *out = g_new (int32_t, MAX (n, 1));
  for (int64_t i = 0; i < n; i++)
    out[i] = m->dtype == HV_DTYPE_I64 ? (int32_t) ((const int64_t *) m->data)[i] : ((const int32_t *) m->data)[i];
  if (n_out)
    *n_out = n;
  return out;
}

/* host f32 values of a small fixture tensor */
static float *
floats (HvFixture *fx, const char *name, GError **error)
{
  g_autoptr(HvTensor) t = hv_fixture_f32 (fx, name, error);
  return t ? g_memdup2 (t->data, hv_tensor_nbytes (t)) : NULL;
}

static HvDit *
open_dit (HvFixture *fx, const char *file, GError **error)
{
  g_autofree char *path = g_path_is_absolute (file) ? g_strdup (file) : hv_fixture_path (fx, file);
  g_autoptr(GError) local = NULL;
  HvDit *d = hv_dit_open (path, NULL, fx->backend, &local);
  if (!d)
    g_set_error (error, HV_ERROR, local->code, "loading the DiT from %s: %s", file, local->message);
  return d;
}

/* The files to run: --weights, or every file of the list present in the folder. */
static GPtrArray *
weight_files (HvFixture *fx, const char *const *list)
{
  GPtrArray *a = g_ptr_array_new_with_free_func (g_free);
  if (fx->weights) {
    g_ptr_array_add (a, g_canonicalize_filename (fx->weights, NULL));
    return a;
  }
  for (int i = 0; list[i]; i++) {
    g_autofree char *p = hv_fixture_path (fx, list[i]);
    if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
      g_ptr_array_add (a, g_strdup (list[i]));
    else
      hv_fixture_check (fx, list[i], FALSE, "weights file missing from %s", fx->dir);
  }
  return a;
}

/* One forward from the fixture's `pre`in.* tensors; captures compared under `prefix`. */
static gboolean
forward_once (Run *r, HvDit *d, const char *pre, GError **error)
{
  HvFixture *fx = r->fx;
  g_autofree char *nx = g_strconcat (pre, "in.x", NULL), *nt = g_strconcat (pre, "in.t", NULL);
  g_autofree char *ng = g_strconcat (pre, "in.guidance", NULL), *nm = g_strconcat (pre, "in.text_mask", NULL);
  g_autofree char *ns = g_strconcat (pre, "in.text_states", NULL), *ns2 = g_strconcat (pre, "in.text_states_2", NULL);
  g_autofree char *nout = g_strconcat (pre, "out", NULL);
  g_autoptr(HvTensor) x = hv_fixture_input (fx, nx, error);
  g_autoptr(HvTensor) ts = x ? hv_fixture_input (fx, ns, error) : NULL;
  g_autoptr(HvTensor) ts2 = ts ? hv_fixture_input (fx, ns2, error) : NULL;
  g_autofree float *t = ts2 ? floats (fx, nt, error) : NULL;
  g_autofree float *g = NULL;
  g_autofree int32_t *mask = t ? mask_i32 (fx, nm, NULL, error) : NULL;
  if (!mask)
    return FALSE;
  if (hv_dit_info (d)->guidance_embed && !(g = floats (fx, ng, error)))
    return FALSE;
  g_autoptr(HvTensor) out = hv_backend_tensor_like (fx->backend, x);
  hv_dit_set_capture (d, on_capture, r);
  gboolean ok = hv_dit_forward (d, out, x, t, g, ts, mask, ts2, error);
  hv_dit_set_capture (d, NULL, NULL);
  if (!ok)
    return FALSE;
  compare (r, nout, out);
  return TRUE;
}

/* Every fixture tensor starting with `prefix` must have been compared. */
static void
check_all_seen (Run *r, const char *prefix)
{
  const char **names = hv_store_names (r->fx->tensors);
  int missing = 0;
  GString *list = g_string_new (NULL);
  for (int i = 0; names[i]; i++)
    if (g_str_has_prefix (names[i], prefix) && !g_hash_table_contains (r->seen, names[i])) {
      missing++;
      g_string_append_printf (list, " %s", names[i]);
    }
  g_autofree char *label = g_strdup_printf ("%s* coverage [%s]", prefix, r->tag);
  hv_fixture_check (r->fx, label, missing == 0, "%d expected tensors not produced%s", missing, list->str);
  g_string_free (list, TRUE);
}

static gboolean
run_forward_kind (HvFixture *fx, const char *const *files, GError **error)
{
  g_autoptr(GPtrArray) fl = weight_files (fx, files);
  for (guint i = 0; i < fl->len; i++) {
    const char *file = fl->pdata[i];
    g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    Run r = { .fx = fx, .tag = file, .prefix = "mid.", .seen = seen };
    g_autoptr(HvDit) d = open_dit (fx, file, error);
    if (!d || !forward_once (&r, d, "", error))
      return FALSE;
    check_all_seen (&r, "mid.");
  }
  return TRUE;
}

gboolean
hv_fixture_run_dit_forward (HvFixture *fx, GError **error)
{
  return run_forward_kind (fx, bf16_files, error);
}

gboolean
hv_fixture_run_dit_forward_fp8 (HvFixture *fx, GError **error)
{
  return run_forward_kind (fx, fp8_files, error);
}

/* ---- loops ---- */

typedef struct {
  Run *r;
  const char *prefix;     /* "" or "loop." */
  gboolean quiet;         /* a rerun: no per-step comparisons ... */
  const char *guidance0;  /* ... except step 0's guidance under this name, when set */
  int n_progress, last_step;
} LoopRun;

static void
on_inspect (int step, const char *name, const HvTensor *t, gpointer data)
{
  LoopRun *l = data;
  if (l->quiet) {
    if (l->guidance0 && step == 0 && strcmp (name, "guidance") == 0)
      compare (l->r, l->guidance0, t);
    return;
  }
  g_autofree char *full = g_strdup_printf ("%sstep%d.%s", l->prefix, step, name);
  if (hv_fixture_tensor (l->r->fx, full))
    compare (l->r, full, t);
}

static void
on_progress (int step, int total, double elapsed, gpointer data)
{
  LoopRun *l = data;
  l->n_progress++;
  l->last_step = step;
}

static void
denoise_params (HvFixture *fx, HvDenoiseParams *p)
{
  hv_denoise_params_init (p);
  JsonObject *o = json_object_has_member (fx->root, "denoise") ?
                  json_object_get_object_member (fx->root, "denoise") : NULL;
  if (!o)
    return;
  p->steps = (int) json_object_get_int_member_with_default (o, "steps", p->steps);
  p->shift = (float) json_object_get_double_member_with_default (o, "shift", p->shift);
  p->reverse = json_object_get_boolean_member_with_default (o, "reverse", p->reverse);
  p->embedded_guidance = (float) json_object_get_double_member_with_default (o, "embedded_guidance_scale", p->embedded_guidance);
  p->cfg_scale = (float) json_object_get_double_member_with_default (o, "guidance_scale", 1.0);
  /* the fixtures run the pipeline with target dtype fp32: guidance g*1000 exactly */
  p->guidance_bf16 = FALSE;
}

/* cond of batch row `row` (or all rows: row < 0) of fixture tensors */
typedef struct {
  HvTensor *states, *pooled;
  int32_t *mask;
} OwnedCond;

static void
owned_cond_clear (OwnedCond *c)
{
  g_clear_pointer (&c->states, hv_tensor_free);
  g_clear_pointer (&c->pooled, hv_tensor_free);
  g_clear_pointer (&c->mask, g_free);
}

static gboolean
load_cond (HvFixture *fx, const char *pre, int row, OwnedCond *c, HvDitCond *out, GError **error)
{
  g_autofree char *ns = g_strconcat (pre, "text_states", NULL), *ns2 = g_strconcat (pre, "text_states_2", NULL);
  g_autofree char *nm = g_strconcat (pre, "text_mask", NULL);
  g_autoptr(HvTensor) s = hv_fixture_f32 (fx, ns, error);
  g_autoptr(HvTensor) p = s ? hv_fixture_f32 (fx, ns2, error) : NULL;
  int64_t nmask = 0;
  g_autofree int32_t *m = p ? mask_i32 (fx, nm, &nmask, error) : NULL;
  if (!m)
    return FALSE;
  if (row >= 0) {
    int64_t L = s->shape[1], D1 = s->shape[2], D2 = p->shape[1];
    g_autoptr(HvTensor) s1 = hv_tensor_new_4 (HV_DTYPE_F32, 3, 1, L, D1, 0);
    g_autoptr(HvTensor) p1 = hv_tensor_new_4 (HV_DTYPE_F32, 2, 1, D2, 0, 0);
    memcpy (s1->data, (float *) s->data + row * L * D1, sizeof (float) * L * D1);
    memcpy (p1->data, (float *) p->data + row * D2, sizeof (float) * D2);
    memmove (m, m + row * L, sizeof (int32_t) * L);
    hv_tensor_free (g_steal_pointer (&s));
    hv_tensor_free (g_steal_pointer (&p));
    s = g_steal_pointer (&s1);
    p = g_steal_pointer (&p1);
  }
  c->states = hv_backend_upload (fx->backend, s);
  c->pooled = hv_backend_upload (fx->backend, p);
  c->mask = g_steal_pointer (&m);
  out->states = c->states;
  out->pooled = c->pooled;
  out->mask = c->mask;
  return TRUE;
}

/* Runs the loop from `init` and compares; returns the final latents on the backend. */
static HvTensor *
run_loop (LoopRun *l, HvDit *d, const HvDenoiseParams *p, const char *init, const HvDitCond *pos,
          const HvDitCond *neg, const HvDitCond *batched, GError **error)
{
  HvFixture *fx = l->r->fx;
  HvTensor *lat = hv_fixture_input (fx, init, error);
  if (!lat)
    return NULL;
  g_autoptr(HvDenoiser) dn = batched ? hv_denoiser_new_batched (d, p, batched, error)
                                     : hv_denoiser_new (d, p, pos, neg, error);
  if (!dn) {
    hv_tensor_free (lat);
    return NULL;
  }
  if (!l->quiet) {
    g_autofree char *ns = g_strconcat (l->prefix, "sigmas", NULL), *nt = g_strconcat (l->prefix, "timesteps", NULL);
    g_autoptr(HvTensor) sg = hv_tensor_new_4 (HV_DTYPE_F32, 1, p->steps + 1, 0, 0, 0);
    g_autoptr(HvTensor) tt = hv_tensor_new_4 (HV_DTYPE_F32, 1, p->steps, 0, 0, 0);
    memcpy (sg->data, hv_denoiser_sigmas (dn), sizeof (float) * (p->steps + 1));
    memcpy (tt->data, hv_denoiser_timesteps (dn), sizeof (float) * p->steps);
    if (hv_fixture_tensor (fx, ns))
      compare (l->r, ns, sg);
    if (hv_fixture_tensor (fx, nt))
      compare (l->r, nt, tt);
  }
  hv_denoiser_set_inspect (dn, on_inspect, l);
  if (!hv_denoiser_run (dn, lat, on_progress, l, NULL, error)) {
    hv_tensor_free (lat);
    return NULL;
  }
  g_autofree char *label = g_strdup_printf ("%sprogress [%s]", l->prefix, l->r->tag);
  hv_fixture_check (fx, label, l->n_progress == p->steps && l->last_step == p->steps,
                    "%d callbacks, last step %d of %d", l->n_progress, l->last_step, p->steps);
  return lat;
}

/* A raised cancel flag stops the loop before the first step and leaves the latents alone. */
static void
check_cancel (Run *r, HvDit *d, const HvDenoiseParams *p, const char *init, const HvDitCond *pos,
              const HvDitCond *neg)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(HvTensor) lat = hv_fixture_input (r->fx, init, &err);
  g_autoptr(HvTensor) before = lat ? hv_backend_download (r->fx->backend, lat) : NULL;
  volatile gint cancel = 1;
  gboolean ok = lat && hv_denoise (d, p, lat, pos, neg, NULL, NULL, &cancel, &err);
  g_autoptr(HvTensor) after = lat ? hv_backend_download (r->fx->backend, lat) : NULL;
  gboolean same = before && after && memcmp (before->data, after->data, hv_tensor_nbytes (before)) == 0;
  g_autofree char *label = g_strdup_printf ("cancel [%s]", r->tag);
  hv_fixture_check (r->fx, label, !ok && g_error_matches (err, HV_ERROR, HV_ERROR_CANCELLED) && same,
                    "%s, latents %s", err ? err->message : "not cancelled", same ? "untouched" : "changed");
}

gboolean
hv_fixture_run_denoise (HvFixture *fx, GError **error)
{
  HvDenoiseParams p;
  denoise_params (fx, &p);
  g_autoptr(GPtrArray) fl = weight_files (fx, bf16_files);
  for (guint i = 0; i < fl->len; i++) {
    const char *file = fl->pdata[i];
    Run r = { .fx = fx, .tag = file };
    g_autoptr(HvDit) d = open_dit (fx, file, error);
    if (!d)
      return FALSE;
    OwnedCond oc = { 0 };
    HvDitCond pos;
    if (!load_cond (fx, "in.", -1, &oc, &pos, error))
      return FALSE;
    LoopRun l = { .r = &r, .prefix = "" };
    g_autoptr(HvTensor) fin = run_loop (&l, d, &p, "in.latents_init", &pos, NULL, NULL, error);
    if (!fin) {
      owned_cond_clear (&oc);
      return FALSE;
    }
    compare (&r, "latents_final", fin);
    if (hv_fixture_tensor (fx, "alt_bf16_guidance.latents_final")) {
      HvDenoiseParams pb = p;
      pb.guidance_bf16 = TRUE;
      LoopRun lb = { .r = &r, .prefix = "alt_bf16_guidance.", .quiet = TRUE,
                     .guidance0 = "alt_bf16_guidance.guidance" };
      g_autoptr(HvTensor) fb = run_loop (&lb, d, &pb, "in.latents_init", &pos, NULL, NULL, error);
      if (!fb) {
        owned_cond_clear (&oc);
        return FALSE;
      }
      compare (&r, "alt_bf16_guidance.latents_final", fb);
    }
    check_cancel (&r, d, &p, "in.latents_init", &pos, NULL);
    owned_cond_clear (&oc);
  }
  return TRUE;
}

gboolean
hv_fixture_run_cfg_denoise (HvFixture *fx, GError **error)
{
  HvDenoiseParams p;
  denoise_params (fx, &p);
  if (!(p.cfg_scale > 1.0f)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CORRUPT, "%s: denoise.guidance_scale must be > 1 for a CFG fixture", fx->name);
    return FALSE;
  }
  g_autoptr(GPtrArray) fl = weight_files (fx, bf16_files);
  for (guint i = 0; i < fl->len; i++) {
    const char *file = fl->pdata[i];
    Run r = { .fx = fx, .tag = file, .prefix = "fwd." };
    g_autoptr(HvDit) d = open_dit (fx, file, error);
    if (!d || !forward_once (&r, d, "fwd.", error))
      return FALSE;
    /* the loop: negative = batch row 0 of the forward's text, positive = row 1 */
    OwnedCond on = { 0 }, op = { 0 }, ob = { 0 };
    HvDitCond neg, pos, both;
    gboolean ok = load_cond (fx, "fwd.in.", 0, &on, &neg, error) && load_cond (fx, "fwd.in.", 1, &op, &pos, error) &&
                  load_cond (fx, "fwd.in.", -1, &ob, &both, error);
    LoopRun l = { .r = &r, .prefix = "loop." };
    g_autoptr(HvTensor) fin = ok ? run_loop (&l, d, &p, "loop.in.latents_init", &pos, &neg, NULL, error) : NULL;
    if (fin)
      compare (&r, "loop.latents_final", fin);
    /* the same loop with the text batch [negative; positive] used as one tensor */
    g_autofree char *tag = g_strdup_printf ("%s, batched text", file);
    Run rb = { .fx = fx, .tag = tag };
    LoopRun lb = { .r = &rb, .prefix = "loop.batched.", .quiet = TRUE };
    g_autoptr(HvTensor) fb = fin ? run_loop (&lb, d, &p, "loop.in.latents_init", NULL, NULL, &both, error) : NULL;
    if (fb)
      compare (&rb, "loop.latents_final", fb);
    owned_cond_clear (&on);
    owned_cond_clear (&op);
    owned_cond_clear (&ob);
    if (!fin || !fb)
      return FALSE;
  }
  return TRUE;
}
