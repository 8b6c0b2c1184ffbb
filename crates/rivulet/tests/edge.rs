//! The CDN edge end to end: real `rivulet serve` origins, real `rivulet edge`
//! processes (and a shield), our publisher, and many concurrent HTTP clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Total requests the origin has answered for `/live/…` (its own counter).
/// The origin's requests served so far, by kind (`playlist`, `part`, …).
async fn origin_requests(server: &Server) -> std::collections::BTreeMap<String, u64> {
    let (_, metrics) = get_text(&server.url("/metrics")).await;
    metrics
        .lines()
        .filter(|l| l.starts_with("origin_requests_total"))
        .filter_map(|l| {
            let kind = l.split("kind=\"").nth(1)?.split('"').next()?.to_owned();
            Some((kind, l.rsplit(' ').next()?.parse::<f64>().ok()? as u64))
        })
        .collect()
}

/// What was requested of the origin between two readings of [`origin_requests`].
fn requests_between(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(kind, n)| (kind.clone(), n - before.get(kind).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn start_publisher(urls: &[String]) -> (KillOnDrop, Arc<std::sync::Mutex<String>>) {
    let mut args = vec!["--test-pattern", "--size", "320x180", "--bitrate", "600k"];
    args.extend(urls.iter().map(String::as_str));
    rivulet_publish(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_viewers_make_one_origin_request_per_object() {
    let origin = Server::start(&["--stream", "crowd=crowd-key"]);
    let (mut publisher, _) = start_publisher(&[format!("{}/live/crowd-key", origin.rtmp)]);
    // A thousand viewers on one address (as behind a carrier-grade NAT): above the
    // per-client defaults for connections and held requests.
    let edge = EdgeNode::local(
        &[&origin.http],
        &[
            "--http-max-connections-per-client",
            "4000",
            "--max-held-per-client",
            "4000",
        ],
    );
    let playlist_url = format!("{}/live/crowd/source/index.m3u8", edge.url);
    get_when_ready(&playlist_url, Duration::from_secs(15)).await;
    // Let the edge's first requests settle, then count from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = origin_requests(&origin).await;
    let playlist = get_text(&playlist_url).await.1;
    let (msn, part) = preload_hint(&playlist);
    let blocking = format!("{playlist_url}?_HLS_msn={msn}&_HLS_part={part}");
    let part_url = format!("{}/live/crowd/source/part-{msn}-{part}.m4s", edge.url);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1100)
        .build()
        .unwrap();
    let crowd_start = std::time::Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (client, blocking, part_url) = (client.clone(), blocking.clone(), part_url.clone());
            tokio::spawn(async move {
                let (p, b) = tokio::join!(
                    async { client.get(&part_url).send().await.unwrap() },
                    async { client.get(&blocking).send().await.unwrap() }
                );
                assert_eq!(p.status(), 200);
                assert_eq!(b.status(), 200);
                let p = p.bytes().await.unwrap();
                let b = b.text().await.unwrap();
                assert!(
                    b.contains(&format!("part-{msn}-{part}.m4s")),
                    "the blocking reload lists the part"
                );
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
    let crowd_time = crowd_start.elapsed();
    let seen = requests_between(&before, &origin_requests(&origin).await);
    // One plain playlist, one blocking reload, one part. Shared caches keep a blocking
    // reload's answer one second (`s-maxage=1`): a crowd that took longer to reach
    // the edge (a loaded machine) may see one more fetch of it a second.
    let parts = seen.get("part").unwrap_or(&0) + seen.get("part_streamed").unwrap_or(&0);
    let playlists = seen.get("playlist").copied().unwrap_or(0);
    let allowed_playlists = 2 + crowd_time.as_secs();
    eprintln!("a crowd of 1000 in {crowd_time:?}: the origin saw {seen:?}");
    assert_eq!(parts, 1, "the part fetched once: {seen:?}");
    assert!(
        (2..=allowed_playlists).contains(&playlists),
        "playlists fetched {playlists} times in {crowd_time:?} (at most {allowed_playlists}): {seen:?}"
    );
    assert_eq!(
        seen.keys()
            .filter(|k| !k.starts_with("part") && *k != "playlist")
            .count(),
        0,
        "nothing else: {seen:?}"
    );
    let _ = publisher.kill();
}

/// CORS as at the origin: a player on another site (Shaka, video.js) preflights, then
/// reads the playlist and its headers.
async fn players_on_other_sites_may_read(url: &str) {
    let client = client();
    let preflight = client
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allowed.contains("GET"), "{allowed}");
    let answer = client
        .get(url)
        .header("origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let allow: Vec<_> = answer
        .headers()
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(allow, ["*"], "exactly one allow-origin header");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_part_in_progress_streams_through_the_edge_and_a_shield() {
    let origin = Server::start(&["--stream", "live=live-key"]);
    let (mut publisher, _) = start_publisher(&[format!("{}/live/live-key", origin.rtmp)]);
    let shield = EdgeNode::local(&[&origin.http], &[]);
    let edge = EdgeNode::local(&[&shield.url], &[]);
    let playlist_url = format!("{}/live/live/source/index.m3u8", edge.url);
    get_when_ready(&playlist_url, Duration::from_secs(15)).await;
    players_on_other_sites_may_read(&playlist_url).await;
    for _ in 0..3 {
        let playlist = get_text(&playlist_url).await.1;
        let (msn, part) = preload_hint(&playlist);
        let client = client();
        let started = Instant::now();
        // The hinted part is still being produced: its first chunk must arrive
        // before the part completes (when a blocking reload for the next one returns).
        let part_url = format!("{}/live/live/source/part-{msn}-{part}.m4s", edge.url);
        let next = format!(
            "{}/live/live/source/index.m3u8?_HLS_msn={msn}&_HLS_part={}",
            origin.http,
            part + 1
        );
        let (first_chunk_at, completed_at) = tokio::join!(
            async {
                let mut r = client.get(&part_url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.chunk().await.unwrap().expect("a first chunk");
                let at = started.elapsed();
                while r.chunk().await.unwrap().is_some() {}
                at
            },
            async {
                let r = client.get(&next).send().await.unwrap();
                assert_eq!(r.status(), 200);
                started.elapsed()
            }
        );
        assert!(
            first_chunk_at < completed_at,
            "first chunk after {first_chunk_at:?}, part complete after {completed_at:?}"
        );
    }
    // Through two tiers, the stream decodes. ffprobe reads whole segments, not parts:
    // wait for the first one (with 0.2 s parts the loop above may end before it).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !get_text(&playlist_url).await.1.contains("#EXTINF:") {
        assert!(
            Instant::now() < deadline,
            "no complete segment through the edge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("{}/live/live/master.m3u8", edge.url)));
    assert!(ok && out.contains("h264"), "ffprobe: {out} {err}");
    // A viewer sent to the edge watches there: the page is served by the edge, and its
    // API calls pass through both tiers to the origin.
    let page = get_text(&format!("{}/watch/live", edge.url)).await;
    assert_eq!(page.0, 200);
    assert!(page.1.contains("<video"), "{}", page.1);
    let (status, body) = get_text(&format!("{}/api/streams/live", edge.url)).await;
    assert_eq!(status, 200, "{body}");
    let stream: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stream["name"], "live");
    assert!(stream.get("key").is_none(), "a public read shows no key");
    let mut events = client()
        .get(format!("{}/api/streams/live/events", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), events.chunk())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .expect("the event stream stays open");
    assert!(
        String::from_utf8_lossy(&first).contains("snapshot"),
        "{first:?}"
    );
    let refused = client()
        .post(format!("{}/api/streams", edge.url))
        .header("content-type", "application/json")
        .body(r#"{"name": "sneaky"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "admin calls still need the token");
    let _ = publisher.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_keep_playing_when_the_first_origin_dies() {
    let (a_rtmp, a_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let args = ["--stream", "ab=ab-key", "--grace-period-ms", "60000"];
    let a = Server::start_on(&a_rtmp, &a_http, &args);
    let b = Server::start(&args);
    let (mut publisher, _) = start_publisher(&[
        format!("rtmp://{a_rtmp}/live/ab-key"),
        format!("{}/live/ab-key", b.rtmp),
    ]);
    let edge = EdgeNode::local(&[&a.http, &b.http], &[]);
    let base = format!("{}/live/ab/source", edge.url);
    let first = get_when_ready(&format!("{base}/index.m3u8"), Duration::from_secs(15)).await;
    get_when_ready(
        &format!("{}/live/ab/source/index.m3u8", b.http),
        Duration::from_secs(15),
    )
    .await;
    // A viewer following blocking reloads and fetching every part.
    let client = client();
    let (mut msn, mut part) = preload_hint(&first);
    let mut a = Some(a);
    let started = Instant::now();
    let mut parts_after_kill = 0;
    let mut longest_wait = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(9) {
        if a.is_some() && started.elapsed() > Duration::from_secs(3) {
            drop(a.take()); // SIGKILL
        }
        let asked = Instant::now();
        let r = client
            .get(format!("{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "blocking reload for {msn}.{part}");
        let playlist = r.text().await.unwrap();
        if !playlist.contains(&format!("part-{msn}-{part}.m4s")) {
            // The hinted part fell on a segment boundary: the next segment has it.
            assert!(
                playlist.contains(&format!("part-{}-0.m4s", msn + 1)),
                "{playlist}"
            );
            (msn, part) = (msn + 1, 0);
            continue;
        }
        let p = client
            .get(format!("{base}/part-{msn}-{part}.m4s"))
            .send()
            .await
            .unwrap();
        assert_eq!(p.status(), 200, "part {msn}.{part}");
        let body = p
            .bytes()
            .await
            .expect("the whole part, even if its origin died meanwhile");
        assert!(!body.is_empty());
        longest_wait = longest_wait.max(asked.elapsed());
        let (next_msn, next_part) = preload_hint(&playlist);
        assert!(
            (next_msn, next_part) > (msn, part),
            "no regression: {msn}.{part} then {next_msn}.{next_part}"
        );
        (msn, part) = (next_msn, next_part);
        if a.is_none() {
            parts_after_kill += 1;
        }
    }
    assert!(
        parts_after_kill >= 10,
        "only {parts_after_kill} parts after A died"
    );
    assert!(
        longest_wait < Duration::from_secs(2),
        "a request waited {longest_wait:?}"
    );
    let _ = publisher.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_stays_within_its_memory_bound() {
    let origin = Server::start(&["--stream", "big=big-key", "--window-segments", "12"]);
    let (mut publisher, _) = rivulet_publish(&[
        "--test-pattern",
        "--size",
        "1280x720",
        "--bitrate",
        "3M",
        &format!("{}/live/big-key", origin.rtmp),
    ]);
    let edge = EdgeNode::local(&[&origin.http], &["--cache-size", "300K"]);
    let base = format!("{}/live/big/source", edge.url);
    get_when_ready(&format!("{base}/index.m3u8"), Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let playlist = get_text(&format!("{base}/index.m3u8")).await.1;
    let mut fetched = 0usize;
    for line in playlist.lines() {
        let uri = if let Some(u) = attr(line, "URI") {
            u.to_owned()
        } else if line.starts_with("seg-") {
            line.to_owned()
        } else {
            continue;
        };
        if uri.starts_with("init") {
            continue;
        }
        let r = client().get(format!("{base}/{uri}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{uri}");
        fetched += r.bytes().await.unwrap().len();
    }
    assert!(
        fetched > 900 * 1024,
        "fetched only {fetched} bytes: not enough to overflow the cache"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = get_text(&format!("{}/metrics", edge.url)).await.1;
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let held = value("edge_cache_bytes");
    assert!(
        held > 0.0 && held <= 300.0 * 1024.0,
        "the cache holds {held} bytes\n{metrics}"
    );
    assert!(value("edge_evictions_total") > 0.0, "{metrics}");
    let _ = publisher.kill();
}

#[test]
fn the_edge_speaks_https_with_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ok, _, err) = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(ok, "openssl: {err}");
    let origin = Server::start(&[]);
    let edge = EdgeNode::local(
        &[&origin.http],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(edge.url.starts_with("https://"), "{}", edge.url);
    let (ok, out, err) = run(Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("{}/healthz", edge.url)));
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "2 200", "HTTP/2 over TLS (ALPN)");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_sends_a_stream_to_one_edge_and_moves_it_when_that_edge_dies() {
    let origin = Server::start(&[]);
    let mut edges = [
        Some(EdgeNode::local(&[&origin.http], &[])),
        Some(EdgeNode::local(&[&origin.http], &[])),
    ];
    let urls: Vec<String> = edges
        .iter()
        .map(|e| e.as_ref().unwrap().url.clone())
        .collect();
    let edge_args: Vec<&str> = urls.iter().map(String::as_str).collect();
    let (_router, base) = start_router(&edge_args, &[]);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let target = |stream: &'static str| {
        let (client, base) = (no_redirects.clone(), base.clone());
        async move {
            let r = client
                .get(format!("{base}/live/{stream}/master.m3u8?x=1"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 302);
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = target("concert").await;
    assert!(first.ends_with("/live/concert/master.m3u8?x=1"), "{first}");
    let chosen = urls
        .iter()
        .position(|u| first.starts_with(u.as_str()))
        .expect("one of the edges");
    for _ in 0..5 {
        assert_eq!(
            target("concert").await,
            first,
            "a stream sticks to its edge"
        );
    }
    let watch = no_redirects
        .get(format!("{base}/watch/concert"))
        .send()
        .await
        .unwrap();
    assert!(
        watch.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(urls[chosen].as_str())
    );
    // Streams spread over both edges.
    let mut seen = std::collections::HashSet::new();
    for s in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
        let r = no_redirects
            .get(format!("{base}/live/{s}/master.m3u8"))
            .send()
            .await
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        seen.insert(
            urls.iter()
                .position(|u| loc.starts_with(u.as_str()))
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 2, "ten streams all went to one edge");
    // The chosen edge dies: within a few probes its streams go to the other.
    drop(edges[chosen].take());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = target("concert").await;
        if now.starts_with(urls[1 - chosen].as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still sent to the dead edge: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `rivulet route` over `edges` (each `URL[=CC,…]`); its process and base URL.
fn start_router(edges: &[&str], extra: &[&str]) -> (KillOnDrop, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rivulet"));
    cmd.args(["route", "--http-listen", "127.0.0.1:0"]);
    for e in edges {
        cmd.args(["--edge", e]);
    }
    let (router, base) = spawn_announcing(cmd.args(extra), "HTTP router: ");
    (KillOnDrop(router), base)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_sends_viewers_to_their_countrys_edge() {
    let origin = Server::start(&[]);
    let us = EdgeNode::local(&[&origin.http], &[]);
    let global = EdgeNode::local(&[&origin.http], &[]);
    let us_spec = format!("{}=US,CA", us.url);
    // The test's requests come from loopback: the router believes their
    // X-Forwarded-For, as it would a load balancer's.
    let (_router, base) = start_router(
        &[&us_spec, &global.url],
        &["--trusted-proxy", "127.0.0.0/8"],
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let target = |forwarded: Option<&'static str>, stream: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let mut req = client.get(format!("{base}/live/{stream}/master.m3u8"));
            if let Some(f) = forwarded {
                req = req.header("x-forwarded-for", f);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 302);
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    // Let the first probe mark both edges healthy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for stream in ["a", "b", "c", "d", "e", "f"] {
        // 8.8.8.8 is in the United States (see the analytics GeoIP test).
        let american = target(Some("8.8.8.8"), stream).await;
        assert!(american.starts_with(&us.url), "{stream}: {american}");
        // Loopback has no country: the edge tied to none.
        let unknown = target(None, stream).await;
        assert!(unknown.starts_with(&global.url), "{stream}: {unknown}");
    }
    // Without --trusted-proxy, X-Forwarded-For is anybody's claim and is ignored.
    let (_unproxied, base) = start_router(&[&us_spec, &global.url], &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = client
        .get(format!("{base}/live/a/master.m3u8"))
        .header("x-forwarded-for", "8.8.8.8")
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&global.url), "{location}");
    // A bad edge spec is refused with a message that shows the expected form.
    let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["route", "--edge", "edge.example.com=DE"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https://edge-eu.example.com=DE,FR"), "{err}");
}
