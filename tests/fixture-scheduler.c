/* fixture-scheduler.c — kind "scheduler": FlowMatchDiscreteScheduler sigmas, timesteps and
 * Euler steps.
 *
 *   n<N>_shift<S>_rev<0|1>.sigmas / .timesteps           the schedule for (N, S, reverse)
 *   euler.n<N>_shift<S>_rev<R>.idx<I>.dt / .prev_sample   step I of a fresh scheduler applied to
 *                                                         euler.sample with euler.model_output
 * The sidecar's "cases" list the same schedules as JSON numbers; they are checked too. Sigmas
 * and timesteps must match exactly (fp32 bit for bit), the Euler step at the fixture tolerance
 * (and its exactness is reported). */
#include "fixture.h"
#include "hv-error.h"
#include "hv-scheduler.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "n50_shift7_rev1" -> 50, 7, TRUE */
static gboolean
parse_config (const char *s, int *n, float *shift, gboolean *reverse)
{
  char *end;
  if (!g_str_has_prefix (s, "n"))
    return FALSE;
  long v = strtol (s + 1, &end, 10);
  if (end == s + 1 || !g_str_has_prefix (end, "_shift") || v < 1 || v > 100000)
    return FALSE;
  *n = (int) v;
  const char *p = end + 6;
  double sh = g_ascii_strtod (p, &end);
  if (end == p || !g_str_has_prefix (end, "_rev"))
    return FALSE;
  *shift = (float) sh;
  p = end + 4;
  if ((p[0] != '0' && p[0] != '1') || p[1] != '\0')
    return FALSE;
  *reverse = p[0] == '1';
  return TRUE;
}

/* exact comparison of an fp32 table; prints one line */
static gboolean
compare_exact (HvFixture *fx, const char *label, const HvTensor *exp, const float *ours, size_t n)
{
  g_autoptr(HvTensor) e = hv_tensor_to_f32 (exp);
  size_t ne = (size_t) hv_tensor_numel (e);
  if (ne != n)
    return hv_fixture_check (fx, label, FALSE, "size %zu, expected %zu", n, ne);
  double max_err;
  size_t n_diff = hv_fixture_count_diff (ours, e->data, n, &max_err);
  return hv_fixture_check (fx, label, n_diff == 0, "%zu of %zu values differ, max_abs=%.3g", n_diff, n, max_err);
}

static gboolean
run_schedule (HvFixture *fx, const char *name, GError **error)
{
  const char *dot = strrchr (name, '.');
  g_autofree char *cfg = g_strndup (name, (gsize) (dot - name));
  int n;
  float shift;
  gboolean reverse;
  if (!parse_config (cfg, &n, &shift, &reverse)) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "cannot read scheduler tensor name '%s'", name);
    return FALSE;
  }
  g_autoptr(HvScheduler) s = hv_scheduler_new (n, shift, reverse, error);
  if (!s)
    return FALSE;
  const HvTensor *exp = hv_fixture_tensor (fx, name);
  if (strcmp (dot + 1, "sigmas") == 0)
    compare_exact (fx, name, exp, s->sigmas, (size_t) n + 1);
  else
    compare_exact (fx, name, exp, s->timesteps, (size_t) n);
  return TRUE;
}

static gboolean
run_euler (HvFixture *fx, const char *name, GError **error)
{
  /* euler.<cfg>.idx<I>.<what> */
  g_auto(GStrv) parts = g_strsplit (name, ".", -1);
  int n, idx;
  float shift;
  gboolean reverse;
  char *end;
  if (g_strv_length (parts) != 4 || !parse_config (parts[1], &n, &shift, &reverse) ||
      !g_str_has_prefix (parts[2], "idx")) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "cannot read scheduler tensor name '%s'", name);
    return FALSE;
  }
  idx = (int) strtol (parts[2] + 3, &end, 10);
  if (end == parts[2] + 3 || *end || idx < 0 || idx >= n) {
    g_set_error (error, HV_ERROR, HV_ERROR_INVALID, "step index in '%s' is not in 0..%d", name, n - 1);
    return FALSE;
  }
  g_autoptr(HvScheduler) s = hv_scheduler_new (n, shift, reverse, error);
  if (!s)
    return FALSE;
  const HvTensor *exp = hv_fixture_tensor (fx, name);
  if (strcmp (parts[3], "dt") == 0) {
    float dt = s->sigmas[idx + 1] - s->sigmas[idx];
    compare_exact (fx, name, exp, &dt, 1);
    return TRUE;
  }
  if (strcmp (parts[3], "prev_sample") != 0) {
    printf ("SKIP %s/%s (not a scheduler output)\n", fx->name, name);
    return TRUE;
  }
  g_autoptr(HvTensor) x = hv_fixture_input (fx, "euler.sample", error);
  if (!x)
    return FALSE;
  g_autoptr(HvTensor) v = hv_fixture_input (fx, "euler.model_output", error);
  if (!v)
    return FALSE;
  hv_scheduler_step (s, fx->backend, idx, x, v);
  if (!hv_backend_check (fx->backend, error))
    return FALSE;
  hv_fixture_compare (fx, name, x);
  if (!fx->cuda) {
    g_autoptr(HvTensor) host = hv_backend_download (fx->backend, x);
    g_autofree char *label = g_strdup_printf ("%s[bit-exact]", name);
    compare_exact (fx, label, exp, host->data, (size_t) hv_tensor_numel (host));
  }
  return TRUE;
}

/* the sidecar's "cases": {steps, shift, reverse, sigmas[], timesteps[]} */
static gboolean
run_json_cases (HvFixture *fx, GError **error)
{
  if (!json_object_has_member (fx->root, "cases"))
    return TRUE;
  JsonArray *cases = json_object_get_array_member (fx->root, "cases");
  for (guint i = 0; cases && i < json_array_get_length (cases); i++) {
    JsonObject *c = json_array_get_object_element (cases, i);
    if (!c || !json_object_has_member (c, "steps") || !json_object_has_member (c, "sigmas"))
      continue;
    int n = (int) json_object_get_int_member (c, "steps");
    float shift = (float) json_object_get_double_member_with_default (c, "shift", 1.0);
    gboolean reverse = json_object_get_boolean_member_with_default (c, "reverse", TRUE);
    g_autoptr(HvScheduler) s = hv_scheduler_new (n, shift, reverse, error);
    if (!s)
      return FALSE;
    const char *keys[2] = { "sigmas", "timesteps" };
    for (int k = 0; k < 2; k++) {
      JsonArray *a = json_object_get_array_member (c, keys[k]);
      guint len = a ? json_array_get_length (a) : 0;
      g_autofree char *label = g_strdup_printf ("cases[%u](n=%d,shift=%g,reverse=%d).%s", i, n,
                                                (double) shift, reverse, keys[k]);
      guint want = (guint) (k == 0 ? n + 1 : n);
      if (len != want) {
        hv_fixture_check (fx, label, FALSE, "%u values in the sidecar, expected %u", len, want);
        continue;
      }
      const float *ours = k == 0 ? s->sigmas : s->timesteps;
      guint n_diff = 0;
      for (guint j = 0; j < len; j++)
        if ((float) json_array_get_double_element (a, j) != ours[j])
          n_diff++;
      hv_fixture_check (fx, label, n_diff == 0, "%u of %u values differ", n_diff, len);
    }
  }
  return TRUE;
}

gboolean
hv_fixture_run_scheduler (HvFixture *fx, GError **error)
{
  guint n;
  const char **names = hv_fixture_tensor_names (fx, "scheduler", &n, error);
  if (!names)
    return FALSE;
  for (guint i = 0; i < n; i++) {
    const char *name = names[i];
    gboolean ok = TRUE;
    if (g_str_has_prefix (name, "euler.")) {
      if (strcmp (name, "euler.sample") == 0 || strcmp (name, "euler.model_output") == 0)
        continue;
      ok = run_euler (fx, name, error);
    } else if (g_str_has_suffix (name, ".sigmas") || g_str_has_suffix (name, ".timesteps")) {
      ok = run_schedule (fx, name, error);
    } else {
      printf ("SKIP %s/%s (unknown scheduler tensor)\n", fx->name, name);
    }
    if (!ok)
      return FALSE;
  }
  return run_json_cases (fx, error);
}
