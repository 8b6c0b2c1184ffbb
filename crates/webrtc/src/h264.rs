//! H.264 access units from avcC form (length-prefixed NAL units) to RTP payloads
//! (RFC 6184, packetization mode 1), made once per stream: every viewer's session
//! sends the same payloads by reference.

use std::sync::Arc;

use media::AvcConfig;

/// NAL unit types that carry the parameter sets, and the access unit delimiter (no
/// use over RTP, where the marker bit ends an access unit).
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
/// RFC 6184 payload structures: aggregation (STAP-A) and fragmentation (FU-A) units.
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// The most payload bytes an RTP packet carries: str0m's datagram target (1150
/// bytes) less the SRTP tag, aligned down to the SRTP block, as its own packetiser
/// makes them. The RTP header and its extensions come on top.
const MAX_RTP_PAYLOAD: usize = 1120;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum H264Error {
    /// A length prefix points past the end of the frame.
    #[error(
        "H.264 frame is cut short: its {left} bytes from offset {offset} are not a whole NAL unit"
    )]
    Truncated { offset: usize, left: usize },
    /// The avcC record declares a length prefix size H.264 does not allow.
    #[error("H.264 NAL unit length size {0} is not 1, 2 or 4")]
    LengthSize(u8),
}

/// The RTP payloads of one access unit, in order; the last one carries the marker
/// bit. A keyframe gets the stream's SPS and PPS in front (unless it carries its own),
/// so that a viewer joining at it can decode it. NAL units that fit together go in
/// one STAP-A packet (the parameter sets, small slices); a NAL unit larger than a
/// packet is cut into FU-A fragments.
pub fn rtp_payloads(
    config: &AvcConfig,
    data: &[u8],
    keyframe: bool,
) -> Result<Vec<Arc<[u8]>>, H264Error> {
    let size = usize::from(config.nal_length_size);
    if !matches!(size, 1 | 2 | 4) {
        return Err(H264Error::LengthSize(config.nal_length_size));
    }
    let mut nals: Vec<&[u8]> = Vec::new();
    let mut offset = 0;
    for nal in media::avc::avcc_nalus(data, config.nal_length_size) {
        offset += size + nal.len();
        if nal.first().is_some_and(|h| h & 0x1f != NAL_AUD) {
            nals.push(nal);
        }
    }
    // The NAL units stop at the first length that points past the end.
    if offset != data.len() {
        return Err(H264Error::Truncated {
            offset,
            left: data.len() - offset,
        });
    }
    let has_parameter_sets = nals
        .iter()
        .any(|n| matches!(n[0] & 0x1f, NAL_SPS | NAL_PPS));
    let parameter_sets = config.sps.iter().chain(config.pps.iter());
    let in_front: Vec<&[u8]> = if keyframe && !has_parameter_sets {
        parameter_sets
            .filter(|p| !p.is_empty())
            .map(|p| &p[..])
            .collect()
    } else {
        Vec::new()
    };
    let mut packets = Packetiser::default();
    for nal in in_front.into_iter().chain(nals) {
        packets.push(nal);
    }
    Ok(packets.finish())
}

/// Puts NAL units into payloads: small ones gathered for a STAP-A, large ones cut.
#[derive(Default)]
struct Packetiser<'a> {
    payloads: Vec<Arc<[u8]>>,
    /// NAL units waiting to go out together, and the size of the STAP-A they make.
    gathered: Vec<&'a [u8]>,
    gathered_size: usize,
    /// Where a STAP-A or FU-A payload is put together before its one shared copy.
    scratch: Vec<u8>,
}

impl<'a> Packetiser<'a> {
    fn push(&mut self, nal: &'a [u8]) {
        // In a STAP-A (one header byte) each unit follows its 16-bit size.
        let aggregated = 2 + nal.len();
        if 1 + aggregated > MAX_RTP_PAYLOAD {
            self.flush();
            self.fragment(nal);
            return;
        }
        if 1 + self.gathered_size + aggregated > MAX_RTP_PAYLOAD {
            self.flush();
        }
        self.gathered.push(nal);
        self.gathered_size += aggregated;
    }

    /// Sends the gathered units: one alone as itself, more as a STAP-A.
    fn flush(&mut self) {
        match self.gathered.as_slice() {
            [] => {}
            [one] => self.payloads.push(Arc::from(*one)),
            many => {
                // F is set if any unit's is; NRI is the most important unit's.
                let forbidden = many.iter().fold(0, |f, n| f | (n[0] & 0x80));
                let nri = many.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
                self.scratch.clear();
                self.scratch.push(forbidden | nri | STAP_A);
                for nal in many {
                    // Each unit is under MAX_RTP_PAYLOAD bytes: its size fits 16 bits.
                    let size = u16::try_from(nal.len()).unwrap_or(u16::MAX);
                    self.scratch.extend_from_slice(&size.to_be_bytes());
                    self.scratch.extend_from_slice(nal);
                }
                self.payloads.push(Arc::from(&self.scratch[..]));
            }
        }
        self.gathered.clear();
        self.gathered_size = 0;
    }

    /// FU-A fragments of a unit too large for one packet: its header byte becomes the
    /// FU indicator (F, NRI) and the FU header (type, start and end bits) of each.
    fn fragment(&mut self, nal: &[u8]) {
        let (header, body) = (nal[0], &nal[1..]);
        let chunks = body.chunks(MAX_RTP_PAYLOAD - 2);
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.enumerate() {
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i == last { 0x40 } else { 0 };
            self.scratch.clear();
            self.scratch.push((header & 0xe0) | FU_A);
            self.scratch.push(start | end | (header & 0x1f));
            self.scratch.extend_from_slice(chunk);
            self.payloads.push(Arc::from(&self.scratch[..]));
        }
    }

    fn finish(mut self) -> Vec<Arc<[u8]>> {
        self.flush();
        self.payloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const SPS: &[u8] = &[0x67, 1, 2];
    const PPS: &[u8] = &[0x68, 3];

    fn config() -> AvcConfig {
        AvcConfig {
            record: Bytes::new(),
            profile_idc: 66,
            constraint_flags: 0xe0,
            level_idc: 31,
            nal_length_size: 4,
            sps: vec![Bytes::from_static(SPS)],
            pps: vec![Bytes::from_static(PPS)],
            width: 640,
            height: 360,
            frame_rate: None,
        }
    }

    /// An access unit in avcC form with 4-byte lengths.
    fn frame(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// The receiving side of RFC 6184 (as a browser's depacketiser): the NAL units
    /// back, checking each payload's structure on the way.
    fn depacketise(payloads: &[Arc<[u8]>]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut fragmented: Option<Vec<u8>> = None;
        for p in payloads {
            assert!(p.len() <= MAX_RTP_PAYLOAD, "payload of {} bytes", p.len());
            match p[0] & 0x1f {
                STAP_A => {
                    assert!(fragmented.is_none());
                    let mut rest = &p[1..];
                    let mut units = 0;
                    while !rest.is_empty() {
                        let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                        nals.push(rest[2..2 + size].to_vec());
                        rest = &rest[2 + size..];
                        units += 1;
                    }
                    assert!(units >= 2, "a STAP-A of one unit");
                }
                FU_A => {
                    let (start, end) = (p[1] & 0x80 != 0, p[1] & 0x40 != 0);
                    assert_eq!(start, fragmented.is_none(), "start bit on the first only");
                    let nal = fragmented.get_or_insert_with(|| vec![(p[0] & 0xe0) | (p[1] & 0x1f)]);
                    nal.extend_from_slice(&p[2..]);
                    if end {
                        nals.extend(fragmented.take());
                    }
                }
                _ => {
                    assert!(fragmented.is_none());
                    nals.push(p.to_vec());
                }
            }
        }
        assert!(fragmented.is_none(), "a fragmented unit without its end");
        nals
    }

    /// A NAL unit of `len` bytes with header byte `header`, its body counting up.
    fn nal(header: u8, len: usize) -> Vec<u8> {
        std::iter::once(header)
            .chain((1..len).map(|i| (i % 251) as u8))
            .collect()
    }

    #[test]
    fn a_keyframe_starts_with_the_parameter_sets_in_one_packet() {
        let idr = nal(0x65, 3000);
        let payloads = rtp_payloads(&config(), &frame(&[&idr]), true).unwrap();
        // SPS and PPS in a STAP-A whose NRI is theirs (3), then the IDR in fragments.
        assert_eq!(&payloads[0][..], &[0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 3]);
        assert_eq!(payloads.len(), 1 + 3000_usize.div_ceil(MAX_RTP_PAYLOAD - 2));
        assert_eq!(
            depacketise(&payloads),
            vec![SPS.to_vec(), PPS.to_vec(), idr]
        );
    }

    #[test]
    fn a_delta_frame_is_only_packetised_and_its_delimiter_dropped() {
        let slice = nal(0x41, 500);
        let payloads = rtp_payloads(&config(), &frame(&[&[0x09, 0xf0], &slice]), false).unwrap();
        assert_eq!(payloads.len(), 1, "one single-unit packet");
        assert_eq!(&payloads[0][..], &slice[..]);
    }

    #[test]
    fn a_keyframe_with_its_own_parameter_sets_gets_no_second_copy() {
        let idr = nal(0x65, 200);
        let own_sps = [0x67, 9, 9];
        let payloads = rtp_payloads(&config(), &frame(&[&own_sps, PPS, &idr]), true).unwrap();
        assert_eq!(payloads.len(), 1, "all three fit one STAP-A");
        assert_eq!(
            depacketise(&payloads),
            vec![own_sps.to_vec(), PPS.to_vec(), idr]
        );
    }

    #[test]
    fn every_size_of_unit_around_the_packet_size_comes_back_whole() {
        // Units either side of each boundary (a single packet, a STAP-A's room, a
        // fragment's), mixed with small ones, in every order the loop makes.
        let sizes = [
            1, 2, 100, 1114, 1115, 1116, 1117, 1118, 1119, 1120, 1121, 1122, 2236, 2237, 2238,
            5000, 40_000,
        ];
        for (i, &a) in sizes.iter().enumerate() {
            for &b in &sizes[i..] {
                let units = [nal(0x06, 7), nal(0x41, a), nal(0x01, b), nal(0x41, 3)];
                let refs: Vec<&[u8]> = units.iter().map(|u| &u[..]).collect();
                let payloads = rtp_payloads(&config(), &frame(&refs), false).unwrap();
                assert_eq!(
                    depacketise(&payloads),
                    units.to_vec(),
                    "units of {a} and {b} bytes"
                );
            }
        }
    }

    #[test]
    fn a_fragmented_unit_keeps_its_importance_and_type() {
        let idr = nal(0x65, 2500);
        let payloads = rtp_payloads(&config(), &frame(&[&idr]), false).unwrap();
        assert_eq!(payloads.len(), 3);
        assert_eq!(payloads.iter().map(|p| p[0]).collect::<Vec<_>>(), [0x7c; 3]);
        assert_eq!(
            payloads.iter().map(|p| p[1]).collect::<Vec<_>>(),
            [0x85, 0x05, 0x45],
            "start bit, none, end bit; type 5"
        );
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let data = [0, 0, 0, 9, 0x41, 7];
        assert!(matches!(
            rtp_payloads(&config(), &data, false),
            Err(H264Error::Truncated { offset: 0, left: 6 })
        ));
        let mut bad = config();
        bad.nal_length_size = 3;
        assert_eq!(
            rtp_payloads(&bad, &data, false),
            Err(H264Error::LengthSize(3))
        );
    }
}
