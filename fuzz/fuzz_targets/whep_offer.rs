//! WHEP as an unauthenticated viewer reaches it: any body POSTed as an SDP offer, then
//! any datagrams on the session's port. `WhepSession::answer` answers or refuses with
//! a reason (str0m's SDP parser sees attacker bytes first), and a session fed arbitrary
//! datagrams and time never panics, only closes.
//!
//! Input: `OFFER 0xff DATAGRAM 0xff DATAGRAM …` (0xff never occurs in UTF-8). An offer
//! that starts with `+` is a real browser offer (the seed in the dictionary) followed
//! by the input's text, so the fuzzer also reaches past the parser.
#![no_main]
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use webrtc::{SessionOutput, WhepConfig, WhepSession};

/// An offer as Chromium makes it for a receive-only video and audio session.
const BROWSER_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:fuzz\r\na=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\na=ice-options:trickle\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\n\
a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:fuzz\r\na=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\na=ice-options:trickle\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";

fn config() -> &'static WhepConfig {
    static CONFIG: OnceLock<WhepConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let host: SocketAddr = "127.0.0.1:8189".parse().expect("a literal address");
        match WhepConfig::new(vec![host]) {
            Ok(config) => config,
            Err(e) => panic!("the fuzz target's own configuration: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0xff);
    let offer = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let offer = match offer.strip_prefix('+') {
        Some(rest) => format!("{BROWSER_OFFER}{rest}"),
        None => offer,
    };
    let start = Instant::now();
    let Ok((mut session, answer)) = WhepSession::answer(config(), &offer, start) else {
        return;
    };
    assert!(answer.starts_with("v=0"), "an answer is SDP: {answer}");
    let host = config().candidates[0];
    let viewer: SocketAddr = "127.0.0.1:50000".parse().expect("a literal address");
    let mut now = start;
    for datagram in fields.take(16) {
        now += Duration::from_millis(20);
        if session.accepts(now, viewer, host, datagram) {
            session.handle_datagram(now, viewer, host, datagram);
        }
        session.handle_timeout(now);
        for _ in 0..64 {
            match session.poll_output() {
                SessionOutput::Timeout(_) | SessionOutput::Closed => break,
                SessionOutput::Transmit { .. } | SessionOutput::KeyframeRequest => {}
            }
        }
    }
    // Long after: the never-connected session gives up by itself.
    session.handle_timeout(now + Duration::from_secs(60));
    let _ = session.poll_output();
});
