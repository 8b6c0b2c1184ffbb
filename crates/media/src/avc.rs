//! H.264 decoder configuration (ISO/IEC 14496-15 §5.3.3, `AVCDecoderConfigurationRecord`)
//! and NAL unit framing helpers.

use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};

/// Why a codec configuration could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("avcC record too short ({0} bytes)")]
    AvcRecordTooShort(usize),
    #[error("avcC record version {0} is not 1")]
    AvcRecordVersion(u8),
    #[error("avcC record has no SPS")]
    NoSps,
    #[error("avcC record has no PPS")]
    NoPps,
    #[error("SPS cannot be parsed: {0}")]
    Sps(String),
    #[error("AudioSpecificConfig too short ({0} bytes)")]
    AscTooShort(usize),
    #[error("AAC sampling frequency index {0} is reserved")]
    AacFrequencyIndex(u8),
    #[error("AAC channel configuration {0} is not supported (only 1 to 7)")]
    AacChannels(u8),
    #[error("HEVC configuration: {0}")]
    Hevc(String),
    #[error("AV1 configuration: {0}")]
    Av1(String),
}

/// An H.264 decoder configuration and the facts read from its first SPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// The whole `AVCDecoderConfigurationRecord`, as carried in FLV and in `avcC`.
    pub record: Bytes,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Displayed size in pixels, after cropping.
    pub width: u32,
    pub height: u32,
    /// Frame rate from the SPS VUI timing info, as (numerator, denominator), if present.
    pub frame_rate: Option<(u32, u32)>,
}

impl AvcConfig {
    /// `avc1.PPCCLL`, RFC 6381 §3.3.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }

    /// Reads an `AVCDecoderConfigurationRecord` and its first SPS.
    pub fn parse(record: Bytes) -> Result<AvcConfig, CodecError> {
        let r = &record[..];
        if r.len() < 7 {
            return Err(CodecError::AvcRecordTooShort(r.len()));
        }
        if r[0] != 1 {
            return Err(CodecError::AvcRecordVersion(r[0]));
        }
        let nal_length_size = (r[4] & 0x03) + 1;
        let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Bytes>, CodecError> {
            let mut sets = Vec::new();
            for _ in 0..count {
                let len = r
                    .get(*pos..*pos + 2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let len = len.ok_or(CodecError::AvcRecordTooShort(r.len()))?;
                let end = *pos + 2 + len;
                if end > r.len() {
                    return Err(CodecError::AvcRecordTooShort(r.len()));
                }
                sets.push(record.slice(*pos + 2..end));
                *pos = end;
            }
            Ok(sets)
        };
        let mut pos = 6;
        let sps = read_sets(usize::from(r[5] & 0x1f), &mut pos)?;
        let pps_count = usize::from(*r.get(pos).ok_or(CodecError::AvcRecordTooShort(r.len()))?);
        pos += 1;
        let pps = read_sets(pps_count, &mut pos)?;
        let first = sps.first().ok_or(CodecError::NoSps)?;
        if pps.is_empty() {
            return Err(CodecError::NoPps);
        }
        let facts = SpsFacts::read(first)?;
        Ok(AvcConfig {
            profile_idc: r[1],
            constraint_flags: r[2],
            level_idc: r[3],
            nal_length_size,
            width: facts.width,
            height: facts.height,
            frame_rate: facts.frame_rate,
            sps,
            pps,
            record,
        })
    }

    /// Builds the record from parameter sets (NAL units without start codes or lengths),
    /// with 4-byte NAL lengths.
    pub fn from_parameter_sets(sps: &[Bytes], pps: &[Bytes]) -> Result<AvcConfig, CodecError> {
        let first = sps.first().ok_or(CodecError::NoSps)?;
        if pps.is_empty() {
            return Err(CodecError::NoPps);
        }
        if first.len() < 4 {
            return Err(CodecError::Sps("SPS shorter than 4 bytes".into()));
        }
        let mut r = BytesMut::new();
        r.put_slice(&[
            1,
            first[1],
            first[2],
            first[3],
            0xff,
            0xe0 | (sps.len() as u8 & 0x1f),
        ]);
        for s in sps {
            r.put_u16(s.len() as u16);
            r.put_slice(s);
        }
        r.put_u8(pps.len() as u8);
        for p in pps {
            r.put_u16(p.len() as u16);
            r.put_slice(p);
        }
        // High profiles carry chroma format and bit depths after the PPS list (§5.3.3.1.2).
        if matches!(first[1], 100 | 110 | 122 | 144) {
            r.put_slice(&[0xfc | 1, 0xf8, 0xf8, 0]);
        }
        AvcConfig::parse(r.freeze())
    }
}

struct SpsFacts {
    width: u32,
    height: u32,
    frame_rate: Option<(u32, u32)>,
}

impl SpsFacts {
    fn read(sps_nal: &[u8]) -> Result<SpsFacts, CodecError> {
        if sps_nal.is_empty() {
            return Err(CodecError::Sps("empty SPS".into()));
        }
        // `decode_nal` takes the whole NAL unit and drops its header byte itself.
        let rbsp = decode_nal(sps_nal).map_err(|e| CodecError::Sps(e.to_string()))?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
            .map_err(|e| CodecError::Sps(format!("{e:?}")))?;
        let (width, height) = sps
            .pixel_dimensions()
            .map_err(|e| CodecError::Sps(format!("{e:?}")))?;
        let frame_rate = sps
            .vui_parameters
            .as_ref()
            .and_then(|v| v.timing_info.as_ref())
            .filter(|t| t.num_units_in_tick > 0 && t.time_scale > 0)
            .map(|t| (t.time_scale, t.num_units_in_tick.saturating_mul(2)));
        Ok(SpsFacts {
            width,
            height,
            frame_rate,
        })
    }
}

/// Whether an AVCC-framed access unit contains an IDR slice (NAL type 5).
pub fn is_idr(data: &[u8], nal_length_size: u8) -> bool {
    avcc_nalus(data, nal_length_size).any(|n| n.first().is_some_and(|h| h & 0x1f == 5))
}

/// The NAL units of an AVCC-framed access unit (stops at the first malformed length).
pub fn avcc_nalus(data: &[u8], nal_length_size: u8) -> impl Iterator<Item = &[u8]> {
    let n = usize::from(nal_length_size.clamp(1, 4));
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let nal = rest.get(n..n + len)?;
        rest = &rest[n + len..];
        Some(nal)
    })
}

/// AVCC (length-prefixed) to Annex B (start codes).
pub fn avcc_to_annexb(data: &[u8], nal_length_size: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    for nal in avcc_nalus(data, nal_length_size) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes).
pub fn annexb_nalus(data: &[u8]) -> Vec<&[u8]> {
    start_code_units(data)
        .into_iter()
        .filter_map(|unit| {
            // Trailing zero bytes belong to the next start code (4-byte form) or are padding.
            let len = unit.iter().rposition(|b| *b != 0)? + 1;
            Some(&unit[..len])
        })
        .collect()
}

/// What follows each `00 00 01` start code up to the next one, zeros before that one
/// included (a NAL unit or, in AV1's MPEG-TS format, an OBU: each trims them its way).
pub(crate) fn start_code_units(data: &[u8]) -> Vec<&[u8]> {
    // Every access unit of a TS publish passes here: a SIMD search, not a byte loop.
    let starts: Vec<usize> = memchr::memmem::find_iter(data, &[0, 0, 1])
        .map(|at| at + 3)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| &data[s..starts.get(k + 1).map_or(data.len(), |&next| next - 3)])
        .collect()
}

/// Annex B to AVCC with 4-byte lengths.
pub fn annexb_to_avcc(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    for nal in annexb_nalus(data) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS/PPS of x264 at 320x240 High profile, level 1.3 (from `ffmpeg -f lavfi -i
    /// testsrc2=size=320x240 -c:v libx264 -f h264`).
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    #[test]
    fn builds_and_parses_a_record() {
        let c =
            AvcConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)])
                .expect("valid");
        assert_eq!((c.width, c.height), (320, 240));
        assert_eq!(c.codec_string(), "avc1.64000d");
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.frame_rate, Some((60, 2)));
        let again = AvcConfig::parse(c.record.clone()).expect("round trip");
        assert_eq!(again, c);
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(
            AvcConfig::parse(Bytes::from_static(&[1, 2])),
            Err(CodecError::AvcRecordTooShort(2))
        );
        assert_eq!(
            AvcConfig::parse(Bytes::from_static(&[0, 0x64, 0, 0xd, 0xff, 0xe1, 0])),
            Err(CodecError::AvcRecordVersion(0))
        );
        assert!(
            AvcConfig::parse(Bytes::from_static(&[1, 0x64, 0, 0xd, 0xff, 0xe1, 0, 50, 1])).is_err()
        );
        assert_eq!(
            AvcConfig::parse(Bytes::from_static(&[1, 0x64, 0, 0xd, 0xff, 0xe0, 0])),
            Err(CodecError::NoSps)
        );
    }

    #[test]
    fn annexb_and_avcc_convert_both_ways() {
        let annexb = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let avcc = annexb_to_avcc(&annexb);
        assert_eq!(
            avcc,
            [
                0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 3, 0x65, 4, 5
            ]
        );
        assert!(is_idr(&avcc, 4));
        assert!(!is_idr(&avcc[..12], 4));
        assert_eq!(
            avcc_to_annexb(&avcc, 4),
            [
                0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5
            ]
        );
    }

    /// The start-code search finds what a byte-by-byte scan finds, on inputs dense in
    /// zeros and ones (start codes, 4-byte forms, `00 00 00 01 01`, runs of zeros).
    #[test]
    fn nal_units_are_the_ones_a_byte_scan_finds() {
        fn by_bytes(data: &[u8]) -> Vec<&[u8]> {
            let mut starts = Vec::new();
            let mut i = 0;
            while i + 3 <= data.len() {
                if data[..].get(i..i + 3) == Some(&[0, 0, 1]) {
                    starts.push(i + 3);
                    i += 3;
                } else {
                    i += 1;
                }
            }
            let mut nalus = Vec::new();
            for (k, &s) in starts.iter().enumerate() {
                let mut end = starts.get(k + 1).map_or(data.len(), |&next| next - 3);
                while end > s && data[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    nalus.push(&data[s..end]);
                }
            }
            nalus
        }
        let mut state = 0x2545_f491_u32;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    [0, 0, 0, 1, 0x65, (state >> 24) as u8][(state % 6) as usize]
                })
                .collect();
            assert_eq!(annexb_nalus(&data), by_bytes(&data), "{data:?}");
        }
    }
}
