//! `rivulet serve` behind the standard caches people already run, with the configs we
//! ship (`deploy/varnish/rivulet.vcl`, `deploy/nginx/rivulet-cache.conf`) changed only
//! in their addresses: a real ffmpeg publisher, real Varnish and nginx processes on
//! loopback, and a crowd of LL-HLS viewers (blocking reloads, then each new part) that
//! reach the origin only through the cache. Every part must arrive, the viewers must
//! keep up with live, and the origin must see one request per part however many
//! viewers ask; a part fetched while it is being produced must reach every viewer whole
//! from one origin request.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::viewer::{self, ViewerControl, ViewerLog};
use common::*;

/// Viewers watching through the cache at once.
const VIEWERS: usize = 100;
/// How long they watch.
const WATCH: Duration = Duration::from_secs(20);

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// `text` with `from` replaced by `to`, which must be there: the test must use the
/// shipped file, changed only where it names addresses.
fn replace_in(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped config no longer contains {from:?}: update this test"
    );
    text.replace(from, to)
}

/// A cache process in a temporary directory, stopped (SIGTERM, then SIGKILL) at the end.
struct Cache {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    url: String,
    dir: tempfile::TempDir,
    name: &'static str,
}

impl Cache {
    fn wait_listening(self, port: u16) -> Cache {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut me = self;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = me.child.try_wait().unwrap() {
                panic!("{} exited at start ({status}): {}", me.name, me.log());
            }
            assert!(Instant::now() < deadline, "{} did not start", me.name);
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for f in ["stderr.log", "error.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(f)) {
                out.push_str(&text);
            }
        }
        out
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if wait_exit(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
        }
    }
}

/// `varnishd` in the foreground with the shipped VCL pointed at `origin_port`.
fn start_varnish(origin_port: u16) -> Option<Cache> {
    if Command::new("varnishd").arg("-V").output().is_err() {
        eprintln!(
            "SKIPPED: varnishd is not installed (scripts/setup.sh installs Debian's varnish)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let vcl = std::fs::read_to_string(repo_file("deploy/varnish/rivulet.vcl")).unwrap();
    let vcl = replace_in(
        &vcl,
        ".port = \"8080\";",
        &format!(".port = \"{origin_port}\";"),
    );
    let vcl_path = dir.path().join("rivulet.vcl");
    std::fs::write(&vcl_path, vcl).unwrap();
    let port = free_port();
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = Command::new("varnishd")
        .arg("-F")
        .arg("-n")
        .arg(dir.path().join("work"))
        // No privilege separation: the test's own user runs it.
        .args(["-j", "none"])
        .args(["-a", &format!("127.0.0.1:{port}")])
        .arg("-f")
        .arg(&vcl_path)
        .args(["-s", "malloc,256m"])
        // No management CLI port is needed.
        .args(["-T", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let cache = Cache {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
        name: "varnishd",
    };
    Some(cache.wait_listening(port))
}

/// nginx in the foreground, one process, with the shipped file included in its `http`
/// block and pointed at `origin_port`.
fn start_nginx(origin_port: u16) -> Cache {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("logs")).unwrap();
    let port = free_port();
    let shipped = std::fs::read_to_string(repo_file("deploy/nginx/rivulet-cache.conf")).unwrap();
    let conf = replace_in(
        &shipped,
        "server 127.0.0.1:8080;",
        &format!("server 127.0.0.1:{origin_port};"),
    );
    let conf = replace_in(&conf, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let conf = replace_in(
        &conf,
        "/var/cache/nginx/rivulet",
        &p.join("cache").display().to_string(),
    );
    std::fs::write(p.join("rivulet-cache.conf"), conf).unwrap();
    let main = format!(
        "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;\n\
           include {p}/rivulet-cache.conf; }}\n",
        p = p.display()
    );
    std::fs::write(p.join("nginx.conf"), main).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(p)
        .arg("-c")
        .arg(p.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(p.join("stderr.log")).unwrap())
        .spawn()
        .expect("nginx must be installed (scripts/setup.sh)");
    let cache = Cache {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
        name: "nginx",
    };
    cache.wait_listening(port)
}

/// The origin's request counters by kind (`origin_requests_total{kind=…}`).
async fn origin_counts(server: &Server) -> std::collections::BTreeMap<String, u64> {
    let (_, metrics) = get_text(&server.url("/metrics")).await;
    metrics
        .lines()
        .filter(|l| l.starts_with("origin_requests_total{"))
        .filter_map(|l| {
            let kind = l.split("kind=\"").nth(1)?.split('"').next()?.to_owned();
            let value = l.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some((kind, value))
        })
        .collect()
}

fn delta(
    after: &std::collections::BTreeMap<String, u64>,
    before: &std::collections::BTreeMap<String, u64>,
    kinds: &[&str],
) -> u64 {
    kinds
        .iter()
        .map(|k| after.get(*k).unwrap_or(&0) - before.get(*k).unwrap_or(&0))
        .sum()
}

/// The whole scenario against one cache in front of one origin.
async fn crowd_behind(cache_kind: &str, start: impl FnOnce(u16) -> Option<Cache>) {
    let server = Server::start(&["--stream", "cached=cached-key"]);
    let origin_port: u16 = server.http.rsplit(':').next().unwrap().parse().unwrap();
    let Some(cache) = start(origin_port) else {
        return;
    };
    let mut publisher = publish(&format!("{}/live/cached-key", server.rtmp), 60);
    let _publisher_guard = scopeguard(&mut publisher);
    let base = format!("{}/live/cached/source", cache.url);
    get_when_ready(
        &format!("{}/live/cached/master.m3u8", cache.url),
        Duration::from_secs(30),
    )
    .await;
    // Past the stream's start, so that every viewer sees a full playlist.
    get_when_ready(&format!("{base}/index.m3u8"), Duration::from_secs(30)).await;

    // A part while it is being produced: the preload hint, asked for by many viewers
    // at once before it exists. One origin request (streamed), the same whole bytes to
    // every viewer.
    let before = origin_counts(&server).await;
    let playlist = get_text(&format!("{}/live/cached/source/index.m3u8", server.http))
        .await
        .1;
    let (msn, part) = preload_hint(&playlist);
    let hint_url = format!("{base}/part-{msn}-{part}.m4s");
    let started = Instant::now();
    let fetches: Vec<_> = (0..20)
        .map(|_| {
            let url = hint_url.clone();
            tokio::spawn(async move {
                let r = client().get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                let mut r = r;
                let mut body = Vec::new();
                let mut first_byte = None;
                while let Some(chunk) = r.chunk().await.unwrap() {
                    first_byte.get_or_insert_with(|| started.elapsed());
                    body.extend_from_slice(&chunk);
                }
                (status, body, first_byte, started.elapsed())
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for f in fetches {
        bodies.push(f.await.unwrap());
    }
    let after = origin_counts(&server).await;
    for (status, body, _, _) in &bodies {
        assert_eq!(*status, 200, "{cache_kind}: the hinted part {msn}.{part}");
        assert_eq!(
            body, &bodies[0].1,
            "{cache_kind}: every viewer gets the same hinted part"
        );
    }
    assert!(
        viewer::media_span(&bodies[0].1).is_ok_and(|c| !c.is_empty()),
        "{cache_kind}: the hinted part is whole CMAF chunks"
    );
    let hint_fetches = delta(&after, &before, &["part", "part_streamed"]);
    let first = bodies.iter().filter_map(|b| b.2).min().unwrap();
    let last = bodies.iter().map(|b| b.3).max().unwrap();
    let latest_first = bodies.iter().filter_map(|b| b.2).max().unwrap();
    eprintln!(
        "{cache_kind}: hinted part {msn}.{part} ({} bytes) to 20 viewers: {hint_fetches} origin \
         request(s) ({} streamed), first byte after {first:?} (the last viewer's first byte \
         {latest_first:?}), all complete after {last:?}",
        bodies[0].1.len(),
        delta(&after, &before, &["part_streamed"]),
    );
    assert_eq!(
        hint_fetches, 1,
        "{cache_kind}: 20 viewers asking for the hinted part cause one origin request"
    );

    // The crowd: VIEWERS players following the playlist through the cache.
    let before = origin_counts(&server).await;
    let clock = Instant::now();
    let controls: Vec<Arc<ViewerControl>> = (0..VIEWERS)
        .map(|_| Arc::new(ViewerControl::default()))
        .collect();
    let handles: Vec<_> = controls
        .iter()
        .map(|control| {
            tokio::spawn(play(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(20))
                    // Below the caches' idle timeout (Varnish: 5 s), so that no request
                    // goes out on a connection the cache is closing at that moment
                    // (a browser retries such a request; reqwest does not).
                    .pool_idle_timeout(Duration::from_secs(2))
                    .build()
                    .unwrap(),
                base.clone(),
                control.clone(),
                clock,
            ))
        })
        .collect();
    tokio::time::sleep(WATCH).await;
    for c in &controls {
        c.stop.store(true, Ordering::Relaxed);
    }
    let mut logs: Vec<ViewerLog> = Vec::new();
    for h in handles {
        logs.push(h.await.unwrap());
    }
    let after = origin_counts(&server).await;

    let mut parts = BTreeSet::new();
    let mut worst_lag = 0f64;
    let mut worst_stall = 0f64;
    for (i, log) in logs.iter().enumerate() {
        assert!(
            log.failures.is_empty(),
            "{cache_kind}: viewer {i} failed: {:?}\n{}",
            &log.failures[..log.failures.len().min(5)],
            cache.log()
        );
        // 20 s of 200 ms parts is ~100 (fewer for a viewer whose start was slow).
        assert!(
            log.parts.len() >= 20,
            "{cache_kind}: viewer {i} got only {} parts in {WATCH:?}",
            log.parts.len()
        );
        let gaps = log.timeline_gaps(90);
        assert!(
            gaps.is_empty(),
            "{cache_kind}: viewer {i} missed media: {gaps:?}"
        );
        worst_lag = worst_lag.max(log.lag_growth_ms());
        worst_stall = worst_stall.max(log.worst_stall().map_or(0.0, |s| s.ms));
        parts.extend(log.parts.iter().map(|p| (p.msn, p.part)));
    }
    // At the end every viewer is at the live edge: its newest part is within three
    // parts (hls.js's usual distance) of the newest any viewer got.
    let order: Vec<(u64, u32)> = parts.iter().copied().collect();
    let newest = order.len() - 1;
    for (i, log) in logs.iter().enumerate() {
        let last = log.parts.last().map(|p| (p.msn, p.part)).unwrap();
        let at = order.binary_search(&last).unwrap();
        assert!(
            at + 3 >= newest,
            "{cache_kind}: viewer {i} ended at part {last:?}, {} parts behind the newest",
            newest - at
        );
    }
    let part_fetches = delta(&after, &before, &["part", "part_streamed"]);
    // The hinted part above is in the cache already: no origin request for it now.
    let fetched_now = parts.iter().filter(|p| **p != (msn, part)).count();
    let playlist_fetches = delta(&after, &before, &["playlist"]);
    eprintln!(
        "{cache_kind}: {VIEWERS} viewers for {WATCH:?}: {} distinct parts, {part_fetches} origin \
         part requests, {playlist_fetches} origin playlist requests ({VIEWERS} of them plain, \
         uncached); worst lag growth {worst_lag:.0} ms, worst stall {worst_stall:.0} ms",
        parts.len()
    );
    assert_eq!(
        part_fetches, fetched_now as u64,
        "{cache_kind}: one origin request per part for {VIEWERS} viewers"
    );
    // Each blocking reload URL (one per part) reaches the origin once; each viewer's
    // first, plain playlist is not cached (`no-cache`), at most once per viewer.
    assert!(
        playlist_fetches <= parts.len() as u64 + 2 + VIEWERS as u64,
        "{cache_kind}: {playlist_fetches} playlist requests at the origin for {} parts",
        parts.len()
    );
    // Keeping up with live: what a viewer fell behind over 20 s stays within a
    // player's usual buffer of three parts plus the cache's coalescing delay (nginx
    // wakes waiters every 500 ms); a crowd that lost pace would lose seconds.
    assert!(
        worst_lag < 2500.0,
        "{cache_kind}: a viewer fell {worst_lag:.0} ms behind live"
    );
    drop(cache);
}

/// An LL-HLS player as hls.js behaves: a blocking reload for the part after the newest
/// one it has (the preload hint), then every part the answer lists that it does not
/// have yet, in order; until `control.stop`. A player that fell behind catches up
/// this way (several parts per reload), which matters behind nginx, whose coalesced
/// requests wait up to 500 ms. Records what it got in a [`ViewerLog`].
async fn play(
    client: reqwest::Client,
    base: String,
    control: Arc<ViewerControl>,
    clock: Instant,
) -> ViewerLog {
    let mut log = ViewerLog::default();
    let failure = |log: &mut ViewerLog, what: String| {
        log.failures.push(viewer::Failure {
            at: clock.elapsed(),
            what,
        });
    };
    let playlist_url = format!("{base}/index.m3u8");
    let get = |url: String| {
        let client = client.clone();
        async move {
            let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("{} for {url}", r.status()));
            }
            r.bytes().await.map_err(|e| e.to_string())
        }
    };
    let mut url = playlist_url.clone();
    let mut have: Option<(u64, u32)> = None;
    while !control.stop.load(Ordering::Relaxed) {
        let text = match get(url.clone()).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(e) => {
                failure(&mut log, format!("playlist: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let listed: Vec<(u64, u32)> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-PART:"))
            .filter_map(|l| attr(l, "URI"))
            .map(parse_part_uri)
            .collect();
        // Start three parts from the live edge, as hls.js does (PART-HOLD-BACK).
        let from = match have {
            Some(h) => listed.iter().position(|p| *p > h),
            None => Some(listed.len().saturating_sub(3)),
        };
        for &(msn, part) in listed.iter().skip(from.unwrap_or(listed.len())) {
            match get(format!("{base}/part-{msn}-{part}.m4s")).await {
                Ok(body) => match viewer::media_span(&body) {
                    Ok(chunks) if !chunks.is_empty() => {
                        log.parts.push(viewer::PartSeen {
                            msn,
                            part,
                            start: chunks[0].0,
                            end: chunks[chunks.len() - 1].1,
                            chunks,
                            arrived: clock.elapsed(),
                            upstream: None,
                        });
                        control.parts.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failure(&mut log, format!("part {msn}.{part}: {other:?}")),
                },
                Err(e) => failure(&mut log, format!("part {msn}.{part}: {e}")),
            }
            have = Some((msn, part));
        }
        let (msn, part) = preload_hint(&text);
        url = format!("{playlist_url}?_HLS_msn={msn}&_HLS_part={part}");
    }
    log
}

/// Kills the publisher at the end of the scenario.
fn scopeguard(child: &mut std::process::Child) -> impl Drop + '_ {
    struct Guard<'a>(&'a mut std::process::Child);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Guard(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_follow_live_through_varnish_with_one_origin_request_per_part() {
    crowd_behind("varnish", start_varnish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_follow_live_through_nginx_with_one_origin_request_per_part() {
    crowd_behind("nginx", |port| Some(start_nginx(port))).await;
}

/// hls.js in headless Chromium plays the viewer page through the cache for 20 s:
/// `web/tests/failover.mjs` (no fatal or network error, no failed playlist or media
/// response, the playhead never frozen over a second, the media sequence never going
/// back, the playhead advancing after the one event): it prints `READY` once playing
/// and checks on `STOP`.
fn hls_js_plays_through(cache_kind: &str, start: impl FnOnce(u16) -> Option<Cache>) {
    use std::io::{BufRead, Write};
    let server = Server::start(&["--stream", "cached=cached-key"]);
    let origin_port: u16 = server.http.rsplit(':').next().unwrap().parse().unwrap();
    let Some(cache) = start(origin_port) else {
        return;
    };
    let mut publisher = publish(&format!("{}/live/cached-key", server.rtmp), 90);
    let _publisher_guard = scopeguard(&mut publisher);
    let web = repo_file("web");
    let mut child = KillOnDrop(
        Command::new("node")
            .arg("tests/failover.mjs")
            .args(["--url", &format!("{}/watch/cached", cache.url)])
            .current_dir(web)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node must be installed (scripts/setup.sh)"),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[hls.js] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if line == "READY" => break,
            Ok(_) => {}
            Err(_) => {
                if let Some(status) = child.0.try_wait().unwrap() {
                    panic!("the browser test exited ({status}) before playing");
                }
                assert!(
                    Instant::now() < deadline,
                    "hls.js did not play through {cache_kind}"
                );
            }
        }
    }
    // The script checks that the playhead advances after each event: one, at the start.
    writeln!(stdin, "EVENT watching through {cache_kind}").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(20));
    writeln!(stdin, "STOP").unwrap();
    stdin.flush().unwrap();
    let status = wait_exit(&mut child.0, Duration::from_secs(60)).expect("the browser test ends");
    assert!(
        status.success(),
        "hls.js through {cache_kind}: the browser test failed (see its output above)\n{}",
        cache.log()
    );
}

#[test]
fn hls_js_plays_through_varnish() {
    hls_js_plays_through("varnish", start_varnish);
}

#[test]
fn hls_js_plays_through_nginx() {
    hls_js_plays_through("nginx", |port| Some(start_nginx(port)));
}
