//! MP3 (MPEG-1/2/2.5 Layer III) frame headers: enough to describe an MP3 track that
//! arrives over RTMP, which the transcoder turns into AAC (CMAF carries no MP3 here).

/// What an MP3 stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mp3Config {
    pub sample_rate: u32,
    pub channels: u8,
    /// 1152 for MPEG-1, 576 for MPEG-2 and 2.5.
    pub samples_per_frame: u32,
}

impl Mp3Config {
    /// The RFC 6381 codec string (MP3 in MP4 is object type 0x6B).
    pub fn codec_string(&self) -> String {
        "mp4a.6B".to_owned()
    }
}

/// Reads the 4-byte header at the start of an MP3 frame.
pub fn parse_header(data: &[u8]) -> Option<Mp3Config> {
    let h = data.get(..4)?;
    // Frame sync: 11 set bits.
    if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version = (h[1] >> 3) & 0x3; // 0: 2.5, 2: 2, 3: 1
    let layer = (h[1] >> 1) & 0x3; // 1: Layer III
    if version == 1 || layer != 1 {
        return None;
    }
    let rate_index = usize::from((h[2] >> 2) & 0x3);
    let base = [44_100u32, 48_000, 32_000].get(rate_index)?;
    let sample_rate = match version {
        3 => *base,
        2 => base / 2,
        _ => base / 4,
    };
    let channels = if h[3] >> 6 == 3 { 1 } else { 2 };
    Some(Mp3Config {
        sample_rate,
        channels,
        samples_per_frame: if version == 3 { 1152 } else { 576 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_layer_three_headers() {
        // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, joint stereo.
        assert_eq!(
            parse_header(&[0xff, 0xfb, 0x90, 0x64]),
            Some(Mp3Config {
                sample_rate: 44_100,
                channels: 2,
                samples_per_frame: 1152
            })
        );
        // MPEG-2 Layer III, 24 kHz, mono.
        assert_eq!(
            parse_header(&[0xff, 0xf3, 0x84, 0xc4]),
            Some(Mp3Config {
                sample_rate: 24_000,
                channels: 1,
                samples_per_frame: 576
            })
        );
        assert_eq!(parse_header(&[0xff, 0xfd, 0x90, 0x64]), None, "Layer II");
        assert_eq!(parse_header(&[0x00, 0xfb, 0x90, 0x64]), None, "no sync");
        assert_eq!(parse_header(&[0xff, 0xfb]), None, "short");
    }
}
