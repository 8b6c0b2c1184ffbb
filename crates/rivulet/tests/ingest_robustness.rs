//! Bad publishers get clear refusals and never disturb good ones; a publisher that
//! returns within the grace period continues the same playlist.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The last media sequence number + part count the playlist shows, as one ordinal.
fn progress(playlist: &str) -> (u64, u32) {
    preload_hint(playlist)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_refused_and_garbage_does_not_disturb_a_live_stream() {
    let mut server = Server::start(&[
        "--stream",
        "good=good-key-123",
        "--stream",
        "other=other-key-456",
    ]);
    let mut good = publish(&format!("{}/live/good-key-123", server.rtmp), 12);
    let media_url = server.url("/live/good/source/index.m3u8");
    let before = get_when_ready(&media_url, Duration::from_secs(15)).await;

    // An unknown key: ffmpeg is refused and exits with an error; the log names the
    // client address but never the whole key.
    let secret = "wrong-secret-key-zzz";
    let mut refused = publish(&format!("{}/live/{secret}", server.rtmp), 3);
    let status = tokio::task::spawn_blocking(move || refused.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success(), "a publish with an unknown key must fail");

    // A second publisher on a key that is live is refused too.
    let mut second = publish(&format!("{}/live/good-key-123", server.rtmp), 3);
    let status = tokio::task::spawn_blocking(move || second.wait().unwrap())
        .await
        .unwrap();
    assert!(
        !status.success(),
        "a second publisher on a live key must be refused"
    );

    // Garbage: random bytes, a bad RTMP version, a handshake followed by an absurd
    // chunk size and a huge message, and a truncated AMF connect.
    let addr = server.rtmp.trim_start_matches("rtmp://").to_owned();
    let garbage = tokio::task::spawn_blocking(move || {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut noise = |n: usize| {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect::<Vec<u8>>()
        };
        // 1. noise
        let mut s = TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(&noise(5000));
        // 2. wrong version byte
        let mut s2 = TcpStream::connect(&addr).unwrap();
        let _ = s2.write_all(&[0x06]);
        let _ = s2.write_all(&noise(1536));
        // 3. a good handshake, then Set Chunk Size 0x7fffffff and a 16 MiB message header
        let mut s3 = handshake(&addr, &mut noise);
        let mut msg = vec![
            0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
        ];
        msg.extend_from_slice(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0]);
        msg.extend_from_slice(&noise(4096));
        let _ = s3.write_all(&msg);
        // 4. a good handshake, then a connect command whose AMF is cut short
        let mut s4 = handshake(&addr, &mut noise);
        let amf = [
            0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0x3f, 0xf0, 0, 0, 0,
            0, 0, 0, 0x03, 0x00, 0x03, b'a', b'p',
        ];
        let mut msg = vec![0x03, 0, 0, 0, 0, 0, amf.len() as u8, 0x14, 0, 0, 0, 0];
        msg.extend_from_slice(&amf);
        let _ = s4.write_all(&msg);
        std::thread::sleep(Duration::from_millis(500));
        drop((s, s2, s3, s4));
    });
    garbage.await.unwrap();

    // The good stream kept going: its playlist still advances, the server is alive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = get_text(&media_url).await.1;
    assert!(
        progress(&after) > progress(&before),
        "playlist stopped advancing:\n{after}"
    );
    assert!(server.is_running());
    let log = server.log();
    assert!(
        log.contains("127.0.0.1"),
        "refusals name the client address"
    );
    assert!(
        !log.contains(secret),
        "the log must not contain the full key"
    );
    assert!(
        log.to_lowercase().contains("key"),
        "the refusal says the key was not recognised:\n{log}"
    );
    let _ = good.kill();
    let _ = good.wait();
}

/// Performs the simple RTMP handshake by hand (C0+C1, read S0+S1+S2, send C2).
fn handshake(addr: &str, noise: &mut impl FnMut(usize) -> Vec<u8>) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut c1 = vec![0u8; 8];
    c1.extend(noise(1528));
    s.write_all(&[0x03]).unwrap();
    s.write_all(&c1).unwrap();
    let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
    s.read_exact(&mut s0s1s2).unwrap();
    s.write_all(&s0s1s2[1..1537]).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_returning_within_grace_continues_with_a_discontinuity() {
    returning_publisher_continues("source", "source").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_ladder_on_a_returning_publisher_continues_every_rendition() {
    returning_publisher_continues("source,234p", "234p").await;
}

/// A publisher leaves and comes back within the grace period: `rendition`'s playlist
/// goes on, numbering onwards, with a discontinuity and no end.
async fn returning_publisher_continues(renditions: &str, rendition: &str) {
    let server = Server::start(&[
        "--stream",
        "back=back-key-789",
        "--grace-period-ms",
        "8000",
        "--renditions",
        renditions,
    ]);
    let url = format!("{}/live/back-key-789", server.rtmp);
    let media_url = server.url(&format!("/live/back/{rendition}/index.m3u8"));
    let mut first = publish(&url, 5);
    get_when_ready(&media_url, Duration::from_secs(15)).await;
    tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    let during_gap = get_text(&media_url).await.1;
    assert!(
        !during_gap.contains("#EXT-X-ENDLIST"),
        "still live during the grace period"
    );
    let last_msn_before = progress(&during_gap).0;

    let mut second = publish(&url, 5);
    let deadline = Instant::now() + Duration::from_secs(20);
    let playlist = loop {
        let text = get_text(&media_url).await.1;
        if text.contains("#EXT-X-DISCONTINUITY\n") && progress(&text).0 > last_msn_before + 1 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no continuation with a discontinuity:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let parsed = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
    assert!(parsed.segments.iter().any(|s| s.discontinuity));
    assert!(!playlist.contains("#EXT-X-ENDLIST"));
    // Program date times never go backwards across the discontinuity.
    let pdts: Vec<&str> = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .collect();
    assert!(pdts.windows(2).all(|w| w[0] < w[1]), "{pdts:?}");
    let _ = second.kill();
    let _ = second.wait();
}
