//! `rivulet serve --meta-url` against a separate `rivulet meta` process: keys created
//! through the metadata server's API publish, a rotated-out key is refused, live state
//! and the title travel over HTTP, and when the metadata server dies a key that worked
//! keeps working (the log says the cached answer was used) while an unknown key is
//! refused. Real processes, real HTTP, real SQLite, real ffmpeg publishers.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

const TOKEN: &str = "remote-meta-token-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_checks_keys_and_reports_live_state_on_a_remote_meta() {
    let data = tempfile::tempdir().unwrap();
    let (meta, meta_http) = start_meta(data.path());
    let client = client();

    let created = admin_json(
        client
            .post(format!("{meta_http}/api/streams"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": "remote-e2e", "title": "Remote title"})),
        201,
    )
    .await;
    let old_key = created["key"].as_str().unwrap().to_owned();

    // A short cache TTL, so that the rotation below is seen within the test.
    let server = Server::start(&[
        "--meta-url",
        &meta_http,
        "--meta-token",
        TOKEN,
        "--meta-cache-ttl-ms",
        "1000",
        "--meta-timeout-ms",
        "3000",
        "--node-name",
        "ingest-test",
        "--stream",
        "declared-remote=declared-remote-key",
    ]);
    // The declared stream was stored on the metadata server; serve has no stream API.
    let (status, body) = get_text(&format!("{meta_http}/api/streams/declared-remote")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get_text(&server.url("/api/streams")).await;
    assert_eq!(status, 404, "serve --meta-url has no stream API of its own");

    // 1. A key created through the metadata server's API publishes; the live state
    // shows up there with this node's facts, and the title reaches the playlist.
    let mut ffmpeg = publish_plain(&format!("{}/live/{old_key}", server.rtmp), 8);
    let live = wait_for_meta(&meta_http, "remote-e2e", "live with its facts", |s| {
        s["live"]["live"] == true
            && s["live"]["ingest_bitrate"].as_i64().is_some_and(|b| b > 0)
            && s["live"]["renditions"] == json!(["source"])
    })
    .await;
    assert_eq!(live["live"]["ingest_node"], "ingest-test");
    assert!(live["live"]["since"].as_i64().unwrap() > 0);
    let (ok, out, err) = run(Command::new(env!("CARGO_BIN_EXE_rivulet")).args([
        "streams",
        "show",
        "remote-e2e",
        "--server",
        &meta_http,
    ]));
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ingest node: ingest-test") && out.contains("Mbit/s"),
        "{out}"
    );
    wait_for_text(
        &server.url("/live/remote-e2e/master.m3u8"),
        "VALUE=\"Remote title\"",
    )
    .await;
    admin_json(
        client
            .patch(format!("{meta_http}/api/streams/remote-e2e"))
            .bearer_auth(TOKEN)
            .json(&json!({"title": "Renamed remotely"})),
        200,
    )
    .await;
    wait_for_text(
        &server.url("/live/remote-e2e/master.m3u8"),
        "VALUE=\"Renamed remotely\"",
    )
    .await;
    let status = tokio::task::spawn_blocking(move || ffmpeg.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "a publish with the key from the API must succeed"
    );
    wait_for_meta(&meta_http, "remote-e2e", "offline", |s| {
        s["live"]["live"] == false
    })
    .await;

    // 2. Rotated out on the metadata server: refused once the cached answer is older
    // than the TTL (1 s); the new key works.
    let rotated = admin_json(
        client
            .post(format!("{meta_http}/api/streams/remote-e2e/rotate-key"))
            .bearer_auth(TOKEN),
        200,
    )
    .await;
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !publish_ok(&format!("{}/live/{old_key}", server.rtmp), 2).await,
        "the rotated-out key must be refused"
    );
    assert!(server.log().contains("publish refused"), "{}", server.log());
    assert!(
        publish_ok(&format!("{}/live/{new_key}", server.rtmp), 2).await,
        "the new key must work"
    );

    // 3. The metadata server dies: the key that worked still publishes, on the cached
    // answer, and the log says so; a key never seen is refused, and the log says why.
    drop(meta);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        publish_ok(&format!("{}/live/{new_key}", server.rtmp), 2).await,
        "a key accepted before must keep working while the metadata server is down"
    );
    let log = server.log();
    assert!(
        log.contains("metadata server unreachable: using the cached answer"),
        "{log}"
    );
    assert!(
        !publish_ok(&format!("{}/live/never-seen-key", server.rtmp), 2).await,
        "an unknown key must be refused while the metadata server is down"
    );
    let log = server.log();
    assert!(
        log.contains("metadata server unreachable and this key has no cached answer"),
        "{log}"
    );
    // The declared stream's key works too: it was remembered at start.
    assert!(
        publish_ok(&format!("{}/live/declared-remote-key", server.rtmp), 1).await,
        "a declared key must work while the metadata server is down"
    );
}

/// Starts `rivulet meta` with the test's admin token; returns it and its base URL.
fn start_meta(data: &std::path::Path) -> (KillOnDrop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args([
            "meta",
            "--http-listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
        ])
        .arg("--data-dir")
        .arg(data)
        .env_remove("RIVULET_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[meta] {line}");
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http = loop {
        let line = lines
            .next()
            .expect("rivulet meta exited before printing its address")
            .unwrap();
        if let Some(url) = line.trim().strip_prefix("HTTP: ") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), http)
}

/// Sends an admin request, checks the status, returns the JSON answer.
async fn admin_json(request: reqwest::RequestBuilder, expected: u16) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Polls the metadata server until the stream satisfies `done`; returns it.
async fn wait_for_meta(meta: &str, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get_text(&format!("{meta}/api/streams/{name}")).await;
        assert_eq!(status, 200, "{body}");
        let stream: Value = serde_json::from_str(&body).unwrap();
        if done(&stream) {
            return stream;
        }
        assert!(
            Instant::now() < deadline,
            "stream '{name}' did not become {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `url` until its body contains `needle`.
async fn wait_for_text(url: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client().get(url).send().await
            && r.status().is_success()
            && r.text().await.is_ok_and(|t| t.contains(needle))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never contained {needle}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes for `seconds` and says whether ffmpeg succeeded.
async fn publish_ok(url: &str, seconds: u32) -> bool {
    let mut ffmpeg = publish_plain(url, seconds);
    tokio::task::spawn_blocking(move || ffmpeg.wait().unwrap())
        .await
        .unwrap()
        .success()
}

/// ffmpeg publishing a 320x240 30 fps test pattern (no audio), 1 s GOP, in real time.
fn publish_plain(url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg must be installed (see the README's set-up command)")
}
