//! The limits of one HTTP server.

use std::time::Duration;

/// What one HTTP server allows its clients. [`Default`] is sane for the open internet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at most. See [`HttpLimits::fit_descriptors`].
    pub max_connections: usize,
    /// Open connections from one client address at most (an edge in front of an
    /// origin is one client).
    pub max_connections_per_client: usize,
    /// A request head (start line and headers) must arrive within this, counted from
    /// when the server starts waiting for it; it is also how long an HTTP/1.1
    /// keep-alive connection may wait for its next request.
    pub header_timeout: Duration,
    /// A connection with no request in flight that sends nothing for this long is
    /// closed (HTTP/2 and TLS handshakes included).
    pub idle_timeout: Duration,
    /// A response write the client does not take for this long ends the connection.
    pub send_timeout: Duration,
    /// Bytes of a request head at most (at least 8 KiB: hyper's floor).
    pub max_header_bytes: usize,
    /// Headers in a request at most.
    pub max_headers: usize,
    /// Bytes of a request body at most, on every endpoint.
    pub max_body_bytes: usize,
    /// How long requests in flight may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_client: 1_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(20),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Descriptors kept from HTTP connections at the least (see
/// [`HttpLimits::fit_descriptors`]).
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// The hyper floor for a connection's read buffer, which bounds a request head.
pub(crate) const MIN_HEADER_BYTES: usize = 8 * 1024;

impl HttpLimits {
    /// Lowers `max_connections` so that a flood of HTTP connections leaves a quarter
    /// of `descriptors` (the process's open-files limit), and at least
    /// [`RESERVED_DESCRIPTORS`], for publishers, upstream connections, the database
    /// and connections being closed. Returns the limit applied.
    pub fn fit_descriptors(&mut self, descriptors: u64) -> usize {
        let reserve = (descriptors / 4).max(RESERVED_DESCRIPTORS);
        let share = descriptors.saturating_sub(reserve).max(descriptors / 2);
        let share = usize::try_from(share).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(share.max(1));
        self.max_connections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_a_quarter_of_the_descriptors() {
        let mut limits = HttpLimits::default();
        assert_eq!(limits.fit_descriptors(1024), 768);
        let mut limits = HttpLimits::default();
        assert_eq!(limits.fit_descriptors(256), 128, "at least 128 kept");
        let mut limits = HttpLimits::default();
        assert_eq!(limits.fit_descriptors(100), 50, "half of a tiny limit");
        let mut limits = HttpLimits::default();
        assert_eq!(limits.fit_descriptors(1 << 20), 10_000, "the cap stays");
        assert_eq!(limits.fit_descriptors(0), 1);
    }
}
