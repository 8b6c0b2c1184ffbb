//! MPEG-TS timestamps: 33-bit counters of a 90 kHz clock that wrap every ~26.5 hours.

/// One wrap of a PTS/DTS (2^33 ticks of 90 kHz).
pub const WRAP: i64 = 1 << 33;

/// Unwraps 33-bit timestamps into one monotonic 64-bit timeline.
///
/// Each value is placed at the unwrapped position nearest to the previous one (a step
/// of less than half a wrap, ~13 h, either way), so a stream that crosses 2^33 goes on
/// counting up instead of jumping back to zero. One unwrapper serves every stream of a
/// program: audio and video stay on the same timeline.
#[derive(Clone, Debug, Default)]
pub struct Unwrapper {
    last: Option<i64>,
    /// The highest wrap index (`value / 2^33`) reached so far.
    highest_epoch: i64,
}

impl Unwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Places a 33-bit timestamp (higher bits are ignored) on the timeline.
    pub fn unwrap(&mut self, raw: u64) -> i64 {
        let raw = (raw & (WRAP as u64 - 1)) as i64;
        let Some(last) = self.last else {
            self.last = Some(raw);
            return raw;
        };
        let mut step = (raw - last.rem_euclid(WRAP)).rem_euclid(WRAP);
        if step >= WRAP / 2 {
            step -= WRAP;
        }
        let placed = last + step;
        self.highest_epoch = self.highest_epoch.max(placed.div_euclid(WRAP));
        self.last = Some(placed);
        placed
    }

    /// How many times the timeline crossed 2^33 going forward.
    pub fn wraps(&self) -> u64 {
        self.highest_epoch.max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crosses_the_wrap_forward_and_steps_back_across_it() {
        let mut u = Unwrapper::new();
        assert_eq!(u.unwrap((WRAP - 3000) as u64), WRAP - 3000);
        assert_eq!(u.unwrap(0), WRAP);
        assert_eq!(u.unwrap(3000), WRAP + 3000);
        // A B-frame's PTS a little before the wrap, after it was crossed.
        assert_eq!(u.unwrap((WRAP - 1500) as u64), WRAP - 1500);
        assert_eq!(u.unwrap(6000), WRAP + 6000);
        assert_eq!(u.wraps(), 1);
    }

    #[test]
    fn small_steps_back_stay_back() {
        let mut u = Unwrapper::new();
        assert_eq!(u.unwrap(90_000), 90_000);
        assert_eq!(u.unwrap(87_000), 87_000);
        assert_eq!(u.wraps(), 0);
    }
}
