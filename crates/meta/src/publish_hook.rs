//! The publish authorisation hook, like nginx-rtmp's `on_publish`: after the stream key
//! resolved to a stream, the operator's own HTTP endpoint is asked, and a publish goes
//! ahead only if it answers 2xx.
//!
//! [`PublishHook`] wraps any [`StreamKeys`] (the store, the remote key check, static
//! keys), so the ingest sees one key check and never depends on this crate.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use access::{AuthorizeFuture, KeyRejection, PublishRequest, StreamKeys};
use serde_json::json;

use crate::webhooks::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// Where and how the hook is asked.
#[derive(Clone)]
pub struct PublishHookConfig {
    /// The URL POSTed to.
    pub url: String,
    /// Time limit of the answer.
    pub timeout: Duration,
    /// What a hook that does not answer (down, timeout) means: `true` lets the
    /// publish go ahead, `false` refuses it.
    pub fail_open: bool,
    /// If set, requests are signed like webhooks (`Rivulet-Signature`).
    pub secret: Option<String>,
}

impl std::fmt::Debug for PublishHookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the secret.
        f.debug_struct("PublishHookConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

/// A key check followed by the authorisation hook.
pub struct PublishHook {
    keys: Arc<dyn StreamKeys>,
    config: PublishHookConfig,
    client: reqwest::Client,
}

/// The hook's HTTP client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the authorisation hook (on_publish_url)")]
pub struct HookSetupError(#[source] reqwest::Error);

impl PublishHook {
    /// The key check the ingest asks: `keys`, followed by the operator's hook (asked
    /// after `keys` accepted a key) when one is configured.
    pub fn around(
        keys: Arc<dyn StreamKeys>,
        hook: Option<&PublishHookConfig>,
    ) -> Result<Arc<dyn StreamKeys>, HookSetupError> {
        Ok(match hook {
            Some(hook) => Arc::new(Self::new(keys, hook.clone()).map_err(HookSetupError)?),
            None => keys,
        })
    }

    /// Asks `config`'s hook after `keys` accepted a key.
    pub fn new(
        keys: Arc<dyn StreamKeys>,
        config: PublishHookConfig,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Rivulet-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            keys,
            config,
            client,
        })
    }

    async fn ask(&self, stream: &str, request: &PublishRequest) -> Result<(), KeyRejection> {
        let body = json!({
            "event": "stream.publish",
            "stream": stream,
            "app": request.app,
            "client_ip": request.peer.ip().to_string(),
            "at": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        })
        .to_string();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut post = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Rivulet-Event", "stream.publish")
            .header(TIMESTAMP_HEADER, timestamp.to_string());
        if let Some(secret) = &self.config.secret {
            post = post.header(SIGNATURE_HEADER, sign(secret, timestamp, body.as_bytes()));
        }
        match post.body(body).send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => {
                let status = answer.status();
                // The hook may say why, in a short text body; it reaches the encoder.
                let reason = answer.text().await.unwrap_or_default();
                let reason: String = reason
                    .trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                metrics::counter!("publish_hook_answers_total", "result" => "refused").increment(1);
                Err(KeyRejection::Refused(if reason.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {reason}")
                }))
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    format!("no answer within {} ms", self.config.timeout.as_millis())
                } else {
                    format!("cannot reach it: {e}")
                };
                metrics::counter!("publish_hook_answers_total", "result" => "unreachable")
                    .increment(1);
                if self.config.fail_open {
                    tracing::warn!(stream = %stream, hook = %self.config.url, reason = %why, "authorisation hook unreachable; publish allowed (fail open)");
                    Ok(())
                } else {
                    tracing::warn!(stream = %stream, hook = %self.config.url, reason = %why, "authorisation hook unreachable; publish refused (fail closed)");
                    Err(KeyRejection::Unavailable(format!(
                        "the authorisation hook did not answer: {why}"
                    )))
                }
            }
        }
    }
}

impl StreamKeys for PublishHook {
    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> AuthorizeFuture<'a> {
        Box::pin(async move {
            let stream = self.keys.authorize(request).await?;
            self.ask(&stream, request).await?;
            Ok(stream)
        })
    }
}
