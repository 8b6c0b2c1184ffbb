//! The demuxer on transport streams that ffmpeg writes at test time.

use std::process::Command;

use media::{CodecConfig, Frame, TrackKind, Tracks};
use ts::{DemuxEvent, DemuxStats, Demuxer, PACKET_LEN, WRAP};

mod support;

use support::generate;

const H264: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"];

#[derive(Default)]
struct Demuxed {
    events: Vec<DemuxEvent>,
    stats: DemuxStats,
}

impl Demuxed {
    fn frames(&self, kind: TrackKind) -> Vec<&Frame> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DemuxEvent::Frame(f) if f.kind == kind => Some(f),
                _ => None,
            })
            .collect()
    }
    fn tracks(&self) -> Vec<&Tracks> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DemuxEvent::Tracks(t) => Some(t),
                _ => None,
            })
            .collect()
    }
}

/// Feeds `data` in uneven pieces (as datagrams and reads split it), then finishes.
fn demux(data: &[u8]) -> Demuxed {
    let mut demuxer = Demuxer::new();
    let mut out = Demuxed::default();
    let sizes = [1316, 1000, 7, 188, 4096, 1];
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        demuxer.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
        while let Some(e) = demuxer.poll_event() {
            out.events.push(e);
        }
    }
    demuxer.finish();
    while let Some(e) = demuxer.poll_event() {
        out.events.push(e);
    }
    out.stats = demuxer.stats();
    out
}

/// A sample's length-prefixed NAL units (4-byte lengths), which must fill it exactly.
fn whole_nal_units(sample: &[u8]) -> Vec<&[u8]> {
    let units: Vec<&[u8]> = media::avc::avcc_nalus(sample, 4).collect();
    let framed: usize = units.iter().map(|u| 4 + u.len()).sum();
    assert_eq!(
        framed,
        sample.len(),
        "a sample of whole NAL units and nothing else"
    );
    assert!(units.iter().all(|u| !u.is_empty()), "an empty NAL unit");
    units
}

/// Fails, naming it, if some stream of the program was not taken.
fn assert_every_stream_taken(d: &Demuxed) {
    let unsupported = d
        .events
        .iter()
        .find(|e| matches!(e, DemuxEvent::UnsupportedStream { .. }));
    assert!(unsupported.is_none(), "{unsupported:?}");
}

fn assert_increasing(frames: &[&Frame]) {
    for pair in frames.windows(2) {
        assert!(
            pair[1].dts.ticks > pair[0].dts.ticks,
            "decode times go backwards: {:?} then {:?}",
            pair[0].dts,
            pair[1].dts
        );
    }
}

#[test]
fn h264_and_aac_become_tracks_and_frames() {
    let d = demux(&generate(2, H264, &[]));
    let tracks = d.tracks();
    assert_eq!(tracks.len(), 1, "one track set: {tracks:?}");
    let Some(CodecConfig::Avc(avc)) = tracks[0].video.as_ref().map(|t| &t.codec) else {
        panic!("an H.264 video track: {tracks:?}");
    };
    assert_eq!((avc.width, avc.height), (320, 240));
    let Some(CodecConfig::Aac(aac)) = tracks[0].audio.as_ref().map(|t| &t.codec) else {
        panic!("an AAC audio track: {tracks:?}");
    };
    assert_eq!((aac.sample_rate, aac.channels), (48_000, 1));
    // The track set comes before the first frame.
    assert!(matches!(
        d.events
            .iter()
            .find(|e| matches!(e, DemuxEvent::Tracks(_) | DemuxEvent::Frame(_))),
        Some(DemuxEvent::Tracks(_))
    ));

    let video = d.frames(TrackKind::Video);
    assert_eq!(video.len(), 60, "2 s at 30 fps");
    assert!(video[0].keyframe, "starts with the IDR");
    assert_eq!(
        video.iter().filter(|f| f.keyframe).count(),
        1,
        "one 2 s GOP"
    );
    assert_increasing(&video);
    assert_eq!(
        video[1].dts.ticks - video[0].dts.ticks,
        3000,
        "30 fps on 90 kHz"
    );
    // AVCC framing: the first NAL length covers a NAL, no start codes.
    let first = &video[0].data;
    let len = u32::from_be_bytes([first[0], first[1], first[2], first[3]]) as usize;
    assert!(len > 0 && len + 4 <= first.len());
    assert!(media::avc::is_idr(first, 4));
    // Every sample is whole NAL units and nothing else (the PES buffer each is made
    // from is reused from frame to frame: nothing of an earlier one may remain).
    for frame in &video {
        whole_nal_units(&frame.data);
    }

    let audio = d.frames(TrackKind::Audio);
    // ~2 s of 1024-sample frames at 48 kHz (ffmpeg's AAC priming adds one or two).
    assert!(
        (90..=98).contains(&audio.len()),
        "{} AAC frames",
        audio.len()
    );
    assert_increasing(&audio);
    for pair in audio.windows(2) {
        assert_eq!(pair[1].dts.ticks - pair[0].dts.ticks, 1024, "sample-exact");
    }
    // Audio and video share one clock: they start within a frame of each other.
    let (v0, a0) = (video[0].dts.as_millis(), audio[0].dts.as_millis());
    assert!((v0 - a0).abs() < 200, "video at {v0} ms, audio at {a0} ms");

    assert_eq!(d.stats.continuity_gaps, 0);
    assert_eq!(d.stats.malformed, 0);
    assert_eq!(d.stats.dropped_frames, 0);
    assert_eq!(d.stats.programs, 1);
}

#[test]
fn timestamps_unwrap_across_2_pow_33() {
    // 95 440 s is 2^33 ticks of 90 kHz less ~3.7 s: the 6 s stream crosses the wrap.
    let d = demux(&generate(6, H264, &["-output_ts_offset", "95440"]));
    let video = d.frames(TrackKind::Video);
    assert_eq!(video.len(), 180);
    assert_increasing(&video);
    assert!(video[0].dts.ticks < WRAP, "starts before the wrap");
    assert!(
        video[179].dts.ticks > WRAP,
        "ends after it, unwrapped: {}",
        video[179].dts.ticks
    );
    let audio = d.frames(TrackKind::Audio);
    assert_increasing(&audio);
    assert!(
        audio
            .last()
            .is_some_and(|a| a.dts.ticks > WRAP / 90_000 * 48_000)
    );
    assert_eq!(d.stats.timestamp_wraps, 1);
    assert_eq!(d.stats.dropped_frames, 0);
}

/// The PID of the packet at `index`.
fn pid(data: &[u8], index: usize) -> u16 {
    let p = &data[index * PACKET_LEN..];
    (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])
}

#[test]
fn continuity_gaps_are_counted_and_survived() {
    let clean = generate(4, H264, &[]);
    let packets = clean.len() / PACKET_LEN;
    let video_pid = 0x100;
    // Drop every 50th packet of the video PID, inside predicted pictures (a lost
    // keyframe would rightly take its parameter sets, and the GOP, with it).
    let mut lossy = Vec::with_capacity(clean.len());
    let mut seen = 0;
    let mut dropped = 0;
    let mut in_keyframe = false;
    for i in 0..packets {
        let p = &clean[i * PACKET_LEN..(i + 1) * PACKET_LEN];
        if pid(&clean, i) == video_pid {
            let unit_start = p[1] & 0x40 != 0;
            if unit_start {
                // ffmpeg flags a keyframe's first packet random_access_indicator.
                in_keyframe = p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x40 != 0;
            }
            seen += 1;
            if seen % 50 == 0 && !unit_start && !in_keyframe {
                dropped += 1;
                continue;
            }
        }
        lossy.extend_from_slice(&clean[i * PACKET_LEN..(i + 1) * PACKET_LEN]);
    }
    assert!(dropped >= 3, "the stream is long enough to lose packets");
    let gaps: Vec<_> = demux(&lossy)
        .events
        .into_iter()
        .filter(|e| matches!(e, DemuxEvent::ContinuityGap { pid, .. } if *pid == video_pid))
        .collect();
    assert_eq!(gaps.len(), dropped, "each lost packet reported once");

    let d = demux(&lossy);
    assert_eq!(d.stats.continuity_gaps, dropped as u64);
    let video = d.frames(TrackKind::Video);
    // Each loss costs the access unit it hit, no more.
    assert_eq!(video.len(), 120 - dropped, "{dropped} losses");
    assert_eq!(d.stats.dropped_frames, dropped as u64);
    assert_increasing(&video);
    // Audio (another PID) is untouched.
    assert_eq!(
        d.frames(TrackKind::Audio).len(),
        demux(&clean).frames(TrackKind::Audio).len()
    );
}

#[test]
fn a_new_program_map_is_a_new_track_set() {
    // A publisher that restarts with another picture size and without audio: a
    // different PMT mid-stream.
    let mut data = generate(2, H264, &[]);
    let second = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=30",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-f",
            "mpegts",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(second.status.success());
    data.extend_from_slice(&second.stdout);
    let d = demux(&data);
    let programs = d
        .events
        .iter()
        .filter(|e| matches!(e, DemuxEvent::Program(_)))
        .count();
    assert_eq!(programs, 2);
    let tracks = d.tracks();
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    assert!(tracks[0].audio.is_some() && tracks[1].audio.is_none());
    let Some(CodecConfig::Avc(avc)) = tracks[1].video.as_ref().map(|t| &t.codec) else {
        panic!("H.264 in the second program");
    };
    assert_eq!((avc.width, avc.height), (640, 360));
    // Every frame of both programs comes out (the second restarts its clock).
    assert_eq!(d.frames(TrackKind::Video).len(), 120);
}

const HEVC: &[&str] = &[
    "-c:v",
    "libx265",
    "-pix_fmt",
    "yuv420p",
    "-preset",
    "ultrafast",
    "-x265-params",
    "log-level=error:keyint=30:min-keyint=30:bframes=2",
];

#[test]
fn hevc_and_aac_become_tracks_and_frames() {
    let d = demux(&generate(2, HEVC, &[]));
    assert_every_stream_taken(&d);
    let tracks = d.tracks();
    assert_eq!(tracks.len(), 1, "one track set: {tracks:?}");
    let Some(CodecConfig::Hevc(hevc)) = tracks[0].video.as_ref().map(|t| &t.codec) else {
        panic!("an HEVC video track: {tracks:?}");
    };
    assert_eq!((hevc.width, hevc.height), (320, 240));
    assert_eq!(hevc.nal_length_size, 4);
    let codec = hevc.codec_string();
    assert!(codec.starts_with("hvc1.1."), "Main profile: {codec}");
    assert!(tracks[0].audio.is_some());

    let video = d.frames(TrackKind::Video);
    assert_eq!(video.len(), 60, "2 s at 30 fps");
    assert!(video[0].keyframe, "starts with the IRAP picture");
    assert_eq!(
        video.iter().filter(|f| f.keyframe).count(),
        2,
        "two 1 s GOPs"
    );
    assert_increasing(&video);
    // B-frames: presentation after decode, by a composition offset.
    assert!(video.iter().all(|f| f.pts.ticks >= f.dts.ticks));
    assert!(video.iter().any(|f| f.pts.ticks > f.dts.ticks));
    // Length-prefixed NAL units that fill the sample exactly, no parameter sets or AUDs.
    for frame in &video {
        for unit in whole_nal_units(&frame.data) {
            let kind = media::hevc::nal_type(unit).unwrap();
            assert!(!(32..=35).contains(&kind), "NAL type {kind} in a sample");
        }
    }
    assert!(d.frames(TrackKind::Audio).len() > 80);
}

#[test]
fn av1_in_the_start_code_format_becomes_tracks_and_frames() {
    // AOM's AV1 in MPEG-2 TS: stream type 0x06, `AV01` registration, start codes.
    let units = support::av1_transport_stream(4);
    let data: Vec<u8> = units.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let d = demux(&data);
    assert_eq!(
        d.stats.malformed,
        0,
        "{:?}",
        d.events
            .iter()
            .filter(|e| matches!(e, DemuxEvent::Malformed { .. }))
            .collect::<Vec<_>>()
    );
    assert_every_stream_taken(&d);
    let tracks = d.tracks();
    assert_eq!(tracks.len(), 1, "one track set: {tracks:?}");
    let Some(CodecConfig::Av1(av1)) = tracks[0].video.as_ref().map(|t| &t.codec) else {
        panic!("an AV1 video track: {tracks:?}");
    };
    assert_eq!((av1.width, av1.height), (320, 240));
    assert!(
        av1.codec_string().starts_with("av01.0."),
        "{}",
        av1.codec_string()
    );
    assert!(matches!(
        tracks[0].audio.as_ref().map(|t| &t.codec),
        Some(CodecConfig::Aac(_))
    ));

    let video = d.frames(TrackKind::Video);
    assert_eq!(video.len(), 120, "4 s at 30 fps");
    assert!(video[0].keyframe, "starts with the key frame");
    assert_eq!(
        video.iter().filter(|f| f.keyframe).count(),
        2,
        "two 2 s GOPs"
    );
    assert_increasing(&video);
    // Low-overhead OBUs that fill the sample exactly, without temporal delimiters; the
    // key frames carry the sequence header.
    for frame in &video {
        let obus: Vec<_> = media::av1::obus(&frame.data).collect();
        assert_eq!(
            obus.iter().map(|o| o.bytes.len()).sum::<usize>(),
            frame.data.len()
        );
        assert!(
            obus.iter()
                .all(|o| o.obu_type != media::av1::OBU_TEMPORAL_DELIMITER)
        );
        assert_eq!(
            media::av1::find_sequence_header(&frame.data).is_some(),
            frame.keyframe
        );
    }
    assert!(d.frames(TrackKind::Audio).len() > 160);
}

#[test]
fn new_hevc_parameter_sets_are_a_new_track_set() {
    // Two encodes of different sizes, one after the other on the same PIDs and clock.
    let mut data = generate(1, HEVC, &[]);
    data.extend(generate(
        1,
        &[
            "-c:v",
            "libx265",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-vf",
            "scale=160x120",
        ],
        &["-output_ts_offset", "2"],
    ));
    let d = demux(&data);
    let sizes: Vec<(u32, u32)> = d
        .tracks()
        .iter()
        .filter_map(|t| match t.video.as_ref().map(|v| &v.codec) {
            Some(CodecConfig::Hevc(h)) => Some((h.width, h.height)),
            _ => None,
        })
        .collect();
    assert_eq!(sizes.first(), Some(&(320, 240)), "{sizes:?}");
    assert_eq!(sizes.last(), Some(&(160, 120)), "{sizes:?}");
}

#[test]
fn damaged_and_random_input_never_panics() {
    let streams = [generate(1, H264, &[]), generate(1, HEVC, &[])];
    // A cheap deterministic generator (xorshift): flip bytes, cut pieces, add noise.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..80 {
        // H.264 and HEVC (damaged parameter sets are another SPS parser's input).
        let mut data = streams[round % 2].clone();
        for _ in 0..(round / 2 * 5 + 1) {
            let at = (next() as usize) % data.len();
            data[at] = next() as u8;
        }
        let cut = (next() as usize) % data.len();
        data.drain(cut..(cut + (next() as usize) % 2000).min(data.len()));
        let d = demux(&data);
        assert_increasing(&d.frames(TrackKind::Video));
    }
    let noise: Vec<u8> = (0..100_000).map(|_| next() as u8).collect();
    let d = demux(&noise);
    assert!(d.frames(TrackKind::Video).is_empty());
}

#[test]
fn h264_and_opus_become_tracks_and_frames() {
    // ffmpeg writes Opus as stream type 0x06 with an `Opus` registration descriptor,
    // each packet behind its control header.
    let d = demux(&generate(2, H264, &["-c:a", "libopus", "-b:a", "64k"]));
    assert_every_stream_taken(&d);
    let tracks = d.tracks();
    assert_eq!(tracks.len(), 1, "one track set: {tracks:?}");
    let audio = tracks[0].audio.as_ref().expect("an audio track");
    assert_eq!(audio.timescale.get(), 48_000);
    assert_eq!(
        audio.codec,
        CodecConfig::Opus(media::OpusConfig { channels: 1 }),
        "the tone is mono"
    );
    assert!(tracks[0].video.is_some());

    let frames = d.frames(TrackKind::Audio);
    // libopus's 20 ms packets: 100 in 2 s (and its look-ahead's one or two).
    assert!(
        (95..=103).contains(&frames.len()),
        "{} Opus packets",
        frames.len()
    );
    assert_increasing(&frames);
    for pair in frames.windows(2) {
        assert_eq!(pair[1].dts.ticks - pair[0].dts.ticks, 960, "20 ms apart");
    }
    for f in &frames {
        assert_eq!(
            media::opus::packet_samples(&f.data),
            Some(960),
            "whole packets"
        );
    }
    let video = d.frames(TrackKind::Video);
    assert_eq!(video.len(), 60);
    let (v0, a0) = (video[0].dts.as_millis(), frames[0].dts.as_millis());
    assert!((v0 - a0).abs() < 200, "video at {v0} ms, audio at {a0} ms");
    assert_eq!(d.stats.malformed, 0);
    assert_eq!(d.stats.dropped_frames, 0);
}
