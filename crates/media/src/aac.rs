//! AAC decoder configuration (ISO/IEC 14496-3 §1.6.2.1, `AudioSpecificConfig`) and ADTS.

use bytes::Bytes;

use crate::avc::CodecError;

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

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AacConfig {
    /// `mp4a.40.N`, RFC 6381 §3.3.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// PCM samples per AAC frame at `sample_rate` (1024 for AAC-LC).
    pub fn samples_per_frame(&self) -> u32 {
        1024
    }

    /// Reads an `AudioSpecificConfig`.
    pub fn parse(asc: Bytes) -> Result<AacConfig, CodecError> {
        let mut bits = Bits { data: &asc, pos: 0 };
        let short = || CodecError::AscTooShort(asc.len());
        let mut object_type = bits.read(5).ok_or_else(short)? as u8;
        if object_type == 31 {
            object_type = 32 + bits.read(6).ok_or_else(short)? as u8;
        }
        let index = bits.read(4).ok_or_else(short)? as u8;
        let sample_rate = if index == 15 {
            bits.read(24).ok_or_else(short)?
        } else {
            *SAMPLE_RATES
                .get(usize::from(index))
                .ok_or(CodecError::AacFrequencyIndex(index))?
        };
        let channels = bits.read(4).ok_or_else(short)? as u8;
        if !(1..=7).contains(&channels) {
            return Err(CodecError::AacChannels(channels));
        }
        Ok(AacConfig {
            asc,
            object_type,
            sample_rate,
            channels,
        })
    }

    /// Builds the 2-byte (or 5-byte, for a rate without an index) config.
    pub fn build(object_type: u8, sample_rate: u32, channels: u8) -> AacConfig {
        let mut w: u64 = u64::from(object_type & 0x1f);
        let mut nbits: u32 = 5;
        match SAMPLE_RATES.iter().position(|&r| r == sample_rate) {
            Some(i) => {
                w = (w << 4) | i as u64;
                nbits += 4;
            }
            None => {
                w = (w << 28) | (0xf << 24) | u64::from(sample_rate & 0xff_ffff);
                nbits += 28;
            }
        }
        w = (w << 4) | u64::from(channels & 0x0f);
        nbits += 4;
        let total = nbits.div_ceil(8) * 8;
        w <<= total - nbits;
        let bytes: Vec<u8> = (0..total / 8).rev().map(|i| (w >> (i * 8)) as u8).collect();
        AacConfig {
            asc: Bytes::from(bytes),
            object_type,
            sample_rate,
            channels,
        }
    }
}

/// An ADTS header (7 bytes, no CRC) for a raw AAC frame of `payload_len` bytes, so a
/// decoder that reads ADTS needs no `AudioSpecificConfig`. `None` where ADTS cannot say
/// it: object types beyond 4 (HE-AAC signals SBR only in the config), a sample rate
/// off the table, more than 7 channels, or a frame too long.
pub fn adts_header(config: &AacConfig, payload_len: usize) -> Option<[u8; 7]> {
    if !(1..=4).contains(&config.object_type) || !(1..=7).contains(&config.channels) {
        return None;
    }
    let index = SAMPLE_RATES.iter().position(|r| *r == config.sample_rate)? as u8;
    let len = payload_len.checked_add(7).filter(|l| *l < 1 << 13)?;
    let (profile, ch) = (config.object_type - 1, config.channels);
    Some([
        0xff,
        0xf1,
        (profile << 6) | (index << 2) | (ch >> 2),
        ((ch & 3) << 6) | ((len >> 11) & 3) as u8,
        ((len >> 3) & 0xff) as u8,
        (((len & 7) as u8) << 5) | 0x1f,
        0xfc,
    ])
}

/// Reads an ADTS header: the config it implies, the header length and the frame length.
pub fn parse_adts_header(data: &[u8]) -> Option<(AacConfig, usize, usize)> {
    let h = data.get(..7)?;
    if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
        return None;
    }
    let header_len = if h[1] & 1 == 0 { 9 } else { 7 };
    let object_type = (h[2] >> 6) + 1;
    let index = (h[2] >> 2) & 0x0f;
    let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
    let frame_len =
        (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let rate = *SAMPLE_RATES.get(usize::from(index))?;
    if frame_len < header_len {
        return None;
    }
    Some((
        AacConfig::build(object_type, rate, channels),
        header_len,
        frame_len,
    ))
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds() {
        let c = AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).expect("valid");
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 2));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(AacConfig::build(2, 48000, 2), c);
        let odd = AacConfig::build(2, 47999, 1);
        assert_eq!(
            AacConfig::parse(odd.asc.clone()).expect("explicit rate"),
            odd
        );
        assert_eq!(
            AacConfig::parse(Bytes::from_static(&[0x11])),
            Err(CodecError::AscTooShort(1))
        );
        assert_eq!(
            AacConfig::parse(Bytes::from_static(&[0x16, 0x90])),
            Err(CodecError::AacFrequencyIndex(13))
        );
    }

    #[test]
    fn reads_adts() {
        // AAC-LC, 44.1 kHz, stereo, 100-byte frame, no CRC.
        let h = [0xff, 0xf1, 0x50, 0x80, 0x0c, 0x9f, 0xfc];
        let (c, header, frame) = parse_adts_header(&h).expect("adts");
        assert_eq!(
            (c.object_type, c.sample_rate, c.channels, header, frame),
            (2, 44100, 2, 7, 100)
        );
        assert!(parse_adts_header(&[0xff, 0x00, 0, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn writes_adts_that_reads_back() {
        let h = [0xff, 0xf1, 0x50, 0x80, 0x0c, 0x9f, 0xfc];
        let (c, _, _) = parse_adts_header(&h).unwrap();
        assert_eq!(adts_header(&c, 93), Some(h));
        for (object_type, rate, channels, len) in [(2, 48000, 1, 0), (2, 8000, 6, 8000)] {
            let c = AacConfig::build(object_type, rate, channels);
            let h = adts_header(&c, len).unwrap();
            let (back, header, frame) = parse_adts_header(&h).unwrap();
            assert_eq!(
                (
                    back.object_type,
                    back.sample_rate,
                    back.channels,
                    header,
                    frame
                ),
                (object_type, rate, channels, 7, len + 7)
            );
        }
        assert_eq!(
            adts_header(&AacConfig::build(5, 48000, 2), 10),
            None,
            "HE-AAC"
        );
        assert_eq!(
            adts_header(&AacConfig::build(2, 48000, 2), 9000),
            None,
            "too long"
        );
    }
}
