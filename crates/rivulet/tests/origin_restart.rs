//! An origin restarted on the same data directory never names other bytes as it named
//! objects before (issue 20, item 9): segments and parts are served `immutable`, and
//! an edge or a CDN keeps what it fetched under a name.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// ffmpeg publishing `seconds` of a `size` test pattern (2 s GOP) and a tone of
/// `tone` Hz, in real time, timestamps from 0.
fn publish(url: &str, size: &str, tone: u32, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency={tone}:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg must be installed (see the README's set-up command)")
}

/// Every object URI a media playlist lists (init, parts, segments).
fn object_uris(playlist: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in playlist.lines() {
        if line.starts_with("#EXT-X-MAP") || line.starts_with("#EXT-X-PART:") {
            uris.extend(attr(line, "URI").map(str::to_owned));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            uris.push(line.trim().to_owned());
        }
    }
    uris
}

/// The objects of the rendition's playlist at `base`, with their bytes.
async fn objects(base: &str) -> BTreeMap<String, Vec<u8>> {
    let (status, playlist) = get_text(&format!("{base}/index.m3u8")).await;
    assert_eq!(status, 200, "{playlist}");
    let mut out = BTreeMap::new();
    for uri in object_uris(&playlist) {
        let resp = client().get(format!("{base}/{uri}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{uri}");
        out.insert(uri, resp.bytes().await.unwrap().to_vec());
    }
    out
}

/// The media sequence numbers in object names (`seg-N`, `part-N-P`).
fn msns(objects: &BTreeMap<String, Vec<u8>>) -> Vec<u64> {
    objects
        .keys()
        .filter_map(|u| {
            let rest = u.strip_prefix("seg-").or_else(|| u.strip_prefix("part-"))?;
            rest.trim_end_matches(".m4s")
                .split('-')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

async fn wait_for_segments(base: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, playlist) = get_text(&format!("{base}/index.m3u8")).await;
        let segments = playlist
            .lines()
            .filter(|l| l.starts_with("#EXTINF"))
            .count();
        if status == 200 && segments >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} segments in {within:?}: {playlist}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_origin_never_names_other_bytes_alike() {
    let data = tempfile::tempdir().unwrap();
    let http_listen = format!("127.0.0.1:{}", free_port());
    let args = ["--stream", "cam=cam-key"];
    let mut origin = Server::start_cmd(
        &[],
        "origin",
        data.path(),
        "127.0.0.1:0",
        &http_listen,
        &args,
    );
    let edge = EdgeNode::local(&[&origin.http], &[]);
    let at_origin = origin.url("/live/cam/source");
    let at_edge = edge.url("/live/cam/source");

    // Session 1: 320x240, 440 Hz, from timestamp 0. Everything it lists goes through
    // the edge, which keeps it.
    let mut first = KillOnDrop(publish(
        &format!("{}/live/cam-key", origin.rtmp),
        "320x240",
        440,
        7,
    ));
    wait_for_segments(&at_origin, 2, Duration::from_secs(30)).await;
    wait_exit(&mut first.0, Duration::from_secs(30));
    let before = objects(&at_origin).await;
    let via_edge = objects(&at_edge).await;
    assert_eq!(before, via_edge, "the edge serves the origin's objects");
    assert!(
        before.keys().any(|u| u.starts_with("seg-")),
        "{:?}",
        before.keys()
    );

    // A crash, then the origin again on the same data directory and address; the
    // publisher again from timestamp 0 with another picture and tone.
    origin.kill();
    let origin = Server::start_cmd(
        &[],
        "origin",
        data.path(),
        "127.0.0.1:0",
        &http_listen,
        &args,
    );
    let _second = KillOnDrop(publish(
        &format!("{}/live/cam-key", origin.rtmp),
        "480x270",
        880,
        30,
    ));
    wait_for_segments(&at_origin, 2, Duration::from_secs(30)).await;
    let after = objects(&at_origin).await;

    // No name of the first session stands for other bytes now.
    for (uri, bytes) in &after {
        if let Some(old) = before.get(uri) {
            assert!(old == bytes, "{uri} names other bytes after the restart");
        }
    }
    let (old_max, new_min) = (
        msns(&before).into_iter().max().unwrap(),
        msns(&after).into_iter().min().unwrap(),
    );
    assert!(
        new_min > old_max,
        "the new session numbers above the old one: {old_max} then {new_min}"
    );
    // Through the edge, which still holds the first session's objects, the second
    // session's are its own bytes, and ffmpeg decodes it without an error.
    let via_edge = objects(&at_edge).await;
    for (uri, bytes) in &via_edge {
        if let Some(fresh) = after.get(uri) {
            assert!(fresh == bytes, "the edge serves {uri} as the origin does");
        }
    }
    let (ok, _, stderr) = run(Command::new("ffmpeg").args([
        "-hide_banner",
        "-v",
        "error",
        "-i",
        &format!("{at_edge}/index.m3u8"),
        "-t",
        "4",
        "-f",
        "null",
        "-",
    ]));
    assert!(
        ok && stderr.trim().is_empty(),
        "ffmpeg through the edge: {stderr}"
    );
    let (_, master) = get_text(&edge.url("/live/cam/master.m3u8")).await;
    assert!(master.contains("RESOLUTION=480x270"), "{master}");
    drop(origin);
}
