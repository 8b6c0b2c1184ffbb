//! Helpers shared by the fuzz targets.

use std::num::NonZeroU32;

use bytes::Bytes;
use media::{AacConfig, AvcConfig, CodecConfig, Track, TrackKind, Tracks, VIDEO_TIMESCALE};

/// Splits `data` into pieces: the first byte seeds the piece lengths (0: one piece), so
/// the same stream is fed at arbitrary split points (the rest of the input is the stream).
pub fn split(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    if seed == 0 {
        return (vec![rest], rest);
    }
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < rest.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        // Mostly short pieces (across headers), sometimes long ones.
        let len = if state & 0x300 == 0 {
            state % 4096
        } else {
            state % 64
        } as usize
            + 1;
        let end = (pos + len).min(rest.len());
        pieces.push(&rest[pos..end]);
        pos = end;
    }
    (pieces, rest)
}

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// An H.264 track (160x90 High) and/or an AAC-LC track at `rate` Hz.
pub fn tracks(video: bool, audio: Option<u32>) -> Tracks {
    let avc =
        AvcConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)])
            .expect("the test SPS parses");
    Tracks {
        video: video.then(|| Track {
            kind: TrackKind::Video,
            timescale: VIDEO_TIMESCALE,
            codec: CodecConfig::Avc(avc),
        }),
        audio: audio.map(|rate| Track {
            kind: TrackKind::Audio,
            timescale: NonZeroU32::new(rate).expect("non-zero rate"),
            codec: CodecConfig::Aac(AacConfig::build(2, rate, 2)),
        }),
    }
}

/// Whether `FUZZ_DEBUG` is set: targets then print their decoded input (to read a crash).
pub fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FUZZ_DEBUG").is_some())
}
