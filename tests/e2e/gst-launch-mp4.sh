#!/bin/sh
# gst-launch-mp4.sh PLUGIN_DIR: the README's first command (tiny model → H.264 MP4 through
# gst-launch-1.0: hyvideosrc prompt=... seed=42 ! videoconvert ! x264enc ! mp4mux ! filesink),
# then gst-discoverer-1.0 checks the file: duration, size, frame rate, H.264 4:2:0 (what every
# player decodes), and the number of frames in the container. Skips (77) when x264enc, mp4mux or the tools are
# missing.
set -u
plugin_dir=$1
export GST_PLUGIN_PATH="$plugin_dir${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
for tool in gst-launch-1.0 gst-inspect-1.0 gst-discoverer-1.0; do
  command -v $tool > /dev/null 2>&1 || { echo "$tool is not installed: skipped"; exit 77; }
done
for e in x264enc mp4mux qtdemux videoconvert; do
  gst-inspect-1.0 $e > /dev/null 2>&1 || { echo "GStreamer element $e is missing: skipped"; exit 77; }
done
gst-inspect-1.0 hyvideosrc > /dev/null 2>&1 || { echo "FAIL: hyvideosrc not found in $plugin_dir"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail () { echo "FAIL: $*"; cat "$tmp/info.txt" 2>/dev/null; exit 1; }

# 17 frames of 128x96 at 24/1 (the tiny model's defaults) and one odd size/rate
run () {   # run W H FRAMES FPS_N FPS_D
  out="$tmp/tiny-$1x$2.mp4"
  timeout 300 gst-launch-1.0 -q hyvideosrc prompt="A cat walks on the grass, realistic style." seed=42 \
    width=$1 height=$2 num-frames=$3 framerate=$4/$5 ! videoconvert ! x264enc ! mp4mux ! \
    filesink location="$out" || fail "gst-launch-1.0 exited with $?"
  [ -s "$out" ] || fail "no MP4 written"
  gst-discoverer-1.0 -v "$out" > "$tmp/info.txt" 2>&1 || fail "gst-discoverer-1.0 cannot read the file"
  want_ns=$(( $3 * 1000000000 * $5 / $4 ))
  dur=$(sed -n 's/^ *Duration: \([0-9:.]*\).*/\1/p' "$tmp/info.txt" | head -1)
  [ -n "$dur" ] || fail "no duration"
  got_ns=$(echo "$dur" | awk -F'[:.]' '{ printf "%.0f", ($1 * 3600 + $2 * 60 + $3) * 1e9 + $4 }')
  diff=$(( got_ns - want_ns ))
  [ ${diff#-} -le 1000000 ] || fail "duration ${got_ns} ns, expected ${want_ns} ns"
  grep -q "Width: $1\$" "$tmp/info.txt" || fail "width is not $1"
  grep -q "Height: $2\$" "$tmp/info.txt" || fail "height is not $2"
  grep -q "Frame rate: $4/$5\$" "$tmp/info.txt" || fail "frame rate is not $4/$5"
  grep -q "H.264" "$tmp/info.txt" || fail "not H.264"
  grep -q "chroma-format=(string)4:2:0" "$tmp/info.txt" || fail "not 4:2:0"
  # frames in the container: one buffer per frame out of qtdemux
  n=$(gst-launch-1.0 -v filesrc location="$out" ! qtdemux ! fakesink silent=false 2>&1 | grep -c "chain")
  [ "$n" -eq "$3" ] || fail "$n frames in the MP4, expected $3"
  echo "ok: $1x$2, $3 frames at $4/$5, duration ${got_ns} ns"
}
run 128 96 17 24 1
run 160 64 9 30000 1001
