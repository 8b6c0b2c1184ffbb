//! The HTTP serving limits of every role (`serve`, `meta`, `analytics`, `edge`,
//! `route`), the held-request bounds of the origin and the edge, and the edge's
//! bounds on upstream answers: flags, `RIVULET_…` variables and the `[http]` section
//! of the config file (flag > environment > file > default).

use std::time::Duration;

use clap::Args;

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
pub(crate) use httpd::HttpOptions as HttpFile;

impl HttpArgs {
    /// Whether the body limit was set (by a flag or the file).
    pub(crate) fn body_limit_given(&self, file: &HttpFile) -> bool {
        self.http_max_body_bytes.is_some() || file.max_body_bytes.is_some()
    }

    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: &HttpFile) -> httpd::HttpLimits {
        HttpFile {
            max_connections: self.http_max_connections,
            max_connections_per_client: self.http_max_connections_per_client,
            header_timeout_ms: self.http_header_timeout_ms,
            idle_timeout_ms: self.http_idle_timeout_ms,
            send_timeout_ms: self.http_send_timeout_ms,
            max_header_bytes: self.http_max_header_bytes,
            max_headers: self.http_max_headers,
            max_body_bytes: self.http_max_body_bytes,
            ..Default::default()
        }
        .or(file)
        .limits()
    }
}

impl HeldArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: &HttpFile) -> httpd::HeldLimits {
        HttpFile {
            max_held_per_stream: self.max_held_per_stream,
            max_held_per_client: self.max_held_per_client,
            ..Default::default()
        }
        .or(file)
        .held()
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

/// `limits` for this process (`HttpLimits::fit_to_process`).
pub(crate) fn fit_to_process(limits: httpd::HttpLimits) -> httpd::HttpLimits {
    limits.fit_to_process()
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
