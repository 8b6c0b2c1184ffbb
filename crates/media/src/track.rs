//! Track descriptions: what a decoder needs before the first frame.

use std::num::NonZeroU32;

use crate::aac::AacConfig;
use crate::avc::AvcConfig;
use crate::frame::TrackKind;
use crate::mp3::Mp3Config;

/// The decoder configuration of one track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecConfig {
    /// H.264, from an `AVCDecoderConfigurationRecord` (avcC).
    Avc(AvcConfig),
    /// AAC, from an `AudioSpecificConfig`.
    Aac(AacConfig),
    /// MP3, from its frame headers. Ingested for the transcoder, which makes AAC of
    /// it; not packaged as it is.
    Mp3(Mp3Config),
}

impl CodecConfig {
    /// The RFC 6381 codec string for `CODECS=` in HLS (`avc1.64001f`, `mp4a.40.2`).
    pub fn codec_string(&self) -> String {
        match self {
            CodecConfig::Avc(c) => c.codec_string(),
            CodecConfig::Aac(c) => c.codec_string(),
            CodecConfig::Mp3(c) => c.codec_string(),
        }
    }
}

/// One elementary stream of a live stream or rendition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    pub kind: TrackKind,
    /// Ticks per second of every `Frame::dts`/`pts` on this track:
    /// [`crate::VIDEO_TIMESCALE`] for video, the sample rate for audio.
    pub timescale: NonZeroU32,
    pub codec: CodecConfig,
}

/// The tracks of a stream or rendition. Replaced as a whole when a publisher
/// sends new sequence headers (a new resolution, a reconnect).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracks {
    pub video: Option<Track>,
    pub audio: Option<Track>,
}

impl Tracks {
    pub fn get(&self, kind: TrackKind) -> Option<&Track> {
        match kind {
            TrackKind::Video => self.video.as_ref(),
            TrackKind::Audio => self.audio.as_ref(),
        }
    }

    /// Tracks in a fixed order: video first, then audio.
    pub fn iter(&self) -> impl Iterator<Item = &Track> {
        self.video.iter().chain(self.audio.iter())
    }

    /// The `CODECS=` attribute value for HLS, e.g. `avc1.64001f,mp4a.40.2`.
    pub fn codecs(&self) -> String {
        self.iter()
            .map(|t| t.codec.codec_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}
