//! WHIP publishers in the driver: each is a [`WhipSession`] on the shared socket whose
//! media goes to the hub as a publish, like an RTMP or SRT one (same keys, ladder,
//! LL-HLS, recording, restreaming). Opus goes through a thread of its own that makes
//! AAC of it (blocking libav work) and hands the frames back to the driver, which
//! sends them once the tracks are announced.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use media::{AvcConfig, CodecConfig, Frame, Track, TrackKind, Tracks};
use tokio::sync::mpsc;
use webrtc::{SessionOutput, WhipEvent, WhipSession};

use ingest::BitrateLimiter;

use super::Driver;
use crate::WhipIngest;

/// Opus packets queued for the AAC thread (about 1.3 s); more are dropped (a gap the
/// encoder fills with silence), never waited for.
const OPUS_QUEUE: usize = 64;

/// One publisher, as the driver keeps it.
pub(crate) struct Publish {
    pub(crate) stream: String,
    pub(crate) session: WhipSession,
    /// The hub's publish session; dropping it ends the stream's publish.
    publisher: hub::Publisher,
    pub(crate) timeout: Instant,
    started: Instant,
    /// When media last came (the input-health timeout runs from here).
    last_media: Instant,
    idle_timeout: Duration,
    /// The bitrate cap over the media it sends (RTP payloads).
    bitrate: Option<BitrateLimiter>,
    video: Option<AvcConfig>,
    /// Whether the tracks went to the hub (frames before them are dropped).
    announced: bool,
    /// The Opus → AAC thread's queue, once audio came.
    opus: Option<std_mpsc::SyncSender<Frame>>,
}

impl Publish {
    pub(crate) fn new(
        stream: String,
        session: WhipSession,
        publisher: hub::Publisher,
        ingest: &WhipIngest,
        now: Instant,
    ) -> Self {
        Self {
            stream,
            session,
            publisher,
            timeout: now,
            started: now,
            last_media: now,
            idle_timeout: ingest.idle_timeout,
            bitrate: (ingest.max_bitrate)
                .map(|cap| BitrateLimiter::new(cap, ingest.bitrate_burst, now)),
            video: None,
            announced: false,
            opus: None,
        }
    }

    /// Ends the publish if the peer sent no media for the input-health timeout.
    pub(crate) fn check_idle(&mut self, now: Instant) {
        if self.session.is_alive()
            && now.saturating_duration_since(self.last_media) > self.idle_timeout
        {
            metrics::counter!("whip_publishes_timed_out_total").increment(1);
            tracing::info!(stream = %self.stream, timeout_ms = self.idle_timeout.as_millis() as u64, "closing the WHIP publisher: no media for too long");
            self.session.close();
        }
    }

    pub(crate) fn log_end(&self, id: &str) {
        tracing::info!(stream = %self.stream, session = %id, published_s = self.started.elapsed().as_secs(), "WHIP publish ended");
    }

    /// The tracks of this publish: the H.264 of the stream, AAC made of its Opus.
    fn tracks(&self, video: &AvcConfig) -> Tracks {
        Tracks {
            video: Some(Track {
                kind: TrackKind::Video,
                timescale: media::VIDEO_TIMESCALE,
                codec: CodecConfig::Avc(video.clone()),
            }),
            // What `transcode::ToAac` makes of WebRTC's Opus (48 kHz, stereo).
            audio: self
                .session
                .has_audio()
                .then(|| transcode::aac_track_for(&webrtc_opus()))
                .and_then(|track| {
                    track
                        .inspect_err(|e| tracing::warn!(stream = %self.stream, error = %e, "WHIP audio cannot be made AAC; the stream has no sound"))
                        .ok()
                }),
        }
    }

    fn handle_event(&mut self, id: &str, event: WhipEvent, aac_tx: &mpsc::Sender<(String, Frame)>) {
        let now = Instant::now();
        self.last_media = now;
        if let (
            WhipEvent::Video(Frame { data, .. }) | WhipEvent::Opus(Frame { data, .. }),
            Some(limiter),
        ) = (&event, &mut self.bitrate)
            && let Err(exceeded) = limiter.handle_bytes(now, data.len())
        {
            metrics::counter!("whip_publish_rejected_total", "reason" => "bitrate").increment(1);
            tracing::warn!(stream = %self.stream, reason = %exceeded, "closing the WHIP publisher");
            self.bitrate = None;
            self.session.close();
            return;
        }
        match event {
            WhipEvent::VideoConfig(config) => {
                tracing::info!(stream = %self.stream, codec = %config.codec_string(), width = config.width, height = config.height, "WHIP video");
                let tracks = self.tracks(&config);
                self.publisher.send_tracks(tracks);
                self.video = Some(config);
                self.announced = true;
            }
            WhipEvent::Video(frame) => {
                if self.announced {
                    metrics::counter!("ingest_bytes_total").increment(frame.data.len() as u64);
                    self.publisher.send_frame(frame);
                }
            }
            WhipEvent::Opus(frame) => {
                if self.opus.is_none() {
                    self.opus = spawn_aac(id.to_owned(), self.stream.clone(), aac_tx.clone());
                }
                if let Some(tx) = &self.opus
                    && tx.try_send(frame).is_err()
                {
                    metrics::counter!("whip_audio_dropped_total").increment(1);
                }
            }
        }
    }

    /// An AAC frame made of this publisher's Opus.
    pub(crate) fn send_aac(&self, frame: Frame) {
        if self.announced && self.session.has_audio() {
            self.publisher.send_frame(frame);
        }
    }
}

/// Opus as WebRTC signals it: 48 kHz stereo (RFC 7587), whatever the publisher sends.
fn webrtc_opus() -> CodecConfig {
    CodecConfig::Opus(media::OpusConfig { channels: 2 })
}

/// Starts the Opus → AAC thread of publish `id`: it ends when the publish drops its
/// sender.
fn spawn_aac(
    id: String,
    stream: String,
    out: mpsc::Sender<(String, Frame)>,
) -> Option<std_mpsc::SyncSender<Frame>> {
    let (tx, rx) = std_mpsc::sync_channel::<Frame>(OPUS_QUEUE);
    let name = format!("whip-aac {stream}");
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let mut aac = match transcode::ToAac::new(&webrtc_opus()) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "WHIP audio cannot be made AAC; the stream has no sound");
                return;
            }
        };
        while let Ok(packet) = rx.recv() {
            let (frames, _silent) = aac.transcode(&packet, &stream);
            for frame in frames {
                match out.try_send((id.clone(), frame)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics::counter!("whip_audio_dropped_total").increment(1);
                    }
                }
            }
        }
    });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the WHIP audio thread; the stream has no sound");
            None
        }
    }
}

impl Driver {
    /// Sends what publisher `id` has to send, passes its media on, and notes when it
    /// wants time next.
    pub(crate) fn drive_publish(&mut self, id: &str) {
        let Some(publish) = self.publishes.get_mut(id) else {
            return;
        };
        loop {
            match publish.session.poll_output() {
                SessionOutput::Transmit {
                    transport,
                    destination,
                    data,
                } => super::count_send_errors(self.links.send(transport, destination, data)),
                SessionOutput::Timeout(t) => {
                    publish.timeout = t;
                    break;
                }
                SessionOutput::KeyframeRequest => {}
                SessionOutput::Closed => {
                    publish.timeout = Instant::now();
                    break;
                }
            }
        }
        while let Some(event) = publish.session.poll_event() {
            publish.handle_event(id, event, &self.aac_tx);
        }
    }
}
