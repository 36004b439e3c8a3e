/* hv-rope.h — the DiT's 3D rotary position embedding tables, computed in the engine.
 *
 * Same values as upstream get_nd_rotary_pos_embed(rope_dim_list, [T', H', W'], theta,
 * use_real=True): token n = (t*H' + h)*W' + w; for each axis a with d_a dims,
 * f_j = 1 / theta^(2j/d_a) (fp32), angle = pos_a * f_j, and cos/sin are each repeated twice
 * (pairs 2j, 2j+1 share an angle); the three axes are concatenated t, h, w. The result feeds
 * hv_op_rope (..., HV_ROPE_INTERLEAVED). */
#pragma once
#include "hv-tensor.h"

G_BEGIN_DECLS

/* Host f32 tables cos, sin [T'*H'*W', d_t + d_h + d_w]. Every d must be even and > 0, every
 * grid size > 0 and theta > 0; otherwise FALSE with HV_ERROR_INVALID. */
gboolean hv_rope_3d (const int rope_dim[3], float theta, int64_t t, int64_t h, int64_t w,
                     HvTensor **cos_out, HvTensor **sin_out, GError **error);

G_END_DECLS
