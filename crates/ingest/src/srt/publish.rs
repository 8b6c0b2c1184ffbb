//! One SRT publisher once its connection is open: the payload SRT releases goes
//! through the MPEG-TS demuxer into the hub; the ingest rules (bitrate cap, idle
//! timeout) and the connection statistics are kept here. No I/O: the listener calls
//! in with what arrived and the time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hub::Publisher;
use srt_protocol::packet::AckStatistics;
use srt_protocol::statistics::SocketStatistics;
use ts::{DemuxEvent, Demuxer};

use super::{SrtConfig, SrtConnectionStats, SrtStatsRegistry, Totals};
use crate::escape::Escaped;
use crate::limits::{BitrateLimiter, LogThrottle};

/// Why the ingest ends a publish itself.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// Above `--rtmp-max-bitrate-kbps` for longer than the burst.
    Bitrate,
    /// No frame demuxed for `--rtmp-idle-timeout-ms`.
    Idle,
}

pub(super) struct SrtPublish {
    peer: SocketAddr,
    name: String,
    publisher: Publisher,
    demuxer: Demuxer,
    stats: SrtConnectionStats,
    registry: SrtStatsRegistry,
    counted: Totals,
    bitrate: Option<BitrateLimiter>,
    idle_timeout: Duration,
    /// Only demuxed frames count as media: a caller sending bytes that make none
    /// (null packets, garbage, a PAT alone) would otherwise hold its stream forever.
    last_media: Instant,
    gap_log: LogThrottle,
    malformed_log: LogThrottle,
    /// `ingest_bytes_total`, looked up once (by name, it was a registry lookup per
    /// SRT message).
    bytes_counter: metrics::Counter,
}

impl SrtPublish {
    pub(super) fn new(
        peer: SocketAddr,
        name: String,
        publisher: Publisher,
        config: &SrtConfig,
        latency: Duration,
        handshake_rtt: Duration,
        now: Instant,
    ) -> Self {
        tracing::info!(%peer, stream = %name, "publishing over SRT");
        metrics::gauge!("srt_active_publishers").increment(1.0);
        Self {
            peer,
            stats: SrtConnectionStats {
                peer: peer.to_string(),
                latency_ms: latency.as_millis() as u64,
                handshake_rtt_us: u64::try_from(handshake_rtt.as_micros()).unwrap_or(u64::MAX),
                ..Default::default()
            },
            name,
            publisher,
            demuxer: Demuxer::new(),
            registry: config.stats.clone(),
            counted: Totals::default(),
            bitrate: config
                .max_bitrate
                .map(|cap| BitrateLimiter::new(cap, config.bitrate_burst, now)),
            idle_timeout: config.idle_timeout,
            last_media: now,
            gap_log: LogThrottle::new(Duration::from_secs(5)),
            malformed_log: LogThrottle::new(Duration::from_secs(5)),
            bytes_counter: metrics::counter!("ingest_bytes_total"),
        }
    }

    /// Payload released by SRT (one message: up to 7 TS packets from ffmpeg).
    pub(super) fn handle_payload(&mut self, now: Instant, payload: &[u8]) -> Result<(), Stop> {
        self.bytes_counter.increment(payload.len() as u64);
        if let Some(limiter) = &mut self.bitrate
            && let Err(exceeded) = limiter.handle_bytes(now, payload.len())
        {
            metrics::counter!("srt_publish_rejected_total", "reason" => "bitrate").increment(1);
            tracing::warn!(peer = %self.peer, stream = %self.name, reason = %exceeded, "stopping the SRT publisher");
            return Err(Stop::Bitrate);
        }
        self.demuxer.push(payload);
        self.drain_events(now);
        Ok(())
    }

    /// An ACK the receiver sends: its running round-trip estimate and free buffer.
    pub(super) fn handle_ack(&mut self, ack: &AckStatistics) {
        let micros =
            |span: srt_protocol::packet::TimeSpan| u64::try_from(span.as_micros()).unwrap_or(0);
        self.stats.rtt_us = micros(ack.rtt.mean());
        self.stats.rtt_variance_us = micros(ack.rtt.variance());
        self.stats.receive_buffer_available = u64::from(ack.buffer_available);
    }

    /// Once a second: the idle rule and the statistics.
    pub(super) fn handle_tick(
        &mut self,
        now: Instant,
        statistics: &SocketStatistics,
    ) -> Result<(), Stop> {
        // The round trip and free buffer come from our ACKs (`handle_ack`).
        let stats = &mut self.stats;
        stats.packets_received = statistics.rx_data;
        stats.loss_reports = statistics.tx_nak;
        stats.packets_retransmitted = statistics.rx_retransmit_data;
        stats.packets_dropped = statistics.rx_dropped_data;
        stats.receive_buffer_ms = statistics.rx_acknowledged_time.as_millis() as u64;
        stats.bytes_received = statistics.rx_bytes;
        stats.ts_continuity_gaps = self.demuxer.stats().continuity_gaps;
        self.counted.report(&self.name, stats);
        self.registry.set(&self.name, stats.clone());
        if now.saturating_duration_since(self.last_media) >= self.idle_timeout {
            metrics::counter!("srt_sessions_timed_out_total").increment(1);
            tracing::info!(peer = %self.peer, stream = %self.name, timeout_ms = self.idle_timeout.as_millis() as u64, "closing the SRT publisher: no media for too long (--rtmp-idle-timeout-ms)");
            return Err(Stop::Idle);
        }
        Ok(())
    }

    /// The connection ended: what the demuxer still holds goes out, then the stream
    /// ends (the publisher is dropped).
    pub(super) fn finish(mut self, now: Instant) {
        self.demuxer.finish();
        self.drain_events(now);
        let counts = self.demuxer.stats();
        tracing::info!(
            peer = %self.peer,
            stream = %self.name,
            ts_packets = counts.packets,
            continuity_gaps = counts.continuity_gaps,
            dropped_frames = counts.dropped_frames,
            malformed = counts.malformed,
            srt_retransmitted = self.stats.packets_retransmitted,
            srt_dropped = self.stats.packets_dropped,
            "SRT publish ended"
        );
        metrics::gauge!("srt_active_publishers").decrement(1.0);
        self.registry.remove(&self.name);
        tracing::info!(peer = %self.peer, stream = %self.name, "SRT publisher disconnected");
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(event) = self.demuxer.poll_event() {
            self.handle_event(now, event);
        }
    }

    fn handle_event(&mut self, now: Instant, event: DemuxEvent) {
        let (peer, name) = (self.peer, self.name.as_str());
        match event {
            DemuxEvent::Tracks(tracks) => {
                tracing::info!(%peer, stream = name, codecs = %tracks.codecs(), "SRT tracks");
                self.publisher.send_tracks(tracks);
            }
            DemuxEvent::Frame(frame) => {
                self.last_media = now;
                self.publisher.send_frame(frame);
            }
            DemuxEvent::Program(program) => {
                let streams: Vec<String> = program
                    .streams
                    .iter()
                    .map(|s| format!("{:#x}:{}", s.pid, ts::stream_name(s)))
                    .collect();
                tracing::info!(%peer, stream = name, version = program.version, streams = ?streams, "MPEG-TS program");
                self.stats.unsupported_streams.clear();
            }
            DemuxEvent::UnsupportedStream {
                pid,
                stream_type,
                name: codec,
            } => {
                metrics::counter!("srt_unsupported_streams_total").increment(1);
                tracing::warn!(%peer, stream = name, pid, stream_type = format_args!("{stream_type:#04x}"), codec = %codec, "MPEG-TS stream not supported, ignored: publish H.264, HEVC or AV1 video and AAC or Opus audio");
                self.stats.unsupported_streams.push(codec);
                self.registry.set(name, self.stats.clone());
            }
            DemuxEvent::ContinuityGap {
                pid,
                expected,
                found,
            } => {
                metrics::counter!("ts_continuity_gaps_total").increment(1);
                if let Some(suppressed) = self.gap_log.allow(now) {
                    tracing::info!(%peer, stream = name, pid, expected, found, suppressed, "MPEG-TS packets lost (continuity gap); the damaged frame is dropped");
                }
            }
            DemuxEvent::Malformed { pid, reason } => {
                metrics::counter!("ts_malformed_total").increment(1);
                if let Some(suppressed) = self.malformed_log.allow(now) {
                    tracing::warn!(%peer, stream = name, pid, reason = %Escaped(&reason), suppressed, "skipping malformed MPEG-TS data");
                }
            }
            // Other codecs' payloads (AC-3, E-AC-3, …): nothing takes them yet.
            DemuxEvent::ElementaryStream(_) => {}
            _ => {}
        }
    }
}
