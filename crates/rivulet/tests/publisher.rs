//! End to end with our own publisher (`rivulet publish`, `rivulet demo`): the real
//! binary, real libx264, real RTMP to our ingest and to nginx-rtmp, real HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Decodes `file` to 8-bit luma frames of `w`×`h` (scaled by ffmpeg if needed).
fn luma_frames(file: &Path, w: u32, h: u32) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args([
            "-vf",
            &format!("scale={w}:{h}"),
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg could not decode {}",
        file.display()
    );
    out.stdout
        .chunks_exact((w * h) as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn time_strip_reads_back_through_hls_at_every_size() {
    let server = Server::start(&["--stream", "strip=strip-key"]);
    let (mut publisher, log) = rivulet_publish(&[
        "--test-pattern",
        "--size",
        "640x360",
        "--duration",
        "7",
        &format!("{}/live/strip-key", server.rtmp),
    ]);
    let status = wait_exit(&mut publisher, Duration::from_secs(30))
        .expect("publisher ends after --duration");
    assert!(
        status.success(),
        "publisher failed: {}",
        log.lock().unwrap()
    );
    assert!(
        log.lock().unwrap().contains("fps"),
        "no status line printed"
    );

    // The stream is in its grace period: the playlist is still served.
    let playlist = get_when_ready(
        &server.url("/live/strip/source/index.m3u8"),
        Duration::from_secs(5),
    )
    .await;
    let media = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let init = client()
        .get(server.url(&format!("/live/strip/source/{map}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked_segments = 0;
    let mut previous_last: Option<u64> = None;
    for segment in media.segments.iter().filter(|s| s.duration > 0.0) {
        let body = client()
            .get(server.url(&format!("/live/strip/source/{}", segment.uri)))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let file = dir.path().join(format!("{}.mp4", segment.uri));
        std::fs::write(&file, [init.as_ref(), body.as_ref()].concat()).unwrap();
        let pdt = segment
            .program_date_time
            .as_ref()
            .expect("EXT-X-PROGRAM-DATE-TIME on every segment")
            .timestamp_millis() as u64;
        for (w, h) in [(640, 360), (416, 234)] {
            let times: Vec<u64> = luma_frames(&file, w, h)
                .iter()
                .map(|y| {
                    source::time_strip::read(y, w, h, w as usize)
                        .unwrap_or_else(|e| panic!("{}: {w}x{h}: {e}", segment.uri))
                })
                .collect();
            assert!(
                times.len() >= 30,
                "{}: only {} frames",
                segment.uri,
                times.len()
            );
            // Consecutive frames are one frame interval apart (a frame the encoder
            // dropped on a loaded machine shows as two; never anything else).
            let mut exact = 0;
            for pair in times.windows(2) {
                let step = pair[1] - pair[0];
                let frames = (step as f64 / (1000.0 / 30.0)).round();
                assert!(
                    frames >= 1.0 && (step as f64 - frames * 1000.0 / 30.0).abs() <= 1.0,
                    "{} at {w}x{h}: capture times {} then {}",
                    segment.uri,
                    pair[0],
                    pair[1]
                );
                exact += usize::from(frames == 1.0);
            }
            assert!(
                exact * 10 >= (times.len() - 1) * 9,
                "{}: too many frames dropped",
                segment.uri
            );
            let first = times[0];
            assert!(
                first.abs_diff(pdt) <= 100,
                "{}: first frame captured at {first}, PROGRAM-DATE-TIME {pdt}",
                segment.uri
            );
            if w == 640 {
                if let Some(last) = previous_last {
                    assert!(
                        (33..=67).contains(&(first - last)),
                        "gap between segments: {last} then {first}"
                    );
                }
                previous_last = times.last().copied();
            }
        }
        checked_segments += 1;
    }
    assert!(
        checked_segments >= 2,
        "only {checked_segments} complete segments:\n{playlist}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looped_file_plays_with_continuous_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=2",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=44100:duration=2",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&file));
    assert!(ok, "{err}");
    let server = Server::start(&["--stream", "clip=clip-key"]);
    let (mut publisher, log) = rivulet_publish(&[
        file.to_str().unwrap(),
        "--loop",
        "--duration",
        "7",
        &format!("{}/live/clip-key", server.rtmp),
    ]);
    let status = wait_exit(&mut publisher, Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{}", log.lock().unwrap());
    let playlist = get_when_ready(
        &server.url("/live/clip/source/index.m3u8"),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        !playlist.contains("DISCONTINUITY"),
        "looping must not break the timeline:\n{playlist}"
    );
    let media = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
    let complete: f32 = media.segments.iter().map(|s| s.duration).sum();
    assert!(
        complete >= 5.0,
        "expected ≥ 5 s of segments after 7 s of a looped 2 s clip:\n{playlist}"
    );
    // The whole stream decodes: audio and video, through the loop points.
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(server.url("/live/clip/master.m3u8")));
    assert!(ok, "{err}");
    let video_frames: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("video,"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no video in {out}"));
    assert!(out.contains("audio,"), "no audio in {out}");
    assert!(
        video_frames >= 125,
        "{video_frames} frames for ≥ 5 s at 25 fps"
    );
}

#[test]
fn publishes_to_nginx_rtmp() {
    let mut nginx = NginxRtmp::start();
    let (mut publisher, log) = rivulet_publish(&[
        "--test-pattern",
        "--size",
        "320x180",
        "--duration",
        "4",
        &format!("rtmp://127.0.0.1:{}/live/peer", nginx.port),
    ]);
    let status = wait_exit(&mut publisher, Duration::from_secs(30));
    nginx.stop();
    assert!(status.unwrap().success(), "{}", log.lock().unwrap());
    let (out, frames) = nginx.probe("peer", 320, 180);
    assert!(out.contains("h264,320,180,"), "{out}");
    assert!(out.contains("aac"), "{out}");
    assert!(
        frames >= 90,
        "nginx recorded only {frames} frames of 4 s at 30 fps"
    );
}

/// Parts listed in a playlist (grows while the stream is live).
async fn part_count(url: &str) -> usize {
    let (status, body) = get_text(url).await;
    if status != 200 {
        return 0;
    }
    body.lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .count()
        + body.lines().filter(|l| l.starts_with("#EXTINF")).count() * 100
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_publish_survives_an_ingest_dying_and_returns_to_it() {
    let (a_rtmp, a_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let args = ["--stream", "ab=ab-key", "--grace-period-ms", "60000"];
    let a = Server::start_on(&a_rtmp, &a_http, &args);
    let b = Server::start(&args);
    let (mut publisher, log) = rivulet_publish(&[
        "--test-pattern",
        "--size",
        "320x180",
        &format!("rtmp://{a_rtmp}/live/ab-key"),
        &format!("{}/live/ab-key", b.rtmp),
    ]);
    let a_playlist = a.url("/live/ab/source/index.m3u8");
    let b_playlist = b.url("/live/ab/source/index.m3u8");
    get_when_ready(&a_playlist, Duration::from_secs(15)).await;
    get_when_ready(&b_playlist, Duration::from_secs(15)).await;

    drop(a);
    let before = part_count(&b_playlist).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = part_count(&b_playlist).await;
    assert!(
        after > before,
        "B stopped receiving when A died ({before} -> {after})"
    );
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "publisher exited: {}",
        log.lock().unwrap()
    );

    let a = Server::start_on(&a_rtmp, &a_http, &args);
    // Backoff doubles to at most 10 s: A must be fed again well within 20 s.
    get_when_ready(&a_playlist, Duration::from_secs(20)).await;
    let first = part_count(&a_playlist).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        part_count(&a_playlist).await > first,
        "A is not receiving after its return"
    );
    assert!(
        log.lock().unwrap().contains("reconnecting"),
        "{}",
        log.lock().unwrap()
    );
    let _ = publisher.kill();
    let _ = publisher.wait();
    drop(a);
}

#[test]
fn bad_urls_keys_and_hosts_fail_with_one_clear_line() {
    let server = Server::start(&["--stream", "s=right-key"]);
    let port = free_port();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--test-pattern", "http://example.com/live/k"],
            "only rtmp://",
        ),
        (
            &["--test-pattern", "rtmp://127.0.0.1/live/"],
            "stream key is missing",
        ),
        (
            &["--test-pattern", &format!("rtmp://127.0.0.1:{port}/live/k")],
            "cannot connect",
        ),
        (
            &["--test-pattern", &format!("{}/live/wrong-key", server.rtmp)],
            "refused",
        ),
        (
            &[
                "/nonexistent/clip.mp4",
                &format!("{}/live/right-key", server.rtmp),
            ],
            "no such file",
        ),
    ];
    for (args, expected) in cases {
        let (mut child, log) = rivulet_publish(args);
        let status = wait_exit(&mut child, Duration::from_secs(20)).expect("exits on its own");
        let log = log.lock().unwrap().clone();
        assert!(!status.success(), "{args:?} succeeded");
        assert!(
            log.contains(expected),
            "{args:?}: expected '{expected}' in:\n{log}"
        );
        assert!(!log.contains("panicked"), "{log}");
        assert!(
            !log.contains("wrong-key"),
            "the key leaked into the message: {log}"
        );
    }
    assert!(
        server.log().contains("wro…"),
        "server log names the refused key redacted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_a_playable_stream_within_15_seconds() {
    use std::io::{BufRead, BufReader};
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args([
            "demo",
            "--rtmp-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--demo-size",
            "640x360",
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(demo.stdout.take().unwrap());
    let (mut page, mut watch) = (None, None);
    let mut lines = stdout.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("Watch:") {
            page = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("HLS:") {
            watch = rest.split_whitespace().next().map(str::to_owned);
        }
        if page.is_some() && watch.is_some() {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let page = page.expect("demo prints the page to open");
    let watch = watch.expect("demo prints the playlist URL");
    assert!(page.ends_with("/watch/demo"), "{page}");
    // The viewer page, embedded in the binary.
    let (status, html) = get_text(&page).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<video"), "{html}");
    let remaining = Duration::from_secs(15).saturating_sub(started.elapsed());
    // The demo transcodes: every rung of the ladder up to the 360p source (each
    // appears in the multivariant playlist once it has media).
    let mut master = get_when_ready(&watch, remaining).await;
    while !(master.contains("360p/index.m3u8") && master.contains("234p/index.m3u8")) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "rungs missing after 15 s:\n{master}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        master = get_text(&watch).await.1;
    }
    assert!(!master.contains("720p"), "never above the source: {master}");
    let media = watch.replace("master.m3u8", "360p/index.m3u8");
    let deadline = started + Duration::from_secs(15);
    while !get_text(&media).await.1.contains("#EXTINF") {
        assert!(
            Instant::now() < deadline,
            "no complete segment within 15 s of start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&watch));
    assert!(ok, "{err}");
    assert!(out.contains("h264,640,360"), "{out}");
    // Ctrl-C (SIGINT) stops everything cleanly.
    run(Command::new("kill").arg("-INT").arg(demo.id().to_string()));
    let status = wait_exit(&mut demo, Duration::from_secs(10)).expect("demo stops on Ctrl-C");
    assert!(status.success(), "demo exit status {status}");
}
