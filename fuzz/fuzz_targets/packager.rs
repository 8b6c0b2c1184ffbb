//! The rendition packager driven by a list of operations: track changes, frames with
//! arbitrary times and flags, discontinuities, the end, playlist renders and lookups.
//! Invariants: no panic, `check_invariants`, every playlist parses with m3u8-rs with
//! EXTINF within TARGETDURATION, every chunk reads back and its tfdt never goes back.
#![no_main]
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::{Frame, MediaTime, TrackKind, cmaf};
use package::{PackageEvent, PackagerConfig, RenditionPackager};

#[derive(Arbitrary, Debug)]
enum Op {
    Tracks {
        video: bool,
        audio: Option<u8>,
    },
    /// Decode time as a step from the track's last one (may go back).
    Video {
        step: i32,
        cts: i16,
        keyframe: bool,
        len: u8,
    },
    Audio {
        step: i16,
        len: u8,
    },
    /// An absolute decode time: jumps.
    Jump {
        audio: bool,
        dts: i64,
    },
    Discontinuity,
    End,
    Playlist {
        skip: bool,
    },
    Blocking {
        msn: u8,
        part: Option<u8>,
    },
    Clock(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    segment_ms: u16,
    part_ms: u16,
    window: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    if rivulet_fuzz::debug() {
        eprintln!("{input:#?}");
    }
    let segment_target_ms = 500 + u32::from(input.segment_ms) % 5000;
    let config = PackagerConfig {
        segment_target_ms,
        part_target_ms: 50 + u32::from(input.part_ms) % (segment_target_ms / 2 - 49),
        window_segments: 3 + usize::from(input.window % 8),
    };
    config.validate().expect("valid settings");
    let mut p = RenditionPackager::new(config);
    let mut now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let rates = [8000, 44100, 48000];
    let mut rate = 48000;
    let mut dts = [0i64; 2];
    let mut last_tfdt = [None::<u64>; 2];
    for op in input.ops {
        let mut restart = false;
        match op {
            Op::Tracks { video, audio } => {
                let audio = audio.map(|r| rates[usize::from(r) % rates.len()]);
                rate = audio.unwrap_or(rate);
                p.handle_tracks(Arc::new(rivulet_fuzz::tracks(video, audio)), now);
                // A new init segment may change the timescales: compare afresh
                // (after the events of the chunks flushed by the change).
                restart = true;
            }
            Op::Video {
                step,
                cts,
                keyframe,
                len,
            } => {
                dts[0] = dts[0].saturating_add(i64::from(step));
                let frame = Frame {
                    kind: TrackKind::Video,
                    dts: MediaTime::new(dts[0], media::VIDEO_TIMESCALE),
                    pts: MediaTime::new(
                        dts[0].saturating_add(i64::from(cts)),
                        media::VIDEO_TIMESCALE,
                    ),
                    keyframe,
                    data: Bytes::from(vec![0x65; usize::from(len)]),
                };
                let _ = p.handle_frame(frame, now);
            }
            Op::Audio { step, len } => {
                dts[1] = dts[1].saturating_add(i64::from(step));
                audio(&mut p, dts[1], rate, len, now);
            }
            Op::Jump {
                audio: is_audio,
                dts: t,
            } => {
                let t = t % (1 << 40);
                if is_audio {
                    dts[1] = t;
                    audio(&mut p, t, rate, 1, now);
                } else {
                    dts[0] = t;
                    let frame = Frame {
                        kind: TrackKind::Video,
                        dts: MediaTime::new(t, media::VIDEO_TIMESCALE),
                        pts: MediaTime::new(t, media::VIDEO_TIMESCALE),
                        keyframe: true,
                        data: Bytes::from_static(&[0x65]),
                    };
                    let _ = p.handle_frame(frame, now);
                }
            }
            Op::Discontinuity => p.handle_discontinuity(),
            Op::End => p.handle_end(now),
            Op::Playlist { skip } => check_playlist(&p.media_playlist(skip, &[])),
            Op::Blocking { msn, part } => {
                let _ = p.blocking_readiness(u64::from(msn), part.map(u32::from));
                let _ = p.part(u64::from(msn), u32::from(part.unwrap_or(0)));
                let _ = p.segment(u64::from(msn));
            }
            Op::Clock(ms) => now += Duration::from_millis(u64::from(ms)),
        }
        while let Some(event) = p.poll_event() {
            if let PackageEvent::ChunkAppended { msn, part } = event {
                let view = p.part(msn, part).expect("an appended part is there");
                let chunk = view.chunks.last().expect("an appended chunk is there");
                let summary = cmaf::inspect_fragment(chunk).expect("the chunk reads back");
                let payload: usize = summary
                    .tracks
                    .iter()
                    .flat_map(|t| &t.sizes)
                    .map(|&s| s as usize)
                    .sum();
                assert_eq!(summary.mdat_len, payload, "sample sizes add up to the mdat");
                for t in &summary.tracks {
                    let i = usize::from(t.track_id == cmaf::AUDIO_TRACK_ID);
                    if let Some(prev) = last_tfdt[i] {
                        assert!(
                            t.base_media_decode_time >= prev,
                            "tfdt went back: {} after {prev} (track {})",
                            t.base_media_decode_time,
                            t.track_id
                        );
                    }
                    // Not the previous chunk's end: a sample's duration is an estimate
                    // (the next frame has not arrived when it is written), so a chunk
                    // may start before the previous one's estimated end.
                    last_tfdt[i] = Some(t.base_media_decode_time);
                }
            }
        }
        if restart {
            last_tfdt = [None; 2];
        }
        p.check_invariants();
    }
    check_playlist(&p.media_playlist(false, &[]));
    let _ = p.variant();
});

fn audio(p: &mut RenditionPackager, t: i64, rate: u32, len: u8, now: std::time::SystemTime) {
    let timescale = std::num::NonZeroU32::new(rate).expect("non-zero");
    let frame = Frame {
        kind: TrackKind::Audio,
        dts: MediaTime::new(t, timescale),
        pts: MediaTime::new(t, timescale),
        keyframe: true,
        data: Bytes::from(vec![0x21; usize::from(len)]),
    };
    let _ = p.handle_frame(frame, now);
}

fn check_playlist(text: &str) {
    let playlist = match m3u8_rs::parse_media_playlist_res(text.as_bytes()) {
        Ok(playlist) => playlist,
        Err(e) => panic!("playlist does not parse: {e:?}\n{text}"),
    };
    // m3u8-rs keeps EXTINF as f32: read the values from the text for the comparison.
    let target = playlist.target_duration;
    let durations = text.lines().filter_map(|l| l.strip_prefix("#EXTINF:"));
    let mut count = 0;
    for d in durations {
        let d: f64 = d.trim_end_matches(',').parse().expect("EXTINF is a number");
        assert!(
            d.round() as u64 <= target,
            "EXTINF {d} > TARGETDURATION {target}\n{text}"
        );
        count += 1;
    }
    assert_eq!(count, playlist.segments.len());
}
