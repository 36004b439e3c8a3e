/* hyvideo-generate.c — `hyvideo generate`: text to an MP4 file, with the flags of the official
 * sample_video.py.
 *
 *   hyvideo generate --prompt "A cat walks on the grass, realistic style." \
 *       [--model-base ckpts] [--video-size 720 1280] [--video-length 129] [--infer-steps 50] \
 *       [--seed 42] [--flow-reverse] [--save-path ./results] ...
 *
 * It runs the GStreamer pipeline  hyvideosrc ! videoconvert ! video/x-raw,format=I420 !
 * x264enc ! mp4mux ! filesink  and writes the MP4 as sample_video.py names it:
 * SAVE_PATH/<%Y-%m-%d-%H%M%S>_seed<SEED>_<first 100 characters of the prompt>.mp4 (with '/'
 * and '\' removed from the prompt part, so a prompt cannot name a path outside SAVE_PATH). The
 * file is written as a hidden .part file and renamed when the video is complete, so an
 * interrupted run never leaves a truncated MP4 behind.
 *
 * Without --model-base the built-in tiny model runs (random weights: abstract texture, seconds
 * on a laptop). On a terminal a progress bar is drawn on stderr; otherwise only the path of the
 * saved file is printed (stdout). Exit status: 0 saved, 1 failed (the message says why),
 * 2 bad command line, 130 interrupted. */
#include "hyvideo.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if HV_HAVE_GST
#include <gst/gst.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <unistd.h>

/* the element (gst/gsthyvideosrc.c, linked in) */
GType gst_hyvideo_src_get_type (void);

typedef struct {
  /* flags */
  char *prompt, *neg_prompt, *model, *model_base, *dit_weight, *save_path, *device;
  int height, width, video_length, infer_steps, fps, threads;
  gint64 seed;
  double embedded_cfg_scale, cfg_scale, flow_shift;
  gboolean flow_reverse, no_flow_reverse, cpu_offload, fp8, vae_tiling, no_vae_tiling;
  gboolean video_size_doc;   /* --video-size is rewritten before parsing; this only documents it */
  /* run */
  GMainLoop *loop;
  GstElement *pipeline;
  gboolean tty;
  int status;
  gint64 seed_used;
  gboolean bar_drawn;
} Gen;

/* --video-size takes one or two numbers (height width, as upstream's nargs="+"), which GOption
 * cannot express: they are rewritten to --height/--width first. */
static gboolean
rewrite_video_size (int *argc, char ***argv, GError **error)
{
  GPtrArray *out = g_ptr_array_new ();
  for (int i = 0; i < *argc; i++) {
    const char *a = (*argv)[i];
    if (strcmp (a, "--video-size") != 0) {
      g_ptr_array_add (out, (*argv)[i]);
      continue;
    }
    int n = 0;
    gint64 v[2] = { 0, 0 };
    while (n < 2 && i + 1 < *argc && g_ascii_string_to_signed ((*argv)[i + 1], 10, 1, 65536, &v[n], NULL)) {
      n++;
      i++;
    }
    if (n == 0) {
      g_ptr_array_free (out, TRUE);
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                   "--video-size needs HEIGHT [WIDTH] (positive integers)");
      return FALSE;
    }
    g_ptr_array_add (out, g_strdup_printf ("--height=%" G_GINT64_FORMAT, v[0]));
    g_ptr_array_add (out, g_strdup_printf ("--width=%" G_GINT64_FORMAT, n == 2 ? v[1] : v[0]));
  }
  /* the strings added here live as long as the process: this runs once */
  *argc = (int) out->len;
  g_ptr_array_add (out, NULL);
  *argv = (char **) g_ptr_array_free (out, FALSE);
  return TRUE;
}

/* sample_video.py: f"{time_flag}_seed{seed}_{prompt[:100]}.mp4", prompt stripped; path
 * separators dropped (the first release removed '/', the current one keeps only the last path
 * component; both keep the file inside save_path). */
static char *
output_name (const char *prompt, gint64 seed)
{
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *flag = g_date_time_format (now, "%Y-%m-%d-%H%M%S");
  g_autofree char *stripped = g_strstrip (g_strdup (prompt));
  g_autofree char *head = g_utf8_substring (stripped, 0, MIN (100, g_utf8_strlen (stripped, -1)));
  GString *p = g_string_new (NULL);
  for (const char *c = head; *c; c++)
    if (*c != '/' && *c != '\\')
      g_string_append_c (p, *c);
  g_autofree char *part = g_string_free (p, FALSE);
  return g_strdup_printf ("%s_seed%" G_GINT64_FORMAT "_%s.mp4", flag, seed, part);
}

static void
clear_bar (Gen *g)
{
  if (g->bar_drawn) {
    fprintf (stderr, "\r\033[K");
    fflush (stderr);
    g->bar_drawn = FALSE;
  }
}

static void
draw_bar (Gen *g, const GstStructure *s)
{
  const char *stage = gst_structure_get_string (s, "stage");
  int step = 0, total = 0;
  double elapsed = 0, eta = -1;
  gst_structure_get_int (s, "step", &step);
  gst_structure_get_int (s, "total", &total);
  gst_structure_get_double (s, "elapsed", &elapsed);
  gst_structure_get_double (s, "eta", &eta);
  const int width = 30;
  int fill = total > 0 ? (int) ((gint64) width * step / total) : 0;
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[width] = '\0';
  g_autofree char *eta_s = eta >= 0 ? g_strdup_printf (", %.0f s left", eta) : g_strdup ("");
  fprintf (stderr, "\r\033[K%-7s [%s] %d/%d  %.1f s%s", stage ? stage : "?", bar, step, total, elapsed, eta_s);
  fflush (stderr);
  g->bar_drawn = TRUE;
}

static gboolean
on_bus (GstBus *bus, GstMessage *m, gpointer data)
{
  Gen *g = data;
  switch (GST_MESSAGE_TYPE (m)) {
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure (m);
    if (gst_structure_has_name (s, "hyvideo-seed"))
      gst_structure_get_int64 (s, "seed", &g->seed_used);
    else if (gst_structure_has_name (s, "hyvideo-progress") && g->tty)
      draw_bar (g, s);
    break;
  }
  case GST_MESSAGE_ERROR: {
    g_autoptr(GError) err = NULL;
    g_autofree char *dbg = NULL;
    gst_message_parse_error (m, &err, &dbg);
    clear_bar (g);
    fprintf (stderr, "hyvideo generate: %s\n", err->message);
    if (dbg && g_getenv ("HV_DEBUG"))
      fprintf (stderr, "  (%s)\n", dbg);
    g->status = 1;
    g_main_loop_quit (g->loop);
    break;
  }
  case GST_MESSAGE_EOS:
    clear_bar (g);
    g->status = 0;
    g_main_loop_quit (g->loop);
    break;
  default:
    break;
  }
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigint (gpointer data)
{
  Gen *g = data;
  clear_bar (g);
  fprintf (stderr, "hyvideo generate: interrupted\n");
  g->status = 130;
  g_main_loop_quit (g->loop);
  return G_SOURCE_REMOVE;
}

static GstElement *
make (const char *factory, GError **error)
{
  GstElement *e = gst_element_factory_make (factory, NULL);
  if (!e)
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
                 "the GStreamer element '%s' is missing (%s)", factory,
                 strcmp (factory, "x264enc") == 0 ? "install gstreamer1.0-plugins-ugly" :
                 strcmp (factory, "mp4mux") == 0 ? "install gstreamer1.0-plugins-good" :
                 "install gstreamer1.0-plugins-base");
  return e;
}

static GstElement *
build_pipeline (Gen *g, const char *location, GError **error)
{
  GstElement *src = gst_element_factory_make ("hyvideosrc", NULL);
  g_autoptr(GstElement) pipeline = gst_pipeline_new ("hyvideo-generate");
  GstElement *conv = make ("videoconvert", error), *filter = conv ? make ("capsfilter", error) : NULL;
  GstElement *enc = filter ? make ("x264enc", error) : NULL, *mux = enc ? make ("mp4mux", error) : NULL;
  GstElement *sink = mux ? make ("filesink", error) : NULL;
  GstElement *all[] = { src, conv, filter, enc, mux, sink };
  if (!src || !sink) {
    for (guint i = 0; i < G_N_ELEMENTS (all); i++)
      if (all[i])
        gst_object_unref (gst_object_ref_sink (all[i]));
    if (!src && error && !*error)
      g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN, "hyvideosrc is not available");
    return NULL;
  }
  g_object_set (src, "prompt", g->prompt, "model", g->model_base ? g->model_base : g->model,
                "width", g->width, "height", g->height, "num-frames", g->video_length,
                "infer-steps", g->infer_steps, "seed", g->seed, "embedded-cfg-scale", g->embedded_cfg_scale,
                "cfg-scale", g->cfg_scale, "flow-shift", g->flow_shift, "flow-reverse", g->flow_reverse,
                "vae-tiling", g->vae_tiling, "device", g->device, "cpu-offload", g->cpu_offload,
                "fp8", g->fp8, "framerate", g->fps, 1, "threads", g->threads, NULL);
  if (g->neg_prompt)
    g_object_set (src, "negative-prompt", g->neg_prompt, NULL);
  if (g->dit_weight)
    g_object_set (src, "dit-weight", g->dit_weight, NULL);
  g_autoptr(GstCaps) caps = gst_caps_from_string ("video/x-raw,format=I420");
  g_object_set (filter, "caps", caps, NULL);
  g_object_set (sink, "location", location, NULL);
  gst_bin_add_many (GST_BIN (pipeline), src, conv, filter, enc, mux, sink, NULL);
  if (!gst_element_link_many (src, conv, filter, enc, mux, sink, NULL)) {
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION, "could not link the pipeline");
    return NULL;
  }
  return g_steal_pointer (&pipeline);
}

/* The element, from the plugin when GStreamer finds it, else the copy built into this program
 * (so the command works from the build tree without GST_PLUGIN_PATH). */
static void
ensure_element (void)
{
  g_autoptr(GstElementFactory) f = gst_element_factory_find ("hyvideosrc");
  if (!f)
    gst_element_register (NULL, "hyvideosrc", GST_RANK_NONE, gst_hyvideo_src_get_type ());
}

static int
run (Gen *g)
{
  g_autoptr(GError) error = NULL;
  ensure_element ();
  if (g_mkdir_with_parents (g->save_path, 0755) != 0) {
    fprintf (stderr, "hyvideo generate: cannot create %s: %s\n", g->save_path, g_strerror (errno));
    return 1;
  }
  g_autofree char *tmp_name = g_strdup_printf (".hyvideo-%d.mp4.part", (int) getpid ());
  g_autofree char *tmp = g_build_filename (g->save_path, tmp_name, NULL);
  g->pipeline = build_pipeline (g, tmp, &error);
  if (!g->pipeline) {
    fprintf (stderr, "hyvideo generate: %s\n", error->message);
    return 1;
  }
  g->loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GstBus) bus = gst_element_get_bus (g->pipeline);
  guint watch = gst_bus_add_watch (bus, on_bus, g);
  guint sig = g_unix_signal_add (SIGINT, on_sigint, g);
  g->status = 1;
  if (gst_element_set_state (g->pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE) {
    g_main_loop_run (g->loop);
  } else {
    /* start() failed: the reason is an ERROR message on the bus */
    g_autoptr(GstMessage) m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (m)
      on_bus (bus, m, g);
    else
      fprintf (stderr, "hyvideo generate: the pipeline did not start\n");
  }
  if (g->status != 130)
    g_source_remove (sig);
  g_source_remove (watch);
  gst_element_set_state (g->pipeline, GST_STATE_NULL);
  g_clear_pointer (&g->pipeline, gst_object_unref);
  g_clear_pointer (&g->loop, g_main_loop_unref);
  if (g->status != 0) {
    g_unlink (tmp);
    return g->status;
  }
  g_autofree char *name = output_name (g->prompt, g->seed_used);
  g_autofree char *path = g_build_filename (g->save_path, name, NULL);
  if (g_rename (tmp, path) != 0) {
    fprintf (stderr, "hyvideo generate: cannot rename %s to %s: %s\n", tmp, path, g_strerror (errno));
    return 1;
  }
  if (g->tty)
    fprintf (stderr, "Sample saved to: ");
  printf ("%s\n", path);
  return 0;
}

int
hv_cmd_generate (int argc, char **argv)
{
  Gen g = {
    .model = g_strdup ("tiny"), .save_path = g_strdup ("./results"), .device = g_strdup ("cpu"),
    .seed = -1, .embedded_cfg_scale = 6.0, .cfg_scale = 1.0, .flow_shift = 7.0, .fps = 24,
    .seed_used = -1,
  };
  const GOptionEntry entries[] = {
    { "prompt", 0, 0, G_OPTION_ARG_STRING, &g.prompt, "Text describing the video (required)", "TEXT" },
    { "neg-prompt", 0, 0, G_OPTION_ARG_STRING, &g.neg_prompt,
      "Negative prompt, used with --cfg-scale > 1 (default: upstream's)", "TEXT" },
    { "model-base", 0, 0, G_OPTION_ARG_FILENAME, &g.model_base,
      "HunyuanVideo weights: official ckpts/ folder or a diffusers folder (default: the built-in tiny model)", "DIR" },
    { "model", 0, 0, G_OPTION_ARG_STRING, &g.model,
      "tiny (default without --model-base); upstream's architecture names are accepted and ignored", "NAME" },
    { "dit-weight", 0, 0, G_OPTION_ARG_FILENAME, &g.dit_weight, "Transformer weights file overriding the one in --model-base", "FILE" },
    { "height", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &g.height, NULL, NULL },
    { "width", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &g.width, NULL, NULL },
    { "video-size", 0, 0, G_OPTION_ARG_NONE, &g.video_size_doc,
      "HEIGHT [WIDTH]: frame size, multiples of 16 (default 720 1280; tiny: 96 128)", "H W" },
    { "video-length", 0, 0, G_OPTION_ARG_INT, &g.video_length, "Frames, 4k+1 (default 129; tiny: 17)", "N" },
    { "infer-steps", 0, 0, G_OPTION_ARG_INT, &g.infer_steps, "Denoising steps (default 50; tiny: 4)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &g.seed, "Random seed (default: random)", "N" },
    { "embedded-cfg-scale", 0, 0, G_OPTION_ARG_DOUBLE, &g.embedded_cfg_scale, "Embedded guidance (default 6.0)", "F" },
    { "cfg-scale", 0, 0, G_OPTION_ARG_DOUBLE, &g.cfg_scale, "Classifier-free guidance; 1 = off (default 1.0)", "F" },
    { "flow-shift", 0, 0, G_OPTION_ARG_DOUBLE, &g.flow_shift, "Flow-matching time shift (default 7.0)", "F" },
    { "flow-reverse", 0, 0, G_OPTION_ARG_NONE, &g.flow_reverse,
      "Sample from t=1 to 0 (the default here, as every released command line passes it)", NULL },
    { "no-flow-reverse", 0, 0, G_OPTION_ARG_NONE, &g.no_flow_reverse, "Sample from t=0 to 1", NULL },
    { "use-cpu-offload", 0, 0, G_OPTION_ARG_NONE, &g.cpu_offload, "Free the text encoders before the transformer runs", NULL },
    { "use-fp8", 0, 0, G_OPTION_ARG_NONE, &g.fp8, "Use the fp8 transformer checkpoint when the folder has one", NULL },
    { "vae-tiling", 0, 0, G_OPTION_ARG_NONE, &g.vae_tiling, "Tiled VAE decode (the default, as upstream)", NULL },
    { "no-vae-tiling", 0, 0, G_OPTION_ARG_NONE, &g.no_vae_tiling, "Exact untiled VAE decode, streamed in chunks", NULL },
    { "save-path", 0, 0, G_OPTION_ARG_FILENAME, &g.save_path, "Folder for the MP4 (default ./results)", "DIR" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &g.device, "cpu (default), cuda or cuda:N", "DEV" },
    { "fps", 0, 0, G_OPTION_ARG_INT, &g.fps, "Frame rate of the MP4 (default 24, as upstream saves)", "N" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &g.threads, "CPU threads (default: all cores)", "N" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("- generate a video from text into an MP4 file");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx,
      "Without --model-base the built-in tiny model runs: random weights, abstract moving texture,\n"
      "a few seconds on a laptop. The MP4 is named as sample_video.py names it:\n"
      "SAVE_PATH/<date-time>_seed<SEED>_<prompt>.mp4. Exit status: 0 saved, 1 failed, 2 bad usage.\n");
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  g_autoptr(GError) error = NULL;
  int status = 2;
  if (!rewrite_video_size (&argc, &argv, &error) || !g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "hyvideo generate: %s (see --help)\n", error->message);
    goto out;
  }
  if (argc > 1) {
    fprintf (stderr, "hyvideo generate: unexpected argument '%s' (see --help)\n", argv[1]);
    goto out;
  }
  if (!g.prompt || !*g.prompt) {
    fprintf (stderr, "hyvideo generate: --prompt is required\n");
    goto out;
  }
  if (g.flow_reverse && g.no_flow_reverse) {
    fprintf (stderr, "hyvideo generate: --flow-reverse and --no-flow-reverse contradict each other\n");
    goto out;
  }
  if (g.vae_tiling && g.no_vae_tiling) {
    fprintf (stderr, "hyvideo generate: --vae-tiling and --no-vae-tiling contradict each other\n");
    goto out;
  }
  if (g.height < 0 || g.width < 0 || g.video_length < 0 || g.infer_steps < 0 || g.fps <= 0 || g.threads < 0 ||
      g.seed < -1) {
    fprintf (stderr, "hyvideo generate: sizes, lengths, steps, fps and threads must be positive, seed >= 0\n");
    goto out;
  }
  if (!g.model_base && strcmp (g.model, "tiny") != 0) {
    fprintf (stderr, "hyvideo generate: --model %s needs --model-base (the folder with its weights)\n", g.model);
    goto out;
  }
  g.flow_reverse = !g.no_flow_reverse;
  g.vae_tiling = !g.no_vae_tiling;
  g.tty = isatty (STDERR_FILENO);
  gst_init (NULL, NULL);
  status = run (&g);
out:
  g_free (g.prompt);
  g_free (g.neg_prompt);
  g_free (g.model);
  g_free (g.model_base);
  g_free (g.dit_weight);
  g_free (g.save_path);
  g_free (g.device);
  return status;
}

#else /* !HV_HAVE_GST */

int
hv_cmd_generate (int argc, char **argv)
{
  fprintf (stderr, "hyvideo generate: this build has no GStreamer support; install the GStreamer "
                   "development files (libgstreamer1.0-dev, libgstreamer-plugins-base1.0-dev) and "
                   "rebuild\n");
  return 1;
}

#endif
