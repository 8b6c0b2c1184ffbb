//! The tokio RTMP server: the only code that touches the socket. One task per
//! connection drives a sans-IO [`ServerSession`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hub::{Hub, HubError, Publisher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::assemble::{Assembled, StreamAssembler};
use crate::escape::Escaped;
use crate::limits::{
    AcceptBackoff, Bitrate, BitrateLimiter, ConnectionLimiter, ConnectionPermit, LogThrottle,
};
use access::{PublishRequest, StreamKeys, redact};
use rtmp::{HANDSHAKE_PACKET_LEN, ServerSession, SessionConfig, SessionEvent};

/// Settings of the RTMP listener.
#[derive(Clone, Debug)]
pub struct RtmpConfig {
    /// The protocol's own limits: handshake, setup and idle timeouts, buffer budgets.
    pub session: SessionConfig,
    /// A write to the peer (acknowledgements, status) must finish within this; a peer
    /// that stops reading its socket is closed rather than holding the task forever.
    pub write_timeout: Duration,
    /// Open connections at most, all peers together.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_ip: usize,
    /// A publisher sending above this for longer than `bitrate_burst` is stopped.
    /// `None`: no cap.
    pub max_bitrate: Option<Bitrate>,
    /// How much above-cap sending the bitrate cap tolerates (keyframes, catch-up).
    pub bitrate_burst: Duration,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 32,
            max_bitrate: Some(Bitrate(60_000_000)),
            bitrate_burst: Duration::from_secs(4),
        }
    }
}

/// One listening socket of the RTMP server: plain `rtmp://`, or `rtmps://` (a TLS
/// handshake first, then RTMP inside it).
pub struct RtmpListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl RtmpListener {
    /// Plain RTMP.
    pub fn plain(tcp: TcpListener) -> Self {
        Self { tcp, tls: None }
    }

    /// RTMPS: each connection completes a TLS handshake with `tls` (within the RTMP
    /// handshake timeout) before RTMP starts.
    pub fn tls(tcp: TcpListener, tls: Arc<ServerConfig>) -> Self {
        Self {
            tcp,
            tls: Some(TlsAcceptor::from(tls)),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "rtmps" } else { "rtmp" }
    }
}

/// Accepts RTMP connections on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: RtmpConfig,
    shutdown: impl Future<Output = ()>,
) {
    serve_all(
        vec![RtmpListener::plain(listener)],
        hub,
        keys,
        config,
        shutdown,
    )
    .await;
}

/// Accepts connections on every listener (RTMP and RTMPS) until `shutdown`
/// completes. They share one set of connection caps: a publisher is a publisher,
/// whichever port it came in by.
pub async fn serve_all(
    listeners: Vec<RtmpListener>,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: RtmpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let limiter = ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(
            listener,
            hub.clone(),
            keys.clone(),
            config.clone(),
            limiter.clone(),
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
}

async fn accept_loop(
    listener: RtmpListener,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: RtmpConfig,
    limiter: ConnectionLimiter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let scheme = listener.scheme();
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    // A flood of refused connections gets one log line a second, not one each.
    let mut refusal_log = LogThrottle::new(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.tcp.accept() => match accepted {
                Ok((socket, peer)) => {
                    let failed = backoff.handle_success();
                    if failed > 0 {
                        tracing::info!(failed, scheme, "accepting RTMP connections again");
                    }
                    metrics::counter!("rtmp_connections_total").increment(1);
                    // Taken before the TLS handshake: a handshake in progress holds a
                    // slot like any connection, so a flood of them is capped too.
                    let permit = match limiter.try_admit(peer.ip()) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            metrics::counter!("rtmp_connections_refused_total", "reason" => refusal.label()).increment(1);
                            if let Some(suppressed) = refusal_log.allow(Instant::now()) {
                                tracing::warn!(%peer, suppressed, scheme, reason = %refusal, "refusing an RTMP connection");
                            }
                            // Before the handshake there is no way to say why: close.
                            drop(socket);
                            continue;
                        }
                    };
                    let (hub, keys, config) = (hub.clone(), keys.clone(), config.clone());
                    let tls = listener.tls.clone();
                    connections.spawn(async move {
                        let _ = socket.set_nodelay(true);
                        let connection = Connection::new(peer, hub, keys, config, permit);
                        match tls {
                            None => connection.run(socket).await,
                            Some(tls) => {
                                if let Some(stream) = tls_handshake(&tls, socket, peer, connection.handshake_timeout).await {
                                    connection.run(stream).await;
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE/ENFILE) and the like: the failed
                    // connection stays in the backlog, so retrying at once would spin.
                    // Back off (10 ms doubling to 1 s) and keep serving the others.
                    let wait = backoff.handle_error();
                    metrics::counter!("rtmp_accept_errors_total").increment(1);
                    if backoff.is_first_failure() {
                        tracing::warn!(error = %e, scheme, "cannot accept RTMP connections (out of file descriptors? raise `ulimit -n` or lower --rtmp-max-connections); backing off up to 1 s");
                    }
                    tokio::time::sleep(wait).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

/// The TLS handshake of an RTMPS connection, within `timeout`; `None` (logged) if it
/// fails, e.g. a plain `rtmp://` client on the RTMPS port.
async fn tls_handshake(
    tls: &TlsAcceptor,
    socket: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, tls.accept(socket)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            metrics::counter!("rtmps_handshakes_failed_total", "reason" => "error").increment(1);
            let not_tls = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
                .is_some_and(|e| matches!(e, tokio_rustls::rustls::Error::InvalidMessage(_)));
            if not_tls {
                tracing::info!(%peer, error = %Escaped(&e.to_string()), "RTMPS connection closed: TLS handshake failed, the client does not speak TLS (a plain rtmp:// client on the rtmps:// port?)");
            } else {
                tracing::info!(%peer, error = %Escaped(&e.to_string()), "RTMPS connection closed: TLS handshake failed");
            }
            None
        }
        Err(_) => {
            metrics::counter!("rtmps_handshakes_failed_total", "reason" => "timeout").increment(1);
            tracing::info!(%peer, timeout_ms = timeout.as_millis() as u64, "RTMPS connection closed: TLS handshake not complete in time (--rtmp-handshake-timeout-ms)");
            None
        }
    }
}

struct Connection {
    peer: SocketAddr,
    /// Frees the connection's slot in the caps when the connection ends.
    _permit: ConnectionPermit,
    write_timeout: Duration,
    /// RTMPS: the TLS handshake must complete within this too.
    handshake_timeout: Duration,
    max_bitrate: Option<Bitrate>,
    bitrate_burst: Duration,
    bitrate: Option<BitrateLimiter>,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    session: ServerSession,
    assembler: StreamAssembler,
    publisher: Option<Publisher>,
    /// The redacted key and stream name, once known (for logs).
    key: Option<String>,
    stream: Option<String>,
}

impl Connection {
    fn new(
        peer: SocketAddr,
        hub: Hub,
        keys: Arc<dyn StreamKeys>,
        config: RtmpConfig,
        permit: ConnectionPermit,
    ) -> Self {
        let mut random = [0u8; HANDSHAKE_PACKET_LEN];
        rand::fill(&mut random[..]);
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u32);
        let handshake_timeout = config.session.handshake_timeout;
        Self {
            session: ServerSession::new(config.session, Instant::now(), random, epoch_ms),
            peer,
            _permit: permit,
            write_timeout: config.write_timeout,
            handshake_timeout,
            max_bitrate: config.max_bitrate,
            bitrate_burst: config.bitrate_burst,
            bitrate: None,
            hub,
            keys,
            assembler: StreamAssembler::new(),
            publisher: None,
            key: None,
            stream: None,
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(mut self, mut socket: S) {
        // 16 KiB reads: a 60 Mbit/s publisher needs ~500 a second, and an idle
        // connection costs a quarter of what 64 KiB did.
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::new();
        let mut writable = true;
        loop {
            if self.session.poll_transmit(&mut out) {
                if !self.write(&mut socket, &out).await {
                    writable = false;
                    break;
                }
                out.clear();
            }
            if self.session.is_closing() {
                break;
            }
            let deadline = self
                .session
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                read = socket.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        metrics::counter!("ingest_bytes_total").increment(n as u64);
                        let now = Instant::now();
                        if let Err(e) = self.session.handle_input(now, &buf[..n]) {
                            metrics::counter!("rtmp_sessions_failed_total").increment(1);
                            tracing::warn!(peer = %self.peer, key = %Escaped(self.key.as_deref().unwrap_or("-")), error = %Escaped(&e.to_string()), "RTMP session failed; closing the connection");
                        }
                        self.count_bitrate(now, n);
                    }
                },
                () = sleep_until(deadline) => {
                    self.session.handle_timeout(Instant::now());
                    if let Some(e) = self.session.error() {
                        metrics::counter!("rtmp_sessions_timed_out_total").increment(1);
                        tracing::info!(peer = %self.peer, key = %Escaped(self.key.as_deref().unwrap_or("-")), error = %e, "closing RTMP connection");
                    }
                }
            }
            if !self.handle_events().await {
                break;
            }
        }
        // Flush a final status (a refusal) before closing, unless writing is what
        // failed: a peer that stopped reading gets no second write timeout.
        out.clear();
        if writable {
            if self.session.poll_transmit(&mut out) {
                let _ = self.write(&mut socket, &out).await;
            }
            // Bounded too: the FIN waits behind unsent bytes.
            let _ = tokio::time::timeout(self.write_timeout, socket.shutdown()).await;
        }
        if let Some(stream) = &self.stream
            && self.publisher.take().is_some()
        {
            metrics::gauge!("rtmp_active_publishers").decrement(1.0);
            tracing::info!(peer = %self.peer, stream, "publisher disconnected");
        }
    }

    /// Writes `out` within the write timeout; `false` if the connection is done.
    async fn write<S: AsyncWrite + Unpin>(&self, socket: &mut S, out: &[u8]) -> bool {
        match tokio::time::timeout(self.write_timeout, socket.write_all(out)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "write failed");
                false
            }
            Err(_) => {
                metrics::counter!("rtmp_sessions_timed_out_total").increment(1);
                tracing::warn!(
                    peer = %self.peer,
                    key = %Escaped(self.key.as_deref().unwrap_or("-")),
                    stream = self.stream.as_deref().unwrap_or("-"),
                    timeout_ms = self.write_timeout.as_millis() as u64,
                    "closing RTMP connection: the peer stopped reading (--rtmp-write-timeout-ms)"
                );
                false
            }
        }
    }

    /// Counts a publisher's bytes against the bitrate cap; stops it above.
    fn count_bitrate(&mut self, now: Instant, bytes: usize) {
        if self.publisher.is_none() {
            return;
        }
        let Some(cap) = self.max_bitrate else {
            return;
        };
        let burst = self.bitrate_burst;
        let limiter = self
            .bitrate
            .get_or_insert_with(|| BitrateLimiter::new(cap, burst, now));
        if let Err(exceeded) = limiter.handle_bytes(now, bytes) {
            metrics::counter!("rtmp_publish_rejected_total", "reason" => "bitrate").increment(1);
            tracing::warn!(peer = %self.peer, stream = self.stream.as_deref().unwrap_or("-"), reason = %exceeded, "stopping the publisher");
            self.session
                .stop_publish("NetStream.Publish.Rejected", &exceeded.to_string());
            self.max_bitrate = None;
        }
    }

    /// A publisher that declares its bitrate is held to a few times that (see
    /// [`BitrateLimiter::handle_declared`]).
    fn handle_declared_bitrate(&mut self, meta: &media::amf0::Amf0Value) {
        let (Some(cap), Some(_)) = (self.max_bitrate, &self.publisher) else {
            return;
        };
        let facts = media::flv::StreamMetadata::from_amf(meta);
        let Some(declared) =
            Bitrate::declared(facts.video_data_rate_kbps, facts.audio_data_rate_kbps)
        else {
            return;
        };
        let now = Instant::now();
        let burst = self.bitrate_burst;
        self.bitrate
            .get_or_insert_with(|| BitrateLimiter::new(cap, burst, now))
            .handle_declared(cap, declared, now);
    }

    /// Handles what the session reported; `false` ends the connection.
    async fn handle_events(&mut self) -> bool {
        let mut produced = Vec::new();
        while let Some(event) = self.session.poll_event() {
            let result = match event {
                SessionEvent::Connected { app, .. } => {
                    tracing::debug!(peer = %self.peer, app = %Escaped(&app), "RTMP connect");
                    Ok(())
                }
                SessionEvent::PublishRequested {
                    app, stream_key, ..
                } => {
                    self.authorize(app, stream_key).await;
                    Ok(())
                }
                SessionEvent::Metadata(meta) => {
                    self.assembler.handle_metadata(&meta);
                    self.handle_declared_bitrate(&meta);
                    Ok(())
                }
                SessionEvent::Video { timestamp_ms, body } => {
                    self.assembler
                        .handle_video(timestamp_ms, body, &mut produced)
                }
                SessionEvent::Audio { timestamp_ms, body } => {
                    self.assembler
                        .handle_audio(timestamp_ms, body, &mut produced)
                }
                SessionEvent::Unpublished => {
                    if self.publisher.take().is_some() {
                        metrics::gauge!("rtmp_active_publishers").decrement(1.0);
                        tracing::info!(peer = %self.peer, stream = self.stream.as_deref().unwrap_or("-"), "publisher stopped");
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                let reason = e.to_string();
                tracing::warn!(peer = %self.peer, key = %Escaped(self.key.as_deref().unwrap_or("-")), error = %Escaped(&reason), "refusing the publisher's media; closing");
                metrics::counter!("rtmp_publish_rejected_total", "reason" => "codec").increment(1);
                self.session
                    .stop_publish("NetStream.Publish.Rejected", &reason);
                return true;
            }
            while let Some((kind, jump)) = self.assembler.poll_jump() {
                metrics::counter!("rtmp_timestamp_jumps_total").increment(1);
                tracing::warn!(
                    peer = %self.peer,
                    stream = self.stream.as_deref().unwrap_or("-"),
                    track = ?kind,
                    from_ms = jump.from_ms,
                    to_ms = jump.to_ms,
                    step_ms = jump.step_ms,
                    "timestamp jump beyond the timeline's bound (10 s forward, 1 s back); re-anchored so media time continues"
                );
            }
            if let Some(publisher) = &self.publisher {
                for item in produced.drain(..) {
                    match item {
                        Assembled::Tracks(tracks) => publisher.send_tracks(tracks),
                        Assembled::Frame(frame) => publisher.send_frame(frame),
                    }
                }
            }
            produced.clear();
        }
        true
    }

    async fn authorize(&mut self, app: String, stream_key: String) {
        let redacted = redact(&stream_key);
        self.key = Some(redacted.clone());
        let request = PublishRequest {
            app,
            stream_key,
            peer: self.peer,
        };
        let name = match self.keys.authorize(&request).await {
            Ok(name) => name,
            Err(rejection) => {
                tracing::warn!(peer = %self.peer, key = %Escaped(&redacted), reason = %Escaped(&rejection.to_string()), "publish refused");
                metrics::counter!("rtmp_publish_rejected_total", "reason" => "key").increment(1);
                self.session
                    .reject_publish("NetStream.Publish.BadName", &rejection.to_string());
                return;
            }
        };
        match self.hub.publish(&name, self.peer.to_string()) {
            Ok(publisher) => {
                tracing::info!(peer = %self.peer, stream = %name, "publishing");
                metrics::gauge!("rtmp_active_publishers").increment(1.0);
                self.session.accept_publish();
                self.publisher = Some(publisher);
                self.stream = Some(name);
            }
            Err(HubError::AlreadyPublishing(_)) | Err(_) => {
                tracing::warn!(peer = %self.peer, key = %Escaped(&redacted), stream = %name, "publish refused: the stream already has a live publisher");
                metrics::counter!("rtmp_publish_rejected_total", "reason" => "busy").increment(1);
                self.session.reject_publish(
                    "NetStream.Publish.BadName",
                    &format!(
                        "stream '{name}' already has a live publisher; stop the other encoder first"
                    ),
                );
            }
        }
    }
}

/// Completes once the stop flag is set (the watch guard never lives across an await).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
