//! The upstreams (origins, or a shield edge) and which one to ask.
//!
//! Order is preference: the first healthy upstream gets the requests. An upstream
//! that refuses connections, times out or answers 5xx is marked down and the request
//! moves to the next one at once; a blocking playlist request that is not answered
//! within the stall limit (the playlist stopped advancing) marks it *stalled* for the
//! stream. Health probes (`/healthz`, every second) bring a down upstream back only
//! after several good answers in a row, so a flapping origin does not pull viewers
//! back and forth.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Good probes in a row before a down upstream is used again.
const PROBES_TO_RECOVER: u32 = 3;
/// How long a stalled upstream is passed over for its stream.
const STALL_COOLDOWN: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct State {
    down: bool,
    good_probes: u32,
    /// Streams whose playlists stopped advancing here, and until when to avoid them.
    stalled: HashMap<String, Instant>,
}

/// One upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Base URL without a trailing slash: `http://origin-a:8080`.
    pub base: String,
    state: Mutex<State>,
}

/// The upstreams in order of preference.
#[derive(Debug)]
pub struct Upstreams {
    list: Vec<Upstream>,
}

impl Upstreams {
    pub fn new(bases: &[String]) -> Self {
        Self {
            list: bases
                .iter()
                .map(|b| Upstream {
                    base: b.trim_end_matches('/').to_owned(),
                    state: Mutex::new(State {
                        down: false,
                        good_probes: 0,
                        stalled: HashMap::new(),
                    }),
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Upstream> {
        self.list.get(index)
    }

    /// The upstream to try for `stream`, skipping those in `tried`: the first that is
    /// up and not stalled for it; failing that the first up; failing that any.
    pub fn pick(&self, stream: &str, tried: &[usize], now: Instant) -> Option<usize> {
        let candidates = || (0..self.list.len()).filter(|i| !tried.contains(i));
        let usable = |i: &usize, check_stall: bool| {
            let s = self.list[*i].lock();
            !s.down && (!check_stall || s.stalled.get(stream).is_none_or(|until| *until <= now))
        };
        candidates()
            .find(|i| usable(i, true))
            .or_else(|| candidates().find(|i| usable(i, false)))
            .or_else(|| candidates().next())
    }

    /// A connect error, timeout or 5xx.
    pub fn mark_down(&self, index: usize) -> bool {
        let Some(u) = self.list.get(index) else {
            return false;
        };
        let mut s = u.lock();
        let was_up = !s.down;
        s.down = true;
        s.good_probes = 0;
        if was_up {
            metrics::counter!("edge_failovers_total").increment(1);
            tracing::warn!(upstream = %u.base, "upstream down; using the next one");
        }
        was_up
    }

    /// `stream`'s playlist stopped advancing on this upstream.
    pub fn mark_stalled(&self, index: usize, stream: &str, now: Instant) {
        if let Some(u) = self.list.get(index) {
            let mut s = u.lock();
            let fresh = s.stalled.get(stream).is_none_or(|until| *until <= now);
            s.stalled.insert(stream.to_owned(), now + STALL_COOLDOWN);
            if fresh {
                metrics::counter!("edge_failovers_total").increment(1);
                tracing::warn!(upstream = %u.base, stream, "playlist stopped advancing; using the next upstream");
            }
        }
    }

    /// The result of a health probe.
    pub fn probed(&self, index: usize, healthy: bool) {
        let Some(u) = self.list.get(index) else {
            return;
        };
        let mut s = u.lock();
        if !healthy {
            s.good_probes = 0;
            if !s.down {
                s.down = true;
                metrics::counter!("edge_failovers_total").increment(1);
                tracing::warn!(upstream = %u.base, "upstream failed its health probe");
            }
            return;
        }
        s.good_probes += 1;
        if s.down && s.good_probes >= PROBES_TO_RECOVER {
            s.down = false;
            tracing::info!(upstream = %u.base, "upstream healthy again");
        }
    }

    pub fn is_down(&self, index: usize) -> bool {
        self.list.get(index).is_some_and(|u| u.lock().down)
    }
}

impl Upstream {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Upstreams {
        Upstreams::new(&["http://a/".to_owned(), "http://b".to_owned()])
    }

    #[test]
    fn prefers_the_first_healthy_and_fails_over() {
        let u = two();
        let now = Instant::now();
        assert_eq!(u.get(0).map(|x| x.base.as_str()), Some("http://a"));
        assert_eq!(u.pick("cam", &[], now), Some(0));
        assert_eq!(u.pick("cam", &[0], now), Some(1));
        assert_eq!(u.pick("cam", &[0, 1], now), None);
        assert!(u.mark_down(0));
        assert!(!u.mark_down(0), "already down");
        assert_eq!(u.pick("cam", &[], now), Some(1));
        // Everything down: still try rather than fail.
        u.mark_down(1);
        assert_eq!(u.pick("cam", &[], now), Some(0));
    }

    #[test]
    fn recovers_only_after_several_good_probes() {
        let u = two();
        let now = Instant::now();
        u.mark_down(0);
        u.probed(0, true);
        u.probed(0, true);
        assert_eq!(
            u.pick("cam", &[], now),
            Some(1),
            "two probes are not enough"
        );
        u.probed(0, false);
        u.probed(0, true);
        u.probed(0, true);
        assert!(u.is_down(0), "a failure resets the count");
        u.probed(0, true);
        assert!(!u.is_down(0));
        assert_eq!(u.pick("cam", &[], now), Some(0));
    }

    #[test]
    fn a_stall_moves_one_stream_for_a_while() {
        let u = two();
        let now = Instant::now();
        u.mark_stalled(0, "cam", now);
        assert_eq!(u.pick("cam", &[], now), Some(1));
        assert_eq!(u.pick("other", &[], now), Some(0), "other streams stay");
        assert_eq!(
            u.pick("cam", &[], now + STALL_COOLDOWN),
            Some(0),
            "and it expires"
        );
    }
}
