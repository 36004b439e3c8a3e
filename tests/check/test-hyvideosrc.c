/* test-hyvideosrc.c — the hyvideosrc element through GstHarness, with the built-in tiny model.
 *
 * Runs with GST_PLUGIN_PATH = the build's gst/ folder (see tests/meson.build). Most cases use
 * a very small generation (32x32, 5 frames, 1 step: a fraction of a second) so that the whole
 * file also runs under valgrind. */
#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <string.h>

#define SMALL "width", 32, "height", 32, "num-frames", 5, "infer-steps", 1, "threads", 2

/* A harness around a new hyvideosrc with its own bus; `caps` restricts the format. */
static GstHarness *
harness_new (const char *caps, GstBus **bus)
{
  GstHarness *h = gst_harness_new ("hyvideosrc");
  g_assert_nonnull (h);
  if (caps)
    gst_harness_set_sink_caps_str (h, caps);
  if (bus) {
    *bus = gst_bus_new ();
    gst_element_set_bus (h->element, *bus);
  }
  return h;
}

/* Tears down a harness made with a bus: the queued messages hold references to the element and
 * the element to the bus, so the bus is flushed first. */
static void
harness_free (GstHarness *h, GstBus *bus)
{
  gst_bus_set_flushing (bus, TRUE);
  gst_harness_teardown (h);
  gst_object_unref (bus);
}

/* Plays until EOS; returns every buffer, in order. */
static GPtrArray *
run_to_eos (GstHarness *h)
{
  gst_harness_play (h);
  for (;;) {
    GstEvent *ev = gst_harness_pull_event (h);   /* waits up to 60 s */
    g_assert_nonnull (ev);
    gboolean eos = GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
    gst_event_unref (ev);
    if (eos)
      break;
  }
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify) gst_buffer_unref);
  guint n = gst_harness_buffers_in_queue (h);
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (bufs, gst_harness_pull (h));
  return bufs;
}

static gboolean
same_bytes (GstBuffer *a, GstBuffer *b)
{
  GstMapInfo ma, mb;
  g_assert_true (gst_buffer_map (a, &ma, GST_MAP_READ));
  g_assert_true (gst_buffer_map (b, &mb, GST_MAP_READ));
  gboolean same = ma.size == mb.size && memcmp (ma.data, mb.data, ma.size) == 0;
  gst_buffer_unmap (a, &ma);
  gst_buffer_unmap (b, &mb);
  return same;
}

static GPtrArray *
generate (const char *caps, gint64 seed)
{
  GstHarness *h = harness_new (caps, NULL);
  g_object_set (h->element, SMALL, "seed", seed, NULL);
  GPtrArray *bufs = run_to_eos (h);
  gst_harness_teardown (h);
  return bufs;
}

/* ---- caps, counts, timestamps -------------------------------------------------------------- */

static void
test_caps (void)
{
  GstHarness *h = harness_new ("video/x-raw,format=RGB", NULL);
  g_object_set (h->element, SMALL, "width", 64, "height", 48, "framerate", 12, 1, "seed", (gint64) 1, NULL);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);
  g_autoptr(GstCaps) caps = gst_pad_get_current_caps (h->sinkpad);
  g_assert_nonnull (caps);
  GstVideoInfo info;
  g_assert_true (gst_video_info_from_caps (&info, caps));
  g_assert_cmpint (GST_VIDEO_INFO_FORMAT (&info), ==, GST_VIDEO_FORMAT_RGB);
  g_assert_cmpint (info.width, ==, 64);
  g_assert_cmpint (info.height, ==, 48);
  g_assert_cmpint (info.fps_n, ==, 12);
  g_assert_cmpint (info.fps_d, ==, 1);
  g_assert_cmpint (info.par_n, ==, 1);
  g_assert_cmpint (info.par_d, ==, 1);
  g_assert_cmpuint (bufs->len, ==, 5);
  g_assert_cmpuint (gst_buffer_get_size (bufs->pdata[0]), ==, 64 * 48 * 3);
  /* the template offers RGB, RGBA and I420 at least */
  GstPad *src = gst_element_get_static_pad (h->element, "src");
  g_autoptr(GstCaps) tmpl = gst_pad_get_pad_template_caps (src);
  gst_object_unref (src);
  g_assert_nonnull (tmpl);
  for (guint i = 0; i < 3; i++) {
    static const char *const f[] = { "RGB", "RGBA", "I420" };
    g_autofree char *s = g_strdup_printf ("video/x-raw,format=%s", f[i]);
    g_autoptr(GstCaps) want = gst_caps_from_string (s);
    g_assert_true (gst_caps_can_intersect (tmpl, want));
  }
  gst_harness_teardown (h);
}

static void
check_count (int frames)
{
  GstHarness *h = harness_new (NULL, NULL);
  g_object_set (h->element, SMALL, "num-frames", frames, "seed", (gint64) 3, NULL);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);
  g_assert_cmpuint (bufs->len, ==, (guint) frames);
  gst_harness_teardown (h);
}

static void
test_frame_count (void)
{
  check_count (5);
  check_count (9);
  check_count (1);
}

static void
test_timestamps (void)
{
  GstHarness *h = harness_new (NULL, NULL);
  g_object_set (h->element, SMALL, "num-frames", 9, "framerate", 30000, 1001, "seed", (gint64) 5, NULL);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);
  g_assert_cmpuint (bufs->len, ==, 9);
  GstClockTime sum = 0;
  for (guint n = 0; n < bufs->len; n++) {
    GstBuffer *b = bufs->pdata[n];
    /* videotestsrc: from the frame number, no accumulated rounding */
    const GstClockTime pts = gst_util_uint64_scale (n, 1001 * GST_SECOND, 30000);
    const GstClockTime next = gst_util_uint64_scale (n + 1, 1001 * GST_SECOND, 30000);
    g_assert_cmpuint (GST_BUFFER_PTS (b), ==, pts);
    g_assert_cmpuint (GST_BUFFER_DURATION (b), ==, next - pts);
    g_assert_cmpuint (GST_BUFFER_OFFSET (b), ==, n);
    g_assert_cmpuint (GST_BUFFER_OFFSET_END (b), ==, n + 1);
    sum += GST_BUFFER_DURATION (b);
  }
  /* the durations add up to the end time exactly */
  g_assert_cmpuint (sum, ==, gst_util_uint64_scale (9, 1001 * GST_SECOND, 30000));
  gint64 dur = -1;
  g_assert_true (gst_element_query_duration (h->element, GST_FORMAT_TIME, &dur));
  g_assert_cmpint (dur, ==, (gint64) sum);
  gst_harness_teardown (h);
}

static void
test_num_buffers (void)
{
  GstHarness *h = harness_new (NULL, NULL);
  g_object_set (h->element, SMALL, "num-frames", 9, "num-buffers", 3, "seed", (gint64) 3, NULL);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);
  g_assert_cmpuint (bufs->len, ==, 3);
  g_assert_cmpuint (GST_BUFFER_PTS (bufs->pdata[2]), ==, gst_util_uint64_scale (2, GST_SECOND, 24));
  gst_harness_teardown (h);
}

/* ---- content --------------------------------------------------------------------------------- */

static void
test_determinism (void)
{
  g_autoptr(GPtrArray) a = generate ("video/x-raw,format=RGB", 7);
  g_autoptr(GPtrArray) b = generate ("video/x-raw,format=RGB", 7);
  g_autoptr(GPtrArray) c = generate ("video/x-raw,format=RGB", 8);
  g_assert_cmpuint (a->len, ==, 5);
  g_assert_cmpuint (b->len, ==, 5);
  g_assert_cmpuint (c->len, ==, 5);
  guint differ = 0;
  for (guint i = 0; i < 5; i++) {
    g_assert_true (same_bytes (a->pdata[i], b->pdata[i]));
    differ += !same_bytes (a->pdata[i], c->pdata[i]);
  }
  g_assert_cmpuint (differ, ==, 5);   /* another seed: other noise, every frame differs */
  /* moving texture: frames differ in time and are not flat */
  g_assert_false (same_bytes (a->pdata[0], a->pdata[4]));
  GstMapInfo m;
  gst_buffer_map (a->pdata[0], &m, GST_MAP_READ);
  guint8 lo = 255, hi = 0;
  for (gsize i = 0; i < m.size; i++) {
    lo = MIN (lo, m.data[i]);
    hi = MAX (hi, m.data[i]);
  }
  gst_buffer_unmap (a->pdata[0], &m);
  g_assert_cmpint (hi - lo, >, 64);
}

/* RGBA and I420 carry the same picture as RGB. */
static void
test_formats (void)
{
  g_autoptr(GPtrArray) rgb = generate ("video/x-raw,format=RGB", 11);
  g_autoptr(GPtrArray) rgba = generate ("video/x-raw,format=RGBA", 11);
  g_autoptr(GPtrArray) i420 = generate ("video/x-raw,format=I420", 11);
  g_assert_cmpuint (rgba->len, ==, 5);
  g_assert_cmpuint (i420->len, ==, 5);
  for (guint f = 0; f < 5; f++) {
    GstMapInfo a, b, c;
    gst_buffer_map (rgb->pdata[f], &a, GST_MAP_READ);
    gst_buffer_map (rgba->pdata[f], &b, GST_MAP_READ);
    gst_buffer_map (i420->pdata[f], &c, GST_MAP_READ);
    g_assert_cmpuint (b.size, ==, 32 * 32 * 4);
    g_assert_cmpuint (c.size, ==, 32 * 32 * 3 / 2);
    int worst_y = 0;
    for (int p = 0; p < 32 * 32; p++) {
      g_assert_cmpint (b.data[4 * p + 0], ==, a.data[3 * p + 0]);
      g_assert_cmpint (b.data[4 * p + 1], ==, a.data[3 * p + 1]);
      g_assert_cmpint (b.data[4 * p + 2], ==, a.data[3 * p + 2]);
      g_assert_cmpint (b.data[4 * p + 3], ==, 255);
      /* BT.601 limited-range luma of the RGB pixel */
      const double y = 16.0 + (65.481 * a.data[3 * p] + 128.553 * a.data[3 * p + 1] + 24.966 * a.data[3 * p + 2]) / 255.0;
      worst_y = MAX (worst_y, (int) (ABS (y - c.data[p]) + 0.5));
    }
    g_assert_cmpint (worst_y, <=, 3);
    gst_buffer_unmap (rgb->pdata[f], &a);
    gst_buffer_unmap (rgba->pdata[f], &b);
    gst_buffer_unmap (i420->pdata[f], &c);
  }
}

/* ---- messages and properties ----------------------------------------------------------------- */

static void
test_progress_messages (void)
{
  GstBus *bus;
  GstHarness *h = harness_new (NULL, &bus);
  g_object_set (h->element, SMALL, "infer-steps", 3, "seed", (gint64) -1, NULL);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);
  g_assert_cmpuint (bufs->len, ==, 5);
  gint64 seed_used = -2, posted = -3;
  g_object_get (h->element, "seed-used", &seed_used, NULL);
  g_assert_cmpint (seed_used, >=, 0);
  g_assert_cmpint (seed_used, <=, 1000000);   /* upstream: random.randint(0, 1_000_000) */

  int denoise_next = 0, decode_next = 0, done = 0, starts = 0, completes = 0, continues = 0;
  double last_elapsed = 0;
  GstMessage *m;
  while ((m = gst_bus_pop (bus))) {
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_PROGRESS) {
      GstProgressType type;
      gst_message_parse_progress (m, &type, NULL, NULL);
      /* START first, then CONTINUEs, one COMPLETE */
      g_assert_cmpint (completes, ==, 0);
      g_assert_cmpint (starts, ==, type == GST_PROGRESS_TYPE_START ? 0 : 1);
      g_assert_true (type == GST_PROGRESS_TYPE_START || type == GST_PROGRESS_TYPE_CONTINUE ||
                     type == GST_PROGRESS_TYPE_COMPLETE);
      starts += type == GST_PROGRESS_TYPE_START;
      continues += type == GST_PROGRESS_TYPE_CONTINUE;
      completes += type == GST_PROGRESS_TYPE_COMPLETE;
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT) {
      const GstStructure *s = gst_message_get_structure (m);
      if (gst_structure_has_name (s, "hyvideo-seed")) {
        g_assert_true (gst_structure_get_int64 (s, "seed", &posted));
      } else if (gst_structure_has_name (s, "hyvideo-progress")) {
        const char *stage = gst_structure_get_string (s, "stage");
        int step, total;
        double elapsed, eta;
        g_assert_true (gst_structure_get (s, "step", G_TYPE_INT, &step, "total", G_TYPE_INT, &total,
                                          "elapsed", G_TYPE_DOUBLE, &elapsed, "eta", G_TYPE_DOUBLE, &eta, NULL));
        g_assert_cmpfloat (elapsed, >=, last_elapsed);
        last_elapsed = elapsed;
        if (g_str_equal (stage, "denoise")) {
          g_assert_cmpint (total, ==, 3);
          g_assert_cmpint (step, ==, denoise_next++);
          if (step > 0)
            g_assert_cmpfloat (eta, >=, 0);
        } else if (g_str_equal (stage, "decode")) {
          g_assert_cmpint (denoise_next, ==, 4);     /* denoising done first */
          g_assert_cmpint (total, ==, 5);
          g_assert_cmpint (step, ==, decode_next++);
          g_assert_cmpint (completes, ==, 1);        /* GstProgress completed when decoding began */
        } else if (g_str_equal (stage, "done")) {
          g_assert_cmpint (step, ==, 5);
          done++;
        } else {
          g_assert_cmpstr (stage, ==, "text");
          g_assert_cmpint (denoise_next, ==, 0);
        }
      }
    }
    gst_message_unref (m);
  }
  g_assert_cmpint (posted, ==, seed_used);
  g_assert_cmpint (denoise_next, ==, 4);   /* 0 (start) .. 3 */
  g_assert_cmpint (decode_next, ==, 6);    /* 0 (start) .. 5 */
  g_assert_cmpint (done, ==, 1);
  g_assert_cmpint (starts, ==, 1);
  g_assert_cmpint (completes, ==, 1);
  g_assert_cmpint (continues, >=, 4);      /* text done + the denoising steps */
  harness_free (h, bus);
}

static void
test_seed_property (void)
{
  GstHarness *h = harness_new (NULL, NULL);
  gint64 used = 0;
  g_object_get (h->element, "seed-used", &used, NULL);
  g_assert_cmpint (used, ==, -1);   /* before any generation */
  g_object_set (h->element, SMALL, "seed", (gint64) 123456789012, NULL);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);
  g_object_get (h->element, "seed-used", &used, NULL);
  g_assert_cmpint (used, ==, 123456789012);
  gst_harness_teardown (h);
}

/* Setting the state fails and the bus holds an error of `domain`/`code` whose text has `rule`. */
static void
expect_start_error (const char *prop, const GValue *value, GQuark domain, gint code, const char *rule)
{
  GstBus *bus;
  GstHarness *h = harness_new (NULL, &bus);
  g_object_set (h->element, SMALL, NULL);
  g_object_set_property (G_OBJECT (h->element), prop, value);
  g_assert_cmpint (gst_element_set_state (h->element, GST_STATE_PLAYING), ==, GST_STATE_CHANGE_FAILURE);
  g_autoptr(GstMessage) m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  g_assert_nonnull (m);
  g_autoptr(GError) err = NULL;
  gst_message_parse_error (m, &err, NULL);
  g_assert_error (err, domain, code);
  g_assert_nonnull (strstr (err->message, rule));
  gst_element_set_state (h->element, GST_STATE_NULL);
  harness_free (h, bus);
}

static void
test_validation (void)
{
  GValue v = G_VALUE_INIT;
  g_value_init (&v, G_TYPE_INT);
  g_value_set_int (&v, 100);
  expect_start_error ("width", &v, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS, "multiples of 16");
  g_value_set_int (&v, 40);
  expect_start_error ("height", &v, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS, "multiples of 16");
  g_value_set_int (&v, 10);
  expect_start_error ("num-frames", &v, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS, "4k+1");
  g_value_unset (&v);
  g_value_init (&v, G_TYPE_STRING);
  g_value_set_string (&v, "/nonexistent/HunyuanVideo");
  expect_start_error ("model", &v, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND, "/nonexistent/HunyuanVideo");
  g_value_set_string (&v, "tpu:0");
  expect_start_error ("device", &v, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS, "cuda:N");
  g_value_unset (&v);
}

/* Properties are refused (with a warning) while the element runs. */
static void
test_property_mutability (void)
{
  GstHarness *h = harness_new (NULL, NULL);
  g_object_set (h->element, SMALL, "seed", (gint64) 1, NULL);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);   /* PLAYING now */
  g_test_expect_message (NULL, G_LOG_LEVEL_WARNING, "*only be changed in the READY or NULL state*");
  g_object_set (h->element, "width", 64, NULL);
  g_test_assert_expected_messages ();
  int w;
  g_object_get (h->element, "width", &w, NULL);
  g_assert_cmpint (w, ==, 32);
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (h->element), "prompt");
  g_assert_true (ps->flags & GST_PARAM_MUTABLE_READY);
  gst_harness_teardown (h);
}

/* ---- cancel and state changes ---------------------------------------------------------------- */

/* Waits for a hyvideo-progress message of `stage` with step >= `step`. */
static gboolean
wait_progress (GstBus *bus, const char *stage, int step)
{
  for (;;) {
    g_autoptr(GstMessage) m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
                                                         GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR);
    if (!m || GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR)
      return FALSE;
    const GstStructure *s = gst_message_get_structure (m);
    int st = -1;
    if (gst_structure_has_name (s, "hyvideo-progress") &&
        g_str_equal (gst_structure_get_string (s, "stage"), stage) &&
        gst_structure_get_int (s, "step", &st) && st >= step)
      return TRUE;
  }
}

static void
test_cancel (void)
{
  GstBus *bus;
  GstHarness *h = harness_new (NULL, &bus);
  /* a long denoising loop: stopping must not wait for it */
  g_object_set (h->element, SMALL, "infer-steps", 1000, "seed", (gint64) 2, NULL);
  gst_harness_play (h);
  g_assert_true (wait_progress (bus, "denoise", 1));
  const gint64 t0 = g_get_monotonic_time ();
  g_assert_cmpint (gst_element_set_state (h->element, GST_STATE_NULL), ==, GST_STATE_CHANGE_SUCCESS);
  const double dt = (g_get_monotonic_time () - t0) / 1e6;
  g_test_message ("PLAYING -> NULL took %.3f s", dt);
  /* one denoising step at this size is a few ms; valgrind runs set HV_TIME_FACTOR */
  const char *factor = g_getenv ("HV_TIME_FACTOR");
  g_assert_cmpfloat (dt, <, 5.0 * (factor ? g_ascii_strtod (factor, NULL) : 1.0));
  g_assert_cmpuint (gst_harness_buffers_received (h), ==, 0);
  /* cancelled, not failed: no error, the GstProgress is closed as CANCELED */
  gboolean canceled = FALSE;
  GstMessage *m;
  while ((m = gst_bus_pop (bus))) {
    g_assert_cmpint (GST_MESSAGE_TYPE (m), !=, GST_MESSAGE_ERROR);
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_PROGRESS) {
      GstProgressType type;
      gst_message_parse_progress (m, &type, NULL, NULL);
      canceled |= type == GST_PROGRESS_TYPE_CANCELED;
    }
    gst_message_unref (m);
  }
  g_assert_true (canceled);
  harness_free (h, bus);
}

static void
test_state_changes (void)
{
  GstHarness *h = harness_new (NULL, NULL);
  g_object_set (h->element, SMALL, "seed", (gint64) 9, NULL);
  GstElement *e = h->element;
  static const GstState walk[] = { GST_STATE_READY, GST_STATE_NULL, GST_STATE_READY, GST_STATE_PAUSED,
                                   GST_STATE_READY, GST_STATE_PAUSED, GST_STATE_PLAYING, GST_STATE_PAUSED,
                                   GST_STATE_PLAYING, GST_STATE_READY, GST_STATE_NULL };
  for (int round = 0; round < 3; round++)
    for (guint i = 0; i < G_N_ELEMENTS (walk); i++) {
      g_assert_cmpint (gst_element_set_state (e, walk[i]), !=, GST_STATE_CHANGE_FAILURE);
      GstState cur;
      g_assert_cmpint (gst_element_get_state (e, &cur, NULL, 30 * GST_SECOND), ==, GST_STATE_CHANGE_SUCCESS);
      g_assert_cmpint (cur, ==, walk[i]);
    }
  /* after all that, a complete run still starts at frame 0 with the same pictures */
  GstBuffer *old;
  while ((old = gst_harness_try_pull (h)))
    gst_buffer_unref (old);
  GstEvent *ev;
  while ((ev = gst_harness_try_pull_event (h)))
    gst_event_unref (ev);
  g_autoptr(GPtrArray) bufs = run_to_eos (h);
  g_autoptr(GPtrArray) ref = generate (NULL, 9);
  g_assert_cmpuint (bufs->len, ==, 5);
  for (guint i = 0; i < 5; i++) {
    g_assert_cmpuint (GST_BUFFER_PTS (bufs->pdata[i]), ==, gst_util_uint64_scale (i, GST_SECOND, 24));
    g_assert_true (same_bytes (bufs->pdata[i], ref->pdata[i]));
  }
  gst_harness_teardown (h);
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/hyvideosrc/caps", test_caps);
  g_test_add_func ("/hyvideosrc/frame-count", test_frame_count);
  g_test_add_func ("/hyvideosrc/timestamps", test_timestamps);
  g_test_add_func ("/hyvideosrc/num-buffers", test_num_buffers);
  g_test_add_func ("/hyvideosrc/determinism", test_determinism);
  g_test_add_func ("/hyvideosrc/formats", test_formats);
  g_test_add_func ("/hyvideosrc/progress-messages", test_progress_messages);
  g_test_add_func ("/hyvideosrc/seed-property", test_seed_property);
  g_test_add_func ("/hyvideosrc/validation", test_validation);
  g_test_add_func ("/hyvideosrc/property-mutability", test_property_mutability);
  g_test_add_func ("/hyvideosrc/cancel", test_cancel);
  g_test_add_func ("/hyvideosrc/state-changes", test_state_changes);
  int ret = g_test_run ();
  gst_deinit ();
  return ret;
}
