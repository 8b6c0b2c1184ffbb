//! Delivering events to the hooks: one task per event and hook, retried with
//! exponential backoff until it succeeds or its time is up. Never blocks the store.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::store::HookTarget;
use super::{Delivery, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookEvent, sign};
use crate::events::StreamEvent;
use crate::secret::generate_key;
use crate::store::{MetaStore, now_ms};

/// How deliveries are made and retried.
#[derive(Clone, Copy, Debug)]
pub struct SenderConfig {
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// Wait before the first retry; doubled after each failure.
    pub first_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// No attempt starts later than this after the first one.
    pub retry_for: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            retry_for: Duration::from_secs(3600),
        }
    }
}

/// Follows the store's events and delivers `stream.published` and
/// `stream.unpublished` to the hooks that want them, until `stop` completes.
pub async fn run_sender(
    store: MetaStore,
    config: SenderConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let Some(client) = client(config) else {
        return;
    };
    let mut events = store.subscribe();
    let mut publishes = Publishes::default();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => return,
            e = events.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "webhooks fell behind the store's events; some were not sent"
                );
                metrics::counter!("webhook_events_missed_total").increment(n);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some((kind, body)) = publishes.handle(&event) else {
            continue;
        };
        dispatch(&store, &client, config, kind, body).await;
    }
}

/// Sends one event that does not come from the store's stream events (e.g.
/// `recording.ready`, from the recorder) to the hooks that want it, in the background.
pub fn send_event(store: &MetaStore, config: SenderConfig, kind: WebhookEvent, fields: Value) {
    let store = store.clone();
    tokio::spawn(async move {
        if let Some(client) = client(config) {
            dispatch(&store, &client, config, kind, fields).await;
        }
    });
}

/// The HTTP client of deliveries: the attempt's time limit, no redirects.
fn client(config: SenderConfig) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Rivulet-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| tracing::error!(error = %e, "webhooks off: cannot build the HTTP client"))
        .ok()
}

/// One task per hook that wants `kind`.
async fn dispatch(
    store: &MetaStore,
    client: &reqwest::Client,
    config: SenderConfig,
    kind: WebhookEvent,
    body: Value,
) {
    let hooks = match store.hook_targets(kind).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(event = %kind, error = %e, "cannot read the webhooks; event not sent");
            return;
        }
    };
    for hook in hooks {
        tokio::spawn(deliver(
            store.clone(),
            client.clone(),
            config,
            hook,
            kind,
            body.clone(),
        ));
    }
}

/// Turns the store's stream events into webhook events. A `live` event is sent when a
/// publish starts and again whenever its facts (bitrate, renditions) change: only one
/// whose publish start differs from the last one seen is a new publish.
#[derive(Debug, Default)]
struct Publishes {
    /// The start (epoch ms) of each live stream's publish.
    live: HashMap<String, i64>,
}

impl Publishes {
    /// The webhook event `event` makes, with its body's fields, if it makes one.
    fn handle(&mut self, event: &StreamEvent) -> Option<(WebhookEvent, Value)> {
        match event {
            StreamEvent::Live {
                stream,
                live: state,
                ..
            } => {
                let since = state.since?;
                if self.live.insert(stream.clone(), since) == Some(since) {
                    return None;
                }
                let body = json!({
                    "stream": stream,
                    "since": since,
                    "ingest_node": state.ingest_node,
                });
                Some((WebhookEvent::StreamPublished, body))
            }
            StreamEvent::Offline { stream, .. } => {
                self.live.remove(stream);
                Some((WebhookEvent::StreamUnpublished, json!({ "stream": stream })))
            }
            // A live stream deleted: its publish is over.
            StreamEvent::Deleted { stream } => self
                .live
                .remove(stream)
                .map(|_| (WebhookEvent::StreamUnpublished, json!({ "stream": stream }))),
            _ => None,
        }
    }
}

/// One event to one hook, with retries; every attempt is logged.
async fn deliver(
    store: MetaStore,
    client: reqwest::Client,
    config: SenderConfig,
    hook: HookTarget,
    kind: WebhookEvent,
    fields: Value,
) {
    let delivery = format!("dlv_{}", generate_key());
    let stream = fields["stream"].as_str().map(str::to_owned);
    let mut body = json!({ "id": delivery, "event": kind.as_str(), "at": now_ms() });
    if let (Some(out), Value::Object(extra)) = (body.as_object_mut(), fields) {
        out.extend(extra);
    }
    let body = body.to_string();
    let first = Instant::now();
    let mut backoff = config.first_backoff;
    for attempt in 1.. {
        let timestamp = unix_seconds();
        let started = Instant::now();
        let at = now_ms();
        let result = client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Rivulet-Event", kind.as_str())
            .header("Rivulet-Delivery", delivery.as_str())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                sign(&hook.secret, timestamp, body.as_bytes()),
            )
            .body(body.clone())
            .send()
            .await;
        let (status, error) = match &result {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
            Ok(r) => (
                Some(r.status().as_u16()),
                Some(format!("the receiver answered {}", r.status())),
            ),
            Err(e) if e.is_timeout() => (
                None,
                Some(format!(
                    "no answer within {} ms",
                    config.timeout.as_millis()
                )),
            ),
            Err(e) => (
                None,
                Some(format!("cannot reach the receiver: {}", error_chain(e))),
            ),
        };
        let ok = error.is_none();
        metrics::counter!("webhook_attempts_total", "result" => if ok { "ok" } else { "failed" })
            .increment(1);
        let entry = Delivery {
            delivery: delivery.clone(),
            event: kind.as_str().to_owned(),
            stream: stream.clone(),
            attempt,
            at,
            status: status.map(i64::from),
            error: error.clone(),
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        };
        if let Err(e) = store.log_delivery(hook.id, &entry).await {
            tracing::warn!(hook = hook.id, error = %e, "cannot write the webhook delivery log");
        }
        if ok {
            tracing::debug!(hook = hook.id, event = %kind, attempt, "webhook delivered");
            return;
        }
        let reason = error.unwrap_or_default();
        if first.elapsed() + backoff > config.retry_for {
            tracing::warn!(hook = hook.id, url = %hook.url, event = %kind, attempt, reason = %reason, "webhook given up after its retry time");
            metrics::counter!("webhook_deliveries_abandoned_total").increment(1);
            return;
        }
        tracing::info!(hook = hook.id, url = %hook.url, event = %kind, attempt, reason = %reason, retry_in_ms = backoff.as_millis() as u64, "webhook failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.max_backoff);
        // A hook deleted or changed to drop this event meanwhile gets no more tries.
        match store.hook_targets(kind).await {
            Ok(hooks) if hooks.iter().any(|h| h.id == hook.id) => {}
            _ => return,
        }
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The error with its causes: reqwest's own text is only "error sending request".
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LiveState;

    fn live(stream: &str, since: i64, bitrate: i64) -> StreamEvent {
        StreamEvent::Live {
            stream: stream.into(),
            version: 1,
            live: LiveState {
                live: true,
                since: Some(since),
                ingest_node: Some("node".into()),
                ingest_bitrate: Some(bitrate),
                renditions: None,
                ingest_stats: None,
            },
        }
    }

    #[test]
    fn a_publish_is_announced_once_and_its_end_once() {
        let mut p = Publishes::default();
        let kind = |r: Option<(WebhookEvent, Value)>| r.map(|(k, _)| k);
        let (k, body) = p.handle(&live("a", 100, 1)).unwrap();
        assert_eq!(k, WebhookEvent::StreamPublished);
        assert_eq!(body["since"], 100);
        // New facts of the same publish are not a new publish.
        assert_eq!(kind(p.handle(&live("a", 100, 2))), None);
        assert_eq!(
            kind(p.handle(&StreamEvent::Offline {
                stream: "a".into(),
                version: 3
            })),
            Some(WebhookEvent::StreamUnpublished)
        );
        // The next publish is announced again; a deleted stream that was not live is not.
        assert_eq!(
            kind(p.handle(&live("a", 200, 1))),
            Some(WebhookEvent::StreamPublished)
        );
        assert_eq!(
            kind(p.handle(&StreamEvent::Deleted { stream: "b".into() })),
            None
        );
        assert_eq!(
            kind(p.handle(&StreamEvent::Deleted { stream: "a".into() })),
            Some(WebhookEvent::StreamUnpublished)
        );
    }
}
