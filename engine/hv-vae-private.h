/* hv-vae-private.h — the VAE's layers and the pieces shared by hv-vae*.c. Not installed. */
#pragma once
#include "hv-vae.h"
#include "loaders/hv-store.h"

G_BEGIN_DECLS

#define HV_VAE_EPS 1e-6f

/* CausalConv3d: replicate pad (W,H by k/2 both sides, T by k-1 in front), then a plain conv. */
typedef struct {
  HvTensor *w, *b;       /* on the backend, stored dtype */
  int cin, cout, k;
  int stride[3];         /* t, h, w */
} VaeConv;

typedef struct {
  HvTensor *w, *b;
  int c;
} VaeNorm;

typedef struct {
  VaeNorm norm1, norm2;
  VaeConv conv1, conv2, shortcut;
  gboolean has_shortcut;
} VaeResnet;

/* diffusers Attention with one head of width C and a GroupNorm in front. */
typedef struct {
  VaeNorm norm;
  HvTensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
  int c;
} VaeAttn;

typedef struct {
  VaeResnet res0, res1;
  VaeAttn attn;
  gboolean has_attn;
} VaeMid;

typedef struct {
  VaeResnet *res;
  int n_res;
  gboolean has_sampler;   /* up- or downsampler */
  VaeConv sampler;        /* its conv (stride = downsample stride for the encoder) */
  int factor[3];          /* upsample factors (t, h, w) for the decoder */
} VaeBlock;

typedef struct {
  VaeConv conv_in;
  VaeBlock blocks[HV_VAE_MAX_BLOCKS];
  int n_blocks;
  VaeMid mid;
  VaeNorm norm_out;
  VaeConv conv_out;
} VaeCoder;

struct _HvVae {
  HvVaeConfig cfg;
  HvBackend *backend;
  HvStore *store;
  GPtrArray *owned;       /* every weight tensor made for the backend */
  VaeCoder enc, dec;
  VaeConv quant, post_quant;
  gboolean has_encoder;
  HvVaeProbe probe;
  gpointer probe_data;
  int stream_chunk;
  gsize stream_cache;     /* bytes of whole-clip checkpoints the exact stream may keep */
};

/* ---- streaming state (NULL in a plain whole-tensor run) ---------------------------------- */

typedef enum {
  VAE_NORM_SELF,      /* statistics of the tensor at hand (hv_op_groupnorm) */
  VAE_NORM_FIXED,     /* statistics gathered beforehand over the whole clip */
  VAE_NORM_COLLECT,   /* this pass gathers them: accumulate, then stop the pass */
} VaeNormMode;

typedef struct {
  VaeNormMode mode;
  int groups;
  /* per group: count, mean and M2 (Chan's parallel variance), double */
  double *n, *mean, *m2;
  HvTensor *diag_w, *diag_b;   /* FIXED: the affine as a 1x1x1 conv (diag weight) */
} VaeNormState;

typedef struct {
  HvTensor *prev;   /* last k-1 input frames seen by this causal conv, or NULL (first chunk) */
} VaeConvState;

typedef struct {
  VaeConvState *conv;
  int n_conv;
  VaeNormState *norm;
  int n_norm;
  gboolean first_chunk;   /* the clip's first frame is in this chunk (upsample rule) */
} VaeStream;

/* One forward pass over a tensor. In a stream, layers are numbered in visiting order. */
typedef struct {
  HvVae *vae;
  VaeStream *st;          /* NULL: whole-tensor semantics */
  int conv_i, norm_i;
  gboolean stopped;       /* a COLLECT norm ended the pass */
  gboolean probe;         /* call vae->probe */
} VaeRun;

/* model (hv-vae-model.c) */
void      hv_vae_probe_ (VaeRun *r, const char *name, const HvTensor *t);
HvTensor *hv_vae_conv_ (VaeRun *r, const VaeConv *c, HvTensor *x);
HvTensor *hv_vae_norm_silu_ (VaeRun *r, const VaeNorm *n, const HvTensor *x);
HvTensor *hv_vae_resnet_ (VaeRun *r, const VaeResnet *res, HvTensor *x);
HvTensor *hv_vae_mid_ (VaeRun *r, const VaeMid *mid, HvTensor *x, const char *prefix);
/* decoder: post_quant_conv + conv_in + mid (whole tensor). z: [1, L, T, h, w] on the backend. */
HvTensor *hv_vae_decode_head_ (HvVae *vae, const HvTensor *z, gboolean probe, GError **error);
/* The decoder's tail (up blocks, norm_out, conv_out) as a chain of units, each with one input
 * tensor: a ResNet block, an upsampler, or the output head. conv_off / norm_off: the index of
 * the unit's first causal conv / GroupNorm in visiting order (stream state indices). */
typedef enum { VAE_UNIT_RESNET, VAE_UNIT_UPSAMPLE, VAE_UNIT_OUT } VaeUnitKind;
typedef struct {
  VaeUnitKind kind;
  int block, res;
  int conv_off, norm_off;
} VaeUnit;
/* Fills units (if not NULL) and returns their count. */
int       hv_vae_tail_units_ (const HvVae *vae, VaeUnit *units);
/* Runs units [u0, u1) on x (not consumed). NULL when a COLLECT norm stopped the run or on OOM. */
HvTensor *hv_vae_tail_run_ (VaeRun *r, const VaeUnit *units, int u0, int u1, HvTensor *x);
/* whole untiled decode of one sample: z [1, L, T, h, w] on the backend -> [1, 3, T', H, W]. */
HvTensor *hv_vae_decode_one_ (HvVae *vae, const HvTensor *z, gboolean probe, GError **error);
HvTensor *hv_vae_encode_one_ (HvVae *vae, const HvTensor *x, gboolean probe, GError **error);
/* helpers */
int       hv_vae_space_factor_ (const HvVae *vae);
HvTensor *hv_vae_new_act_ (HvVae *vae, int64_t b, int64_t c, int64_t t, int64_t h, int64_t w);
HvTensor *hv_vae_slice_t_ (HvVae *vae, const HvTensor *x, int64_t start, int64_t n);
HvTensor *hv_vae_slice_hw_ (HvVae *vae, const HvTensor *x, int64_t h0, int64_t nh, int64_t w0, int64_t nw);
gboolean  hv_vae_oom_ (GError **error, const char *what);
gboolean  hv_vae_check_ (HvVae *vae, GError **error);

/* tiling (hv-vae-tiling.c). A sink gets raw decoded frames [1, 3, n, H, W] on the host, in
 * order; first = index of the first of them. */
typedef gboolean (*VaeSink) (const HvTensor *frames, int first, gpointer user, GError **error);
/* Decodes one sample z [1, L, T, h, w] (backend) with the tiling rules and feeds the sink. */
gboolean  hv_vae_tiled_decode_ (HvVae *vae, const HvTensor *z, const HvVaeTiling *t, VaeSink sink,
                                gpointer user, const volatile int *cancel, GError **error);
/* Whether upstream's _decode would tile this latent with these knobs. */
gboolean  hv_vae_tiling_active_ (HvVae *vae, const HvTensor *z, const HvVaeTiling *t);
/* Whether upstream's encode would tile this video [1, 3, T, H, W] with these knobs (NULL: no). */
gboolean  hv_vae_encode_tiling_active_ (HvVae *vae, const HvTensor *x, const HvVaeTiling *t);
/* Tiled encode (temporal windows wrapping spatial tiles, as upstream) of one sample x
 * [1, 3, T, H, W] (backend; knobs checked by the caller) -> host moments [1, 2L, T', h, w]. */
HvTensor *hv_vae_tiled_encode_ (HvVae *vae, const HvTensor *x, const HvVaeTiling *t, GError **error);
/* The same one step at a time (the pull stream): each call decodes the next temporal window
 * (or the whole clip without temporal tiling) into *part, host [1, 3, n, H, W] (caller frees;
 * NULL when a window keeps no frame); st->done says the clip is finished. */
typedef struct {
  int64_t i;        /* the next window's first latent frame */
  HvTensor *prev;   /* the previous window, blended (host) */
  gboolean done;
} VaeTiledState;
gboolean  hv_vae_tiled_next_ (HvVae *vae, const HvTensor *z, const HvVaeTiling *t, VaeTiledState *st,
                              HvTensor **part, const volatile int *cancel, GError **error);
void      hv_vae_tiled_state_clear_ (VaeTiledState *st);
/* Exact untiled decode of one sample in chunks (hv-vae-stream.c): new runs the mid block and
 * every statistics pass; each next hands out the raw frames of one chunk of the last pass
 * (host [1, 3, n, H, W], caller frees), or NULL (and TRUE) at the end. */
typedef struct _VaeExact VaeExact;
VaeExact *hv_vae_exact_new_ (HvVae *vae, const HvTensor *z, const volatile int *cancel, GError **error);
gboolean  hv_vae_exact_next_ (VaeExact *e, HvTensor **frames, GError **error);
void      hv_vae_exact_free_ (VaeExact *e);

G_END_DECLS
