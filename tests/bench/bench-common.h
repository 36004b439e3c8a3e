/* bench-common.h — helpers shared by the benchmarks in tests/bench/ (not part of libhyvideo). */
#pragma once
#include "hv-backend.h"
#include "hv-vae.h"
#include <glib.h>

G_BEGIN_DECLS

/* uniform in [-1, 1) from a 32-bit LCG: fast and reproducible */
static inline float
hv_bench_lcg (guint32 *s)
{
  *s = *s * 1664525u + 1013904223u;
  return (float) ((*s >> 8) / 8388608.0 - 1.0);
}

/* A decoder-only VAE of the released model's width (the config and tensor shapes of
 * FIXTURES_DIR/manifests/vae_full.json: block_out [128, 256, 512, 512], 2 layers per block,
 * 32 groups, 16 latent channels) with torch-like random init: weights U(+-1/sqrt(fan_in)),
 * norm weights 1, biases 0, stored as `dtype` (f32, f16 or bf16) on the host and placed on
 * `backend` by hv_vae_new_from_store. The same seed gives the same values for every dtype. */
HvVae *hv_bench_real_vae (const char *fixtures_dir, HvDType dtype, HvBackend *backend, GError **error);

G_END_DECLS
