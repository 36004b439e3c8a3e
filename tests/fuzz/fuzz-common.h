/* fuzz-common.h — shared by the loader fuzz harnesses: GLib criticals and warnings abort (they
 * mean a parser passed something invalid on), and every tensor a parser accepted is read
 * completely, so AddressSanitizer sees any pointer outside the input. */
#pragma once
#include "loaders/hv-store.h"
#include "hv-error.h"
#include <stdint.h>
#include <stddef.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static inline void
fuzz_setup (void)
{
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
}

/* reads every byte of every tensor; the sum only keeps the reads from being optimised away */
static inline unsigned
fuzz_touch (HvStore *s)
{
  volatile unsigned sum = 0;
  const char **names = hv_store_names (s);
  for (guint i = 0; names[i]; i++) {
    const HvTensor *t = hv_store_get (s, names[i]);
    const guint8 *p = t->data;
    gsize n = hv_tensor_nbytes (t);
    for (gsize k = 0; k < n; k++)
      sum += p[k];
  }
  return sum;
}

/* The LLVMFuzzerInitialize of a harness that needs nothing but fuzz_setup(). */
#define FUZZ_DEFAULT_INITIALIZE                   \
  int                                             \
  LLVMFuzzerInitialize (int *argc, char ***argv)  \
  {                                               \
    fuzz_setup ();                                \
    return 0;                                     \
  }

/* A loader entry point taking bytes (hv_store_add_<format>_bytes). */
typedef gboolean (*FuzzLoadFunc) (HvStore *s, const char *label, GBytes *bytes, GError **error);

/* One input through `load` into a fresh store: what it accepts is read completely, what it
 * rejects must come with an HV_ERROR and a message. */
static inline void
fuzz_load (FuzzLoadFunc load, const char *label, GBytes *bytes)
{
  HvStore *s = hv_store_new ();
  GError *err = NULL;
  if (load (s, label, bytes, &err))
    fuzz_touch (s);
  else
    g_assert (err && err->domain == HV_ERROR && err->message);
  g_clear_error (&err);
  hv_store_free (s);
}
