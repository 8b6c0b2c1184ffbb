//! Viewers' keyframe requests (PLI/FIR), counted per interval: a lossy viewer may ask
//! many times a second. The server passes every request to the rendition's encoder,
//! which collapses them and makes at most one extra IDR a second (each costs every
//! viewer of the rung a large picture); this limiter keeps the log to one line per
//! interval.

use std::time::{Duration, Instant};

/// A rate limiter for keyframe requests of one stream.
#[derive(Clone, Debug)]
pub struct KeyframeRequests {
    interval: Duration,
    last: Option<Instant>,
    refused: u64,
}

impl KeyframeRequests {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            refused: 0,
        }
    }

    /// Whether a request at `now` should be passed on (at most one per interval).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.refused += 1;
                false
            }
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    /// Requests held back so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_interval_gets_through() {
        let mut k = KeyframeRequests::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(k.allow(t0));
        let passed = (1..100)
            .filter(|i| k.allow(t0 + Duration::from_millis(i * 5)))
            .count();
        assert_eq!(passed, 0, "a flood within the interval is held back");
        assert_eq!(k.refused(), 99);
        assert!(k.allow(t0 + Duration::from_millis(1000)));
        assert!(!k.allow(t0 + Duration::from_millis(1500)));
        assert!(k.allow(t0 + Duration::from_millis(2100)));
    }
}
