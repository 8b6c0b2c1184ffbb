//! WHEP and WHIP as a client reaches them: any body POSTed as an SDP offer, then any
//! datagrams on the session's port. `WhepSession::answer` (a viewer, no credentials)
//! and `WhipSession::answer` (a publisher) answer or refuse with a reason — str0m's SDP
//! parser sees the bytes first — and a session fed arbitrary datagrams and time never
//! panics, only closes. The datagrams are also read as a publisher's H.264 access unit
//! (`assemble`, what str0m's depacketiser hands the WHIP session), and as a hub frame
//! packetised for viewers (`rtp_payloads`: every payload fits a packet).
//!
//! Input: `OFFER 0xff DATAGRAM 0xff DATAGRAM …` (0xff never occurs in UTF-8). An offer
//! that starts with `+` is a real browser offer (below) followed by the input's text,
//! so the fuzzer also reaches past the parser (`-`: the same offer, send-only, as a
//! browser publishes with WHIP). An input of even length goes to a WHEP
//! session, of odd length to a WHIP one: a session's set-up (str0m's DTLS context
//! checks its crypto provider with a few key exchanges) was most of an execution, and
//! doing both for every input halved the executions a second for no new paths. A
//! datagram of odd length comes over ICE-TCP (a frame of a TCP connection to the same
//! port), of even length over UDP.
#![no_main]
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use webrtc::{
    SessionOutput, Transport, WhepConfig, WhepSession, WhipSession, assemble, rtp_payloads,
};

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
            Ok(mut config) => {
                config.tcp_candidates = vec![host];
                config
            }
            Err(e) => panic!("the fuzz target's own configuration: {e}"),
        }
    })
}

/// A stream's H.264 configuration (its parameter sets go before keyframes).
fn avc() -> &'static media::AvcConfig {
    static AVC: OnceLock<media::AvcConfig> = OnceLock::new();
    AVC.get_or_init(|| media::AvcConfig {
        record: bytes::Bytes::new(),
        profile_idc: 66,
        constraint_flags: 0xe0,
        level_idc: 31,
        nal_length_size: 4,
        sps: vec![bytes::Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f])],
        pps: vec![bytes::Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80])],
        width: 640,
        height: 360,
        frame_rate: None,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0xff);
    let offer = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let offer = if let Some(rest) = offer.strip_prefix('+') {
        format!("{BROWSER_OFFER}{rest}")
    } else if let Some(rest) = offer.strip_prefix('-') {
        // The same browser as a publisher (WHIP).
        format!(
            "{}{rest}",
            BROWSER_OFFER.replace("a=recvonly", "a=sendonly")
        )
    } else {
        offer
    };
    let datagrams: Vec<&[u8]> = fields.take(16).collect();
    for datagram in &datagrams {
        if let Ok(unit) = assemble(datagram) {
            assert!(unit.data.len() <= datagram.len() + 4 * datagram.len().div_ceil(3));
        }
        if let Ok(payloads) = rtp_payloads(avc(), datagram, datagram.len() % 3 == 0) {
            assert!(payloads.iter().all(|p| !p.is_empty() && p.len() <= 1120));
        }
    }
    let start = Instant::now();
    if data.len() % 2 == 0 {
        viewer(&offer, &datagrams, start);
    } else {
        publisher(&offer, &datagrams, start);
    }
});

fn viewer(offer: &str, datagrams: &[&[u8]], start: Instant) {
    if let Ok((mut viewer, answer)) = WhepSession::answer(config(), offer, start) {
        assert!(answer.starts_with("v=0"), "an answer is SDP: {answer}");
        drive(datagrams, start, |now, transport, from, to, d| {
            if viewer.accepts(now, transport, from, to, d) {
                viewer.handle_datagram(now, transport, from, to, d);
            }
            viewer.handle_timeout(now);
            drain(|| viewer.poll_output());
        });
    }
}

fn publisher(offer: &str, datagrams: &[&[u8]], start: Instant) {
    if let Ok((mut publisher, answer)) = WhipSession::answer(config(), offer, start) {
        assert!(answer.starts_with("v=0"), "an answer is SDP: {answer}");
        drive(datagrams, start, |now, transport, from, to, d| {
            if publisher.accepts(now, transport, from, to, d) {
                publisher.handle_datagram(now, transport, from, to, d);
            }
            publisher.handle_timeout(now);
            drain(|| publisher.poll_output());
            while publisher.poll_event().is_some() {}
        });
    }
}

/// Feeds each datagram 20 ms apart, then a minute later (a session that never
/// connected gives up by itself).
fn drive(
    datagrams: &[&[u8]],
    start: Instant,
    mut step: impl FnMut(Instant, Transport, SocketAddr, SocketAddr, &[u8]),
) {
    let host = config().candidates[0];
    let client: SocketAddr = "127.0.0.1:50000".parse().expect("a literal address");
    let mut now = start;
    for datagram in datagrams {
        now += Duration::from_millis(20);
        let transport = if datagram.len() % 2 == 1 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        step(now, transport, client, host, datagram);
    }
    step(
        now + Duration::from_secs(60),
        Transport::Udp,
        client,
        host,
        &[],
    );
}

/// Takes a session's output until it waits (bounded: a session must come to rest).
fn drain(mut poll: impl FnMut() -> SessionOutput) {
    for _ in 0..256 {
        if matches!(poll(), SessionOutput::Timeout(_) | SessionOutput::Closed) {
            return;
        }
    }
    panic!("a session kept producing output without waiting");
}
