//! The config file's `[http]` table as every role reads it: the serving limits and
//! the held-request bounds, merged with the flags (`or`) and filled with the
//! defaults (`limits`, `held`).

use std::time::Duration;

use serde::Deserialize;

use crate::{HeldLimits, HttpLimits};

/// The `[http]` table (the flags' names without `--http-`); `None`: not given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub send_timeout_ms: Option<u64>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub max_held_per_stream: Option<usize>,
    pub max_held_per_client: Option<usize>,
}

impl HttpOptions {
    /// Each option of `self`, else `other`'s (flags over the file).
    pub fn or(self, other: &HttpOptions) -> HttpOptions {
        HttpOptions {
            max_connections: self.max_connections.or(other.max_connections),
            max_connections_per_client: self
                .max_connections_per_client
                .or(other.max_connections_per_client),
            header_timeout_ms: self.header_timeout_ms.or(other.header_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.or(other.idle_timeout_ms),
            send_timeout_ms: self.send_timeout_ms.or(other.send_timeout_ms),
            max_header_bytes: self.max_header_bytes.or(other.max_header_bytes),
            max_headers: self.max_headers.or(other.max_headers),
            max_body_bytes: self.max_body_bytes.or(other.max_body_bytes),
            max_held_per_stream: self.max_held_per_stream.or(other.max_held_per_stream),
            max_held_per_client: self.max_held_per_client.or(other.max_held_per_client),
        }
    }

    /// The serving limits: the defaults where nothing is given; caps at least 1.
    pub fn limits(&self) -> HttpLimits {
        let d = HttpLimits::default();
        let ms = |given: Option<u64>, default| given.map_or(default, Duration::from_millis);
        HttpLimits {
            max_connections: self.max_connections.unwrap_or(d.max_connections).max(1),
            max_connections_per_client: self
                .max_connections_per_client
                .unwrap_or(d.max_connections_per_client)
                .max(1),
            header_timeout: ms(self.header_timeout_ms, d.header_timeout),
            idle_timeout: ms(self.idle_timeout_ms, d.idle_timeout),
            send_timeout: ms(self.send_timeout_ms, d.send_timeout),
            max_header_bytes: self.max_header_bytes.unwrap_or(d.max_header_bytes),
            max_headers: self.max_headers.unwrap_or(d.max_headers),
            max_body_bytes: self.max_body_bytes.unwrap_or(d.max_body_bytes),
            shutdown_grace: d.shutdown_grace,
        }
    }

    /// The held-request bounds: the defaults where nothing is given.
    pub fn held(&self) -> HeldLimits {
        let d = HeldLimits::default();
        HeldLimits {
            per_stream: self.max_held_per_stream.unwrap_or(d.per_stream),
            per_client: self.max_held_per_client.unwrap_or(d.per_client),
        }
    }
}

impl HttpLimits {
    /// Raises the open-files limit and lowers the connection cap to fit it (with a
    /// warning), leaving room for publishers and upstreams.
    pub fn fit_to_process(mut self) -> HttpLimits {
        if let Some(descriptors) = crate::raise_descriptor_limit() {
            let asked = self.max_connections;
            let applied = self.fit_descriptors(descriptors);
            if applied < asked {
                tracing::warn!(
                    asked,
                    applied,
                    descriptors,
                    "HTTP connection cap lowered to leave a quarter of the open-files limit to publishers and upstreams (raise LimitNOFILE / ulimit -n to allow more)"
                );
            }
        }
        self
    }
}
