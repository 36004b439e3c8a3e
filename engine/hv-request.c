/* hv-request.c — request defaults (the official sample_video.py defaults) and validation with
 * messages that state the rule. */
#include "hyvideo.h"
#include "hv-error.h"

const char *
hv_stage_name (HvStage s)
{
  switch (s) {
    case HV_STAGE_LOAD: return "load";
    case HV_STAGE_TEXT: return "text";
    case HV_STAGE_DENOISE: return "denoise";
    case HV_STAGE_DECODE: return "decode";
    case HV_STAGE_DONE: return "done";
  }
  return "unknown";
}

void
hv_engine_options_init (HvEngineOptions *o)
{
  *o = (HvEngineOptions) { .model = "tiny", .device = "cpu" };
}

void
hv_request_init (HvRequest *r)
{
  /* 0 for the sizes means "the model's default" (hv_engine_fill_defaults) */
  *r = (HvRequest) {
    .prompt = "",
    .negative_prompt = NULL,
    .seed = -1,
    .embedded_cfg_scale = 6.0,
    .guidance_bf16 = TRUE,
    .cfg_scale = 1.0,
    .flow_shift = 7.0,
    .flow_reverse = TRUE,
    .vae_tiling = TRUE,
  };
}

gboolean
hv_request_validate (const HvRequest *r, GError **error)
{
  if (r->width <= 0 || r->height <= 0 || r->width % 16 || r->height % 16) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "width and height must be positive multiples of 16 (the VAE works in 8×8 pixels "
                 "and the transformer in 2×2 latents), got %d×%d", r->width, r->height);
    return FALSE;
  }
  if (r->num_frames < 1 || (r->num_frames - 1) % 4) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                 "num-frames must be of the form 4k+1 (1, 5, 9, ..., 129: the VAE compresses time "
                 "by 4 and keeps the first frame), got %d", r->num_frames);
    return FALSE;
  }
  if (r->infer_steps < 1 || r->infer_steps > 1000) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "infer-steps must be between 1 and 1000, got %d",
                 r->infer_steps);
    return FALSE;
  }
  if (r->cfg_scale < 1.0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "cfg-scale must be >= 1 (1 = off), got %g", r->cfg_scale);
    return FALSE;
  }
  if (r->embedded_cfg_scale < 0.0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "embedded-cfg-scale must be >= 0, got %g",
                 r->embedded_cfg_scale);
    return FALSE;
  }
  if (r->flow_shift <= 0.0) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "flow-shift must be > 0, got %g", r->flow_shift);
    return FALSE;
  }
  if (!r->prompt) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "a prompt is required");
    return FALSE;
  }
  if (!g_utf8_validate (r->prompt, -1, NULL) ||
      (r->negative_prompt && !g_utf8_validate (r->negative_prompt, -1, NULL))) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "the prompt is not valid UTF-8 text");
    return FALSE;
  }
  return TRUE;
}
