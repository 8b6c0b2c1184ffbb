//! Recording end to end: a real ffmpeg publishes to `rivulet serve` with recording on;
//! when the stream ends the recording is a VOD asset whose playlists parse, which
//! ffmpeg decodes over HTTP without errors and with the frames published, and whose MP4
//! download ffprobes right; while live, the thumbnail is a JPEG of the asked size, and the recording has a
//! poster JPEG. A store that cannot be written never stalls the live stream.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

const TOKEN: &str = "e2e-record-token-0123";
const SECONDS: u32 = 12;
/// testsrc2 at 30 fps.
const FPS: u32 = 30;

async fn recordings(server: &Server) -> Vec<Value> {
    let r = client()
        .get(server.url("/api/recordings"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.unwrap()
}

/// The recordings listed, once there is at least one (within 30 s: the stream ended
/// and its grace period passed).
async fn listed_recordings(server: &Server) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = recordings(server).await;
        if !all.is_empty() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "no recording listed:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The first recording listed (see [`listed_recordings`]).
async fn first_recording(server: &Server) -> Value {
    listed_recordings(server).await.swap_remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_stream_becomes_vod_playlist_and_mp4() {
    let server = Server::start(&[
        "--admin-token",
        TOKEN,
        "--stream",
        "show=show-key-0001",
        "--grace-period-ms",
        "1000",
    ]);
    let client = client();

    // Recording is off by default; the API turns it on for this stream.
    let r = client
        .patch(server.url("/api/streams/show"))
        .bearer_auth(TOKEN)
        .json(&json!({"record": true, "title": "The show", "tags": ["live"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stream: Value = r.json().await.unwrap();
    assert_eq!(stream["record"], json!(true));

    let mut ffmpeg = publish(&format!("{}/live/show-key-0001", server.rtmp), SECONDS);
    get_when_ready(
        &server.url("/live/show/source/index.m3u8"),
        Duration::from_secs(15),
    )
    .await;
    // While it is live: a thumbnail, a JPEG of the asked width (aspect kept).
    let thumbnail_dir = tempfile::tempdir().unwrap();
    for (query, size) in [("", (320, 240)), ("?width=160", (160, 120))] {
        let r = client
            .get(server.url(&format!("/live/show/thumbnail.jpg{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "thumbnail{query}");
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
        let jpeg = r.bytes().await.unwrap();
        assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff], "not a JPEG");
        let file = thumbnail_dir.path().join("t.jpg");
        std::fs::write(&file, &jpeg).unwrap();
        assert_eq!(
            ffprobe_entries(&file, "stream=width,height"),
            format!("{},{}", size.0, size.1)
        );
    }
    assert_eq!(
        get_text(&server.url("/live/show/thumbnail.jpg?width=100000"))
            .await
            .0,
        400
    );
    assert_eq!(
        get_text(&server.url("/live/nobody/thumbnail.jpg")).await.0,
        404
    );
    assert!(
        wait_exit(&mut ffmpeg, Duration::from_secs(u64::from(SECONDS) + 30))
            .is_some_and(|s| s.success()),
        "ffmpeg did not publish"
    );

    // The grace period passes, the stream ends, the recording is listed.
    let recording = first_recording(&server).await;
    let id = recording["id"].as_str().unwrap().to_owned();
    assert_eq!(recording["stream"], "show");
    assert_eq!(recording["title"], "The show");
    assert_eq!(recording["tags"], json!(["live"]));
    assert_eq!(recording["renditions"], json!(["source"]));
    assert_eq!(recording["gaps"], 0);
    assert!(recording["bytes"].as_u64().unwrap() > 10_000);
    let duration_ms = recording["duration_ms"].as_u64().unwrap();
    assert!(
        duration_ms.abs_diff(u64::from(SECONDS) * 1000) <= 1500,
        "duration {duration_ms} ms"
    );
    assert!(recording["ended_at"].as_i64().unwrap() > recording["started_at"].as_i64().unwrap());
    // The stream's own list has it; the admin list needs the token.
    let (status, body) = get_text(&server.url("/api/streams/show/recordings")).await;
    assert_eq!(status, 200);
    assert!(body.contains(&id), "{body}");
    assert_eq!(get_text(&server.url("/api/recordings")).await.0, 401);
    let doc = get_text(&server.url("/api/openapi.json")).await.1;
    assert!(
        doc.contains("/api/recordings/{id}"),
        "OpenAPI lacks the recordings"
    );

    assert!(
        doc.contains("poster"),
        "OpenAPI lacks the recording's poster"
    );

    // Its poster: a JPEG of the (only, so smallest) rendition, at its width.
    let poster = format!("/vod/{id}/poster.jpg");
    assert_eq!(
        recording["poster"],
        json!(poster),
        "no poster listed:\n{}",
        server.log()
    );
    let r = client.get(server.url(&poster)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let jpeg = r.bytes().await.unwrap();
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "the poster is not a JPEG");
    let poster_file = thumbnail_dir.path().join("poster.jpg");
    std::fs::write(&poster_file, &jpeg).unwrap();
    assert_eq!(
        ffprobe_entries(&poster_file, "stream=codec_name,width,height"),
        "mjpeg,320,240"
    );

    // The VOD playlists parse: a multivariant playlist and a VOD media playlist.
    let master = get_text(&server.url(&format!("/vod/{id}/master.m3u8")))
        .await
        .1;
    let m3u8_rs::Playlist::MasterPlaylist(master) =
        m3u8_rs::parse_playlist_res(master.as_bytes()).unwrap()
    else {
        panic!("not a multivariant playlist");
    };
    assert_eq!(master.variants.len(), 1);
    assert_eq!(master.variants[0].uri, "source/index.m3u8");
    let media = get_text(&server.url(&format!("/vod/{id}/source/index.m3u8")))
        .await
        .1;
    let m3u8_rs::Playlist::MediaPlaylist(media) =
        m3u8_rs::parse_playlist_res(media.as_bytes()).unwrap()
    else {
        panic!("not a media playlist");
    };
    assert!(media.end_list);
    assert_eq!(media.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
    let listed: f32 = media.segments.iter().map(|s| s.duration).sum();
    assert!(
        (listed - SECONDS as f32).abs() <= 1.5,
        "playlist lists {listed} s"
    );

    // ffmpeg decodes the VOD over HTTP: every frame published, no errors.
    let published = u64::from(SECONDS * FPS);
    let frames = decoded_frames(&server.url(&format!("/vod/{id}/master.m3u8")));
    assert!(
        frames.abs_diff(published) <= 3,
        "decoded {frames} frames of the {published} published"
    );

    // The MP4 download: one file, video and audio, the right duration, decodable.
    let r = client
        .get(server.url(&format!("/vod/{id}/source.mp4")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let mp4 = r.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("show.mp4");
    std::fs::write(&file, &mp4).unwrap();
    let (ok, probe, stderr) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_type",
            "-of",
            "json",
        ])
        .arg(&file));
    assert!(ok, "{stderr}");
    let probe: Value = serde_json::from_str(&probe).unwrap();
    let kinds: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"video") && kinds.contains(&"audio"),
        "{probe}"
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (duration - f64::from(SECONDS)).abs() <= 1.5,
        "the MP4 lasts {duration} s"
    );
    let in_mp4 = decoded_frames(file.to_str().unwrap());
    assert!(
        in_mp4.abs_diff(published) <= 3,
        "the MP4 holds {in_mp4} frames of the {published} published"
    );

    // Deleting it removes it from the lists and from /vod.
    let r = client
        .delete(server.url(&format!("/api/recordings/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(recordings(&server).await.is_empty());
    assert_eq!(get_text(&server.url(&poster)).await.0, 404);
    assert_eq!(
        get_text(&server.url(&format!("/vod/{id}/master.m3u8")))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_store_does_not_stall_the_live_stream() {
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("store");
    let server = Server::start_cmd(
        &[],
        "rivulet",
        data.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "--stream",
            "busy=busy-key-0001",
            "--record-default",
            "--record-queue-segments",
            "2",
            "--record-store",
            store.to_str().unwrap(),
        ],
    );
    // The store's directory becomes a file: nothing can be written below it, not even
    // by root (the tests run as root, for whom a read-only mode is no obstacle).
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::write(&store, b"not a directory").unwrap();

    let mut ffmpeg = publish(&format!("{}/live/busy-key-0001", server.rtmp), SECONDS);
    let playlist = server.url("/live/busy/source/index.m3u8");
    get_when_ready(&playlist, Duration::from_secs(15)).await;
    // Parts keep coming: follow the playlist with blocking reloads through several
    // segments while every recording write fails.
    let (mut msn, mut part) = preload_hint(&get_text(&playlist).await.1);
    let first = msn;
    while msn < first + 3 {
        let (status, body) = get_text(&format!("{playlist}?_HLS_msn={msn}&_HLS_part={part}")).await;
        assert_eq!(status, 200, "the live playlist stalled: {body}");
        (msn, part) = preload_hint(&body);
    }
    assert!(
        wait_exit(&mut ffmpeg, Duration::from_secs(u64::from(SECONDS) + 30))
            .is_some_and(|s| s.success()),
        "ffmpeg could not publish while the store failed"
    );
    // Why is in the log, and the failures are counted.
    let log = server.log();
    assert!(log.contains("cannot write to the recording store"), "{log}");
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(metrics.contains("record_write_errors_total"), "{metrics}");
    assert!(
        metrics.contains("record_segments_dropped_total"),
        "{metrics}"
    );
}

/// The moto S3 server (PyPI `moto[server]`, installed by scripts/setup.sh) on a
/// loopback port, killed on drop.
fn start_s3() -> Option<(KillOnDrop, String)> {
    let port = free_port();
    // On PATH, or where `pip install --user` puts it (not on a fresh machine's PATH).
    let user_bin = std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".local/bin/moto_server"))
        .filter(|p| p.is_file());
    let program = user_bin.map_or_else(|| "moto_server".into(), |p| p.into_os_string());
    let child = Command::new(program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    Some((KillOnDrop(child), format!("http://127.0.0.1:{port}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_to_an_s3_compatible_store() {
    let Some((_s3, endpoint)) = start_s3() else {
        eprintln!("SKIPPED S3 recording: moto_server is not installed (scripts/setup.sh)");
        return;
    };
    // The server takes a moment to listen; then the bucket is made.
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.put(format!("{endpoint}/rivulet-rec")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let data = tempfile::tempdir().unwrap();
    // Credentials through the environment, as an operator gives them.
    let prefix: Vec<String> = [
        "env",
        "AWS_ACCESS_KEY_ID=rivulet-test",
        "AWS_SECRET_ACCESS_KEY=rivulet-test-secret",
        "AWS_REGION=us-east-1",
    ]
    .map(String::from)
    .to_vec();
    let server = Server::start_cmd(
        &prefix,
        "rivulet",
        data.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "--admin-token",
            TOKEN,
            "--stream",
            "cloud=cloud-key-0001",
            "--grace-period-ms",
            "1000",
            "--record-default",
            "--record-store",
            "s3://rivulet-rec/recordings",
            "--record-s3-endpoint",
            &endpoint,
        ],
    );
    let seconds = 6;
    let mut ffmpeg = publish(&format!("{}/live/cloud-key-0001", server.rtmp), seconds);
    assert!(
        wait_exit(&mut ffmpeg, Duration::from_secs(u64::from(seconds) + 30))
            .is_some_and(|s| s.success())
    );
    let id = first_recording(&server).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The objects are in the bucket, below the prefix.
    let listing = client
        .get(format!(
            "{endpoint}/rivulet-rec?list-type=2&prefix=recordings/{id}/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains(&format!("recordings/{id}/recording.json")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("recordings/{id}/source/init-")),
        "{listing}"
    );
    // The poster went the same way, and is served from the bucket.
    assert!(
        listing.contains(&format!("recordings/{id}/poster.jpg")),
        "{listing}"
    );
    let (status, _) = get_text(&server.url(&format!("/vod/{id}/poster.jpg"))).await;
    assert_eq!(status, 200);
    // And it plays from there.
    let published = u64::from(seconds * FPS);
    let frames = decoded_frames(&server.url(&format!("/vod/{id}/master.m3u8")));
    assert!(
        frames.abs_diff(published) <= 3,
        "decoded {frames} frames of the {published} published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_returning_within_the_grace_period_continues_the_recording() {
    let server = Server::start(&[
        "--admin-token",
        TOKEN,
        "--stream",
        "again=again-key-0001",
        "--grace-period-ms",
        "4000",
        "--record-default",
    ]);
    let seconds = 4;
    for _ in 0..2 {
        let mut ffmpeg = publish(&format!("{}/live/again-key-0001", server.rtmp), seconds);
        assert!(
            wait_exit(&mut ffmpeg, Duration::from_secs(u64::from(seconds) + 30))
                .is_some_and(|s| s.success())
        );
    }
    let all = listed_recordings(&server).await;
    // One recording of both sessions, with the discontinuity between them.
    assert_eq!(all.len(), 1, "{all:?}");
    let id = all[0]["id"].as_str().unwrap();
    let duration_ms = all[0]["duration_ms"].as_u64().unwrap();
    assert!(
        duration_ms.abs_diff(2 * u64::from(seconds) * 1000) <= 1500,
        "duration {duration_ms} ms"
    );
    let media = get_text(&server.url(&format!("/vod/{id}/source/index.m3u8")))
        .await
        .1;
    assert_eq!(
        media.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{media}"
    );
    let frames = decoded_frames(&server.url(&format!("/vod/{id}/master.m3u8")));
    let published = u64::from(2 * seconds * FPS);
    assert!(
        frames.abs_diff(published) <= 6,
        "decoded {frames} frames of the {published} published"
    );
}

/// A/B pipelines: one publisher feeds two `rivulet serve` recording into one shared
/// directory; A is killed mid-stream. Both wrote the same object names (one recording
/// directory, not two), and B's recording has every segment: no gap, every frame
/// decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_pipelines_write_one_recording_and_a_killed_one_leaves_no_gap() {
    const AB_SECONDS: u32 = 24;
    let shared = tempfile::tempdir().unwrap();
    let store = shared.path().to_str().unwrap();
    let args = [
        "--admin-token",
        TOKEN,
        "--record-default",
        "--record-store",
        store,
        "--stream",
        "ab=ab-rec-key-0001",
        "--grace-period-ms",
        "1000",
    ];
    let mut a = Server::start(&args);
    let b = Server::start(&args);
    let (mut publisher, output) = rivulet_publish(&[
        "--test-pattern",
        "--size",
        "320x180",
        "--bitrate",
        "300k",
        "--duration",
        &AB_SECONDS.to_string(),
        &format!("{}/live/ab-rec-key-0001", a.rtmp),
        &format!("{}/live/ab-rec-key-0001", b.rtmp),
    ]);
    for server in [&a, &b] {
        get_when_ready(
            &server.url("/live/ab/source/index.m3u8"),
            Duration::from_secs(20),
        )
        .await;
    }
    // Both record under one name: a single recording directory in the shared store.
    let recording_dirs = || -> Vec<String> {
        std::fs::read_dir(shared.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ab-"))
            .collect()
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(recording_dirs().len(), 1, "{:?}", recording_dirs());
    a.kill();
    assert!(
        wait_exit(
            &mut publisher,
            Duration::from_secs(u64::from(AB_SECONDS) + 30)
        )
        .is_some(),
        "the publisher did not finish: {}",
        output.lock().unwrap()
    );
    let recording = first_recording(&b).await;
    assert_eq!(recording_dirs().len(), 1, "{:?}", recording_dirs());
    let id = recording["id"].as_str().unwrap().to_owned();
    assert_eq!(recording_dirs(), std::slice::from_ref(&id));
    assert_eq!(recording["gaps"], 0);
    let media = get_text(&b.url(&format!("/vod/{id}/source/index.m3u8")))
        .await
        .1;
    assert!(!media.contains("#EXT-X-DISCONTINUITY"), "{media}");
    let msns: Vec<u64> = media
        .lines()
        .filter_map(|l| l.strip_prefix("seg-")?.strip_suffix(".m4s")?.parse().ok())
        .collect();
    assert!(
        msns.windows(2).all(|w| w[1] == w[0] + 1),
        "a segment is missing: {msns:?}"
    );
    // Frames our publisher dropped as late (a busy machine) never reached either
    // pipeline.
    let dropped = frames_dropped_by_publisher(&output.lock().unwrap()) as u64;
    let published = u64::from(AB_SECONDS * FPS) - dropped;
    let frames = decoded_frames(&b.url(&format!("/vod/{id}/master.m3u8")));
    assert!(
        frames.abs_diff(published) <= 3,
        "decoded {frames} frames of the {published} published ({dropped} dropped by the \
         publisher)"
    );
}

/// A private stream's recording is as private as its live media: without the stream's
/// playback token every `/vod/ID/…` object is refused (401), with it the playlists
/// carry the token into every URI, ffmpeg decodes the VOD, and nothing is cached by a
/// shared cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_streams_recording_needs_its_token() {
    let server = Server::start(&[
        "--admin-token",
        TOKEN,
        "--stream",
        "vip=vip-key-0001",
        "--grace-period-ms",
        "1000",
        "--record-default",
        "--playback-key",
        "vod=e2e-vod-playback-secret-0123",
    ]);
    let client = client();
    let r = client
        .patch(server.url("/api/streams/vip"))
        .bearer_auth(TOKEN)
        .json(&json!({"private": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seconds = 4;
    let mut ffmpeg = publish(&format!("{}/live/vip-key-0001", server.rtmp), seconds);
    assert!(
        wait_exit(&mut ffmpeg, Duration::from_secs(u64::from(seconds) + 30))
            .is_some_and(|s| s.success())
    );
    let recording = first_recording(&server).await;
    let id = recording["id"].as_str().unwrap().to_owned();

    // Without a token (or with a wrong one): refused, saying why.
    for path in [
        format!("/vod/{id}/master.m3u8"),
        format!("/vod/{id}/source/index.m3u8"),
        format!("/vod/{id}/source/seg-0.m4s"),
        format!("/vod/{id}/source.mp4"),
        format!("/vod/{id}/master.m3u8?token=not-a-token"),
    ] {
        let (status, body) = get_text(&server.url(&path)).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("token"), "{path}: {body}");
    }

    // With the stream's token: the playlists carry it, the VOD decodes.
    let r = client
        .post(server.url("/api/streams/vip/tokens"))
        .bearer_auth(TOKEN)
        .json(&json!({"expires_in": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client
        .get(server.url(&format!("/vod/{id}/source/index.m3u8?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private"),
        "a shared cache must not keep a private recording"
    );
    let media = r.text().await.unwrap();
    for line in media.lines().filter(|l| l.starts_with("seg-")) {
        assert!(line.contains(&format!("token={token}")), "{line}");
    }
    let frames = decoded_frames(&server.url(&format!("/vod/{id}/master.m3u8?token={token}")));
    let published = u64::from(seconds * FPS);
    assert!(
        frames.abs_diff(published) <= 6,
        "decoded {frames} frames of the {published} published"
    );
}
