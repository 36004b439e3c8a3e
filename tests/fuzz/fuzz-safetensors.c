/* fuzz-safetensors.c — libFuzzer harness for the safetensors reader: any input gives tensors
 * inside the input or an HV_ERROR, never a crash, hang or leak.
 *   tests/fuzz/run-fuzz.sh (clang -fsanitize=fuzzer,address); corpus: corpus/safetensors/ */
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
  /* no copy: reads past the input hit libFuzzer's exact-size buffer and ASan */
  GBytes *b = g_bytes_new_static (data, size);
  HvStore *s = hv_store_new ();
  GError *err = NULL;
  if (hv_store_add_safetensors_bytes (s, "fuzz.safetensors", b, &err))
    fuzz_touch (s);
  else
    g_assert (err && err->domain == HV_ERROR && err->message);
  g_clear_error (&err);
  hv_store_free (s);
  g_bytes_unref (b);
  return 0;
}
