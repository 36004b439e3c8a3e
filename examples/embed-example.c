/* embed-example.c — hyvideosrc inside an application: build a pipeline, follow the element's
 * progress messages on the bus, stop at the end of the stream.
 *
 *   GST_PLUGIN_PATH=build/gst ./build/examples/embed-example ["a prompt"] [out.mp4]
 *
 * Without an output file the frames go to a fakesink. The built-in tiny model runs (random
 * weights, abstract texture); set the `model` property to a HunyuanVideo folder for real video.
 *
 * The element posts (all from its streaming thread, delivered here by the bus watch):
 *   hyvideo-seed      element message: the seed the generation uses (seed = -1 draws one)
 *   hyvideo-progress  element message per denoising step and per decoded frame: stage ("text",
 *                     "denoise", "decode", "done"), step, total, elapsed and eta in seconds
 *   GST_MESSAGE_PROGRESS  START .. COMPLETE around the work before the first frame */
#include <gst/gst.h>
#include <stdio.h>

typedef struct {
  GMainLoop *loop;
  int status;
  int frames;
} App;

static gboolean
on_message (GstBus *bus, GstMessage *msg, gpointer data)
{
  App *app = data;
  switch (GST_MESSAGE_TYPE (msg)) {
  case GST_MESSAGE_ELEMENT: {
    const GstStructure *s = gst_message_get_structure (msg);
    if (gst_structure_has_name (s, "hyvideo-progress")) {
      const char *stage = gst_structure_get_string (s, "stage");
      int step = 0, total = 0;
      double elapsed = 0, eta = -1;
      gst_structure_get (s, "step", G_TYPE_INT, &step, "total", G_TYPE_INT, &total,
                         "elapsed", G_TYPE_DOUBLE, &elapsed, "eta", G_TYPE_DOUBLE, &eta, NULL);
      printf ("progress: %-7s %3d/%-3d  %6.2f s  eta %6.2f s\n", stage, step, total, elapsed, eta);
      if (g_strcmp0 (stage, "decode") == 0 && step > 0)
        app->frames = step;
    } else if (gst_structure_has_name (s, "hyvideo-seed")) {
      gint64 seed = -1;
      gst_structure_get_int64 (s, "seed", &seed);
      printf ("seed: %" G_GINT64_FORMAT "\n", seed);
    }
    break;
  }
  case GST_MESSAGE_PROGRESS: {
    GstProgressType type;
    g_autofree char *code = NULL, *text = NULL;
    gst_message_parse_progress (msg, &type, &code, &text);
    static const char *const names[] = { "start", "continue", "complete", "canceled", "error" };
    printf ("GstProgress %s: %s\n", (guint) type < G_N_ELEMENTS (names) ? names[type] : "?", text);
    break;
  }
  case GST_MESSAGE_ERROR: {
    g_autoptr(GError) err = NULL;
    g_autofree char *dbg = NULL;
    gst_message_parse_error (msg, &err, &dbg);
    fprintf (stderr, "error from %s: %s\n", GST_OBJECT_NAME (msg->src), err->message);
    app->status = 1;
    g_main_loop_quit (app->loop);
    break;
  }
  case GST_MESSAGE_EOS:
    printf ("end of stream after %d frames\n", app->frames);
    app->status = 0;
    g_main_loop_quit (app->loop);
    break;
  default:
    break;
  }
  return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  const char *prompt = argc > 1 ? argv[1] : "A cat walks on the grass, realistic style.";
  const char *out = argc > 2 ? argv[2] : NULL;

  GstElement *src = gst_element_factory_make ("hyvideosrc", "src");
  if (!src) {
    fprintf (stderr, "hyvideosrc not found: install the plugin or set GST_PLUGIN_PATH to the build's gst/ folder\n");
    return 1;
  }
  g_object_set (src, "prompt", prompt, "seed", (gint64) 42, NULL);   /* model=tiny is the default */

  g_autofree char *desc = out ? g_strdup_printf ("videoconvert ! x264enc ! mp4mux ! filesink location=\"%s\"", out)
                              : g_strdup ("fakesink");
  g_autoptr(GError) err = NULL;
  GstElement *tail = gst_parse_bin_from_description (desc, TRUE, &err);
  if (!tail) {
    fprintf (stderr, "cannot build '%s': %s\n", desc, err->message);
    gst_object_unref (gst_object_ref_sink (src));
    return 1;
  }
  GstElement *pipeline = gst_pipeline_new ("embed");
  gst_bin_add_many (GST_BIN (pipeline), src, tail, NULL);
  gst_element_link (src, tail);

  App app = { .loop = g_main_loop_new (NULL, FALSE), .status = 1 };
  GstBus *bus = gst_element_get_bus (pipeline);
  guint watch = gst_bus_add_watch (bus, on_message, &app);
  if (gst_element_set_state (pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (m) {
      on_message (bus, m, &app);
      gst_message_unref (m);
    }
  } else {
    g_main_loop_run (app.loop);
  }
  gst_element_set_state (pipeline, GST_STATE_NULL);
  g_source_remove (watch);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_main_loop_unref (app.loop);
  return app.status;
}
