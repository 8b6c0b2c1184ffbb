//! An LL-HLS conformance checker (RFC 8216bis) run against live streams from real
//! ffmpeg publishers: it reads every rendition the way a low-latency player does
//! (blocking reloads for the hinted part, the hinted part itself, delta updates) for a
//! bounded time and asserts the server's MUSTs on everything it sees.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::task::JoinSet;

/// How long each rendition is watched, from its first playlist: long enough for a
/// segment to leave the 3-segment window and reach the end of its availability.
const WATCH: Duration = Duration::from_secs(17);

/// An ffmpeg publisher: a test pattern at `fps` with a keyframe every `gop` frames
/// (`-g`, scene cuts off), `bframes` B-frames, and AAC, in real time for `seconds`.
fn ffmpeg(url: &str, seconds: u32, fps: u32, gop: u32, bframes: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size=320x240:rate={fps}:duration={seconds}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-g", &gop.to_string(), "-sc_threshold", "0"])
        .args(["-bf", &bframes.to_string()])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg must be installed (see the README's set-up command)")
}

/// An ffmpeg publisher of AAC alone (no video), in real time for `seconds`.
fn ffmpeg_audio_only(url: &str, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg must be installed (see the README's set-up command)")
}

/// What one playlist says, as far as the checks need.
#[derive(Debug, Default)]
struct Playlist {
    target_duration: u64,
    part_target: f64,
    media_sequence: u64,
    /// Complete segments: (msn, EXTINF).
    segments: Vec<(u64, f64)>,
    hint: Option<(u64, u32)>,
    reports: Vec<String>,
}

/// Parses `text` and asserts the rules one playlist must follow on its own.
fn check_playlist(text: &str, siblings: &[String], what: &str) -> Playlist {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: unparsable playlist ({e:?})\n{text}"));
    let mut p = Playlist::default();
    let value = |line: &str, tag: &str| line.strip_prefix(tag).map(str::to_owned);
    for line in text.lines() {
        if let Some(v) = value(line, "#EXT-X-TARGETDURATION:") {
            p.target_duration = v.parse().unwrap();
        } else if let Some(v) = value(line, "#EXT-X-PART-INF:PART-TARGET=") {
            p.part_target = v.parse().unwrap();
        } else if let Some(v) = value(line, "#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().unwrap();
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            p.hint = Some(parse_part_uri(attr(line, "URI").unwrap()));
        } else if line.starts_with("#EXT-X-RENDITION-REPORT:") {
            p.reports.push(attr(line, "URI").unwrap().to_owned());
        }
    }
    assert!(
        p.target_duration > 0 && p.part_target > 0.0,
        "{what}\n{text}"
    );

    // Walk the segments: PDT on each, parts within bounds, EXTINF within the target.
    let mut msn = p.media_sequence;
    let mut pdt = false;
    let mut parts: Vec<(f64, bool)> = Vec::new();
    let check_parts = |parts: &[(f64, bool)], complete: bool| {
        for (i, &(duration, independent)) in parts.iter().enumerate() {
            assert!(
                duration <= p.part_target + 1e-6,
                "{what}: part of {duration} s > PART-TARGET\n{text}"
            );
            let last = i + 1 == parts.len();
            // The open segment's last listed part may turn out to be its last.
            if !independent && !last {
                assert!(
                    duration >= 0.85 * p.part_target - 1e-6,
                    "{what}: part {i} of {duration} s < 85 % of PART-TARGET {}\n{text}",
                    p.part_target
                );
            }
            let _ = complete;
        }
    };
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = true;
        } else if let Some(a) = line.strip_prefix("#EXT-X-PART:") {
            let duration: f64 = attr(a, "DURATION").unwrap().parse().unwrap();
            parts.push((duration, a.contains("INDEPENDENT=YES")));
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d: f64 = d
                .trim_end_matches(',')
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                pdt,
                "{what}: segment {msn} has no EXT-X-PROGRAM-DATE-TIME\n{text}"
            );
            assert!(
                d.round() as u64 <= p.target_duration,
                "{what}: EXTINF {d} rounds above TARGETDURATION {}\n{text}",
                p.target_duration
            );
            check_parts(&parts, true);
            let uri = lines.next().unwrap();
            assert_eq!(uri, format!("seg-{msn}.m4s"), "{what}\n{text}");
            p.segments.push((msn, d));
            msn += 1;
            pdt = false;
            parts.clear();
        } else if line.starts_with("#EXT-X-SKIP:") {
            msn += attr(line, "SKIPPED-SEGMENTS")
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    if !parts.is_empty() {
        assert!(
            pdt,
            "{what}: the open segment has no EXT-X-PROGRAM-DATE-TIME\n{text}"
        );
        check_parts(&parts, false);
    }
    for sibling in siblings {
        let uri = format!("../{sibling}/index.m3u8");
        assert!(
            p.reports.contains(&uri),
            "{what}: no EXT-X-RENDITION-REPORT for {sibling}\n{text}"
        );
    }
    p
}

/// What the checker saw of one rendition.
#[derive(Debug, Default)]
struct Seen {
    playlists: usize,
    hints: usize,
    removed_checked: usize,
    blocking_max: Duration,
}

/// Reads rendition `name` of `base` (`http://…/live/STREAM/`) like an LL-HLS player
/// for `watch` from its first playlist, asserting RFC 8216bis on everything. `siblings` are the other
/// renditions, each of which needs an `EXT-X-RENDITION-REPORT`.
async fn check_rendition(
    base: String,
    name: String,
    siblings: Vec<String>,
    watch: Duration,
) -> Seen {
    let client = client();
    let dir = format!("{base}{name}/");
    let what = name.clone();
    let first = get_when_ready(&format!("{dir}index.m3u8"), Duration::from_secs(20)).await;
    let until = Instant::now() + watch;
    let mut playlist = check_playlist(&first, &siblings, &what);
    let mut seen = Seen::default();
    let mut fetches: JoinSet<()> = JoinSet::new();
    let mut hinted: Vec<(u64, u32)> = Vec::new();
    // Segments listed so far: msn -> EXTINF.
    let mut listed: BTreeMap<u64, f64> = BTreeMap::new();
    let mut last_delta = Instant::now();
    while Instant::now() < until {
        seen.playlists += 1;
        let duration: f64 = playlist.segments.iter().map(|s| s.1).sum();
        // Removed segments stay available for the playlist's duration plus their own:
        // fetch each near the end of that period (if it ends while we watch).
        for (&msn, &extinf) in listed.range(..playlist.media_sequence) {
            let due = Instant::now() + Duration::from_secs_f64(duration + extinf - 1.0);
            if due < until {
                let (client, url, what) =
                    (client.clone(), format!("{dir}seg-{msn}.m4s"), what.clone());
                seen.removed_checked += 1;
                fetches.spawn(async move {
                    tokio::time::sleep_until(due.into()).await;
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(
                        r.status().as_u16(),
                        200,
                        "{what}: removed segment {url} gone before the playlist's duration plus its own"
                    );
                });
            }
        }
        listed.retain(|&msn, _| msn >= playlist.media_sequence);
        // A published segment is never rewritten: its EXTINF stays what it was.
        for &(msn, extinf) in &playlist.segments {
            if let Some(&before) = listed.get(&msn) {
                assert!(
                    (before - extinf).abs() < 0.001,
                    "{what}: seg-{msn} was listed with EXTINF {before} and now {extinf}"
                );
            }
        }
        listed.extend(playlist.segments.iter().copied());

        // Every hint names a part that is produced: fetch it as a player would.
        let hint = playlist.hint.expect("a live playlist has a preload hint");
        if !hinted.contains(&hint) {
            hinted.push(hint);
            seen.hints += 1;
            let url = format!("{dir}part-{}-{}.m4s", hint.0, hint.1);
            let (client, what) = (client.clone(), what.clone());
            fetches.spawn(async move {
                let r = client.get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                let body = r
                    .bytes()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: hinted {url}: the body broke off: {e:?}"));
                assert_eq!(
                    status,
                    200,
                    "{what}: hinted {url}: {}",
                    String::from_utf8_lossy(&body)
                );
                assert!(
                    body.len() > 8 && &body[4..8] == b"moof",
                    "{what}: hinted {url}: {} bytes, starting {:?}",
                    body.len(),
                    &body[..body.len().min(16)]
                );
            });
        }

        // The blocking reload for the hinted part: answered within three target
        // durations (generously: plus two seconds for a loaded machine).
        let started = Instant::now();
        let url = format!("{dir}index.m3u8?_HLS_msn={}&_HLS_part={}", hint.0, hint.1);
        let r = client.get(&url).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let took = started.elapsed();
        assert_eq!(status, 200, "{what}: {url}: {text}");
        assert!(
            took <= Duration::from_secs(3 * playlist.target_duration + 2),
            "{what}: blocking reload took {took:?}"
        );
        seen.blocking_max = seen.blocking_max.max(took);
        let next = check_playlist(&text, &siblings, &what);
        let reached = next.segments.iter().any(|s| s.0 >= hint.0)
            || text.contains(&format!("part-{}-{}.m4s\"", hint.0, hint.1))
            || next.hint.is_some_and(|h| h > hint);
        assert!(
            reached,
            "{what}: {url} answered before the part existed\n{text}"
        );
        playlist = next;

        // Now and then a delta update: it must parse and skip only old segments.
        if last_delta.elapsed() > Duration::from_secs(3) {
            last_delta = Instant::now();
            let (status, delta) = get_text(&format!("{dir}index.m3u8?_HLS_skip=YES")).await;
            assert_eq!(status, 200);
            check_playlist(&delta, &siblings, &format!("{what} (delta)"));
        }
    }
    while let Some(r) = fetches.join_next().await {
        if let Err(e) = r {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    seen
}

/// Checks every rendition of stream `name` for [`WATCH`].
async fn check_stream(server: &Server, name: &str, renditions: &[&str]) -> Vec<Seen> {
    let base = server.url(&format!("/live/{name}/"));
    // As a player: the multivariant playlist first (served once every rendition has
    // media), then the media playlists it lists.
    get_when_ready(&format!("{base}master.m3u8"), Duration::from_secs(20)).await;
    let mut tasks = Vec::new();
    for r in renditions {
        let siblings = renditions
            .iter()
            .filter(|s| *s != r)
            .map(|s| s.to_string())
            .collect();
        tasks.push(tokio::spawn(check_rendition(
            base.clone(),
            r.to_string(),
            siblings,
            WATCH,
        )));
    }
    let mut seen = Vec::new();
    for (task, r) in tasks.into_iter().zip(renditions) {
        let s = task
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        eprintln!("{name}/{r}: {s:?}");
        assert!(
            s.playlists >= 20 && s.hints >= 20,
            "{name}/{r}: too little seen: {s:?}"
        );
        seen.push(s);
    }
    seen
}

fn server(name: &str, key: &str, extra: &[&str]) -> Server {
    let stream = format!("{name}={key}");
    let mut args = vec!["--stream", &stream, "--window-segments", "3"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_second_gop_at_30_fps_with_b_frames() {
    let server = server("gop2", "gop2-key", &[]);
    let _ffmpeg = KillOnDrop(ffmpeg(
        &format!("{}/live/gop2-key", server.rtmp),
        24,
        30,
        60,
        2,
    ));
    let seen = check_stream(&server, "gop2", &["source"]).await;
    assert!(seen[0].removed_checked > 0, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframes_every_60_frames_at_25_fps() {
    // 2.4 s GOPs against 2 s segment targets: every keyframe is late.
    let server = server("g60", "g60-key", &[]);
    let _ffmpeg = KillOnDrop(ffmpeg(
        &format!("{}/live/g60-key", server.rtmp),
        24,
        25,
        60,
        0,
    ));
    check_stream(&server, "g60", &["source"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn film_at_24_fps_with_a_ladder() {
    // Four 24 fps frames fill only 83 % of the default 201 ms part target: PART-TARGET
    // follows the frame rate so that parts inside a segment are at least 85 % of it,
    // on the source and on the transcoded rung alike.
    let server = server("film", "film-key", &["--renditions", "source,234p"]);
    let _ffmpeg = KillOnDrop(ffmpeg(
        &format!("{}/live/film-key", server.rtmp),
        24,
        24,
        48,
        2,
    ));
    check_stream(&server, "film", &["source", "234p"]).await;
    let (_, media) = get_text(&server.url("/live/film/source/index.m3u8")).await;
    assert!(
        media.contains("#EXT-X-PART-INF:PART-TARGET=0.211"),
        "{media}"
    );
}

/// Checks stream `name`'s source rendition while a 7 s ffmpeg session ends and
/// `second` (given the publish URL) continues the stream with the same key.
async fn two_sessions(server: &Server, name: &str, second: impl FnOnce(&str) -> KillOnDrop) {
    let url = format!("{}/live/{name}-key", server.rtmp);
    let mut first = KillOnDrop(ffmpeg(&url, 7, 30, 60, 0));
    let checker = tokio::spawn({
        let base = server.url(&format!("/live/{name}/"));
        async move { check_rendition(base, "source".into(), Vec::new(), WATCH).await }
    });
    tokio::task::spawn_blocking(move || {
        assert!(wait_exit(&mut first, Duration::from_secs(20)).is_some());
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _second = second(&url);
    let seen = checker
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    eprintln!("{name}/source: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_reconnects() {
    let server = server("again", "again-key", &[]);
    // A new session continues the stream (a discontinuity, with keyframes off the old
    // 2 s grid).
    two_sessions(&server, "again", |url| {
        KillOnDrop(ffmpeg(url, 16, 30, 60, 0))
    })
    .await;
    let text = get_text(&server.url("/live/again/source/index.m3u8"))
        .await
        .1;
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoded_rung_beside_the_source() {
    let server = server("ladder", "ladder-key", &["--renditions", "source,234p"]);
    let _ffmpeg = KillOnDrop(ffmpeg(
        &format!("{}/live/ladder-key", server.rtmp),
        24,
        30,
        60,
        2,
    ));
    check_stream(&server, "ladder", &["source", "234p"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpegs_default_keyframe_interval_of_250_frames() {
    // 8.3 s segments against a 2 s target: TARGETDURATION follows, blocking reloads
    // are held for three of them.
    let server = server("g250", "g250-key", &[]);
    let _ffmpeg = KillOnDrop(ffmpeg(
        &format!("{}/live/g250-key", server.rtmp),
        24,
        30,
        250,
        2,
    ));
    check_stream(&server, "g250", &["source"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_switches_to_audio_only() {
    // Video and audio, then the same key publishes audio alone within the grace
    // period: the segments already published keep their durations (the timeline
    // continues in the audio timescale), and the new parts conform.
    let server = server("switch", "switch-key", &[]);
    two_sessions(&server, "switch", |url| {
        KillOnDrop(ffmpeg_audio_only(url, 16))
    })
    .await;
    let (_, master) = get_text(&server.url("/live/switch/master.m3u8")).await;
    assert!(
        master.contains("CODECS=\"mp4a.40.2\"") && !master.contains("avc1"),
        "the master lists the audio-only stream as it is now:\n{master}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_fps_with_b_frames() {
    let server = server("fps60", "fps60-key", &[]);
    let _ffmpeg = KillOnDrop(ffmpeg(
        &format!("{}/live/fps60-key", server.rtmp),
        24,
        60,
        120,
        2,
    ));
    check_stream(&server, "fps60", &["source"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_change_from_h264_to_hevc() {
    // H.264 from ffmpeg, then the same key publishes HEVC (our client, Enhanced RTMP)
    // within the grace period: a new init segment after a discontinuity, and the parts
    // on both sides of it conform.
    let server = server("codec", "codec-key", &[]);
    two_sessions(&server, "codec", |url| {
        rivulet_publish(&[
            "--test-pattern",
            "--size",
            "320x240",
            "--fps",
            "30",
            "--bitrate",
            "300k",
            "--preset",
            "ultrafast",
            "--video-codec",
            "hevc",
            "--duration",
            "16",
            url,
        ])
        .0
    })
    .await;
    let (_, master) = get_text(&server.url("/live/codec/master.m3u8")).await;
    assert!(
        master.contains("CODECS=\"hvc1."),
        "the master lists the stream as it is now, HEVC:\n{master}"
    );
    let (_, media) = get_text(&server.url("/live/codec/source/index.m3u8")).await;
    assert!(media.contains("#EXT-X-DISCONTINUITY"), "{media}");
}
