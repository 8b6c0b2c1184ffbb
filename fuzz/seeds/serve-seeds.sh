#!/usr/bin/env bash
# Seeds from a real `rivulet serve` that ffmpeg publishes to for ~24 s (H.264+AAC,
# 640x360, transcoded to 360p and 234p by its own ladder, recorded for DVR):
#
# - fuzz/corpus/edge_playlist: `PATH 0xff QUERY 0xff PLAYLIST 0xff BODY` of what an edge
#   asks the origin and what it answers: the multivariant and media playlists, a blocking
#   reload (_HLS_msn/_HLS_part), delta updates (_HLS_skip=YES, v2), the DVR playlists and
#   a recorded segment's path, the playlist once the publisher left (ENDLIST), and the
#   init segment, a part and the start of a segment as bodies (the box splitter).
# - fuzz/corpus/playback_token: `TOKEN 0xff STREAM 0xff PLAYLIST 0xff REST` with tokens
#   minted by the server's API (POST /api/streams/NAME/tokens, signed with the target's
#   key k1) and the private stream's playlists that carry them; REST is the clock
#   (u32 LE, the minting time), the client address 10.0.A.B (A, B), the expiry, flags
#   and the byte to alter of a grant the target signs. Beside them, broken ones: altered
#   signature, expired, another stream or address, unknown key, `alg: none`, cut short;
#   and one signed with the older key k0 as an operator's own JWT library would.
# - fuzz/corpus/config_toml: the configuration files in the repository
#   (deploy/rivulet.toml, the TOML examples of docs/*.md), the one this run used (its
#   own ladder) and one with HEVC and AV1 rungs, each accepted by `rivulet serve --check`,
#   and two it refuses (a part target over half the segment, an unknown codec).
#
# Tokens, times and media differ from run to run; the shapes do not. Needs the release
# binary (`cargo build --release`; RIVULET=PATH to use another), ffmpeg, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RIVULET=${RIVULET:-${CARGO_TARGET_DIR:-../target}/release/rivulet}
[ -x "$RIVULET" ] || { echo "no $RIVULET: cargo build --release, or set RIVULET" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "$0: failed at line $LINENO" >&2' ERR
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
HTTP_PORT=$(free_port)
RTMP_PORT=$(free_port)
KEY=fuzz-seed-key-0123456789
ADMIN=fuzz-admin-token-0123456789
base=http://127.0.0.1:$HTTP_PORT
get() { curl -sS --fail --max-time 10 "$@"; }
api() { get -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$@"; }

# The configuration this run uses: its own ladder, the packager's defaults spelt out.
cat >"$work/rivulet.toml" <<'TOML'
renditions = ["360p", "234p"]
segment_target_ms = 2000
part_target_ms = 201
window_segments = 8
grace_period_ms = 2000

[record]
default = true
dvr_window = 600

[[ladder]]
name = "360p"
height = 360
bitrate = 730000
preset = "veryfast"
profile = "high"

[[ladder]]
name = "234p"
height = 234
bitrate = 300000
max_fps = 30
TOML
nice -n 10 "$RIVULET" serve --config "$work/rivulet.toml" --http-listen "127.0.0.1:$HTTP_PORT" \
    --rtmp-listen "127.0.0.1:$RTMP_PORT" --srt-listen off --webrtc-listen 127.0.0.1:0 \
    --data-dir "$work/data" --stream "demo=$KEY" --admin-token "$ADMIN" --no-analytics \
    --playback-key k1=fuzzing-secret-0123456789 --playback-key k0=older-secret-0123456789 \
    >"$work/serve.log" 2>&1 &
pids+=($!)
until curl -s -o /dev/null "$base/"; do
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.2
done
nice -n 10 ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=640x360:rate=30 \
    -f lavfi -i sine -t 24 -c:v libx264 -preset veryfast -tune zerolatency -g 60 -c:a aac \
    -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/$KEY" &
ffmpeg_pid=$!
pids+=($ffmpeg_pid)
# 20 s in: ten segments, more than CAN-SKIP-UNTIL (12 s) back, so delta updates skip.
sleep 20

out=$work/out
mkdir -p "$out"
get "$base/live/demo/master.m3u8" >"$out/master.m3u8"
get "$base/live/demo/360p/index.m3u8" >"$out/360p.m3u8"
get "$base/live/demo/234p/index.m3u8" >"$out/234p.m3u8"
# The next part after the last one listed: the request blocks until it is out.
read -r msn part < <(sed -n 's/^#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-\([0-9]*\)-\([0-9]*\).m4s".*/\1 \2/p' "$out/234p.m3u8")
blocking="_HLS_msn=$msn&_HLS_part=$part"
get "$base/live/demo/234p/index.m3u8?$blocking" >"$out/blocking.m3u8"
get "$base/live/demo/234p/index.m3u8?$blocking&_HLS_skip=YES" >"$out/delta.m3u8"
get "$base/live/demo/360p/index.m3u8?_HLS_skip=v2" >"$out/delta-v2.m3u8"
grep -q EXT-X-SKIP "$out/delta.m3u8" || echo "warning: the delta update skipped nothing" >&2
init=$(sed -n 's/^#EXT-X-MAP:URI="\([^"]*\)".*/\1/p' "$out/234p.m3u8" | tail -n 1)
get "$base/live/demo/234p/$init" >"$out/init.mp4"
last_part=$(grep -o 'part-[0-9]*-[0-9]*\.m4s' "$out/blocking.m3u8" | tail -n 2 | head -n 1)
get "$base/live/demo/234p/$last_part" >"$out/part.m4s"
segment=$(grep '^seg-' "$out/360p.m3u8" | tail -n 1)
get "$base/live/demo/360p/$segment" >"$out/segment.m4s"
head -c 16000 "$out/segment.m4s" >"$out/segment-start.m4s"
get "$base/live/demo/health" >"$out/health.json"
get "$base/live/demo/dvr.m3u8" >"$out/dvr.m3u8"
get "$base/live/demo/234p/dvr.m3u8" >"$out/dvr-234p.m3u8"
recorded=$(grep -v '^#' "$out/dvr-234p.m3u8" | grep -m 1 'seg-')

# Tokens, then the stream made private and its playlists fetched with one.
now=$(date +%s)
api -X POST "$base/api/streams/demo/tokens" >"$out/token.json"
api -X POST -d '{"expires_in": 60, "ip": "10.0.0.7"}' "$base/api/streams/demo/tokens" >"$out/token-ip.json"
api -X POST -d '{"expires_in": 600, "session": "viewer-42"}' "$base/api/streams/demo/tokens" \
    >"$out/token-session.json"
token() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["token"], end="")' "$1"; }
t_plain=$(token "$out/token.json")
t_ip=$(token "$out/token-ip.json")
t_session=$(token "$out/token-session.json")
api -X PATCH -d '{"private": true}' "$base/api/streams/demo" >/dev/null
get "$base/live/demo/master.m3u8?token=$t_plain" >"$out/master-token.m3u8"
get "$base/live/demo/234p/index.m3u8?token=$t_session" >"$out/234p-token.m3u8"
api -X PATCH -d '{"private": false}' "$base/api/streams/demo" >/dev/null

# The publisher leaves; after the grace period the playlist ends.
wait "$ffmpeg_pid" || true
sleep 3
get "$base/live/demo/234p/index.m3u8" >"$out/ended.m3u8" || : >"$out/ended.m3u8"

# ---- edge_playlist ----------------------------------------------------------------
mkdir -p corpus/edge_playlist
edge() { # NAME PATH QUERY PLAYLIST_FILE BODY_FILE
    {
        printf '%s\xff%s\xff' "$2" "$3"
        cat "${4:-/dev/null}"
        printf '\xff'
        cat "${5:-/dev/null}"
    } >"corpus/edge_playlist/$1"
}
edge master /live/demo/master.m3u8 "" "$out/master.m3u8"
edge media-360p /live/demo/360p/index.m3u8 "" "$out/360p.m3u8"
edge media-234p /live/demo/234p/index.m3u8 "" "$out/234p.m3u8"
edge blocking-reload /live/demo/234p/index.m3u8 "$blocking" "$out/blocking.m3u8"
edge delta-update /live/demo/234p/index.m3u8 "$blocking&_HLS_skip=YES" "$out/delta.m3u8"
edge delta-update-v2 /live/demo/360p/index.m3u8 "_HLS_skip=v2" "$out/delta-v2.m3u8"
# As hls.js sends it: the token first, the LL-HLS parameters after.
edge blocking-reload-with-token /live/demo/234p/index.m3u8 "token=$t_session&$blocking" "$out/234p-token.m3u8"
edge dvr /live/demo/dvr.m3u8 "" "$out/dvr.m3u8"
edge dvr-234p /live/demo/234p/dvr.m3u8 "" "$out/dvr-234p.m3u8"
edge dvr-recorded-segment "/live/demo/234p/$recorded" "" "$out/dvr-234p.m3u8"
edge ended /live/demo/234p/index.m3u8 "" "$out/ended.m3u8"
edge init "/live/demo/234p/$init" "" "" "$out/init.mp4"
edge part "/live/demo/234p/$last_part" "" "$out/blocking.m3u8" "$out/part.m4s"
# Another spelling of a segment's path, and an LL-HLS query (noise on media).
edge segment-start "/live/demo/360p/%73eg-00${segment#seg-}" "_HLS_msn=$msn" "" "$out/segment-start.m4s"
edge health /live/demo/health "" "" "$out/health.json"

# ---- playback_token ---------------------------------------------------------------
mkdir -p corpus/playback_token
rest() { # CLOCK A B EXPIRY FLAGS ALTER: the target's REST bytes
    python3 -c 'import struct, sys; a = [int(x) for x in sys.argv[1:]]
sys.stdout.buffer.write(struct.pack("<I", a[0]) + bytes(a[1:]))' "$@"
}
token_seed() { # NAME TOKEN STREAM PLAYLIST_FILE REST...
    local name=$1 tok=$2 stream=$3 playlist=$4
    shift 4
    {
        printf '%s\xff%s\xff' "$tok" "$stream"
        cat "${playlist:-/dev/null}"
        printf '\xff'
        rest "$@"
    } >"corpus/playback_token/$name"
}
# An operator's own JWT library: header without `typ`, signed with the older key.
jwt() { # KID SECRET CLAIMS_JSON [ALG]
    python3 -c 'import base64, hashlib, hmac, json, sys
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
kid, secret, claims = sys.argv[1:4]
alg = sys.argv[4] if len(sys.argv) > 4 else "HS256"
signed = b64(json.dumps({"alg": alg, "kid": kid}).encode()) + "." + b64(claims.encode())
mac = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
print(signed + "." + (b64(mac) if alg == "HS256" else ""), end="")' "$@"
}
# One character of the signature changed.
alter() {
    python3 -c 'import sys; t = sys.argv[1]; i = len(t) - 10
print(t[:i] + ("B" if t[i] == "A" else "A") + t[i + 1 :], end="")' "$1"
}
# A token bound to an IPv4-mapped address (::ffff:10.0.3.9), taken from 10.0.3.9 as it
# should be, is in the corpus as playback_token-ipv4-mapped-grant-ip (found by the
# 1-minute run: the target's check compared the addresses without mapping them).
token_seed minted "$t_plain" demo "$out/master-token.m3u8" "$now" 0 1 10 0 5
token_seed minted-bound-ip "$t_ip" demo "$out/master.m3u8" "$now" 0 7 30 1 17
token_seed minted-session "$t_session" demo "$out/234p-token.m3u8" "$now" 3 9 200 3 40
token_seed wrong-address "$t_ip" demo "$out/master.m3u8" "$now" 0 8 30 1 0
token_seed expired "$t_ip" demo "" "$((now + 61))" 0 7 0 0 0
token_seed wrong-stream "$t_plain" studio "$out/blocking.m3u8" "$now" 1 2 3 2 1
token_seed altered-signature "$(alter "$t_plain")" demo "" "$now" 0 1 0 0 0
token_seed cut-short "${t_plain%.*}" demo "" "$now" 0 1 0 0 0
token_seed older-key "$(jwt k0 older-secret-0123456789 "{\"sub\":\"demo\",\"exp\":$((now + 600))}")" \
    demo "$out/delta.m3u8" "$now" 0 1 60 0 9
token_seed unknown-key "$(jwt k9 another-secret-0123456789 "{\"sub\":\"demo\",\"exp\":$((now + 600))}")" \
    demo "" "$now" 0 1 0 0 0
token_seed alg-none "$(jwt k1 fuzzing-secret-0123456789 "{\"sub\":\"demo\",\"exp\":$((now + 600))}" none)" \
    demo "" "$now" 0 1 0 0 0

# ---- config_toml ------------------------------------------------------------------
mkdir -p corpus/config_toml
cp ../deploy/rivulet.toml corpus/config_toml/deploy-rivulet.toml
for doc in ../docs/*.md; do
    awk -v out="corpus/config_toml/docs-$(basename "$doc" .md)" \
        '/^```toml/ { n++; f = 1; next } /^```/ { f = 0 } f { print > (out "-" n ".toml") }' "$doc"
done
cp "$work/rivulet.toml" corpus/config_toml/serve-run.toml
cat >corpus/config_toml/ladder-hevc-av1.toml <<'TOML'
renditions = ["source", "720p", "720p-hevc", "480p-av1"]
segment_target_ms = 4000
part_target_ms = 500
window_segments = 5

[[ladder]]
name = "720p"
height = 720
bitrate = 3000000
max_rate = 4500000
buffer_size = 6000000
max_fps = 30
preset = "veryfast"
profile = "high"
codec = "h264"

[[ladder]]
name = "720p-hevc"
height = 720
bitrate = 2000000
codec = "hevc"

[[ladder]]
name = "480p-av1"
height = 480
bitrate = 900000
codec = "av1"
TOML
for f in corpus/config_toml/*.toml; do
    [[ $f == */refused-* ]] && continue
    "$RIVULET" serve --config "$f" --check >/dev/null 2>&1 || { echo "refused: $f" >&2; exit 1; }
done
# Two the server refuses.
sed 's/^part_target_ms = 201/part_target_ms = 1500/' "$work/rivulet.toml" \
    >corpus/config_toml/refused-part-over-half-segment.toml
sed 's/^max_fps = 30/codec = "vp9"/' "$work/rivulet.toml" >corpus/config_toml/refused-unknown-codec.toml
for f in corpus/config_toml/refused-*.toml; do
    if "$RIVULET" serve --config "$f" --check >/dev/null 2>&1; then
        echo "accepted: $f" >&2
        exit 1
    fi
done

for t in edge_playlist playback_token config_toml; do
    echo "$t: $(ls "corpus/$t" | wc -l) files, $(cat corpus/"$t"/* | wc -c) bytes"
done
