/* gsthyvideosrc.c — hyvideosrc: glue between GstPushSrc and the hyvideo engine.
 *
 * SECTION:element-hyvideosrc
 * @title: hyvideosrc
 *
 * Generates a video from a text prompt with Tencent's HunyuanVideo model and pushes the
 * decoded frames as raw video. The model loads in start() (READY→PAUSED); generation runs in
 * the streaming thread: the first buffer waits for the text encoders and the denoise loop,
 * later buffers are pushed as the VAE decodes them, chunk by chunk. With `model=tiny` (the
 * default) a built-in tiny model with the real architecture and random weights runs on any
 * machine: it makes abstract moving texture, not what the prompt says.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 hyvideosrc prompt="A cat walks on the grass" ! videoconvert ! x264enc ! mp4mux ! filesink location=tiny.mp4
 * gst-launch-1.0 hyvideosrc model=/models/HunyuanVideo device=cuda width=1280 height=720 num-frames=129 ! videoconvert ! autovideosink
 * ]|
 *
 * Progress is posted as an element message `hyvideo-progress` (fields: stage = text, denoise,
 * decode or done; step, total, elapsed, eta in seconds, eta < 0 = unknown) for every step and
 * frame, and as GST_MESSAGE_PROGRESS for the work before the first frame (START when text
 * encoding begins, CONTINUE per denoising step, COMPLETE when decoding starts; ERROR or
 * CANCELED when it ends early), so that gst-launch waits for it while prerolling. The seed
 * used is posted as `hyvideo-seed` (field: seed) and readable in the `seed-used` property.
 */
#include "gsthyvideosrc.h"
#include "hv-error.h"
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_hyvideo_src_debug);
#define GST_CAT_DEFAULT gst_hyvideo_src_debug

#define DEFAULT_MODEL "tiny"
#define DEFAULT_PROMPT "A cat walks on the grass, realistic style."
#define DEFAULT_NEGATIVE_PROMPT ""
#define DEFAULT_WIDTH 0
#define DEFAULT_HEIGHT 0
#define DEFAULT_NUM_FRAMES 0
#define DEFAULT_INFER_STEPS 0
#define DEFAULT_SEED -1
#define DEFAULT_EMBEDDED_CFG_SCALE 6.0
#define DEFAULT_CFG_SCALE 1.0
#define DEFAULT_FLOW_SHIFT 7.0
#define DEFAULT_FLOW_REVERSE TRUE
#define DEFAULT_GUIDANCE_BF16 TRUE
#define DEFAULT_FPS_N 24
#define DEFAULT_FPS_D 1
#define DEFAULT_VAE_TILING TRUE
#define DEFAULT_DEVICE "cpu"
#define DEFAULT_CPU_OFFLOAD FALSE
#define DEFAULT_FP8 FALSE
#define DEFAULT_THREADS 0

enum {
  PROP_0,
  PROP_MODEL,
  PROP_DIT_WEIGHT,
  PROP_PROMPT,
  PROP_NEGATIVE_PROMPT,
  PROP_WIDTH,
  PROP_HEIGHT,
  PROP_NUM_FRAMES,
  PROP_INFER_STEPS,
  PROP_SEED,
  PROP_SEED_USED,
  PROP_EMBEDDED_CFG_SCALE,
  PROP_CFG_SCALE,
  PROP_FLOW_SHIFT,
  PROP_FLOW_REVERSE,
  PROP_GUIDANCE_BF16,
  PROP_FRAMERATE,
  PROP_VAE_TILING,
  PROP_DEVICE,
  PROP_CPU_OFFLOAD,
  PROP_FP8,
  PROP_THREADS,
};

#define VIDEO_FORMATS "{ RGB, RGBA, BGRx, I420, NV12 }"

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (VIDEO_FORMATS)));

G_DEFINE_TYPE (GstHyVideoSrc, gst_hyvideo_src, GST_TYPE_PUSH_SRC);

static void
gst_hyvideo_src_init (GstHyVideoSrc *self)
{
  self->model = g_strdup (DEFAULT_MODEL);
  self->prompt = g_strdup (DEFAULT_PROMPT);
  self->negative_prompt = g_strdup (DEFAULT_NEGATIVE_PROMPT);
  self->width = DEFAULT_WIDTH;
  self->height = DEFAULT_HEIGHT;
  self->num_frames = DEFAULT_NUM_FRAMES;
  self->infer_steps = DEFAULT_INFER_STEPS;
  self->seed = DEFAULT_SEED;
  self->seed_used = -1;
  self->embedded_cfg_scale = DEFAULT_EMBEDDED_CFG_SCALE;
  self->cfg_scale = DEFAULT_CFG_SCALE;
  self->flow_shift = DEFAULT_FLOW_SHIFT;
  self->flow_reverse = DEFAULT_FLOW_REVERSE;
  self->guidance_bf16 = DEFAULT_GUIDANCE_BF16;
  self->fps_n = DEFAULT_FPS_N;
  self->fps_d = DEFAULT_FPS_D;
  self->vae_tiling = DEFAULT_VAE_TILING;
  self->device = g_strdup (DEFAULT_DEVICE);
  self->cpu_offload = DEFAULT_CPU_OFFLOAD;
  self->fp8 = DEFAULT_FP8;
  self->threads = DEFAULT_THREADS;
  gst_base_src_set_format (GST_BASE_SRC (self), GST_FORMAT_TIME);
  gst_base_src_set_live (GST_BASE_SRC (self), FALSE);
}

static void
gst_hyvideo_src_finalize (GObject *object)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (object);
  g_free (self->model);
  g_free (self->dit_weight);
  g_free (self->prompt);
  g_free (self->negative_prompt);
  g_free (self->device);
  g_clear_pointer (&self->generation, hv_generation_free);
  g_clear_pointer (&self->engine, hv_engine_free);
  g_clear_pointer (&self->converter, gst_video_converter_free);
  G_OBJECT_CLASS (gst_hyvideo_src_parent_class)->finalize (object);
}

/* Properties are GST_PARAM_MUTABLE_READY: a change while PAUSED or PLAYING would not apply to
 * the generation under way, so it is refused with a warning rather than silently ignored. */
static gboolean
can_change (GstHyVideoSrc *self, GParamSpec *pspec)
{
  GstState state;
  GST_OBJECT_LOCK (self);
  state = GST_STATE (self);
  GST_OBJECT_UNLOCK (self);
  if (state > GST_STATE_READY) {
    g_warning ("hyvideosrc: property '%s' can only be changed in the READY or NULL state",
               pspec->name);
    return FALSE;
  }
  return TRUE;
}

static void
set_string (gchar **dst, const GValue *value, const char *fallback)
{
  const char *s = g_value_get_string (value);
  g_free (*dst);
  *dst = g_strdup (s ? s : fallback);
}

static void
gst_hyvideo_src_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (object);
  if (!can_change (self, pspec))
    return;
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL: set_string (&self->model, value, DEFAULT_MODEL); break;
    case PROP_DIT_WEIGHT:
      g_free (self->dit_weight);
      self->dit_weight = g_value_dup_string (value);
      break;
    case PROP_PROMPT: set_string (&self->prompt, value, ""); break;
    case PROP_NEGATIVE_PROMPT: set_string (&self->negative_prompt, value, ""); break;
    case PROP_WIDTH: self->width = g_value_get_int (value); break;
    case PROP_HEIGHT: self->height = g_value_get_int (value); break;
    case PROP_NUM_FRAMES: self->num_frames = g_value_get_int (value); break;
    case PROP_INFER_STEPS: self->infer_steps = g_value_get_int (value); break;
    case PROP_SEED: self->seed = g_value_get_int64 (value); break;
    case PROP_EMBEDDED_CFG_SCALE: self->embedded_cfg_scale = g_value_get_double (value); break;
    case PROP_CFG_SCALE: self->cfg_scale = g_value_get_double (value); break;
    case PROP_FLOW_SHIFT: self->flow_shift = g_value_get_double (value); break;
    case PROP_FLOW_REVERSE: self->flow_reverse = g_value_get_boolean (value); break;
    case PROP_GUIDANCE_BF16: self->guidance_bf16 = g_value_get_boolean (value); break;
    case PROP_FRAMERATE:
      self->fps_n = gst_value_get_fraction_numerator (value);
      self->fps_d = gst_value_get_fraction_denominator (value);
      break;
    case PROP_VAE_TILING: self->vae_tiling = g_value_get_boolean (value); break;
    case PROP_DEVICE: set_string (&self->device, value, DEFAULT_DEVICE); break;
    case PROP_CPU_OFFLOAD: self->cpu_offload = g_value_get_boolean (value); break;
    case PROP_FP8: self->fp8 = g_value_get_boolean (value); break;
    case PROP_THREADS: self->threads = g_value_get_int (value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec); break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_hyvideo_src_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (object);
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL: g_value_set_string (value, self->model); break;
    case PROP_DIT_WEIGHT: g_value_set_string (value, self->dit_weight); break;
    case PROP_PROMPT: g_value_set_string (value, self->prompt); break;
    case PROP_NEGATIVE_PROMPT: g_value_set_string (value, self->negative_prompt); break;
    case PROP_WIDTH: g_value_set_int (value, self->width); break;
    case PROP_HEIGHT: g_value_set_int (value, self->height); break;
    case PROP_NUM_FRAMES: g_value_set_int (value, self->num_frames); break;
    case PROP_INFER_STEPS: g_value_set_int (value, self->infer_steps); break;
    case PROP_SEED: g_value_set_int64 (value, self->seed); break;
    case PROP_SEED_USED: g_value_set_int64 (value, self->seed_used); break;
    case PROP_EMBEDDED_CFG_SCALE: g_value_set_double (value, self->embedded_cfg_scale); break;
    case PROP_CFG_SCALE: g_value_set_double (value, self->cfg_scale); break;
    case PROP_FLOW_SHIFT: g_value_set_double (value, self->flow_shift); break;
    case PROP_FLOW_REVERSE: g_value_set_boolean (value, self->flow_reverse); break;
    case PROP_GUIDANCE_BF16: g_value_set_boolean (value, self->guidance_bf16); break;
    case PROP_FRAMERATE: gst_value_set_fraction (value, self->fps_n, self->fps_d); break;
    case PROP_VAE_TILING: g_value_set_boolean (value, self->vae_tiling); break;
    case PROP_DEVICE: g_value_set_string (value, self->device); break;
    case PROP_CPU_OFFLOAD: g_value_set_boolean (value, self->cpu_offload); break;
    case PROP_FP8: g_value_set_boolean (value, self->fp8); break;
    case PROP_THREADS: g_value_set_int (value, self->threads); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec); break;
  }
  GST_OBJECT_UNLOCK (self);
}

/* Posts an engine GError as the GStreamer error a user expects from its code. */
static void
post_engine_error (GstHyVideoSrc *self, const GError *err, const char *what)
{
  if (err->domain == HV_ERROR) {
    switch (err->code) {
      case HV_ERROR_NOT_FOUND:
        GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("%s", err->message), ("%s", what));
        return;
      case HV_ERROR_INVALID:
        GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS, ("%s", err->message), ("%s", what));
        return;
      case HV_ERROR_NO_MEMORY:
        GST_ELEMENT_ERROR (self, RESOURCE, NO_SPACE_LEFT, ("Out of memory: %s", err->message), ("%s", what));
        return;
      case HV_ERROR_CORRUPT:
      case HV_ERROR_SHAPE:
      case HV_ERROR_UNSUPPORTED:
        GST_ELEMENT_ERROR (self, RESOURCE, READ, ("%s", err->message), ("%s", what));
        return;
      case HV_ERROR_DEVICE:
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("%s", err->message), ("%s", what));
        return;
      default:
        break;
    }
  }
  GST_ELEMENT_ERROR (self, LIBRARY, FAILED, ("%s", err->message), ("%s", what));
}

static gboolean
gst_hyvideo_src_start (GstBaseSrc *bsrc)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (bsrc);
  g_autoptr(GError) err = NULL;
  HvEngineOptions opts;
  hv_engine_options_init (&opts);

  GST_OBJECT_LOCK (self);
  g_autofree char *model = g_strdup (self->model);
  g_autofree char *device = g_strdup (self->device);
  g_autofree char *dit_weight = g_strdup (self->dit_weight);
  opts.fp8 = self->fp8;
  opts.cpu_offload = self->cpu_offload;
  opts.n_threads = self->threads;
  HvRequest *r = &self->request;
  hv_request_init (r);
  r->prompt = self->prompt;                /* owned by self; stable while not READY */
  r->negative_prompt = self->negative_prompt;
  r->width = self->width;
  r->height = self->height;
  r->num_frames = self->num_frames;
  r->infer_steps = self->infer_steps;
  r->seed = self->seed;
  r->embedded_cfg_scale = self->embedded_cfg_scale;
  r->guidance_bf16 = self->guidance_bf16;
  r->cfg_scale = self->cfg_scale;
  r->flow_shift = self->flow_shift;
  r->flow_reverse = self->flow_reverse;
  r->vae_tiling = self->vae_tiling;
  gint fps_n = self->fps_n, fps_d = self->fps_d;
  GST_OBJECT_UNLOCK (self);

  opts.model = model;
  opts.device = device;
  opts.dit_weight = dit_weight;
  GST_INFO_OBJECT (self, "loading model '%s' on %s", model, device);
  self->engine = hv_engine_new (&opts, &err);
  if (!self->engine) {
    post_engine_error (self, err, "loading the model");
    return FALSE;
  }
  hv_engine_fill_defaults (self->engine, r);
  if (!hv_request_validate (r, &err)) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS, ("%s", err->message), (NULL));
    g_clear_pointer (&self->engine, hv_engine_free);
    return FALSE;
  }
  if (fps_n <= 0 || fps_d <= 0) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS, ("framerate must be positive, got %d/%d", fps_n, fps_d), (NULL));
    g_clear_pointer (&self->engine, hv_engine_free);
    return FALSE;
  }
  gst_video_info_set_format (&self->info, GST_VIDEO_FORMAT_RGB, r->width, r->height);
  self->info.fps_n = fps_n;
  self->info.fps_d = fps_d;
  self->n_frames_out = 0;
  self->progress_open = FALSE;
  g_atomic_int_set (&self->cancel, 0);
  GST_INFO_OBJECT (self, "ready: %dx%d, %d frames, %d steps", r->width, r->height, r->num_frames, r->infer_steps);
  return TRUE;
}

static gboolean
gst_hyvideo_src_stop (GstBaseSrc *bsrc)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (bsrc);
  g_clear_pointer (&self->generation, hv_generation_free);
  g_clear_pointer (&self->engine, hv_engine_free);
  g_clear_pointer (&self->converter, gst_video_converter_free);
  return TRUE;
}

/* Caps are fixed by the properties (resolved against the model in start()); only the
 * format is negotiable. */
static GstCaps *
gst_hyvideo_src_get_caps (GstBaseSrc *bsrc, GstCaps *filter)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (bsrc);
  GstCaps *caps = gst_pad_get_pad_template_caps (GST_BASE_SRC_PAD (bsrc));
  gint w = 0, h = 0, fps_n, fps_d;
  GST_OBJECT_LOCK (self);
  if (self->engine) {
    w = self->request.width;
    h = self->request.height;
  } else {
    w = self->width;
    h = self->height;
  }
  fps_n = self->fps_n;
  fps_d = self->fps_d;
  GST_OBJECT_UNLOCK (self);
  caps = gst_caps_make_writable (caps);
  if (w > 0 && h > 0)
    gst_caps_set_simple (caps, "width", G_TYPE_INT, w, "height", G_TYPE_INT, h, NULL);
  if (fps_n > 0 && fps_d > 0)
    gst_caps_set_simple (caps, "framerate", GST_TYPE_FRACTION, fps_n, fps_d, NULL);
  gst_caps_set_simple (caps, "pixel-aspect-ratio", GST_TYPE_FRACTION, 1, 1, NULL);
  if (filter) {
    GstCaps *tmp = gst_caps_intersect_full (filter, caps, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (caps);
    caps = tmp;
  }
  return caps;
}

static gboolean
gst_hyvideo_src_set_caps (GstBaseSrc *bsrc, GstCaps *caps)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (bsrc);
  GstVideoInfo info;
  if (!gst_video_info_from_caps (&info, caps)) {
    GST_ERROR_OBJECT (self, "invalid caps %" GST_PTR_FORMAT, caps);
    return FALSE;
  }
  self->info = info;
  g_clear_pointer (&self->converter, gst_video_converter_free);
  return TRUE;
}

static gboolean
gst_hyvideo_src_query (GstBaseSrc *bsrc, GstQuery *query)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (bsrc);
  if (GST_QUERY_TYPE (query) == GST_QUERY_DURATION && self->engine && self->info.fps_n > 0) {
    GstFormat fmt;
    gst_query_parse_duration (query, &fmt, NULL);
    if (fmt == GST_FORMAT_TIME) {
      gint64 dur = gst_util_uint64_scale (self->request.num_frames,
                                          (guint64) self->info.fps_d * GST_SECOND, self->info.fps_n);
      gst_query_set_duration (query, fmt, dur);
      return TRUE;
    }
  }
  return GST_BASE_SRC_CLASS (gst_hyvideo_src_parent_class)->query (bsrc, query);
}

static void
post_progress (GstHyVideoSrc *self, GstProgressType type, const char *code, const char *text)
{
  GstMessage *m = gst_message_new_progress (GST_OBJECT (self), type, code, text);
  gst_element_post_message (GST_ELEMENT (self), m);
}

/* Ends an open GST_MESSAGE_PROGRESS (error or cancel before decoding started). */
static void
close_progress (GstHyVideoSrc *self, GstProgressType type, const char *text)
{
  if (!self->progress_open)
    return;
  self->progress_open = FALSE;
  post_progress (self, type, "generate", text);
}

/* Called from the engine in the streaming thread. */
static void
on_progress (const HvProgress *p, gpointer user_data)
{
  GstHyVideoSrc *self = user_data;
  g_autofree char *text = g_strdup_printf ("%s %d/%d (%.1f s, eta %.1f s)", hv_stage_name (p->stage),
                                           p->step, p->total, p->elapsed, p->eta);
  /* GST_MESSAGE_PROGRESS covers the work before the first frame (text encoders and denoising),
   * and completes when decoding starts: applications such as gst-launch keep a pipeline in
   * PAUSED until an open progress completes, and the first frame is what prerolls it. Frames
   * and the end are reported by the hyvideo-progress element message only. */
  if (p->stage == HV_STAGE_TEXT || p->stage == HV_STAGE_DENOISE ||
      (p->stage == HV_STAGE_DECODE && p->step == 0)) {
    GstProgressType type = GST_PROGRESS_TYPE_CONTINUE;
    if (p->stage == HV_STAGE_TEXT && p->step == 0) {
      type = GST_PROGRESS_TYPE_START;
      self->progress_open = TRUE;
    } else if (p->stage == HV_STAGE_DECODE) {
      type = GST_PROGRESS_TYPE_COMPLETE;
      self->progress_open = FALSE;
    }
    post_progress (self, type, hv_stage_name (p->stage), text);
  }
  GstStructure *s = gst_structure_new ("hyvideo-progress",
      "stage", G_TYPE_STRING, hv_stage_name (p->stage),
      "step", G_TYPE_INT, p->step,
      "total", G_TYPE_INT, p->total,
      "elapsed", G_TYPE_DOUBLE, p->elapsed,
      "eta", G_TYPE_DOUBLE, p->eta, NULL);
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
  GST_DEBUG_OBJECT (self, "%s", text);
}

static GstFlowReturn
start_generation (GstHyVideoSrc *self)
{
  g_autoptr(GError) err = NULL;
  self->generation = hv_generation_new (self->engine, &self->request, on_progress, self,
                                        &self->cancel, &err);
  if (!self->generation) {
    post_engine_error (self, err, "starting generation");
    return GST_FLOW_ERROR;
  }
  self->seed_used = hv_generation_seed (self->generation);
  GST_INFO_OBJECT (self, "generating with seed %" G_GINT64_FORMAT, self->seed_used);
  g_object_notify (G_OBJECT (self), "seed-used");
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self),
      gst_structure_new ("hyvideo-seed", "seed", G_TYPE_INT64, self->seed_used, NULL)));
  return GST_FLOW_OK;
}

/* Copies (or converts) one RGB24 frame into the negotiated format. The converter is made for
 * the first frame after a caps change and kept. */
static gboolean
fill_buffer (GstHyVideoSrc *self, GstBuffer *buf, const guint8 *rgb, int stride)
{
  GstVideoInfo rgb_info;
  GstVideoFrame in, out;
  gst_video_info_set_format (&rgb_info, GST_VIDEO_FORMAT_RGB, self->info.width, self->info.height);
  rgb_info.fps_n = self->info.fps_n;        /* the converter insists on equal rates */
  rgb_info.fps_d = self->info.fps_d;
  rgb_info.par_n = self->info.par_n;
  rgb_info.par_d = self->info.par_d;
  rgb_info.stride[0] = stride;
  rgb_info.size = (gsize) stride * self->info.height;
  g_autoptr(GstBuffer) inbuf = gst_buffer_new_wrapped_full (GST_MEMORY_FLAG_READONLY, (gpointer) rgb,
                                                             rgb_info.size, 0, rgb_info.size, NULL, NULL);
  if (!gst_video_frame_map (&in, &rgb_info, inbuf, GST_MAP_READ))
    return FALSE;
  if (!gst_video_frame_map (&out, &self->info, buf, GST_MAP_WRITE)) {
    gst_video_frame_unmap (&in);
    return FALSE;
  }
  gboolean ok = TRUE;
  if (GST_VIDEO_INFO_FORMAT (&self->info) == GST_VIDEO_FORMAT_RGB) {
    ok = gst_video_frame_copy (&out, &in);
  } else {
    if (!self->converter)
      self->converter = gst_video_converter_new (&rgb_info, &self->info, NULL);
    if (self->converter)
      gst_video_converter_frame (self->converter, &in, &out);
    else
      ok = FALSE;
  }
  gst_video_frame_unmap (&out);
  gst_video_frame_unmap (&in);
  return ok;
}

static GstFlowReturn
gst_hyvideo_src_create (GstPushSrc *psrc, GstBuffer **outbuf)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (psrc);
  g_autoptr(GError) err = NULL;
  const guint8 *rgb = NULL;
  int stride = 0;

  if (!self->generation) {
    GstFlowReturn ret = start_generation (self);
    if (ret != GST_FLOW_OK)
      return ret;
  }
  if (!hv_generation_next_frame (self->generation, &rgb, &stride, &err)) {
    if (!err) {
      GST_INFO_OBJECT (self, "all %" G_GUINT64_FORMAT " frames pushed", self->n_frames_out);
      return GST_FLOW_EOS;
    }
    if (g_error_matches (err, HV_ERROR, HV_ERROR_CANCELLED)) {
      GST_DEBUG_OBJECT (self, "generation cancelled");
      close_progress (self, GST_PROGRESS_TYPE_CANCELED, "cancelled");
      g_clear_pointer (&self->generation, hv_generation_free);
      return GST_FLOW_FLUSHING;
    }
    close_progress (self, GST_PROGRESS_TYPE_ERROR, err->message);
    post_engine_error (self, err, "generating");
    return GST_FLOW_ERROR;
  }

  GstBuffer *buf = gst_buffer_new_allocate (NULL, self->info.size, NULL);
  if (!buf || !fill_buffer (self, buf, rgb, stride)) {
    if (buf)
      gst_buffer_unref (buf);
    GST_ELEMENT_ERROR (self, CORE, FAILED, ("Could not convert a frame to %s",
        gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (&self->info))), (NULL));
    return GST_FLOW_ERROR;
  }
  /* timestamps as videotestsrc: from the frame number, so no rounding drift */
  guint64 n = self->n_frames_out;
  GstClockTime pts = gst_util_uint64_scale (n, (guint64) self->info.fps_d * GST_SECOND, self->info.fps_n);
  GstClockTime next = gst_util_uint64_scale (n + 1, (guint64) self->info.fps_d * GST_SECOND, self->info.fps_n);
  GST_BUFFER_PTS (buf) = pts;
  GST_BUFFER_DTS (buf) = GST_CLOCK_TIME_NONE;
  GST_BUFFER_DURATION (buf) = next - pts;
  GST_BUFFER_OFFSET (buf) = n;
  GST_BUFFER_OFFSET_END (buf) = n + 1;
  self->n_frames_out++;
  *outbuf = buf;
  return GST_FLOW_OK;
}

/* A generation runs from its first frame to its last: no seeking. */
static gboolean
gst_hyvideo_src_is_seekable (GstBaseSrc *bsrc)
{
  return FALSE;
}

/* unlock: raise the cancel flag; the engine checks it between denoise steps and between VAE
 * chunks, so create() returns within one step. */
static gboolean
gst_hyvideo_src_unlock (GstBaseSrc *bsrc)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (bsrc);
  GST_DEBUG_OBJECT (self, "unlock: cancelling generation");
  g_atomic_int_set (&self->cancel, 1);
  return TRUE;
}

static gboolean
gst_hyvideo_src_unlock_stop (GstBaseSrc *bsrc)
{
  GstHyVideoSrc *self = GST_HYVIDEO_SRC (bsrc);
  g_atomic_int_set (&self->cancel, 0);
  return TRUE;
}

static void
gst_hyvideo_src_class_init (GstHyVideoSrcClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSrcClass *bsrc_class = GST_BASE_SRC_CLASS (klass);
  GstPushSrcClass *psrc_class = GST_PUSH_SRC_CLASS (klass);
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;

  GST_DEBUG_CATEGORY_INIT (gst_hyvideo_src_debug, "hyvideosrc", 0, "HunyuanVideo source");

  gobject_class->set_property = gst_hyvideo_src_set_property;
  gobject_class->get_property = gst_hyvideo_src_get_property;
  gobject_class->finalize = gst_hyvideo_src_finalize;

  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Model to run: a HunyuanVideo folder (the official ckpts/ layout or a diffusers folder; "
          "a single transformer file goes in dit-weight), or \"tiny\" for the built-in tiny model "
          "(random weights, abstract texture; runs anywhere)", DEFAULT_MODEL, rw));
  g_object_class_install_property (gobject_class, PROP_DIT_WEIGHT,
      g_param_spec_string ("dit-weight", "DiT weights",
          "Transformer weights file used instead of the one found in `model` (a folder), like "
          "sample_video.py's --dit-weight; NULL = the folder's own", NULL, rw));
  g_object_class_install_property (gobject_class, PROP_PROMPT,
      g_param_spec_string ("prompt", "Prompt", "Text describing the video", DEFAULT_PROMPT, rw));
  g_object_class_install_property (gobject_class, PROP_NEGATIVE_PROMPT,
      g_param_spec_string ("negative-prompt", "Negative prompt",
          "What to steer away from; used only when cfg-scale > 1 (empty: the official default "
          "negative prompt)", DEFAULT_NEGATIVE_PROMPT, rw));
  g_object_class_install_property (gobject_class, PROP_WIDTH,
      g_param_spec_int ("width", "Width",
          "Frame width in pixels, a multiple of 16 (0 = the model's default: 1280, tiny: 128)",
          0, 4096, DEFAULT_WIDTH, rw));
  g_object_class_install_property (gobject_class, PROP_HEIGHT,
      g_param_spec_int ("height", "Height",
          "Frame height in pixels, a multiple of 16 (0 = the model's default: 720, tiny: 96)",
          0, 4096, DEFAULT_HEIGHT, rw));
  g_object_class_install_property (gobject_class, PROP_NUM_FRAMES,
      g_param_spec_int ("num-frames", "Number of frames",
          "Video length in frames, of the form 4k+1 (0 = the model's default: 129, tiny: 17)",
          0, 1025, DEFAULT_NUM_FRAMES, rw));
  g_object_class_install_property (gobject_class, PROP_INFER_STEPS,
      g_param_spec_int ("infer-steps", "Inference steps",
          "Number of denoising steps (0 = the model's default: 50, tiny: 4)", 0, 1000,
          DEFAULT_INFER_STEPS, rw));
  g_object_class_install_property (gobject_class, PROP_SEED,
      g_param_spec_int64 ("seed", "Seed",
          "Random seed; the same seed gives the same initial noise as the official code "
          "(-1 = random; the seed used is in seed-used and the hyvideo-seed message)",
          -1, G_MAXINT64, DEFAULT_SEED, rw));
  g_object_class_install_property (gobject_class, PROP_SEED_USED,
      g_param_spec_int64 ("seed-used", "Seed used", "The seed of the current or last generation (-1 before)",
          -1, G_MAXINT64, -1, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_EMBEDDED_CFG_SCALE,
      g_param_spec_double ("embedded-cfg-scale", "Embedded guidance scale",
          "Guidance strength given to the guidance-distilled model (×1000 as input)", 0.0, 100.0,
          DEFAULT_EMBEDDED_CFG_SCALE, rw));
  g_object_class_install_property (gobject_class, PROP_CFG_SCALE,
      g_param_spec_double ("cfg-scale", "CFG scale",
          "Real classifier-free guidance with the negative prompt (1 = off; > 1 runs a batch of 2)",
          1.0, 100.0, DEFAULT_CFG_SCALE, rw));
  g_object_class_install_property (gobject_class, PROP_FLOW_SHIFT,
      g_param_spec_double ("flow-shift", "Flow shift", "Time shift of the flow-matching schedule",
          0.0, 100.0, DEFAULT_FLOW_SHIFT, rw));
  g_object_class_install_property (gobject_class, PROP_FLOW_REVERSE,
      g_param_spec_boolean ("flow-reverse", "Flow reverse",
          "Run the schedule from t=1 to 0 as the released sample scripts do (--flow-reverse)",
          DEFAULT_FLOW_REVERSE, rw));
  g_object_class_install_property (gobject_class, PROP_GUIDANCE_BF16,
      g_param_spec_boolean ("guidance-bf16", "bf16 guidance",
          "Round the embedded guidance through bf16 like the released pipeline (6.0 becomes 6016), "
          "to match official outputs", DEFAULT_GUIDANCE_BF16, rw));
  g_object_class_install_property (gobject_class, PROP_FRAMERATE,
      gst_param_spec_fraction ("framerate", "Framerate", "Frame rate of the output",
          1, 1000, 1000, 1, DEFAULT_FPS_N, DEFAULT_FPS_D, rw));
  g_object_class_install_property (gobject_class, PROP_VAE_TILING,
      g_param_spec_boolean ("vae-tiling", "VAE tiling",
          "Decode in overlapping tiles as the official sampler does (less memory; output as official)",
          DEFAULT_VAE_TILING, rw));
  g_object_class_install_property (gobject_class, PROP_DEVICE,
      g_param_spec_string ("device", "Device", "Where to run: cpu, cuda or cuda:N", DEFAULT_DEVICE, rw));
  g_object_class_install_property (gobject_class, PROP_CPU_OFFLOAD,
      g_param_spec_boolean ("cpu-offload", "CPU offload",
          "Free the text encoders once the prompt is encoded, before the transformer runs (they "
          "are loaded again for the next video): less peak memory",
          DEFAULT_CPU_OFFLOAD, rw));
  g_object_class_install_property (gobject_class, PROP_FP8,
      g_param_spec_boolean ("fp8", "fp8", "Use the fp8 transformer checkpoint (*_fp8.pt + map) when present",
          DEFAULT_FP8, rw));
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads", "CPU threads (0 = all cores)", 0, 1024, DEFAULT_THREADS, rw));

  gst_element_class_set_static_metadata (element_class, "HunyuanVideo source", "Source/Video",
      "Generates video from a text prompt with Tencent's HunyuanVideo model",
      "hyvideo developers");
  gst_element_class_add_static_pad_template (element_class, &src_template);

  bsrc_class->start = GST_DEBUG_FUNCPTR (gst_hyvideo_src_start);
  bsrc_class->stop = GST_DEBUG_FUNCPTR (gst_hyvideo_src_stop);
  bsrc_class->get_caps = GST_DEBUG_FUNCPTR (gst_hyvideo_src_get_caps);
  bsrc_class->set_caps = GST_DEBUG_FUNCPTR (gst_hyvideo_src_set_caps);
  bsrc_class->query = GST_DEBUG_FUNCPTR (gst_hyvideo_src_query);
  bsrc_class->is_seekable = GST_DEBUG_FUNCPTR (gst_hyvideo_src_is_seekable);
  bsrc_class->unlock = GST_DEBUG_FUNCPTR (gst_hyvideo_src_unlock);
  bsrc_class->unlock_stop = GST_DEBUG_FUNCPTR (gst_hyvideo_src_unlock_stop);
  psrc_class->create = GST_DEBUG_FUNCPTR (gst_hyvideo_src_create);
}
