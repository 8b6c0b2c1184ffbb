//! The taps: one thread per (stream, rendition) with viewers, following the origin's
//! stream and converting its media once for every viewer (H.264 to RTP payloads, AAC
//! to Opus). The AAC decode and Opus encode are blocking libav work, so a tap is a
//! thread of its own rather than a task on the runtime's workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use media::{CodecConfig, TrackKind};
use origin::TappedMedia;
use tokio::sync::{broadcast, mpsc};
use webrtc::{AudioPacket, VideoAccessUnit};

/// What a tap hands the driver.
pub(crate) enum TapItem {
    /// An access unit, with the wall clock its source frame arrived at ingest.
    Video(VideoAccessUnit, SystemTime),
    Audio(AudioPacket, SystemTime),
    /// Frames were lost: every viewer waits for the next keyframe.
    Gap,
}

/// (stream, rendition).
pub(crate) type TapKey = (String, String);

/// A running tap; dropping it stops the thread (at its next frame, or when the stream
/// ends).
pub(crate) struct TapHandle {
    stop: Arc<AtomicBool>,
}

impl Drop for TapHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Starts following `key`'s rendition of `live` on a thread of its own.
pub(crate) fn spawn(
    live: Arc<origin::LiveStream>,
    key: TapKey,
    out: mpsc::Sender<(TapKey, TapItem)>,
) -> TapHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = TapHandle { stop: stop.clone() };
    let name = format!("webrtc-tap {}", key.0);
    let spawned = std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&live, key, &out, &stop));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a WebRTC tap thread; its viewers get no media");
    }
    handle
}

/// Follows one rendition of a stream: its H.264 as RTP payloads and its AAC as Opus,
/// made once here for every viewer.
fn run(
    live: &origin::LiveStream,
    key: TapKey,
    out: &mpsc::Sender<(TapKey, TapItem)>,
    stop: &AtomicBool,
) {
    let (current, mut rx) = live.tap();
    let mut tap = TapState {
        key: key.clone(),
        avc: None,
        aac: None,
        opus: None,
        offset_ms: None,
        least_offset_ms: None,
        ready: Vec::new(),
    };
    for media in current {
        tap.handle(media);
    }
    tap.ready.clear();
    let mut gap = false;
    while !stop.load(Ordering::Acquire) {
        match rx.blocking_recv() {
            Ok(media) => tap.handle(media),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!("webrtc_frames_skipped_total").increment(missed);
                tap.ready.push(TapItem::Gap);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
        for item in tap.ready.drain(..) {
            if gap {
                match out.try_send((key.clone(), TapItem::Gap)) {
                    Ok(()) => gap = false,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => continue,
                }
            }
            match out.try_send((key.clone(), item)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("webrtc_frames_skipped_total").increment(1);
                    gap = true;
                }
            }
        }
    }
}

struct TapState {
    key: TapKey,
    avc: Option<media::AvcConfig>,
    aac: Option<media::AacConfig>,
    opus: Option<transcode::opus::AacToOpus>,
    /// Ingest wall clock minus media time, ms, as RTP time carries it: RTP time is the
    /// ingest wall clock of the frame, so a viewer reads the latency from the RTP
    /// timestamp (as PROGRAM-DATE-TIME serves LL-HLS), while pacing stays the encoder's.
    offset_ms: Option<i64>,
    /// The least offset seen (the frame that queued least on its way to ingest): taken
    /// at the next video keyframe, where a step in RTP time does no harm.
    least_offset_ms: Option<i64>,
    ready: Vec<TapItem>,
}

impl TapState {
    /// Notes a frame's arrival; a video keyframe may move the RTP clock earlier.
    fn observe(&mut self, frame: &media::Frame, at: SystemTime) {
        let at_ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        let pts_ms = frame.pts.ticks * 1000 / i64::from(frame.pts.timescale.get());
        let offset = at_ms - pts_ms;
        let least = self.least_offset_ms.map_or(offset, |l| l.min(offset));
        self.least_offset_ms = Some(least);
        let moved = self.offset_ms.is_none_or(|o| least + 10 < o);
        if frame.kind == TrackKind::Video && frame.keyframe && moved {
            self.offset_ms = Some(least);
        }
    }

    /// `pts` on the ingest wall clock, in its timescale.
    fn on_wall_clock(&self, pts: media::MediaTime) -> media::MediaTime {
        let offset = self.offset_ms.or(self.least_offset_ms).unwrap_or(0);
        let rate = i64::from(pts.timescale.get());
        media::MediaTime::new(pts.ticks + offset * rate / 1000, pts.timescale)
    }
}

impl TapState {
    fn handle(&mut self, media: TappedMedia) {
        match media {
            TappedMedia::Tracks { rendition, tracks } if *rendition == *self.key.1 => {
                // New tracks (a publisher's return) may start a new timeline.
                self.offset_ms = None;
                self.least_offset_ms = None;
                self.avc = match tracks.video.as_ref().map(|t| &t.codec) {
                    Some(CodecConfig::Avc(c)) => Some(c.clone()),
                    _ => None,
                };
                self.aac = match tracks.audio.as_ref().map(|t| &t.codec) {
                    Some(CodecConfig::Aac(c)) => Some(c.clone()),
                    _ => None,
                };
            }
            TappedMedia::Frame {
                rendition,
                frame,
                at,
            } if *rendition == *self.key.1 => {
                self.observe(&frame, at);
                match frame.kind {
                    TrackKind::Video => self.handle_video(&frame, at),
                    TrackKind::Audio => self.handle_audio(&frame, at),
                }
            }
            _ => {}
        }
    }

    fn handle_video(&mut self, frame: &media::Frame, at: SystemTime) {
        let Some(config) = self.avc.as_ref() else {
            return;
        };
        match webrtc::rtp_payloads(config, &frame.data, frame.keyframe) {
            Ok(payloads) => {
                let pts = self.on_wall_clock(frame.pts);
                self.ready.push(TapItem::Video(
                    VideoAccessUnit {
                        payloads,
                        pts,
                        keyframe: frame.keyframe,
                    },
                    at,
                ));
            }
            Err(e) => {
                tracing::warn!(stream = %self.key.0, error = %e, "H.264 frame not sent over WebRTC");
                self.ready.push(TapItem::Gap);
            }
        }
    }

    fn handle_audio(&mut self, frame: &media::Frame, at: SystemTime) {
        let Some(aac) = self.aac.as_ref() else {
            return;
        };
        if !self.opus.as_ref().is_some_and(|o| o.is_for(aac)) {
            self.opus = match transcode::opus::AacToOpus::new(aac) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::warn!(stream = %self.key.0, error = %e, "no audio for WebRTC viewers");
                    self.aac = None;
                    return;
                }
            };
        }
        let Some(opus) = self.opus.as_mut() else {
            return;
        };
        let mut packets = Vec::new();
        opus.transcode(frame, &mut packets);
        for p in packets {
            let pts = self.on_wall_clock(p.pts);
            self.ready.push(TapItem::Audio(
                AudioPacket {
                    data: Arc::from(&p.data[..]),
                    pts,
                },
                at,
            ));
        }
    }
}
