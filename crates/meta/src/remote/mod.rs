//! The metadata server seen from another node: `rivulet serve --meta-url` talks to a
//! `rivulet meta` over HTTP with its admin token.
//!
//! - [`RemoteMeta`]: the HTTP client — key checks, declared streams, live state, a
//!   stream's events.
//! - [`RemoteKeys`]: the ingest's key check ([`access::StreamKeys`]) over
//!   [`RemoteMeta`], with a short-lived cache of answers and last-known-good keys
//!   when the server is unreachable ([`KeyCache`], sans-IO).
//! - [`AdminClient`]: the admin API's streams commands (`rivulet streams …`).
//! - [`text`]: the admin API's answers as text for a terminal.
//! - [`SseParser`]: the `text/event-stream` parser behind [`RemoteEvents`].
//!
//! Plain `http://` only (no TLS in this build): run the metadata server on a private
//! network, or put a TLS tunnel between the nodes.

mod admin;
mod cache;
mod keys;
mod options;
mod sse;
pub mod text;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::ErrorBody;
use crate::events::StreamEvent;
use crate::model::{
    Declared, DeclaredKey, KeyCheck, KeyOwner, LiveReport, NodeReset, NodeResetDone, Stream,
    StreamName,
};

pub use admin::{AdminClient, AdminError, ListFilter, StreamChanges};
pub use cache::{CacheLookup, KeyCache, KeyCacheConfig, LastGood};
pub use keys::{Clock, RemoteKeys};
pub use options::{RemoteOptions, RemoteOptionsError, RemoteSettings};
pub use sse::{MAX_PENDING, SseEvent, SseOverflow, SseParser};

/// Why a request to the metadata server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The URL given is not one this client can use.
    #[error("'{0}' is not a usable metadata server URL: give http://HOST:PORT")]
    InvalidUrl(String),
    /// No answer: the connection failed, broke off or timed out. `reason` is the
    /// innermost cause (e.g. "Connection refused"), as HTTP client errors bury it.
    #[error("cannot reach the metadata server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with a 5xx: it is up but cannot serve (database down, …).
    #[error("the metadata server at {url} failed: {status}: {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },
    /// The server refused the token.
    #[error("the metadata server at {url} refused the token ({message}): check --meta-token")]
    Unauthorized { url: String, message: String },
    /// Any other refusal (4xx): the request was wrong, e.g. an unknown stream.
    #[error("the metadata server refused {what}: {status}: {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
        field: Option<String>,
    },
    /// A 2xx answer this client cannot read (version skew?).
    #[error("unexpected answer from the metadata server to {what}: {reason}")]
    BadAnswer { what: String, reason: String },
    /// The event stream sent an endless line.
    #[error(transparent)]
    Overflow(#[from] SseOverflow),
}

impl RemoteError {
    /// Whether the server could not answer at all (connection error, time-out, 5xx):
    /// the case where the ingest falls back on last-known-good keys.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Server { .. })
    }

    /// The HTTP status of a refusal (4xx), if this is one.
    pub fn refused_status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }
}

/// Timeouts of a [`RemoteMeta`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Whole-request limit for API calls (the key check's worst case when the server
    /// hangs). Event streams are not limited, only their connection.
    pub timeout: Duration,
    /// Connection limit.
    pub connect_timeout: Duration,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// An HTTP client of a remote metadata server's `/api`, with its admin token.
#[derive(Clone)]
pub struct RemoteMeta {
    http: reqwest::Client,
    /// Without the whole-request timeout, for event streams.
    streaming: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for RemoteMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteMeta")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RemoteMeta {
    /// A client of the server at `url` (`http://HOST:PORT`, with or without a
    /// trailing `/`), authenticating with the admin `token`.
    pub fn new(url: &str, token: &str, config: RemoteConfig) -> Result<Self, RemoteError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let valid = base
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#', ' ']));
        if !valid {
            return Err(RemoteError::InvalidUrl(url.to_owned()));
        }
        let build = |timeout: Option<Duration>| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .user_agent(concat!("rivulet/", env!("CARGO_PKG_VERSION")));
            if let Some(timeout) = timeout {
                builder = builder.timeout(timeout);
            }
            builder
                .build()
                .map_err(|_| RemoteError::InvalidUrl(url.to_owned()))
        };
        Ok(Self {
            http: build(Some(config.timeout))?,
            streaming: build(None)?,
            base,
            token: token.to_owned(),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The stream `key` publishes, or `None` if no stream has it.
    pub async fn check_key(&self, key: &str) -> Result<Option<String>, RemoteError> {
        let body = KeyCheck {
            key: key.to_owned(),
        };
        match self
            .call::<KeyOwner>(Method::POST, "/api/keys/check", Some(&body), "a key check")
            .await
        {
            Ok(owner) => Ok(Some(owner.stream)),
            Err(e) if e.refused_status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates `name` with `key`, or gives the existing stream this key (`--stream
    /// NAME=KEY`). Returns whether anything changed.
    pub async fn declare(&self, name: &StreamName, key: &str) -> Result<bool, RemoteError> {
        let body = DeclaredKey {
            key: key.to_owned(),
        };
        let declared: Declared = self
            .call(
                Method::PUT,
                &format!("/api/streams/{name}/key"),
                Some(&body),
                "a declared stream",
            )
            .await?;
        Ok(declared.changed)
    }

    /// Reports `name` live with these facts.
    pub async fn set_live(&self, name: &str, report: &LiveReport) -> Result<(), RemoteError> {
        self.call_empty(
            Method::PUT,
            &stream_path(name, "/live"),
            Some(report),
            "a live report",
        )
        .await
    }

    /// Reports `name` offline; with `since`, only if its live publish started then.
    pub async fn set_offline(&self, name: &str, since: Option<i64>) -> Result<(), RemoteError> {
        let mut path = stream_path(name, "/live");
        if let Some(since) = since {
            path += &format!("?since={since}");
        }
        self.call_empty::<()>(Method::DELETE, &path, None, "an offline report")
            .await
    }

    /// Marks offline every stream `node` reported live. Returns how many.
    pub async fn reset_node(&self, node: &str) -> Result<u64, RemoteError> {
        let body = NodeReset {
            ingest_node: node.to_owned(),
        };
        let done: NodeResetDone = self
            .call(Method::POST, "/api/live/reset", Some(&body), "a node reset")
            .await?;
        Ok(done.streams)
    }

    /// One stream, as the public sees it.
    pub async fn stream(&self, name: &str) -> Result<Stream, RemoteError> {
        self.call::<Stream>(
            Method::GET,
            &stream_path(name, ""),
            None::<&()>,
            "a stream read",
        )
        .await
    }

    /// Follows the server-sent events of one stream (`/api/streams/{name}/events`).
    pub async fn events(&self, name: &str) -> Result<RemoteEvents, RemoteError> {
        let url = format!("{}{}", self.base, stream_path(name, "/events"));
        let response = self
            .streaming
            .get(&url)
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        let response = self.check_status(response, "an event stream").await?;
        Ok(RemoteEvents {
            response,
            parser: SseParser::new(),
            base: self.base.clone(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        what: &str,
    ) -> Result<T, RemoteError> {
        let response = self.send(method, path, body).await?;
        let response = self.check_status(response, what).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|source| self.unreachable(source))?;
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::BadAnswer {
            what: what.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn call_empty<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        what: &str,
    ) -> Result<(), RemoteError> {
        let response = self.send(method, path, body).await?;
        self.check_status(response, what).await.map(drop)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, RemoteError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .map_err(|source| self.unreachable(source))
    }

    /// An error for anything but 2xx.
    async fn check_status(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<reqwest::Response, RemoteError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // The error body is best-effort: a proxy in between may answer in HTML.
        let text = response.text().await.unwrap_or_default();
        let (message, field) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error, body.field),
            Err(_) => (text.chars().take(200).collect(), None),
        };
        let url = self.base.clone();
        Err(if status.is_server_error() {
            RemoteError::Server {
                url,
                status: status.as_u16(),
                message,
            }
        } else if status == StatusCode::UNAUTHORIZED {
            RemoteError::Unauthorized { url, message }
        } else {
            RemoteError::Refused {
                what: what.to_owned(),
                status: status.as_u16(),
                message,
                field,
            }
        })
    }

    fn unreachable(&self, source: reqwest::Error) -> RemoteError {
        unreachable(&self.base, &source)
    }
}

/// What a stream's event stream delivers.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RemoteEvent {
    /// The stream as it is now: first, and again after the client fell behind.
    Snapshot(Box<Stream>),
    /// One change.
    Change(StreamEvent),
}

/// An open event stream of one stream.
pub struct RemoteEvents {
    response: reqwest::Response,
    parser: SseParser,
    base: String,
}

impl RemoteEvents {
    /// The next event; `None` when the server ended the stream (the stream was
    /// deleted, or the server stops).
    pub async fn next(&mut self) -> Result<Option<RemoteEvent>, RemoteError> {
        loop {
            while let Some(event) = self.parser.poll_event() {
                let parsed = if event.event == "snapshot" {
                    serde_json::from_str(&event.data).map(|s| RemoteEvent::Snapshot(Box::new(s)))
                } else {
                    match serde_json::from_str(&event.data) {
                        Ok(change) => Ok(RemoteEvent::Change(change)),
                        // An event type of a newer server: skip it.
                        Err(_) => continue,
                    }
                };
                return parsed.map(Some).map_err(|e| RemoteError::BadAnswer {
                    what: "an event stream".into(),
                    reason: e.to_string(),
                });
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.parser.handle_input(&bytes)?,
                Ok(None) => return Ok(None),
                Err(source) => return Err(unreachable(&self.base, &source)),
            }
        }
    }
}

fn unreachable(url: &str, error: &reqwest::Error) -> RemoteError {
    let reason = if error.is_timeout() {
        "no answer in time (the limit is --meta-timeout-ms)".to_owned()
    } else {
        let mut cause: &dyn std::error::Error = error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    };
    RemoteError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

/// `/api/streams/NAME{suffix}`, the name escaped if it is not URL-safe (such a name
/// cannot exist and is answered 404).
pub fn stream_path(name: &str, suffix: &str) -> String {
    let escaped: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/api/streams/{escaped}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_taken() {
        let config = RemoteConfig::default();
        let ok = RemoteMeta::new("http://meta.example:8080/", "t", config).unwrap();
        assert_eq!(ok.url(), "http://meta.example:8080");
        for bad in ["https://x", "meta:8080", "http://", "ftp://x", "http://x?y"] {
            assert!(
                matches!(
                    RemoteMeta::new(bad, "t", config),
                    Err(RemoteError::InvalidUrl(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(stream_path("a b", "/live"), "/api/streams/a%20b/live");
    }
}
