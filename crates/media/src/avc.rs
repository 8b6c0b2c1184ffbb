//! H.264 decoder configuration (ISO/IEC 14496-15 §5.3.3, `AVCDecoderConfigurationRecord`).

use bytes::Bytes;

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
}
