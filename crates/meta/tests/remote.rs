//! The metadata server seen from an ingest node: [`RemoteMeta`] against the real API
//! (SQLite and PostgreSQL), and [`RemoteKeys`]' cache and last-known-good fallback
//! against a metadata server whose answers the test controls, with a hand-moved clock.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use access::{KeyRejection, PublishRequest, StreamKeys};
use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use meta::remote::{
    KeyCacheConfig, RemoteConfig, RemoteError, RemoteEvent, RemoteKeys, RemoteMeta,
};
use meta::{LiveReport, StreamEvent, StreamName};
use reqwest::Method;
use serde_json::{Value, json};

use common::{Harness, TOKEN};

on_both_databases!(remote_client_round_trip);

async fn remote_client_round_trip(h: Harness) {
    let remote = RemoteMeta::new(&h.base, TOKEN, RemoteConfig::default()).unwrap();
    let created = h.create(json!({"name": "remote", "title": "First"})).await;
    let key = created["key"].as_str().unwrap();

    // Key checks: the stream, or None for an unknown key; a wrong token is no answer.
    assert_eq!(
        remote.check_key(key).await.unwrap().as_deref(),
        Some("remote")
    );
    assert_eq!(remote.check_key("no-such-key").await.unwrap(), None);
    let wrong = RemoteMeta::new(&h.base, "wrong-token-0123456", RemoteConfig::default()).unwrap();
    let err = wrong.check_key(key).await.unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized { .. }), "{err:?}");
    assert!(!err.is_unavailable());
    // The key travels in the body: an unauthenticated check is refused before lookup.
    let (status, body) = h
        .send(
            h.client
                .post(h.url("/api/keys/check"))
                .json(&json!({"key": key})),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // Declared streams: created, re-keyed, unchanged.
    let name = StreamName::parse("declared").unwrap();
    assert!(remote.declare(&name, "declared-key-1").await.unwrap());
    assert!(!remote.declare(&name, "declared-key-1").await.unwrap());
    assert!(remote.declare(&name, "declared-key-2").await.unwrap());
    assert_eq!(remote.check_key("declared-key-1").await.unwrap(), None);
    assert_eq!(
        remote.check_key("declared-key-2").await.unwrap().as_deref(),
        Some("declared")
    );
    // A key another stream has is a conflict; a bad key is named.
    let err = remote
        .declare(&StreamName::parse("other").unwrap(), "declared-key-2")
        .await
        .unwrap_err();
    assert_eq!(err.refused_status(), Some(409), "{err:?}");
    let err = remote.declare(&name, "a b").await.unwrap_err();
    assert!(
        matches!(&err, RemoteError::Refused { status: 422, field: Some(f), .. } if f == "key"),
        "{err:?}"
    );

    // Live state: reported, read back, conditional offline, node reset.
    let mut events = remote.events("remote").await.unwrap();
    let Some(RemoteEvent::Snapshot(snapshot)) = events.next().await.unwrap() else {
        panic!("the event stream starts with a snapshot")
    };
    assert_eq!(snapshot.title, "First");
    let report = LiveReport {
        since: 1_700_000_000_000,
        ingest_node: Some("node-a:1935".into()),
        ingest_bitrate: Some(2_500_000),
        renditions: Some(json!(["source", "720p"])),
        ingest_stats: Some(json!({"protocol": "srt", "packets_retransmitted": 3})),
    };
    remote.set_live("remote", &report).await.unwrap();
    let stream = remote.stream("remote").await.unwrap();
    assert!(stream.live.live);
    assert_eq!(stream.live.since, Some(report.since));
    assert_eq!(stream.live.ingest_node.as_deref(), Some("node-a:1935"));
    assert_eq!(stream.live.ingest_bitrate, Some(2_500_000));
    assert_eq!(stream.live.renditions, Some(json!(["source", "720p"])));
    assert_eq!(stream.live.ingest_stats, report.ingest_stats);
    // An offline report for an older publish does not end this one.
    remote
        .set_offline("remote", Some(report.since - 1))
        .await
        .unwrap();
    assert!(remote.stream("remote").await.unwrap().live.live);
    remote
        .set_offline("remote", Some(report.since))
        .await
        .unwrap();
    assert!(!remote.stream("remote").await.unwrap().live.live);
    remote.set_live("remote", &report).await.unwrap();
    assert_eq!(remote.reset_node("node-a:1935").await.unwrap(), 1);
    assert!(!remote.stream("remote").await.unwrap().live.live);
    let err = remote.set_live("nowhere", &report).await.unwrap_err();
    assert_eq!(err.refused_status(), Some(404), "{err:?}");
    let bad = LiveReport {
        since: 0,
        ..report.clone()
    };
    let err = remote.set_live("remote", &bad).await.unwrap_err();
    assert_eq!(err.refused_status(), Some(422), "{err:?}");

    // The event stream carries the live changes and a title change.
    let (status, _) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/remote")
                .json(&json!({"title": "Second"})),
        )
        .await;
    assert_eq!(status, 200);
    let title = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(RemoteEvent::Change(StreamEvent::Metadata { title, .. })) =
                events.next().await.unwrap()
            {
                return title;
            }
        }
    })
    .await
    .expect("a metadata event within 10 s");
    assert_eq!(title, "Second");
}

/// What the fake metadata server does with key checks.
const ANSWER: u8 = 0;
const FAIL_503: u8 = 1;
const HANG: u8 = 2;

/// A metadata server that knows one key (`good-key` → `studio`, until `revoked`),
/// counts key checks, and fails on demand.
#[derive(Clone, Default)]
struct Fake {
    mode: Arc<AtomicU8>,
    revoked: Arc<AtomicU8>,
    checks: Arc<AtomicUsize>,
}

impl Fake {
    async fn start(&self) -> String {
        let fake = self.clone();
        let app = axum::Router::new().route(
            "/api/keys/check",
            axum::routing::post(move |Json(body): Json<Value>| {
                let fake = fake.clone();
                async move {
                    fake.checks.fetch_add(1, Ordering::SeqCst);
                    match fake.mode.load(Ordering::SeqCst) {
                        FAIL_503 => {
                            return (StatusCode::SERVICE_UNAVAILABLE, "database down")
                                .into_response();
                        }
                        HANG => tokio::time::sleep(Duration::from_secs(30)).await,
                        _ => {}
                    }
                    let known =
                        body["key"] == "good-key" && fake.revoked.load(Ordering::SeqCst) == 0;
                    if known {
                        Json(json!({"stream": "studio"})).into_response()
                    } else {
                        (
                            StatusCode::NOT_FOUND,
                            Json(json!({"error": "no stream has this key", "field": "key"})),
                        )
                            .into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

/// A clock moved by hand.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<Instant>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn as_clock(&self) -> meta::remote::Clock {
        let inner = self.0.clone();
        Arc::new(move || *inner.lock().unwrap())
    }
}

async fn authorize(keys: &RemoteKeys, key: &str) -> Result<String, KeyRejection> {
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    keys.authorize(&PublishRequest {
        app: "live".into(),
        stream_key: key.into(),
        peer,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_keys_cache_answers_and_fall_back_on_last_known_good() {
    let fake = Fake::default();
    let base = fake.start().await;
    let clock = ManualClock::new();
    let remote = RemoteMeta::new(
        &base,
        TOKEN,
        RemoteConfig {
            timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let keys = RemoteKeys::with_clock(
        remote,
        KeyCacheConfig {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(2),
            capacity: 100,
        },
        clock.as_clock(),
    );

    // A first check asks; the next ones within the TTL do not.
    assert_eq!(authorize(&keys, "good-key").await, Ok("studio".into()));
    assert_eq!(fake.checks(), 1);
    clock.advance(Duration::from_secs(29));
    assert_eq!(authorize(&keys, "good-key").await, Ok("studio".into()));
    assert_eq!(fake.checks(), 1);
    // Past the TTL it asks again.
    clock.advance(Duration::from_secs(2));
    assert_eq!(authorize(&keys, "good-key").await, Ok("studio".into()));
    assert_eq!(fake.checks(), 2);

    // Unknown keys: refused, and the refusal is cached for the negative TTL only.
    assert_eq!(
        authorize(&keys, "bad-key").await,
        Err(KeyRejection::UnknownKey)
    );
    assert_eq!(
        authorize(&keys, "bad-key").await,
        Err(KeyRejection::UnknownKey)
    );
    assert_eq!(fake.checks(), 3);
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        authorize(&keys, "bad-key").await,
        Err(KeyRejection::UnknownKey)
    );
    assert_eq!(fake.checks(), 4);

    // The server fails (5xx) or hangs: the key that worked keeps working, long after
    // its TTL; an unknown key is refused as "unavailable", not as unknown.
    for mode in [FAIL_503, HANG] {
        fake.mode.store(mode, Ordering::SeqCst);
        clock.advance(Duration::from_secs(3600));
        let before = fake.checks();
        assert_eq!(
            authorize(&keys, "good-key").await,
            Ok("studio".into()),
            "mode {mode}"
        );
        assert_eq!(fake.checks(), before + 1, "the server was asked first");
        let refused = authorize(&keys, "never-seen").await;
        assert!(
            matches!(refused, Err(KeyRejection::Unavailable(_))),
            "mode {mode}: {refused:?}"
        );
    }

    // Back up, and the key was rotated out meanwhile: refused at once, and no longer
    // last known good when the server fails again.
    fake.mode.store(ANSWER, Ordering::SeqCst);
    fake.revoked.store(1, Ordering::SeqCst);
    clock.advance(Duration::from_secs(31));
    assert_eq!(
        authorize(&keys, "good-key").await,
        Err(KeyRejection::UnknownKey)
    );
    fake.mode.store(FAIL_503, Ordering::SeqCst);
    clock.advance(Duration::from_secs(3));
    assert!(matches!(
        authorize(&keys, "good-key").await,
        Err(KeyRejection::Unavailable(_))
    ));

    // A declared stream's key is last known good before the server ever answered.
    keys.seed("declared-key", "declared");
    assert_eq!(
        authorize(&keys, "declared-key").await,
        Ok("declared".into())
    );
    // The RTMP application is checked before the key.
    let wrong_app = keys
        .authorize(&PublishRequest {
            app: "other".into(),
            stream_key: "declared-key".into(),
            peer: "127.0.0.1:5000".parse().unwrap(),
        })
        .await;
    assert_eq!(wrong_app, Err(KeyRejection::WrongApp("other".into())));
}

/// Nothing listens: a connection error is "unavailable".
#[tokio::test]
async fn a_server_that_is_not_there_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = RemoteMeta::new(
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        RemoteConfig::default(),
    )
    .unwrap();
    let err = remote.check_key("any").await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
    // The innermost cause, not the HTTP client's "error sending request" (refused; or
    // reset, when another process on this machine took the freed port meanwhile).
    let message = err.to_string();
    assert!(
        message.contains("refused") || message.contains("reset"),
        "{err}"
    );
}
