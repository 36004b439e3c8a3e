/* hv-tiny.h — the built-in tiny model (`model=tiny`): HunyuanVideo's real architecture at tiny
 * widths with deterministic random weights made in memory, so the pipeline, the element and the
 * examples run anywhere without downloading anything. It makes abstract moving texture, not what
 * the prompt says.
 *
 * Every part is built by the same constructors as real weights, from an HvStore of host tensors
 * named as in the official checkpoints:
 *   DiT   hidden 64 (2 heads x 32, RoPE [8, 12, 12]), 2 double + 2 single blocks, token refiner
 *         2 blocks, text dims 64 / 32, guidance embedding              (hv_dit_new)
 *   VAE   884-16c causal 3D VAE, decoder only, block_out [8, 16, 16, 32], 1 layer per block,
 *         sample_tsize 16 so that temporal tiling streams even a 17-frame clip  (hv_vae_new_from_store)
 *   text  a 4-layer Llama (hidden 64, GQA 4/2 heads) and a 2-layer CLIP (hidden 32) over the
 *         byte vocabulary of hv-byte-tokenizer.h              (hv_llama/hv_clip_new_from_store)
 * Weights: N(0, 1/fan_in) for Linear/Conv weights, N(0, 1) for embedding tables, norm weights 1,
 * biases 0, drawn with torch's CPU generator seeded per tensor name (so they do not depend on
 * the order of creation). DiT and text weights are bf16 like the release, the VAE f32. */
#pragma once
#include "hv-dit.h"
#include "hv-vae.h"
#include "text/hv-text.h"

G_BEGIN_DECLS

/* Natural size of the tiny model (hv_engine_fill_defaults; the element's property docs). */
#define HV_TINY_WIDTH 128
#define HV_TINY_HEIGHT 96
#define HV_TINY_FRAMES 17
#define HV_TINY_STEPS 4
#define HV_TINY_TEXT_LEN 64    /* byte ids after the template crop (the real model: 256 tokens) */

/* The DiT weights (official names; caller frees the store after the DiT) and its config. */
HvStore *hv_tiny_dit_store (GError **error);
void     hv_tiny_dit_config (HvDitConfig *cfg);
HvVae   *hv_tiny_vae_new (HvBackend *b, GError **error);

typedef struct _HvTinyText HvTinyText;
HvTinyText *hv_tiny_text_new (HvBackend *b, GError **error);
/* hv_text_encode for the tiny encoders: same output layout (batch [negative, positive] with a
 * negative prompt), L = HV_TINY_TEXT_LEN. */
gboolean    hv_tiny_text_encode (HvTinyText *t, const char *prompt, const char *negative_prompt,
                                 HvPromptTemplate tmpl, HvTextEmbeds *out, GError **error);
void        hv_tiny_text_free (HvTinyText *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvTinyText, hv_tiny_text_free)

G_END_DECLS
