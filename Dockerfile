# Rivulet in a container: `docker build -t rivulet .` then
#   docker run -p 1935:1935 -p 8080:8080 -v rivulet-data:/var/lib/rivulet rivulet
# Another role: `docker run … rivulet edge --origin http://origin:8080`.
# (docs/deployment.md, "Containers".)

# Build: Debian 12 with Rust, FFmpeg's development files and clang (bindgen), and
# node/npm for the web pages' packages (hls.js, uPlot) the binary embeds.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config clang libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
      libswresample-dev libavfilter-dev libavdevice-dev nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN npm ci --prefix web --omit=dev --no-audit --no-fund \
 && npm ci --prefix analytics-data --no-audit --no-fund \
 && cargo build --release --locked -p rivulet \
 && install -D target/release/rivulet /out/usr/bin/rivulet \
 && install -D -m 644 deploy/rivulet.toml /out/etc/rivulet/rivulet.toml \
 && install -D -m 644 analytics-data/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb \
      /out/usr/share/rivulet/geo-whois-asn-country.mmdb

# Run: Debian 12 slim with FFmpeg's shared libraries only (the binary links them).
FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 \
      libavfilter8 libavdevice59 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/rivulet --create-home --shell /usr/sbin/nologin rivulet
COPY --from=build /out/ /
USER rivulet
WORKDIR /var/lib/rivulet
VOLUME /var/lib/rivulet
# IP-to-country database: CC BY 4.0, from @ip-location-db/geo-whois-asn-country-mmdb.
ENV RIVULET_GEOIP_DB=/usr/share/rivulet/geo-whois-asn-country.mmdb
EXPOSE 1935 8080
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ok <&3"]
ENTRYPOINT ["/usr/bin/rivulet"]
CMD ["serve", "--config", "/etc/rivulet/rivulet.toml"]
