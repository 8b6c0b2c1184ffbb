//! The SRT listener: caller-mode publishers (`srt://HOST:9000?streamid=publish:KEY`)
//! sending MPEG-TS. `srt-tokio` runs the SRT protocol (handshake, ARQ, TSBPD,
//! encryption); the [`ts::Demuxer`] turns the payload into the same tracks and frames
//! an RTMP publish gives the hub, so everything after the hub (metadata, ladder,
//! A/B numbering, input health) is shared.
//!
//! The stream key is checked during the handshake, before the connection exists: a
//! wrong key gets an SRT rejection code (see [`Rejection::code`]) and a log line.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use access::{PublishRequest, StreamKeys, redact};
use futures::StreamExt;
use hub::{Hub, Publisher};
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};
use tokio::net::UdpSocket;
use ts::{DemuxEvent, Demuxer};

use crate::escape::Escaped;
use crate::limits::{
    Bitrate, BitrateLimiter, ConnectionLimiter, ConnectionPermit, LimitNames, LogThrottle,
};

/// SRT callers are capped by the RTMP listener's options (one ingest budget).
const SRT_LIMITS: LimitNames = LimitNames {
    connections: "SRT",
    ..crate::limits::RTMP_LIMITS
};

/// Settings of the SRT listener.
#[derive(Clone, Debug)]
pub struct SrtConfig {
    /// The receive latency (SRTO_RCVLATENCY): how long the receiver holds packets to
    /// recover losses. The larger of this and the caller's own setting applies.
    pub latency: Duration,
    /// Encryption (AES) with this passphrase (10 to 79 characters); callers must use
    /// the same. `None`: unencrypted.
    pub passphrase: Option<String>,
    /// AES key length in bytes with a passphrase: 16, 24 or 32.
    pub key_size: u16,
    /// Open connections at most, all peers together / from one address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// A publisher sending above this for longer than `bitrate_burst` is closed.
    pub max_bitrate: Option<Bitrate>,
    pub bitrate_burst: Duration,
    /// A publisher that sends no media for this long is closed (an encoder that
    /// keeps the SRT connection alive but sends nothing would hold its stream).
    pub idle_timeout: Duration,
    /// Connection statistics of the live SRT publishers, shared with the caller
    /// (the binary shows them in the stream's API representation).
    pub stats: SrtStatsRegistry,
}

impl Default for SrtConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(120),
            passphrase: None,
            key_size: 16,
            max_connections: 1024,
            max_connections_per_ip: 32,
            max_bitrate: Some(Bitrate(60_000_000)),
            bitrate_burst: Duration::from_secs(4),
            idle_timeout: Duration::from_secs(30),
            stats: SrtStatsRegistry::default(),
        }
    }
}

/// One SRT publisher's connection and demuxing statistics, updated every second. As
/// JSON (a stream's `live.ingest_stats`), tagged `"protocol": "srt"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "protocol", rename = "srt")]
pub struct SrtConnectionStats {
    pub peer: String,
    /// The negotiated receive latency, ms.
    pub latency_ms: u64,
    /// The round trip to the caller as the handshake measured it (from our
    /// induction answer to its conclusion request), µs. srt-tokio 0.4 keeps its
    /// running estimate to itself, so this is the one sample there is.
    pub handshake_rtt_us: u64,
    /// Data packets received (including retransmissions).
    pub packets_received: u64,
    /// Loss reports (NAKs) sent to the caller: each names packets found missing.
    pub loss_reports: u64,
    /// Retransmitted data packets received (losses recovered).
    pub packets_retransmitted: u64,
    /// Packets dropped because they came too late to play (unrecovered losses).
    pub packets_dropped: u64,
    /// Media held in the receive buffer, ms.
    pub receive_buffer_ms: u64,
    /// Bytes of data packets received.
    pub bytes_received: u64,
    /// MPEG-TS continuity-counter gaps (packets lost after SRT gave up on them).
    pub ts_continuity_gaps: u64,
    /// Streams in the TS the ingest does not take, e.g. `HEVC (H.265)`.
    pub unsupported_streams: Vec<String>,
}

/// The statistics of every live SRT publisher, by stream name. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SrtStatsRegistry {
    inner: Arc<Mutex<HashMap<String, SrtConnectionStats>>>,
}

impl SrtStatsRegistry {
    /// The statistics of `stream`'s SRT publisher, if one is live.
    pub fn get(&self, stream: &str) -> Option<SrtConnectionStats> {
        self.lock().get(stream).cloned()
    }

    fn set(&self, stream: &str, stats: SrtConnectionStats) {
        self.lock().insert(stream.to_string(), stats);
    }

    fn remove(&self, stream: &str) {
        self.lock().remove(stream);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SrtConnectionStats>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a caller is refused at the handshake; each maps to an SRT rejection code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "no usable stream id ({0}); set streamid=publish:STREAM_KEY (or #!::r=STREAM_KEY,m=publish)"
    )]
    BadStreamId(String),
    #[error("mode '{0}' is not served here: this listener only takes publishers (m=publish)")]
    BadMode(String),
    #[error("{0}")]
    Key(String),
    #[error("stream '{0}' already has a live publisher; stop the other encoder first")]
    Busy(String),
    #[error("too many connections ({0})")]
    Overload(&'static str),
}

impl Rejection {
    /// The SRT rejection code libsrt callers see (`SRT_REJX_*`: 1400 bad request,
    /// 1403 forbidden, 1405 bad mode, 1409 conflict, 1402 overload).
    pub fn code(&self) -> u32 {
        match self {
            Rejection::BadStreamId(_) => 1400,
            Rejection::BadMode(_) => 1405,
            Rejection::Key(_) => 1403,
            Rejection::Busy(_) => 1409,
            Rejection::Overload(_) => 1402,
        }
    }

    fn reason(&self) -> RejectReason {
        // srt-tokio numbers the extended codes as they travel in the handshake
        // (1000 above libsrt's `SRT_REJX_*`).
        RejectReason::Server(match self {
            Rejection::BadStreamId(_) => ServerRejectReason::BadRequest,
            Rejection::BadMode(_) => ServerRejectReason::BadMode,
            Rejection::Key(_) => ServerRejectReason::Forbidden,
            Rejection::Busy(_) => ServerRejectReason::Conflict,
            Rejection::Overload(_) => ServerRejectReason::Overload,
        })
    }

    fn label(&self) -> &'static str {
        match self {
            Rejection::BadStreamId(_) => "stream_id",
            Rejection::BadMode(_) => "mode",
            Rejection::Key(_) => "key",
            Rejection::Busy(_) => "busy",
            Rejection::Overload(_) => "overload",
        }
    }
}

/// The stream key in an SRT stream id: `publish:KEY`, or the access-control syntax
/// `#!::r=KEY,m=publish` (with `u=USER` and other keys allowed and ignored; a
/// missing `m` is taken as publish, the only thing this listener does).
pub fn stream_key(stream_id: Option<&str>) -> Result<String, Rejection> {
    let Some(id) = stream_id.filter(|id| !id.is_empty()) else {
        return Err(Rejection::BadStreamId("the caller sent none".into()));
    };
    if let Some(key) = id.strip_prefix("publish:") {
        if key.is_empty() {
            return Err(Rejection::BadStreamId("'publish:' without a key".into()));
        }
        return Ok(key.to_string());
    }
    if let Some(list) = id.strip_prefix("#!::") {
        let mut key = None;
        for entry in list.split(',') {
            let Some((name, value)) = entry.split_once('=') else {
                return Err(Rejection::BadStreamId(format!(
                    "'{}' in the access-control list is not KEY=VALUE",
                    Escaped(entry)
                )));
            };
            match name.trim() {
                "r" => key = Some(value.to_string()),
                "m" if value != "publish" => return Err(Rejection::BadMode(value.to_string())),
                _ => {}
            }
        }
        return match key.filter(|k| !k.is_empty()) {
            Some(key) => Ok(key),
            None => Err(Rejection::BadStreamId(
                "the access-control list has no r=STREAM_KEY".into(),
            )),
        };
    }
    Err(Rejection::BadStreamId(format!(
        "'{}' is neither publish:KEY nor #!::r=KEY,m=publish",
        Escaped(&redact(id))
    )))
}

/// Accepts SRT publishers on `socket` until `shutdown` completes.
pub async fn serve_srt(
    socket: UdpSocket,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: SrtConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = socket.local_addr()?;
    let mut builder = SrtListener::builder()
        .socket(socket)
        .latency(config.latency);
    if let Some(passphrase) = &config.passphrase {
        builder = builder.encryption(config.key_size, passphrase.clone());
    }
    let (mut listener, mut incoming) = builder.bind(local).await?;
    let limiter = ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip);
    let mut connections = tokio::task::JoinSet::new();
    let mut refusal_log = LogThrottle::new(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            request = incoming.incoming().next() => {
                let Some(request) = request else { break };
                metrics::counter!("srt_connections_total").increment(1);
                let peer = request.remote();
                let permit = match limiter.try_admit(peer.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        let rejection = Rejection::Overload(refusal.label());
                        if let Some(suppressed) = refusal_log.allow(Instant::now()) {
                            tracing::warn!(%peer, suppressed, code = rejection.code(), reason = %refusal.describe(&SRT_LIMITS), "refusing an SRT connection");
                        }
                        metrics::counter!("srt_publish_rejected_total", "reason" => rejection.label()).increment(1);
                        let _ = request.reject(rejection.reason()).await;
                        continue;
                    }
                };
                let connection = Connection {
                    peer,
                    hub: hub.clone(),
                    keys: keys.clone(),
                    config: config.clone(),
                    _permit: permit,
                };
                connections.spawn(connection.run(request));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    listener.close().await;
    Ok(())
}

struct Connection {
    peer: SocketAddr,
    hub: Hub,
    keys: Arc<dyn StreamKeys>,
    config: SrtConfig,
    /// Frees the connection's slot in the caps when the connection ends.
    _permit: ConnectionPermit,
}

impl Connection {
    async fn run(self, request: ConnectionRequest) {
        let peer = self.peer;
        let stream_id = request.stream_id().map(|id| id.as_str().to_string());
        let name = match self.authorize(stream_id.as_deref()).await {
            Ok(name) => name,
            Err((rejection, key)) => {
                tracing::warn!(
                    %peer,
                    key = %Escaped(key.as_deref().unwrap_or("-")),
                    code = rejection.code(),
                    reason = %Escaped(&rejection.to_string()),
                    "SRT publish refused at handshake"
                );
                metrics::counter!("srt_publish_rejected_total", "reason" => rejection.label())
                    .increment(1);
                let _ = request.reject(rejection.reason()).await;
                return;
            }
        };
        let socket = match request.accept(None).await {
            Ok(socket) => socket,
            Err(e) => {
                // The handshake did not finish: most often the caller's passphrase
                // (or its absence) does not match --srt-passphrase.
                metrics::counter!("srt_publish_rejected_total", "reason" => "handshake")
                    .increment(1);
                tracing::warn!(%peer, stream = %name, error = %e, "SRT handshake failed after the key check (passphrase mismatch? check --srt-passphrase and the caller's passphrase/pbkeylen)");
                return;
            }
        };
        let publisher = match self.hub.publish(&name, peer.to_string()) {
            Ok(publisher) => publisher,
            Err(e) => {
                // Another publisher won the race since the check above.
                tracing::warn!(%peer, stream = %name, error = %e, "SRT publish refused");
                metrics::counter!("srt_publish_rejected_total", "reason" => "busy").increment(1);
                return;
            }
        };
        tracing::info!(%peer, stream = %name, "publishing over SRT");
        metrics::gauge!("srt_active_publishers").increment(1.0);
        self.receive(socket, publisher, &name).await;
        metrics::gauge!("srt_active_publishers").decrement(1.0);
        self.config.stats.remove(&name);
        tracing::info!(%peer, stream = %name, "SRT publisher disconnected");
    }

    /// The stream the caller may publish, or why not (with the redacted key, if any).
    async fn authorize(
        &self,
        stream_id: Option<&str>,
    ) -> Result<String, (Rejection, Option<String>)> {
        let key = stream_key(stream_id).map_err(|r| (r, None))?;
        let redacted = redact(&key);
        let request = PublishRequest {
            // The SRT URL has no application; the key check treats it as `live`.
            app: "live".into(),
            stream_key: key,
            peer: self.peer,
        };
        let name = self
            .keys
            .authorize(&request)
            .await
            .map_err(|e| (Rejection::Key(e.to_string()), Some(redacted.clone())))?;
        if self.hub.session(&name).is_some_and(|s| !s.is_ended()) {
            return Err((Rejection::Busy(name), Some(redacted)));
        }
        Ok(name)
    }

    async fn receive(&self, mut socket: SrtSocket, publisher: Publisher, name: &str) {
        let peer = self.peer;
        let mut statistics = socket.statistics().clone();
        let latency_ms = socket.settings().recv_tsbpd_latency.as_millis() as u64;
        let handshake_rtt_us = u64::try_from(socket.settings().rtt.as_micros()).unwrap_or(u64::MAX);
        let mut demuxer = Demuxer::new();
        let mut stats = SrtConnectionStats {
            peer: peer.to_string(),
            latency_ms,
            handshake_rtt_us,
            ..Default::default()
        };
        let mut bitrate = self
            .config
            .max_bitrate
            .map(|cap| BitrateLimiter::new(cap, self.config.bitrate_burst, Instant::now()));
        let mut gap_log = LogThrottle::new(Duration::from_secs(5));
        let mut malformed_log = LogThrottle::new(Duration::from_secs(5));
        let mut counted = Totals::default();
        let idle = self.config.idle_timeout;
        // Only demuxed frames count as media: a caller sending bytes that make none
        // (null packets, garbage, a PAT alone) would otherwise hold its stream forever.
        let mut last_media = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(last_media + idle) => {
                    metrics::counter!("srt_sessions_timed_out_total").increment(1);
                    tracing::info!(%peer, stream = name, timeout_ms = idle.as_millis() as u64, "closing the SRT publisher: no media for too long (--rtmp-idle-timeout-ms)");
                    break;
                }
                item = socket.next() => match item {
                    Some(Ok((_, data))) => {
                        metrics::counter!("ingest_bytes_total").increment(data.len() as u64);
                        if let Some(limiter) = &mut bitrate
                            && let Err(exceeded) = limiter.handle_bytes(Instant::now(), data.len())
                        {
                            metrics::counter!("srt_publish_rejected_total", "reason" => "bitrate").increment(1);
                            tracing::warn!(%peer, stream = name, reason = %exceeded, "stopping the SRT publisher");
                            break;
                        }
                        demuxer.push(&data);
                    }
                    Some(Err(e)) => {
                        tracing::info!(%peer, stream = name, error = %e, "SRT connection failed");
                        break;
                    }
                    None => break,
                },
                Some(s) = statistics.next() => {
                    // srt-tokio 0.4 keeps no RTT, loss count or buffer space on the
                    // receiving side (docs/srt.md): these are the counters it keeps.
                    stats.packets_received = s.rx_data;
                    stats.loss_reports = s.tx_nak;
                    stats.packets_retransmitted = s.rx_retransmit_data;
                    stats.packets_dropped = s.rx_dropped_data;
                    stats.receive_buffer_ms = s.rx_acknowledged_time.as_millis() as u64;
                    stats.bytes_received = s.rx_bytes;
                    stats.ts_continuity_gaps = demuxer.stats().continuity_gaps;
                    counted.report(name, &stats);
                    self.config.stats.set(name, stats.clone());
                }
            }
            while let Some(event) = demuxer.poll_event() {
                if matches!(event, DemuxEvent::Frame(_)) {
                    last_media = tokio::time::Instant::now();
                }
                self.handle_event(
                    event,
                    &publisher,
                    name,
                    &mut stats,
                    &mut gap_log,
                    &mut malformed_log,
                );
            }
        }
        demuxer.finish();
        while let Some(event) = demuxer.poll_event() {
            self.handle_event(
                event,
                &publisher,
                name,
                &mut stats,
                &mut gap_log,
                &mut malformed_log,
            );
        }
        let counts = demuxer.stats();
        tracing::info!(
            %peer,
            stream = name,
            ts_packets = counts.packets,
            continuity_gaps = counts.continuity_gaps,
            dropped_frames = counts.dropped_frames,
            malformed = counts.malformed,
            srt_retransmitted = stats.packets_retransmitted,
            srt_dropped = stats.packets_dropped,
            "SRT publish ended"
        );
        let _ = socket.close_and_finish().await;
    }

    fn handle_event(
        &self,
        event: DemuxEvent,
        publisher: &Publisher,
        name: &str,
        stats: &mut SrtConnectionStats,
        gap_log: &mut LogThrottle,
        malformed_log: &mut LogThrottle,
    ) {
        let peer = self.peer;
        match event {
            DemuxEvent::Tracks(tracks) => {
                tracing::info!(%peer, stream = name, codecs = %tracks.codecs(), "SRT tracks");
                publisher.send_tracks(tracks);
            }
            DemuxEvent::Frame(frame) => publisher.send_frame(frame),
            DemuxEvent::Program(program) => {
                let streams: Vec<String> = program
                    .streams
                    .iter()
                    .map(|s| format!("{:#x}:{}", s.pid, ts::stream_name(s)))
                    .collect();
                tracing::info!(%peer, stream = name, version = program.version, streams = ?streams, "MPEG-TS program");
                stats.unsupported_streams.clear();
            }
            DemuxEvent::UnsupportedStream {
                pid,
                stream_type,
                name: codec,
            } => {
                metrics::counter!("srt_unsupported_streams_total").increment(1);
                tracing::warn!(%peer, stream = name, pid, stream_type = format_args!("{stream_type:#04x}"), codec = %codec, "MPEG-TS stream not supported, ignored: publish H.264 or HEVC video and AAC or Opus audio");
                stats.unsupported_streams.push(codec);
                self.config.stats.set(name, stats.clone());
            }
            DemuxEvent::ContinuityGap {
                pid,
                expected,
                found,
            } => {
                metrics::counter!("ts_continuity_gaps_total").increment(1);
                if let Some(suppressed) = gap_log.allow(Instant::now()) {
                    tracing::info!(%peer, stream = name, pid, expected, found, suppressed, "MPEG-TS packets lost (continuity gap); the damaged frame is dropped");
                }
            }
            DemuxEvent::Malformed { pid, reason } => {
                metrics::counter!("ts_malformed_total").increment(1);
                if let Some(suppressed) = malformed_log.allow(Instant::now()) {
                    tracing::warn!(%peer, stream = name, pid, reason = %Escaped(&reason), suppressed, "skipping malformed MPEG-TS data");
                }
            }
            // Other codecs' payloads (AC-3, AV1, …): nothing takes them yet.
            DemuxEvent::ElementaryStream(_) => {}
            _ => {}
        }
    }
}

/// What was already added to the Prometheus counters (SRT reports running totals).
#[derive(Default)]
struct Totals {
    lost: u64,
    retransmitted: u64,
    dropped: u64,
}

impl Totals {
    fn report(&mut self, stream: &str, s: &SrtConnectionStats) {
        let labels = [("stream", stream.to_string())];
        metrics::gauge!("srt_latency_ms", &labels).set(s.latency_ms as f64);
        metrics::gauge!("srt_handshake_rtt_ms", &labels).set(s.handshake_rtt_us as f64 / 1000.0);
        metrics::gauge!("srt_receive_buffer_ms", &labels).set(s.receive_buffer_ms as f64);
        metrics::counter!("srt_loss_reports_total", &labels)
            .increment(s.loss_reports.saturating_sub(self.lost));
        metrics::counter!("srt_packets_retransmitted_total", &labels)
            .increment(s.packets_retransmitted.saturating_sub(self.retransmitted));
        metrics::counter!("srt_packets_dropped_total", &labels)
            .increment(s.packets_dropped.saturating_sub(self.dropped));
        self.lost = self.lost.max(s.loss_reports);
        self.retransmitted = self.retransmitted.max(s.packets_retransmitted);
        self.dropped = self.dropped.max(s.packets_dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_name_the_key() {
        assert_eq!(stream_key(Some("publish:abc")), Ok("abc".into()));
        assert_eq!(stream_key(Some("#!::r=abc,m=publish")), Ok("abc".into()));
        assert_eq!(
            stream_key(Some("#!::u=alice,r=abc,m=publish")),
            Ok("abc".into())
        );
        assert_eq!(stream_key(Some("#!::m=publish,r=abc")), Ok("abc".into()));
        assert_eq!(stream_key(Some("#!::r=abc")), Ok("abc".into()));
    }

    #[test]
    fn unusable_stream_ids_are_refused_with_a_code() {
        for (id, code) in [
            (None, 1400),
            (Some(""), 1400),
            (Some("publish:"), 1400),
            (Some("live/abc"), 1400),
            (Some("#!::u=alice,m=publish"), 1400),
            (Some("#!::r"), 1400),
            (Some("#!::r=abc,m=request"), 1405),
        ] {
            let rejection = stream_key(id).expect_err("refused");
            assert_eq!(rejection.code(), code, "{id:?}: {rejection}");
        }
        // The message says what to send instead.
        let message = stream_key(Some("live/abc"))
            .expect_err("refused")
            .to_string();
        assert!(message.contains("publish:STREAM_KEY"), "{message}");
    }
}
