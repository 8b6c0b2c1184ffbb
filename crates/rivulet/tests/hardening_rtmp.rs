//! Hostile and broken RTMP publishers (issue 21): each crosses one limit and gets a
//! clear outcome, while an honest ffmpeg publish and its LL-HLS playlist keep going.
//! Run with `cargo test -p rivulet --test hardening_rtmp`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use media::amf0::Amf0Value;
use rtmp::{ClientConfig, ClientEvent, ClientSession, HANDSHAKE_PACKET_LEN, PublishUrl};

/// An honest ffmpeg publish of stream `good` and the URL of its media playlist,
/// once the playlist exists.
async fn honest_stream(server: &Server, seconds: u32) -> (KillOnDrop, String, (u64, u32)) {
    let ffmpeg = KillOnDrop(publish(
        &format!("{}/live/good-key-123", server.rtmp),
        seconds,
    ));
    let url = server.url("/live/good/source/index.m3u8");
    let playlist = get_when_ready(&url, Duration::from_secs(20)).await;
    (ffmpeg, url, preload_hint(&playlist))
}

/// The honest playlist must still advance past `before`.
async fn assert_still_advancing(server: &mut Server, url: &str, before: (u64, u32)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, playlist) = get_text(url).await;
        if status == 200 && preload_hint(&playlist) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the honest stream stopped advancing:\n{playlist}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(server.is_running(), "the server died");
}

/// The server's log once it holds `needle` (log lines arrive through a pipe).
async fn log_with(server: &Server, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn host_port(server: &Server) -> String {
    server.rtmp.trim_start_matches("rtmp://").to_owned()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether the server closes `socket` within `within` (reads until EOF or an error).
fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The simple RTMP handshake by hand (C0+C1, S0+S1+S2, C2).
fn handshake(socket: &mut TcpStream) {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.write_all(&[0x03]).unwrap();
    socket.write_all(&[0x5a; 1536]).unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    socket.read_exact(&mut s0s1s2).unwrap();
    socket.write_all(&s0s1s2[1..1537]).unwrap();
}

/// A Set Chunk Size message on the control chunk stream.
fn set_chunk_size(size: u32) -> Vec<u8> {
    let mut msg = vec![0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0];
    msg.extend_from_slice(&size.to_be_bytes());
    msg
}

/// The first chunk (`chunk` bytes) of an 8 MiB video message on chunk stream `csid`.
fn open_message(csid: u8, chunk: usize) -> Vec<u8> {
    let mut msg = vec![csid, 0, 0, 0, 0x80, 0, 0, 0x09, 1, 0, 0, 0];
    msg.resize(12 + chunk, 0x17);
    msg
}

/// A publisher driven by hand: our own sans-IO client session over a blocking socket,
/// so a test can send what no honest encoder would.
struct RawPublisher {
    socket: TcpStream,
    session: ClientSession,
}

impl RawPublisher {
    /// Connects and publishes; `Err` carries the server's refusal.
    fn publish(addr: &str, app: &str, key: &str) -> Result<RawPublisher, String> {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let url = PublishUrl {
            tls: false,
            host: host.to_owned(),
            port: port.parse().unwrap(),
            app: app.to_owned(),
            stream_key: key.to_owned(),
        };
        let socket = TcpStream::connect(addr).unwrap();
        let session = ClientSession::new(
            ClientConfig::default(),
            url,
            Instant::now(),
            [7; HANDSHAKE_PACKET_LEN],
        );
        let mut publisher = RawPublisher { socket, session };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            publisher.pump()?;
            while let Some(event) = publisher.session.poll_event() {
                if event == ClientEvent::Publishing {
                    return Ok(publisher);
                }
            }
        }
        Err("no answer to publish".into())
    }

    /// Writes what the session has to send and feeds it what arrived (waiting at most a
    /// few milliseconds); `Err` once the server stopped the session or closed.
    fn pump(&mut self) -> Result<(), String> {
        let mut out = Vec::new();
        if self.session.poll_transmit(&mut out) {
            self.socket.write_all(&out).map_err(|e| e.to_string())?;
        }
        self.socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut buf = [0u8; 16 * 1024];
        match self.socket.read(&mut buf) {
            Ok(0) => Err(self.ended("the server closed the connection")),
            Ok(n) => self
                .session
                .handle_input(&buf[..n])
                .map_err(|e| e.to_string()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
            Err(e) => Err(self.ended(&e.to_string())),
        }
    }

    /// The session's error if it has one (the server's status), else `fallback`.
    fn ended(&self, fallback: &str) -> String {
        self.session
            .error()
            .map_or_else(|| fallback.to_owned(), |e| e.to_string())
    }

    /// Reads until the server closes, returning the session's error (the status the
    /// server sent before closing).
    fn drain_until_closed(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Err(e) = self.pump() {
                return e;
            }
        }
        panic!("the server did not close the publisher within {within:?}");
    }
}

/// Tags of an FLV file made by ffmpeg now: a `size` test pattern with a tone, 1 s GOPs.
fn fixture(dir: &Path, name: &str, size: &str, seconds: u32) -> Vec<(u8, u32, Bytes)> {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30:duration={seconds}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:sample_rate=48000:duration={seconds}"),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        ])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success(), "ffmpeg made no fixture");
    let data = Bytes::from(std::fs::read(&path).unwrap());
    media::flv::file_tags(&data)
        .unwrap()
        .into_iter()
        .filter(|(h, _)| h.tag_type == 8 || h.tag_type == 9)
        .map(|(h, body)| (h.tag_type, h.timestamp_ms, body))
        .collect()
}

/// Sends `tags` in real time (paced by their own timestamps, offset by `offset_ms`),
/// with the timestamp each carries on the wire given by `wire`.
fn replay(
    publisher: &mut RawPublisher,
    tags: &[(u8, u32, Bytes)],
    offset_ms: u32,
    wire: impl Fn(u32) -> u32,
) {
    let start = Instant::now();
    for (kind, ms, body) in tags {
        let due = start + Duration::from_millis(u64::from(*ms));
        while Instant::now() < due {
            publisher.pump().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        let ts = wire(ms + offset_ms);
        if *kind == 9 {
            publisher.session.send_video(ts, body.clone());
        } else {
            publisher.session.send_audio(ts, body.clone());
        }
        publisher.pump().unwrap();
    }
}

/// Parses `2026-12-03T06:14:14.123Z` (what the packager writes) to Unix milliseconds.
fn parse_pdt(text: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1000 + n(20..23)
}

/// A playlist a publisher's abused timestamps must not bend: no segment or target over
/// 4 s (2 s GOPs), every PROGRAM-DATE-TIME within a minute of now.
fn assert_sane_playlist(playlist: &str) {
    for line in playlist.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            assert!(v.parse::<u32>().unwrap() <= 4, "{playlist}");
        }
        if let Some(v) = line.strip_prefix("#EXTINF:") {
            let secs: f64 = v.trim_end_matches(',').parse().unwrap();
            assert!(secs <= 4.0, "EXTINF {secs}:\n{playlist}");
        }
        if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            let skew = (parse_pdt(v) - now_ms()).abs();
            assert!(skew < 60_000, "PDT {v} is {skew} ms off:\n{playlist}");
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_flood_is_stopped_by_the_session_budget_and_memory_stays_bounded() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "attack=attack-key-456",
    ]);
    let (_ffmpeg, url, before) = honest_stream(&server, 40).await;
    let addr = host_port(&server);
    let rss_before = rss_kib(server.pid());

    // Four unauthenticated peers, each opening 60 chunk streams of 8 MiB messages (the
    // attack of issue 21 took 510 MiB per connection).
    let flood_addr = addr.clone();
    let closed = tokio::task::spawn_blocking(move || {
        let mut sockets: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut s = TcpStream::connect(&flood_addr).unwrap();
                handshake(&mut s);
                let _ = s.write_all(&set_chunk_size(4096));
                s
            })
            .collect();
        for csid in 3..63u8 {
            for s in &mut sockets {
                let _ = s.write_all(&open_message(csid, 4096));
            }
        }
        sockets
            .iter_mut()
            .all(|s| closed_within(s, Duration::from_secs(5)))
    })
    .await
    .unwrap();
    assert!(closed, "every flooding peer is disconnected");

    // An accepted publisher gets more room, but not 60 × 8 MiB either.
    let publisher_addr = addr.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut p = RawPublisher::publish(&publisher_addr, "live", "attack-key-456").unwrap();
        let _ = p.socket.write_all(&set_chunk_size(1 << 20));
        for csid in 3..63u8 {
            if p.socket.write_all(&open_message(csid, 1 << 20)).is_err() {
                break;
            }
        }
        p.drain_until_closed(Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(
        status.contains("NetStream.Publish.Rejected")
            && status.contains("--rtmp-max-buffered-bytes"),
        "the publisher is told which rule it broke: {status}"
    );

    let rss_after = rss_kib(server.pid());
    eprintln!(
        "RSS before the flood {rss_before} KiB, after {rss_after} KiB (+{} KiB for 4 flooding peers and one flooding publisher)",
        rss_after.saturating_sub(rss_before)
    );
    assert!(
        rss_after < rss_before + 100 * 1024,
        "the flood cost {} KiB",
        rss_after - rss_before
    );
    let log = log_with(&server, "--rtmp-max-buffered-bytes").await;
    assert!(
        log.contains("--rtmp-max-setup-buffered-bytes") && log.contains("127.0.0.1"),
        "the log names the rule and the peer:\n{log}"
    );
    assert!(log.contains("--rtmp-max-buffered-bytes"));
    assert_still_advancing(&mut server, &url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_little_memory() {
    let server = Server::start(&["--rtmp-max-connections-per-ip", "1000"]);
    let addr = host_port(&server);
    let pid = server.pid();
    let count = 200;
    let (rss_before, rss_after, sockets) = tokio::task::spawn_blocking(move || {
        // Warm up the runtime's threads and allocator with a few connections first.
        let warm: Vec<TcpStream> = (0..5)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                handshake(&mut s);
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let before = rss_kib(pid);
        let sockets: Vec<TcpStream> = (0..count)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                handshake(&mut s);
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        (before, rss_kib(pid), (warm, sockets))
    })
    .await
    .unwrap();
    let per_connection = (rss_after.saturating_sub(rss_before)) as f64 / f64::from(count);
    eprintln!(
        "{count} idle RTMP connections (after the handshake): RSS {rss_before} -> {rss_after} KiB, {per_connection:.1} KiB each"
    );
    assert!(
        per_connection < 256.0,
        "{per_connection} KiB per idle connection"
    );
    drop(sockets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_that_stops_reading_is_closed_and_its_stream_freed() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "victim=victim-key-789",
        "--rtmp-write-timeout-ms",
        "2000",
        // So that only the write timeout can be what closes it.
        "--rtmp-idle-timeout-ms",
        "120000",
    ]);
    let (_ffmpeg, url, before) = honest_stream(&server, 60).await;
    let addr = host_port(&server);

    // A publisher takes the key, then floods ping requests (each answered by the
    // server) and never reads an answer.
    let stalled = tokio::task::spawn_blocking(move || {
        let p = RawPublisher::publish(&addr, "live", "victim-key-789").unwrap();
        let mut socket = p.socket;
        let mut ping = vec![0x02, 0, 0, 0, 0, 0, 6, 0x04, 0, 0, 0, 0, 0, 6, 0, 0, 0, 1];
        ping = ping.repeat(4096);
        let start = Instant::now();
        // Our writes block once the server is stuck writing to us; they fail once it
        // gives up on us.
        while start.elapsed() < Duration::from_secs(60) {
            if socket.write_all(&ping).is_err() {
                return start.elapsed();
            }
        }
        panic!("the server never closed the publisher that stopped reading");
    })
    .await
    .unwrap();
    eprintln!("the non-reading publisher was closed after {stalled:?}");
    let log = log_with(&server, "stopped reading").await;
    assert!(
        log.contains("stopped reading") && log.contains("--rtmp-write-timeout-ms"),
        "the log names the rule:\n{log}"
    );

    // The real encoder gets its stream.
    let _real = KillOnDrop(publish(&format!("{}/live/victim-key-789", server.rtmp), 20));
    get_when_ready(
        &server.url("/live/victim/source/index.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    assert_still_advancing(&mut server, &url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_and_silent_peers_are_closed_by_the_idle_and_handshake_rules() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--rtmp-idle-timeout-ms",
        "3000",
        "--rtmp-setup-timeout-ms",
        "120000",
        "--rtmp-handshake-timeout-ms",
        "2000",
    ]);
    let (_ffmpeg, url, before) = honest_stream(&server, 40).await;
    let addr = host_port(&server);
    // A peer that connects and never completes the handshake.
    let silent_addr = addr.clone();
    let silent_closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&silent_addr).unwrap();
        s.write_all(&[0x03, 0, 0]).unwrap();
        closed_within(&mut s, Duration::from_secs(15))
    });
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        handshake(&mut s);
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        // The start of a command message, one byte a second: never a whole message.
        let header = [0x03u8, 0, 0, 0, 0, 1, 0, 0x14, 0, 0, 0, 0, 0x02, 0, 0x07];
        let start = Instant::now();
        for byte in header.iter().cycle() {
            if start.elapsed() > Duration::from_secs(30) {
                break;
            }
            if s.write_all(&[*byte]).is_err() {
                return Some(start.elapsed());
            }
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Some(start.elapsed());
                }
                _ => {}
            }
        }
        None
    })
    .await
    .unwrap();
    let closed_after = closed_after.expect("the trickling peer was never closed");
    assert!(
        silent_closed.await.unwrap(),
        "a peer that never completes the handshake is closed"
    );
    eprintln!("the trickling peer was closed after {closed_after:?}");
    let log = log_with(&server, "--rtmp-idle-timeout-ms").await;
    assert!(
        log.contains("--rtmp-idle-timeout-ms") && log.contains("--rtmp-handshake-timeout-ms"),
        "the log names the rule:\n{log}"
    );
    assert_still_advancing(&mut server, &url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_are_refused_and_other_addresses_served() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--rtmp-max-connections-per-ip",
        "3",
    ]);
    let (_ffmpeg, url, before) = honest_stream(&server, 40).await;
    let target: std::net::SocketAddr = host_port(&server).parse().unwrap();
    // Another loopback address stands for another client.
    let from = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let stream = socket.connect(target).await.unwrap();
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(from().await);
    }
    let mut extra = from().await;
    let refused =
        tokio::task::spawn_blocking(move || closed_within(&mut extra, Duration::from_secs(5)))
            .await
            .unwrap();
    assert!(refused, "the fourth connection from one address is closed");
    // The three admitted ones are not.
    let mut first = held.remove(0);
    let open = tokio::task::spawn_blocking(move || {
        handshake(&mut first);
        first
    })
    .await
    .unwrap();
    let log = log_with(&server, "--rtmp-max-connections-per-ip").await;
    assert!(
        log.contains("--rtmp-max-connections-per-ip") && log.contains("127.0.0.2"),
        "the log names the rule and the peer:\n{log}"
    );
    assert_still_advancing(&mut server, &url, before).await;
    drop((open, held));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_jumps_of_hours_are_reanchored_and_the_playlist_stays_sane() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "jumpy=jumpy-key-321",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let tags = fixture(dir.path(), "jumpy.flv", "320x240", 14);
    let (_ffmpeg, url, before) = honest_stream(&server, 60).await;
    let addr = host_port(&server);
    let hour = 3_600_000u32;
    let replayer = tokio::task::spawn_blocking(move || {
        let mut p = RawPublisher::publish(&addr, "live", "jumpy-key-321").unwrap();
        // 0–5 s as sent, 5–10 s three hours ahead, then three hours back.
        replay(&mut p, &tags, 0, |ms| {
            if (5000..10_000).contains(&ms) {
                ms + 3 * hour
            } else {
                ms
            }
        });
        p
    });
    let jumpy = server.url("/live/jumpy/source/index.m3u8");
    get_when_ready(&jumpy, Duration::from_secs(20)).await;
    // Watch it through both jumps.
    let mut last_hint = (0, 0);
    let mut advanced_after_back_jump = false;
    let started = Instant::now();
    while !replayer.is_finished() {
        let (status, playlist) = get_text(&jumpy).await;
        assert_eq!(status, 200, "{playlist}");
        assert_sane_playlist(&playlist);
        let hint = preload_hint(&playlist);
        if started.elapsed() > Duration::from_secs(11) && hint > last_hint && last_hint != (0, 0) {
            advanced_after_back_jump = true;
        }
        if started.elapsed() > Duration::from_secs(10) && last_hint == (0, 0) {
            last_hint = hint;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _publisher = replayer.await.unwrap();
    assert!(
        advanced_after_back_jump,
        "the playlist kept advancing after the jump back"
    );
    let log = log_with(&server, "timestamp jump").await;
    assert!(
        log.matches("timestamp jump").count() >= 2,
        "each jump is logged with its rule:\n{log}"
    );
    assert_still_advancing(&mut server, &url, before).await;
}

/// Extended timestamps (RFC: a 32-bit time in a 4-byte field after the header, for
/// times past 0xFFFFFF) abused at the edges: a publish that starts 6 s before the
/// 32-bit wrap, so every header carries an extended timestamp, then wraps past 2^32 to
/// small times that need none. The stream plays on through it with sane playlists,
/// and an honest stream beside it is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_timestamps_through_the_32_bit_wrap_keep_the_stream_sane() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "wrap=wrap-key-987",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let tags = fixture(dir.path(), "wrap.flv", "320x240", 12);
    let (_ffmpeg, url, before) = honest_stream(&server, 60).await;
    let addr = host_port(&server);
    let replayer = tokio::task::spawn_blocking(move || {
        let mut p = RawPublisher::publish(&addr, "live", "wrap-key-987").unwrap();
        replay(&mut p, &tags, 0, |ms| ms.wrapping_add(u32::MAX - 6_000));
        p
    });
    let wrap = server.url("/live/wrap/source/index.m3u8");
    get_when_ready(&wrap, Duration::from_secs(20)).await;
    let started = Instant::now();
    let mut hint_after_wrap = None;
    let mut advanced_after_wrap = false;
    while !replayer.is_finished() {
        let (status, playlist) = get_text(&wrap).await;
        assert_eq!(status, 200, "{playlist}");
        assert_sane_playlist(&playlist);
        let hint = preload_hint(&playlist);
        // The wrap comes 6 s in: the playlist must keep moving after it.
        if started.elapsed() > Duration::from_secs(8) {
            match hint_after_wrap {
                None => hint_after_wrap = Some(hint),
                Some(first) if hint > first => advanced_after_wrap = true,
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _publisher = replayer.await.unwrap();
    assert!(
        advanced_after_wrap,
        "the playlist kept advancing after the 32-bit wrap"
    );
    assert_still_advancing(&mut server, &url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_change_mid_stream_starts_a_new_init_after_a_discontinuity() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "switch=switch-key-654",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let small = fixture(dir.path(), "small.flv", "320x240", 6);
    let large = fixture(dir.path(), "large.flv", "640x360", 6);
    let (_ffmpeg, url, before) = honest_stream(&server, 60).await;
    let addr = host_port(&server);
    let replayer = tokio::task::spawn_blocking(move || {
        let mut p = RawPublisher::publish(&addr, "live", "switch-key-654").unwrap();
        replay(&mut p, &small, 0, |ms| ms);
        // The same publish goes on at 640x360: a new avcC sequence header.
        let end = small.last().map_or(0, |t| t.1) + 33;
        replay(&mut p, &large, end, |ms| ms);
        // Keep the publish open while the test looks.
        std::thread::sleep(Duration::from_secs(3));
        p
    });
    let playlist_url = server.url("/live/switch/source/index.m3u8");
    get_when_ready(&playlist_url, Duration::from_secs(20)).await;
    let mut switched = None;
    while !replayer.is_finished() {
        let (_, playlist) = get_text(&playlist_url).await;
        let maps: Vec<&str> = playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
            .map(|l| l.trim_end_matches('"'))
            .collect();
        if playlist.contains("#EXT-X-DISCONTINUITY\n") && maps.len() >= 2 && maps[0] != maps[1] {
            switched = Some((playlist.clone(), maps.last().unwrap().to_string()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _publisher = replayer.await.unwrap();
    let (playlist, new_init) =
        switched.expect("a discontinuity and a second init segment in the playlist");
    let init_url = server.url(&format!("/live/switch/source/{new_init}"));
    let init = common::client()
        .get(&init_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // avc1 sample entry: width 640, height 360 (u16 each).
    assert!(
        init.windows(4).any(|w| w == [0x02, 0x80, 0x01, 0x68]),
        "the new init segment describes 640x360 ({init_url}):\n{playlist}"
    );
    assert_still_advancing(&mut server, &url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_far_above_the_bitrate_cap_is_stopped_with_an_rtmp_error() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "flood=flood-key-987",
        "--stream",
        "declared=declared-key-246",
        "--rtmp-max-bitrate-kbps",
        "4000",
    ]);
    let (_ffmpeg, url, before) = honest_stream(&server, 40).await;
    let addr = host_port(&server);
    let status = tokio::task::spawn_blocking(move || {
        let mut p = RawPublisher::publish(&addr, "live", "flood-key-987").unwrap();
        // 256 KiB inter frames as fast as the socket takes them (hundreds of Mbit/s).
        let mut body = vec![0x27, 0x01, 0, 0, 0];
        body.resize(256 * 1024, 0x42);
        let body = Bytes::from(body);
        let start = Instant::now();
        let mut ts = 0;
        while start.elapsed() < Duration::from_secs(30) {
            p.session.send_video(ts, body.clone());
            ts += 33;
            if let Err(e) = p.pump() {
                return e;
            }
        }
        panic!("a publisher far above the cap was never stopped");
    })
    .await
    .unwrap();
    assert!(
        status.contains("NetStream.Publish.Rejected") && status.contains("--rtmp-max-bitrate-kbps"),
        "the encoder is told why: {status}"
    );
    let log = log_with(&server, "--rtmp-max-bitrate-kbps").await;
    assert!(
        log.contains("--rtmp-max-bitrate-kbps"),
        "the log names the rule:\n{log}"
    );

    // Under the configured cap but far above what it declared: 2.6 Mbit/s after
    // declaring 264 kbit/s in onMetaData.
    let addr = host_port(&server);
    let status = tokio::task::spawn_blocking(move || {
        let mut p = RawPublisher::publish(&addr, "live", "declared-key-246").unwrap();
        p.session.send_metadata(vec![
            ("videodatarate".into(), Amf0Value::Number(200.0)),
            ("audiodatarate".into(), Amf0Value::Number(64.0)),
        ]);
        let mut body = vec![0x27, 0x01, 0, 0, 0];
        body.resize(32 * 1024, 0x42);
        let body = Bytes::from(body);
        let start = Instant::now();
        let mut ts = 0;
        while start.elapsed() < Duration::from_secs(30) {
            p.session.send_video(ts, body.clone());
            ts += 100;
            let due = start + Duration::from_millis(u64::from(ts));
            while Instant::now() < due {
                if let Err(e) = p.pump() {
                    return e;
                }
            }
        }
        panic!("a publisher far above its declared bitrate was never stopped");
    })
    .await
    .unwrap();
    assert!(
        status.contains("NetStream.Publish.Rejected") && status.contains("declared in onMetaData"),
        "the encoder is told why: {status}"
    );
    assert_still_advancing(&mut server, &url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newlines_and_terminal_escapes_from_a_peer_cannot_forge_log_lines() {
    let mut server = Server::start(&["--stream", "good=good-key-123"]);
    let (_ffmpeg, url, before) = honest_stream(&server, 30).await;
    let addr = host_port(&server);
    let forged_app = "live\n2026-12-03T00:00:00.000000Z  INFO FORGED publishing stream=ceo\x1b[2J";
    let forged_key = "k\r\nFORGED-KEY\x1b[31m";
    let refusal = tokio::task::spawn_blocking(move || {
        RawPublisher::publish(&addr, forged_app, forged_key)
            .err()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(refusal.contains("does not exist"), "{refusal}");
    let log = log_with(&server, "publish refused").await;
    assert!(
        log.contains("live\\n2026-12-03"),
        "the app name is logged, escaped:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with("2026-12-03T00:00:00")),
        "a peer forged a log line:\n{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("FORGED")));
    assert!(!log.contains('\x1b'), "a terminal escape reached the log");
    assert_still_advancing(&mut server, &url, before).await;
}

/// CPU time a process has used (user + system), in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Sets the soft limit on open files of a process (the hard limit stays, so it can be
/// raised again).
fn set_open_files_limit(pid: u32, limit: usize) {
    let (ok, _, err) = run(Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limit}:")));
    assert!(ok, "prlimit: {err}");
}

/// The soft limit on open files of a process.
fn open_files_limit(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_on_accept_backs_off_without_spinning_and_recovers() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "later=later-key-555",
        "--rtmp-max-connections-per-ip",
        "10000",
    ]);
    let (_ffmpeg, url, before) = honest_stream(&server, 60).await;
    let pid = server.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let original_limit = open_files_limit(pid);
    set_open_files_limit(pid, open + 16);
    let addr = host_port(&server);
    // The kernel completes these connections in the backlog; the server runs out of
    // descriptors accepting them.
    let sockets = tokio::task::spawn_blocking(move || {
        (0..64)
            .map(|_| TcpStream::connect(&addr).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let log = log_with(&server, "cannot accept RTMP connections").await;
    assert!(
        log.contains("cannot accept RTMP connections") && log.contains("backing off"),
        "the accept failure is logged:\n{log}"
    );
    // Still out of descriptors: the listener must wait, not spin (a spinning accept
    // loop burns a whole core; generous bound).
    let cpu_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - cpu_before;
    assert!(
        used < 150,
        "{used} ticks of CPU in 3 s while out of descriptors"
    );
    let lines = server
        .log()
        .matches("cannot accept RTMP connections")
        .count();
    assert!(lines <= 20, "{lines} log lines: one per run of failures");

    // Descriptors back: new publishers are served again.
    drop(sockets);
    set_open_files_limit(pid, original_limit);
    let addr = host_port(&server);
    let published = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match RawPublisher::publish(&addr, "live", "later-key-555") {
                Ok(_) => return true,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        published,
        "a publisher is accepted once descriptors are back"
    );
    assert_still_advancing(&mut server, &url, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_total_cap_are_refused_and_admitted_ones_served() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--rtmp-max-connections",
        "4",
    ]);
    let (_ffmpeg, url, before) = honest_stream(&server, 40).await;
    let addr = host_port(&server);
    let refused = tokio::task::spawn_blocking(move || {
        // The honest publisher holds one slot; three more fill the cap.
        let held: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                handshake(&mut s);
                s
            })
            .collect();
        let mut extra = TcpStream::connect(&addr).unwrap();
        let refused = closed_within(&mut extra, Duration::from_secs(5));
        drop(held);
        refused
    })
    .await
    .unwrap();
    assert!(refused, "a connection beyond the total cap is closed");
    let log = log_with(&server, "--rtmp-max-connections)").await;
    assert!(
        log.contains("(--rtmp-max-connections)"),
        "the log names the rule:\n{log}"
    );
    assert_still_advancing(&mut server, &url, before).await;
}
