/* hv-denoise.h — the sampling loop of the official sample_video.py: flow-matching Euler steps
 * over the DiT, with embedded guidance and optional real classifier-free guidance.
 *
 * Per step i (t = scheduler timestep i, fp32):
 *   model batch  x = latents, or cat([latents, latents]) with CFG (text batch = [negative; positive])
 *   v            = dit(x, t repeated per batch item, text..., guidance)
 *   CFG          v = v_uncond + cfg_scale * (v_text - v_uncond)     (v_uncond = first half)
 *   latents     += v * (sigma[i+1] - sigma[i])
 *
 * Embedded guidance (guidance-distilled models): the model gets g * 1000. The released pipeline
 * (bf16 precision) computes it as tensor([g]).to(bf16) * 1000 in bf16, so 6.0 becomes 6016, not
 * 6000; guidance_bf16 (default TRUE) reproduces that, FALSE gives the exact fp32 g * 1000.
 * With CFG the same guidance goes to both batch halves, as upstream does. */
#pragma once
#include "hv-dit.h"

G_BEGIN_DECLS

typedef struct {
  int steps;                /* 50 */
  float shift;              /* flow shift, 7.0 */
  gboolean reverse;         /* TRUE: sigmas run 1 -> 0 (the shipped scripts pass --flow-reverse) */
  float embedded_guidance;  /* 6.0; used only by a model with a guidance embedding */
  gboolean guidance_bf16;   /* TRUE: bf16(bf16(g) * 1000) as the released bf16 pipeline */
  float cfg_scale;          /* 1.0 = off; > 1 needs a negative condition */
} HvDenoiseParams;

/* The text condition of a batch: f32 tensors on the DiT's backend, mask on the host. */
typedef struct {
  const HvTensor *states;   /* [B, L, text_dim] */
  const int32_t *mask;      /* [B, L], 1 = valid token (valid tokens first) */
  const HvTensor *pooled;   /* [B, text_dim_2] */
} HvDitCond;

/* Called after each finished step: step counts from 1 to total; elapsed = seconds since the
 * loop started. */
typedef void (*HvDenoiseProgressFunc) (int step, int total, double elapsed, gpointer user_data);
/* Sees the values of step i (0-based): "t", "guidance" (host [Bm]), "noise_pred_uncond",
 * "noise_pred_text" (CFG only), "noise_pred", "latents" (after the step). Valid during the call. */
typedef void (*HvDenoiseInspectFunc) (int step, const char *name, const HvTensor *t, gpointer user_data);

typedef struct _HvDenoiser HvDenoiser;

void         hv_denoise_params_init (HvDenoiseParams *p);
/* The guidance value the model receives for embedded guidance g (see above). */
float        hv_denoise_guidance_value (float g, gboolean bf16);

/* A loop for latents of batch B over `dit`. pos (and neg with CFG) must have batch B and the
 * same text length; they must stay valid while the denoiser is used. */
HvDenoiser  *hv_denoiser_new (HvDit *dit, const HvDenoiseParams *p, const HvDitCond *pos,
                              const HvDitCond *neg, GError **error);
/* Real CFG with the text already batched the way upstream concatenates it (and
 * hv_text_encode returns it with a negative prompt): batch 2B = [negative; positive], used in
 * place without a copy. Needs cfg_scale > 1; latents have batch B. */
HvDenoiser  *hv_denoiser_new_batched (HvDit *dit, const HvDenoiseParams *p,
                                      const HvDitCond *neg_pos, GError **error);
void         hv_denoiser_free (HvDenoiser *d);
int          hv_denoiser_n_steps (HvDenoiser *d);
const float *hv_denoiser_sigmas (HvDenoiser *d);      /* n_steps + 1 */
const float *hv_denoiser_timesteps (HvDenoiser *d);   /* n_steps */
void         hv_denoiser_set_inspect (HvDenoiser *d, HvDenoiseInspectFunc func, gpointer user_data);
/* Step i in place on latents [B, C, T, H, W] (f32, on the DiT's backend). */
gboolean     hv_denoiser_step (HvDenoiser *d, int i, HvTensor *latents, GError **error);
/* All steps. `cancel` (may be NULL) is read before every step: nonzero stops the loop with
 * HV_ERROR_CANCELLED, leaving the latents of the last finished step. */
gboolean     hv_denoiser_run (HvDenoiser *d, HvTensor *latents, HvDenoiseProgressFunc progress,
                              gpointer user_data, const volatile gint *cancel, GError **error);

/* new + run + free. */
gboolean     hv_denoise (HvDit *dit, const HvDenoiseParams *p, HvTensor *latents,
                         const HvDitCond *pos, const HvDitCond *neg, HvDenoiseProgressFunc progress,
                         gpointer user_data, const volatile gint *cancel, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvDenoiser, hv_denoiser_free)

G_END_DECLS
