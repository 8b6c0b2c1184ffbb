//! Restream targets of a stream: external RTMP URLs (with their stream keys, which are
//! secrets) that receive the stream while it is live. The store keeps the list; the
//! forwarding runs on the data path (`crates/restream`), which reports each target's
//! state back through [`RestreamStates`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::error::MetaError;
use crate::model::{StreamName, ValidationError};
use crate::store::{MetaStore, now_ms};

/// Targets per stream at most.
pub const MAX_TARGETS: i64 = 10;

/// A target as the API shows it: the URL's key redacted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RestreamTarget {
    pub id: i64,
    pub stream: String,
    /// `rtmp://host:port/app/` and the first three characters of the key.
    pub url: String,
    pub created_at: i64,
    /// Where forwarding stands on this server (`idle` when the stream is not live).
    pub status: RestreamStatus,
}

/// A target just added: its URL in full, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RestreamTargetWithUrl {
    #[serde(flatten)]
    pub target: RestreamTarget,
    /// The URL with its key, in full (shown only now).
    pub full_url: String,
}

/// The body of `POST /api/streams/{name}/restreams`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRestreamTarget {
    /// `rtmp://HOST[:PORT]/APP/STREAM_KEY`, e.g. `rtmp://a.rtmp.youtube.com/live2/KEY`.
    pub url: String,
}

/// The targets of a stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RestreamList {
    pub restreams: Vec<RestreamTarget>,
}

/// A target's forwarding state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestreamStatus {
    /// `idle`, `connecting`, `live` or `failed`.
    pub state: RestreamPhase,
    /// Why it failed (it is being retried), if it did.
    pub reason: Option<String>,
    /// Bytes sent to it in the current (or last) publish.
    pub bytes_sent: u64,
}

/// See [`RestreamStatus::state`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestreamPhase {
    #[default]
    Idle,
    Connecting,
    Live,
    Failed,
}

/// Where target states come from: the forwarding tasks, through the binary.
pub trait RestreamStates: Send + Sync + 'static {
    /// The state of target `id`, if it was started since the process began.
    fn status(&self, id: i64) -> Option<RestreamStatus>;
}

/// Where the store keeps the [`RestreamStates`] handed in.
#[derive(Default)]
pub(crate) struct StatesSlot(pub(crate) std::sync::OnceLock<Arc<dyn RestreamStates>>);

impl std::fmt::Debug for StatesSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatesSlot")
    }
}

impl MetaStore {
    /// Lets the API show the forwarding tasks' states.
    pub fn set_restream_states(&self, states: Arc<dyn RestreamStates>) {
        let _ = self.restream_states().set(states);
    }

    /// Adds a target to a stream; the answer holds its URL in full, this once.
    pub async fn add_restream(
        &self,
        name: &StreamName,
        new: NewRestreamTarget,
    ) -> Result<RestreamTargetWithUrl, MetaError> {
        let url = validate_target_url(&new.url)?;
        let stream_id = self.stream_id(name).await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM restream_targets WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
        if count >= MAX_TARGETS {
            return Err(ValidationError::new(
                "url",
                format!("a stream has at most {MAX_TARGETS} restream targets; delete one first"),
            )
            .into());
        }
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO restream_targets (stream_id, url, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(stream_id)
        .bind(url.as_str())
        .bind(now)
        .fetch_one(self.pool())
        .await?
        .try_get(0)?;
        Ok(RestreamTargetWithUrl {
            target: self.target(id, name.as_str(), &url, now),
            full_url: url,
        })
    }

    /// The targets of a stream, by id, keys redacted.
    pub async fn restreams(&self, name: &StreamName) -> Result<Vec<RestreamTarget>, MetaError> {
        Ok(self
            .restream_urls(name.as_str())
            .await?
            .into_iter()
            .map(|(id, url, created_at)| self.target(id, name.as_str(), &url, created_at))
            .collect())
    }

    /// The targets of a stream with their full URLs (id, url, created_at): for the
    /// forwarding, never for the API.
    pub async fn restream_urls(&self, name: &str) -> Result<Vec<(i64, String, i64)>, MetaError> {
        let rows = sqlx::query(
            "SELECT t.id, t.url, t.created_at FROM restream_targets t \
             JOIN streams s ON s.id = t.stream_id WHERE s.name = $1 ORDER BY t.id",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Removes a target (a forwarding in progress stops at the next refresh).
    pub async fn delete_restream(&self, name: &StreamName, id: i64) -> Result<(), MetaError> {
        let stream_id = self.stream_id(name).await?;
        let done = sqlx::query("DELETE FROM restream_targets WHERE id = $1 AND stream_id = $2")
            .bind(id)
            .bind(stream_id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(MetaError::NotFoundWhat(format!(
                "stream '{name}' has no restream target {id}"
            )));
        }
        Ok(())
    }

    async fn stream_id(&self, name: &StreamName) -> Result<i64, MetaError> {
        sqlx::query("SELECT id FROM streams WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| MetaError::NotFound(name.to_string()))?
            .try_get(0)
            .map_err(MetaError::from)
    }

    fn target(&self, id: i64, stream: &str, url: &str, created_at: i64) -> RestreamTarget {
        RestreamTarget {
            id,
            stream: stream.to_owned(),
            url: redact_target_url(url),
            created_at,
            status: self
                .restream_states()
                .get()
                .and_then(|s| s.status(id))
                .unwrap_or_default(),
        }
    }
}

/// Checks a target URL: `rtmp://HOST[:PORT]/APP/KEY` or `rtmps://…` (TLS, trusting the
/// web's public certificate authorities).
fn validate_target_url(url: &str) -> Result<String, ValidationError> {
    let url = url.trim();
    let bad = |reason: String| ValidationError::new("url", reason);
    let Some(rest) = url
        .strip_prefix("rtmp://")
        .or_else(|| url.strip_prefix("rtmps://"))
    else {
        return Err(bad(
            "not an rtmp:// or rtmps:// URL: use rtmp://HOST[:PORT]/APP/STREAM_KEY".into(),
        ));
    };
    if url.len() > 2048 || url.chars().any(char::is_control) {
        return Err(bad("too long, or has control characters".into()));
    }
    let Some((host, path)) = rest.split_once('/') else {
        return Err(bad("expected rtmp://HOST[:PORT]/APP/STREAM_KEY".into()));
    };
    match path.rsplit_once('/') {
        Some((app, key)) if !host.is_empty() && !app.is_empty() && !key.is_empty() => {
            Ok(url.to_owned())
        }
        _ => Err(bad(
            "expected rtmp://HOST[:PORT]/APP/STREAM_KEY (host, application and key)".into(),
        )),
    }
}

/// The URL with its key cut to three characters.
fn redact_target_url(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, key)) => {
            let shown: String = key.chars().take(3).collect();
            format!("{base}/{shown}…")
        }
        None => "…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_are_checked_and_redacted() {
        assert!(validate_target_url("rtmp://a.rtmp.youtube.com/live2/abcd-efgh").is_ok());
        assert!(validate_target_url("rtmp://host:1936/app/sub/key").is_ok());
        assert!(validate_target_url("rtmps://live-api-s.facebook.com:443/rtmp/KEY").is_ok());
        for bad in [
            "http://x/a/b",
            "rtmp://host/key",
            "rtmp:///live/k",
            "rtmps://h/key",
        ] {
            assert!(validate_target_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redact_target_url("rtmp://a.rtmp.youtube.com/live2/abcd-efgh"),
            "rtmp://a.rtmp.youtube.com/live2/abc…"
        );
    }
}
