/* fixture.c — comparison and bookkeeping shared by every fixture kind. */
#include "fixture.h"
#include "hv-error.h"
#include <math.h>
#include <stdio.h>

const HvTensor *
hv_fixture_tensor (HvFixture *fx, const char *name)
{
  return fx->tensors ? hv_store_get (fx->tensors, name) : NULL;
}

HvTensor *
hv_fixture_f32 (HvFixture *fx, const char *name, GError **error)
{
  const HvTensor *t = hv_fixture_tensor (fx, name);
  if (!t) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "fixture %s has no tensor '%s'", fx->name, name);
    return NULL;
  }
  return hv_tensor_to_f32 (t);
}

HvTensor *
hv_fixture_input (HvFixture *fx, const char *name, GError **error)
{
  g_autoptr(HvTensor) h = hv_fixture_f32 (fx, name, error);
  if (!h)
    return NULL;
  return hv_backend_upload (fx->backend, h);
}

char *
hv_fixture_path (HvFixture *fx, const char *file)
{
  return g_build_filename (fx->dir, file, NULL);
}

const char **
hv_fixture_tensor_names (HvFixture *fx, const char *kind, guint *n, GError **error)
{
  if (!fx->tensors) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s fixture %s names no tensor file", kind, fx->name);
    return NULL;
  }
  *n = hv_store_n_tensors (fx->tensors);
  return hv_store_names (fx->tensors);
}

size_t
hv_fixture_count_diff (const float *ours, const float *expected, size_t n, double *max_abs)
{
  size_t n_diff = 0;
  *max_abs = 0;
  for (size_t i = 0; i < n; i++) {
    if (ours[i] != expected[i])
      n_diff++;
    *max_abs = MAX (*max_abs, fabs ((double) ours[i] - expected[i]));
  }
  return n_diff;
}

gboolean
hv_fixture_check (HvFixture *fx, const char *label, gboolean ok, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("%s %s/%s %s\n", ok ? "PASS" : "FAIL", fx->name, label, msg);
  if (ok)
    fx->n_pass++;
  else
    fx->n_fail++;
  return ok;
}

gboolean
hv_fixture_compare_f32 (HvFixture *fx, const char *label, const HvTensor *expected,
                        const float *ours, size_t n)
{
  g_autoptr(HvTensor) exp = hv_tensor_to_f32 (expected);
  size_t ne = (size_t) hv_tensor_numel (exp);
  if (ne != n)
    return hv_fixture_check (fx, label, FALSE, "size %zu, expected %zu", n, ne);
  const float *e = exp->data;
  double max_abs = 0, max_exp = 0, d2 = 0, e2 = 0;
  gboolean finite = TRUE;
  for (size_t i = 0; i < n; i++) {
    double d = fabs ((double) ours[i] - e[i]);
    if (!isfinite (ours[i]))
      finite = FALSE;
    if (d > max_abs)
      max_abs = d;
    if (fabs (e[i]) > max_exp)
      max_exp = fabs (e[i]);
    d2 += d * d;
    e2 += (double) e[i] * e[i];
  }
  double rel = e2 > 0 ? sqrt (d2 / e2) : sqrt (d2);
  gboolean ok;
  double tol;
  if (fx->cuda) {
    tol = 1e-2;
    ok = finite && rel <= tol;
  } else {
    tol = 1e-4 * MAX (1.0, max_exp);
    ok = finite && max_abs <= tol;
  }
  return hv_fixture_check (fx, label, ok, "max_abs=%.3g rel_l2=%.3g tol=%.3g%s", max_abs, rel,
                           tol, finite ? "" : " (non-finite values)");
}

gboolean
hv_fixture_compare (HvFixture *fx, const char *name, const HvTensor *ours)
{
  const HvTensor *exp = hv_fixture_tensor (fx, name);
  if (!exp)
    return hv_fixture_check (fx, name, FALSE, "no expected tensor of that name");
  g_autoptr(HvTensor) host = ours->backend ? hv_backend_download (ours->backend, ours) : hv_tensor_view (ours);
  g_autoptr(HvTensor) f = hv_tensor_to_f32 (host);
  return hv_fixture_compare_f32 (fx, name, exp, f->data, (size_t) hv_tensor_numel (f));
}

gboolean
hv_fixture_compare_ints (HvFixture *fx, const char *label, const int64_t *expected,
                         size_t n_expected, const int64_t *ours, size_t n_ours)
{
  if (n_expected != n_ours)
    return hv_fixture_check (fx, label, FALSE, "length %zu, expected %zu", n_ours, n_expected);
  for (size_t i = 0; i < n_ours; i++)
    if (expected[i] != ours[i])
      return hv_fixture_check (fx, label, FALSE, "differs at %zu: %" G_GINT64_FORMAT " != expected %" G_GINT64_FORMAT,
                               i, ours[i], expected[i]);
  return hv_fixture_check (fx, label, TRUE, "%zu ids exact", n_ours);
}
