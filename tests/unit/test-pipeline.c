/* test-pipeline.c — the engine's public API (hyvideo.h) with the built-in tiny model: defaults,
 * generation, determinism, streaming, cancel, progress, errors; plus the tiny model's weights
 * and its byte tokenizer. Needs HV_FIXTURES for the error cases on real checkpoint files. */
#include "hyvideo.h"
#include "hv-error.h"
#include "hv-tiny.h"
#include "hv-vae.h"
#include "hv-rng.h"
#include "loaders/hv-layout.h"
#include "text/hv-byte-tokenizer.h"
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static HvEngine *
tiny_engine (gboolean offload)
{
  HvEngineOptions o;
  hv_engine_options_init (&o);
  o.cpu_offload = offload;
  o.n_threads = 2;
  g_autoptr(GError) error = NULL;
  HvEngine *e = hv_engine_new (&o, &error);
  g_assert_no_error (error);
  g_assert_nonnull (e);
  return e;
}

static void
small_request (HvRequest *r, int64_t seed)
{
  hv_request_init (r);
  r->prompt = "A cat walks on the grass, realistic style.";
  r->width = 32;
  r->height = 32;
  r->num_frames = 5;
  r->infer_steps = 2;
  r->seed = seed;
}

typedef struct {
  GByteArray *bytes;   /* all frames, concatenated */
  int frames;
  int stop_after;      /* on_frame returns FALSE after this many frames (0 = never) */
} Frames;

static gboolean
on_frame (int index, const guint8 *rgb, int width, int height, int stride, gpointer user_data)
{
  Frames *f = user_data;
  g_assert_cmpint (index, ==, f->frames);
  g_assert_cmpint (stride, ==, width * 3);
  g_byte_array_append (f->bytes, rgb, (guint) (stride * height));
  f->frames++;
  return f->stop_after == 0 || f->frames < f->stop_after;
}

static GByteArray *
generate (HvEngine *e, const HvRequest *r, int64_t *seed_used)
{
  Frames f = { .bytes = g_byte_array_new () };
  g_autoptr(GError) error = NULL;
  g_assert_true (hv_engine_generate (e, r, NULL, on_frame, &f, NULL, seed_used, &error));
  g_assert_no_error (error);
  g_assert_cmpint (f.frames, ==, r->num_frames);
  g_assert_cmpuint (f.bytes->len, ==, (guint) (r->width * r->height * 3 * r->num_frames));
  return f.bytes;
}

static gboolean
same (GByteArray *a, GByteArray *b)
{
  return a->len == b->len && memcmp (a->data, b->data, a->len) == 0;
}

/* ---- requests ------------------------------------------------------------------------------- */

static void
test_defaults (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  hv_request_init (&r);
  g_assert_cmpint (r.seed, ==, -1);
  g_assert_cmpfloat (r.embedded_cfg_scale, ==, 6.0);
  g_assert_cmpfloat (r.flow_shift, ==, 7.0);
  hv_engine_fill_defaults (e, &r);
  g_assert_cmpint (r.width, ==, 128);     /* the element's documented tiny defaults */
  g_assert_cmpint (r.height, ==, 96);
  g_assert_cmpint (r.num_frames, ==, 17);
  g_assert_cmpint (r.infer_steps, ==, 4);
  r.width = 64;                           /* set fields are kept */
  hv_engine_fill_defaults (e, &r);
  g_assert_cmpint (r.width, ==, 64);
}

static void
test_validation (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  g_autoptr(GError) error = NULL;
  small_request (&r, 1);
  r.width = 100;
  g_assert_null (hv_generation_new (e, &r, NULL, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "multiples of 16"));
  g_clear_error (&error);
  small_request (&r, 1);
  r.num_frames = 10;
  g_assert_false (hv_engine_generate (e, &r, NULL, on_frame, NULL, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "4k+1"));
  g_clear_error (&error);
  small_request (&r, 1);
  r.prompt = "\xff\xfe";
  g_assert_null (hv_generation_new (e, &r, NULL, NULL, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

/* ---- generation ----------------------------------------------------------------------------- */

static void
test_determinism (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  small_request (&r, 1234);
  int64_t used = -5;
  g_autoptr(GByteArray) a = generate (e, &r, &used);
  g_assert_cmpint (used, ==, 1234);
  g_autoptr(GByteArray) b = generate (e, &r, NULL);
  g_assert_true (same (a, b));
  r.seed = 1235;
  g_autoptr(GByteArray) c = generate (e, &r, NULL);
  g_assert_false (same (a, c));
  /* another prompt: another condition, other pictures */
  r.seed = 1234;
  r.prompt = "A dog runs on the beach.";
  g_autoptr(GByteArray) d = generate (e, &r, NULL);
  g_assert_false (same (a, d));
  /* a fresh engine makes the same weights */
  g_autoptr(HvEngine) e2 = tiny_engine (FALSE);
  r.prompt = "A cat walks on the grass, realistic style.";
  g_autoptr(GByteArray) a2 = generate (e2, &r, NULL);
  g_assert_true (same (a, a2));
  /* moving texture: consecutive frames differ, and a frame is not flat */
  const guint fsz = 32 * 32 * 3;
  g_assert_cmpint (memcmp (a->data, a->data + fsz, fsz), !=, 0);
  guint8 lo = 255, hi = 0;
  for (guint i = 0; i < fsz; i++) {
    lo = MIN (lo, a->data[i]);
    hi = MAX (hi, a->data[i]);
  }
  g_assert_cmpint (hi - lo, >, 64);
}

static void
test_random_seed (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  small_request (&r, -1);
  r.num_frames = 1;
  int64_t used = -1;
  g_autoptr(GByteArray) a = generate (e, &r, &used);
  g_assert_cmpint (used, >=, 0);
  g_assert_cmpint (used, <=, 1000000);
  r.seed = used;   /* the reported seed reproduces the video */
  g_autoptr(GByteArray) b = generate (e, &r, NULL);
  g_assert_true (same (a, b));
}

/* cpu_offload frees the text encoders after every encoding and makes them again: same video */
static void
test_cpu_offload (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  g_autoptr(HvEngine) eo = tiny_engine (TRUE);
  HvRequest r;
  small_request (&r, 77);
  g_autoptr(GByteArray) a = generate (e, &r, NULL);
  g_autoptr(GByteArray) b = generate (eo, &r, NULL);
  g_autoptr(GByteArray) c = generate (eo, &r, NULL);
  g_assert_true (same (a, b));
  g_assert_true (same (a, c));
}

/* Real CFG runs a batch of two with the negative prompt (upstream's default when none). */
static void
test_cfg (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  small_request (&r, 5);
  g_autoptr(GByteArray) plain = generate (e, &r, NULL);
  r.cfg_scale = 3.0;
  g_autoptr(GByteArray) cfg = generate (e, &r, NULL);
  g_autoptr(GByteArray) cfg2 = generate (e, &r, NULL);
  g_assert_false (same (plain, cfg));
  g_assert_true (same (cfg, cfg2));
  r.negative_prompt = "blurry";
  g_autoptr(GByteArray) neg = generate (e, &r, NULL);
  g_assert_false (same (cfg, neg));
  /* the negative prompt is ignored without CFG, as upstream does */
  r.cfg_scale = 1.0;
  g_autoptr(GByteArray) plain2 = generate (e, &r, NULL);
  g_assert_true (same (plain, plain2));
}

static void
test_stop_early (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  small_request (&r, 3);
  Frames f = { .bytes = g_byte_array_new (), .stop_after = 2 };
  g_autoptr(GError) error = NULL;
  g_assert_true (hv_engine_generate (e, &r, NULL, on_frame, &f, NULL, NULL, &error));
  g_assert_cmpint (f.frames, ==, 2);
  g_byte_array_unref (f.bytes);
}

/* ---- progress and cancel -------------------------------------------------------------------- */

typedef struct {
  GArray *events;          /* HvProgress */
  volatile gint *cancel;
  HvStage cancel_stage;
  int cancel_step;
} Watch;

static void
on_progress (const HvProgress *p, gpointer user_data)
{
  Watch *w = user_data;
  g_array_append_val (w->events, *p);
  if (w->cancel && p->stage == w->cancel_stage && p->step == w->cancel_step)
    g_atomic_int_set (w->cancel, 1);
}

static void
test_progress (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  small_request (&r, 9);
  r.infer_steps = 3;
  Watch w = { .events = g_array_new (FALSE, FALSE, sizeof (HvProgress)) };
  g_autoptr(HvGeneration) g = hv_generation_new (e, &r, on_progress, &w, NULL, NULL);
  g_assert_cmpint (hv_generation_n_frames (g), ==, 5);
  g_assert_cmpint (hv_generation_seed (g), ==, 9);
  g_autoptr(GError) error = NULL;
  const guint8 *rgb;
  int stride, n = 0;
  while (hv_generation_next_frame (g, &rgb, &stride, &error))
    n++;
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 5);
  g_assert_false (hv_generation_next_frame (g, &rgb, &stride, &error));   /* stays finished */
  g_assert_no_error (error);
  /* text 0,1; denoise 0..3; decode 0..5; done */
  static const struct { HvStage s; int step, total; } want[] = {
    { HV_STAGE_TEXT, 0, 1 }, { HV_STAGE_TEXT, 1, 1 },
    { HV_STAGE_DENOISE, 0, 3 }, { HV_STAGE_DENOISE, 1, 3 }, { HV_STAGE_DENOISE, 2, 3 }, { HV_STAGE_DENOISE, 3, 3 },
    { HV_STAGE_DECODE, 0, 5 }, { HV_STAGE_DECODE, 1, 5 }, { HV_STAGE_DECODE, 2, 5 }, { HV_STAGE_DECODE, 3, 5 },
    { HV_STAGE_DECODE, 4, 5 }, { HV_STAGE_DECODE, 5, 5 }, { HV_STAGE_DONE, 5, 5 },
  };
  g_assert_cmpuint (w.events->len, ==, G_N_ELEMENTS (want));
  double last = 0;
  for (guint i = 0; i < w.events->len; i++) {
    const HvProgress *p = &g_array_index (w.events, HvProgress, i);
    g_assert_cmpint (p->stage, ==, want[i].s);
    g_assert_cmpint (p->step, ==, want[i].step);
    g_assert_cmpint (p->total, ==, want[i].total);
    g_assert_cmpfloat (p->elapsed, >=, last);
    last = p->elapsed;
    if (p->step > 0)
      g_assert_cmpfloat (p->eta, >=, 0);
  }
  g_assert_cmpstr (hv_stage_name (HV_STAGE_DENOISE), ==, "denoise");
  g_array_unref (w.events);
}

/* hv_engine_generate passes one user_data to both callbacks */
typedef struct {
  Frames f;   /* first: on_frame takes the pointer as a Frames */
  Watch w;
} Both;

static void
on_progress_both (const HvProgress *p, gpointer user_data)
{
  on_progress (p, &((Both *) user_data)->w);
}

/* Cancel is read between denoising steps: raised during step 1, step 2 never runs. */
static void
test_cancel_denoise (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  small_request (&r, 9);
  r.infer_steps = 50;
  volatile gint cancel = 0;
  Both b = { .f = { .bytes = g_byte_array_new () },
             .w = { .events = g_array_new (FALSE, FALSE, sizeof (HvProgress)), .cancel = &cancel,
                    .cancel_stage = HV_STAGE_DENOISE, .cancel_step = 1 } };
  g_autoptr(GError) error = NULL;
  g_assert_false (hv_engine_generate (e, &r, on_progress_both, on_frame, &b, &cancel, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_CANCELLED);
  g_assert_cmpint (b.f.frames, ==, 0);
  const HvProgress *lastp = &g_array_index (b.w.events, HvProgress, b.w.events->len - 1);
  g_assert_cmpint (lastp->stage, ==, HV_STAGE_DENOISE);
  g_assert_cmpint (lastp->step, ==, 1);
  g_array_unref (b.w.events);
  g_byte_array_unref (b.f.bytes);
  /* the engine is still usable afterwards */
  small_request (&r, 9);
  g_autoptr(GByteArray) ok = generate (e, &r, NULL);
}

/* Frames come out chunk by chunk as the VAE decodes them: cancelled after frame 0, the frames
 * of the first decoded chunk still come, the next chunk is never decoded. (The tiny VAE with
 * tiling decodes 17 frames as temporal windows of 13 and 4 frames.) */
static void
test_streaming (void)
{
  g_autoptr(HvEngine) e = tiny_engine (FALSE);
  HvRequest r;
  hv_request_init (&r);
  r.prompt = "streaming";
  hv_engine_fill_defaults (e, &r);   /* 128x96, 17 frames */
  r.infer_steps = 1;
  r.seed = 4;
  volatile gint cancel = 0;
  g_autoptr(HvGeneration) g = hv_generation_new (e, &r, NULL, NULL, &cancel, NULL);
  g_autoptr(GError) error = NULL;
  const guint8 *rgb;
  int stride, n = 0;
  g_assert_true (hv_generation_next_frame (g, &rgb, &stride, &error));
  n++;
  g_atomic_int_set (&cancel, 1);
  while (hv_generation_next_frame (g, &rgb, &stride, &error))
    n++;
  g_assert_error (error, HV_ERROR, HV_ERROR_CANCELLED);
  g_assert_cmpint (n, ==, 13);
  g_clear_error (&error);
  g_assert_false (hv_generation_next_frame (g, &rgb, &stride, &error));   /* finished */
  g_assert_no_error (error);
}

/* The pull stream of the VAE gives the frames of the whole decode, in the expected chunks. */
static void
check_vae_chunks (HvVae *vae, const HvTensor *latents, gboolean tiled, const int *sizes, int n_sizes)
{
  g_autoptr(GError) error = NULL;
  HvVaeTiling t;
  hv_vae_tiling_init (vae, &t);
  g_autoptr(HvTensor) whole = NULL;
  g_assert_true (hv_vae_decode (vae, latents, tiled ? &t : NULL, &whole, &error));
  g_assert_no_error (error);
  g_autoptr(HvVaeStream) s = hv_vae_stream_new (vae, latents, tiled ? &t : NULL, NULL, &error);
  g_assert_no_error (error);
  HvTensor *chunk;
  int first, k = 0, next = 0;
  const int64_t T = whole->shape[2], HW = whole->shape[3] * whole->shape[4];
  double worst = 0;
  while (hv_vae_stream_next (s, &chunk, &first, &error)) {
    g_assert_cmpint (k, <, n_sizes);
    g_assert_cmpint (first, ==, next);
    if (sizes)
      g_assert_cmpint (chunk->shape[2], ==, sizes[k]);
    else
      g_assert_cmpint (chunk->shape[2], <=, 4);   /* one latent frame's worth at most */
    for (int64_t c = 0; c < 3; c++)
      for (int64_t t2 = 0; t2 < chunk->shape[2]; t2++)
        for (int64_t i = 0; i < HW; i++) {
          float a = ((float *) chunk->data)[(c * chunk->shape[2] + t2) * HW + i];
          float b = ((float *) whole->data)[(c * T + first + t2) * HW + i];
          worst = MAX (worst, fabs (a - b));
        }
    next += (int) chunk->shape[2];
    k++;
    hv_tensor_free (chunk);
  }
  g_assert_no_error (error);
  g_assert_cmpint (k, ==, n_sizes);
  g_assert_cmpint (next, ==, T);
  g_assert_cmpfloat (worst, <=, 1e-4);
}

static void
test_vae_pull (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (2);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvVae) vae = hv_tiny_vae_new (b, &error);
  g_assert_no_error (error);
  const int64_t shape[5] = { 1, 16, 5, 6, 8 };
  g_autoptr(HvTensor) z = hv_noise_latents (HV_RNG_CPU, HV_RNG_F32, 11, shape, NULL);
  static const int tiled[] = { 13, 4 };
  check_vae_chunks (vae, z, TRUE, tiled, 2);
  check_vae_chunks (vae, z, FALSE, NULL, 5);   /* exact stream: chunks of one latent frame */
  /* a clip within one temporal tile: one chunk */
  const int64_t shape1[5] = { 1, 16, 3, 6, 8 };
  g_autoptr(HvTensor) z1 = hv_noise_latents (HV_RNG_CPU, HV_RNG_F32, 12, shape1, NULL);
  static const int one[] = { 9 };
  check_vae_chunks (vae, z1, TRUE, one, 1);
  /* cancel before the first chunk */
  volatile int cancel = 1;
  g_autoptr(HvVaeStream) s = hv_vae_stream_new (vae, z, NULL, &cancel, &error);
  HvTensor *chunk = NULL;
  g_assert_false (hv_vae_stream_next (s, &chunk, NULL, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_CANCELLED);
  g_assert_null (chunk);
}

/* ---- engine errors -------------------------------------------------------------------------- */

static void
expect_engine_error (const char *model, const char *device, const char *dit_weight, gint code, const char *text)
{
  HvEngineOptions o;
  hv_engine_options_init (&o);
  o.model = model;
  o.device = device;
  o.dit_weight = dit_weight;
  g_autoptr(GError) error = NULL;
  g_autoptr(HvEngine) e = hv_engine_new (&o, &error);
  g_assert_null (e);
  g_assert_error (error, HV_ERROR, code);
  if (!strstr (error->message, text))
    g_error ("\"%s\" not in \"%s\"", text, error->message);
}

static void
test_engine_errors (void)
{
  const char *fx = g_getenv ("HV_FIXTURES");
  expect_engine_error ("/nonexistent/ckpts", "cpu", NULL, HV_ERROR_NOT_FOUND, "/nonexistent/ckpts");
  expect_engine_error ("tiny", "tpu:0", NULL, HV_ERROR_INVALID, "cuda:N");
  expect_engine_error ("tiny", "cpu", "/some/dit.pt", HV_ERROR_INVALID, "dit-weight");
  if (!fx) {
    g_test_skip ("HV_FIXTURES not set");
    return;
  }
  /* one DiT file is not enough to generate */
  g_autofree char *dit = g_build_filename (fx, "dit", "dit_weights.safetensors", NULL);
  expect_engine_error (dit, "cpu", NULL, HV_ERROR_NOT_FOUND, "single DiT file");
  /* an official layout without text encoders */
  g_autofree char *root = g_dir_make_tmp ("hv-pipeline-XXXXXX", NULL);
  g_autofree char *tr = g_build_filename (root, "hunyuan-video-t2v-720p", "transformers", NULL);
  g_assert_cmpint (g_mkdir_with_parents (tr, 0755), ==, 0);
  g_autofree char *pt = g_build_filename (tr, "mp_rank_00_model_states.pt", NULL);
  g_autofree char *src = g_build_filename (fx, "dit", "dit_weights.pt", NULL);
  g_assert_cmpint (symlink (src, pt), ==, 0);
  g_autofree char *vae = g_build_filename (root, "hunyuan-video-t2v-720p", "vae", NULL);
  g_assert_cmpint (g_mkdir (vae, 0755), ==, 0);
  g_autofree char *vcfg = g_build_filename (vae, "config.json", NULL);
  g_autofree char *vpt = g_build_filename (vae, "pytorch_model.pt", NULL);
  g_autofree char *vcfg_src = g_build_filename (fx, "vae", "config.json", NULL);
  g_autofree char *vpt_src = g_build_filename (fx, "vae", "vae_weights.pt", NULL);
  g_assert_cmpint (symlink (vcfg_src, vcfg), ==, 0);
  g_assert_cmpint (symlink (vpt_src, vpt), ==, 0);
  expect_engine_error (root, "cpu", NULL, HV_ERROR_NOT_FOUND, "text_encoder");
  /* a dit-weight that does not exist */
  g_autofree char *text = g_build_filename (root, "text_encoder", NULL);
  g_autofree char *text2 = g_build_filename (root, "text_encoder_2", NULL);
  g_autofree char *t_src = g_build_filename (fx, "text", "text_encoder", NULL);
  g_autofree char *t2_src = g_build_filename (fx, "text", "text_encoder_2", NULL);
  g_assert_cmpint (symlink (t_src, text), ==, 0);
  g_assert_cmpint (symlink (t2_src, text2), ==, 0);
  expect_engine_error (root, "cpu", "/nonexistent/dit.pt", HV_ERROR_NOT_FOUND, "/nonexistent/dit.pt");
  g_unlink (pt);
  g_unlink (vcfg);
  g_unlink (vpt);
  g_unlink (text);
  g_unlink (text2);
  g_rmdir (vae);
  g_rmdir (tr);
  g_autofree char *mid = g_path_get_dirname (tr);
  g_rmdir (mid);
  g_rmdir (root);
}

/* ---- the tiny model ------------------------------------------------------------------------- */

static void
test_tiny_weights (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HvStore) s = hv_tiny_dit_store (&error);
  g_assert_no_error (error);
  /* the loaders' own view: the structure derived from the tensors is complete and consistent */
  HvDitShape shape;
  g_assert_true (hv_dit_shape_derive (s, NULL, &shape, &error));
  g_assert_no_error (error);
  g_assert_true (hv_dit_validate (s, &shape, &error));
  g_assert_no_error (error);
  g_assert_cmpint (shape.hidden, ==, 64);
  g_assert_cmpint (shape.n_double, ==, 2);
  g_assert_cmpint (shape.n_single, ==, 2);
  g_assert_cmpint (shape.n_refiner, ==, 2);
  /* deterministic */
  g_autoptr(HvStore) s2 = hv_tiny_dit_store (&error);
  const HvTensor *w = hv_store_get (s, "double_blocks.1.img_mlp.fc1.weight");
  const HvTensor *w2 = hv_store_get (s2, "double_blocks.1.img_mlp.fc1.weight");
  g_assert_nonnull (w);
  g_assert_cmpmem (w->data, hv_tensor_nbytes (w), w2->data, hv_tensor_nbytes (w2));
  /* N(0, 1/fan_in): fan_in 64 -> std 0.125 */
  g_autoptr(HvTensor) f = hv_tensor_to_f32 (w);
  const float *d = f->data;
  double sum = 0, sq = 0;
  const int64_t n = hv_tensor_numel (f);
  for (int64_t i = 0; i < n; i++) {
    sum += d[i];
    sq += (double) d[i] * d[i];
  }
  g_assert_cmpfloat (fabs (sum / n), <, 0.01);
  g_assert_cmpfloat (fabs (sqrt (sq / n) - 0.125), <, 0.01);
  /* norms 1, biases 0 */
  g_autoptr(HvTensor) qn = hv_tensor_to_f32 (hv_store_get (s, "double_blocks.0.img_attn_q_norm.weight"));
  g_autoptr(HvTensor) bias = hv_tensor_to_f32 (hv_store_get (s, "double_blocks.0.img_attn_qkv.bias"));
  for (int64_t i = 0; i < hv_tensor_numel (qn); i++)
    g_assert_cmpfloat (((float *) qn->data)[i], ==, 1.0f);
  for (int64_t i = 0; i < hv_tensor_numel (bias); i++)
    g_assert_cmpfloat (((float *) bias->data)[i], ==, 0.0f);
}

static void
test_byte_tokenizer (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(HvTokenized) c = hv_byte_clip_tokens ("Hi!", 8, &error);
  g_assert_no_error (error);
  const int64_t want_c[8] = { HV_BYTE_BOS, 'H' + 2, 'i' + 2, '!' + 2, HV_BYTE_EOS, HV_BYTE_EOS, HV_BYTE_EOS, HV_BYTE_EOS };
  g_assert_cmpmem (c->ids, sizeof want_c, want_c, sizeof want_c);
  g_assert_cmpint (c->n_real, ==, 5);
  g_assert_cmpint (c->mask[4], ==, 1);
  g_assert_cmpint (c->mask[5], ==, 0);
  g_assert_false (hv_tokenized_truncated (c));
  /* cut to max_len, EOS kept last */
  g_autoptr(HvTokenized) cut = hv_byte_clip_tokens ("abcdefgh", 5, &error);
  g_assert_cmpint (cut->ids[4], ==, HV_BYTE_EOS);
  g_assert_cmpint (cut->ids[3], ==, 'c' + 2);
  g_assert_true (hv_tokenized_truncated (cut));
  /* Llama side: BOS + the template's bytes before "{}" are the crop */
  g_autoptr(HvTokenized) l = hv_byte_llama_tokens ("cat", HV_PROMPT_TEMPLATE_VIDEO, 16, &error);
  g_assert_no_error (error);
  const char *tpl = hv_prompt_template_text (HV_PROMPT_TEMPLATE_VIDEO);
  const int crop = 1 + (int) (strstr (tpl, "{}") - tpl);
  g_assert_cmpint (l->crop_start, ==, crop);
  g_assert_cmpint (l->n, ==, crop + 16);
  g_assert_cmpint (l->ids[0], ==, HV_BYTE_BOS);
  g_assert_cmpint (l->ids[1], ==, (guint8) tpl[0] + 2);
  g_assert_cmpint (l->ids[crop], ==, 'c' + 2);
  g_assert_cmpint (l->ids[crop + 3], ==, '<' + 2);   /* the template's tail "<|eot_id|>" */
  g_assert_cmpint (l->ids[l->n - 1], ==, HV_BYTE_PAD);
  g_assert_cmpint (l->mask[l->n - 1], ==, 0);
  g_assert_null (hv_byte_clip_tokens ("\xc3\x28", 8, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/pipeline/defaults", test_defaults);
  g_test_add_func ("/pipeline/validation", test_validation);
  g_test_add_func ("/pipeline/determinism", test_determinism);
  g_test_add_func ("/pipeline/random-seed", test_random_seed);
  g_test_add_func ("/pipeline/cpu-offload", test_cpu_offload);
  g_test_add_func ("/pipeline/cfg", test_cfg);
  g_test_add_func ("/pipeline/stop-early", test_stop_early);
  g_test_add_func ("/pipeline/progress", test_progress);
  g_test_add_func ("/pipeline/cancel-denoise", test_cancel_denoise);
  g_test_add_func ("/pipeline/streaming", test_streaming);
  g_test_add_func ("/pipeline/vae-pull", test_vae_pull);
  g_test_add_func ("/pipeline/engine-errors", test_engine_errors);
  g_test_add_func ("/pipeline/tiny-weights", test_tiny_weights);
  g_test_add_func ("/pipeline/byte-tokenizer", test_byte_tokenizer);
  return g_test_run ();
}
