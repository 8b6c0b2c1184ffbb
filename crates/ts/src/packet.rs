//! The transport layer: 188-byte packets, PSI sections (PAT, PMT) and PES headers.

/// Bytes in one transport packet.
pub const PACKET_LEN: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// The PID of the program association table.
pub const PAT_PID: u16 = 0;
/// The PID of null (stuffing) packets.
pub const NULL_PID: u16 = 0x1fff;

/// The header of one transport packet and where its payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PacketHeader {
    pub(crate) transport_error: bool,
    pub(crate) payload_unit_start: bool,
    pub(crate) pid: u16,
    pub(crate) continuity_counter: u8,
    pub(crate) has_payload: bool,
    /// The adaptation field's discontinuity indicator: the counter may restart.
    pub(crate) discontinuity: bool,
    /// Offset of the payload in the packet (188 when there is none).
    pub(crate) payload_offset: usize,
}

/// Reads the header of a 188-byte packet; `None` if the adaptation field overruns it.
pub(crate) fn parse_header(p: &[u8; PACKET_LEN]) -> Option<PacketHeader> {
    let transport_error = p[1] & 0x80 != 0;
    let payload_unit_start = p[1] & 0x40 != 0;
    let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let control = (p[3] >> 4) & 0x3;
    let continuity_counter = p[3] & 0x0f;
    let has_adaptation = control & 0x2 != 0;
    let has_payload = control & 0x1 != 0;
    let mut payload_offset = 4;
    let mut discontinuity = false;
    if has_adaptation {
        let len = usize::from(p[4]);
        if 5 + len > PACKET_LEN {
            return None;
        }
        if len > 0 {
            discontinuity = p[5] & 0x80 != 0;
        }
        payload_offset = 5 + len;
    }
    Some(PacketHeader {
        transport_error,
        payload_unit_start,
        pid,
        continuity_counter,
        has_payload: has_payload && payload_offset < PACKET_LEN,
        discontinuity,
        payload_offset: if has_payload {
            payload_offset
        } else {
            PACKET_LEN
        },
    })
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, not reflected), as PSI sections carry it.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Collects one PSI section that may span several packets.
#[derive(Debug, Default)]
pub(crate) struct SectionBuffer {
    data: Vec<u8>,
    active: bool,
}

/// The longest PSI section (ISO/IEC 13818-1 §2.4.4.11: section_length ≤ 1021).
const MAX_SECTION: usize = 1024;

impl SectionBuffer {
    /// Feeds one packet's payload; returns a whole section once complete (its CRC
    /// checked), `Err` with a reason for a corrupt one.
    pub(crate) fn push(
        &mut self,
        payload: &[u8],
        unit_start: bool,
    ) -> Result<Option<Vec<u8>>, &'static str> {
        if unit_start {
            // pointer_field: the rest of the previous section comes first.
            let Some((&pointer, rest)) = payload.split_first() else {
                return Err("empty PSI payload");
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                return Err("PSI pointer field beyond the packet");
            }
            if self.active {
                self.data.extend_from_slice(&rest[..pointer]);
                if let Some(done) = self.take_complete()? {
                    // One section per table update is all we need; what follows the
                    // finished one starts a new section.
                    self.data.clear();
                    self.data.extend_from_slice(&rest[pointer..]);
                    self.active = true;
                    return Ok(Some(done));
                }
            }
            self.data.clear();
            self.data.extend_from_slice(&rest[pointer..]);
            self.active = true;
        } else if self.active {
            self.data.extend_from_slice(payload);
        } else {
            return Ok(None);
        }
        self.take_complete()
    }

    fn take_complete(&mut self) -> Result<Option<Vec<u8>>, &'static str> {
        if self.data.len() < 3 {
            return Ok(None);
        }
        if self.data[0] == 0xff {
            // Stuffing after the last section.
            self.data.clear();
            self.active = false;
            return Ok(None);
        }
        let len = 3 + ((usize::from(self.data[1] & 0x0f) << 8) | usize::from(self.data[2]));
        if !(3 + 5 + 4..=MAX_SECTION).contains(&len) {
            self.data.clear();
            self.active = false;
            return Err("PSI section length out of range");
        }
        if self.data.len() < len {
            return Ok(None);
        }
        let section: Vec<u8> = self.data[..len].to_vec();
        self.data.clear();
        self.active = false;
        if crc32_mpeg2(&section) != 0 {
            return Err("PSI section CRC mismatch");
        }
        Ok(Some(section))
    }

    pub(crate) fn reset(&mut self) {
        self.data.clear();
        self.active = false;
    }
}

/// The first program of a PAT: (program_number, PMT PID).
pub(crate) fn parse_pat(section: &[u8]) -> Result<Option<(u16, u16)>, &'static str> {
    if section.first() != Some(&0x00) {
        return Err("PAT with a wrong table id");
    }
    // Header (8 bytes) and CRC (4 bytes) around 4-byte entries.
    let entries = section
        .get(8..section.len().saturating_sub(4))
        .ok_or("PAT too short")?;
    for entry in entries.chunks_exact(4) {
        let program = u16::from_be_bytes([entry[0], entry[1]]);
        let pid = (u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]);
        // Program 0 names the network information table, not a program.
        if program != 0 {
            return Ok(Some((program, pid)));
        }
    }
    Ok(None)
}

/// One elementary stream a PMT declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub pid: u16,
    pub stream_type: u8,
    /// The format identifier of a registration descriptor (tag 5), e.g. `Opus`,
    /// `AV01`, `HEVC`, which private streams (type 0x06) need to be named.
    pub registration: Option<[u8; 4]>,
    /// Whether an AC-3 (0x6a) or E-AC-3 (0x7a) descriptor marks a private stream.
    pub ac3_descriptor: Option<u8>,
}

/// A parsed PMT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pmt {
    pub(crate) program_number: u16,
    pub(crate) version: u8,
    pub(crate) streams: Vec<StreamEntry>,
}

pub(crate) fn parse_pmt(section: &[u8]) -> Result<Pmt, &'static str> {
    if section.first() != Some(&0x02) {
        return Err("PMT with a wrong table id");
    }
    if section.len() < 12 + 4 {
        return Err("PMT too short");
    }
    let program_number = u16::from_be_bytes([section[3], section[4]]);
    let version = (section[5] >> 1) & 0x1f;
    let program_info_len = (usize::from(section[10] & 0x0f) << 8) | usize::from(section[11]);
    let end = section.len() - 4;
    let mut i = 12usize
        .checked_add(program_info_len)
        .filter(|i| *i <= end)
        .ok_or("PMT program info beyond the section")?;
    let mut streams = Vec::new();
    while i + 5 <= end {
        let stream_type = section[i];
        let pid = (u16::from(section[i + 1] & 0x1f) << 8) | u16::from(section[i + 2]);
        let info_len = (usize::from(section[i + 3] & 0x0f) << 8) | usize::from(section[i + 4]);
        let descriptors = section
            .get(i + 5..i + 5 + info_len)
            .filter(|_| i + 5 + info_len <= end)
            .ok_or("PMT stream descriptors beyond the section")?;
        let mut registration = None;
        let mut ac3_descriptor = None;
        let mut d = descriptors;
        while d.len() >= 2 {
            let (tag, len) = (d[0], usize::from(d[1]));
            let Some(body) = d.get(2..2 + len) else {
                break;
            };
            match tag {
                0x05 if len >= 4 => registration = Some([body[0], body[1], body[2], body[3]]),
                0x6a | 0x7a => ac3_descriptor = Some(tag),
                _ => {}
            }
            d = &d[2 + len..];
        }
        streams.push(StreamEntry {
            pid,
            stream_type,
            registration,
            ac3_descriptor,
        });
        i += 5 + info_len;
    }
    Ok(Pmt {
        program_number,
        version,
        streams,
    })
}

/// What a PES header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PesHeader {
    /// 33-bit presentation time, if present.
    pub(crate) pts: Option<u64>,
    /// 33-bit decode time, if present (else it equals the PTS).
    pub(crate) dts: Option<u64>,
    /// Bytes of the PES packet after its 6-byte start, 0 for "unbounded" (video).
    pub(crate) packet_length: usize,
    /// Where the elementary stream data starts, from the start of the PES packet.
    pub(crate) payload_offset: usize,
}

/// Reads a PES header; `Ok(None)` if more bytes are needed.
pub(crate) fn parse_pes_header(data: &[u8]) -> Result<Option<PesHeader>, &'static str> {
    if data.len() < 6 {
        return Ok(None);
    }
    if data[..3] != [0, 0, 1] {
        return Err("PES packet without a start code");
    }
    let stream_id = data[3];
    let packet_length = usize::from(u16::from_be_bytes([data[4], data[5]]));
    // Stream ids without the optional header (padding, private_stream_2, ECM, …).
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xff | 0xf2 | 0xf8
    ) {
        return Ok(Some(PesHeader {
            pts: None,
            dts: None,
            packet_length,
            payload_offset: 6,
        }));
    }
    if data.len() < 9 {
        return Ok(None);
    }
    let flags = data[7] >> 6;
    let header_len = usize::from(data[8]);
    let payload_offset = 9 + header_len;
    if data.len() < payload_offset {
        return Ok(None);
    }
    let read_ts = |at: usize| -> Result<u64, &'static str> {
        let b = data
            .get(at..at + 5)
            .ok_or("PES timestamp beyond the header")?;
        Ok((u64::from(b[0] & 0x0e) << 29)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] & 0xfe) << 14)
            | (u64::from(b[3]) << 7)
            | (u64::from(b[4]) >> 1))
    };
    let (pts, dts) = match flags {
        0b10 if header_len >= 5 => (Some(read_ts(9)?), None),
        0b11 if header_len >= 10 => (Some(read_ts(9)?), Some(read_ts(14)?)),
        0b00 => (None, None),
        _ => return Err("PES header flags and length disagree"),
    };
    Ok(Some(PesHeader {
        pts,
        dts,
        packet_length,
        payload_offset,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_a_known_pat_is_zero() {
        // The PAT ffmpeg writes: program 1 on PMT PID 0x1000.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1,
            0x04, 0xb2,
        ];
        assert_eq!(crc32_mpeg2(&pat), 0);
        assert_eq!(parse_pat(&pat), Ok(Some((1, 0x1000))));
    }

    #[test]
    fn reads_pts_and_dts() {
        // PTS 0x1_0000_0001 (33 bits), DTS 90000.
        let enc = |marker: u8, v: u64| {
            [
                (marker << 4) | (((v >> 30) as u8 & 0x07) << 1) | 1,
                (v >> 22) as u8,
                (((v >> 15) as u8) << 1) | 1,
                (v >> 7) as u8,
                ((v as u8) << 1) | 1,
            ]
        };
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
        pes.extend_from_slice(&enc(3, 0x1_0000_0001));
        pes.extend_from_slice(&enc(1, 90_000));
        pes.extend_from_slice(&[0, 0, 0, 1, 9]);
        let h = parse_pes_header(&pes).expect("valid").expect("complete");
        assert_eq!(h.pts, Some(0x1_0000_0001));
        assert_eq!(h.dts, Some(90_000));
        assert_eq!(h.payload_offset, 19);
    }
}
