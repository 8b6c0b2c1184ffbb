//! Rivulet's encoder: raw frames from a [`source`] to H.264 + AAC, and the RTMP
//! publisher that sends the same packets, with the same timestamps, to one or more
//! ingest servers.
//!
//! - [`Encoder`]: libx264 (behind [`VideoEncode`], the seam for hardware encoders) and
//!   AAC. Keyframes are forced where `floor(pts / keyframe interval)` changes, so
//!   every segment boundary the packager derives from timestamps starts with an IDR,
//!   and two pipelines fed by this encoder number their segments alike.
//! - [`publish`]: the tokio side: one connection per URL, each driving a sans-IO
//!   [`rtmp::ClientSession`]; a URL that drops is reconnected with backoff while the
//!   others go on.
//! - [`session`]: what `rivulet publish` runs: a source, the live encoder and the
//!   publisher together until a duration, the file's end or a stop, with a status line.

mod audio;
mod live;
pub mod publish;
pub mod session;
mod status;
mod video;

use std::num::NonZeroU32;
use std::time::Duration;

use media::{CodecConfig, Frame, Track, TrackKind, Tracks, VIDEO_TIMESCALE};
use source::SourceFrame;

pub use audio::{AacEncoder, AudioEncoderConfig};
pub use live::{LiveEncoder, LiveError, LiveStats};
pub use video::{EncodedPicture, LibavVideoEncoder, VideoEncode, VideoEncoderConfig, X264Encoder};

/// Why encoding failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("cannot set up the encoder: {0}")]
    Setup(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// What the encoder produces, in order: tracks before the frames that need them.
#[derive(Clone, Debug, PartialEq)]
pub enum Encoded {
    Tracks(Tracks),
    Frame(Frame),
}

/// Settings of an [`Encoder`].
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub video: Option<VideoEncoderConfig>,
    pub audio: Option<AudioEncoderConfig>,
    /// An IDR wherever `floor(pts / keyframe_interval)` changes: the packager's segment
    /// target (or a divisor of it).
    pub keyframe_interval: Duration,
}

/// Video and audio encoders with aligned keyframes.
pub struct Encoder {
    video: Option<Box<dyn VideoEncode>>,
    audio: Option<AacEncoder>,
    keyframe_ticks: i64,
    last_interval: Option<i64>,
    announced: Option<Tracks>,
    /// Frames encoded before the tracks were known (audio before the first IDR).
    waiting: Vec<Frame>,
    pictures: Vec<EncodedPicture>,
    sounds: Vec<Frame>,
}

impl Encoder {
    pub fn new(config: EncoderConfig) -> Result<Self, EncodeError> {
        let video = match config.video {
            Some(mut v) => {
                if v.codec == media::VideoCodec::Av1 && v.gop.is_none() {
                    // SVT-AV1 cannot be forced (see `VideoEncoderConfig::gop`): the
                    // keyframe interval as a whole number of pictures instead.
                    let frames = config.keyframe_interval.as_secs_f64() * v.frame_rate.as_f64();
                    v.gop = Some(frames.round().max(1.0) as u32);
                }
                Some(Box::new(X264Encoder::new(v)?) as Box<dyn VideoEncode>)
            }
            None => None,
        };
        Self::with_video_encoder(video, config.audio, config.keyframe_interval)
    }

    /// With any [`VideoEncode`] implementation.
    pub fn with_video_encoder(
        video: Option<Box<dyn VideoEncode>>,
        audio: Option<AudioEncoderConfig>,
        keyframe_interval: Duration,
    ) -> Result<Self, EncodeError> {
        let audio = audio.map(AacEncoder::new).transpose()?;
        if video.is_none() && audio.is_none() {
            return Err(EncodeError::Setup(
                "nothing to encode: no video and no audio".into(),
            ));
        }
        let keyframe_ticks =
            (keyframe_interval.as_micros() as i64 * i64::from(VIDEO_TIMESCALE.get()) / 1_000_000)
                .max(1);
        Ok(Self {
            video,
            audio,
            keyframe_ticks,
            last_interval: None,
            announced: None,
            waiting: Vec::new(),
            pictures: Vec::new(),
            sounds: Vec::new(),
        })
    }

    /// Whether a picture at `pts` (90 kHz) will be an IDR.
    pub fn is_keyframe_time(&self, pts: i64) -> bool {
        Some(pts.div_euclid(self.keyframe_ticks)) != self.last_interval
    }

    /// Encodes one raw frame; appends what came out.
    pub fn encode(
        &mut self,
        frame: &SourceFrame,
        out: &mut Vec<Encoded>,
    ) -> Result<(), EncodeError> {
        match frame {
            SourceFrame::Video(v) => {
                let Some(video) = self.video.as_mut() else {
                    return Ok(());
                };
                let pts = v.pts.ticks;
                let interval = pts.div_euclid(self.keyframe_ticks);
                let keyframe = Some(interval) != self.last_interval;
                self.last_interval = Some(interval);
                video.encode(&v.picture, pts, keyframe, &mut self.pictures)?;
            }
            SourceFrame::Audio(a) => {
                if let Some(audio) = self.audio.as_mut() {
                    audio.encode(a, &mut self.sounds)?;
                }
            }
        }
        self.emit(out);
        Ok(())
    }

    /// Drains the encoders at the end of the stream.
    pub fn finish(&mut self, out: &mut Vec<Encoded>) -> Result<(), EncodeError> {
        if let Some(v) = self.video.as_mut() {
            v.flush(&mut self.pictures)?;
        }
        if let Some(a) = self.audio.as_mut() {
            a.flush(&mut self.sounds)?;
        }
        self.emit(out);
        Ok(())
    }

    /// The tracks as they are now (once known).
    pub fn tracks(&self) -> Option<&Tracks> {
        self.announced.as_ref()
    }

    fn current_tracks(&self) -> Option<Tracks> {
        let video = match &self.video {
            Some(v) => Some(Track {
                kind: TrackKind::Video,
                timescale: VIDEO_TIMESCALE,
                codec: v.config()?.clone(),
            }),
            None => None,
        };
        let audio = self.audio.as_ref().and_then(|a| {
            Some(Track {
                kind: TrackKind::Audio,
                timescale: NonZeroU32::new(a.config().sample_rate)?,
                codec: CodecConfig::Aac(a.config().clone()),
            })
        });
        Some(Tracks { video, audio })
    }

    fn emit(&mut self, out: &mut Vec<Encoded>) {
        let pictures: Vec<Frame> = self.pictures.drain(..).map(|p| p.frame).collect();
        let had_pictures = !pictures.is_empty();
        self.waiting.extend(pictures);
        self.waiting.append(&mut self.sounds);
        let Some(tracks) = self.current_tracks() else {
            // Bounded: the first IDR comes with the first picture.
            return;
        };
        if self.announced.as_ref() != Some(&tracks) {
            out.push(Encoded::Tracks(tracks.clone()));
            self.announced = Some(tracks);
        }
        if had_pictures || !self.waiting.is_empty() {
            // Decode order per track is kept; across tracks, by time.
            self.waiting.sort_by_key(|f| f.dts);
            out.extend(self.waiting.drain(..).map(Encoded::Frame));
        }
    }
}
