/* hyvideo.h — the public API of libhyvideo: prompt in, frames out.
 *
 *   HvEngine *e = hv_engine_new (&opts, &error);          // loads the model (or the tiny one)
 *   hv_engine_generate (e, &req, on_progress, on_frame, user_data, &cancel, &seed, &error);
 *
 * Generation runs prompt → text encoders → noise (seed) → denoise loop → streamed VAE decode,
 * and calls on_frame for each RGB frame as soon as the VAE has produced it. `cancel` is read
 * between denoise steps and between decode chunks. Nothing here knows about GStreamer. */
#pragma once
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct _HvEngine HvEngine;

typedef struct {
  const char *model;       /* model folder/file in any layout the loader knows, or "tiny" */
  const char *device;      /* "cpu" (default), "cuda", "cuda:N" */
  const char *dit_weight;  /* optional: DiT file overriding the one found in `model` */
  gboolean fp8;            /* prefer the fp8 DiT checkpoint when the folder has one */
  gboolean cpu_offload;    /* free the text encoders before the DiT runs (reloaded per video) */
  int n_threads;           /* CPU threads, 0 = all cores */
} HvEngineOptions;

typedef struct {
  const char *prompt;
  const char *negative_prompt;   /* NULL/"" = none (used only with cfg_scale > 1) */
  int width, height;             /* multiples of 16 */
  int num_frames;                /* 4k+1 */
  int infer_steps;
  int64_t seed;                  /* -1 = random */
  double embedded_cfg_scale;     /* guidance fed to the model ×1000; 0 = off */
  gboolean guidance_bf16;        /* round guidance through bf16 like the release (6.0 → 6016) */
  double cfg_scale;              /* real classifier-free guidance; 1 = off */
  double flow_shift;
  gboolean flow_reverse;
  gboolean vae_tiling;
} HvRequest;

typedef enum {
  HV_STAGE_LOAD,
  HV_STAGE_TEXT,
  HV_STAGE_DENOISE,
  HV_STAGE_DECODE,
  HV_STAGE_DONE,
} HvStage;

typedef struct {
  HvStage stage;
  int step, total;          /* within the stage (denoise steps, decoded frames) */
  double elapsed;           /* seconds since generation started */
  double eta;               /* seconds left, estimated; < 0 unknown */
} HvProgress;

typedef void (*HvProgressFunc) (const HvProgress *p, gpointer user_data);
/* One RGB24 frame, rows of `stride` bytes. Return FALSE to stop generating. */
typedef gboolean (*HvFrameFunc) (int index, const guint8 *rgb, int width, int height, int stride,
                                 gpointer user_data);

const char *hv_stage_name (HvStage s);

void      hv_engine_options_init (HvEngineOptions *o);
void      hv_request_init (HvRequest *r);              /* the official defaults */
/* Checks sizes, frame count, steps, scales; the message states the rule. */
gboolean  hv_request_validate (const HvRequest *r, GError **error);

HvEngine *hv_engine_new (const HvEngineOptions *o, GError **error);
/* The model's natural defaults for request fields left at 0 (width, height, num_frames,
 * infer_steps): 1280×720×129 in 50 steps for HunyuanVideo, small values for the tiny model. */
void      hv_engine_fill_defaults (HvEngine *e, HvRequest *r);

/* Pull-style generation, for callers that want one frame at a time in their own thread (the
 * GStreamer element): the first call of next_frame runs the text encoders and the denoise
 * loop, later calls decode the next VAE chunk only when no decoded frame is waiting. */
typedef struct _HvGeneration HvGeneration;
HvGeneration *hv_generation_new (HvEngine *e, const HvRequest *r, HvProgressFunc on_progress,
                                 gpointer user_data, const volatile gint *cancel, GError **error);
int64_t   hv_generation_seed (HvGeneration *g);       /* the seed actually used */
int       hv_generation_n_frames (HvGeneration *g);
/* TRUE with a frame (RGB24, valid until the next call); FALSE at the end (error unset) or on
 * failure/cancel (error set). */
gboolean  hv_generation_next_frame (HvGeneration *g, const guint8 **rgb, int *stride,
                                    GError **error);
void      hv_generation_free (HvGeneration *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvGeneration, hv_generation_free)

gboolean  hv_engine_generate (HvEngine *e, const HvRequest *r, HvProgressFunc on_progress,
                              HvFrameFunc on_frame, gpointer user_data,
                              const volatile gint *cancel, int64_t *seed_used, GError **error);
void      hv_engine_free (HvEngine *e);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvEngine, hv_engine_free)

G_END_DECLS
