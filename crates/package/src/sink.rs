//! What the packager's caller hands on to a recorder: complete segments, as the
//! packager made them, with the facts a VOD playlist needs.

use bytes::Bytes;

use crate::playlist::VariantInfo;

/// A complete segment of one rendition, with its init segment.
#[derive(Clone, Debug)]
pub struct CompletedSegment {
    pub msn: u64,
    /// Duration in `timescale` ticks.
    pub duration_ticks: i64,
    pub timescale: u32,
    /// The segment follows a discontinuity (a publisher's return, a track change).
    pub discontinuity: bool,
    /// The version of the init segment (`EXT-X-MAP`) the segment needs, and its bytes.
    pub init_version: u32,
    pub init: Bytes,
    /// Wall clock at the segment's start, milliseconds since the Unix epoch.
    pub program_date_ms: i64,
    /// The segment's bytes, as the CMAF chunks the parts were served as.
    pub chunks: Vec<Bytes>,
    /// The rendition's facts for a multivariant playlist, as measured so far.
    pub variant: Option<VariantInfo>,
}

impl CompletedSegment {
    /// The segment's size in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Receives every complete segment of every rendition, and the stream's lifecycle, from
/// the packager's caller (the origin). Called with the stream's packagers locked, on the
/// live path: an implementation must return at once and never wait (a recorder queues).
pub trait SegmentSink: Send + Sync {
    /// A publisher started a session of `stream` (the first, or one returning within
    /// the grace period).
    fn session_started(&self, stream: &str);
    /// A segment of `rendition` of `stream` is complete.
    fn segment_completed(&self, stream: &str, rendition: &str, segment: CompletedSegment);
    /// The grace period passed without a publisher: `stream` ended.
    fn stream_ended(&self, stream: &str);
}
