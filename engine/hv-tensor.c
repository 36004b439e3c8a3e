/* hv-tensor.c — tensor headers, dtype table and exact float conversions. */
#include "hv-tensor.h"
#include "hv-backend.h"
#include <math.h>
#include <string.h>

static const struct {
  const char *name;
  gsize size;
  gboolean is_float;
  const char *st_name;      /* safetensors */
  const char *torch_name;   /* torch storage class */
} dtypes[HV_DTYPE_COUNT] = {
  [HV_DTYPE_F32]     = { "f32",      4, TRUE,  "F32",     "FloatStorage" },
  [HV_DTYPE_F16]     = { "f16",      2, TRUE,  "F16",     "HalfStorage" },
  [HV_DTYPE_BF16]    = { "bf16",     2, TRUE,  "BF16",    "BFloat16Storage" },
  [HV_DTYPE_F8_E4M3] = { "f8_e4m3",  1, TRUE,  "F8_E4M3", "Float8_e4m3fnStorage" },
  [HV_DTYPE_F8_E5M2] = { "f8_e5m2",  1, TRUE,  "F8_E5M2", "Float8_e5m2Storage" },
  [HV_DTYPE_I64]     = { "i64",      8, FALSE, "I64",     "LongStorage" },
  [HV_DTYPE_I32]     = { "i32",      4, FALSE, "I32",     "IntStorage" },
  [HV_DTYPE_U8]      = { "u8",       1, FALSE, "U8",      "ByteStorage" },
  [HV_DTYPE_BOOL]    = { "bool",     1, FALSE, "BOOL",    "BoolStorage" },
};

gsize
hv_dtype_size (HvDType dt)
{
  g_return_val_if_fail (dt < HV_DTYPE_COUNT, 0);
  return dtypes[dt].size;
}

const char *
hv_dtype_name (HvDType dt)
{
  return dt < HV_DTYPE_COUNT ? dtypes[dt].name : "invalid";
}

gboolean
hv_dtype_is_float (HvDType dt)
{
  return dt < HV_DTYPE_COUNT && dtypes[dt].is_float;
}

gboolean
hv_dtype_from_safetensors (const char *name, HvDType *out)
{
  for (int i = 0; i < HV_DTYPE_COUNT; i++)
    if (g_strcmp0 (name, dtypes[i].st_name) == 0) {
      *out = (HvDType) i;
      return TRUE;
    }
  return FALSE;
}

gboolean
hv_dtype_from_torch_storage (const char *name, HvDType *out)
{
  for (int i = 0; i < HV_DTYPE_COUNT; i++)
    if (g_strcmp0 (name, dtypes[i].torch_name) == 0) {
      *out = (HvDType) i;
      return TRUE;
    }
  return FALSE;
}

/* ---- scalar conversions ---------------------------------------------------------------- */

float
hv_bf16_to_f32 (uint16_t v)
{
  return hv_f32_from_bits ((uint32_t) v << 16);
}

float
hv_f16_to_f32 (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f)                       /* inf / nan */
    return hv_f32_from_bits (sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0)
      return hv_f32_from_bits (sign);
    /* subnormal: value = man * 2^-24, exact in f32 */
    float f = (float) man * 0x1p-24f;
    return sign ? -f : f;
  }
  return hv_f32_from_bits (sign | ((exp + 112) << 23) | (man << 13));
}

float
hv_f8_e4m3_to_f32 (uint8_t v)
{
  int sign = v & 0x80;
  int exp = (v >> 3) & 0xf;
  int man = v & 0x7;
  float f;
  if (exp == 0xf && man == 0x7)
    return NAN;                          /* e4m3fn has no infinity */
  if (exp == 0)
    f = (float) man * 0x1p-9f;           /* subnormal: man/8 * 2^-6 */
  else
    f = ldexpf (1.0f + (float) man / 8.0f, exp - 7);
  return sign ? -f : f;
}

float
hv_f8_e5m2_to_f32 (uint8_t v)
{
  return hv_f16_to_f32 ((uint16_t) v << 8);
}

uint16_t
hv_f32_to_bf16 (float f)
{
  uint32_t u = hv_f32_bits (f);
  if ((u & 0x7fffffffu) > 0x7f800000u)   /* NaN: keep quiet NaN */
    return (uint16_t) ((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);        /* round to nearest even */
  return (uint16_t) (u >> 16);
}

uint16_t
hv_f32_to_f16 (float f)
{
  uint32_t u = hv_f32_bits (f);
  uint16_t sign = (u >> 16) & 0x8000;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u)
    return sign | 0x7e00;                /* NaN */
  if (a >= 0x477ff000u)                  /* rounds to >= 65520: inf */
    return sign | 0x7c00;
  if (a < 0x38800000u) {                 /* below the smallest normal: subnormal or zero */
    float af = hv_f32_from_bits (a);
    /* value / 2^-24, rounded to nearest even by the FPU (default rounding mode) */
    float q = nearbyintf (af * 0x1p24f);
    return sign | (uint16_t) q;
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1);
  return sign | (uint16_t) ((r - 0x38000000u) >> 13);
}

uint8_t
hv_f32_to_f8_e4m3 (float f)
{
  if (isnan (f))
    return 0x7f;
  uint8_t sign = signbit (f) ? 0x80 : 0;
  float a = fabsf (f);
  if (a >= 448.0f)
    return sign | 0x7e;                  /* saturate to max finite */
  /* brute force over the 127 non-negative finite codes: exact and obviously right */
  uint8_t best = 0;
  float best_err = INFINITY;
  for (int c = 0; c < 0x7f; c++) {
    float v = hv_f8_e4m3_to_f32 ((uint8_t) c);
    float err = fabsf (v - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best = (uint8_t) c;
      best_err = err;
    }
  }
  return sign | best;
}

void
hv_convert_to_f32 (float *dst, const void *src, HvDType dt, size_t n, float scale)
{
  switch (dt) {
    case HV_DTYPE_F32: {
      const float *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = s[i] * scale;
      break;
    }
    case HV_DTYPE_BF16: {
      const uint16_t *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = hv_bf16_to_f32 (s[i]) * scale;
      break;
    }
    case HV_DTYPE_F16: {
      const uint16_t *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = hv_f16_to_f32 (s[i]) * scale;
      break;
    }
    case HV_DTYPE_F8_E4M3: {
      float lut[256];
      for (int i = 0; i < 256; i++) lut[i] = hv_f8_e4m3_to_f32 ((uint8_t) i);
      const uint8_t *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = lut[s[i]] * scale;
      break;
    }
    case HV_DTYPE_F8_E5M2: {
      const uint8_t *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = hv_f8_e5m2_to_f32 (s[i]) * scale;
      break;
    }
    case HV_DTYPE_I64: {
      const int64_t *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = (float) s[i] * scale;
      break;
    }
    case HV_DTYPE_I32: {
      const int32_t *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = (float) s[i] * scale;
      break;
    }
    case HV_DTYPE_U8:
    case HV_DTYPE_BOOL: {
      const uint8_t *s = src;
      for (size_t i = 0; i < n; i++) dst[i] = (float) s[i] * scale;
      break;
    }
    default:
      g_return_if_reached ();
  }
}

/* ---- tensors ------------------------------------------------------------------------- */

void
hv_tensor_set_contiguous_strides (HvTensor *t)
{
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    t->stride[i] = s;
    s *= t->shape[i];
  }
}

static HvTensor *
tensor_header (HvDType dt, int ndim, const int64_t *shape)
{
  g_return_val_if_fail (ndim >= 0 && ndim <= HV_MAX_DIMS, NULL);
  g_return_val_if_fail (dt < HV_DTYPE_COUNT, NULL);
  HvTensor *t = g_new0 (HvTensor, 1);
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) {
    g_return_val_if_fail (shape[i] >= 0, (g_free (t), NULL));
    t->shape[i] = shape[i];
  }
  t->scale = 1.0f;
  hv_tensor_set_contiguous_strides (t);
  return t;
}

HvTensor *
hv_tensor_new (HvDType dt, int ndim, const int64_t *shape)
{
  HvTensor *t = tensor_header (dt, ndim, shape);
  if (!t)
    return NULL;
  gsize n = hv_tensor_nbytes (t);
  t->data = g_try_malloc0 (n ? n : 1);
  if (!t->data) {
    g_free (t);
    return NULL;
  }
  t->free_func = g_free;
  return t;
}

HvTensor *
hv_tensor_new_f32 (int ndim, const int64_t *shape)
{
  return hv_tensor_new (HV_DTYPE_F32, ndim, shape);
}

HvTensor *
hv_tensor_new_4 (HvDType dt, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
  int64_t shape[4] = { d0, d1, d2, d3 };
  return hv_tensor_new (dt, ndim, shape);
}

HvTensor *
hv_tensor_new_borrowed (HvDType dt, int ndim, const int64_t *shape, void *data,
                        gpointer owner, GDestroyNotify owner_unref)
{
  HvTensor *t = tensor_header (dt, ndim, shape);
  if (!t)
    return NULL;
  t->data = data;
  t->free_func = owner_unref;
  t->free_data = owner;
  return t;
}

HvTensor *
hv_tensor_view (const HvTensor *t)
{
  HvTensor *v = g_new (HvTensor, 1);
  *v = *t;
  v->free_func = NULL;
  v->free_data = NULL;
  return v;
}

void
hv_tensor_free (HvTensor *t)
{
  if (!t)
    return;
  if (t->backend && t->free_func == NULL && t->free_data == NULL && t->data)
    hv_backend_free_data (t->backend, t);
  else if (t->free_func)
    t->free_func (t->free_data ? t->free_data : t->data);
  g_free (t);
}

int64_t
hv_tensor_numel (const HvTensor *t)
{
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

gsize
hv_tensor_nbytes (const HvTensor *t)
{
  return (gsize) hv_tensor_numel (t) * hv_dtype_size (t->dtype);
}

gboolean
hv_tensor_is_contiguous (const HvTensor *t)
{
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s)
      return FALSE;
    s *= t->shape[i];
  }
  return TRUE;
}

gboolean
hv_tensor_reshape (HvTensor *t, int ndim, const int64_t *shape)
{
  int64_t n = 1;
  g_return_val_if_fail (ndim >= 0 && ndim <= HV_MAX_DIMS, FALSE);
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  if (n != hv_tensor_numel (t) || !hv_tensor_is_contiguous (t))
    return FALSE;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  hv_tensor_set_contiguous_strides (t);
  return TRUE;
}

gboolean
hv_tensor_same_shape (const HvTensor *a, const HvTensor *b)
{
  if (a->ndim != b->ndim)
    return FALSE;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return FALSE;
  return TRUE;
}

const char *
hv_shape_str (int ndim, const int64_t *shape, char *buf, gsize len)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, i ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, shape[i]);
  g_string_append_c (s, ']');
  g_strlcpy (buf, s->str, len);
  g_string_free (s, TRUE);
  return buf;
}

const char *
hv_tensor_shape_str (const HvTensor *t, char *buf, gsize len)
{
  return hv_shape_str (t->ndim, t->shape, buf, len);
}

HvTensor *
hv_tensor_to_f32 (const HvTensor *t)
{
  g_return_val_if_fail (t->backend == NULL, NULL);
  g_return_val_if_fail (hv_tensor_is_contiguous (t), NULL);
  HvTensor *o = hv_tensor_new_f32 (t->ndim, t->shape);
  if (!o)
    return NULL;
  hv_convert_to_f32 (o->data, t->data, t->dtype, (size_t) hv_tensor_numel (t), t->scale);
  return o;
}

float *
hv_tensor_f32 (HvTensor *t)
{
  g_return_val_if_fail (t->dtype == HV_DTYPE_F32 && t->backend == NULL, NULL);
  return t->data;
}
