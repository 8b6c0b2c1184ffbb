//! Opus (RFC 6716) as far as ingest needs it: what a stream is, and how long a packet
//! lasts (its TOC byte says so), on Opus's 48 kHz clock.

/// Opus's clock: packets are timed in 48 kHz samples whatever the coded bandwidth.
pub const OPUS_RATE: u32 = 48_000;

/// What an Opus stream is. Ingested for the transcoder, which makes AAC of it (HLS
/// players expect AAC); not packaged as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusConfig {
    /// Output channels (1 or 2 for what we take; more only as a count).
    pub channels: u8,
}

impl OpusConfig {
    /// The RFC 6381 codec string of Opus in MP4.
    pub fn codec_string(&self) -> String {
        "opus".to_owned()
    }
}

/// Samples (at 48 kHz) one Opus packet holds, from its TOC byte and, for code 3, its
/// frame count byte (RFC 6716 section 3.1); `None` for a packet too short to say or
/// longer than the 120 ms a packet may hold.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame sizes in 48 kHz samples: SILK 10/20/40/60 ms, hybrid 10/20 ms, CELT
    // 2.5/5/10/20 ms.
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let samples = frame * frames;
    (frames > 0 && samples <= 5760).then_some(samples)
}

/// Whether the packet is coded in stereo (the TOC's `s` bit).
pub fn packet_is_stereo(packet: &[u8]) -> bool {
    packet.first().is_some_and(|toc| toc & 0x04 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_toc() {
        // CELT 20 ms, one frame (what libopus sends by default): config 31, code 0.
        assert_eq!(packet_samples(&[31 << 3]), Some(960));
        // SILK 60 ms, two frames of equal size.
        assert_eq!(packet_samples(&[(3 << 3) | 1]), Some(5760));
        // Hybrid 10 ms, code 3 with 4 frames.
        assert_eq!(packet_samples(&[(12 << 3) | 3, 4]), Some(1920));
        // CELT 2.5 ms.
        assert_eq!(packet_samples(&[16 << 3]), Some(120));
        assert!(packet_is_stereo(&[(31 << 3) | 0x04]));
        assert!(!packet_is_stereo(&[31 << 3]));
    }

    #[test]
    fn impossible_packets_have_no_duration() {
        assert_eq!(packet_samples(&[]), None);
        // Code 3 without its frame count byte, with zero frames, or over 120 ms.
        assert_eq!(packet_samples(&[(31 << 3) | 3]), None);
        assert_eq!(packet_samples(&[(31 << 3) | 3, 0]), None);
        assert_eq!(packet_samples(&[(31 << 3) | 3, 7]), None);
    }
}
