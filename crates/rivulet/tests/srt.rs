//! SRT ingest end to end: real ffmpeg (libsrt) and srt-live-transmit callers, MPEG-TS
//! inside, LL-HLS out, checked with ffprobe.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../ts/tests/support/mod.rs"]
mod ts_fixture;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    KillOnDrop, Server, attr, first_video_frame, get_text, get_when_ready, playlist_containing,
    run, wait_exit,
};

/// A free loopback UDP port (SRT runs over UDP).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rivulet serve` with an SRT listener on a free loopback port; returns it and the port.
fn start(extra: &[&str]) -> (Server, u16) {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--srt-listen", listen.as_str(), "--grace-period-ms", "1500"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    (server, port)
}

/// ffmpeg publishing `seconds` of a 320x240 30 fps test pattern and a 48 kHz tone (AAC
/// unless `video` says otherwise) as MPEG-TS to `url` (srt:// or udp://), in real time.
fn ffmpeg_ts(url: &str, seconds: u32, video: &[&str]) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "warning", "-re"])
        .args(ts_fixture::test_pattern_inputs(&seconds.to_string()))
        .args(["-c:a", "aac", "-b:a", "64k"])
        .args(video)
        .args(["-f", "mpegts", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg")
}

// 4:2:0 as encoders send it (ffmpeg would make testsrc's RGB into 4:4:4, High 4:4:4,
// which the passthrough rendition leaves out).
const H264: &[&str] = &[
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    "-preset",
    "veryfast",
    "-tune",
    "zerolatency",
    "-g",
    "60",
    "-keyint_min",
    "60",
    "-sc_threshold",
    "0",
];

fn srt_url(port: u16, key: &str, extra: &str) -> String {
    // linger: ffmpeg (libsrt live mode) would otherwise drop what is unsent or
    // unacknowledged when it closes, i.e. the last frame.
    format!("srt://127.0.0.1:{port}?streamid=publish:{key}&latency=120000&linger=2{extra}")
}

/// Waits for the ffmpeg publisher and returns its exit status and stderr.
fn finish(mut child: Child, within: Duration) -> (bool, String) {
    let status = wait_exit(&mut child, within);
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut err);
    }
    if status.is_none() {
        let _ = child.kill();
    }
    (status.is_some_and(|s| s.success()), err)
}

/// The ended media playlist of `rendition` (after the grace period).
async fn ended_playlist(server: &Server, stream: &str, rendition: &str) -> String {
    let url = server.url(&format!("/live/{stream}/{rendition}/index.m3u8"));
    playlist_containing(&url, "#EXT-X-ENDLIST", Duration::from_secs(20), rendition).await
}

/// Checks that every segment of the ended playlist starts with an IDR frame and
/// that segments follow each other without a gap; returns the segment count.
async fn check_segments(server: &Server, stream: &str, rendition: &str, playlist: &str) -> usize {
    let base = server.url(&format!("/live/{stream}/{rendition}/"));
    let media = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).expect("valid playlist");
    assert!(!media.segments.is_empty(), "{playlist}");
    assert!(
        !playlist.contains("#EXT-X-GAP") && !playlist.contains("#EXT-X-DISCONTINUITY"),
        "a gap in the playlist:\n{playlist}"
    );
    let init = init_segment(server, stream, rendition, playlist).await;
    let dir = tempfile::tempdir().unwrap();
    let mut numbers = Vec::new();
    for segment in &media.segments {
        let number: u64 = segment
            .uri
            .trim_start_matches("seg-")
            .trim_end_matches(".m4s")
            .parse()
            .unwrap_or_else(|_| panic!("segment name {}", segment.uri));
        numbers.push(number);
        let bytes = reqwest::get(format!("{base}{}", segment.uri))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let first = first_video_frame(
            &dir.path().join(format!("{}.mp4", segment.uri)),
            &init,
            &bytes,
        );
        assert!(
            first.starts_with("1,I"),
            "{rendition} segment {} does not start with an IDR: {first:?}",
            segment.uri
        );
    }
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "segments missing:\n{playlist}");
    }
    media.segments.len()
}

/// The init segment (`#EXT-X-MAP`) of a rendition's media playlist.
async fn init_segment(
    server: &Server,
    stream: &str,
    rendition: &str,
    playlist: &str,
) -> bytes::Bytes {
    let init_uri = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-MAP"))
        .and_then(|l| attr(l, "URI"))
        .unwrap();
    reqwest::get(server.url(&format!("/live/{stream}/{rendition}/{init_uri}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// Video and audio frames ffprobe decodes from the stream's multivariant playlist.
fn count_frames(server: &Server, stream: &str) -> (u64, u64) {
    count_frames_at(server, &format!("/live/{stream}/master.m3u8"))
}

/// Video and audio frames ffprobe decodes from the playlist at `path`.
fn count_frames_at(server: &Server, path: &str) -> (u64, u64) {
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
        .arg(server.url(path)));
    assert!(ok && err.trim().is_empty(), "ffprobe errors: {err}");
    let count = |kind: &str| {
        out.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    (count("video"), count("audio"))
}

/// The stream's `live.ingest_stats` in the API once it satisfies `ready`.
async fn ingest_stats(
    server: &Server,
    stream: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get_text(&server.url(&format!("/api/streams/{stream}"))).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let stats = &json["live"]["ingest_stats"];
        if ready(stats) {
            return stats.clone();
        }
        assert!(Instant::now() < deadline, "no ingest_stats in time: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits for the stream's multivariant playlist and checks it lists the `source` and
/// `234p` renditions, each H.264 with AAC.
async fn h264_and_aac_in_source_and_234p(server: &Server, stream: &str) {
    let master = get_when_ready(
        &server.url(&format!("/live/{stream}/master.m3u8")),
        Duration::from_secs(20),
    )
    .await;
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes()).expect("multivariant");
    assert_eq!(parsed.variants.len(), 2, "source and 234p:\n{master}");
    for variant in &parsed.variants {
        let codecs = variant.codecs.clone().unwrap_or_default();
        assert!(
            codecs.starts_with("avc1.") && codecs.contains("mp4a.40.2"),
            "H.264 and AAC in every rendition: {codecs}"
        );
    }
}

/// The stream's `live.ingest_stats` once packets arrived, checked to name no
/// unsupported stream (every stream of the program was taken).
async fn every_stream_taken(server: &Server, stream: &str) -> serde_json::Value {
    let stats = ingest_stats(server, stream, |s| s["packets_received"].as_u64() > Some(0)).await;
    assert_eq!(
        stats["unsupported_streams"],
        serde_json::json!([]),
        "{stats}"
    );
    stats
}

/// The multivariant playlist of a stream whose video the ladder decodes: the
/// passthrough rendition's CODECS (read from the in-band configuration) begins with
/// `passthrough`, beside AAC, and the 234p rung is H.264; every stream of the program
/// was taken.
async fn passthrough_and_h264_rung_listed(server: &Server, stream: &str, passthrough: &str) {
    let master = get_when_ready(
        &server.url(&format!("/live/{stream}/master.m3u8")),
        Duration::from_secs(20),
    )
    .await;
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes()).expect("multivariant");
    let codecs: Vec<String> = parsed
        .variants
        .iter()
        .map(|v| v.codecs.clone().unwrap_or_default())
        .collect();
    assert_eq!(codecs.len(), 2, "source and 234p:\n{master}");
    assert!(
        codecs
            .iter()
            .any(|c| c.starts_with(passthrough) && c.contains("mp4a.40.2")),
        "the passthrough rendition's CODECS from the in-band configuration: {codecs:?}"
    );
    assert!(
        codecs.iter().any(|c| c.starts_with("avc1.")),
        "the H.264 rung: {codecs:?}"
    );
    every_stream_taken(server, stream).await;
}

/// Once a 6 s publish of 30 fps ended: the passthrough rendition has a `sample_entry`
/// with its `config` box, every segment from a keyframe and every frame; the H.264 rung
/// decoded from it has every frame too.
async fn passthrough_and_h264_rung_play_back(
    server: &Server,
    stream: &str,
    sample_entry: &[u8; 4],
    config: &[u8; 4],
) {
    let playlist = ended_playlist(server, stream, "source").await;
    let init = init_segment(server, stream, "source", &playlist).await;
    let has = |fourcc: &[u8]| init.windows(4).any(|w| w == fourcc);
    assert!(
        has(sample_entry) && has(config),
        "a {} sample entry",
        String::from_utf8_lossy(sample_entry)
    );
    let segments = check_segments(server, stream, "source", &playlist).await;
    assert!(segments >= 2, "source: {segments} segments");
    let (video, audio) = count_frames_at(server, &format!("/live/{stream}/source/index.m3u8"));
    assert_eq!(video, 6 * 30, "every published frame plays back");
    assert!(audio > 250, "{audio} audio frames");
    let playlist = ended_playlist(server, stream, "234p").await;
    check_segments(server, stream, "234p", &playlist).await;
    let (video, _) = count_frames_at(server, &format!("/live/{stream}/234p/index.m3u8"));
    assert_eq!(video, 6 * 30, "every frame through the ladder");
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_publishes_h264_aac_over_srt_and_it_plays_back() {
    let (server, port) = start(&["--stream", "srt=srt-key", "--renditions", "source,234p"]);
    let publisher = ffmpeg_ts(&srt_url(port, "srt-key", ""), 8, H264);

    h264_and_aac_in_source_and_234p(&server, "srt").await;
    // The connection statistics are in /metrics while it publishes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(
        metrics.contains("srt_latency_ms{stream=\"srt\"} 120"),
        "{metrics}"
    );
    assert!(
        metrics.contains("srt_receive_buffer_ms{stream=\"srt\"}"),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "srt_active_publishers"), 1.0);
    // ... and in the stream's API representation.
    let stats = every_stream_taken(&server, "srt").await;
    assert_eq!(stats["protocol"], "srt", "{stats}");
    assert_eq!(stats["latency_ms"], 120, "{stats}");

    let (ok, err) = finish(publisher, Duration::from_secs(30));
    assert!(ok, "ffmpeg failed: {err}");
    for rendition in ["source", "234p"] {
        let playlist = ended_playlist(&server, "srt", rendition).await;
        let segments = check_segments(&server, "srt", rendition, &playlist).await;
        assert!(segments >= 3, "{rendition}: {segments} segments");
    }
    let (video, audio) = count_frames(&server, "srt");
    assert_eq!(video, 8 * 30, "every published frame plays back");
    // 8 s of 1024-sample AAC frames at 48 kHz: 375 (and ffmpeg's priming frames).
    assert!((355..=380).contains(&audio), "{audio} audio frames");
    assert!(server.log().contains("publishing over SRT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn srt_live_transmit_relays_a_ts_file() {
    let (server, port) = start(&["--stream", "relay=relay-key"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ts");
    std::fs::write(&file, ts_fixture::generate(6, H264, &[])).unwrap();

    // ffmpeg plays the file in real time to UDP; srt-live-transmit carries it from
    // there to Rivulet as an SRT caller with the access-control stream id.
    let udp = free_udp_port();
    let relay = relay_for_12_s(
        udp,
        &format!("srt://127.0.0.1:{port}?streamid=#!::u=studio,r=relay-key,m=publish"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let player = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(&file)
        .args([
            "-c",
            "copy",
            "-f",
            "mpegts",
            &format!("udp://127.0.0.1:{udp}?pkt_size=1316"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    get_when_ready(
        &server.url("/live/relay/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let (ok, err) = finish(player, Duration::from_secs(30));
    assert!(ok, "{err}");
    // srt-live-transmit ends by itself (-t), closing the SRT connection.
    let mut relay = relay;
    wait_exit(&mut relay.0, Duration::from_secs(20));
    let playlist = ended_playlist(&server, "relay", "source").await;
    check_segments(&server, "relay", "source", &playlist).await;
    let (video, _) = count_frames(&server, "relay");
    assert_eq!(video, 6 * 30, "every frame of the file");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_refused_at_handshake_and_other_streams_go_on() {
    let (server, port) = start(&["--stream", "good=good-key"]);
    let publisher = ffmpeg_ts(&srt_url(port, "good-key", ""), 10, H264);
    let playlist_url = server.url("/live/good/source/index.m3u8");
    get_when_ready(&playlist_url, Duration::from_secs(20)).await;

    let refused = ffmpeg_ts(&srt_url(port, "wrong-key", ""), 3, H264);
    let (ok, err) = finish(refused, Duration::from_secs(20));
    assert!(!ok, "a wrong key must not publish: {err}");
    let bad_id = ffmpeg_ts(
        &format!("srt://127.0.0.1:{port}?streamid=live/good-key"),
        3,
        H264,
    );
    let (ok, _) = finish(bad_id, Duration::from_secs(20));
    assert!(!ok, "a stream id without publish: is refused");
    // The same key twice: the second publisher is refused while the first is live.
    let second = ffmpeg_ts(&srt_url(port, "good-key", ""), 3, H264);
    let (ok, _) = finish(second, Duration::from_secs(20));
    assert!(!ok, "a second publisher on a live stream is refused");

    let log = server.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("SRT publish refused at handshake"))
        .collect();
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("code=1403") && l.contains("stream key not recognised")),
        "{log}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("code=1400") && l.contains("publish:STREAM_KEY")),
        "{log}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("code=1409") && l.contains("already has a live publisher")),
        "{log}"
    );
    assert!(!log.contains("wrong-key"), "keys are redacted in the log");

    // The good stream was never disturbed: it keeps producing segments and ends whole.
    let (ok, err) = finish(publisher, Duration::from_secs(30));
    assert!(ok, "{err}");
    let playlist = ended_playlist(&server, "good", "source").await;
    check_segments(&server, "good", "source", &playlist).await;
    assert_eq!(count_frames(&server, "good").0, 10 * 30);
}

/// A UDP relay between an SRT caller and the listener that drops `loss_per_mille` of
/// the datagrams each way, chosen by a seeded generator (the same run every time).
async fn lossy_relay(target: SocketAddr, loss_per_mille: u64, seed: u64) -> (u16, Arc<AtomicU64>) {
    relay(target, loss_per_mille, seed, Duration::ZERO).await
}

/// The lossy relay that also holds each datagram `delay` (each way).
async fn relay(
    target: SocketAddr,
    loss_per_mille: u64,
    seed: u64,
    delay: Duration,
) -> (u16, Arc<AtomicU64>) {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let port = front.local_addr().unwrap().port();
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(target).await.unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        let mut state = seed;
        let mut lose = move || {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 1000 < loss_per_mille
        };
        let mut caller: Option<SocketAddr> = None;
        let (mut up, mut down) = (vec![0u8; 2048], vec![0u8; 2048]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                Ok((n, from)) = front.recv_from(&mut up) => {
                    caller = Some(from);
                    if lose() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    } else if delay.is_zero() {
                        let _ = back.send(&up[..n]).await;
                    } else {
                        let (back, datagram) = (back.clone(), up[..n].to_vec());
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = back.send(&datagram).await;
                        });
                    }
                }
                Ok(n) = back.recv(&mut down) => {
                    if let Some(to) = caller {
                        if lose() {
                            counter.fetch_add(1, Ordering::Relaxed);
                        } else if delay.is_zero() {
                            let _ = front.send_to(&down[..n], to).await;
                        } else {
                            let (front, datagram) = (front.clone(), down[..n].to_vec());
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = front.send_to(&datagram, to).await;
                            });
                        }
                    }
                }
            }
        }
    });
    (port, dropped)
}

/// The round trip is reported, the handshake's and the running estimate: 40 ms each
/// way through a delaying relay reads as 80 ms or a little more, in the API and in
/// /metrics.
#[tokio::test(flavor = "multi_thread")]
async fn the_round_trip_to_the_caller_is_reported() {
    let (server, port) = start(&["--stream", "far=far-key", "--srt-latency", "500"]);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (relay_port, _) = relay(target, 0, 1, Duration::from_millis(40)).await;
    let publisher = ffmpeg_ts(&srt_url(relay_port, "far-key", ""), 6, H264);
    let stats = ingest_stats(&server, "far", |s| s["packets_received"].as_u64() > Some(0)).await;
    let rtt_us = stats["handshake_rtt_us"].as_u64().unwrap_or(0);
    assert!(
        (80_000..1_000_000).contains(&rtt_us),
        "handshake RTT {rtt_us} µs through a 2 x 40 ms relay: {stats}"
    );
    // The running estimate starts at SRT's 10 ms and converges in a few dozen
    // ACK → ACKACK exchanges (one each 10 ms).
    let stats = ingest_stats(&server, "far", |s| s["rtt_us"].as_u64() > Some(79_000)).await;
    let running_us = stats["rtt_us"].as_u64().unwrap_or(0);
    assert!(
        running_us < 200_000,
        "running RTT {running_us} µs through a 2 x 40 ms relay: {stats}"
    );
    assert!(
        stats["receive_buffer_available"].as_u64() > Some(0),
        "{stats}"
    );
    let metrics = get_text(&server.url("/metrics")).await.1;
    let rtt_ms = metric(&metrics, "srt_handshake_rtt_ms{stream=\"far\"}");
    assert!((80.0..1000.0).contains(&rtt_ms), "{metrics}");
    let running_ms = metric(&metrics, "srt_rtt_ms{stream=\"far\"}");
    assert!((79.0..200.0).contains(&running_ms), "{metrics}");
    let (ok, err) = finish(publisher, Duration::from_secs(30));
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_percent_packet_loss_leaves_no_gap() {
    let (server, port) = start(&["--stream", "lossy=lossy-key", "--srt-latency", "500"]);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (relay_port, dropped) = lossy_relay(target, 20, 0x5eed_1234_abcd_0001).await;
    let publisher = ffmpeg_ts(&srt_url(relay_port, "lossy-key", ""), 10, H264);
    get_when_ready(
        &server.url("/live/lossy/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let (ok, err) = finish(publisher, Duration::from_secs(40));
    assert!(ok, "{err}");
    assert!(
        dropped.load(Ordering::Relaxed) > 20,
        "the relay dropped {} datagrams",
        dropped.load(Ordering::Relaxed)
    );
    let playlist = ended_playlist(&server, "lossy", "source").await;
    // Counters outlive the connection (its statistics come once a second).
    let metrics = get_text(&server.url("/metrics")).await.1;
    // SRT saw the losses and recovered them by retransmission.
    assert!(
        metric(&metrics, "srt_loss_reports_total") > 0.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "srt_packets_retransmitted_total") > 0.0,
        "{metrics}"
    );
    check_segments(&server, "lossy", "source", &playlist).await;
    let (video, _) = count_frames(&server, "lossy");
    assert_eq!(video, 10 * 30, "no frame lost at 500 ms latency");
    assert!(
        !server.log().contains("continuity gap"),
        "no TS packet lost after SRT's recovery"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_publishes_hevc_aac_over_srt_and_it_plays_back() {
    let (server, port) = start(&["--stream", "hevc=hevc-key", "--renditions", "source,234p"]);
    let publisher = ffmpeg_ts(
        &srt_url(port, "hevc-key", ""),
        6,
        &[
            "-c:v",
            "libx265",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:keyint=60:min-keyint=60:scenecut=0",
        ],
    );
    passthrough_and_h264_rung_listed(&server, "hevc", "hvc1.1.").await;

    let (ok, err) = finish(publisher, Duration::from_secs(30));
    assert!(ok, "ffmpeg failed: {err}");
    passthrough_and_h264_rung_play_back(&server, "hevc", b"hvc1", b"hvcC").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn av1_in_ts_over_srt_plays_back_and_through_the_ladder() {
    // AOM's AV1 in MPEG-2 TS (stream type 0x06, `AV01`, start codes: what OBS sends
    // with AV1 over SRT), muxed by the fixture around ffmpeg's libsvtav1 and played in
    // real time to srt-live-transmit, which carries it to Rivulet.
    let (server, port) = start(&["--stream", "av1=av1-key", "--renditions", "source,234p"]);
    let units = ts_fixture::av1_transport_stream(6);
    let udp = free_udp_port();
    let relay = relay_for_12_s(
        udp,
        &format!("srt://127.0.0.1:{port}?streamid=publish:av1-key"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let player = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        for (dts, bytes) in units {
            let due = start + Duration::from_micros(dts * 100 / 9);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            for datagram in bytes.chunks(7 * 188) {
                socket.send_to(datagram, ("127.0.0.1", udp)).unwrap();
            }
        }
    });
    passthrough_and_h264_rung_listed(&server, "av1", "av01.0.").await;

    player.join().unwrap();
    // srt-live-transmit ends by itself (-t), closing the SRT connection.
    let mut relay = relay;
    wait_exit(&mut relay.0, Duration::from_secs(20));
    passthrough_and_h264_rung_play_back(&server, "av1", b"av01", b"av1C").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_publishes_h264_opus_over_srt_and_it_plays_back_with_aac() {
    // Opus in TS (stream type 0x06, `Opus` registration): the transcoder makes AAC of
    // it for every rendition, the passthrough included (HLS players expect AAC).
    let (server, port) = start(&["--stream", "opus=opus-key", "--renditions", "source,234p"]);
    let mut options = H264.to_vec();
    options.extend(["-c:a", "libopus", "-b:a", "64k"]);
    let publisher = ffmpeg_ts(&srt_url(port, "opus-key", ""), 6, &options);
    h264_and_aac_in_source_and_234p(&server, "opus").await;
    every_stream_taken(&server, "opus").await;
    let (ok, err) = finish(publisher, Duration::from_secs(30));
    assert!(ok, "ffmpeg failed: {err}");
    for rendition in ["source", "234p"] {
        let playlist = ended_playlist(&server, "opus", rendition).await;
        check_segments(&server, "opus", rendition, &playlist).await;
    }
    let (video, audio) = count_frames(&server, "opus");
    assert_eq!(video, 6 * 30, "every published frame plays back");
    // 6 s of 1024-sample AAC frames at 48 kHz: ~281 (less the Opus decoder's start).
    assert!((250..=300).contains(&audio), "{audio} AAC frames");
    let log = server.log();
    assert!(!log.contains("MPEG-TS stream not supported"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_with_a_live_srt_publisher_logs_a_few_lines_not_one_per_packet() {
    // srt-protocol warned for each datagram after its listener closed: ~35,000 lines
    // in the 0.1 s a shutdown with one SRT publisher took.
    let (mut server, port) = start(&["--stream", "quiet=quiet-key", "--renditions", "source"]);
    let publisher = ffmpeg_ts(&srt_url(port, "quiet-key", ""), 30, H264);
    get_when_ready(
        &server.url("/live/quiet/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while server.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not exit within 15 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = finish(publisher, Duration::from_secs(10));
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    let lines = log.lines().count();
    assert!(
        !log.contains("closed socket") && lines < 500,
        "{lines} lines, {} of them srt-protocol's:\n{}",
        log.lines().filter(|l| l.contains("srt_protocol")).count(),
        log.lines().take(50).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_codec_in_ts_is_named_and_the_rest_plays() {
    // AC-3 audio (stream type 0x81) beside H.264: named, and the video still plays.
    let (server, port) = start(&["--stream", "ac3=ac3-key"]);
    let mut options = H264.to_vec();
    options.extend(["-c:a", "ac3"]);
    let publisher = ffmpeg_ts(&srt_url(port, "ac3-key", ""), 4, &options);
    let stats = ingest_stats(&server, "ac3", |s| {
        s["unsupported_streams"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(
        stats["unsupported_streams"],
        serde_json::json!(["AC-3"]),
        "{stats}"
    );
    let (_, err) = finish(publisher, Duration::from_secs(30));
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("MPEG-TS stream not supported")
                && l.contains("AC-3")
                && l.contains("stream_type=0x81")),
        "{log}\n{err}"
    );
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(
        metric(&metrics, "srt_unsupported_streams_total") >= 1.0,
        "{metrics}"
    );
    let playlist = ended_playlist(&server, "ac3", "source").await;
    check_segments(&server, "ac3", "source", &playlist).await;
    assert_eq!(count_frames(&server, "ac3").0, 4 * 30, "the video plays");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passphrase_encrypts_and_a_wrong_one_is_refused() {
    let (server, port) = start(&[
        "--stream",
        "secret=secret-key",
        "--srt-passphrase",
        "correct-horse-battery",
        "--srt-pbkeylen",
        "32",
    ]);
    let wrong = ffmpeg_ts(
        &srt_url(
            port,
            "secret-key",
            "&passphrase=wrong-horse-battery&pbkeylen=32",
        ),
        3,
        H264,
    );
    let (ok, _) = finish(wrong, Duration::from_secs(20));
    assert!(!ok, "a wrong passphrase must not publish");
    let publisher = ffmpeg_ts(
        &srt_url(
            port,
            "secret-key",
            "&passphrase=correct-horse-battery&pbkeylen=32",
        ),
        4,
        H264,
    );
    let (ok, err) = finish(publisher, Duration::from_secs(30));
    assert!(ok, "{err}");
    let playlist = ended_playlist(&server, "secret", "source").await;
    check_segments(&server, "secret", "source", &playlist).await;
    assert_eq!(count_frames(&server, "secret").0, 4 * 30);
    assert!(
        server.log().contains("passphrase mismatch"),
        "{}",
        server.log()
    );
}

/// srt-live-transmit relaying what arrives on UDP `input` to the listener on `port`:
/// an SRT caller from the local address `from` (127.0.0.X) publishing `key`. It
/// connects at once, before any input arrives, and ends when the connection does.
/// srt-live-transmit carrying what arrives on UDP port `udp` to the SRT caller URL
/// `srt`; it ends by itself after 12 s (`-t`), closing the SRT connection.
fn relay_for_12_s(udp: u16, srt: &str) -> KillOnDrop {
    KillOnDrop(
        Command::new("srt-live-transmit")
            .args(["-a:no", "-t:12", &format!("udp://127.0.0.1:{udp}"), srt])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("srt-live-transmit (Debian srt-tools; scripts/setup.sh installs it)"),
    )
}

fn relay_from(from: &str, input: u16, port: u16, key: &str) -> KillOnDrop {
    let local = std::net::UdpSocket::bind((from, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    KillOnDrop(
        Command::new("srt-live-transmit")
            .args([
                "-a:no",
                "-v",
                &format!("udp://127.0.0.1:{input}"),
                &format!(
                    "srt://127.0.0.1:{port}?streamid=publish:{key}&mode=caller&adapter={from}&port={local}"
                ),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("srt-live-transmit (Debian srt-tools; scripts/setup.sh installs it)"),
    )
}

/// What a finished process printed (stdout and stderr).
fn output_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

/// The server's log once a line satisfies `wanted`, waited for at most `within`.
async fn log_line(server: &Server, within: Duration, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| wanted(l)) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no such line in the log:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The honest publisher of a test: ended whole, every frame played back.
async fn ends_whole(server: &Server, publisher: Child, stream: &str, seconds: u64) {
    let (ok, err) = finish(publisher, Duration::from_secs(60));
    assert!(ok, "the honest publisher failed: {err}");
    let playlist = ended_playlist(server, stream, "source").await;
    check_segments(server, stream, "source", &playlist).await;
    assert_eq!(
        count_frames(server, stream).0,
        seconds * 30,
        "every frame of the honest stream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn srt_callers_beyond_the_per_address_cap_are_refused_with_1402() {
    // The caps are the RTMP listener's flags, counted apart for SRT.
    let (server, port) = start(&[
        "--stream",
        "good=good-key",
        "--stream",
        "h1=h1-key",
        "--stream",
        "h2=h2-key",
        "--stream",
        "h3=h3-key",
        "--rtmp-max-connections-per-ip",
        "2",
    ]);
    let publisher = ffmpeg_ts(&srt_url(port, "good-key", ""), 10, H264);
    get_when_ready(
        &server.url("/live/good/source/index.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    // Two callers from 127.0.0.2 take its two places (and send nothing).
    let mut held = Vec::new();
    for stream in ["h1", "h2"] {
        held.push(relay_from(
            "127.0.0.2",
            free_udp_port(),
            port,
            &format!("{stream}-key"),
        ));
        log_line(&server, Duration::from_secs(20), |l| {
            l.contains("publishing over SRT")
                && l.contains("peer=127.0.0.2")
                && l.contains(&format!("stream={stream}"))
        })
        .await;
    }
    // A third from there is refused at handshake, with a valid key.
    // srt-live-transmit usually exits on the rejection; on a loaded machine it was
    // seen to linger after printing it (CI-like run), so it is stopped after 20 s and
    // judged by what it was told.
    let mut third = relay_from("127.0.0.2", free_udp_port(), port, "h3-key");
    wait_exit(&mut third, Duration::from_secs(20));
    let said = output_of(&mut third);
    assert!(
        said.contains("rejection reason") && !said.contains("SRT target connected"),
        "the caller is told it was rejected: {said}"
    );
    let line = log_line(&server, Duration::from_secs(5), |l| {
        l.contains("refusing an SRT connection")
    })
    .await;
    assert!(
        line.contains("code=1402")
            && line.contains("peer=127.0.0.2")
            && line.contains("--rtmp-max-connections-per-ip"),
        "the log names the code, the peer and the rule: {line}"
    );
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(
        metrics.contains("srt_publish_rejected_total{reason=\"overload\"} 1"),
        "{metrics}"
    );
    assert!(
        !server
            .log()
            .lines()
            .any(|l| l.contains("publishing over SRT") && l.contains("stream=h3")),
        "the refused caller published"
    );
    // The two admitted callers are still connected, and the honest stream from
    // another address plays on whole.
    for caller in &mut held {
        assert!(
            caller.try_wait().unwrap().is_none(),
            "an admitted caller ended"
        );
    }
    ends_whole(&server, publisher, "good", 10).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_srt_caller_sending_data_but_no_frames_is_closed_after_the_idle_timeout() {
    let (server, port) = start(&[
        "--stream",
        "good=good-key",
        "--stream",
        "drip=drip-key",
        "--rtmp-idle-timeout-ms",
        "2000",
    ]);
    let publisher = ffmpeg_ts(&srt_url(port, "good-key", ""), 12, H264);
    get_when_ready(
        &server.url("/live/good/source/index.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    // A caller that keeps sending: 7 TS null packets (stuffing) every 100 ms, data
    // that never makes a frame.
    let input = free_udp_port();
    let mut relay = relay_from("127.0.0.1", input, port, "drip-key");
    let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feeder = {
        let sending = sending.clone();
        tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut null = [0xffu8; 188];
            null[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
            let datagram = null.repeat(7);
            let mut sent = 0u64;
            while sending.load(Ordering::Relaxed) {
                let _ = socket.send_to(&datagram, ("127.0.0.1", input)).await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        })
    };
    log_line(&server, Duration::from_secs(20), |l| {
        l.contains("publishing over SRT") && l.contains("stream=drip")
    })
    .await;
    let closed = log_line(&server, Duration::from_secs(30), |l| {
        l.contains("no media for too long") && l.contains("drip")
    })
    .await;
    assert!(
        closed.contains("--rtmp-idle-timeout-ms"),
        "the log names the rule: {closed}"
    );
    // The caller sees its connection end (srt-live-transmit then exits by itself).
    let exited = wait_exit(&mut relay, Duration::from_secs(20));
    assert!(
        exited.is_some(),
        "the caller's connection stayed open: {}",
        output_of(&mut relay)
    );
    sending.store(false, Ordering::Relaxed);
    let sent = feeder.await.unwrap();
    // The data did arrive until then: the publish's summary counts TS packets.
    let ended = log_line(&server, Duration::from_secs(10), |l| {
        l.contains("SRT publish ended") && l.contains("drip")
    })
    .await;
    let packets: u64 = ended
        .split("ts_packets=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        packets > 0,
        "no TS packet arrived ({sent} datagrams sent): {ended}"
    );
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(
        metric(&metrics, "srt_sessions_timed_out_total") >= 1.0,
        "{metrics}"
    );
    ends_whole(&server, publisher, "good", 12).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_srt_publisher_far_above_the_bitrate_cap_is_disconnected() {
    let (server, port) = start(&[
        "--stream",
        "good=good-key",
        "--stream",
        "flood=flood-key",
        "--rtmp-max-bitrate-kbps",
        "1000",
    ]);
    // The honest stream: about 250 kbit/s.
    let publisher = ffmpeg_ts(&srt_url(port, "good-key", ""), 12, H264);
    get_when_ready(
        &server.url("/live/good/source/index.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    // 8 Mbit/s constant bitrate (x264 pads with filler), eight times the cap, for 60 s.
    let mut flood_video = H264.to_vec();
    flood_video.extend([
        "-b:v",
        "8M",
        "-minrate",
        "8M",
        "-maxrate",
        "8M",
        "-bufsize",
        "1M",
        "-x264-params",
        "nal-hrd=cbr",
    ]);
    let mut flood = KillOnDrop(ffmpeg_ts(&srt_url(port, "flood-key", ""), 60, &flood_video));
    log_line(&server, Duration::from_secs(20), |l| {
        l.contains("publishing over SRT") && l.contains("stream=flood")
    })
    .await;
    let stopped = log_line(&server, Duration::from_secs(30), |l| {
        l.contains("stopping the SRT publisher") && l.contains("flood")
    })
    .await;
    assert!(
        stopped.contains("--rtmp-max-bitrate-kbps"),
        "the log names the rule: {stopped}"
    );
    // The encoder loses its connection long before its 60 s are sent.
    let status = wait_exit(&mut flood, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the flooding encoder was not disconnected: {status:?}"
    );
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(
        metrics.contains("srt_publish_rejected_total{reason=\"bitrate\"} 1"),
        "{metrics}"
    );
    ends_whole(&server, publisher, "good", 12).await;
}

/// An SRT induction handshake (HSv4, as libsrt callers open with) from socket id `id`.
fn induction(id: u32) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&0x8000_0000_u32.to_be_bytes()); // control, handshake
    packet.extend_from_slice(&0u32.to_be_bytes()); // type-specific
    packet.extend_from_slice(&0u32.to_be_bytes()); // timestamp
    packet.extend_from_slice(&0u32.to_be_bytes()); // destination socket id
    packet.extend_from_slice(&4u32.to_be_bytes()); // version
    packet.extend_from_slice(&[0, 0, 0, 2]); // encryption, extension (UDT_DGRAM)
    packet.extend_from_slice(&0x1234u32.to_be_bytes()); // initial sequence number
    packet.extend_from_slice(&1500u32.to_be_bytes()); // MTU
    packet.extend_from_slice(&8192u32.to_be_bytes()); // flow window
    packet.extend_from_slice(&1u32.to_be_bytes()); // induction
    packet.extend_from_slice(&id.to_be_bytes()); // socket id
    packet.extend_from_slice(&0u32.to_be_bytes()); // SYN cookie
    packet.extend_from_slice(&[127, 0, 0, 1]); // peer address
    packet.extend_from_slice(&[0; 12]);
    packet
}

/// Beside an honest SRT publisher, datagrams that are not SRT and 300 handshakes that
/// stop after the induction (each from its own port): the publisher loses no frame,
/// the junk is counted, and the abandoned handshakes are answered, then forgotten
/// within the handshake timeout (10 s), not kept for the life of the process.
#[tokio::test(flavor = "multi_thread")]
async fn junk_and_abandoned_handshakes_are_forgotten_and_the_publisher_plays() {
    let (server, port) = start(&["--stream", "calm=calm-key"]);
    let publisher = ffmpeg_ts(&srt_url(port, "calm-key", "&linger=2"), 8, H264);
    ingest_stats(&server, "calm", |s| {
        s["packets_received"].as_u64() > Some(0)
    })
    .await;
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut state = 0x9e37_79b9_u32;
    for i in 0..2000usize {
        let datagram: Vec<u8> = (0..(i % 1400) + 1)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        junk.send_to(&datagram, target).await.unwrap();
    }
    let mut answered = 0;
    let mut callers = Vec::new();
    for id in 0..300u32 {
        let caller = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        caller.send_to(&induction(id + 1), target).await.unwrap();
        callers.push(caller);
    }
    for caller in &callers {
        let mut answer = [0u8; 1500];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(2), caller.recv(&mut answer)).await
        {
            // The induction answer: a control packet, handshake, of the same size.
            answered += usize::from(n >= 64 && answer[0] == 0x80 && answer[1] == 0);
        }
    }
    assert_eq!(answered, 300, "every induction is answered");
    let metrics = get_text(&server.url("/metrics")).await.1;
    assert!(
        metric(&metrics, "srt_malformed_packets_total") >= 1.0,
        "{metrics}"
    );
    // Within a tick the 300 are counted; within the timeout (and a tick) they are gone.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let metrics = get_text(&server.url("/metrics")).await.1;
        if metric(&metrics, "srt_handshakes_in_progress") >= 300.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the handshakes in progress are not counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = get_text(&server.url("/metrics")).await.1;
        if metric(&metrics, "srt_handshakes_in_progress") == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "abandoned handshakes are kept: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ok, err) = finish(publisher, Duration::from_secs(30));
    assert!(ok, "{err}");
    let playlist = ended_playlist(&server, "calm", "source").await;
    check_segments(&server, "calm", "source", &playlist).await;
    assert_eq!(
        count_frames(&server, "calm").0,
        8 * 30,
        "every frame plays back"
    );
}
