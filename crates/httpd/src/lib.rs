//! The HTTP serving loop of every Rivulet role (origin, edge, router, metadata and
//! analytics servers): what stands between an axum [`Router`](axum::Router) and the
//! open internet.
//!
//! [`serve`] (plain HTTP/1.1 and h2c) and [`serve_tls`] (HTTPS, HTTP/2 by ALPN) accept
//! connections and hand each one to hyper, within the [`HttpLimits`]:
//!
//! - connections in total and per client address are capped; at the total cap the
//!   longest-idle connection (no request in flight) of a sample is closed to make room,
//!   as nginx does, and a newcomer is refused only when every connection is busy. A
//!   refused plain-HTTP client gets a short `503` with the reason before the close.
//! - the request head must arrive within the header timeout (slowloris), a connection
//!   with no request in flight and no bytes for the idle timeout is closed, and a
//!   write the client does not take for the send timeout ends the connection (a slow
//!   reader cannot pin a large object in memory).
//! - request heads are bounded in bytes and header count (hyper answers 431), bodies in
//!   bytes (`413` with the reason).
//! - `EMFILE`/`ENFILE` and other resource errors on accept are logged and retried
//!   after a growing pause, never in a spin.
//! - on shutdown, idle connections close at once, requests in flight get a grace
//!   period, and what is left after it is cut.
//!
//! [`shutdown`]: Ctrl-C/SIGTERM and the [`Stop`](shutdown::Stop) every task of a role
//! waits on.
//!
//! Not here: what a role serves, and limits that depend on the request (held requests
//! per stream, beacon sizes), which belong to the role's crate.

mod accept;
mod clients;
mod held;
mod io;
mod limits;
mod listen;
mod options;
mod server;
pub mod shutdown;

pub use held::{HeldLimits, HeldRequest, HeldRequests, HoldError};
pub use limits::{HttpLimits, RESERVED_DESCRIPTORS};
pub use listen::{BindError, bind, display_addr};
pub use options::HttpOptions;
pub use server::{serve, serve_tls};

/// Raises this process's open-files limit (RLIMIT_NOFILE) to its hard maximum, as
/// servers with many connections do; returns the limit now in force, if known.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "cannot raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current
}
