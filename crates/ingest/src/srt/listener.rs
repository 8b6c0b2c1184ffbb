//! The SRT listener's I/O: one task owns the UDP socket and drives srt-protocol's
//! sans-IO state machines — the handshakes' `MultiplexListener` and each open
//! connection's `DuplexConnection` — and hands what SRT releases straight to the
//! publisher's demuxer ([`SrtPublish`]).
//!
//! Why not srt-tokio's own listener: it runs a task for the socket and one per
//! connection, and every datagram crosses two channels (socket task → connection task
//! → reader), waking a task, often another thread, at each hop; at ~570 datagrams a
//! second per 6 Mbit/s stream that cost more CPU than everything else the ingest does
//! (docs/benchmarks.md, `bench srt`). Here a datagram is read, parsed, fed to its
//! connection and demuxed in one go. The key check is the one awaited step; it runs
//! beside the loop and answers the handshake when done.
//!
//! Two ways of reading ([`Reading`]): with no connection open, the socket is
//! registered with the runtime and a datagram (a handshake) wakes the task. While
//! publishers stream, datagrams arrive one by one, ~570 a second each at 6 Mbit/s, and
//! a wake-up per datagram (the runtime's poller thread is woken for each, whether a
//! task waits or not) was most of the remaining cost; so the socket leaves the poller
//! and is read every [`POLL_INTERVAL`], in batches, and the connections' timers are
//! served on the same beat. A few milliseconds are nothing against SRT's own latency
//! window (120 ms by default), and the beat does not grow with the number of streams.
//! A read takes up to 32 datagrams in one system call ([`Datagrams`], `recvmmsg`):
//! with 2 streams, ~2,000 calls in 10 s where `recvfrom` took 15,000.
//!
//! Handshakes are bounded: at most [`MAX_HANDSHAKES`] addresses in progress, each
//! forgotten after [`HANDSHAKE_TIMEOUT`] (srt-tokio kept every address that ever sent
//! a packet until a later packet from it failed).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io::{self, Cursor, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use access::{PublishRequest, StreamKeys, redact};
use hub::Hub;
use srt_protocol::connection::{Connection as SrtConnection, DuplexConnection};
use srt_protocol::listener::{
    AccessControlRequest, AccessControlResponse, Action, Input, MultiplexListener, ResultOf,
    SessionId,
};
use srt_protocol::options::{KeySize, Passphrase, SocketOptions, Validation};
use srt_protocol::packet::{Acknowledgement, ControlTypes, Packet};
use srt_protocol::settings::ConnInitSettings;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::datagrams::{Datagrams, SLOTS};
use super::publish::SrtPublish;
use super::{Rejection, SRT_LIMITS, SrtConfig, stream_key};
use crate::escape::Escaped;
use crate::limits::{ConnectionLimiter, ConnectionPermit, LogThrottle};

/// Addresses with a handshake in progress, at most: packets from further new
/// addresses are ignored until some finish or time out.
const MAX_HANDSHAKES: usize = 4096;
/// A handshake not finished in this time is forgotten (libsrt callers retry theirs
/// every 250 ms and give up after 3 s by default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the ingest closes a connection, how long it still answers the caller (the
/// shutdown, late ACKs) before it is forgotten.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Datagrams read per wake-up at most, so that timers and key checks take turns.
const BATCH: usize = 256;
/// While connections are open, the socket is read this often (see the module docs)…
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// … or sooner, down to every millisecond, so that at the rate datagrams last came a
/// read finds about this many (one `recvmmsg`'s worth), and at once again after a full
/// batch: under load the receive buffer (~90 datagrams where `rmem_max` is Debian's
/// default) must not fill between reads.
const READ_TARGET: u32 = SLOTS as u32;
const POLL_SOONEST: Duration = Duration::from_millis(1);
/// The socket's receive buffer asked for (the kernel caps it at `net.core.rmem_max`,
/// 208 KiB by default on Debian: ~90 datagrams; 4 MiB holds a keyframe burst of many
/// streams between two reads).
const RECEIVE_BUFFER: usize = 4 << 20;
/// SRT holds each packet until its TSBPD time (sender time + latency) to give losses
/// a chance to be recovered. A demuxer has no use for the pacing itself, so what is
/// due within this margin goes out on this beat rather than waiting for the next.
const RELEASE_EARLY: Duration = POLL_INTERVAL;

/// Accepts SRT publishers on `socket` until `shutdown` completes.
pub async fn serve_srt(
    socket: UdpSocket,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: SrtConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let settings = connection_settings(&config)?;
    let local = socket.local_addr()?;
    let buffer = socket2::SockRef::from(&socket);
    if let Err(e) = buffer.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::warn!(error = %e, "could not enlarge the SRT socket's receive buffer");
    }
    tracing::debug!(
        bytes = buffer.recv_buffer_size().unwrap_or(0),
        "SRT socket receive buffer"
    );
    let mut listener = Listener {
        ipv6: local.is_ipv6(),
        multiplex: MultiplexListener::new(Instant::now(), local, settings),
        socket: Reading::Registered(socket),
        handshakes: HashMap::new(),
        open: HashMap::new(),
        timers: BTreeSet::new(),
        authorizations: JoinSet::new(),
        limiter: ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip),
        refusal_log: LogThrottle::new(Duration::from_secs(1)),
        flood_log: LogThrottle::new(Duration::from_secs(5)),
        send_buffer: Vec::with_capacity(1500),
        fed: Vec::new(),
        hub,
        keys,
        config,
    };
    listener.run(shutdown).await;
    Ok(())
}

/// srt-protocol's settings for every connection: latency and encryption.
fn connection_settings(config: &SrtConfig) -> io::Result<ConnInitSettings> {
    let invalid = |e: srt_protocol::options::OptionsError| {
        io::Error::new(ErrorKind::InvalidInput, format!("SRT settings: {e}"))
    };
    let mut options = SocketOptions::default();
    options.receiver.latency = config.latency;
    options.sender.peer_latency = config.latency;
    if let Some(passphrase) = &config.passphrase {
        options.encryption.key_size = KeySize::try_from(config.key_size).map_err(invalid)?;
        options.encryption.passphrase =
            Some(Passphrase::try_from(passphrase.clone()).map_err(invalid)?);
    }
    Ok(ConnInitSettings::from(
        options.try_validate().map_err(invalid)?.into_value(),
    ))
}

/// An address in the handshake: what the ingest has decided about it so far.
struct Handshake {
    since: Instant,
    /// Its slot in the connection caps, from the access request on.
    permit: Option<ConnectionPermit>,
    /// The stream its key names, once the key check passed.
    stream: Option<String>,
}

struct Open {
    connection: DuplexConnection,
    /// `None` once the publish has ended (closed by the ingest, or refused).
    publish: Option<SrtPublish>,
    /// When the ingest closed it, if it did.
    closing: Option<Instant>,
    /// Its entry in [`Listener::timers`].
    deadline: Instant,
    _permit: ConnectionPermit,
}

type Authorization = (SessionId, Result<String, (Rejection, Option<String>)>);

/// The socket, registered with the runtime's poller or read on a beat.
enum Reading {
    Registered(UdpSocket),
    Polled(std::net::UdpSocket),
    /// Only while switching.
    Switching,
}

impl Reading {
    /// Reads a batch of datagrams into `datagrams`; how many (`WouldBlock` when none).
    #[cfg(target_os = "linux")]
    fn receive(&self, datagrams: &mut Datagrams) -> io::Result<usize> {
        use std::os::fd::AsFd;
        match self {
            Reading::Registered(socket) => socket.try_io(tokio::io::Interest::READABLE, || {
                datagrams.read(socket.as_fd())
            }),
            Reading::Polled(socket) => datagrams.read(socket.as_fd()),
            Reading::Switching => Err(ErrorKind::WouldBlock.into()),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn receive(&self, datagrams: &mut Datagrams) -> io::Result<usize> {
        match self {
            Reading::Registered(socket) => datagrams.read_each(|b| socket.try_recv_from(b)),
            Reading::Polled(socket) => datagrams.read_each(|b| socket.recv_from(b)),
            Reading::Switching => Err(ErrorKind::WouldBlock.into()),
        }
    }

    fn try_send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Reading::Registered(socket) => socket.try_send_to(buf, to),
            Reading::Polled(socket) => socket.send_to(buf, to),
            Reading::Switching => Err(ErrorKind::WouldBlock.into()),
        }
    }

    /// Registered while nothing streams, polled while something does.
    fn switch(&mut self, streaming: bool) -> io::Result<()> {
        match (std::mem::replace(self, Reading::Switching), streaming) {
            (Reading::Registered(socket), true) => {
                // Leaves the poller; stays non-blocking.
                *self = Reading::Polled(socket.into_std()?);
            }
            (Reading::Polled(socket), false) => {
                *self = Reading::Registered(UdpSocket::from_std(socket)?);
            }
            (unchanged, _) => *self = unchanged,
        }
        Ok(())
    }
}

struct Listener {
    socket: Reading,
    ipv6: bool,
    multiplex: MultiplexListener,
    handshakes: HashMap<SocketAddr, Handshake>,
    open: HashMap<SocketAddr, Open>,
    /// Each open connection's next timer, earliest first.
    timers: BTreeSet<(Instant, SocketAddr)>,
    authorizations: JoinSet<Authorization>,
    limiter: ConnectionLimiter,
    refusal_log: LogThrottle,
    flood_log: LogThrottle,
    send_buffer: Vec<u8>,
    /// The open connections fed datagrams by the read in progress, to be serviced.
    fed: Vec<SocketAddr>,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: SrtConfig,
}

impl Listener {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut datagrams = Datagrams::new();
        let mut next_poll = tokio::time::Instant::now();
        let mut last_read = next_poll;
        loop {
            if let Err(e) = self.socket.switch(!self.open.is_empty()) {
                tracing::error!(error = %e, "the SRT socket failed; SRT ingest stops");
                break;
            }
            let wake = self.timers.first().map(|(at, _)| *at);
            match &self.socket {
                Reading::Registered(socket) => tokio::select! {
                    () = &mut shutdown => break,
                    ready = socket.readable() => {
                        if let Err(e) = ready {
                            tracing::error!(error = %e, "the SRT socket failed; SRT ingest stops");
                            break;
                        }
                        self.handle_readable(&mut datagrams);
                    }
                    Some(done) = self.authorizations.join_next(), if !self.authorizations.is_empty() => {
                        if let Ok(authorization) = done {
                            self.handle_authorization(Instant::now(), authorization);
                        }
                    }
                    () = sleep_until(wake), if wake.is_some() => self.handle_timers(Instant::now()),
                    _ = tick.tick() => self.handle_tick(Instant::now()),
                },
                Reading::Polled(_) | Reading::Switching => tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep_until(next_poll) => {
                        let read = self.handle_readable(&mut datagrams);
                        self.handle_timers(Instant::now());
                        let now = tokio::time::Instant::now();
                        next_poll = now + next_read_in(read, now - last_read);
                        last_read = now;
                    }
                    Some(done) = self.authorizations.join_next(), if !self.authorizations.is_empty() => {
                        if let Ok(authorization) = done {
                            self.handle_authorization(Instant::now(), authorization);
                        }
                    }
                    _ = tick.tick() => self.handle_tick(Instant::now()),
                },
            }
        }
        self.authorizations.abort_all();
        let now = Instant::now();
        for (_, open) in self.open.drain() {
            if let Some(publish) = open.publish {
                publish.finish(now);
            }
        }
    }

    /// Reads what the socket holds (up to [`BATCH`] datagrams); how many it read.
    /// Each connection is serviced once, after all its datagrams of the read are in
    /// (its releases, ACKs and timers), not after each datagram.
    fn handle_readable(&mut self, datagrams: &mut Datagrams) -> usize {
        let now = Instant::now();
        let read = self.read_datagrams(now, datagrams);
        let mut fed = std::mem::take(&mut self.fed);
        for peer in fed.drain(..) {
            self.service(now, peer);
        }
        self.fed = fed;
        read
    }

    /// Reads datagrams and feeds them to their connections, noting each fed in
    /// [`Listener::fed`]; handshake packets are handled at once.
    fn read_datagrams(&mut self, now: Instant, datagrams: &mut Datagrams) -> usize {
        let mut read = 0;
        while read < BATCH {
            let count = match self.socket.receive(datagrams) {
                Ok(0) => return read,
                Ok(count) => count,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return read,
                Err(e) => {
                    // Unconnected UDP reports no peer's errors here; this is the socket's.
                    tracing::warn!(error = %e, "SRT socket receive error");
                    return read;
                }
            };
            for index in 0..count {
                let parsed = datagrams.get(index).and_then(|(data, from)| {
                    Some((Packet::parse(&mut Cursor::new(data), self.ipv6).ok()?, from))
                });
                let Some((packet, from)) = parsed else {
                    metrics::counter!("srt_malformed_packets_total").increment(1);
                    continue;
                };
                if let Some(open) = self.open.get_mut(&from) {
                    open.connection.handle_packet_input(now, Ok((packet, from)));
                    if !self.fed.contains(&from) {
                        self.fed.push(from);
                    }
                } else {
                    self.handle_handshake_packet(now, packet, from);
                }
            }
            read += count;
            if count < SLOTS {
                // The socket is empty for now: no second call just to hear so.
                return read;
            }
        }
        BATCH
    }

    fn handle_handshake_packet(&mut self, now: Instant, packet: Packet, from: SocketAddr) {
        if !self.handshakes.contains_key(&from) {
            if self.handshakes.len() >= MAX_HANDSHAKES {
                metrics::counter!("srt_handshakes_ignored_total").increment(1);
                if let Some(suppressed) = self.flood_log.allow(now) {
                    tracing::warn!(%from, suppressed, limit = MAX_HANDSHAKES, "ignoring an SRT packet: too many handshakes in progress");
                }
                return;
            }
            self.handshakes.insert(
                from,
                Handshake {
                    since: now,
                    permit: None,
                    stream: None,
                },
            );
        }
        self.drive_multiplex(now, Input::Packet(Ok((packet, from))));
    }

    /// Feeds the handshake state machine and carries out what it asks until it waits.
    fn drive_multiplex(&mut self, now: Instant, mut input: Input) {
        loop {
            input = match self.multiplex.handle_input(now, input) {
                Action::SendPacket((packet, to)) => {
                    self.send(&packet, to);
                    Input::Success(ResultOf::SendPacket(to))
                }
                Action::RequestAccess(id, request) => self.handle_access_request(now, id, request),
                Action::RejectConnection(id, packet) => {
                    if let Some((packet, to)) = packet {
                        self.send(&packet, to);
                    }
                    self.handle_rejected(id);
                    Input::Success(ResultOf::RejectConnection(id))
                }
                Action::OpenConnection(id, opened) => {
                    let (packet, connection) = *opened;
                    if let Some((packet, to)) = packet {
                        self.send(&packet, to);
                    }
                    self.open_connection(now, id, connection);
                    Input::Success(ResultOf::OpenConnection(id))
                }
                Action::DelegatePacket(id, (packet, from)) => match self.open.get_mut(&id.0) {
                    Some(open) => {
                        open.connection.handle_packet_input(now, Ok((packet, from)));
                        self.service(now, id.0);
                        Input::Success(ResultOf::DelegatePacket(id))
                    }
                    None => Input::Failure(ResultOf::DelegatePacket(id)),
                },
                Action::DropConnection(id) => {
                    self.handshakes.remove(&id.0);
                    if let Some(open) = self.open.remove(&id.0) {
                        self.forget(now, id.0, open);
                    }
                    Input::Success(ResultOf::DropConnection(id))
                }
                Action::UpdateStatistics(_) => Input::Success(ResultOf::UpdateStatistics),
                Action::WaitForInput | Action::Close => return,
            }
        }
    }

    /// A caller finished its handshake with a stream id: the caps, then the key check
    /// (awaited beside the loop; its answer resumes the handshake).
    fn handle_access_request(
        &mut self,
        now: Instant,
        id: SessionId,
        request: AccessControlRequest,
    ) -> Input {
        metrics::counter!("srt_connections_total").increment(1);
        let peer = request.remote;
        let permit = match self.limiter.try_admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                let rejection = Rejection::Overload(refusal.label());
                if let Some(suppressed) = self.refusal_log.allow(now) {
                    tracing::warn!(%peer, suppressed, code = rejection.code(), reason = %refusal.describe(&SRT_LIMITS), "refusing an SRT connection");
                }
                metrics::counter!("srt_publish_rejected_total", "reason" => rejection.label())
                    .increment(1);
                return Input::AccessResponse(Some((
                    id,
                    AccessControlResponse::Rejected(rejection.reason()),
                )));
            }
        };
        let handshake = self.handshakes.entry(id.0).or_insert(Handshake {
            since: now,
            permit: None,
            stream: None,
        });
        handshake.permit = Some(permit);
        let stream_id = request.stream_id.as_ref().map(|id| id.to_string());
        let (keys, hub) = (self.keys.clone(), self.hub.clone());
        self.authorizations.spawn(async move {
            (
                id,
                authorize(&*keys, &hub, peer, stream_id.as_deref()).await,
            )
        });
        Input::Success(ResultOf::RequestAccess(id))
    }

    fn handle_authorization(&mut self, now: Instant, (id, outcome): Authorization) {
        let response = match outcome {
            Ok(stream) => match self.handshakes.get_mut(&id.0) {
                Some(handshake) => {
                    handshake.stream = Some(stream);
                    AccessControlResponse::Accepted(None)
                }
                // Timed out while its key was checked; the caller has given up.
                None => return,
            },
            Err((rejection, key)) => {
                tracing::warn!(
                    peer = %id.0,
                    key = %Escaped(key.as_deref().unwrap_or("-")),
                    code = rejection.code(),
                    reason = %Escaped(&rejection.to_string()),
                    "SRT publish refused at handshake"
                );
                metrics::counter!("srt_publish_rejected_total", "reason" => rejection.label())
                    .increment(1);
                AccessControlResponse::Rejected(rejection.reason())
            }
        };
        self.drive_multiplex(now, Input::AccessResponse(Some((id, response))));
    }

    /// The handshake state machine refused the caller: by our answer, or after the
    /// key check passed, because the encryption did not match.
    fn handle_rejected(&mut self, id: SessionId) {
        if let Some(Handshake {
            stream: Some(stream),
            ..
        }) = self.handshakes.remove(&id.0)
        {
            metrics::counter!("srt_publish_rejected_total", "reason" => "handshake").increment(1);
            tracing::warn!(peer = %id.0, %stream, "SRT handshake failed after the key check (passphrase mismatch? check --srt-passphrase and the caller's passphrase/pbkeylen)");
        }
    }

    fn open_connection(&mut self, now: Instant, id: SessionId, connection: SrtConnection) {
        let peer = id.0;
        let Some(Handshake {
            permit: Some(permit),
            stream: Some(stream),
            ..
        }) = self.handshakes.remove(&peer)
        else {
            // Only an accepted access request opens a connection.
            tracing::warn!(%peer, "SRT connection opened without a key check; closing it");
            return;
        };
        let latency = connection.settings.recv_tsbpd_latency;
        let handshake_rtt = connection.settings.rtt;
        let mut connection = DuplexConnection::new(connection);
        let (publish, closing) = match self.hub.publish(&stream, peer.to_string()) {
            Ok(publisher) => (
                Some(SrtPublish::new(
                    peer,
                    stream,
                    publisher,
                    &self.config,
                    latency,
                    handshake_rtt,
                    now,
                )),
                None,
            ),
            Err(e) => {
                // Another publisher won the race since the key check.
                tracing::warn!(%peer, %stream, error = %e, "SRT publish refused");
                metrics::counter!("srt_publish_rejected_total", "reason" => "busy").increment(1);
                connection.handle_data_input(now, None);
                (None, Some(now))
            }
        };
        self.open.insert(
            peer,
            Open {
                connection,
                publish,
                closing,
                deadline: now,
                _permit: permit,
            },
        );
        self.timers.insert((now, peer));
        self.service(now, peer);
    }

    /// After input or a timer: what the connection has for the demuxer and the wire,
    /// then its next timer; a closed connection is forgotten.
    fn service(&mut self, now: Instant, peer: SocketAddr) {
        let Some(open) = self.open.get_mut(&peer) else {
            return;
        };
        while let Some((_, payload)) = open.connection.next_data(now + RELEASE_EARLY) {
            if let Some(publish) = &mut open.publish
                && publish.handle_payload(now, &payload).is_err()
            {
                close(open, now);
            }
        }
        let next = open.connection.check_timers(now);
        while let Some((packet, to)) = open.connection.next_packet(now) {
            // Our ACKs carry the receiver's running RTT and free buffer: the figures
            // srt-protocol's statistics leave out.
            if let (Some(publish), Packet::Control(control)) = (&mut open.publish, &packet)
                && let ControlTypes::Ack(
                    Acknowledgement::Full(_, statistics, _) | Acknowledgement::Small(_, statistics),
                ) = &control.control_type
            {
                publish.handle_ack(statistics);
            }
            send(&self.socket, &mut self.send_buffer, &packet, to);
        }
        let done = !open.connection.is_open()
            || open
                .closing
                .is_some_and(|since| now.saturating_duration_since(since) >= CLOSE_GRACE);
        let old = open.deadline;
        self.timers.remove(&(old, peer));
        if done {
            if let Some(open) = self.open.remove(&peer) {
                self.forget(now, peer, open);
                // The handshake machine still has the address as open: free it, so
                // that the caller can connect again from the same port.
                self.drive_multiplex(
                    now,
                    Input::Success(ResultOf::DropConnection(SessionId(peer))),
                );
            }
            return;
        }
        // Never in the past (a busy loop) and never later than the grace period.
        let mut deadline = next.max(now + Duration::from_micros(500));
        if let Some(since) = open.closing {
            deadline = deadline.min(since + CLOSE_GRACE);
        }
        open.deadline = deadline;
        self.timers.insert((deadline, peer));
    }

    fn forget(&mut self, now: Instant, peer: SocketAddr, open: Open) {
        self.timers.remove(&(open.deadline, peer));
        if let Some(publish) = open.publish {
            publish.finish(now);
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        while let Some(&(at, peer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.service(now, peer);
        }
    }

    /// Once a second: statistics, the idle rule, handshakes that went nowhere.
    fn handle_tick(&mut self, now: Instant) {
        for open in self.open.values_mut() {
            open.connection.update_statistics(now);
            if let Some(publish) = &mut open.publish
                && publish
                    .handle_tick(now, open.connection.statistics())
                    .is_err()
            {
                close(open, now);
            }
        }
        let stale: Vec<SocketAddr> = self
            .handshakes
            .iter()
            .filter(|(_, h)| now.saturating_duration_since(h.since) >= HANDSHAKE_TIMEOUT)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in stale {
            self.handshakes.remove(&peer);
            self.drive_multiplex(
                now,
                Input::Success(ResultOf::DropConnection(SessionId(peer))),
            );
        }
        metrics::gauge!("srt_handshakes_in_progress").set(self.handshakes.len() as f64);
        // Closed connections whose timer is far off still go within the grace period.
        let closing: Vec<SocketAddr> = self
            .open
            .iter()
            .filter(|(_, o)| o.closing.is_some())
            .map(|(peer, _)| *peer)
            .collect();
        for peer in closing {
            self.service(now, peer);
        }
    }

    fn send(&mut self, packet: &Packet, to: SocketAddr) {
        send(&self.socket, &mut self.send_buffer, packet, to);
    }
}

/// The ingest ends the publish (its rules) and starts closing the connection.
fn close(open: &mut Open, now: Instant) {
    if let Some(publish) = open.publish.take() {
        publish.finish(now);
    }
    if open.closing.is_none() {
        open.connection.handle_data_input(now, None);
        open.closing = Some(now);
    }
}

/// Sends without waiting: a datagram the socket cannot take now is lost as on the
/// network, and SRT recovers it like any other.
fn send(socket: &Reading, buffer: &mut Vec<u8>, packet: &Packet, to: SocketAddr) {
    buffer.clear();
    packet.serialize(buffer);
    if let Err(e) = socket.try_send_to(buffer, to) {
        metrics::counter!("srt_send_errors_total").increment(1);
        tracing::debug!(%to, error = %e, "SRT datagram not sent");
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The stream the caller may publish, or why not (with the redacted key, if any).
async fn authorize(
    keys: &dyn StreamKeys,
    hub: &Hub,
    peer: SocketAddr,
    stream_id: Option<&str>,
) -> Result<String, (Rejection, Option<String>)> {
    let key = stream_key(stream_id).map_err(|r| (r, None))?;
    let redacted = redact(&key);
    let request = PublishRequest {
        // The SRT URL has no application; the key check treats it as `live`.
        app: "live".into(),
        stream_key: key,
        peer,
    };
    let name = keys
        .authorize(&request)
        .await
        .map_err(|e| (Rejection::Key(e.to_string()), Some(redacted.clone())))?;
    if hub.session(&name).is_some_and(|s| !s.is_ended()) {
        return Err((Rejection::Busy(name), Some(redacted)));
    }
    Ok(name)
}

/// When to read the socket again after a read of `read` datagrams that came in
/// `since_last`: the beat, or sooner as they come faster (about [`READ_TARGET`] a
/// read), at once after a full batch.
fn next_read_in(read: usize, since_last: Duration) -> Duration {
    if read >= BATCH {
        return Duration::ZERO;
    }
    match u32::try_from(read) {
        Ok(0) => POLL_INTERVAL,
        Ok(read) => (since_last * READ_TARGET / read).clamp(POLL_SOONEST, POLL_INTERVAL),
        Err(_) => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_read_sooner_as_datagrams_come_faster() {
        let ms = Duration::from_millis;
        // Two 6 Mbit/s streams: ~11 datagrams in 10 ms; the beat stays.
        assert_eq!(next_read_in(11, ms(10)), POLL_INTERVAL);
        assert_eq!(next_read_in(0, ms(10)), POLL_INTERVAL);
        // Twenty: ~114 in 10 ms, a read every ~2.8 ms keeps to one recvmmsg's worth.
        assert_eq!(next_read_in(114, ms(10)), ms(10) * 32 / 114);
        // A keyframe burst after a short wait: no sooner than a millisecond.
        assert_eq!(next_read_in(200, ms(1)), POLL_SOONEST);
        // A full batch: the socket holds more, read again at once.
        assert_eq!(next_read_in(BATCH, ms(10)), Duration::ZERO);
    }
}
