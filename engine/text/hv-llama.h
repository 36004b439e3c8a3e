/* hv-llama.h — the Llama text encoder of HunyuanVideo (the language model of
 * llava-llama-3-8b, used as a feature extractor).
 *
 * Structure (HF LlamaModel): x = embed_tokens[ids]; per layer
 *   x += o_proj(attn(rope(q_proj(rms(x))), rope(k_proj(rms(x))), v_proj(rms(x))))
 *   x += down_proj(silu(gate_proj(rms(x))) * up_proj(rms(x)))
 * with GQA, RoPE in the rotate_half convention and a causal + key-padding mask.
 *
 * HunyuanVideo takes hidden_states[-(skip+1)] (skip = hidden_state_skip_layer = 2), i.e. the
 * residual stream after n_layers - skip layers, with no final norm, then drops the first
 * crop_start (template) positions. The last `skip` layers never influence that output, so the
 * encoder can be opened without them (less memory, less work).
 *
 * Weights are used in their stored dtype (bf16/f16) straight from the mapped checkpoint. */
#pragma once
#include "hv-backend.h"
#include "hv-tensor.h"
#include "loaders/hv-store.h"
#include "hv-text-model.h"   /* hv_text_model_open, declared here before */
#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  HV_LLAMA_ROPE_DEFAULT,
  HV_LLAMA_ROPE_LINEAR,   /* inv_freq / factor */
  HV_LLAMA_ROPE_LLAMA3,   /* Llama 3.1 frequency-dependent scaling */
} HvLlamaRopeType;

typedef struct {
  int vocab_size;
  int hidden_size;
  int intermediate_size;
  int n_layers;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int max_position_embeddings;
  float rms_norm_eps;
  double rope_theta;
  HvLlamaRopeType rope_type;
  double rope_factor;             /* linear, llama3 */
  double rope_low_freq_factor;    /* llama3 */
  double rope_high_freq_factor;   /* llama3 */
  int rope_original_max_pos;      /* llama3 */
} HvLlamaConfig;

typedef struct _HvLlama HvLlama;

/* Reads a HF config.json (LlamaConfig; a Llava config's "text_config" is used when present).
 * Missing optional keys take transformers' LlamaConfig defaults. */
gboolean hv_llama_config_load (const char *config_json, HvLlamaConfig *cfg, GError **error);

/* The RoPE inverse frequencies [head_dim/2] computed as transformers does (fp32). */
void hv_llama_rope_inv_freq (const HvLlamaConfig *cfg, float *inv_freq);

/* Opens the encoder on `backend`. Key layouts accepted: bare LlamaModel ("layers.0..."),
 * LlamaForCausalLM ("model.layers..."), Llava ("language_model.model...",
 * "model.language_model..."). Only layers 0 .. n_layers-skip_last-1 are loaded and can run. */
HvLlama *hv_llama_new (const char *path, HvBackend *backend, int skip_last, GError **error);
/* The same from an open store (taken over, freed with the model; also on error) and a config
 * (copied): for weights made in memory. */
HvLlama *hv_llama_new_from_store (HvStore *store, const HvLlamaConfig *cfg, HvBackend *backend,
                                  int skip_last, GError **error);
void     hv_llama_free (HvLlama *m);
const HvLlamaConfig *hv_llama_get_config (const HvLlama *m);
/* How many decoder layers are loaded (n_layers - skip_last). */
int      hv_llama_n_loaded_layers (const HvLlama *m);

/* Called with hidden state `index` (0 = embeddings, i = output of layer i-1) as the forward
 * pass produces it; the tensor is only valid during the call. Return FALSE to stop. */
typedef gboolean (*HvLlamaHiddenFunc) (int index, const HvTensor *hidden, gpointer user_data);

/* Runs the embeddings and the first `n_run` layers over ids[B*L] (row-major [B, L]) with
 * mask[B*L] (1 = real token; NULL = all real), then the final RMSNorm when `final_norm`.
 * Returns [B, L, hidden] f32 on the backend. */
HvTensor *hv_llama_forward (HvLlama *m, const int32_t *ids, const int32_t *mask, int B, int L,
                            int n_run, gboolean final_norm, HvLlamaHiddenFunc hidden_cb,
                            gpointer user_data, GError **error);

/* HunyuanVideo's use: hidden_states[-(skip_layer+1)] (no final norm), then positions
 * crop_start..L-1. Returns [B, L - crop_start, hidden] f32 on the backend. */
HvTensor *hv_llama_encode (HvLlama *m, const int32_t *ids, const int32_t *mask, int B, int L,
                           int skip_layer, int crop_start, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvLlama, hv_llama_free)

G_END_DECLS
