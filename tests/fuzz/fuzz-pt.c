/* fuzz-pt.c — libFuzzer harness for whole torch.save archives (ZIP reader + unpickler + tensor
 * views). Any input gives tensors inside the input or an HV_ERROR.
 *   tests/fuzz/run-fuzz.sh; corpus: corpus/pt/ */
#include "fuzz-common.h"

FUZZ_DEFAULT_INITIALIZE

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GBytes *b = g_bytes_new_static (data, size);
  fuzz_load (hv_store_add_pt_bytes, "fuzz.pt", b);
  g_bytes_unref (b);
  return 0;
}
