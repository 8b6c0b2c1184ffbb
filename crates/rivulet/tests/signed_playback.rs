//! Private streams end to end: a real ffmpeg publishes to `rivulet serve`, a real
//! `rivulet edge` stands in front; viewers follow the playlists as a player does.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use access::playback::{Grant, PlaybackKeys, set_token};
use common::*;
use serde_json::{Value, json};

const PLAYBACK_KEY: &str = "k1=e2e-playback-secret-0123456789";
const ADMIN: &str = "e2e-admin-token-0123";

/// Total requests the origin has answered for `/live/…` (its own counter).
async fn origin_requests(server: &Server) -> u64 {
    let (_, metrics) = get_text(&server.url("/metrics")).await;
    metrics
        .lines()
        .filter(|l| l.starts_with("origin_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn api(origin: &Server, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .request(method, origin.url(path))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn mint(origin: &Server, stream: &str) -> String {
    let (status, minted) = api(
        origin,
        reqwest::Method::POST,
        &format!("/api/streams/{stream}/tokens"),
        json!({"expires_in": 600}),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    minted["token"].as_str().unwrap().to_owned()
}

/// `uri` (as written in the playlist at `base_url`) resolved against it.
fn resolve(base_url: &str, uri: &str) -> String {
    reqwest::Url::parse(base_url)
        .unwrap()
        .join(uri)
        .unwrap()
        .to_string()
}

/// Every URI of a playlist: URI lines and `URI="…"` attributes.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if line.starts_with('#') {
            let mut rest = line;
            while let Some(i) = rest.find("URI=\"") {
                let after = &rest[i + 5..];
                let end = after.find('"').unwrap();
                out.push(after[..end].to_owned());
                rest = &after[end..];
            }
        } else if !line.trim().is_empty() {
            out.push(line.trim().to_owned());
        }
    }
    out
}

/// Plays the stream at `base` as a player would, from `master.m3u8?token=…`: every
/// URI it is given carries the token, and every object kind answers 200. Returns the
/// objects fetched, by kind.
async fn play(base: &str, token: &str) -> Vec<(&'static str, String)> {
    let client = client();
    let master_url = format!("{base}/live/vip/master.m3u8?token={token}");
    let master = client.get(&master_url).send().await.unwrap();
    assert_eq!(master.status(), 200, "{master_url}");
    let master = master.text().await.unwrap();
    let variant = uris(&master).into_iter().next().expect("a variant");
    assert!(variant.ends_with(&format!("?token={token}")), "{variant}");
    let media_url = resolve(&master_url, &variant);
    let media = client.get(&media_url).send().await.unwrap();
    assert_eq!(media.status(), 200, "{media_url}");
    let media = media.text().await.unwrap();
    let all = uris(&media);
    assert!(all.len() > 3, "{media}");
    for uri in &all {
        assert!(uri.contains(&format!("token={token}")), "{uri} in\n{media}");
    }
    let find = |prefix: &str| {
        media
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| attr(l, "URI"))
            .next_back()
            .map(|u| resolve(&media_url, u))
    };
    let segment = media
        .lines()
        .rfind(|l| l.starts_with("seg-"))
        .map(|u| resolve(&media_url, u))
        .expect("a segment");
    let init = find("#EXT-X-MAP").expect("an init segment");
    let part = find("#EXT-X-PART:").expect("a part");
    let hint = find("#EXT-X-PRELOAD-HINT").expect("a preload hint");
    let (msn, p) = hinted_part(&media);
    // The player adds the LL-HLS query after the token.
    let blocking = format!("{media_url}&_HLS_msn={msn}&_HLS_part={p}");
    let objects = vec![
        ("multivariant", master_url),
        ("media playlist", media_url),
        ("blocking reload", blocking),
        ("init", init),
        ("segment", segment),
        ("part", part),
        ("preload hint", hint),
    ];
    for (kind, url) in &objects {
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{kind}: {url}");
        assert_eq!(r.headers()["x-rivulet-access"], "private", "{kind}");
        let body = r.bytes().await.unwrap();
        assert!(!body.is_empty(), "{kind}");
        if *kind == "blocking reload" {
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains(&format!("token={token}")), "{text}");
        }
    }
    objects
}

/// The (msn, part) of the playlist's preload hint, its URI carrying a token.
fn hinted_part(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .expect("a preload hint");
    let uri = attr(line, "URI").unwrap();
    parse_part_uri(uri.split('?').next().unwrap())
}

/// `url` without its token.
fn without_token(url: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("token="))
        .collect();
    if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_private_stream_plays_only_with_its_token_at_the_origin_and_through_an_edge() {
    let origin = Server::start(&[
        "--stream",
        "vip=vip-key-123",
        "--stream",
        "other=other-key-123",
        "--admin-token",
        ADMIN,
        "--playback-key",
        PLAYBACK_KEY,
    ]);
    let _ffmpeg = KillOnDrop(publish(&format!("{}/live/vip-key-123", origin.rtmp), 180));
    let edge = EdgeNode::local(
        &[&origin.http],
        &[
            "--playback-key",
            PLAYBACK_KEY,
            "--http-max-connections-per-client",
            "1000",
            "--max-held-per-client",
            "1000",
        ],
    );
    // Public first: it plays without a token, its playlists carry none. Wait for a
    // complete segment, so that every object kind exists.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let public = get_when_ready(
            &edge.url("/live/vip/source/index.m3u8"),
            Duration::from_secs(30),
        )
        .await;
        assert!(!public.contains("token="), "{public}");
        if public.lines().any(|l| l.starts_with("seg-")) {
            break;
        }
        assert!(Instant::now() < deadline, "no segment in time:\n{public}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (status, patched) = api(
        &origin,
        reqwest::Method::PATCH,
        "/api/streams/vip",
        json!({"private": true}),
    )
    .await;
    assert_eq!((status, &patched["private"]), (200, &json!(true)));
    // The origin follows the metadata store's events.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_text(&origin.url("/live/vip/master.m3u8")).await.0 != 401 {
        assert!(Instant::now() < deadline, "the origin never went private");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let token = mint(&origin, "vip").await;
    let other = mint(&origin, "other").await;
    let keys = PlaybackKeys::parse(&[PLAYBACK_KEY]).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = keys
        .sign(&Grant {
            stream: "vip".into(),
            expires: now - 1,
            ip: None,
            session: None,
        })
        .unwrap();
    // The claims of the real token, signature of another: a forged extension.
    let tampered = {
        let parts: Vec<&str> = token.split('.').collect();
        let forged = keys
            .sign(&Grant {
                stream: "vip".into(),
                expires: now + 99_999,
                ip: None,
                session: None,
            })
            .unwrap();
        format!(
            "{}.{}.{}",
            parts[0],
            forged.split('.').nth(1).unwrap(),
            parts[2]
        )
    };

    let client = client();
    for (name, base) in [("origin", origin.http.clone()), ("edge", edge.url.clone())] {
        // The edge learns from the origin's answers that the stream is private; the
        // first request through it may be before that.
        let objects = play(&base, &token).await;
        for (kind, url) in &objects {
            let plain = without_token(url);
            for (bad, label, want) in [
                (None, "no token", 401),
                (Some(expired.as_str()), "expired", 403),
                (Some(other.as_str()), "another stream's", 403),
                (Some(tampered.as_str()), "tampered", 401),
                (Some("garbage"), "garbage", 401),
            ] {
                let url = match bad {
                    None => plain.clone(),
                    Some(t) => set_token(&plain, t),
                };
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(
                    r.status().as_u16(),
                    want,
                    "{name}, {kind}, {label} token: {url}"
                );
                assert_eq!(r.headers()["cache-control"], "no-store");
                let body = r.text().await.unwrap();
                assert!(body.contains("token"), "{name} {kind} {label}: {body}");
            }
        }
        eprintln!("{name}: every object kind plays with the token and is refused without");
    }

    // The stream's picture is as private as its media (the origin serves it).
    let thumbnail = origin.url("/live/vip/thumbnail.jpg?width=160");
    let r = client.get(&thumbnail).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "a private thumbnail without a token"
    );
    let r = client
        .get(format!("{thumbnail}&token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private"),
        "a shared cache must not keep a private stream's picture"
    );

    // Fifty viewers, fifty tokens, one edge: one origin fetch per object.
    let mut tokens = Vec::new();
    for _ in 0..50 {
        tokens.push(mint(&origin, "vip").await);
    }
    let playlist_url = format!("{}/live/vip/source/index.m3u8?token={token}", edge.url);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let playlist = get_text(&playlist_url).await.1;
    let (msn, part) = hinted_part(&playlist);
    let before = origin_requests(&origin).await;
    let tasks: Vec<_> = tokens
        .iter()
        .cloned()
        .map(|t| {
            let client = client.clone();
            let base = edge.url.clone();
            tokio::spawn(async move {
                let part_url = format!("{base}/live/vip/source/part-{msn}-{part}.m4s?token={t}");
                let blocking = format!(
                    "{base}/live/vip/source/index.m3u8?token={t}&_HLS_msn={msn}&_HLS_part={part}"
                );
                let (p, b) = tokio::join!(
                    async { client.get(&part_url).send().await.unwrap() },
                    async { client.get(&blocking).send().await.unwrap() }
                );
                assert_eq!((p.status().as_u16(), b.status().as_u16()), (200, 200));
                let p = p.bytes().await.unwrap();
                let b = b.text().await.unwrap();
                // Each viewer's playlist carries its own token, and only that.
                for uri in uris(&b) {
                    assert!(uri.ends_with(&format!("token={t}")), "{uri}");
                }
                p
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    assert!(
        bodies.iter().all(|b| b == &bodies[0] && !b.is_empty()),
        "every viewer got the same part"
    );
    let after = origin_requests(&origin).await;
    // One blocking reload and one part, whatever the tokens.
    assert_eq!(
        after - before,
        2,
        "the origin saw {} requests for 2 objects",
        after - before
    );

    // Public again: no token needed, playlists as before (no token in them).
    let (status, _) = api(
        &origin,
        reqwest::Method::PATCH,
        "/api/streams/vip",
        json!({"private": false}),
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = get_text(&edge.url("/live/vip/source/index.m3u8")).await;
        if status == 200 {
            assert!(!text.contains("token="), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the stream never went public");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
