/* bench-pipeline — the whole pipeline with the built-in tiny model, as the element runs it:
 * model build, text encoders, denoising, and when the first and the last frame come out.
 *
 *   bench-pipeline [--threads N] [--runs N] [--device cpu|cuda]
 *
 * One line per configuration (tiled decode as the official sampler, and the exact untiled
 * stream), times in seconds from the first next_frame, medians over the runs:
 *   tiny 128x96x17 4 steps tiled: build 0.07 text 0.01 denoise 0.04 first 0.45 last 0.62 */
#include "hyvideo.h"
#include "hv-error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  double text, denoise;   /* elapsed when the stage finished */
} Marks;

static void
on_progress (const HvProgress *p, gpointer user_data)
{
  Marks *m = user_data;
  if (p->stage == HV_STAGE_TEXT && p->step == p->total)
    m->text = p->elapsed;
  if (p->stage == HV_STAGE_DENOISE && p->step == p->total)
    m->denoise = p->elapsed;
}

static int
cmp (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof *v, cmp);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int
main (int argc, char **argv)
{
  int threads = 0, runs = 3;
  const char *device = "cpu";
  for (int i = 1; i < argc; i++) {
    if (!strcmp (argv[i], "--threads") && i + 1 < argc)
      threads = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--runs") && i + 1 < argc)
      runs = atoi (argv[++i]);
    else if (!strcmp (argv[i], "--device") && i + 1 < argc)
      device = argv[++i];
    else {
      fprintf (stderr, "usage: bench-pipeline [--threads N] [--runs N] [--device cpu|cuda]\n");
      return 2;
    }
  }
  g_autoptr(GError) error = NULL;
  for (int tiled = 1; tiled >= 0; tiled--) {
    double build[16], text[16], den[16], first[16], last[16];
    runs = CLAMP (runs, 1, 16);
    HvRequest r = { 0 };
    for (int k = 0; k < runs; k++) {
      HvEngineOptions o;
      hv_engine_options_init (&o);
      o.n_threads = threads;
      o.device = device;
      gint64 t0 = g_get_monotonic_time ();
      g_autoptr(HvEngine) e = hv_engine_new (&o, &error);
      if (!e) {
        fprintf (stderr, "bench-pipeline: %s\n", error->message);
        return 1;
      }
      build[k] = (g_get_monotonic_time () - t0) / 1e6;
      hv_request_init (&r);
      r.prompt = "A cat walks on the grass, realistic style.";
      r.seed = 42 + k;
      r.vae_tiling = tiled;
      hv_engine_fill_defaults (e, &r);
      Marks m = { 0 };
      g_autoptr(HvGeneration) g = hv_generation_new (e, &r, on_progress, &m, NULL, &error);
      const guint8 *rgb;
      int stride, n = 0;
      t0 = g_get_monotonic_time ();
      while (hv_generation_next_frame (g, &rgb, &stride, &error)) {
        double t = (g_get_monotonic_time () - t0) / 1e6;
        if (n++ == 0)
          first[k] = t;
        last[k] = t;
      }
      if (error || n != r.num_frames) {
        fprintf (stderr, "bench-pipeline: %s\n", error ? error->message : "wrong frame count");
        return 1;
      }
      text[k] = m.text;
      den[k] = m.denoise;
    }
    printf ("tiny %dx%dx%d %d steps %s (%s, %d runs, median s): build %.3f text %.3f denoise %.3f "
            "first frame %.3f last frame %.3f\n", r.width, r.height, r.num_frames, r.infer_steps,
            tiled ? "tiled" : "exact stream", device, runs, median (build, runs), median (text, runs),
            median (den, runs), median (first, runs), median (last, runs));
  }
  return 0;
}
