/* test-arena — the activation arena (alignment, marks, reset, fallback, stats, moves) and its
 * use by the DiT: the planned size is the measured peak, a forward never falls back, later
 * forwards allocate nothing, and the output is bit for bit the one without an arena. */
#include "hv-arena.h"
#include "hv-denoise.h"
#include "hv-dit.h"
#include "hv-error.h"
#include "hv-layout.h"
#include <math.h>
#include <string.h>

static const char *fixtures;   /* tests/data/fixtures */

static gboolean
is_aligned (const HvTensor *t)
{
  return ((guintptr) t->data & (HV_ARENA_ALIGN - 1)) == 0;
}

/* Does t lie in [base, base + n)? */
static gboolean
inside (const HvTensor *t, const char *base, gsize n)
{
  return (const char *) t->data >= base && (const char *) t->data < base + n;
}

static void
test_size (void)
{
  g_assert_cmpuint (hv_arena_size (0), ==, 256);
  g_assert_cmpuint (hv_arena_size (1), ==, 256);
  g_assert_cmpuint (hv_arena_size (256), ==, 256);
  g_assert_cmpuint (hv_arena_size (257), ==, 512);
  g_assert_cmpuint (hv_arena_size (1000000), ==, 1000192);
}

/* Every tensor starts on a 256-byte boundary, right after the previous one's rounded size, and
 * they do not overlap: filling each with its own value leaves the others intact. */
static void
test_alignment (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvArena) a = hv_arena_new (b, 10000, &error);
  g_assert_no_error (error);
  const int64_t s1[1] = { 3 }, s2[2] = { 5, 13 }, s3[3] = { 1, 1, 1 }, s4[1] = { 300 };
  HvTensor *t[4];
  t[0] = hv_arena_tensor (a, HV_DTYPE_F32, 1, s1);
  t[1] = hv_arena_tensor (a, HV_DTYPE_F32, 2, s2);   /* 260 bytes: takes 512 */
  t[2] = hv_arena_tensor (a, HV_DTYPE_U8, 3, s3);
  t[3] = hv_arena_tensor (a, HV_DTYPE_I32, 1, s4);
  const gsize expect_off[4] = { 0, 256, 768, 1024 };
  for (int i = 0; i < 4; i++) {
    g_assert_nonnull (t[i]);
    g_assert_true (is_aligned (t[i]));
    g_assert_true (hv_tensor_is_contiguous (t[i]));
    g_assert_true (t[i]->backend == b);
    g_assert_cmpint ((char *) t[i]->data - (char *) t[0]->data, ==, expect_off[i]);
    memset (t[i]->data, 0x10 + i, hv_tensor_nbytes (t[i]));
  }
  for (int i = 0; i < 4; i++)
    for (gsize j = 0; j < hv_tensor_nbytes (t[i]); j++)
      g_assert_cmpint (((guint8 *) t[i]->data)[j], ==, 0x10 + i);
  HvArenaStats st;
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 1024 + 1280);
  g_assert_cmpuint (st.capacity, ==, hv_arena_size (10000));
  for (int i = 0; i < 4; i++)
    hv_tensor_free (t[i]);
}

/* mark/release: stack discipline, nested marks, an outer release takes the inner ones along,
 * and the scope macro releases at the end of its block. */
static void
test_mark_release (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(HvArena) a = hv_arena_new (b, 1 << 16, NULL);
  const int64_t s[1] = { 100 };
  g_autoptr(HvTensor) base = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  HvArenaMark m0 = hv_arena_mark (a);
  g_autoptr(HvTensor) x = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  HvArenaMark m1 = hv_arena_mark (a);
  g_autoptr(HvTensor) y = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  void *ydata = y->data;
  hv_arena_release (a, m1);
  g_autoptr(HvTensor) y2 = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  g_assert_true (y2->data == ydata);                  /* y's bytes handed out again */
  hv_arena_release (a, m0);                           /* releases x and y2 (the inner mark too) */
  HvArenaStats st;
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 512);
  g_assert_cmpuint (st.peak, ==, 3 * 512);
  g_autoptr(HvTensor) x2 = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  g_assert_true (x2->data == x->data);
  HvArenaMark inner;
  {
    HV_ARENA_SCOPE (a);
    g_autoptr(HvTensor) z = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
    g_assert_true ((char *) z->data == (char *) x2->data + 512);
    hv_arena_stats (a, &st);
    g_assert_cmpuint (st.used, ==, 3 * 512);
    inner = hv_arena_mark (a);
  }
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 2 * 512);
  /* releasing a mark above the pointer (one an outer release already freed) is refused */
  if (g_test_undefined ()) {
    g_test_expect_message ("hyvideo", G_LOG_LEVEL_CRITICAL, "*m.top <= a->top*");
    hv_arena_release (a, inner);
    g_test_assert_expected_messages ();
    hv_arena_stats (a, &st);
    g_assert_cmpuint (st.used, ==, 2 * 512);
  }
}

static void
test_reset (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(HvArena) a = hv_arena_new (b, 4096, NULL);
  const int64_t s[1] = { 200 };
  g_autoptr(HvTensor) t1 = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  g_autoptr(HvTensor) t2 = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  g_assert_true ((char *) t2->data == (char *) t1->data + 1024);
  hv_arena_reset (a);
  HvArenaStats st;
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 0);
  g_assert_cmpuint (st.peak, ==, 2048);
  g_autoptr(HvTensor) t3 = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  g_assert_true (t3->data == t1->data);
  /* reserve on an empty arena keeps a big enough block (never shrinks) */
  hv_arena_reset (a);
  g_autoptr(GError) error = NULL;
  g_assert_true (hv_arena_reserve (a, 100, &error));
  g_assert_no_error (error);
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.capacity, ==, 4096);
}

/* A request that does not fit comes from the backend, is counted, works like any tensor and is
 * freed by hv_tensor_free; smaller requests after it still come from the block. */
static void
test_fallback (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(HvArena) a = hv_arena_new (b, 1024, NULL);
  const int64_t s128[1] = { 128 }, s300[1] = { 300 }, s64[1] = { 64 };
  g_autoptr(HvTensor) in = hv_arena_tensor (a, HV_DTYPE_F32, 1, s128);    /* 512 of 1024 */
  char *base = in->data;
  g_autoptr(HvTensor) big = hv_arena_tensor (a, HV_DTYPE_F32, 1, s300);   /* 1280: falls back */
  g_assert_nonnull (big);
  g_assert_false (inside (big, base, 1024));
  g_assert_true (big->backend == b);
  g_autoptr(HvTensor) small = hv_arena_tensor (a, HV_DTYPE_F32, 1, s64);  /* fits */
  g_assert_true ((char *) small->data == base + 512);
  /* the fallback tensor computes like the others */
  float *p = big->data;
  for (int i = 0; i < 300; i++)
    p[i] = (float) i;
  hv_op_scale (b, big, big, 2.0f, 1.0f);
  g_assert_cmpfloat (p[299], ==, 599.0f);
  HvArenaStats st;
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.n_tensors, ==, 3);
  g_assert_cmpuint (st.n_fallback, ==, 1);
  g_assert_cmpuint (st.fallback_bytes, ==, 1280);
  g_assert_cmpuint (st.used, ==, 768);
  g_assert_cmpuint (st.peak, ==, 768);
  g_assert_cmpuint (st.demand_peak, ==, 512 + 1280 + 256);
  g_clear_pointer (&big, hv_tensor_free);   /* its own memory; the arena is untouched */
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 768);
}

/* Freeing arena tensors (headers) in any order, or after the arena, touches nothing. */
static void
test_free_out_of_order (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  HvArena *a = hv_arena_new (b, 8192, NULL);
  const int64_t s[1] = { 64 };
  HvTensor *t[4];
  for (int i = 0; i < 4; i++) {
    t[i] = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
    float *p = t[i]->data;
    for (int j = 0; j < 64; j++)
      p[j] = (float) (i * 100 + j);
  }
  hv_tensor_free (t[2]);
  hv_tensor_free (t[0]);
  HvArenaStats st;
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 4 * 256);
  for (int i = 1; i < 4; i += 2)
    for (int j = 0; j < 64; j++)
      g_assert_cmpfloat (((float *) t[i]->data)[j], ==, (float) (i * 100 + j));
  /* the next tensor goes after t[3], not into the freed headers' bytes */
  g_autoptr(HvTensor) n = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  g_assert_true ((char *) n->data == (char *) t[3]->data + 256);
  hv_arena_free (a);
  hv_tensor_free (t[3]);   /* headers may outlive the arena */
  hv_tensor_free (t[1]);
}

/* Measure mode: capacity 0 runs everything through the backend while learning the demand;
 * fit sizes the block and the same sequence then needs no fallback. */
static void
test_measure (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvArena) a = hv_arena_new (b, 0, &error);
  g_assert_no_error (error);
  for (int round = 0; round < 2; round++) {
    hv_arena_clear_stats (a);
    HvArenaMark m = hv_arena_mark (a);
    const int64_t s1[2] = { 10, 30 }, s2[1] = { 1000 }, s3[1] = { 7 };
    g_autoptr(HvTensor) x = hv_arena_tensor (a, HV_DTYPE_F32, 2, s1);      /* 1280 */
    {
      HV_ARENA_SCOPE (a);
      g_autoptr(HvTensor) y = hv_arena_tensor (a, HV_DTYPE_F32, 1, s2);    /* 4096 */
      g_autoptr(HvTensor) z = hv_arena_tensor (a, HV_DTYPE_U8, 1, s3);     /* 256 */
      g_assert_nonnull (y);
      g_assert_nonnull (z);
    }
    g_autoptr(HvTensor) w = hv_arena_tensor (a, HV_DTYPE_F32, 1, s2);      /* 4096 */
    hv_arena_release (a, m);
    HvArenaStats st;
    hv_arena_stats (a, &st);
    g_assert_cmpuint (st.demand_peak, ==, 1280 + 4096 + 256);
    g_assert_cmpuint (st.n_tensors, ==, 4);
    if (round == 0) {
      g_assert_cmpuint (st.capacity, ==, 0);
      g_assert_cmpuint (st.n_fallback, ==, 4);
      g_assert_cmpuint (st.peak, ==, 0);
      g_assert_true (hv_arena_fit (a, &error));
      g_assert_no_error (error);
    } else {
      g_assert_cmpuint (st.capacity, ==, 1280 + 4096 + 256);
      g_assert_cmpuint (st.n_fallback, ==, 0);
      g_assert_cmpuint (st.peak, ==, st.demand_peak);
    }
  }
}

/* move_down: a tensor made above dead ones takes their place, contents copied exactly; when
 * the places would overlap nothing moves. */
static void
test_move_down (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (1);
  g_autoptr(HvArena) a = hv_arena_new (b, 1 << 16, NULL);
  const int64_t s[1] = { 100 }, s2[1] = { 180 };
  HvArenaMark m = hv_arena_mark (a);
  g_autoptr(HvTensor) dead1 = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  g_autoptr(HvTensor) dead2 = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  char *base = dead1->data;
  HvTensor *t = hv_arena_tensor (a, HV_DTYPE_F32, 1, s2);   /* 720 bytes at 1024 */
  float *p = t->data;
  for (int i = 0; i < 180; i++)
    p[i] = sinf ((float) i) * 1e-30f;   /* tiny values: any rounding would show */
  p[7] = NAN;
  t = hv_arena_move_down (a, m, t);
  g_assert_nonnull (t);
  g_assert_true ((char *) t->data == base);
  for (int i = 0; i < 180; i++) {
    float want = sinf ((float) i) * 1e-30f, got = ((float *) t->data)[i];
    if (i == 7)
      g_assert_true (isnan (got));
    else
      g_assert_cmpint (memcmp (&got, &want, 4), ==, 0);
  }
  HvArenaStats st;
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 768);
  /* overlapping: the tensor right above the mark cannot move onto itself */
  HvArenaMark m2 = hv_arena_mark (a);
  HvTensor *u = hv_arena_tensor (a, HV_DTYPE_F32, 1, s);
  HvTensor *same = hv_arena_move_down (a, m2, u);
  g_assert_true (same == u);
  hv_arena_stats (a, &st);
  g_assert_cmpuint (st.used, ==, 768 + 512);
  hv_tensor_free (same);
  hv_tensor_free (t);
}

/* ---- the DiT's arena ------------------------------------------------------------------------- */

static guint64 rng_state;

static float
rng_uniform (void)   /* xorshift64 → [-1, 1) */
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float) ((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct {
  HvStore *store;
  gboolean linear_text;   /* replace the token refiner by the linear text projection */
  int text_dim, hidden;
  GError *error;
} Fill;

static void
put (Fill *f, const char *name, int ndim, const int64_t *shape)
{
  HvTensor *t = hv_tensor_new (HV_DTYPE_BF16, ndim, shape);
  int64_t n = hv_tensor_numel (t);
  uint16_t *p = t->data;
  float amp = ndim >= 2 ? 1.0f / sqrtf ((float) (n / shape[0])) : 0.1f;
  float off = ndim == 1 && g_str_has_suffix (name, ".weight") ? 1.0f : 0.0f;
  for (int64_t i = 0; i < n; i++)
    p[i] = hv_f32_to_bf16 (off + amp * rng_uniform ());
  hv_store_insert (f->store, name, t, f->error ? NULL : &f->error);
}

static void
add_random (const char *name, int ndim, const int64_t *shape, gpointer data)
{
  Fill *f = data;
  if (!f->linear_text || !g_str_has_prefix (name, "txt_in."))
    put (f, name, ndim, shape);
}

/* A random bf16 DiT of the given shape (the store is owned by the caller). */
static HvDit *
random_dit (HvBackend *b, const HvDitShape *g, gboolean linear_text, const int rope[3], HvStore **store)
{
  rng_state = 0x9e3779b97f4a7c15ull;
  Fill f = { .store = hv_store_new (), .linear_text = linear_text };
  hv_dit_expected (g, add_random, &f);
  if (linear_text) {
    const int64_t w1[2] = { g->hidden, g->text_dim }, w2[2] = { g->hidden, g->hidden }, bs[1] = { g->hidden };
    put (&f, "txt_in.linear_1.weight", 2, w1);
    put (&f, "txt_in.linear_1.bias", 1, bs);
    put (&f, "txt_in.linear_2.weight", 2, w2);
    put (&f, "txt_in.linear_2.bias", 1, bs);
  }
  g_assert_no_error (f.error);
  HvDitConfig cfg;
  hv_dit_config_init (&cfg);
  memcpy (cfg.rope_dim, rope, sizeof cfg.rope_dim);
  g_autoptr(GError) error = NULL;
  HvDit *d = hv_dit_new (f.store, &cfg, b, &error);
  g_assert_no_error (error);
  *store = f.store;
  return d;
}

static HvTensor *
random_act (HvBackend *b, int ndim, const int64_t *shape)
{
  g_autoptr(HvTensor) h = hv_tensor_new (HV_DTYPE_F32, ndim, shape);
  float *p = h->data;
  for (int64_t i = 0; i < hv_tensor_numel (h); i++)
    p[i] = rng_uniform ();
  return hv_backend_upload (b, h);
}

typedef struct {
  guint n;
  double sum;   /* of every captured value: the capture sees the same data with and without */
} Captured;

static void
on_capture (const char *name, const HvTensor *t, gpointer data)
{
  Captured *c = data;
  if (!t->backend) {   /* host tensors (cu_seqlens) do not depend on the arena */
    c->n++;
    return;
  }
  g_autoptr(HvTensor) h = hv_backend_download (t->backend, t);
  g_autoptr(HvTensor) f = hv_tensor_to_f32 (h);
  for (int64_t i = 0; i < hv_tensor_numel (f); i++)
    c->sum += ((float *) f->data)[i];
  c->n++;
}

/* One forward at latent [B, C, T, H, W] with L text tokens (item b has L - 3b valid); the
 * output on the host. */
static HvTensor *
forward (HvDit *d, int64_t B, int64_t T, int64_t H, int64_t W, int64_t L)
{
  const HvDitInfo *in = hv_dit_info (d);
  HvBackend *b = hv_dit_backend (d);
  rng_state = 0x243f6a8885a308d3ull;
  const int64_t xs[5] = { B, in->in_channels, T, H, W }, ss[3] = { B, L, in->text_dim };
  const int64_t ps[2] = { B, in->text_dim_2 };
  g_autoptr(HvTensor) x = random_act (b, 5, xs);
  g_autoptr(HvTensor) states = random_act (b, 3, ss);
  g_autoptr(HvTensor) pooled = random_act (b, 2, ps);
  g_autofree int32_t *mask = g_new (int32_t, B * L);
  float t[4], g[4];
  for (int64_t i = 0; i < B; i++) {
    for (int64_t l = 0; l < L; l++)
      mask[i * L + l] = l < MAX (1, L - 3 * i);
    t[i] = 900.0f - 100.0f * i;
    g[i] = 6016.0f;
  }
  const int64_t os[5] = { B, in->out_channels, T, H, W };
  g_autoptr(HvTensor) out = hv_backend_tensor_f32 (b, 5, os);
  g_autoptr(GError) error = NULL;
  g_assert_true (hv_dit_forward (d, out, x, t, in->guidance_embed ? g : NULL, states, mask, pooled, &error));
  g_assert_no_error (error);
  return hv_backend_download (b, out);
}

/* Without an arena, with it, and again: identical outputs (and captures); the arena is the
 * planned size, never falls back, and the second forward allocates no block. */
static void
check_dit (HvDit *d, int64_t B, int64_t T, int64_t H, int64_t W, int64_t L, gboolean capture)
{
  const HvDitInfo *in = hv_dit_info (d);
  const int64_t Ni = (T / in->patch[0]) * (H / in->patch[1]) * (W / in->patch[2]);
  Captured c0 = { 0 }, c1 = { 0 }, c2 = { 0 };
  hv_dit_set_capture (d, capture ? on_capture : NULL, &c0);
  const gsize plan = hv_dit_activation_bytes (d, B, Ni, L);

  hv_dit_set_arena (d, FALSE);
  hv_dit_clear_arena_stats (d);
  g_autoptr(HvTensor) ref = forward (d, B, T, H, W, L);
  HvArenaStats st;
  hv_dit_arena_stats (d, &st);
  g_assert_cmpuint (st.capacity, ==, 0);
  g_assert_cmpuint (st.n_fallback, ==, st.n_tensors);   /* every tensor on its own */
  const gsize demand_off = st.demand_peak;

  hv_dit_set_arena (d, TRUE);
  hv_dit_set_capture (d, capture ? on_capture : NULL, &c1);
  hv_dit_clear_arena_stats (d);
  g_autoptr(HvTensor) o1 = forward (d, B, T, H, W, L);
  hv_dit_arena_stats (d, &st);
  if (g_test_verbose ())
    g_printerr ("  B %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT " + %" G_GINT64_FORMAT " tokens%s: plan %"
                G_GSIZE_FORMAT " B, peak %" G_GSIZE_FORMAT " B, %" G_GUINT64_FORMAT " tensors\n",
                B, Ni, L, capture ? " (capture)" : "", plan, st.peak, st.n_tensors);
  g_assert_cmpuint (st.n_fallback, ==, 0);
  g_assert_cmpuint (st.n_tensors, >, 20);
  g_assert_cmpuint (st.capacity, >=, plan);
  g_assert_cmpuint (st.peak, ==, plan);                   /* the plan is the peak, not a guess */
  g_assert_cmpuint (demand_off, ==, st.peak);             /* same allocation pattern without it */
  g_assert_cmpuint (st.used, ==, 0);                      /* all released at the end */
  const gsize cap1 = st.capacity;

  hv_dit_clear_arena_stats (d);
  hv_dit_set_capture (d, capture ? on_capture : NULL, &c2);
  g_autoptr(HvTensor) o2 = forward (d, B, T, H, W, L);
  hv_dit_arena_stats (d, &st);
  g_assert_cmpuint (st.n_fallback, ==, 0);
  g_assert_cmpuint (st.capacity, ==, cap1);

  gsize n = hv_tensor_nbytes (ref);
  g_assert_cmpint (memcmp (ref->data, o1->data, n), ==, 0);
  g_assert_cmpint (memcmp (o1->data, o2->data, n), ==, 0);
  if (capture) {
    g_assert_cmpuint (c0.n, >, 10);
    g_assert_cmpuint (c0.n, ==, c1.n);
    g_assert_cmpuint (c0.n, ==, c2.n);
    g_assert_cmpfloat (c0.sum, ==, c1.sum);
    g_assert_cmpfloat (c0.sum, ==, c2.sum);
  }
  hv_dit_set_capture (d, NULL, NULL);
}

/* The tiny fixture DiT at the fixture's size and at batch 2, with and without captures. */
static void
test_dit_tiny (void)
{
  g_autofree char *path = g_build_filename (fixtures, "dit", "dit_weights.safetensors", NULL);
  g_autoptr(HvBackend) b = hv_backend_cpu_new (2);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvDit) d = hv_dit_open (path, NULL, b, &error);
  g_assert_no_error (error);
  check_dit (d, 1, 3, 8, 12, 16, FALSE);
  check_dit (d, 1, 3, 8, 12, 16, TRUE);
  check_dit (d, 2, 3, 8, 12, 16, FALSE);
  check_dit (d, 2, 3, 8, 12, 16, TRUE);

  /* trimming gives the block back; the next forward makes it again, same result */
  g_autoptr(HvTensor) before = forward (d, 1, 3, 8, 12, 16);
  hv_dit_trim_memory (d);
  HvArenaStats st;
  hv_dit_arena_stats (d, &st);
  g_assert_cmpuint (st.capacity, ==, 0);
  g_autoptr(HvTensor) after = forward (d, 1, 3, 8, 12, 16);
  hv_dit_arena_stats (d, &st);
  g_assert_cmpuint (st.capacity, ==, hv_arena_size (hv_dit_activation_bytes (d, 1, 72, 16)));
  g_assert_cmpuint (st.n_fallback, ==, 0);
  g_assert_cmpint (memcmp (before->data, after->data, hv_tensor_nbytes (before)), ==, 0);
}

/* Larger random DiTs: wider, more tokens than the MLP row chunk (with a remainder), batch 2,
 * refiner with its own MLP width; and a time patch of 2 with the linear text projection. */
static void
test_dit_random (void)
{
  g_autoptr(HvBackend) b = hv_backend_cpu_new (2);
  {
    const HvDitShape g = {
      .hidden = 128, .heads = 2, .head_dim = 64, .mlp_hidden = 512, .refiner_mlp_hidden = 384,
      .n_double = 2, .n_single = 2, .n_refiner = 2, .in_channels = 16, .out_channels = 16,
      .patch = { 1, 2, 2 }, .text_dim = 96, .text_dim_2 = 48, .freq_dim = 256, .guidance_embed = TRUE,
    };
    const int rope[3] = { 16, 24, 24 };
    g_autoptr(HvStore) s = NULL;
    g_autoptr(HvDit) d = random_dit (b, &g, FALSE, rope, &s);
    hv_dit_set_row_chunk (d, 64);
    check_dit (d, 2, 4, 8, 22, 40, FALSE);    /* 176 img tokens: 2.75 chunks */
    check_dit (d, 1, 4, 8, 22, 40, TRUE);
    g_clear_pointer (&d, hv_dit_free);
  }
  {
    const HvDitShape g = {
      .hidden = 96, .heads = 3, .head_dim = 32, .mlp_hidden = 256, .refiner_mlp_hidden = 256,
      .n_double = 1, .n_single = 2, .n_refiner = 0, .in_channels = 8, .out_channels = 4,
      .patch = { 2, 2, 2 }, .text_dim = 40, .text_dim_2 = 24, .freq_dim = 64, .guidance_embed = FALSE,
    };
    const int rope[3] = { 8, 12, 12 };
    g_autoptr(HvStore) s = NULL;
    g_autoptr(HvDit) d = random_dit (b, &g, TRUE, rope, &s);
    check_dit (d, 1, 4, 8, 6, 7, FALSE);
    check_dit (d, 2, 4, 8, 6, 50, TRUE);     /* more text than image tokens */
    g_clear_pointer (&d, hv_dit_free);
  }
}

/* The denoise loop: steps after the first allocate no arena block, and the DiT never falls back
 * (with CFG: batch 2 through the DiT). */
static void
test_denoise_reuse (void)
{
  g_autofree char *path = g_build_filename (fixtures, "dit", "dit_weights.safetensors", NULL);
  g_autoptr(HvBackend) b = hv_backend_cpu_new (2);
  g_autoptr(GError) error = NULL;
  g_autoptr(HvDit) d = hv_dit_open (path, NULL, b, &error);
  g_assert_no_error (error);
  const HvDitInfo *in = hv_dit_info (d);
  rng_state = 0x1234567ull;
  const int64_t xs[5] = { 1, in->in_channels, 3, 8, 12 }, ss[3] = { 1, 16, in->text_dim };
  const int64_t ps[2] = { 1, in->text_dim_2 };
  g_autoptr(HvTensor) lat = random_act (b, 5, xs);
  g_autoptr(HvTensor) st_pos = random_act (b, 3, ss);
  g_autoptr(HvTensor) st_neg = random_act (b, 3, ss);
  g_autoptr(HvTensor) pool_pos = random_act (b, 2, ps);
  g_autoptr(HvTensor) pool_neg = random_act (b, 2, ps);
  int32_t mask[16];
  for (int i = 0; i < 16; i++)
    mask[i] = i < 9;
  HvDitCond pos = { st_pos, mask, pool_pos }, neg = { st_neg, mask, pool_neg };
  HvDenoiseParams p;
  hv_denoise_params_init (&p);
  p.steps = 3;
  p.cfg_scale = 3.0f;
  g_autoptr(HvDenoiser) dn = hv_denoiser_new (d, &p, &pos, &neg, &error);
  g_assert_no_error (error);
  HvArenaStats st;
  gsize cap = 0;
  for (int i = 0; i < 3; i++) {
    hv_dit_clear_arena_stats (d);
    g_assert_true (hv_denoiser_step (dn, i, lat, &error));
    g_assert_no_error (error);
    hv_dit_arena_stats (d, &st);
    g_assert_cmpuint (st.n_fallback, ==, 0);
    g_assert_cmpuint (st.peak, ==, hv_dit_activation_bytes (d, 2, 72, 16));
    if (i == 0)
      cap = st.capacity;
    g_assert_cmpuint (st.capacity, ==, cap);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  fixtures = g_getenv ("HV_FIXTURES");
  g_test_add_func ("/arena/size", test_size);
  g_test_add_func ("/arena/alignment", test_alignment);
  g_test_add_func ("/arena/mark-release", test_mark_release);
  g_test_add_func ("/arena/reset", test_reset);
  g_test_add_func ("/arena/fallback", test_fallback);
  g_test_add_func ("/arena/free-out-of-order", test_free_out_of_order);
  g_test_add_func ("/arena/measure", test_measure);
  g_test_add_func ("/arena/move-down", test_move_down);
  g_test_add_func ("/arena/dit-random", test_dit_random);
  if (fixtures) {
    g_test_add_func ("/arena/dit-tiny", test_dit_tiny);
    g_test_add_func ("/arena/denoise-reuse", test_denoise_reuse);
  } else {
    g_printerr ("HV_FIXTURES not set: skipping the fixture DiT tests\n");
  }
  return g_test_run ();
}
