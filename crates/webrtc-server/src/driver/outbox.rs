//! The viewers' datagrams, sent in batches. str0m cuts a video frame into RTP packets
//! of one size (the last of each NAL unit shorter), all to one viewer; on Linux a run
//! of them goes out as one `sendmsg` with UDP generic segmentation offload (the kernel
//! cuts the buffer into the datagrams), and the single datagrams queued meanwhile (an
//! Opus packet to each viewer, RTCP) as one `sendmmsg`, instead of one `sendto`
//! each: the system calls, route lookups and socket-buffer accounting were half of a
//! viewer's cost (perf, 200 viewers). Order is kept. Elsewhere, or if the kernel
//! refuses GSO, the datagrams go one by one.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::ops::Range;

use tokio::net::UdpSocket;

/// Datagrams in one GSO batch at most (Linux's `UDP_MAX_SEGMENTS` is 64 on older kernels).
const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO batch at most (one IP packet's worth before segmentation).
const MAX_BYTES: usize = 60_000;
/// Bytes queued before a flush whatever the caller does (a bound, not a tuning).
const MAX_QUEUED: usize = 256 << 10;

/// Datagrams to one address: `count` of `segment` bytes, the last one possibly
/// shorter (which closes the batch), at `bytes` of the outbox's buffer.
struct Batch {
    destination: SocketAddr,
    bytes: Range<usize>,
    segment: usize,
    count: usize,
    closed: bool,
}

pub(crate) struct Outbox {
    buf: Vec<u8>,
    batches: Vec<Batch>,
    /// The single datagrams of a flush, to go in one `sendmmsg` (kept for its capacity).
    singles: Vec<(SocketAddr, Range<usize>)>,
    /// Whether the kernel takes GSO batches (cleared at its first refusal).
    gso: bool,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            batches: Vec::new(),
            singles: Vec::new(),
            gso: cfg!(target_os = "linux"),
        }
    }

    /// Queues `data` for `destination`. Returns the datagrams that could not be sent
    /// (only if the queue was full and had to go at once).
    pub(crate) fn push(
        &mut self,
        socket: &UdpSocket,
        destination: SocketAddr,
        data: &[u8],
    ) -> usize {
        let gso = self.gso;
        let end = self.buf.len() + data.len();
        match self.batches.last_mut() {
            Some(b)
                if gso
                    && !b.closed
                    && b.destination == destination
                    && data.len() <= b.segment
                    && b.count < MAX_SEGMENTS
                    && b.bytes.len() + data.len() <= MAX_BYTES =>
            {
                b.bytes.end = end;
                b.count += 1;
                b.closed = data.len() < b.segment;
            }
            _ => self.batches.push(Batch {
                destination,
                bytes: self.buf.len()..end,
                segment: data.len(),
                count: 1,
                closed: false,
            }),
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() > MAX_QUEUED {
            self.flush(socket)
        } else {
            0
        }
    }

    /// Sends what is queued, in order. Returns the datagrams that could not be sent
    /// (UDP: a full socket buffer is loss, which NACK and PLI repair).
    pub(crate) fn flush(&mut self, socket: &UdpSocket) -> usize {
        let mut failed = 0;
        // Runs of single datagrams go together; a GSO batch goes alone.
        let mut singles = std::mem::take(&mut self.singles);
        let mut batches = std::mem::take(&mut self.batches);
        for batch in batches.drain(..) {
            if batch.count == 1 || !self.gso {
                let segment = batch.segment.max(1);
                let mut at = batch.bytes.start;
                while at < batch.bytes.end {
                    let end = (at + segment).min(batch.bytes.end);
                    singles.push((batch.destination, at..end));
                    at = end;
                }
                continue;
            }
            failed += send_singles(socket, &self.buf, &mut singles);
            let bytes = &self.buf[batch.bytes.clone()];
            if let Err(e) = send_segments(socket, batch.destination, bytes, batch.segment) {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    failed += batch.count;
                } else {
                    // EIO/EINVAL: no GSO here (an old kernel, checksum offload off).
                    tracing::debug!(error = %e, "UDP segmentation offload refused; sending datagrams one by one");
                    self.gso = false;
                    for chunk in bytes.chunks(batch.segment.max(1)) {
                        if socket.try_send_to(chunk, batch.destination).is_err() {
                            failed += 1;
                        }
                    }
                }
            }
        }
        failed += send_singles(socket, &self.buf, &mut singles);
        self.buf.clear();
        (self.batches, self.singles) = (batches, singles);
        failed
    }
}

/// Sends `singles` (and empties it), as few `sendmmsg` calls as it takes on Linux.
/// Returns the datagrams not sent.
#[cfg(target_os = "linux")]
fn send_singles(
    socket: &UdpSocket,
    buf: &[u8],
    singles: &mut Vec<(SocketAddr, Range<usize>)>,
) -> usize {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    use std::os::fd::AsRawFd;
    /// Messages per system call (the kernel's `UIO_MAXIOV` is 1024).
    const PER_CALL: usize = 256;
    let mut failed = 0;
    for group in singles.chunks(PER_CALL) {
        let slices: Vec<[IoSlice<'_>; 1]> = group
            .iter()
            .map(|(_, r)| [IoSlice::new(&buf[r.clone()])])
            .collect();
        let addresses: Vec<Option<SockaddrStorage>> = group
            .iter()
            .map(|(a, _)| Some(SockaddrStorage::from(*a)))
            .collect();
        let mut sent = 0;
        while sent < group.len() {
            let mut headers =
                MultiHeaders::<SockaddrStorage>::preallocate(group.len() - sent, None);
            let result = socket.try_io(tokio::io::Interest::WRITABLE, || {
                sendmmsg(
                    socket.as_raw_fd(),
                    &mut headers,
                    &slices[sent..],
                    &addresses[sent..],
                    [],
                    MsgFlags::empty(),
                )
                .map(|results| results.count())
                .map_err(std::io::Error::from)
            });
            match result {
                Ok(n) if n > 0 => sent += n,
                // Nothing taken (a full buffer): the rest is lost, as datagrams are.
                Ok(_) | Err(_) => {
                    failed += group.len() - sent;
                    break;
                }
            }
        }
    }
    singles.clear();
    failed
}

#[cfg(not(target_os = "linux"))]
fn send_singles(
    socket: &UdpSocket,
    buf: &[u8],
    singles: &mut Vec<(SocketAddr, Range<usize>)>,
) -> usize {
    let failed = singles
        .iter()
        .filter(|(a, r)| socket.try_send_to(&buf[r.clone()], *a).is_err())
        .count();
    singles.clear();
    failed
}

#[cfg(target_os = "linux")]
fn send_segments(
    socket: &UdpSocket,
    destination: SocketAddr,
    buf: &[u8],
    segment: usize,
) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::os::fd::AsRawFd;
    let size = u16::try_from(segment).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let address = SockaddrStorage::from(destination);
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        sendmsg(
            socket.as_raw_fd(),
            &[IoSlice::new(buf)],
            &[ControlMessage::UdpGsoSegments(&size)],
            MsgFlags::empty(),
            Some(&address),
        )
        .map(|_| ())
        .map_err(std::io::Error::from)
    })
}

#[cfg(not(target_os = "linux"))]
fn send_segments(_: &UdpSocket, _: SocketAddr, _: &[u8], _: usize) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What a receiving socket reads, datagram by datagram.
    async fn received(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65_536];
        for _ in 0..n {
            let len =
                tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv(&mut buf))
                    .await
                    .expect("a datagram within 5 s")
                    .unwrap();
            out.push(buf[..len].to_vec());
        }
        out
    }

    #[tokio::test]
    async fn batches_arrive_as_the_datagrams_pushed() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // As in the driver, where the reactor has seen the socket writable.
        sender.writable().await.unwrap();
        let mut outbox = Outbox::new();
        // A frame: 70 full packets (more than one batch), a short last one; then a
        // small one to another viewer, then more to the first.
        let mut to_a_sent = Vec::new();
        for i in 0..70u8 {
            to_a_sent.push(vec![i; 1200]);
        }
        to_a_sent.push(vec![70; 300]);
        to_a_sent.push(vec![71; 1200]);
        let mut failed = 0;
        for d in &to_a_sent[..71] {
            failed += outbox.push(&sender, to_a, d);
        }
        failed += outbox.push(&sender, to_b, b"rtcp");
        failed += outbox.push(&sender, to_a, &to_a_sent[71]);
        failed += outbox.flush(&sender);
        assert_eq!(failed, 0);
        assert_eq!(received(&a, to_a_sent.len()).await, to_a_sent);
        assert_eq!(received(&b, 1).await, vec![b"rtcp".to_vec()]);
        eprintln!("UDP segmentation offload taken: {}", outbox.gso);
        // Nothing queued: flushing sends nothing.
        assert_eq!(outbox.flush(&sender), 0);
    }
}
