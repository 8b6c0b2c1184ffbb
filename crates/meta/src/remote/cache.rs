//! The ingest's cache of key-check answers: sans-IO, time comes in as `now`.
//!
//! Two jobs:
//! - **Fresh answers** spare the round trip: a positive answer is good for
//!   [`KeyCacheConfig::ttl`], a negative one ("no stream has this key") for
//!   [`KeyCacheConfig::negative_ttl`].
//! - **Last known good**: when the metadata server cannot answer, a key whose last
//!   answer was positive still publishes, however old that answer is
//!   ([`KeyCache::last_good`]). A negative answer ends that (a rotated-out key stops
//!   working as soon as the metadata server has said so once).
//!
//! Keys are held as their SHA-256 ([`crate::hash_key`]), never in clear.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::secret::hash_key;

/// How long answers are trusted, and how many are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCacheConfig {
    /// How long a positive answer is used without asking again.
    pub ttl: Duration,
    /// How long a negative answer is used without asking again.
    pub negative_ttl: Duration,
    /// Keys remembered at most. When full, negative answers are forgotten first, so
    /// that a flood of made-up keys cannot push out the keys that worked.
    pub capacity: usize,
}

impl Default for KeyCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(2),
            capacity: 10_000,
        }
    }
}

/// What the cache knows about a key right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheLookup {
    /// A fresh answer: `Some(stream)` the key publishes that stream, `None` it is unknown.
    Fresh(Option<String>),
    /// Nothing fresh: ask the metadata server.
    Stale,
}

/// The last positive answer about a key, for when the metadata server is unreachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastGood {
    pub stream: String,
    /// When the metadata server gave it; `None` for a stream declared in this node's
    /// configuration that the server has not confirmed yet.
    pub answered_at: Option<Instant>,
}

/// Answers about keys; see the module documentation.
#[derive(Debug)]
pub struct KeyCache {
    config: KeyCacheConfig,
    entries: HashMap<String, Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    /// `Some(stream)` for a positive answer, `None` for a negative one.
    stream: Option<String>,
    /// When the metadata server answered; `None` for a seeded entry (never fresh).
    answered_at: Option<Instant>,
    /// When the entry was written, for eviction.
    written_at: Instant,
}

impl KeyCache {
    pub fn new(config: KeyCacheConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
        }
    }

    pub fn config(&self) -> &KeyCacheConfig {
        &self.config
    }

    /// Whether there is a fresh answer about `key` at `now`.
    pub fn lookup(&self, key: &str, now: Instant) -> CacheLookup {
        let Some(entry) = self.entries.get(&hash_key(key)) else {
            return CacheLookup::Stale;
        };
        let Some(answered_at) = entry.answered_at else {
            return CacheLookup::Stale;
        };
        let ttl = match entry.stream {
            Some(_) => self.config.ttl,
            None => self.config.negative_ttl,
        };
        if now.saturating_duration_since(answered_at) < ttl {
            CacheLookup::Fresh(entry.stream.clone())
        } else {
            CacheLookup::Stale
        }
    }

    /// The metadata server answered at `now`: `Some(stream)` or `None` (unknown key).
    pub fn handle_answer(&mut self, key: &str, stream: Option<&str>, now: Instant) {
        self.insert(
            hash_key(key),
            Entry {
                stream: stream.map(str::to_owned),
                answered_at: Some(now),
                written_at: now,
            },
        );
    }

    /// A stream declared in this node's configuration: its key counts as last known
    /// good until the metadata server says otherwise, but is never fresh (the server
    /// is still asked first).
    pub fn seed(&mut self, key: &str, stream: &str, now: Instant) {
        let hash = hash_key(key);
        if self.entries.contains_key(&hash) {
            return;
        }
        self.insert(
            hash,
            Entry {
                stream: Some(stream.to_owned()),
                answered_at: None,
                written_at: now,
            },
        );
    }

    /// The last positive answer about `key`, if the last answer was positive.
    pub fn last_good(&self, key: &str) -> Option<LastGood> {
        let entry = self.entries.get(&hash_key(key))?;
        entry.stream.as_ref().map(|stream| LastGood {
            stream: stream.clone(),
            answered_at: entry.answered_at,
        })
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, hash: String, entry: Entry) {
        if !self.entries.contains_key(&hash) && self.entries.len() >= self.config.capacity.max(1) {
            self.evict_one();
        }
        self.entries.insert(hash, entry);
    }

    /// Forgets the oldest negative answer, or if there is none the oldest positive one.
    fn evict_one(&mut self) {
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.stream.is_some(), e.written_at))
            .map(|(hash, _)| hash.clone());
        if let Some(hash) = victim {
            self.entries.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (KeyCache, Instant) {
        let config = KeyCacheConfig {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(2),
            capacity: 3,
        };
        (KeyCache::new(config), Instant::now())
    }

    #[test]
    fn positive_answers_are_fresh_for_the_ttl() {
        let (mut cache, t0) = cache();
        assert_eq!(cache.lookup("k1", t0), CacheLookup::Stale);
        cache.handle_answer("k1", Some("studio"), t0);
        let fresh = CacheLookup::Fresh(Some("studio".into()));
        assert_eq!(cache.lookup("k1", t0), fresh);
        assert_eq!(cache.lookup("k1", t0 + Duration::from_secs(29)), fresh);
        assert_eq!(
            cache.lookup("k1", t0 + Duration::from_secs(30)),
            CacheLookup::Stale
        );
        // Another key is not confused with it.
        assert_eq!(cache.lookup("k2", t0), CacheLookup::Stale);
    }

    #[test]
    fn negative_answers_are_fresh_for_the_negative_ttl() {
        let (mut cache, t0) = cache();
        cache.handle_answer("nope", None, t0);
        assert_eq!(
            cache.lookup("nope", t0 + Duration::from_secs(1)),
            CacheLookup::Fresh(None)
        );
        assert_eq!(
            cache.lookup("nope", t0 + Duration::from_secs(2)),
            CacheLookup::Stale
        );
        assert_eq!(cache.last_good("nope"), None);
    }

    #[test]
    fn last_known_good_outlives_the_ttl_until_a_negative_answer() {
        let (mut cache, t0) = cache();
        cache.handle_answer("k1", Some("studio"), t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(cache.lookup("k1", later), CacheLookup::Stale);
        assert_eq!(
            cache.last_good("k1"),
            Some(LastGood {
                stream: "studio".into(),
                answered_at: Some(t0),
            })
        );
        // The key was rotated out: the server said so once, and it is gone for good.
        cache.handle_answer("k1", None, later);
        assert_eq!(cache.last_good("k1"), None);
        assert_eq!(cache.lookup("k1", later), CacheLookup::Fresh(None));
        // A key that was never accepted has no last known good.
        assert_eq!(cache.last_good("never"), None);
    }

    #[test]
    fn seeded_keys_are_last_known_good_but_never_fresh() {
        let (mut cache, t0) = cache();
        cache.seed("declared", "studio", t0);
        assert_eq!(cache.lookup("declared", t0), CacheLookup::Stale);
        assert_eq!(
            cache.last_good("declared"),
            Some(LastGood {
                stream: "studio".into(),
                answered_at: None,
            })
        );
        // An answer replaces the seed; a later seed does not replace an answer.
        cache.handle_answer("declared", None, t0);
        cache.seed("declared", "studio", t0);
        assert_eq!(cache.last_good("declared"), None);
    }

    #[test]
    fn a_full_cache_forgets_negative_answers_first() {
        let (mut cache, t0) = cache();
        let s = Duration::from_secs(1);
        cache.handle_answer("good1", Some("a"), t0);
        cache.handle_answer("bad1", None, t0 + s);
        cache.handle_answer("good2", Some("b"), t0 + 2 * s);
        // Full (3): a flood of unknown keys only replaces negative answers.
        for (i, key) in ["bad2", "bad3", "bad4"].iter().enumerate() {
            cache.handle_answer(key, None, t0 + (3 + i as u32) * s);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.last_good("good1").is_some());
        assert!(cache.last_good("good2").is_some());
        assert_eq!(cache.lookup("bad4", t0 + 6 * s), CacheLookup::Fresh(None));
        // With no negative answer left, the oldest positive one goes.
        cache.handle_answer("good3", Some("c"), t0 + 7 * s);
        cache.handle_answer("good4", Some("d"), t0 + 8 * s);
        assert_eq!(cache.len(), 3);
        assert!(cache.last_good("good1").is_none());
        assert!(cache.last_good("good4").is_some());
    }
}
