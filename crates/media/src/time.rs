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
///
/// A step beyond the [`JumpPolicy`] is not media time passing but a broken or
/// hostile publisher (a +3 h jump would otherwise become a 3-hour segment, a −3 h
/// jump a frozen stream): the timeline re-anchors, continuing one usual step after
/// the last timestamp, and [`Timeline::place_checked`] reports the jump so the
/// caller can log it.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    policy: JumpPolicy,
    last: Option<u32>,
    /// Accumulated 64-bit value of `last`.
    unwrapped: i64,
    /// The last step that was within the policy (ms), used as the step after a jump.
    usual_step: Option<i64>,
}

/// The steps a [`Timeline`] takes as media time; anything larger re-anchors it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JumpPolicy {
    /// The largest forward step between two timestamps of one track (ms).
    pub max_forward_ms: i64,
    /// The largest backward step (ms); small ones happen with sloppy muxers.
    pub max_backward_ms: i64,
}

impl Default for JumpPolicy {
    fn default() -> Self {
        Self {
            max_forward_ms: 10_000,
            max_backward_ms: 1_000,
        }
    }
}

/// A timestamp step beyond the [`JumpPolicy`], which re-anchored the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampJump {
    /// The previous timestamp, as sent.
    pub from_ms: u32,
    /// This timestamp, as sent.
    pub to_ms: u32,
    /// The step as read (signed, after unwrapping).
    pub step_ms: i64,
    /// Where the timestamp was placed instead (ms on the continuous timeline).
    pub placed_ms: i64,
}

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// A timeline that re-anchors on steps beyond `policy`.
    pub fn with_policy(policy: JumpPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Places a 32-bit millisecond timestamp on the continuous timeline.
    ///
    /// The difference to the previous timestamp is read as a signed 32-bit value,
    /// so a wrap from `u32::MAX` to 0 is a step of +1 ms, and a small step backwards
    /// stays a step backwards. Steps beyond the policy re-anchor (see the type).
    pub fn place(&mut self, ms: u32) -> MediaTime {
        self.place_checked(ms).0
    }

    /// [`Timeline::place`], also returning the jump if the step was beyond the policy.
    pub fn place_checked(&mut self, ms: u32) -> (MediaTime, Option<TimestampJump>) {
        let mut jump = None;
        let value = match self.last {
            None => i64::from(ms),
            Some(last) => {
                let step = i64::from(ms.wrapping_sub(last) as i32);
                if step > self.policy.max_forward_ms || -step > self.policy.max_backward_ms {
                    // One usual step on: media time continues smoothly.
                    let placed = self.unwrapped + self.usual_step.unwrap_or(1);
                    jump = Some(TimestampJump {
                        from_ms: last,
                        to_ms: ms,
                        step_ms: step,
                        placed_ms: placed,
                    });
                    placed
                } else {
                    if step > 0 {
                        self.usual_step = Some(step);
                    }
                    self.unwrapped + step
                }
            }
        };
        self.last = Some(ms);
        self.unwrapped = value;
        (MediaTime::new(value, MILLISECONDS), jump)
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

    #[test]
    fn timeline_reanchors_jumps_beyond_the_policy() {
        let mut t = Timeline::new();
        for ms in [1000u32, 1033, 1066] {
            assert_eq!(t.place_checked(ms).1, None);
        }
        // +3 h: continues one usual step on, and says so.
        let (time, jump) = t.place_checked(1066 + 3 * 3_600_000);
        assert_eq!(time.ticks, 1099);
        assert_eq!(jump.map(|j| j.step_ms), Some(3 * 3_600_000));
        // …and then follows the new timestamps from there.
        assert_eq!(t.place(1066 + 3 * 3_600_000 + 33).ticks, 1132);
        // −3 h (wrapping below zero, as extended-timestamp abuse can): the same.
        let (time, jump) = t.place_checked(1099u32.wrapping_sub(3 * 3_600_000));
        assert_eq!(time.ticks, 1165);
        assert!(jump.is_some_and(|j| j.step_ms < 0));
        assert_eq!(
            t.place(1099u32.wrapping_sub(3 * 3_600_000) + 33).ticks,
            1198
        );
        // A small backstep stays one; 10 s forward is still media time.
        assert_eq!(
            t.place_checked(1099u32.wrapping_sub(3 * 3_600_000) + 3).1,
            None
        );
        let mut t = Timeline::new();
        t.place(0);
        assert_eq!(
            t.place_checked(10_000),
            (MediaTime::new(10_000, MILLISECONDS), None)
        );
    }
}
