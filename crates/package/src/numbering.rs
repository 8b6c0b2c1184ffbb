//! Media sequence numbers that never name other bytes again.
//!
//! Segment and part names (`seg-N.m4s`, `part-N-P.m4s`) carry the media sequence
//! number, and the origin serves them `immutable`: a name once published must never
//! stand for other bytes, or an edge or a CDN keeps serving the old ones. Numbers come
//! from the publisher's timestamps (boundary index floor(dts / S), so that two
//! pipelines fed by one encoder agree), and a publisher that starts again at 0 after
//! the origin restarted would name its segments as the last session did.
//!
//! [`StreamNumbering`] is shared by the renditions of one stream. It knows the highest
//! number the stream ever used (the `floor`, kept by the origin across restarts) and
//! fixes, once, at the first segment of the process, a base added to every boundary
//! index:
//! - first boundary above the floor (a fresh stream, or a publisher whose timestamps
//!   carried on while this origin restarted): base 0, the numbers are the source's, as
//!   on every other pipeline fed by the same encoder;
//! - otherwise (timestamps that started over): base = floor + 1 − first boundary, so
//!   the first segment is floor + 1. The renditions share the base, so they stay
//!   numbered alike.

use std::sync::OnceLock;

/// The numbering of one stream's segments, shared by its renditions' packagers.
#[derive(Debug, Default)]
pub struct StreamNumbering {
    /// The highest media sequence number the stream used before (an earlier process).
    floor: Option<u64>,
    base: OnceLock<u64>,
}

impl StreamNumbering {
    /// A stream whose segments were numbered up to `floor` before (`None`: never).
    pub fn new(floor: Option<u64>) -> Self {
        Self {
            floor,
            base: OnceLock::new(),
        }
    }

    /// The media sequence number of a rendition's first segment, whose first frame
    /// lies in boundary interval `boundary`. The first call fixes the base for all.
    pub fn first_msn(&self, boundary: i64) -> u64 {
        let k = u64::try_from(boundary).unwrap_or(0);
        let base = *self.base.get_or_init(|| match self.floor {
            Some(floor) if k <= floor => floor + 1 - k,
            _ => 0,
        });
        k.saturating_add(base)
    }

    /// The base fixed so far (`None` before the first segment).
    pub fn base(&self) -> Option<u64> {
        self.base.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_stream_numbers_from_the_source_timestamps() {
        let n = StreamNumbering::new(None);
        assert_eq!(n.first_msn(7), 7);
        assert_eq!(n.first_msn(8), 8, "a second rendition");
        assert_eq!(n.base(), Some(0));
    }

    #[test]
    fn timestamps_that_carried_on_past_the_floor_keep_the_source_numbers() {
        // The pipeline restarted while the encoder went on: same numbers as the other
        // pipeline fed by it.
        let n = StreamNumbering::new(Some(41));
        assert_eq!(n.first_msn(42), 42);
    }

    #[test]
    fn timestamps_that_started_over_continue_above_the_floor() {
        let n = StreamNumbering::new(Some(41));
        assert_eq!(n.first_msn(0), 42);
        // Every rendition is shifted alike: one starting an interval later stays
        // aligned with the first.
        assert_eq!(n.first_msn(1), 43);
        let n = StreamNumbering::new(Some(41));
        assert_eq!(n.first_msn(41), 42);
        let n = StreamNumbering::new(Some(41));
        assert_eq!(n.first_msn(-3), 42, "negative boundaries count as 0");
    }
}
