//! AV1 codec configuration (AV1-ISOBMFF §2.3, `AV1CodecConfigurationRecord`, the `av1C`
//! box) with its sequence header OBU, and the RFC 6381 codec string `av01.P.LLT.DD`.
//!
//! Access units are temporal units in the low-overhead OBU format (every OBU with a size
//! field), as carried in Enhanced RTMP and in an `av01` sample, without temporal
//! delimiters.

use bytes::Bytes;
use mp4_atom::{Atom, Av1c};

use crate::avc::CodecError;
use crate::bits::{Bits, OutOfBits};

/// OBU types (AV1 §6.2.2) that matter here.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_PADDING: u8 = 15;

/// One OBU of a low-overhead bitstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obu<'a> {
    pub obu_type: u8,
    /// The whole OBU, header and size field included.
    pub bytes: &'a [u8],
    /// The payload after the header and size field.
    pub payload: &'a [u8],
}

/// The OBUs of a temporal unit (stops at the first malformed one). An OBU without a size
/// field takes the rest of the data.
pub fn obus(data: &[u8]) -> impl Iterator<Item = Obu<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let header = *rest.first()?;
        let obu_type = (header >> 3) & 0x0f;
        let mut pos = 1 + usize::from(header & 0x04 != 0);
        let size = if header & 0x02 != 0 {
            let (size, len) = leb128(rest.get(pos..)?)?;
            pos += len;
            usize::try_from(size).ok()?
        } else {
            rest.len().checked_sub(pos)?
        };
        let end = pos.checked_add(size)?;
        let obu = Obu {
            obu_type,
            bytes: rest.get(..end)?,
            payload: rest.get(pos..end)?,
        };
        rest = &rest[end..];
        Some(obu)
    })
}

/// `leb128()` (AV1 §4.10.5): the value and the bytes it took.
fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A temporal unit without its temporal delimiter and padding OBUs, as an `av01` sample
/// must be (AV1-ISOBMFF §2.4).
pub fn strip_temporal_delimiters(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for obu in obus(data) {
        if obu.obu_type != OBU_TEMPORAL_DELIMITER && obu.obu_type != OBU_PADDING {
            out.extend_from_slice(obu.bytes);
        }
    }
    out
}

/// A temporal unit as MPEG-2 TS carries AV1 (AOM, "Carriage of AV1 in MPEG-2 TS": the
/// start-code format, each OBU after `00 00 01`, emulation prevention bytes inserted as in
/// H.264) turned into the low-overhead format. Data that does not begin with a start
/// code is taken to be low-overhead already (earlier drafts of that specification) and
/// returned as it is.
pub fn from_start_code_format(data: &[u8]) -> Vec<u8> {
    if !data.starts_with(&[0, 0, 1]) && !data.starts_with(&[0, 0, 0, 1]) {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len());
    for escaped in crate::avc::start_code_units(data) {
        let unit = crate::bits::unescape_rbsp(escaped);
        // An OBU's size field says where it ends: zero bytes after it are padding or
        // the first byte of a 4-byte start code. (One without says nothing.)
        match obus(&unit).next() {
            Some(obu) if unit[0] & 0x02 != 0 => out.extend_from_slice(obu.bytes),
            _ => {
                let len = unit.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                out.extend_from_slice(&unit[..len]);
            }
        }
    }
    out
}

/// The start-code format of [`from_start_code_format`] for a low-overhead temporal unit:
/// what an MPEG-2 TS muxer writes.
pub fn to_start_code_format(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 16);
    for obu in obus(data) {
        out.extend_from_slice(&[0, 0, 1]);
        let mut zeros = 0;
        for &b in obu.bytes {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
    }
    out
}

/// Whether a temporal unit starts with a key frame: its first frame header says
/// `frame_type == KEY_FRAME` and is not a `show_existing_frame` (AV1 §5.9.2; sequences
/// with `reduced_still_picture_header` are all key frames and have no such bits, and
/// are not live streams).
pub fn is_key_frame(data: &[u8]) -> bool {
    const OBU_FRAME_HEADER: u8 = 3;
    const OBU_FRAME: u8 = 6;
    obus(data)
        .find(|o| o.obu_type == OBU_FRAME_HEADER || o.obu_type == OBU_FRAME)
        .and_then(|o| o.payload.first())
        .is_some_and(|b| b & 0x80 == 0 && (b >> 5) & 0x03 == 0)
}

/// The sequence header OBU of a temporal unit, if it has one (key frames do).
pub fn find_sequence_header(data: &[u8]) -> Option<&[u8]> {
    obus(data)
        .find(|o| o.obu_type == OBU_SEQUENCE_HEADER)
        .map(|o| o.bytes)
}

/// An AV1 configuration: the `av1C` fields and the facts of its sequence header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// The whole `AV1CodecConfigurationRecord` (the `av1C` box body), sequence header
    /// OBU included.
    pub record: Bytes,
    pub seq_profile: u8,
    pub seq_level_idx: u8,
    pub seq_tier: bool,
    pub bit_depth: u8,
    pub monochrome: bool,
    /// Displayed size in pixels (`max_frame_width`/`height` of the sequence header).
    pub width: u32,
    pub height: u32,
    /// The sequence header OBU (from `configOBUs`), for a decoder that starts at a key
    /// frame without one.
    pub sequence_header: Bytes,
    /// Frames per second as n/d, from the sequence header's `timing_info` with an equal
    /// picture interval; `None` when it has none (SVT-AV1 writes none): an encoder
    /// that knows its rate sets it ([`Av1Config::with_frame_rate`]).
    pub frame_rate: Option<(u32, u32)>,
}

impl Av1Config {
    /// `av01.P.LLT.DD` (AV1-ISOBMFF, Codecs Parameter String), the short form that stops
    /// after the bit depth, e.g. `av01.0.04M.08`.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.seq_level_idx,
            if self.seq_tier { 'H' } else { 'M' },
            self.bit_depth
        )
    }

    /// Reads an `AV1CodecConfigurationRecord`; its `configOBUs` must hold the sequence
    /// header (the record is the only place a CMAF player finds it).
    pub fn parse(record: Bytes) -> Result<Av1Config, CodecError> {
        let av1c = Av1c::decode_body(&mut &record[..])
            .map_err(|e| CodecError::Av1(format!("av1C record: {e}")))?;
        let header = find_sequence_header(&av1c.config_obus)
            .ok_or_else(|| CodecError::Av1("av1C record has no sequence header OBU".into()))?;
        let seq = SequenceHeader::read(header)?;
        let sequence_header = Bytes::copy_from_slice(header);
        Ok(Av1Config {
            record,
            sequence_header,
            seq_profile: seq.profile,
            seq_level_idx: seq.level_idx,
            seq_tier: seq.tier,
            bit_depth: seq.bit_depth,
            monochrome: seq.monochrome,
            width: seq.width,
            height: seq.height,
            frame_rate: seq.frame_rate,
        })
    }

    /// The same configuration with the frame rate its producer knows, where the
    /// sequence header carries none.
    pub fn with_frame_rate(mut self, frame_rate: (u32, u32)) -> Av1Config {
        if self.frame_rate.is_none() && frame_rate.0 > 0 && frame_rate.1 > 0 {
            self.frame_rate = Some(frame_rate);
        }
        self
    }

    /// Builds the record around a sequence header OBU (as an encoder's extradata or a
    /// key frame carries it).
    pub fn from_sequence_header(obu: &[u8]) -> Result<Av1Config, CodecError> {
        let header = find_sequence_header(obu)
            .ok_or_else(|| CodecError::Av1("no sequence header OBU".into()))?;
        let seq = SequenceHeader::read(header)?;
        let av1c = Av1c {
            seq_profile: seq.profile,
            seq_level_idx_0: seq.level_idx,
            seq_tier_0: seq.tier,
            high_bitdepth: seq.bit_depth > 8,
            twelve_bit: seq.bit_depth == 12,
            monochrome: seq.monochrome,
            chroma_subsampling_x: seq.subsampling_x,
            chroma_subsampling_y: seq.subsampling_y,
            chroma_sample_position: seq.chroma_sample_position,
            initial_presentation_delay: None,
            config_obus: header.to_vec(),
        };
        let mut record = Vec::new();
        av1c.encode_body(&mut record)
            .map_err(|e| CodecError::Av1(format!("av1C record: {e}")))?;
        Av1Config::parse(Bytes::from(record))
    }
}

struct SequenceHeader {
    profile: u8,
    level_idx: u8,
    tier: bool,
    width: u32,
    height: u32,
    bit_depth: u8,
    monochrome: bool,
    subsampling_x: bool,
    subsampling_y: bool,
    chroma_sample_position: u8,
    frame_rate: Option<(u32, u32)>,
}

impl SequenceHeader {
    /// AV1 §5.5.1 `sequence_header_obu()`, up to `color_config()`.
    fn read(obu: &[u8]) -> Result<SequenceHeader, CodecError> {
        let o = obus(obu)
            .next()
            .filter(|o| o.obu_type == OBU_SEQUENCE_HEADER)
            .ok_or_else(|| CodecError::Av1("not a sequence header OBU".into()))?;
        Self::read_payload(&mut Bits::new(o.payload))
            .map_err(|_| CodecError::Av1("sequence header ends early".into()))
    }

    fn read_payload(b: &mut Bits<'_>) -> Result<SequenceHeader, OutOfBits> {
        let profile = b.bits(3)? as u8;
        b.skip(1)?; // still_picture
        let reduced = b.bit()?;
        let (level_idx, tier);
        let mut frame_rate = None;
        if reduced {
            level_idx = b.bits(5)? as u8;
            tier = false;
        } else {
            let mut buffer_delay_bits = 0;
            let mut decoder_model_info = false;
            if b.bit()? {
                // timing_info(): a picture every (num_ticks_per_picture_minus_1 + 1)
                // display ticks of num_units_in_display_tick / time_scale seconds.
                let units_per_tick = b.bits(32)?;
                let time_scale = b.bits(32)?;
                if b.bit()? {
                    let ticks = u64::from(b.uvlc()?) + 1;
                    let d = u64::from(units_per_tick) * ticks;
                    frame_rate = u32::try_from(d)
                        .ok()
                        .filter(|d| *d > 0 && time_scale > 0)
                        .map(|d| (time_scale, d));
                }
                decoder_model_info = b.bit()?;
                if decoder_model_info {
                    buffer_delay_bits = b.bits(5)? as usize + 1;
                    b.skip(32 + 5 + 5)?;
                }
            }
            let initial_display_delay = b.bit()?;
            let count = b.bits(5)? + 1;
            let (mut first_level, mut first_tier) = (0, false);
            for i in 0..count {
                b.skip(12)?; // operating_point_idc
                let level = b.bits(5)? as u8;
                let t = level > 7 && b.bit()?;
                if i == 0 {
                    (first_level, first_tier) = (level, t);
                }
                if decoder_model_info && b.bit()? {
                    b.skip(2 * buffer_delay_bits + 1)?;
                }
                if initial_display_delay && b.bit()? {
                    b.skip(4)?;
                }
            }
            level_idx = first_level;
            tier = first_tier;
        }
        let width_bits = b.bits(4)? + 1;
        let height_bits = b.bits(4)? + 1;
        let width = b.bits(width_bits)? + 1;
        let height = b.bits(height_bits)? + 1;
        if !reduced && b.bit()? {
            b.skip(4 + 3)?; // frame id lengths
        }
        b.skip(3)?; // 128x128 superblock, filter intra, intra edge filter
        if !reduced {
            b.skip(4)?; // interintra, masked compound, warped motion, dual filter
            let order_hint = b.bit()?;
            if order_hint {
                b.skip(2)?; // jnt_comp, ref_frame_mvs
            }
            let force_screen_content_tools = if b.bit()? { 2 } else { b.bits(1)? };
            if force_screen_content_tools > 0 && !b.bit()? {
                b.skip(1)?; // seq_force_integer_mv
            }
            if order_hint {
                b.skip(3)?;
            }
        }
        b.skip(3)?; // superres, cdef, restoration
        // color_config()
        let high_bitdepth = b.bit()?;
        let bit_depth = if profile == 2 && high_bitdepth {
            if b.bit()? { 12 } else { 10 }
        } else if high_bitdepth {
            10
        } else {
            8
        };
        let monochrome = profile != 1 && b.bit()?;
        let (mut cp, mut tc, mut mc) = (2, 2, 2);
        if b.bit()? {
            cp = b.bits(8)?;
            tc = b.bits(8)?;
            mc = b.bits(8)?;
        }
        let (mut sx, mut sy, mut csp) = (true, true, 0);
        if monochrome {
            b.skip(1)?;
        } else if cp == 1 && tc == 13 && mc == 0 {
            (sx, sy) = (false, false);
        } else {
            b.skip(1)?; // color_range
            (sx, sy) = match profile {
                0 => (true, true),
                1 => (false, false),
                _ if bit_depth == 12 => {
                    let x = b.bit()?;
                    (x, x && b.bit()?)
                }
                _ => (true, false),
            };
            if sx && sy {
                csp = b.bits(2)? as u8;
            }
        }
        Ok(SequenceHeader {
            profile,
            level_idx,
            tier,
            width,
            height,
            bit_depth,
            monochrome,
            subsampling_x: sx,
            subsampling_y: sy,
            chroma_sample_position: csp,
            frame_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_obus_and_drops_temporal_delimiters() {
        // A temporal delimiter (size 0), then a padding OBU of 2 bytes, then an OBU
        // without a size field taking the rest.
        let tu = [0x12, 0x00, 0x7a, 0x02, 9, 9, 0x30, 1, 2, 3];
        let types: Vec<u8> = obus(&tu).map(|o| o.obu_type).collect();
        assert_eq!(types, [2, 15, 6]);
        assert_eq!(strip_temporal_delimiters(&tu), [0x30, 1, 2, 3]);
        assert_eq!(leb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(obus(&[0x12, 0x05, 1]).count(), 0);
        // A frame OBU: show_existing_frame 0, frame_type 0 (key) / 1 (inter).
        assert!(is_key_frame(&[0x12, 0x00, 0x32, 0x01, 0x10]));
        assert!(!is_key_frame(&[0x12, 0x00, 0x32, 0x01, 0x30]));
        assert!(!is_key_frame(&[0x12, 0x00]));
    }

    #[test]
    fn the_start_code_format_of_mpeg_ts_round_trips() {
        // Frame OBUs (type 6, with a size field) whose payloads are full of what must be
        // escaped: 00 00 00/01/02/03, and zeros at the end.
        let mut seed = 0x2545_f491_u32;
        for _ in 0..300 {
            let mut tu = vec![0x12, 0x00];
            for _ in 0..3 {
                let len = (seed % 40) as usize;
                let payload: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        [0, 0, 0, 1, 2, 3, 0x80][(seed % 7) as usize]
                    })
                    .collect();
                tu.extend_from_slice(&[0x32, len as u8]);
                tu.extend_from_slice(&payload);
            }
            let ts = to_start_code_format(&tu);
            assert!(ts.starts_with(&[0, 0, 1, 0x12]));
            // Four OBUs, four start codes: none emulated inside them.
            assert_eq!(
                memchr::memmem::find_iter(&ts, &[0, 0, 1]).count(),
                4,
                "{ts:?}"
            );
            assert_eq!(from_start_code_format(&ts), tu);
        }
        // The 4-byte start code, and padding zeros after an OBU.
        let ts = [0, 0, 0, 1, 0x12, 0x00, 0, 0, 0, 1, 0x32, 0x02, 7, 0, 0, 0];
        assert_eq!(from_start_code_format(&ts), [0x12, 0x00, 0x32, 0x02, 7, 0]);
        // Already low-overhead (earlier drafts): as it is.
        assert_eq!(from_start_code_format(&[0x12, 0x00]), [0x12, 0x00]);
    }

    #[test]
    fn codec_string_has_profile_level_tier_depth() {
        let c = Av1Config {
            record: Bytes::new(),
            seq_profile: 0,
            seq_level_idx: 4,
            seq_tier: false,
            bit_depth: 8,
            monochrome: false,
            width: 320,
            height: 240,
            sequence_header: Bytes::new(),
            frame_rate: None,
        };
        assert_eq!(c.codec_string(), "av01.0.04M.08");
        assert!(Av1Config::parse(Bytes::from_static(&[0x81, 0, 0x0c, 0])).is_err());
        assert!(Av1Config::from_sequence_header(&[0x0a, 0x01, 0x00]).is_err());
    }

    #[test]
    fn random_records_and_obus_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            let len = (seed % 40) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            // Often a plausible start: the av1C marker, a sequence header OBU, an hvcC version.
            match seed % 4 {
                0 if len > 4 => bytes[..2].copy_from_slice(&[0x81, 0x00]),
                1 if len > 2 => bytes[..2].copy_from_slice(&[0x0a, (len - 2) as u8]),
                2 if len > 1 => bytes[0] = 1,
                _ => {}
            }
            let data = Bytes::from(bytes);
            let _ = Av1Config::parse(data.clone());
            let _ = Av1Config::from_sequence_header(&data);
            let _ = crate::HevcConfig::parse(data.clone());
            let stripped = strip_temporal_delimiters(&data);
            assert!(obus(&stripped).all(|o| o.obu_type != OBU_TEMPORAL_DELIMITER));
            let _ = is_key_frame(&data);
        }
    }

    /// A sequence header with `timing_info` (29.97 fps: 1001 units a tick at 60,000 Hz,
    /// two ticks a picture) gives its frame rate; without one, the encoder's rate can
    /// be set, and a header's own rate is not overridden.
    #[test]
    fn frame_rate_comes_from_timing_info_or_the_encoder() {
        fn put(bits: &mut Vec<bool>, value: u32, n: u32) {
            bits.extend((0..n).rev().map(|i| value >> i & 1 == 1));
        }
        let sequence_header = |timing: bool| {
            let mut b = Vec::new();
            put(&mut b, 0, 3); // seq_profile
            put(&mut b, 0, 2); // still_picture, reduced_still_picture_header
            put(&mut b, u32::from(timing), 1);
            if timing {
                put(&mut b, 1001, 32); // num_units_in_display_tick
                put(&mut b, 60_000, 32); // time_scale
                put(&mut b, 1, 1); // equal_picture_interval
                put(&mut b, 0b010, 3); // uvlc: num_ticks_per_picture_minus_1 = 1
                put(&mut b, 0, 1); // decoder_model_info_present_flag
            }
            put(&mut b, 0, 1); // initial_display_delay_present_flag
            put(&mut b, 0, 5); // operating_points_cnt_minus_1
            put(&mut b, 0, 12); // operating_point_idc
            put(&mut b, 4, 5); // seq_level_idx (no tier below 8)
            put(&mut b, 8, 4); // frame_width_bits_minus_1
            put(&mut b, 8, 4); // frame_height_bits_minus_1
            put(&mut b, 319, 9);
            put(&mut b, 179, 9);
            put(&mut b, 0, 1); // frame_id_numbers_present_flag
            put(&mut b, 0, 3 + 4); // superblock, filter intra, edge; inter tools
            put(&mut b, 0, 1); // enable_order_hint
            put(&mut b, 0, 2); // seq_choose_screen_content_tools = 0, force = 0
            put(&mut b, 0, 3); // superres, cdef, restoration
            put(&mut b, 0, 3); // high_bitdepth, mono_chrome, color_description
            put(&mut b, 0, 1 + 2 + 1); // color_range, chroma_sample_position, uv delta
            put(&mut b, 0, 1); // film_grain_params_present
            b.push(true); // trailing bits
            while b.len() % 8 != 0 {
                b.push(false);
            }
            let payload: Vec<u8> = b
                .chunks(8)
                .map(|c| c.iter().fold(0, |byte, bit| byte << 1 | u8::from(*bit)))
                .collect();
            let mut obu = vec![0x0a, payload.len() as u8];
            obu.extend(payload);
            obu
        };
        let timed = Av1Config::from_sequence_header(&sequence_header(true)).expect("parses");
        assert_eq!((timed.width, timed.height), (320, 180));
        assert_eq!(timed.frame_rate, Some((60_000, 2002)));
        assert_eq!(
            timed.clone().with_frame_rate((25, 1)).frame_rate,
            Some((60_000, 2002)),
            "the header's own rate stands"
        );
        let untimed = Av1Config::from_sequence_header(&sequence_header(false)).expect("parses");
        assert_eq!((untimed.width, untimed.height), (320, 180));
        assert_eq!(untimed.frame_rate, None);
        assert_eq!(untimed.with_frame_rate((24, 1)).frame_rate, Some((24, 1)));
    }
}
