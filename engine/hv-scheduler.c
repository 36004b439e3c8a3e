/* hv-scheduler.c — FlowMatchDiscreteScheduler of the official code, in the same fp32
 * arithmetic (see hv-scheduler.h):
 *   s      = torch.linspace(1, 0, n + 1)            (fp32, CPU kernel: start + step*i for the
 *                                                    first half, end - step*(n - i) after,
 *                                                    each one fused multiply-add)
 *   sigma  = shift * s / (1 + (shift - 1) * s)      (fp32 tensor ops, one rounding each)
 *   sigma  = 1 - sigma                              (when not reversed)
 *   t      = sigma[:-1] * 1000
 *   step i: x = x + v * (sigma[i+1] - sigma[i])     (dt rounded to fp32 first, then mul, add)
 * The shift is taken as an fp32 value, as torch applies a Python scalar to an fp32 tensor. */
#include "hv-scheduler.h"
#include "hv-error.h"
#include <math.h>

/* torch.linspace(start, end, steps) in fp32 as the CPU kernel computes it */
static void
linspace_f32 (float *out, float start, float end, int steps)
{
  if (steps == 1) {
    out[0] = start;
    return;
  }
  const float step = (end - start) / (float) (steps - 1);
  const int halfway = steps / 2;
  /* torch builds this kernel with FMA enabled and the compiler fuses both expressions
   * (start + step*i, end - step*(steps-1-i)) into single-rounding FMAs */
  for (int i = 0; i < steps; i++)
    out[i] = i < halfway ? fmaf (step, (float) i, start) : fmaf (-step, (float) (steps - i - 1), end);
}

HvScheduler *
hv_scheduler_new (int n_steps, float shift, gboolean reverse, GError **error)
{
  if (n_steps < 1 || n_steps > 100000) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "number of sampling steps must be between 1 and 100000, got %d", n_steps);
    return NULL;
  }
  if (!(shift > 0.0f) || !isfinite (shift)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "flow shift must be a positive number, got %g", (double) shift);
    return NULL;
  }
  HvScheduler *s = g_new0 (HvScheduler, 1);
  s->n_steps = n_steps;
  s->shift = shift;
  s->reverse = reverse;
  s->sigmas = g_new (float, n_steps + 1);
  s->timesteps = g_new (float, n_steps);
  linspace_f32 (s->sigmas, 1.0f, 0.0f, n_steps + 1);
  const float shift_m1 = shift - 1.0f;
  for (int i = 0; i <= n_steps; i++) {
    float t = s->sigmas[i];
    float num = shift * t;
    float den = shift_m1 * t;
    den = den + 1.0f;
    float sigma = num / den;
    if (!reverse)
      sigma = 1.0f - sigma;
    s->sigmas[i] = sigma;
  }
  for (int i = 0; i < n_steps; i++)
    s->timesteps[i] = s->sigmas[i] * 1000.0f;
  return s;
}

void
hv_scheduler_free (HvScheduler *s)
{
  if (!s)
    return;
  g_free (s->sigmas);
  g_free (s->timesteps);
  g_free (s);
}

void
hv_scheduler_step (HvScheduler *s, HvBackend *b, int i, HvTensor *latents, const HvTensor *v)
{
  g_return_if_fail (s != NULL && b != NULL && latents != NULL && v != NULL);
  g_return_if_fail (i >= 0 && i < s->n_steps);
  g_return_if_fail (hv_tensor_numel (latents) == hv_tensor_numel (v));
  const float dt = s->sigmas[i + 1] - s->sigmas[i];
  /* upstream: sample + model_output * dt as two fp32 tensor ops (product rounded, then sum) */
  g_autoptr(HvTensor) tmp = hv_backend_tensor_like (b, latents);
  if (!tmp) {
    if (!b->error)
      g_set_error (&b->error, HV_ERROR, HV_ERROR_NO_MEMORY,
                   "scheduler step %d: cannot allocate a temporary like the latents", i);
    return;
  }
  hv_op_scale (b, tmp, v, dt, 0.0f);
  hv_op_add (b, latents, latents, tmp);
}
