#!/usr/bin/env bash
# Installs, by name, everything Rivulet needs to build, run and test on Debian 12.
# Idempotent: installs only what is missing. Uses sudo when not run as root.
set -euo pipefail

packages=(
  # build: FFmpeg's libraries for the transcoder, clang for bindgen, pkg-config
  pkg-config clang libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libswresample-dev libavfilter-dev libavdevice-dev
  # run and test: ffmpeg as a real publisher/decoder, nginx-rtmp as a peer for benchmarks
  ffmpeg nginx libnginx-mod-rtmp
  # test: the edge's HTTPS/HTTP2 check (a self-signed certificate, an HTTP/2 client)
  openssl curl
  # test: a real PostgreSQL for the metadata store's tests (they start their own
  # throwaway cluster on loopback; the packaged service is not used)
  postgresql
  # test: publishers and players we did not write (GStreamer's rtmp2sink, x264enc,
  # avenc_aac; its HLS demuxer)
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  # build: node/npm fetch the web pages' packages (hls.js, uPlot) and the GeoIP
  # database; test: node and Debian's Chromium run the browser tests (playwright-core)
  nodejs chromium
  # test: pip installs the OpenAPI validator and the S3 server (moto) by name
  python3 python3-pip
  # test: Varnish in front of the origin with deploy/varnish/rivulet.vcl (the test
  # starts its own varnishd on loopback); systemd-analyze verifies deploy/systemd/;
  # dpkg-dev's dpkg-shlibdeps gives the .deb (cargo deb) its library dependencies
  varnish systemd dpkg-dev
  # test: srt-live-transmit, an SRT caller we did not write (ffmpeg's libsrt is the other)
  srt-tools
  # test: more players we did not write, headless (VLC's cvlc, mpv)
  vlc-bin vlc-plugin-base mpv
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm: Debian's package, unless a nodejs from elsewhere (NodeSource) brought its own.
command -v npm >/dev/null || missing+=(npm)

if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx and Varnish on install; our tests and benchmarks start their
  # own on loopback.
  for service in nginx varnish; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
      $sudo systemctl stop "$service" || true
    fi
  done
fi

# test: validates the OpenAPI document the metadata API serves (PyPI, by name).
if command -v python3 >/dev/null && ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  echo "setup: installing openapi-spec-validator (PyPI)"
  python3 -m pip install --quiet openapi-spec-validator 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages openapi-spec-validator \
    || echo "setup: could not install openapi-spec-validator; its test will say SKIPPED" >&2
fi

# test: a real S3-compatible server on loopback for the recorder's S3 test (PyPI, by name).
if command -v python3 >/dev/null && ! command -v moto_server >/dev/null \
  && [ ! -x "$HOME/.local/bin/moto_server" ]; then
  echo "setup: installing moto[server] (PyPI)"
  python3 -m pip install --quiet 'moto[server]' 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages 'moto[server]' \
    || echo "setup: could not install moto[server]; the S3 recording test will say SKIPPED" >&2
fi

# test: an independent WebRTC client (aiortc, PyPI) receiving WHEP in the WebRTC test.
if command -v python3 >/dev/null && ! python3 -c 'import aiortc' 2>/dev/null; then
  echo "setup: installing aiortc (PyPI)"
  python3 -m pip install --quiet aiortc 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages aiortc \
    || echo "setup: could not install aiortc; the WebRTC test's aiortc client will say SKIPPED" >&2
fi

# run and test: the IP-to-country database the analytics server reads (npm package
# @ip-location-db/geo-whois-asn-country-mmdb, CC BY 4.0; see docs/api.md), pinned by
# analytics-data/package-lock.json.
geo_db="analytics-data/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb"
if [ ! -f "$(dirname "$0")/../$geo_db" ]; then
  echo "setup: installing the GeoIP country database (npm ci in analytics-data)"
  (cd "$(dirname "$0")/../analytics-data" && npm ci --no-audit --no-fund --loglevel=error)
fi

# build: the web pages' npm packages, pinned by web/package-lock.json; crates/web
# embeds hls.js and uPlot from web/node_modules into the binary. test: playwright-core,
# and the players we did not write (Shaka Player, video.js) for tests/players.rs.
if [ ! -f "$(dirname "$0")/../web/node_modules/.package-lock.json" ] \
  || [ "$(dirname "$0")/../web/package-lock.json" -nt "$(dirname "$0")/../web/node_modules/.package-lock.json" ]; then
  echo "setup: installing the web pages' packages (npm ci --prefix web)"
  npm ci --prefix "$(dirname "$0")/../web" --no-audit --no-fund --loglevel=error
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo (Rust 1.85 or newer) is needed: https://rustup.rs" >&2
  exit 1
fi
