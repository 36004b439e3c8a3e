/* hv-vae-tiling.c — upstream's tiled decode and encode (AutoencoderKLCausal3D.
 * spatial_tiled_decode / temporal_tiled_decode and spatial_tiled_encode / temporal_tiled_encode),
 * reproduced exactly. Decode, in latent units in / sample units out:
 *  - spatial: latent tiles of tile_latent_min_size at a step of int(size * (1 - overlap)),
 *    each decoded whole; in raster order each decoded tile is blended IN PLACE with the
 *    (already blended) tile above (blend_v) and then the one to its left (blend_h) over
 *    E = int(tile_sample_min_size * overlap) px, then cropped to [:keep, :keep] with
 *    keep = tile_sample_min_size - E, and the crops are concatenated.
 *  - temporal: latent windows [i, i + tile_latent_min_tsize + 1) for i in steps of
 *    int(tsize * (1 - overlap)); each window is decoded (spatially tiled when it is wider than
 *    a tile), every window but the first drops its first frame, is blended with the previous
 *    (blended) window over E frames (blend_t) and keeps t_limit frames (the first window
 *    t_limit + 1).
 * Encode is the same walk with the roles of the sizes swapped (VaeGeom): sample tiles of
 * tile_sample_min_size px at a step of int(size * (1 - overlap)) px, each encoded (encoder +
 * quant_conv), blended over E = int(tile_latent_min_size * overlap) latents and cropped to
 * tile_latent_min_size - E; sample windows [i, i + tile_sample_min_tsize + 1) at a step of
 * int(tsize * (1 - overlap)) frames, blended over int(tile_latent_min_tsize * overlap) latent
 * frames, keeping tile_latent_min_tsize - E (the first window one more).
 * The blends only ever read the neighbour above, to the left or before, so frames can be
 * handed out window by window: that is what the tiled stream does. Blending and assembly run
 * on host copies of the processed tiles (3 or 2*latent channels, small next to the
 * activations). */
#include "hv-vae-private.h"
#include "hv-error.h"
#include <string.h>

/* host tile: f32 [1, C, T, H, W] */
#define DIM(t, i) ((t)->shape[(i)])

/* b[.., y, :] = a[.., Ha - E + y, :] * (1 - y/E) + b[.., y, :] * (y/E) for y < E, with
 * E = min(Ha, Hb, extent). axis: 2 = T (blend_t), 3 = H (blend_v), 4 = W (blend_h).
 * Weights are Python floats that torch rounds to fp32 before multiplying. */
static void
blend (const HvTensor *a, HvTensor *b, int axis, int extent)
{
  int64_t E = MIN (MIN (DIM (a, axis), DIM (b, axis)), (int64_t) extent);
  if (E <= 0)
    return;
  const float *A = a->data;
  float *Bd = b->data;
  /* view both as [outer, n_axis, inner]; the other dims must match */
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; i++)
    outer *= DIM (b, i);
  for (int i = axis + 1; i < 5; i++)
    inner *= DIM (b, i);
  const int64_t na = DIM (a, axis), nb = DIM (b, axis);
  for (int64_t y = 0; y < E; y++) {
    const float wa = (float) (1.0 - (double) y / (double) E);
    const float wb = (float) ((double) y / (double) E);
    for (int64_t o = 0; o < outer; o++) {
      const float *ar = A + (o * na + (na - E + y)) * inner;
      float *br = Bd + (o * nb + y) * inner;
      for (int64_t i = 0; i < inner; i++)
        br[i] = ar[i] * wa + br[i] * wb;
    }
  }
}

/* A host copy of frames [start, start + n) of a host tile. */
static HvTensor *
host_slice_t (const HvTensor *x, int64_t start, int64_t n)
{
  const int64_t C = DIM (x, 1), T = DIM (x, 2), HW = DIM (x, 3) * DIM (x, 4);
  const int64_t shape[5] = { 1, C, n, DIM (x, 3), DIM (x, 4) };
  HvTensor *y = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  if (!y)
    return NULL;
  for (int64_t c = 0; c < C; c++)
    memcpy ((float *) y->data + c * n * HW, (const float *) x->data + (c * T + start) * HW,
            (size_t) (n * HW) * sizeof (float));
  return y;
}

static gboolean
cancelled (const volatile int *cancel, GError **error)
{
  if (cancel && *cancel) {
    g_set_error (error, HV_ERROR, HV_ERROR_CANCELLED, "VAE decode cancelled");
    return TRUE;
  }
  return FALSE;
}

/* Where the tiles go, in the units of the input (in_*) and of the output (out_*): decode reads
 * latents and writes samples, encode the other way round. */
typedef struct {
  gboolean encode;
  int s_tile, s_step;       /* spatial tile and step (input px); tiling when h or w > s_tile */
  int s_blend, s_keep;      /* blend extent and crop (output px) */
  int t_tile, t_step;       /* temporal window - 1 and step (input frames); tiling when T > t_tile */
  int t_blend, t_keep;      /* blend extent and kept frames per window (output frames) */
} VaeGeom;

static void
geom_init (const HvVaeTiling *t, gboolean encode, VaeGeom *g)
{
  const double f = t->tile_overlap_factor;
  /* in = the side the tiles are cut from, out = the side they are blended on */
  const int s_in = encode ? t->tile_sample_min_size : t->tile_latent_min_size;
  const int s_out = encode ? t->tile_latent_min_size : t->tile_sample_min_size;
  const int t_in = encode ? t->tile_sample_min_tsize : t->tile_latent_min_tsize;
  const int t_out = encode ? t->tile_latent_min_tsize : t->tile_sample_min_tsize;
  g->encode = encode;
  g->s_tile = s_in;
  g->s_step = (int) (s_in * (1 - f));
  g->s_blend = (int) (s_out * f);
  g->s_keep = s_out - g->s_blend;
  g->t_tile = t_in;
  g->t_step = (int) (t_in * (1 - f));
  g->t_blend = (int) (t_out * f);
  g->t_keep = t_out - g->t_blend;
}

/* Output px for `n` input px: decode multiplies by the spatial factor; the encoder's stride-2
 * convs (replicate pad 1, kernel 3) give ceil(n / 2) per level. */
static int64_t
out_size (HvVae *vae, const VaeGeom *g, int64_t n)
{
  const int64_t sf = hv_vae_space_factor_ (vae);
  return g->encode ? (n + sf - 1) / sf : n * sf;
}

/* encoder + quant_conv on one video piece, as a host tensor. */
static HvTensor *
encode_piece (HvVae *vae, const HvTensor *x, GError **error)
{
  g_autoptr(HvTensor) m = hv_vae_encode_one_ (vae, x, FALSE, error);
  if (!m)
    return NULL;
  HvTensor *h = hv_backend_download (vae->backend, m);
  if (!h)
    hv_vae_oom_ (error, "an encoded tile");
  return h;
}

/* post_quant_conv + decoder on one latent piece, as a host tensor. */
static HvTensor *
decode_piece (HvVae *vae, const HvTensor *z, GError **error)
{
  g_autoptr(HvTensor) d = hv_vae_decode_one_ (vae, z, FALSE, error);
  if (!d)
    return NULL;
  HvTensor *h = hv_backend_download (vae->backend, d);
  if (!h)
    hv_vae_oom_ (error, "a decoded tile");
  return h;
}

static HvTensor *
process_piece (HvVae *vae, const VaeGeom *g, const HvTensor *x, GError **error)
{
  return g->encode ? encode_piece (vae, x, error) : decode_piece (vae, x, error);
}

/* spatial_tiled_decode of z [1, L, T, h, w] (backend) -> host [1, C, T', h*sf, w*sf], or
 * spatial_tiled_encode of a video [1, 3, T, H, W] -> host moments [1, 2L, T', H/sf, W/sf]. */
static HvTensor *
spatial_tiled (HvVae *vae, const HvTensor *z, const VaeGeom *g, const volatile int *cancel,
               GError **error)
{
  const int64_t h = DIM (z, 3), w = DIM (z, 4);
  const int tl = g->s_tile, step = g->s_step, E = g->s_blend;
  const int64_t keep = g->s_keep;
  const int64_t n_rows = (h + step - 1) / step, n_cols = (w + step - 1) / step;
  g_autoptr(GPtrArray) prev = g_ptr_array_new_with_free_func ((GDestroyNotify) hv_tensor_free);
  g_autoptr(HvTensor) out = NULL;
  int64_t out_h = 0, out_w = 0;

  for (int64_t r = 0; r < n_rows; r++) {
    g_autoptr(GPtrArray) cur = g_ptr_array_new_with_free_func ((GDestroyNotify) hv_tensor_free);
    int64_t col0 = 0;
    for (int64_t c = 0; c < n_cols; c++) {
      if (cancelled (cancel, error))
        return NULL;
      const int64_t i = r * step, j = c * step;
      g_autoptr(HvTensor) zt = hv_vae_slice_hw_ (vae, z, i, MIN ((int64_t) tl, h - i), j, MIN ((int64_t) tl, w - j));
      if (!zt) {
        hv_vae_oom_ (error, "a latent tile");
        return NULL;
      }
      HvTensor *tile = process_piece (vae, g, zt, error);
      if (!tile)
        return NULL;
      g_ptr_array_add (cur, tile);
      if (r > 0)
        blend (g_ptr_array_index (prev, c), tile, 3, E);
      if (c > 0)
        blend (g_ptr_array_index (cur, c - 1), tile, 4, E);
      if (!out) {
        /* tiles step by `keep` px (hv_vae_tiling_validate checks keep == step * sf, and the
         * reverse for encode), so the crops exactly fill the frame */
        out_h = out_size (vae, g, h);
        out_w = out_size (vae, g, w);
        const int64_t shape[5] = { 1, DIM (tile, 1), DIM (tile, 2), out_h, out_w };
        out = hv_tensor_new (HV_DTYPE_F32, 5, shape);
        if (!out) {
          hv_vae_oom_ (error, "the tiled video");
          return NULL;
        }
      }
      /* crop [:keep, :keep] into place */
      const int64_t th = MIN (keep, DIM (tile, 3)), tw = MIN (keep, DIM (tile, 4));
      const int64_t row0 = r * keep;
      if (row0 + th > out_h || col0 + tw > out_w || DIM (tile, 2) != DIM (out, 2)) {
        g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                     "VAE tiling: tile (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") does not fit the frame", r, c);
        return NULL;
      }
      const int64_t C = DIM (tile, 1), T = DIM (tile, 2), TH = DIM (tile, 3), TW = DIM (tile, 4);
      for (int64_t ct = 0; ct < C * T; ct++)
        for (int64_t y = 0; y < th; y++)
          memcpy ((float *) out->data + (ct * out_h + row0 + y) * out_w + col0,
                  (const float *) tile->data + (ct * TH + y) * TW, (size_t) tw * sizeof (float));
      col0 += tw;
      if (r == n_rows - 1 && c == n_cols - 1 && (row0 + th != out_h || col0 != out_w)) {
        g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                     "VAE tiling: the tiles do not cover the frame (check the tiling knobs)");
        return NULL;
      }
    }
    g_ptr_array_unref (prev);
    prev = g_steal_pointer (&cur);
  }
  return g_steal_pointer (&out);
}

/* One step of the tiled walk (see hv-vae-private.h): the next temporal window, blended with
 * the previous one, or the whole clip when there is no temporal tiling. */
static gboolean
tiled_next (HvVae *vae, const HvTensor *z, const VaeGeom *g, VaeTiledState *st, HvTensor **part,
            const volatile int *cancel, GError **error)
{
  *part = NULL;
  if (st->done)
    return TRUE;
  const int64_t T = DIM (z, 2), h = DIM (z, 3), w = DIM (z, 4);
  const gboolean spatial = g->s_tile > 0 && (h > g->s_tile || w > g->s_tile);

  if (!(g->t_tile > 0 && T > g->t_tile)) {
    st->done = TRUE;
    *part = spatial ? spatial_tiled (vae, z, g, cancel, error) : process_piece (vae, g, z, error);
    return *part != NULL;
  }

  const int step = g->t_step, E = g->t_blend;
  const int64_t keep = g->t_keep;
  const int64_t i = st->i;
  if (cancelled (cancel, error))
    return FALSE;
  const int64_t n = MIN ((int64_t) g->t_tile + 1, T - i);
  g_autoptr(HvTensor) zw = hv_vae_slice_t_ (vae, z, i, n);
  if (!zw)
    return hv_vae_oom_ (error, "a window of frames");
  g_autoptr(HvTensor) dec = spatial ? spatial_tiled (vae, zw, g, cancel, error) : process_piece (vae, g, zw, error);
  if (!dec)
    return FALSE;
  g_clear_pointer (&zw, hv_tensor_free);
  if (i > 0) {
    HvTensor *rest = host_slice_t (dec, 1, DIM (dec, 2) - 1);
    if (!rest)
      return hv_vae_oom_ (error, "a processed window");
    hv_tensor_free (dec);
    dec = rest;
    blend (st->prev, dec, 2, E);
  }
  const int64_t kept = MIN (i == 0 ? keep + 1 : keep, DIM (dec, 2));
  if (kept > 0 && !(*part = host_slice_t (dec, 0, kept)))
    return hv_vae_oom_ (error, "a processed window");
  g_clear_pointer (&st->prev, hv_tensor_free);
  st->prev = g_steal_pointer (&dec);
  st->i += step;
  st->done = st->i >= T;
  return TRUE;
}

/* Whether upstream's _decode / encode would tile this input with these knobs. */
static gboolean
geom_active (const VaeGeom *g, const HvTensor *x)
{
  return (g->t_tile > 0 && DIM (x, 2) > g->t_tile) ||
         (g->s_tile > 0 && (DIM (x, 3) > g->s_tile || DIM (x, 4) > g->s_tile));
}

/* The knobs as a geometry; a disabled direction of tiling gets a 0 tile (never tiles). */
static void
geom_for (const HvVaeTiling *t, gboolean encode, VaeGeom *g)
{
  geom_init (t, encode, g);
  if (!t->spatial)
    g->s_tile = 0;
  if (!t->temporal)
    g->t_tile = 0;
}

gboolean
hv_vae_tiled_next_ (HvVae *vae, const HvTensor *z, const HvVaeTiling *t, VaeTiledState *st,
                    HvTensor **part, const volatile int *cancel, GError **error)
{
  VaeGeom g;
  geom_for (t, FALSE, &g);
  return tiled_next (vae, z, &g, st, part, cancel, error);
}

gboolean
hv_vae_tiling_active_ (HvVae *vae, const HvTensor *z, const HvVaeTiling *t)
{
  (void) vae;
  if (!t)
    return FALSE;
  VaeGeom g;
  geom_for (t, FALSE, &g);
  return geom_active (&g, z);
}

gboolean
hv_vae_encode_tiling_active_ (HvVae *vae, const HvTensor *x, const HvVaeTiling *t)
{
  (void) vae;
  if (!t)
    return FALSE;
  VaeGeom g;
  geom_for (t, TRUE, &g);
  return geom_active (&g, x);
}

/* temporal_tiled_encode / spatial_tiled_encode: the windows' kept latent frames concatenated. */
HvTensor *
hv_vae_tiled_encode_ (HvVae *vae, const HvTensor *x, const HvVaeTiling *t, GError **error)
{
  VaeGeom g;
  geom_for (t, TRUE, &g);
  VaeTiledState st = { 0 };
  g_autoptr(GPtrArray) parts = g_ptr_array_new_with_free_func ((GDestroyNotify) hv_tensor_free);
  int64_t n = 0;
  gboolean ok = TRUE;
  while (ok && !st.done) {
    HvTensor *part = NULL;
    ok = tiled_next (vae, x, &g, &st, &part, NULL, error);
    if (ok && part) {
      g_ptr_array_add (parts, part);
      n += DIM (part, 2);
    }
  }
  hv_vae_tiled_state_clear_ (&st);
  if (!ok)
    return NULL;
  if (parts->len == 0) {   /* cannot happen: the first window keeps at least one frame */
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "VAE tiled encode produced no frames");
    return NULL;
  }
  const HvTensor *p0 = g_ptr_array_index (parts, 0);
  const int64_t C = DIM (p0, 1), HW = DIM (p0, 3) * DIM (p0, 4);
  const int64_t shape[5] = { 1, C, n, DIM (p0, 3), DIM (p0, 4) };
  g_autoptr(HvTensor) out = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  if (!out) {
    hv_vae_oom_ (error, "the moments");
    return NULL;
  }
  int64_t t0 = 0;
  for (guint k = 0; k < parts->len; k++) {
    const HvTensor *p = g_ptr_array_index (parts, k);
    const int64_t m = DIM (p, 2);
    if (DIM (p, 1) != C || DIM (p, 3) * DIM (p, 4) != HW) {
      g_set_error (error, HV_ERROR, HV_ERROR_INVALID,
                   "VAE tiled encode: windows of different sizes (check the tiling knobs)");
      return NULL;
    }
    for (int64_t c = 0; c < C; c++)
      memcpy ((float *) out->data + (c * n + t0) * HW, (const float *) p->data + c * m * HW,
              (size_t) (m * HW) * sizeof (float));
    t0 += m;
  }
  return g_steal_pointer (&out);
}

void
hv_vae_tiled_state_clear_ (VaeTiledState *st)
{
  g_clear_pointer (&st->prev, hv_tensor_free);
}

gboolean
hv_vae_tiled_decode_ (HvVae *vae, const HvTensor *z, const HvVaeTiling *t, VaeSink sink,
                      gpointer user, const volatile int *cancel, GError **error)
{
  VaeTiledState st = { 0 };
  int emitted = 0;
  gboolean ok = TRUE;
  while (ok && !st.done) {
    g_autoptr(HvTensor) part = NULL;
    ok = hv_vae_tiled_next_ (vae, z, t, &st, &part, cancel, error);
    if (ok && part) {
      ok = sink (part, emitted, user, error);
      emitted += (int) DIM (part, 2);
    }
  }
  hv_vae_tiled_state_clear_ (&st);
  return ok;
}
