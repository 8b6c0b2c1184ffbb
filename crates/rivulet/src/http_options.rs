//! The HTTP serving limits of every role (`serve`, `meta`, `analytics`, `edge`,
//! `route`), the held-request bounds of the origin and the edge, and the edge's
//! bounds on upstream answers: flags, `RIVULET_…` variables and the `[http]` section
//! of the config file (flag > environment > file > default).

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Limits of the HTTP server (connections, timeouts, sizes).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct HttpArgs {
    /// Open HTTP connections at most. At the cap the longest-idle connection is closed
    /// to make room; when every connection is busy, newcomers get a 503. Lowered to
    /// leave a quarter of the open-files limit (at least 128) unused, so that
    /// publishers and upstream connections always find a descriptor. [default: 10000]
    #[arg(long, env = "RIVULET_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) http_max_connections: Option<usize>,

    /// Open HTTP connections from one client address at most (more get a 503). An
    /// edge in front of an origin is one client: raise it on origins behind many
    /// edges' worth of streams. [default: 1000]
    #[arg(
        long,
        env = "RIVULET_HTTP_MAX_CONNECTIONS_PER_CLIENT",
        value_name = "N"
    )]
    pub(crate) http_max_connections_per_client: Option<usize>,

    /// A request head must arrive within this (slow senders are closed); also how long
    /// an HTTP/1.1 keep-alive connection waits for its next request, and the bound on
    /// a TLS handshake. [default: 10000]
    #[arg(long, env = "RIVULET_HTTP_HEADER_TIMEOUT_MS", value_name = "MS")]
    pub(crate) http_header_timeout_ms: Option<u64>,

    /// A connection with no request in flight that sends nothing for this long is
    /// closed (HTTP/2 included). [default: 60000]
    #[arg(long, env = "RIVULET_HTTP_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub(crate) http_idle_timeout_ms: Option<u64>,

    /// A client that takes no response data for this long is disconnected (a slow
    /// reader cannot pin old segments in memory). [default: 20000]
    #[arg(long, env = "RIVULET_HTTP_SEND_TIMEOUT_MS", value_name = "MS")]
    pub(crate) http_send_timeout_ms: Option<u64>,

    /// Bytes of a request head (start line and headers) at most; larger get 431.
    /// At least 8192. [default: 32768]
    #[arg(long, env = "RIVULET_HTTP_MAX_HEADER_BYTES", value_name = "BYTES")]
    pub(crate) http_max_header_bytes: Option<usize>,

    /// Headers in one request at most; more get 431. [default: 100]
    #[arg(long, env = "RIVULET_HTTP_MAX_HEADERS", value_name = "N")]
    pub(crate) http_max_headers: Option<usize>,

    /// Bytes of a request body at most, on every endpoint; larger get 413 with the
    /// reason (endpoints may set less). [default: 1048576]
    #[arg(long, env = "RIVULET_HTTP_MAX_BODY_BYTES", value_name = "BYTES")]
    pub(crate) http_max_body_bytes: Option<usize>,
}

/// Bounds on requests held waiting (blocking playlist reloads, the next part).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct HeldArgs {
    /// Requests held waiting on one stream at most, all viewers together; more get 503
    /// with Retry-After. 0: no bound. [default: 20000]
    #[arg(long, env = "RIVULET_MAX_HELD_PER_STREAM", value_name = "N")]
    pub(crate) max_held_per_stream: Option<usize>,

    /// Requests held waiting from one client address at most, all streams together;
    /// more get 429. An edge in front of an origin is one client with a held request
    /// per stream, rendition and kind. 0: no bound. [default: 1000]
    #[arg(long, env = "RIVULET_MAX_HELD_PER_CLIENT", value_name = "N")]
    pub(crate) max_held_per_client: Option<usize>,
}

/// The edge's bounds on what its upstreams send.
#[derive(Args, Debug, Clone)]
pub(crate) struct UpstreamArgs {
    /// Bytes of an upstream playlist (or error answer) at most; beyond, the body is
    /// broken off and the next upstream asked.
    #[arg(
        long,
        env = "RIVULET_UPSTREAM_MAX_PLAYLIST_BYTES",
        value_name = "BYTES",
        default_value_t = 1 << 20
    )]
    pub(crate) upstream_max_playlist_bytes: usize,

    /// Bytes of an upstream media object (init segment, segment, part) at most.
    #[arg(
        long,
        env = "RIVULET_UPSTREAM_MAX_MEDIA_BYTES",
        value_name = "BYTES",
        default_value_t = 64 << 20
    )]
    pub(crate) upstream_max_media_bytes: usize,

    /// An upstream body that sends nothing for this long is broken off (a host that
    /// drips bytes must not hold viewers); with several upstreams the others are
    /// asked after --stall-limit-ms already. A playlist must also be whole within 8 s.
    #[arg(
        long,
        env = "RIVULET_UPSTREAM_BODY_STALL_MS",
        value_name = "MS",
        default_value_t = 2000
    )]
    pub(crate) upstream_body_stall_ms: u64,

    /// How long a 404 from upstream is kept (less if the upstream's max-age says so),
    /// so that requests for a missing object cost one upstream fetch per period.
    /// 0: not kept; at most 10000.
    #[arg(
        long,
        env = "RIVULET_NEGATIVE_TTL_MS",
        value_name = "MS",
        default_value_t = 1000
    )]
    pub(crate) negative_ttl_ms: u64,
}

/// The `[http]` section of the config file (keys as the flags without `http-`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpFile {
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    header_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    send_timeout_ms: Option<u64>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_body_bytes: Option<usize>,
    max_held_per_stream: Option<usize>,
    max_held_per_client: Option<usize>,
}

impl HttpArgs {
    /// Whether the operator set the body limit (flag, environment or file).
    pub(crate) fn body_limit_given(&self, file: &HttpFile) -> bool {
        self.http_max_body_bytes.is_some() || file.max_body_bytes.is_some()
    }

    /// Flags and environment over the file over the defaults.
    pub(crate) fn resolve(&self, file: &HttpFile) -> httpd::HttpLimits {
        let d = httpd::HttpLimits::default();
        let ms = |flag: Option<u64>, file: Option<u64>, default: Duration| {
            flag.or(file).map_or(default, Duration::from_millis)
        };
        httpd::HttpLimits {
            max_connections: self
                .http_max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections)
                .max(1),
            max_connections_per_client: self
                .http_max_connections_per_client
                .or(file.max_connections_per_client)
                .unwrap_or(d.max_connections_per_client)
                .max(1),
            header_timeout: ms(
                self.http_header_timeout_ms,
                file.header_timeout_ms,
                d.header_timeout,
            ),
            idle_timeout: ms(
                self.http_idle_timeout_ms,
                file.idle_timeout_ms,
                d.idle_timeout,
            ),
            send_timeout: ms(
                self.http_send_timeout_ms,
                file.send_timeout_ms,
                d.send_timeout,
            ),
            max_header_bytes: self
                .http_max_header_bytes
                .or(file.max_header_bytes)
                .unwrap_or(d.max_header_bytes),
            max_headers: self
                .http_max_headers
                .or(file.max_headers)
                .unwrap_or(d.max_headers),
            max_body_bytes: self
                .http_max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            shutdown_grace: d.shutdown_grace,
        }
    }
}

impl HeldArgs {
    pub(crate) fn resolve(&self, file: &HttpFile) -> httpd::HeldLimits {
        let d = httpd::HeldLimits::default();
        httpd::HeldLimits {
            per_stream: self
                .max_held_per_stream
                .or(file.max_held_per_stream)
                .unwrap_or(d.per_stream),
            per_client: self
                .max_held_per_client
                .or(file.max_held_per_client)
                .unwrap_or(d.per_client),
        }
    }
}

impl UpstreamArgs {
    /// Applies these bounds to an edge's settings.
    pub(crate) fn apply(&self, config: &mut edge::EdgeConfig) {
        config.max_playlist_bytes = self.upstream_max_playlist_bytes.max(1024);
        config.max_media_bytes = self.upstream_max_media_bytes.max(1024);
        config.body_stall_timeout = Duration::from_millis(self.upstream_body_stall_ms.max(100));
        config.negative_ttl = Duration::from_millis(self.negative_ttl_ms.min(10_000));
    }
}

/// `limits` for this process: the open-files limit raised to its maximum, and the
/// connection cap fitted under it (logged when lowered).
pub(crate) fn fit_to_process(mut limits: httpd::HttpLimits) -> httpd::HttpLimits {
    if let Some(descriptors) = httpd::raise_descriptor_limit() {
        let asked = limits.max_connections;
        let applied = limits.fit_descriptors(descriptors);
        if applied < asked {
            tracing::warn!(
                asked,
                applied,
                descriptors,
                "HTTP connection cap lowered to leave a quarter of the open-files limit to publishers and upstreams (raise LimitNOFILE / ulimit -n to allow more)"
            );
        }
    }
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file: HttpFile = toml::from_str(
            "max_connections = 50\nidle_timeout_ms = 1500\nmax_held_per_client = 7\n",
        )
        .expect("valid section");
        let args = HttpArgs {
            http_max_connections: Some(20),
            ..Default::default()
        };
        let limits = args.resolve(&file);
        assert_eq!(limits.max_connections, 20);
        assert_eq!(limits.idle_timeout, Duration::from_millis(1500));
        assert_eq!(
            limits.header_timeout,
            httpd::HttpLimits::default().header_timeout
        );
        let held = HeldArgs::default().resolve(&file);
        assert_eq!(held.per_client, 7);
        assert_eq!(held.per_stream, httpd::HeldLimits::default().per_stream);
        assert!(toml::from_str::<HttpFile>("max_conections = 1\n").is_err());
    }
}
