#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use media::cmaf::inspect_fragment;
use media::{AacConfig, AvcConfig, MediaTime, Track, VIDEO_TIMESCALE};

use super::*;

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn tracks(audio: bool, video: bool) -> Arc<Tracks> {
    let avc =
        AvcConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)])
            .unwrap();
    Arc::new(Tracks {
        video: video.then(|| Track {
            kind: TrackKind::Video,
            timescale: VIDEO_TIMESCALE,
            codec: CodecConfig::Avc(avc),
        }),
        audio: audio.then(|| Track {
            kind: TrackKind::Audio,
            timescale: NonZeroU32::new(48_000).unwrap(),
            codec: CodecConfig::Aac(AacConfig::build(2, 48_000, 2)),
        }),
    })
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_575_845)
}

/// A source: video at `interval` ticks with a keyframe every `gop` frames, B-frame
/// style composition offsets, plus AAC at 48 kHz, interleaved by decode time.
struct Source {
    interval: i64,
    gop: u64,
    n: u64,
    audio_n: i64,
    with_audio: bool,
    /// Round decode times to whole milliseconds, as RTMP carries them (30 fps then
    /// alternates 33 and 34 ms intervals).
    rtmp_ms: bool,
}

impl Source {
    fn new(interval: i64, gop: u64) -> Self {
        Source {
            interval,
            gop,
            n: 0,
            audio_n: 0,
            with_audio: true,
            rtmp_ms: false,
        }
    }

    fn rtmp(interval: i64, gop: u64) -> Self {
        Source {
            rtmp_ms: true,
            ..Source::new(interval, gop)
        }
    }

    /// Frames up to and including video frame `n`.
    fn next(&mut self) -> Vec<Frame> {
        let mut dts = self.n as i64 * self.interval;
        if self.rtmp_ms {
            dts = (dts + 45) / 90 * 90;
        }
        let mut out = Vec::new();
        while self.with_audio && self.audio_n * 1024 * 90_000 / 48_000 <= dts {
            let t = MediaTime::new(self.audio_n * 1024, NonZeroU32::new(48_000).unwrap());
            out.push(Frame {
                kind: TrackKind::Audio,
                dts: t,
                pts: t,
                keyframe: true,
                data: Bytes::from_static(&[0x21; 20]),
            });
            self.audio_n += 1;
        }
        let keyframe = self.n.is_multiple_of(self.gop);
        let cts = if keyframe {
            0
        } else {
            [2, 0, 1][(self.n % 3) as usize] * self.interval
        };
        out.push(Frame {
            kind: TrackKind::Video,
            dts: MediaTime::new(dts, VIDEO_TIMESCALE),
            pts: MediaTime::new(dts + self.interval + cts, VIDEO_TIMESCALE),
            keyframe,
            data: Bytes::from(vec![if keyframe { 0x65 } else { 0x41 }; 200]),
        });
        self.n += 1;
        out
    }
}

/// Every track fragment of every chunk the packager holds, in order.
fn track_fragments(p: &RenditionPackager) -> impl Iterator<Item = media::cmaf::TrackSummary> + '_ {
    p.segments
        .iter()
        .flat_map(|s| &s.parts)
        .flat_map(|p| &p.chunks)
        .flat_map(|chunk| inspect_fragment(chunk).unwrap().tracks)
}

fn feed(p: &mut RenditionPackager, source: &mut Source, frames: u64) {
    for _ in 0..frames {
        for f in source.next() {
            let wall = t0() + Duration::from_micros((f.dts.as_secs_f64() * 1e6) as u64);
            p.handle_frame(f, wall).unwrap();
            p.check_invariants();
            while p.poll_event().is_some() {}
        }
    }
}

fn packager() -> RenditionPackager {
    let mut p = RenditionPackager::new(config());
    p.handle_tracks(tracks(true, true), t0());
    p
}

fn parse(text: &str) -> m3u8_rs::MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// The geometry most of these tests were written for: 334 ms parts, six whole parts of
/// 10 frames in a 2 s segment at 30 fps. The default's own arithmetic is checked by
/// `default_parts_are_whole_at_common_frame_rates`.
fn config() -> PackagerConfig {
    PackagerConfig {
        part_target_ms: 334,
        ..PackagerConfig::default()
    }
}

/// PART-TARGET of [`config`], seconds.
fn part_target_secs() -> f64 {
    f64::from(config().part_target_ms) / 1000.0
}

fn part_durations(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:DURATION="))
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// A frame of `kind` at `t` (decode and presentation time alike).
fn frame_at(kind: TrackKind, t: MediaTime, keyframe: bool) -> Frame {
    Frame {
        kind,
        dts: t,
        pts: t,
        keyframe,
        data: Bytes::from_static(&[0x65; 10]),
    }
}

/// Feeds `frame`, checks the invariants and that every listed part is within
/// PART-TARGET; returns how many parts the playlist lists.
fn feed_within_target(p: &mut RenditionPackager, frame: Frame, what: &str) -> usize {
    p.handle_frame(frame, t0()).unwrap();
    p.check_invariants();
    let target = f64::from(p.config().part_target_ms) / 1000.0;
    let durations = part_durations(&p.media_playlist(false, &[]));
    assert!(
        durations.iter().all(|d| *d <= target + 1e-3),
        "{what}: {durations:?}"
    );
    durations.len()
}

#[test]
fn a_late_pipeline_numbers_segments_and_parts_alike() {
    let mut a = packager();
    let mut b = packager();
    let mut sa = Source::new(3000, 60);
    feed(&mut a, &mut sa, 600);
    // B joins at frame 150, mid-GOP: it starts at the next keyframe.
    let mut sb = Source::new(3000, 60);
    for _ in 0..150 {
        sb.next();
    }
    feed(&mut b, &mut sb, 450);
    let pa = a.media_playlist(false, &[]);
    let pb = b.media_playlist(false, &[]);
    let (ma, mb) = (parse(&pa), parse(&pb));
    assert_eq!(
        ma.segments.last().map(|s| &s.uri),
        mb.segments.last().map(|s| &s.uri),
        "{pa}\n{pb}"
    );
    for sb in &mb.segments {
        let sa = ma.segments.iter().find(|s| s.uri == sb.uri).unwrap();
        assert!((sa.duration - sb.duration).abs() < 1e-6);
        assert_eq!(sa.program_date_time, sb.program_date_time);
    }
    assert_eq!(a.preload_hint(), b.preload_hint());
    assert_eq!(
        a.rendition_report("x").last_part,
        b.rendition_report("x").last_part
    );
    // The first segment's number is its boundary index: 20 s / 2 s.
    assert_eq!(a.segments.back().unwrap().msn, 9);
}

#[test]
fn default_parts_are_whole_at_common_frame_rates() {
    // 25, 29.97, 30, 50 and 60 fps with a 2 s GOP (2.002 s at 29.97): every complete
    // segment is ten parts of the same number of frames, none above PART-TARGET.
    let default = PackagerConfig::default();
    let target = f64::from(default.part_target_ms) / 1000.0;
    for (interval, gop, frames_per_part) in [
        (3600, 50, 5),
        (3003, 60, 6),
        (3000, 60, 6),
        (1800, 100, 10),
        (1500, 120, 12),
    ] {
        let mut p = RenditionPackager::new(default.clone());
        p.handle_tracks(tracks(true, true), t0());
        let mut s = Source::new(interval, gop);
        feed(&mut p, &mut s, 10 * 90_000 / interval as u64);
        let text = p.media_playlist(false, &[]);
        assert!(
            part_durations(&text).iter().all(|d| *d <= target + 1e-9),
            "{text}"
        );
        let complete: Vec<_> = p.segments.iter().filter(|s| s.duration.is_some()).collect();
        assert!(complete.len() >= 3, "interval {interval}");
        for seg in complete {
            assert_eq!(seg.parts.len(), 10, "interval {interval}: {text}");
            for part in &seg.parts {
                assert_eq!(
                    part.duration,
                    frames_per_part * interval,
                    "interval {interval}: {text}"
                );
            }
        }
    }
}

#[test]
fn parts_never_exceed_the_part_target() {
    for (interval, gop) in [(3600, 50), (3003, 60), (3000, 60), (1800, 100), (1500, 120)] {
        let mut p = packager();
        let mut s = Source::new(interval, gop);
        feed(&mut p, &mut s, 10 * 90_000 / interval as u64);
        let text = p.media_playlist(false, &[]);
        parse(&text);
        let durations = part_durations(&text);
        assert!(!durations.is_empty());
        assert!(
            durations.iter().all(|d| *d <= part_target_secs() + 1e-9),
            "interval {interval}: {durations:?}"
        );
        // Parts are not needlessly short: all but a segment's last are >= 85% of the target.
        for seg in p.segments.iter().filter(|s| s.duration.is_some()) {
            for part in &seg.parts[..seg.parts.len() - 1] {
                assert!(
                    part.duration as f64 >= 0.85 * part_target_secs() * 90_000.0 - interval as f64,
                    "interval {interval}"
                );
            }
        }
    }
}

#[test]
fn segments_start_independent_and_chunks_keep_timing() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 200);
    let text = p.media_playlist(false, &[]);
    for seg in p.segments.iter().filter(|s| s.duration.is_some()) {
        assert!(seg.parts[0].independent);
        let first = inspect_fragment(&seg.parts[0].chunks[0]).unwrap();
        let video = first.tracks.iter().find(|t| t.track_id == 1).unwrap();
        assert!(video.keyframes[0]);
        assert_eq!(video.base_media_decode_time as i64, seg.start);
        // Audio in the first chunk too: VLC drops all audio of a stream whose first
        // fragment has none.
        assert!(
            first.tracks.iter().any(|t| t.track_id == 2),
            "segment {}'s first chunk has audio",
            seg.msn
        );
    }
    assert!(text.contains(",INDEPENDENT=YES"));
    // Across all chunks: video tfdt advances by the frame interval, audio by 1024,
    // and composition offsets of the B-frame pattern survive.
    let mut video_next = None;
    let mut audio_next = None;
    let mut offsets = Vec::new();
    for t in track_fragments(&p) {
        let next = if t.track_id == 1 {
            &mut video_next
        } else {
            &mut audio_next
        };
        if let Some(expected) = *next {
            assert_eq!(
                t.base_media_decode_time, expected,
                "track {} is continuous",
                t.track_id
            );
        }
        *next =
            Some(t.base_media_decode_time + t.durations.iter().map(|d| u64::from(*d)).sum::<u64>());
        if t.track_id == 1 {
            offsets.extend(t.composition_offsets);
        } else {
            assert!(t.durations.iter().all(|d| *d == 1024));
        }
    }
    assert!(offsets.contains(&9000) && offsets.contains(&3000) && offsets.contains(&6000));
}

#[test]
fn discontinuity_rebases_and_marks_the_next_segment() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 150);
    let end_before = p.timeline_end().unwrap();
    let last_msn = p.segments.back().unwrap().msn;
    p.handle_discontinuity();
    p.check_invariants();
    // The new publisher's clock starts from zero again.
    let mut s2 = Source::new(3000, 60);
    feed(&mut p, &mut s2, 130);
    let text = p.media_playlist(false, &[]);
    let m = parse(&text);
    assert!(m.segments.iter().any(|s| s.discontinuity), "{text}");
    let after = p.segments.iter().find(|s| s.msn == last_msn + 1).unwrap();
    assert!(after.discontinuity);
    assert_eq!(
        after.start, end_before,
        "the timeline continues where it stopped"
    );
    assert!(
        text.lines()
            .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
            .count()
            >= m.segments.len()
    );
}

#[test]
fn timestamp_jumps_of_hours_start_over_instead_of_making_hour_long_segments() {
    let mut p = RenditionPackager::new(config());
    p.handle_tracks(tracks(false, true), t0());
    let mut s = Source::new(3000, 30);
    s.with_audio = false;
    feed(&mut p, &mut s, 150);
    let hours = 3 * 3600 * 30;
    // +3 h, then back by 3 h: each time 5 s more of frames.
    s.n += hours;
    feed(&mut p, &mut s, 150);
    s.n -= hours;
    let end_before_back = p.timeline_end().unwrap();
    feed(&mut p, &mut s, 150);
    assert!(
        p.timeline_end().unwrap() > end_before_back,
        "the stream goes on after the jump back"
    );
    let text = p.media_playlist(false, &[]);
    let m = parse(&text);
    assert!(m.target_duration <= 3, "{text}");
    assert!(m.segments.iter().all(|s| s.duration <= 3.0), "{text}");
    assert!(
        m.segments.iter().filter(|s| s.discontinuity).count() >= 2,
        "{text}"
    );
}

#[test]
fn window_slides_and_discontinuity_sequence_counts_what_left() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 90);
    p.handle_discontinuity();
    let mut s2 = Source::new(3000, 60);
    feed(&mut p, &mut s2, 1200);
    let text = p.media_playlist(false, &[]);
    let m = parse(&text);
    assert_eq!(m.segments.len(), 8, "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{text}");
    assert!(p.segments.len() <= 8 * (1 + MAX_REMOVED_PER_WINDOW_SEGMENT) + 1);
    let first_kept = p.segments.front().unwrap().msn;
    assert!(p.segment(first_kept).is_some());
    assert!(p.segment(first_kept - 1).is_none());
}

#[test]
fn blocking_readiness_follows_the_spec() {
    let mut p = packager();
    assert_eq!(p.blocking_readiness(0, None), Readiness::Wait);
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 100);
    let open = p.segments.back().unwrap();
    let (msn, parts) = (open.msn, open.parts.len() as u32);
    assert_eq!(p.blocking_readiness(msn - 1, None), Readiness::Ready);
    assert_eq!(p.blocking_readiness(msn, None), Readiness::Wait);
    assert_eq!(p.blocking_readiness(msn, Some(0)), Readiness::Ready);
    assert_eq!(p.blocking_readiness(msn, Some(parts + 3)), Readiness::Wait);
    assert_eq!(p.blocking_readiness(msn + 2, None), Readiness::Wait);
    assert_eq!(p.blocking_readiness(msn + 3, None), Readiness::TooFarAhead);
    // The part number just past the end of a completed segment is the next segment's
    // part 0; further ones never exist (400, not a held request).
    let done = &p.segments[0];
    let past = done.parts.len() as u32;
    assert_eq!(
        p.blocking_readiness(done.msn, Some(past)),
        p.blocking_readiness(done.msn + 1, Some(0))
    );
    assert_eq!(
        p.blocking_readiness(done.msn, Some(past + 1)),
        Readiness::PartOutOfRange
    );
    // The Advance Part Limit: 3 s of parts beyond the last one (15 of 0.201 s).
    let limit = 3000_u32.div_ceil(config().part_target_ms);
    assert_eq!(
        p.blocking_readiness(msn, Some(parts + limit - 1)),
        Readiness::Wait
    );
    assert_eq!(
        p.blocking_readiness(msn, Some(parts + limit)),
        Readiness::PartOutOfRange
    );
    assert_eq!(
        p.blocking_readiness(msn, Some(40)),
        Readiness::PartOutOfRange
    );
    assert_eq!(p.blocking_readiness(msn + 1, Some(2)), Readiness::Wait);
    assert_eq!(
        p.blocking_readiness(msn + 1, Some(40)),
        Readiness::PartOutOfRange
    );
    p.handle_end(t0());
    assert_eq!(p.blocking_readiness(msn + 2, Some(4)), Readiness::Ready);
}

#[test]
fn delta_update_skips_old_segments_only() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 1000);
    let full = parse(&p.media_playlist(false, &[]));
    let text = p.media_playlist(true, &[]);
    let skipped: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    // 8 segments of 2 s, CAN-SKIP-UNTIL 12 s: the 2 oldest can go.
    assert_eq!(skipped, 2);
    let listed = text.lines().filter(|l| l.starts_with("seg-")).count();
    assert_eq!(listed + skipped, full.segments.len());
    assert!(text.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}", full.media_sequence)));
}

#[test]
fn end_adds_endlist_and_a_new_session_continues() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 100);
    p.handle_end(t0());
    p.check_invariants();
    let text = p.media_playlist(false, &[]);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(!text.contains("PRELOAD-HINT"));
    let m = parse(&text);
    let last = m.segments.last().unwrap();
    assert!(
        p.segment(m.media_sequence + m.segments.len() as u64 - 1)
            .is_some(),
        "{}",
        last.uri
    );
    p.handle_discontinuity();
    feed(&mut p, &mut Source::new(3000, 60), 70);
    let text = p.media_playlist(false, &[]);
    assert!(
        !text.contains("#EXT-X-ENDLIST") && text.contains("#EXT-X-DISCONTINUITY"),
        "{text}"
    );
}

#[test]
fn track_change_bumps_the_init_segment() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 70);
    let first = p.init_version().unwrap();
    p.handle_tracks(tracks(true, true), t0());
    assert_eq!(
        p.init_version(),
        Some(first),
        "identical tracks are a no-op"
    );
    p.handle_tracks(tracks(false, true), t0());
    let second = p.init_version().unwrap();
    assert_ne!(second, first, "other bytes, another name");
    s.with_audio = false;
    feed(&mut p, &mut s, 130);
    let text = p.media_playlist(false, &[]);
    assert!(
        text.contains(&format!("#EXT-X-MAP:URI=\"init-{first}.mp4\""))
            && text.contains(&format!("#EXT-X-MAP:URI=\"init-{second}.mp4\"")),
        "{text}"
    );
    assert!(p.init_segment(second).is_some());
    // The name follows the bytes, not the order: a packager that starts afresh (an
    // origin restarted) with the second tracks names their init as this one did.
    let mut fresh = RenditionPackager::new(config());
    fresh.handle_tracks(tracks(false, true), t0());
    assert_eq!(fresh.init_version(), Some(second));
    fresh.handle_tracks(tracks(true, true), t0());
    assert_eq!(fresh.init_version(), Some(first));
}

#[test]
fn audio_only_and_video_only_renditions_work() {
    let mut p = RenditionPackager::new(config());
    p.handle_tracks(tracks(true, false), t0());
    for n in 0..500i64 {
        let t = MediaTime::new(n * 1024, NonZeroU32::new(48_000).unwrap());
        p.handle_frame(
            Frame {
                kind: TrackKind::Audio,
                dts: t,
                pts: t,
                keyframe: true,
                data: Bytes::from_static(&[1; 10]),
            },
            t0(),
        )
        .unwrap();
        p.check_invariants();
    }
    let text = p.media_playlist(false, &[]);
    let durations = part_durations(&text);
    assert!(
        durations.len() > 10 && durations.iter().all(|d| *d <= part_target_secs() + 1e-9),
        "{text}"
    );
    assert!(p.variant().unwrap().resolution.is_none());

    let mut p = RenditionPackager::new(config());
    p.handle_tracks(tracks(false, true), t0());
    let mut s = Source::new(3000, 60);
    s.with_audio = false;
    feed(&mut p, &mut s, 200);
    assert!(parse(&p.media_playlist(false, &[])).segments.len() >= 2);
}

#[test]
fn audio_alone_with_long_irregular_frames_never_overfills_a_part() {
    // Audio frames far longer than AAC's 1024 samples (a broken or exotic source):
    // the frames still waiting for their chunk count towards the part, so a part
    // holds more than one frame only while they fit PART-TARGET (found by fuzzing:
    // the first two frames of a timeline made a part of 1.2 targets).
    let mut p = RenditionPackager::new(config());
    p.handle_tracks(tracks(true, false), t0());
    let rate = NonZeroU32::new(48_000).unwrap();
    // 0.6 of PART-TARGET a frame, with runs of ordinary ones between.
    let long = i64::from(config().part_target_ms) * 48 * 6 / 10;
    let mut dts = 0;
    let mut parts_seen = 0;
    for n in 0..200i64 {
        dts += if n < 20 || n % 13 >= 10 {
            long + n % 5 * 100
        } else {
            1024
        };
        let frame = frame_at(TrackKind::Audio, MediaTime::new(dts, rate), true);
        parts_seen = parts_seen.max(feed_within_target(&mut p, frame, &format!("frame {n}")));
    }
    assert!(parts_seen > 5, "{}", p.media_playlist(false, &[]));
}

#[test]
fn a_segments_first_video_frame_waiting_for_audio_never_overfills_a_part() {
    // The first frame of a segment waits for audio (VLC); when the next one is video
    // and both would not fit PART-TARGET, the first is written alone (found by fuzzing).
    let mut p = packager();
    let long = i64::from(config().part_target_ms) * 90 * 6 / 10;
    for n in 0..40i64 {
        let frame = frame_at(
            TrackKind::Video,
            MediaTime::new(n * long, VIDEO_TIMESCALE),
            n % 4 == 0,
        );
        feed_within_target(&mut p, frame, &format!("frame {n}"));
    }
}

#[test]
fn bad_frames_are_refused_and_the_packager_goes_on() {
    let mut p = RenditionPackager::new(config());
    let f = Source::new(3000, 60).next().pop().unwrap();
    assert_eq!(
        p.handle_frame(f.clone(), t0()),
        Err(PackageError::UnknownTrack(TrackKind::Video))
    );
    p.handle_tracks(tracks(false, true), t0());
    p.handle_frame(f.clone(), t0()).unwrap();
    assert!(matches!(
        p.handle_frame(f, t0()),
        Err(PackageError::NonMonotonic { .. })
    ));
    p.check_invariants();
}

#[test]
fn variant_reports_measured_bandwidth_and_facts() {
    let mut p = packager();
    assert!(p.variant().is_none());
    feed(&mut p, &mut Source::new(3000, 60), 300);
    let v = p.variant().unwrap();
    assert_eq!(v.resolution, Some((320, 240)));
    assert_eq!(v.codecs, "avc1.64000d,mp4a.40.2");
    assert!((v.frame_rate.unwrap() - 30.0).abs() < 1e-9);
    // 200 bytes per frame at 30 fps plus 20-byte audio frames and box overhead.
    assert!(
        v.average_bandwidth > 48_000 && v.average_bandwidth < 120_000,
        "{v:?}"
    );
    assert!(v.bandwidth >= v.average_bandwidth);
    let master =
        crate::multivariant_playlist(&[("source", v)], &[("com.rivulet.title", "My \"show\"")]);
    let parsed = m3u8_rs::parse_master_playlist_res(master.as_bytes()).unwrap();
    assert_eq!(parsed.variants[0].uri, "source/index.m3u8");
    assert!(master.contains("VALUE=\"My 'show'\""));
}

#[test]
fn golden_playlist() {
    let mut p = RenditionPackager::new(PackagerConfig {
        window_segments: 3,
        ..Default::default()
    });
    p.handle_tracks(tracks(true, true), t0());
    feed(&mut p, &mut Source::new(3000, 60), 275);
    let report = RenditionReport {
        uri: "../low/index.m3u8".into(),
        last_msn: Some(4),
        last_part: Some(1),
    };
    let text = p.media_playlist(false, &[report]);
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/live_window3.m3u8");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden =
        std::fs::read_to_string(&path).expect("golden file (regenerate with UPDATE_GOLDEN=1)");
    assert_eq!(text, golden);
}

#[test]
fn random_operations_keep_invariants() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..20 {
        let mut p = packager();
        let interval = [1500, 3000, 3003, 3600][rand(4) as usize];
        let mut s = Source::new(interval, 1 + rand(150));
        for _ in 0..400 {
            match rand(100) {
                0 => p.handle_discontinuity(),
                1 => p.handle_end(t0()),
                2 => {
                    s = Source::new(interval, 1 + rand(150));
                }
                3..=5 => {
                    let _ = p.media_playlist(rand(2) == 0, &[]);
                    let _ = p.blocking_readiness(rand(20), Some(rand(8) as u32));
                }
                _ => {
                    for f in s.next() {
                        let _ = p.handle_frame(f, t0());
                    }
                }
            }
            p.check_invariants();
            while p.poll_event().is_some() {}
        }
        parse(&p.media_playlist(false, &[]));
    }
}

/// Feeds `frames` video frames, checking after each frame that the preload hint of the
/// playlist before it named exactly the next part the packager started (RFC 8216bis
/// §4.4.5.2: a hint names a resource that will be produced). Returns how many parts were
/// started.
fn feed_checking_hints(p: &mut RenditionPackager, source: &mut Source, frames: u64) -> usize {
    let mut started = 0;
    for _ in 0..frames {
        for f in source.next() {
            // A hinted part already growing is produced; one not started yet must be
            // the next to start.
            let hint = p
                .preload_hint()
                .filter(|&(msn, part)| p.part(msn, part).is_none());
            let wall = t0() + Duration::from_micros((f.dts.as_secs_f64() * 1e6) as u64);
            p.handle_frame(f, wall).unwrap();
            p.check_invariants();
            while let Some(event) = p.poll_event() {
                if let PackageEvent::PartStarted { msn, part } = event {
                    if let Some(hint) = hint {
                        assert_eq!(
                            hint,
                            (msn, part),
                            "the hint named part-{}-{}, the next part made was part-{msn}-{part} (frame {})\n{}",
                            hint.0,
                            hint.1,
                            source.n,
                            p.media_playlist(false, &[])
                        );
                    }
                    started += 1;
                }
            }
        }
    }
    started
}

/// Every part but an independent one or a segment's last is within [0.85, 1.0] ×
/// PART-TARGET, as the playlist states them.
fn assert_part_durations_conform(text: &str, what: &str) {
    parse(text);
    let target: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .and_then(|t| t.parse().ok())
        .unwrap();
    let mut checked = 0;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(attrs) = line.strip_prefix("#EXT-X-PART:") else {
            continue;
        };
        let duration: f64 = attrs
            .strip_prefix("DURATION=")
            .and_then(|a| a.split(',').next())
            .and_then(|d| d.parse().ok())
            .unwrap();
        assert!(
            duration <= target + 1e-9,
            "{what}: part of {duration} s\n{text}"
        );
        let independent = attrs.contains("INDEPENDENT=YES");
        // The last part of its segment: the next line closes the segment.
        let last_of_segment = lines
            .get(i + 1)
            .is_none_or(|next| !next.starts_with("#EXT-X-PART:"));
        if !independent && !last_of_segment {
            assert!(
                duration >= 0.85 * target - 1e-9,
                "{what}: part of {duration} s < 85 % of {target}\n{text}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "{what}: no part checked\n{text}");
}

#[test]
fn preload_hints_name_the_next_part_made_even_when_a_keyframe_is_late() {
    // (name, source): 30 fps 2 s GOP, 25 fps `-g 60` (2.4 s: every keyframe is late for
    // a 2 s boundary), ffmpeg's default 250 frames, RTMP millisecond timestamps, 60 fps.
    let cases: Vec<(&str, Source)> = vec![
        ("30 fps, 2 s GOP", Source::new(3000, 60)),
        ("25 fps, -g 60", Source::new(3600, 60)),
        ("25 fps, -g 250", Source::new(3600, 250)),
        ("30 fps over RTMP", Source::rtmp(3000, 60)),
        ("29.97 fps, -g 250", Source::rtmp(3003, 250)),
        ("60 fps, 2 s GOP", Source::new(1500, 120)),
    ];
    for (what, mut source) in cases {
        let mut p = packager();
        let started = feed_checking_hints(&mut p, &mut source, 900);
        assert!(started > 20, "{what}: {started} parts");
        let text = p.media_playlist(false, &[]);
        // The hint of the final playlist is the part being made or the next one.
        let (msn, part) = p.preload_hint().unwrap();
        assert!(
            p.part(msn, part).is_some()
                || p.segment_ref(msn)
                    .is_some_and(|s| s.parts.len() == part as usize),
            "{what}: hint part-{msn}-{part}\n{text}"
        );
    }
}

#[test]
fn a_hint_overtaken_by_a_new_segment_is_answered_with_its_first_part() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    // 70 frames: segment 1's first part is complete, the hint names its next part.
    feed(&mut p, &mut s, 70);
    let (msn, part) = p.preload_hint().unwrap();
    // The publisher leaves and returns: the hinted number now lands in a new segment.
    p.handle_discontinuity();
    assert!(p.part(msn, part).is_none(), "not made yet");
    assert_eq!(p.blocking_readiness(msn, Some(part)), Readiness::Wait);
    let mut again = Source::new(3000, 60);
    feed(&mut p, &mut again, 12);
    let aliased = p.part(msn, part).expect("the hinted part is served");
    assert_eq!(Some(aliased), p.part(msn + 1, 0));
    assert_eq!(p.blocking_readiness(msn, Some(part)), Readiness::Ready);
    assert_eq!(
        p.blocking_readiness(msn, Some(part + 1)),
        Readiness::PartOutOfRange
    );
}

#[test]
fn frames_an_encoder_dropped_leave_no_decode_gap_and_move_no_picture() {
    // 30 fps over RTMP; the encoder drops six frames (200 ms) mid-GOP. MSE would take
    // a decode gap for a discontinuity and drop every frame up to the next keyframe:
    // the frame after the hole is decoded where the last one ended instead, shown at
    // its own time (its composition offset and duration take the hole), and nothing
    // after it is stretched.
    let mut p = packager();
    let mut s = Source::rtmp(3000, 60);
    feed(&mut p, &mut s, 100);
    s.n += 6;
    feed(&mut p, &mut s, 100);
    // (decode time, duration, presentation time) of every video sample.
    let mut samples = Vec::new();
    for t in track_fragments(&p).filter(|t| t.track_id == 1) {
        let mut dts = t.base_media_decode_time as i64;
        for (d, cto) in t.durations.iter().zip(&t.composition_offsets) {
            samples.push((dts, i64::from(*d), dts + cto));
            dts += i64::from(*d);
        }
    }
    assert_eq!(samples.len(), 200);
    let decode_gaps: Vec<i64> = samples
        .windows(2)
        .map(|w| w[1].0 - (w[0].0 + w[0].1))
        .filter(|gap| *gap > 0)
        .collect();
    assert!(decode_gaps.is_empty(), "decode gaps: {decode_gaps:?}");
    // Every picture keeps its own presentation time (frames 100 to 105 were dropped).
    let shown: Vec<i64> = samples.iter().map(|(_, _, pts)| *pts).collect();
    let mut source = Source::rtmp(3000, 60);
    let expected: Vec<i64> = (0..206)
        .flat_map(|_| source.next())
        .filter(|f| f.kind == TrackKind::Video)
        .map(|f| f.pts.ticks)
        .enumerate()
        .filter(|(n, _)| !(100..106).contains(n))
        .map(|(_, pts)| pts)
        .collect();
    assert_eq!(shown, expected);
    // Only the frame after the hole is long; the others keep one frame's duration.
    let long_durations = samples.iter().filter(|(_, d, _)| *d > 4_500).count();
    assert_eq!(long_durations, 1);
}

#[test]
fn parts_conform_when_the_encoder_drops_frames() {
    // A hole of 1 to 12 frames at every position within a part (334 ms parts hold 10
    // frames at 30 fps): still no part over PART-TARGET, none short inside a segment.
    for dropped in [1, 3, 6, 12] {
        for offset in 0..10 {
            let what = format!("{dropped} frames dropped after frame {}", 95 + offset);
            let mut p = packager();
            let mut s = Source::rtmp(3000, 60);
            feed(&mut p, &mut s, 95 + offset);
            s.n += dropped;
            feed(&mut p, &mut s, 120);
            assert_part_durations_conform(&p.media_playlist(false, &[]), &what);
        }
    }
}

#[test]
fn parts_are_at_least_85_percent_of_the_target_except_a_segments_last() {
    let cases: Vec<(&str, Source)> = vec![
        ("30 fps, 2 s GOP", Source::new(3000, 60)),
        ("30 fps over RTMP", Source::rtmp(3000, 60)),
        ("25 fps, -g 60", Source::new(3600, 60)),
        ("25 fps over RTMP, -g 60", Source::rtmp(3600, 60)),
        ("25 fps, -g 250", Source::new(3600, 250)),
        ("29.97 fps over RTMP, -g 250", Source::rtmp(3003, 250)),
        ("60 fps, 2 s GOP", Source::new(1500, 120)),
        ("24 fps, 2 s GOP", Source::new(3750, 48)),
    ];
    for (what, mut source) in cases {
        let mut p = packager();
        for _ in 0..6 {
            feed(&mut p, &mut source, 150);
            assert_part_durations_conform(&p.media_playlist(false, &[]), what);
        }
    }
}

#[test]
fn parts_conform_after_a_publisher_returns() {
    // The returning publisher's keyframes fall anywhere relative to the 2 s boundaries
    // of the continued timeline.
    for (first, gap) in [(100, 0), (137, 3), (61, 1)] {
        let mut p = packager();
        feed(&mut p, &mut Source::rtmp(3000, 60), first);
        p.handle_discontinuity();
        let mut again = Source::rtmp(3000, 60);
        for _ in 0..gap {
            again.next();
        }
        for _ in 0..6 {
            feed_checking_hints(&mut p, &mut again, 100);
            let text = p.media_playlist(false, &[]);
            assert_part_durations_conform(&text, &format!("return after {first} frames"));
        }
    }
}

#[test]
fn part_tags_only_within_the_last_three_target_durations() {
    for source in [
        Source::new(3000, 60),
        Source::new(3600, 60),
        Source::new(3600, 250),
    ] {
        let mut p = packager();
        let mut source = source;
        for _ in 0..8 {
            feed(&mut p, &mut source, 150);
            let text = p.media_playlist(false, &[]);
            let m = parse(&text);
            let target = m.target_duration as f64;
            // From each segment's start to the end of the playlist (the open segment's
            // parts included).
            let mut from_end = 0.0;
            let mut blocks: Vec<(f64, bool)> = Vec::new();
            let mut current: Vec<f64> = Vec::new();
            for line in text.lines() {
                if let Some(a) = line.strip_prefix("#EXT-X-PART:DURATION=") {
                    current.push(a.split(',').next().unwrap().parse().unwrap());
                } else if let Some(d) = line.strip_prefix("#EXTINF:") {
                    let d: f64 = d.trim_end_matches(',').parse().unwrap();
                    blocks.push((d, !current.is_empty()));
                    current.clear();
                }
            }
            if !current.is_empty() {
                blocks.push((current.iter().sum(), true));
            }
            let mut parted = 0;
            for (duration, has_parts) in blocks.iter().rev() {
                from_end += duration;
                if *has_parts {
                    parted += 1;
                    assert!(
                        from_end <= 3.0 * target + 1e-6,
                        "parts listed {from_end} s from the end (target {target})\n{text}"
                    );
                }
            }
            assert!(parted >= 1, "{text}");
        }
    }
}

#[test]
fn removed_segments_stay_available_for_the_playlist_duration_plus_their_own() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    // (msn, media time it left the playlist, playlist duration then, its duration)
    let mut removed: Vec<(u64, f64, f64, f64)> = Vec::new();
    let mut listed: std::collections::HashMap<u64, f64> = Default::default();
    let mut checked = 0;
    for n in 0..1500 {
        feed(&mut p, &mut s, 1);
        let now = n as f64 / 30.0;
        let m = parse(&p.media_playlist(false, &[]));
        let total: f64 = m.segments.iter().map(|s| f64::from(s.duration)).sum();
        let first = m.media_sequence;
        for (msn, duration) in listed.clone() {
            if msn < first {
                listed.remove(&msn);
                removed.push((msn, now, total, duration));
            }
        }
        for (i, seg) in m.segments.iter().enumerate() {
            if !seg.uri.is_empty() {
                listed.insert(first + i as u64, f64::from(seg.duration));
            }
        }
        for &(msn, left, playlist, duration) in &removed {
            if now < left + playlist + duration {
                assert!(
                    p.segment(msn).is_some() && p.part(msn, 0).is_some(),
                    "segment {msn} left the playlist at {left:.2} s and is gone at {now:.2} s"
                );
                checked += 1;
            }
        }
    }
    assert!(
        removed.len() > 10 && checked > 1000,
        "{} {checked}",
        removed.len()
    );
    // Bounded: not everything is kept.
    assert!(p.segment(removed[0].0).is_none());
}

#[test]
fn blocking_hold_follows_the_playlists_target_duration() {
    // 8 s keyframe interval with the default 2 s segment target.
    let mut p = packager();
    feed(&mut p, &mut Source::new(3000, 240), 240 * 3 + 10);
    let text = p.media_playlist(false, &[]);
    assert!(text.contains("#EXT-X-TARGETDURATION:8\n"), "{text}");
    assert_eq!(p.target_duration_secs(), 8);
    assert!(p.blocking_hold_limit() >= Duration::from_secs(24));
    // The default stream: 3 × 2 s.
    let mut q = packager();
    feed(&mut q, &mut Source::new(3000, 60), 200);
    assert_eq!(q.blocking_hold_limit(), Duration::from_secs(6));
}

/// Found by fuzzing (fuzz/corpus/packager): negative decode times were written as tfdt 0,
/// so the next chunk's tfdt went back over the previous one's samples.
#[test]
fn frames_before_the_timeline_start_are_refused() {
    let mut p = RenditionPackager::new(config());
    p.handle_tracks(tracks(true, false), t0());
    for dts in [-20_211i64, -2_350, 25_810, 26_834] {
        let t = MediaTime::new(dts, NonZeroU32::new(48_000).unwrap());
        let frame = Frame {
            kind: TrackKind::Audio,
            dts: t,
            pts: t,
            keyframe: true,
            data: Bytes::from_static(&[1; 69]),
        };
        let result = p.handle_frame(frame, t0());
        assert_eq!(result.is_err(), dts < 0, "{dts}: {result:?}");
        p.check_invariants();
    }
    p.handle_end(t0());
    let mut last_end = None;
    while let Some(event) = p.poll_event() {
        if let PackageEvent::ChunkAppended { msn, part } = event {
            for chunk in p.part(msn, part).unwrap().chunks {
                let track = inspect_fragment(&chunk).unwrap().tracks.remove(0);
                if let Some(end) = last_end {
                    assert!(track.base_media_decode_time >= end, "tfdt went back");
                }
                last_end = Some(
                    track.base_media_decode_time
                        + track.durations.iter().map(|&d| u64::from(d)).sum::<u64>(),
                );
            }
        }
    }
    assert!(last_end.is_some());
}

/// Found by fuzzing (fuzz/corpus/packager): after a track change whose timestamps start
/// over, or whose main track has another timescale (audio-only at 8 kHz, then video),
/// segments started before the previous ones and old EXTINFs were read in the new
/// timescale. The timeline now continues, in the new timescale.
#[test]
fn a_track_change_continues_the_timeline() {
    let mut p = RenditionPackager::new(config());
    p.handle_tracks(tracks(true, false), t0());
    for n in 0..200i64 {
        let t = MediaTime::new(n * 1024, NonZeroU32::new(48_000).unwrap());
        let frame = Frame {
            kind: TrackKind::Audio,
            dts: t,
            pts: t,
            keyframe: true,
            data: Bytes::from_static(&[1; 10]),
        };
        p.handle_frame(frame, t0()).unwrap();
    }
    let before = parse(&p.media_playlist(false, &[]));
    p.handle_tracks(tracks(true, true), t0());
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 130);
    p.check_invariants();
    let after = parse(&p.media_playlist(false, &[]));
    let first = |pl: &m3u8_rs::MediaPlaylist| pl.segments[0].duration;
    assert!(
        (first(&before) - first(&after)).abs() < 0.01,
        "old segments keep their duration: {} then {}",
        first(&before),
        first(&after)
    );
}

/// Found by fuzzing (fuzz/corpus/packager): after a discontinuity, audio that arrived
/// first re-anchored the timeline and the video that followed, earlier, started a
/// segment before the previous one's end. The main track re-anchors it now.
#[test]
fn the_main_track_reanchors_after_a_discontinuity() {
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    feed(&mut p, &mut s, 70);
    p.handle_discontinuity();
    let audio = MediaTime::new(48_000, NonZeroU32::new(48_000).unwrap());
    let frame = Frame {
        kind: TrackKind::Audio,
        dts: audio,
        pts: audio,
        keyframe: true,
        data: Bytes::from_static(&[1; 10]),
    };
    p.handle_frame(frame, t0()).unwrap();
    let video = MediaTime::new(0, VIDEO_TIMESCALE);
    let frame = Frame {
        kind: TrackKind::Video,
        dts: video,
        pts: video,
        keyframe: true,
        data: Bytes::from_static(&[1; 10]),
    };
    p.handle_frame(frame, t0()).unwrap();
    p.check_invariants();
}

#[test]
fn a_session_starting_over_after_a_restart_numbers_above_the_last_one() {
    // The first process: 20 s from t = 0, segments 0..=9.
    let mut before = packager();
    feed(&mut before, &mut Source::new(3000, 60), 600);
    let floor = before.segments.back().unwrap().msn;
    assert_eq!(floor, 9);
    // A new process, the publisher again from t = 0; two renditions share the
    // numbering, the second starting a GOP later.
    let numbering = Arc::new(StreamNumbering::new(Some(floor)));
    let mut renditions: Vec<RenditionPackager> = (0..2)
        .map(|_| {
            let mut p = RenditionPackager::with_numbering(config(), numbering.clone());
            p.handle_tracks(tracks(true, true), t0());
            p
        })
        .collect();
    feed(&mut renditions[0], &mut Source::new(3000, 60), 300);
    let mut late = Source::new(3000, 60);
    for _ in 0..60 {
        late.next();
    }
    feed(&mut renditions[1], &mut late, 240);
    let first: Vec<u64> = renditions
        .iter()
        .map(|p| p.segments.front().unwrap().msn)
        .collect();
    assert_eq!(first, [10, 11], "above the floor, and aligned");
    let last: Vec<u64> = renditions
        .iter()
        .map(|p| p.segments.back().unwrap().msn)
        .collect();
    assert_eq!(last[0], last[1]);
    // The same source after a restart of only this pipeline (timestamps carried on):
    // the source's numbers, as any other pipeline fed by it has them.
    let numbering = Arc::new(StreamNumbering::new(Some(floor)));
    let mut p = RenditionPackager::with_numbering(config(), numbering);
    p.handle_tracks(tracks(true, true), t0());
    let mut carried_on = Source::new(3000, 60);
    for _ in 0..600 {
        carried_on.next();
    }
    feed(&mut p, &mut carried_on, 120);
    assert_eq!(p.segments.front().unwrap().msn, 10);
}

#[test]
fn audio_that_comes_after_the_last_video_frame_is_kept() {
    // The transcoder's AAC of an MP3 source reaches the passthrough a little after
    // the video it goes with: at the end, the last 0.5 s of audio came after the last
    // video frame, whose part was complete, and was lost.
    let mut p = packager();
    let mut s = Source::new(3000, 60);
    let frames: Vec<Frame> = (0..100).flat_map(|_| s.next()).collect();
    let audio_total = frames.iter().filter(|f| f.kind == TrackKind::Audio).count();
    let last_video = frames
        .iter()
        .rfind(|f| f.kind == TrackKind::Video)
        .unwrap()
        .dts
        .as_secs_f64();
    let (late, on_time): (Vec<Frame>, Vec<Frame>) = frames
        .into_iter()
        .partition(|f| f.kind == TrackKind::Audio && f.dts.as_secs_f64() > last_video - 0.5);
    for f in on_time.into_iter().chain(late) {
        p.handle_frame(f, t0()).unwrap();
        p.check_invariants();
    }
    assert!(
        p.open_segment()
            .and_then(|s| s.parts.last())
            .is_some_and(|part| part.complete),
        "the case: the last video part is complete, the audio still pending"
    );
    p.handle_end(t0());
    p.check_invariants();
    let audio_written: usize = p
        .segments
        .iter()
        .flat_map(|s| &s.parts)
        .flat_map(|p| &p.chunks)
        .flat_map(|c| inspect_fragment(c).unwrap().tracks)
        .filter(|t| t.track_id == 2)
        .map(|t| t.durations.len())
        .sum();
    // (The first audio frame came before the first keyframe: nothing to ride in.)
    assert_eq!(audio_written as u64 + p.frames_dropped, audio_total as u64);
    let text = p.media_playlist(false, &[]);
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    assert_part_durations_conform(&text, "a trailing audio part");
}

#[test]
fn a_last_segment_of_one_keyframe_and_lagging_audio_is_dropped() {
    // The publisher stopped just after a keyframe; the audio lags the video by 45 ms
    // (as an encoder's does) and what would have reached past the keyframe was never
    // sent, so the new segment holds one video frame and audio from before its
    // start only. hls.js would count it as a gap and never end.
    let stop_after = |video_frames: u64| {
        let mut p = packager();
        let mut s = Source::new(3000, 60);
        let mut frames: Vec<Frame> = (0..video_frames).flat_map(|_| s.next()).collect();
        let last_video = frames
            .iter()
            .rfind(|f| f.kind == TrackKind::Video)
            .unwrap()
            .dts
            .as_secs_f64();
        frames.retain(|f| {
            f.kind == TrackKind::Video || f.dts.as_secs_f64() + 1024.0 / 48_000.0 <= last_video
        });
        let (lagging, on_time): (Vec<Frame>, Vec<Frame>) = frames
            .into_iter()
            .partition(|f| f.kind == TrackKind::Audio && f.dts.as_secs_f64() > last_video - 0.045);
        for f in on_time.into_iter().chain(lagging) {
            p.handle_frame(f, t0()).unwrap();
            p.check_invariants();
        }
        p.handle_end(t0());
        p.check_invariants();
        // No event names a part of the dropped segment (fuzzing found one that did).
        while let Some(event) = p.poll_event() {
            if let PackageEvent::ChunkAppended { msn, part }
            | PackageEvent::PartStarted { msn, part } = event
            {
                assert!(
                    p.part(msn, part).is_some(),
                    "{event:?} names a part that is not there"
                );
            }
        }
        parse(&p.media_playlist(false, &[]))
    };
    let total = |m: &m3u8_rs::MediaPlaylist| {
        m.segments
            .iter()
            .map(|s| f64::from(s.duration))
            .sum::<f64>()
    };
    // Frame 120 is the keyframe at 4 s.
    let m = stop_after(121);
    assert!(m.end_list);
    assert_eq!(m.segments.len(), 2, "{m:?}");
    assert!((total(&m) - 4.0).abs() < 0.001, "{}", total(&m));
    // A tail whose audio reaches past its start is kept.
    let m = stop_after(125);
    assert!(m.end_list);
    assert_eq!(m.segments.len(), 3, "{m:?}");
    assert!((total(&m) - 125.0 / 30.0).abs() < 0.001, "{}", total(&m));
}

#[test]
fn a_change_of_timescale_never_pushes_a_part_past_the_target() {
    // A part of exactly PART-TARGET at 8 kHz (1.028 s = 8,224 ticks) is 45,334.8 ticks
    // at 44.1 kHz: rounded to the nearest tick when the new tracks rescale the
    // timeline, it was one tick over the target (found by fuzzing).
    let config = PackagerConfig {
        segment_target_ms: 4095,
        part_target_ms: 1028,
        window_segments: 3,
    };
    let mut p = RenditionPackager::new(config);
    let audio = |rate: u32| {
        Arc::new(Tracks {
            video: None,
            audio: Some(Track {
                kind: TrackKind::Audio,
                timescale: NonZeroU32::new(rate).unwrap(),
                codec: CodecConfig::Aac(AacConfig::build(2, rate, 1)),
            }),
        })
    };
    p.handle_tracks(audio(8000), t0());
    let rate = NonZeroU32::new(8000).unwrap();
    for dts in [0, 4112, 8224] {
        p.handle_frame(
            frame_at(TrackKind::Audio, MediaTime::new(dts, rate), true),
            t0(),
        )
        .unwrap();
        p.check_invariants();
    }
    let before = part_durations(&p.media_playlist(false, &[]));
    assert!(
        before.contains(&1.028),
        "a part of exactly the target: {before:?}"
    );
    p.handle_tracks(audio(44_100), t0());
    p.check_invariants();
    let after = part_durations(&p.media_playlist(false, &[]));
    assert!(
        !after.is_empty() && after.iter().all(|d| *d <= 1.028),
        "parts within PART-TARGET after the change: {after:?}"
    );
}

/// Tracks whose H.264 configuration states `frame_rate` (VUI timing).
fn tracks_at(frame_rate: (u32, u32)) -> Arc<Tracks> {
    let mut tracks = (*tracks(true, true)).clone();
    if let Some(Track {
        codec: CodecConfig::Avc(avc),
        ..
    }) = tracks.video.as_mut()
    {
        avc.frame_rate = Some(frame_rate);
    }
    Arc::new(tracks)
}

#[test]
fn part_target_fits_whole_frames_at_rates_below_30_fps() {
    // With the default 201 ms, four frames of 24 fps fit (167 ms, 83 %: short of the
    // 85 % a part inside a segment must be): PART-TARGET becomes five frames' worth.
    // The rates that fill 201 ms keep it. Over RTMP too (whole-millisecond times).
    for (rate, interval, target) in [
        ((24, 1), 3750, 0.211),
        ((24_000, 1001), 3754, 0.211),
        ((12, 1), 7500, 0.252),
        ((30, 1), 3000, 0.201),
        ((25, 1), 3600, 0.201),
        ((48, 1), 1875, 0.201),
        ((15, 1), 6000, 0.201),
    ] {
        for rtmp in [false, true] {
            let what = format!("{rate:?} fps{}", if rtmp { " over RTMP" } else { "" });
            let mut p = RenditionPackager::new(PackagerConfig::default());
            p.handle_tracks(tracks_at(rate), t0());
            let mut s = if rtmp {
                Source::rtmp(interval, 48)
            } else {
                Source::new(interval, 48)
            };
            feed(&mut p, &mut s, 10 * 90_000 / interval as u64);
            let text = p.media_playlist(false, &[]);
            assert!(
                text.contains(&format!("#EXT-X-PART-INF:PART-TARGET={target:.3}\n")),
                "{what}: {text}"
            );
            assert_part_durations_conform(&text, &what);
        }
    }
}
