/* hv-rope.c — 3D RoPE tables (see hv-rope.h). Computed in fp32 step by step as upstream does,
 * so the tables match the reference to the last bit or so (the angle of a far position is
 * sensitive to the rounding of f_j). */
#include "hv-rope.h"
#include "hv-error.h"
#include <math.h>

gboolean
hv_rope_3d (const int rope_dim[3], float theta, int64_t t, int64_t h, int64_t w,
            HvTensor **cos_out, HvTensor **sin_out, GError **error)
{
  const int64_t grid[3] = { t, h, w };
  int head_dim = 0;

  for (int a = 0; a < 3; a++) {
    if (rope_dim[a] <= 0 || rope_dim[a] % 2) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "RoPE axis %d has %d dims; each axis needs an even, positive number", a,
                   rope_dim[a]);
      return FALSE;
    }
    if (grid[a] <= 0 || grid[a] > (1 << 24)) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "RoPE grid %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                   " is empty or too large", t, h, w);
      return FALSE;
    }
    head_dim += rope_dim[a];
  }
  if (!(theta > 0) || !isfinite (theta)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "RoPE theta %g must be positive", theta);
    return FALSE;
  }

  const int64_t n = t * h * w;
  const int64_t shape[2] = { n, head_dim };
  g_autoptr(HvTensor) c = hv_tensor_new_f32 (2, shape);
  g_autoptr(HvTensor) s = hv_tensor_new_f32 (2, shape);
  if (!c || !s) {
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "no memory for RoPE tables of %"
                 G_GINT64_FORMAT " tokens", n);
    return FALSE;
  }
  float *cd = c->data, *sd = s->data;

  /* Per axis: one cos/sin per (position, j), then scattered into the token rows. */
  int col = 0;
  for (int a = 0; a < 3; a++) {
    const int d = rope_dim[a], half = d / 2;
    g_autofree float *freq = g_new (float, half);
    g_autofree float *ct = g_new (float, (gsize) grid[a] * half);
    g_autofree float *st = g_new (float, (gsize) grid[a] * half);
    for (int j = 0; j < half; j++) {
      float e = (float) (2 * j) / (float) d;          /* arange(0, d, 2).float() / d */
      float p = (float) pow ((double) theta, (double) e); /* correctly rounded theta ** e */
      freq[j] = 1.0f / p;
    }
    for (int64_t pos = 0; pos < grid[a]; pos++)
      for (int j = 0; j < half; j++) {
        float ang = (float) pos * freq[j];               /* outer(pos, freqs) in fp32 */
        ct[pos * half + j] = (float) cos ((double) ang);
        st[pos * half + j] = (float) sin ((double) ang);
      }
    for (int64_t ti = 0; ti < t; ti++)
      for (int64_t hi = 0; hi < h; hi++)
        for (int64_t wi = 0; wi < w; wi++) {
          const int64_t tok = (ti * h + hi) * w + wi;
          const int64_t pos = a == 0 ? ti : a == 1 ? hi : wi;
          float *crow = cd + tok * head_dim + col, *srow = sd + tok * head_dim + col;
          for (int j = 0; j < half; j++) {
            crow[2 * j] = crow[2 * j + 1] = ct[pos * half + j];
            srow[2 * j] = srow[2 * j + 1] = st[pos * half + j];
          }
        }
    col += d;
  }
  *cos_out = g_steal_pointer (&c);
  *sin_out = g_steal_pointer (&s);
  return TRUE;
}
