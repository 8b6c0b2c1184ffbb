//! Media time: integer ticks in a stated timescale. Never floats.

use std::fmt;
use std::num::NonZeroU32;

/// 90 kHz, the timescale of every video track in Rivulet (MPEG convention).
pub const VIDEO_TIMESCALE: NonZeroU32 = NonZeroU32::new(90_000).expect("non-zero");
/// 1 kHz, the timescale of FLV/RTMP timestamps.
pub const MILLISECONDS: NonZeroU32 = NonZeroU32::new(1_000).expect("non-zero");

/// How [`MediaTime::rescale`] rounds when the result is not a whole tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Towards negative infinity.
    Down,
    /// Towards positive infinity.
    Up,
    /// To the nearest tick, halves away from zero.
    Nearest,
}

/// A point (or span) on a media timeline: `ticks / timescale` seconds.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaTime {
    pub ticks: i64,
    pub timescale: NonZeroU32,
}

impl MediaTime {
    pub const fn new(ticks: i64, timescale: NonZeroU32) -> Self {
        Self { ticks, timescale }
    }

    /// The same instant in another timescale.
    pub fn rescale(self, to: NonZeroU32, rounding: Rounding) -> Self {
        Self::new(rescale_ticks(self.ticks, self.timescale, to, rounding), to)
    }

    /// Seconds, for display and logs only.
    pub fn as_secs_f64(self) -> f64 {
        self.ticks as f64 / f64::from(self.timescale.get())
    }

    /// Whole milliseconds, rounded down.
    pub fn as_millis(self) -> i64 {
        self.rescale(MILLISECONDS, Rounding::Down).ticks
    }

    /// `self + other`, with `other` first rescaled (to the nearest tick) to `self`'s timescale.
    pub fn checked_add(self, other: MediaTime) -> Option<Self> {
        let other = other.rescale(self.timescale, Rounding::Nearest);
        Some(Self::new(
            self.ticks.checked_add(other.ticks)?,
            self.timescale,
        ))
    }

    /// `self - other`, with `other` first rescaled (to the nearest tick) to `self`'s timescale.
    pub fn checked_sub(self, other: MediaTime) -> Option<Self> {
        let other = other.rescale(self.timescale, Rounding::Nearest);
        Some(Self::new(
            self.ticks.checked_sub(other.ticks)?,
            self.timescale,
        ))
    }
}

impl fmt::Debug for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({:.3}s)",
            self.ticks,
            self.timescale,
            self.as_secs_f64()
        )
    }
}

impl fmt::Display for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl PartialOrd for MediaTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MediaTime {
    /// Compares the instants exactly, across timescales (cross-multiplication in i128).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let a = i128::from(self.ticks) * i128::from(other.timescale.get());
        let b = i128::from(other.ticks) * i128::from(self.timescale.get());
        a.cmp(&b)
    }
}

/// `ticks * to / from` with the given rounding, computed in i128 so it cannot overflow
/// for any i64 input and 32-bit timescales (the result saturates at the i64 range).
pub fn rescale_ticks(ticks: i64, from: NonZeroU32, to: NonZeroU32, rounding: Rounding) -> i64 {
    if from == to {
        return ticks;
    }
    let num = i128::from(ticks) * i128::from(to.get());
    let den = i128::from(from.get());
    let q = match rounding {
        Rounding::Down => num.div_euclid(den),
        Rounding::Up => -((-num).div_euclid(den)),
        Rounding::Nearest => {
            if num >= 0 {
                (num + den / 2) / den
            } else {
                -((-num + den / 2) / den)
            }
        }
    };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Unwraps 32-bit millisecond timestamps (FLV/RTMP) into a continuous 64-bit timeline.
///
/// RTMP timestamps wrap every 2^32 ms (~49.7 days) and some encoders jump them
/// backwards or forwards on reconnect. Unwrap once per track, at ingest, and nowhere else.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    last: Option<u32>,
    /// Accumulated 64-bit value of `last`.
    unwrapped: i64,
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places a 32-bit millisecond timestamp on the continuous timeline.
    ///
    /// The difference to the previous timestamp is read as a signed 32-bit value,
    /// so a wrap from `u32::MAX` to 0 is a step of +1 ms, and a small step backwards
    /// (B-frames, audio/video interleaving in one timeline) stays a step backwards.
    pub fn place(&mut self, ms: u32) -> MediaTime {
        let value = match self.last {
            None => i64::from(ms),
            Some(last) => self.unwrapped + i64::from(ms.wrapping_sub(last) as i32),
        };
        self.last = Some(ms);
        self.unwrapped = value;
        MediaTime::new(value, MILLISECONDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn rescale_rounds_as_asked() {
        assert_eq!(rescale_ticks(1, ts(1000), ts(44100), Rounding::Down), 44);
        assert_eq!(rescale_ticks(1, ts(1000), ts(44100), Rounding::Up), 45);
        assert_eq!(rescale_ticks(1, ts(1000), ts(44100), Rounding::Nearest), 44);
        assert_eq!(rescale_ticks(-1, ts(1000), ts(44100), Rounding::Down), -45);
        assert_eq!(rescale_ticks(-1, ts(1000), ts(44100), Rounding::Up), -44);
        assert_eq!(rescale_ticks(33, ts(1000), ts(90000), Rounding::Down), 2970);
        assert_eq!(
            rescale_ticks(i64::MAX, ts(1), ts(90000), Rounding::Down),
            i64::MAX
        );
    }

    #[test]
    fn compares_across_timescales() {
        let a = MediaTime::new(90_000, VIDEO_TIMESCALE);
        let b = MediaTime::new(1_000, MILLISECONDS);
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert!(MediaTime::new(1_001, MILLISECONDS) > a);
    }

    #[test]
    fn timeline_unwraps_and_allows_small_backsteps() {
        let mut t = Timeline::new();
        assert_eq!(t.place(u32::MAX - 10).ticks, i64::from(u32::MAX - 10));
        assert_eq!(t.place(5).ticks, i64::from(u32::MAX) + 6);
        assert_eq!(t.place(2).ticks, i64::from(u32::MAX) + 3);
    }
}
