/* fuzz-pickle.c — libFuzzer harness for the restricted unpickler: the input is a data.pkl,
 * wrapped here into a torch.save-like archive with four 64-byte storages (archive/data/0..3) so
 * that accepted tensors resolve. Any input gives tensors inside the storages or an HV_ERROR.
 *   tests/fuzz/run-fuzz.sh; corpus: corpus/pickle/ */
#include "fuzz-common.h"
#include "hv-test-build.h"

FUZZ_DEFAULT_INITIALIZE

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GBytes *pkl = g_bytes_new_static (data, size);
  GBytes *zip = tb_torch_zip (pkl, 4, 64, 0, size % 2);   /* both zip flavours */
  fuzz_load (hv_store_add_pt_bytes, "fuzz.pt", zip);
  g_bytes_unref (zip);
  g_bytes_unref (pkl);
  return 0;
}
