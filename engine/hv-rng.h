/* hv-rng.h — PyTorch-compatible random numbers computed in C, bit for bit:
 *  - the CPU generator: torch.Generator('cpu').manual_seed(s) then torch.randn / torch.rand
 *    (mt19937, torch's normal sampling paths incl. the small-size path, successive draws);
 *  - the CUDA generator: Philox4x32-10 as torch's CUDA randn/rand use it, computed on the CPU,
 *    for fp32, fp16 and bf16 outputs (values returned as f32 holding the rounded value). */
#pragma once
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef enum {
  HV_RNG_CPU,    /* torch.Generator('cpu') */
  HV_RNG_CUDA,   /* torch.Generator('cuda') */
} HvRngKind;

typedef enum {
  HV_RNG_F32,
  HV_RNG_F16,
  HV_RNG_BF16,
} HvRngDType;

typedef struct _HvRng HvRng;

HvRng *hv_rng_new (HvRngKind kind, uint64_t seed);
void   hv_rng_free (HvRng *r);
/* torch.randn(n, dtype=dt, generator=r) into out (successive calls continue the stream) */
void   hv_rng_randn (HvRng *r, float *out, size_t n, HvRngDType dt);
/* torch.rand(n, dtype=dt, generator=r) */
void   hv_rng_rand (HvRng *r, float *out, size_t n, HvRngDType dt);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvRng, hv_rng_free)

G_END_DECLS
