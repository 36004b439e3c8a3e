/* hv-scheduler.h — FlowMatchDiscreteScheduler of the official code: sigmas from
 * linspace(1, 0, n+1), time shift, optional reverse, Euler steps in fp32. */
#pragma once
#include "hv-backend.h"

G_BEGIN_DECLS

typedef struct {
  int n_steps;
  float shift;
  gboolean reverse;
  float *sigmas;      /* n_steps + 1 values, fp32 exactly as upstream computes them */
  float *timesteps;   /* n_steps values: sigmas[:-1] * 1000 */
} HvScheduler;

HvScheduler *hv_scheduler_new (int n_steps, float shift, gboolean reverse, GError **error);
void         hv_scheduler_free (HvScheduler *s);
/* latents += v * (sigmas[i+1] - sigmas[i]) (f32, on latents' backend) */
void         hv_scheduler_step (HvScheduler *s, HvBackend *b, int i, HvTensor *latents, const HvTensor *v);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvScheduler, hv_scheduler_free)

G_END_DECLS
