//! Webhooks: where stream events are POSTed, signed, with retries and a delivery log.
//!
//! Hooks come from the configuration ([`DeclaredWebhook`], upserted at start by URL)
//! and from the admin API (`/api/webhooks`). [`run_sender`] follows the store's
//! [`StreamEvent`](crate::StreamEvent)s, turns a new publish into `stream.published`
//! and its end into `stream.unpublished`, and delivers each to every hook that asked
//! for it: a JSON body signed with the hook's secret ([`sign`]), retried with
//! exponential backoff for a bounded time, every attempt written to the delivery log.
//!
//! The signature scheme (documented for receivers in `docs/webhooks.md`):
//! `Rivulet-Signature: v1=HEX(HMAC-SHA256(secret, TIMESTAMP + "." + BODY))` with
//! `Rivulet-Timestamp: TIMESTAMP` (Unix seconds, re-signed on every attempt).

mod sender;
mod sign;
mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use sender::{SenderConfig, run_sender, send_event};
pub use sign::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify};

use crate::model::ValidationError;

/// The events a hook can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub enum WebhookEvent {
    /// A publish started.
    #[serde(rename = "stream.published")]
    StreamPublished,
    /// The publisher left.
    #[serde(rename = "stream.unpublished")]
    StreamUnpublished,
    /// An edge switched pipelines (A/B). Reserved: not sent yet.
    #[serde(rename = "stream.failover")]
    StreamFailover,
    /// A recording is ready. Reserved: not sent yet.
    #[serde(rename = "recording.ready")]
    RecordingReady,
}

impl WebhookEvent {
    /// Every event, in the order they are documented.
    pub const ALL: [WebhookEvent; 4] = [
        Self::StreamPublished,
        Self::StreamUnpublished,
        Self::StreamFailover,
        Self::RecordingReady,
    ];

    /// The event's name: `stream.published`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamPublished => "stream.published",
            Self::StreamUnpublished => "stream.unpublished",
            Self::StreamFailover => "stream.failover",
            Self::RecordingReady => "recording.ready",
        }
    }

    /// The event named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name.trim())
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A webhook as the API shows it: the secret redacted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    /// The first characters of the secret, for recognising it.
    pub secret: String,
    /// Declared in the configuration (changed there, not through the API).
    pub declared: bool,
    /// ms since the Unix epoch.
    pub created_at: i64,
}

/// A webhook just created: the secret in full, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret, in full (shown only now).
    pub signing_secret: String,
}

/// The body of `POST /api/webhooks`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// The events to send; all of them if absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// The signing secret (at least 16 characters); generated if absent.
    #[serde(default)]
    pub secret: Option<String>,
}

/// The body of `PATCH /api/webhooks/{id}`: absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookUpdate {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub secret: Option<String>,
}

/// A webhook declared in the configuration (`[[webhooks]]`, `--webhook`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredWebhook {
    pub url: String,
    /// Event names; all events if empty.
    #[serde(default)]
    pub events: Vec<String>,
    pub secret: String,
}

impl std::fmt::Debug for DeclaredWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the secret.
        f.debug_struct("DeclaredWebhook")
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl DeclaredWebhook {
    /// Checks the URL, the event names and the secret.
    pub fn validate(&self) -> Result<(Vec<WebhookEvent>, String), ValidationError> {
        let url = validate_url(&self.url)?;
        let events = validate_events(Some(&self.events))?;
        validate_secret(&self.secret)?;
        Ok((events, url))
    }
}

/// One delivery attempt, as the log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// The delivery's id (`Rivulet-Delivery` header): the same on every retry.
    pub delivery: String,
    pub event: String,
    pub stream: Option<String>,
    /// 1 for the first try.
    pub attempt: i64,
    /// When it was tried, ms since the Unix epoch.
    pub at: i64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i64>,
    /// Why it failed (a non-2xx status, a timeout, a refused connection), if it did.
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// The last attempts of one hook, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryLog {
    pub deliveries: Vec<Delivery>,
}

/// Attempts kept per hook in the delivery log.
pub const DELIVERY_LOG_LEN: i64 = 100;
/// Shortest accepted signing secret.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest accepted hook URL.
const MAX_URL_LEN: usize = 2048;

pub(crate) fn validate_url(url: &str) -> Result<String, ValidationError> {
    let url = url.trim();
    let invalid = |reason: String| ValidationError {
        field: "url".into(),
        reason,
    };
    if url.len() > MAX_URL_LEN {
        return Err(invalid(format!("longer than {MAX_URL_LEN} characters")));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(format!("'{url}' is not a URL ({e}): use http://HOST/PATH")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(format!(
            "'{url}' is not an http:// or https:// URL with a host"
        )));
    }
    Ok(url.to_owned())
}

pub(crate) fn validate_events(
    names: Option<&Vec<String>>,
) -> Result<Vec<WebhookEvent>, ValidationError> {
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return Ok(WebhookEvent::ALL.to_vec());
    };
    let mut events = Vec::new();
    for name in names {
        let event = WebhookEvent::parse(name).ok_or_else(|| ValidationError {
            field: "events".into(),
            reason: format!(
                "unknown event '{name}': use {}",
                WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
            ),
        })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    Ok(events)
}

pub(crate) fn validate_secret(secret: &str) -> Result<(), ValidationError> {
    if secret.chars().count() < MIN_SECRET_LEN || secret.len() > 256 {
        return Err(ValidationError {
            field: "secret".into(),
            reason: format!("must be {MIN_SECRET_LEN} to 256 characters"),
        });
    }
    Ok(())
}

/// A secret as the API shows it.
pub(crate) fn redact_secret(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}…")
}
