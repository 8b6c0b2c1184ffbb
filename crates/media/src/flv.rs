//! FLV tags (Adobe FLV spec v10.1, Annex E) as carried in RTMP audio (type 8) and video
//! (type 9) messages, with Enhanced RTMP (veovera enhanced-rtmp v1/v2) video headers:
//! `avc1`, `hvc1` and `av01` are read and written; other FourCCs (VP9, VP8, Opus, …) are
//! named so that their publishers get a clear "not supported" answer.
//! Also the FLV file header and tag header, for reading `.flv` files.

use bytes::Bytes;

use crate::amf0::{self, Amf0Value, Limits};
use crate::track::VideoCodec;

/// FLV `FrameType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFrameType {
    Key,
    Inter,
    DisposableInter,
    GeneratedKey,
    /// A video info/command frame: carries no picture.
    Command,
}

/// What a video tag carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoPacket {
    /// `AVCDecoderConfigurationRecord`.
    AvcSequenceHeader(Bytes),
    /// One access unit of AVCC-framed NAL units.
    AvcNalus {
        composition_time_ms: i32,
        data: Bytes,
    },
    /// The end of the sequence (of any codec).
    AvcEndOfSequence,
    /// Enhanced RTMP `SequenceStart` of HEVC (the hvcC record) or AV1 (the av1C record).
    SequenceStart { codec: VideoCodec, record: Bytes },
    /// Enhanced RTMP `CodedFrames`/`CodedFramesX` of HEVC (length-prefixed NAL units) or
    /// AV1 (a temporal unit of OBUs; AV1 has no composition time, it is always 0).
    CodedFrames {
        codec: VideoCodec,
        composition_time_ms: i32,
        data: Bytes,
    },
    /// A command frame or Enhanced RTMP metadata: nothing to decode.
    Ignored,
    /// A codec we do not ingest, named for people.
    Unsupported { codec: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoTag {
    pub frame_type: VideoFrameType,
    pub packet: VideoPacket,
}

/// What an audio tag carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioPacket {
    /// `AudioSpecificConfig`.
    AacSequenceHeader(Bytes),
    /// One raw AAC frame.
    AacRaw(Bytes),
    /// One MP3 frame (SoundFormat 2 or 14), header included.
    Mp3(Bytes),
    Unsupported {
        codec: String,
    },
}

/// Why an FLV tag could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    #[error("empty {0} tag")]
    Empty(&'static str),
    #[error("{what} tag too short: {len} bytes")]
    TooShort { what: &'static str, len: usize },
    #[error("unknown AVC packet type {0}")]
    UnknownAvcPacketType(u8),
    #[error("unknown AAC packet type {0}")]
    UnknownAacPacketType(u8),
    #[error("not an FLV file (signature is not 'FLV')")]
    NotFlv,
    #[error("script data: {0}")]
    Script(#[from] amf0::Amf0Error),
}

/// Reads the body of an RTMP video message / FLV video tag.
pub fn parse_video_tag(body: Bytes) -> Result<VideoTag, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty("video"))?;
    if first & 0x80 != 0 {
        return parse_enhanced_video(body);
    }
    let frame_type = frame_type((first >> 4) & 0x07);
    let codec_id = first & 0x0f;
    if frame_type == VideoFrameType::Command {
        return Ok(VideoTag {
            frame_type,
            packet: VideoPacket::Ignored,
        });
    }
    if codec_id != 7 {
        let codec = match codec_id {
            2 => "Sorenson H.263",
            3 => "Screen video",
            4 => "On2 VP6",
            5 => "On2 VP6 with alpha",
            6 => "Screen video v2",
            12 => "HEVC (legacy FLV codec id 12)",
            13 => "AV1 (legacy FLV codec id 13)",
            _ => "an unknown video codec",
        };
        return Ok(VideoTag {
            frame_type,
            packet: VideoPacket::Unsupported {
                codec: codec.to_owned(),
            },
        });
    }
    if body.len() < 5 {
        return Err(FlvError::TooShort {
            what: "AVC video",
            len: body.len(),
        });
    }
    let cts = composition_time(&body[2..5]);
    let packet = match body[1] {
        0 => VideoPacket::AvcSequenceHeader(body.slice(5..)),
        1 => VideoPacket::AvcNalus {
            composition_time_ms: cts,
            data: body.slice(5..),
        },
        2 => VideoPacket::AvcEndOfSequence,
        t => return Err(FlvError::UnknownAvcPacketType(t)),
    };
    Ok(VideoTag { frame_type, packet })
}

/// Enhanced RTMP: `[IsExHeader:1][FrameType:3][PacketType:4][FourCC:32]…`.
fn parse_enhanced_video(body: Bytes) -> Result<VideoTag, FlvError> {
    if body.len() < 5 {
        return Err(FlvError::TooShort {
            what: "Enhanced RTMP video",
            len: body.len(),
        });
    }
    let frame_type = frame_type((body[0] >> 4) & 0x07);
    let packet_type = body[0] & 0x0f;
    let fourcc = &body[1..5];
    if packet_type == EX_METADATA || frame_type == VideoFrameType::Command {
        return Ok(VideoTag {
            frame_type,
            packet: VideoPacket::Ignored,
        });
    }
    let Some(codec) = VideoCodec::from_fourcc(fourcc) else {
        let codec = match fourcc {
            b"vp09" => "VP9 (Enhanced RTMP vp09)".to_owned(),
            b"vp08" => "VP8 (Enhanced RTMP vp08)".to_owned(),
            other => format!("Enhanced RTMP video '{}'", String::from_utf8_lossy(other)),
        };
        return Ok(VideoTag {
            frame_type,
            packet: VideoPacket::Unsupported { codec },
        });
    };
    let coded = |composition_time_ms: i32, data: Bytes| match codec {
        VideoCodec::Avc => VideoPacket::AvcNalus {
            composition_time_ms,
            data,
        },
        _ => VideoPacket::CodedFrames {
            codec,
            composition_time_ms,
            data,
        },
    };
    let packet = match packet_type {
        EX_SEQUENCE_START => match codec {
            VideoCodec::Avc => VideoPacket::AvcSequenceHeader(body.slice(5..)),
            _ => VideoPacket::SequenceStart {
                codec,
                record: body.slice(5..),
            },
        },
        // Only AVC and HEVC carry a composition time in CodedFrames.
        EX_CODED_FRAMES if codec != VideoCodec::Av1 => {
            if body.len() < 8 {
                return Err(FlvError::TooShort {
                    what: "Enhanced RTMP coded frames",
                    len: body.len(),
                });
            }
            coded(composition_time(&body[5..8]), body.slice(8..))
        }
        EX_CODED_FRAMES | EX_CODED_FRAMES_X => coded(0, body.slice(5..)),
        EX_SEQUENCE_END => VideoPacket::AvcEndOfSequence,
        // AV1's MPEG-2 TS sequence start carries the TS AV1 descriptor, without the
        // sequence header: the assembler takes the configuration from the sequence header
        // OBU of the first key frame instead. Multitrack, ModEx and future types carry
        // nothing we use.
        _ => VideoPacket::Ignored,
    };
    Ok(VideoTag { frame_type, packet })
}

/// Writes an Enhanced RTMP video tag body for `codec` (`SequenceStart`, `CodedFrames`
/// or `SequenceEnd`, with the FourCC). AVC packets are written the same way as the
/// HEVC/AV1 ones, so a publisher can send any of the three.
pub fn write_ex_video_tag(
    frame_type: VideoFrameType,
    codec: VideoCodec,
    packet: &VideoPacket,
    out: &mut Vec<u8>,
) {
    let (packet_type, cts, data): (u8, Option<i32>, &[u8]) = match packet {
        VideoPacket::AvcSequenceHeader(d) | VideoPacket::SequenceStart { record: d, .. } => {
            (EX_SEQUENCE_START, None, d)
        }
        VideoPacket::AvcNalus {
            composition_time_ms,
            data,
        }
        | VideoPacket::CodedFrames {
            composition_time_ms,
            data,
            ..
        } => {
            if codec == VideoCodec::Av1 {
                (EX_CODED_FRAMES, None, data)
            } else if *composition_time_ms == 0 {
                (EX_CODED_FRAMES_X, None, data)
            } else {
                (EX_CODED_FRAMES, Some(*composition_time_ms), data)
            }
        }
        VideoPacket::AvcEndOfSequence | VideoPacket::Ignored | VideoPacket::Unsupported { .. } => {
            (EX_SEQUENCE_END, None, &[])
        }
    };
    out.push(0x80 | (frame_type_bits(frame_type) << 4) | packet_type);
    out.extend_from_slice(&codec.fourcc());
    if let Some(cts) = cts {
        out.extend_from_slice(&cts.to_be_bytes()[1..]);
    }
    out.extend_from_slice(data);
}

fn frame_type_bits(frame_type: VideoFrameType) -> u8 {
    match frame_type {
        VideoFrameType::Key => 1,
        VideoFrameType::Inter => 2,
        VideoFrameType::DisposableInter => 3,
        VideoFrameType::GeneratedKey => 4,
        VideoFrameType::Command => 5,
    }
}

/// Reads the body of an RTMP audio message / FLV audio tag.
pub fn parse_audio_tag(body: Bytes) -> Result<AudioPacket, FlvError> {
    let first = *body.first().ok_or(FlvError::Empty("audio"))?;
    let format = first >> 4;
    if format == 9 {
        // Enhanced RTMP v2 audio: [SoundFormat=9:4][PacketType:4][FourCC:32].
        if body.len() < 5 {
            return Err(FlvError::TooShort {
                what: "Enhanced RTMP audio",
                len: body.len(),
            });
        }
        let fourcc = &body[1..5];
        if fourcc == b"mp4a" {
            return Ok(match first & 0x0f {
                0 => AudioPacket::AacSequenceHeader(body.slice(5..)),
                1 => AudioPacket::AacRaw(body.slice(5..)),
                t => return Err(FlvError::UnknownAacPacketType(t)),
            });
        }
        let codec = match fourcc {
            b"Opus" => "Opus (Enhanced RTMP)".to_owned(),
            b"fLaC" => "FLAC (Enhanced RTMP)".to_owned(),
            b"ac-3" => "AC-3 (Enhanced RTMP)".to_owned(),
            b"ec-3" => "E-AC-3 (Enhanced RTMP)".to_owned(),
            b".mp3" => "MP3 (Enhanced RTMP)".to_owned(),
            other => format!("Enhanced RTMP audio '{}'", String::from_utf8_lossy(other)),
        };
        return Ok(AudioPacket::Unsupported { codec });
    }
    if format == 2 || format == 14 {
        return Ok(AudioPacket::Mp3(body.slice(1..)));
    }
    if format != 10 {
        let codec = match format {
            0 | 3 => "linear PCM",
            1 => "ADPCM",
            2 | 14 => "MP3",
            4..=6 => "Nellymoser",
            7 => "G.711 A-law",
            8 => "G.711 mu-law",
            11 => "Speex",
            _ => "an unknown audio codec",
        };
        return Ok(AudioPacket::Unsupported {
            codec: codec.to_owned(),
        });
    }
    if body.len() < 2 {
        return Err(FlvError::TooShort {
            what: "AAC audio",
            len: body.len(),
        });
    }
    Ok(match body[1] {
        0 => AudioPacket::AacSequenceHeader(body.slice(2..)),
        1 => AudioPacket::AacRaw(body.slice(2..)),
        t => return Err(FlvError::UnknownAacPacketType(t)),
    })
}

/// Writes a legacy (codec id 7) AVC video tag body.
pub fn write_video_tag(frame_type: VideoFrameType, packet: &VideoPacket, out: &mut Vec<u8>) {
    out.push((frame_type_bits(frame_type) << 4) | 7);
    let (kind, cts, data): (u8, i32, &[u8]) = match packet {
        VideoPacket::AvcSequenceHeader(d) | VideoPacket::SequenceStart { record: d, .. } => {
            (0, 0, d)
        }
        VideoPacket::AvcNalus {
            composition_time_ms,
            data,
        }
        | VideoPacket::CodedFrames {
            composition_time_ms,
            data,
            ..
        } => (1, *composition_time_ms, data),
        VideoPacket::AvcEndOfSequence | VideoPacket::Ignored | VideoPacket::Unsupported { .. } => {
            (2, 0, &[])
        }
    };
    out.push(kind);
    out.extend_from_slice(&cts.to_be_bytes()[1..]);
    out.extend_from_slice(data);
}

/// Writes a legacy AAC audio tag body (SoundFormat 10; rate/size/type fields are fixed
/// at 44 kHz/16 bit/stereo as the spec requires for AAC: the real values are in the ASC).
pub fn write_audio_tag(packet: &AudioPacket, out: &mut Vec<u8>) {
    if let AudioPacket::Mp3(d) = packet {
        // MP3, "44 kHz", 16 bit, stereo: the real values are in the frame headers.
        out.push(0x2f);
        out.extend_from_slice(d);
        return;
    }
    out.push(0xaf);
    match packet {
        AudioPacket::AacSequenceHeader(d) => {
            out.push(0);
            out.extend_from_slice(d);
        }
        AudioPacket::AacRaw(d) => {
            out.push(1);
            out.extend_from_slice(d);
        }
        AudioPacket::Mp3(_) | AudioPacket::Unsupported { .. } => out.push(1),
    }
}

/// The `onMetaData` facts an encoder announces (all optional).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamMetadata {
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub frame_rate: Option<f64>,
    pub video_data_rate_kbps: Option<f64>,
    pub audio_data_rate_kbps: Option<f64>,
    /// Whether the encoder announced a video / audio track at all.
    pub has_video: Option<bool>,
    pub has_audio: Option<bool>,
    pub encoder: Option<String>,
}

/// Reads a script data tag / RTMP data message: `@setDataFrame`? `onMetaData` + values.
/// Returns the name (e.g. `onMetaData`) and the remaining values.
pub fn parse_script_data(body: &[u8]) -> Result<(String, Vec<Amf0Value>), FlvError> {
    let mut values = amf0::decode_all(body, &Limits::default())?;
    if values.first().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
        values.remove(0);
    }
    let name = match values.first().and_then(Amf0Value::as_str) {
        Some(n) => n.to_owned(),
        None => String::new(),
    };
    if !values.is_empty() {
        values.remove(0);
    }
    Ok((name, values))
}

impl StreamMetadata {
    /// The declared `framerate` as n/d: the NTSC rates (23.976, 29.97, 59.94, …) as
    /// n×1000/1001, whole rates as n/1, anything else to the millisecond.
    pub fn frame_rate_ratio(&self) -> Option<(u32, u32)> {
        let fps = self
            .frame_rate
            .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1000.0)?;
        let ntsc = fps * 1.001;
        if (fps - fps.round()).abs() > 0.001 && (ntsc - ntsc.round()).abs() < 0.005 {
            return Some((ntsc.round() as u32 * 1000, 1001));
        }
        if (fps - fps.round()).abs() < 0.001 {
            return Some((fps.round() as u32, 1));
        }
        Some(((fps * 1000.0).round() as u32, 1000))
    }

    /// Reads the properties of an `onMetaData` object or ECMA array.
    pub fn from_amf(value: &Amf0Value) -> Self {
        let num = |k: &str| value.get(k).and_then(Amf0Value::as_f64);
        let present = |k: &str| {
            value
                .get(k)
                .map(|v| !matches!(v, Amf0Value::Null | Amf0Value::Undefined))
        };
        StreamMetadata {
            width: num("width"),
            height: num("height"),
            frame_rate: num("framerate").or_else(|| num("videoframerate")),
            video_data_rate_kbps: num("videodatarate"),
            audio_data_rate_kbps: num("audiodatarate"),
            has_video: present("videocodecid"),
            has_audio: present("audiocodecid"),
            encoder: value
                .get("encoder")
                .and_then(Amf0Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// The 9-byte FLV file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlvHeader {
    pub has_audio: bool,
    pub has_video: bool,
    /// Offset of the first tag (after the header and PreviousTagSize0).
    pub body_offset: u32,
}

/// Reads the FLV file header; `Ok(None)` if fewer than 9 bytes are there.
pub fn parse_file_header(data: &[u8]) -> Result<Option<FlvHeader>, FlvError> {
    if data.len() < 9 {
        return Ok(None);
    }
    if &data[..3] != b"FLV" {
        return Err(FlvError::NotFlv);
    }
    let offset = u32::from_be_bytes([data[5], data[6], data[7], data[8]]);
    Ok(Some(FlvHeader {
        has_audio: data[4] & 4 != 0,
        has_video: data[4] & 1 != 0,
        // The first tag follows DataOffset and a 4-byte PreviousTagSize; a DataOffset
        // near 2^32 is nonsense, not a reason to wrap (fuzz find).
        body_offset: offset.saturating_add(4),
    }))
}

/// An FLV file tag header (11 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagHeader {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    pub data_size: u32,
    pub timestamp_ms: u32,
    pub stream_id: u32,
}

pub const TAG_HEADER_LEN: usize = 11;

/// Reads a tag header; `None` if fewer than 11 bytes are there.
pub fn parse_tag_header(data: &[u8]) -> Option<TagHeader> {
    let h = data.get(..TAG_HEADER_LEN)?;
    Some(TagHeader {
        tag_type: h[0] & 0x1f,
        data_size: u32::from_be_bytes([0, h[1], h[2], h[3]]),
        timestamp_ms: u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
        stream_id: u32::from_be_bytes([0, h[8], h[9], h[10]]),
    })
}

/// Writes a tag header.
pub fn write_tag_header(h: &TagHeader, out: &mut Vec<u8>) {
    let size = h.data_size.to_be_bytes();
    let ts = h.timestamp_ms.to_be_bytes();
    let sid = h.stream_id.to_be_bytes();
    out.extend_from_slice(&[
        h.tag_type, size[1], size[2], size[3], ts[1], ts[2], ts[3], ts[0], sid[1], sid[2], sid[3],
    ]);
}

/// Iterates over the tags of a whole `.flv` file: (header, body).
pub fn file_tags(data: &Bytes) -> Result<Vec<(TagHeader, Bytes)>, FlvError> {
    let header = parse_file_header(data)?.ok_or(FlvError::TooShort {
        what: "FLV file",
        len: data.len(),
    })?;
    let mut pos = header.body_offset as usize;
    let mut tags = Vec::new();
    while let Some(h) = data.get(pos..).and_then(parse_tag_header) {
        let start = pos + TAG_HEADER_LEN;
        let end = start + h.data_size as usize;
        if end > data.len() {
            break;
        }
        tags.push((h, data.slice(start..end)));
        pos = end + 4;
    }
    Ok(tags)
}

fn frame_type(v: u8) -> VideoFrameType {
    match v {
        1 => VideoFrameType::Key,
        3 => VideoFrameType::DisposableInter,
        4 => VideoFrameType::GeneratedKey,
        5 => VideoFrameType::Command,
        _ => VideoFrameType::Inter,
    }
}

/// A signed 24-bit big-endian composition time.
fn composition_time(b: &[u8]) -> i32 {
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

const EX_SEQUENCE_START: u8 = 0;
const EX_CODED_FRAMES: u8 = 1;
const EX_SEQUENCE_END: u8 = 2;
const EX_CODED_FRAMES_X: u8 = 3;
const EX_METADATA: u8 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_offset_near_2_pow_32_does_not_wrap() {
        // fuzz find (flv_tags): DataOffset 0xFFFFFFFF made `offset + 4` overflow.
        let header = parse_file_header(b"FLV\x01\x05\xff\xff\xff\xff")
            .unwrap()
            .unwrap();
        assert_eq!(header.body_offset, u32::MAX);
    }

    #[test]
    fn avc_round_trip_with_negative_composition_time() {
        let packet = VideoPacket::AvcNalus {
            composition_time_ms: -33,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        };
        let mut out = Vec::new();
        write_video_tag(VideoFrameType::Key, &packet, &mut out);
        let tag = parse_video_tag(Bytes::from(out)).expect("parses");
        assert_eq!(
            tag,
            VideoTag {
                frame_type: VideoFrameType::Key,
                packet
            }
        );
    }

    #[test]
    fn enhanced_hevc_and_av1_are_read() {
        let hevc = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3]);
        assert_eq!(
            parse_video_tag(hevc).expect("parses").packet,
            VideoPacket::SequenceStart {
                codec: VideoCodec::Hevc,
                record: Bytes::from_static(&[1, 2, 3])
            }
        );
        // HEVC CodedFrames has a composition time; CodedFramesX has none.
        let hevc = Bytes::from_static(&[0xa1, b'h', b'v', b'c', b'1', 0xff, 0xff, 0xdf, 7]);
        let tag = parse_video_tag(hevc).expect("parses");
        assert_eq!(tag.frame_type, VideoFrameType::Inter);
        assert_eq!(
            tag.packet,
            VideoPacket::CodedFrames {
                codec: VideoCodec::Hevc,
                composition_time_ms: -33,
                data: Bytes::from_static(&[7])
            }
        );
        let hevc = Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1', 7]);
        assert!(matches!(
            parse_video_tag(hevc).expect("parses").packet,
            VideoPacket::CodedFrames { composition_time_ms: 0, data, .. } if data[..] == [7]
        ));
        // AV1 CodedFrames has no composition time: the OBUs start right after the FourCC.
        let av1 = Bytes::from_static(&[0x91, b'a', b'v', b'0', b'1', 0x0a, 0, 0]);
        assert_eq!(
            parse_video_tag(av1).expect("parses").packet,
            VideoPacket::CodedFrames {
                codec: VideoCodec::Av1,
                composition_time_ms: 0,
                data: Bytes::from_static(&[0x0a, 0, 0])
            }
        );
        // MPEG-2 TS sequence start (AV1): the configuration comes from the key frame.
        let av1 = Bytes::from_static(&[0x95, b'a', b'v', b'0', b'1', 0x80, 4]);
        assert_eq!(
            parse_video_tag(av1).expect("parses").packet,
            VideoPacket::Ignored
        );
        let vp9 = Bytes::from_static(&[0x90, b'v', b'p', b'0', b'9', 1]);
        assert!(
            matches!(parse_video_tag(vp9).expect("parses").packet, VideoPacket::Unsupported { codec } if codec.contains("VP9"))
        );
        let avc = Bytes::from_static(&[0x91, b'a', b'v', b'c', b'1', 0, 0, 0x21, 9, 9]);
        let tag = parse_video_tag(avc).expect("parses");
        assert_eq!(tag.frame_type, VideoFrameType::Key);
        assert_eq!(
            tag.packet,
            VideoPacket::AvcNalus {
                composition_time_ms: 0x21,
                data: Bytes::from_static(&[9, 9])
            }
        );
        let opus = Bytes::from_static(&[0x90, b'O', b'p', b'u', b's', 0]);
        assert!(
            matches!(parse_audio_tag(opus).expect("parses"), AudioPacket::Unsupported { codec } if codec.contains("Opus"))
        );
        let mp3 = Bytes::from_static(&[0x2f, 0xff]);
        assert_eq!(
            parse_audio_tag(mp3).expect("parses"),
            AudioPacket::Mp3(Bytes::from_static(&[0xff]))
        );
        let nelly = Bytes::from_static(&[0x5f, 0xff]);
        assert_eq!(
            parse_audio_tag(nelly).expect("parses"),
            AudioPacket::Unsupported {
                codec: "Nellymoser".into()
            }
        );
    }

    #[test]
    fn enhanced_round_trip() {
        for (codec, packet) in [
            (
                VideoCodec::Hevc,
                VideoPacket::SequenceStart {
                    codec: VideoCodec::Hevc,
                    record: Bytes::from_static(&[1, 2]),
                },
            ),
            (
                VideoCodec::Hevc,
                VideoPacket::CodedFrames {
                    codec: VideoCodec::Hevc,
                    composition_time_ms: 66,
                    data: Bytes::from_static(&[0, 0, 0, 1, 0x26]),
                },
            ),
            (
                VideoCodec::Hevc,
                VideoPacket::CodedFrames {
                    codec: VideoCodec::Hevc,
                    composition_time_ms: 0,
                    data: Bytes::from_static(&[0, 0, 0, 1, 0x26]),
                },
            ),
            (
                VideoCodec::Av1,
                VideoPacket::CodedFrames {
                    codec: VideoCodec::Av1,
                    composition_time_ms: 0,
                    data: Bytes::from_static(&[0x32, 0]),
                },
            ),
            (
                VideoCodec::Avc,
                VideoPacket::AvcNalus {
                    composition_time_ms: 40,
                    data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
                },
            ),
            (VideoCodec::Av1, VideoPacket::AvcEndOfSequence),
        ] {
            let mut out = Vec::new();
            write_ex_video_tag(VideoFrameType::Key, codec, &packet, &mut out);
            assert_eq!(&out[1..5], &codec.fourcc());
            let tag = parse_video_tag(Bytes::from(out)).expect("parses");
            assert_eq!(tag.frame_type, VideoFrameType::Key);
            assert_eq!(tag.packet, packet);
        }
    }

    #[test]
    fn aac_round_trip() {
        for packet in [
            AudioPacket::AacSequenceHeader(Bytes::from_static(&[0x11, 0x90])),
            AudioPacket::AacRaw(Bytes::from_static(&[1, 2, 3])),
        ] {
            let mut out = Vec::new();
            write_audio_tag(&packet, &mut out);
            assert_eq!(parse_audio_tag(Bytes::from(out)).expect("parses"), packet);
        }
    }

    #[test]
    fn short_or_random_tags_never_panic() {
        assert_eq!(parse_video_tag(Bytes::new()), Err(FlvError::Empty("video")));
        assert!(parse_video_tag(Bytes::from_static(&[0x17, 1])).is_err());
        let mut seed = 0x1234_5678_9abc_def1_u64;
        for _ in 0..5000 {
            let len = (seed % 12) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = parse_video_tag(Bytes::from(bytes.clone()));
            let _ = parse_audio_tag(Bytes::from(bytes.clone()));
            let _ = parse_script_data(&bytes);
            let _ = file_tags(&Bytes::from(bytes));
        }
    }
}
