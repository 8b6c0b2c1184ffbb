//! Sans-IO media types and formats for Rivulet.
//!
//! This crate is the bottom of the pipeline: every other crate speaks its types.
//! It has no sockets, no clocks and no async runtime; every function takes bytes
//! (and, where needed, the current time) and returns values.
//!
//! - [`MediaTime`], [`Timeline`]: integer media time in a stated timescale, and the
//!   unwrapping of 32-bit RTMP timestamps.
//! - [`Frame`], [`Track`], [`Tracks`], [`CodecConfig`]: what flows from ingest to the packager.
//! - [`avc`], [`hevc`], [`av1`], [`aac`]: decoder configurations (avcC, hvcC, av1C,
//!   AudioSpecificConfig) and their RFC 6381 codec strings.
//! - [`amf0`], [`flv`]: the RTMP payload formats.
//! - [`cmaf`]: the fMP4 writer (init segments, fragments).
//! - [`live_path`]: the play URL layout (`/live/STREAM/RENDITION/seg-N.m4s`, …) and the
//!   stream-name rule, parsed and formatted by [`LivePath`] for every crate that serves or
//!   reads those URLs.

pub mod aac;
pub mod amf0;
pub mod av1;
pub mod avc;
mod bits;
pub mod cmaf;
pub mod flv;
mod frame;
pub mod hevc;
pub mod live_path;
pub mod mp3;
pub mod opus;
mod time;
mod track;

pub use aac::AacConfig;
pub use av1::Av1Config;
pub use avc::AvcConfig;
pub use frame::{Frame, TrackKind};
pub use hevc::HevcConfig;
pub use live_path::{LiveObject, LivePath, LivePathError, MediaObject};
pub use mp3::Mp3Config;
pub use opus::OpusConfig;
pub use time::{
    JumpPolicy, MILLISECONDS, MediaTime, Rounding, Timeline, TimestampJump, VIDEO_TIMESCALE,
    rescale_ticks,
};
pub use track::{CodecConfig, Track, Tracks, VideoCodec};
