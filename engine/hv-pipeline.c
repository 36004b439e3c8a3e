/* hv-pipeline.c — prompt → text encoders → noise → denoise loop → streamed VAE decode → RGB frames
 * (the public API of hyvideo.h, except the request defaults in hv-request.c).
 *
 * The stages follow the official sampler (hyvideo/inference.py + the pipeline):
 *  - the prompt is encoded with the video template (image template for one frame); a negative
 *    prompt (upstream's default one when none is given) only with real CFG (cfg_scale > 1);
 *  - the initial noise is torch.randn of [1, 16, (F-1)/4+1, H/8, W/8] from a CUDA generator
 *    seeded with the seed, in fp16 (hv_noise_latents), the same numbers on every backend;
 *    seed -1 draws one in [0, 1e6] as upstream's random.randint(0, 1_000_000);
 *  - the flow-matching Euler loop over the DiT (hv-denoise.h), one step per call so that the
 *    cancel flag is read and progress reported between steps;
 *  - the VAE decodes latents / scaling_factor, tiled as the sampler does when vae_tiling is set,
 *    pulled chunk by chunk (hv_vae_stream_next) in the caller's thread, and every frame becomes
 *    uint8 RGB as save_videos_grid makes it.
 * HvGeneration is a state machine: the first next_frame runs everything up to the first VAE
 * chunk, later calls hand out the frames of that chunk and decode the next one only when none
 * is waiting. */
#include "hyvideo.h"
#include "hv-error.h"
#include "hv-backend.h"
#include "hv-rng.h"
#include "hv-dit.h"
#include "hv-denoise.h"
#include "hv-vae.h"
#include "hv-tiny.h"
#include "loaders/hv-layout.h"
#include "text/hv-text.h"
#include <string.h>

struct _HvEngine {
  HvBackend *backend;
  gboolean tiny;
  gboolean cpu_offload;
  /* text encoders: kept here, or (cpu_offload) made for each generation and freed before the DiT */
  HvTextEncoder *text;
  HvTinyText *tiny_text;
  char *llama_dir, *clip_dir, *llama_tok_dir, *clip_tok_dir;
  HvStore *dit_store;      /* the tiny DiT's weights (a real DiT owns its store) */
  HvDit *dit;
  HvVae *vae;
};

/* ---- engine ------------------------------------------------------------------------------------ */

void
hv_engine_free (HvEngine *e)
{
  if (!e)
    return;
  hv_text_encoder_free (e->text);
  hv_tiny_text_free (e->tiny_text);
  hv_dit_free (e->dit);
  hv_store_free (e->dit_store);
  hv_vae_free (e->vae);
  g_free (e->llama_dir);
  g_free (e->clip_dir);
  g_free (e->llama_tok_dir);
  g_free (e->clip_tok_dir);
  hv_backend_free (e->backend);
  g_free (e);
}

/* Makes the text encoders (tiny or from the model's folders). */
static gboolean
load_text (HvEngine *e, GError **error)
{
  if (e->tiny) {
    e->tiny_text = hv_tiny_text_new (e->backend, error);
    return e->tiny_text != NULL;
  }
  e->text = hv_text_encoder_new (e->llama_dir, e->clip_dir, e->llama_tok_dir, e->clip_tok_dir, e->backend,
                                 error);
  if (!e->text)
    g_prefix_error (error, "loading the text encoders: ");
  return e->text != NULL;
}

static void
free_text (HvEngine *e)
{
  g_clear_pointer (&e->text, hv_text_encoder_free);
  g_clear_pointer (&e->tiny_text, hv_tiny_text_free);
}

static gboolean
load_tiny (HvEngine *e, GError **error)
{
  HvDitConfig cfg;
  hv_tiny_dit_config (&cfg);
  if (!(e->dit_store = hv_tiny_dit_store (error)) ||
      !(e->dit = hv_dit_new (e->dit_store, &cfg, e->backend, error)) ||
      !(e->vae = hv_tiny_vae_new (e->backend, error)))
    return FALSE;
  return TRUE;
}

/* A HunyuanVideo model in a layout hv_model_paths_detect knows (official or diffusers folder),
 * with dit_weight overriding its DiT file. */
static gboolean
load_real (HvEngine *e, const HvEngineOptions *o, GError **error)
{
  g_autoptr(HvModelPaths) mp = hv_model_paths_detect (o->model, o->fp8 ? HV_LAYOUT_PREFER_FP8 : 0, error);
  if (!mp)
    return FALSE;
  if (mp->layout == HV_LAYOUT_SINGLE_FILE) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "%s is a single DiT file; generating also needs the VAE and both text encoders: point "
                 "model at the model folder (official: the folder holding hunyuan-video-t2v-720p/, "
                 "text_encoder/ and text_encoder_2/; or a diffusers folder) and give this file as "
                 "dit-weight", o->model);
    return FALSE;
  }
  const char *dit_path = o->dit_weight && *o->dit_weight ? o->dit_weight : mp->dit;
  const char *missing = !dit_path ? "the transformer (DiT) weights" : !mp->vae ? "the VAE (vae/)" :
                        !mp->text_encoder ? "the Llama text encoder (text_encoder/)" :
                        !mp->text_encoder_2 ? "the CLIP text encoder (text_encoder_2/)" : NULL;
  if (missing) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s (%s layout) lacks %s", o->model,
                 hv_layout_str (mp->layout), missing);
    return FALSE;
  }
  e->llama_dir = g_strdup (mp->text_encoder);
  e->clip_dir = g_strdup (mp->text_encoder_2);
  e->llama_tok_dir = g_strdup (mp->tokenizer);
  e->clip_tok_dir = g_strdup (mp->tokenizer_2);
  /* a file path: hv_dit_open finds the fp8 map and a RoPE config beside it */
  if (!(e->dit = hv_dit_open (dit_path, NULL, e->backend, error))) {
    g_prefix_error (error, "loading the transformer %s: ", dit_path);
    return FALSE;
  }
  if (!(e->vae = hv_vae_new_from_path (mp->vae, e->backend, error))) {
    g_prefix_error (error, "loading the VAE: ");
    return FALSE;
  }
  return TRUE;
}

HvEngine *
hv_engine_new (const HvEngineOptions *o, GError **error)
{
  g_return_val_if_fail (o, NULL);
  const char *model = o->model && *o->model ? o->model : "tiny";
  if (o->n_threads < 0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "threads must be >= 0 (0 = all cores), got %d", o->n_threads);
    return NULL;
  }
  g_autoptr(HvEngine) e = g_new0 (HvEngine, 1);
  e->tiny = strcmp (model, "tiny") == 0;
  e->cpu_offload = o->cpu_offload;
  if (!(e->backend = hv_backend_new (o->device, o->n_threads, error)))
    return NULL;
  HvEngineOptions opts = *o;
  opts.model = model;
  if (e->tiny && o->dit_weight && *o->dit_weight) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "dit-weight needs a real model folder, not the tiny model");
    return NULL;
  }
  if (e->tiny ? !load_tiny (e, error) : !load_real (e, &opts, error))
    return NULL;
  /* with cpu_offload the encoders are made per generation and freed before the DiT runs */
  if (!e->cpu_offload && !load_text (e, error))
    return NULL;
  return g_steal_pointer (&e);
}

void
hv_engine_fill_defaults (HvEngine *e, HvRequest *r)
{
  g_return_if_fail (e && r);
  if (r->width == 0)
    r->width = e->tiny ? HV_TINY_WIDTH : 1280;
  if (r->height == 0)
    r->height = e->tiny ? HV_TINY_HEIGHT : 720;
  if (r->num_frames == 0)
    r->num_frames = e->tiny ? HV_TINY_FRAMES : 129;
  if (r->infer_steps == 0)
    r->infer_steps = e->tiny ? HV_TINY_STEPS : 50;
}

/* ---- generation -------------------------------------------------------------------------------- */

typedef enum { GEN_NEW, GEN_DECODING, GEN_FINISHED } GenState;

struct _HvGeneration {
  HvEngine *e;
  HvRequest r;
  char *prompt, *negative_prompt;   /* the request's strings, owned */
  HvProgressFunc on_progress;
  gpointer user_data;
  const volatile gint *cancel;
  int64_t seed;
  GenState state;
  gint64 t0;                /* monotonic µs at the first next_frame */
  HvVaeStream *vs;
  HvTensor *chunk;          /* u8 [n, H, W, 3] of the current VAE chunk */
  int chunk_pos;
  int frames_out;
  int frames_decoded;       /* by the VAE so far (frames_out + those waiting in the chunk) */
  gint64 decode_t0;
};

int64_t
hv_generation_seed (HvGeneration *g)
{
  return g->seed;
}

int
hv_generation_n_frames (HvGeneration *g)
{
  return g->r.num_frames;
}

static double
elapsed_s (HvGeneration *g)
{
  return (g_get_monotonic_time () - g->t0) / 1e6;
}

static void
progress (HvGeneration *g, HvStage stage, int step, int total, double eta)
{
  if (!g->on_progress)
    return;
  const HvProgress p = { .stage = stage, .step = step, .total = total, .elapsed = elapsed_s (g), .eta = eta };
  g->on_progress (&p, g->user_data);
}

static gboolean
check_cancel (HvGeneration *g, const char *where, GError **error)
{
  if (g->cancel && g_atomic_int_get (g->cancel)) {
    g_set_error (error, HV_ERROR, HV_ERROR_CANCELLED, "generation cancelled %s", where);
    return FALSE;
  }
  return TRUE;
}

HvGeneration *
hv_generation_new (HvEngine *e, const HvRequest *r, HvProgressFunc on_progress, gpointer user_data,
                   const volatile gint *cancel, GError **error)
{
  g_return_val_if_fail (e && r, NULL);
  if (!hv_request_validate (r, error))
    return NULL;
  HvGeneration *g = g_new0 (HvGeneration, 1);
  g->e = e;
  g->r = *r;
  g->prompt = g_strdup (r->prompt);
  g->negative_prompt = g_strdup (r->negative_prompt);
  g->r.prompt = g->prompt;
  g->r.negative_prompt = g->negative_prompt;
  g->on_progress = on_progress;
  g->user_data = user_data;
  g->cancel = cancel;
  g->seed = r->seed >= 0 ? r->seed : (int64_t) g_random_int_range (0, 1000001);
  return g;
}

void
hv_generation_free (HvGeneration *g)
{
  if (!g)
    return;
  hv_vae_stream_free (g->vs);
  hv_tensor_free (g->chunk);
  if (g->e->cpu_offload)
    free_text (g->e);
  g_free (g->prompt);
  g_free (g->negative_prompt);
  g_free (g);
}

static gboolean
encode_text (HvGeneration *g, HvTextEmbeds *emb, GError **error)
{
  HvEngine *e = g->e;
  progress (g, HV_STAGE_TEXT, 0, 1, -1);
  if (!e->text && !e->tiny_text && !load_text (e, error))
    return FALSE;
  const HvPromptTemplate tmpl = g->r.num_frames > 1 ? HV_PROMPT_TEMPLATE_VIDEO : HV_PROMPT_TEMPLATE_IMAGE;
  const char *neg = NULL;
  if (g->r.cfg_scale > 1.0)
    neg = g->r.negative_prompt && *g->r.negative_prompt ? g->r.negative_prompt : HV_PROMPT_NEGATIVE_DEFAULT;
  gboolean ok = e->tiny ? hv_tiny_text_encode (e->tiny_text, g->r.prompt, neg, tmpl, emb, error)
                        : hv_text_encode (e->text, g->r.prompt, neg, tmpl, emb, error);
  if (e->cpu_offload)
    free_text (e);       /* their weights go before the DiT's activations come */
  if (!ok)
    return FALSE;
  if (emb->truncated && !e->tiny)   /* the tiny model's byte ids run out fast; nothing to tell */
    g_message ("hyvideo: the prompt is longer than the text encoders take; its end was cut off");
  progress (g, HV_STAGE_TEXT, 1, 1, 0);
  return TRUE;
}

static gboolean
denoise (HvGeneration *g, const HvTextEmbeds *emb, HvTensor *latents, GError **error)
{
  HvDenoiseParams p;
  hv_denoise_params_init (&p);
  p.steps = g->r.infer_steps;
  p.shift = (float) g->r.flow_shift;
  p.reverse = g->r.flow_reverse;
  p.embedded_guidance = (float) g->r.embedded_cfg_scale;
  p.guidance_bf16 = g->r.guidance_bf16;
  p.cfg_scale = (float) g->r.cfg_scale;
  const HvDitCond cond = { .states = emb->text_states, .mask = emb->text_mask, .pooled = emb->text_states_2 };
  g_autoptr(HvDenoiser) d = emb->batch == 2 ? hv_denoiser_new_batched (g->e->dit, &p, &cond, error)
                                            : hv_denoiser_new (g->e->dit, &p, &cond, NULL, error);
  if (!d)
    return FALSE;
  const int n = hv_denoiser_n_steps (d);
  const gint64 t0 = g_get_monotonic_time ();
  progress (g, HV_STAGE_DENOISE, 0, n, -1);
  for (int i = 0; i < n; i++) {
    if (!check_cancel (g, "during denoising", error) || !hv_denoiser_step (d, i, latents, error))
      return FALSE;
    const double per_step = (g_get_monotonic_time () - t0) / 1e6 / (i + 1);
    progress (g, HV_STAGE_DENOISE, i + 1, n, per_step * (n - i - 1));
  }
  return TRUE;
}

/* Text, noise, denoising; then the VAE stream is ready for the first chunk. */
static gboolean
prepare (HvGeneration *g, GError **error)
{
  HvEngine *e = g->e;
  HvBackend *b = e->backend;
  g->t0 = g_get_monotonic_time ();
  if (!check_cancel (g, "before it started", error))
    return FALSE;
  HvTextEmbeds emb = { 0 };
  if (!encode_text (g, &emb, error))
    return FALSE;

  const HvDitInfo *info = hv_dit_info (e->dit);
  const HvVaeConfig *vc = hv_vae_get_config (e->vae);
  const int tc = vc->time_compression_ratio, sc = vc->spatial_compression_ratio;
  const int64_t shape[5] = { 1, info->in_channels, (g->r.num_frames - 1) / tc + 1, g->r.height / sc,
                             g->r.width / sc };
  g_autoptr(HvTensor) noise = hv_noise_latents (HV_RNG_CUDA, HV_RNG_F16, (uint64_t) g->seed, shape, error);
  g_autoptr(HvTensor) latents = noise ? hv_backend_upload (b, noise) : NULL;
  if (noise && !latents)
    g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY, "cannot allocate the latents on %s", b->name);
  gboolean ok = latents && denoise (g, &emb, latents, error);
  hv_text_embeds_clear (&emb);
  if (!ok || !check_cancel (g, "before decoding", error))
    return FALSE;

  HvVaeTiling tiling;
  if (g->r.vae_tiling)
    hv_vae_tiling_init (e->vae, &tiling);
  g->vs = hv_vae_stream_new (e->vae, latents, g->r.vae_tiling ? &tiling : NULL, g->cancel, error);
  if (!g->vs)
    return FALSE;
  g->decode_t0 = g_get_monotonic_time ();
  progress (g, HV_STAGE_DECODE, 0, g->r.num_frames, -1);
  return TRUE;
}

/* The next decoded chunk as uint8 frames; FALSE at the end (error unset) or on failure. */
static gboolean
next_chunk (HvGeneration *g, GError **error)
{
  g_clear_pointer (&g->chunk, hv_tensor_free);
  g->chunk_pos = 0;
  HvTensor *f = NULL;
  int first = 0;
  if (!hv_vae_stream_next (g->vs, &f, &first, error))
    return FALSE;
  g_autoptr(HvTensor) frames = f;
  if (first != g->frames_out || frames->shape[3] != g->r.height || frames->shape[4] != g->r.width ||
      first + frames->shape[2] > g->r.num_frames) {
    g_set_error (error, HV_ERROR, HV_ERROR_FAILED, "the VAE produced frames %d..%d of %" G_GINT64_FORMAT
                 "x%" G_GINT64_FORMAT ", expected frame %d of %dx%d", first, first + (int) frames->shape[2] - 1,
                 frames->shape[4], frames->shape[3], g->frames_out, g->r.width, g->r.height);
    return FALSE;
  }
  g->chunk = hv_vae_frames_to_u8 (frames, error);
  if (g->chunk)
    g->frames_decoded += (int) frames->shape[2];
  return g->chunk != NULL;
}

gboolean
hv_generation_next_frame (HvGeneration *g, const guint8 **rgb, int *stride, GError **error)
{
  g_return_val_if_fail (g && rgb, FALSE);
  *rgb = NULL;
  if (g->state == GEN_FINISHED)
    return FALSE;
  if (g->state == GEN_NEW) {
    g->state = GEN_FINISHED;          /* until prepare succeeds */
    if (!prepare (g, error))
      return FALSE;
    g->state = GEN_DECODING;
  }
  while (!g->chunk || g->chunk_pos >= g->chunk->shape[0]) {
    GError *err = NULL;
    if (!next_chunk (g, &err)) {
      g->state = GEN_FINISHED;
      g_clear_pointer (&g->vs, hv_vae_stream_free);
      g_clear_pointer (&g->chunk, hv_tensor_free);
      if (err) {
        g_propagate_error (error, err);
        return FALSE;
      }
      if (g->frames_out != g->r.num_frames) {
        g_set_error (error, HV_ERROR, HV_ERROR_FAILED, "the VAE produced %d frames, expected %d",
                     g->frames_out, g->r.num_frames);
        return FALSE;
      }
      progress (g, HV_STAGE_DONE, g->frames_out, g->r.num_frames, 0);
      return FALSE;
    }
  }
  const int64_t H = g->chunk->shape[1], W = g->chunk->shape[2];
  *rgb = (const guint8 *) g->chunk->data + (gsize) g->chunk_pos * H * W * 3;
  if (stride)
    *stride = (int) W * 3;
  g->chunk_pos++;
  g->frames_out++;
  /* frames come in chunks: the rate is the VAE's (frames decoded so far), not the hand-out's */
  const double per_frame = (g_get_monotonic_time () - g->decode_t0) / 1e6 / g->frames_decoded;
  progress (g, HV_STAGE_DECODE, g->frames_out, g->r.num_frames, per_frame * (g->r.num_frames - g->frames_decoded));
  return TRUE;
}

gboolean
hv_engine_generate (HvEngine *e, const HvRequest *r, HvProgressFunc on_progress, HvFrameFunc on_frame,
                    gpointer user_data, const volatile gint *cancel, int64_t *seed_used, GError **error)
{
  g_return_val_if_fail (e && r && on_frame, FALSE);
  g_autoptr(HvGeneration) g = hv_generation_new (e, r, on_progress, user_data, cancel, error);
  if (!g)
    return FALSE;
  if (seed_used)
    *seed_used = g->seed;
  const guint8 *rgb;
  int stride, index = 0;
  GError *err = NULL;
  while (hv_generation_next_frame (g, &rgb, &stride, &err))
    if (!on_frame (index++, rgb, r->width, r->height, stride, user_data))
      return TRUE;   /* the caller stopped it */
  if (err) {
    g_propagate_error (error, err);
    return FALSE;
  }
  return TRUE;
}
