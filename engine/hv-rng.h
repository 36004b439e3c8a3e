/* hv-rng.h — PyTorch-compatible random numbers computed in C, bit for bit:
 *  - the CPU generator: torch.Generator('cpu').manual_seed(s) then torch.randn / torch.rand
 *    (mt19937, torch's normal sampling paths incl. the small-size path, successive draws);
 *  - the CUDA generator: Philox4x32-10 as torch's CUDA randn/rand use it, computed on the CPU,
 *    for fp32, fp16 and bf16 outputs (values returned as f32 holding the rounded value).
 *
 * Every call behaves like one torch call on a tensor of n elements (contiguous): the way torch
 * splits the work depends on n, so randn(2n) is not randn(n) twice. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include "hv-tensor.h"

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

/* How torch's CPU randn evaluates log/cos/sin for float tensors of >= 16 elements: x86 builds
 * dispatching to AVX2 use the avx_mathfun polynomials (the common case, and what the golden
 * fixtures were made with); builds without that path (ARM, or the AVX-512 dispatch) use libm. */
typedef enum {
  HV_RNG_CPU_MATH_AVX2,
  HV_RNG_CPU_MATH_LIBM,
} HvRngCpuMath;

/* Launch geometry of the GPU torch ran on: the CUDA generator's layout for tensors of more
 * than sm_count * max_threads_per_sm elements depends on it. H100 and H200: 132 x 2048. */
#define HV_RNG_CUDA_DEFAULT_SM_COUNT 132
#define HV_RNG_CUDA_DEFAULT_THREADS_PER_SM 2048

typedef struct _HvRng HvRng;

HvRng *hv_rng_new (HvRngKind kind, uint64_t seed);
void   hv_rng_free (HvRng *r);
/* torch.randn(n, dtype=dt, generator=r) into out (successive calls continue the stream) */
void   hv_rng_randn (HvRng *r, float *out, size_t n, HvRngDType dt);
/* torch.rand(n, dtype=dt, generator=r) */
void   hv_rng_rand (HvRng *r, float *out, size_t n, HvRngDType dt);

HvRngKind hv_rng_kind (const HvRng *r);
/* CPU generator only; default HV_RNG_CPU_MATH_AVX2. */
void      hv_rng_set_cpu_math (HvRng *r, HvRngCpuMath math);
/* CUDA generator only; defaults above. Values < 1 are ignored. */
void      hv_rng_set_cuda_device (HvRng *r, int sm_count, int max_threads_per_sm);
/* CUDA generator: torch's philox_offset_per_thread (0 after seeding, +4 per randn of up to
 * sm_count * max_threads_per_sm * 4 elements). */
uint64_t  hv_rng_cuda_offset (const HvRng *r);
/* CPU generator: the next raw mt19937 output, as torch's generator->random(). */
uint32_t  hv_rng_next_u32 (HvRng *r);

/* The Philox4x32-10 block function (Random123 / curand): out = philox(ctr, key). */
void hv_philox4x32_10 (const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* The initial latent noise of the official sample_video: torch.randn(shape, generator=
 * Generator(kind).manual_seed(seed), dtype) with shape [B, C, T', H', W'] (B = 1 and C = 16 in
 * the official pipeline: T' = (frames - 1) / 4 + 1, H' = H / 8, W' = W / 8). The official
 * default is HV_RNG_CUDA with HV_RNG_F16. Returns a host f32 tensor holding the values rounded
 * to `dt`; NULL with HV_ERROR_INVALID for a non-positive or oversized shape. */
HvTensor *hv_noise_latents (HvRngKind kind, HvRngDType dt, uint64_t seed, const int64_t shape[5],
                            GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvRng, hv_rng_free)

G_END_DECLS
