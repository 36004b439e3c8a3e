/* gsthyvideosrc.h — hyvideosrc: HunyuanVideo text-to-video as a GStreamer source. */
#pragma once
#include <gst/gst.h>
#include <gst/base/gstpushsrc.h>
#include <gst/video/video.h>
#include "hyvideo.h"

G_BEGIN_DECLS

#define GST_TYPE_HYVIDEO_SRC (gst_hyvideo_src_get_type ())
G_DECLARE_FINAL_TYPE (GstHyVideoSrc, gst_hyvideo_src, GST, HYVIDEO_SRC, GstPushSrc)

struct _GstHyVideoSrc {
  GstPushSrc parent;

  /* properties (guarded by the object lock; changed in READY or lower only) */
  gchar *model;
  gchar *dit_weight;
  gchar *prompt;
  gchar *negative_prompt;
  gint width, height;
  gint num_frames;
  gint infer_steps;
  gint64 seed;
  gdouble embedded_cfg_scale;
  gdouble cfg_scale;
  gdouble flow_shift;
  gboolean flow_reverse;
  gboolean guidance_bf16;
  gint fps_n, fps_d;
  gboolean vae_tiling;
  gchar *device;
  gboolean cpu_offload;
  gboolean fp8;
  gint threads;

  /* streaming state */
  HvEngine *engine;           /* loaded in start() */
  HvRequest request;          /* properties resolved against the model's defaults */
  HvGeneration *generation;   /* created on the first create() */
  gint64 seed_used;
  GstVideoInfo info;
  GstVideoConverter *converter;   /* RGB → the negotiated format, when that is not RGB */
  guint64 n_frames_out;
  volatile gint cancel;       /* raised by unlock() */
  GstClockTime started;
  gboolean progress_open;     /* a GST_MESSAGE_PROGRESS START has not been completed yet */
};

G_END_DECLS
