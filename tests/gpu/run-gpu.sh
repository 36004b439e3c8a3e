#!/bin/bash
# run-gpu.sh — every GPU check of hyvideo in one bounded run (issue 7), ending with a report.
#
#   tests/gpu/run-gpu.sh [BUNDLE_DIR]            (default: build-gpu-bundle, made by tests/gpu/bundle.sh;
#                                                 or BUNDLE_DIR-packed, its packed copy)
#
# Runs from the repository root on a machine with an NVIDIA GPU and a CUDA 13 runtime; needs no
# GLib or GStreamer there (the bundle brings them). Steps, each under its own time limit, the
# whole under ~8 minutes (TOTAL_S):
#   1. the device (nvidia-smi) and the kernels' machine code (cuobjdump: tensor-core HGMMA (wgmma,
#      Hopper attention) and HMMA (mma.sync) counts)
#   2. test-backend-ops -v: every op, CPU vs CUDA
#   3. hv-fixture --backend cuda on every fixture of tests/data/fixtures (as tests/meson.build
#      lists them); the fp8 DiT fixture also with HV_CUDA_FP8=bf16 for comparison
#   4. test-pipeline-backends: the tiny model end to end, CPU vs CUDA
#   5. bench-cuda: GEMM, conv3d, attention, DiT step at the real sizes, beside the PyTorch
#      anchor, then the VAE decode at 544x960x129 in its own slot (VAE_S, default 100 s)
#   6. compute-sanitizer memcheck + racecheck on a few small op cases, with what time is left
#      (if installed; it refuses the device on gVisor machines)
# STEPS (default ops,fixtures,pipeline,bench,vae,sanitizer) picks steps for a second, shorter
# run, e.g. STEPS=ops,fixtures after a fix.
# Writes $OUT/report.txt (short) and one log per step into $OUT (or ./gpu-out without $OUT).
# Without a bundle it uses build-cuda/ when that holds the three programs.
set -u
start=$(date +%s)
TOTAL_S=${TOTAL_S:-470}
out=${OUT:-gpu-out}
mkdir -p "$out"
report="$out/report.txt"
: > "$report"

say () { echo "$*" | tee -a "$report"; }
elapsed () { echo $(( $(date +%s) - start )); }
left () { echo $(( TOTAL_S - $(date +%s) + start )); }
STEPS=${STEPS:-ops,fixtures,pipeline,bench,vae,sanitizer}
want () { case ",$STEPS," in *",$1,"*) return 0 ;; esac; return 1; }

bundle=${1:-build-gpu-bundle}
if [ -f "$bundle/bundle.tar.gz" ]; then
  # a packed bundle (bundle.sh's BUNDLE_DIR-packed/): unpack it next to the outputs' temp files
  unpacked=$(mktemp -d "${TMPDIR:-/tmp}/hv-bundle.XXXXXX")
  tar -C "$unpacked" -xzf "$bundle/bundle.tar.gz" || { say "run-gpu.sh: cannot unpack $bundle/bundle.tar.gz"; exit 2; }
  bundle=$unpacked
fi
if [ -x "$bundle/bin/test-backend-ops" ]; then
  OPS="$bundle/bin/test-backend-ops" FIX="$bundle/bin/hv-fixture" BENCH="$bundle/bin/bench-cuda"
  PIPE="$bundle/bin/test-pipeline-backends"
  export LD_LIBRARY_PATH="$(cd "$bundle/lib" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
elif [ -x build-cuda/tests/test-backend-ops ]; then
  OPS=build-cuda/tests/test-backend-ops FIX=build-cuda/tests/hv-fixture BENCH=build-cuda/tests/bench/bench-cuda
  PIPE=build-cuda/tests/test-pipeline-backends
else
  say "run-gpu.sh: no programs: run tests/gpu/bundle.sh (or build build-cuda/) first"
  exit 2
fi

# The CUDA 13 libraries come from this machine (cuBLASLt is too large to carry): when the
# loader cannot find them, look where CUDA and pip's nvidia-* wheels put them.
for lib in libcublasLt.so.13 libcudart.so.13; do
  ldd "$OPS" 2>/dev/null | grep -q "$lib => not found" || continue
  found=$(ls /usr/local/cuda*/lib64/$lib /usr/local/cuda*/lib/$lib /usr/local/cuda*/targets/*/lib/$lib \
            2>/dev/null | head -1)
  if [ -z "$found" ]; then
    found=$(python3 -c 'import glob, site, sys
for d in site.getsitepackages() + [site.getusersitepackages()]:
    for f in glob.glob(d + "/nvidia/**/" + sys.argv[1], recursive=True):
        print(f); sys.exit(0)' "$lib" 2>/dev/null)
  fi
  [ -n "$found" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$(dirname "$found")"
done
if ldd "$OPS" | grep -q 'not found'; then
  ldd "$OPS" | grep 'not found' | sed 's/^/run-gpu.sh: missing library: /' | tee -a "$report"
fi

fixtures=tests/data/fixtures
tok=tests/data/tokenizers

say "== hyvideo GPU run, $(date -u '+%Y-%m-%d %H:%M UTC') =="
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/device: /' | tee -a "$report"
else
  say "device: nvidia-smi not found"
fi
if command -v cuobjdump >/dev/null; then
  sass=$(cuobjdump -sass "$OPS" 2>/dev/null)
  say "machine code: $(echo "$sass" | grep -c 'HGMMA') HGMMA (wgmma), $(echo "$sass" | grep -c 'HMMA') HMMA, $(echo "$sass" | grep -c 'LDSM') LDSM, $(echo "$sass" | grep -c 'LDGSTS') LDGSTS, $(echo "$sass" | grep -cE '\bLDL|\bSTL') local-memory instructions; arch: $(cuobjdump -lelf "$OPS" 2>/dev/null | grep -o 'sm_[0-9a-z]*' | sort -u | tr '\n' ' ')"
fi

# ---- 2. op tests -------------------------------------------------------------------------------
say ""
if want ops; then
say "== test-backend-ops (CPU vs CUDA) =="
timeout 170 "$OPS" -v --isolate --group-timeout 40 > "$out/test-backend-ops.log" 2>&1
rc=$?
grep -E '^FAIL|passed|\(ran ' "$out/test-backend-ops.log" | tee -a "$report"   # (ran ...): a forced kernel fell back
say "test-backend-ops: exit $rc$([ $rc = 124 ] && echo ' (timed out)')"
[ $rc = 0 ] || [ $rc = 1 ] || tail -n 3 "$out/test-backend-ops.log" | sed 's/^/  /' | tee -a "$report"
fi

# ---- 3. fixtures ---------------------------------------------------------------------------------
if want fixtures; then
say ""
say "== hv-fixture --backend cuda =="
flog="$out/fixtures.log"
: > "$flog"
run_fixture () {   # label, extra env, args...
  local label=$1 envs=$2
  shift 2
  if [ "$(left)" -lt 200 ]; then
    say "fixture $label: skipped (time budget)"
    return
  fi
  echo "---- $label: $*" >> "$flog"
  env $envs timeout 90 "$FIX" --backend cuda "$@" >> "$flog" 2>&1
  local rc=$?
  local sum=$(tail -n 20 "$flog" | grep -E '^fixtures:' | tail -1)
  [ -n "$sum" ] || sum="($(tail -n 1 "$flog" | cut -c1-160))"
  say "fixture $label: exit $rc $sum$([ $rc = 124 ] && echo ' (timed out)')"
}
run_fixture weights "" $fixtures/dit/dit_config.json $fixtures/vae/weights.json
run_fixture text "" $fixtures/text/llm.json $fixtures/text/clip.json
run_fixture rng "" $fixtures/dit/rng_F.json
run_fixture scheduler "" $fixtures/dit/scheduler_C.json
run_fixture tokens "" --tokenizers $tok $fixtures/tokens/tokens.json
# one process per DiT fixture: a crash in one costs only its own line
for f in forward_B forward_H_fp8 denoise_D cfg_batch2_E; do
  run_fixture "dit $f" "" $fixtures/dit/$f.json
done
run_fixture dit-fp8-via-bf16 "HV_CUDA_FP8=bf16" $fixtures/dit/forward_H_fp8.json
run_fixture dit-fp8-one-term "HV_CUDA_FP8=fast" $fixtures/dit/forward_H_fp8.json
run_fixture vae "" $fixtures/vae/decode.json $fixtures/vae/tiling.json $fixtures/vae/encode.json
run_fixture vae-pt "" --weights $fixtures/vae/vae_weights.pt $fixtures/vae/decode.json $fixtures/vae/tiling.json $fixtures/vae/encode.json
grep -E '^FAIL' "$flog" | head -40 | sed 's/^/  /' | tee -a "$report"
fi

# ---- 3b. the whole tiny pipeline, CPU vs CUDA ------------------------------------------------------
if want pipeline; then
say ""
say "== test-pipeline-backends (tiny model end to end, CPU vs CUDA) =="
timeout 120 "$PIPE" > "$out/pipeline.log" 2>&1
rc=$?
grep -E '^ok|^FAIL|passed' "$out/pipeline.log" | tee -a "$report"
say "test-pipeline-backends: exit $rc$([ $rc = 124 ] && echo ' (timed out)')"
[ $rc = 0 ] || [ $rc = 1 ] || tail -n 3 "$out/pipeline.log" | sed 's/^/  /' | tee -a "$report"
fi

# ---- 5. benchmark -------------------------------------------------------------------------------
# GEMM, attention and DiT get what is left minus VAE_S; the VAE decode then runs in its own
# process (its own pool peak) with whatever is left, at least VAE_S unless steps 1-4 overran.
VAE_S=${VAE_S:-100}
if want bench || want vae; then
  say ""
  say "== bench-cuda ($(left) s left, $VAE_S s of it kept for the VAE decode) =="
fi
# one process per section: a crash in one (a kernel's illegal address poisons the context)
# costs that section's rows only; each gets at most its cap and leaves VAE_S for the decode
bench_section () {   # name, cap in seconds
  local budget=$(( $(left) - VAE_S ))
  [ "$budget" -gt "$2" ] && budget=$2
  if [ "$budget" -lt 20 ]; then
    say "bench-cuda $1: skipped (time budget)"
    return
  fi
  timeout "$budget" "$BENCH" --only "$1" > "$out/bench-$1.log" 2>&1
  local rc=$?
  sed -n '/^what /,$p' "$out/bench-$1.log" | tee -a "$report"
  [ $rc = 0 ] || { say "bench-cuda $1: exit $rc$([ $rc = 124 ] && echo " (stopped at its $budget s; rows so far:)")"; grep -v '^what\|^---' "$out/bench-$1.log" | tail -8 | tee -a "$report"; }
}
if want bench; then
  bench_section gemm 60
  bench_section attn 120
  bench_section dit 400
  bench_section conv 60
fi
budget=$(left)
if ! want vae; then
  :
elif [ "$budget" -gt 45 ]; then
  timeout "$budget" "$BENCH" --only vae --fixtures "$fixtures" > "$out/bench-vae.log" 2>&1
  rc=$?
  sed -n '/^what /,$p' "$out/bench-vae.log" | tail -n +2 | tee -a "$report"
  [ $rc = 0 ] || { say "bench-cuda vae: exit $rc$([ $rc = 124 ] && echo " (stopped at the time budget, $budget s)")"; grep -v '^what' "$out/bench-vae.log" | tail -4 | tee -a "$report"; }
else
  say "bench-cuda vae: skipped (time budget: $budget s left)"
fi
# ---- 6. sanitizer (last: the benchmark matters more) ----------------------------------------------
if ! want sanitizer; then
  :
elif ! command -v compute-sanitizer >/dev/null; then
  say ""
  say "compute-sanitizer: not installed, step skipped"
elif [ "$(left)" -gt 40 ]; then
  say ""
  say "== compute-sanitizer (small cases, $(left) s left) =="
  for tool in memcheck racecheck; do
    for f in "attention D32" "attention D128 L1" "attention wgmma D128 B2 L150" "attention D80" "conv3d 1x1x1" "conv3d igemm 3x3x3 s2" "conv3d igemm-wgmma 3x3x3 s2" "groupnorm [2" "get_rows bf16"; do
      lim=$(( $(left) - 5 ))
      if [ "$lim" -lt 15 ]; then
        say "$tool '$f' and the rest: skipped (time budget)"
        break 2
      fi
      [ "$lim" -gt 60 ] && lim=60
      timeout "$lim" compute-sanitizer --tool $tool --error-exitcode 9 "$OPS" "$f" > "$out/sanitizer.log.tmp" 2>&1
      rc=$?
      # a racy kernel can print a hazard per access: keep the log well under what comes back
      head -c 2000000 "$out/sanitizer.log.tmp" >> "$out/sanitizer.log"
      say "$tool '$f': exit $rc$([ $rc = 124 ] && echo ' (timed out)') $(grep -E 'ERROR SUMMARY|hazard' "$out/sanitizer.log.tmp" | head -1)"
    done
  done
  rm -f "$out/sanitizer.log.tmp"
fi
say ""
say "total $(elapsed) s"
