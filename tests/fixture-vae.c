/* fixture-vae.c — the vae_decode, vae_tiled_decode and vae_encode fixture kinds.
 *
 * The model is config.json + vae_weights.safetensors beside the sidecar (or --weights FILE,
 * e.g. vae_weights.pt). Every intermediate the sidecar stores is compared through the VAE's
 * probe hook, then the outputs; the streamed decode is checked against the same golden data. */
#include "fixture.h"
#include "hv-error.h"
#include "hv-vae.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static HvVae *
open_vae (HvFixture *fx, GError **error)
{
  g_autofree char *config = hv_fixture_path (fx, "config.json");
  g_autofree char *weights = fx->weights ? g_strdup (fx->weights) : hv_fixture_path (fx, "vae_weights.safetensors");
  return hv_vae_new_from_files (config, weights, fx->backend, error);
}

/* Compares every probed tensor the fixture stores under the same name. */
static void
probe_compare (const char *name, const HvTensor *t, gpointer user)
{
  HvFixture *fx = user;
  if (hv_fixture_tensor (fx, name))
    hv_fixture_compare (fx, name, t);
}

/* The pipeline image of a raw decoder value, as the reference computes it in fp32. */
static float
post (float x)
{
  float v = x / 2.0f + 0.5f;
  return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

/* uint8 frames [T, H, W, 3]: exact, except a difference of 1 where the reference's fp32 image
 * value (from `ref_decoded` [1, 3, T, H, W]) is within 1e-4 of a k/255 boundary (README). */
static gboolean
compare_u8 (HvFixture *fx, const char *label, const HvTensor *expected, const guint8 *ours, size_t n,
            const HvTensor *ref_decoded)
{
  if (!expected || (size_t) hv_tensor_numel (expected) != n || expected->dtype != HV_DTYPE_U8)
    return hv_fixture_check (fx, label, FALSE, "expected u8 tensor of %zu values missing", n);
  if (fx->cuda) {
    /* bf16 compute cannot give bit-exact frames: the CUDA tolerance on the 0..255 values */
    g_autofree float *f = g_new (float, n);
    for (size_t i = 0; i < n; i++)
      f[i] = ours[i];
    return hv_fixture_compare_f32 (fx, label, expected, f, n);
  }
  g_autoptr(HvTensor) ref = hv_tensor_to_f32 (ref_decoded);
  const guint8 *e = expected->data;
  const int64_t T = expected->shape[0], H = expected->shape[1], W = expected->shape[2], C = expected->shape[3];
  size_t n_diff = 0, n_boundary = 0;
  for (int64_t t = 0; t < T; t++)
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++)
        for (int64_t c = 0; c < C; c++) {
          size_t i = (size_t) (((t * H + y) * W + x) * C + c);
          if (e[i] == ours[i])
            continue;
          float v = post (((float *) ref->data)[((c * T + t) * H + y) * W + x]);
          double scaled = (double) v * 255.0;
          double dist = fabs (scaled - floor (scaled + 0.5)) / 255.0;
          if (abs ((int) e[i] - (int) ours[i]) == 1 && dist <= 1e-4)
            n_boundary++;
          else
            n_diff++;
        }
  return hv_fixture_check (fx, label, n_diff == 0, "%zu values: %zu differ, %zu off by 1 at a rounding "
                           "boundary (allowed)", n, n_diff, n_boundary);
}

/* ---- vae_decode --------------------------------------------------------------------------- */

typedef struct {
  HvTensor *video;   /* host [1, 3, T, H, W] image being filled by the stream */
  int n_frames;
  gboolean in_order;
} StreamCollect;

static void
collect_frame (int index, const HvTensor *frame, gpointer user)
{
  StreamCollect *sc = user;
  HvTensor *v = sc->video;
  const int64_t C = v->shape[1], T = v->shape[2], HW = v->shape[3] * v->shape[4];
  if (index != sc->n_frames || index >= T || frame->shape[0] != C ||
      frame->shape[1] * frame->shape[2] != HW) {
    sc->in_order = FALSE;
    return;
  }
  for (int64_t c = 0; c < C; c++)
    memcpy ((float *) v->data + (c * T + index) * HW, (const float *) frame->data + c * HW,
            (size_t) HW * sizeof (float));
  sc->n_frames++;
}

/* Streams `latents` and checks the frames against the reference image derived from `ref`. */
static gboolean
check_stream (HvFixture *fx, HvVae *vae, const char *label, const HvTensor *latents,
              const HvVaeTiling *tiling, const HvTensor *ref, const HvTensor *ref_u8, GError **error)
{
  g_autoptr(HvTensor) video = hv_tensor_new (HV_DTYPE_F32, 5, ref->shape);
  StreamCollect sc = { video, 0, TRUE };
  if (!hv_vae_decode_stream (vae, latents, tiling, collect_frame, &sc, NULL, error))
    return FALSE;
  g_autofree char *l1 = g_strdup_printf ("%s.frames", label);
  hv_fixture_check (fx, l1, sc.in_order && sc.n_frames == ref->shape[2], "%d frames in order (expected %"
                    G_GINT64_FORMAT ")", sc.n_frames, ref->shape[2]);
  g_autoptr(HvTensor) expect = hv_tensor_to_f32 (ref);
  float *e = expect->data;
  for (int64_t i = 0, n = hv_tensor_numel (expect); i < n; i++)
    e[i] = post (e[i]);
  g_autofree char *l2 = g_strdup_printf ("%s.image", label);
  hv_fixture_compare_f32 (fx, l2, expect, video->data, (size_t) hv_tensor_numel (video));
  if (ref_u8) {
    g_autoptr(HvTensor) u8 = hv_vae_frames_to_u8 (video, error);
    if (!u8)
      return FALSE;
    g_autofree char *l3 = g_strdup_printf ("%s.frames_u8", label);
    compare_u8 (fx, l3, ref_u8, u8->data, (size_t) hv_tensor_numel (u8), ref);
  }
  return TRUE;
}

gboolean
hv_fixture_run_vae_decode (HvFixture *fx, GError **error)
{
  g_autoptr(HvVae) vae = open_vae (fx, error);
  if (!vae)
    return FALSE;
  g_autoptr(HvTensor) latents = hv_fixture_f32 (fx, "latents", error);
  if (!latents)
    return FALSE;
  const HvTensor *ref = hv_fixture_tensor (fx, "decoded");
  const HvTensor *ref_u8 = hv_fixture_tensor (fx, "frames_u8");
  if (!ref || !ref_u8) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "fixture %s lacks decoded / frames_u8", fx->name);
    return FALSE;
  }
  /* whole decode: every intermediate through the probe, then the image and its uint8 frames */
  hv_vae_set_probe (vae, probe_compare, fx);
  g_autoptr(HvTensor) image = NULL;
  gint64 t0 = g_get_monotonic_time ();
  if (!hv_vae_decode (vae, latents, NULL, &image, error))
    return FALSE;
  printf ("     %s: whole decode %.2f s\n", fx->name, (g_get_monotonic_time () - t0) / 1e6);
  hv_vae_set_probe (vae, NULL, NULL);
  g_autoptr(HvTensor) u8 = hv_vae_frames_to_u8 (image, error);
  if (!u8)
    return FALSE;
  compare_u8 (fx, "frames_u8", ref_u8, u8->data, (size_t) hv_tensor_numel (u8), ref);

  /* the exact stream (one latent frame per chunk) must give the same frames */
  t0 = g_get_monotonic_time ();
  if (!check_stream (fx, vae, "stream", latents, NULL, ref, ref_u8, error))
    return FALSE;
  printf ("     %s: exact stream %.2f s\n", fx->name, (g_get_monotonic_time () - t0) / 1e6);
  return TRUE;
}

/* ---- vae_tiled_decode --------------------------------------------------------------------- */

static gboolean
knob_int (JsonObject *k, const char *name, int *out, GError **error)
{
  if (!json_object_has_member (k, name)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "tiling knob %s missing", name);
    return FALSE;
  }
  *out = (int) json_object_get_int_member (k, name);
  return TRUE;
}

gboolean
hv_fixture_run_vae_tiled_decode (HvFixture *fx, GError **error)
{
  g_autoptr(HvVae) vae = open_vae (fx, error);
  if (!vae)
    return FALSE;
  JsonObject *runs = json_object_has_member (fx->root, "runs") ? json_object_get_object_member (fx->root, "runs") : NULL;
  if (!runs) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "fixture %s has no runs", fx->name);
    return FALSE;
  }
  g_autoptr(GList) names = json_object_get_members (runs);
  for (GList *l = names; l; l = l->next) {
    const char *run = l->data;
    JsonObject *k = json_object_get_object_member (json_object_get_object_member (runs, run), "knobs");
    const char *input = strstr (run, "__");
    if (!k || !input) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "run %s: no knobs or no __input suffix", run);
      return FALSE;
    }
    HvVaeTiling t = { 0 };
    t.spatial = json_object_get_boolean_member (k, "use_spatial_tiling");
    t.temporal = json_object_get_boolean_member (k, "use_temporal_tiling");
    t.tile_overlap_factor = json_object_get_double_member (k, "tile_overlap_factor");
    if (!knob_int (k, "tile_sample_min_size", &t.tile_sample_min_size, error) ||
        !knob_int (k, "tile_latent_min_size", &t.tile_latent_min_size, error) ||
        !knob_int (k, "tile_sample_min_tsize", &t.tile_sample_min_tsize, error) ||
        !knob_int (k, "tile_latent_min_tsize", &t.tile_latent_min_tsize, error))
      return FALSE;
    /* the fixture's knobs are upstream's defaults for this config: hv_vae_tiling_init agrees */
    HvVaeTiling def;
    hv_vae_tiling_init (vae, &def);
    hv_fixture_check (fx, "tiling_init", def.tile_sample_min_size == t.tile_sample_min_size &&
                      def.tile_latent_min_size == t.tile_latent_min_size &&
                      def.tile_sample_min_tsize == t.tile_sample_min_tsize &&
                      def.tile_latent_min_tsize == t.tile_latent_min_tsize &&
                      def.tile_overlap_factor == t.tile_overlap_factor,
                      "defaults %d/%d/%d/%d/%.2f", def.tile_sample_min_size, def.tile_latent_min_size,
                      def.tile_sample_min_tsize, def.tile_latent_min_tsize, def.tile_overlap_factor);

    g_autoptr(HvTensor) latents = hv_fixture_f32 (fx, input + 2, error);
    if (!latents)
      return FALSE;
    g_autofree char *exp_name = g_strdup_printf ("%s.decoded", run);
    const HvTensor *ref = hv_fixture_tensor (fx, exp_name);
    if (!ref) {
      g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "fixture %s has no %s", fx->name, exp_name);
      return FALSE;
    }
    /* vae.decode(latents / scaling_factor) */
    g_autoptr(HvTensor) z = hv_tensor_to_f32 (latents);
    float *zd = z->data;
    for (int64_t i = 0, n = hv_tensor_numel (z); i < n; i++)
      zd[i] = zd[i] / hv_vae_get_config (vae)->scaling_factor;
    g_autoptr(HvTensor) dec = NULL;
    gint64 t0 = g_get_monotonic_time ();
    if (!hv_vae_decode_z (vae, z, &t, &dec, error))
      return FALSE;
    printf ("     %s/%s: tiled decode %.2f s\n", fx->name, run, (g_get_monotonic_time () - t0) / 1e6);
    hv_fixture_compare (fx, exp_name, dec);
    /* the tiled stream hands out the same frames, window by window */
    g_autofree char *label = g_strdup_printf ("%s.stream", run);
    if (!check_stream (fx, vae, label, latents, &t, ref, NULL, error))
      return FALSE;
  }
  return TRUE;
}

/* ---- vae_encode --------------------------------------------------------------------------- */

gboolean
hv_fixture_run_vae_encode (HvFixture *fx, GError **error)
{
  g_autoptr(HvVae) vae = open_vae (fx, error);
  if (!vae)
    return FALSE;
  g_autoptr(HvTensor) video = hv_fixture_f32 (fx, "video_in", error);
  if (!video)
    return FALSE;
  hv_vae_set_probe (vae, probe_compare, fx);
  g_autoptr(HvTensor) moments = NULL;
  if (!hv_vae_encode (vae, video, NULL, &moments, error))
    return FALSE;
  hv_vae_set_probe (vae, NULL, NULL);
  g_autoptr(HvTensor) mean = NULL, logvar = NULL, std = NULL;
  hv_vae_posterior (moments, &mean, &logvar, &std);
  hv_fixture_compare (fx, "mean", mean);
  hv_fixture_compare (fx, "logvar", logvar);
  hv_fixture_compare (fx, "std", std);
  g_autoptr(HvTensor) lat = hv_vae_latents_from_moments (vae, moments);
  hv_fixture_compare (fx, "latents_scaled", lat);
  return TRUE;
}
