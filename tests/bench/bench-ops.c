/* bench-ops — CPU throughput of the heavy ops at real HunyuanVideo widths, as a table.
 *
 *   bench-ops [--threads N] [--quick] [--only linear|attention|conv3d|rows]
 *
 * linear: y[M,N] = x[M,K]·Wᵀ with bf16 (and fp8) weights used in place; attention: full
 * attention over L tokens, H heads of D; conv3d: a VAE-like 3×3×3 layer. GFLOP/s counts
 * 2 flops per multiply-add (attention: 4·L²·H·D). */
#include "hv-backend.h"
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static HvTensor *
rand_t (HvBackend *b, HvDType dt, int nd, const int64_t *shape)
{
  HvTensor *t = hv_backend_tensor (b, dt, nd, shape);
  int64_t n = hv_tensor_numel (t);
  guint32 s = 7;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    float f = ((s >> 8) / 16777216.0f - 0.5f);
    if (dt == HV_DTYPE_F32) ((float *) t->data)[i] = f;
    else if (dt == HV_DTYPE_BF16) ((guint16 *) t->data)[i] = hv_f32_to_bf16 (f);
    else if (dt == HV_DTYPE_F8_E4M3) ((guint8 *) t->data)[i] = (guint8) ((s >> 24) & 0xb7);  /* finite codes, |v| < 16 */
  }
  return t;
}

/* Runs fn until at least min_s seconds passed (after one warm-up), returns wall seconds per
 * run; *cpu_s gets the process CPU seconds per run (on a busy machine, flops per CPU second
 * is the steadier per-core figure). */
typedef void (*RunFunc) (gpointer);

static double
cpu_now (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double cpu_per_run;

static double
time_it (RunFunc fn, gpointer data, double min_s)
{
  fn (data);
  int n = 0;
  gint64 t0 = g_get_monotonic_time ();
  double c0 = cpu_now (), el;
  do {
    fn (data);
    n++;
    el = (g_get_monotonic_time () - t0) / 1e6;
  } while (el < min_s);
  cpu_per_run = (cpu_now () - c0) / n;
  return el / n;
}

typedef struct {
  HvBackend *b;
  HvTensor *y, *x, *w, *bias, *k, *v;
} Args;

static void run_linear (gpointer p) { Args *a = p; hv_op_linear (a->b, a->y, a->x, a->w, a->bias); }
static void run_attn (gpointer p) { Args *a = p; hv_op_attention (a->b, a->y, a->x, a->k, a->v, NULL, 0.088f); }
static void run_layernorm (gpointer p) { Args *a = p; hv_op_layernorm (a->b, a->y, a->x, NULL, NULL, 1e-6f); }
static void run_gelu (gpointer p) { Args *a = p; hv_op_unary (a->b, a->y, a->x, HV_UNARY_GELU_TANH); }
static void run_softmax (gpointer p) { Args *a = p; hv_op_softmax (a->b, a->y, a->x); }
static void run_conv (gpointer p)
{
  Args *a = p;
  hv_op_conv3d (a->b, a->y, a->x, a->w, a->bias, (int[]) { 1, 1, 1 }, (int[]) { 1, 1, 1 });
}

static void
report (const char *name, double s, double flops)
{
  printf ("%-44s %10.2f %10.1f %14.1f\n", name, s * 1e3, flops / s / 1e9, flops / cpu_per_run / 1e9);
}

static void
bench_linear (HvBackend *b, double min_s)
{
  struct { int64_t M, K, N; HvDType dt; } lin[] = {
    { 1024, 3072, 3072, HV_DTYPE_BF16 },
    { 1024, 3072, 3072, HV_DTYPE_F8_E4M3 },
    { 1024, 3072, 3072, HV_DTYPE_F32 },
    { 1, 3072, 18432, HV_DTYPE_BF16 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (lin); i++) {
    int64_t xs[2] = { lin[i].M, lin[i].K }, ws[2] = { lin[i].N, lin[i].K }, ys[2] = { lin[i].M, lin[i].N };
    Args a = { b, hv_backend_tensor_f32 (b, 2, ys), rand_t (b, HV_DTYPE_F32, 2, xs),
               rand_t (b, lin[i].dt, 2, ws), rand_t (b, HV_DTYPE_F32, 1, &lin[i].N), NULL, NULL };
    double s = time_it (run_linear, &a, min_s);
    char name[64];
    g_snprintf (name, sizeof name, "linear %s M=%d K=%d N=%d", hv_dtype_name (lin[i].dt),
                (int) lin[i].M, (int) lin[i].K, (int) lin[i].N);
    report (name, s, 2.0 * lin[i].M * lin[i].K * lin[i].N);
    hv_tensor_free (a.y); hv_tensor_free (a.x); hv_tensor_free (a.w); hv_tensor_free (a.bias);
  }
}

static void
bench_attention (HvBackend *b, double min_s, gboolean quick)
{
  int64_t L = quick ? 1024 : 2048, H = 24, D = 128;
  int64_t qs[4] = { 1, L, H, D };
  Args a = { b, hv_backend_tensor_f32 (b, 4, qs), rand_t (b, HV_DTYPE_F32, 4, qs), NULL, NULL,
             rand_t (b, HV_DTYPE_F32, 4, qs), rand_t (b, HV_DTYPE_F32, 4, qs) };
  double s = time_it (run_attn, &a, min_s);
  char name[64];
  g_snprintf (name, sizeof name, "attention L=%d H=%d D=%d", (int) L, (int) H, (int) D);
  report (name, s, 4.0 * L * L * H * D);
  hv_tensor_free (a.y); hv_tensor_free (a.x); hv_tensor_free (a.k); hv_tensor_free (a.v);
}

static void
bench_conv (HvBackend *b, double min_s, gboolean quick)
{
  int64_t C = 128, T = 3, HW = quick ? 32 : 64;
  int64_t xs[5] = { 1, C, T, HW, HW }, ws[5] = { C, C, 3, 3, 3 };
  Args c = { b, hv_backend_tensor_f32 (b, 5, xs), rand_t (b, HV_DTYPE_F32, 5, xs),
             rand_t (b, HV_DTYPE_BF16, 5, ws), rand_t (b, HV_DTYPE_F32, 1, &C), NULL, NULL };
  double s = time_it (run_conv, &c, min_s);
  char name[64];
  g_snprintf (name, sizeof name, "conv3d bf16 C=%d %dx%dx%d k3", (int) C, (int) T, (int) HW, (int) HW);
  report (name, s, 2.0 * C * C * 27 * T * HW * HW);
  hv_tensor_free (c.y); hv_tensor_free (c.x); hv_tensor_free (c.w); hv_tensor_free (c.bias);
}

/* memory-bound row ops: GB/s of f32 read + written instead of GFLOP/s */
static void
bench_rows (HvBackend *b, double min_s, gboolean quick)
{
  int64_t rs[2] = { quick ? 1024 : 4096, 3072 };
  Args r = { b, hv_backend_tensor_f32 (b, 2, rs), rand_t (b, HV_DTYPE_F32, 2, rs), NULL, NULL, NULL, NULL };
  struct { const char *name; RunFunc fn; } rowops[] = {
    { "layernorm", run_layernorm }, { "gelu_tanh", run_gelu }, { "softmax", run_softmax },
  };
  for (guint i = 0; i < G_N_ELEMENTS (rowops); i++) {
    double s = time_it (rowops[i].fn, &r, min_s);
    char name[64];
    g_snprintf (name, sizeof name, "%s [%d, %d]", rowops[i].name, (int) rs[0], (int) rs[1]);
    printf ("%-44s %10.2f %10.1f GB/s\n", name, s * 1e3, 8.0 * rs[0] * rs[1] / s / 1e9);
  }
  hv_tensor_free (r.y); hv_tensor_free (r.x);
}

int
main (int argc, char **argv)
{
  int threads = 0;
  gboolean quick = FALSE;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi (argv[++i]);
    else if (strcmp (argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (strcmp (argv[i], "--quick") == 0) quick = TRUE;
  }
  HvBackend *b = hv_backend_cpu_new (threads);
  double min_s = quick ? 0.2 : 1.0;
  const char *gemm = g_getenv ("HV_CPU_GEMM");
  printf ("cpu backend, %d threads, gemm kernel %s\n", b->n_threads, gemm ? gemm : "auto");
  printf ("%-44s %10s %10s %14s\n", "op", "ms", "GFLOP/s", "GFLOP/cpu-s");
  if (!only || strcmp (only, "linear") == 0) bench_linear (b, min_s);
  if (!only || strcmp (only, "attention") == 0) bench_attention (b, min_s, quick);
  if (!only || strcmp (only, "conv3d") == 0) bench_conv (b, min_s, quick);
  if (!only || strcmp (only, "rows") == 0) bench_rows (b, min_s, quick);
  hv_backend_free (b);
  return 0;
}
