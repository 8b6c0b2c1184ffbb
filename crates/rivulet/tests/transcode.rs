//! The transcoder end to end: a real ffmpeg publisher, the real binary with its
//! ladder, real HTTP, and ffprobe/ffmpeg reading every rendition.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Ladder tests run one at a time: each one keeps several x264 encoders busy.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server whose stream NAME (key `NAME-key`) gets `renditions`, ending one second
/// after its publisher leaves (so that a test can read every playlist to its end).
fn ladder_server(name: &str, renditions: &str) -> Server {
    let stream = format!("{name}={name}-key");
    Server::start(&[
        "--stream",
        &stream,
        "--renditions",
        renditions,
        "--grace-period-ms",
        "1000",
    ])
}

/// ffmpeg publishing `size` at 30 fps with B-frames and a 2 s GOP for `seconds`,
/// with AAC audio or none.
fn publish_source(url: &str, seconds: u32, size: &str, audio: bool) -> Child {
    publish_source_at(url, seconds, size, audio, 30)
}

/// [`publish_source`] at `fps` frames a second (a keyframe every 2 s).
fn publish_source_at(url: &str, seconds: u32, size: &str, audio: bool, fps: u32) -> Child {
    let mut cmd = Command::new("ffmpeg");
    let gop = (2 * fps).to_string();
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate={fps}:duration={seconds}"),
        ]);
    if audio {
        cmd.args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        ])
        .args(["-c:a", "aac", "-b:a", "96k"]);
    } else {
        cmd.arg("-an");
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
    ])
    .args([
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "flv",
        url,
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .spawn()
    .expect("ffmpeg must be installed (scripts/setup.sh)")
}

async fn get_bytes(url: &str) -> bytes::Bytes {
    let r = client().get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await.unwrap()
}

/// The first video fragment's decode time and whether its first sample is a sync sample.
fn first_video_sample(segment: &[u8]) -> (u64, bool) {
    let summary = media::cmaf::inspect_fragment(segment).unwrap();
    let video = summary
        .tracks
        .iter()
        .find(|t| t.track_id == media::cmaf::VIDEO_TRACK_ID)
        .expect("a video track fragment");
    (video.base_media_decode_time, video.keyframes[0])
}

/// `ffprobe` frame counts per stream type of an HLS URL.
fn count_frames(url: &str) -> BTreeMap<String, u64> {
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(url));
    assert!(ok, "ffprobe {url}: {err}");
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((
                format!(
                    "{}{}",
                    f[0],
                    if f[0] == "video" {
                        format!(" {}x{}", f[1], f[2])
                    } else {
                        String::new()
                    }
                ),
                f.last()?.trim().parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_720p_source_becomes_an_aligned_ladder_with_every_frame() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = ladder_server("ladder", "1080p,720p,480p,360p,234p");
    let mut ffmpeg = publish_source(
        &format!("{}/live/ladder-key", server.rtmp),
        7,
        "1280x720",
        true,
    );
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg failed");
    // After the grace period the playlists end: every frame is in a listed segment.
    let expected = [
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
        ("234p", 416, 234),
    ];
    wait_for_endlist(
        &server.url("/live/ladder/234p/index.m3u8"),
        Duration::from_secs(15),
        "ladder",
    )
    .await;

    let master = get_text(&server.url("/live/ladder/master.m3u8")).await.1;
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes()).unwrap();
    let mut variants: Vec<(String, u64, u64)> = parsed
        .variants
        .iter()
        .map(|v| {
            let r = v.resolution.unwrap();
            (
                v.uri.trim_end_matches("/index.m3u8").to_owned(),
                r.width,
                r.height,
            )
        })
        .collect();
    variants.sort_by_key(|v| std::cmp::Reverse(v.2));
    let want: Vec<(String, u64, u64)> = expected
        .iter()
        .map(|(n, w, h)| ((*n).to_owned(), *w, *h))
        .collect();
    assert_eq!(
        variants, want,
        "no rung above the 720p source, widths keep 16:9:\n{master}"
    );
    for v in &parsed.variants {
        assert!(
            v.codecs.as_deref().unwrap().contains("mp4a.40.2"),
            "AAC passes through: {master}"
        );
        assert!(v.average_bandwidth.unwrap() > 0 && v.bandwidth >= v.average_bandwidth.unwrap());
    }

    // The same segments, starting at the same time, with an IDR, in every rung.
    let mut starts: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (name, w, h) in expected {
        let playlist = get_text(&server.url(&format!("/live/ladder/{name}/index.m3u8")))
            .await
            .1;
        assert!(
            playlist.contains("#EXT-X-RENDITION-REPORT:URI=\"../"),
            "{name}: rendition reports\n{playlist}"
        );
        let media = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
        for seg in &media.segments {
            let body = get_bytes(&server.url(&format!("/live/ladder/{name}/{}", seg.uri))).await;
            let (tfdt, sync) = first_video_sample(&body);
            assert!(sync, "{name}/{} does not start with a keyframe", seg.uri);
            let msn: u64 = seg
                .uri
                .trim_start_matches("seg-")
                .trim_end_matches(".m4s")
                .parse()
                .unwrap();
            starts.entry(name.to_owned()).or_default().push((msn, tfdt));
        }
        // Every frame of the source, decodable, at the rung's size.
        let counts = count_frames(&server.url(&format!("/live/ladder/{name}/index.m3u8")));
        assert_eq!(
            counts.get(&format!("video {w}x{h}")),
            Some(&210),
            "{name}: {counts:?}"
        );
        assert!(
            counts.get("audio").is_some_and(|n| *n > 300),
            "{name}: {counts:?}"
        );
        let (ok, _, err) = run(Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(server.url(&format!("/live/ladder/{name}/index.m3u8")))
            .args(["-f", "null", "-"]));
        assert!(
            ok && err.trim().is_empty(),
            "{name} does not decode cleanly: {err}"
        );
    }
    let reference = starts.get("720p").unwrap().clone();
    assert!(reference.len() >= 3, "{reference:?}");
    for (name, s) in &starts {
        assert_eq!(s, &reference, "{name}'s segments start where 720p's do");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resolution_change_without_audio_continues_after_a_discontinuity() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&["--stream", "change=change-key", "--renditions", "360p,234p"]);
    let url = format!("{}/live/change-key", server.rtmp);
    assert!(
        publish_source(&url, 5, "640x360", false)
            .wait()
            .unwrap()
            .success()
    );
    // The publisher returns within the grace period with a 4:3 picture.
    assert!(
        publish_source(&url, 5, "640x480", false)
            .wait()
            .unwrap()
            .success()
    );
    let playlist = get_when_ready(
        &server.url("/live/change/360p/index.m3u8"),
        Duration::from_secs(5),
    )
    .await;
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    let media = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
    let last = media.segments.iter().rfind(|s| s.duration > 0.0).unwrap();
    let init = media
        .segments
        .iter()
        .rev()
        .find_map(|s| s.map.as_ref())
        .map(|m| m.uri.clone())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("last.mp4");
    let init = get_bytes(&server.url(&format!("/live/change/360p/{init}"))).await;
    let seg = get_bytes(&server.url(&format!("/live/change/360p/{}", last.uri))).await;
    std::fs::write(&file, [init.as_ref(), seg.as_ref()].concat()).unwrap();
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&file));
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "video,480,360",
        "the 360p rung follows the new 4:3 source, video only"
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mp3_source_gets_aac_in_its_renditions() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = ladder_server("mp3", "source,234p");
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30:duration=5",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=5",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p",
        ])
        .args(["-c:a", "libmp3lame", "-b:a", "128k", "-f", "flv"])
        .arg(format!("{}/live/mp3-key", server.rtmp)));
    assert!(ok, "ffmpeg could not publish MP3: {err}");
    wait_for_endlist(
        &server.url("/live/mp3/234p/index.m3u8"),
        Duration::from_secs(15),
        "mp3",
    )
    .await;
    let rung = count_frames(&server.url("/live/mp3/234p/index.m3u8"));
    assert_eq!(rung.get("video 312x234"), Some(&150), "{rung:?}");
    // 5 s of 44.1 kHz in 1024-sample AAC frames: about 215.
    assert!(
        rung.get("audio").is_some_and(|n| (200..=220).contains(n)),
        "MP3 became AAC: {rung:?}"
    );
    let (_, codecs, _) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(server.url("/live/mp3/234p/index.m3u8")));
    assert!(codecs.contains("aac"), "{codecs}");
    // The passthrough rendition keeps the video and carries the same AAC (CMAF
    // carries no MP3; the transcoder makes the AAC once for every rendition).
    let source = count_frames(&server.url("/live/mp3/source/index.m3u8"));
    assert_eq!(source.get("video 320x240"), Some(&150), "{source:?}");
    // As many AAC frames as the rung (give or take a frame at the start). The AAC
    // comes from the transcoder's thread, after the video it goes with; at the end
    // the last 0.5 s of it came after the last video part was complete, and was
    // lost (194 frames against 216) until the packager wrote it as a last part.
    let (source_audio, rung_audio) = (source["audio"], rung["audio"]);
    assert!(
        source_audio.abs_diff(rung_audio) <= 2,
        "AAC frames: source {source:?}, 234p {rung:?}"
    );
    let (_, codecs, _) = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name"])
        .args(["-of", "csv=p=0"])
        .arg(server.url("/live/mp3/source/index.m3u8")));
    assert!(codecs.contains("aac"), "{codecs}");
    // And the master says so: every variant lists the AAC.
    let (_, master) = get_text(&server.url("/live/mp3/master.m3u8")).await;
    for variant in master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
    {
        assert!(variant.contains("mp4a.40.2"), "{master}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_audio_makes_the_input_unhealthy_and_a_tone_does_not() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[
        "--stream",
        "quiet=quiet-key",
        "--stream",
        "tone=tone-key",
        "--renditions",
        "234p",
        "--input-silent-ms",
        "1000",
    ]);
    // A microphone cut: the AAC keeps coming, every sample zero.
    let mut quiet = KillOnDrop(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30:duration=12",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "anullsrc=channel_layout=stereo:sample_rate=48000:duration=12",
            ])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p",
            ])
            .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv"])
            .arg(format!("{}/live/quiet-key", server.rtmp))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut tone = KillOnDrop(publish_source(
        &format!("{}/live/tone-key", server.rtmp),
        12,
        "320x240",
        true,
    ));
    let input = |name: &'static str| {
        let url = server.url(&format!("/live/{name}/234p/index.m3u8"));
        async move {
            let r = client().get(&url).send().await.ok()?;
            r.headers()
                .get("x-rivulet-input")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if input("quiet").await.as_deref() == Some("silent") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a stream of silence still reports {:?}",
            input("quiet").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, health) = get_text(&server.url("/live/quiet/health")).await;
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("silent"), "{health}");
    // The tone has played as long as the silence has: its input is fine.
    assert_eq!(input("tone").await.as_deref(), Some("ok"));
    let (status, health) = get_text(&server.url("/live/tone/health")).await;
    assert_eq!(status, 200, "{health}");
    let _ = quiet.kill();
    let _ = tone.kill();
}

/// A player that asks for the multivariant playlist while the publisher connects gets
/// the whole ladder in its first answer, with BANDWIDTH from each rung's configured
/// rate (VBV maximum plus audio) and the passthrough's measured: never part of it.
/// Polled from before the publish to 5 s after the first answer, every answer is whole
/// and BANDWIDTH never falls, in order with the picture.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_multivariant_answer_lists_every_rendition() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[
        "--stream",
        "golive=golive-key",
        "--renditions",
        "source,480p,360p,234p",
    ]);
    let master_url = server.url("/live/golive/master.m3u8");
    // Asking from before the publish: the first 200 is what a waiting page gets.
    let answers = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut answers: Vec<String> = Vec::new();
        let mut first_at = None;
        loop {
            let now = std::time::Instant::now();
            assert!(
                now < deadline || first_at.is_some(),
                "no multivariant playlist in 30 s"
            );
            if first_at.is_some_and(|t: std::time::Instant| now > t + Duration::from_secs(5)) {
                return answers;
            }
            if let Ok(r) = client().get(&master_url).send().await {
                let status = r.status();
                let cache = r
                    .headers()
                    .get("cache-control")
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                if status.is_success() {
                    // A shared cache must revalidate it: never keep a master as it was.
                    assert_eq!(cache.as_deref(), Some("no-cache"));
                    answers.push(r.text().await.unwrap());
                    first_at.get_or_insert(now);
                } else {
                    assert_eq!(cache.as_deref(), Some("no-store"), "{status}");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut ffmpeg = publish_source(
        &format!("{}/live/golive-key", server.rtmp),
        12,
        "854x480",
        true,
    );
    let answers = answers.await.unwrap();
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    assert!(answers.len() > 10, "polled often: {}", answers.len());
    let mut source_peak = 0;
    for master in &answers {
        let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes()).unwrap();
        let mut names: Vec<&str> = parsed
            .variants
            .iter()
            .map(|v| v.uri.trim_end_matches("/index.m3u8"))
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["234p", "360p", "480p", "source"],
            "whole:\n{master}"
        );
        let mut rungs: Vec<_> = parsed
            .variants
            .iter()
            .filter(|v| !v.uri.starts_with("source"))
            .map(|v| (v.resolution.map_or(0, |r| r.height), v.bandwidth))
            .collect();
        rungs.sort_unstable();
        assert!(
            rungs.windows(2).all(|w| w[0].1 < w[1].1),
            "BANDWIDTH in order with the picture:\n{master}"
        );
        let source = parsed
            .variants
            .iter()
            .find(|v| v.uri.starts_with("source"))
            .map_or(0, |v| v.bandwidth);
        assert!(
            source >= source_peak,
            "the measured BANDWIDTH only rises:\n{master}"
        );
        source_peak = source;
    }
    let master = &answers[0];
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes()).unwrap();
    let mut by_name: BTreeMap<String, (u64, Option<u64>, u64)> = parsed
        .variants
        .iter()
        .map(|v| {
            (
                v.uri.trim_end_matches("/index.m3u8").to_owned(),
                (
                    v.bandwidth,
                    v.average_bandwidth,
                    v.resolution.map_or(0, |r| r.height),
                ),
            )
        })
        .collect();
    let names: Vec<&String> = by_name.keys().collect();
    assert_eq!(
        names,
        ["234p", "360p", "480p", "source"],
        "every rendition in the first answer:\n{master}"
    );
    // Configured: 1.5 × the rung's bitrate at peak, its bitrate on average, + 128k audio.
    assert_eq!(by_name["480p"].0, 1_800_000 + 128_000, "{master}");
    assert_eq!(by_name["480p"].1, Some(1_200_000 + 128_000), "{master}");
    assert_eq!(by_name["360p"].0, 1_095_000 + 128_000, "{master}");
    assert_eq!(by_name["234p"].0, 217_500 + 128_000, "{master}");
    // Monotonic with resolution among the transcoded rungs.
    by_name.remove("source");
    let mut rungs: Vec<_> = by_name.values().collect();
    rungs.sort_by_key(|r| r.2);
    assert!(
        rungs.windows(2).all(|w| w[0].0 < w[1].0),
        "BANDWIDTH grows with the picture:\n{master}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_60_fps_source_is_halved_in_the_rungs_up_to_720p() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let server = ladder_server("fast", "360p,234p");
    let mut ffmpeg = publish_source_at(
        &format!("{}/live/fast-key", server.rtmp),
        6,
        "640x360",
        false,
        60,
    );
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg failed");
    wait_for_endlist(
        &server.url("/live/fast/234p/index.m3u8"),
        Duration::from_secs(15),
        "fast",
    )
    .await;
    let (_, master) = get_text(&server.url("/live/fast/master.m3u8")).await;
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes()).unwrap();
    for v in &parsed.variants {
        let rate = v.frame_rate.unwrap();
        assert!((rate - 30.0).abs() < 0.5, "FRAME-RATE {rate}: {master}");
    }
    for (name, w, h) in [("360p", 640, 360), ("234p", 416, 234)] {
        let counts = count_frames(&server.url(&format!("/live/fast/{name}/index.m3u8")));
        // 360 source pictures, every other one kept.
        let kept = counts.get(&format!("video {w}x{h}")).copied().unwrap_or(0);
        assert!((175..=181).contains(&kept), "{name}: {counts:?}");
    }
    // Still aligned: every segment of every rung starts with a keyframe.
    for name in ["360p", "234p"] {
        let playlist = get_text(&server.url(&format!("/live/fast/{name}/index.m3u8")))
            .await
            .1;
        let media = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
        for seg in &media.segments {
            let body = get_bytes(&server.url(&format!("/live/fast/{name}/{}", seg.uri))).await;
            assert!(first_video_sample(&body).1, "{name}/{}", seg.uri);
        }
    }
}

/// 4:2:2 and 10-bit H.264 (High 4:2:2, High 10: CODECS `avc1.7A…`, `avc1.6E…`) is not
/// played by browsers: such a source is transcoded into the 8-bit 4:2:0 ladder and
/// left out of the passthrough; every variant the master lists decodes.
#[tokio::test(flavor = "multi_thread")]
async fn a_422_or_10_bit_source_is_transcoded_and_left_out_of_the_passthrough() {
    let _serial = ONE_AT_A_TIME.lock().await;
    for pix_fmt in ["yuv422p", "yuv420p10le"] {
        let server = ladder_server("deep", "source,234p");
        let (ok, _, err) = run(Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=30:duration=4",
            ])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "60"])
            .args(["-pix_fmt", pix_fmt, "-an", "-f", "flv"])
            .arg(format!("{}/live/deep-key", server.rtmp)));
        assert!(ok, "ffmpeg could not publish {pix_fmt}: {err}");
        wait_for_endlist(
            &server.url("/live/deep/234p/index.m3u8"),
            Duration::from_secs(15),
            &format!("{pix_fmt}: deep"),
        )
        .await;
        let (_, master) = get_text(&server.url("/live/deep/master.m3u8")).await;
        let variants: Vec<&str> = master
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(variants, ["234p/index.m3u8"], "{pix_fmt}: {master}");
        for codecs in master.lines().filter_map(|l| attr(l, "CODECS")) {
            let upper = codecs.to_ascii_uppercase();
            assert!(
                !upper.contains("AVC1.7A") && !upper.contains("AVC1.6E"),
                "{pix_fmt}: unplayable CODECS in {master}"
            );
        }
        for variant in variants {
            let frames = count_frames(&server.url(&format!("/live/deep/{variant}")));
            assert!(
                frames.get("video 312x234").is_some_and(|n| *n >= 110),
                "{pix_fmt}: {variant} decodes: {frames:?}"
            );
        }
        assert!(
            server.log().contains("the source rendition is left out"),
            "{pix_fmt}: the log says why"
        );
    }
}

/// A transcoder that cannot keep real time degrades predictably: one rung made too
/// slow on purpose (`RIVULET_TEST_SLOW_RUNG`: its encoder sleeps 200 ms a picture, 5
/// pictures a second of 30) drops frames, and after the lag limit the top rung is
/// withdrawn: the log says why, /metrics counts it, the master stops listing it, and
/// the other renditions keep playing.
#[tokio::test(flavor = "multi_thread")]
async fn a_rung_that_cannot_keep_real_time_is_withdrawn_and_the_others_play_on() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_cmd(
        &["env".into(), "RIVULET_TEST_SLOW_RUNG=360p:200".into()],
        "rivulet",
        data.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        &[
            "--stream",
            "slow=slow-key",
            "--renditions",
            "source,360p,234p",
        ],
    );
    let _publisher = KillOnDrop(publish_source(
        &format!("{}/live/slow-key", server.rtmp),
        40,
        "640x360",
        true,
    ));
    let master_url = server.url("/live/slow/master.m3u8");
    let first = get_when_ready(&master_url, Duration::from_secs(30)).await;
    assert!(first.contains("360p/index.m3u8"), "{first}");
    // The queue (80 pictures) fills in about 3 s at 5 a second of 30, then 3 s of
    // drops: withdrawn well within 30 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let master = loop {
        let (_, master) = get_text(&master_url).await;
        if !master.contains("360p/index.m3u8") {
            break master;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow rung was never withdrawn: {master}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        master.contains("source/index.m3u8") && master.contains("234p/index.m3u8"),
        "the others stay: {master}"
    );
    assert!(
        server
            .log()
            .contains("the top rung is withdrawn from the master"),
        "the log says why"
    );
    let (_, metrics) = get_text(&server.url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("transcode_rungs_withdrawn_total")
                && l.contains("rendition=\"360p\"")
                && l.ends_with(" 1")),
        "counted in /metrics"
    );
    // Its media playlist answers 404 (a player on it fails over), and the others'
    // rendition reports no longer name it.
    let (status, body) = get_text(&server.url("/live/slow/360p/index.m3u8")).await;
    assert_eq!(status, 404, "the withdrawn rung's playlist: {body}");
    // The others keep playing: 234p gains segments after the withdrawal, and decodes.
    let (_, before) = get_text(&server.url("/live/slow/234p/index.m3u8")).await;
    assert!(
        !before.contains("360p"),
        "no report of the withdrawn rung: {before}"
    );
    let (msn, _) = preload_hint(&before);
    get_when_ready(
        &server.url(&format!(
            "/live/slow/234p/index.m3u8?_HLS_msn={}&_HLS_part=0",
            msn + 2
        )),
        Duration::from_secs(15),
    )
    .await;
    let frames = count_frames(&server.url("/live/slow/234p/index.m3u8"));
    assert!(
        frames.get("video 416x234").is_some_and(|n| *n >= 150),
        "234p decodes: {frames:?}"
    );
}
