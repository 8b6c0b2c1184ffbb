//! HTTP serving under hostile clients and hostile upstreams (issue 21, items 5 and 6):
//! real `rivulet serve` and `rivulet edge` processes, real sockets, a real ffmpeg
//! publisher, and a tiny misbehaving upstream written here.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

/// Open descriptors of a process.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.X), so that a
/// test can play several clients.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// A GET written by hand: HTTP clients normalise `%2e%2e` away before sending (as
/// the URL standard asks), an attacker does not. The status and the raw body.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr_of(base)).await.unwrap();
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("answered within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// What the server sent before closing, or `None` if it kept the connection open
/// and silent for `wait`.
async fn answer_or_silence(conn: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, conn.read(&mut buf)).await {
            Err(_) => return (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into()),
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_beyond_the_caps_leave_viewers_and_publishers_served() {
    let origin = Server::start(&[
        "--stream",
        "cam=cam-key",
        "--stream",
        "late=late-key",
        "--http-max-connections",
        "300",
        "--http-max-connections-per-client",
        "100",
    ]);
    let _publisher = KillOnDrop(publish(&format!("{}/live/cam-key", origin.rtmp), 90));
    let playlist = origin.url("/live/cam/source/index.m3u8");
    get_when_ready(&playlist, Duration::from_secs(20)).await;
    let http = addr_of(&origin.http);

    // One client opens 400 connections and sends nothing: 100 are admitted, the rest
    // are told why and closed.
    let mut flood = Vec::new();
    for _ in 0..400 {
        flood.push(connect_from([127, 0, 0, 2], http).await);
    }
    let answers = futures::future::join_all(
        flood
            .iter_mut()
            .map(|c| answer_or_silence(c, Duration::from_secs(2))),
    )
    .await;
    let refused: Vec<&String> = answers.iter().flatten().collect();
    assert!(
        refused.len() >= 300,
        "only {} of 400 connections from one address were refused",
        refused.len()
    );
    assert!(
        refused.iter().any(|a| a.starts_with("HTTP/1.1 503")
            && a.contains("too many connections from your address")),
        "the refusal says why: {:?}",
        refused.first()
    );

    // Five more clients, 60 idle connections each: beyond the total cap of 300, so
    // idle connections are closed to make room.
    let mut idle = Vec::new();
    for client in 3..8u8 {
        for _ in 0..60 {
            idle.push(connect_from([127, 0, 0, client], http).await);
        }
    }
    // While they sit there, an honest viewer still gets its playlist, promptly. (After
    // the burst settles: the server closes at most 32 evicted connections at a time and
    // refuses newcomers beyond that for the moment, with 503.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let viewer = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = viewer
            .get(&playlist)
            .send()
            .await
            .expect("answered within 5 s");
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("#EXT-X-PART"));
    }
    // A new publisher still connects and its stream plays.
    let _late = KillOnDrop(publish(&format!("{}/live/late-key", origin.rtmp), 60));
    get_when_ready(
        &origin.url("/live/late/source/index.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    // The flood costs at most the cap in descriptors.
    let open = descriptors(origin.pid());
    assert!(
        open < 300 + 150,
        "{open} descriptors open with a cap of 300"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_closed_after_the_header_timeout_and_big_bodies_get_413() {
    let origin = Server::start(&[
        "--http-header-timeout-ms",
        "1000",
        "--http-max-body-bytes",
        "65536",
    ]);
    let http = addr_of(&origin.http);
    let mut drip = connect_from([127, 0, 0, 2], http).await;
    drip.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = drip.into_split();
    let dripping = tokio::spawn(async move {
        // One header line every 200 ms, never the blank line that ends the head.
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer
                .write_all(format!("x-drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        unreachable!()
    });
    // An honest client meanwhile.
    let (status, body) = get_text(&origin.url("/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a head dripping for 5 s was not cut off (header timeout 1 s)"
    );
    dripping.abort();

    // A body over the limit is refused before any handler reads it, with the reason
    // (the client sends the head and waits, as with `Expect: 100-continue`).
    let mut post = TcpStream::connect(http).await.unwrap();
    post.write_all(
        b"POST /api/streams HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200000\r\n\r\n",
    )
    .await
    .unwrap();
    let reason = answer_or_silence(&mut post, Duration::from_secs(5))
        .await
        .expect("answered at once");
    assert!(reason.starts_with("HTTP/1.1 413"), "{reason}");
    assert!(
        reason.contains("request body over 65536 bytes"),
        "413 without the reason: {reason}"
    );
    // And the server goes on serving.
    assert_eq!(get_text(&origin.url("/healthz")).await.0, 200);
}

/// What a [`FakeUpstream`] does for a path.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Text(&'static str),
    NotFound,
    /// 200, then bytes without end.
    Endless,
    /// 200 with a length, then one byte every 5 s.
    Drip,
    /// Nothing, for a minute (a blocking reload held upstream).
    Hold,
}

/// A tiny HTTP/1.1 upstream that behaves as told and records what it is asked.
struct FakeUpstream {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl FakeUpstream {
    async fn start(answer: fn(&str) -> Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = Self::answer(conn, answer, log).await;
                });
            }
        });
        Self { url, asked }
    }

    async fn answer(
        mut conn: TcpStream,
        answer: fn(&str) -> Answer,
        log: Arc<Mutex<Vec<String>>>,
    ) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        if path == "/healthz" {
            return conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")
                .await;
        }
        log.lock().unwrap().push(path.clone());
        match answer(&path) {
            Answer::Text(body) => {
                let kind = if path.ends_with(".m3u8") {
                    "application/vnd.apple.mpegurl"
                } else {
                    "video/mp4"
                };
                conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncache-control: max-age=60\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await
            }
            Answer::NotFound => {
                conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncache-control: no-store\r\ncontent-length: 18\r\nconnection: close\r\n\r\nstream is offline\n",
                )
                .await
            }
            Answer::Endless => {
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.apple.mpegurl\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n#EXTM3U\n",
                )
                .await?;
                let junk = "#EXT-X-JUNK:0123456789abcdef\n".repeat(2048);
                loop {
                    conn.write_all(junk.as_bytes()).await?;
                }
            }
            Answer::Hold => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }
            Answer::Drip => {
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: 100\r\nconnection: close\r\n\r\n",
                )
                .await?;
                for _ in 0..100 {
                    conn.write_all(b"x").await?;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok(())
            }
        }
    }

    fn asked(&self, path: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    fn all_asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn plain_upstream(path: &str) -> Answer {
    match path {
        "/live/cam/src/seg-7.m4s" => Answer::Text("segment seven"),
        "/live/cam/src/index.m3u8" => Answer::Text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n"),
        _ => Answer::NotFound,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_encoded_dot_segments_and_fetches_each_object_once() {
    let upstream = FakeUpstream::start(plain_upstream).await;
    let edge = EdgeNode::local(&[&upstream.url], &["--negative-ttl-ms", "10000"]);
    for attack in [
        "/live/%2e%2e/metrics",
        "/live/%2E%2E/metrics",
        "/live/cam/%2e%2e/%2e%2e/metrics",
        "/live/cam%2f..%2fmetrics/master.m3u8",
        "/live/cam/src/..%2f..%2fapi%2fstreams",
    ] {
        let (status, reason) = raw_get(&edge.url, attack).await;
        assert_eq!(status, 400, "{attack}: {reason}");
        assert!(
            reason.contains("not a live object path")
                || reason.contains("not a stream or rendition name")
                || reason.contains("is not a rendition name"),
            "{attack}: {reason}"
        );
    }
    assert!(
        upstream.all_asked().is_empty(),
        "refused paths reached the upstream: {:?}",
        upstream.all_asked()
    );

    // Many spellings of one segment: one entry, one upstream fetch.
    let mut aliases = vec![
        "/live/cam/src/seg-7.m4s".to_owned(),
        "/live/%63am/src/seg-7.m4s".to_owned(),
        "/live/cam/src/%73eg-7.m4s".to_owned(),
        "/live/cam/src/seg-7.m4s?_HLS_msn=3".to_owned(),
    ];
    aliases.extend((1..50).map(|zeros| format!("/live/cam/src/seg-{}7.m4s", "0".repeat(zeros))));
    for alias in &aliases {
        let (status, body) = raw_get(&edge.url, alias).await;
        assert_eq!(status, 200, "{alias}");
        assert!(body.contains("segment seven"), "{alias}: {body}");
    }
    assert_eq!(upstream.asked("/live/cam/src/seg-7.m4s"), 1);
    assert_eq!(upstream.all_asked().len(), 1, "{:?}", upstream.all_asked());

    // 500 requests for a missing object: one upstream fetch while the 404 is kept.
    let http = client();
    for _ in 0..500 {
        let r = http
            .get(edge.url("/live/cam/src/seg-99.m4s"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert_eq!(upstream.asked("/live/cam/src/seg-99.m4s"), 1);
}

fn hostile_upstream(path: &str) -> Answer {
    match path {
        "/live/cam/a/index.m3u8" | "/live/cam/b/index.m3u8" | "/live/cam/c/index.m3u8" => {
            Answer::Endless
        }
        "/live/cam/drip/index.m3u8" | "/live/cam/src/seg-1.m4s" => Answer::Drip,
        other => plain_upstream(other),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_upstream_is_cut_off_and_the_edge_stays_small() {
    let upstream = FakeUpstream::start(hostile_upstream).await;
    let edge = EdgeNode::local(
        &[&upstream.url],
        &[
            "--upstream-max-playlist-bytes",
            "1048576",
            "--upstream-body-stall-ms",
            "1000",
        ],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(
        http.get(edge.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let before = rss(edge.pid());
    // Endless playlists, asked again and again.
    let endless = futures::future::join_all((0..30).map(|i| {
        let url = edge.url(&format!("/live/cam/{}/index.m3u8", ["a", "b", "c"][i % 3]));
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.expect("answered within 10 s");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    }));
    // A dripping playlist and a dripping segment.
    let drip_playlist = http.get(edge.url("/live/cam/drip/index.m3u8")).send();
    let drip_segment = async {
        let r = http.get(edge.url("/live/cam/src/seg-1.m4s")).send().await?;
        r.bytes().await
    };
    // An honest viewer meanwhile, promptly served.
    let honest = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .get(edge.url("/live/cam/src/seg-7.m4s"))
            .send()
            .await
            .expect("an honest request is answered within 5 s");
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (endless, drip_playlist, drip_segment, honest) =
        tokio::join!(endless, drip_playlist, drip_segment, honest);
    assert_eq!(honest, (200, "segment seven".to_owned()));
    for (status, body) in &endless {
        assert_eq!(
            *status,
            502,
            "an endless playlist was served: {} bytes",
            body.len()
        );
        assert!(
            body.contains("no upstream could answer") && !body.contains(&upstream.url[7..]),
            "the 502 names the upstream: {body}"
        );
    }
    let drip_playlist = drip_playlist.expect("the dripping playlist is answered within 10 s");
    assert_eq!(drip_playlist.status(), 502);
    // The segment's head came through; its body is cut off after the stall timeout,
    // not held for the 500 s the drip would take.
    match drip_segment {
        Ok(bytes) => assert!(bytes.len() < 100, "a dripped body completed"),
        Err(e) => assert!(!e.is_timeout(), "the dripping segment held the viewer: {e}"),
    }
    let after = rss(edge.pid());
    assert!(
        after < before + 64 * 1024 * 1024,
        "edge memory grew from {} MB to {} MB",
        before >> 20,
        after >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_does_not_name_the_upstream() {
    let port = free_port();
    let edge = EdgeNode::local(&[&format!("http://127.0.0.1:{port}")], &[]);
    let (status, body) = get_text(&edge.url("/live/cam/src/index.m3u8")).await;
    assert_eq!(status, 502);
    assert!(body.contains("no upstream could answer"), "{body}");
    assert!(
        !body.contains(&port.to_string()) && !body.contains("127.0.0.1"),
        "the 502 names the upstream: {body}"
    );
}

/// Memory per idle HTTP connection at the origin and at the edge (printed for the
/// record; the assertion only catches a gross regression).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_idle_connection_is_small() {
    const IDLE: usize = 2000;
    let origin = Server::start(&[]);
    let edge = EdgeNode::local(&[&origin.http], &[]);
    for (role, pid, url) in [
        ("origin", origin.pid(), origin.http.clone()),
        ("edge", edge.pid(), edge.url.clone()),
    ] {
        assert_eq!(get_text(&format!("{url}/healthz")).await.0, 200);
        let before = rss(pid);
        let mut idle = Vec::new();
        for i in 0..IDLE {
            let mut c = connect_from([127, 0, 0, 2 + (i % 100) as u8], addr_of(&url)).await;
            // A request first, so that each connection went through hyper once and
            // now waits idle for the next one (the common keep-alive case).
            c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            idle.push(c);
        }
        for c in &mut idle {
            let mut buf = [0u8; 512];
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let per_connection = rss(pid).saturating_sub(before) / IDLE as u64;
        eprintln!(
            "{role}: {per_connection} bytes of RSS per idle HTTP connection ({IDLE} connections)"
        );
        assert!(
            per_connection < 128 * 1024,
            "{role}: {per_connection} bytes per idle connection"
        );
    }
}

/// With a small open-files limit (256), a flood of idle HTTP connections never takes
/// the last descriptors: the connection cap fits under the limit, so the server never
/// hits `EMFILE`, viewers are served and a new RTMP publisher still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_flood_leaves_descriptors_for_publishers() {
    let data = tempfile::tempdir().unwrap().keep();
    let origin = Server::start_cmd(
        &["prlimit".to_owned(), "--nofile=256:256".to_owned()],
        "origin",
        &data,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["--stream", "cam=cam-key", "--stream", "late=late-key"],
    );
    let _publisher = KillOnDrop(publish(&format!("{}/live/cam-key", origin.rtmp), 90));
    let playlist = origin.url("/live/cam/source/index.m3u8");
    get_when_ready(&playlist, Duration::from_secs(20)).await;
    let http = addr_of(&origin.http);
    eprintln!(
        "descriptors before the flood: {}",
        descriptors(origin.pid())
    );
    // 400 idle connections from four addresses: more than the process could hold.
    let mut flood = Vec::new();
    for i in 0..400 {
        flood.push(connect_from([127, 0, 0, 2 + (i % 4) as u8], http).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let viewer = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = viewer
            .get(&playlist)
            .send()
            .await
            .expect("answered within 5 s");
        assert_eq!(r.status(), 200);
    }
    let _late = KillOnDrop(publish(&format!("{}/live/late-key", origin.rtmp), 60));
    get_when_ready(
        &origin.url("/live/late/source/index.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let log = origin.log();
    assert!(
        log.contains("HTTP connection cap lowered"),
        "the cap was not fitted to the open-files limit"
    );
    assert!(
        !log.contains("cannot accept"),
        "the server ran out of descriptors: {log}"
    );
    assert!(descriptors(origin.pid()) < 256);
}

/// A client that asks for a lot and reads nothing is disconnected after the send
/// timeout, instead of pinning the objects in the server's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_dropped_after_the_send_timeout() {
    let origin = Server::start(&["--stream", "cam=cam-key", "--http-send-timeout-ms", "1000"]);
    let _publisher = KillOnDrop(publish(&format!("{}/live/cam-key", origin.rtmp), 60));
    let playlist_url = origin.url("/live/cam/source/index.m3u8");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let segment = loop {
        let playlist = get_when_ready(&playlist_url, Duration::from_secs(20)).await;
        if let Some(s) = playlist.lines().find(|l| l.starts_with("seg-")) {
            break s.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no complete segment: {playlist}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let size = client()
        .get(origin.url(&format!("/live/cam/source/{segment}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr_of(&origin.http)).await.unwrap();
    // 200 pipelined requests for the segment: megabytes the client will not take.
    let request = format!("GET /live/cam/source/{segment} HTTP/1.1\r\nhost: x\r\n\r\n");
    slow.write_all(request.repeat(200).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Meanwhile the server goes on serving others.
    assert_eq!(get_text(&origin.url("/healthz")).await.0, 200);
    let (_, metrics) = get_text(&origin.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_connections_closed_total{reason=\"send_timeout\"}")),
        "no connection was closed for not reading"
    );
    // What the client finds when it reads at last: the start, then the end.
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the connection of a client that stopped reading stayed open"),
        }
    }
    let whole = 200 * size;
    assert!(
        got < whole,
        "{got} of {whole} bytes: the client got everything"
    );
}

/// SIGTERM: idle keep-alive connections are closed at once, and the process exits
/// cleanly within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_exits() {
    let mut origin = Server::start(&[]);
    let mut idle = TcpStream::connect(addr_of(&origin.http)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).await.unwrap() > 0);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &origin.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "an idle keep-alive connection stayed open after SIGTERM"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while origin.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not exit within 15 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(origin.log().contains("stopped"), "{}", origin.log());
}

fn holding_upstream(path: &str) -> Answer {
    if path.contains("_HLS_msn=") {
        Answer::Hold
    } else {
        plain_upstream(path)
    }
}

/// Blocking reloads held at the edge are bounded per client: one more gets 429 with
/// the reason at once, while other clients are still held and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_at_the_edge_are_bounded_per_client() {
    let upstream = FakeUpstream::start(holding_upstream).await;
    let edge = EdgeNode::local(&[&upstream.url], &["--max-held-per-client", "2"]);
    let edge_addr = addr_of(&edge.url);
    let mut held = Vec::new();
    for msn in 1..=2 {
        let mut c = connect_from([127, 0, 0, 2], edge_addr).await;
        c.write_all(
            format!("GET /live/cam/src/index.m3u8?_HLS_msn={msn} HTTP/1.1\r\nhost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        held.push(c);
    }
    // Both reached the upstream, where they hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while upstream.all_asked().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            upstream.all_asked()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut third = connect_from([127, 0, 0, 2], edge_addr).await;
    third
        .write_all(b"GET /live/cam/src/index.m3u8?_HLS_msn=3 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = answer_or_silence(&mut third, Duration::from_secs(3))
        .await
        .expect("refused at once");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("too many of your requests are waiting"),
        "{answer}"
    );
    // Another client is not affected: its plain request is served.
    let (status, _) = raw_get(&edge.url, "/live/cam/src/index.m3u8").await;
    assert_eq!(status, 200);
    assert_eq!(upstream.asked("/live/cam/src/index.m3u8?_HLS_msn=3"), 0);
}

/// Sends a `GET path` on a keep-alive connection and reads its whole answer
/// (head and `content-length` body); the status, or `None` if the server closed the
/// connection instead of answering within 5 s.
async fn keep_alive_get(conn: &mut TcpStream, path: &str) -> Option<u16> {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return head.split(' ').nth(1).and_then(|s| s.parse().ok());
                }
            }
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// A request head over `--http-max-header-bytes`, or with more headers than
/// `--http-max-headers`, is answered 431 (both set below their defaults, so a limit
/// not applied lets the request through); heads within them and other clients are
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_the_byte_or_header_count_limit_get_431() {
    let origin = Server::start(&[
        "--http-max-header-bytes",
        "8192",
        "--http-max-headers",
        "16",
    ]);
    let http = addr_of(&origin.http);
    let ask = |headers: String| async move {
        let mut conn = TcpStream::connect(http).await.unwrap();
        conn.write_all(
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{headers}connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        answer_or_silence(&mut conn, Duration::from_secs(5))
            .await
            .expect("answered, then closed")
    };
    let numbered =
        |n: usize| -> String { (0..n).map(|i| format!("x-header-{i}: {i}\r\n")).collect() };

    // Within both limits: 12 headers, a head of about 6 KB.
    let fits = ask(format!("x-big: {}\r\n{}", "a".repeat(6_000), numbered(9))).await;
    assert!(fits.starts_with("HTTP/1.1 200"), "{fits}");
    // A 12 KB head: over 8 KiB (the default, 32 KiB, would take it).
    let big = ask(format!("x-big: {}\r\n", "a".repeat(12_000))).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    // 40 short headers in a small head: over 16 (the default, 100, would take them).
    let many = ask(numbered(40)).await;
    assert!(many.starts_with("HTTP/1.1 431"), "{many}");
    // Other clients are served meanwhile, and the server goes on.
    let (status, body) = get_text(&origin.url("/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

/// A keep-alive connection with no request in flight that stays silent longer than
/// `--http-idle-timeout-ms` is closed by the server (its read returns EOF), while a
/// connection that goes on asking stays open and served; the closure is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_stays() {
    // The header timeout (which also bounds a keep-alive wait) far above the test's
    // bounds, so only the idle timeout can close the idle connection in time.
    let origin = Server::start(&[
        "--http-idle-timeout-ms",
        "1000",
        "--http-header-timeout-ms",
        "60000",
    ]);
    let http = addr_of(&origin.http);
    let mut idle = TcpStream::connect(http).await.unwrap();
    let mut busy = TcpStream::connect(http).await.unwrap();
    assert_eq!(keep_alive_get(&mut idle, "/healthz").await, Some(200));
    let idle_end = async {
        let mut buf = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(15), idle.read(&mut buf)).await
    };
    // A request every 100 ms for 5 s (five idle timeouts), all on one connection.
    let busy_answers = async {
        let mut answers = Vec::new();
        for _ in 0..50 {
            answers.push(keep_alive_get(&mut busy, "/healthz").await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers
    };
    let (idle_end, busy_answers) = tokio::join!(idle_end, busy_answers);
    assert!(
        matches!(idle_end, Ok(Ok(0))),
        "the idle connection was not closed with EOF within 15 s (idle timeout 1 s): {idle_end:?}"
    );
    assert!(
        busy_answers.iter().all(|a| *a == Some(200)),
        "the busy connection was cut: {busy_answers:?}"
    );
    assert_eq!(keep_alive_get(&mut busy, "/healthz").await, Some(200));
    let (_, metrics) = get_text(&origin.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_connections_closed_total{reason=\"idle\"}")),
        "the idle closure is not counted:\n{metrics}"
    );
}
