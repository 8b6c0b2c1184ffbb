//! Track descriptions: what a decoder needs before the first frame.

use std::num::NonZeroU32;

use crate::aac::AacConfig;
use crate::av1::Av1Config;
use crate::avc::AvcConfig;
use crate::frame::TrackKind;
use crate::hevc::HevcConfig;
use crate::mp3::Mp3Config;
use crate::opus::OpusConfig;

/// The decoder configuration of one track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecConfig {
    /// H.264, from an `AVCDecoderConfigurationRecord` (avcC).
    Avc(AvcConfig),
    /// HEVC, from an `HEVCDecoderConfigurationRecord` (hvcC).
    Hevc(HevcConfig),
    /// AV1, from an `AV1CodecConfigurationRecord` (av1C).
    Av1(Av1Config),
    /// AAC, from an `AudioSpecificConfig`.
    Aac(AacConfig),
    /// MP3, from its frame headers. Ingested for the transcoder, which makes AAC of
    /// it; not packaged as it is.
    Mp3(Mp3Config),
    /// Opus (from MPEG-TS). Like MP3, ingested for the transcoder, which makes AAC of
    /// it; not packaged as it is.
    Opus(OpusConfig),
}

impl CodecConfig {
    /// The RFC 6381 codec string for `CODECS=` in HLS (`avc1.64001f`, `hvc1.1.6.L93.B0`,
    /// `av01.0.04M.08`, `mp4a.40.2`).
    pub fn codec_string(&self) -> String {
        match self {
            CodecConfig::Avc(c) => c.codec_string(),
            CodecConfig::Hevc(c) => c.codec_string(),
            CodecConfig::Av1(c) => c.codec_string(),
            CodecConfig::Aac(c) => c.codec_string(),
            CodecConfig::Mp3(c) => c.codec_string(),
            CodecConfig::Opus(c) => c.codec_string(),
        }
    }
}

impl CodecConfig {
    /// The video codec, for a video configuration.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        match self {
            CodecConfig::Avc(_) => Some(VideoCodec::Avc),
            CodecConfig::Hevc(_) => Some(VideoCodec::Hevc),
            CodecConfig::Av1(_) => Some(VideoCodec::Av1),
            CodecConfig::Aac(_) | CodecConfig::Mp3(_) | CodecConfig::Opus(_) => None,
        }
    }

    /// The displayed picture size of a video configuration.
    pub fn video_size(&self) -> Option<(u32, u32)> {
        match self {
            CodecConfig::Avc(c) => Some((c.width, c.height)),
            CodecConfig::Hevc(c) => Some((c.width, c.height)),
            CodecConfig::Av1(c) => Some((c.width, c.height)),
            CodecConfig::Aac(_) | CodecConfig::Mp3(_) | CodecConfig::Opus(_) => None,
        }
    }

    /// The frame rate a video configuration states (the VUI timing of H.264's and
    /// HEVC's SPS), as (numerator, denominator).
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        match self {
            CodecConfig::Avc(c) => c.frame_rate,
            CodecConfig::Hevc(c) => c.frame_rate,
            CodecConfig::Av1(c) => c.frame_rate,
            _ => None,
        }
    }

    /// The decoder configuration record as carried in (Enhanced) RTMP and in the sample
    /// entry: avcC, hvcC, av1C, or the AudioSpecificConfig.
    pub fn record(&self) -> Option<&bytes::Bytes> {
        match self {
            CodecConfig::Avc(c) => Some(&c.record),
            CodecConfig::Hevc(c) => Some(&c.record),
            CodecConfig::Av1(c) => Some(&c.record),
            CodecConfig::Aac(c) => Some(&c.asc),
            CodecConfig::Mp3(_) | CodecConfig::Opus(_) => None,
        }
    }
}

/// The video codecs Rivulet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264.
    Avc,
    /// H.265.
    Hevc,
    Av1,
}

impl VideoCodec {
    /// The Enhanced RTMP / ISOBMFF FourCC.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            VideoCodec::Avc => *b"avc1",
            VideoCodec::Hevc => *b"hvc1",
            VideoCodec::Av1 => *b"av01",
        }
    }

    pub fn from_fourcc(fourcc: &[u8]) -> Option<VideoCodec> {
        match fourcc {
            b"avc1" => Some(VideoCodec::Avc),
            b"hvc1" => Some(VideoCodec::Hevc),
            b"av01" => Some(VideoCodec::Av1),
            _ => None,
        }
    }

    /// The name for people and logs.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Avc => "H.264",
            VideoCodec::Hevc => "HEVC",
            VideoCodec::Av1 => "AV1",
        }
    }
}

impl std::str::FromStr for VideoCodec {
    type Err = String;

    /// `h264`, `hevc`, `av1` (and the FourCCs).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "h264" | "avc" | "avc1" | "h.264" => Ok(VideoCodec::Avc),
            "hevc" | "h265" | "hvc1" | "h.265" => Ok(VideoCodec::Hevc),
            "av1" | "av01" => Ok(VideoCodec::Av1),
            other => Err(format!(
                "unknown video codec '{other}': use h264, hevc or av1"
            )),
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
