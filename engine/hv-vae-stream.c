/* hv-vae-stream.c — the exact untiled decode, streamed in time chunks with bounded memory.
 *
 * What is causal and what is not (upstream decoder):
 *  - CausalConv3d pads time by replicating the first frame, so output frame t needs input
 *    frames t-k+1..t only: a chunk needs the previous chunk's last k-1 input frames (kept per
 *    conv in VaeConvState) and nothing else.
 *  - UpsampleCausal3D treats frame 0 alone; every other frame is repeated in time: per chunk.
 *  - The mid-block attention is block-causal (prepare_causal_attention_mask) but its GroupNorm
 *    is not; the mid block runs at latent resolution, so it runs once on the whole latent
 *    (hv_vae_decode_head_), and only the up blocks are chunked.
 *  - Every GroupNorm takes its statistics over ALL frames. In the up blocks they are gathered
 *    by streaming passes: the pass for GroupNorm k streams the chunks up to it (its
 *    predecessors already have their clip-wide statistics), accumulates its per-group moments
 *    and stops there. A last pass streams to the end and hands out the frames. The clip-wide
 *    affine (x - mean) * rstd * w + b = x * a + c is applied as a diagonal 1x1x1 conv, the same
 *    scale-and-bias form torch's GroupNorm kernel uses.
 *  - To avoid recomputing from the mid block in every pass, the tail is a chain of units
 *    (ResNet block, upsampler, output head, each with one input tensor); once a unit's
 *    statistics are known, its whole-clip output is kept as a checkpoint when it fits the
 *    cache budget (hv_vae_set_stream_cache, default 1 GiB), and later passes start there.
 * Memory: the mid-block output (latent resolution), at most two checkpoints within the budget,
 * and one chunk's activations. Compute: with everything cached about 1.5 whole decodes; with a
 * zero budget one partial pass per GroupNorm (several whole decodes). The tiled stream is the
 * fast, low-memory mode (it is what the official sampler's tiled decode computes). */
#include "hv-vae-private.h"
#include "hv-error.h"
#include <math.h>
#include <string.h>

static void
stream_clear (VaeStream *st)
{
  for (int i = 0; i < st->n_conv; i++)
    g_clear_pointer (&st->conv[i].prev, hv_tensor_free);
  for (int i = 0; i < st->n_norm; i++) {
    VaeNormState *ns = &st->norm[i];
    g_free (ns->n);
    g_free (ns->mean);
    g_free (ns->m2);
    g_clear_pointer (&ns->diag_w, hv_tensor_free);
    g_clear_pointer (&ns->diag_b, hv_tensor_free);
  }
  g_free (st->conv);
  g_free (st->norm);
}

typedef struct {
  HvVae *vae;
  VaeStream st;
  VaeUnit *units;
  int n_units;
  int64_t (*shape)[4];   /* input [C, T, H, W] of every unit; [n_units] = the output */
  int *tf;               /* frames per latent frame at every unit's input */
  HvTensor *ckpt;        /* host f32 [1, C, T, H, W]: the whole clip at the input of ckpt_unit */
  int ckpt_unit;
  const volatile int *cancel;
} Stream;

static const VaeNorm *
norm_of (HvVae *vae, const VaeUnit *u, int which)
{
  if (u->kind == VAE_UNIT_OUT)
    return &vae->dec.norm_out;
  const VaeResnet *r = &vae->dec.blocks[u->block].res[u->res];
  return which == 0 ? &r->norm1 : &r->norm2;
}

static int
norms_in (const VaeUnit *u)
{
  return u->kind == VAE_UNIT_RESNET ? 2 : (u->kind == VAE_UNIT_OUT ? 1 : 0);
}

static HvTensor *
host_f32_of (HvBackend *b, const HvTensor *t)
{
  g_autoptr(HvTensor) h = hv_backend_download (b, t);
  return h ? hv_tensor_to_f32 (h) : NULL;
}

/* Clip-wide statistics -> the diagonal conv of scale a_c = rstd_g * w_c, bias b_c - mean_g * a_c. */
static gboolean
norm_finalize (HvVae *vae, VaeNormState *ns, const VaeNorm *n, GError **error)
{
  HvBackend *b = vae->backend;
  const int C = n->c, G = ns->groups, cpg = C / G;
  g_autoptr(HvTensor) w = host_f32_of (b, n->w);
  g_autoptr(HvTensor) bias = host_f32_of (b, n->b);
  const int64_t ws[5] = { C, C, 1, 1, 1 }, bs[1] = { C };
  g_autoptr(HvTensor) dw = hv_tensor_new (HV_DTYPE_F32, 5, ws);
  g_autoptr(HvTensor) db = hv_tensor_new (HV_DTYPE_F32, 1, bs);
  if (!w || !bias || !dw || !db)
    return hv_vae_oom_ (error, "GroupNorm statistics");
  const float *wf = w->data, *bf = bias->data;
  for (int c = 0; c < C; c++) {
    int g = c / cpg;
    double var = ns->n[g] > 0 ? ns->m2[g] / ns->n[g] : 0;
    double rstd = 1.0 / sqrt (var + (double) HV_VAE_EPS);
    double a = rstd * wf[c];
    ((float *) dw->data)[(int64_t) c * C + c] = (float) a;
    ((float *) db->data)[c] = (float) (bf[c] - ns->mean[g] * a);
  }
  ns->diag_w = hv_backend_upload (b, dw);
  ns->diag_b = hv_backend_upload (b, db);
  if (!ns->diag_w || !ns->diag_b)
    return hv_vae_oom_ (error, "GroupNorm statistics");
  ns->mode = VAE_NORM_FIXED;
  return TRUE;
}

/* Frames [t0, t0 + n) of the host checkpoint, on the backend. */
static HvTensor *
ckpt_chunk (Stream *s, int64_t t0, int64_t n)
{
  const HvTensor *x = s->ckpt;
  const int64_t C = x->shape[1], T = x->shape[2], HW = x->shape[3] * x->shape[4];
  const int64_t shape[5] = { 1, C, n, x->shape[3], x->shape[4] };
  g_autoptr(HvTensor) h = hv_tensor_new (HV_DTYPE_F32, 5, shape);
  if (!h)
    return NULL;
  for (int64_t c = 0; c < C; c++)
    memcpy ((float *) h->data + c * n * HW, (const float *) x->data + (c * T + t0) * HW,
            (size_t) (n * HW) * sizeof (float));
  if (hv_backend_is_host (s->vae->backend))
    return g_steal_pointer (&h);
  return hv_backend_upload (s->vae->backend, h);
}

static int64_t
chunk_step (const Stream *s)
{
  return (int64_t) MAX (1, s->vae->stream_chunk) * s->tf[s->ckpt_unit];
}

static void
stream_reset (Stream *s)
{
  for (int i = 0; i < s->st.n_conv; i++)
    g_clear_pointer (&s->st.conv[i].prev, hv_tensor_free);
}

/* The chunk of the checkpoint starting at frame t0 through units [ckpt_unit, u_end): *out is its
 * host output, or NULL when a COLLECT norm ended the chunk there. Chunks of a pass must come in
 * order after stream_reset() (the causal convs carry frames from one to the next). */
static gboolean
stream_chunk (Stream *s, int64_t t0, int u_end, HvTensor **out, GError **error)
{
  HvVae *vae = s->vae;
  const int64_t T = s->ckpt->shape[2];
  *out = NULL;
  if (s->cancel && *s->cancel) {
    g_set_error (error, HV_ERROR, HV_ERROR_CANCELLED, "VAE decode cancelled");
    return FALSE;
  }
  g_autoptr(HvTensor) x = ckpt_chunk (s, t0, MIN (chunk_step (s), T - t0));
  if (!x)
    return hv_vae_oom_ (error, "a decoder chunk");
  s->st.first_chunk = t0 == 0;
  VaeRun r = { .vae = vae, .st = &s->st };
  g_autoptr(HvTensor) y = hv_vae_tail_run_ (&r, s->units, s->ckpt_unit, u_end, x);
  if (!hv_vae_check_ (vae, error))
    return FALSE;
  if (r.stopped)
    return TRUE;
  if (!y || !(*out = hv_backend_download (vae->backend, y)))
    return hv_vae_oom_ (error, "a decoder chunk");
  return TRUE;
}

/* Streams the checkpoint in chunks through units [ckpt_unit, u_end). A COLLECT norm ends each
 * chunk there; otherwise each chunk's output goes into `into` (host [1, C, T, H, W], the next
 * checkpoint). */
static gboolean
stream_pass (Stream *s, int u_end, HvTensor *into, GError **error)
{
  const int64_t T = s->ckpt->shape[2], step = chunk_step (s);
  int64_t emitted = 0;
  stream_reset (s);
  for (int64_t t0 = 0; t0 < T; t0 += step) {
    g_autoptr(HvTensor) host = NULL;
    if (!stream_chunk (s, t0, u_end, &host, error))
      return FALSE;
    if (!host || !into)
      continue;
    const int64_t n = host->shape[2];
    const int64_t C = into->shape[1], TT = into->shape[2], HW = into->shape[3] * into->shape[4];
    g_return_val_if_fail (host->shape[1] == C && emitted + n <= TT &&
                          host->shape[3] * host->shape[4] == HW, FALSE);
    for (int64_t c = 0; c < C; c++)
      memcpy ((float *) into->data + (c * TT + emitted) * HW, (const float *) host->data + c * n * HW,
              (size_t) (n * HW) * sizeof (float));
    emitted += n;
  }
  return TRUE;
}

static void
stream_free (Stream *s)
{
  stream_clear (&s->st);
  g_free (s->units);
  g_free (s->shape);
  g_free (s->tf);
  hv_tensor_free (s->ckpt);
}

struct _VaeExact {
  Stream s;
  int64_t t0;     /* next chunk of the last pass */
};

void
hv_vae_exact_free_ (VaeExact *e)
{
  if (!e)
    return;
  stream_free (&e->s);
  g_free (e);
}

/* Everything before the last pass: the mid block, the GroupNorm statistics, the checkpoints. */
static gboolean
exact_prepare (Stream *ps, GError **error)
{
  Stream s = *ps;
  HvVae *vae = s.vae;
  s.n_units = hv_vae_tail_units_ (vae, NULL);
  s.units = g_new (VaeUnit, s.n_units);
  hv_vae_tail_units_ (vae, s.units);
  const VaeUnit *last = &s.units[s.n_units - 1];
  s.st.n_conv = last->conv_off + 1;
  s.st.n_norm = last->norm_off + 1;
  s.st.conv = g_new0 (VaeConvState, s.st.n_conv);
  s.st.norm = g_new0 (VaeNormState, s.st.n_norm);
  for (int k = 0; k < s.st.n_norm; k++) {
    VaeNormState *ns = &s.st.norm[k];
    ns->groups = vae->cfg.norm_num_groups;
    ns->n = g_new0 (double, ns->groups);
    ns->mean = g_new0 (double, ns->groups);
    ns->m2 = g_new0 (double, ns->groups);
  }
  /* every unit's input shape, to size checkpoints and chunks */
  s.shape = g_malloc_n (s.n_units + 1, sizeof *s.shape);
  s.tf = g_new (int, s.n_units + 1);
  int64_t C = s.ckpt->shape[1], T = s.ckpt->shape[2], H = s.ckpt->shape[3], W = s.ckpt->shape[4];
  int tf = 1;
  for (int u = 0; u <= s.n_units; u++) {
    s.shape[u][0] = C;
    s.shape[u][1] = T;
    s.shape[u][2] = H;
    s.shape[u][3] = W;
    s.tf[u] = tf;
    if (u == s.n_units)
      break;
    const VaeUnit *un = &s.units[u];
    if (un->kind == VAE_UNIT_RESNET) {
      C = vae->dec.blocks[un->block].res[un->res].conv2.cout;
    } else if (un->kind == VAE_UNIT_UPSAMPLE) {
      const int *f = vae->dec.blocks[un->block].factor;
      T = 1 + f[0] * (T - 1);
      H *= f[1];
      W *= f[2];
      tf *= f[0];
    } else {
      C = vae->dec.conv_out.cout;
    }
  }

  gboolean ok = TRUE;
  for (int u = 0; ok && u < s.n_units; u++) {
    /* the clip-wide statistics of this unit's GroupNorms, in order */
    for (int j = 0; ok && j < norms_in (&s.units[u]); j++) {
      const int k = s.units[u].norm_off + j;
      s.st.norm[k].mode = VAE_NORM_COLLECT;
      ok = stream_pass (&s, u + 1, NULL, error) &&
           norm_finalize (vae, &s.st.norm[k], norm_of (vae, &s.units[u], j), error);
    }
    /* keep this unit's whole output when it fits the cache: later passes start there */
    const int64_t *o = s.shape[u + 1];
    const double bytes = 4.0 * o[0] * o[1] * o[2] * o[3];
    if (ok && u + 1 < s.n_units && bytes <= (double) vae->stream_cache) {
      const int64_t shape[5] = { 1, o[0], o[1], o[2], o[3] };
      HvTensor *next = hv_tensor_new (HV_DTYPE_F32, 5, shape);
      if (!next) {
        ok = hv_vae_oom_ (error, "a stream checkpoint");
        break;
      }
      ok = stream_pass (&s, u + 1, next, error);
      hv_tensor_free (s.ckpt);
      s.ckpt = next;
      s.ckpt_unit = u + 1;
    }
  }
  stream_reset (&s);
  *ps = s;
  return ok;
}

VaeExact *
hv_vae_exact_new_ (HvVae *vae, const HvTensor *z, const volatile int *cancel, GError **error)
{
  g_autoptr(HvTensor) mid = hv_vae_decode_head_ (vae, z, FALSE, error);
  if (!mid)
    return NULL;
  VaeExact *e = g_new0 (VaeExact, 1);
  e->s.vae = vae;
  e->s.cancel = cancel;
  e->s.ckpt = hv_backend_download (vae->backend, mid);
  g_clear_pointer (&mid, hv_tensor_free);
  if (!e->s.ckpt) {
    hv_vae_oom_ (error, "the mid-block output");
    hv_vae_exact_free_ (e);
    return NULL;
  }
  if (!exact_prepare (&e->s, error)) {
    hv_vae_exact_free_ (e);
    return NULL;
  }
  return e;
}

gboolean
hv_vae_exact_next_ (VaeExact *e, HvTensor **frames, GError **error)
{
  *frames = NULL;
  if (e->t0 >= e->s.ckpt->shape[2])
    return TRUE;
  const int64_t t0 = e->t0;
  e->t0 += chunk_step (&e->s);
  if (!stream_chunk (&e->s, t0, e->s.n_units, frames, error))
    return FALSE;
  if (!*frames) {
    g_set_error (error, HV_ERROR, HV_ERROR_FAILED, "VAE stream: the last pass stopped early");
    return FALSE;
  }
  return TRUE;
}
