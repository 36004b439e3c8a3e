/* hyvideo-inspect.c — `hyvideo inspect PATH`: what a model folder or weights file holds and
 * whether it is complete and consistent (exit 0 only then).
 *
 *   hyvideo inspect [--fp8-map FILE] [--config FILE] [--prefer-fp8] PATH
 *   hyvideo inspect --manifest FILE      (names + shapes of a full model, no weights needed)
 *
 * PATH: an official or diffusers model folder, a component folder (config.json + weights), or
 * one weights file (DiT, VAE or text encoder, recognised by its tensor names). */
#include "hyvideo.h"
#include "hv-error.h"
#include "loaders/hv-store.h"
#include "loaders/hv-layout.h"
#include "loaders/hv-fp8.h"
#include <stdio.h>
#include <string.h>

typedef struct {
  int problems;
} Report;

static void G_GNUC_PRINTF (2, 3)
problem (Report *r, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_auto(GStrv) lines = g_strsplit (msg, "\n", -1);
  for (int i = 0; lines[i]; i++)
    printf ("  %s%s\n", i ? "  " : "problem: ", lines[i]);
  r->problems++;
}

static void
print_stats (HvStore *s)
{
  guint count[HV_DTYPE_COUNT] = { 0 };
  const char **names = hv_store_names (s);
  for (guint i = 0; names[i]; i++)
    count[hv_store_get (s, names[i])->dtype]++;
  guint64 n = hv_store_n_params (s);
  g_autoptr(GString) digits = g_string_new (NULL);
  g_autofree char *raw = g_strdup_printf ("%" G_GUINT64_FORMAT, n);
  gsize len = strlen (raw);
  for (gsize i = 0; i < len; i++) {
    if (i && (len - i) % 3 == 0)
      g_string_append_c (digits, ',');
    g_string_append_c (digits, raw[i]);
  }
  const char *unit = n >= 1000000000ull ? "B" : n >= 1000000ull ? "M" : "K";
  double scaled = n >= 1000000000ull ? n / 1e9 : n >= 1000000ull ? n / 1e6 : n / 1e3;
  printf ("  tensors: %u, parameters: %s (%.2f%s), dtypes:", hv_store_n_tensors (s), digits->str, scaled, unit);
  for (int d = 0; d < HV_DTYPE_COUNT; d++)
    if (count[d])
      printf (" %s×%u", hv_dtype_name ((HvDType) d), count[d]);
  printf ("%s\n", hv_store_is_metadata_only (s) ? " (names and shapes only)" : "");
}

typedef enum { KIND_UNKNOWN, KIND_DIT, KIND_VAE, KIND_TEXT } Kind;

static gboolean
has_any (HvStore *s, const char *const *names)
{
  for (guint i = 0; names[i]; i++)
    if (hv_store_get (s, names[i]))
      return TRUE;
  return FALSE;
}

static Kind
classify (HvStore *s)
{
  static const char *const vae[] = { "encoder.conv_in.conv.weight", "decoder.conv_in.conv.weight",
                                     "vae.encoder.conv_in.conv.weight", "vae.decoder.conv_in.conv.weight", NULL };
  static const char *const text[] = { "embed_tokens.weight", "model.embed_tokens.weight",
                                      "embeddings.token_embedding.weight",
                                      "text_model.embeddings.token_embedding.weight", NULL };
  if (has_any (s, vae))
    return KIND_VAE;
  if (has_any (s, text))
    return KIND_TEXT;
  /* DiT names, possibly under a wrapper prefix (ComfyUI's "model.diffusion_model.") */
  const char **names = hv_store_names (s);
  for (guint i = 0; names[i]; i++)
    if (g_str_has_suffix (names[i], "img_in.proj.weight") || g_str_has_suffix (names[i], "x_embedder.proj.weight") ||
        strstr (names[i], "double_blocks.") || strstr (names[i], "transformer_blocks."))
      return KIND_DIT;
  return KIND_UNKNOWN;
}

static void
print_dit_shape (const HvDitShape *g)
{
  printf ("  config: hidden %d, %d heads × %d%s, double blocks %d, single blocks %d, refiner blocks %d, mlp %d, "
          "in %d, out %d, patch %d×%d×%d, text dims %d/%d, guidance embedding %s\n",
          g->hidden, g->heads, g->head_dim, g->heads_from_config ? " (from config)" : "", g->n_double, g->n_single,
          g->n_refiner, g->mlp_hidden, g->in_channels, g->out_channels, g->patch[0], g->patch[1], g->patch[2],
          g->text_dim, g->text_dim_2, g->guidance_embed ? "yes" : "no");
}

/* Checks a DiT store (consumed). */
static void
check_dit (Report *r, HvStore *raw, const char *fp8_map, const char *config)
{
  g_autoptr(GError) err = NULL;
  HvDitNames names = HV_DIT_NAMES_UNKNOWN;
  g_autofree char *path = g_strdup (hv_store_path (raw));
  g_autoptr(HvStore) s = hv_dit_store_to_official (raw, &names, &err);
  if (!s) {
    problem (r, "%s", err->message);
    return;
  }
  printf ("  names: %s%s\n", hv_dit_names_str (names), names == HV_DIT_NAMES_DIFFUSERS ? " (converted to official)" : "");
  if (hv_store_has_fp8 (s)) {
    g_autofree char *map = fp8_map ? g_strdup (fp8_map) : hv_fp8_map_path_for (path);
    guint n = 0;
    if (!map) {
      problem (r, "%s holds fp8 weights but no scale map was found beside it (NAME_map.pt)", path);
    } else {
      g_autoptr(HvStore) ms = hv_store_open (map, &err);
      if (!ms || !hv_store_apply_fp8_map (s, ms, &n, &err))
        problem (r, "%s", err->message);
      else
        printf ("  fp8: %u weights scaled by %s\n", n, map);
    }
    g_clear_error (&err);
  }
  if (config)
    printf ("  config file: %s\n", config);
  HvDitShape g;
  if (!hv_dit_shape_derive (s, config, &g, &err)) {
    problem (r, "%s", err->message);
    return;
  }
  print_dit_shape (&g);
  if (!hv_dit_validate (s, &g, &err))
    problem (r, "%s", err->message);
}

static char *
config_beside (const char *file)
{
  g_autofree char *dir = g_path_get_dirname (file);
  char *c = g_build_filename (dir, "config.json", NULL);
  if (g_file_test (c, G_FILE_TEST_IS_REGULAR))
    return c;
  g_free (c);
  return NULL;
}

/* Opens `file` (or takes `given`, consumed) and checks it as whatever it holds. */
static void
check_component (Report *r, const char *title, const char *file, HvStore *given, const char *config,
                 const char *fp8_map)
{
  g_autoptr(GError) err = NULL;
  printf ("%s: %s\n", title, file);
  g_autoptr(HvStore) s = given ? given : hv_store_open (file, &err);
  if (!s) {
    problem (r, "%s", err->message);
    return;
  }
  Kind kind = classify (s);
  static const char *const kind_name[] = { "unknown", "DiT", "VAE", "text encoder" };
  printf ("  holds: %s\n", kind_name[kind]);
  print_stats (s);
  g_autofree char *cfg = config ? g_strdup (config) : kind != KIND_DIT ? config_beside (file) : NULL;
  if (kind == KIND_UNKNOWN) {
    problem (r, "%s holds no HunyuanVideo DiT, VAE or text encoder tensors (e.g. img_in.proj.weight, "
             "decoder.conv_in.conv.weight, embed_tokens.weight)", file);
    return;
  }
  if (kind == KIND_DIT) {
    check_dit (r, g_steal_pointer (&s), fp8_map, cfg);
    return;
  }
  if (!cfg) {
    problem (r, "no config.json beside %s: its shapes cannot be checked", file);
    return;
  }
  printf ("  config file: %s\n", cfg);
  gboolean ok = kind == KIND_VAE ? hv_vae_validate (s, cfg, &err) : hv_text_validate (s, cfg, &err);
  if (!ok)
    problem (r, "%s", err->message);
}

static void
check_folder_component (Report *r, const char *title, const char *dir)
{
  g_autoptr(GError) err = NULL;
  if (!dir) {
    printf ("%s: (none)\n", title);
    problem (r, "the %s folder is missing", title);
    return;
  }
  g_autofree char *w = hv_find_weights (dir, &err);
  if (!w) {
    printf ("%s: %s\n", title, dir);
    problem (r, "%s", err->message);
    return;
  }
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  check_component (r, title, w, NULL, g_file_test (cfg, G_FILE_TEST_IS_REGULAR) ? cfg : NULL, NULL);
}

static void
check_tokenizer (Report *r, const char *title, const char *dir)
{
  static const char *const files[] = { "tokenizer.json", "vocab.json", "tokenizer.model", "tokenizer_config.json", NULL };
  printf ("%s: %s\n", title, dir ? dir : "(none)");
  if (!dir) {
    problem (r, "the %s folder is missing", title);
    return;
  }
  for (guint i = 0; files[i]; i++) {
    g_autofree char *p = g_build_filename (dir, files[i], NULL);
    if (g_file_test (p, G_FILE_TEST_IS_REGULAR)) {
      printf ("  has %s\n", files[i]);
      return;
    }
  }
  problem (r, "%s has no tokenizer files", dir);
}

static void
check_manifest (Report *r, const char *path)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(HvStore) s = hv_store_new ();
  printf ("manifest: %s\n", path);
  if (!hv_store_add_manifest (s, path, FALSE, &err)) {
    problem (r, "%s", err->message);
    return;
  }
  Kind kind = classify (s);
  if (kind == KIND_UNKNOWN) {
    problem (r, "%s lists no HunyuanVideo DiT, VAE or text encoder tensors", path);
    return;
  }
  if (kind != KIND_DIT) {
    g_autofree char *cfg = config_beside (path);
    check_component (r, kind == KIND_VAE ? "vae" : "text encoder", path, g_steal_pointer (&s),
                     kind == KIND_VAE && !cfg ? path : cfg, NULL);
    return;
  }
  printf ("dit (official names):\n");
  print_stats (s);
  HvDitShape g;
  if (!hv_dit_shape_derive (s, path, &g, &err)) {
    problem (r, "%s", err->message);
    return;
  }
  print_dit_shape (&g);
  if (!hv_dit_validate (s, &g, &err)) {
    problem (r, "%s", err->message);
    return;
  }
  /* the diffusers names of the same manifest, converted, must give the same set */
  HvStore *d = hv_store_new ();
  if (!hv_store_add_manifest (d, path, TRUE, &err)) {
    hv_store_free (d);
    problem (r, "%s", err->message);
    return;
  }
  printf ("dit (diffusers names):\n");
  print_stats (d);
  g_autoptr(HvStore) conv = hv_dit_store_to_official (d, NULL, &err);
  if (!conv || !hv_dit_validate (conv, &g, &err)) {
    problem (r, "%s", err->message);
    return;
  }
  printf ("  converted to official names: %u tensors, %" G_GUINT64_FORMAT " parameters, same shapes\n",
          hv_store_n_tensors (conv), hv_store_n_params (conv));
}

int
hv_cmd_inspect (int argc, char **argv)
{
  g_autofree char *fp8_map = NULL, *config = NULL, *manifest = NULL;
  gboolean prefer_fp8 = FALSE;
  g_auto(GStrv) rest = NULL;
  GOptionEntry entries[] = {
    { "manifest", 'm', 0, G_OPTION_ARG_FILENAME, &manifest, "check a manifest JSON (names and shapes, no weights)", "FILE" },
    { "fp8-map", 0, 0, G_OPTION_ARG_FILENAME, &fp8_map, "fp8 scale map (default: NAME_map.pt beside the weights)", "FILE" },
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config, "DiT config JSON (head count, depths)", "FILE" },
    { "prefer-fp8", 0, 0, G_OPTION_ARG_NONE, &prefer_fp8, "official layout: check the fp8 DiT when both exist", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, "PATH" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("PATH — check a HunyuanVideo model folder or weights file");
  g_autoptr(GError) err = NULL;
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    fprintf (stderr, "hyvideo inspect: %s\n", err->message);
    return 2;
  }
  Report r = { 0 };
  if (manifest) {
    check_manifest (&r, manifest);
  } else {
    if (!rest || !rest[0] || rest[1]) {
      fprintf (stderr, "hyvideo inspect: give one PATH (or --manifest FILE); try --help\n");
      return 2;
    }
    const char *path = rest[0];
    g_autoptr(HvModelPaths) mp = hv_model_paths_detect (path, prefer_fp8 ? HV_LAYOUT_PREFER_FP8 : 0, &err);
    g_autofree char *cfg_here = g_file_test (path, G_FILE_TEST_IS_DIR) ? g_build_filename (path, "config.json", NULL) : NULL;
    if (!mp && cfg_here && g_file_test (cfg_here, G_FILE_TEST_IS_REGULAR)) {
      /* a component folder: config.json + weights */
      printf ("layout: component folder %s\n", path);
      g_clear_error (&err);
      check_folder_component (&r, "component", path);
    } else if (!mp) {
      printf ("layout: unknown\n");
      problem (&r, "%s", err->message);
    } else {
      printf ("layout: %s (%s)\n", hv_layout_str (mp->layout), mp->root);
      const char *dcfg = config ? config : mp->dit_config;
      if (mp->dit)
        check_component (&r, mp->layout == HV_LAYOUT_SINGLE_FILE ? "file" : "dit", mp->dit, NULL, dcfg,
                         fp8_map ? fp8_map : mp->dit_fp8_map);
      if (mp->layout != HV_LAYOUT_SINGLE_FILE) {
        if (!mp->dit) {
          printf ("dit: (none)\n");
          problem (&r, "no DiT (transformer) weights");
        }
        if (mp->vae_weights) {
          g_autofree char *vcfg = g_build_filename (mp->vae, "config.json", NULL);
          check_component (&r, "vae", mp->vae_weights, NULL, g_file_test (vcfg, G_FILE_TEST_IS_REGULAR) ? vcfg : NULL, NULL);
        } else {
          printf ("vae: (none)\n");
          problem (&r, "the vae folder is missing");
        }
        check_folder_component (&r, "text_encoder", mp->text_encoder);
        check_folder_component (&r, "text_encoder_2", mp->text_encoder_2);
        if (mp->layout == HV_LAYOUT_DIFFUSERS) {
          check_tokenizer (&r, "tokenizer", mp->tokenizer);
          check_tokenizer (&r, "tokenizer_2", mp->tokenizer_2);
        }
      }
    }
  }
  if (r.problems)
    printf ("result: %d problem%s\n", r.problems, r.problems == 1 ? "" : "s");
  else
    printf ("result: complete and consistent\n");
  return r.problems ? 1 : 0;
}
