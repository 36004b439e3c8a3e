/* test-tensor.c — the tensor core: dtype table, exact float conversions checked code by code
 * against the format definitions (decoded here from sign/exponent/mantissa fields), round to
 * nearest even checked against neighbours found by search, shapes, reshape, views. */
#include "hv-tensor.h"
#include <math.h>
#include <string.h>

/* value of a binary float format with `eb` exponent bits and `mb` mantissa bits; `ieee`: the
 * all-ones exponent means inf/nan (FALSE for e4m3fn, whose only NaN is S.1111.111). */
static double
decode (guint32 code, int eb, int mb, gboolean ieee)
{
  int bias = (1 << (eb - 1)) - 1;
  guint32 s = code >> (eb + mb), e = (code >> mb) & ((1u << eb) - 1), m = code & ((1u << mb) - 1);
  double v;
  if (ieee && e == (1u << eb) - 1)
    v = m ? NAN : INFINITY;
  else if (!ieee && e == (1u << eb) - 1 && m == (1u << mb) - 1)
    v = NAN;
  else if (e == 0)
    v = ldexp ((double) m / (1 << mb), 1 - bias);
  else
    v = ldexp (1.0 + (double) m / (1 << mb), (int) e - bias);
  return s ? -v : v;
}

static void
assert_same (double want, float got, guint32 code)
{
  if (isnan (want)) {
    if (!isnan (got))
      g_error ("code 0x%x: expected NaN, got %g", code, got);
    return;
  }
  if ((double) got != want || !signbit (got) != !signbit (want))
    g_error ("code 0x%x: expected %.10g, got %.10g", code, want, got);
}

static void
test_bf16_decode (void)
{
  for (guint32 c = 0; c < 65536; c++)
    assert_same (decode (c, 8, 7, TRUE), hv_bf16_to_f32 ((guint16) c), c);
  /* spot values by hand */
  g_assert_cmpfloat (hv_bf16_to_f32 (0x3f80), ==, 1.0f);
  g_assert_cmpfloat (hv_bf16_to_f32 (0xc040), ==, -3.0f);
  g_assert_cmpfloat (hv_bf16_to_f32 (0x0001), ==, 0x1p-133f);   /* smallest subnormal */
}

static void
test_f16_decode (void)
{
  for (guint32 c = 0; c < 65536; c++)
    assert_same (decode (c, 5, 10, TRUE), hv_f16_to_f32 ((guint16) c), c);
  g_assert_cmpfloat (hv_f16_to_f32 (0x3c00), ==, 1.0f);
  g_assert_cmpfloat (hv_f16_to_f32 (0x7bff), ==, 65504.0f);
  g_assert_cmpfloat (hv_f16_to_f32 (0x0001), ==, 0x1p-24f);
  g_assert_cmpfloat (hv_f16_to_f32 (0x03ff), ==, 1023 * 0x1p-24f);
  g_assert_true (isinf (hv_f16_to_f32 (0xfc00)) && hv_f16_to_f32 (0xfc00) < 0);
  g_assert_true (isnan (hv_f16_to_f32 (0x7e00)));
}

static void
test_f8_decode (void)
{
  int nans = 0;
  for (guint32 c = 0; c < 256; c++) {
    double want = decode (c, 4, 3, FALSE);
    nans += isnan (want);
    assert_same (want, hv_f8_e4m3_to_f32 ((guint8) c), c);
    assert_same (decode (c, 5, 2, TRUE), hv_f8_e5m2_to_f32 ((guint8) c), c);
  }
  g_assert_cmpint (nans, ==, 2);                          /* 0x7f and 0xff only */
  g_assert_cmpfloat (hv_f8_e4m3_to_f32 (0x7e), ==, 448.0f);  /* max finite */
  g_assert_cmpfloat (hv_f8_e4m3_to_f32 (0x01), ==, 0x1p-9f); /* smallest subnormal */
  g_assert_cmpfloat (hv_f8_e4m3_to_f32 (0x38), ==, 1.0f);
  g_assert_cmpfloat (hv_f8_e5m2_to_f32 (0x7b), ==, 57344.0f);
  g_assert_true (isinf (hv_f8_e5m2_to_f32 (0x7c)));
  g_assert_true (isnan (hv_f8_e5m2_to_f32 (0x7d)));
}

static guint32 rng = 99;

static guint32
next_u32 (void)
{
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

/* Nearest of the two neighbours lo < x < hi (codes clo, chi); ties to the even code. */
static guint32
nearest (double x, double lo, guint32 clo, double hi, guint32 chi)
{
  double dl = x - lo, dh = hi - x;
  if (dl < dh) return clo;
  if (dh < dl) return chi;
  return (clo & 1) ? chi : clo;
}

static void
test_bf16_encode (void)
{
  for (int i = 0; i < 200000; i++) {
    guint32 u = next_u32 ();
    float f = hv_f32_from_bits (u);
    if (isnan (f)) {
      g_assert_true (isnan (hv_bf16_to_f32 (hv_f32_to_bf16 (f))));
      continue;
    }
    guint16 got = hv_f32_to_bf16 (f);
    guint32 mag = u & 0x7fffffffu, sign = (u >> 16) & 0x8000;
    guint32 lo = mag >> 16, hi = lo + 1;   /* codes below and above |f| */
    double dlo = decode (lo, 8, 7, TRUE), dhi = hi >= 0x7f80 ? ldexp (1, 128) : decode (hi, 8, 7, TRUE);
    guint32 want = (mag & 0xffff) == 0 ? lo : nearest (fabs ((double) f), dlo, lo, dhi, hi);
    want = MIN (want, 0x7f80u) | sign;    /* rounding past the max finite gives inf */
    if (got != want)
      g_error ("bf16(%a): got 0x%04x, expected 0x%04x", f, got, want);
  }
  g_assert_cmphex (hv_f32_to_bf16 (1.0f + 0x1p-8f), ==, 0x3f80);
  g_assert_cmphex (hv_f32_to_bf16 (1.0f + 3 * 0x1p-8f), ==, 0x3f82);
  g_assert_cmphex (hv_f32_to_bf16 (INFINITY), ==, 0x7f80);
  g_assert_cmphex (hv_f32_to_bf16 (-0.0f), ==, 0x8000);
}

static void
test_f16_encode (void)
{
  /* the 31744 finite non-negative half values, increasing with the code */
  double *vals = g_new (double, 0x7c00);
  for (guint32 c = 0; c < 0x7c00; c++)
    vals[c] = decode (c, 5, 10, TRUE);
  for (int i = 0; i < 300000; i++) {
    /* magnitudes around the half range: exponents 2^-30 .. 2^17 */
    guint32 u = (next_u32 () & 0x807fffffu) | ((guint32) (97 + next_u32 () % 48) << 23);
    if (i % 7 == 0) u &= 0xffffe000u | (1u << 12);   /* exact ties */
    float f = hv_f32_from_bits (u);
    double a = fabs ((double) f);
    guint32 sign = (u >> 16) & 0x8000, want;
    if (a >= 65520.0) {
      want = 0x7c00;
    } else {
      guint32 lo = 0, hi = 0x7bff;   /* largest code with value <= a */
      while (lo < hi) {
        guint32 mid = (lo + hi + 1) / 2;
        if (vals[mid] <= a) lo = mid; else hi = mid - 1;
      }
      if (vals[lo] == a || lo == 0x7bff)
        want = lo == 0x7bff && a > vals[lo] ? nearest (a, vals[lo], lo, 65536.0, 0x7c00) : lo;
      else
        want = nearest (a, vals[lo], lo, vals[lo + 1], lo + 1);
    }
    want |= sign;
    guint16 got = hv_f32_to_f16 (f);
    if (got != want)
      g_error ("f16(%a): got 0x%04x, expected 0x%04x", f, got, want);
  }
  g_free (vals);
  g_assert_cmphex (hv_f32_to_f16 (1.0f + 0x1p-11f), ==, 0x3c00);
  g_assert_cmphex (hv_f32_to_f16 (0x1p-25f), ==, 0x0000);          /* half of the smallest: even */
  g_assert_cmphex (hv_f32_to_f16 (0x1p-25f * 3), ==, 0x0002);      /* 1.5 ulp: even */
  g_assert_cmphex (hv_f32_to_f16 (65504.0f), ==, 0x7bff);
  g_assert_cmphex (hv_f32_to_f16 (65520.0f), ==, 0x7c00);
  g_assert_true (isnan (hv_f16_to_f32 (hv_f32_to_f16 (NAN))));
}

static void
test_f8_encode (void)
{
  for (guint32 c = 0; c < 256; c++) {
    float v = hv_f8_e4m3_to_f32 ((guint8) c);
    if (isnan (v)) {
      g_assert_true (isnan (hv_f8_e4m3_to_f32 (hv_f32_to_f8_e4m3 (v))));
      continue;
    }
    g_assert_cmphex (hv_f32_to_f8_e4m3 (v), ==, c);   /* every finite code round-trips */
    /* midpoints to the next code round to the even one */
    if ((c & 0x7f) < 0x7e) {
      float next = hv_f8_e4m3_to_f32 ((guint8) (c + 1));
      float mid = (v + next) / 2;
      guint32 even = (c & 1) ? c + 1 : c;
      g_assert_cmphex (hv_f32_to_f8_e4m3 (mid), ==, even);
    }
  }
  g_assert_cmphex (hv_f32_to_f8_e4m3 (1000.0f), ==, 0x7e);   /* saturates */
  g_assert_cmphex (hv_f32_to_f8_e4m3 (-1000.0f), ==, 0xfe);
}

static void
test_convert (void)
{
  guint16 bf[3] = { 0x3f80, 0xc000, 0x4040 };
  guint8 e4[3] = { 0x38, 0xb8, 0x40 };
  gint64 i64[3] = { -3, 0, 7 };
  gint32 i32[3] = { 5, -1, 2 };
  guint8 u8[3] = { 0, 1, 255 };
  float out[3];
  hv_convert_to_f32 (out, bf, HV_DTYPE_BF16, 3, 0.5f);
  g_assert_cmpfloat (out[0], ==, 0.5f); g_assert_cmpfloat (out[1], ==, -1.0f); g_assert_cmpfloat (out[2], ==, 1.5f);
  hv_convert_to_f32 (out, e4, HV_DTYPE_F8_E4M3, 3, 2.0f);
  g_assert_cmpfloat (out[0], ==, 2.0f); g_assert_cmpfloat (out[1], ==, -2.0f); g_assert_cmpfloat (out[2], ==, 4.0f);
  hv_convert_to_f32 (out, i64, HV_DTYPE_I64, 3, 1.0f);
  g_assert_cmpfloat (out[0], ==, -3.0f); g_assert_cmpfloat (out[2], ==, 7.0f);
  hv_convert_to_f32 (out, i32, HV_DTYPE_I32, 3, 1.0f);
  g_assert_cmpfloat (out[0], ==, 5.0f); g_assert_cmpfloat (out[1], ==, -1.0f);
  hv_convert_to_f32 (out, u8, HV_DTYPE_U8, 3, 1.0f);
  g_assert_cmpfloat (out[2], ==, 255.0f);

  int64_t s[2] = { 1, 3 };
  g_autoptr(HvTensor) t = hv_tensor_new (HV_DTYPE_BF16, 2, s);
  memcpy (t->data, bf, sizeof bf);
  t->scale = 4.0f;
  g_autoptr(HvTensor) f = hv_tensor_to_f32 (t);
  g_assert_cmpint (f->dtype, ==, HV_DTYPE_F32);
  g_assert_cmpfloat (hv_tensor_f32 (f)[2], ==, 12.0f);
}

static void
test_dtype_table (void)
{
  g_assert_cmpuint (hv_dtype_size (HV_DTYPE_F32), ==, 4);
  g_assert_cmpuint (hv_dtype_size (HV_DTYPE_BF16), ==, 2);
  g_assert_cmpuint (hv_dtype_size (HV_DTYPE_F8_E5M2), ==, 1);
  g_assert_cmpuint (hv_dtype_size (HV_DTYPE_I64), ==, 8);
  g_assert_cmpstr (hv_dtype_name (HV_DTYPE_F8_E4M3), ==, "f8_e4m3");
  g_assert_true (hv_dtype_is_float (HV_DTYPE_F16));
  g_assert_false (hv_dtype_is_float (HV_DTYPE_I32));
  HvDType dt;
  g_assert_true (hv_dtype_from_safetensors ("F8_E4M3", &dt));
  g_assert_cmpint (dt, ==, HV_DTYPE_F8_E4M3);
  g_assert_false (hv_dtype_from_safetensors ("F128", &dt));
  g_assert_true (hv_dtype_from_torch_storage ("BFloat16Storage", &dt));
  g_assert_cmpint (dt, ==, HV_DTYPE_BF16);
}

static int unrefs;

static void
count_unref (gpointer p)
{
  g_assert_cmpint (GPOINTER_TO_INT (p), ==, 42);
  unrefs++;
}

static void
test_shapes (void)
{
  int64_t s[5] = { 1, 16, 3, 8, 12 };
  g_autoptr(HvTensor) t = hv_tensor_new_f32 (5, s);
  char buf[64];
  g_assert_cmpstr (hv_tensor_shape_str (t, buf, sizeof buf), ==, "[1, 16, 3, 8, 12]");
  g_assert_cmpstr (hv_shape_str (0, s, buf, sizeof buf), ==, "[]");
  g_assert_cmpint (hv_tensor_numel (t), ==, 1 * 16 * 3 * 8 * 12);
  g_assert_cmpuint (hv_tensor_nbytes (t), ==, 4 * 16 * 3 * 8 * 12);
  g_assert_cmpint (t->stride[0], ==, 16 * 3 * 8 * 12);
  g_assert_cmpint (t->stride[4], ==, 1);
  g_assert_true (hv_tensor_is_contiguous (t));
  for (int i = 0; i < 16 * 3 * 8 * 12; i++)
    g_assert_cmpfloat (hv_tensor_f32 (t)[i], ==, 0.0f);   /* zeroed */

  int64_t r[2] = { 48, 96 };
  g_assert_true (hv_tensor_reshape (t, 2, r));
  g_assert_cmpint (t->ndim, ==, 2);
  g_assert_cmpint (t->stride[0], ==, 96);
  int64_t bad[2] = { 48, 95 };
  g_assert_false (hv_tensor_reshape (t, 2, bad));
  g_assert_cmpint (t->shape[1], ==, 96);   /* unchanged on failure */

  /* a transposed view is not contiguous and cannot be reshaped */
  g_autoptr(HvTensor) v = hv_tensor_view (t);
  g_assert_true (v->data == t->data);
  v->shape[0] = 96; v->shape[1] = 48; v->stride[0] = 1; v->stride[1] = 96;
  g_assert_false (hv_tensor_is_contiguous (v));
  int64_t flat[1] = { 48 * 96 };
  g_assert_false (hv_tensor_reshape (v, 1, flat));
  g_assert_false (hv_tensor_same_shape (v, t));

  /* borrowed data: the owner is released exactly once, when the tensor is freed */
  static float data[6];
  int64_t bs[2] = { 2, 3 };
  HvTensor *b = hv_tensor_new_borrowed (HV_DTYPE_F32, 2, bs, data, GINT_TO_POINTER (42), count_unref);
  g_assert_true (b->data == data);
  unrefs = 0;
  hv_tensor_free (b);
  g_assert_cmpint (unrefs, ==, 1);

  g_autoptr(HvTensor) z = hv_tensor_new_4 (HV_DTYPE_U8, 3, 2, 0, 5, 0);
  g_assert_cmpint (hv_tensor_numel (z), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tensor/bf16-decode", test_bf16_decode);
  g_test_add_func ("/tensor/f16-decode", test_f16_decode);
  g_test_add_func ("/tensor/f8-decode", test_f8_decode);
  g_test_add_func ("/tensor/bf16-encode", test_bf16_encode);
  g_test_add_func ("/tensor/f16-encode", test_f16_encode);
  g_test_add_func ("/tensor/f8-encode", test_f8_encode);
  g_test_add_func ("/tensor/convert", test_convert);
  g_test_add_func ("/tensor/dtype-table", test_dtype_table);
  g_test_add_func ("/tensor/shapes", test_shapes);
  return g_test_run ();
}
