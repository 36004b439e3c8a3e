/* hv-denoise.c — the flow-matching sampling loop (see hv-denoise.h). */
#include "hv-denoise.h"
#include "hv-arena.h"
#include "hv-error.h"
#include "hv-scheduler.h"
#include <math.h>
#include <string.h>

struct _HvDenoiser {
  HvDit *dit;
  HvBackend *b;
  HvDenoiseParams p;
  HvScheduler *sched;
  gboolean cfg;
  int64_t B, Bm;              /* latent batch, model batch (2B with CFG) */
  const HvTensor *states, *pooled;
  HvTensor *own_states, *own_pooled;   /* the [neg; pos] batches with CFG */
  int32_t *mask;              /* [Bm, L] */
  float *tvals, *gvals;       /* [Bm] */
  HvDenoiseInspectFunc inspect;
  gpointer inspect_data;
  HvArena *arena;             /* a step's model input and predictions, reused every step */
};

void
hv_denoise_params_init (HvDenoiseParams *p)
{
  p->steps = 50;
  p->shift = 7.0f;
  p->reverse = TRUE;
  p->embedded_guidance = 6.0f;
  p->guidance_bf16 = TRUE;
  p->cfg_scale = 1.0f;
}

float
hv_denoise_guidance_value (float g, gboolean bf16)
{
  if (!bf16)
    return g * 1000.0f;                       /* fp32 tensor * 1000.0 */
  /* .to(bf16) then * 1000.0 in bf16 (computed in fp32, rounded to bf16) */
  float gb = hv_bf16_to_f32 (hv_f32_to_bf16 (g));
  return hv_bf16_to_f32 (hv_f32_to_bf16 (gb * 1000.0f));
}

static gboolean
check_cond (HvDit *dit, const HvDitCond *c, const char *what, int64_t B, GError **error)
{
  const HvDitInfo *in = hv_dit_info (dit);
  char b1[64], b2[64];
  if (!c || !c->states || !c->mask || !c->pooled) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the %s text condition is incomplete", what);
    return FALSE;
  }
  HvBackend *b = hv_dit_backend (dit);
  const HvTensor *ts[2] = { c->states, c->pooled };
  for (int i = 0; i < 2; i++)
    if (ts[i]->dtype != HV_DTYPE_F32 || !hv_tensor_is_contiguous (ts[i]) ||
        (ts[i]->backend != b && !(hv_backend_is_host (b) && (!ts[i]->backend || hv_backend_is_host (ts[i]->backend))))) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the %s text condition must be contiguous f32 tensors on the %s backend",
                   what, b->name);
      return FALSE;
    }
  if (c->states->ndim != 3 || c->states->shape[0] != B || c->states->shape[2] != in->text_dim ||
      c->pooled->ndim != 2 || c->pooled->shape[0] != B || c->pooled->shape[1] != in->text_dim_2) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "the %s text condition is %s + %s; the DiT wants [%"
                 G_GINT64_FORMAT ", L, %d] + [%" G_GINT64_FORMAT ", %d]", what,
                 hv_tensor_shape_str (c->states, b1, sizeof b1), hv_tensor_shape_str (c->pooled, b2, sizeof b2),
                 B, in->text_dim, B, in->text_dim_2);
    return FALSE;
  }
  return TRUE;
}

static HvDenoiser *
denoiser_alloc (HvDit *dit, const HvDenoiseParams *p, GError **error)
{
  if (!isfinite (p->cfg_scale) || !isfinite (p->embedded_guidance)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "guidance scales must be finite numbers");
    return NULL;
  }
  HvDenoiser *d = g_new0 (HvDenoiser, 1);
  d->dit = dit;
  d->b = hv_dit_backend (dit);
  d->p = *p;
  d->cfg = p->cfg_scale > 1.0f;    /* upstream: do_classifier_free_guidance = scale > 1 */
  d->arena = hv_arena_new (d->b, 0, NULL);   /* sized by the first step */
  d->sched = hv_scheduler_new (p->steps, p->shift, p->reverse, error);
  if (!d->sched) {
    hv_denoiser_free (d);
    return NULL;
  }
  return d;
}

/* per-batch-item timestep and guidance buffers; the guidance value is the same for all */
static gboolean
denoiser_finish (HvDenoiser *d, GError **error)
{
  d->tvals = g_new (float, d->Bm);
  d->gvals = g_new (float, d->Bm);
  const float gv = hv_denoise_guidance_value (d->p.embedded_guidance, d->p.guidance_bf16);
  for (int64_t i = 0; i < d->Bm; i++)
    d->gvals[i] = gv;
  return hv_backend_check (d->b, error);
}

HvDenoiser *
hv_denoiser_new (HvDit *dit, const HvDenoiseParams *p, const HvDitCond *pos,
                 const HvDitCond *neg, GError **error)
{
  g_return_val_if_fail (dit != NULL && p != NULL, NULL);
  if (!pos || !pos->states) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "denoise needs a text condition");
    return NULL;
  }
  g_autoptr(HvDenoiser) d = denoiser_alloc (dit, p, error);
  if (!d)
    return NULL;
  d->B = pos->states->ndim == 3 ? pos->states->shape[0] : 0;
  if (d->B < 1) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "text states must be [B, L, D] with B >= 1");
    return NULL;
  }
  if (!check_cond (dit, pos, "positive", d->B, error))
    return NULL;
  const int64_t L = pos->states->shape[1];
  if (d->cfg) {
    if (!neg) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "classifier-free guidance (cfg scale %g > 1) needs a negative prompt",
                   (double) p->cfg_scale);
      return NULL;
    }
    if (!check_cond (dit, neg, "negative", d->B, error))
      return NULL;
    if (neg->states->shape[1] != L) {
      g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "negative and positive text have different lengths (%"
                   G_GINT64_FORMAT " and %" G_GINT64_FORMAT "); encode both to the same padded length",
                   neg->states->shape[1], L);
      return NULL;
    }
    d->Bm = 2 * d->B;
    const int64_t ss[3] = { d->Bm, L, pos->states->shape[2] }, ps[2] = { d->Bm, pos->pooled->shape[1] };
    d->own_states = hv_backend_tensor_f32 (d->b, 3, ss);
    d->own_pooled = hv_backend_tensor_f32 (d->b, 2, ps);
    if (!d->own_states || !d->own_pooled) {
      g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory for the CFG text batch", d->b->name);
      return NULL;
    }
    /* upstream order: [negative, positive]; the first half of the output is unconditional */
    hv_op_concat (d->b, d->own_states, neg->states, pos->states, 0);
    hv_op_concat (d->b, d->own_pooled, neg->pooled, pos->pooled, 0);
    d->states = d->own_states;
    d->pooled = d->own_pooled;
    d->mask = g_new (int32_t, d->Bm * L);
    memcpy (d->mask, neg->mask, sizeof (int32_t) * d->B * L);
    memcpy (d->mask + d->B * L, pos->mask, sizeof (int32_t) * d->B * L);
  } else {
    d->Bm = d->B;
    d->states = pos->states;
    d->pooled = pos->pooled;
    d->mask = g_memdup2 (pos->mask, sizeof (int32_t) * d->B * L);
  }
  if (!denoiser_finish (d, error))
    return NULL;
  return g_steal_pointer (&d);
}

HvDenoiser *
hv_denoiser_new_batched (HvDit *dit, const HvDenoiseParams *p, const HvDitCond *neg_pos,
                         GError **error)
{
  g_return_val_if_fail (dit != NULL && p != NULL, NULL);
  if (!neg_pos || !neg_pos->states || neg_pos->states->ndim != 3 ||
      neg_pos->states->shape[0] < 2 || neg_pos->states->shape[0] % 2) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "batched CFG needs a text batch [negative; positive] of even size");
    return NULL;
  }
  if (!(p->cfg_scale > 1.0f) || !isfinite (p->cfg_scale)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "a [negative; positive] text batch needs a cfg scale > 1 (got %g)",
                 (double) p->cfg_scale);
    return NULL;
  }
  g_autoptr(HvDenoiser) d = denoiser_alloc (dit, p, error);
  if (!d)
    return NULL;
  d->Bm = neg_pos->states->shape[0];
  d->B = d->Bm / 2;
  if (!check_cond (dit, neg_pos, "[negative; positive]", d->Bm, error))
    return NULL;
  d->states = neg_pos->states;
  d->pooled = neg_pos->pooled;
  d->mask = g_memdup2 (neg_pos->mask, sizeof (int32_t) * d->Bm * neg_pos->states->shape[1]);
  if (!denoiser_finish (d, error))
    return NULL;
  return g_steal_pointer (&d);
}

void
hv_denoiser_free (HvDenoiser *d)
{
  if (!d)
    return;
  hv_scheduler_free (d->sched);
  hv_arena_free (d->arena);
  hv_tensor_free (d->own_states);
  hv_tensor_free (d->own_pooled);
  g_free (d->mask);
  g_free (d->tvals);
  g_free (d->gvals);
  g_free (d);
}

int
hv_denoiser_n_steps (HvDenoiser *d)
{
  return d->sched->n_steps;
}

const float *
hv_denoiser_sigmas (HvDenoiser *d)
{
  return d->sched->sigmas;
}

const float *
hv_denoiser_timesteps (HvDenoiser *d)
{
  return d->sched->timesteps;
}

void
hv_denoiser_set_inspect (HvDenoiser *d, HvDenoiseInspectFunc func, gpointer user_data)
{
  d->inspect = func;
  d->inspect_data = user_data;
}

static void
inspect_floats (HvDenoiser *d, int i, const char *name, const float *v, int64_t n)
{
  if (!d->inspect)
    return;
  g_autoptr(HvTensor) h = hv_tensor_new_4 (HV_DTYPE_F32, 1, n, 0, 0, 0);
  memcpy (h->data, v, sizeof (float) * n);
  d->inspect (i, name, h, d->inspect_data);
}

static void
inspect (HvDenoiser *d, int i, const char *name, const HvTensor *t)
{
  if (d->inspect)
    d->inspect (i, name, t, d->inspect_data);
}

static gboolean
oom (HvDenoiser *d, int i, GError **error)
{
  g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "out of %s memory in denoise step %d", d->b->name, i + 1);
  return FALSE;
}

gboolean
hv_denoiser_step (HvDenoiser *d, int i, HvTensor *latents, GError **error)
{
  g_return_val_if_fail (d != NULL && latents != NULL, FALSE);
  char b1[80];
  if (i < 0 || i >= d->sched->n_steps) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "step %d is outside 0..%d", i, d->sched->n_steps - 1);
    return FALSE;
  }
  if (latents->ndim != 5 || latents->shape[0] != d->B || latents->dtype != HV_DTYPE_F32) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "latents are %s; the denoiser was made for batch %"
                 G_GINT64_FORMAT " f32 [B, C, T, H, W]", hv_tensor_shape_str (latents, b1, sizeof b1), d->B);
    return FALSE;
  }
  const HvDitInfo *in = hv_dit_info (d->dit);
  for (int64_t b = 0; b < d->Bm; b++)
    d->tvals[b] = d->sched->timesteps[i];     /* t.repeat(batch) */
  inspect_floats (d, i, "t", d->tvals, d->Bm);
  if (in->guidance_embed)
    inspect_floats (d, i, "guidance", d->gvals, d->Bm);

  int64_t shape[5];
  memcpy (shape, latents->shape, sizeof shape);
  shape[0] = d->Bm;
  /* x (CFG), v, and with CFG the two halves: one arena, allocated by the first step (a failure
   * only means these tensors are allocated one by one) */
  const int64_t vol = shape[2] * shape[3] * shape[4];
  const gsize need = (d->cfg ? hv_arena_size ((gsize) (d->Bm * shape[1] * vol) * 4) : 0) +
                     hv_arena_size ((gsize) (d->Bm * in->out_channels * vol) * 4) +
                     (d->cfg ? 2 * hv_arena_size ((gsize) (d->B * in->out_channels * vol) * 4) : 0);
  hv_arena_reset (d->arena);
  if (!hv_arena_reserve (d->arena, need, NULL))
    g_debug ("denoise step %d without its arena", i + 1);
  g_autoptr(HvTensor) x = NULL;
  if (d->cfg) {
    x = hv_arena_tensor (d->arena, HV_DTYPE_F32, 5, shape);
    if (!x)
      return oom (d, i, error);
    hv_op_concat (d->b, x, latents, latents, 0);
  }
  shape[1] = in->out_channels;
  g_autoptr(HvTensor) v = hv_arena_tensor (d->arena, HV_DTYPE_F32, 5, shape);
  if (!v)
    return oom (d, i, error);
  if (!hv_dit_forward (d->dit, v, x ? x : latents, d->tvals, in->guidance_embed ? d->gvals : NULL,
                       d->states, d->mask, d->pooled, error))
    return FALSE;
  g_clear_pointer (&x, hv_tensor_free);

  if (d->cfg) {
    shape[0] = d->B;
    g_autoptr(HvTensor) unc = hv_arena_tensor (d->arena, HV_DTYPE_F32, 5, shape);
    g_autoptr(HvTensor) txt = hv_arena_tensor (d->arena, HV_DTYPE_F32, 5, shape);
    if (!unc || !txt)
      return oom (d, i, error);
    hv_op_slice (d->b, unc, v, 0, 0);
    hv_op_slice (d->b, txt, v, 0, d->B);
    inspect (d, i, "noise_pred_uncond", unc);
    inspect (d, i, "noise_pred_text", txt);
    /* uncond + scale * (text - uncond), one fp32 rounding per op as torch */
    hv_op_sub (d->b, txt, txt, unc);
    hv_op_scale (d->b, txt, txt, d->p.cfg_scale, 0.0f);
    g_clear_pointer (&v, hv_tensor_free);
    hv_op_add (d->b, unc, unc, txt);
    v = g_steal_pointer (&unc);
  }
  inspect (d, i, "noise_pred", v);
  if (latents->shape[1] != v->shape[1]) {
    g_set_error (error, HV_ERROR, HV_ERROR_SHAPE, "the DiT predicts %d channels for %" G_GINT64_FORMAT
                 "-channel latents", in->out_channels, latents->shape[1]);
    return FALSE;
  }
  hv_scheduler_step (d->sched, d->b, i, latents, v);
  if (!hv_backend_check (d->b, error))
    return FALSE;
  inspect (d, i, "latents", latents);
  return TRUE;
}

gboolean
hv_denoiser_run (HvDenoiser *d, HvTensor *latents, HvDenoiseProgressFunc progress,
                 gpointer user_data, const volatile gint *cancel, GError **error)
{
  g_return_val_if_fail (d != NULL, FALSE);
  const gint64 start = g_get_monotonic_time ();
  const int n = d->sched->n_steps;
  for (int i = 0; i < n; i++) {
    if (cancel && *cancel) {
      g_set_error (error, HV_ERROR, HV_ERROR_CANCELLED, "denoising cancelled before step %d of %d", i + 1, n);
      return FALSE;
    }
    if (!hv_denoiser_step (d, i, latents, error))
      return FALSE;
    if (progress)
      progress (i + 1, n, (g_get_monotonic_time () - start) / 1e6, user_data);
  }
  return TRUE;
}

gboolean
hv_denoise (HvDit *dit, const HvDenoiseParams *p, HvTensor *latents, const HvDitCond *pos,
            const HvDitCond *neg, HvDenoiseProgressFunc progress, gpointer user_data,
            const volatile gint *cancel, GError **error)
{
  g_autoptr(HvDenoiser) d = hv_denoiser_new (dit, p, pos, neg, error);
  return d && hv_denoiser_run (d, latents, progress, user_data, cancel, error);
}
