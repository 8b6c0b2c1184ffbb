//! Turns a publisher's FLV tag bodies into [`media::Frame`]s and [`media::Tracks`].

use std::num::NonZeroU32;

use bytes::Bytes;
use media::amf0::Amf0Value;
use media::flv::{self, AudioPacket, StreamMetadata, VideoFrameType, VideoPacket};
use media::{
    AacConfig, Av1Config, AvcConfig, CodecConfig, Frame, HevcConfig, MediaTime, Mp3Config,
    Rounding, Timeline, TimestampJump, Track, TrackKind, Tracks, VIDEO_TIMESCALE, VideoCodec,
};

/// What the assembler produces, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Assembled {
    Tracks(Tracks),
    Frame(Frame),
}

/// Why a publisher's media cannot be ingested.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error("{0} is not supported yet; publish H.264, HEVC or AV1 video and AAC (or MP3) audio")]
    Unsupported(String),
    #[error("malformed media: {0}")]
    Malformed(String),
}

/// Frames held at most while waiting for the other track's sequence header (~1 s).
const HOLD_MS: i64 = 1000;
/// An audio timestamp this far (in AAC frames) from the sample count re-anchors it.
const AUDIO_RESYNC_FRAMES: i64 = 2;

/// One publish session's assembler.
#[derive(Default)]
pub struct StreamAssembler {
    video_timeline: Timeline,
    audio_timeline: Timeline,
    /// The video configuration: H.264 (avcC), HEVC (hvcC) or AV1 (av1C).
    video: Option<CodecConfig>,
    aac: Option<AacConfig>,
    /// MP3 audio instead of AAC (for the transcoder, which makes AAC of it).
    mp3: Option<Mp3Config>,
    metadata: Option<StreamMetadata>,
    announced: Option<Tracks>,
    held: Vec<Frame>,
    first_held_ms: Option<i64>,
    /// The decode time (in samples) the next AAC frame is expected at.
    next_audio_dts: Option<i64>,
    last_video_dts: Option<i64>,
    /// Frames dropped (before a keyframe config, or going backwards).
    pub dropped: u64,
    /// Timestamp jumps that re-anchored a track, for the caller to log.
    jumps: Vec<(TrackKind, TimestampJump)>,
}

impl StreamAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next timestamp jump that re-anchored a track (see [`media::Timeline`]).
    pub fn poll_jump(&mut self) -> Option<(TrackKind, TimestampJump)> {
        if self.jumps.is_empty() {
            None
        } else {
            Some(self.jumps.remove(0))
        }
    }

    /// `onMetaData` tells which tracks to expect before announcing them.
    pub fn handle_metadata(&mut self, value: &Amf0Value) {
        self.metadata = Some(StreamMetadata::from_amf(value));
    }

    pub fn handle_video(
        &mut self,
        timestamp_ms: u32,
        body: Bytes,
        out: &mut Vec<Assembled>,
    ) -> Result<(), AssembleError> {
        let tag =
            flv::parse_video_tag(body).map_err(|e| AssembleError::Malformed(e.to_string()))?;
        let keyframe = matches!(
            tag.frame_type,
            VideoFrameType::Key | VideoFrameType::GeneratedKey
        );
        let malformed = |e: media::avc::CodecError| AssembleError::Malformed(e.to_string());
        match tag.packet {
            VideoPacket::AvcSequenceHeader(record) => {
                let config = AvcConfig::parse(record).map_err(malformed)?;
                self.set_video(CodecConfig::Avc(config), out);
            }
            VideoPacket::SequenceStart { codec, record } => {
                let config = match codec {
                    VideoCodec::Avc => {
                        CodecConfig::Avc(AvcConfig::parse(record).map_err(malformed)?)
                    }
                    VideoCodec::Hevc => {
                        CodecConfig::Hevc(HevcConfig::parse(record).map_err(malformed)?)
                    }
                    VideoCodec::Av1 => {
                        CodecConfig::Av1(Av1Config::parse(record).map_err(malformed)?)
                    }
                };
                self.set_video(config, out);
            }
            VideoPacket::AvcNalus {
                composition_time_ms,
                data,
            } => self.video_frame(
                VideoCodec::Avc,
                timestamp_ms,
                composition_time_ms,
                keyframe,
                data,
                out,
            ),
            VideoPacket::CodedFrames {
                codec,
                composition_time_ms,
                data,
            } => {
                let data = if codec == VideoCodec::Av1 {
                    // A sender that gave no av1C (the MPEG-2 TS sequence start) has the
                    // sequence header in its key frames.
                    if keyframe
                        && !matches!(self.video, Some(CodecConfig::Av1(_)))
                        && let Some(header) = media::av1::find_sequence_header(&data)
                    {
                        let config = Av1Config::from_sequence_header(header).map_err(malformed)?;
                        self.set_video(CodecConfig::Av1(config), out);
                    }
                    Bytes::from(media::av1::strip_temporal_delimiters(&data))
                } else {
                    data
                };
                self.video_frame(
                    codec,
                    timestamp_ms,
                    composition_time_ms,
                    keyframe,
                    data,
                    out,
                );
            }
            VideoPacket::AvcEndOfSequence | VideoPacket::Ignored => {}
            VideoPacket::Unsupported { codec } => return Err(AssembleError::Unsupported(codec)),
        }
        Ok(())
    }

    fn set_video(&mut self, config: CodecConfig, out: &mut Vec<Assembled>) {
        // An AV1 sequence header without timing_info (SVT-AV1's, OBS's) has no frame
        // rate; the one `onMetaData` declares sizes the parts instead of 30 fps.
        let config = match (
            config,
            self.metadata
                .as_ref()
                .and_then(StreamMetadata::frame_rate_ratio),
        ) {
            (CodecConfig::Av1(av1), Some(rate)) => CodecConfig::Av1(av1.with_frame_rate(rate)),
            (config, _) => config,
        };
        if self.video.as_ref() != Some(&config) {
            self.video = Some(config);
            self.reannounce(out);
        }
    }

    /// One coded picture, placed on the video timeline; dropped before its codec's
    /// configuration (a decoder could not start there).
    fn video_frame(
        &mut self,
        codec: VideoCodec,
        timestamp_ms: u32,
        composition_time_ms: i32,
        keyframe: bool,
        data: Bytes,
        out: &mut Vec<Assembled>,
    ) {
        if self.video.as_ref().and_then(CodecConfig::video_codec) != Some(codec) {
            self.dropped += 1;
            return;
        }
        let ms = self.place(TrackKind::Video, timestamp_ms);
        let dts = ms.rescale(VIDEO_TIMESCALE, Rounding::Nearest);
        if self.last_video_dts.is_some_and(|last| dts.ticks <= last) {
            self.dropped += 1;
            return;
        }
        self.last_video_dts = Some(dts.ticks);
        let pts = MediaTime::new(
            dts.ticks + i64::from(composition_time_ms) * 90,
            VIDEO_TIMESCALE,
        );
        self.emit(
            Frame {
                kind: TrackKind::Video,
                dts,
                pts,
                keyframe,
                data,
            },
            ms.ticks,
            out,
        );
    }

    pub fn handle_audio(
        &mut self,
        timestamp_ms: u32,
        body: Bytes,
        out: &mut Vec<Assembled>,
    ) -> Result<(), AssembleError> {
        let packet =
            flv::parse_audio_tag(body).map_err(|e| AssembleError::Malformed(e.to_string()))?;
        match packet {
            AudioPacket::AacSequenceHeader(asc) => {
                let config =
                    AacConfig::parse(asc).map_err(|e| AssembleError::Malformed(e.to_string()))?;
                if self.aac.as_ref() != Some(&config) {
                    self.aac = Some(config);
                    self.mp3 = None;
                    self.next_audio_dts = None;
                    self.reannounce(out);
                }
            }
            AudioPacket::AacRaw(data) => {
                let Some(aac) = &self.aac else {
                    self.dropped += 1;
                    return Ok(());
                };
                let Some(rate) = NonZeroU32::new(aac.sample_rate) else {
                    return Err(AssembleError::Malformed("AAC sample rate 0".into()));
                };
                let spf = i64::from(aac.samples_per_frame());
                let ms = self.place(TrackKind::Audio, timestamp_ms);
                self.emit_audio(data, ms, rate, spf, out);
            }
            AudioPacket::Mp3(data) => {
                // MP3 has no sequence header: every frame describes itself.
                let config = media::mp3::parse_header(&data).ok_or_else(|| {
                    AssembleError::Malformed("MP3 frame without a valid header".into())
                })?;
                if self.mp3 != Some(config) {
                    self.mp3 = Some(config);
                    self.aac = None;
                    self.next_audio_dts = None;
                    self.reannounce(out);
                }
                let Some(rate) = NonZeroU32::new(config.sample_rate) else {
                    return Err(AssembleError::Malformed("MP3 sample rate 0".into()));
                };
                let ms = self.place(TrackKind::Audio, timestamp_ms);
                self.emit_audio(data, ms, rate, i64::from(config.samples_per_frame), out);
            }
            AudioPacket::Unsupported { codec } => return Err(AssembleError::Unsupported(codec)),
        }
        Ok(())
    }

    /// Places a media frame's timestamp on its track's timeline. Only frames: a sequence
    /// header's timestamp is not media time (encoders send it at 0 when they reconnect
    /// and continue their frames where they were, which would read as a jump).
    fn place(&mut self, kind: TrackKind, timestamp_ms: u32) -> MediaTime {
        let timeline = match kind {
            TrackKind::Video => &mut self.video_timeline,
            TrackKind::Audio => &mut self.audio_timeline,
        };
        let (ms, jump) = timeline.place_checked(timestamp_ms);
        if let Some(jump) = jump {
            self.jumps.push((kind, jump));
        }
        ms
    }

    /// One audio frame of `spf` samples, its time counted in samples rather than taken
    /// from FLV's milliseconds (which make every frame's duration jitter by one);
    /// re-anchored when the FLV time really jumps.
    fn emit_audio(
        &mut self,
        data: Bytes,
        ms: MediaTime,
        rate: NonZeroU32,
        spf: i64,
        out: &mut Vec<Assembled>,
    ) {
        let from_flv = ms.rescale(rate, Rounding::Nearest).ticks;
        let dts = match self.next_audio_dts {
            Some(next) if (from_flv - next).abs() <= AUDIO_RESYNC_FRAMES * spf => next,
            _ => from_flv,
        };
        self.next_audio_dts = Some(dts + spf);
        let t = MediaTime::new(dts, rate);
        self.emit(
            Frame {
                kind: TrackKind::Audio,
                dts: t,
                pts: t,
                keyframe: true,
                data,
            },
            ms.ticks,
            out,
        );
    }

    fn tracks(&self) -> Tracks {
        Tracks {
            video: self.video.clone().map(|codec| Track {
                kind: TrackKind::Video,
                timescale: VIDEO_TIMESCALE,
                codec,
            }),
            audio: match (&self.aac, &self.mp3) {
                (Some(c), _) => NonZeroU32::new(c.sample_rate).map(|timescale| Track {
                    kind: TrackKind::Audio,
                    timescale,
                    codec: CodecConfig::Aac(c.clone()),
                }),
                (None, Some(c)) => NonZeroU32::new(c.sample_rate).map(|timescale| Track {
                    kind: TrackKind::Audio,
                    timescale,
                    codec: CodecConfig::Mp3(*c),
                }),
                (None, None) => None,
            },
        }
    }

    /// After the tracks were announced, a changed sequence header announces them again.
    fn reannounce(&mut self, out: &mut Vec<Assembled>) {
        if self.announced.is_some() {
            let tracks = self.tracks();
            self.announced = Some(tracks.clone());
            out.push(Assembled::Tracks(tracks));
        }
    }

    fn emit(&mut self, frame: Frame, arrival_ms: i64, out: &mut Vec<Assembled>) {
        if self.announced.is_some() {
            out.push(Assembled::Frame(frame));
            return;
        }
        self.held.push(frame);
        let first = *self.first_held_ms.get_or_insert(arrival_ms);
        let meta = self.metadata.as_ref();
        let wants_video = meta.and_then(|m| m.has_video).unwrap_or(true);
        let wants_audio = meta.and_then(|m| m.has_audio).unwrap_or(true);
        let has_audio = self.aac.is_some() || self.mp3.is_some();
        let complete = (self.video.is_some() || !wants_video) && (has_audio || !wants_audio);
        if complete || arrival_ms - first >= HOLD_MS {
            let tracks = self.tracks();
            self.announced = Some(tracks.clone());
            out.push(Assembled::Tracks(tracks));
            out.extend(self.held.drain(..).map(Assembled::Frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &[u8] = &[
        1, 0x64, 0, 0x0d, 0xff, 0xe1, 0, 25, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb,
        0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99,
        0x60, 1, 0, 6, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
    ];

    fn video(ft: VideoFrameType, packet: VideoPacket) -> Bytes {
        let mut out = Vec::new();
        flv::write_video_tag(ft, &packet, &mut out);
        Bytes::from(out)
    }

    fn audio(packet: AudioPacket) -> Bytes {
        let mut out = Vec::new();
        flv::write_audio_tag(&packet, &mut out);
        Bytes::from(out)
    }

    #[test]
    fn announces_tracks_then_frames_with_sample_counted_audio() {
        let mut a = StreamAssembler::new();
        let mut out = Vec::new();
        a.handle_video(
            0,
            video(
                VideoFrameType::Key,
                VideoPacket::AvcSequenceHeader(Bytes::from_static(RECORD)),
            ),
            &mut out,
        )
        .unwrap();
        a.handle_audio(
            0,
            audio(AudioPacket::AacSequenceHeader(Bytes::from_static(&[
                0x11, 0x90,
            ]))),
            &mut out,
        )
        .unwrap();
        let nalus = || VideoPacket::AvcNalus {
            composition_time_ms: 66,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        };
        a.handle_video(0, video(VideoFrameType::Key, nalus()), &mut out)
            .unwrap();
        for (i, ts) in [0u32, 21, 43, 64, 85].into_iter().enumerate() {
            a.handle_audio(
                ts,
                audio(AudioPacket::AacRaw(Bytes::from_static(&[1, 2]))),
                &mut out,
            )
            .unwrap();
            let Some(Assembled::Frame(f)) = out.last() else {
                panic!("{out:?}")
            };
            assert_eq!(f.dts.ticks, i as i64 * 1024, "audio counted in samples");
        }
        assert!(matches!(&out[0], Assembled::Tracks(t) if t.video.is_some() && t.audio.is_some()));
        let Assembled::Frame(v) = &out[1] else {
            panic!()
        };
        assert!(v.keyframe && v.pts.ticks - v.dts.ticks == 66 * 90);
        // A jump re-anchors audio to the FLV timestamp.
        a.handle_audio(
            5000,
            audio(AudioPacket::AacRaw(Bytes::from_static(&[1]))),
            &mut out,
        )
        .unwrap();
        let Some(Assembled::Frame(f)) = out.last() else {
            panic!()
        };
        assert_eq!(f.dts.ticks, 240_000);
    }

    /// The sequence header OBU of libsvtav1 at 320x240 (`ffmpeg -f lavfi -i
    /// testsrc2=size=320x240 -c:v libsvtav1 -f obu`).
    const AV1_SEQUENCE_HEADER: &[u8] = &[
        0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xfb, 0xf9, 0x00, 0x40,
    ];

    /// An Enhanced RTMP coded-frames tag of an AV1 key frame: temporal delimiter,
    /// sequence header, a (key) frame OBU.
    fn av1_key_frame_tag() -> Bytes {
        let mut key = vec![0x91, b'a', b'v', b'0', b'1', 0x12, 0x00];
        key.extend_from_slice(AV1_SEQUENCE_HEADER);
        key.extend_from_slice(&[0x32, 0x02, 0x10, 0x00]);
        Bytes::from(key)
    }

    #[test]
    fn av1_without_av1c_takes_its_configuration_from_the_key_frame() {
        let mut a = StreamAssembler::new();
        let mut out = Vec::new();
        // Enhanced RTMP metadata: the FourCC as the video codec id, and no audio.
        a.handle_metadata(&Amf0Value::Object(vec![
            (
                "videocodecid".into(),
                Amf0Value::Number(f64::from(u32::from_be_bytes(*b"av01"))),
            ),
            ("audiocodecid".into(), Amf0Value::Null),
        ]));
        // MPEG-2 TS sequence start (the TS AV1 descriptor): no sequence header yet.
        let ts_start =
            Bytes::from_static(&[0x95, b'a', b'v', b'0', b'1', 0x80, 4, 0x81, 0, 0x0c, 0]);
        a.handle_video(0, ts_start, &mut out).unwrap();
        assert!(out.is_empty());
        a.handle_video(0, av1_key_frame_tag(), &mut out).unwrap();
        let tracks = out
            .iter()
            .find_map(|o| match o {
                Assembled::Tracks(t) => Some(t.clone()),
                Assembled::Frame(_) => None,
            })
            .expect("tracks announced");
        let video = tracks.video.expect("a video track");
        assert_eq!(video.codec.video_size(), Some((320, 240)));
        assert_eq!(video.codec.codec_string(), "av01.0.00M.08");
        assert_eq!(
            video.codec.frame_rate(),
            None,
            "no timing_info, no framerate"
        );
        let frame = out
            .iter()
            .find_map(|o| match o {
                Assembled::Frame(f) => Some(f.clone()),
                Assembled::Tracks(_) => None,
            })
            .expect("the key frame");
        assert!(frame.keyframe);
        // The temporal delimiter is gone (an av01 sample has none).
        assert_eq!(
            &frame.data[..AV1_SEQUENCE_HEADER.len()],
            AV1_SEQUENCE_HEADER
        );
    }

    #[test]
    fn unsupported_codecs_are_named() {
        let mut a = StreamAssembler::new();
        let vp9 = Bytes::from_static(&[0x90, b'v', b'p', b'0', b'9', 1]);
        let err = a.handle_video(0, vp9, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("VP9"), "{err}");
        // HEVC is taken; a broken hvcC record says what is wrong with it.
        let hevc = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1]);
        let err = a.handle_video(0, hevc, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("HEVC configuration"), "{err}");
        let speex = Bytes::from_static(&[0xb2, 0x00]);
        let err = a.handle_audio(0, speex, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("Speex"), "{err}");
        let broken_mp3 = Bytes::from_static(&[0x2f, 0xff, 0xfb]);
        let err = a.handle_audio(0, broken_mp3, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("MP3 frame without a valid header"),
            "{err}"
        );
    }

    #[test]
    fn mp3_frames_are_counted_in_samples() {
        let mut a = StreamAssembler::new();
        let mut out = Vec::new();
        // MPEG-1 Layer III, 44.1 kHz, stereo: 1152 samples a frame (26.12 ms).
        let frame = Bytes::from_static(&[0x2f, 0xff, 0xfb, 0x90, 0x64, 0, 0]);
        // Audio only: announced once the hold time (1 s) has passed.
        for i in 0..45u32 {
            a.handle_audio(i * 1152 * 1000 / 44_100, frame.clone(), &mut out)
                .unwrap();
        }
        let tracks = out
            .iter()
            .find_map(|o| match o {
                Assembled::Tracks(t) => Some(t.clone()),
                Assembled::Frame(_) => None,
            })
            .expect("tracks announced after the hold");
        let audio = tracks.audio.expect("an audio track");
        assert_eq!(audio.timescale.get(), 44_100);
        assert!(matches!(audio.codec, CodecConfig::Mp3(c) if c.samples_per_frame == 1152));
        let dts: Vec<i64> = out
            .iter()
            .filter_map(|o| match o {
                Assembled::Frame(f) => Some(f.dts.ticks),
                Assembled::Tracks(_) => None,
            })
            .collect();
        assert!(dts.len() >= 39, "{} frames", dts.len());
        for pair in dts.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                1152,
                "counted in samples, not FLV milliseconds"
            );
        }
    }

    #[test]
    fn video_only_publisher_is_announced_after_the_hold() {
        let mut a = StreamAssembler::new();
        let mut out = Vec::new();
        a.handle_video(
            0,
            video(
                VideoFrameType::Key,
                VideoPacket::AvcSequenceHeader(Bytes::from_static(RECORD)),
            ),
            &mut out,
        )
        .unwrap();
        for i in 0..40u32 {
            let packet = VideoPacket::AvcNalus {
                composition_time_ms: 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
            };
            a.handle_video(i * 33, video(VideoFrameType::Inter, packet), &mut out)
                .unwrap();
        }
        assert!(matches!(&out[0], Assembled::Tracks(t) if t.video.is_some() && t.audio.is_none()));
        assert_eq!(out.len(), 41);
    }

    #[test]
    fn sequence_headers_at_zero_before_frames_further_on_are_no_jump() {
        // A publisher that reconnects (to a restarted ingest, say) sends its sequence
        // headers at 0 and continues its frames where it was: the A/B numbering needs
        // those frame times as sent.
        let mut a = StreamAssembler::new();
        let mut out = Vec::new();
        let header = VideoPacket::AvcSequenceHeader(Bytes::from_static(RECORD));
        a.handle_video(0, video(VideoFrameType::Key, header), &mut out)
            .unwrap();
        a.handle_audio(
            0,
            audio(AudioPacket::AacSequenceHeader(Bytes::from_static(&[
                0x11, 0x90,
            ]))),
            &mut out,
        )
        .unwrap();
        for i in 0..3u32 {
            let nalus = VideoPacket::AvcNalus {
                composition_time_ms: 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            };
            a.handle_video(18_000 + i * 33, video(VideoFrameType::Key, nalus), &mut out)
                .unwrap();
            a.handle_audio(
                18_000 + i * 21,
                audio(AudioPacket::AacRaw(Bytes::from_static(&[1, 2]))),
                &mut out,
            )
            .unwrap();
        }
        assert_eq!(a.poll_jump(), None);
        let first_video = out.iter().find_map(|o| match o {
            Assembled::Frame(f) if f.kind == TrackKind::Video => Some(f.dts.ticks),
            _ => None,
        });
        assert_eq!(first_video, Some(18_000 * 90));
    }

    #[test]
    fn timestamp_jumps_of_hours_continue_smoothly_and_are_reported() {
        let mut a = StreamAssembler::new();
        let mut out = Vec::new();
        let hour = 3_600_000u32;
        let start = 5 * hour;
        let header = VideoPacket::AvcSequenceHeader(Bytes::from_static(RECORD));
        a.handle_video(start, video(VideoFrameType::Key, header), &mut out)
            .unwrap();
        a.handle_audio(
            start,
            audio(AudioPacket::AacSequenceHeader(Bytes::from_static(&[
                0x11, 0x90,
            ]))),
            &mut out,
        )
        .unwrap();
        // Three frames, then +3 h, three frames, then −3 h (back past the start), three.
        let mut times = Vec::new();
        for base in [start, start + 3 * hour, start - 3 * hour] {
            for i in 0..3 {
                times.push(base + i * 33);
            }
        }
        for (i, ms) in times.iter().enumerate() {
            // Audio frames of 1024 samples at 48 kHz: 21.3 ms apart, beside the video.
            let audio_ms = ms - (i as u32 % 3) * 12;
            let nalus = VideoPacket::AvcNalus {
                composition_time_ms: 0,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            };
            a.handle_video(*ms, video(VideoFrameType::Key, nalus), &mut out)
                .unwrap();
            a.handle_audio(
                audio_ms,
                audio(AudioPacket::AacRaw(Bytes::from_static(&[1, 2]))),
                &mut out,
            )
            .unwrap();
        }
        let frames = |kind: TrackKind| -> Vec<i64> {
            out.iter()
                .filter_map(|o| match o {
                    Assembled::Frame(f) if f.kind == kind => Some(f.dts.ticks),
                    _ => None,
                })
                .collect()
        };
        let video_dts = frames(TrackKind::Video);
        assert_eq!(video_dts.len(), 9, "no frame frozen out: {video_dts:?}");
        for pair in video_dts.windows(2) {
            assert_eq!(pair[1] - pair[0], 33 * 90, "video continues: {video_dts:?}");
        }
        let audio_dts = frames(TrackKind::Audio);
        assert_eq!(audio_dts.len(), 9);
        for pair in audio_dts.windows(2) {
            let step = pair[1] - pair[0];
            assert!(
                (0..=2 * 1024).contains(&step),
                "audio continues: {audio_dts:?}"
            );
        }
        let mut jumps = Vec::new();
        while let Some(j) = a.poll_jump() {
            jumps.push(j);
        }
        assert_eq!(jumps.len(), 4, "two per track: {jumps:?}");
        assert!(
            jumps
                .iter()
                .any(|(_, j)| j.step_ms == i64::from(3 * hour - 66))
        );
        assert!(jumps.iter().any(|(_, j)| j.step_ms < -i64::from(hour)));
    }

    /// SVT-AV1 writes no timing_info: the rate `onMetaData` declares is the track's.
    #[test]
    fn av1_takes_the_declared_frame_rate() {
        for (declared, rate) in [
            (24.0, (24, 1)),
            (29.97, (30_000, 1001)),
            (12.5, (12_500, 1000)),
        ] {
            let mut a = StreamAssembler::new();
            let mut out = Vec::new();
            a.handle_metadata(&Amf0Value::Object(vec![
                ("framerate".into(), Amf0Value::Number(declared)),
                ("audiocodecid".into(), Amf0Value::Null),
            ]));
            a.handle_video(0, av1_key_frame_tag(), &mut out).unwrap();
            let video = out
                .iter()
                .find_map(|o| match o {
                    Assembled::Tracks(t) => t.video.clone(),
                    Assembled::Frame(_) => None,
                })
                .expect("a video track");
            assert_eq!(video.codec.frame_rate(), Some(rate), "{declared}");
        }
    }
}
