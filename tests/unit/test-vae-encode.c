/* test-vae-encode.c — tiled VAE encode (upstream spatial_tiled_encode / temporal_tiled_encode)
 * on the tiny VAE of the fixtures (HV_VAE_DIR = tests/data/fixtures/vae): tiles that cover the
 * input change nothing; small tiles give the right shape, stay close to the untiled encode, and
 * every output latent is checked against encodes of the single tiles it comes from; knobs that
 * do not tile the input are refused. */
#include "hv-vae.h"
#include "hv-error.h"
#include "loaders/hv-store.h"
#include <math.h>
#include <string.h>

typedef struct {
  HvBackend *backend;
  HvVae *vae;
  HvTensor *video;      /* the fixture's video_in [1, 3, 9, 24, 40] */
  HvTensor *moments;    /* the fixture's expected moments */
  HvTensor *long_video; /* [1, 3, 17, 24, 40]: video_in then its frames 7..0 (a 17-frame clip) */
} Ctx;

static Ctx ctx;

static HvTensor *
encode (const HvTensor *video, const HvVaeTiling *tiling)
{
  g_autoptr(GError) error = NULL;
  HvTensor *m = NULL;
  g_assert_true (hv_vae_encode (ctx.vae, video, tiling, &m, &error));
  g_assert_no_error (error);
  g_assert_nonnull (m);
  return m;
}

/* x[:, :, t0:t0+nt, h0:h0+nh, w0:w0+nw] as a new contiguous host tensor (clipped to x). */
static HvTensor *
crop (const HvTensor *x, int64_t t0, int64_t nt, int64_t h0, int64_t nh, int64_t w0, int64_t nw)
{
  const int64_t C = x->shape[1], T = x->shape[2], H = x->shape[3], W = x->shape[4];
  nt = MIN (nt, T - t0);
  nh = MIN (nh, H - h0);
  nw = MIN (nw, W - w0);
  const int64_t shape[5] = { 1, C, nt, nh, nw };
  HvTensor *y = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  for (int64_t c = 0; c < C; c++)
    for (int64_t t = 0; t < nt; t++)
      for (int64_t h = 0; h < nh; h++)
        memcpy ((float *) y->data + ((c * nt + t) * nh + h) * nw,
                (const float *) x->data + ((c * T + t0 + t) * H + h0 + h) * W + w0,
                (size_t) nw * sizeof (float));
  return y;
}

static float
at (const HvTensor *x, int64_t c, int64_t t, int64_t h, int64_t w)
{
  return ((const float *) x->data)[((c * x->shape[2] + t) * x->shape[3] + h) * x->shape[4] + w];
}

static double
max_abs_diff (const HvTensor *a, const HvTensor *b)
{
  g_assert_cmpint (hv_tensor_numel (a), ==, hv_tensor_numel (b));
  double m = 0;
  for (int64_t i = 0, n = hv_tensor_numel (a); i < n; i++)
    m = MAX (m, fabs ((double) ((const float *) a->data)[i] - ((const float *) b->data)[i]));
  return m;
}

static double
rel_l2 (const HvTensor *a, const HvTensor *ref)
{
  double num = 0, den = 0;
  for (int64_t i = 0, n = hv_tensor_numel (ref); i < n; i++) {
    double d = (double) ((const float *) a->data)[i] - ((const float *) ref->data)[i];
    num += d * d;
    den += (double) ((const float *) ref->data)[i] * ((const float *) ref->data)[i];
  }
  return sqrt (num / den);
}

static void
assert_shape_finite (const HvTensor *m, int64_t T, int64_t h, int64_t w)
{
  g_assert_cmpint (m->ndim, ==, 5);
  g_assert_cmpint (m->shape[0], ==, 1);
  g_assert_cmpint (m->shape[1], ==, 32);
  g_assert_cmpint (m->shape[2], ==, T);
  g_assert_cmpint (m->shape[3], ==, h);
  g_assert_cmpint (m->shape[4], ==, w);
  for (int64_t i = 0, n = hv_tensor_numel (m); i < n; i++)
    g_assert_true (isfinite (((const float *) m->data)[i]));
}

/* All channels of moments frames [t, t+nt) x rows [h, h+nh) x cols [w, w+nw) of `got` equal
 * those of `exp` starting at (et, eh, ew). Same computation on the same backend: only the
 * last bits may differ. */
static void
assert_region_equal (const HvTensor *got, int64_t t, int64_t h, int64_t w, const HvTensor *exp,
                     int64_t et, int64_t eh, int64_t ew, int64_t nt, int64_t nh, int64_t nw)
{
  for (int64_t c = 0; c < got->shape[1]; c++)
    for (int64_t i = 0; i < nt; i++)
      for (int64_t y = 0; y < nh; y++)
        for (int64_t x = 0; x < nw; x++)
          g_assert_cmpfloat_with_epsilon (at (got, c, t + i, h + y, w + x),
                                          at (exp, c, et + i, eh + y, ew + x), 1e-5);
}

/* The yardstick for "close": rel L2 between the untiled encodes of ctx.video and of the same
 * frames in reverse order (a different clip with the same statistics), ~1.36 for this model. */
static double
unrelated_rel_l2 (void)
{
  g_autoptr(HvTensor) plain = encode (ctx.video, NULL);
  g_autoptr(HvTensor) r = hv_tensor_new (HV_DTYPE_F32, 5, ctx.video->shape);
  const int64_t HW = 24 * 40;
  for (int64_t c = 0; c < 3; c++)
    for (int64_t f = 0; f < 9; f++)
      memcpy ((float *) r->data + (c * 9 + f) * HW, (const float *) ctx.video->data + (c * 9 + 8 - f) * HW,
              (size_t) HW * sizeof (float));
  g_autoptr(HvTensor) er = encode (r, NULL);
  return rel_l2 (er, plain);
}

/* Tiled vs untiled: this random-weight tiny model sees the whole 24 x 40 frame (3 x 5 latents)
 * and its GroupNorms take statistics per tile, so tiles of half the frame change the moments a
 * lot: measured 0.49 (32 px tiles, overlap 0.5), 0.60 (the model's enable_tiling() values),
 * against ~1.36 for an unrelated clip and 1.0 for zeros. A wrong assembly (misplaced, missing or
 * unblended tiles) lands near the unrelated figure, so the bound is 0.8 and at most 0.6 x the
 * unrelated clip's figure. */
static void
assert_close_to_untiled (const HvTensor *tiled, const HvTensor *plain, const char *what)
{
  const double e = rel_l2 (tiled, plain), u = unrelated_rel_l2 ();
  g_test_message ("%s: rel L2 vs untiled = %.4f (unrelated clip: %.4f)", what, e, u);
  g_assert_cmpfloat (e, >, 0.0);
  g_assert_cmpfloat (e, <, 0.8);
  g_assert_cmpfloat (e, <, 0.6 * u);
}

static void
tiling_set (HvVaeTiling *t, gboolean spatial, gboolean temporal, int ss, int ts, double overlap)
{
  memset (t, 0, sizeof *t);
  t->spatial = spatial;
  t->temporal = temporal;
  t->tile_sample_min_size = ss;
  t->tile_latent_min_size = ss / 8;
  t->tile_sample_min_tsize = ts;
  t->tile_latent_min_tsize = ts / 4;
  t->tile_overlap_factor = overlap;
}

/* The untiled encode still matches upstream (the baseline of the comparisons below). */
static void
test_untiled (void)
{
  g_autoptr(HvTensor) m = encode (ctx.video, NULL);
  assert_shape_finite (m, 3, 3, 5);
  double mx = 0;
  for (int64_t i = 0, n = hv_tensor_numel (ctx.moments); i < n; i++)
    mx = MAX (mx, fabs (((const float *) ctx.moments->data)[i]));
  g_assert_cmpfloat (max_abs_diff (m, ctx.moments), <=, 1e-4 * MAX (1.0, mx));
}

/* Tiles bigger than the clip: upstream's encode takes the untiled path, bit for bit. */
static void
test_big_tiles (void)
{
  g_autoptr(HvTensor) plain = encode (ctx.video, NULL);
  HvVaeTiling t;
  tiling_set (&t, TRUE, TRUE, 64, 16, 0.25);   /* 24x40 <= 64 px, 9 <= 16 frames */
  g_autoptr(HvTensor) tiled = encode (ctx.video, &t);
  g_assert_cmpfloat (max_abs_diff (plain, tiled), ==, 0.0);
  /* the model's own enable_tiling() values: 24 x 40 > 32 px, so these do tile */
  hv_vae_tiling_init (ctx.vae, &t);
  g_assert_cmpint (t.tile_sample_min_size, ==, 32);
  g_assert_cmpint (t.tile_latent_min_size, ==, 4);
  g_autoptr(HvTensor) dflt = encode (ctx.video, &t);
  assert_shape_finite (dflt, 3, 3, 5);
  assert_close_to_untiled (dflt, plain, "enable_tiling() tiles");
}

/* Spatial tiles of 32 px (4 latents) at a step of 16 px, blended over 2 latents, cropped to 2:
 * columns j = 0, 16, 32 and rows i = 0, 16 of the 24 x 40 frame. Temporal tiling is on but the
 * 9 frames fit one window (upstream: spatial_tiled_encode). */
static void
test_spatial (void)
{
  HvVaeTiling t;
  tiling_set (&t, TRUE, TRUE, 32, 16, 0.5);
  g_autoptr(HvTensor) m = encode (ctx.video, &t);
  assert_shape_finite (m, 3, 3, 5);

  /* the single tiles of the top row (rows 0..23 px -> 3 latent rows) */
  g_autoptr(HvTensor) x00 = crop (ctx.video, 0, 9, 0, 32, 0, 32);
  g_autoptr(HvTensor) x01 = crop (ctx.video, 0, 9, 0, 32, 16, 32);
  g_autoptr(HvTensor) e00 = encode (x00, NULL);   /* [.., 3, 3, 4] */
  g_autoptr(HvTensor) e01 = encode (x01, NULL);   /* [.., 3, 3, 3] */
  /* tile (0, 0) is never blended: its kept 2 x 2 latents are copied */
  assert_region_equal (m, 0, 0, 0, e00, 0, 0, 0, 3, 2, 2);
  /* tile (0, 1): its column 0 takes the left tile's column 2 (weight 1 - 0/2), its column 1 is
   * half its own, half the left tile's column 3; its column 2 is past the crop */
  assert_region_equal (m, 0, 0, 2, e00, 0, 0, 2, 3, 2, 1);
  for (int64_t c = 0; c < 32; c++)
    for (int64_t f = 0; f < 3; f++)
      for (int64_t y = 0; y < 2; y++)
        g_assert_cmpfloat_with_epsilon (at (m, c, f, y, 3),
                                        at (e00, c, f, y, 3) * 0.5f + at (e01, c, f, y, 1) * 0.5f, 1e-5);
  /* tile (0, 2) (px 32..39, one latent column) blends over min(1, 2) = 1 column: a copy of
   * tile (0, 1)'s last column, which no blend touched */
  assert_region_equal (m, 0, 0, 4, e01, 0, 0, 2, 3, 2, 1);

  g_autoptr(HvTensor) plain = encode (ctx.video, NULL);
  assert_close_to_untiled (m, plain, "spatial tiles");
}

/* Temporal windows of 16 + 1 frames at a step of 8 over 17 frames (upstream:
 * temporal_tiled_encode, each window spatially tiled as above), blended over 2 latent frames,
 * keeping 2 per window (the first 3): windows [0, 17) -> 5 latents, [8, 17) -> 3 (first dropped
 * -> 2), [16, 17) -> 1 (dropped -> 0). */
static void
test_temporal (void)
{
  HvVaeTiling t;
  tiling_set (&t, TRUE, TRUE, 32, 16, 0.5);
  g_autoptr(HvTensor) m = encode (ctx.long_video, &t);
  assert_shape_finite (m, 5, 3, 5);

  HvVaeTiling sp = t;
  sp.temporal = FALSE;
  g_autoptr(HvTensor) w0 = encode (ctx.long_video, &sp);          /* window [0, 17) */
  g_autoptr(HvTensor) x1 = crop (ctx.long_video, 8, 9, 0, 24, 0, 40);
  g_autoptr(HvTensor) w1 = encode (x1, &sp);                      /* window [8, 17) */
  assert_shape_finite (w1, 3, 3, 5);
  /* first window: 3 frames copied; second: its frame 1 (after the drop: 0) takes the first
   * window's frame 3, its frame 2 (1) is an even blend with the first window's frame 4 */
  assert_region_equal (m, 0, 0, 0, w0, 0, 0, 0, 4, 3, 5);
  for (int64_t c = 0; c < 32; c++)
    for (int64_t y = 0; y < 3; y++)
      for (int64_t x = 0; x < 5; x++)
        g_assert_cmpfloat_with_epsilon (at (m, c, 4, y, x),
                                        at (w0, c, 4, y, x) * 0.5f + at (w1, c, 2, y, x) * 0.5f, 1e-5);

  /* the temporal windows must have changed something */
  g_assert_cmpfloat (max_abs_diff (m, w0), >, 0.0);
  g_autoptr(HvTensor) plain = encode (ctx.long_video, NULL);
  assert_close_to_untiled (m, plain, "temporal + spatial tiles");

  /* temporal tiling alone: the windows are encoded whole */
  HvVaeTiling tm = t;
  tm.spatial = FALSE;
  g_autoptr(HvTensor) mt = encode (ctx.long_video, &tm);
  g_autoptr(HvTensor) v0 = encode (ctx.long_video, NULL);
  g_autoptr(HvTensor) v1 = encode (x1, NULL);
  assert_shape_finite (mt, 5, 3, 5);
  assert_region_equal (mt, 0, 0, 0, v0, 0, 0, 0, 4, 3, 5);
  for (int64_t c = 0; c < 32; c++)
    g_assert_cmpfloat_with_epsilon (at (mt, c, 4, 1, 2),
                                    at (v0, c, 4, 1, 2) * 0.5f + at (v1, c, 2, 1, 2) * 0.5f, 1e-5);
}

static void
expect_invalid (const HvVaeTiling *t)
{
  g_autoptr(GError) error = NULL;
  HvTensor *m = NULL;
  g_assert_false (hv_vae_encode (ctx.vae, ctx.video, t, &m, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_assert_null (m);
  g_test_message ("%s", error->message);
}

static void
test_invalid (void)
{
  HvVaeTiling t;
  tiling_set (&t, TRUE, TRUE, 32, 16, 1.0);
  expect_invalid (&t);
  tiling_set (&t, TRUE, TRUE, 32, 16, -0.25);
  expect_invalid (&t);
  tiling_set (&t, TRUE, FALSE, 16, 16, 0.25);   /* 12 px step, but 2 - 0 kept latents = 16 px */
  expect_invalid (&t);
  tiling_set (&t, FALSE, TRUE, 32, 8, 0.25);    /* 6 frame step, 2 kept latent frames = 8 */
  expect_invalid (&t);
  tiling_set (&t, TRUE, FALSE, 32, 16, 0.25);
  t.tile_latent_min_size = 0;
  expect_invalid (&t);
  tiling_set (&t, TRUE, FALSE, 32, 16, 0.25);
  t.tile_sample_min_size = 0;
  expect_invalid (&t);
  /* knobs of a disabled direction are not looked at */
  tiling_set (&t, TRUE, FALSE, 32, 8, 0.5);
  t.tile_latent_min_tsize = 0;
  g_autoptr(HvTensor) m = encode (ctx.video, &t);
  assert_shape_finite (m, 3, 3, 5);
}

static HvTensor *
load (HvStore *s, const char *name)
{
  const HvTensor *t = hv_store_get (s, name);
  g_assert_nonnull (t);
  HvTensor *f = hv_tensor_to_f32 (t);
  g_assert_nonnull (f);
  return f;
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  const char *dir = g_getenv ("HV_VAE_DIR");
  if (!dir) {
    g_printerr ("HV_VAE_DIR (tests/data/fixtures/vae) is not set\n");
    return 77;
  }
  g_autoptr(GError) error = NULL;
  ctx.backend = hv_backend_cpu_new (0);
  ctx.vae = hv_vae_new_from_path (dir, ctx.backend, &error);
  g_assert_no_error (error);
  g_autofree char *path = g_build_filename (dir, "encode.safetensors", NULL);
  HvStore *store = hv_store_open (path, &error);
  g_assert_no_error (error);
  ctx.video = load (store, "video_in");
  ctx.moments = load (store, "moments");
  hv_store_free (store);
  g_assert_cmpint (ctx.video->shape[2], ==, 9);

  /* 17 frames: video_in, then its frames 7, 6, ..., 0 */
  const int64_t C = 3, T = 17, HW = 24 * 40;
  const int64_t shape[5] = { 1, C, T, 24, 40 };
  ctx.long_video = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  for (int64_t c = 0; c < C; c++)
    for (int64_t f = 0; f < T; f++)
      memcpy ((float *) ctx.long_video->data + (c * T + f) * HW,
              (const float *) ctx.video->data + (c * 9 + (f < 9 ? f : 16 - f)) * HW,
              (size_t) HW * sizeof (float));

  g_test_add_func ("/vae/encode/untiled", test_untiled);
  g_test_add_func ("/vae/encode/big-tiles", test_big_tiles);
  g_test_add_func ("/vae/encode/spatial", test_spatial);
  g_test_add_func ("/vae/encode/temporal", test_temporal);
  g_test_add_func ("/vae/encode/invalid", test_invalid);
  int rc = g_test_run ();
  hv_tensor_free (ctx.video);
  hv_tensor_free (ctx.moments);
  hv_tensor_free (ctx.long_video);
  hv_vae_free (ctx.vae);
  hv_backend_free (ctx.backend);
  return rc;
}
