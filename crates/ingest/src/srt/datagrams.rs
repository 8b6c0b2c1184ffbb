//! The listener's datagrams, read in batches: on Linux one `recvmmsg` takes up to
//! [`SLOTS`] datagrams, where a `recvfrom` each was a system call per SRT packet (a
//! 6 Mbit/s stream is ~570 a second; with the read beat they come a few at a time).
//! Elsewhere the same batch is filled by `recv_from` one at a time.

use std::io;
use std::net::SocketAddr;

/// Datagrams per system call.
pub(super) const SLOTS: usize = 32;
/// Room for one datagram: SRT packets are at most 1500 bytes (its largest MSS); a
/// larger one is cut and counted as malformed.
const SLOT_LEN: usize = 2048;

/// The buffers of one batch and what the last read put in them.
pub(super) struct Datagrams {
    buffer: Box<[u8]>,
    /// Per slot read: its length, its sender, and whether it was cut.
    received: Vec<(usize, Option<SocketAddr>, bool)>,
}

impl Datagrams {
    pub(super) fn new() -> Self {
        Self {
            buffer: vec![0u8; SLOTS * SLOT_LEN].into_boxed_slice(),
            received: Vec::with_capacity(SLOTS),
        }
    }

    /// The `index`th datagram of the last read: its bytes and sender; `None` for one
    /// without a sender address or cut short.
    pub(super) fn get(&self, index: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, from, truncated) = *self.received.get(index)?;
        let start = index * SLOT_LEN;
        match (from, truncated) {
            (Some(from), false) => Some((self.buffer.get(start..start + len)?, from)),
            _ => None,
        }
    }

    /// Reads what the non-blocking socket `fd` holds, up to [`SLOTS`] datagrams; how
    /// many (`WouldBlock` when none).
    #[cfg(target_os = "linux")]
    pub(super) fn read(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        let Datagrams { buffer, received } = self;
        // Made per read, not kept: it holds raw pointers, and the listener's task moves
        // between threads. One small allocation a read, a few hundred a second.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(SLOTS, None);
        let mut slots = buffer.chunks_exact_mut(SLOT_LEN);
        let mut slices: [[IoSliceMut<'_>; 1]; SLOTS] =
            std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
        let results = recvmmsg(
            fd.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        received.clear();
        for r in results {
            let from = r
                .address
                .as_ref()
                .and_then(|a: &SockaddrStorage| match a.family() {
                    Some(nix::sys::socket::AddressFamily::Inet) => a
                        .as_sockaddr_in()
                        .map(|s| SocketAddr::V4(std::net::SocketAddrV4::from(*s))),
                    Some(nix::sys::socket::AddressFamily::Inet6) => a
                        .as_sockaddr_in6()
                        .map(|s| SocketAddr::V6(std::net::SocketAddrV6::from(*s))),
                    _ => None,
                });
            received.push((r.bytes, from, r.flags.contains(MsgFlags::MSG_TRUNC)));
        }
        Ok(received.len())
    }

    /// Reads up to [`SLOTS`] datagrams with `recv_from`, one call each.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn read_each(
        &mut self,
        mut recv_from: impl FnMut(&mut [u8]) -> io::Result<(usize, SocketAddr)>,
    ) -> io::Result<usize> {
        self.received.clear();
        for slot in self.buffer.chunks_exact_mut(SLOT_LEN) {
            match recv_from(slot) {
                // `recv_from` cannot tell a datagram cut to the slot from a whole one.
                Ok((len, from)) => self.received.push((len, Some(from), false)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.received.is_empty() => {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.received.len())
    }
}
