/* hv-vae.h — HunyuanVideo's causal 3D VAE (upstream AutoencoderKLCausal3D, "884-16c-hy"):
 * latents -> video (decoder) and video -> latent moments (encoder), on any HvBackend.
 *
 * Loading: a folder with config.json (upstream or diffusers AutoencoderKLHunyuanVideo keys)
 * and one weights file (diffusion_pytorch_model.safetensors, vae_weights.safetensors,
 * model.safetensors, pytorch_model.pt, vae_weights.pt — tried in that order), or a weights
 * file with config.json beside it. Official and diffusers names are identical for this model;
 * a "vae." (or any other common) prefix in front of every name is accepted, as load_vae does.
 *
 * Levels:
 *  - hv_vae_decode_z: vae.decode(z).sample — z is UNscaled (latents / scaling_factor); the raw
 *    decoder output, nominally [-1, 1], not clamped.
 *  - hv_vae_decode: what the pipeline does after denoising: z = latents / scaling_factor
 *    (+ shift_factor when the config has one), decode, image = clamp(x / 2 + 0.5, 0, 1).
 *  - hv_vae_frames_to_u8: save_videos_grid's uint8 frames: (clamp(image,0,1) * 255) truncated.
 * Every decode result is a host f32 tensor [B, 3, 1 + tc*(T-1), H*sc, W*sc].
 *
 * Tiling (HvVaeTiling) reproduces upstream's spatial_tiled_decode / temporal_tiled_decode
 * exactly (tile sizes, overlaps, blend_v/blend_h/blend_t in place in raster order, crops): the
 * official sampler decodes with tiling on, so use hv_vae_tiling_init() to match its output.
 *
 * Streaming (hv_vae_decode_stream) hands out finished frames one by one:
 *  - with temporal tiling (the official sampler's setting) each temporal window is decoded,
 *    blended with the previous one and its frames are handed out at once: the frames equal
 *    hv_vae_decode with the same tiling, memory is bounded by one window.
 *  - without tiling (NULL) it reproduces the untiled whole-clip decode exactly, in chunks of
 *    latent frames: the causal convs carry their last kt-1 input frames from chunk to chunk
 *    and the mid block (latent resolution, block-causal attention) runs once on the whole
 *    latent. GroupNorm is the one non-causal layer (its statistics span all frames), so the
 *    up-block GroupNorm statistics are first gathered by streaming passes, with whole-clip
 *    checkpoints kept within a cache budget (hv_vae_set_stream_cache) to avoid recomputation;
 *    the frames come in the last pass. Exact, memory bounded by chunk + budget, about 1.5x
 *    (everything cached) to several times (nothing cached) the compute of a whole decode.
 *    See hv-vae-stream.c. */
#pragma once
#include "hv-tensor.h"
#include "hv-backend.h"
#include "loaders/hv-store.h"
#include <glib.h>

G_BEGIN_DECLS

#define HV_VAE_MAX_BLOCKS 8

typedef struct {
  int in_channels;              /* 3 */
  int out_channels;             /* 3 */
  int latent_channels;          /* 16 */
  int n_blocks;                 /* len(block_out_channels) */
  int block_out_channels[HV_VAE_MAX_BLOCKS];
  int layers_per_block;
  int norm_num_groups;
  int sample_size;              /* tiling default (px) */
  int sample_tsize;             /* tiling default (frames) */
  int time_compression_ratio;   /* 4 (the only value upstream supports) */
  int spatial_compression_ratio;/* 8 */
  float scaling_factor;         /* 0.476986 */
  float shift_factor;           /* 0 unless the config has a non-zero shift_factor */
  gboolean mid_block_add_attention;
} HvVaeConfig;

typedef struct _HvVae HvVae;

/* Upstream's tiling knobs (AutoencoderKLCausal3D attributes of the same names). */
typedef struct {
  gboolean spatial;             /* use_spatial_tiling */
  gboolean temporal;            /* use_temporal_tiling */
  int tile_sample_min_size;     /* px, default config sample_size (256 for the real VAE) */
  int tile_latent_min_size;     /* latent px, default int(sample_size / 2^(n_blocks-1)) */
  int tile_sample_min_tsize;    /* frames, default config sample_tsize (64) */
  int tile_latent_min_tsize;    /* latent frames, default sample_tsize / time_compression (16) */
  double tile_overlap_factor;   /* 0.25 */
} HvVaeTiling;

/* A finished frame: host f32 [3, H, W], the pipeline's image in [0, 1] (see hv_vae_decode).
 * `index` counts frames of the clip from 0. The tensor is only valid during the call. */
typedef void (*HvVaeFrameFunc) (int index, const HvTensor *frame, gpointer user_data);

/* Debug hook: called with every named intermediate of an untiled decode/encode ("z" (host,
 * hv_vae_decode only), "dec.in_post_quant_conv", "dec.conv_in",
 * "dec.mid.resnet0", "dec.mid.attn0" ([B, T*H*W, C]), "dec.mid", "dec.upN.before_upsample",
 * "dec.upN", "decoded"; "enc.conv_in", "enc.downN", "enc.mid", "enc.conv_out", "moments").
 * The tensor lives on the backend and is only valid during the call. */
typedef void (*HvVaeProbe) (const char *name, const HvTensor *t, gpointer user_data);

/* Folder (config.json + weights) or weights file (config.json beside it). */
HvVae      *hv_vae_new_from_path (const char *dir_or_file, HvBackend *backend, GError **error);
/* Explicit config.json and weights file. */
HvVae      *hv_vae_new_from_files (const char *config_json, const char *weights, HvBackend *backend,
                                   GError **error);
/* From an open store (taken over, freed with the VAE; also on error) and a config (copied):
 * for weights made in memory (the built-in tiny model, random-weight benchmarks). Tensors
 * under the official names (an optional common prefix is accepted). */
HvVae      *hv_vae_new_from_store (HvStore *store, const HvVaeConfig *cfg, HvBackend *backend,
                                   GError **error);
void        hv_vae_free (HvVae *vae);
const HvVaeConfig *hv_vae_get_config (const HvVae *vae);
/* FALSE when the weights file holds only the decoder (encode then fails). */
gboolean    hv_vae_has_encoder (const HvVae *vae);
void        hv_vae_set_probe (HvVae *vae, HvVaeProbe probe, gpointer user_data);
/* Latent frames per chunk of the exact (untiled) stream; default 1. */
void        hv_vae_set_stream_chunk (HvVae *vae, int latent_frames);
/* Bytes of whole-clip checkpoints the exact stream may keep (default 1 GiB; 0 = recompute). */
void        hv_vae_set_stream_cache (HvVae *vae, gsize bytes);

/* Parses a config.json. */
gboolean    hv_vae_config_load (HvVaeConfig *cfg, const char *path, GError **error);

/* Upstream enable_tiling() values for this model (both spatial and temporal on). */
void        hv_vae_tiling_init (const HvVae *vae, HvVaeTiling *tiling);
/* Checks the knobs: overlap in [0, 1), a step of at least one latent, and tiles that cover the
 * frame exactly (kept sample px == latent step x spatial factor; same in time), which upstream's
 * defaults satisfy. */
gboolean    hv_vae_tiling_validate (const HvVae *vae, const HvVaeTiling *tiling, GError **error);

/* Output frame count for `latent_frames` latent frames: 1 + tc * (T - 1). */
int         hv_vae_frames_for_latents (const HvVae *vae, int latent_frames);

/* vae.decode(z).sample: z [B, latent_channels, T, h, w] (host or backend, f32), unscaled. */
gboolean    hv_vae_decode_z (HvVae *vae, const HvTensor *z, const HvVaeTiling *tiling_or_null,
                             HvTensor **decoded_out, GError **error);
/* Pipeline decode: latents as the DiT produces them (scaled). Out: image in [0, 1]. */
gboolean    hv_vae_decode (HvVae *vae, const HvTensor *latents, const HvVaeTiling *tiling_or_null,
                           HvTensor **video_out, GError **error);
/* Same result as hv_vae_decode (batch 1), frame by frame (see the top of this file). `cancel`
 * (may be NULL) is read between chunks; when it is non-zero the call fails with
 * HV_ERROR_CANCELLED. */
gboolean    hv_vae_decode_stream (HvVae *vae, const HvTensor *latents,
                                  const HvVaeTiling *tiling_or_null, HvVaeFrameFunc on_frame,
                                  gpointer user_data, const volatile int *cancel, GError **error);

/* The stream above, pulled one chunk at a time in the caller's thread (the GStreamer element's
 * streaming thread): hv_vae_decode_stream is a loop over it. new checks and uploads the latents;
 * each next decodes the next chunk (a temporal window, a chunk of latent frames, or the whole
 * clip when it fits one tile) and returns TRUE with *frames = host f32 [1, 3, n, H, W] in
 * [0, 1] (caller frees) and *first = the clip index of its first frame; FALSE at the end
 * (error unset) or on failure. `cancel` is read before every chunk (HV_ERROR_CANCELLED). The
 * latents may be freed after new; the VAE must outlive the stream. */
typedef struct _HvVaeStream HvVaeStream;
HvVaeStream *hv_vae_stream_new (HvVae *vae, const HvTensor *latents, const HvVaeTiling *tiling_or_null,
                                const volatile int *cancel, GError **error);
gboolean    hv_vae_stream_next (HvVaeStream *s, HvTensor **frames, int *first, GError **error);
void        hv_vae_stream_free (HvVaeStream *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvVaeStream, hv_vae_stream_free)

/* image [B, 3, T, H, W] host f32 in [0, 1] (B == 1) -> u8 [T, H, W, 3] as save_videos_grid. */
HvTensor   *hv_vae_frames_to_u8 (const HvTensor *video, GError **error);
/* One streamed frame [3, H, W] -> dst (H * W * 3 bytes, RGB interleaved). */
void        hv_vae_frame_to_u8 (const HvTensor *frame, guint8 *dst);

/* encoder + quant_conv: video [B, 3, T, H, W] in [-1, 1] -> moments [B, 2*latent, T', H', W']
 * (host f32), T' = (T-1)/tc + 1, H' = ceil(H / sf). With a tiling, upstream's encode rules:
 * temporal_tiled_encode when temporal tiling is on and T > tile_sample_min_tsize (its windows
 * spatially tiled when wider than tile_sample_min_size), else spatial_tiled_encode when spatial
 * tiling is on and H or W > tile_sample_min_size, else the untiled encode. The knobs must tile
 * the input (sample step == kept latents x factor; hv_vae_tiling_init's values do). */
gboolean    hv_vae_encode (HvVae *vae, const HvTensor *video, const HvVaeTiling *tiling_or_null,
                           HvTensor **moments_out, GError **error);
/* DiagonalGaussianDistribution of host moments: mean, logvar (clamped to [-30, 20]) and
 * std = exp(0.5 logvar); any output may be NULL. */
void        hv_vae_posterior (const HvTensor *moments, HvTensor **mean, HvTensor **logvar,
                              HvTensor **std);
/* mode() * scaling_factor (after subtracting shift_factor): latents for the DiT. Host. */
HvTensor   *hv_vae_latents_from_moments (const HvVae *vae, const HvTensor *moments);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvVae, hv_vae_free)

G_END_DECLS
