//! Offer/answer and a whole session between two in-memory peers: a str0m client as
//! the viewer, datagrams passed by hand, simulated time.

use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::*;

const SERVER: &str = "127.0.0.1:8189";
const CLIENT: &str = "127.0.0.1:40000";

fn config() -> WhepConfig {
    WhepConfig::new(vec![SERVER.parse().unwrap()]).unwrap()
}

/// A viewer's offer: receive-only video and audio, as a browser's WHEP client makes it.
fn viewer(now: Instant, audio: bool, video: bool) -> (Rtc, String, str0m::change::SdpPendingOffer) {
    viewer_on(Transport::Udp, now, audio, video)
}

/// [`viewer`] with its candidate on `transport` (TCP: active, as a browser's).
fn viewer_on(
    transport: Transport,
    now: Instant,
    audio: bool,
    video: bool,
) -> (Rtc, String, str0m::change::SdpPendingOffer) {
    let mut rtc = Rtc::builder().build(now);
    let candidate = match transport {
        Transport::Udp => Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap(),
        Transport::Tcp => Candidate::builder()
            .tcp()
            .host(CLIENT.parse().unwrap())
            .tcptype(str0m::net::TcpType::Active)
            .build()
            .unwrap(),
    };
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    if video {
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    if audio {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let (offer, pending) = api.apply().unwrap();
    (rtc, offer.to_sdp_string(), pending)
}

#[test]
fn answer_is_ice_lite_with_the_configured_candidate() {
    let now = Instant::now();
    let (_, offer, _) = viewer(now, true, true);
    let (session, answer) = WhepSession::answer(&config(), &offer, now).unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("127.0.0.1 8189 typ host"), "{answer}");
    assert!(answer.contains("H264/90000"), "{answer}");
    assert!(answer.contains("opus/48000"), "{answer}");
    assert!(answer.contains("a=sendonly"), "{answer}");
    assert!(session.is_alive());
}

#[test]
fn malformed_and_video_less_offers_are_refused_with_a_reason() {
    let now = Instant::now();
    let err = WhepSession::answer(&config(), "hello", now).err().unwrap();
    assert!(matches!(err, OfferError::Malformed(_)), "{err}");
    let (_, audio_only, _) = viewer(now, true, false);
    let err = WhepSession::answer(&config(), &audio_only, now)
        .err()
        .unwrap();
    assert!(matches!(err, OfferError::NoH264), "{err}");
    assert!(err.to_string().contains("H.264"));
}

/// Moves datagrams between the two peers until both are idle at `now`; returns the
/// keyframe requests the session made meanwhile.
fn pump(
    server: &mut WhepSession,
    client: &mut Rtc,
    now: Instant,
    events: &mut Vec<Event>,
) -> usize {
    pump_on(Transport::Udp, server, client, now, events, &mut |_| false)
}

/// [`pump`] on `transport`: every datagram must go the way it came. The server's
/// datagrams for which `lose` says so are lost on the way.
fn pump_on(
    transport: Transport,
    server: &mut WhepSession,
    client: &mut Rtc,
    now: Instant,
    events: &mut Vec<Event>,
    lose: &mut dyn FnMut(&[u8]) -> bool,
) -> usize {
    let (s_addr, c_addr) = (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
    let proto = match transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    };
    let mut keyframe_requests = 0;
    for _ in 0..1000 {
        let mut moved = false;
        loop {
            match server.poll_output() {
                SessionOutput::Transmit {
                    transport: sent_on,
                    destination,
                    data,
                } => {
                    assert_eq!((sent_on, destination), (transport, c_addr));
                    if lose(&data) {
                        continue;
                    }
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto,
                            source: s_addr,
                            destination: c_addr,
                            contents: data.as_slice().try_into().unwrap(),
                        },
                    );
                    client.handle_input(input).unwrap();
                    moved = true;
                }
                SessionOutput::KeyframeRequest => keyframe_requests += 1,
                SessionOutput::Timeout(_) | SessionOutput::Closed => break,
            }
        }
        loop {
            match client.poll_output().unwrap() {
                Output::Transmit(t) => {
                    assert_eq!(t.proto, proto);
                    assert!(server.accepts(now, transport, c_addr, s_addr, &t.contents));
                    server.handle_datagram(now, transport, c_addr, s_addr, &t.contents);
                    moved = true;
                }
                Output::Event(e) => events.push(e),
                Output::Timeout(_) => break,
            }
        }
        if !moved {
            return keyframe_requests;
        }
    }
    keyframe_requests
}

/// A viewer with audio and video `kinds`, connected to its session (ICE and DTLS up);
/// the keyframe requests the session made on the way.
fn connected(audio: bool, video: bool) -> (WhepSession, Rtc, Instant, Vec<Event>, usize) {
    let start = Instant::now();
    let (mut client, offer, pending) = viewer(start, audio, video);
    let (mut server, answer) = WhepSession::answer(&config(), &offer, start).unwrap();
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let (mut events, mut now, mut keyframe_requests) = (Vec::new(), start, 0);
    while !server.is_connected() && now < start + Duration::from_secs(2) {
        now += Duration::from_millis(10);
        server.handle_timeout(now);
        client.handle_input(Input::Timeout(now)).unwrap();
        keyframe_requests += pump(&mut server, &mut client, now, &mut events);
    }
    assert!(server.is_connected(), "ICE and DTLS come up");
    (server, client, now, events, keyframe_requests)
}

fn avc_config() -> media::AvcConfig {
    media::AvcConfig {
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
    }
}

/// An IDR slice of `len` bytes.
fn idr(len: usize) -> Vec<u8> {
    std::iter::once(0x65)
        .chain((1..len).map(|i| (i % 199) as u8 + 1))
        .collect()
}

/// Frame `n` (at 30 fps) of one NAL unit, packetised as the tap does it.
fn access_unit(n: i64, nal: &[u8]) -> VideoAccessUnit {
    let keyframe = nal[0] & 0x1f == 5;
    let mut data = (nal.len() as u32).to_be_bytes().to_vec();
    data.extend_from_slice(nal);
    VideoAccessUnit {
        payloads: crate::rtp_payloads(&avc_config(), &data, keyframe).unwrap(),
        pts: media::MediaTime::new(n * 3000, std::num::NonZeroU32::new(90_000).unwrap()),
        keyframe,
    }
}

/// NAL units in Annex B form, as a viewer's depacketiser hands them back.
fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
    nals.iter()
        .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
        .collect()
}

/// The pictures (and their RTP times) among a viewer's events.
fn pictures(events: &[Event]) -> Vec<(str0m::media::MediaTime, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MediaData(d) => Some((d.time, d.data.to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_viewer_connects_and_receives_video_from_the_first_keyframe() {
    let (mut server, mut client, mut now, mut events, keyframe_requests) = connected(true, true);
    assert!(server.has_video() && server.has_audio());
    // Connected mid-GOP: it asks at once for the keyframe it must start on.
    assert_eq!(keyframe_requests, 1, "one keyframe request on connecting");

    // A keyframe larger than a packet (SPS and PPS go in front), deltas of one packet.
    let (idr, delta) = (idr(3000), |n: u8| vec![0x41, n, 0xaa, 0xbb]);
    // A delta before any keyframe is held back; the keyframe and what follows go out.
    server.write_video(now, &access_unit(1, &delta(1)));
    assert!(server.is_waiting_for_keyframe());
    let keyframe = access_unit(2, &idr);
    assert!(keyframe.payloads.len() >= 3, "a STAP-A and FU-A fragments");
    for (n, unit) in [
        keyframe.clone(),
        access_unit(3, &delta(3)),
        access_unit(4, &delta(4)),
    ]
    .iter()
    .enumerate()
    {
        now += Duration::from_millis(33);
        server.write_video(now, unit);
        server.handle_timeout(now);
        client.handle_input(Input::Timeout(now)).unwrap();
        pump(&mut server, &mut client, now, &mut events);
        if n == 0 {
            // Sent by reference: the session's resend buffer holds the stream's own
            // payloads, not copies of them.
            assert!(keyframe.payloads.iter().all(|p| Arc::strong_count(p) >= 2));
        }
    }
    for _ in 0..20 {
        now += Duration::from_millis(10);
        server.handle_timeout(now);
        client.handle_input(Input::Timeout(now)).unwrap();
        pump(&mut server, &mut client, now, &mut events);
    }
    // The keyframe whole, parameter sets first, then the two deltas; the delta before
    // the keyframe was not sent.
    let received = pictures(&events);
    assert_eq!(received.len(), 3, "the keyframe and two deltas");
    let config = avc_config();
    assert_eq!(
        received[0].1,
        annex_b(&[&config.sps[0], &config.pps[0], &idr])
    );
    assert_eq!(received[1].1, annex_b(&[&delta(3)]));
    // RTP time is the media time on the 90 kHz clock: a frame apart.
    let ticks: Vec<u64> = received
        .iter()
        .map(|(t, _)| t.rebase(str0m::media::Frequency::NINETY_KHZ).numer())
        .collect();
    assert_eq!([ticks[1] - ticks[0], ticks[2] - ticks[1]], [3000, 3000]);

    server.close();
    assert!(!server.is_alive());
    assert!(matches!(server.poll_output(), SessionOutput::Closed));
}

#[test]
fn a_viewer_whose_network_blocks_udp_connects_over_tcp() {
    // ICE-TCP: the answer offers a passive TCP candidate beside the UDP one; a viewer
    // with only an active TCP candidate connects on it and gets its keyframe request.
    let start = Instant::now();
    let mut c = config();
    c.tcp_candidates = vec![SERVER.parse().unwrap()];
    let (mut client, offer, pending) = viewer_on(Transport::Tcp, start, true, true);
    let (mut server, answer) = WhepSession::answer(&c, &offer, start).unwrap();
    assert!(
        answer.contains("127.0.0.1 8189 typ host tcptype passive"),
        "{answer}"
    );
    assert!(answer.contains("127.0.0.1 8189 typ host"), "{answer}");
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let (mut events, mut now, mut keyframe_requests) = (Vec::new(), start, 0);
    for _ in 0..200 {
        now += Duration::from_millis(10);
        server.handle_timeout(now);
        client.handle_input(Input::Timeout(now)).unwrap();
        keyframe_requests += pump_on(
            Transport::Tcp,
            &mut server,
            &mut client,
            now,
            &mut events,
            &mut |_| false,
        );
        if server.is_connected() {
            break;
        }
    }
    assert!(server.is_connected(), "ICE and DTLS come up over TCP");
    assert_eq!(keyframe_requests, 1);
}

#[test]
fn a_viewer_that_never_connects_is_dropped() {
    let start = Instant::now();
    let (_, offer, _) = viewer(start, false, true);
    let (mut server, _) = WhepSession::answer(&config(), &offer, start).unwrap();
    server.handle_timeout(start + Duration::from_secs(1));
    assert!(server.is_alive());
    server.handle_timeout(start + Duration::from_secs(30));
    assert!(!server.is_alive());
}

#[test]
fn the_nack_buffer_is_bounded_by_configuration() {
    let mut c = config();
    c.send_buffer_video = 0;
    let (_, offer, _) = viewer(Instant::now(), true, true);
    // Zero would panic inside str0m: it is raised to one.
    assert!(WhepSession::answer(&c, &offer, Instant::now()).is_ok());
}

#[test]
fn a_viewers_answer_leaves_out_transport_wide_congestion_control() {
    let (_, offer, _) = viewer(Instant::now(), true, true);
    assert!(offer.contains("transport-wide-cc"), "{offer}");
    let (_, answer) = WhepSession::answer(&config(), &offer, Instant::now()).unwrap();
    assert!(!answer.contains("transport-wide-cc"), "{answer}");
    assert!(
        answer.contains("urn:ietf:params:rtp-hdrext:sdes:mid"),
        "{answer}"
    );
}

#[test]
fn a_lost_video_packet_is_resent_and_the_picture_arrives_whole() {
    let (mut server, mut client, mut now, mut events, _) = connected(false, true);
    // A keyframe of five fragments; the second RTP packet sent is lost.
    let idr = idr(5000);
    let (mut rtp_sent, mut lost) = (0, 0);
    let mut lose = |d: &[u8]| {
        // SRTP (RFC 7983: first byte 128–191) that is not RTCP (payload types 192–223).
        let rtp = (128..192).contains(&d[0]) && !(192..224).contains(&d[1]);
        rtp_sent += usize::from(rtp);
        let lose = rtp && rtp_sent == 2;
        lost += usize::from(lose);
        lose
    };
    server.write_video(now, &access_unit(1, &idr));
    for _ in 0..100 {
        now += Duration::from_millis(10);
        server.handle_timeout(now);
        client.handle_input(Input::Timeout(now)).unwrap();
        pump_on(
            Transport::Udp,
            &mut server,
            &mut client,
            now,
            &mut events,
            &mut lose,
        );
    }
    assert_eq!(lost, 1, "one packet was lost");
    // The viewer asked for it again (NACK) and got it (RTX): the keyframe came whole.
    let received = pictures(&events);
    let config = avc_config();
    assert_eq!(received.len(), 1, "the keyframe");
    assert_eq!(
        received[0].1,
        annex_b(&[&config.sps[0], &config.pps[0], &idr])
    );
}
