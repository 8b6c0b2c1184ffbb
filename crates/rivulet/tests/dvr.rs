//! DVR end to end: a real ffmpeg publishes ~40 s to `rivulet serve` recording the
//! stream; the DVR playlist lists the whole window (PDT on every segment, objects
//! named per recording and immutable) while the live playlist keeps its normal
//! window; ffmpeg decodes from the start of the DVR playlist; an edge proxies and
//! caches the DVR URLs.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SECONDS: u32 = 44;

/// Seconds of media a playlist lists (the sum of its EXTINFs).
fn listed_seconds(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| {
            v.trim_end_matches(',')
                .split(',')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

fn segment_uris(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dvr_lists_the_window_from_the_recording_while_live_stays_short() {
    let server = Server::start(&[
        "--record-default",
        "--stream",
        "dvr=dvr-key-0001",
        "--grace-period-ms",
        "1000",
    ]);
    let client = client();
    let mut ffmpeg = publish(&format!("{}/live/dvr-key-0001", server.rtmp), SECONDS);
    get_when_ready(
        &server.url("/live/dvr/source/index.m3u8"),
        Duration::from_secs(15),
    )
    .await;

    // Wait until the window holds 30 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dvr = loop {
        let (status, text) = get_text(&server.url("/live/dvr/source/dvr.m3u8")).await;
        if status == 200 && listed_seconds(&text) >= 30.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the DVR playlist never listed 30 s: {status} {text}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (_, live) = get_text(&server.url("/live/dvr/source/index.m3u8")).await;
    assert!(
        listed_seconds(&live) <= 20.0,
        "the live playlist keeps its short window: {live}"
    );
    assert!(
        live.contains("#EXT-X-PART:"),
        "the live playlist is still LL-HLS"
    );

    // Every segment has its date; no end while live; objects in the recording's
    // directory.
    let uris = segment_uris(&dvr);
    assert!(uris.len() >= 15, "{dvr}");
    assert_eq!(
        dvr.matches("#EXT-X-PROGRAM-DATE-TIME:").count(),
        uris.len(),
        "{dvr}"
    );
    assert!(!dvr.contains("#EXT-X-ENDLIST"));
    assert!(uris.iter().all(|u| u.starts_with("rec-")), "{dvr}");
    let dir = uris[0].split('/').next().unwrap();
    let live_first_msn: u64 = live
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let dvr_first_msn: u64 = dvr
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        dvr_first_msn + 6 < live_first_msn,
        "the DVR window starts well before the live one: {dvr_first_msn} vs {live_first_msn}"
    );

    // Cache headers: the DVR playlist briefly, recorded objects for good.
    let r = client
        .get(server.url("/live/dvr/source/dvr.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=1");
    let first = server.url(&format!("/live/dvr/source/{}", uris[0]));
    let r = client.get(&first).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let first_segment = r.bytes().await.unwrap();

    // The multivariant points at the renditions' DVR playlists.
    let (status, master) = get_text(&server.url("/live/dvr/dvr.m3u8")).await;
    assert_eq!(status, 200, "{master}");
    assert!(master.contains("\nsource/dvr.m3u8\n"), "{master}");

    // The oldest segment decodes (init + segment), and ffmpeg plays the playlist from
    // its start without a decode error.
    let map = dvr
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .unwrap()
        .trim_end_matches('"');
    assert!(map.starts_with(&format!("{dir}/init-")), "{map}");
    let init = client
        .get(server.url(&format!("/live/dvr/source/{map}")))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let mut mp4 = init.bytes().await.unwrap().to_vec();
    mp4.extend_from_slice(&first_segment);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("first.mp4");
    std::fs::write(&file, &mp4).unwrap();
    let frames = decoded_frames(file.to_str().unwrap());
    assert_eq!(frames, 60, "a 2 s segment at 30 fps");
    let (ok, _, stderr) = run(Command::new("ffmpeg").args([
        "-v",
        "error",
        "-live_start_index",
        "0",
        "-i",
        &server.url("/live/dvr/dvr.m3u8"),
        "-map",
        "0:v:0",
        "-frames:v",
        "300",
        "-f",
        "null",
        "-",
    ]));
    assert!(ok, "ffmpeg cannot play the DVR playlist: {stderr}");
    assert!(stderr.trim().is_empty(), "decode errors: {stderr}");

    // Through an edge: the DVR playlist and a recorded object, the second time from
    // its cache.
    let edge = EdgeNode::local(&[&server.http], &[]);
    let (status, via_edge) = get_text(&edge.url("/live/dvr/source/dvr.m3u8")).await;
    assert_eq!(status, 200, "{via_edge}");
    assert!(listed_seconds(&via_edge) >= 30.0);
    for _ in 0..2 {
        let r = client
            .get(edge.url(&format!("/live/dvr/source/{}", uris[0])))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), first_segment);
    }
    let (status, _) = get_text(&server.url("/live/dvr/source/rec-1/seg-1.m4s")).await;
    assert_eq!(status, 404, "an object of no recording");

    assert!(
        wait_exit(&mut ffmpeg, Duration::from_secs(u64::from(SECONDS) + 30))
            .is_some_and(|s| s.success()),
        "ffmpeg did not publish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dvr_when_off_or_not_recorded() {
    let server = Server::start(&[
        "--record-default",
        "--dvr-window",
        "0",
        "--stream",
        "off=off-key-0001",
    ]);
    let mut ffmpeg = publish(&format!("{}/live/off-key-0001", server.rtmp), 8);
    get_when_ready(
        &server.url("/live/off/source/index.m3u8"),
        Duration::from_secs(15),
    )
    .await;
    let (status, text) = get_text(&server.url("/live/off/source/dvr.m3u8")).await;
    assert_eq!(status, 404);
    assert!(text.contains("--dvr-window"), "says why: {text}");
    assert_eq!(get_text(&server.url("/live/nobody/dvr.m3u8")).await.0, 404);
    let _ = wait_exit(&mut ffmpeg, Duration::from_secs(30));
}

/// A private stream's DVR URLs follow its live token rules: refused without a
/// token, served with one, the token carried into every URI of the DVR playlists, at
/// the origin and through an edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_streams_dvr_needs_its_token() {
    const ADMIN: &str = "dvr-admin-token-0123";
    const PLAYBACK_KEY: &str = "k1=dvr-playback-secret-0123456789";
    let server = Server::start(&[
        "--record-default",
        "--admin-token",
        ADMIN,
        "--playback-key",
        PLAYBACK_KEY,
        "--stream",
        "vip=vip-dvr-key-0001",
    ]);
    let client = client();
    let r = client
        .patch(server.url("/api/streams/vip"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"private": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let minted: serde_json::Value = client
        .post(server.url("/api/streams/vip/tokens"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"expires_in": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    let mut ffmpeg = KillOnDrop(publish(
        &format!("{}/live/vip-dvr-key-0001", server.rtmp),
        30,
    ));
    let edge = EdgeNode::local(&[&server.http], &["--playback-key", PLAYBACK_KEY]);
    let with_token = format!("/live/vip/source/dvr.m3u8?token={token}");
    let deadline = Instant::now() + Duration::from_secs(40);
    let playlist = loop {
        let (status, text) = get_text(&server.url(&with_token)).await;
        if status == 200 && segment_uris(&text).len() >= 2 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no DVR playlist: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let uris = segment_uris(&playlist);
    assert!(
        uris.iter().all(|u| u.contains(&format!("token={token}"))),
        "{playlist}"
    );
    let (unsigned, _) = uris[0].split_once('?').unwrap();
    for base in [server.http.as_str(), edge.url.as_str()] {
        for path in [
            "/live/vip/dvr.m3u8".to_owned(),
            "/live/vip/source/dvr.m3u8".to_owned(),
            format!("/live/vip/source/{unsigned}"),
        ] {
            let (status, _) = get_text(&format!("{base}{path}")).await;
            assert_eq!(status, 401, "{base}{path} without a token");
        }
        let (status, _) = get_text(&format!("{base}{with_token}")).await;
        assert_eq!(status, 200, "{base}{with_token}");
        let r = client
            .get(format!("{base}/live/vip/source/{}", uris[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{base} {}", uris[0]);
        assert_eq!(r.headers()["x-rivulet-access"], "private");
    }
    let _ = ffmpeg.kill();
}
