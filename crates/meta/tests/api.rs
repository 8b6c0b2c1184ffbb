//! The metadata API end to end, over loopback HTTP, against a real SQLite file and a
//! real PostgreSQL (see `common` for how the server is found or started).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use access::{KeyRejection, PublishRequest, StreamKeys};
use futures::StreamExt;
use meta::{LiveReport, StreamName};
use reqwest::Method;
use serde_json::{Value, json};

use common::{Harness, TOKEN};

on_both_databases!(
    round_trip,
    validation_errors_name_the_field,
    auth_conflicts_and_unknown_streams,
    rotated_key_stops_working,
    concurrent_patches_lose_nothing,
    list_filters_and_pages,
    sse_delivers_changes,
    declared_streams_are_upserted,
    private_streams_and_their_tokens,
);

async fn round_trip(h: Harness) {
    let created = h
        .create(json!({
            "name": "studio",
            "title": "  Morning show ",
            "description": "Live from\nthe studio",
            "tags": [" Music ", "LIVE", "music"],
        }))
        .await;
    let key = created["key"].as_str().unwrap();
    assert!(key.len() >= 22, "at least 128 bits: {key}");
    assert_eq!(created["name"], "studio");
    assert_eq!(created["title"], "Morning show");
    assert_eq!(created["tags"], json!(["live", "music"]));
    assert_eq!(created["live"]["live"], false);
    assert_eq!(created["version"], 1);
    assert!(created["created_at"].as_i64().unwrap() > 1_600_000_000_000);

    let (status, got) = h.send(h.client.get(h.url("/api/streams/studio"))).await;
    assert_eq!(status, 200);
    assert_no_secrets(&got, key);
    assert_eq!(got["description"], "Live from\nthe studio");

    let (status, patched) =
        h.send(h.admin(Method::PATCH, "/api/streams/studio").json(
            &json!({"title": "Evening show", "remove_tags": ["LIVE"], "add_tags": ["talk"]}),
        ))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["title"], "Evening show");
    assert_eq!(patched["description"], "Live from\nthe studio");
    assert_eq!(patched["tags"], json!(["music", "talk"]));
    assert_eq!(patched["version"], 2);
    assert_eq!(
        h.store.title("studio").await.unwrap().as_deref(),
        Some("Evening show")
    );

    let (status, patched) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/studio")
                .json(&json!({"tags": []})),
        )
        .await;
    assert_eq!((status, patched["tags"].clone()), (200, json!([])));
    // Recording: unset (the server's default) until set, then true or false.
    assert_eq!(patched["record"], Value::Null);
    for record in [true, false] {
        let (status, patched) = h
            .send(
                h.admin(Method::PATCH, "/api/streams/studio")
                    .json(&json!({"record": record})),
            )
            .await;
        assert_eq!((status, patched["record"].clone()), (200, json!(record)));
    }

    let (status, list) = h.send(h.client.get(h.url("/api/streams"))).await;
    assert_eq!(status, 200);
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);
    assert_no_secrets(&list, key);

    let (status, _) = h.send(h.admin(Method::DELETE, "/api/streams/studio")).await;
    assert_eq!(status, 204);
    let (status, body) = h.send(h.client.get(h.url("/api/streams/studio"))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("studio"));
    let (status, _) = h.send(h.admin(Method::DELETE, "/api/streams/studio")).await;
    assert_eq!(status, 404);
    assert_eq!(h.store.stream_for_key(key).await.unwrap(), None);
    assert_eq!(h.store.title("studio").await.unwrap(), None);
}

async fn validation_errors_name_the_field(h: Harness) {
    let post = |body: Value| h.admin(Method::POST, "/api/streams").json(&body);
    for (body, status, field) in [
        (json!({"name": "Bad Name"}), 422, "name"),
        (json!({"name": "-x"}), 422, "name"),
        (json!({"name": "x".repeat(65)}), 422, "name"),
        (json!({"name": "ok", "title": "two\nlines"}), 422, "title"),
        (
            json!({"name": "ok", "title": "t".repeat(201)}),
            422,
            "title",
        ),
        (
            json!({"name": "ok", "description": "d".repeat(5001)}),
            422,
            "description",
        ),
        (json!({"name": "ok", "tags": ["  "]}), 422, "tags"),
        (json!({"name": "ok", "tags": ["t".repeat(33)]}), 422, "tags"),
        (json!({"name": "ok", "title": 5}), 400, "title"),
        (json!({"name": "ok", "tags": "music"}), 400, "tags"),
        (json!({"name": "ok", "titel": "typo"}), 400, "titel"),
    ] {
        let (got, json) = h.send(post(body.clone())).await;
        assert_eq!(got, status, "{body} -> {json}");
        assert_eq!(json["field"], field, "{body} -> {json}");
        assert!(!json["error"].as_str().unwrap().is_empty());
    }
    let (status, json) = h
        .send(h.admin(Method::POST, "/api/streams").body("{not json"))
        .await;
    assert_eq!(status, 400, "{json}");

    h.create(json!({"name": "ok"})).await;
    for (body, field) in [
        (json!({}), "body"),
        (json!({"title": "a\u{7}b"}), "title"),
        (json!({"add_tags": ["a,b"]}), "add_tags"),
        (json!({"remove_tags": [""]}), "remove_tags"),
    ] {
        let (status, json) = h
            .send(h.admin(Method::PATCH, "/api/streams/ok").json(&body))
            .await;
        assert_eq!(
            (status, json["field"].as_str()),
            (422, Some(field)),
            "{json}"
        );
    }
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let (status, json) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/ok")
                .json(&json!({"add_tags": too_many})),
        )
        .await;
    assert_eq!(
        (status, json["field"].as_str()),
        (422, Some("add_tags")),
        "{json}"
    );
    // Too many tags in total, only found inside the transaction: nothing is kept.
    let some: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    let more: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
    let (status, _) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/ok")
                .json(&json!({"add_tags": some})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, json) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/ok")
                .json(&json!({"add_tags": more, "title": "x"})),
        )
        .await;
    assert_eq!(
        (status, json["field"].as_str()),
        (422, Some("add_tags")),
        "{json}"
    );
    let (_, got) = h.send(h.client.get(h.url("/api/streams/ok"))).await;
    assert_eq!(got["tags"].as_array().unwrap().len(), 20);
    assert_eq!(got["title"], "", "the failed edit was rolled back whole");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("offset=-1", "offset"),
        ("live=maybe", "live"),
        ("after=Bad", "after"),
        ("tag=", "tag"),
        ("colour=red", "colour"),
    ] {
        let (status, json) = h
            .send(h.client.get(h.url(&format!("/api/streams?{query}"))))
            .await;
        assert_eq!(
            (status, json["field"].as_str()),
            (400, Some(field)),
            "{query}: {json}"
        );
    }
}

async fn auth_conflicts_and_unknown_streams(h: Harness) {
    let body = json!({"name": "guarded"});
    let response = h
        .client
        .post(h.url("/api/streams"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, _) = h
        .send(
            h.client
                .post(h.url("/api/streams"))
                .bearer_auth("wrong-token-xyz")
                .json(&body),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = h.send(h.client.get(h.url("/api/streams/guarded"))).await;
    assert_eq!(status, 404, "a refused create creates nothing");

    h.create(body.clone()).await;
    let (status, json) = h
        .send(h.admin(Method::POST, "/api/streams").json(&body))
        .await;
    assert_eq!(
        (status, json["field"].as_str()),
        (409, Some("name")),
        "{json}"
    );

    for (method, path) in [
        (Method::PATCH, "/api/streams/guarded"),
        (Method::DELETE, "/api/streams/guarded"),
        (Method::POST, "/api/streams/guarded/rotate-key"),
    ] {
        let (status, _) = h
            .send(
                h.client
                    .request(method.clone(), h.url(path))
                    .json(&json!({"title": "x"})),
            )
            .await;
        assert_eq!(status, 401, "{method} {path}");
    }
    // Auth is checked before the body: a bad body without a token is still 401.
    let (status, _) = h
        .send(h.client.patch(h.url("/api/streams/guarded")).body("{bad"))
        .await;
    assert_eq!(status, 401);

    for (method, path) in [
        (Method::GET, "/api/streams/nope"),
        (Method::GET, "/api/streams/Not%20Valid"),
        (Method::PATCH, "/api/streams/nope"),
        (Method::DELETE, "/api/streams/nope"),
        (Method::POST, "/api/streams/nope/rotate-key"),
        (Method::GET, "/api/streams/nope/events"),
        (Method::GET, "/api/nothing-here"),
    ] {
        let (status, json) = h
            .send(h.admin(method.clone(), path).json(&json!({"title": "x"})))
            .await;
        assert_eq!(status, 404, "{method} {path}: {json}");
        assert!(json["error"].is_string());
    }
}

async fn rotated_key_stops_working(h: Harness) {
    let created = h.create(json!({"name": "cam"})).await;
    let old = created["key"].as_str().unwrap().to_owned();
    assert_eq!(authorize(&h, "live", &old).await, Ok("cam".into()));
    assert_eq!(
        authorize(&h, "other", &old).await,
        Err(KeyRejection::WrongApp("other".into()))
    );

    let response = h
        .admin(Method::POST, "/api/streams/cam/rotate-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let rotated: Value = response.json().await.unwrap();
    let new = rotated["key"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(rotated["name"], "cam");
    assert_eq!(
        authorize(&h, "live", &old).await,
        Err(KeyRejection::UnknownKey)
    );
    assert_eq!(authorize(&h, "live", new).await, Ok("cam".into()));
    assert_eq!(
        authorize(&h, "live", "").await,
        Err(KeyRejection::UnknownKey)
    );
}

async fn concurrent_patches_lose_nothing(h: Harness) {
    h.create(json!({"name": "busy", "tags": ["base"]})).await;
    const WRITERS: usize = 24;
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let client = h.client.clone();
        let url = h.url("/api/streams/busy");
        tasks.push(tokio::spawn(async move {
            let body = if i % 4 == 0 {
                json!({"add_tags": [format!("tag-{i:02}")], "title": format!("title {i}")})
            } else {
                json!({"add_tags": [format!("tag-{i:02}")]})
            };
            let response = client
                .patch(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, got) = h.send(h.client.get(h.url("/api/streams/busy"))).await;
    let mut expected: Vec<String> = (0..WRITERS).map(|i| format!("tag-{i:02}")).collect();
    expected.insert(0, "base".into());
    assert_eq!(got["tags"], json!(expected));
    assert_eq!(
        got["version"],
        1 + WRITERS as i64,
        "every edit counted once"
    );
    assert!(got["title"].as_str().unwrap().starts_with("title "));
}

async fn list_filters_and_pages(h: Harness) {
    for i in 0..7 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        h.create(json!({"name": format!("s-{i}"), "tags": tags}))
            .await;
    }
    // '-' sorts before '_' and digits, bytewise on both databases.
    h.create(json!({"name": "s_x"})).await;
    h.create(json!({"name": "s0"})).await;
    for name in ["s-1", "s-4"] {
        h.store
            .set_live(
                name,
                &LiveReport {
                    since: 1_700_000_000_000,
                    ingest_node: Some("node-a".into()),
                    ingest_bitrate: Some(2_500_000),
                    renditions: Some(json!([{"name": "source", "height": 240}])),
                    ingest_stats: None,
                },
            )
            .await
            .unwrap();
    }
    let names = |v: &Value| -> Vec<String> {
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let get = |q: &str| h.send(h.client.get(h.url(&format!("/api/streams{q}"))));

    let (_, all) = get("").await;
    assert_eq!(
        names(&all),
        ["s-0", "s-1", "s-2", "s-3", "s-4", "s-5", "s-6", "s0", "s_x"]
    );
    assert_eq!(all["next_cursor"], Value::Null);
    let (_, even) = get("?tag=EVEN").await;
    assert_eq!(names(&even), ["s-0", "s-2", "s-4", "s-6"]);
    let (_, live) = get("?live=true").await;
    assert_eq!(names(&live), ["s-1", "s-4"]);
    let s1 = &live["streams"][0]["live"];
    assert_eq!(s1["live"], true);
    assert_eq!(s1["ingest_bitrate"], 2_500_000);
    assert_eq!(s1["renditions"][0]["height"], 240);
    let (_, live_even) = get("?live=true&tag=even").await;
    assert_eq!(names(&live_even), ["s-4"]);
    let (_, offline) = get("?live=false&limit=2").await;
    assert_eq!(names(&offline), ["s-0", "s-2"]);
    let (_, offset) = get("?offset=7").await;
    assert_eq!(names(&offset), ["s0", "s_x"]);

    // Follow the cursor through every page.
    let mut seen = Vec::new();
    let mut query = "?limit=4".to_owned();
    loop {
        let (status, page) = get(&query).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(names(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=4&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, names(&all));

    h.store.set_offline("s-1", Some(1)).await.unwrap();
    let (_, live) = get("?live=true").await;
    assert_eq!(
        names(&live),
        ["s-1", "s-4"],
        "another publish's offline is ignored"
    );
    h.store
        .set_offline("s-1", Some(1_700_000_000_000))
        .await
        .unwrap();
    assert_eq!(h.store.reset_node("node-a").await.unwrap(), 1);
    let (_, live) = get("?live=true").await;
    assert_eq!(names(&live), Vec::<String>::new());
}

async fn sse_delivers_changes(h: Harness) {
    h.create(json!({"name": "show", "title": "Before"})).await;
    h.create(json!({"name": "other"})).await;
    let response = h
        .client
        .get(h.url("/api/streams/show/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = SseReader::new(response);
    let (name, snapshot) = events.next().await;
    assert_eq!(
        (name.as_str(), snapshot["title"].as_str()),
        ("snapshot", Some("Before"))
    );

    // A change to another stream is not sent on this one.
    let (status, _) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/other")
                .json(&json!({"title": "Nope"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/show")
                .json(&json!({"title": "After", "add_tags": ["news"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (name, event) = events.next().await;
    assert_eq!(name, "metadata");
    assert_eq!(event["type"], "metadata");
    assert_eq!(event["stream"], "show");
    assert_eq!(event["title"], "After");
    assert_eq!(event["tags"], json!(["news"]));
    assert_eq!(event["version"], 2);

    let report = LiveReport {
        since: 1_700_000_000_000,
        ingest_node: Some("node-a".into()),
        ..Default::default()
    };
    h.store.set_live("show", &report).await.unwrap();
    let (name, event) = events.next().await;
    assert_eq!(
        (name.as_str(), &event["live"]["live"]),
        ("live", &json!(true))
    );
    h.store.set_offline("show", None).await.unwrap();
    assert_eq!(events.next().await.0, "offline");
    let (status, _) = h.send(h.admin(Method::DELETE, "/api/streams/show")).await;
    assert_eq!(status, 204);
    assert_eq!(events.next().await.0, "deleted");
}

async fn declared_streams_are_upserted(h: Harness) {
    let name = StreamName::parse("declared").unwrap();
    assert!(h.store.upsert_with_key(&name, "first-key").await.unwrap());
    assert!(!h.store.upsert_with_key(&name, "first-key").await.unwrap());
    assert_eq!(
        authorize(&h, "live", "first-key").await,
        Ok("declared".into())
    );
    let (status, _) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/declared")
                .json(&json!({"title": "Kept"})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(h.store.upsert_with_key(&name, "second-key").await.unwrap());
    assert_eq!(
        authorize(&h, "live", "first-key").await,
        Err(KeyRejection::UnknownKey)
    );
    assert_eq!(
        authorize(&h, "live", "second-key").await,
        Ok("declared".into())
    );
    assert_eq!(
        h.store.title("declared").await.unwrap().as_deref(),
        Some("Kept")
    );
    // A key already used by another stream is a conflict naming the key.
    let other = StreamName::parse("other").unwrap();
    let err = h
        .store
        .upsert_with_key(&other, "second-key")
        .await
        .unwrap_err();
    assert!(
        matches!(err, meta::MetaError::Conflict { field: "key", .. }),
        "{err:?}"
    );
}

async fn private_streams_and_their_tokens(h: Harness) {
    use access::playback::{PlaybackKeys, TokenError};
    // What an origin in the same process is told, before the API answers.
    let observed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = observed.clone();
    h.store.observe(std::sync::Arc::new(move |event| {
        if let meta::StreamEvent::Metadata { private, .. } = event {
            *seen.lock().unwrap() = Some(*private);
        }
    }));
    let created = h.create(json!({"name": "vip"})).await;
    assert_eq!(created["private"], false);
    let (status, patched) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/vip")
                .json(&json!({"private": true})),
        )
        .await;
    assert_eq!(
        (status, &patched["private"]),
        (200, &json!(true)),
        "{patched}"
    );
    assert_eq!(
        *observed.lock().unwrap(),
        Some(true),
        "told before the answer"
    );
    let (_, got) = h.send(h.client.get(h.url("/api/streams/vip"))).await;
    assert_eq!(got["private"], true);

    let keys = PlaybackKeys::parse(&[common::PLAYBACK_KEY]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // No body: an hour, any address.
    let (status, minted) = h
        .send(h.admin(Method::POST, "/api/streams/vip/tokens"))
        .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let grant = keys.verify(token, "vip", None, now).unwrap();
    assert!((now + 3590..=now + 3610).contains(&grant.expires));
    assert_eq!(minted["expires_at"], grant.expires);
    assert_eq!(
        minted["master_url"],
        format!("/live/vip/master.m3u8?token={token}")
    );
    assert_eq!(minted["watch_url"], format!("/watch/vip?token={token}"));
    // With expiry, address and session.
    let (status, minted) = h
        .send(
            h.admin(Method::POST, "/api/streams/vip/tokens")
                .json(&json!({"expires_in": 60, "ip": "192.0.2.7", "session": "s-1"})),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let ip = "192.0.2.7".parse().unwrap();
    let grant = keys.verify(token, "vip", Some(ip), now).unwrap();
    assert_eq!(grant.session.as_deref(), Some("s-1"));
    assert!(grant.expires <= now + 61);
    assert_eq!(
        keys.verify(token, "vip", Some("192.0.2.8".parse().unwrap()), now),
        Err(TokenError::WrongAddress)
    );
    // Refusals.
    for (body, field) in [
        (json!({"expires_in": 0}), "expires_in"),
        (json!({"expires_in": 99_999_999}), "expires_in"),
        (json!({"session": ""}), "session"),
    ] {
        let (status, e) = h
            .send(h.admin(Method::POST, "/api/streams/vip/tokens").json(&body))
            .await;
        assert_eq!((status, e["field"].as_str()), (422, Some(field)), "{body}");
    }
    let (status, _) = h
        .send(
            h.admin(Method::POST, "/api/streams/vip/tokens")
                .json(&json!({"ip": "nope"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .send(h.admin(Method::POST, "/api/streams/nope/tokens"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = h
        .send(h.client.post(h.url("/api/streams/vip/tokens")))
        .await;
    assert_eq!(status, 401);
    // And public again.
    let (status, patched) = h
        .send(
            h.admin(Method::PATCH, "/api/streams/vip")
                .json(&json!({"private": false})),
        )
        .await;
    assert_eq!((status, &patched["private"]), (200, &json!(false)));
    assert_eq!(
        *observed.lock().unwrap(),
        Some(false),
        "told before the answer"
    );
}

/// Not per database: the document does not depend on it.
#[tokio::test]
async fn openapi_document_matches_the_routes_and_validates() {
    let h = Harness::sqlite().await;
    let response = h
        .client
        .get(h.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut expected = vec![
        "POST /api/streams",
        "GET /api/streams",
        "GET /api/streams/{name}",
        "PATCH /api/streams/{name}",
        "DELETE /api/streams/{name}",
        "POST /api/streams/{name}/rotate-key",
        "POST /api/streams/{name}/tokens",
        "GET /api/streams/{name}/events",
        "POST /api/keys/check",
        "PUT /api/streams/{name}/key",
        "PUT /api/streams/{name}/live",
        "DELETE /api/streams/{name}/live",
        "POST /api/live/reset",
        "POST /api/webhooks",
        "GET /api/webhooks",
        "GET /api/webhooks/{id}",
        "PATCH /api/webhooks/{id}",
        "DELETE /api/webhooks/{id}",
        "GET /api/webhooks/{id}/deliveries",
        "POST /api/streams/{name}/restreams",
        "GET /api/streams/{name}/restreams",
        "DELETE /api/streams/{name}/restreams/{id}",
    ];
    expected.sort();
    assert_eq!(documented, expected);

    // Every documented operation is routed: a request to it is not answered by the
    // catch-all (404 with "no such API endpoint") nor with 405.
    h.create(json!({"name": "probe"})).await;
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path.replace("{name}", "probe");
        let request = h
            .admin(method.parse().unwrap(), &path)
            .json(&json!({"title": "t"}));
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(status != 405, "{op} -> 405");
        if path.ends_with("/events") {
            continue; // an endless stream
        }
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("no such API endpoint"),
            "{op} -> {status} {body}"
        );
    }
    // Admin operations declare the bearer scheme.
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    assert!(doc["paths"]["/api/streams"]["post"]["security"].is_array());
    assert!(doc["paths"]["/api/streams"]["get"]["security"].is_null());
    // What ingest nodes use is admin-only, and the key check takes the key in its body.
    for (path, method) in [
        ("/api/keys/check", "post"),
        ("/api/streams/{name}/key", "put"),
        ("/api/streams/{name}/live", "put"),
        ("/api/streams/{name}/live", "delete"),
        ("/api/live/reset", "post"),
        ("/api/webhooks", "get"),
        ("/api/webhooks/{id}/deliveries", "get"),
        ("/api/streams/{name}/restreams", "get"),
    ] {
        assert!(
            doc["paths"][path][method]["security"].is_array(),
            "{method} {path}"
        );
    }
    assert!(doc["paths"]["/api/keys/check"]["post"]["requestBody"].is_object());

    validate_with_python(&text);
}

/// Runs `openapi-spec-validator` (PyPI; scripts/setup.sh installs it) on the document.
fn validate_with_python(doc: &str) {
    use std::io::Write;
    let has_validator = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_validator {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!! SKIPPED OpenAPI validation: python3 module openapi_spec_validator not installed (scripts/setup.sh installs it) !!!!!!!!\n"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, doc).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn authorize(h: &Harness, app: &str, key: &str) -> Result<String, KeyRejection> {
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    h.store
        .authorize(&PublishRequest {
            app: app.into(),
            stream_key: key.into(),
            peer,
        })
        .await
}

fn assert_no_secrets(json: &Value, key: &str) {
    let text = json.to_string();
    assert!(!text.contains(key), "the key leaked: {text}");
    assert!(
        !text.contains("key_hash") && !text.contains("\"key\""),
        "{text}"
    );
    assert!(
        !text.contains(&meta::hash_key(key)),
        "the hash leaked: {text}"
    );
}

/// Reads `event:`/`data:` pairs from a `text/event-stream` response.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event that has a name (keep-alive comments are skipped).
    async fn next(&mut self) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut name, mut data) = (None, String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if let Some(name) = name {
                        return (name, serde_json::from_str(&data).unwrap());
                    }
                }
                let chunk = self.body.next().await.expect("event stream ended").unwrap();
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no SSE event within 10 s")
    }
}
