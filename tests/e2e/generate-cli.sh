#!/bin/sh
# generate-cli.sh HYVIDEO: `hyvideo generate` with the tiny model writes an MP4 named as
# sample_video.py names it, and fails cleanly (status, message) on bad input. Skips (77)
# without x264enc/mp4mux or gst-discoverer-1.0.
set -u
cli=$1
for e in x264enc mp4mux; do
  gst-inspect-1.0 $e > /dev/null 2>&1 || { echo "GStreamer element $e is missing: skipped"; exit 77; }
done
command -v gst-discoverer-1.0 > /dev/null 2>&1 || { echo "gst-discoverer-1.0 is not installed: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; cat "$tmp/err" 2>/dev/null; exit 1; }

# a run: the path on stdout, nothing else; the name from the time, the seed and the prompt
out=$("$cli" generate --prompt "  A cat/walks on the grass  " --seed 5 --video-size 64 96 --video-length 9 \
      --infer-steps 2 --save-path "$tmp/results" 2> "$tmp/err") || fail "exit status $?"
[ -s "$tmp/err" ] && fail "unexpected stderr output"
case "$(basename "$out")" in
  [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]-[0-9][0-9][0-9][0-9][0-9][0-9]_seed5_A\ catwalks\ on\ the\ grass.mp4) ;;
  *) fail "unexpected file name: $out" ;;
esac
[ "$(dirname "$out")" = "$tmp/results" ] || fail "not in the save path: $out"
[ -s "$out" ] || fail "no file at $out"
[ "$(ls -A "$tmp/results" | wc -l)" -eq 1 ] || fail "other files left in the save path: $(ls -A "$tmp/results")"
gst-discoverer-1.0 "$out" > "$tmp/info" 2>&1 || fail "not a readable video"
grep -q "Duration: 0:00:00.375000000" "$tmp/info" || fail "duration is not 9/24 s: $(grep Duration "$tmp/info")"
grep -q "Width: 96" "$tmp/info" && grep -q "Height: 64" "$tmp/info" || fail "size is not 96x64"

# one --video-size value is both height and width; a random seed lands in the name
out=$("$cli" generate --prompt x --video-size 32 --video-length 5 --infer-steps 1 --save-path "$tmp/r2" 2> "$tmp/err") \
  || fail "exit status $?"
gst-discoverer-1.0 "$out" 2>&1 | grep -q "Width: 32" || fail "--video-size 32 is not 32x32"
case "$(basename "$out")" in *_seed[0-9]*_x.mp4) ;; *) fail "unexpected file name: $out" ;; esac

# errors: status 2 for the command line, 1 for what the engine refuses, with the reason
"$cli" generate --save-path "$tmp/r3" > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 2 ] && grep -q -- "--prompt is required" "$tmp/err" || fail "no prompt: status $st"
"$cli" generate --prompt x --bogus > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 2 ] || fail "unknown flag: status $st"
"$cli" generate --prompt x --video-size 100 128 --save-path "$tmp/r3" > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 1 ] && grep -q "multiples of 16" "$tmp/err" || fail "bad size: status $st"
"$cli" generate --prompt x --video-length 10 --save-path "$tmp/r3" > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 1 ] && grep -q "4k+1" "$tmp/err" || fail "bad length: status $st"
"$cli" generate --prompt x --model-base /nonexistent/ckpts --save-path "$tmp/r3" > /dev/null 2> "$tmp/err"; st=$?
[ $st -eq 1 ] && grep -q "/nonexistent/ckpts" "$tmp/err" || fail "missing model: status $st"
[ -z "$(ls -A "$tmp/r3" 2>/dev/null)" ] || fail "a failed run left files: $(ls -A "$tmp/r3")"
echo "ok"
