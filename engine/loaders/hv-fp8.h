/* hv-fp8.h — fp8 checkpoints as the official code loads them: `X_fp8.pt` holds float8_e4m3fn
 * weights for the Linear layers of the double/single blocks; `X_fp8_map.pt` (or the
 * .safetensors copy) maps each such module name ("double_blocks.0.img_attn_qkv") to a 0-d
 * scale. Weights stay fp8 in memory; the scale goes into HvTensor.scale (real value = fp8 ×
 * scale) and the linear op applies it. */
#pragma once
#include "hv-store.h"

G_BEGIN_DECLS

/* The map file beside a weights file: "X_fp8.pt" → "X_fp8_map.pt" (same for .safetensors)
 * when it exists, else NULL. */
char     *hv_fp8_map_path_for (const char *weights_path);
/* TRUE when `s` holds fp8 tensors. */
gboolean  hv_store_has_fp8 (HvStore *s);
/* Applies `map` (module name or tensor name → scale) to the fp8 weights of `s` (official
 * names). Every map entry must find an fp8 weight and every fp8 tensor must get a finite
 * positive scale; otherwise one error lists all of them. Returns the number of weights scaled. */
gboolean  hv_store_apply_fp8_map (HvStore *s, HvStore *map, guint *n_scaled, GError **error);

G_END_DECLS
