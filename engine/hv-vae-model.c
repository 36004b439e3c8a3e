/* hv-vae-model.c — the VAE's layers on hv_op_*: causal conv, GroupNorm+SiLU, ResNet block,
 * mid block with its block-causal attention, up/down sampling, encoder and decoder.
 *
 * Every layer takes a VaeRun. Without a stream (r->st == NULL) a layer sees the whole clip and
 * does exactly what upstream does. In a stream the same code sees one time chunk: causal convs
 * prepend the last k-1 input frames of the previous chunk instead of replicating the first
 * frame, GroupNorms use statistics gathered over the whole clip beforehand, and the upsampler
 * treats frame 0 specially only in the clip's first chunk. */
#include "hv-vae-private.h"
#include "hv-error.h"
#include <math.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------------------- */

gboolean
hv_vae_oom_ (GError **error, const char *what)
{
  g_set_error (error, HV_ERROR, HV_ERROR_NO_MEMORY,
               "VAE: out of memory allocating %s (try tiled decoding or a smaller video)", what);
  return FALSE;
}

gboolean
hv_vae_check_ (HvVae *vae, GError **error)
{
  return hv_backend_check (vae->backend, error);
}

HvTensor *
hv_vae_new_act_ (HvVae *vae, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w)
{
  int64_t shape[5] = { b, c, t, h, w };
  return hv_backend_tensor_f32 (vae->backend, 5, shape);
}

HvTensor *
hv_vae_slice_t_ (HvVae *vae, const HvTensor *x, int64_t start, int64_t n)
{
  HvTensor *y = hv_vae_new_act_ (vae, x->shape[0], x->shape[1], n, x->shape[3], x->shape[4]);
  if (y)
    hv_op_slice (vae->backend, y, x, 2, start);
  return y;
}

HvTensor *
hv_vae_slice_hw_ (HvVae *vae, const HvTensor *x, int64_t h0, int64_t nh, int64_t w0, int64_t nw)
{
  HvBackend *b = vae->backend;
  g_autoptr(HvTensor) rows = hv_vae_new_act_ (vae, x->shape[0], x->shape[1], x->shape[2], nh, x->shape[4]);
  if (!rows)
    return NULL;
  hv_op_slice (b, rows, x, 3, h0);
  HvTensor *y = hv_vae_new_act_ (vae, x->shape[0], x->shape[1], x->shape[2], nh, nw);
  if (y)
    hv_op_slice (b, y, rows, 4, w0);
  return y;
}

static void
view_noop (gpointer p)
{
}

/* A header over part of t's data: `offset` elements in, `shape` contiguous. Freeing it never
 * frees t's data (hv_tensor_view alone would let hv_tensor_free release a backend buffer). */
static HvTensor *
view_at (const HvTensor *t, int64_t offset, int ndim, const int64_t *shape)
{
  HvTensor *v = hv_tensor_view (t);
  v->free_func = view_noop;
  v->free_data = NULL;
  v->data = (char *) t->data + offset * (int64_t) hv_dtype_size (t->dtype);
  v->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    v->shape[i] = shape[i];
  hv_tensor_set_contiguous_strides (v);
  return v;
}

void
hv_vae_probe_ (VaeRun *r, const char *name, const HvTensor *t)
{
  if (r->probe && r->vae->probe && t)
    r->vae->probe (name, t, r->vae->probe_data);
}

/* ---- causal conv -------------------------------------------------------------------------- */

HvTensor *
hv_vae_conv_ (VaeRun *r, const VaeConv *c, HvTensor *x)
{
  HvVae *vae = r->vae;
  HvBackend *b = vae->backend;
  const int k = c->k, p = k / 2;
  const int64_t B = x->shape[0], C = x->shape[1], T = x->shape[2], H = x->shape[3], W = x->shape[4];
  g_autoptr(HvTensor) xp = NULL;
  const HvTensor *in = x;
  const int zero[3] = { 0, 0, 0 };

  if (k > 1) {
    VaeConvState *cs = r->st ? &r->st->conv[r->conv_i++] : NULL;
    if (cs) {
      /* ext = [the previous chunk's last k-1 input frames, x]; the first chunk replicates
       * its first frame instead, exactly as the whole-clip padding does */
      g_autoptr(HvTensor) ext = NULL;
      if (cs->prev) {
        ext = hv_vae_new_act_ (vae, B, C, cs->prev->shape[2] + T, H, W);
        if (!ext)
          return NULL;
        hv_op_concat (b, ext, cs->prev, x, 2);
      } else {
        const int tp[6] = { k - 1, 0, 0, 0, 0, 0 };
        ext = hv_vae_new_act_ (vae, B, C, T + k - 1, H, W);
        if (!ext)
          return NULL;
        hv_op_pad3d (b, ext, x, tp, HV_PAD_REPLICATE);
      }
      HvTensor *prev = hv_vae_slice_t_ (vae, ext, ext->shape[2] - (k - 1), k - 1);
      if (!prev)
        return NULL;
      hv_tensor_free (cs->prev);
      cs->prev = prev;
      const int sp[6] = { 0, 0, p, p, p, p };
      xp = hv_vae_new_act_ (vae, B, C, ext->shape[2], H + 2 * p, W + 2 * p);
      if (!xp)
        return NULL;
      hv_op_pad3d (b, xp, ext, sp, HV_PAD_REPLICATE);
    } else {
      const int pads[6] = { k - 1, 0, p, p, p, p };
      xp = hv_vae_new_act_ (vae, B, C, T + k - 1, H + 2 * p, W + 2 * p);
      if (!xp)
        return NULL;
      hv_op_pad3d (b, xp, x, pads, HV_PAD_REPLICATE);
    }
    in = xp;
  }
  int64_t o[3];
  for (int i = 0; i < 3; i++)
    o[i] = (in->shape[2 + i] - k) / c->stride[i] + 1;
  HvTensor *y = hv_vae_new_act_ (vae, B, c->cout, o[0], o[1], o[2]);
  if (!y)
    return NULL;
  hv_op_conv3d (b, y, in, c->w, c->b, c->stride, zero);
  return y;
}

/* ---- GroupNorm ------------------------------------------------------------------------------ */

/* Adds x's per-group moments (host doubles, two passes within the chunk) to ns (Chan et al.). */
static gboolean
norm_accumulate (HvVae *vae, VaeNormState *ns, const HvTensor *x)
{
  g_autoptr(HvTensor) host = NULL;
  const float *d = x->data;
  if (!hv_backend_is_host (vae->backend)) {
    host = hv_backend_download (vae->backend, x);
    if (!host)
      return FALSE;
    d = host->data;
  }
  const int64_t C = x->shape[1], G = ns->groups;
  const int64_t per = (C / G) * (hv_tensor_numel (x) / (x->shape[0] * C));
  for (int64_t g = 0; g < G; g++) {
    const float *p = d + g * per;
    double s = 0, m2 = 0;
    for (int64_t i = 0; i < per; i++)
      s += p[i];
    double mean = per ? s / per : 0;
    for (int64_t i = 0; i < per; i++) {
      double dv = p[i] - mean;
      m2 += dv * dv;
    }
    double na = ns->n[g], nb = (double) per, n = na + nb;
    if (n == 0)
      continue;
    double delta = mean - ns->mean[g];
    ns->mean[g] += delta * nb / n;
    ns->m2[g] += m2 + delta * delta * na * nb / n;
    ns->n[g] = n;
  }
  return TRUE;
}

HvTensor *
hv_vae_norm_silu_ (VaeRun *r, const VaeNorm *n, const HvTensor *x)
{
  HvVae *vae = r->vae;
  HvBackend *b = vae->backend;
  VaeNormState *ns = r->st ? &r->st->norm[r->norm_i++] : NULL;
  if (ns && ns->mode == VAE_NORM_COLLECT) {
    if (norm_accumulate (vae, ns, x))
      r->stopped = TRUE;
    return NULL;
  }
  HvTensor *y = hv_backend_tensor_like (b, x);
  if (!y)
    return NULL;
  if (ns && ns->mode == VAE_NORM_FIXED) {
    /* the clip-wide affine (x - mean) * rstd * w + b as a diagonal 1x1x1 conv */
    const int one[3] = { 1, 1, 1 }, zero[3] = { 0, 0, 0 };
    hv_op_conv3d (b, y, x, ns->diag_w, ns->diag_b, one, zero);
    hv_op_unary (b, y, y, HV_UNARY_SILU);
  } else {
    hv_op_groupnorm_silu (b, y, x, vae->cfg.norm_num_groups, n->w, n->b, HV_VAE_EPS);
  }
  return y;
}

/* ---- ResNet block --------------------------------------------------------------------------- */

HvTensor *
hv_vae_resnet_ (VaeRun *r, const VaeResnet *res, HvTensor *x)
{
  HvBackend *b = r->vae->backend;
  g_autoptr(HvTensor) h1 = hv_vae_norm_silu_ (r, &res->norm1, x);
  if (!h1)
    return NULL;
  g_autoptr(HvTensor) h2 = hv_vae_conv_ (r, &res->conv1, h1);
  g_clear_pointer (&h1, hv_tensor_free);
  if (!h2)
    return NULL;
  g_autoptr(HvTensor) h3 = hv_vae_norm_silu_ (r, &res->norm2, h2);
  g_clear_pointer (&h2, hv_tensor_free);
  if (!h3)
    return NULL;
  HvTensor *out = hv_vae_conv_ (r, &res->conv2, h3);
  g_clear_pointer (&h3, hv_tensor_free);
  if (!out)
    return NULL;
  if (res->has_shortcut) {
    g_autoptr(HvTensor) s = hv_vae_conv_ (r, &res->shortcut, x);   /* k = 1: no state */
    if (!s) {
      hv_tensor_free (out);
      return NULL;
    }
    hv_op_add (b, out, s, out);
  } else {
    hv_op_add (b, out, x, out);
  }
  return out;
}

/* ---- mid block ------------------------------------------------------------------------------ */

/* Scores held at once by one attention call, in floats (the query rows are split to fit). */
#define ATTN_SCORE_BUDGET (1 << 24)

/* diffusers Attention (one head, width C) over the T*H*W tokens of x with upstream's
 * prepare_causal_attention_mask: a token attends to every token of its own and earlier latent
 * frames. Done frame by frame with the allowed keys as a prefix, so no [S, S] mask exists. */
static HvTensor *
mid_attention (VaeRun *r, const VaeAttn *a, const HvTensor *x, const char *prefix)
{
  HvVae *vae = r->vae;
  HvBackend *b = vae->backend;
  const int64_t C = x->shape[1], T = x->shape[2], HW = x->shape[3] * x->shape[4], S = T * HW;
  const int perm[3] = { 0, 2, 1 };
  const int64_t cs[3] = { 1, C, S }, sc[3] = { 1, S, C }, s1c[4] = { 1, S, 1, C };

  g_autoptr(HvTensor) hn = hv_backend_tensor_like (b, x);
  if (!hn)
    return NULL;
  hv_op_groupnorm (b, hn, x, vae->cfg.norm_num_groups, a->norm.w, a->norm.b, HV_VAE_EPS);
  g_autoptr(HvTensor) hn3 = view_at (hn, 0, 3, cs);
  g_autoptr(HvTensor) ht = hv_backend_tensor_f32 (b, 3, sc);
  if (!ht)
    return NULL;
  hv_op_permute (b, ht, hn3, perm);
  g_clear_pointer (&hn3, hv_tensor_free);
  g_clear_pointer (&hn, hv_tensor_free);

  g_autoptr(HvTensor) q = hv_backend_tensor_f32 (b, 4, s1c);
  g_autoptr(HvTensor) k = hv_backend_tensor_f32 (b, 4, s1c);
  g_autoptr(HvTensor) v = hv_backend_tensor_f32 (b, 4, s1c);
  g_autoptr(HvTensor) o = hv_backend_tensor_f32 (b, 4, s1c);
  if (!q || !k || !v || !o)
    return NULL;
  {
    g_autoptr(HvTensor) q3 = view_at (q, 0, 3, sc);
    g_autoptr(HvTensor) k3 = view_at (k, 0, 3, sc);
    g_autoptr(HvTensor) v3 = view_at (v, 0, 3, sc);
    hv_op_linear (b, q3, ht, a->q_w, a->q_b);
    hv_op_linear (b, k3, ht, a->k_w, a->k_b);
    hv_op_linear (b, v3, ht, a->v_w, a->v_b);
  }
  g_clear_pointer (&ht, hv_tensor_free);

  const float scale = (float) (1.0 / sqrt ((double) C));
  for (int64_t f = 0; f < T; f++) {
    const int64_t lk = (f + 1) * HW;
    int64_t rows = MAX ((int64_t) 1, MIN (HW, (int64_t) ATTN_SCORE_BUDGET / lk));
    for (int64_t r0 = f * HW; r0 < (f + 1) * HW; r0 += rows) {
      int64_t nq = MIN (rows, (f + 1) * HW - r0);
      const int64_t qs[4] = { 1, nq, 1, C }, ks[4] = { 1, lk, 1, C };
      g_autoptr(HvTensor) qv = view_at (q, r0 * C, 4, qs);
      g_autoptr(HvTensor) ov = view_at (o, r0 * C, 4, qs);
      g_autoptr(HvTensor) kv = view_at (k, 0, 4, ks);
      g_autoptr(HvTensor) vv = view_at (v, 0, 4, ks);
      hv_op_attention (b, ov, qv, kv, vv, NULL, scale);
    }
  }
  g_clear_pointer (&q, hv_tensor_free);
  g_clear_pointer (&k, hv_tensor_free);
  g_clear_pointer (&v, hv_tensor_free);

  g_autoptr(HvTensor) proj = hv_backend_tensor_f32 (b, 3, sc);
  g_autoptr(HvTensor) xt = hv_backend_tensor_f32 (b, 3, sc);
  if (!proj || !xt)
    return NULL;
  {
    g_autoptr(HvTensor) o3 = view_at (o, 0, 3, sc);
    g_autoptr(HvTensor) x3 = view_at (x, 0, 3, cs);
    hv_op_linear (b, proj, o3, a->o_w, a->o_b);
    hv_op_permute (b, xt, x3, perm);
  }
  hv_op_add (b, proj, proj, xt);   /* residual_connection; rescale_output_factor 1 */
  g_autofree char *name = g_strdup_printf ("%s.mid.attn0", prefix);
  hv_vae_probe_ (r, name, proj);
  g_clear_pointer (&xt, hv_tensor_free);

  HvTensor *out = hv_backend_tensor_like (b, x);
  if (!out)
    return NULL;
  g_autoptr(HvTensor) out3 = view_at (out, 0, 3, cs);
  hv_op_permute (b, out3, proj, perm);
  return out;
}

HvTensor *
hv_vae_mid_ (VaeRun *r, const VaeMid *mid, HvTensor *x, const char *prefix)
{
  g_autofree char *n0 = g_strdup_printf ("%s.mid.resnet0", prefix);
  g_autoptr(HvTensor) h = hv_vae_resnet_ (r, &mid->res0, x);
  if (!h)
    return NULL;
  hv_vae_probe_ (r, n0, h);
  if (mid->has_attn) {
    HvTensor *a = mid_attention (r, &mid->attn, h, prefix);
    if (!a)
      return NULL;
    hv_tensor_free (h);
    h = a;
  }
  return hv_vae_resnet_ (r, &mid->res1, h);
}

/* ---- decoder -------------------------------------------------------------------------------- */

/* UpsampleCausal3D: nearest x(1, fh, fw) for the clip's first frame, x(ft, fh, fw) for the
 * rest, then its causal conv. */
static HvTensor *
upsample (VaeRun *r, const VaeBlock *blk, HvTensor *x)
{
  HvVae *vae = r->vae;
  HvBackend *b = vae->backend;
  const int *f = blk->factor;
  const int64_t B = x->shape[0], C = x->shape[1], T = x->shape[2], H = x->shape[3], W = x->shape[4];
  const gboolean has_first = r->st == NULL || r->st->first_chunk;
  g_autoptr(HvTensor) y = NULL;

  if (f[0] == 1 || !has_first) {
    y = hv_vae_new_act_ (vae, B, C, T * f[0], H * f[1], W * f[2]);
    if (!y)
      return NULL;
    hv_op_upsample_nearest (b, y, x, f);
  } else {
    const int f1[3] = { 1, f[1], f[2] };
    g_autoptr(HvTensor) first = hv_vae_slice_t_ (vae, x, 0, 1);
    g_autoptr(HvTensor) up1 = first ? hv_vae_new_act_ (vae, B, C, 1, H * f[1], W * f[2]) : NULL;
    if (!up1)
      return NULL;
    hv_op_upsample_nearest (b, up1, first, f1);
    if (T == 1) {
      y = g_steal_pointer (&up1);
    } else {
      g_autoptr(HvTensor) rest = hv_vae_slice_t_ (vae, x, 1, T - 1);
      g_autoptr(HvTensor) up2 = rest ? hv_vae_new_act_ (vae, B, C, (T - 1) * f[0], H * f[1], W * f[2]) : NULL;
      if (!up2)
        return NULL;
      hv_op_upsample_nearest (b, up2, rest, f);
      g_clear_pointer (&rest, hv_tensor_free);
      y = hv_vae_new_act_ (vae, B, C, 1 + (T - 1) * f[0], H * f[1], W * f[2]);
      if (!y)
        return NULL;
      hv_op_concat (b, y, up1, up2, 2);
    }
  }
  return hv_vae_conv_ (r, &blk->sampler, y);
}

HvTensor *
hv_vae_decode_head_ (HvVae *vae, const HvTensor *z, gboolean probe, GError **error)
{
  VaeRun r = { .vae = vae, .probe = probe };
  g_autoptr(HvTensor) pq = hv_vae_conv_ (&r, &vae->post_quant, (HvTensor *) z);
  if (!pq) {
    hv_vae_oom_ (error, "the decoder input");
    return NULL;
  }
  hv_vae_probe_ (&r, "dec.in_post_quant_conv", pq);
  g_autoptr(HvTensor) h = hv_vae_conv_ (&r, &vae->dec.conv_in, pq);
  g_clear_pointer (&pq, hv_tensor_free);
  if (!h) {
    hv_vae_oom_ (error, "decoder.conv_in");
    return NULL;
  }
  hv_vae_probe_ (&r, "dec.conv_in", h);
  HvTensor *m = hv_vae_mid_ (&r, &vae->dec.mid, h, "dec");
  if (!m) {
    hv_vae_oom_ (error, "the decoder mid block");
    return NULL;
  }
  hv_vae_probe_ (&r, "dec.mid", m);
  return m;
}

int
hv_vae_tail_units_ (const HvVae *vae, VaeUnit *units)
{
  int n = 0, conv = 0, norm = 0;
  for (int i = 0; i < vae->dec.n_blocks; i++) {
    const VaeBlock *blk = &vae->dec.blocks[i];
    for (int j = 0; j < blk->n_res; j++) {
      if (units)
        units[n] = (VaeUnit) { VAE_UNIT_RESNET, i, j, conv, norm };
      n++;
      conv += 2;
      norm += 2;
    }
    if (blk->has_sampler) {
      if (units)
        units[n] = (VaeUnit) { VAE_UNIT_UPSAMPLE, i, -1, conv, norm };
      n++;
      conv += 1;
    }
  }
  if (units)
    units[n] = (VaeUnit) { VAE_UNIT_OUT, -1, -1, conv, norm };
  return n + 1;
}

HvTensor *
hv_vae_tail_run_ (VaeRun *r, const VaeUnit *units, int u0, int u1, HvTensor *x)
{
  HvVae *vae = r->vae;
  g_autoptr(HvTensor) h = NULL;   /* owns cur unless cur is x */
  HvTensor *cur = x;
  char name[64];

  r->conv_i = units[u0].conv_off;
  r->norm_i = units[u0].norm_off;
  for (int u = u0; u < u1; u++) {
    const VaeUnit *un = &units[u];
    HvTensor *n = NULL;
    if (un->kind == VAE_UNIT_RESNET) {
      const VaeBlock *blk = &vae->dec.blocks[un->block];
      n = hv_vae_resnet_ (r, &blk->res[un->res], cur);
      if (n && un->res == blk->n_res - 1) {
        g_snprintf (name, sizeof name, blk->has_sampler ? "dec.up%d.before_upsample" : "dec.up%d", un->block);
        hv_vae_probe_ (r, name, n);
      }
    } else if (un->kind == VAE_UNIT_UPSAMPLE) {
      n = upsample (r, &vae->dec.blocks[un->block], cur);
      g_snprintf (name, sizeof name, "dec.up%d", un->block);
      hv_vae_probe_ (r, name, n);
    } else {
      g_autoptr(HvTensor) a = hv_vae_norm_silu_ (r, &vae->dec.norm_out, cur);
      n = a ? hv_vae_conv_ (r, &vae->dec.conv_out, a) : NULL;
    }
    if (!n)
      return NULL;
    g_clear_pointer (&h, hv_tensor_free);
    h = cur = n;
  }
  if (cur == x) {
    HvTensor *c = hv_backend_tensor_like (vae->backend, x);
    if (c)
      hv_op_copy (vae->backend, c, x);
    return c;
  }
  return g_steal_pointer (&h);
}

HvTensor *
hv_vae_decode_one_ (HvVae *vae, const HvTensor *z, gboolean probe, GError **error)
{
  g_autoptr(HvTensor) m = hv_vae_decode_head_ (vae, z, probe, error);
  if (!m)
    return NULL;
  VaeRun r = { .vae = vae, .probe = probe };
  const int nu = hv_vae_tail_units_ (vae, NULL);
  g_autofree VaeUnit *units = g_new (VaeUnit, nu);
  hv_vae_tail_units_ (vae, units);
  HvTensor *out = hv_vae_tail_run_ (&r, units, 0, nu, m);
  if (!out) {
    hv_vae_oom_ (error, "the decoder up blocks");
    return NULL;
  }
  hv_vae_probe_ (&r, "decoded", out);
  if (!hv_vae_check_ (vae, error)) {
    hv_tensor_free (out);
    return NULL;
  }
  return out;
}

/* ---- encoder -------------------------------------------------------------------------------- */

HvTensor *
hv_vae_encode_one_ (HvVae *vae, const HvTensor *x, gboolean probe, GError **error)
{
  VaeRun r = { .vae = vae, .probe = probe };
  char name[64];
  g_autoptr(HvTensor) h = hv_vae_conv_ (&r, &vae->enc.conv_in, (HvTensor *) x);
  if (!h)
    goto oom;
  hv_vae_probe_ (&r, "enc.conv_in", h);
  for (int i = 0; i < vae->enc.n_blocks; i++) {
    const VaeBlock *blk = &vae->enc.blocks[i];
    for (int j = 0; j < blk->n_res; j++) {
      HvTensor *n = hv_vae_resnet_ (&r, &blk->res[j], h);
      if (!n)
        goto oom;
      hv_tensor_free (h);
      h = n;
    }
    if (blk->has_sampler) {
      HvTensor *n = hv_vae_conv_ (&r, &blk->sampler, h);
      if (!n)
        goto oom;
      hv_tensor_free (h);
      h = n;
    }
    g_snprintf (name, sizeof name, "enc.down%d", i);
    hv_vae_probe_ (&r, name, h);
  }
  {
    HvTensor *n = hv_vae_mid_ (&r, &vae->enc.mid, h, "enc");
    if (!n)
      goto oom;
    hv_tensor_free (h);
    h = n;
  }
  hv_vae_probe_ (&r, "enc.mid", h);
  {
    g_autoptr(HvTensor) a = hv_vae_norm_silu_ (&r, &vae->enc.norm_out, h);
    if (!a)
      goto oom;
    hv_tensor_free (h);
    h = hv_vae_conv_ (&r, &vae->enc.conv_out, a);
    if (!h)
      goto oom;
  }
  hv_vae_probe_ (&r, "enc.conv_out", h);
  HvTensor *moments = hv_vae_conv_ (&r, &vae->quant, h);
  if (!moments)
    goto oom;
  hv_vae_probe_ (&r, "moments", moments);
  if (!hv_vae_check_ (vae, error)) {
    hv_tensor_free (moments);
    return NULL;
  }
  return moments;
oom:
  hv_vae_oom_ (error, "an encoder activation");
  return NULL;
}
