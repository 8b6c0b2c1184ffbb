//! HEVC decoder configuration (ISO/IEC 14496-15 §8.3.3, `HEVCDecoderConfigurationRecord`,
//! the `hvcC` box) and its RFC 6381 codec string (ISO/IEC 14496-15 Annex E.3).
//!
//! Access units are framed as for H.264: NAL units each preceded by a big-endian length
//! of [`HevcConfig::nal_length_size`] bytes (the framing helpers of [`crate::avc`] apply).

use bytes::Bytes;
use mp4_atom::{Atom, HvcCArray, Hvcc};

use crate::avc::{CodecError, avcc_nalus};
use crate::bits::{Bits, OutOfBits, unescape_rbsp};

/// NAL unit types (H.265 Table 7-1) that matter here.
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;

/// The `nal_unit_type` of an HEVC NAL unit (two-byte header).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| (h >> 1) & 0x3f)
}

/// Whether a NAL unit type is an IRAP picture (BLA, IDR, CRA: 16 to 21), where decoding
/// can start.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=21).contains(&nal_type)
}

/// Whether a length-prefixed access unit contains an IRAP picture.
pub fn has_irap(data: &[u8], nal_length_size: u8) -> bool {
    avcc_nalus(data, nal_length_size).any(|n| nal_type(n).is_some_and(is_irap))
}

/// The `profile_tier_level` general fields that name an HEVC stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HevcProfile {
    pub profile_space: u8,
    pub tier_flag: bool,
    pub profile_idc: u8,
    /// `general_profile_compatibility_flag[0..32]`, flag 0 in the top bit.
    pub compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` on.
    pub constraint_flags: [u8; 6],
    pub level_idc: u8,
}

impl HevcProfile {
    /// `hvc1.A.B.C.D…` per ISO/IEC 14496-15 Annex E.3, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self, sample_entry: &str) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        // The 32 compatibility flags in reverse bit order, hex, leading zeros omitted.
        let compat = self.compatibility_flags.reverse_bits();
        let tier = if self.tier_flag { 'H' } else { 'L' };
        let mut s = format!(
            "{sample_entry}.{space}{}.{compat:X}.{tier}{}",
            self.profile_idc, self.level_idc
        );
        // Constraint bytes, trailing zero bytes omitted.
        let used = self
            .constraint_flags
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        for b in &self.constraint_flags[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// An HEVC decoder configuration and the facts read from its SPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// The whole `HEVCDecoderConfigurationRecord`, as carried in Enhanced RTMP and `hvcC`.
    pub record: Bytes,
    pub profile: HevcProfile,
    /// Bytes in each NAL unit length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    /// The VPS, SPS and PPS NAL units, in that order (one list keeps `CodecConfig`
    /// small).
    pub parameter_sets: Vec<Bytes>,
    /// Displayed size in pixels, after the conformance window.
    pub width: u32,
    pub height: u32,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// The frame rate the SPS states (VUI timing), as (numerator, denominator).
    pub frame_rate: Option<(u32, u32)>,
}

impl HevcConfig {
    /// The RFC 6381 string for an `hvc1` sample entry (parameter sets out of band).
    pub fn codec_string(&self) -> String {
        self.profile.codec_string("hvc1")
    }

    /// The parameter sets of one NAL unit type ([`NAL_VPS`], [`NAL_SPS`], [`NAL_PPS`]).
    pub fn sets(&self, nal_unit_type: u8) -> impl Iterator<Item = &Bytes> {
        self.parameter_sets
            .iter()
            .filter(move |n| nal_type(n) == Some(nal_unit_type))
    }

    /// Reads an `HEVCDecoderConfigurationRecord` and its first SPS.
    pub fn parse(record: Bytes) -> Result<HevcConfig, CodecError> {
        let hvcc = Hvcc::decode_body(&mut &record[..])
            .map_err(|e| CodecError::Hevc(format!("hvcC record: {e}")))?;
        if hvcc.configuration_version != 1 {
            return Err(CodecError::Hevc(format!(
                "hvcC record version {} is not 1",
                hvcc.configuration_version
            )));
        }
        // By each NAL unit's own header, whatever array it was filed in.
        let sets = |t: u8| -> Vec<Bytes> {
            hvcc.arrays
                .iter()
                .flat_map(|a| a.nalus.iter())
                .filter(|n| nal_type(n) == Some(t))
                .map(|n| Bytes::copy_from_slice(n))
                .collect()
        };
        let (vps, sps, pps) = (sets(NAL_VPS), sets(NAL_SPS), sets(NAL_PPS));
        let first = sps
            .first()
            .ok_or_else(|| CodecError::Hevc("hvcC record has no SPS".into()))?;
        if pps.is_empty() {
            return Err(CodecError::Hevc("hvcC record has no PPS".into()));
        }
        let facts = SpsFacts::read(first)?;
        Ok(HevcConfig {
            profile: HevcProfile {
                profile_space: hvcc.general_profile_space,
                tier_flag: hvcc.general_tier_flag,
                profile_idc: hvcc.general_profile_idc,
                compatibility_flags: u32::from_be_bytes(hvcc.general_profile_compatibility_flags),
                constraint_flags: hvcc.general_constraint_indicator_flags,
                level_idc: hvcc.general_level_idc,
            },
            nal_length_size: hvcc.length_size_minus_one + 1,
            parameter_sets: vps.into_iter().chain(sps).chain(pps).collect(),
            width: facts.width,
            height: facts.height,
            chroma_format_idc: facts.chroma_format_idc,
            bit_depth_luma: facts.bit_depth_luma,
            bit_depth_chroma: facts.bit_depth_chroma,
            frame_rate: facts.frame_rate,
            record,
        })
    }

    /// Builds the record from parameter sets (NAL units without start codes or lengths),
    /// with 4-byte NAL lengths, the general profile fields taken from the first SPS.
    pub fn from_parameter_sets(
        vps: &[Bytes],
        sps: &[Bytes],
        pps: &[Bytes],
    ) -> Result<HevcConfig, CodecError> {
        let first = sps
            .first()
            .ok_or_else(|| CodecError::Hevc("no SPS".into()))?;
        if vps.is_empty() || pps.is_empty() {
            return Err(CodecError::Hevc("VPS, SPS and PPS are all needed".into()));
        }
        let facts = SpsFacts::read(first)?;
        let p = facts.profile;
        let array = |t: u8, sets: &[Bytes]| HvcCArray {
            completeness: true,
            nal_unit_type: t,
            nalus: sets.iter().map(|s| s.to_vec()).collect(),
        };
        let hvcc = Hvcc {
            configuration_version: 1,
            general_profile_space: p.profile_space,
            general_tier_flag: p.tier_flag,
            general_profile_idc: p.profile_idc,
            general_profile_compatibility_flags: p.compatibility_flags.to_be_bytes(),
            general_constraint_indicator_flags: p.constraint_flags,
            general_level_idc: p.level_idc,
            chroma_format_idc: facts.chroma_format_idc,
            bit_depth_luma_minus8: facts.bit_depth_luma.saturating_sub(8),
            bit_depth_chroma_minus8: facts.bit_depth_chroma.saturating_sub(8),
            num_temporal_layers: facts.max_sub_layers,
            temporal_id_nested: facts.temporal_id_nesting,
            length_size_minus_one: 3,
            arrays: vec![
                array(NAL_VPS, vps),
                array(NAL_SPS, sps),
                array(NAL_PPS, pps),
            ],
            ..Default::default()
        };
        let mut record = Vec::new();
        hvcc.encode_body(&mut record)
            .map_err(|e| CodecError::Hevc(format!("hvcC record: {e}")))?;
        HevcConfig::parse(Bytes::from(record))
    }
}

struct SpsFacts {
    profile: HevcProfile,
    max_sub_layers: u8,
    temporal_id_nesting: bool,
    chroma_format_idc: u8,
    width: u32,
    height: u32,
    bit_depth_luma: u8,
    bit_depth_chroma: u8,
    frame_rate: Option<(u32, u32)>,
}

impl SpsFacts {
    /// H.265 §7.3.2.2.1: up to the bit depths, then on to the VUI's timing if it can
    /// (an SPS whose later fields do not parse still gives its size and profile).
    fn read(nal: &[u8]) -> Result<SpsFacts, CodecError> {
        let short = |_: OutOfBits| CodecError::Hevc("SPS ends early".into());
        if nal_type(nal) != Some(NAL_SPS) || nal.len() < 3 {
            return Err(CodecError::Hevc("not an SPS NAL unit".into()));
        }
        let rbsp = unescape_rbsp(&nal[2..]);
        let mut b = Bits::new(&rbsp);
        b.skip(4).map_err(short)?; // sps_video_parameter_set_id
        let max_sub_layers_minus1 = b.bits(3).map_err(short)? as u8;
        let temporal_id_nesting = b.bit().map_err(short)?;
        let profile = read_profile_tier_level(&mut b, max_sub_layers_minus1).map_err(short)?;
        b.ue().map_err(short)?; // sps_seq_parameter_set_id
        let chroma_format_idc = b.ue().map_err(short)?;
        if chroma_format_idc > 3 {
            return Err(CodecError::Hevc(format!(
                "chroma_format_idc {chroma_format_idc} is out of range"
            )));
        }
        if chroma_format_idc == 3 {
            b.skip(1).map_err(short)?; // separate_colour_plane_flag
        }
        let mut width = b.ue().map_err(short)?;
        let mut height = b.ue().map_err(short)?;
        if b.bit().map_err(short)? {
            let (sub_w, sub_h) = match chroma_format_idc {
                1 => (2, 2),
                2 => (2, 1),
                _ => (1, 1),
            };
            let (l, r, t, bo) = (
                b.ue().map_err(short)?,
                b.ue().map_err(short)?,
                b.ue().map_err(short)?,
                b.ue().map_err(short)?,
            );
            // Saturating: a conformance window of absurd size crops to nothing rather
            // than wrap (fuzz find).
            width = width.saturating_sub(l.saturating_add(r).saturating_mul(sub_w));
            height = height.saturating_sub(t.saturating_add(bo).saturating_mul(sub_h));
        }
        let bit_depth_luma = b.ue().map_err(short)?.min(8) as u8 + 8;
        let bit_depth_chroma = b.ue().map_err(short)?.min(8) as u8 + 8;
        let frame_rate = read_frame_rate(&mut b, max_sub_layers_minus1)
            .ok()
            .flatten();
        Ok(SpsFacts {
            profile,
            max_sub_layers: max_sub_layers_minus1 + 1,
            temporal_id_nesting,
            chroma_format_idc: chroma_format_idc as u8,
            width,
            height,
            bit_depth_luma,
            bit_depth_chroma,
            frame_rate,
        })
    }
}

/// The rest of an SPS after `bit_depth_chroma_minus8` (H.265 §7.3.2.2.1) up to the VUI's
/// `vui_timing_info` (§E.2.1): the frame rate, if stated.
fn read_frame_rate(
    b: &mut Bits<'_>,
    max_sub_layers_minus1: u8,
) -> Result<Option<(u32, u32)>, OutOfBits> {
    let log2_max_poc_lsb = b.ue()?.min(12) + 4;
    let ordering_for_all = b.bit()?;
    let layers = if ordering_for_all {
        u32::from(max_sub_layers_minus1) + 1
    } else {
        1
    };
    for _ in 0..layers {
        // max_dec_pic_buffering_minus1, max_num_reorder_pics, max_latency_increase_plus1
        b.ue()?;
        b.ue()?;
        b.ue()?;
    }
    for _ in 0..6 {
        // coding and transform block sizes, transform hierarchy depths
        b.ue()?;
    }
    if b.bit()? && b.bit()? {
        skip_scaling_list_data(b)?;
    }
    b.skip(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if b.bit()? {
        // pcm bit depths (4 + 4), block sizes, loop filter flag
        b.skip(8)?;
        b.ue()?;
        b.ue()?;
        b.skip(1)?;
    }
    let sets = b.ue()?;
    if sets > 64 {
        return Ok(None);
    }
    let mut delta_pocs: Vec<u32> = Vec::with_capacity(sets as usize);
    for index in 0..sets as usize {
        let count = skip_short_term_ref_pic_set(b, index, &delta_pocs)?;
        delta_pocs.push(count);
    }
    if b.bit()? {
        // long_term_ref_pics: lt_ref_pic_poc_lsb_sps and used_by_curr_pic_lt_sps_flag each
        let count = b.ue()?.min(32);
        for _ in 0..count {
            b.skip(log2_max_poc_lsb as usize + 1)?;
        }
    }
    b.skip(2)?; // sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    if !b.bit()? {
        return Ok(None); // no VUI
    }
    // vui_parameters(), §E.2.1
    if b.bit()? && b.bits(8)? == 255 {
        b.skip(32)?; // sar_width, sar_height
    }
    if b.bit()? {
        b.skip(1)?; // overscan_appropriate_flag
    }
    if b.bit()? {
        b.skip(4)?; // video_format, video_full_range_flag
        if b.bit()? {
            b.skip(24)?; // colour_primaries, transfer, matrix
        }
    }
    if b.bit()? {
        b.ue()?;
        b.ue()?;
    }
    b.skip(3)?; // neutral_chroma_indication, field_seq, frame_field_info_present
    if b.bit()? {
        for _ in 0..4 {
            b.ue()?; // default display window offsets
        }
    }
    if !b.bit()? {
        return Ok(None);
    }
    let num_units_in_tick = b.bits(32)?;
    let time_scale = b.bits(32)?;
    Ok((num_units_in_tick > 0 && time_scale > 0).then_some((time_scale, num_units_in_tick)))
}

/// `scaling_list_data()`, H.265 §7.3.4.
fn skip_scaling_list_data(b: &mut Bits<'_>) -> Result<(), OutOfBits> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !b.bit()? {
                b.ue()?; // scaling_list_pred_matrix_id_delta
                continue;
            }
            let coefficients = 64.min(1 << (4 + (size_id << 1)));
            if size_id > 1 {
                b.ue()?; // scaling_list_dc_coef_minus8 (se(v): the same length)
            }
            for _ in 0..coefficients {
                b.ue()?; // scaling_list_delta_coef (se(v))
            }
        }
    }
    Ok(())
}

/// `st_ref_pic_set(index)` in an SPS, H.265 §7.3.7: skipped, returning its
/// NumDeltaPocs, which a later set predicted from it needs.
fn skip_short_term_ref_pic_set(
    b: &mut Bits<'_>,
    index: usize,
    delta_pocs: &[u32],
) -> Result<u32, OutOfBits> {
    if index > 0 && b.bit()? {
        // Predicted from the previous set (delta_idx_minus1 is only in slice headers).
        b.skip(1)?; // delta_rps_sign
        b.ue()?; // abs_delta_rps_minus1
        let reference = delta_pocs.get(index - 1).copied().unwrap_or(0).min(32);
        let mut count = 0;
        for _ in 0..=reference {
            let used_by_current = b.bit()?;
            if used_by_current || b.bit()? {
                count += 1;
            }
        }
        return Ok(count);
    }
    let negative = b.ue()?.min(16);
    let positive = b.ue()?.min(16);
    for _ in 0..negative + positive {
        b.ue()?; // delta_poc_minus1
        b.skip(1)?; // used_by_curr_pic_flag
    }
    Ok(negative + positive)
}

/// H.265 §7.3.3 `profile_tier_level(1, max_sub_layers_minus1)`: the general part, the
/// sub-layer part skipped.
fn read_profile_tier_level(
    b: &mut Bits<'_>,
    max_sub_layers_minus1: u8,
) -> Result<HevcProfile, OutOfBits> {
    let profile_space = b.bits(2)? as u8;
    let tier_flag = b.bit()?;
    let profile_idc = b.bits(5)? as u8;
    let compatibility_flags = b.bits(32)?;
    let mut constraint_flags = [0u8; 6];
    for byte in &mut constraint_flags {
        *byte = b.bits(8)? as u8;
    }
    let level_idc = b.bits(8)? as u8;
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((b.bit()?, b.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        b.skip(2 * (8 - usize::from(max_sub_layers_minus1)))?;
    }
    for (profile_present, level_present) in present {
        if profile_present {
            b.skip(88)?;
        }
        if level_present {
            b.skip(8)?;
        }
    }
    Ok(HevcProfile {
        profile_space,
        tier_flag,
        profile_idc,
        compatibility_flags,
        constraint_flags,
        level_idc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_string_follows_annex_e() {
        // Main, level 3.1 (the common example), and the other rules on a made-up profile.
        let main = HevcProfile {
            profile_space: 0,
            tier_flag: false,
            profile_idc: 1,
            compatibility_flags: 0x6000_0000,
            constraint_flags: [0xb0, 0, 0, 0, 0, 0],
            level_idc: 93,
        };
        assert_eq!(main.codec_string("hvc1"), "hvc1.1.6.L93.B0");
        let main10 = HevcProfile {
            profile_space: 1,
            tier_flag: true,
            profile_idc: 2,
            compatibility_flags: 0x2000_0000,
            constraint_flags: [0x90, 0x08, 0, 0, 0, 0],
            level_idc: 120,
        };
        assert_eq!(main10.codec_string("hev1"), "hev1.A2.4.H120.90.8");
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(HevcConfig::parse(Bytes::from_static(&[1, 2, 3])).is_err());
        assert!(HevcConfig::from_parameter_sets(&[], &[], &[]).is_err());
        let not_sps = [Bytes::from_static(&[0x40, 0x01, 0x0c])];
        assert!(HevcConfig::from_parameter_sets(&not_sps, &not_sps, &not_sps).is_err());
    }
}
