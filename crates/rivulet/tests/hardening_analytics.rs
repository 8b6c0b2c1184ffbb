//! Hostile clients of the analytics and metadata APIs (issue 21), against the real
//! `rivulet` binary on loopback with a real ffmpeg publisher: a beacon flood followed
//! by the summary the dashboard polls must not stop playback or ingest; bodies and
//! fields over their limits get 413/400 with a reason; beacons about streams that do
//! not exist are refused; delivery events need a token; the database and the secrets
//! are private files and stay out of pages and logs.
//!
//! Run one with its figures: `cargo test -p rivulet --test hardening_analytics
//! beacon_flood -- --nocapture` (`RIVULET_FLOOD_BEACONS=N` changes the flood's size).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KillOnDrop, Server, client, get_text, get_when_ready, publish};
use serde_json::{Value, json};

/// Beacons of the flood (half about made-up streams, half about the real one, each
/// with a new session and a random rendition).
const DEFAULT_FLOOD: usize = 100_000;
/// Sessions the server under flood remembers at most.
const MAX_SESSIONS: usize = 20_000;
/// An honest request that takes longer than this means the server froze.
const FREEZE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beacon_flood_then_summary_leaves_viewers_and_publishers_alone() {
    let server = Server::start(&[
        "--stream",
        "cam=cam-key-0001",
        "--stream",
        "late=late-key-001",
        "--analytics-max-sessions",
        &MAX_SESSIONS.to_string(),
    ]);
    let mut cam = publish(&format!("{}/live/cam-key-0001", server.rtmp), 180);
    get_when_ready(
        &server.url("/live/cam/master.m3u8"),
        Duration::from_secs(30),
    )
    .await;
    let rss_before = rss_kib(server.pid());

    // The flood: batches of 100 from 4 clients at once.
    let total: usize = std::env::var("RIVULET_FLOOD_BEACONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_FLOOD);
    let url = server.url("/api/analytics/beacons");
    let (accepted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood_start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..4usize {
        let (url, accepted, refused) = (url.clone(), accepted.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            for batch in (w..total / 100).step_by(4) {
                // Even batches: made-up stream names; odd: the real stream.
                let beacons: Vec<Value> = (0..100)
                    .map(|i| {
                        let n = batch * 100 + i;
                        let stream = if batch % 2 == 0 {
                            format!("made-up-{n}")
                        } else {
                            "cam".to_owned()
                        };
                        json!({"stream": stream, "session_id": format!("s-{n}"),
                               "rendition": format!("r-{n}"), "play_ms": 1000})
                    })
                    .collect();
                let r = http
                    .post(&url)
                    .json(&json!({ "beacons": beacons }))
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    202 => accepted.fetch_add(100, Ordering::Relaxed),
                    404 => refused.fetch_add(100, Ordering::Relaxed),
                    s => panic!("beacons answered {s}: {}", r.text().await.unwrap()),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let flood_time = flood_start.elapsed();
    let (accepted, refused) = (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert_eq!(accepted + refused, (total / 100 * 100) as u64);
    assert!(
        refused > 0 && accepted > 0,
        "{accepted} accepted, {refused} refused"
    );

    // Now the summary, again and again (what /dashboard polls), while an honest viewer
    // polls its playlist and /healthz, and a new publisher goes live.
    let hammering = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let summary_url = server.url("/api/analytics/summary");
    let hammer = {
        let (hammering, summary_url) = (hammering.clone(), summary_url.clone());
        tokio::spawn(async move {
            let http = client();
            let mut slowest = Duration::ZERO;
            let mut n = 0;
            while hammering.load(Ordering::Relaxed) || n == 0 {
                let t = Instant::now();
                let r = http.get(&summary_url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                slowest = slowest.max(t.elapsed());
                n += 1;
            }
            (n, slowest)
        })
    };
    let mut late = publish(&format!("{}/live/late-key-001", server.rtmp), 60);
    let honest_start = Instant::now();
    let http = client();
    let mut slowest_honest = Duration::ZERO;
    let late_live = loop {
        for path in ["/healthz", "/live/cam/master.m3u8"] {
            let t = Instant::now();
            let r = tokio::time::timeout(FREEZE, http.get(server.url(path)).send())
                .await
                .unwrap_or_else(|_| {
                    panic!("{path} not answered within {FREEZE:?} under the summary")
                })
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            slowest_honest = slowest_honest.max(t.elapsed());
        }
        let r = http
            .get(server.url("/live/late/master.m3u8"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break honest_start.elapsed();
        }
        assert!(
            honest_start.elapsed() < Duration::from_secs(30),
            "the new publisher's stream did not go live within 30 s under the summary requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    hammering.store(false, Ordering::Relaxed);
    let (summaries, slowest_summary) = hammer.await.unwrap();
    let rss_after = rss_kib(server.pid());

    // What the flood left: the one real stream (and the new one), sessions within the
    // cap, the breakdown folded.
    let (status, text) = get_text(&summary_url).await;
    assert_eq!(status, 200, "{text}");
    let summary: Value = serde_json::from_str(&text).unwrap();
    let streams: Vec<&str> = summary["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    assert!(
        streams.iter().all(|s| *s == "cam" || *s == "late"),
        "{streams:?}"
    );
    assert!(summary["concurrent_viewers"].as_u64().unwrap() <= MAX_SESSIONS as u64);
    assert!(summary["by_rendition"].as_array().unwrap().len() <= analytics::DEFAULT_MAX_VALUES);
    let metrics = wait_for_metric(&server, "analytics_sessions_evicted_total").await;
    assert!(
        metrics.contains("analytics_beacons_rejected_total{reason=\"unknown_stream\"}"),
        "{metrics}"
    );
    eprintln!(
        "FIGURES: {total} beacons in {flood_time:.1?} ({accepted} accepted, {refused} refused as unknown streams); \
         RSS {rss_before} KiB -> {rss_after} KiB; {summaries} summaries, slowest {slowest_summary:.1?}; \
         slowest honest request {slowest_honest:.1?}; new publisher live after {late_live:.1?}; \
         summary {} bytes",
        text.len()
    );
    for child in [&mut cam, &mut late] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_tokens_and_private_files_of_serve() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_cmd(
        &[],
        "rivulet",
        data.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "--stream",
            "cam=cam-key-0001",
            "--api-max-body-bytes",
            "4096",
        ],
    );
    let http = client();
    let beacons = server.url("/api/analytics/beacons");
    let post = |url: String, body: String| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    // Bodies over the limit: 413 with the reason, said before the body is read.
    let (status, body) = declare_body(&server, "/api/analytics/beacons", None, 70_000);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
    // Fields over their limits: 400 naming the field.
    for (beacon, field) in [
        (json!({"stream": "x".repeat(100)}), "beacons[0].stream"),
        (
            json!({"stream": "cam", "session_id": "s".repeat(100)}),
            "beacons[0].session_id",
        ),
        (
            json!({"stream": "cam", "rendition": "r".repeat(100)}),
            "beacons[0].rendition",
        ),
    ] {
        let (status, body) =
            post(beacons.clone(), json!({ "beacons": [beacon] }).to_string()).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }
    // A stream that does not exist: refused, nothing kept; the declared one: taken.
    let (status, body) = post(
        beacons.clone(),
        json!({"beacons": [{"stream": "cam"}, {"stream": "ghost"}]}).to_string(),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (404, Some("beacons[1].stream")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("'ghost'"),
        "{body}"
    );
    // The declared stream is known once analytics has read the stream list (at start,
    // then every 5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = post(
            beacons.clone(),
            json!({"beacons": [{"stream": "cam"}]}).to_string(),
        )
        .await;
        if status == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Delivery events over HTTP: this server records its own in-process and has no
    // events token, so it takes none, and says how to.
    let event = json!({"events": [{"ts": 1, "stream": "cam", "kind": "part", "status": 200,
        "bytes": 1, "ttfb_us": 1, "client": "203.0.113.9", "session": "fake", "edge": "fake-edge"}]});
    let (status, body) = post(server.url("/api/analytics/events"), event.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--analytics-token"),
        "{body}"
    );

    // The metadata API: the generated admin token, a body over 64 KiB answered 413,
    // and the token not taken from the query string.
    let token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    let token = token.trim();
    let streams = server.url("/api/streams");
    let (status, body) = declare_body(&server, "/api/streams", Some(token), 100_000);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
    // The limit is --api-max-body-bytes (4096 here): a description of the longest
    // valid length (5,000 characters) no longer fits.
    let r = http
        .post(&streams)
        .bearer_auth(token)
        .json(&json!({"name": "long-text", "description": "d".repeat(5_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("4096"), "{body}");
    for query in ["token", "access_token", "admin_token"] {
        let r = http
            .post(format!("{streams}?{query}={token}"))
            .json(&json!({"name": "via-query"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "?{query}=");
    }
    let r = http
        .post(&streams)
        .bearer_auth(token)
        .json(&json!({"name": "ok-stream"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // The database (client addresses) and the token: the owner's only.
    for file in ["meta.db", "meta.db-wal", "meta.db-shm", "admin-token"] {
        assert_eq!(mode(&data.path().join(file)), 0o600, "{file}");
    }
    // Secrets in no page and no log line.
    for path in ["/metrics", "/api/openapi.json", "/api/analytics/summary"] {
        let (_, text) = get_text(&server.url(path)).await;
        for secret in [token, "cam-key-0001"] {
            assert!(!text.contains(secret), "{path} shows a secret");
        }
    }
    assert!(!server.log().contains("cam-key-0001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_alone_needs_its_events_token() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, base, stdout) = start_analytics(data.path(), &[]);
    let file = data.path().join(analytics::EVENTS_TOKEN_FILE);
    assert_eq!(mode(&file), 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    // Printed once, at the start that generated it.
    assert!(stdout.contains(&token), "{stdout}");
    let http = client();
    let events = format!("{base}/api/analytics/events");
    let event = |stream: &str| {
        json!({"events": [{"ts": analytics::now_ms(), "stream": stream, "kind": "part",
            "status": 200, "bytes": 1000, "ttfb_us": 1, "client": "203.0.113.9",
            "session": "v1", "edge": "edge-1"}]})
    };
    for auth in [None, Some("wrong-token-123")] {
        let mut r = http.post(&events).json(&event("rem"));
        if let Some(auth) = auth {
            r = r.bearer_auth(auth);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
    }
    // Beacons about a stream nobody served yet: refused.
    let beacons = format!("{base}/api/analytics/beacons");
    let beacon = json!({"beacons": [{"stream": "rem"}]});
    let r = http.post(&beacons).json(&beacon).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // With the token: taken; the stream was served, so its beacons are taken too.
    let r = http
        .post(&events)
        .bearer_auth(&token)
        .json(&event("rem"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http.post(&beacons).json(&beacon).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // A 7 MB stream name: refused (field too long), not kept.
    let r = http
        .post(&events)
        .bearer_auth(&token)
        .json(&event(&"x".repeat(7_000_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "events[0].stream", "{body}");
    // Over 8 MiB: 413, answered from the declared length before the body is read. The
    // server then closes the connection: a client still writing may see its write fail
    // instead of the answer (as with any server that does not linger); either way the
    // body is refused and the server goes on.
    match http
        .post(&events)
        .bearer_auth(&token)
        .json(&event(&"x".repeat(9_000_000)))
        .send()
        .await
    {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    let r = http
        .post(&events)
        .bearer_auth(&token)
        .json(&event("rem"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "the server goes on after a refused body");
    let (_, metrics) = get_text(&format!("{base}/metrics")).await;
    assert!(!metrics.contains(&token));
    let _ = child.kill();
    let _ = child.wait();

    // Started again: the same token, read from the file, not shown.
    let (mut child, _, stdout) = start_analytics(data.path(), &[]);
    assert!(!stdout.contains(&token), "{stdout}");
    assert!(stdout.contains("Events token: in"), "{stdout}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `rivulet analytics`; returns it (killed when dropped, even when the test
/// fails), its base URL and its banner.
fn start_analytics(data: &Path, extra: &[&str]) -> (KillOnDrop, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["analytics", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rivulet analytics");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let mut base = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner += &line;
        banner.push('\n');
        if let Some(rest) = line.trim().strip_prefix("HTTP: ") {
            base = Some(rest.trim_end_matches('/').to_owned());
        }
        if line.trim().starts_with("GeoIP:") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (
        KillOnDrop(child),
        base.expect("no HTTP line in the banner"),
        banner,
    )
}

/// POSTs to `path` a request that declares a body of `length` bytes and sends only
/// its first bytes, over a plain socket (a client sending the whole body could see
/// the connection closed under it, as it should be); returns the answer.
fn declare_body(server: &Server, path: &str, token: Option<&str>, length: usize) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = server.http.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        socket,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {length}\r\nConnection: close\r\n\r\n{{\"beacons\": ["
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls /metrics until `series` appears (metrics are set once a second).
async fn wait_for_metric(server: &Server, series: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = get_text(&server.url("/metrics")).await;
        if text.contains(series) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {series} in /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The resident set of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The CORS headers of an answer (`access-control-…`), as `name: value` lines.
fn cors_headers(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-"))
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
        .collect()
}

/// The admin API cannot be used from another site's pages: a preflight and requests
/// with a foreign `Origin` get no `Access-Control-Allow-Origin` (nor
/// `…-Allow-Credentials`), while the beacons endpoint, open to every origin by
/// design, does answer CORS (so the check sees CORS headers when there are some).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_answers_no_cross_origin_request() {
    const EVIL: &str = "https://evil.example";
    let token = "admin-token-0123456789-abcdefghij";
    let server = Server::start(&["--stream", "cam=cam-key-0001", "--admin-token", token]);
    let http = client();
    let streams = server.url("/api/streams");

    let preflight = |url: String| {
        let http = http.clone();
        async move {
            http.request(reqwest::Method::OPTIONS, url)
                .header("origin", EVIL)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .unwrap()
        }
    };
    let r = preflight(streams.clone()).await;
    assert_eq!(
        cors_headers(&r),
        Vec::<String>::new(),
        "preflight of /api/streams: {}",
        r.status()
    );
    let r = http
        .get(&streams)
        .header("origin", EVIL)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(cors_headers(&r), Vec::<String>::new(), "GET /api/streams");
    let r = http
        .post(&streams)
        .header("origin", EVIL)
        .bearer_auth(token)
        .json(&json!({"name": "cross-origin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(cors_headers(&r), Vec::<String>::new(), "POST /api/streams");
    // The same without the token (a browser sending whatever credentials it has).
    let r = http
        .post(&streams)
        .header("origin", EVIL)
        .json(&json!({"name": "cross-origin-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        cors_headers(&r),
        Vec::<String>::new(),
        "POST without a token"
    );

    // The control: beacons take any origin, without credentials.
    let r = preflight(server.url("/api/analytics/beacons")).await;
    let cors = cors_headers(&r);
    assert!(
        cors.iter().any(|h| h == "access-control-allow-origin: *"),
        "{cors:?}"
    );
    assert!(
        !cors
            .iter()
            .any(|h| h.starts_with("access-control-allow-credentials")),
        "{cors:?}"
    );
}

/// A hook endpoint (webhooks and the publish authorisation hook) that answers 200 to
/// every request and keeps each one's head and body.
struct HookReceiver {
    url: String,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl HookReceiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = Self::answer(conn, kept).await;
                });
            }
        });
        Self { url, requests }
    }

    async fn answer(
        mut conn: tokio::net::TcpStream,
        kept: Arc<Mutex<Vec<(String, String)>>>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&got[end + 4..]).into_owned();
                    kept.lock().unwrap().push((head, body));
                    return conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                }
            }
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// The first request whose body holds `needle`, waited for at most 20 s.
    async fn request_with(&self, needle: &str) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(found) = self
                .requests
                .lock()
                .unwrap()
                .iter()
                .find(|(_, body)| body.contains(needle))
            {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no hook request with {needle}: {:?}",
                self.requests.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The secrets of a publish (the stream key, the webhook and authorisation hook
/// secrets, the events token, the configured admin token) are used, and appear in no
/// log line (stderr, and the banner on stdout), in /metrics, nor in the pages and API
/// answers that list the hooks; the hooks' requests do not carry the stream key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_secrets_and_tokens_stay_out_of_logs_and_metrics() {
    let hooks = HookReceiver::start().await;
    let (admin, key) = ("admin-SECRET-0123456789abcdefgh", "cam-key-SECRET-0001");
    let (webhook_secret, publish_secret, events_token) = (
        "webhook-SECRET-0123456789abcdef",
        "onpublish-SECRET-0123456789abcd",
        "events-SECRET-0123456789abcdefg",
    );
    let secrets = [admin, key, webhook_secret, publish_secret, events_token];
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let stdout_file = out.path().join("stdout.txt");
    // stdout (the banner) is copied into a file, and still read by the harness.
    let prefix = [
        "bash".to_owned(),
        "-c".to_owned(),
        format!(
            "exec \"$0\" \"$@\" > >(exec tee -a '{}')",
            stdout_file.display()
        ),
    ];
    let stream = format!("cam={key}");
    let webhook = format!("{}/webhook", hooks.url);
    let on_publish = format!("{}/on-publish", hooks.url);
    let server = Server::start_cmd(
        &prefix,
        "rivulet",
        data.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "--stream",
            &stream,
            "--admin-token",
            admin,
            "--webhook",
            &webhook,
            "--webhook-secret",
            webhook_secret,
            "--on-publish-url",
            &on_publish,
            "--on-publish-secret",
            publish_secret,
            "--analytics-token",
            events_token,
        ],
    );
    let _publisher = KillOnDrop(publish(&format!("{}/live/{key}", server.rtmp), 30));
    get_when_ready(
        &server.url("/live/cam/master.m3u8"),
        Duration::from_secs(30),
    )
    .await;
    // Both hooks were asked, signed (so their secrets are in use), without the key.
    let (head, body) = hooks.request_with("\"stream.publish\"").await;
    assert!(
        head.to_ascii_lowercase().contains("rivulet-signature: v1="),
        "{head}"
    );
    let (webhook_head, webhook_body) = hooks.request_with("\"stream.published\"").await;
    assert!(
        webhook_head
            .to_ascii_lowercase()
            .contains("rivulet-signature: v1="),
        "{webhook_head}"
    );
    for text in [&head, &body, &webhook_head, &webhook_body] {
        assert!(!text.contains(key), "a hook request carries the stream key");
    }
    // The events token is in use: events with it are taken, without it refused.
    let events = server.url("/api/analytics/events");
    let event = json!({"events": [{"ts": analytics::now_ms(), "stream": "cam", "kind": "part",
        "status": 200, "bytes": 1, "ttfb_us": 1, "client": "203.0.113.9", "session": "s",
        "edge": "edge-1"}]});
    let http = client();
    let r = http.post(&events).json(&event).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&events)
        .bearer_auth(events_token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Pages and API answers, the admin's included.
    for path in [
        "/metrics",
        "/api/openapi.json",
        "/api/analytics/summary",
        "/api/streams",
        "/api/streams/cam",
        "/api/webhooks",
    ] {
        let r = http
            .get(server.url(path))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        for secret in secrets {
            assert!(!text.contains(secret), "{path} shows {secret}");
        }
    }
    let log = server.log();
    let banner = std::fs::read_to_string(&stdout_file).unwrap();
    assert!(
        banner.contains("HTTP origin"),
        "stdout not captured: {banner}"
    );
    assert!(log.contains("publish"), "no log captured: {log}");
    for secret in secrets {
        assert!(!log.contains(secret), "the log shows {secret}");
        assert!(!banner.contains(secret), "the banner shows {secret}");
    }
}
