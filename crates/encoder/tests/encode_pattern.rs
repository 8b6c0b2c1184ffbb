//! The encoder on the real test pattern with the real libx264 and AAC encoders.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use encoder::publish::FlvMuxer;
use encoder::{AudioEncoderConfig, Encoded, Encoder, EncoderConfig, VideoEncoderConfig};
use media::{CodecConfig, TrackKind};
use source::{FrameRate, Source, SourceFrame, TestPattern, TestPatternConfig};

fn pattern(fps: FrameRate) -> TestPattern {
    TestPattern::new(TestPatternConfig {
        width: 320,
        height: 180,
        frame_rate: fps,
        name: "test".into(),
        start_unix_ms: 1_800_000_000_000,
        audio: true,
    })
    .unwrap()
}

fn encoder(fps: FrameRate, keyframe_ms: u64) -> Encoder {
    Encoder::new(EncoderConfig {
        video: Some(VideoEncoderConfig::new(320, 180, fps, 500_000)),
        audio: Some(AudioEncoderConfig::default()),
        keyframe_interval: Duration::from_millis(keyframe_ms),
    })
    .unwrap()
}

#[test]
fn keyframes_exactly_on_interval_boundaries_and_no_encoder_delay() {
    for fps in [
        FrameRate::new(30, 1),
        FrameRate::new(30000, 1001),
        FrameRate::new(25, 1),
    ] {
        let mut source = pattern(fps);
        let mut enc = encoder(fps, 1000);
        let mut out = Vec::new();
        let mut pictures_in = 0;
        let mut video = Vec::new();
        let mut audio = Vec::new();
        let mut tracks_seen = false;
        while pictures_in < 95 {
            let frame = source.next_frame().unwrap().unwrap();
            let is_video = matches!(frame, SourceFrame::Video(_));
            enc.encode(&frame, &mut out).unwrap();
            for e in out.drain(..) {
                match e {
                    Encoded::Tracks(t) => {
                        assert!(video.is_empty() && audio.is_empty(), "tracks come first");
                        let Some(CodecConfig::Avc(avc)) = t.video.map(|v| v.codec) else {
                            panic!("no video track")
                        };
                        assert_eq!((avc.width, avc.height), (320, 180));
                        tracks_seen = true;
                    }
                    Encoded::Frame(f) if f.kind == TrackKind::Video => video.push(f),
                    Encoded::Frame(f) => audio.push(f),
                }
            }
            if is_video {
                pictures_in += 1;
                // Low-latency settings: each picture comes out as it goes in.
                assert_eq!(video.len(), pictures_in, "encoder delay at {fps}");
            }
        }
        assert!(tracks_seen);
        let mut interval = None;
        for f in &video {
            assert_eq!(f.dts, f.pts, "no B-frames by default");
            // An IDR exactly on the first picture of every second, and nowhere else.
            let this = f.pts.ticks.div_euclid(90_000);
            assert_eq!(
                f.keyframe,
                interval != Some(this),
                "keyframe at {:?} ({fps})",
                f.pts
            );
            interval = Some(this);
        }
        assert_eq!(
            video.iter().filter(|f| f.keyframe).count(),
            4,
            "{fps}: frames 0, 1 s, 2 s, 3 s"
        );
        for pair in audio.windows(2) {
            assert_eq!(
                pair[1].pts.ticks - pair[0].pts.ticks,
                1024,
                "contiguous AAC frames"
            );
        }
        assert!(
            audio.first().unwrap().pts.ticks >= 0,
            "no negative audio timestamps"
        );
    }
}

#[test]
fn flv_packets_carry_millisecond_timestamps_and_headers_first() {
    let fps = FrameRate::new(30, 1);
    let mut source = pattern(fps);
    let mut enc = encoder(fps, 2000);
    let mut muxer = FlvMuxer::default();
    let mut out = Vec::new();
    let mut packets = Vec::new();
    for _ in 0..20 {
        enc.encode(&source.next_frame().unwrap().unwrap(), &mut out)
            .unwrap();
        for e in out.drain(..) {
            muxer.push(&e, &mut packets);
        }
    }
    assert!(
        packets[0].header && packets[1].header,
        "sequence headers first"
    );
    assert_eq!(muxer.headers().len(), 2);
    let video: Vec<_> = packets
        .iter()
        .filter(|p| !p.header && p.kind == TrackKind::Video)
        .collect();
    let stamps: Vec<u32> = video.iter().map(|p| p.timestamp_ms).collect();
    assert_eq!(&stamps[..4], &[0, 33, 66, 100]);
    assert_eq!(video[0].body[0], 0x17, "keyframe, AVC");
    assert_eq!(video[1].body[0], 0x27, "inter frame, AVC");
    // The muxer's output is what our ingest's FLV parser reads back.
    let tag = media::flv::parse_video_tag(video[0].body.clone()).unwrap();
    assert!(matches!(
        tag.packet,
        media::flv::VideoPacket::AvcNalus {
            composition_time_ms: 0,
            ..
        }
    ));
}

/// HEVC (libx265) and AV1 (libsvtav1 by period, libaom-av1 forced): keyframes on the
/// interval boundaries and nowhere else, the configuration from the encoder's own
/// parameter sets, and Enhanced RTMP tags that read back as what went in.
#[test]
fn hevc_and_av1_keyframes_on_boundaries_and_enhanced_rtmp_tags() {
    use media::VideoCodec;
    use media::flv::{self, VideoPacket};
    let fps = FrameRate::new(30, 1);
    for (codec, name) in [
        (VideoCodec::Hevc, None),
        (VideoCodec::Av1, None),
        (VideoCodec::Av1, Some("libaom-av1")),
    ] {
        let mut source = pattern(fps);
        let mut video_config = VideoEncoderConfig::new(320, 180, fps, 300_000);
        video_config.codec = codec;
        video_config.preset = "ultrafast".into();
        if let Some(name) = name {
            // A long period: every keyframe seen is a forced one.
            video_config.encoder = Some(name.into());
            video_config.gop = Some(300);
        }
        let mut enc = Encoder::new(EncoderConfig {
            video: Some(video_config),
            audio: Some(AudioEncoderConfig::default()),
            keyframe_interval: Duration::from_millis(500),
        })
        .unwrap();
        let mut out = Vec::new();
        let mut pictures_in = 0;
        while pictures_in < 40 {
            let frame = source.next_frame().unwrap().unwrap();
            pictures_in += usize::from(matches!(frame, SourceFrame::Video(_)));
            enc.encode(&frame, &mut out).unwrap();
        }
        enc.finish(&mut out).unwrap();
        let mut muxer = FlvMuxer::default();
        let mut packets = Vec::new();
        let mut keyframes = Vec::new();
        for e in &out {
            match e {
                Encoded::Tracks(t) => {
                    let v = t.video.as_ref().expect("a video track");
                    assert_eq!(v.codec.video_codec(), Some(codec));
                    assert_eq!(v.codec.video_size(), Some((320, 180)), "{codec:?}");
                }
                Encoded::Frame(f) if f.kind == TrackKind::Video => {
                    if f.keyframe {
                        keyframes.push(f.pts.ticks);
                    }
                }
                Encoded::Frame(_) => {}
            }
            muxer.push(e, &mut packets);
        }
        assert_eq!(
            keyframes,
            [0, 45_000, 90_000],
            "{codec:?} {name:?} keyframes"
        );
        let mut coded = 0;
        for p in packets.iter().filter(|p| p.kind == TrackKind::Video) {
            // Enhanced RTMP: the ExHeader bit and the FourCC.
            assert_eq!(p.body[0] & 0x80, 0x80);
            assert_eq!(&p.body[1..5], &codec.fourcc());
            match flv::parse_video_tag(p.body.clone()).unwrap().packet {
                VideoPacket::SequenceStart { codec: c, .. } => assert_eq!(c, codec),
                VideoPacket::CodedFrames { codec: c, .. } => {
                    assert_eq!(c, codec);
                    coded += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(coded >= 40, "{codec:?}: {coded} coded frames");
    }
}
