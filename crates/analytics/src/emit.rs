//! The emitter: how an origin or edge hands delivery events to analytics without
//! ever waiting for it.
//!
//! [`Emitter::emit`] is a `try_send` into a bounded queue: when the queue is full
//! the event is dropped and counted (`analytics_events_dropped_total{reason="queue_full"}`),
//! and the request it describes is not slowed down. A drain task empties the queue:
//! into an in-process [`Analytics`] (`rivulet serve`), or in batches POSTed to a
//! remote analytics server (`rivulet analytics`), where a batch that cannot be
//! delivered is dropped and counted (`reason="send_failed"`) rather than retried:
//! retrying would only grow the queue while analytics is down.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::sync::mpsc;

use crate::client::{TrustedProxies, session_id};
use crate::cmcd::{self, Cmcd};
use crate::event::{DeliveryBatch, DeliveryEvent};
use crate::service::Analytics;

/// Settings of an emitter.
#[derive(Clone, Debug)]
pub struct EmitConfig {
    /// This node's name, the `edge` of its events.
    pub edge: String,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Events queued at most.
    pub queue: usize,
    /// Events per batch (remote) or per hand-over (local).
    pub batch: usize,
    /// An edge's upstreams (base URLs) in the order of its `x-rivulet-upstream`
    /// indices: an event's `upstream` is the one that answered.
    pub upstreams: Vec<String>,
}

impl Default for EmitConfig {
    fn default() -> Self {
        Self {
            edge: "local".into(),
            trusted_proxies: TrustedProxies::default(),
            queue: 65_536,
            batch: 1_000,
            upstreams: Vec::new(),
        }
    }
}

/// Hands delivery events to analytics. Cheap to clone; a disabled emitter does nothing.
#[derive(Clone, Default)]
pub struct Emitter {
    inner: Option<Arc<EmitInner>>,
}

struct EmitInner {
    tx: mpsc::Sender<DeliveryEvent>,
    edge: String,
    trusted: TrustedProxies,
    salt: [u8; 16],
    upstreams: Vec<String>,
}

/// Who asked, as far as analytics is concerned.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub client: IpAddr,
    pub session: String,
    pub cmcd: Option<Box<Cmcd>>,
}

impl Emitter {
    /// An emitter that emits nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// An emitter into `analytics` in this process, and the task that drains it (it
    /// ends when every clone of the emitter is dropped).
    pub fn local(analytics: Analytics, config: EmitConfig) -> (Self, impl Future<Output = ()>) {
        let (tx, mut rx) = mpsc::channel(config.queue.max(1));
        let emitter = Self::with(tx, &config, *analytics.salt());
        let batch = config.batch.max(1);
        let drain = async move {
            let mut buf = Vec::with_capacity(batch);
            while rx.recv_many(&mut buf, batch).await > 0 {
                analytics.ingest_deliveries(buf.drain(..));
            }
        };
        (emitter, drain)
    }

    /// An emitter whose events go to the returned receiver: for a sink of the
    /// caller's own (benchmarks, tests). Session hashes use a random salt.
    pub fn channel(config: EmitConfig) -> (Self, mpsc::Receiver<DeliveryEvent>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        (Self::with(tx, &config, salt), rx)
    }

    /// An emitter that POSTs batches to `{base}/api/analytics/events` (with `token`
    /// as a bearer token, if given), and the task that drains it. A batch goes when
    /// it is full or a second after its first event.
    pub fn remote(
        base: &str,
        token: Option<String>,
        config: EmitConfig,
    ) -> (Self, impl Future<Output = ()> + use<>) {
        let (tx, mut rx) = mpsc::channel(config.queue.max(1));
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        let emitter = Self::with(tx, &config, salt);
        let url = format!("{}/api/analytics/events", base.trim_end_matches('/'));
        let batch = config.batch.max(1);
        let drain = async move {
            let client = reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .connect_timeout(SEND_TIMEOUT)
                .build()
                .unwrap_or_default();
            let mut buf: Vec<DeliveryEvent> = Vec::with_capacity(batch);
            loop {
                if rx.recv_many(&mut buf, batch).await == 0 {
                    break;
                }
                // Fill the batch for up to a second: fewer, larger requests.
                let deadline = tokio::time::Instant::now() + BATCH_DELAY;
                while buf.len() < batch {
                    let room = batch - buf.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut buf, room)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                let n = buf.len() as u64;
                let body = DeliveryBatch {
                    events: std::mem::take(&mut buf),
                };
                let mut request = client.post(&url).json(&body);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        metrics::counter!("analytics_events_sent_total").increment(n);
                    }
                    outcome => {
                        metrics::counter!("analytics_events_dropped_total", "reason" => "send_failed")
                            .increment(n);
                        let reason = match outcome {
                            Ok(r) => format!("answered {}", r.status()),
                            Err(e) => e.to_string(),
                        };
                        tracing::debug!(%url, events = n, %reason, "analytics batch dropped");
                    }
                }
            }
        };
        (emitter, drain)
    }

    fn with(tx: mpsc::Sender<DeliveryEvent>, config: &EmitConfig, salt: [u8; 16]) -> Self {
        Self {
            inner: Some(Arc::new(EmitInner {
                tx,
                edge: config.edge.clone(),
                trusted: config.trusted_proxies.clone(),
                salt,
                upstreams: config.upstreams.clone(),
            })),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// This node's name (`""` when disabled).
    pub fn edge(&self) -> &str {
        self.inner.as_ref().map_or("", |i| i.edge.as_str())
    }

    /// The upstream an edge's response came from, by its `x-rivulet-upstream` index.
    pub fn upstream(&self, index: &str) -> Option<&str> {
        let index: usize = index.parse().ok()?;
        self.inner
            .as_ref()
            .and_then(|i| i.upstreams.get(index))
            .map(String::as_str)
    }

    /// The client address, session and CMCD of a request: `peer` is the TCP peer,
    /// `query` the raw query string.
    pub fn request_info(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> RequestInfo {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded = forwarded_for(headers);
        let trusted = self.inner.as_ref().map(|i| &i.trusted);
        let client = match trusted {
            Some(t) => t.client_addr(peer, forwarded.as_deref()),
            None => crate::client::canonical(peer),
        };
        let mut cmcd = Cmcd::default();
        if let Some(list) = query.and_then(cmcd::from_query) {
            cmcd.merge_from(&list);
        }
        for name in cmcd::HEADERS {
            for value in headers.get_all(name) {
                if let Ok(v) = value.to_str() {
                    cmcd.merge_from(v);
                }
            }
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let salt = self.inner.as_ref().map_or([0; 16], |i| i.salt);
        let session = session_id(
            cmcd.sid.as_deref(),
            header(PLAYER_ID_HEADER),
            client,
            header("user-agent"),
            &salt,
        );
        RequestInfo {
            client,
            session,
            cmcd: (!cmcd.is_empty()).then(|| Box::new(cmcd)),
        }
    }

    /// Queues `event`, or drops and counts it if the queue is full. Never waits.
    pub fn emit(&self, event: DeliveryEvent) {
        let Some(inner) = &self.inner else {
            return;
        };
        match inner.tx.try_send(event) {
            Ok(()) => metrics::counter!("analytics_events_emitted_total").increment(1),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("analytics_events_dropped_total", "reason" => "queue_full")
                    .increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("analytics_events_dropped_total", "reason" => "closed")
                    .increment(1);
            }
        }
    }
}

/// Every `X-Forwarded-For` header, joined in order.
pub(crate) fn forwarded_for(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The header a player may use to name its session when it sends no CMCD.
pub const PLAYER_ID_HEADER: &str = "x-player-id";

/// How long a remote batch may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a remote batch waits to fill.
const BATCH_DELAY: Duration = Duration::from_secs(1);
