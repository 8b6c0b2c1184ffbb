//! The policies that keep one connection from hurting the others: connection caps,
//! the per-stream bitrate cap, and the backoff after a failed accept. Plain state
//! machines (time arrives as `now`), so each rule is tested without sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Counts open connections, in total and per client address.
#[derive(Clone, Debug)]
pub struct ConnectionLimiter {
    inner: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_address: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was refused: how many were open. [`ConnectionRefusal::describe`]
/// says it in a listener's words; `Display` in RTMP's.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionRefusal {
    Total(usize),
    PerAddress(usize),
}

/// What a listener calls its connections and the options that set its two caps, for
/// the refusal's text (the limiter is shared by RTMP, SRT and ICE-TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitNames {
    pub connections: &'static str,
    pub total: &'static str,
    pub per_address: &'static str,
}

pub const RTMP_LIMITS: LimitNames = LimitNames {
    connections: "RTMP",
    total: "--rtmp-max-connections",
    per_address: "--rtmp-max-connections-per-ip",
};

impl std::fmt::Display for ConnectionRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(&RTMP_LIMITS))
    }
}

impl std::error::Error for ConnectionRefusal {}

impl ConnectionRefusal {
    /// The refusal in a listener's words, naming the option to change.
    pub fn describe(&self, names: &LimitNames) -> String {
        match self {
            Self::Total(n) => format!(
                "{n} {} connections are open, the most allowed ({})",
                names.connections, names.total
            ),
            Self::PerAddress(n) => format!(
                "{n} {} connections are open from this address, the most allowed ({})",
                names.connections, names.per_address
            ),
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Total(_) => "max_connections",
            Self::PerAddress(_) => "max_connections_per_ip",
        }
    }
}

/// An admitted connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    inner: Arc<Mutex<Counts>>,
    address: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_total,
            max_per_address,
        }
    }

    /// Admits a connection from `address`, or says which limit it would cross.
    pub fn try_admit(&self, address: IpAddr) -> Result<ConnectionPermit, ConnectionRefusal> {
        // A panic elsewhere cannot leave the counts half-updated: each update is one
        // statement, so the poisoned value is still right.
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.max_total {
            return Err(ConnectionRefusal::Total(counts.total));
        }
        let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
        if from_address >= self.max_per_address {
            return Err(ConnectionRefusal::PerAddress(from_address));
        }
        counts.total += 1;
        *counts.by_address.entry(address).or_default() += 1;
        Ok(ConnectionPermit {
            inner: self.inner.clone(),
            address,
        })
    }

    /// Open connections in total.
    pub fn open(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                // No entry outlives its connections: the map is bounded by them.
                counts.by_address.remove(&self.address);
            }
        }
    }
}

/// A rate in bits per second (not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bitrate(pub u64);

/// How many times its declared bitrate a publisher may send (VBR peaks, keyframes).
pub const DECLARED_HEADROOM: u64 = 4;
/// The least a declared bitrate caps at (encoders declare optimistic numbers).
pub const DECLARED_FLOOR: Bitrate = Bitrate(1_000_000);

impl Bitrate {
    /// The bitrate a publisher declares in `onMetaData` (`videodatarate` plus
    /// `audiodatarate`, in kbit/s), if it declares a video bitrate. ffmpeg in quality
    /// mode (`-crf`) declares only its audio bitrate: that says nothing of the whole.
    pub fn declared(video_kbps: Option<f64>, audio_kbps: Option<f64>) -> Option<Bitrate> {
        let video = video_kbps.filter(|v| *v > 0.0 && v.is_finite())?;
        let audio = audio_kbps
            .filter(|a| *a > 0.0 && a.is_finite())
            .unwrap_or(0.0);
        // `as` saturates at u64::MAX.
        Some(Bitrate(((video + audio) * 1000.0) as u64))
    }
}

/// A token bucket over the bytes a publisher sends: `rate` sustained, with `burst`
/// worth of it in reserve (a keyframe, a catch-up after a network hiccup).
#[derive(Clone, Debug)]
pub struct BitrateLimiter {
    rate: Bitrate,
    /// What the publisher declared, when that (not the configured cap) set `rate`.
    declared: Option<Bitrate>,
    burst: Duration,
    /// In bits.
    capacity: f64,
    /// In bits.
    tokens: f64,
    last: Instant,
}

/// A publisher above the bitrate cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitrateExceeded {
    pub cap: Bitrate,
    /// Set when the cap came from the publisher's own declaration.
    pub declared: Option<Bitrate>,
    pub burst: Duration,
}

impl std::fmt::Display for BitrateExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (cap, burst) = (self.cap.0 / 1000, self.burst.as_secs());
        match self.declared {
            None => write!(
                f,
                "the publisher sends above {cap} kbit/s for longer than {burst} s (--rtmp-max-bitrate-kbps); lower the encoder's bitrate"
            ),
            Some(declared) => write!(
                f,
                "the publisher sends above {cap} kbit/s for longer than {burst} s, far above the {} kbit/s it declared in onMetaData (at most {DECLARED_HEADROOM}x that, within --rtmp-max-bitrate-kbps); lower the encoder's bitrate",
                declared.0 / 1000
            ),
        }
    }
}

impl std::error::Error for BitrateExceeded {}

impl BitrateLimiter {
    /// Starts with a full bucket.
    pub fn new(rate: Bitrate, burst: Duration, now: Instant) -> Self {
        let capacity = rate.0 as f64 * burst.as_secs_f64();
        Self {
            rate,
            declared: None,
            burst,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Lowers the cap to [`DECLARED_HEADROOM`] times what the publisher declared (not
    /// below [`DECLARED_FLOOR`], never above `cap`). The bucket keeps its level, so
    /// declaring again does not refill it.
    pub fn handle_declared(&mut self, cap: Bitrate, declared: Bitrate, now: Instant) {
        self.refill(now);
        let allowed = Bitrate(
            declared
                .0
                .saturating_mul(DECLARED_HEADROOM)
                .max(DECLARED_FLOOR.0),
        )
        .min(cap);
        self.rate = allowed;
        self.declared = (allowed < cap).then_some(declared);
        self.capacity = allowed.0 as f64 * self.burst.as_secs_f64();
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate.0 as f64).min(self.capacity);
    }

    /// Counts `bytes` received at `now`.
    pub fn handle_bytes(&mut self, now: Instant, bytes: usize) -> Result<(), BitrateExceeded> {
        self.refill(now);
        self.tokens -= bytes as f64 * 8.0;
        if self.tokens < 0.0 {
            Err(BitrateExceeded {
                cap: self.rate,
                declared: self.declared,
                burst: self.burst,
            })
        } else {
            Ok(())
        }
    }
}

/// The wait after a failed `accept` (out of descriptors: `EMFILE`/`ENFILE`), doubling
/// from 10 ms to 1 s while it keeps failing, so the loop neither spins nor stalls long.
#[derive(Clone, Debug, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// A failed accept: how long to wait before the next.
    pub fn handle_error(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ms = 10u64 << self.failures.saturating_sub(1).min(7);
        Duration::from_millis(ms.min(1000))
    }

    /// A successful accept; returns how many failed in a row before it.
    pub fn handle_success(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }

    /// Whether this failure is the first of a run (worth a log line).
    pub fn is_first_failure(&self) -> bool {
        self.failures == 1
    }
}

/// Lets one log line through per `interval` and counts the rest.
#[derive(Clone, Debug)]
pub struct LogThrottle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines suppressed since the last one)` if a line may be logged now.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_total_and_per_address() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = limiter.try_admit(a).unwrap();
        let _a2 = limiter.try_admit(a).unwrap();
        let refusal = limiter.try_admit(a).unwrap_err();
        assert_eq!(refusal, ConnectionRefusal::PerAddress(2));
        assert!(
            refusal
                .to_string()
                .contains("--rtmp-max-connections-per-ip")
        );
        let _b1 = limiter.try_admit(b).unwrap();
        assert_eq!(
            limiter.try_admit(b).unwrap_err(),
            ConnectionRefusal::Total(3)
        );
        drop(a1);
        assert_eq!(limiter.open(), 2);
        let _a3 = limiter.try_admit(a).unwrap();
    }

    #[test]
    fn bitrate_cap_allows_bursts_and_stops_a_flood() {
        let t0 = Instant::now();
        let cap = Bitrate(1_000_000);
        let mut honest = BitrateLimiter::new(cap, Duration::from_secs(4), t0);
        // 10 s near the cap, with an 0.8 Mbit keyframe every 2 s.
        for tenth in 1..=100u64 {
            let now = t0 + Duration::from_millis(tenth * 100);
            let bytes = if tenth % 20 == 0 { 100_000 } else { 5_000 };
            honest.handle_bytes(now, bytes).unwrap();
        }
        // 5× the cap: refused within about a second of the burst reserve.
        let mut flood = BitrateLimiter::new(cap, Duration::from_secs(4), t0);
        let refused_at = (1..=100u64)
            .find(|tenth| {
                flood
                    .handle_bytes(t0 + Duration::from_millis(tenth * 100), 62_500)
                    .is_err()
            })
            .expect("a flood is refused");
        assert!((9..=12).contains(&refused_at), "after {refused_at} tenths");
    }

    #[test]
    fn a_declared_bitrate_lowers_the_cap_and_redeclaring_does_not_refill() {
        let t0 = Instant::now();
        let cap = Bitrate(60_000_000);
        let declared = Bitrate::declared(Some(400.0), Some(100.0)).unwrap();
        assert_eq!(declared, Bitrate(500_000));
        assert_eq!(Bitrate::declared(Some(f64::NAN), None), None);
        assert_eq!(Bitrate::declared(Some(0.0), Some(-5.0)), None);
        assert_eq!(
            Bitrate::declared(None, Some(96.0)),
            None,
            "audio alone says nothing"
        );
        let mut limiter = BitrateLimiter::new(cap, Duration::from_secs(4), t0);
        limiter.handle_declared(cap, declared, t0);
        // 4 × 500 kbit/s = 2 Mbit/s; 5 Mbit/s is refused within a few seconds even if
        // the publisher declares the same again every second.
        let refused = (1..=100u64).find_map(|tenth| {
            let now = t0 + Duration::from_millis(tenth * 100);
            if tenth % 10 == 0 {
                limiter.handle_declared(cap, declared, now);
            }
            limiter.handle_bytes(now, 62_500).err()
        });
        let refused = refused.expect("refused");
        assert_eq!(refused.declared, Some(declared));
        assert!(
            refused.to_string().contains("declared in onMetaData"),
            "{refused}"
        );
        // A declaration above the configured cap changes nothing.
        let mut limiter = BitrateLimiter::new(Bitrate(1_000_000), Duration::from_secs(4), t0);
        limiter.handle_declared(Bitrate(1_000_000), Bitrate(50_000_000), t0);
        let err = (1..=100u64)
            .find_map(|tenth| {
                limiter
                    .handle_bytes(t0 + Duration::from_millis(tenth * 100), 62_500)
                    .err()
            })
            .unwrap();
        assert_eq!(err.declared, None);
        assert!(err.to_string().contains("--rtmp-max-bitrate-kbps"));
    }

    #[test]
    fn accept_backoff_grows_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let waits: Vec<u64> = (0..10)
            .map(|_| backoff.handle_error().as_millis() as u64)
            .collect();
        assert_eq!(waits[0], 10);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), 1000);
        assert_eq!(backoff.handle_success(), 10);
        assert_eq!(backoff.handle_error().as_millis(), 10);
        assert!(backoff.is_first_failure());
    }

    #[test]
    fn log_throttle_counts_what_it_holds_back() {
        let t0 = Instant::now();
        let mut throttle = LogThrottle::new(Duration::from_secs(1));
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_millis(20)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(2)), Some(2));
    }
}
