//! Requests held open waiting for something (a blocking playlist reload, the next
//! part), counted per stream and per client address so that one client or one stream
//! cannot hold a server's memory and tasks hostage.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The bounds on held requests. `0` means no bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLimits {
    /// Held requests for one stream at most (all clients together).
    pub per_stream: usize,
    /// Held requests from one client address at most (all streams together).
    pub per_client: usize,
}

impl Default for HeldLimits {
    fn default() -> Self {
        Self {
            per_stream: 20_000,
            per_client: 1_000,
        }
    }
}

/// Why a request may not be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    /// Answer `503` with `Retry-After`: the stream has as many waiters as allowed.
    #[error("too many requests are waiting on this stream; retry shortly")]
    StreamFull,
    /// Answer `429`: this client has as many waiters as allowed.
    #[error("too many of your requests are waiting; finish some before making more")]
    ClientFull,
}

#[derive(Debug, Default)]
struct Counts {
    per_stream: HashMap<String, usize>,
    per_client: HashMap<IpAddr, usize>,
}

/// The held requests of one server.
#[derive(Clone, Debug, Default)]
pub struct HeldRequests {
    limits: HeldLimits,
    counts: Arc<Mutex<Counts>>,
}

impl HeldRequests {
    pub fn new(limits: HeldLimits) -> Self {
        Self {
            limits,
            counts: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request on `stream` from `client` (unknown when served without
    /// connection info) as held while the returned guard lives.
    pub fn hold(&self, stream: &str, client: Option<IpAddr>) -> Result<HeldRequest, HoldError> {
        let mut counts = self.lock();
        let over = |n: Option<&usize>, max: usize| max != 0 && n.copied().unwrap_or(0) >= max;
        if over(counts.per_stream.get(stream), self.limits.per_stream) {
            return Err(HoldError::StreamFull);
        }
        if let Some(c) = client
            && over(counts.per_client.get(&c), self.limits.per_client)
        {
            return Err(HoldError::ClientFull);
        }
        *counts.per_stream.entry(stream.to_owned()).or_insert(0) += 1;
        if let Some(c) = client {
            *counts.per_client.entry(c).or_insert(0) += 1;
        }
        Ok(HeldRequest {
            held: self.clone(),
            stream: stream.to_owned(),
            client,
        })
    }

    /// Requests held now for `stream`.
    pub fn on_stream(&self, stream: &str) -> usize {
        self.lock().per_stream.get(stream).copied().unwrap_or(0)
    }
}

/// A held request; dropping it releases its place.
#[derive(Debug)]
pub struct HeldRequest {
    held: HeldRequests,
    stream: String,
    client: Option<IpAddr>,
}

impl Drop for HeldRequest {
    fn drop(&mut self) {
        let mut counts = self.held.lock();
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        release(&mut counts.per_stream, &self.stream);
        if let Some(c) = self.client {
            release(&mut counts.per_client, &c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_per_stream_and_per_client() {
        let held = HeldRequests::new(HeldLimits {
            per_stream: 3,
            per_client: 2,
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = held.hold("cam", Some(a)).expect("1");
        let _a2 = held.hold("cam", Some(a)).expect("2");
        assert_eq!(
            held.hold("other", Some(a)).unwrap_err(),
            HoldError::ClientFull
        );
        let _b1 = held.hold("cam", Some(b)).expect("3");
        assert_eq!(
            held.hold("cam", Some(b)).unwrap_err(),
            HoldError::StreamFull
        );
        assert!(
            held.hold("other", Some(b)).is_ok(),
            "other streams are free"
        );
        drop(a1);
        assert_eq!(held.on_stream("cam"), 2);
        assert!(held.hold("cam", None).is_ok());
        let unbounded = HeldRequests::new(HeldLimits {
            per_stream: 0,
            per_client: 0,
        });
        let many: Vec<_> = (0..100).map(|_| unbounded.hold("cam", Some(a))).collect();
        assert!(many.iter().all(Result::is_ok));
    }
}
