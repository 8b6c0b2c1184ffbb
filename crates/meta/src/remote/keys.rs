//! The ingest's key check against a remote metadata server.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use access::{AuthorizeFuture, KeyRejection, PublishRequest, StreamKeys, check_app, redact};

use super::cache::{CacheLookup, KeyCache, KeyCacheConfig};
use super::{RemoteError, RemoteMeta};

/// Where [`RemoteKeys`] reads the time: `Instant::now` in service, a hand-moved
/// clock in tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// [`StreamKeys`] answered by a remote metadata server, through a [`KeyCache`].
///
/// A fresh cached answer is used without a round trip. Otherwise the server is asked;
/// if it cannot answer (connection error, time-out, 5xx), a key whose last answer was
/// positive is accepted on that answer, logged as such, and any other key is refused
/// as `Unavailable` (the encoder retries).
pub struct RemoteKeys {
    remote: RemoteMeta,
    cache: Mutex<KeyCache>,
    clock: Clock,
}

impl RemoteKeys {
    pub fn new(remote: RemoteMeta, config: KeyCacheConfig) -> Self {
        Self::with_clock(remote, config, Arc::new(Instant::now))
    }

    pub fn with_clock(remote: RemoteMeta, config: KeyCacheConfig, clock: Clock) -> Self {
        Self {
            remote,
            cache: Mutex::new(KeyCache::new(config)),
            clock,
        }
    }

    /// Remembers a stream declared in this node's configuration as last known good,
    /// so that it publishes even if the metadata server is down from the start.
    pub fn seed(&self, key: &str, stream: &str) {
        let now = (self.clock)();
        self.lock().seed(key, stream, now);
    }

    /// The client this check goes through.
    pub fn remote(&self) -> &RemoteMeta {
        &self.remote
    }

    /// The check itself, without the RTMP application test.
    pub async fn check(&self, key: &str) -> Result<String, KeyRejection> {
        match self.lock().lookup(key, (self.clock)()) {
            CacheLookup::Fresh(Some(stream)) => return Ok(stream),
            CacheLookup::Fresh(None) => return Err(KeyRejection::UnknownKey),
            CacheLookup::Stale => {}
        }
        match self.remote.check_key(key).await {
            Ok(answer) => {
                self.lock()
                    .handle_answer(key, answer.as_deref(), (self.clock)());
                answer.ok_or(KeyRejection::UnknownKey)
            }
            Err(e) if e.is_unavailable() => self.fall_back(key, &e),
            Err(e) => {
                tracing::error!(meta = %self.remote.url(), key = %redact(key), error = %e, "the metadata server refused the key check; publish refused");
                Err(KeyRejection::Unavailable(
                    "the metadata server refused the key check".into(),
                ))
            }
        }
    }

    fn fall_back(&self, key: &str, error: &RemoteError) -> Result<String, KeyRejection> {
        let last_good = self.lock().last_good(key);
        match last_good {
            Some(good) => {
                let age = good
                    .answered_at
                    .map(|t| {
                        format!(
                            "{} s old",
                            (self.clock)().saturating_duration_since(t).as_secs()
                        )
                    })
                    .unwrap_or_else(|| "declared in this node's configuration".into());
                tracing::warn!(
                    meta = %self.remote.url(),
                    key = %redact(key),
                    stream = %good.stream,
                    error = %error,
                    "metadata server unreachable: using the cached answer for this key (last known good, {age})"
                );
                Ok(good.stream)
            }
            None => {
                tracing::warn!(
                    meta = %self.remote.url(),
                    key = %redact(key),
                    error = %error,
                    "metadata server unreachable and this key has no cached answer: publish refused"
                );
                Err(KeyRejection::Unavailable(
                    "the metadata server is unreachable".into(),
                ))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        // The cache is consistent between calls: a panic elsewhere cannot leave it half-done.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StreamKeys for RemoteKeys {
    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> AuthorizeFuture<'a> {
        Box::pin(async move {
            check_app(request)?;
            self.check(&request.stream_key).await
        })
    }
}
