/* hv-tensor.h — the engine's tensor: a dtype, up to 5 dims in PyTorch order (outermost
 * first), element strides, and data that is either owned or borrowed (e.g. from an mmap).
 *
 * A tensor lives on a backend (NULL = plain host memory). Weights stay in the dtype they were
 * stored in; activations are f32. fp8 weights carry their per-tensor dequantization `scale`
 * (real value = fp8 value × scale); every other tensor has scale 1. */
#pragma once
#include <glib.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

G_BEGIN_DECLS

typedef enum {
  HV_DTYPE_F32,
  HV_DTYPE_F16,
  HV_DTYPE_BF16,
  HV_DTYPE_F8_E4M3,   /* float8_e4m3fn: no inf, 0x7f/0xff are NaN */
  HV_DTYPE_F8_E5M2,
  HV_DTYPE_I64,
  HV_DTYPE_I32,
  HV_DTYPE_U8,
  HV_DTYPE_BOOL,
  HV_DTYPE_COUNT
} HvDType;

#define HV_MAX_DIMS 5

typedef struct _HvBackend HvBackend;

typedef struct {
  HvDType dtype;
  int ndim;
  int64_t shape[HV_MAX_DIMS];
  int64_t stride[HV_MAX_DIMS];  /* in elements; contiguous unless made by a view */
  void *data;                   /* host pointer, or device pointer when backend is a GPU */
  float scale;                  /* fp8 dequant scale; 1.0 for everything else */
  HvBackend *backend;           /* NULL: host memory */
  /* ownership: when free_func is set it is called with free_data (or data) on free */
  GDestroyNotify free_func;
  gpointer free_data;
} HvTensor;

/* dtype table */
gsize        hv_dtype_size (HvDType dt);
const char  *hv_dtype_name (HvDType dt);             /* "f32", "bf16", ... */
gboolean     hv_dtype_is_float (HvDType dt);
/* safetensors names ("F32","BF16","F8_E4M3",...) and torch storage names ("BFloat16Storage"...) */
gboolean     hv_dtype_from_safetensors (const char *name, HvDType *out);
gboolean     hv_dtype_from_torch_storage (const char *name, HvDType *out);

/* The IEEE-754 bits of an f32 and back (memcpy: no aliasing trouble, compiles to a move).
 * Shared by the conversions below and by code that must match torch bit for bit (hv-rng). */
static inline uint32_t
hv_f32_bits (float f)
{
  uint32_t u;
  memcpy (&u, &f, 4);
  return u;
}

static inline float
hv_f32_from_bits (uint32_t u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

/* exact scalar conversions */
float    hv_bf16_to_f32 (uint16_t v);
float    hv_f16_to_f32 (uint16_t v);
float    hv_f8_e4m3_to_f32 (uint8_t v);
float    hv_f8_e5m2_to_f32 (uint8_t v);
uint16_t hv_f32_to_bf16 (float f);   /* round to nearest even, NaN kept */
uint16_t hv_f32_to_f16 (float f);    /* round to nearest even */
uint8_t  hv_f32_to_f8_e4m3 (float f); /* round to nearest even, saturating to ±448 */

/* Converts n elements of any float dtype (and integer dtypes) to f32, times `scale`. */
void hv_convert_to_f32 (float *dst, const void *src, HvDType dt, size_t n, float scale);

/* construction. Host tensors; shape in PyTorch order. */
HvTensor *hv_tensor_new (HvDType dt, int ndim, const int64_t *shape);           /* zeroed, owned */
HvTensor *hv_tensor_new_f32 (int ndim, const int64_t *shape);
HvTensor *hv_tensor_new_4 (HvDType dt, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* Borrowed: data stays owned by `owner`; `owner_unref` (e.g. g_mapped_file_unref) is called on
 * `owner` when the tensor is freed, so the mapping lives as long as any tensor using it. */
HvTensor *hv_tensor_new_borrowed (HvDType dt, int ndim, const int64_t *shape, void *data,
                                  gpointer owner, GDestroyNotify owner_unref);
/* A new tensor header sharing `t`'s data (no copy, no ownership: `t` must outlive it). */
HvTensor *hv_tensor_view (const HvTensor *t);
void      hv_tensor_free (HvTensor *t);

int64_t  hv_tensor_numel (const HvTensor *t);
gsize    hv_tensor_nbytes (const HvTensor *t);
gboolean hv_tensor_is_contiguous (const HvTensor *t);
void     hv_tensor_set_contiguous_strides (HvTensor *t);
/* Same element count, new shape (contiguous tensors only). */
gboolean hv_tensor_reshape (HvTensor *t, int ndim, const int64_t *shape);
gboolean hv_tensor_same_shape (const HvTensor *a, const HvTensor *b);
/* "[1, 16, 3, 8, 12]" into buf */
const char *hv_tensor_shape_str (const HvTensor *t, char *buf, gsize len);
/* "[1, 16]" for a plain shape array */
const char *hv_shape_str (int ndim, const int64_t *shape, char *buf, gsize len);

/* A new host f32 copy of a host tensor of any dtype (scale applied). */
HvTensor *hv_tensor_to_f32 (const HvTensor *t);
float *hv_tensor_f32 (HvTensor *t);   /* data as float*, t must be host f32 */

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvTensor, hv_tensor_free)

G_END_DECLS
