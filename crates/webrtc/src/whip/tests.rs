//! A publisher's session between two in-memory peers: a str0m client sends H.264 and
//! Opus, datagrams passed by hand, simulated time.

use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime as RtpTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::*;

const SERVER: &str = "127.0.0.1:8189";
const CLIENT: &str = "127.0.0.1:40000";

/// x264's SPS/PPS at 320x240 (media's avc tests).
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn config() -> WhepConfig {
    WhepConfig::new(vec![SERVER.parse().unwrap()]).unwrap()
}

fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// A publisher's offer: send-only video and audio, as a browser's WHIP client makes it.
fn publisher(now: Instant, audio: bool, video: bool) -> (Rtc, String, Pending) {
    let mut rtc = Rtc::builder().build(now);
    rtc.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    let video =
        video.then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
    let audio =
        audio.then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
    let (offer, pending) = api.apply().unwrap();
    (
        rtc,
        offer.to_sdp_string(),
        Pending {
            offer: pending,
            video,
            audio,
        },
    )
}

struct Pending {
    offer: str0m::change::SdpPendingOffer,
    video: Option<Mid>,
    audio: Option<Mid>,
}

#[test]
fn access_units_become_length_prefixed_with_the_configuration_from_sps_pps() {
    let idr = [0x65, 0x88, 0x84, 0x21];
    let unit = assemble(&annex_b(&[&[0x09, 0xf0], SPS, PPS, &idr])).unwrap();
    assert!(unit.keyframe);
    let config = unit.config.expect("SPS and PPS make a configuration");
    assert_eq!((config.width, config.height), (320, 240));
    // Only the slice remains, behind a 4-byte length (the AUD, SPS and PPS are gone).
    assert_eq!(&unit.data[..], &[0, 0, 0, 4, 0x65, 0x88, 0x84, 0x21]);

    let delta = assemble(&annex_b(&[&[0x41, 0x9a, 0x02]])).unwrap();
    assert!(!delta.keyframe && delta.config.is_none());
    assert_eq!(&delta.data[..], &[0, 0, 0, 3, 0x41, 0x9a, 0x02]);

    let broken = assemble(&annex_b(&[&[0x67, 0x64], PPS, &idr]));
    assert!(matches!(broken, Err(AssembleError::ParameterSets(_))));
}

#[test]
fn timelines_start_at_the_first_arrival_and_follow_the_rtp_clock() {
    let rate = NonZeroU32::new(90_000).unwrap();
    let mut video = Timeline::new(rate);
    // RTP starts anywhere; media time starts at the arrival offset (here 100 ms).
    let t = video.place(1_000_000, Duration::from_millis(100)).unwrap();
    assert_eq!(t.ticks, 9_000);
    let t = video.place(1_003_000, Duration::from_secs(9)).unwrap();
    assert_eq!(
        t.ticks, 12_000,
        "later packets follow the RTP clock, not arrival"
    );
    assert!(
        video.place(1_000_500, Duration::from_secs(9)).is_none(),
        "no going back"
    );
}

#[test]
fn offers_without_h264_or_not_sdp_are_refused_with_a_reason() {
    let now = Instant::now();
    let err = WhipSession::answer(&config(), "v=0 nonsense", now)
        .err()
        .unwrap();
    assert!(matches!(err, OfferError::Malformed(_)), "{err}");
    let (_, audio_only, _) = publisher(now, true, false);
    let err = WhipSession::answer(&config(), &audio_only, now)
        .err()
        .unwrap();
    assert!(matches!(err, OfferError::NoH264), "{err}");
    assert!(err.to_string().contains("H.264"), "{err}");
    let (_, both, _) = publisher(now, true, true);
    let (_, answer) = WhipSession::answer(&config(), &both, now).unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
}

/// Moves datagrams between the two peers until both are idle at `now`.
fn pump(server: &mut WhipSession, client: &mut Rtc, now: Instant, events: &mut Vec<Event>) {
    let (s_addr, c_addr) = (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
    for _ in 0..1000 {
        let mut moved = false;
        loop {
            match server.poll_output() {
                SessionOutput::Transmit {
                    destination, data, ..
                } => {
                    assert_eq!(destination, c_addr);
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: s_addr,
                            destination: c_addr,
                            contents: data.as_slice().try_into().unwrap(),
                        },
                    );
                    client.handle_input(input).unwrap();
                    moved = true;
                }
                SessionOutput::KeyframeRequest => {}
                SessionOutput::Timeout(_) | SessionOutput::Closed => break,
            }
        }
        loop {
            match client.poll_output().unwrap() {
                Output::Transmit(t) => {
                    assert!(server.accepts(now, Transport::Udp, c_addr, s_addr, &t.contents));
                    server.handle_datagram(now, Transport::Udp, c_addr, s_addr, &t.contents);
                    moved = true;
                }
                Output::Event(e) => events.push(e),
                Output::Timeout(_) => break,
            }
        }
        if !moved {
            return;
        }
    }
}

fn step(server: &mut WhipSession, client: &mut Rtc, now: Instant, events: &mut Vec<Event>) {
    server.handle_timeout(now);
    client.handle_input(Input::Timeout(now)).unwrap();
    pump(server, client, now, events);
}

/// The client's payload type for `codec` on `mid`.
fn pt(client: &mut Rtc, mid: Mid, codec: Codec) -> Pt {
    let writer = client.writer(mid).unwrap();
    writer
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
        .unwrap()
}

#[test]
fn a_publisher_connects_is_asked_for_a_keyframe_and_its_media_becomes_frames() {
    let start = Instant::now();
    let (mut client, offer, pending) = publisher(start, true, true);
    let (mut server, answer) = WhipSession::answer(&config(), &offer, start).unwrap();
    client
        .sdp_api()
        .accept_answer(pending.offer, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let mut events = Vec::new();
    let mut now = start;
    for _ in 0..200 {
        now += Duration::from_millis(10);
        step(&mut server, &mut client, now, &mut events);
        if server.is_connected() {
            break;
        }
    }
    assert!(server.is_connected(), "ICE and DTLS come up");
    assert!(server.has_video() && server.has_audio());
    let (video, audio) = (pending.video.unwrap(), pending.audio.unwrap());
    let (h264, opus) = (
        pt(&mut client, video, Codec::H264),
        pt(&mut client, audio, Codec::Opus),
    );

    // A delta first (a publisher joining mid-GOP): dropped, and a keyframe requested.
    let rtp0 = 7_000_000u64;
    let frames: [(u64, Vec<u8>); 4] = [
        (0, annex_b(&[&[0x41, 0x9a, 0x01, 0x11]])),
        (3000, annex_b(&[SPS, PPS, &[0x65, 0x88, 0x84, 0x21]])),
        (6000, annex_b(&[&[0x41, 0x9a, 0x02, 0x11]])),
        (9000, annex_b(&[&[0x41, 0x9a, 0x03, 0x11]])),
    ];
    for (i, (offset, data)) in frames.into_iter().enumerate() {
        now += Duration::from_millis(33);
        let w = client.writer(video).unwrap();
        w.write(h264, now, RtpTime::from_90khz(rtp0 + offset), data)
            .unwrap();
        let w = client.writer(audio).unwrap();
        w.write(
            opus,
            now,
            RtpTime::new(
                480_000 + i as u64 * 960,
                str0m::media::Frequency::FORTY_EIGHT_KHZ,
            ),
            vec![0xfc, 0xff, 0xfe],
        )
        .unwrap();
        step(&mut server, &mut client, now, &mut events);
        if i == 0 {
            // The next timeout after the lost picture sends the PLI.
            now += Duration::from_millis(600);
            step(&mut server, &mut client, now, &mut events);
        }
    }
    for _ in 0..20 {
        now += Duration::from_millis(10);
        step(&mut server, &mut client, now, &mut events);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::KeyframeRequest(r) if r.mid == video)),
        "the publisher was asked for a keyframe"
    );

    let mut out = Vec::new();
    while let Some(e) = server.poll_event() {
        out.push(e);
    }
    let config = out.iter().find_map(|e| match e {
        WhipEvent::VideoConfig(c) => Some(c),
        _ => None,
    });
    assert_eq!(config.map(|c| (c.width, c.height)), Some((320, 240)));
    let video_frames: Vec<&media::Frame> = out
        .iter()
        .filter_map(|e| match e {
            WhipEvent::Video(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(
        video_frames.len(),
        3,
        "the delta before the keyframe is dropped"
    );
    assert!(video_frames[0].keyframe && !video_frames[1].keyframe);
    assert_eq!(video_frames[0].data[4] & 0x1f, 5);
    let steps: Vec<i64> = video_frames
        .windows(2)
        .map(|w| w[1].dts.ticks - w[0].dts.ticks)
        .collect();
    assert_eq!(steps, vec![3000, 3000], "90 kHz RTP time is media time");
    assert!(video_frames.iter().all(|f| f.pts == f.dts));
    let opus_frames: Vec<&media::Frame> = out
        .iter()
        .filter_map(|e| match e {
            WhipEvent::Opus(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(opus_frames.len(), 4);
    assert!(opus_frames.iter().all(|f| f.pts.timescale.get() == 48_000));
    assert_eq!(opus_frames[1].pts.ticks - opus_frames[0].pts.ticks, 960);

    server.close();
    assert!(!server.is_alive());
}
