/* hv-dit.h — HunyuanVideo's diffusion transformer (HYVideoDiffusionTransformer) on any backend.
 *
 * The structure (widths, depths, channels, patch, text dims, guidance embedding) is read from
 * the checkpoint tensors; what the tensors cannot say (RoPE axis dims and theta, and the head
 * count when the checkpoint has no QK-norm weights) comes from an HvDitConfig, whose defaults
 * are the released 13B model: 24 heads, rope [16, 56, 56], theta 256.
 *
 * Weights are used in place in their stored dtype (bf16, f16, fp8 with per-tensor scale, f32):
 * on the CPU they stay in the mapped file. Activations are f32 and come from an arena (one
 * backend block, hv-arena.h) owned by the DiT, sized from the token count before the first op
 * and reused by every later forward of that size: no allocation per step. Peak activation memory
 * (hv_dit_activation_bytes) is, to leading order, 6 x B x (img + text tokens) x hidden x 4 bytes
 * (a block's input, the normed input, q, k, v, the attention output) plus the MLP chunk buffers
 * and, for the double blocks, the image rows' normed input. */
#pragma once
#include "hv-arena.h"
#include "hv-backend.h"
#include "loaders/hv-store.h"

G_BEGIN_DECLS

typedef struct {
  int heads_num;        /* 0 = from the checkpoint (hidden / q_norm width) or hidden / 128 */
  int rope_dim[3];      /* t, h, w axis dims; sum must equal the head dim */
  float rope_theta;
} HvDitConfig;

/* The structure found in the checkpoint (read-only, filled by hv_dit_new). */
typedef struct {
  int hidden, heads, head_dim, mlp_hidden;
  int in_channels, out_channels, patch[3];
  int depth_double, depth_single, depth_refiner;
  int text_dim, text_dim_2, freq_dim;
  gboolean guidance_embed;
  int rope_dim[3];
  float rope_theta;
} HvDitInfo;

typedef struct _HvDit HvDit;

/* Called with every intermediate the forward pass produces, named as in the forward_B fixture
 * without the "mid." prefix ("vec", "double0.img_q_rope", "single1.x", ...). `t` lives on the
 * backend and is valid only during the call. Capturing costs a few copies; leave it unset in
 * production. */
typedef void (*HvDitCaptureFunc) (const char *name, const HvTensor *t, gpointer user_data);

/* Defaults of the released model: heads from the checkpoint, rope [16, 56, 56], theta 256. */
void     hv_dit_config_init (HvDitConfig *cfg);
/* Reads heads_num, rope_dim_list / rope_axes_dim and rope_theta from a JSON config (the official
 * constructor keys at the top level or under "model", "generator_config.model",
 * "official_constructor", or diffusers' transformer config.json). Keys absent keep their value. */
gboolean hv_dit_config_load (HvDitConfig *cfg, const char *json_path, GError **error);

/* A DiT over `weights` (official tensor names; the store must outlive the DiT). cfg NULL =
 * defaults. Checks every tensor's presence and shape; the message names what is wrong. */
HvDit   *hv_dit_new (HvStore *weights, const HvDitConfig *cfg, HvBackend *b, GError **error);
/* Opens a DiT checkpoint: a weights file (safetensors, sharded index, .pt; official or
 * diffusers names; fp8 with its NAME_map file beside it) or a model folder in a layout
 * hv_model_paths_detect knows, via the loaders' hv_dit_load (the name is taken there). cfg
 * NULL: the diffusers transformer config.json of the layout, or a dit_config.json / config.json
 * with RoPE keys beside the file, else the defaults. The DiT owns the store. */
HvDit   *hv_dit_open (const char *path, const HvDitConfig *cfg, HvBackend *b, GError **error);
void     hv_dit_free (HvDit *d);
const HvDitInfo *hv_dit_info (HvDit *d);
HvBackend *hv_dit_backend (HvDit *d);
void     hv_dit_set_capture (HvDit *d, HvDitCaptureFunc func, gpointer user_data);
/* The MLPs run over chunks of this many tokens (default 4096; <= 0 restores it): smaller saves
 * memory ([chunk, 4 * hidden] buffers instead of [tokens, 4 * hidden]), larger may be faster. */
void     hv_dit_set_row_chunk (HvDit *d, int rows);

/* Bytes of the activation arena a forward with batch B, img_tokens Ni = (T/pt)(H/ph)(W/pw) and
 * text_tokens L needs with the current row chunk and capture setting: the exact peak of its
 * bump pointer (checked by test-arena). With N = Ni + L, C = hidden, M = MLP width and
 * r = min(tokens, row chunk) (B x tokens when capturing), in f32 elements, each tensor rounded
 * up to 256 bytes, the largest phases are
 *   double block  img + txt (BNC) + attn, q, k, v (4 BNC) + the normed img rows (B Ni C)
 *                 then, in place of attn..., the MLP chunk: r(C + M + C)
 *   single block  its input, the normed input, attn, q, k, v: 6 BNC, or in place of q, k, v
 *                 the MLP chunk r M + r (C + M) + r C
 * plus a few [B, k C] modulation vectors and, while img + txt become the single blocks' input,
 * 2 BNC. For long sequences this is 6 x B x N x C x 4 bytes (1.9 GiB at 480x848x65, B = 1).
 * The forward grows the arena to this size when needed; it never shrinks. */
gsize    hv_dit_activation_bytes (HvDit *d, int64_t B, int64_t img_tokens, int64_t text_tokens);
/* on = TRUE (default): activations from the arena. FALSE: each one allocated on its own from
 * the backend, as without an arena (for comparisons; slower, same results). */
void     hv_dit_set_arena (HvDit *d, gboolean on);
/* Gives back the activation arena and the cached RoPE tables (e.g. after the denoise loop, so
 * that the VAE can use the memory); the next forward makes them again. */
void     hv_dit_trim_memory (HvDit *d);
/* The arena's use: capacity, peak, and the fallbacks (tensors that did not fit; 0 when the
 * sizing is right). */
void     hv_dit_arena_stats (HvDit *d, HvArenaStats *st);
void     hv_dit_clear_arena_stats (HvDit *d);

/* One forward pass: out [B, C_out, T, H, W] (f32, on the backend, allocated by the caller) =
 * velocity for x [B, C_in, T, H, W] (f32 on the backend) at timesteps t[B] (0..1000) with
 * guidance[B] (embedded guidance × 1000; NULL only for a model without guidance embedding),
 * text_states [B, L, text_dim] (f32 on the backend), text_mask [B, L] (host, 1 = valid; valid
 * tokens first, as the tokenizer pads on the right) and text_states_2 [B, text_dim_2].
 * The mask follows upstream exactly: the token refiner uses it element-wise, the joint
 * attention takes the first sum(mask) text tokens as valid. RoPE tables are cached per latent
 * size, so one HvDit must not run two forwards at once. */
gboolean hv_dit_forward (HvDit *d, HvTensor *out, const HvTensor *x, const float *t,
                         const float *guidance, const HvTensor *text_states,
                         const int32_t *text_mask, const HvTensor *text_states_2, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvDit, hv_dit_free)

G_END_DECLS
