/* test-vae-stream.c — the streamed VAE decode hands out the same frames as the whole decode,
 * and hands out the first one before the last chunk is decoded. Uses the tiny VAE of the
 * fixtures (HV_VAE_DIR = tests/data/fixtures/vae). */
#include "hv-vae.h"
#include "hv-error.h"
#include <glib/gstdio.h>
#include <unistd.h>
#include <math.h>
#include <string.h>

typedef struct {
  HvBackend *backend;
  HvVae *vae;
  HvTensor *latents;   /* [1, 16, 4, 4, 6] -> 13 frames of 32 x 48 */
  HvTensor *short_latents;   /* [1, 16, 2, 2, 4] -> 5 frames of 16 x 32 */
} Ctx;

static Ctx ctx;

static HvTensor *make_latents (int T, int h, int w, guint32 seed);

typedef struct {
  HvTensor *video;          /* [1, 3, T, H, W], filled frame by frame */
  int n;                    /* frames received */
  gboolean in_order;
  volatile int cancel;
  int cancel_at;            /* raise cancel when this frame arrives (-1: never) */
} Collect;

static void
on_frame (int index, const HvTensor *frame, gpointer user)
{
  Collect *c = user;
  HvTensor *v = c->video;
  const int64_t C = v->shape[1], T = v->shape[2], HW = v->shape[3] * v->shape[4];
  if (index != c->n || index >= T || frame->ndim != 3 || frame->shape[0] != C ||
      frame->shape[1] * frame->shape[2] != HW) {
    c->in_order = FALSE;
    return;
  }
  for (int64_t ch = 0; ch < C; ch++)
    memcpy ((float *) v->data + (ch * T + index) * HW, (const float *) frame->data + ch * HW,
            (size_t) HW * sizeof (float));
  c->n++;
  if (index == c->cancel_at)
    c->cancel = 1;
}

static double
max_abs_diff (const HvTensor *a, const HvTensor *b)
{
  g_assert_cmpint (hv_tensor_numel (a), ==, hv_tensor_numel (b));
  const float *x = a->data, *y = b->data;
  double m = 0;
  for (int64_t i = 0, n = hv_tensor_numel (a); i < n; i++)
    m = MAX (m, fabs ((double) x[i] - y[i]));
  return m;
}

/* Streams ctx.latents and checks every frame against hv_vae_decode with the same tiling. */
static void
check_stream_equals_whole (const HvTensor *latents, const HvVaeTiling *tiling)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HvTensor) whole = NULL;
  g_assert_true (hv_vae_decode (ctx.vae, latents, tiling, &whole, &error));
  g_assert_no_error (error);
  const int64_t T = 1 + 4 * (latents->shape[2] - 1);
  g_assert_cmpint (whole->shape[2], ==, T);
  g_assert_cmpint (whole->shape[3], ==, 8 * latents->shape[3]);
  g_assert_cmpint (whole->shape[4], ==, 8 * latents->shape[4]);

  g_autoptr(HvTensor) streamed = hv_tensor_new (HV_DTYPE_F32, 5, whole->shape);
  Collect c = { streamed, 0, TRUE, 0, -1 };
  g_assert_true (hv_vae_decode_stream (ctx.vae, latents, tiling, on_frame, &c, &c.cancel, &error));
  g_assert_no_error (error);
  g_assert_true (c.in_order);
  g_assert_cmpint (c.n, ==, T);
  /* fp32 tolerance of the fixtures (values in [0, 1]) */
  g_assert_cmpfloat (max_abs_diff (whole, streamed), <=, 1e-4);
  /* and the decode is not trivially constant */
  const float *d = whole->data;
  float lo = 1, hi = 0;
  for (int64_t i = 0, n = hv_tensor_numel (whole); i < n; i++) {
    lo = MIN (lo, d[i]);
    hi = MAX (hi, d[i]);
  }
  g_assert_cmpfloat (hi - lo, >, 0.1);
}

/* Raising the cancel flag in the first frame's callback stops the stream before its last frame:
 * so the first frame was handed out before the last chunk was decoded. */
static void
check_first_frame_early (const HvVaeTiling *tiling)
{
  g_autoptr(GError) error = NULL;
  const int64_t shape[5] = { 1, 3, 13, 32, 48 };
  g_autoptr(HvTensor) video = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  Collect c = { video, 0, TRUE, 0, 0 };
  g_assert_false (hv_vae_decode_stream (ctx.vae, ctx.latents, tiling, on_frame, &c, &c.cancel, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_CANCELLED);
  g_assert_true (c.in_order);
  g_assert_cmpint (c.n, >=, 1);
  g_assert_cmpint (c.n, <, 13);
}

static void
test_exact_stream (void)
{
  hv_vae_set_stream_chunk (ctx.vae, 1);
  hv_vae_set_stream_cache (ctx.vae, (gsize) 1 << 30);
  check_stream_equals_whole (ctx.latents, NULL);
  check_first_frame_early (NULL);
  hv_vae_set_stream_chunk (ctx.vae, 3);
  check_stream_equals_whole (ctx.latents, NULL);
  hv_vae_set_stream_chunk (ctx.vae, 1);
}

static void
test_exact_stream_no_cache (void)
{
  /* nothing cached: every GroupNorm pass recomputes from the mid block */
  hv_vae_set_stream_chunk (ctx.vae, 1);
  hv_vae_set_stream_cache (ctx.vae, 0);
  check_stream_equals_whole (ctx.short_latents, NULL);
  /* a budget that holds the low-resolution checkpoints only */
  hv_vae_set_stream_cache (ctx.vae, 32 * 3 * 8 * 16 * 4);
  check_stream_equals_whole (ctx.short_latents, NULL);
  hv_vae_set_stream_cache (ctx.vae, (gsize) 1 << 30);
}

static void
test_single_frame (void)
{
  /* one latent frame = one image: the upsamplers' first-frame rule alone */
  g_autoptr(HvTensor) z = make_latents (1, 2, 3, 9);
  check_stream_equals_whole (z, NULL);
}

static void
small_tiling (HvVaeTiling *t, gboolean spatial)
{
  /* the 4x6 latent in 2x3 spatial tiles of 4 latent px (step 2), its 4 frames in windows of
   * 2 + 1 latent frames (step 1, blending over 4 frames) */
  memset (t, 0, sizeof *t);
  t->spatial = spatial;
  t->temporal = TRUE;
  t->tile_sample_min_size = 32;
  t->tile_latent_min_size = 4;
  t->tile_sample_min_tsize = 8;
  t->tile_latent_min_tsize = 2;
  t->tile_overlap_factor = 0.5;
}

static void
test_tiled_stream (void)
{
  HvVaeTiling t;
  g_autoptr(GError) error = NULL;
  small_tiling (&t, FALSE);
  g_assert_true (hv_vae_tiling_validate (ctx.vae, &t, &error));
  check_stream_equals_whole (ctx.latents, &t);
  check_first_frame_early (&t);
  small_tiling (&t, TRUE);
  check_stream_equals_whole (ctx.latents, &t);
}

static void
test_tiling_validate (void)
{
  g_autoptr(GError) error = NULL;
  HvVaeTiling t;
  hv_vae_tiling_init (ctx.vae, &t);
  g_assert_cmpint (t.tile_sample_min_size, ==, 32);     /* config sample_size */
  g_assert_cmpint (t.tile_latent_min_size, ==, 4);      /* 32 / 2^(4-1) */
  g_assert_cmpint (t.tile_sample_min_tsize, ==, 16);
  g_assert_cmpint (t.tile_latent_min_tsize, ==, 4);
  g_assert_true (hv_vae_tiling_validate (ctx.vae, &t, &error));
  t.tile_overlap_factor = 1.5;
  g_assert_false (hv_vae_tiling_validate (ctx.vae, &t, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  hv_vae_tiling_init (ctx.vae, &t);
  t.tile_sample_min_size = 40;   /* 40 - 10 kept px != 3 latent steps * 8 */
  g_assert_false (hv_vae_tiling_validate (ctx.vae, &t, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

static void
test_bad_input (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HvTensor) out = NULL;
  const int64_t bad[5] = { 1, 8, 2, 4, 4 };   /* wrong channel count */
  g_autoptr(HvTensor) z = hv_tensor_new (HV_DTYPE_F32, 5, bad);
  g_assert_false (hv_vae_decode (ctx.vae, z, NULL, &out, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_SHAPE);
  g_assert_null (out);
  g_clear_error (&error);
  const int64_t b2[5] = { 2, 16, 2, 4, 4 };   /* streams are batch 1 */
  g_autoptr(HvTensor) z2 = hv_tensor_new (HV_DTYPE_F32, 5, b2);
  Collect c = { NULL, 0, TRUE, 0, -1 };
  g_assert_false (hv_vae_decode_stream (ctx.vae, z2, NULL, on_frame, &c, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_SHAPE);
  g_assert_cmpint (c.n, ==, 0);
  g_clear_error (&error);
  g_assert_null (hv_vae_new_from_path ("/nonexistent/vae", ctx.backend, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_NOT_FOUND);
}

static void
test_u8 (void)
{
  /* save_videos_grid: clamp to [0, 1], times 255 in fp32, truncated */
  const float vals[6] = { 0.5f, 1.0f, -0.25f, 1.5f, 0.999f, 2.0f / 255.0f };
  const guint8 want[6] = { 127, 255, 0, 255, 254, 2 };
  const int64_t shape[5] = { 1, 3, 1, 1, 2 };
  g_autoptr(HvTensor) v = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  /* layout [C, T, H, W]: channel c of pixel x is vals[c * 2 + x] */
  memcpy (v->data, vals, sizeof vals);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvTensor) u = hv_vae_frames_to_u8 (v, &error);
  g_assert_no_error (error);
  const guint8 *d = u->data;
  for (int x = 0; x < 2; x++)
    for (int c = 0; c < 3; c++)
      g_assert_cmpint (d[x * 3 + c], ==, want[c * 2 + x]);
  const int64_t fs[3] = { 3, 1, 2 };
  g_autoptr(HvTensor) f = hv_tensor_new (HV_DTYPE_F32, 3, fs);
  memcpy (f->data, vals, sizeof vals);
  guint8 out[6];
  hv_vae_frame_to_u8 (f, out);
  g_assert_cmpmem (out, 6, d, 6);
}

/* Decodes short_latents with `other` and checks it equals ctx.vae's decode exactly. */
static void
check_same_decode (HvVae *other)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HvTensor) a = NULL, b = NULL;
  g_assert_true (hv_vae_decode (ctx.vae, ctx.short_latents, NULL, &a, &error));
  g_assert_true (hv_vae_decode (other, ctx.short_latents, NULL, &b, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (max_abs_diff (a, b), ==, 0.0);
}

/* A diffusers vae/ folder: AutoencoderKLHunyuanVideo config keys, diffusion_pytorch_model.*
 * weights under the same tensor names. */
static void
test_diffusers_folder (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("hv-vae-XXXXXX", &error);
  g_assert_no_error (error);
  const char *cfg =
    "{\"_class_name\": \"AutoencoderKLHunyuanVideo\", \"_diffusers_version\": \"0.32.0\","
    " \"act_fn\": \"silu\", \"block_out_channels\": [16, 16, 32, 32], \"in_channels\": 3,"
    " \"out_channels\": 3, \"latent_channels\": 16, \"layers_per_block\": 2,"
    " \"norm_num_groups\": 8, \"scaling_factor\": 0.476986, \"spatial_compression_ratio\": 8,"
    " \"temporal_compression_ratio\": 4, \"mid_block_add_attention\": true,"
    " \"down_block_types\": [\"HunyuanVideoDownBlock3D\", \"HunyuanVideoDownBlock3D\","
    " \"HunyuanVideoDownBlock3D\", \"HunyuanVideoDownBlock3D\"],"
    " \"up_block_types\": [\"HunyuanVideoUpBlock3D\", \"HunyuanVideoUpBlock3D\","
    " \"HunyuanVideoUpBlock3D\", \"HunyuanVideoUpBlock3D\"]}";
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *w_path = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  g_autofree char *src = g_build_filename (g_getenv ("HV_VAE_DIR"), "vae_weights.safetensors", NULL);
  g_autofree char *abs_src = g_canonicalize_filename (src, NULL);
  g_assert_true (g_file_set_contents (cfg_path, cfg, -1, &error));
  g_assert_cmpint (symlink (abs_src, w_path), ==, 0);
  g_autoptr(HvVae) vae = hv_vae_new_from_path (dir, ctx.backend, &error);
  g_assert_no_error (error);
  const HvVaeConfig *c = hv_vae_get_config (vae);
  g_assert_cmpint (c->time_compression_ratio, ==, 4);
  g_assert_cmpint (c->n_blocks, ==, 4);
  g_assert_cmpint (c->sample_size, ==, 256);   /* diffusers has none: the released value */
  g_assert_true (hv_vae_has_encoder (vae));
  check_same_decode (vae);
  g_unlink (w_path);
  g_unlink (cfg_path);
  g_rmdir (dir);
}

/* load_vae strips a "vae." prefix; so do we. */
static void
test_prefixed_names (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *src = g_build_filename (g_getenv ("HV_VAE_DIR"), "vae_weights.safetensors", NULL);
  g_autoptr(HvStore) file = hv_store_open (src, &error);
  g_assert_no_error (error);
  HvStore *prefixed = hv_store_new ();
  const char **names = hv_store_names (file);
  for (int i = 0; names[i]; i++) {
    g_autofree char *n = g_strconcat ("vae.", names[i], NULL);
    g_assert_true (hv_store_insert (prefixed, n, hv_tensor_view (hv_store_get (file, names[i])), &error));
  }
  g_autofree char *cfg_path = g_build_filename (g_getenv ("HV_VAE_DIR"), "config.json", NULL);
  HvVaeConfig cfg;
  g_assert_true (hv_vae_config_load (&cfg, cfg_path, &error));
  g_autoptr(HvVae) vae = hv_vae_new_from_store (prefixed, &cfg, ctx.backend, &error);
  g_assert_no_error (error);
  check_same_decode (vae);
  g_clear_pointer (&vae, hv_vae_free);
  /* a store without the decoder is refused with a message, not a crash */
  HvStore *empty = hv_store_new ();
  g_assert_null (hv_vae_new_from_store (empty, &cfg, ctx.backend, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_NOT_FOUND);
}

/* latents in the DiT's scaled space, roughly unit variance once unscaled */
static HvTensor *
make_latents (int T, int h, int w, guint32 seed)
{
  const int64_t shape[5] = { 1, 16, T, h, w };
  HvTensor *z = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  GRand *rand = g_rand_new_with_seed (seed);
  float *d = z->data;
  for (int64_t i = 0; i < hv_tensor_numel (z); i++)
    d[i] = (float) ((g_rand_double (rand) * 2 - 1) * 1.7 * 0.476986);
  g_rand_free (rand);
  return z;
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
  ctx.latents = make_latents (4, 4, 6, 7);
  ctx.short_latents = make_latents (2, 2, 4, 8);

  g_test_add_func ("/vae/stream/exact", test_exact_stream);
  g_test_add_func ("/vae/stream/exact-no-cache", test_exact_stream_no_cache);
  g_test_add_func ("/vae/stream/tiled", test_tiled_stream);
  g_test_add_func ("/vae/stream/single-frame", test_single_frame);
  g_test_add_func ("/vae/tiling/validate", test_tiling_validate);
  g_test_add_func ("/vae/bad-input", test_bad_input);
  g_test_add_func ("/vae/load/diffusers-folder", test_diffusers_folder);
  g_test_add_func ("/vae/load/prefixed-names", test_prefixed_names);
  g_test_add_func ("/vae/u8", test_u8);
  int rc = g_test_run ();
  hv_tensor_free (ctx.latents);
  hv_tensor_free (ctx.short_latents);
  hv_vae_free (ctx.vae);
  hv_backend_free (ctx.backend);
  return rc;
}
