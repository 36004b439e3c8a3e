/* hv-names.h — DiT tensor names: the official HunyuanVideo names (what the DiT code uses) and
 * the diffusers HunyuanVideoTransformer3DModel names, as rules generated per block.
 *
 * A rule gives one official tensor and the diffusers tensors it is made of:
 *  COPY         one part, same layout;
 *  ROWS         parts concatenated along dim 0 in order (q, k, v[, mlp] into a fused qkv /
 *               single-block linear1);
 *  SWAP_HALVES  one part whose two halves along dim 0 are swapped (the final layer's
 *               adaLN: diffusers norm_out.linear stores [scale; shift], official [shift; scale]). */
#pragma once
#include "hv-store.h"

G_BEGIN_DECLS

typedef enum { HV_NAME_COPY, HV_NAME_ROWS, HV_NAME_SWAP_HALVES } HvNameOp;

#define HV_NAME_MAX_PARTS 4

typedef struct {
  char *official;
  HvNameOp op;
  guint n_parts;
  char *parts[HV_NAME_MAX_PARTS];
} HvNameRule;

typedef struct _HvNameMap HvNameMap;

/* The rules for a DiT with these block counts (guidance_in included; it is optional). */
HvNameMap        *hv_dit_name_map_new (int n_double, int n_single, int n_refiner);
void              hv_name_map_free (HvNameMap *m);
guint             hv_name_map_size (const HvNameMap *m);
const HvNameRule *hv_name_map_rule (const HvNameMap *m, guint i);
const HvNameRule *hv_name_map_by_official (const HvNameMap *m, const char *official);
/* The rule using diffusers tensor `name` and the part's index in it, or NULL. */
const HvNameRule *hv_name_map_by_part (const HvNameMap *m, const char *name, guint *part);
const char       *hv_name_op_str (HvNameOp op);   /* "copy", "rows", "swap_halves" (as dit_config.json) */

G_DEFINE_AUTOPTR_CLEANUP_FUNC (HvNameMap, hv_name_map_free)

typedef enum { HV_DIT_NAMES_UNKNOWN, HV_DIT_NAMES_OFFICIAL, HV_DIT_NAMES_DIFFUSERS } HvDitNames;

HvDitNames  hv_dit_names_detect (HvStore *s);
const char *hv_dit_names_str (HvDitNames n);
/* Number of blocks = highest index + 1 of `prefix`N. (e.g. "double_blocks.") */
int         hv_store_count_blocks (HvStore *s, const char *prefix);

/* Takes `s` (always consumed) and returns a store with official DiT names: a known wrapper
 * prefix ("model.diffusion_model.", "module.") is stripped, diffusers names are converted
 * (fused q/k/v rows copied together in the stored dtype, final adaLN halves swapped), other
 * tensors are shared without copying. Tensors no rule uses keep their name (the validator
 * reports them). `names_out` (may be NULL) says what the input used. */
HvStore    *hv_dit_store_to_official (HvStore *s, HvDitNames *names_out, GError **error);

G_END_DECLS
