#!/bin/sh
# bundle.sh — packs the GPU test binaries so that they run on a machine that has only the NVIDIA
# driver and a CUDA 13 runtime (no GLib, json-glib or GStreamer installed there).
#
#   tests/gpu/bundle.sh [BUILD_DIR] [BUNDLE_DIR]      (defaults: build-cuda, build-gpu-bundle)
#
# BUILD_DIR must be configured with -Dcuda=enabled and built. Copies into BUNDLE_DIR:
#   bin/  test-backend-ops, hv-fixture, test-pipeline-backends, bench-cuda
#   lib/  every shared library they load except the C/C++ runtime (newer on the GPU machine)
#         and the CUDA libraries: cuBLASLt alone is ~540 MB, over what a device run carries
#         (64 MiB); run-gpu.sh finds the GPU machine's own libcudart/libcublasLt (CUDA 13).
#         Set BUNDLE_CUDA_LIBS=1 to copy those too (for a machine without CUDA 13 libraries).
#   run   a wrapper: BUNDLE_DIR/run PROGRAM ARGS... sets LD_LIBRARY_PATH and runs bin/PROGRAM.
# Then send BUNDLE_DIR with the repository (device tool: carry it; the default name matches
# .gitignore's build*/) and run tests/gpu/run-gpu.sh there.
set -eu

build=${1:-build-cuda}
out=${2:-build-gpu-bundle}
progs="tests/test-backend-ops tests/hv-fixture tests/test-pipeline-backends tests/bench/bench-cuda"

for p in $progs; do
  if [ ! -x "$build/$p" ]; then
    echo "bundle.sh: $build/$p is missing: configure with -Dcuda=enabled and build first" >&2
    exit 1
  fi
done

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
for p in $progs; do
  cp "$build/$p" "$out/bin/"
  # debug info is most of their size and a device run carries at most 64 MiB
  strip --strip-debug "$out/bin/$(basename "$p")" 2>/dev/null || true
done

# the libraries the programs resolve here, minus the ones the GPU machine must provide itself
for b in "$out"/bin/*; do
  ldd "$b"
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u | while read -r lib; do
  name=$(basename "$lib")
  case "$name" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*|libresolv.so.*)
      continue ;;
    libcuda.so.*|libcudart.so.*|libcublas*.so.*|libnvrtc*.so.*)
      [ "${BUNDLE_CUDA_LIBS:-0}" = 1 ] || continue ;;
  esac
  cp -L "$lib" "$out/lib/$name"
done

cat > "$out/run" <<'EOF'
#!/bin/sh
# Runs a bundled program with the bundled libraries first on the search path.
here=$(cd "$(dirname "$0")" && pwd)
prog=$1
shift
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/$prog" "$@"
EOF
chmod +x "$out/run"

echo "bundle.sh: $out ($(du -sh "$out" | cut -f1)):"
ls -l "$out/bin" "$out/lib" | sed 's/^/  /'

# The same, packed (~1/4 of the size): the repository plus what a device run carries must stay
# under 64 MiB, and tests/data alone is ~40 MB. run-gpu.sh unpacks it.
mkdir -p "$out-packed"
tar -C "$out" -czf "$out-packed/bundle.tar.gz" .
echo "bundle.sh: $out-packed/bundle.tar.gz ($(du -sh "$out-packed/bundle.tar.gz" | cut -f1)): carry this folder to a GPU machine"
