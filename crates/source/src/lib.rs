//! Rivulet's sources: where raw pictures and sound come from before the encoder.
//!
//! - [`TestPattern`]: moving colour bars, the stream name, the capture time and frame
//!   number as text, a flash with a beep every second (A/V sync), and a
//!   [`time_strip`] — the capture time in milliseconds as black/white blocks that
//!   survive H.264 and scaling down to 234p, so latency can be read from any picture
//!   a viewer sees. Pure computation: given a start time it produces the same frames
//!   every time, which keeps A/B pipelines and tests deterministic.
//! - [`FileSource`]: anything libav reads, decoded and converted to the same raw
//!   formats, optionally looped with continuous timestamps.
//!
//! Sources are not paced: they hand out frames as fast as they are asked, each with
//! its presentation time; the caller (the encoder's driver) releases them at real
//! time.

mod file;
mod pattern;
mod picture;
pub mod time_strip;

pub use file::{FileSource, FileSourceConfig};
pub use pattern::{TestPattern, TestPatternConfig, tone_sample};
pub use picture::{AudioFormat, AudioFrame, FrameRate, Picture, VideoFormat};

use media::MediaTime;

/// One raw frame from a source.
#[derive(Clone, Debug)]
pub enum SourceFrame {
    Video(VideoFrame),
    Audio(AudioFrame),
}

impl SourceFrame {
    /// Presentation time (90 kHz for video, the sample rate for audio).
    pub fn pts(&self) -> MediaTime {
        match self {
            SourceFrame::Video(v) => v.pts,
            SourceFrame::Audio(a) => a.pts,
        }
    }
}

/// A raw picture and when it was taken.
#[derive(Clone, Debug)]
pub struct VideoFrame {
    /// In [`media::VIDEO_TIMESCALE`].
    pub pts: MediaTime,
    /// Wall-clock capture time (ms since the Unix epoch) the frame stands for.
    pub capture_unix_ms: u64,
    pub picture: Picture,
}

/// Something that produces raw frames in presentation order. Not `Send`: libav
/// contexts stay on the thread that made them, so build a source where it runs.
pub trait Source {
    fn video_format(&self) -> Option<VideoFormat>;
    fn audio_format(&self) -> Option<AudioFormat>;
    /// The next frame, or `None` at the end. Never sleeps.
    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError>;
    /// How far through the source we are (position, total), when that is known.
    fn progress(&self) -> Option<(MediaTime, MediaTime)> {
        None
    }
}

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("{path} has neither video nor audio that libav can decode")]
    NoStreams { path: String },
    #[error("decoding {path} failed: {reason}")]
    Decode { path: String, reason: String },
    #[error("invalid source settings: {0}")]
    Config(String),
}
