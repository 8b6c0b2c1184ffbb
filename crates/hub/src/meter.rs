//! The ingest bitrate of a session, from its byte counter: sans-IO, time comes in as
//! `now`.

use std::time::Instant;

/// Bits per second between two readings of a growing byte count (e.g.
/// [`crate::Session::media_bytes`]).
#[derive(Debug)]
pub struct BitrateMeter {
    bytes: u64,
    since: Instant,
}

impl BitrateMeter {
    /// Starts measuring at `now`, with the counter at `bytes`.
    pub fn new(now: Instant, bytes: u64) -> Self {
        Self { bytes, since: now }
    }

    /// The rate since the last poll (or the start), in bits per second; a new
    /// measurement begins. `None` if no time has passed.
    pub fn poll_bitrate(&mut self, now: Instant, bytes: u64) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed.is_zero() {
            return None;
        }
        let sent = bytes.saturating_sub(self.bytes);
        let rate = u128::from(sent) * 8 * 1_000_000 / elapsed.as_micros().max(1);
        self.bytes = bytes;
        self.since = now;
        Some(u64::try_from(rate).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bitrate_is_bits_per_second_since_the_last_poll() {
        let t0 = Instant::now();
        let mut meter = BitrateMeter::new(t0, 1_000);
        assert_eq!(meter.poll_bitrate(t0, 1_000), None);
        assert_eq!(
            meter.poll_bitrate(t0 + Duration::from_secs(2), 751_000),
            Some(3_000_000)
        );
        // A new measurement: nothing arrived since.
        assert_eq!(
            meter.poll_bitrate(t0 + Duration::from_secs(4), 751_000),
            Some(0)
        );
        // A counter that went back (it cannot, but) reads as nothing sent.
        assert_eq!(meter.poll_bitrate(t0 + Duration::from_secs(5), 10), Some(0));
    }
}
