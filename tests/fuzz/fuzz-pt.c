/* fuzz-pt.c — libFuzzer harness for whole torch.save archives (ZIP reader + unpickler + tensor
 * views). Any input gives tensors inside the input or an HV_ERROR.
 *   tests/fuzz/run-fuzz.sh; corpus: corpus/pt/ */
#include "fuzz-common.h"
#include "hv-error.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_setup ();
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GBytes *b = g_bytes_new_static (data, size);
  HvStore *s = hv_store_new ();
  GError *err = NULL;
  if (hv_store_add_pt_bytes (s, "fuzz.pt", b, &err))
    fuzz_touch (s);
  else
    g_assert (err && err->domain == HV_ERROR && err->message);
  g_clear_error (&err);
  hv_store_free (s);
  g_bytes_unref (b);
  return 0;
}
