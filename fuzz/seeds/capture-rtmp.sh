#!/usr/bin/env bash
# Records a real ffmpeg RTMP publish at the socket, both directions, as seeds:
# fuzz/corpus/rtmp_server (what ffmpeg sent) and fuzz/corpus/rtmp_client (what the
# server answered). The server is nginx with the RTMP module (scripts/setup.sh installs
# it); set UPSTREAM_PORT to record against a running `rivulet serve` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
RELAY_PORT=${RELAY_PORT:-19350}
if [ -z "${UPSTREAM_PORT:-}" ]; then
    UPSTREAM_PORT=19351
    mkdir -p "$work/nginx/logs"
    cat >"$work/nginx/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 64; }
rtmp { server { listen 127.0.0.1:$UPSTREAM_PORT; application live { live on; } } }
CONF
    nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
    sleep 1
fi
capture() {
    local name=$1
    shift
    python3 seeds/capture-rtmp.py "$RELAY_PORT" "$UPSTREAM_PORT" "$work/c2s" "$work/s2c" &
    local relay=$!
    sleep 0.5
    ffmpeg -hide_banner -loglevel error "$@" -f flv "rtmp://127.0.0.1:$RELAY_PORT/live/key" || true
    wait "$relay" || true
    # Seeds stay under 100 KB; the first byte 0 feeds the stream in one piece
    # (see src/lib.rs split), 0x2a at arbitrary split points.
    for lead in 00 2a; do
        { printf "\\x$lead"; head -c 60000 "$work/c2s"; } >"corpus/rtmp_server/ffmpeg-$name-$lead"
        { printf "\\x$lead"; head -c 60000 "$work/s2c"; } >"corpus/rtmp_client/nginx-$name-$lead"
    done
}
mkdir -p corpus/rtmp_server corpus/rtmp_client
capture h264-aac -re -f lavfi -i testsrc2=size=160x90:rate=15 -f lavfi -i sine=frequency=440 \
    -t 1 -c:v libx264 -preset ultrafast -g 15 -b:v 100k -c:a aac -b:a 32k
capture h264-only -f lavfi -i testsrc2=size=64x36:rate=10 -t 1 -c:v libx264 -preset ultrafast -g 5
capture mp3 -f lavfi -i sine=frequency=440 -t 1 -c:a libmp3lame -b:a 32k
ls -l corpus/rtmp_server corpus/rtmp_client
