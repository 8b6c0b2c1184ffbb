//! H.264 access units from avcC form (length-prefixed NAL units) to Annex B (start
//! codes), the form str0m's packetiser splits into RTP payloads.

use std::sync::Arc;

use media::AvcConfig;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// NAL unit types that carry the parameter sets.
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum H264Error {
    /// A length prefix points past the end of the frame.
    #[error(
        "H.264 frame is cut short: a NAL unit of {declared} bytes at offset {offset}, {left} left"
    )]
    Truncated {
        offset: usize,
        declared: usize,
        left: usize,
    },
    /// The avcC record declares a length prefix size H.264 does not allow.
    #[error("H.264 NAL unit length size {0} is not 1, 2 or 4")]
    LengthSize(u8),
}

/// One access unit in Annex B form. A keyframe gets the stream's SPS and PPS in front
/// (unless it carries its own), so that a viewer joining at it can decode it.
pub fn annex_b(config: &AvcConfig, data: &[u8], keyframe: bool) -> Result<Arc<[u8]>, H264Error> {
    let size = usize::from(config.nal_length_size);
    if !matches!(size, 1 | 2 | 4) {
        return Err(H264Error::LengthSize(config.nal_length_size));
    }
    let mut nals = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let Some(prefix) = data.get(offset..offset + size) else {
            return Err(H264Error::Truncated {
                offset,
                declared: size,
                left: data.len() - offset,
            });
        };
        let len = prefix
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let start = offset + size;
        let Some(nal) = data.get(start..start + len) else {
            return Err(H264Error::Truncated {
                offset,
                declared: len,
                left: data.len() - start,
            });
        };
        if !nal.is_empty() {
            nals.push(nal);
        }
        offset = start + len;
    }
    let has_parameter_sets = nals
        .iter()
        .any(|n| matches!(n[0] & 0x1f, NAL_SPS | NAL_PPS));
    let mut out = Vec::with_capacity(data.len() + 64);
    if keyframe && !has_parameter_sets {
        for ps in config.sps.iter().chain(config.pps.iter()) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(ps);
        }
    }
    for nal in nals {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn config() -> AvcConfig {
        AvcConfig {
            record: Bytes::new(),
            profile_idc: 66,
            constraint_flags: 0xe0,
            level_idc: 31,
            nal_length_size: 4,
            sps: vec![Bytes::from_static(&[0x67, 1, 2])],
            pps: vec![Bytes::from_static(&[0x68, 3])],
            width: 640,
            height: 360,
            frame_rate: None,
        }
    }

    #[test]
    fn keyframe_gets_parameter_sets_in_front() {
        let data = [0, 0, 0, 2, 0x65, 9, 0, 0, 0, 1, 0x06];
        let out = annex_b(&config(), &data, true).unwrap();
        assert_eq!(
            &*out,
            &[
                0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 0, 0, 0, 1, 0x06
            ]
        );
    }

    #[test]
    fn delta_frame_is_only_converted() {
        let data = [0, 0, 0, 2, 0x41, 7];
        let out = annex_b(&config(), &data, false).unwrap();
        assert_eq!(&*out, &[0, 0, 0, 1, 0x41, 7]);
    }

    #[test]
    fn keyframe_with_its_own_parameter_sets_is_left_alone() {
        let data = [0, 0, 0, 1, 0x67, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65];
        let out = annex_b(&config(), &data, true).unwrap();
        assert_eq!(
            &*out,
            &[0, 0, 0, 1, 0x67, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65]
        );
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let data = [0, 0, 0, 9, 0x41, 7];
        assert!(matches!(
            annex_b(&config(), &data, false),
            Err(H264Error::Truncated { declared: 9, .. })
        ));
        let mut bad = config();
        bad.nal_length_size = 3;
        assert_eq!(annex_b(&bad, &data, false), Err(H264Error::LengthSize(3)));
    }
}
