//! The metadata server inside `rivulet serve`: a stream created through the API (and
//! the `rivulet streams` CLI) is published to with a real ffmpeg; its live state is
//! reported back; after a key rotation the old key is refused and the new one works.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

const TOKEN: &str = "e2e-admin-token-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_created_by_api_publishes_and_rotated_key_is_refused() {
    let server = Server::start(&[
        "--admin-token",
        TOKEN,
        "--stream",
        "declared=declared-key-1",
    ]);
    let client = client();

    // Create through the API: the key is in the answer, and only there.
    let response = client
        .post(server.url("/api/streams"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "e2e-meta", "title": "End to end", "tags": ["Test"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let old_key = created["key"].as_str().unwrap().to_owned();
    let public: Value = client
        .get(server.url("/api/streams/e2e-meta"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["tags"], json!(["test"]));
    assert!(!public.to_string().contains(&old_key));

    // Publish with it: ffmpeg succeeds, and the stream is reported live meanwhile.
    let mut ffmpeg = publish_plain(&format!("{}/live/{old_key}", server.rtmp), 3);
    let live = wait_for_state(&server, "e2e-meta", true).await;
    assert!(live["live"]["since"].as_i64().unwrap() > 0);
    assert!(live["live"]["ingest_node"].is_string());
    // The title is in the multivariant playlist, and follows an edit.
    let master = get_when_ready(
        &server.url("/live/e2e-meta/master.m3u8"),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        master.contains("#EXT-X-SESSION-DATA:DATA-ID=\"com.rivulet.title\",VALUE=\"End to end\""),
        "{master}"
    );
    let response = client
        .patch(server.url("/api/streams/e2e-meta"))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !get_text(&server.url("/live/e2e-meta/master.m3u8"))
        .await
        .1
        .contains("VALUE=\"Renamed\"")
    {
        assert!(Instant::now() < deadline, "the playlist kept the old title");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = tokio::task::spawn_blocking(move || ffmpeg.wait().unwrap())
        .await
        .unwrap();
    assert!(
        status.success(),
        "a publish with the key from the API must succeed"
    );
    wait_for_state(&server, "e2e-meta", false).await;

    // Rotate with the CLI.
    let (ok, out, err) = run(Command::new(env!("CARGO_BIN_EXE_rivulet")).args([
        "streams",
        "rotate-key",
        "e2e-meta",
        "--server",
        &server.http,
        "--admin-token",
        TOKEN,
    ]));
    assert!(ok, "rotate-key failed: {out}{err}");
    let new_key = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap_or_else(|| panic!("no key in: {out}"))
        .trim()
        .to_owned();
    assert_ne!(new_key, old_key);

    // The old key is refused, with the reason in the log; the new one works.
    let mut refused = publish_plain(&format!("{}/live/{old_key}", server.rtmp), 2);
    let status = tokio::task::spawn_blocking(move || refused.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success(), "the rotated-out key must be refused");
    assert!(server.log().contains("publish refused"), "{}", server.log());
    let mut fresh = publish_plain(&format!("{}/live/{new_key}", server.rtmp), 2);
    let status = tokio::task::spawn_blocking(move || fresh.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the new key must work");

    // A stream declared with --stream is in the API too, and its key works.
    let (status, body) = get_text(&server.url("/api/streams/declared")).await;
    assert_eq!(status, 200, "{body}");
    let mut declared = publish_plain(&format!("{}/live/declared-key-1", server.rtmp), 1);
    let status = tokio::task::spawn_blocking(move || declared.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_lists_and_refuses_without_token() {
    let server = Server::start(&["--admin-token", TOKEN]);
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rivulet"));
        cmd.arg("streams")
            .args(args)
            .args(["--server", &server.http])
            .env_remove("RIVULET_ADMIN_TOKEN")
            .env("RIVULET_DATA_DIR", "/nonexistent-rivulet-test-dir");
        run(&mut cmd)
    };
    let (ok, out, err) = cli(&[
        "create",
        "from-cli",
        "--title",
        "Made in a terminal",
        "--tag",
        "Cli",
        "--tag",
        "demo",
        "--admin-token",
        TOKEN,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("key: "), "{out}");

    let (ok, out, err) = cli(&["list"]);
    assert!(ok, "{out}{err}");
    let row = out.lines().find(|l| l.starts_with("from-cli")).unwrap();
    assert!(
        row.contains("Made in a terminal") && row.contains("cli, demo"),
        "{row}"
    );

    let (ok, out, _) = cli(&["list", "--json", "--tag", "cli"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["name"], "from-cli");

    // Without a token: refused before anything is sent; with a wrong one: 401.
    let (ok, _, err) = cli(&["create", "nope"]);
    assert!(!ok && err.contains("admin token"), "{err}");
    let (ok, _, err) = cli(&["create", "nope", "--admin-token", "wrong-token-1234"]);
    assert!(!ok && err.contains("wrong"), "{err}");
    // A validation error names the field.
    let (ok, _, err) = cli(&["create", "Bad Name", "--admin-token", TOKEN]);
    assert!(!ok && err.contains("name:"), "{err}");
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

/// Polls the API until the stream's live state is `live`; returns the stream.
async fn wait_for_state(server: &Server, name: &str, live: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get_text(&server.url(&format!("/api/streams/{name}"))).await;
        assert_eq!(status, 200, "{body}");
        let stream: Value = serde_json::from_str(&body).unwrap();
        if stream["live"]["live"] == live {
            return stream;
        }
        assert!(
            Instant::now() < deadline,
            "stream '{name}' did not become live={live}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rivulet meta` alone: it generates an admin token on first start and prints it once;
/// streams persist in DATA_DIR/meta.db across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_alone_generates_its_token_once_and_keeps_streams() {
    let data = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
            .args(["meta", "--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env_remove("RIVULET_ADMIN_TOKEN")
            .env_remove("RIVULET_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (mut http, mut token_line) = (None, None);
        for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("HTTP: ") {
                http = Some(url.trim_end_matches('/').to_owned());
            }
            if line.trim().starts_with("Admin token") {
                token_line = Some(line.trim().to_owned());
                break;
            }
        }
        (Killed(child), http.unwrap(), token_line.unwrap())
    };

    let (first, http, line) = start();
    assert!(line.contains("generated"), "{line}");
    let token = line.rsplit(' ').next().unwrap().to_owned();
    let saved = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    assert_eq!(saved.trim(), token);
    let response = client()
        .post(format!("{http}/api/streams"))
        .bearer_auth(&token)
        .json(&json!({"name": "kept", "title": "Still here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    drop(first);

    let (_second, http, line) = start();
    assert!(
        !line.contains(&token),
        "the token is printed only once: {line}"
    );
    let (status, body) = get_text(&format!("{http}/api/streams/kept")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Still here"));
    let response = client()
        .delete(format!("{http}/api/streams/kept"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "the stored token still works");
}

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
