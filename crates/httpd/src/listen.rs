//! Binding a role's listeners, with the error every role gives when the port is taken,
//! and addresses as people should type them.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// A listener that could not be bound: what it was for, where, and the flag to change.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {what} on {addr} (is another server using the port? set {flag})")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub flag: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` for `what` (`"HTTP"`, `"RTMP"`); the error names `flag`.
pub async fn bind(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what,
        addr,
        flag,
        source,
    })
}

/// An address to show to people: a wildcard listener is reachable on loopback.
pub fn display_addr(a: SocketAddr) -> String {
    if a.ip().is_unspecified() {
        format!("127.0.0.1:{}", a.port())
    } else {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_names_the_listener_and_the_flag() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr, "HTTP", "--http-listen").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot listen for HTTP on {addr} (is another server using the port? set --http-listen)"
            )
        );
        assert_eq!(
            display_addr("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080"
        );
    }
}
