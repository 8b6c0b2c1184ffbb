//! The SRT listener: caller-mode publishers (`srt://HOST:9000?streamid=publish:KEY`)
//! sending MPEG-TS. `srt-protocol`'s sans-IO state machines run the SRT protocol
//! (handshake, ARQ, TSBPD, encryption), driven by [`listener`]; the [`ts::Demuxer`]
//! turns the payload into the same tracks and frames an RTMP publish gives the hub
//! ([`publish`]), so everything after the hub (metadata, ladder, A/B numbering, input
//! health) is shared.
//!
//! The stream key is checked during the handshake, before the connection exists: a
//! wrong key gets an SRT rejection code (see [`Rejection::code`]) and a log line.

mod datagrams;
mod listener;
mod publish;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use access::redact;
use srt_protocol::access::{RejectReason, ServerRejectReason};

use crate::escape::Escaped;
use crate::limits::{Bitrate, LimitNames};

pub use listener::serve_srt;

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
    /// induction answer to its conclusion request), µs.
    pub handshake_rtt_us: u64,
    /// The running round-trip estimate (each ACK → ACKACK exchange, smoothed as SRT
    /// does), µs, as our ACKs tell the caller; 10,000 until the first exchange.
    pub rtt_us: u64,
    /// Its variance, µs.
    pub rtt_variance_us: u64,
    /// Free space in the receive buffer, packets, as our last ACK said.
    pub receive_buffer_available: u64,
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
        // srt-protocol numbers the extended codes as they travel in the handshake
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
        metrics::gauge!("srt_rtt_ms", &labels).set(s.rtt_us as f64 / 1000.0);
        metrics::gauge!("srt_receive_buffer_available_packets", &labels)
            .set(s.receive_buffer_available as f64);
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
