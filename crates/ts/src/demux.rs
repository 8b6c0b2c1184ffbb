//! The demuxer: transport packets in, a program's tracks and frames out.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;

use bytes::Bytes;
use media::avc::annexb_nalus;
use media::hevc::{NAL_AUD, NAL_PPS, NAL_SPS, NAL_VPS};
use media::opus::OPUS_RATE;
use media::{
    AacConfig, Av1Config, AvcConfig, CodecConfig, Frame, HevcConfig, MediaTime, OpusConfig,
    Rounding, Track, TrackKind, Tracks, VIDEO_TIMESCALE, VideoCodec, rescale_ticks,
};

use crate::clock::Unwrapper;
use crate::packet::{
    NULL_PID, PACKET_LEN, PAT_PID, Pmt, SYNC_BYTE, SectionBuffer, StreamEntry, parse_header,
    parse_pat, parse_pes_header, parse_pmt,
};

/// What the demuxer reports, in stream order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DemuxEvent {
    /// A program map was found or changed (a new PMT version): the streams it
    /// declares. The tracks of the old program are over; new [`DemuxEvent::Tracks`]
    /// follow once the new streams' decoder configurations are known.
    Program(ProgramInfo),
    /// The tracks of the frames that follow (also sent again when a decoder
    /// configuration changes, e.g. a new resolution).
    Tracks(Tracks),
    /// One access unit: H.264 or HEVC with 4-byte NAL lengths (as in avcC/hvcC), or an
    /// AV1 temporal unit of low-overhead OBUs (as in `av01`), on the 90 kHz timeline, one raw AAC frame on its sample-rate timeline, or one Opus
    /// packet on Opus's 48 kHz one. Times are the unwrapped PTS/DTS.
    Frame(Frame),
    /// A stream of the program that is not turned into frames (AC-3, VVC, …).
    /// Its PES payloads still come out as [`DemuxEvent::ElementaryStream`].
    UnsupportedStream {
        pid: u16,
        stream_type: u8,
        name: String,
    },
    /// One PES payload of an unsupported stream, for a caller that handles the codec.
    ElementaryStream(ElementaryData),
    /// Packets of a PID were lost (its continuity counter skipped). The access unit
    /// they belonged to is dropped; demuxing goes on at the next one.
    ContinuityGap { pid: u16, expected: u8, found: u8 },
    /// Something could not be read; it was skipped.
    Malformed { pid: u16, reason: String },
}

/// The streams of a program as its PMT declares them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    pub program_number: u16,
    pub version: u8,
    pub streams: Vec<StreamEntry>,
}

/// A PES payload of a stream the demuxer does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementaryData {
    pub pid: u16,
    pub stream_type: u8,
    /// Unwrapped 90 kHz times, as for frames.
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    pub data: Bytes,
}

/// Running counts, for metrics and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Transport packets read.
    pub packets: u64,
    /// Continuity-counter gaps (lost packets) on the program's PIDs.
    pub continuity_gaps: u64,
    /// Times the byte stream lost packet alignment and resynchronised.
    pub sync_losses: u64,
    /// Packets flagged with transport_error_indicator.
    pub transport_errors: u64,
    /// Unreadable sections, PES headers, ADTS frames or parameter sets.
    pub malformed: u64,
    /// Access units dropped: damaged by a gap, before their decoder configuration,
    /// or with a decode time going backwards.
    pub dropped_frames: u64,
    /// Times the 33-bit timestamps wrapped around (every ~26.5 h).
    pub timestamp_wraps: u64,
    /// Program maps applied (the first, and each change).
    pub programs: u64,
}

/// A PES packet longer than this is not media we can take (an 8K intra frame is a few MB).
const MAX_PES: usize = 16 * 1024 * 1024;
/// A video PID's PES buffer is kept from one access unit to the next (each is copied
/// into its sample anyway), so it grows once rather than from empty for every frame
/// (the reallocations were the SRT ingest's largest cost after the socket); one that
/// grew past this (a huge keyframe) is let go.
const KEEP_PES_CAPACITY: usize = 4 * 1024 * 1024;
/// Frames held while waiting for the other track's configuration, at most.
const HOLD_FRAMES: usize = 1000;
/// ... and at most this much media time.
const HOLD_MS: i64 = 2000;
/// An AAC frame this close (in frames) to the sample count keeps the count.
const AUDIO_RESYNC_FRAMES: i64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Video(VideoCodec),
    /// ADTS AAC.
    Audio,
    Opus,
    Other {
        stream_type: u8,
    },
}

#[derive(Debug)]
struct PesBuffer {
    role: Role,
    data: Vec<u8>,
    /// Collecting a PES packet (false after a gap until the next unit start).
    active: bool,
    /// The whole PES packet's length, once its header says so (0: unbounded).
    total: Option<usize>,
}

/// A sans-IO MPEG-TS demuxer for one transport stream carrying one program.
///
/// Push bytes with [`Demuxer::push`] (any split: SRT payloads, file chunks), then
/// drain [`Demuxer::poll_event`] until `None`. Call [`Demuxer::finish`] at the end of
/// the stream to get the last access unit out. The first program of the PAT is
/// followed; H.264 (stream type 0x1B), HEVC (0x24), AV1 (0x06 with an `AV01`
/// registration descriptor), ADTS AAC (0x0F) and Opus (0x06 with an `Opus` registration
/// descriptor) become frames.
#[derive(Debug, Default)]
pub struct Demuxer {
    carry: Vec<u8>,
    in_sync: bool,
    counters: HashMap<u16, u8>,
    pat: SectionBuffer,
    pmt_pid: Option<u16>,
    pmt: SectionBuffer,
    program: Option<Pmt>,
    pes: HashMap<u16, PesBuffer>,
    clock: Unwrapper,
    video_pid: Option<u16>,
    audio_pid: Option<u16>,
    /// The latest in-band parameter sets of the video stream (the VPS only for HEVC;
    /// AV1's sequence header OBU in `sps`).
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The video's decoder configuration (avcC or hvcC), built from those sets.
    video: Option<CodecConfig>,
    aac: Option<AacConfig>,
    /// Set from the first Opus packet (its TOC says mono or stereo).
    opus: Option<OpusConfig>,
    last_video_dts: Option<i64>,
    next_audio_dts: Option<i64>,
    /// The last audio frame's decode time (in the current AAC config's rate): a PES
    /// whose time goes back is dropped, as video's is.
    last_audio_dts: Option<i64>,
    announced: Option<Tracks>,
    held: Vec<Frame>,
    events: VecDeque<DemuxEvent>,
    stats: DemuxStats,
}

impl Demuxer {
    pub fn new() -> Self {
        Self {
            in_sync: true,
            ..Self::default()
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> DemuxStats {
        DemuxStats {
            timestamp_wraps: self.clock.wraps(),
            ..self.stats
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<DemuxEvent> {
        self.events.pop_front()
    }

    /// Feeds transport-stream bytes. Packets may be split anywhere; bytes before a
    /// sync byte are skipped (and counted as a sync loss).
    pub fn push(&mut self, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        let mut pos = 0;
        while buf.len() - pos >= PACKET_LEN {
            if buf[pos] != SYNC_BYTE {
                if self.in_sync {
                    self.in_sync = false;
                    self.stats.sync_losses += 1;
                }
                pos = buf[pos + 1..]
                    .iter()
                    .position(|b| *b == SYNC_BYTE)
                    .map_or(buf.len(), |i| pos + 1 + i);
                continue;
            }
            let mut packet = [0u8; PACKET_LEN];
            packet.copy_from_slice(&buf[pos..pos + PACKET_LEN]);
            // A sync byte is only trusted when the next packet (if here) has one too.
            if !self.in_sync && buf.get(pos + PACKET_LEN).is_some_and(|b| *b != SYNC_BYTE) {
                pos += 1;
                continue;
            }
            self.in_sync = true;
            self.handle_packet(&packet);
            pos += PACKET_LEN;
        }
        buf.drain(..pos);
        self.carry = buf;
    }

    /// The end of the stream: emits the access units still being collected and any
    /// frames held back waiting for a track's configuration.
    pub fn finish(&mut self) {
        let pids: Vec<u16> = self.pes.keys().copied().collect();
        for pid in pids {
            self.finish_pes(pid);
        }
        self.release_held(true);
    }

    fn handle_packet(&mut self, p: &[u8; PACKET_LEN]) {
        self.stats.packets += 1;
        let Some(h) = parse_header(p) else {
            self.malformed(
                0xffff,
                "transport packet with an adaptation field beyond its end",
            );
            return;
        };
        if h.pid == NULL_PID {
            return;
        }
        let tracked =
            h.pid == PAT_PID || Some(h.pid) == self.pmt_pid || self.pes.contains_key(&h.pid);
        if !tracked {
            return;
        }
        if h.transport_error {
            self.stats.transport_errors += 1;
            self.break_pes(h.pid);
            return;
        }
        if h.has_payload {
            if let Some(&last) = self.counters.get(&h.pid) {
                let expected = (last + 1) & 0x0f;
                if h.continuity_counter == last && !h.discontinuity {
                    // A duplicate packet (allowed once): same bytes again.
                    return;
                }
                if h.continuity_counter != expected && !h.discontinuity {
                    self.stats.continuity_gaps += 1;
                    self.events.push_back(DemuxEvent::ContinuityGap {
                        pid: h.pid,
                        expected,
                        found: h.continuity_counter,
                    });
                    self.break_pes(h.pid);
                }
            }
            self.counters.insert(h.pid, h.continuity_counter);
        }
        if !h.has_payload {
            return;
        }
        let payload = &p[h.payload_offset..];
        if h.pid == PAT_PID {
            match self.pat.push(payload, h.payload_unit_start) {
                Ok(Some(section)) => self.handle_pat(&section),
                Ok(None) => {}
                Err(reason) => self.malformed(h.pid, reason),
            }
        } else if Some(h.pid) == self.pmt_pid {
            match self.pmt.push(payload, h.payload_unit_start) {
                Ok(Some(section)) => match parse_pmt(&section) {
                    Ok(pmt) => self.handle_pmt(pmt),
                    Err(reason) => self.malformed(h.pid, reason),
                },
                Ok(None) => {}
                Err(reason) => self.malformed(h.pid, reason),
            }
        } else {
            self.handle_pes_payload(h.pid, payload, h.payload_unit_start);
        }
    }

    fn handle_pat(&mut self, section: &[u8]) {
        match parse_pat(section) {
            Ok(Some((_, pid))) if Some(pid) != self.pmt_pid => {
                self.pmt_pid = Some(pid);
                self.pmt.reset();
                self.counters.remove(&pid);
            }
            Ok(_) => {}
            Err(reason) => self.malformed(PAT_PID, reason),
        }
    }

    fn handle_pmt(&mut self, pmt: Pmt) {
        if self.program.as_ref() == Some(&pmt) {
            return;
        }
        // The old program's last access units belong to the old track set.
        let pids: Vec<u16> = self.pes.keys().copied().collect();
        for pid in pids {
            self.finish_pes(pid);
        }
        self.release_held(true);
        for pid in self.pes.keys() {
            self.counters.remove(pid);
        }
        self.pes.clear();
        self.video_pid = None;
        self.audio_pid = None;
        self.vps = None;
        self.sps = None;
        self.pps = None;
        self.video = None;
        self.aac = None;
        self.opus = None;
        self.last_video_dts = None;
        self.next_audio_dts = None;
        self.last_audio_dts = None;
        self.announced = None;
        self.stats.programs += 1;
        self.events.push_back(DemuxEvent::Program(ProgramInfo {
            program_number: pmt.program_number,
            version: pmt.version,
            streams: pmt.streams.clone(),
        }));
        for entry in &pmt.streams {
            let role = match entry.stream_type {
                0x1b if self.video_pid.is_none() => {
                    self.video_pid = Some(entry.pid);
                    Role::Video(VideoCodec::Avc)
                }
                0x24 if self.video_pid.is_none() => {
                    self.video_pid = Some(entry.pid);
                    Role::Video(VideoCodec::Hevc)
                }
                0x06 if self.video_pid.is_none() && is_av1(entry) => {
                    self.video_pid = Some(entry.pid);
                    Role::Video(VideoCodec::Av1)
                }
                0x0f if self.audio_pid.is_none() => {
                    self.audio_pid = Some(entry.pid);
                    Role::Audio
                }
                0x06 if self.audio_pid.is_none() && entry.registration == Some(*b"Opus") => {
                    self.audio_pid = Some(entry.pid);
                    Role::Opus
                }
                stream_type => {
                    let name = match stream_type {
                        _ if matches!(stream_type, 0x1b | 0x24) || is_av1(entry) => format!(
                            "{} (a second video stream; only the first is taken)",
                            stream_name(entry)
                        ),
                        0x0f => "AAC (a second audio stream; only the first is taken)".into(),
                        0x06 if entry.registration == Some(*b"Opus") => {
                            "Opus (a second audio stream; only the first is taken)".into()
                        }
                        _ => stream_name(entry).to_string(),
                    };
                    self.events.push_back(DemuxEvent::UnsupportedStream {
                        pid: entry.pid,
                        stream_type,
                        name,
                    });
                    Role::Other { stream_type }
                }
            };
            self.pes.insert(
                entry.pid,
                PesBuffer {
                    role,
                    data: Vec::new(),
                    active: false,
                    total: None,
                },
            );
        }
        self.program = Some(pmt);
    }

    fn handle_pes_payload(&mut self, pid: u16, payload: &[u8], unit_start: bool) {
        if unit_start {
            self.finish_pes(pid);
        }
        let Some(buffer) = self.pes.get_mut(&pid) else {
            return;
        };
        if unit_start {
            buffer.data.clear();
            buffer.active = true;
            buffer.total = None;
        }
        if !buffer.active {
            return;
        }
        if buffer.data.len() + payload.len() > MAX_PES {
            buffer.active = false;
            buffer.data.clear();
            self.stats.dropped_frames += 1;
            self.malformed(pid, "PES packet larger than 16 MiB; dropped");
            return;
        }
        buffer.data.extend_from_slice(payload);
        if buffer.total.is_none() && buffer.data.len() >= 6 {
            let len = usize::from(u16::from_be_bytes([buffer.data[4], buffer.data[5]]));
            buffer.total = Some(if len == 0 { 0 } else { 6 + len });
        }
        // A bounded PES packet (audio) is complete without waiting for the next one.
        if let Some(total) = buffer.total.filter(|t| *t > 0)
            && buffer.data.len() >= total
        {
            self.finish_pes(pid);
        }
    }

    /// A gap or error on `pid`: the access unit being collected is damaged.
    fn break_pes(&mut self, pid: u16) {
        if let Some(buffer) = self.pes.get_mut(&pid)
            && buffer.active
        {
            buffer.active = false;
            buffer.data.clear();
            self.stats.dropped_frames += 1;
        }
    }

    /// Hands a collected PES packet on, if one is being collected.
    fn finish_pes(&mut self, pid: u16) {
        let Some(buffer) = self.pes.get_mut(&pid) else {
            return;
        };
        if !buffer.active {
            return;
        }
        buffer.active = false;
        let mut data = std::mem::take(&mut buffer.data);
        if let Some(total) = buffer.total.filter(|t| *t > 0) {
            data.truncate(total);
        }
        let role = buffer.role;
        let header = match parse_pes_header(&data) {
            Ok(Some(header)) => header,
            Ok(None) => {
                if !matches!(role, Role::Other { .. }) {
                    self.stats.dropped_frames += 1;
                    self.malformed(pid, "PES packet shorter than its header");
                }
                return;
            }
            Err(reason) => {
                if !matches!(role, Role::Other { .. }) {
                    self.stats.dropped_frames += 1;
                    self.malformed(pid, reason);
                }
                return;
            }
        };
        let pts = header.pts.map(|t| self.clock.unwrap(t));
        let dts = header.dts.map(|t| self.clock.unwrap(t)).or(pts);
        let start = header.payload_offset.min(data.len());
        // Audio frames and other streams' payloads are slices of it, shared, not copied.
        let shared = |data: Vec<u8>| Bytes::from(data).slice(start..);
        match role {
            Role::Video(codec) => {
                // Copied into the sample (start codes become lengths): the buffer goes back.
                let payload = &data[start..];
                match codec {
                    VideoCodec::Hevc => self.handle_hevc(pid, pts, dts, payload),
                    VideoCodec::Av1 => self.handle_av1(pid, pts, dts, payload),
                    VideoCodec::Avc => self.handle_h264(pid, pts, dts, payload),
                }
                if data.capacity() <= KEEP_PES_CAPACITY
                    && let Some(buffer) = self.pes.get_mut(&pid)
                {
                    data.clear();
                    buffer.data = data;
                }
            }
            Role::Audio => self.handle_adts(pid, pts, &shared(data)),
            Role::Opus => self.handle_opus(pid, pts, &shared(data)),
            Role::Other { stream_type } => {
                self.events
                    .push_back(DemuxEvent::ElementaryStream(ElementaryData {
                        pid,
                        stream_type,
                        pts,
                        dts,
                        data: shared(data),
                    }));
            }
        }
    }

    fn handle_h264(&mut self, pid: u16, pts: Option<i64>, dts: Option<i64>, payload: &[u8]) {
        let mut avcc = Vec::with_capacity(payload.len() + 16);
        let mut keyframe = false;
        let mut new_sets = false;
        for nal in annexb_nalus(payload) {
            match nal[0] & 0x1f {
                7 => {
                    if self.sps.as_deref() != Some(nal) {
                        self.sps = Some(Bytes::copy_from_slice(nal));
                        new_sets = true;
                    }
                }
                8 => {
                    if self.pps.as_deref() != Some(nal) {
                        self.pps = Some(Bytes::copy_from_slice(nal));
                        new_sets = true;
                    }
                }
                // Access unit delimiters and filler: framing the fMP4 sample does itself.
                9 | 12 => {}
                kind => {
                    keyframe |= kind == 5;
                    avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    avcc.extend_from_slice(nal);
                }
            }
        }
        if new_sets && let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
            match AvcConfig::from_parameter_sets(
                std::slice::from_ref(sps),
                std::slice::from_ref(pps),
            ) {
                Ok(config) => self.video = Some(CodecConfig::Avc(config)),
                Err(e) => self.malformed(pid, &format!("H.264 parameter sets: {e}")),
            }
        }
        self.video_access_unit(pid, "H.264", pts, dts, keyframe, avcc);
    }

    /// An HEVC access unit (Annex B): parameter sets kept for the hvcC record (a new
    /// record, hence a new track set, when they change), the other NAL units framed
    /// with 4-byte lengths; an IRAP picture (NAL types 16–23) is a keyframe.
    fn handle_hevc(&mut self, pid: u16, pts: Option<i64>, dts: Option<i64>, payload: &[u8]) {
        let mut sample = Vec::with_capacity(payload.len() + 16);
        let mut keyframe = false;
        let mut new_sets = false;
        for nal in annexb_nalus(payload) {
            let Some(kind) = media::hevc::nal_type(nal) else {
                continue;
            };
            let slot = match kind {
                NAL_VPS => Some(&mut self.vps),
                NAL_SPS => Some(&mut self.sps),
                NAL_PPS => Some(&mut self.pps),
                _ => None,
            };
            if let Some(slot) = slot {
                if slot.as_deref() != Some(nal) {
                    *slot = Some(Bytes::copy_from_slice(nal));
                    new_sets = true;
                }
                continue;
            }
            // Access unit delimiters and filler data: the fMP4 sample frames itself.
            if kind == NAL_AUD || kind == 38 {
                continue;
            }
            keyframe |= (16..=23).contains(&kind);
            sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            sample.extend_from_slice(nal);
        }
        if new_sets && let (Some(vps), Some(sps), Some(pps)) = (&self.vps, &self.sps, &self.pps) {
            match HevcConfig::from_parameter_sets(
                std::slice::from_ref(vps),
                std::slice::from_ref(sps),
                std::slice::from_ref(pps),
            ) {
                Ok(config) => self.video = Some(CodecConfig::Hevc(config)),
                Err(e) => self.malformed(pid, &format!("HEVC parameter sets: {e}")),
            }
        }
        self.video_access_unit(pid, "HEVC", pts, dts, keyframe, sample);
    }

    /// An AV1 temporal unit (the start-code format of AOM's AV1-in-MPEG-2-TS, or
    /// low-overhead OBUs): the sequence header kept for the av1C record (a new record,
    /// hence a new track set, when it changes), temporal delimiters and padding
    /// dropped as an `av01` sample wants; a key frame is a keyframe.
    fn handle_av1(&mut self, pid: u16, pts: Option<i64>, dts: Option<i64>, payload: &[u8]) {
        let unit = media::av1::from_start_code_format(payload);
        if let Some(header) = media::av1::find_sequence_header(&unit)
            && self.sps.as_deref() != Some(header)
        {
            match Av1Config::from_sequence_header(header) {
                Ok(config) => {
                    self.sps = Some(Bytes::copy_from_slice(header));
                    self.video = Some(CodecConfig::Av1(config));
                }
                Err(e) => self.malformed(pid, &format!("AV1 sequence header: {e}")),
            }
        }
        let keyframe = media::av1::is_key_frame(&unit);
        let sample = media::av1::strip_temporal_delimiters(&unit);
        self.video_access_unit(pid, "AV1", pts, dts, keyframe, sample);
    }

    /// A video access unit in length-prefixed framing, placed on the 90 kHz timeline;
    /// dropped before the decoder configuration or when its decode time goes backwards.
    fn video_access_unit(
        &mut self,
        pid: u16,
        codec: &str,
        pts: Option<i64>,
        dts: Option<i64>,
        keyframe: bool,
        data: Vec<u8>,
    ) {
        let (Some(pts), Some(dts)) = (pts, dts) else {
            if !data.is_empty() {
                self.stats.dropped_frames += 1;
                self.malformed(pid, &format!("{codec} access unit without a PTS"));
            }
            return;
        };
        if data.is_empty() {
            return;
        }
        if self.video.is_none() || self.last_video_dts.is_some_and(|last| dts <= last) {
            self.stats.dropped_frames += 1;
            return;
        }
        self.last_video_dts = Some(dts);
        self.emit(Frame {
            kind: TrackKind::Video,
            dts: MediaTime::new(dts, VIDEO_TIMESCALE),
            pts: MediaTime::new(pts.max(dts), VIDEO_TIMESCALE),
            keyframe,
            data: Bytes::from(data),
        });
    }

    fn handle_adts(&mut self, pid: u16, pts: Option<i64>, payload: &Bytes) {
        let Some(pts) = pts else {
            self.stats.dropped_frames += 1;
            self.malformed(pid, "AAC PES packet without a PTS");
            return;
        };
        let mut rest = payload.clone();
        let mut index = 0i64;
        while !rest.is_empty() {
            let Some((config, header_len, frame_len)) = media::aac::parse_adts_header(&rest) else {
                self.stats.dropped_frames += 1;
                self.malformed(pid, "ADTS frame without a valid header");
                return;
            };
            if header_len > frame_len || frame_len > rest.len() {
                self.stats.dropped_frames += 1;
                self.malformed(pid, "ADTS frame longer than its PES packet");
                return;
            }
            if self.aac.as_ref() != Some(&config) {
                // The floor keeps its place in time, counted in the new rate: a
                // configuration that changes back and forth never sends audio back.
                let old_rate = self
                    .aac
                    .as_ref()
                    .and_then(|c| NonZeroU32::new(c.sample_rate));
                self.last_audio_dts = match (
                    self.last_audio_dts,
                    old_rate,
                    NonZeroU32::new(config.sample_rate),
                ) {
                    (Some(last), Some(from), Some(to)) => {
                        Some(rescale_ticks(last, from, to, Rounding::Up))
                    }
                    _ => None,
                };
                self.aac = Some(config.clone());
                self.next_audio_dts = None;
                // Frames held for the announcement were counted in the old
                // configuration's rate: they cannot go out under the new one.
                let held = self.held.len();
                self.held.retain(|f| f.kind != TrackKind::Audio);
                self.stats.dropped_frames += (held - self.held.len()) as u64;
            }
            let Some(rate) = NonZeroU32::new(config.sample_rate) else {
                self.malformed(pid, "AAC sample rate 0");
                return;
            };
            let spf = i64::from(config.samples_per_frame());
            let stamped =
                rescale_ticks(pts, VIDEO_TIMESCALE, rate, Rounding::Nearest) + index * spf;
            let frame = rest.slice(header_len..frame_len);
            rest = rest.slice(frame_len..);
            index += 1;
            self.audio_frame(stamped, spf, AUDIO_RESYNC_FRAMES * spf, rate, frame);
        }
    }

    /// A PES packet of Opus access units, each behind its control header (the Opus in
    /// MPEG-TS mapping of the Opus project: a 0x3ff prefix, trim flags, the
    /// size in 255-byte steps). The PTS is the first unit's; the others follow it by the
    /// durations their TOC bytes give.
    fn handle_opus(&mut self, pid: u16, pts: Option<i64>, payload: &Bytes) {
        let Some(pts) = pts else {
            self.stats.dropped_frames += 1;
            self.malformed(pid, "Opus PES packet without a PTS");
            return;
        };
        let rate = NonZeroU32::new(OPUS_RATE).unwrap_or(VIDEO_TIMESCALE);
        let start = rescale_ticks(pts, VIDEO_TIMESCALE, rate, Rounding::Nearest);
        let mut rest = payload.clone();
        let mut offset = 0i64;
        while !rest.is_empty() {
            let Some((header_len, size)) = opus_control_header(&rest) else {
                self.stats.dropped_frames += 1;
                self.malformed(pid, "Opus access unit without a valid control header");
                return;
            };
            let Some(end) = header_len.checked_add(size).filter(|e| *e <= rest.len()) else {
                self.stats.dropped_frames += 1;
                self.malformed(pid, "Opus access unit longer than its PES packet");
                return;
            };
            let packet = rest.slice(header_len..end);
            rest = rest.slice(end..);
            let Some(samples) = media::opus::packet_samples(&packet) else {
                self.stats.dropped_frames += 1;
                self.malformed(pid, "Opus packet without a valid TOC byte");
                continue;
            };
            let samples = i64::from(samples);
            if self.opus.is_none() {
                let channels = if media::opus::packet_is_stereo(&packet) {
                    2
                } else {
                    1
                };
                self.opus = Some(OpusConfig { channels });
            }
            let stamped = start + offset;
            offset += samples;
            // 20 ms, Opus's usual packet, for the tolerance.
            self.audio_frame(stamped, samples, AUDIO_RESYNC_FRAMES * 960, rate, packet);
        }
    }

    /// An audio frame stamped from its PES time, lasting `samples`: kept on the
    /// sample count while the PES times agree within `tolerance` (they are rounded to
    /// 90 kHz), re-anchored when they do not (a gap, a new clock); dropped when its
    /// time goes back (a damaged or rewound PTS: not playable in order).
    fn audio_frame(
        &mut self,
        stamped: i64,
        samples: i64,
        tolerance: i64,
        rate: NonZeroU32,
        data: Bytes,
    ) {
        let dts = match self.next_audio_dts {
            Some(next) if (stamped - next).abs() <= tolerance => next,
            _ => stamped,
        };
        self.next_audio_dts = Some(dts + samples);
        if self.last_audio_dts.is_some_and(|last| dts <= last) {
            self.stats.dropped_frames += 1;
            return;
        }
        self.last_audio_dts = Some(dts);
        let time = MediaTime::new(dts, rate);
        self.emit(Frame {
            kind: TrackKind::Audio,
            dts: time,
            pts: time,
            keyframe: true,
            data,
        });
    }

    /// The tracks the frames so far describe.
    fn current_tracks(&self) -> Tracks {
        Tracks {
            video: self.video.clone().map(|codec| Track {
                kind: TrackKind::Video,
                timescale: VIDEO_TIMESCALE,
                codec,
            }),
            audio: match (&self.aac, self.opus) {
                (Some(c), _) => NonZeroU32::new(c.sample_rate).map(|timescale| Track {
                    kind: TrackKind::Audio,
                    timescale,
                    codec: CodecConfig::Aac(c.clone()),
                }),
                (None, Some(c)) => NonZeroU32::new(OPUS_RATE).map(|timescale| Track {
                    kind: TrackKind::Audio,
                    timescale,
                    codec: CodecConfig::Opus(c),
                }),
                (None, None) => None,
            },
        }
    }

    /// Every stream the program declares has its configuration.
    fn ready(&self) -> bool {
        (self.video_pid.is_none() || self.video.is_some())
            && (self.audio_pid.is_none() || self.aac.is_some() || self.opus.is_some())
    }

    fn emit(&mut self, frame: Frame) {
        let tracks = self.current_tracks();
        // Behind frames already held, a frame waits its turn even if it fits the
        // announced tracks (a configuration that changed and changed back): frames
        // leave in the order they came, so decode times never go back.
        if self.announced.as_ref() == Some(&tracks) && self.held.is_empty() {
            self.events.push_back(DemuxEvent::Frame(frame));
            return;
        }
        self.held.push(frame);
        let span_ms = match (self.held.first(), self.held.last()) {
            (Some(a), Some(b)) => b.dts.as_millis() - a.dts.as_millis(),
            _ => 0,
        };
        let give_up = self.held.len() >= HOLD_FRAMES || span_ms >= HOLD_MS;
        if self.ready() || give_up {
            self.release_held(true);
        }
    }

    /// Announces the tracks known now and sends the held frames that fit them.
    fn release_held(&mut self, announce: bool) {
        if self.held.is_empty() {
            return;
        }
        let tracks = self.current_tracks();
        if announce && self.announced.as_ref() != Some(&tracks) {
            if tracks.video.is_none() && tracks.audio.is_none() {
                self.held.clear();
                return;
            }
            self.events.push_back(DemuxEvent::Tracks(tracks.clone()));
            self.announced = Some(tracks.clone());
        }
        for frame in std::mem::take(&mut self.held) {
            if tracks.get(frame.kind).is_some() {
                self.events.push_back(DemuxEvent::Frame(frame));
            } else {
                self.stats.dropped_frames += 1;
            }
        }
    }

    fn malformed(&mut self, pid: u16, reason: &str) {
        self.stats.malformed += 1;
        self.events.push_back(DemuxEvent::Malformed {
            pid,
            reason: reason.to_string(),
        });
    }
}

/// Whether a private-data stream (0x06) is AV1: registered as `AV01` (AOM's
/// specification) or `AV1 ` (its early drafts).
fn is_av1(entry: &StreamEntry) -> bool {
    matches!(entry.registration.as_ref(), Some(b"AV01" | b"AV1 "))
}

/// An Opus access unit's control header: its length and the size of the packet after
/// it, or `None` when it is not one.
fn opus_control_header(data: &[u8]) -> Option<(usize, usize)> {
    let (&b0, &b1) = (data.first()?, data.get(1)?);
    if (u16::from_be_bytes([b0, b1]) >> 5) != 0x3ff {
        return None;
    }
    let (start_trim, end_trim, extension) = (b1 & 0x10 != 0, b1 & 0x08 != 0, b1 & 0x04 != 0);
    let mut pos = 2;
    let mut size = 0usize;
    loop {
        let b = *data.get(pos)?;
        pos += 1;
        size += usize::from(b);
        if b != 0xff {
            break;
        }
    }
    pos += 2 * usize::from(start_trim) + 2 * usize::from(end_trim);
    if extension {
        pos += 1 + usize::from(*data.get(pos)?);
    }
    (pos <= data.len()).then_some((pos, size))
}

/// A stream type's name, for logs and the API.
pub fn stream_name(entry: &StreamEntry) -> &'static str {
    match entry.stream_type {
        0x01 => "MPEG-1 video",
        0x02 => "MPEG-2 video",
        0x03 => "MPEG-1 audio (MP2/MP3)",
        0x04 => "MPEG-2 audio (MP2/MP3)",
        0x05 => "private sections",
        0x0f => "AAC (ADTS)",
        0x10 => "MPEG-4 Part 2 video",
        0x11 => "AAC (LATM)",
        0x15 => "timed metadata",
        0x1b => "H.264",
        0x24 => "HEVC (H.265)",
        0x33 => "VVC (H.266)",
        0x81 => "AC-3",
        0x86 => "SCTE-35 cues",
        0x87 => "E-AC-3",
        0x06 => match (entry.registration.as_ref(), entry.ac3_descriptor) {
            (Some(b"Opus"), _) => "Opus",
            (Some(b"AV01" | b"AV1 "), _) => "AV1",
            (Some(b"HEVC"), _) => "HEVC (H.265)",
            (Some(b"AC-3"), _) | (_, Some(0x6a)) => "AC-3",
            (Some(b"EAC3"), _) | (_, Some(0x7a)) => "E-AC-3",
            (Some(b"KLVA"), _) => "KLV metadata",
            _ => "private data",
        },
        _ => "unknown stream type",
    }
}
