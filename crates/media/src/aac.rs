//! AAC decoder configuration (ISO/IEC 14496-3 §1.6.2.1, `AudioSpecificConfig`).

use bytes::Bytes;

/// An AAC decoder configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// The raw `AudioSpecificConfig`, as carried in FLV and in `esds`.
    pub asc: Bytes,
    /// Audio object type: 2 = AAC-LC, 5 = SBR (HE-AAC), 29 = PS (HE-AACv2).
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AacConfig {
    /// `mp4a.40.N`, RFC 6381 §3.3.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// PCM samples per AAC frame at `sample_rate` (1024 for AAC-LC).
    pub fn samples_per_frame(&self) -> u32 {
        1024
    }
}
