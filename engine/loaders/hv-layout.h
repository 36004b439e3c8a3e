/* hv-layout.h — where a model's parts are, and whether their tensors are complete.
 *
 * Layouts users have:
 *  official:  <root>/hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt (or
 *             _fp8.pt + _fp8_map.pt), <root>/hunyuan-video-t2v-720p/vae/{config.json,
 *             pytorch_model.pt}, <root>/text_encoder/, <root>/text_encoder_2/ (the path may
 *             also name hunyuan-video-t2v-720p/ itself);
 *  diffusers: model_index.json, transformer/, vae/, text_encoder/, text_encoder_2/,
 *             tokenizer/, tokenizer_2/ (weights single-file or sharded with an index);
 *  single:    one DiT file (.pt or .safetensors, official or diffusers names, ComfyUI style).
 * Validation derives the DiT's shape config from the tensors themselves (hidden from
 * img_in.proj.weight, head_dim from the q-norm weight, depths by counting blocks, ...), checks
 * every expected tensor, and reports all missing, unexpected and mis-shaped ones in one error. */
#pragma once
#include "hv-store.h"
#include "hv-names.h"

G_BEGIN_DECLS

typedef enum {
  HV_LAYOUT_UNKNOWN,
  HV_LAYOUT_OFFICIAL,
  HV_LAYOUT_DIFFUSERS,
  HV_LAYOUT_SINGLE_FILE,
} HvLayout;

typedef struct {
  HvLayout layout;
  char *root;
  char *dit;              /* weights file (.pt, .safetensors or *.index.json) */
  char *dit_fp8_map;      /* scales for an fp8 DiT, or NULL */
  char *dit_config;       /* transformer/config.json (diffusers), or NULL */
  char *vae;              /* folder with config.json, or NULL */
  char *vae_weights;      /* file, or NULL */
  char *text_encoder;     /* folders, or NULL */
  char *text_encoder_2;
  char *tokenizer;
  char *tokenizer_2;
} HvModelPaths;

typedef enum {
  HV_LAYOUT_PREFER_FP8 = 1 << 0,   /* official layout with both: take the fp8 DiT */
} HvLayoutFlags;

const char   *hv_layout_str (HvLayout l);
/* Detects the layout of a folder or file. Parts that are absent stay NULL (the caller decides
 * what it needs); an unrecognisable path is an error. */
HvModelPaths *hv_model_paths_detect (const char *path, HvLayoutFlags flags, GError **error);
void          hv_model_paths_free (HvModelPaths *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvModelPaths, hv_model_paths_free)

/* The weights of a component folder (model.safetensors, diffusion_pytorch_model.safetensors,
 * pytorch_model.pt/.bin, their *.index.json, or the folder's only weights files); a file path
 * is returned as is. NULL with error when there are none. */
char         *hv_find_weights (const char *dir_or_file, GError **error);

/* Loads a DiT: any format, official or diffusers names (converted to official), fp8 scales
 * applied from `fp8_map` or the map found beside the file. */
HvStore      *hv_dit_load (const char *path, const char *fp8_map, GError **error);

/* ---- DiT shape config and validation ---- */
typedef struct {
  int hidden, heads, head_dim;
  int mlp_hidden, refiner_mlp_hidden;
  int n_double, n_single, n_refiner;
  int in_channels, out_channels, patch[3];
  int text_dim, text_dim_2, freq_dim;
  gboolean guidance_embed;
  gboolean heads_from_config;   /* heads came from a config file, not from the q-norm width */
} HvDitShape;

/* Derives the config from an official-name store; `config_json` (may be NULL): a diffusers
 * transformer config.json, the fixtures' dit_config.json or a manifest, used for the head
 * count and cross-checked. */
gboolean hv_dit_shape_derive (HvStore *s, const char *config_json, HvDitShape *cfg, GError **error);
/* Every expected tensor present with its shape, float dtype, nothing unexpected; fp8 only on
 * the Linear weights of double/single blocks. One error lists every problem. */
gboolean hv_dit_validate (HvStore *s, const HvDitShape *cfg, GError **error);
/* The expected names and shapes (for tests): calls `fn` for each. */
void     hv_dit_expected (const HvDitShape *cfg,
                          void (*fn) (const char *name, int ndim, const int64_t *shape, gpointer data),
                          gpointer data);

/* ---- other components, checked against their config.json ---- */
/* Causal 3D VAE (AutoencoderKLCausal3D config: block_out_channels, layers_per_block,
 * latent_channels, in/out_channels, mid_block_add_attention). */
gboolean hv_vae_validate (HvStore *s, const char *config_json, GError **error);
/* Llama (LlamaModel or LlamaForCausalLM names) or CLIP text model (with or without the
 * "text_model." prefix of a full CLIPModel); picks by the config's model_type. */
gboolean hv_text_validate (HvStore *s, const char *config_json, GError **error);

G_END_DECLS
