/* hv-clip.h — the CLIP text encoder (CLIP-L, text_encoder_2 of HunyuanVideo).
 *
 * HF CLIPTextModel: x = token_embedding[ids] + position_embedding[0..L-1]; per layer (pre-LN)
 *   x += out_proj(attn(LN1(x)));  x += fc2(act(fc1(LN2(x))))
 * with a causal + key-padding mask; last = final_layer_norm(x); pooler_output =
 * last[b, eos position]. The EOS position is picked as transformers does: config
 * eos_token_id == 2 (the legacy value of the real CLIP-L config) means argmax(ids) (the
 * first <|endoftext|>, the largest id), otherwise the first position of eos_token_id
 * (position 0 when absent). */
#pragma once
#include "hv-backend.h"
#include "hv-tensor.h"
#include "loaders/hv-store.h"
#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  int vocab_size;
  int hidden_size;
  int intermediate_size;
  int n_layers;
  int n_heads;
  int max_position_embeddings;
  float layer_norm_eps;
  HvUnary act;
  int eos_token_id;
} HvClipConfig;

typedef struct _HvClip HvClip;

/* Reads a HF config.json (CLIPTextConfig, or a CLIPConfig's "text_config"). */
gboolean hv_clip_config_load (const char *config_json, HvClipConfig *cfg, GError **error);

/* Opens the encoder (folder with config.json + weights, or a weights file; keys with or
 * without the "text_model." prefix). */
HvClip  *hv_clip_new (const char *path, HvBackend *backend, GError **error);
/* The same from an open store (taken over, freed with the model; also on error) and a config
 * (copied): for weights made in memory. */
HvClip  *hv_clip_new_from_store (HvStore *store, const HvClipConfig *cfg, HvBackend *backend,
                                 GError **error);
void     hv_clip_free (HvClip *m);
const HvClipConfig *hv_clip_get_config (const HvClip *m);

/* The position pooled for one row of ids (see above). */
int      hv_clip_pooled_index (const HvClipConfig *cfg, const int32_t *ids, int L);

/* Called with hidden state `index` (0 = embeddings, i = output of layer i-1, before the
 * final LayerNorm); valid only during the call. Return FALSE to stop. */
typedef gboolean (*HvClipHiddenFunc) (int index, const HvTensor *hidden, gpointer user_data);

/* Runs ids[B*L] with mask[B*L] (1 = real; NULL = all real). Returns pooler_output [B, hidden]
 * f32 on the backend. When last_hidden is not NULL it receives final_layer_norm(x) [B, L,
 * hidden] (caller frees). pooled_index (B entries) may be NULL. */
HvTensor *hv_clip_forward (HvClip *m, const int32_t *ids, const int32_t *mask, int B, int L,
                           HvClipHiddenFunc hidden_cb, gpointer user_data, HvTensor **last_hidden,
                           int *pooled_index, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvClip, hv_clip_free)

G_END_DECLS
