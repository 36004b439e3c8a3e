#!/bin/bash
# valgrind-check.sh BINARY SUPPRESSIONS [ARGS...]: runs BINARY ARGS under valgrind memcheck and
# fails on any invalid access or definitely lost block. Skips (77) without valgrind.
bin=$1
supp=$2
shift 2
if ! command -v valgrind > /dev/null 2>&1; then
  echo "valgrind is not installed: skipped"
  exit 77
fi
opts=(--tool=memcheck --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
      --error-exitcode=1 --num-callers=30 -q "--suppressions=$supp")
for s in /usr/share/glib-2.0/valgrind/glib.supp /usr/lib/valgrind/debian.supp; do
  [ -f "$s" ] && opts+=("--suppressions=$s")
done
# GLib's allocator straight to malloc; the tests' time limits scaled for valgrind's slowness
export G_SLICE=always-malloc G_DEBUG=gc-friendly HV_TIME_FACTOR=20
exec valgrind "${opts[@]}" "$bin" "$@"
