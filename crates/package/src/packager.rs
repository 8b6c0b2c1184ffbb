//! The state machine of one rendition.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use media::cmaf::{self, Sample, TrackFragment};
use media::{CodecConfig, Frame, Rounding, Track, TrackKind, Tracks, rescale_ticks};

use crate::config::{PackageError, PackagerConfig};
use crate::numbering::StreamNumbering;
use crate::playlist::{self, PlaylistSegment, RenditionReport, VariantInfo};

/// What changed, for the caller to wake waiting requests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum PackageEvent {
    PartStarted {
        msn: u64,
        part: u32,
    },
    ChunkAppended {
        msn: u64,
        part: u32,
    },
    PartCompleted {
        msn: u64,
        part: u32,
        independent: bool,
    },
    SegmentCompleted {
        msn: u64,
    },
}

/// A part as served: its chunks so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartView {
    pub chunks: Vec<Bytes>,
    pub complete: bool,
}

/// Whether a blocking playlist request (`_HLS_msn`, `_HLS_part`) can be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Wait,
    /// More than two segments beyond the playlist: the origin answers 400.
    TooFarAhead,
    /// `_HLS_part` names a part that cannot come: past the part just after the last
    /// one of a complete segment, or more than the Advance Part Limit (RFC 8216bis
    /// §6.2.5.2: three seconds' worth of parts) beyond the last part of the playlist.
    /// The origin answers 400.
    PartOutOfRange,
}

/// At most this many complete segments per window segment are kept beyond the playlist
/// window (removed, still served): the bound on the retention below, whatever the
/// segment durations.
const MAX_REMOVED_PER_WINDOW_SEGMENT: usize = 2;
/// In an audio-only rendition, audio is chunked this often (ms).
const AUDIO_ONLY_CHUNK_MS: i64 = 100;

/// Packages the frames of one rendition. See the crate documentation.
pub struct RenditionPackager {
    config: PackagerConfig,
    /// PART-TARGET (ms): the configured one, or longer when whole frames of the
    /// rendition's frame rate cannot fill 85 % of it (see [`part_target_for`]). Never
    /// shortened while the packager lives, so no listed part ever exceeds it.
    part_target_ms: u32,
    tracks: Option<Arc<Tracks>>,
    /// (version, init segment), newest last.
    inits: VecDeque<(u32, Bytes)>,
    /// Retained segments, oldest first; the last one may be open (incomplete).
    segments: VecDeque<Segment>,
    events: VecDeque<PackageEvent>,
    /// Discontinuities in segments dropped from `segments`.
    dropped_discontinuities: u64,
    ended: bool,
    /// Set by a discontinuity or a track change: the next keyframe starts a new segment
    /// marked with `EXT-X-DISCONTINUITY`.
    pending_discontinuity: bool,
    /// Added to incoming decode times (main-track ticks) so the timeline continues.
    offset: i64,
    /// Set by a discontinuity: the next frame recomputes `offset`.
    rebase: bool,
    /// Wall clock (epoch ms) of main-track time `anchor_ticks`, for PROGRAM-DATE-TIME.
    anchor: Option<(i64, i64)>,
    video: TrackState,
    audio: TrackState,
    pending_video: Vec<(i64, Sample)>,
    pending_audio: Vec<(i64, Sample)>,
    sequence_number: u32,
    /// The next frame is expected to start a new segment (it crosses a boundary).
    expect_segment_end: bool,
    frames_dropped: u64,
    /// The end of the timeline before a track change (new main-track ticks), where
    /// the next frame continues it.
    rebase_end: Option<i64>,
    /// Numbers the first segment; shared with the stream's other renditions.
    numbering: Arc<StreamNumbering>,
}

#[derive(Default)]
struct TrackState {
    last_dts: Option<i64>,
    /// Estimated frame duration (ticks): the median of the last intervals. Not the last
    /// interval, because RTMP's millisecond timestamps make consecutive 30 fps
    /// intervals alternate between 33 and 34 ms; not their mean, because one hole (frames
    /// an encoder dropped) would then stretch the next several frames over the ones
    /// that follow them.
    interval: Option<i64>,
    /// Recent decode times, oldest first.
    recent: VecDeque<i64>,
    /// Where the last written sample ends on the decode timeline (its written decode
    /// time plus its written duration).
    written_end: Option<i64>,
}

/// The largest gap between two frames of the main track taken as media time; a larger
/// one (a timestamp jump) starts over after a discontinuity.
const MAX_FRAME_GAP_MS: u32 = 10_000;

/// Intervals averaged for the frame duration estimate.
const INTERVAL_WINDOW: usize = 8;

impl TrackState {
    /// How far back a video frame's decode time moves to close the hole before it.
    ///
    /// Frames an encoder dropped (OBS's "skipped frames", ffmpeg stamping late pictures
    /// by the wall clock) leave a hole in the decode timeline. Browsers' MSE takes a
    /// decode gap of more than twice the last frame's duration for a discontinuity and
    /// drops every frame after it up to the next keyframe: one lost frame froze the
    /// picture up to a GOP while the sound went on. The frame after the hole is
    /// therefore decoded where the last one ended and still shown at its own time: its
    /// decode time moves back over the hole, its composition offset and its duration
    /// grow by as much. A keyframe needs nothing (MSE resumes at one), and keeps its
    /// decode time: segments start at theirs.
    fn hole_before(&self, dts: i64, keyframe: bool) -> i64 {
        match self.written_end {
            Some(end) if !keyframe && dts > end => dts - end,
            _ => 0,
        }
    }

    fn observe(&mut self, dts: i64) {
        self.last_dts = Some(dts);
        self.recent.push_back(dts);
        if self.recent.len() > INTERVAL_WINDOW + 1 {
            self.recent.pop_front();
        }
        let mut intervals = [0i64; INTERVAL_WINDOW];
        let n = self.recent.len().saturating_sub(1);
        for (i, slot) in intervals.iter_mut().enumerate().take(n) {
            *slot = self.recent[i + 1] - self.recent[i];
        }
        let intervals = &mut intervals[..n];
        intervals.sort_unstable();
        if n > 0 {
            // The middle one, or the mean of the two in the middle (33/34 ms → 33.5).
            self.interval = Some((intervals[(n - 1) / 2] + intervals[n / 2] + 1) / 2);
        }
    }
}

struct Segment {
    msn: u64,
    /// Boundary index floor(start / S) of the first frame.
    boundary: i64,
    /// Main-track ticks.
    start: i64,
    /// Set when complete: the start of the next segment (or end of media) minus `start`.
    duration: Option<i64>,
    parts: Vec<Part>,
    discontinuity: bool,
    init_version: u32,
    program_date_ms: i64,
    /// Where the segment's audio ends, in main-track ticks, beside video (`None`
    /// before any audio is written, and in audio-only renditions).
    audio_end: Option<i64>,
}

struct Part {
    start: i64,
    /// The main track's span (ticks): its written samples, and once complete the hole
    /// before the next frame, if any (see `close_part`).
    duration: i64,
    /// Main-track samples written: a part of one sample may exceed PART-TARGET (a
    /// frame cannot be split), whatever side-track chunks ride with it.
    main_samples: usize,
    chunks: Vec<Bytes>,
    independent: bool,
    complete: bool,
    bytes: usize,
}

impl RenditionPackager {
    /// A packager for a stream never numbered before (in this process or another).
    pub fn new(config: PackagerConfig) -> Self {
        Self::with_numbering(config, Arc::default())
    }

    /// A packager numbering its first segment by `numbering`, which the stream's
    /// renditions share (see [`StreamNumbering`]).
    pub fn with_numbering(config: PackagerConfig, numbering: Arc<StreamNumbering>) -> Self {
        Self {
            part_target_ms: config.part_target_ms,
            config,
            tracks: None,
            inits: VecDeque::new(),
            segments: VecDeque::new(),
            events: VecDeque::new(),
            dropped_discontinuities: 0,
            ended: false,
            pending_discontinuity: false,
            offset: 0,
            rebase: false,
            anchor: None,
            video: TrackState::default(),
            audio: TrackState::default(),
            pending_video: Vec::new(),
            pending_audio: Vec::new(),
            sequence_number: 0,
            expect_segment_end: false,
            frames_dropped: 0,
            rebase_end: None,
            numbering,
        }
    }

    pub fn config(&self) -> &PackagerConfig {
        &self.config
    }

    /// Announces the tracks of the frames that follow. A change of codec configuration
    /// starts a new init segment and a discontinuity; identical tracks are a no-op.
    pub fn handle_tracks(&mut self, tracks: Arc<Tracks>, now: SystemTime) {
        if self.tracks.as_deref() == Some(&*tracks) {
            return;
        }
        let init = match cmaf::init_segment(&tracks) {
            Ok(init) => init,
            // Unreachable with tracks from ingest (they always hold at least one track);
            // without an init segment nothing can be packaged, so keep the old tracks.
            Err(_) => return,
        };
        if self.tracks.is_some() {
            self.close_segment(None, now);
            self.pending_discontinuity = true;
            // The next frame continues the timeline where it stopped (in the new main
            // timescale), as after a discontinuity: the new tracks' timestamps may
            // start over, and segments must not start before the previous ones.
            let new_timescale = tracks
                .video
                .as_ref()
                .or(tracks.audio.as_ref())
                .map_or(media::VIDEO_TIMESCALE, |t| t.timescale);
            // (Several track changes before a frame: the end carried from the first.)
            self.rebase_end = self
                .timeline_end()
                .or(self.rebase_end)
                .map(|end| rescale_ticks(end, self.main_timescale(), new_timescale, Rounding::Up));
            self.rebase = self.rebase_end.is_some() || self.rebase;
            self.rescale_timeline(new_timescale);
            // Timescales may change with the tracks (audio sample rate): start afresh.
            self.video = TrackState::default();
            self.audio = TrackState::default();
        }
        let main = tracks.video.as_ref().or(tracks.audio.as_ref());
        self.part_target_ms = self.part_target_ms.max(part_target_for(
            &self.config,
            main.and_then(|t| t.codec.frame_rate()),
        ));
        let version = init_version(&init);
        self.inits.push_back((version, init));
        if self.inits.len() > 4 {
            self.inits.pop_front();
        }
        self.tracks = Some(tracks);
    }

    /// Packages one frame. `now` is the wall clock at its arrival.
    pub fn handle_frame(&mut self, frame: Frame, now: SystemTime) -> Result<(), PackageError> {
        let Some(tracks) = self.tracks.clone() else {
            return Err(PackageError::UnknownTrack(frame.kind));
        };
        let track = tracks
            .get(frame.kind)
            .ok_or(PackageError::UnknownTrack(frame.kind))?;
        let main_kind = if tracks.video.is_some() {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let main_timescale = tracks
            .get(main_kind)
            .map_or(track.timescale, |t| t.timescale);
        if self.ended && !self.rebase {
            return Ok(());
        }
        if frame.kind == main_kind && !self.rebase {
            self.guard_frame_gap(&frame, main_kind, main_timescale, track.timescale);
        }
        if self.rebase && frame.kind != main_kind {
            // The main track re-anchors the timeline: audio that came first could be
            // later than the video that follows, which would then start before the end.
            self.frames_dropped += 1;
            return Ok(());
        }
        if self.rebase {
            self.rebase_timeline(&frame, main_timescale, track.timescale);
        }
        let offset = rescale_ticks(
            self.offset,
            main_timescale,
            track.timescale,
            Rounding::Nearest,
        );
        let dts = frame.dts.ticks + offset;
        self.admit_decode_time(frame.kind, dts)?;
        if frame.kind == main_kind {
            self.handle_main_frame(frame, track, main_kind, dts, now)
        } else {
            self.handle_side_frame(frame, track, dts);
            Ok(())
        }
    }

    /// Ingest re-anchors timestamp jumps (media::Timeline); this guards every other
    /// source. A gap between two frames that no stream has would make one segment hours
    /// long (EXTINF and TARGETDURATION with it), or, backwards, freeze the stream: start
    /// over after a discontinuity instead.
    fn guard_frame_gap(
        &mut self,
        frame: &Frame,
        main_kind: TrackKind,
        main_timescale: NonZeroU32,
        timescale: NonZeroU32,
    ) {
        let offset = rescale_ticks(self.offset, main_timescale, timescale, Rounding::Nearest);
        let bound = i64::from(MAX_FRAME_GAP_MS.max(3 * self.config.segment_target_ms))
            * i64::from(timescale.get())
            / 1000;
        if let Some(last) = self.main_state(main_kind).last_dts
            && (frame.dts.ticks + offset - last).abs() > bound
        {
            self.handle_discontinuity();
        }
    }

    /// Continues where the old timeline stopped (its end in main-track ticks), from the
    /// first main-track frame after a discontinuity or a track change.
    fn rebase_timeline(
        &mut self,
        frame: &Frame,
        main_timescale: NonZeroU32,
        timescale: NonZeroU32,
    ) {
        let end = self.timeline_end().or(self.rebase_end.take());
        let first = rescale_ticks(
            frame.dts.ticks,
            timescale,
            main_timescale,
            Rounding::Nearest,
        );
        self.offset = end.map_or(0, |end| end - first);
        self.rebase = false;
        self.ended = false;
        // The last decode times stay: the new timeline continues after them, so a
        // track far out of step with the main one (its frames would land before its
        // own last chunk) is refused rather than sent back in time.
        self.video.recent.clear();
        self.audio.recent.clear();
    }

    /// Checks a frame's decode time on the timeline of its track and records it.
    fn admit_decode_time(&mut self, kind: TrackKind, dts: i64) -> Result<(), PackageError> {
        // tfdt is unsigned: a negative decode time (AAC priming, a track that starts
        // before the one that anchored the timeline) would be written as 0, and the
        // next chunk's tfdt would go back over it.
        if dts < 0 {
            return Err(PackageError::BeforeStart { kind, dts });
        }
        let state = self.main_state_mut(kind);
        if let Some(last) = state.last_dts
            && dts <= last
        {
            return Err(PackageError::NonMonotonic { kind, dts, last });
        }
        state.observe(dts);
        Ok(())
    }

    /// Audio beside video: rides in the next chunk, once a segment is open.
    fn handle_side_frame(&mut self, frame: Frame, track: &Track, dts: i64) {
        if self.open_segment().is_none() {
            self.frames_dropped += 1;
            return;
        }
        let samples = match &track.codec {
            CodecConfig::Aac(aac) => i64::from(aac.samples_per_frame()),
            CodecConfig::Mp3(mp3) => i64::from(mp3.samples_per_frame),
            // Opus is not packaged (CMAF here carries AAC): its usual 20 ms, if it were.
            CodecConfig::Opus(_) => 960,
            CodecConfig::Avc(_) | CodecConfig::Hevc(_) | CodecConfig::Av1(_) => 1,
        };
        let duration = self
            .audio
            .interval
            .unwrap_or(samples)
            .clamp(1, i64::from(u32::MAX)) as u32;
        let composition_offset = i32::try_from(frame.composition_offset()).unwrap_or(0);
        self.pending_audio.push((
            dts,
            Sample {
                duration,
                composition_offset,
                keyframe: true,
                data: frame.data,
            },
        ));
        if !self.pending_video.is_empty() {
            // A segment's first video frame was held for this (see `holds_for_audio`).
            let _ = self.flush_chunk();
        }
    }

    /// Whether the pending video (a segment's first frame) waits for audio before it
    /// is written: a segment's first chunk then carries both tracks. VLC 3 places a
    /// track by the `tfdt` of the first fragment it sees and drops all audio of a
    /// stream whose first fragment has none ("buffer too late"). The wait ends with
    /// the next frame of either track: at most one frame interval.
    fn holds_for_audio(&self) -> bool {
        self.pending_audio.is_empty()
            && self.tracks.as_ref().is_some_and(|t| t.audio.is_some())
            && self
                .open_segment()
                .is_some_and(|s| s.parts.len() == 1 && s.parts[0].chunks.is_empty())
    }

    /// A frame of the track that cuts segments and parts (video, or audio alone).
    fn handle_main_frame(
        &mut self,
        frame: Frame,
        track: &Track,
        main_kind: TrackKind,
        dts: i64,
        now: SystemTime,
    ) -> Result<(), PackageError> {
        let main_ts = track.timescale;
        let segment_ticks =
            i64::from(self.config.segment_target_ms) * i64::from(main_ts.get()) / 1000;
        let keyframe = frame.keyframe;
        let boundary = dts.div_euclid(segment_ticks.max(1));
        let interval = self
            .main_state(main_kind)
            .interval
            .unwrap_or_else(|| default_interval(track, main_ts));
        if !self.cut_before(dts, keyframe, boundary, interval, main_ts, now) {
            // Nothing is decodable before the first keyframe.
            self.frames_dropped += 1;
            return Ok(());
        }
        self.ensure_open_part(dts, keyframe);

        let hole = match main_kind {
            TrackKind::Video => self.video.hole_before(dts, keyframe),
            TrackKind::Audio => 0,
        };
        let written_dts = dts - hole;
        let duration = (interval + hole).clamp(1, i64::from(u32::MAX));
        self.main_state_mut(main_kind).written_end = Some(written_dts + duration);
        let sample = Sample {
            duration: duration as u32,
            composition_offset: i32::try_from(frame.composition_offset() + hole).unwrap_or(0),
            keyframe,
            data: frame.data,
        };
        match main_kind {
            TrackKind::Video => {
                self.pending_video.push((written_dts, sample));
                if !(self.pending_video.len() == 1 && self.holds_for_audio()) {
                    self.flush_chunk()?;
                }
            }
            TrackKind::Audio => {
                self.pending_audio.push((dts, sample));
                let first = self.pending_audio.first().map_or(dts, |(d, _)| *d);
                if (dts + interval - first) * 1000 >= AUDIO_ONLY_CHUNK_MS * i64::from(main_ts.get())
                {
                    self.flush_chunk()?;
                }
            }
        }
        self.complete_part_early(dts, interval, boundary, segment_ticks, main_ts)
    }

    /// Starts a segment or closes a part before a main-track frame where it must.
    /// False when the frame cannot be packaged (no segment open and not a keyframe).
    fn cut_before(
        &mut self,
        dts: i64,
        keyframe: bool,
        boundary: i64,
        interval: i64,
        main_ts: NonZeroU32,
        now: SystemTime,
    ) -> bool {
        let starts_segment = match self.open_segment() {
            None => keyframe,
            Some(seg) => keyframe && (self.pending_discontinuity || boundary > seg.boundary),
        };
        if starts_segment {
            self.close_segment(Some(dts), now);
            self.open_new_segment(dts, boundary, epoch_ms(now));
            return true;
        }
        let Some(seg) = self.open_segment() else {
            return false;
        };
        let part_ticks = i64::from(self.part_target_ms) * i64::from(main_ts.get()) / 1000;
        // Frames of the main track still pending are the part's too (audio alone is
        // written in chunks of several frames; a segment's first video frame waits for
        // audio), or a few long frames would overfill it before they are written.
        let audio_only = self.tracks.as_ref().is_some_and(|t| t.video.is_none());
        let pending_main = if audio_only {
            !self.pending_audio.is_empty()
        } else {
            !self.pending_video.is_empty()
        };
        if let Some(part) = seg.parts.last()
            && (part.complete
                || ((!part.chunks.is_empty() || pending_main)
                    && dts + interval - part.start > part_ticks))
        {
            if pending_main {
                // A CMAF error here only loses these frames, as at a segment's close.
                let _ = self.flush_chunk();
            }
            self.close_part(dts);
        }
        true
    }

    /// Completes the part now if the next frame would not fit (so it is servable as soon
    /// as its last frame arrived).
    ///
    /// Not when the next frame may start a new segment: whether it does depends on it
    /// being a keyframe, which only its arrival tells. Completing the part early would
    /// leave a short part inside the segment when the keyframe is late (RFC 8216bis:
    /// every part but an independent one or a segment's last is at least 85 % of
    /// PART-TARGET), and the hint would name a part that never comes when it is not. The
    /// segment's last part completes when the next frame arrives.
    fn complete_part_early(
        &mut self,
        dts: i64,
        interval: i64,
        boundary: i64,
        segment_ticks: i64,
        main_ts: NonZeroU32,
    ) -> Result<(), PackageError> {
        let part_ticks = i64::from(self.part_target_ms) * i64::from(main_ts.get()) / 1000;
        let next = dts + interval;
        // Once the segment has crossed a boundary, any frame may be the keyframe that
        // ends it (a late keyframe, or a returning publisher's off the 2 s grid).
        self.expect_segment_end = next.div_euclid(segment_ticks.max(1))
            > self.open_segment().map_or(boundary, |s| s.boundary);
        if let Some(part_start) = self
            .open_segment()
            .and_then(|s| s.parts.last())
            .map(|p| p.start)
            && next + interval - part_start > part_ticks
            && !self.expect_segment_end
        {
            self.flush_chunk()?;
            self.close_part(next);
        }
        Ok(())
    }

    /// The publisher went away and a new one continues the stream: the next frames'
    /// timestamps start over, and the next segment carries a discontinuity.
    pub fn handle_discontinuity(&mut self) {
        let _ = self.flush_chunk();
        self.write_trailing_audio();
        if let Some(end) = self.timeline_end() {
            self.close_segment_at(end);
        }
        self.pending_discontinuity = true;
        self.rebase = true;
        self.ended = false;
        self.anchor = None;
        self.pending_audio.clear();
        self.pending_video.clear();
    }

    /// The stream ended: complete what is open and add `EXT-X-ENDLIST`.
    pub fn handle_end(&mut self, _now: SystemTime) {
        let _ = self.flush_chunk();
        self.write_trailing_audio();
        self.drop_a_last_segment_without_audio();
        if let Some(end) = self.timeline_end() {
            self.close_segment_at(end);
        }
        self.ended = true;
        self.rebase = true;
        self.pending_discontinuity = true;
    }

    /// The publisher stopped just after a keyframe: the segment it opened holds a
    /// frame or two of video and only the audio that lags them, all before the
    /// segment's start. Such a last segment is dropped, not completed: hls.js counts a
    /// segment that adds no audio as a gap, and a player never reaches the end of a
    /// recording, or of an ended live playlist, whose last segment is one. What is
    /// lost is less than one part, none of it announced complete to viewers.
    fn drop_a_last_segment_without_audio(&mut self) {
        let has_audio_beside_video = self
            .tracks
            .as_ref()
            .is_some_and(|t| t.video.is_some() && t.audio.is_some());
        // Audio reaching less than this past the start does not count (hls.js: 4 ms).
        let margin = i64::from(self.main_timescale().get()) / 100;
        let degenerate = self.open_segment().is_some_and(|seg| {
            seg.parts.iter().all(|p| !p.complete)
                && seg.audio_end.is_none_or(|end| end <= seg.start + margin)
        });
        if has_audio_beside_video
            && degenerate
            && let Some(dropped) = self.segments.pop_back()
        {
            // What was said of it and not yet taken is taken back: the events name
            // parts that are no longer there.
            self.events.retain(|event| match *event {
                PackageEvent::PartStarted { msn, .. }
                | PackageEvent::ChunkAppended { msn, .. }
                | PackageEvent::PartCompleted { msn, .. }
                | PackageEvent::SegmentCompleted { msn } => msn != dropped.msn,
            });
        }
    }

    /// Audio still pending when the video has stopped (the publisher left) and its
    /// last part is complete: one more part of the open segment, rather than lost.
    /// Audio made elsewhere comes a little after the video it goes with (the
    /// transcoder's AAC of an MP3 source, in the passthrough: the last 0.5 s of a
    /// stream was lost). The timeline's end moves past it, so that a returning
    /// publisher continues after it.
    fn write_trailing_audio(&mut self) {
        let has_video = self.tracks.as_ref().is_some_and(|t| t.video.is_some());
        let Some((last, last_sample)) = self.pending_audio.last() else {
            return;
        };
        let audio_timescale = self.tracks.as_ref().and_then(|t| t.audio.as_ref());
        let (Some(audio_timescale), Some(video_end)) =
            (audio_timescale.map(|t| t.timescale), self.timeline_end())
        else {
            return;
        };
        if !has_video
            || self
                .open_segment()
                .and_then(|s| s.parts.last())
                .is_none_or(|p| !p.complete)
        {
            return;
        }
        let main = self.main_timescale();
        let audio_end = rescale_ticks(
            last + i64::from(last_sample.duration),
            audio_timescale,
            main,
            Rounding::Up,
        );
        // The part starts where the video stopped; its audio may begin before (its
        // `tfdt` says where), and it lasts until the audio's end, if that is later.
        let start = video_end;
        self.ensure_open_part(start, false);
        if self.flush_chunk().is_err() {
            return;
        }
        if let Some(part) = self
            .segments
            .back_mut()
            .and_then(|s| s.parts.last_mut())
            .filter(|p| !p.complete)
        {
            part.duration = (audio_end - part.start).max(1);
        }
        if audio_end > video_end {
            // The main track ends where this audio does (see `timeline_end`).
            let interval = self.video.interval.unwrap_or(0);
            self.video.last_dts = Some(audio_end - interval);
        }
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<PackageEvent> {
        self.events.pop_front()
    }

    /// Whether anything was ever packaged.
    pub fn has_media(&self) -> bool {
        !self.segments.is_empty()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The current init segment version (the one `EXT-X-MAP` names for new segments):
    /// a checksum of its bytes (see [`init_version`]).
    pub fn init_version(&self) -> Option<u32> {
        self.inits.back().map(|(v, _)| *v)
    }

    pub fn init_segment(&self, version: u32) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, b)| b.clone())
    }

    /// A part, complete or growing. The part number just past the last part of a
    /// complete segment is the next segment's first part: a preload hint may have named
    /// it before the segment ended (see [`RenditionPackager::preload_hint`]), and the
    /// name is never used for other bytes.
    pub fn part(&self, msn: u64, part: u32) -> Option<PartView> {
        let (msn, part) = self.canonical_part(msn, part);
        let segment = self.segment_ref(msn)?;
        let p = segment.parts.get(part as usize)?;
        Some(PartView {
            chunks: p.chunks.clone(),
            complete: p.complete,
        })
    }

    /// The part a part number denotes: the number just past the last part of a
    /// complete segment is the next segment's first part (see [`Self::part`]); any
    /// other number is itself.
    pub fn canonical_part(&self, msn: u64, part: u32) -> (u64, u32) {
        match self.segment_ref(msn) {
            Some(s) if s.duration.is_some() && part as usize == s.parts.len() => (msn + 1, 0),
            _ => (msn, part),
        }
    }

    /// A complete segment's chunks.
    pub fn segment(&self, msn: u64) -> Option<Vec<Bytes>> {
        let s = self.segment_ref(msn).filter(|s| s.duration.is_some())?;
        Some(
            s.parts
                .iter()
                .flat_map(|p| p.chunks.iter().cloned())
                .collect(),
        )
    }

    /// A complete segment with its init segment and timing, for a recorder.
    pub fn completed_segment(&self, msn: u64) -> Option<crate::CompletedSegment> {
        let s = self.segment_ref(msn)?;
        let duration_ticks = s.duration?;
        Some(crate::CompletedSegment {
            msn,
            duration_ticks,
            timescale: self.main_timescale().get(),
            discontinuity: s.discontinuity,
            init_version: s.init_version,
            init: self.init_segment(s.init_version)?,
            program_date_ms: s.program_date_ms,
            chunks: s
                .parts
                .iter()
                .flat_map(|p| p.chunks.iter().cloned())
                .collect(),
            variant: self.variant(),
        })
    }

    /// The part the next playlist hints at with `EXT-X-PRELOAD-HINT`.
    pub fn preload_hint(&self) -> Option<(u64, u32)> {
        if self.ended {
            return None;
        }
        // The next part *number* this packager will emit. A segment's last part stays
        // open until the frame after it arrives, so a complete last part of the open
        // segment means the next frame continues this segment; should it start a new
        // segment after all (a discontinuity), `part` answers the hinted number with
        // the next segment's first part.
        match self.segments.back() {
            Some(s) if s.duration.is_none() => match s.parts.last() {
                Some(p) if !p.complete => Some((s.msn, s.parts.len() as u32 - 1)),
                _ => Some((s.msn, s.parts.len() as u32)),
            },
            Some(s) => Some((s.msn + 1, 0)),
            None => None,
        }
    }

    /// LAST-MSN and LAST-PART for a sibling's `EXT-X-RENDITION-REPORT`.
    pub fn rendition_report(&self, uri: &str) -> RenditionReport {
        let last = self.segments.iter().rev().find_map(|s| {
            let complete_parts = s.parts.iter().filter(|p| p.complete).count();
            (complete_parts > 0).then(|| (s.msn, complete_parts as u32 - 1))
        });
        RenditionReport {
            uri: uri.to_owned(),
            last_msn: last.map(|l| l.0),
            last_part: last.map(|l| l.1),
        }
    }

    /// Whether a blocking request for segment `msn` (and part `part`) can be answered.
    pub fn blocking_readiness(&self, msn: u64, part: Option<u32>) -> Readiness {
        if self.ended {
            return Readiness::Ready;
        }
        let Some(last) = self.segments.back() else {
            return Readiness::Wait;
        };
        if msn > last.msn + 2 {
            return Readiness::TooFarAhead;
        }
        let first = self.segments.front().map_or(0, |s| s.msn);
        if msn < first {
            return Readiness::Ready;
        }
        let Some(segment) = self.segment_ref(msn) else {
            // A segment after the open one: its parts are all ahead of the playlist.
            return match part {
                Some(p) if p as usize >= self.advance_part_limit() => Readiness::PartOutOfRange,
                _ => Readiness::Wait,
            };
        };
        match part {
            None => {
                if segment.duration.is_some() {
                    Readiness::Ready
                } else {
                    Readiness::Wait
                }
            }
            Some(p) => match segment.parts.get(p as usize) {
                Some(part) if part.complete => Readiness::Ready,
                // The part number just past the last part of a completed segment is the
                // next segment's part 0 (a preload hint may have named it, and RFC
                // 8216bis §6.2.5.2 is satisfied by a later segment); anything further
                // names a part that will never exist.
                None if segment.duration.is_some() => {
                    if p as usize == segment.parts.len() {
                        self.blocking_readiness(msn + 1, Some(0))
                    } else {
                        Readiness::PartOutOfRange
                    }
                }
                _ => {
                    let last_complete = segment.parts.iter().filter(|p| p.complete).count();
                    if p as usize >= last_complete + self.advance_part_limit() {
                        Readiness::PartOutOfRange
                    } else {
                        Readiness::Wait
                    }
                }
            },
        }
    }

    /// The Advance Part Limit of RFC 8216bis §6.2.5.2: how many parts beyond the last
    /// one of the playlist a blocking request may ask for (three seconds' worth when
    /// PART-TARGET is below one second, else three).
    fn advance_part_limit(&self) -> usize {
        let part_ms = self.part_target_ms.max(1);
        if part_ms < 1000 {
            3000_u32.div_ceil(part_ms) as usize
        } else {
            3
        }
    }

    /// `EXT-X-TARGETDURATION` of the playlist as served now (whole seconds): the
    /// configured segment target, or the longest complete segment rounded if longer.
    pub fn target_duration_secs(&self) -> u64 {
        let timescale = i64::from(self.main_timescale().get());
        let longest = self
            .segments
            .iter()
            .filter_map(|s| s.duration)
            .max()
            .unwrap_or(0);
        self.config
            .target_duration_secs()
            .max(playlist::rounded_secs(longest, timescale))
    }

    /// How long a blocking request may be held (RFC 8216bis §6.2.5.2 lets a client
    /// give up after three target durations): three times the playlist's
    /// TARGETDURATION, or of the open segment's length so far if it is longer (a late
    /// keyframe stretches it, and the TARGETDURATION with it once it completes).
    pub fn blocking_hold_limit(&self) -> std::time::Duration {
        let timescale = i64::from(self.main_timescale().get());
        let open = self
            .open_segment()
            .and_then(|s| Some(self.timeline_end()? - s.start))
            .map_or(0, |ticks| playlist::rounded_secs(ticks, timescale) + 1);
        std::time::Duration::from_secs(3 * self.target_duration_secs().max(open))
    }

    /// The media playlist; `skip` asks for a delta update (`_HLS_skip=YES`).
    pub fn media_playlist(&self, skip: bool, reports: &[RenditionReport]) -> String {
        let timescale = self.main_timescale();
        let secs = |ticks: i64| ticks as f64 / f64::from(timescale.get());
        let complete: Vec<&Segment> = self
            .segments
            .iter()
            .filter(|s| s.duration.is_some())
            .collect();
        let shown_from = complete.len().saturating_sub(self.config.window_segments);
        let hidden = &complete[..shown_from];
        let mut listed: Vec<&Segment> = complete[shown_from..].to_vec();
        if let Some(open) = self
            .segments
            .back()
            .filter(|s| s.duration.is_none() && s.parts.iter().any(|p| p.complete))
        {
            listed.push(open);
        }
        let discontinuity_sequence =
            self.dropped_discontinuities + hidden.iter().filter(|s| s.discontinuity).count() as u64;
        let segments: Vec<PlaylistSegment> = listed
            .iter()
            .map(|s| PlaylistSegment {
                msn: s.msn,
                duration_secs: s.duration.map(secs),
                program_date_ms: s.program_date_ms,
                discontinuity: s.discontinuity,
                init_version: s.init_version,
                parts: s
                    .parts
                    .iter()
                    .filter(|p| p.complete)
                    .map(|p| (secs(p.duration), p.independent))
                    .collect(),
            })
            .collect();
        playlist::render_media_playlist(&playlist::MediaPlaylist {
            part_target_ms: self.part_target_ms,
            target_duration: self.target_duration_secs(),
            discontinuity_sequence,
            segments,
            preload_hint: self.preload_hint(),
            reports,
            ended: self.ended,
            skip,
        })
    }

    /// The facts for this rendition's `EXT-X-STREAM-INF`, once media has flowed.
    pub fn variant(&self) -> Option<VariantInfo> {
        let tracks = self.tracks.as_ref()?;
        let timescale = self.main_timescale();
        let (mut peak, mut bits, mut ticks) = (0f64, 0f64, 0i64);
        for s in self.segments.iter().filter(|s| s.duration.is_some()) {
            let seg_bits = s.parts.iter().map(|p| p.bytes).sum::<usize>() as f64 * 8.0;
            let d = s.duration.unwrap_or(0).max(1);
            peak = peak.max(seg_bits * f64::from(timescale.get()) / d as f64);
            bits += seg_bits;
            ticks += d;
        }
        if ticks == 0 {
            // No complete segment yet: estimate from the complete parts.
            for p in self
                .segments
                .iter()
                .flat_map(|s| &s.parts)
                .filter(|p| p.complete)
            {
                bits += p.bytes as f64 * 8.0;
                ticks += p.duration.max(1);
            }
            if ticks == 0 {
                return None;
            }
            peak = bits * f64::from(timescale.get()) / ticks as f64 * 1.25;
        }
        let average = bits * f64::from(timescale.get()) / ticks as f64;
        let video = tracks.video.as_ref().map(|t| &t.codec);
        let frame_rate = video
            .and_then(CodecConfig::frame_rate)
            .map(|(n, d)| f64::from(n) / f64::from(d.max(1)))
            .or_else(|| {
                self.video
                    .interval
                    .map(|i| f64::from(media::VIDEO_TIMESCALE.get()) / i.max(1) as f64)
            });
        Some(VariantInfo {
            bandwidth: peak.max(average).round() as u64,
            average_bandwidth: average.round() as u64,
            codecs: tracks.codecs(),
            resolution: video.and_then(CodecConfig::video_size),
            frame_rate,
        })
    }

    /// Panics if the internal state is inconsistent. For tests and fuzzing.
    pub fn check_invariants(&self) {
        for w in self.segments.iter().collect::<Vec<_>>().windows(2) {
            assert_eq!(
                w[1].msn,
                w[0].msn + 1,
                "media sequence numbers are consecutive"
            );
            assert!(w[0].duration.is_some(), "only the last segment may be open");
            assert!(w[1].start >= w[0].start, "segments start in order");
            assert!(
                w[1].program_date_ms >= w[0].program_date_ms,
                "program date times never go back"
            );
        }
        for s in &self.segments {
            for (i, p) in s.parts.iter().enumerate() {
                let last = i + 1 == s.parts.len();
                assert!(
                    p.complete || (last && s.duration.is_none()),
                    "only the last part of the open segment may grow"
                );
                assert!(
                    p.duration <= self.part_ticks() || !p.complete || p.main_samples <= 1,
                    "part within target: {} > {} in segment {} ({} main-track samples)",
                    p.duration,
                    self.part_ticks(),
                    s.msn,
                    p.main_samples
                );
            }
            if s.duration.is_some() {
                assert!(!s.parts.is_empty(), "a complete segment has parts");
                assert!(
                    s.parts[0].independent,
                    "a segment starts with an independent part"
                );
            }
        }
        assert!(
            self.segments.len()
                <= self.config.window_segments * (1 + MAX_REMOVED_PER_WINDOW_SEGMENT) + 1,
            "retention is bounded"
        );
    }

    // ---- internals ----

    fn main_timescale(&self) -> NonZeroU32 {
        self.tracks
            .as_ref()
            .and_then(|t| t.video.as_ref().or(t.audio.as_ref()))
            .map_or(media::VIDEO_TIMESCALE, |t| t.timescale)
    }

    fn part_ticks(&self) -> i64 {
        i64::from(self.part_target_ms) * i64::from(self.main_timescale().get()) / 1000
    }

    fn main_state(&self, kind: TrackKind) -> &TrackState {
        match kind {
            TrackKind::Video => &self.video,
            TrackKind::Audio => &self.audio,
        }
    }

    fn main_state_mut(&mut self, kind: TrackKind) -> &mut TrackState {
        match kind {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        }
    }

    fn open_segment(&self) -> Option<&Segment> {
        self.segments.back().filter(|s| s.duration.is_none())
    }

    fn segment_ref(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    /// End of the written main-track timeline: last decode time + its duration.
    /// Keeps the retained segments' times in main-track ticks when the main track's
    /// timescale changes with the tracks (an audio-only rendition's sample rate, video
    /// added or removed): their EXTINF and PROGRAM-DATE-TIME stay right.
    fn rescale_timeline(&mut self, to: NonZeroU32) {
        let from = self.main_timescale();
        if from == to {
            return;
        }
        let r = |t: i64| rescale_ticks(t, from, to, Rounding::Nearest);
        for s in &mut self.segments {
            s.start = r(s.start);
            s.duration = s.duration.map(r);
            for p in &mut s.parts {
                p.start = r(p.start);
                // Down: a part of exactly PART-TARGET stays within it (rounded to the
                // nearest tick it may land a fraction of a tick over).
                p.duration = rescale_ticks(p.duration, from, to, Rounding::Down);
            }
        }
        self.offset = r(self.offset);
        if let Some((wall, ticks)) = self.anchor {
            self.anchor = Some((wall, r(ticks)));
        }
    }

    fn timeline_end(&self) -> Option<i64> {
        let kind = if self.tracks.as_ref().is_some_and(|t| t.video.is_some()) {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let s = self.main_state(kind);
        Some(s.last_dts? + s.interval.unwrap_or(0))
    }

    fn open_new_segment(&mut self, start: i64, boundary: i64, wall_ms: i64) {
        let msn = match self.segments.back() {
            Some(prev) => prev.msn + 1,
            None => self.numbering.first_msn(boundary),
        };
        let timescale = i64::from(self.main_timescale().get());
        let (anchor_wall, anchor_ticks) = *self.anchor.get_or_insert((wall_ms, start));
        let mut program_date_ms = anchor_wall + (start - anchor_ticks) * 1000 / timescale;
        if let Some(prev) = self.segments.back() {
            program_date_ms = program_date_ms.max(prev.program_date_ms);
        }
        let discontinuity =
            std::mem::take(&mut self.pending_discontinuity) && !self.segments.is_empty();
        self.segments.push_back(Segment {
            msn,
            boundary,
            start,
            duration: None,
            parts: Vec::new(),
            discontinuity,
            init_version: self.init_version().unwrap_or(0),
            program_date_ms,
            audio_end: None,
        });
        self.drop_removed_segments();
    }

    /// Forgets segments that left the playlist long enough ago. RFC 8216bis §6.2.2: a
    /// removed segment stays available for at least the duration of the playlist that
    /// last listed it plus its own. Media time measures that period: a segment left the
    /// playlist when the `window_segments` after it were complete, and is kept until
    /// twice the window's duration plus its own (and one target of slack for the open
    /// segment the playlist also listed) has been completed after it.
    fn drop_removed_segments(&mut self) {
        let window = self.config.window_segments;
        let slack = i64::from(self.config.segment_target_ms)
            * i64::from(self.main_timescale().get())
            / 1000;
        loop {
            let complete: Vec<i64> = self.segments.iter().filter_map(|s| s.duration).collect();
            if complete.len() <= window {
                return;
            }
            let listed: i64 = complete[complete.len() - window..].iter().sum();
            let later: i64 = complete[1..].iter().sum();
            let removed = complete.len() - window;
            let expired = later >= 2 * listed + complete[0] + slack;
            if !expired && removed <= window * MAX_REMOVED_PER_WINDOW_SEGMENT {
                return;
            }
            match self.segments.pop_front() {
                Some(old) => self.dropped_discontinuities += u64::from(old.discontinuity),
                None => return,
            }
        }
    }

    fn ensure_open_part(&mut self, start: i64, keyframe: bool) {
        let Some(seg) = self.segments.back_mut().filter(|s| s.duration.is_none()) else {
            return;
        };
        if seg.parts.last().is_none_or(|p| p.complete) {
            let audio_only = self.tracks.as_ref().is_some_and(|t| t.video.is_none());
            seg.parts.push(Part {
                start,
                duration: 0,
                main_samples: 0,
                chunks: Vec::new(),
                independent: keyframe || audio_only,
                complete: false,
                bytes: 0,
            });
            let (msn, part) = (seg.msn, seg.parts.len() as u32 - 1);
            self.events
                .push_back(PackageEvent::PartStarted { msn, part });
        }
    }

    /// Writes the pending samples as one chunk of the open part.
    fn flush_chunk(&mut self) -> Result<(), PackageError> {
        if self.pending_video.is_empty() && self.pending_audio.is_empty() {
            return Ok(());
        }
        let audio_timescale = self
            .tracks
            .as_ref()
            .and_then(|t| t.audio.as_ref())
            .map(|t| t.timescale);
        let main_timescale = self.main_timescale();
        let Some(seg) = self.segments.back_mut().filter(|s| s.duration.is_none()) else {
            self.pending_video.clear();
            self.pending_audio.clear();
            return Ok(());
        };
        let Some(part) = seg.parts.last_mut().filter(|p| !p.complete) else {
            // Audio that arrived after its part completed waits for the next part.
            return Ok(());
        };
        let main_is_video = !self.pending_video.is_empty()
            || self.tracks.as_ref().is_some_and(|t| t.video.is_some());
        let mut fragments = Vec::with_capacity(2);
        for (kind, pending) in [
            (TrackKind::Video, &mut self.pending_video),
            (TrackKind::Audio, &mut self.pending_audio),
        ] {
            let pending_last_dts = pending.last().map(|(d, _)| *d);
            if let Some(&(base, _)) = pending.first() {
                let samples: Vec<Sample> = pending.drain(..).map(|(_, s)| s).collect();
                let is_main = (kind == TrackKind::Video) == main_is_video;
                if is_main {
                    // The real span: the last sample's decode time plus its duration.
                    let end = pending_last_dts.unwrap_or(base)
                        + samples.last().map_or(0, |s| i64::from(s.duration));
                    part.duration = end - part.start;
                    part.main_samples += samples.len();
                } else if let Some(audio_timescale) = audio_timescale {
                    let end = pending_last_dts.unwrap_or(base)
                        + samples.last().map_or(0, |s| i64::from(s.duration));
                    let end = rescale_ticks(end, audio_timescale, main_timescale, Rounding::Up);
                    seg.audio_end = seg.audio_end.max(Some(end));
                }
                fragments.push(TrackFragment {
                    track_id: cmaf::track_id(kind),
                    base_media_decode_time: u64::try_from(base).unwrap_or(0),
                    samples,
                });
            }
        }
        self.sequence_number = self.sequence_number.wrapping_add(1);
        let chunk = cmaf::fragment(self.sequence_number, &fragments)
            .map_err(|e| PackageError::Cmaf(e.to_string()))?;
        part.bytes += chunk.len();
        part.chunks.push(chunk);
        let (msn, index) = (seg.msn, seg.parts.len().saturating_sub(1) as u32);
        self.events
            .push_back(PackageEvent::ChunkAppended { msn, part: index });
        Ok(())
    }

    /// Completes the open part; `next_start` is where the next frame begins.
    fn close_part(&mut self, next_start: i64) {
        let part_ticks = self.part_ticks();
        let Some(seg) = self.segments.back_mut().filter(|s| s.duration.is_none()) else {
            return;
        };
        let index = seg.parts.len().saturating_sub(1) as u32;
        if let Some(part) = seg.parts.last_mut().filter(|p| !p.complete) {
            // Frames the encoder dropped leave a hole before the next frame: the part
            // spans it, up to PART-TARGET, so that it is not short inside its segment
            // (RFC 8216bis: at least 85 % of PART-TARGET) and the parts still add up
            // to the segment's duration.
            part.duration = part.duration.max((next_start - part.start).min(part_ticks));
            part.complete = true;
            let (msn, independent) = (seg.msn, part.independent);
            self.events.push_back(PackageEvent::PartCompleted {
                msn,
                part: index,
                independent,
            });
        }
    }

    /// Completes the open segment; `next_start` is where the next one begins.
    fn close_segment(&mut self, next_start: Option<i64>, _now: SystemTime) {
        let _ = self.flush_chunk();
        let end = next_start.or_else(|| self.timeline_end());
        if let Some(end) = end {
            self.close_segment_at(end);
        }
    }

    fn close_segment_at(&mut self, end: i64) {
        self.close_part(end);
        let Some(seg) = self.segments.back_mut().filter(|s| s.duration.is_none()) else {
            return;
        };
        if seg.parts.is_empty() {
            self.segments.pop_back();
            return;
        }
        seg.duration = Some((end - seg.start).max(1));
        let msn = seg.msn;
        self.expect_segment_end = false;
        self.events
            .push_back(PackageEvent::SegmentCompleted { msn });
    }
}

/// PART-TARGET (ms) for a main track of `frame_rate` (frames per second as n/d):
/// the configured target if its whole frames fill at least 90 % of it (201 ms: six
/// frames at 30 and 29.97 fps, five at 25, ten at 50, twelve at 60), else one frame
/// more than fits, plus room for millisecond timestamps (24 fps: five frames, 211 ms).
/// RFC 8216bis: a part inside a segment is at least 85 % of PART-TARGET, and the
/// four frames of 24 fps that fit in 201 ms are 83 %. Deterministic from the codec
/// configuration, so A and B pipelines agree.
fn part_target_for(config: &PackagerConfig, frame_rate: Option<(u32, u32)>) -> u32 {
    let target = config.part_target_ms;
    let Some((n, d)) = frame_rate.filter(|(n, d)| *n > 0 && *d > 0) else {
        return target;
    };
    let frame_ms = 1000.0 * f64::from(d) / f64::from(n);
    let whole = (f64::from(target) / frame_ms).floor();
    if whole * frame_ms >= 0.9 * f64::from(target) {
        return target;
    }
    let longer = ((whole + 1.0) * frame_ms + 2.0).ceil() as u32;
    // A frame longer than half a segment is a part of its own whatever the target.
    longer.min((config.segment_target_ms / 2).max(target))
}

fn default_interval(track: &media::Track, timescale: NonZeroU32) -> i64 {
    match &track.codec {
        CodecConfig::Avc(_) | CodecConfig::Hevc(_) | CodecConfig::Av1(_) => track
            .codec
            .frame_rate()
            .filter(|(n, d)| *n > 0 && *d > 0)
            .map(|(n, d)| i64::from(timescale.get()) * i64::from(d) / i64::from(n))
            .unwrap_or(i64::from(timescale.get()) / 30),
        CodecConfig::Aac(aac) => i64::from(aac.samples_per_frame()),
        CodecConfig::Mp3(mp3) => i64::from(mp3.samples_per_frame),
        CodecConfig::Opus(_) => 960,
    }
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;

/// The version in an init segment's name (`init-V.mp4`): a checksum of its bytes, so that
/// a name is never used for other bytes — caches keep init segments as immutable, and an
/// origin that restarts, or a stream whose codec changes, would otherwise serve a new
/// configuration under an old name (players fail to decode). A and B pipelines, which
/// make the same init segment from the same source, name it alike.
fn init_version(init: &[u8]) -> u32 {
    crc32fast::hash(init)
}
