/* test-dit — the DiT's structure reading, RoPE tables, input checks and sampler settings.
 * (Numerics against the official code are in the fixture kinds dit_forward/denoise/cfg_denoise.) */
#include "hv-denoise.h"
#include "hv-dit.h"
#include "hv-error.h"
#include "hv-rope.h"
#include <math.h>
#include <string.h>

static const char *fixtures;   /* tests/data/fixtures */

/* The released 13B DiT's names and shapes (no data) are accepted and read as the real config. */
static void
test_real_structure (void)
{
  g_autofree char *path = g_build_filename (fixtures, "manifests", "dit_full.json", NULL);
  g_autoptr(HvStore) s = hv_store_new ();
  g_autoptr(GError) error = NULL;
  g_assert_true (hv_store_add_manifest (s, path, FALSE, &error));
  g_assert_no_error (error);
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(HvDit) d = hv_dit_new (s, NULL, b, &error);
  g_assert_no_error (error);
  const HvDitInfo *in = hv_dit_info (d);
  g_assert_cmpint (in->hidden, ==, 3072);
  g_assert_cmpint (in->heads, ==, 24);
  g_assert_cmpint (in->head_dim, ==, 128);
  g_assert_cmpint (in->mlp_hidden, ==, 12288);
  g_assert_cmpint (in->depth_double, ==, 20);
  g_assert_cmpint (in->depth_single, ==, 40);
  g_assert_cmpint (in->depth_refiner, ==, 2);
  g_assert_cmpint (in->in_channels, ==, 16);
  g_assert_cmpint (in->out_channels, ==, 16);
  g_assert_cmpint (in->patch[0], ==, 1);
  g_assert_cmpint (in->patch[1], ==, 2);
  g_assert_cmpint (in->patch[2], ==, 2);
  g_assert_cmpint (in->text_dim, ==, 4096);
  g_assert_cmpint (in->text_dim_2, ==, 768);
  g_assert_cmpint (in->freq_dim, ==, 256);
  g_assert_true (in->guidance_embed);
  g_assert_cmpint (in->rope_dim[0] + in->rope_dim[1] + in->rope_dim[2], ==, 128);

  /* a head count that contradicts the checkpoint's QK-norm width is refused */
  HvDitConfig cfg;
  hv_dit_config_init (&cfg);
  cfg.heads_num = 12;
  g_autoptr(HvDit) bad = hv_dit_new (s, &cfg, b, &error);
  g_assert_null (bad);
  g_assert_error (error, HV_ERROR, HV_ERROR_SHAPE);
  g_clear_error (&error);
  /* RoPE dims that do not sum to the head dim are refused */
  hv_dit_config_init (&cfg);
  cfg.rope_dim[0] = 8;
  g_autoptr(HvDit) bad2 = hv_dit_new (s, &cfg, b, &error);
  g_assert_null (bad2);
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

/* A store without the DiT's tensors is an error naming what is missing, not a crash. */
static void
test_missing_tensors (void)
{
  g_autoptr(HvStore) s = hv_store_new ();
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvDit) d = hv_dit_new (s, NULL, b, &error);
  g_assert_null (d);
  g_assert_error (error, HV_ERROR, HV_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "img_in.proj.weight"));
}

static void
test_rope (void)
{
  const int dims[3] = { 4, 6, 6 };
  g_autoptr(HvTensor) c = NULL;
  g_autoptr(HvTensor) s = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_true (hv_rope_3d (dims, 256.0f, 2, 3, 5, &c, &s, &error));
  g_assert_cmpint (c->shape[0], ==, 30);
  g_assert_cmpint (c->shape[1], ==, 16);
  const float *cv = c->data, *sv = s->data;
  /* token 0: every angle is 0 */
  for (int j = 0; j < 16; j++) {
    g_assert_cmpfloat (cv[j], ==, 1.0f);
    g_assert_cmpfloat (sv[j], ==, 0.0f);
  }
  /* token (t=1, h=2, w=3) = (1*3 + 2)*5 + 3 = 28: axis t, pair 0 has f=1 → angle 1;
   * axis h (cols 4..9), pair 1: f = 1/256^(2/6) → angle 2f; axis w (cols 10..15), pair 2:
   * f = 1/256^(4/6) → angle 3f. Pairs share their value. */
  const float *row = cv + 28 * 16, *srow = sv + 28 * 16;
  g_assert_cmpfloat_with_epsilon (row[0], cosf (1.0f), 1e-6);
  g_assert_cmpfloat (row[0], ==, row[1]);
  g_assert_cmpfloat_with_epsilon (row[6], cosf (2.0f / powf (256.0f, 2.0f / 6.0f)), 1e-6);
  g_assert_cmpfloat_with_epsilon (srow[14], sinf (3.0f / powf (256.0f, 4.0f / 6.0f)), 1e-6);
  g_assert_cmpfloat (srow[14], ==, srow[15]);

  const int odd[3] = { 4, 5, 6 };
  g_autoptr(HvTensor) c2 = NULL;
  g_autoptr(HvTensor) s2 = NULL;
  g_assert_false (hv_rope_3d (odd, 256.0f, 2, 3, 5, &c2, &s2, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_assert_null (c2);
}

static void
test_guidance_value (void)
{
  /* the released bf16 pipeline: bf16(bf16(6.0) * 1000) = 6016 */
  g_assert_cmpfloat (hv_denoise_guidance_value (6.0f, TRUE), ==, 6016.0f);
  g_assert_cmpfloat (hv_denoise_guidance_value (6.0f, FALSE), ==, 6000.0f);
  g_assert_cmpfloat (hv_denoise_guidance_value (1.0f, TRUE), ==, 1000.0f);
  HvDenoiseParams p;
  hv_denoise_params_init (&p);
  g_assert_cmpint (p.steps, ==, 50);
  g_assert_true (p.guidance_bf16);
  g_assert_cmpfloat (p.cfg_scale, ==, 1.0f);
}

/* Bad inputs to the tiny fixture DiT fail with a GError, before any compute. */
static void
test_forward_checks (void)
{
  g_autofree char *path = g_build_filename (fixtures, "dit", "dit_weights.safetensors", NULL);
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvDit) d = hv_dit_open (path, NULL, b, &error);
  g_assert_no_error (error);
  g_assert_cmpint (hv_dit_info (d)->heads, ==, 2);      /* from dit_config.json beside it */
  g_assert_cmpint (hv_dit_info (d)->rope_dim[0], ==, 8);

  const int64_t xs[5] = { 1, 16, 3, 8, 12 }, bad_xs[5] = { 1, 16, 3, 7, 12 };
  const int64_t ts[3] = { 1, 4, 64 }, ps[2] = { 1, 32 };
  g_autoptr(HvTensor) x = hv_backend_tensor_f32 (b, 5, xs);
  g_autoptr(HvTensor) out = hv_backend_tensor_f32 (b, 5, xs);
  g_autoptr(HvTensor) bad_x = hv_backend_tensor_f32 (b, 5, bad_xs);
  g_autoptr(HvTensor) st = hv_backend_tensor_f32 (b, 3, ts);
  g_autoptr(HvTensor) pooled = hv_backend_tensor_f32 (b, 2, ps);
  memset (x->data, 0, hv_tensor_nbytes (x));
  memset (bad_x->data, 0, hv_tensor_nbytes (bad_x));
  memset (st->data, 0, hv_tensor_nbytes (st));
  memset (pooled->data, 0, hv_tensor_nbytes (pooled));
  const float t[1] = { 500.0f }, g[1] = { 6000.0f };
  const int32_t mask[4] = { 1, 1, 0, 0 }, empty[4] = { 0, 0, 0, 0 };

  /* H not a multiple of the patch */
  g_assert_false (hv_dit_forward (d, out, bad_x, t, g, st, mask, pooled, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_SHAPE);
  g_clear_error (&error);
  /* no valid text token */
  g_assert_false (hv_dit_forward (d, out, x, t, g, st, empty, pooled, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  /* a guidance-distilled model needs guidance */
  g_assert_false (hv_dit_forward (d, out, x, t, NULL, st, mask, pooled, &error));
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
  g_clear_error (&error);
  /* a good call works and gives finite values */
  g_assert_true (hv_dit_forward (d, out, x, t, g, st, mask, pooled, &error));
  g_assert_no_error (error);
  for (int64_t i = 0; i < hv_tensor_numel (out); i++)
    g_assert_true (isfinite (((float *) out->data)[i]));

  /* the MLPs over token chunks of 7 (several chunks, a ragged last one) give the same result
   * as one chunk, for a batch of 2 with different masks */
  {
    const int64_t xs2[5] = { 2, 16, 3, 8, 12 }, ts2[3] = { 2, 4, 64 }, ps2[2] = { 2, 32 };
    g_autoptr(HvTensor) x2 = hv_backend_tensor_f32 (b, 5, xs2);
    g_autoptr(HvTensor) st2 = hv_backend_tensor_f32 (b, 3, ts2);
    g_autoptr(HvTensor) p2 = hv_backend_tensor_f32 (b, 2, ps2);
    g_autoptr(HvTensor) o1 = hv_backend_tensor_f32 (b, 5, xs2);
    g_autoptr(HvTensor) o2 = hv_backend_tensor_f32 (b, 5, xs2);
    HvTensor *all[3] = { x2, st2, p2 };
    guint32 r = 12345;
    for (int k = 0; k < 3; k++)
      for (int64_t i = 0; i < hv_tensor_numel (all[k]); i++) {
        r = r * 1664525u + 1013904223u;
        ((float *) all[k]->data)[i] = (float) (r >> 8) / 16777216.0f - 0.5f;
      }
    const float t2[2] = { 900.0f, 900.0f }, g2[2] = { 6016.0f, 6016.0f };
    const int32_t m2[8] = { 1, 1, 0, 0, 1, 1, 1, 0 };
    g_assert_true (hv_dit_forward (d, o1, x2, t2, g2, st2, m2, p2, &error));
    hv_dit_set_row_chunk (d, 7);
    g_assert_true (hv_dit_forward (d, o2, x2, t2, g2, st2, m2, p2, &error));
    hv_dit_set_row_chunk (d, 0);
    g_assert_no_error (error);
    double max_diff = 0;
    for (int64_t i = 0; i < hv_tensor_numel (o1); i++)
      max_diff = MAX (max_diff, fabs (((float *) o1->data)[i] - ((float *) o2->data)[i]));
    g_assert_cmpfloat (max_diff, <=, 1e-5);
    /* batch item 1 equals a batch-1 run of it (per-item masks are honoured) */
    const int64_t xs1[5] = { 1, 16, 3, 8, 12 }, ts1[3] = { 1, 4, 64 }, ps1[2] = { 1, 32 };
    g_autoptr(HvTensor) x1 = hv_backend_tensor_f32 (b, 5, xs1);
    g_autoptr(HvTensor) st1 = hv_backend_tensor_f32 (b, 3, ts1);
    g_autoptr(HvTensor) p1 = hv_backend_tensor_f32 (b, 2, ps1);
    g_autoptr(HvTensor) o3 = hv_backend_tensor_f32 (b, 5, xs1);
    memcpy (x1->data, (float *) x2->data + hv_tensor_numel (x1), hv_tensor_nbytes (x1));
    memcpy (st1->data, (float *) st2->data + hv_tensor_numel (st1), hv_tensor_nbytes (st1));
    memcpy (p1->data, (float *) p2->data + 32, hv_tensor_nbytes (p1));
    g_assert_true (hv_dit_forward (d, o3, x1, t2, g2, st1, m2 + 4, p1, &error));
    g_assert_no_error (error);
    max_diff = 0;
    for (int64_t i = 0; i < hv_tensor_numel (o3); i++)
      max_diff = MAX (max_diff, fabs (((float *) o3->data)[i] - ((float *) o1->data)[hv_tensor_numel (o3) + i]));
    g_assert_cmpfloat (max_diff, <=, 1e-5);
  }

  /* real CFG without a negative condition */
  HvDenoiseParams p;
  hv_denoise_params_init (&p);
  p.cfg_scale = 6.0f;
  HvDitCond pos = { st, mask, pooled };
  g_autoptr(HvDenoiser) dn = hv_denoiser_new (d, &p, &pos, NULL, &error);
  g_assert_null (dn);
  g_assert_error (error, HV_ERROR, HV_ERROR_INVALID);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  fixtures = g_getenv ("HV_FIXTURES");
  if (!fixtures)
    fixtures = "tests/data/fixtures";
  g_test_add_func ("/dit/real-structure", test_real_structure);
  g_test_add_func ("/dit/missing-tensors", test_missing_tensors);
  g_test_add_func ("/dit/rope", test_rope);
  g_test_add_func ("/dit/guidance-value", test_guidance_value);
  g_test_add_func ("/dit/forward-checks", test_forward_checks);
  return g_test_run ();
}
