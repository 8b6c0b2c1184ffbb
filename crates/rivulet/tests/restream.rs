//! Restreaming to a second real `rivulet serve`: a real ffmpeg publishes to the
//! primary, which forwards the source (no re-encode) to a target added while live; ffprobe reads the
//! forwarded stream from the target's HLS output; the target is killed (its state
//! turns `failed`, the primary keeps producing parts) and started again on the same
//! ports (forwarding resumes by itself); bytes sent are in the API and /metrics. And
//! to a real nginx-rtmp, whose recording ffprobe reads; for an HEVC source nginx-rtmp
//! gets the ladder's top H.264 rung instead, and with no H.264 rung the target is
//! refused with the reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

const TOKEN: &str = "e2e-admin-token-0123";
const TARGET_KEY: &str = "forwarded-key-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_is_forwarded_and_forwarding_survives_a_target_restart() {
    let target_rtmp = format!("127.0.0.1:{}", free_port());
    let target_http = format!("127.0.0.1:{}", free_port());
    let start_target = || {
        Server::start_on(
            &target_rtmp,
            &target_http,
            &["--stream", &format!("fwd={TARGET_KEY}"), "--no-analytics"],
        )
    };
    let mut target = start_target();
    let primary = Server::start(&[
        "--admin-token",
        TOKEN,
        "--stream",
        "main=main-key-0123",
        "--no-analytics",
    ]);
    let client = client();

    // Publishing first: a target added while live starts by itself.
    let mut ffmpeg = KillOnDrop(publish(&format!("{}/live/main-key-0123", primary.rtmp), 60));
    get_when_ready(
        &primary.url("/live/main/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;

    // The target's URL is shown in full once, then redacted.
    let url = format!("rtmp://{target_rtmp}/live/{TARGET_KEY}");
    let response = client
        .post(primary.url("/api/streams/main/restreams"))
        .bearer_auth(TOKEN)
        .json(&json!({ "url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added["full_url"], url);
    assert_eq!(added["status"]["state"], "idle");
    let id = added["id"].as_i64().unwrap();
    let listed = restreams(&primary).await;
    assert!(!listed.to_string().contains(TARGET_KEY), "{listed}");
    assert!(listed.to_string().contains("/live/for…"), "{listed}");
    // Bad targets are refused with the reason.
    let response = client
        .post(primary.url("/api/streams/main/restreams"))
        .bearer_auth(TOKEN)
        .json(&json!({ "url": "http://example.com/live/key" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = client
        .get(primary.url("/api/streams/main/restreams"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // The target gets the stream.
    let forwarded = target.url("/live/fwd/master.m3u8");
    get_when_ready(&forwarded, Duration::from_secs(30)).await;
    let streams = probe(&forwarded);
    assert!(streams.contains("h264,video,320,240"), "{streams}");
    assert!(streams.contains("aac,audio"), "{streams}");
    let state = wait_state(&primary, id, "live").await;
    assert!(state["bytes_sent"].as_u64().unwrap() > 0, "{state}");
    assert!(
        !primary.log().contains(TARGET_KEY),
        "the key is never logged"
    );

    // Kill the target: its state turns failed, the primary keeps producing parts.
    let media = primary.url("/live/main/source/index.m3u8");
    target.kill();
    let state = wait_state(&primary, id, "failed").await;
    assert!(state["reason"].as_str().unwrap().len() > 3, "{state}");
    let before = preload_hint(&get_text(&media).await.1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = preload_hint(&get_text(&media).await.1);
    assert!(after > before, "the primary stopped producing parts");

    // Start it again on the same ports: forwarding resumes by itself.
    let target = start_target();
    get_when_ready(&forwarded, Duration::from_secs(40)).await;
    let streams = probe(&forwarded);
    assert!(streams.contains("h264,video,320,240"), "{streams}");
    wait_state(&primary, id, "live").await;
    let metrics = get_text(&primary.url("/metrics")).await.1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("restream_bytes_sent_total") && l.contains("stream=\"main\"")),
        "{metrics}"
    );

    // Removing the target stops its forwarding while the stream stays live.
    let response = client
        .delete(primary.url(&format!("/api/streams/main/restreams/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(restreams(&primary).await["restreams"], json!([]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !primary.log().contains("restream ended") {
        assert!(
            Instant::now() < deadline,
            "the removed target kept forwarding"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = ffmpeg.0.kill();
    drop(target);
}

/// nginx-rtmp, and a primary (with `extra` options) whose stream `main` has it as
/// restream target `id`.
async fn forwarding_to_nginx(extra: &[&str]) -> (NginxRtmp, Server, i64) {
    let nginx = NginxRtmp::start();
    let port = nginx.port;
    let mut args = vec![
        "--admin-token",
        TOKEN,
        "--stream",
        "main=main-key-0123",
        "--no-analytics",
    ];
    args.extend_from_slice(extra);
    let primary = Server::start(&args);
    let response = client()
        .post(primary.url("/api/streams/main/restreams"))
        .bearer_auth(TOKEN)
        .json(&json!({ "url": format!("rtmp://127.0.0.1:{port}/live/peer") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    (nginx, primary, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_is_forwarded_to_nginx_rtmp() {
    let (mut nginx, primary, id) = forwarding_to_nginx(&[]).await;
    let mut ffmpeg = publish(&format!("{}/live/main-key-0123", primary.rtmp), 5);
    wait_state(&primary, id, "live").await;
    assert!(wait_exit(&mut ffmpeg, Duration::from_secs(30)).is_some_and(|s| s.success()));
    // The forwarding ends with the publish; SIGTERM lets nginx finish the recording.
    wait_state(&primary, id, "idle").await;
    nginx.stop();
    let (out, frames) = nginx.probe("peer", 320, 240);
    assert!(out.contains("h264,320,240,"), "{out}");
    assert!(out.contains("aac"), "{out}");
    // 5 s at 30 fps, less the start (the target connects when the publish begins).
    assert!(frames >= 90, "nginx recorded only {frames} frames");
}

/// Our client publishes 640x360 HEVC over Enhanced RTMP for `seconds`.
fn publish_hevc(
    server: &Server,
    seconds: u32,
) -> (KillOnDrop, std::sync::Arc<std::sync::Mutex<String>>) {
    rivulet_publish(&[
        "--test-pattern",
        "--size",
        "640x360",
        "--bitrate",
        "500k",
        "--preset",
        "ultrafast",
        "--video-codec",
        "hevc",
        "--duration",
        &seconds.to_string(),
        &format!("{}/live/main-key-0123", server.rtmp),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_source_is_restreamed_as_the_ladders_top_h264_rung() {
    // A ladder of 360p and 234p in H.264 beside the HEVC passthrough: nginx-rtmp
    // (plain RTMP) gets the 360p rung.
    let (mut nginx, primary, id) = forwarding_to_nginx(&["--renditions", "source,360p,234p"]).await;
    let (mut publisher, log) = publish_hevc(&primary, 8);
    wait_state(&primary, id, "live").await;
    let status = wait_exit(&mut publisher, Duration::from_secs(60)).expect("publish ends");
    assert!(status.success(), "publish failed: {}", log.lock().unwrap());
    wait_state(&primary, id, "idle").await;
    assert!(
        primary
            .log()
            .contains("restreaming this rung in place of the source"),
        "{}",
        primary.log()
    );
    nginx.stop();
    let (out, frames) = nginx.probe("peer", 640, 360);
    assert!(!out.contains("hevc"), "{out}");
    assert!(out.contains("aac"), "{out}");
    // 8 s at 30 fps, less the transcoder's start and the wait for a keyframe.
    assert!(
        frames >= 90,
        "nginx recorded only {frames} frames of 640x360 H.264: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_source_without_an_h264_rung_is_refused_with_the_reason() {
    let (mut nginx, primary, id) = forwarding_to_nginx(&["--renditions", "source"]).await;
    let (mut publisher, log) = publish_hevc(&primary, 25);
    let state = wait_state(&primary, id, "failed").await;
    let reason = state["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("HEVC") && reason.contains("H.264") && reason.contains("--renditions"),
        "the reason names the codec and what to do: {state}"
    );
    // The stream itself plays on.
    get_when_ready(
        &primary.url("/live/main/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let status = wait_exit(&mut publisher, Duration::from_secs(60)).expect("publish ends");
    assert!(status.success(), "publish failed: {}", log.lock().unwrap());
    assert!(
        primary.log().contains("restream refused"),
        "{}",
        primary.log()
    );
    // nginx-rtmp never got the stream: no recording with video.
    nginx.stop();
    let recording = nginx.recording("peer");
    assert!(
        std::fs::metadata(&recording).map_or(true, |m| m.len() < 1024),
        "nginx recorded {}",
        recording.display()
    );
}

async fn restreams(server: &Server) -> Value {
    client()
        .get(server.url("/api/streams/main/restreams"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the target's state until it is `state`; returns its status object.
async fn wait_state(server: &Server, id: i64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let listed = restreams(server).await;
        let target = listed["restreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap();
        if target["status"]["state"] == state {
            return target["status"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "target never became {state}: {target}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `codec_name,codec_type[,width,height]` of every stream ffprobe finds. ffprobe's HLS
/// reader sees whole segments only (not LL-HLS parts): it is asked again until one is
/// listed.
fn probe(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = run(Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "15000000"])
            .args([
                "-show_entries",
                "stream=codec_type,codec_name,width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(url));
        assert!(ok, "ffprobe {url}: {err}");
        if !out.trim().is_empty() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
