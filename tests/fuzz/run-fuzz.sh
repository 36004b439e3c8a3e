#!/bin/sh
# Builds the loader fuzz harnesses with clang (libFuzzer + AddressSanitizer + UBSan) in
# build-fuzz/ and runs each for a bounded time on a copy of its seed corpus.
#   tests/fuzz/run-fuzz.sh [SECONDS_PER_HARNESS (default 60)] [HARNESS...]
# Exit status: 0 when no harness found a crash, leak or timeout. New inputs go to
# build-fuzz/corpus-<name>/ (merge interesting ones into tests/fuzz/corpus/<name>/ by hand);
# crashes to build-fuzz/crash-*.
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$src/build-fuzz
harnesses=${*:-safetensors pickle pt}
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$src" -Dfuzz=true -Dcuda=disabled -Dgst=disabled -Dexamples=false \
    -Dbenchmarks=false -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized \
    -Dc_args=-fsanitize=fuzzer-no-link
fi
targets=""
for h in $harnesses; do targets="$targets tests/fuzz/fuzz-$h"; done
ninja -C "$build" $targets
status=0
for h in $harnesses; do
  corpus=$build/corpus-$h
  mkdir -p "$corpus"
  seeds=$src/tests/fuzz/corpus/$h
  [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
  echo "== fuzz-$h for ${secs}s"
  # -rss_limit_mb bounds memory bombs; -timeout flags hangs; the artifact prefix keeps crashes
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
       HV_TOKENIZERS=$src/tests/data/tokenizers \
       "$build/tests/fuzz/fuzz-$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix="$build/crash-$h-" "$corpus" 2>&1 | tee "$build/fuzz-$h.log" |
       grep -E '^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|==[0-9]+==ERROR|SUMMARY|Done)'; then
    :
  fi
  if grep -qE '==[0-9]+==ERROR|deadly signal|Test unit written|libFuzzer: (timeout|out-of-memory)' "$build/fuzz-$h.log"; then
    echo "fuzz-$h: FOUND A PROBLEM, see $build/fuzz-$h.log"
    status=1
  fi
done
exit $status
