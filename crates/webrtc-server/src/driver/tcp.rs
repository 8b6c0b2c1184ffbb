//! ICE-TCP (RFC 6544, passive candidates): for viewers and publishers whose network
//! blocks UDP. The listener shares the UDP socket's port; each connection carries the
//! same datagrams as UDP would, each framed by a 16-bit length (RFC 4571). A task per
//! connection reads frames to the driver and writes the driver's frames out; the
//! driver hands them to the session that accepts them, as it does UDP datagrams.
//!
//! A connection is one peer's, for one session: a frame no session takes closes it
//! (see the driver), so garbage cannot keep one open. Limits: connections in total and
//! per client address, a first frame within [`FIRST_FRAME`], silence at most [`IDLE`],
//! each write within [`SEND_TIMEOUT`]; accept errors (out of descriptors) back off.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ingest::{AcceptBackoff, ConnectionLimiter, LimitNames, LogThrottle};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Frames queued to one connection; more is loss (as a full UDP buffer would be),
/// which NACK and keyframe requests repair.
const OUT_QUEUE: usize = 256;
/// A connection silent this long is closed: a peer's ICE consent checks come every
/// few seconds (RFC 7675).
const IDLE: Duration = Duration::from_secs(30);
/// A peer connects to send its ICE checks: one that says nothing this long is closed.
pub(crate) const FIRST_FRAME: Duration = Duration::from_secs(10);
/// A peer that stops reading: a write that cannot finish in this long closes it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

const ICE_TCP_LIMITS: LimitNames = LimitNames {
    connections: "WebRTC TCP",
    total: "2 x --webrtc-max-sessions",
    per_address: "--webrtc-tcp-max-per-ip",
};

/// How many ICE-TCP connections may be open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpLimits {
    pub(crate) max_total: usize,
    /// From one client address (a NAT may hide several viewers behind one).
    pub(crate) max_per_ip: usize,
}

/// What the connections tell the driver.
pub(crate) enum TcpEvent {
    Opened {
        peer: SocketAddr,
        frames: mpsc::Sender<Vec<u8>>,
    },
    Frame {
        peer: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        peer: SocketAddr,
    },
}

/// Accepts connections on `listener` until the driver stops listening (its receiver
/// of `events` is dropped); connections over `limits` are closed at once.
pub(crate) fn spawn_listener(
    listener: TcpListener,
    events: mpsc::Sender<TcpEvent>,
    limits: TcpLimits,
) {
    let admitted = ConnectionLimiter::new(limits.max_total, limits.max_per_ip);
    let mut backoff = AcceptBackoff::default();
    let mut refusal_log = LogThrottle::new(Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = events.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors: the connection stays in the backlog, so
                        // accepting again at once would spin.
                        let wait = backoff.handle_error();
                        metrics::counter!("webrtc_tcp_accept_errors_total").increment(1);
                        if backoff.is_first_failure() {
                            tracing::warn!(error = %e, "cannot accept WebRTC TCP connections (out of file descriptors? raise `ulimit -n` or lower --webrtc-max-sessions); backing off up to 1 s");
                        }
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                },
            };
            backoff.handle_success();
            let permit = match admitted.try_admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    metrics::counter!("webrtc_tcp_refused_total", "reason" => refusal.label())
                        .increment(1);
                    if let Some(suppressed) = refusal_log.allow(Instant::now()) {
                        tracing::warn!(%peer, suppressed, reason = %refusal.describe(&ICE_TCP_LIMITS), "refusing a WebRTC TCP connection");
                    }
                    continue;
                }
            };
            let events = events.clone();
            tokio::spawn(async move {
                connection(stream, peer, &events).await;
                drop(permit);
                let _ = events.send(TcpEvent::Closed { peer }).await;
            });
        }
    });
}

/// One connection: frames in to the driver, the driver's frames out, until either
/// side ends or it falls silent.
async fn connection(stream: TcpStream, peer: SocketAddr, events: &mpsc::Sender<TcpEvent>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(OUT_QUEUE);
    if events
        .send(TcpEvent::Opened { peer, frames })
        .await
        .is_err()
    {
        return;
    }
    let write = async move {
        let mut writer = BufWriter::new(writer);
        while let Some(frame) = outgoing.recv().await {
            let Ok(length) = u16::try_from(frame.len()) else {
                continue;
            };
            let sent = tokio::time::timeout(SEND_TIMEOUT, async {
                writer.write_all(&length.to_be_bytes()).await?;
                writer.write_all(&frame).await?;
                // Several frames queued together go out in one write.
                if outgoing.is_empty() {
                    writer.flush().await?;
                }
                Ok::<(), std::io::Error>(())
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
    };
    let read = async {
        let mut silence = FIRST_FRAME;
        loop {
            let mut length = [0u8; 2];
            match tokio::time::timeout(silence, reader.read_exact(&mut length)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            silence = IDLE;
            let mut data = vec![0u8; usize::from(u16::from_be_bytes(length))];
            match tokio::time::timeout(IDLE, reader.read_exact(&mut data)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            if events.send(TcpEvent::Frame { peer, data }).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = write => {}
        () = read => {}
    }
}

/// The open connections' outgoing queues, by peer address.
#[derive(Default)]
pub(crate) struct TcpLinks {
    links: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

impl TcpLinks {
    pub(crate) fn handle(&mut self, event: TcpEvent) -> Option<(SocketAddr, Vec<u8>)> {
        match event {
            TcpEvent::Opened { peer, frames } => {
                self.links.insert(peer, frames);
                metrics::gauge!("webrtc_tcp_connections").set(self.links.len() as f64);
                None
            }
            TcpEvent::Frame { peer, data } => Some((peer, data)),
            TcpEvent::Closed { peer } => {
                self.links.remove(&peer);
                metrics::gauge!("webrtc_tcp_connections").set(self.links.len() as f64);
                None
            }
        }
    }

    /// Closes the connection from `peer` (its queue's end stops its writer, and so it).
    pub(crate) fn close(&mut self, peer: SocketAddr) {
        if self.links.remove(&peer).is_some() {
            metrics::counter!("webrtc_tcp_closed_unmatched_total").increment(1);
            metrics::gauge!("webrtc_tcp_connections").set(self.links.len() as f64);
        }
    }

    /// Queues `data` to the connection from `peer`; false if there is none or its
    /// queue is full.
    pub(crate) fn send(&self, peer: SocketAddr, data: Vec<u8>) -> bool {
        self.links
            .get(&peer)
            .is_some_and(|link| link.try_send(data).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames in both directions over a real connection, each with its 16-bit length;
    /// the connection's end is told to the driver.
    #[tokio::test]
    async fn frames_go_both_ways_with_their_length_and_the_end_is_told() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        spawn_listener(
            listener,
            tx,
            TcpLimits {
                max_total: 4,
                max_per_ip: 4,
            },
        );
        let mut client = TcpStream::connect(addr).await.unwrap();
        let me = client.local_addr().unwrap();
        // Two frames in one write: split by their lengths.
        client
            .write_all(&[0, 3, b'a', b'b', b'c', 0, 1, b'z'])
            .await
            .unwrap();
        let mut links = TcpLinks::default();
        let mut frames = Vec::new();
        while frames.len() < 2 {
            let event = rx.recv().await.unwrap();
            if let Some((peer, data)) = links.handle(event) {
                assert_eq!(peer, me);
                frames.push(data);
            }
        }
        assert_eq!(frames, vec![b"abc".to_vec(), b"z".to_vec()]);
        assert!(links.send(me, b"hello".to_vec()));
        let mut back = [0u8; 7];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"\0\x05hello");
        drop(client);
        loop {
            let event = rx.recv().await.unwrap();
            let closed = matches!(&event, TcpEvent::Closed { peer } if *peer == me);
            assert!(links.handle(event).is_none());
            if closed {
                break;
            }
        }
        assert!(!links.send(me, b"gone".to_vec()), "no link once closed");
    }
}
