//! The driver: one task owns the UDP socket, the ICE-TCP connections' queues and
//! every session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use origin::LiveStreams;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use webrtc::{KeyframeRequests, SessionOutput, Transport, WhepSession};

use crate::tap::{self, TapHandle, TapItem, TapKey};
use crate::{ViewerReport, ViewerReports};

/// Media items queued from the taps to the driver; a full queue is a gap (viewers
/// wait for the next keyframe), never a wait.
const MEDIA_QUEUE: usize = 512;
/// How often a playing session is reported to analytics (a viewer is concurrent while
/// its last report is within analytics' window, three segment targets by default).
const ANALYTICS_INTERVAL: Duration = Duration::from_secs(2);
/// Keyframe requests of one rendition's viewers logged at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

mod outbox;
mod publish;
mod tcp;

use outbox::Outbox;
pub(crate) use tcp::TcpLimits;
use tcp::{TcpEvent, TcpLinks};

/// Frames from the ICE-TCP connections queued to the driver.
const TCP_QUEUE: usize = 1024;

pub(crate) use publish::Publish;

pub(crate) enum Command {
    /// A WHIP publisher, authorised and on the hub already.
    AddPublish { id: String, publish: Box<Publish> },
    Add {
        id: String,
        stream: String,
        rendition: String,
        session: Box<WhepSession>,
        client: Option<std::net::IpAddr>,
    },
    Remove {
        id: String,
        found: oneshot::Sender<bool>,
    },
    Exists {
        id: String,
        found: oneshot::Sender<bool>,
    },
}

/// AAC frames made of the publishers' Opus, queued to the driver.
const AAC_QUEUE: usize = 256;

struct Entry {
    key: TapKey,
    session: WhepSession,
    timeout: Instant,
    started: Instant,
    client: Option<std::net::IpAddr>,
    /// Bytes sent since the last analytics report, and when that was.
    unreported: u64,
    reported: Instant,
}

/// Whose datagrams come from an address.
enum Route {
    Viewer(String),
    Publisher(String),
}

struct Tap {
    /// The tap's thread stops when this is dropped.
    _handle: TapHandle,
    /// The stream, for IDR requests to its encoder.
    live: Arc<origin::LiveStream>,
    keyframe_requests: KeyframeRequests,
}

impl Tap {
    /// A viewer waits for a keyframe: the rendition's encoder is asked for an IDR.
    /// Every time: requests collapse, and the encoder makes at most one a second (a
    /// request it holds back is served then, so a viewer joining just after another
    /// waits less than a segment). Without an encoder (a passthrough stream) the
    /// viewer waits for the publisher's next keyframe.
    fn request_keyframe(&mut self, key: &TapKey) {
        let asked = self.live.request_idr(&key.1);
        if self.keyframe_requests.allow(Instant::now()) {
            tracing::debug!(stream = %key.0, rendition = %key.1, asked, "a viewer waits for a keyframe");
        }
    }
}

/// Where datagrams go out: the UDP socket (through the outbox) or a peer's ICE-TCP
/// connection.
struct Links {
    socket: UdpSocket,
    /// The datagrams on their way out of the socket, in batches.
    outbox: Outbox,
    /// The open ICE-TCP connections' queues.
    tcp: TcpLinks,
}

impl Links {
    /// Queues `data` to `destination` the way it is to go; the datagrams that could
    /// not be sent (a full queue: loss, which NACK and keyframe requests repair).
    fn send(&mut self, transport: Transport, destination: SocketAddr, data: Vec<u8>) -> usize {
        match transport {
            Transport::Udp => self.outbox.push(&self.socket, destination, &data),
            Transport::Tcp => usize::from(!self.tcp.send(destination, data)),
        }
    }
}

pub(crate) struct Driver {
    links: Links,
    bound: SocketAddr,
    candidates: Vec<SocketAddr>,
    streams: LiveStreams,
    sessions: HashMap<String, Entry>,
    /// WHIP publishers, by session id.
    publishes: HashMap<String, Publish>,
    /// The session each client address last reached, so that a datagram is matched
    /// with one check instead of one per session (a viewer's RTCP and consent checks
    /// arrive several times a second; with hundreds of viewers the scan dominated).
    routes: HashMap<(Transport, SocketAddr), Route>,
    /// The ICE-TCP listener (taken by `run`) and how many connections it keeps open.
    tcp_listener: Option<(TcpListener, TcpLimits)>,
    /// Where the publishers' AAC threads send their frames (the receiver is `run`'s).
    aac_tx: mpsc::Sender<(String, media::Frame)>,
    aac_rx: Option<mpsc::Receiver<(String, media::Frame)>>,
    taps: HashMap<TapKey, Tap>,
    /// Sessions open (and reserved by handlers), for the cap.
    count: Arc<AtomicUsize>,
    /// Where WebRTC viewers are reported (every few seconds per playing session), as
    /// the origin's middleware reports HLS viewers.
    reports: Arc<dyn ViewerReports>,
}

impl Driver {
    pub(crate) fn new(
        socket: UdpSocket,
        tcp_listener: Option<(TcpListener, TcpLimits)>,
        bound: SocketAddr,
        candidates: Vec<SocketAddr>,
        streams: LiveStreams,
        count: Arc<AtomicUsize>,
        reports: Arc<dyn ViewerReports>,
    ) -> Self {
        let (aac_tx, aac_rx) = mpsc::channel(AAC_QUEUE);
        Self {
            links: Links {
                socket,
                outbox: Outbox::new(),
                tcp: TcpLinks::default(),
            },
            bound,
            candidates,
            streams,
            sessions: HashMap::new(),
            publishes: HashMap::new(),
            routes: HashMap::new(),
            tcp_listener,
            aac_tx,
            aac_rx: Some(aac_rx),
            taps: HashMap::new(),
            count,
            reports,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (media_tx, mut media_rx) = mpsc::channel::<(TapKey, TapItem)>(MEDIA_QUEUE);
        let Some(mut aac_rx) = self.aac_rx.take() else {
            return;
        };
        let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(TCP_QUEUE);
        if let Some((listener, limits)) = self.tcp_listener.take() {
            tcp::spawn_listener(listener, tcp_tx, limits);
        }
        let mut buf = vec![0u8; 2048];
        tokio::pin!(stop);
        loop {
            let next = self
                .sessions
                .values()
                .map(|e| e.timeout)
                .chain(self.publishes.values().map(|p| p.timeout))
                .min()
                // At least once a second: the analytics reports ride on this wake-up.
                .map_or(Instant::now() + Duration::from_secs(1), |t| {
                    t.min(Instant::now() + Duration::from_secs(1))
                });
            tokio::select! {
                () = &mut stop => break,
                received = self.links.socket.recv_from(&mut buf) => match received {
                    Ok((n, source)) => self.handle_datagram(Transport::Udp, source, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "WebRTC socket read failed"),
                },
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command, &media_tx),
                    None => break,
                },
                Some((key, item)) = media_rx.recv() => self.handle_media(&key, item),
                Some(event) = tcp_rx.recv() => {
                    if let Some((peer, data)) = self.links.tcp.handle(event) {
                        self.handle_datagram(Transport::Tcp, peer, &data);
                    }
                }
                Some((id, frame)) = aac_rx.recv() => {
                    if let Some(publish) = self.publishes.get(&id) {
                        publish.send_aac(frame);
                    }
                }
                () = tokio::time::sleep_until(next.into()) => {
                    let now = Instant::now();
                    // A session packetises what was written to it when its time moves
                    // on: each is driven (its datagrams sent) before the next one's
                    // time moves, so a keyframe's packets (~100 KB at 720p) are held
                    // by one session at a time, not by every viewer at once
                    // (heaptrack: 408 KB a viewer at the peak before). Only sessions
                    // whose time came are touched: the others have nothing to send.
                    for entry in self.sessions.values_mut() {
                        if entry.timeout <= now {
                            entry.session.handle_timeout(now);
                            entry.timeout = now + Duration::from_secs(1);
                            drive_viewer(&mut self.links, &mut self.taps, entry);
                        }
                    }
                    for publish in self.publishes.values_mut() {
                        publish.check_idle(now);
                        if publish.timeout <= now {
                            publish.session.handle_timeout(now);
                            publish.timeout = now + Duration::from_secs(1);
                        }
                    }
                    let ids: Vec<String> = self.publishes.keys().cloned().collect();
                    for id in ids {
                        self.drive_publish(&id);
                    }
                    self.report();
                }
            }
            // What the sessions queued on this turn goes out together.
            count_send_errors(self.links.outbox.flush(&self.links.socket));
            self.reap();
        }
        self.taps.clear();
        let open = self.sessions.len() + self.publishes.len();
        self.publishes.clear();
        self.count.fetch_sub(open, Ordering::AcqRel);
        metrics::gauge!("webrtc_sessions").set(0.0);
    }

    /// A datagram from `source` (on UDP, or a frame of its ICE-TCP connection).
    fn handle_datagram(&mut self, transport: Transport, source: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        // The TCP listener shares the UDP socket's address and port.
        let destination = local_destination(self.bound, &self.candidates, source);
        let from = (transport, source);
        // The session this address reached last, if it still takes the datagram.
        match self.routes.get(&from) {
            Some(Route::Viewer(id)) => {
                if let Some(entry) = self.sessions.get_mut(id)
                    && entry
                        .session
                        .accepts(now, transport, source, destination, data)
                {
                    entry
                        .session
                        .handle_datagram(now, transport, source, destination, data);
                    drive_viewer(&mut self.links, &mut self.taps, entry);
                    return;
                }
            }
            Some(Route::Publisher(id)) => {
                if let Some(publish) = self.publishes.get_mut(id)
                    && publish
                        .session
                        .accepts(now, transport, source, destination, data)
                {
                    publish
                        .session
                        .handle_datagram(now, transport, source, destination, data);
                    let id = id.clone();
                    self.drive_publish(&id);
                    return;
                }
            }
            None => {}
        }
        let id = self
            .sessions
            .iter()
            .find(|(_, e)| e.session.accepts(now, transport, source, destination, data))
            .map(|(id, _)| id.clone());
        let Some(id) = id else {
            let publisher = self
                .publishes
                .iter_mut()
                .find(|(_, p)| p.session.accepts(now, transport, source, destination, data));
            let Some((id, publish)) = publisher else {
                metrics::counter!("webrtc_datagrams_unmatched_total").increment(1);
                // A TCP connection carries one session's frames: one that is nobody's
                // (garbage, an unknown ufrag, a session gone) ends it, so it cannot
                // be kept open without a session.
                if transport == Transport::Tcp {
                    self.links.tcp.close(source);
                }
                return;
            };
            publish
                .session
                .handle_datagram(now, transport, source, destination, data);
            let id = id.clone();
            self.routes.insert(from, Route::Publisher(id.clone()));
            self.drive_publish(&id);
            return;
        };
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry
                .session
                .handle_datagram(now, transport, source, destination, data);
            drive_viewer(&mut self.links, &mut self.taps, entry);
        }
        self.routes.insert(from, Route::Viewer(id));
    }

    fn handle_command(&mut self, command: Command, media_tx: &mpsc::Sender<(TapKey, TapItem)>) {
        match command {
            Command::AddPublish { id, publish } => {
                self.publishes.insert(id.clone(), *publish);
                metrics::gauge!("whip_publishes").set(self.publishes.len() as f64);
                self.drive_publish(&id);
            }
            Command::Add {
                id,
                stream,
                rendition,
                session,
                client,
            } => {
                let key = (stream, rendition);
                if !self.taps.contains_key(&key) {
                    let live = self.streams.get_or_create(&key.0);
                    let handle = tap::spawn(live.clone(), key.clone(), media_tx.clone());
                    self.taps.insert(
                        key.clone(),
                        Tap {
                            _handle: handle,
                            live,
                            keyframe_requests: KeyframeRequests::new(KEYFRAME_REQUEST_INTERVAL),
                        },
                    );
                }
                let now = Instant::now();
                self.sessions.insert(
                    id.clone(),
                    Entry {
                        key,
                        session: *session,
                        timeout: now,
                        started: now,
                        client,
                        unreported: 0,
                        reported: now,
                    },
                );
                metrics::gauge!("webrtc_sessions").set(self.sessions.len() as f64);
                self.drive(&id);
            }
            Command::Remove { id, found } => {
                if let Some(entry) = self.sessions.get_mut(&id) {
                    entry.session.close();
                    let _ = found.send(true);
                } else if let Some(publish) = self.publishes.get_mut(&id) {
                    publish.session.close();
                    let _ = found.send(true);
                } else {
                    let _ = found.send(false);
                }
            }
            Command::Exists { id, found } => {
                let _ =
                    found.send(self.sessions.contains_key(&id) || self.publishes.contains_key(&id));
            }
        }
    }

    fn handle_media(&mut self, key: &TapKey, item: TapItem) {
        // The media's wall clock as an Instant: RTCP sender reports map RTP time to
        // it, so a viewer's estimated playout time reads as the latency from ingest.
        let wallclock = |at: &SystemTime| {
            let age = SystemTime::now().duration_since(*at).unwrap_or_default();
            Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
        };
        let at = match &item {
            TapItem::Video(_, at) | TapItem::Audio(_, at) => wallclock(at),
            TapItem::Gap => Instant::now(),
        };
        // Written and driven one session after the other; the packets queued (the
        // stream's payloads, by reference) go out at the session's next turn: moving
        // time after every write cost half as much CPU again (rivulet-bench webrtc).
        if matches!(item, TapItem::Gap)
            && let Some(tap) = self.taps.get_mut(key)
        {
            tap.request_keyframe(key);
        }
        let (links, taps) = (&mut self.links, &mut self.taps);
        for e in self.sessions.values_mut().filter(|e| &e.key == key) {
            match &item {
                TapItem::Video(unit, _) => e.session.write_video(at, unit),
                TapItem::Audio(packet, _) => e.session.write_audio(at, packet),
                TapItem::Gap => e.session.handle_gap(),
            }
            drive_viewer(links, taps, e);
        }
    }

    /// Sends what the session has to send and notes when it wants time next.
    fn drive(&mut self, id: &str) {
        if let Some(entry) = self.sessions.get_mut(id) {
            drive_viewer(&mut self.links, &mut self.taps, entry);
        }
    }

    /// Reports the sessions that play, every few seconds each.
    fn report(&mut self) {
        if !self.reports.is_enabled() {
            return;
        }
        let now = Instant::now();
        for (id, e) in &mut self.sessions {
            if now.saturating_duration_since(e.reported) < ANALYTICS_INTERVAL
                || !e.session.is_connected()
            {
                continue;
            }
            let interval = now.saturating_duration_since(e.reported);
            e.reported = now;
            self.reports.report(ViewerReport {
                stream: e.key.0.clone(),
                rendition: e.key.1.clone(),
                session: id.clone(),
                client: e.client,
                bytes: std::mem::take(&mut e.unreported),
                interval,
            });
        }
    }

    /// Drops ended sessions, and the taps nobody watches any more.
    fn reap(&mut self) {
        let publishing = self.publishes.len();
        self.publishes.retain(|id, p| {
            let alive = p.session.is_alive();
            if !alive {
                p.log_end(id);
            }
            alive
        });
        let ended = publishing - self.publishes.len();
        if ended > 0 {
            self.count.fetch_sub(ended, Ordering::AcqRel);
            metrics::gauge!("whip_publishes").set(self.publishes.len() as f64);
            self.forget_routes();
        }
        let before = self.sessions.len();
        self.sessions.retain(|id, e| {
            let alive = e.session.is_alive();
            if !alive {
                tracing::info!(stream = %e.key.0, session = %id, watched_s = e.started.elapsed().as_secs(), "WHEP session ended");
            }
            alive
        });
        let ended = before - self.sessions.len();
        if ended == 0 {
            return;
        }
        self.count.fetch_sub(ended, Ordering::AcqRel);
        metrics::gauge!("webrtc_sessions").set(self.sessions.len() as f64);
        let sessions = &self.sessions;
        self.taps
            .retain(|key, _| sessions.values().any(|e| &e.key == key));
        self.forget_routes();
    }

    /// Forgets the addresses of sessions that ended.
    fn forget_routes(&mut self) {
        let (sessions, publishes) = (&self.sessions, &self.publishes);
        self.routes.retain(|_, route| match route {
            Route::Viewer(id) => sessions.contains_key(id),
            Route::Publisher(id) => publishes.contains_key(id),
        });
    }
}

/// Sends what a viewer's session has to send and notes when it wants time next.
fn drive_viewer(links: &mut Links, taps: &mut HashMap<TapKey, Tap>, entry: &mut Entry) {
    let mut failed = 0;
    loop {
        match entry.session.poll_output() {
            SessionOutput::Transmit {
                transport,
                destination,
                data,
            } => {
                entry.unreported += data.len() as u64;
                failed += links.send(transport, destination, data);
            }
            SessionOutput::Timeout(t) => {
                entry.timeout = t;
                break;
            }
            SessionOutput::KeyframeRequest => {
                metrics::counter!("webrtc_keyframe_requests_total").increment(1);
                if let Some(tap) = taps.get_mut(&entry.key) {
                    tap.request_keyframe(&entry.key);
                }
            }
            SessionOutput::Closed => {
                entry.timeout = Instant::now();
                break;
            }
        }
    }
    count_send_errors(failed);
}

/// Datagrams a full socket buffer dropped (UDP: loss, which NACK and PLI repair).
fn count_send_errors(failed: usize) {
    if failed > 0 {
        metrics::counter!("webrtc_send_errors_total").increment(failed as u64);
    }
}

/// The local address a datagram from `source` reached, among the advertised
/// candidates: the socket's own address if it is one; else (a wildcard socket, or one
/// bound to a private address behind a 1:1 NAT whose public address is advertised)
/// the candidate of the sender's family, a loopback one for a loopback sender.
fn local_destination(
    bound: SocketAddr,
    candidates: &[SocketAddr],
    source: SocketAddr,
) -> SocketAddr {
    if candidates.contains(&bound) {
        return bound;
    }
    candidates
        .iter()
        .find(|c| {
            c.is_ipv4() == source.is_ipv4() && c.ip().is_loopback() == source.ip().is_loopback()
        })
        .or_else(|| candidates.iter().find(|c| c.is_ipv4() == source.is_ipv4()))
        .copied()
        .unwrap_or(bound)
}

#[cfg(test)]
mod tests {
    use super::local_destination;
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_datagram_reaches_the_candidate_str0m_knows() {
        let lan = addr("192.168.1.5:8189");
        let viewer = addr("198.51.100.9:50000");
        // Bound to the advertised address itself.
        assert_eq!(local_destination(lan, &[lan], viewer), lan);
        // A wildcard socket: the advertised address of the sender's kind.
        let wildcard = addr("0.0.0.0:8189");
        let local = addr("127.0.0.1:8189");
        assert_eq!(local_destination(wildcard, &[lan, local], viewer), lan);
        assert_eq!(
            local_destination(wildcard, &[lan, local], addr("127.0.0.1:4000")),
            local
        );
        // Bound to a private address behind a 1:1 NAT, the public one advertised: the
        // datagram came to the socket, but str0m only knows the public address.
        let public = addr("203.0.113.7:8189");
        assert_eq!(local_destination(lan, &[public], viewer), public);
        // No candidate of the sender's family: the socket's own address.
        assert_eq!(
            local_destination(lan, &[public], addr("[2001:db8::1]:5000")),
            lan
        );
    }
}
