#!/bin/bash
# rtmp.sh PLUGIN_DIR: streams the tiny model to a real RTMP server on loopback and reads it back.
# nginx with the Debian rtmp module (libnginx-mod-rtmp) is started here with a temporary config
# on a free 127.0.0.1 port; a reader subscribes to rtmp://127.0.0.1:PORT/live/test, then
#   hyvideosrc ! videoconvert ! x264enc ! h264parse ! flvmux ! rtmpsink
# publishes 17 frames; the reader (rtmp2src ! flvdemux ! fakesink) must get every one of them.
# (The older librtmp rtmpsrc loses the stream's last FLV tag when the publisher leaves; it is
# used only when rtmp2src is missing, and then one frame may be missing.)
# Skips (77) without nginx, the module or the rtmp/x264 elements. Bounded: every step has a
# timeout and nginx is always stopped.
set -u
plugin_dir=$1
frames=17
module=/usr/lib/nginx/modules/ngx_rtmp_module.so
export GST_PLUGIN_PATH="$plugin_dir${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx is not installed: skipped"; exit 77; }
[ -f "$module" ] || { echo "$module is missing (libnginx-mod-rtmp): skipped"; exit 77; }
for e in rtmpsink flvmux flvdemux x264enc h264parse videoconvert; do
  gst-inspect-1.0 $e > /dev/null 2>&1 || { echo "GStreamer element $e is missing: skipped"; exit 77; }
done

reader=rtmp2src
missing_ok=0
if ! gst-inspect-1.0 rtmp2src > /dev/null 2>&1; then
  gst-inspect-1.0 rtmpsrc > /dev/null 2>&1 || { echo "no rtmp2src or rtmpsrc: skipped"; exit 77; }
  reader=rtmpsrc
  missing_ok=1
fi

tmp=$(mktemp -d)
nginx_pid=
reader_pid=
cleanup () {
  [ -n "$reader_pid" ] && kill "$reader_pid" 2> /dev/null
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2> /dev/null && wait "$nginx_pid" 2> /dev/null
  [ -n "${KEEP:-}" ] && cp "$tmp"/*.log /tmp/ 2>/dev/null; rm -rf "$tmp"
}
trap cleanup EXIT
fail () { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

# a free port: let nginx try a few random ones
for attempt in 1 2 3 4 5 6 7 8; do
  port=$(( 20000 + RANDOM % 40000 ))
  mkdir -p "$tmp/logs"
  cat > "$tmp/nginx.conf" <<CONF
load_module $module;
daemon off;
master_process off;
pid $tmp/nginx.pid;
error_log $tmp/nginx.log info;
events { worker_connections 64; }
rtmp {
  server {
    listen 127.0.0.1:$port;
    application live { live on; record off; }
  }
}
CONF
  "$nginx" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/nginx.log" &
  nginx_pid=$!
  # up when the port accepts connections
  for i in $(seq 50); do
    if (exec 3<> /dev/tcp/127.0.0.1/$port) 2> /dev/null; then break; fi
    kill -0 "$nginx_pid" 2> /dev/null || break
    sleep 0.1
  done
  kill -0 "$nginx_pid" 2> /dev/null && break
  wait "$nginx_pid" 2> /dev/null
  nginx_pid=
done
[ -n "$nginx_pid" ] || fail "nginx did not start"
url="rtmp://127.0.0.1:$port/live/test"

# the reader first: nginx keeps it waiting for the publisher, so it sees the stream from frame 0
src_url=$url
[ $reader = rtmpsrc ] && src_url="$url live=1"
timeout 120 gst-launch-1.0 -e -v $reader location="$src_url" ! flvdemux ! fakesink silent=false \
  > "$tmp/reader.log" 2>&1 &
reader_pid=$!
# wait until nginx has the reader's play request (a fixed sleep lost frame 0 under CPU load)
for i in $(seq 300); do
  grep -q "play: name='test'" "$tmp/nginx.log" 2> /dev/null && break
  kill -0 "$reader_pid" 2> /dev/null || fail "the reader exited early"
  sleep 0.1
done
sleep 0.5

timeout 300 gst-launch-1.0 -q hyvideosrc seed=3 num-frames=$frames infer-steps=2 ! videoconvert ! \
  x264enc tune=zerolatency key-int-max=8 ! h264parse ! flvmux streamable=true ! \
  rtmpsink location="$url live=1" > "$tmp/publisher.log" 2>&1 || fail "publishing failed ($?)"

# give the reader time to receive the tail, then stop it (EOS on SIGINT with -e)
for i in $(seq 300); do
  n=$(grep -c "chain" "$tmp/reader.log")
  [ "$n" -ge "$frames" ] && break
  sleep 0.1
done
kill -INT "$reader_pid" 2> /dev/null
wait "$reader_pid" 2> /dev/null
reader_pid=
n=$(grep -c "chain" "$tmp/reader.log")
grep -q "video/x-h264" "$tmp/reader.log" || fail "the reader got no H.264 stream"
[ "$n" -le "$frames" ] && [ "$n" -ge $(( frames - missing_ok )) ] || fail "the reader got $n frames, expected $frames"
echo "ok: $n frames published to and read back from $url ($reader)"
