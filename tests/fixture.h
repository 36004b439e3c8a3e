/* fixture.h — what every fixture kind of hv-fixture gets: the sidecar, its tensors, the
 * backend, and comparison helpers that print one line per tensor and count pass/fail.
 * Tolerances (fixtures README): CPU max|ours-exp| <= 1e-4 * max(1, max|exp|);
 * CUDA ||ours-exp||2 / ||exp||2 <= 1e-2; integers exact. */
#pragma once
#include <glib.h>
#include <json-glib/json-glib.h>
#include "hv-tensor.h"
#include "hv-backend.h"
#include "loaders/hv-store.h"

typedef struct {
  const char *sidecar;       /* path of NAME.json */
  char *dir;                 /* its folder: the fixture's model lives here */
  char *name;                /* "forward_B" */
  JsonObject *root;          /* the sidecar */
  HvStore *tensors;          /* NAME.safetensors (NULL if the sidecar names no file) */
  HvBackend *backend;
  gboolean cuda;             /* compare with the CUDA tolerance */
  const char *tokenizers;    /* folder with llama3/ and clip/ (tokens kind) */
  const char *weights;       /* override of the model weights file (--weights), or NULL */
  int n_pass, n_fail;
} HvFixture;

/* A fixture kind: runs, compares, returns FALSE (with error) if it could not run at all. */
typedef gboolean (*HvFixtureFunc) (HvFixture *fx, GError **error);

/* The expected tensor `name` from the fixture file, or NULL. */
const HvTensor *hv_fixture_tensor (HvFixture *fx, const char *name);
/* A host f32 copy of tensor `name`, or NULL with error. */
HvTensor *hv_fixture_f32 (HvFixture *fx, const char *name, GError **error);
/* A copy of tensor `name` on the fixture's backend as f32. */
HvTensor *hv_fixture_input (HvFixture *fx, const char *name, GError **error);
/* Compares `ours` (any backend, any float dtype) with expected tensor `name`; prints a line
 * and counts it. Shape must match in numel. Returns pass. */
gboolean hv_fixture_compare (HvFixture *fx, const char *name, const HvTensor *ours);
/* Same with a label and a plain float array. */
gboolean hv_fixture_compare_f32 (HvFixture *fx, const char *label, const HvTensor *expected,
                                 const float *ours, size_t n);
/* Exact comparison of integer sequences. */
gboolean hv_fixture_compare_ints (HvFixture *fx, const char *label, const int64_t *expected,
                                  size_t n_expected, const int64_t *ours, size_t n_ours);
/* A pass/fail line for any other check. */
gboolean hv_fixture_check (HvFixture *fx, const char *label, gboolean ok, const char *fmt, ...) G_GNUC_PRINTF (4, 5);
/* Path of a file next to the sidecar (g_free it). */
char *hv_fixture_path (HvFixture *fx, const char *file);
/* The names of the fixture file's tensors (*n set; owned by fx), or NULL with an error when
 * the sidecar names no tensor file (`kind` names the fixture kind in the message). */
const char **hv_fixture_tensor_names (HvFixture *fx, const char *kind, guint *n, GError **error);
/* For exact checks: how many ours[i] != expected[i] of n, *max_abs the largest difference. */
size_t hv_fixture_count_diff (const float *ours, const float *expected, size_t n, double *max_abs);

/* kinds (one file each: fixture-<part>.c) */
gboolean hv_fixture_run_weights (HvFixture *fx, GError **error);
gboolean hv_fixture_run_vae_decode (HvFixture *fx, GError **error);
gboolean hv_fixture_run_vae_tiled_decode (HvFixture *fx, GError **error);
gboolean hv_fixture_run_vae_encode (HvFixture *fx, GError **error);
gboolean hv_fixture_run_dit_forward (HvFixture *fx, GError **error);
gboolean hv_fixture_run_dit_forward_fp8 (HvFixture *fx, GError **error);
gboolean hv_fixture_run_denoise (HvFixture *fx, GError **error);
gboolean hv_fixture_run_cfg_denoise (HvFixture *fx, GError **error);
gboolean hv_fixture_run_tokens (HvFixture *fx, GError **error);
gboolean hv_fixture_run_llama_encode (HvFixture *fx, GError **error);
gboolean hv_fixture_run_clip_encode (HvFixture *fx, GError **error);
gboolean hv_fixture_run_rng (HvFixture *fx, GError **error);
gboolean hv_fixture_run_scheduler (HvFixture *fx, GError **error);
