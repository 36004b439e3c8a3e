/* hv-layout.c — model folder detection and the DiT loading entry point (see hv-layout.h). */
#include "hv-layout.h"
#include "hv-fp8.h"
#include "../hv-error.h"
#include <string.h>

const char *
hv_layout_str (HvLayout l)
{
  switch (l) {
  case HV_LAYOUT_OFFICIAL: return "official";
  case HV_LAYOUT_DIFFUSERS: return "diffusers";
  case HV_LAYOUT_SINGLE_FILE: return "single file";
  default: return "unknown";
  }
}

void
hv_model_paths_free (HvModelPaths *p)
{
  if (!p)
    return;
  g_free (p->root);
  g_free (p->dit);
  g_free (p->dit_fp8_map);
  g_free (p->dit_config);
  g_free (p->vae);
  g_free (p->vae_weights);
  g_free (p->text_encoder);
  g_free (p->text_encoder_2);
  g_free (p->tokenizer);
  g_free (p->tokenizer_2);
  g_free (p);
}

static char *
existing (const char *dir, const char *name, GFileTest test)
{
  char *p = g_build_filename (dir, name, NULL);
  if (g_file_test (p, test))
    return p;
  g_free (p);
  return NULL;
}

static gboolean
is_weights_name (const char *n)
{
  return g_str_has_suffix (n, ".safetensors") || g_str_has_suffix (n, ".pt") || g_str_has_suffix (n, ".pth") ||
         g_str_has_suffix (n, ".bin") || g_str_has_suffix (n, ".index.json");
}

char *
hv_find_weights (const char *path, GError **error)
{
  static const char *const known[] = {
    "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors", "model.safetensors",
    "pytorch_model.bin.index.json", "diffusion_pytorch_model.bin.index.json",
    "pytorch_model.pt", "pytorch_model.bin", "diffusion_pytorch_model.bin",
  };
  if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return g_strdup (path);
  if (!g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: no such file or folder", path);
    return NULL;
  }
  for (guint i = 0; i < G_N_ELEMENTS (known); i++) {
    char *p = existing (path, known[i], G_FILE_TEST_IS_REGULAR);
    if (p)
      return p;
  }
  /* otherwise the folder's only weights file */
  g_autoptr(GDir) d = g_dir_open (path, 0, error);
  if (!d)
    return NULL;
  g_autofree char *found = NULL;
  guint n = 0;
  const char *e;
  while ((e = g_dir_read_name (d)))
    if (is_weights_name (e) && !strstr (e, "_map.")) {
      n++;
      g_free (found);
      found = g_build_filename (path, e, NULL);
    }
  if (n == 1)
    return g_steal_pointer (&found);
  if (n)
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "%s: %u weights files and no *.index.json saying how they belong together", path, n);
  else
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: no weights file (model.safetensors, pytorch_model.pt, ...)",
                 path);
  return NULL;
}

static gboolean
detect_diffusers (HvModelPaths *p, const char *dir, GError **error)
{
  p->layout = HV_LAYOUT_DIFFUSERS;
  p->root = g_strdup (dir);
  g_autofree char *tr = existing (dir, "transformer", G_FILE_TEST_IS_DIR);
  if (tr) {
    p->dit = hv_find_weights (tr, error);
    if (!p->dit)
      return FALSE;
    p->dit_config = existing (tr, "config.json", G_FILE_TEST_IS_REGULAR);
    p->dit_fp8_map = hv_fp8_map_path_for (p->dit);
  }
  p->vae = existing (dir, "vae", G_FILE_TEST_IS_DIR);
  if (p->vae && !(p->vae_weights = hv_find_weights (p->vae, error)))
    return FALSE;
  p->text_encoder = existing (dir, "text_encoder", G_FILE_TEST_IS_DIR);
  p->text_encoder_2 = existing (dir, "text_encoder_2", G_FILE_TEST_IS_DIR);
  p->tokenizer = existing (dir, "tokenizer", G_FILE_TEST_IS_DIR);
  p->tokenizer_2 = existing (dir, "tokenizer_2", G_FILE_TEST_IS_DIR);
  return TRUE;
}

/* `model` is hunyuan-video-t2v-720p/ (has transformers/), `root` the folder above it. */
static gboolean
detect_official (HvModelPaths *p, const char *root, const char *model, HvLayoutFlags flags, GError **error)
{
  p->layout = HV_LAYOUT_OFFICIAL;
  p->root = g_strdup (root);
  g_autofree char *tr = g_build_filename (model, "transformers", NULL);
  g_autofree char *bf = existing (tr, "mp_rank_00_model_states.pt", G_FILE_TEST_IS_REGULAR);
  g_autofree char *f8 = existing (tr, "mp_rank_00_model_states_fp8.pt", G_FILE_TEST_IS_REGULAR);
  if ((flags & HV_LAYOUT_PREFER_FP8) && f8)
    p->dit = g_steal_pointer (&f8);
  else if (bf)
    p->dit = g_steal_pointer (&bf);
  else if (f8)
    p->dit = g_steal_pointer (&f8);
  else {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: no mp_rank_00_model_states.pt or _fp8.pt", tr);
    return FALSE;
  }
  p->dit_fp8_map = hv_fp8_map_path_for (p->dit);
  p->vae = existing (model, "vae", G_FILE_TEST_IS_DIR);
  if (p->vae && !(p->vae_weights = hv_find_weights (p->vae, error)))
    return FALSE;
  p->text_encoder = existing (root, "text_encoder", G_FILE_TEST_IS_DIR);
  p->text_encoder_2 = existing (root, "text_encoder_2", G_FILE_TEST_IS_DIR);
  return TRUE;
}

HvModelPaths *
hv_model_paths_detect (const char *path, HvLayoutFlags flags, GError **error)
{
  g_autoptr(HvModelPaths) p = g_new0 (HvModelPaths, 1);
  if (g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    p->layout = HV_LAYOUT_SINGLE_FILE;
    p->root = g_path_get_dirname (path);
    p->dit = g_strdup (path);
    p->dit_fp8_map = hv_fp8_map_path_for (path);
    g_autofree char *base = g_path_get_basename (path);
    if (g_str_has_prefix (base, "diffusion_pytorch_model"))   /* a diffusers transformer/ file */
      p->dit_config = existing (p->root, "config.json", G_FILE_TEST_IS_REGULAR);
    return g_steal_pointer (&p);
  }
  if (!g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND, "%s: no such file or folder", path);
    return NULL;
  }
  g_autofree char *mi = existing (path, "model_index.json", G_FILE_TEST_IS_REGULAR);
  g_autofree char *sub = existing (path, "hunyuan-video-t2v-720p", G_FILE_TEST_IS_DIR);
  g_autofree char *tr = existing (path, "transformers", G_FILE_TEST_IS_DIR);
  gboolean ok;
  if (mi) {
    ok = detect_diffusers (p, path, error);
  } else if (sub) {
    ok = detect_official (p, path, sub, flags, error);
  } else if (tr) {
    g_autofree char *root = g_path_get_dirname (path);
    ok = detect_official (p, root, path, flags, error);
  } else {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "%s: not a HunyuanVideo model folder (expected model_index.json (diffusers), "
                 "hunyuan-video-t2v-720p/ or transformers/ (official)) and not a weights file", path);
    return NULL;
  }
  return ok ? g_steal_pointer (&p) : NULL;
}

HvStore *
hv_dit_load (const char *path, const char *fp8_map, GError **error)
{
  HvStore *raw = hv_store_open (path, error);
  if (!raw)
    return NULL;
  g_autoptr(HvStore) s = hv_dit_store_to_official (raw, NULL, error);
  if (!s)
    return NULL;
  if (!hv_store_has_fp8 (s))
    return g_steal_pointer (&s);
  g_autofree char *found = fp8_map ? g_strdup (fp8_map) : hv_fp8_map_path_for (path);
  if (!found) {
    g_set_error (error, HV_ERROR, HV_ERROR_NOT_FOUND,
                 "%s: holds fp8 weights but their scale map is missing (expected NAME_map.pt beside NAME.pt)", path);
    return NULL;
  }
  g_autoptr(HvStore) map = hv_store_open (found, error);
  if (!map || !hv_store_apply_fp8_map (s, map, NULL, error))
    return NULL;
  return g_steal_pointer (&s);
}
