/* test-pipeline-backends.c — the whole pipeline (text encoders, denoise loop, streamed VAE decode)
 * with the built-in tiny model on the CPU backend and on CUDA, same requests and seeds, frames
 * compared. The components are checked one by one by test-backend-ops and the fixtures; this
 * checks that they are wired the same way end to end on the GPU (device-side tensors between
 * stages, the CFG batch, the streamed decode) and that a CUDA run repeats bit for bit (a run that
 * does not would point at a race).
 *
 *   test-pipeline-backends [--device cuda[:N]]     (--device cpu checks this harness itself)
 *
 * Pass: for each request, PSNR(cuda, cpu) over all frames >= 30 dB (bf16 tensor-core arithmetic
 * against the fp32 reference) and two CUDA runs give identical bytes. Exit 77 without a GPU. */
#include "hyvideo.h"
#include "hv-error.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIN_PSNR 30.0

typedef struct {
  GByteArray *bytes;
  int frames;
} Frames;

static gboolean
on_frame (int index, const guint8 *rgb, int width, int height, int stride, gpointer user_data)
{
  Frames *f = user_data;
  (void) index;
  for (int y = 0; y < height; y++)
    g_byte_array_append (f->bytes, rgb + (gsize) y * stride, (guint) (width * 3));
  f->frames++;
  return TRUE;
}

static GByteArray *
run (HvEngine *e, const HvRequest *r, double *seconds, GError **error)
{
  Frames f = { .bytes = g_byte_array_new () };
  gint64 t0 = g_get_monotonic_time ();
  if (!hv_engine_generate (e, r, NULL, on_frame, &f, NULL, NULL, error)) {
    g_byte_array_unref (f.bytes);
    return NULL;
  }
  *seconds = (g_get_monotonic_time () - t0) / 1e6;
  if (f.frames != r->num_frames || f.bytes->len != (guint) (r->width * r->height * 3 * r->num_frames)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "%d frames / %u bytes, expected %d frames of %dx%d",
                 f.frames, f.bytes->len, r->num_frames, r->width, r->height);
    g_byte_array_unref (f.bytes);
    return NULL;
  }
  return f.bytes;
}

static HvEngine *
engine (const char *device, GError **error)
{
  HvEngineOptions o;
  hv_engine_options_init (&o);
  o.model = "tiny";
  o.device = device;
  return hv_engine_new (&o, error);
}

/* One request on both backends; FALSE (with a line saying why) when it does not pass. */
static gboolean
compare (HvEngine *cpu, HvEngine *gpu, const char *name, const HvRequest *r)
{
  g_autoptr(GError) error = NULL;
  double tc = 0, tg = 0, tg2 = 0;
  g_autoptr(GByteArray) a = run (cpu, r, &tc, &error);
  g_autoptr(GByteArray) b = a ? run (gpu, r, &tg, &error) : NULL;
  g_autoptr(GByteArray) b2 = b ? run (gpu, r, &tg2, &error) : NULL;
  if (!b2) {
    printf ("FAIL %s: %s\n", name, error->message);
    return FALSE;
  }
  double se = 0;
  int maxd = 0;
  for (guint i = 0; i < a->len; i++) {
    int d = abs ((int) a->data[i] - (int) b->data[i]);
    se += (double) d * d;
    maxd = MAX (maxd, d);
  }
  double mse = se / a->len;
  double psnr = mse > 0 ? 10.0 * log10 (255.0 * 255.0 / mse) : INFINITY;
  gboolean repeat = memcmp (b->data, b2->data, b->len) == 0;
  gboolean ok = psnr >= MIN_PSNR && repeat;
  printf ("%s %s: PSNR %.1f dB (bound %.0f), max |diff| %d of 255, CUDA repeat %s; "
          "cpu %.2f s, cuda %.2f s (second run %.2f s)\n", ok ? "ok  " : "FAIL", name, psnr,
          MIN_PSNR, maxd, repeat ? "identical" : "DIFFERS", tc, tg, tg2);
  return ok;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *device = NULL;
  GOptionEntry entries[] = {
    { "device", 'd', 0, G_OPTION_ARG_STRING, &device, "the GPU device (default cuda)", "cuda[:N]" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("— the tiny pipeline on CPU and CUDA, compared");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "test-pipeline-backends: %s\n", error->message);
    return 2;
  }

  g_autoptr(HvEngine) gpu = engine (device ? device : "cuda", &error);
  if (!gpu) {
    if (g_error_matches (error, HV_ERROR, HV_ERROR_DEVICE)) {
      printf ("no CUDA device: skipping (%s)\n", error->message);
      return 77;
    }
    fprintf (stderr, "test-pipeline-backends: %s\n", error->message);
    return 1;
  }
  g_autoptr(HvEngine) cpu = engine ("cpu", &error);
  if (!cpu) {
    fprintf (stderr, "test-pipeline-backends: %s\n", error->message);
    return 1;
  }

  int failed = 0, n = 0;
  HvRequest r;
  hv_request_init (&r);
  r.prompt = "A cat walks on the grass, realistic style.";
  r.width = 64;
  r.height = 48;
  r.num_frames = 9;
  r.infer_steps = 4;
  r.seed = 1234;
  hv_engine_fill_defaults (gpu, &r);
  n++, failed += !compare (cpu, gpu, "64x48x9, 4 steps, embedded guidance", &r);

  r.negative_prompt = "blurry, low quality";
  r.cfg_scale = 3.0;
  r.seed = 77;
  n++, failed += !compare (cpu, gpu, "64x48x9, real CFG (batch 2) with a negative prompt", &r);

  r.negative_prompt = NULL;
  r.cfg_scale = 1.0;
  r.width = 128;
  r.height = 96;
  r.num_frames = 17;
  r.vae_tiling = TRUE;
  r.seed = 5;
  n++, failed += !compare (cpu, gpu, "128x96x17, tiled streaming decode", &r);

  printf ("%d passed, %d failed\n", n - failed, failed);
  return failed ? 1 : 0;
}
