//! Webhooks and restream targets in the store and the API, on a real SQLite file and a
//! real PostgreSQL: CRUD, secrets shown once, declared hooks, the delivery log's
//! order and length, targets redacted and removed with their stream.

#![allow(clippy::unwrap_used)]

mod common;

use meta::StreamName;
use meta::webhooks::{DELIVERY_LOG_LEN, DeclaredWebhook, Delivery};
use reqwest::Method;
use serde_json::json;

use common::Harness;

on_both_databases!(webhooks_crud_and_delivery_log, restream_targets_crud);

async fn webhooks_crud_and_delivery_log(h: Harness) {
    let (status, created) = h
        .send(h.admin(Method::POST, "/api/webhooks").json(&json!({
            "url": "http://hooks.local/a",
            "events": ["stream.published"],
        })))
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["signing_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 16);
    let id = created["id"].as_i64().unwrap();
    // The same URL twice is a conflict; a bad event is named.
    let (status, _) = h
        .send(
            h.admin(Method::POST, "/api/webhooks")
                .json(&json!({"url": "http://hooks.local/a"})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, err) = h
        .send(h.admin(Method::POST, "/api/webhooks").json(&json!({
            "url": "http://hooks.local/b", "events": ["stream.exploded"],
        })))
        .await;
    assert_eq!((status, err["field"].as_str()), (422, Some("events")));
    let (status, changed) = h
        .send(
            h.admin(Method::PATCH, &format!("/api/webhooks/{id}"))
                .json(&json!({"events": ["stream.published", "stream.unpublished"]})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["events"],
        json!(["stream.published", "stream.unpublished"])
    );
    assert!(!changed.to_string().contains(&secret));

    // Declared hooks are upserted by URL, and forgotten when no longer declared.
    let declared = DeclaredWebhook {
        url: "http://hooks.local/declared".into(),
        events: vec![],
        secret: "declared-secret-0123".into(),
    };
    h.store.declare_webhooks(&[declared]).await.unwrap();
    let all = h.store.webhooks().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().any(|w| w.declared && w.events.len() == 4));
    h.store.declare_webhooks(&[]).await.unwrap();
    assert_eq!(h.store.webhooks().await.unwrap().len(), 1);

    // The log keeps the newest DELIVERY_LOG_LEN attempts, newest first.
    for attempt in 1..=DELIVERY_LOG_LEN + 5 {
        let delivery = Delivery {
            delivery: "dlv_x".into(),
            event: "stream.published".into(),
            stream: Some("s".into()),
            attempt,
            at: attempt,
            status: Some(500),
            error: Some("the receiver answered 500".into()),
            duration_ms: 3,
        };
        h.store.log_delivery(id, &delivery).await.unwrap();
    }
    let (status, log) = h
        .send(h.admin(Method::GET, &format!("/api/webhooks/{id}/deliveries")))
        .await;
    assert_eq!(status, 200);
    let log = log["deliveries"].as_array().unwrap();
    assert_eq!(log.len() as i64, DELIVERY_LOG_LEN);
    assert_eq!(log[0]["attempt"], DELIVERY_LOG_LEN + 5);
    assert_eq!(log[log.len() - 1]["attempt"], 6);

    let (status, _) = h
        .send(h.admin(Method::DELETE, &format!("/api/webhooks/{id}")))
        .await;
    assert_eq!(status, 204);
    let (status, _) = h
        .send(h.admin(Method::GET, &format!("/api/webhooks/{id}")))
        .await;
    assert_eq!(status, 404);
    let (status, _) = h.send(h.client.get(h.url("/api/webhooks"))).await;
    assert_eq!(status, 401);
}

async fn restream_targets_crud(h: Harness) {
    h.create(json!({"name": "show"})).await;
    let url = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl";
    let (status, added) = h
        .send(
            h.admin(Method::POST, "/api/streams/show/restreams")
                .json(&json!({ "url": url })),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["full_url"], url);
    assert_eq!(added["status"]["state"], "idle");
    let (status, listed) = h
        .send(h.admin(Method::GET, "/api/streams/show/restreams"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["restreams"][0]["url"],
        "rtmp://a.rtmp.youtube.com/live2/abc…"
    );
    assert!(!listed.to_string().contains("abcd-efgh"));
    let full = h.store.restream_urls("show").await.unwrap();
    assert_eq!(full[0].1, url);
    let (status, err) = h
        .send(
            h.admin(Method::POST, "/api/streams/show/restreams")
                .json(&json!({"url": "rtmp://host-only"})),
        )
        .await;
    assert_eq!((status, err["field"].as_str()), (422, Some("url")));
    let (status, _) = h
        .send(h.admin(Method::GET, "/api/streams/nope/restreams"))
        .await;
    assert_eq!(status, 404);
    // Deleting the stream removes its targets.
    let (status, _) = h.send(h.admin(Method::DELETE, "/api/streams/show")).await;
    assert_eq!(status, 204);
    assert!(h.store.restream_urls("show").await.unwrap().is_empty());
    let name = StreamName::parse("show").unwrap();
    assert!(h.store.restreams(&name).await.unwrap().is_empty());
}
