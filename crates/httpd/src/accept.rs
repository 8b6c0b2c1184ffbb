//! Accept errors: which ones are about one connection, which ones about the process.

use std::io;
use std::time::Duration;

/// First pause after a resource error on accept; doubled up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(10);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// An error that concerns only the connection being accepted (the next accept may
/// well succeed at once).
pub(crate) fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Out of descriptors (`EMFILE` for the process, `ENFILE` for the system) or memory:
/// accepting again at once would fail again and spin a core.
pub(crate) fn what_ran_out(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(24) => {
            "open files of this process (EMFILE): raise LimitNOFILE / ulimit -n, or lower --http-max-connections"
        }
        Some(23) => "open files of the system (ENFILE)",
        Some(105) | Some(12) => "kernel memory for sockets (ENOBUFS/ENOMEM)",
        _ => "a resource",
    }
}

pub(crate) fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_backs_off() {
        let emfile = io::Error::from_raw_os_error(24);
        assert!(!is_per_connection(&emfile));
        assert!(what_ran_out(&emfile).contains("EMFILE"));
        assert!(is_per_connection(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        let mut b = MIN_BACKOFF;
        for _ in 0..20 {
            b = next_backoff(b);
        }
        assert_eq!(b, MAX_BACKOFF);
    }
}
