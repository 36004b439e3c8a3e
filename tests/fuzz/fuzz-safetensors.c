/* fuzz-safetensors.c — libFuzzer harness for the safetensors reader: any input gives tensors
 * inside the input or an HV_ERROR, never a crash, hang or leak.
 *   tests/fuzz/run-fuzz.sh (clang -fsanitize=fuzzer,address); corpus: corpus/safetensors/ */
#include "fuzz-common.h"

FUZZ_DEFAULT_INITIALIZE

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* no copy: reads past the input hit libFuzzer's exact-size buffer and ASan */
  GBytes *b = g_bytes_new_static (data, size);
  fuzz_load (hv_store_add_safetensors_bytes, "fuzz.safetensors", b);
  g_bytes_unref (b);
  return 0;
}
