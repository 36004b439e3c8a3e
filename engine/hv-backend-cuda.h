/* hv-backend-cuda.h — what the CUDA backend offers beyond the op table (benchmarks, tests).
 * Only built when HV_HAVE_CUDA. */
#pragma once
#include "hv-backend.h"
#include "hv-kernels.h"

G_BEGIN_DECLS

/* The kernel context of a CUDA backend (stream, cuBLASLt, memory pool), or NULL for any other
 * backend. Work queued on hv_k_ctx_stream() runs in order with the backend's ops. */
HvKCtx  *hv_backend_cuda_context (HvBackend *b);
/* Device memory held by the backend's pool now and at most since the last reset (bytes). */
gboolean hv_backend_cuda_mem_stats (HvBackend *b, gsize *used, gsize *peak);
void     hv_backend_cuda_reset_peak (HvBackend *b);

G_END_DECLS
