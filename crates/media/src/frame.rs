//! Coded frames as they move through the pipeline.

use bytes::Bytes;

use crate::time::MediaTime;

/// Which elementary stream a frame or track belongs to. A Rivulet stream (and each
/// rendition of it) has at most one video and one audio track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One coded access unit.
///
/// H.264 and HEVC video `data` is length-prefixed: NAL units each preceded by a
/// big-endian length of the configuration's `nal_length_size` bytes, exactly as carried
/// in FLV and in an fMP4 `mdat`. AV1 `data` is a temporal unit of OBUs (each with its
/// size field) without the temporal delimiter, as in an `av01` sample.
/// Audio `data` is one raw AAC access unit (no ADTS header).
///
/// A frame has no duration; it follows from the next frame's `dts` (as in retina).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: TrackKind,
    /// Decode time, in the track's timescale.
    pub dts: MediaTime,
    /// Presentation time, in the track's timescale; `pts >= dts` for well-formed input.
    pub pts: MediaTime,
    /// A random-access point: an IDR picture for video; every AAC frame for audio.
    pub keyframe: bool,
    pub data: Bytes,
}

impl Frame {
    /// `pts - dts` in the track's timescale (the fMP4 composition offset).
    pub fn composition_offset(&self) -> i64 {
        self.pts.ticks - self.dts.ticks
    }
}
