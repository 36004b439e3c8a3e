/* bench-vae — CPU decode time and peak memory of the causal 3D VAE: whole decode, exact
 * stream, tiled decode and tiled stream, for the tiny fixture VAE and for a random-weight VAE
 * of the real width (block_out [128, 256, 512, 512], 2 layers, 32 groups: the config of
 * manifests/vae_full.json, decoder weights only, f32; built by bench-common.c).
 *
 *   bench-vae [--models tiny,real] [--modes whole,stream,stream-nocache,tiled,tiled-stream]
 *             [--tiny-size HxWxF] [--real-size HxWxF] [--tile-px N] [--tile-frames N]
 *             [--chunk N] [--cache-mb N] [--threads N] FIXTURES_DIR
 *
 * stream-nocache is the exact stream with no whole-clip checkpoints (memory bounded by the
 * chunk; recomputes instead).
 * FIXTURES_DIR is tests/data/fixtures (vae/ and manifests/vae_full.json). Each (model, mode)
 * runs in its own child process so that its peak RSS (VmHWM) is its own; "act" is the peak
 * minus the RSS once the weights are loaded. Sizes are in output pixels/frames (F = 1 + 4k).
 * Tiled modes use --tile-px / --tile-frames sample tiles (defaults: 32 / 16 for tiny, 128 / 16
 * for real, so that tiling happens at the default sizes; the official knobs are 256 / 64). */
#include "bench-common.h"
#include "hv-vae.h"
#include "hv-error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  char *models, *modes, *tiny_size, *real_size, *fixtures;
  int tile_px, tile_frames, chunk, cache_mb, threads;
} Opts;

static long
status_kb (const char *key)
{
  g_autofree char *s = NULL;
  if (!g_file_get_contents ("/proc/self/status", &s, NULL, NULL))
    return -1;
  const char *p = strstr (s, key);
  return p ? strtol (p + strlen (key) + 1, NULL, 10) : -1;
}

typedef struct {
  gint64 t0, first;
  int n;
} Frames;

static void
on_frame (int index, const HvTensor *frame, gpointer user)
{
  Frames *f = user;
  if (f->n++ == 0)
    f->first = g_get_monotonic_time ();
}

static gboolean
parse_size (const char *s, int *h, int *w, int *f)
{
  return s && sscanf (s, "%dx%dx%d", h, w, f) == 3 && *h >= 8 && *w >= 8 && *f >= 1 && (*f - 1) % 4 == 0;
}

/* One (model, mode) in the current process: prints one table row. */
static int
run_one (const Opts *o, const char *model, const char *mode)
{
  g_autoptr(GError) error = NULL;
  const gboolean real = strcmp (model, "real") == 0;
  int H, W, F;
  if (!parse_size (real ? o->real_size : o->tiny_size, &H, &W, &F)) {
    fprintf (stderr, "bench-vae: bad size (HxWxF, F = 1 + 4k)\n");
    return 2;
  }
  g_autoptr(HvBackend) b = hv_backend_cpu_new (o->threads);
  g_autofree char *tiny_dir = g_build_filename (o->fixtures, "vae", NULL);
  g_autoptr(HvVae) vae = real ? hv_bench_real_vae (o->fixtures, HV_DTYPE_F32, b, &error)
                              : hv_vae_new_from_path (tiny_dir, b, &error);
  if (!vae) {
    fprintf (stderr, "bench-vae: %s\n", error->message);
    return 1;
  }
  long rss_loaded = status_kb ("VmRSS:");
  const int64_t shape[5] = { 1, hv_vae_get_config (vae)->latent_channels, 1 + (F - 1) / 4, H / 8, W / 8 };
  g_autoptr(HvTensor) z = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  guint32 seed = 99;
  for (int64_t i = 0; i < hv_tensor_numel (z); i++)
    ((float *) z->data)[i] = hv_bench_lcg (&seed) * 0.8f;
  HvVaeTiling t;
  hv_vae_tiling_init (vae, &t);
  t.tile_sample_min_size = o->tile_px > 0 ? o->tile_px : (real ? 128 : 32);
  t.tile_latent_min_size = t.tile_sample_min_size / 8;
  t.tile_sample_min_tsize = o->tile_frames > 0 ? o->tile_frames : 16;
  t.tile_latent_min_tsize = t.tile_sample_min_tsize / 4;
  hv_vae_set_stream_chunk (vae, o->chunk);
  if (o->cache_mb >= 0)
    hv_vae_set_stream_cache (vae, (gsize) o->cache_mb << 20);

  Frames fr = { g_get_monotonic_time (), 0, 0 };
  gboolean ok;
  g_autoptr(HvTensor) video = NULL;
  if (strcmp (mode, "whole") == 0)
    ok = hv_vae_decode (vae, z, NULL, &video, &error);
  else if (strcmp (mode, "tiled") == 0)
    ok = hv_vae_decode (vae, z, &t, &video, &error);
  else if (strcmp (mode, "stream") == 0)
    ok = hv_vae_decode_stream (vae, z, NULL, on_frame, &fr, NULL, &error);
  else if (strcmp (mode, "stream-nocache") == 0) {
    hv_vae_set_stream_cache (vae, 0);
    ok = hv_vae_decode_stream (vae, z, NULL, on_frame, &fr, NULL, &error);
  }
  else if (strcmp (mode, "tiled-stream") == 0)
    ok = hv_vae_decode_stream (vae, z, &t, on_frame, &fr, NULL, &error);
  else {
    fprintf (stderr, "bench-vae: unknown mode %s\n", mode);
    return 2;
  }
  gint64 t1 = g_get_monotonic_time ();
  if (!ok) {
    fprintf (stderr, "bench-vae: %s %s: %s\n", model, mode, error->message);
    return 1;
  }
  long peak = status_kb ("VmHWM:");
  char first[32] = "-";
  if (fr.n)
    g_snprintf (first, sizeof first, "%.2f", (fr.first - fr.t0) / 1e6);
  char tiles[32] = "-";
  if (g_str_has_prefix (mode, "tiled"))
    g_snprintf (tiles, sizeof tiles, "%d px/%d fr", t.tile_sample_min_size, t.tile_sample_min_tsize);
  g_autofree char *size = g_strdup_printf ("%dx%dx%d", H, W, F);
  printf ("%-5s %-14s %-12s %9.2f %9s %9.0f %9.0f %9.0f  %s\n", model, mode, size,
          (t1 - fr.t0) / 1e6, first, peak / 1024.0, rss_loaded / 1024.0, (peak - rss_loaded) / 1024.0, tiles);
  fflush (stdout);
  return 0;
}

int
main (int argc, char **argv)
{
  Opts o = { .chunk = 1, .cache_mb = -1 };
  g_auto(GStrv) rest = NULL;
  GOptionEntry entries[] = {
    { "models", 0, 0, G_OPTION_ARG_STRING, &o.models, "tiny,real (default both)", "LIST" },
    { "modes", 0, 0, G_OPTION_ARG_STRING, &o.modes, "whole,stream,stream-nocache,tiled,tiled-stream (default all but stream-nocache)", "LIST" },
    { "tiny-size", 0, 0, G_OPTION_ARG_STRING, &o.tiny_size, "output HxWxF for tiny (64x96x25)", "S" },
    { "real-size", 0, 0, G_OPTION_ARG_STRING, &o.real_size, "output HxWxF for real (256x256x33)", "S" },
    { "tile-px", 0, 0, G_OPTION_ARG_INT, &o.tile_px, "tiled modes: sample tile size", "N" },
    { "tile-frames", 0, 0, G_OPTION_ARG_INT, &o.tile_frames, "tiled modes: sample tile frames", "N" },
    { "chunk", 0, 0, G_OPTION_ARG_INT, &o.chunk, "exact stream: latent frames per chunk (1)", "N" },
    { "cache-mb", 0, 0, G_OPTION_ARG_INT, &o.cache_mb, "exact stream: checkpoint budget (1024)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &o.threads, "CPU threads (0 = all)", "N" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, "FIXTURES_DIR" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("FIXTURES_DIR — VAE decode benchmark");
  g_autoptr(GError) error = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || !rest || !rest[0]) {
    fprintf (stderr, "bench-vae: %s\n", error ? error->message : "give the fixtures folder");
    return 2;
  }
  o.fixtures = rest[0];
  if (!o.models)
    o.models = g_strdup ("tiny,real");
  if (!o.modes)
    o.modes = g_strdup ("whole,stream,tiled,tiled-stream");
  if (!o.tiny_size)
    o.tiny_size = g_strdup ("64x96x25");
  if (!o.real_size)
    o.real_size = g_strdup ("256x256x33");
  printf ("%-5s %-14s %-12s %9s %9s %9s %9s %9s  %s\n", "model", "mode", "HxWxF", "total_s", "first_s",
          "peak_MB", "loaded_MB", "act_MB", "tiles");
  fflush (stdout);
  g_auto(GStrv) models = g_strsplit (o.models, ",", -1);
  g_auto(GStrv) modes = g_strsplit (o.modes, ",", -1);
  int rc = 0;
  for (int i = 0; models[i]; i++)
    for (int j = 0; modes[j]; j++) {
      pid_t pid = fork ();
      if (pid == 0)
        _exit (run_one (&o, models[i], modes[j]));
      int st = 0;
      if (pid < 0 || waitpid (pid, &st, 0) < 0 || !WIFEXITED (st) || WEXITSTATUS (st) != 0)
        rc = 1;
    }
  g_free (o.models);
  g_free (o.modes);
  g_free (o.tiny_size);
  g_free (o.real_size);
  return rc;
}
