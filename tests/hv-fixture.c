/* hv-fixture — runs golden fixtures (sidecar NAME.json + NAME.safetensors) through the engine
 * and compares every tensor it can produce.
 *
 *   hv-fixture [--backend cpu|cuda] [--tokenizers DIR] [--weights FILE] FILE.json...
 *
 * The sidecar's "kind" picks the component; a sidecar without "kind" that lists "keys" (the
 * model descriptions dit_config.json, vae/weights.json) runs the `weights` checks. Prints one
 * line per compared tensor and ends with "fixtures: N passed, M failed"; exit 0 only if all
 * pass. Unknown kinds fail loudly. */
#include "fixture.h"
#include "hv-error.h"
#include <stdio.h>
#include <string.h>

static const struct {
  const char *kind;
  HvFixtureFunc run;
} kinds[] = {
  { "weights", hv_fixture_run_weights },
  { "vae_decode", hv_fixture_run_vae_decode },
  { "vae_tiled_decode", hv_fixture_run_vae_tiled_decode },
  { "vae_encode", hv_fixture_run_vae_encode },
  { "dit_forward", hv_fixture_run_dit_forward },
  { "dit_forward_fp8", hv_fixture_run_dit_forward_fp8 },
  { "denoise", hv_fixture_run_denoise },
  { "cfg_denoise", hv_fixture_run_cfg_denoise },
  { "tokens", hv_fixture_run_tokens },
  { "llama_encode", hv_fixture_run_llama_encode },
  { "clip_encode", hv_fixture_run_clip_encode },
  { "rng", hv_fixture_run_rng },
  { "scheduler", hv_fixture_run_scheduler },
  /* kinds of the later components are added here */
};

static HvFixtureFunc
find_kind (const char *kind)
{
  for (guint i = 0; i < G_N_ELEMENTS (kinds); i++)
    if (strcmp (kinds[i].kind, kind) == 0)
      return kinds[i].run;
  return NULL;
}

static gboolean
run_one (const char *sidecar, HvBackend *backend, gboolean cuda, const char *tokenizers,
         const char *weights, int *n_pass, int *n_fail)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autofree char *base = g_path_get_basename (sidecar);
  HvFixture fx = {
    .sidecar = sidecar,
    .dir = g_path_get_dirname (sidecar),
    .name = g_strndup (base, g_str_has_suffix (base, ".json") ? strlen (base) - 5 : strlen (base)),
    .backend = backend,
    .cuda = cuda,
    .tokenizers = tokenizers,
    .weights = weights,
  };
  const char *kind = NULL;
  HvFixtureFunc run = NULL;
  gboolean ran = FALSE;

  if (!json_parser_load_from_file (parser, sidecar, &error)) {
    printf ("FAIL %s: cannot read sidecar: %s\n", fx.name, error->message);
    goto out;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root)) {
    printf ("FAIL %s: sidecar is not a JSON object\n", fx.name);
    goto out;
  }
  fx.root = json_node_get_object (root);
  if (json_object_has_member (fx.root, "kind"))
    kind = json_object_get_string_member_with_default (fx.root, "kind", "");
  else if (json_object_has_member (fx.root, "keys"))
    kind = "weights";
  else
    kind = "(none)";
  run = find_kind (kind);
  if (!run) {
    printf ("FAIL %s: unknown fixture kind '%s'\n", fx.name, kind);
    goto out;
  }
  if (json_object_has_member (fx.root, "file")) {
    g_autofree char *path = hv_fixture_path (&fx, json_object_get_string_member (fx.root, "file"));
    fx.tensors = hv_store_open (path, &error);
    if (!fx.tensors) {
      printf ("FAIL %s: %s\n", fx.name, error->message);
      goto out;
    }
  }
  if (!run (&fx, &error)) {
    printf ("FAIL %s: %s\n", fx.name, error ? error->message : "failed");
    fx.n_fail++;
  }
  ran = TRUE;
out:
  if (!ran)
    fx.n_fail++;
  *n_pass += fx.n_pass;
  *n_fail += fx.n_fail;
  hv_store_free (fx.tensors);
  g_free (fx.dir);
  g_free (fx.name);
  return fx.n_fail == 0;
}

int
main (int argc, char **argv)
{
  g_autofree char *backend_name = NULL;
  g_autofree char *tokenizers = NULL;
  g_autofree char *weights = NULL;
  int threads = 0;
  g_auto(GStrv) files = NULL;
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend_name, "cpu (default) or cuda[:N]", "NAME" },
    { "tokenizers", 0, 0, G_OPTION_ARG_FILENAME, &tokenizers, "folder with llama3/ and clip/ (default: tokenizers/ beside the fixtures folder)", "DIR" },
    { "weights", 0, 0, G_OPTION_ARG_FILENAME, &weights, "load the fixture's model from this file instead", "FILE" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &threads, "CPU threads (0 = all cores)", "N" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, "FILE.json..." },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("FILE.json... — run golden fixtures");
  g_autoptr(GError) error = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "hv-fixture: %s\n", error->message);
    return 2;
  }
  if (!files || !files[0]) {
    fprintf (stderr, "hv-fixture: no fixture given (try --help)\n");
    return 2;
  }
  const char *bname = backend_name ? backend_name : "cpu";
  g_autoptr(HvBackend) backend = NULL;
  backend = hv_backend_new (bname, threads, &error);
  if (!backend) {
    fprintf (stderr, "hv-fixture: %s\n", error->message);
    /* no GPU: a skip, not a failure (meson/automake convention) */
    return g_error_matches (error, HV_ERROR, HV_ERROR_DEVICE) ? 77 : 2;
  }
  gboolean cuda = !hv_backend_is_host (backend);
  int n_pass = 0, n_fail = 0;
  for (int i = 0; files[i]; i++)
    run_one (files[i], backend, cuda, tokenizers, weights, &n_pass, &n_fail);
  printf ("fixtures: %d passed, %d failed\n", n_pass, n_fail);
  return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
