//! Transport streams that ffmpeg writes at test time: the one fixture of the demuxer's
//! tests and of the SRT end-to-end tests (`crates/rivulet/tests/srt.rs` includes this
//! file by path).
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// The length of a transport stream packet.
const PACKET_LEN: usize = 188;

/// ffmpeg's inputs: `seconds` of a 320x240 30 fps test pattern and a 48 kHz tone.
pub fn test_pattern_inputs(seconds: &str) -> [&str; 10] {
    [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        seconds,
    ]
}

/// `seconds` of the test pattern (encoded by the `video` options) and AAC at 64 kbit/s
/// as MPEG-TS, plus `extra` output options.
pub fn generate(seconds: u32, video: &[&str], extra: &[&str]) -> Vec<u8> {
    let duration = seconds.to_string();
    let mut args = test_pattern_inputs(&duration).to_vec();
    args.extend_from_slice(video);
    args.extend_from_slice(&["-c:a", "aac", "-b:a", "64k"]);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", "mpegts", "-"]);
    let stream = ffmpeg_output(&[&args]);
    assert_eq!(stream.len() % PACKET_LEN, 0);
    stream
}

/// `seconds` of the test pattern as AV1 (libsvtav1, 2 s GOP) and AAC, muxed as AOM's
/// "Carriage of AV1 in MPEG-2 TS" has it: stream type 0x06 with an `AV01` registration
/// descriptor, each temporal unit's OBUs in the start-code format in one PES packet.
/// Debian's ffmpeg 5.1 cannot write that (it puts AV1 in TS as unregistered private
/// data), so ffmpeg encodes and this muxes. Each access unit's transport packets come
/// with its decode time (90 kHz), for a caller that sends them in real time.
pub fn av1_transport_stream(seconds: u32) -> Vec<(u64, Vec<u8>)> {
    const VIDEO_PID: u16 = 0x100;
    const AUDIO_PID: u16 = 0x101;
    let duration = seconds.to_string();
    let inputs = test_pattern_inputs(&duration);
    let video = ffmpeg_output(&[
        &inputs[..4],
        &[
            "-t",
            &duration,
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-g",
            "60",
        ],
        &["-pix_fmt", "yuv420p", "-f", "obu", "-"],
    ]);
    let audio = ffmpeg_output(&[
        &inputs[4..8],
        &[
            "-t", &duration, "-c:a", "aac", "-b:a", "64k", "-f", "adts", "-",
        ],
    ]);
    // Temporal units: each starts at a temporal delimiter OBU.
    let mut units: Vec<Vec<u8>> = Vec::new();
    for obu in media::av1::obus(&video) {
        match units.last_mut() {
            Some(unit) if obu.obu_type != media::av1::OBU_TEMPORAL_DELIMITER => {
                unit.extend_from_slice(obu.bytes);
            }
            _ => units.push(obu.bytes.to_vec()),
        }
    }
    // (decode time, PID, key frame, PES payload), in decode order.
    let mut access_units: Vec<(u64, u16, bool, Vec<u8>)> = units
        .iter()
        .enumerate()
        .map(|(n, unit)| {
            let key = media::av1::is_key_frame(unit);
            (
                n as u64 * 3000,
                VIDEO_PID,
                key,
                media::av1::to_start_code_format(unit),
            )
        })
        .collect();
    let mut rest = &audio[..];
    let mut n = 0u64;
    while rest.len() >= 7 {
        let len = (usize::from(rest[3] & 0x03) << 11)
            | (usize::from(rest[4]) << 3)
            | usize::from(rest[5] >> 5);
        let frame = &rest[..len.clamp(7, rest.len())];
        access_units.push((n * 1024 * 90_000 / 48_000, AUDIO_PID, false, frame.to_vec()));
        rest = &rest[frame.len()..];
        n += 1;
    }
    access_units.sort_by_key(|(dts, pid, _, _)| (*dts, *pid));

    let mut mux = TsWriter::default();
    let streams = [(VIDEO_PID, 0x06, Some(*b"AV01")), (AUDIO_PID, 0x0f, None)];
    let mut out = Vec::new();
    for (i, (dts, pid, key, payload)) in access_units.into_iter().enumerate() {
        let mut bytes = Vec::new();
        if i == 0 || key {
            mux.program_tables(&streams, VIDEO_PID, &mut bytes);
        }
        let stream_id = if pid == VIDEO_PID { 0xbd } else { 0xc0 };
        let pcr = (pid == VIDEO_PID).then_some(dts);
        mux.pes(pid, stream_id, dts, pcr, key, &payload, &mut bytes);
        out.push((dts, bytes));
    }
    out
}

fn ffmpeg_output(arg_groups: &[&[&str]]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(arg_groups.iter().flat_map(|g| g.iter()))
        .output()
        .expect("ffmpeg runs (Debian's ffmpeg package)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Transport packets of one program: PAT, PMT and PES packets with their continuity
/// counters, a PCR and the random access indicator where asked.
#[derive(Default)]
struct TsWriter {
    counters: std::collections::HashMap<u16, u8>,
}

impl TsWriter {
    const PMT_PID: u16 = 0x1000;

    /// PAT and PMT: `streams` as (PID, stream type, registration descriptor).
    fn program_tables(
        &mut self,
        streams: &[(u16, u8, Option<[u8; 4]>)],
        pcr_pid: u16,
        out: &mut Vec<u8>,
    ) {
        let pat = [
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00,
            0x00,
            0x01,
            0xe0 | (Self::PMT_PID >> 8) as u8,
            Self::PMT_PID as u8,
        ];
        self.section(0, 0x00, &pat, out);
        let mut pmt = vec![
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00,
            0xe0 | (pcr_pid >> 8) as u8,
            pcr_pid as u8,
            0xf0,
            0x00,
        ];
        for (pid, stream_type, registration) in streams {
            let descriptors: Vec<u8> = registration
                .iter()
                .flat_map(|r| [0x05, 4, r[0], r[1], r[2], r[3]])
                .collect();
            pmt.extend_from_slice(&[*stream_type, 0xe0 | (pid >> 8) as u8, *pid as u8]);
            pmt.extend_from_slice(&[
                0xf0 | (descriptors.len() >> 8) as u8,
                descriptors.len() as u8,
            ]);
            pmt.extend_from_slice(&descriptors);
        }
        self.section(Self::PMT_PID, 0x02, &pmt, out);
    }

    /// A PSI section (`table_id`, then `body` up to the CRC) in one packet.
    fn section(&mut self, pid: u16, table_id: u8, body: &[u8], out: &mut Vec<u8>) {
        let length = body.len() + 4;
        let mut section = vec![0x00, table_id, 0xb0 | (length >> 8) as u8, length as u8];
        section.extend_from_slice(body);
        let crc = ts::crc32_mpeg2(&section[1..]);
        section.extend_from_slice(&crc.to_be_bytes());
        section.resize(184, 0xff);
        self.packet(pid, true, 0, None, &section, out);
    }

    /// One PES packet (PTS only: no reordering here) in as many packets as it takes.
    #[allow(clippy::too_many_arguments)]
    fn pes(
        &mut self,
        pid: u16,
        stream_id: u8,
        pts: u64,
        pcr: Option<u64>,
        random_access: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let pes_length = if stream_id == 0xc0 {
            payload.len() + 8
        } else {
            0
        };
        let mut pes = vec![
            0,
            0,
            1,
            stream_id,
            (pes_length >> 8) as u8,
            pes_length as u8,
        ];
        pes.extend_from_slice(&[0x84, 0x80, 5]);
        pes.extend_from_slice(&[
            0x21 | ((pts >> 29) & 0x0e) as u8,
            (pts >> 22) as u8,
            0x01 | ((pts >> 14) & 0xfe) as u8,
            (pts >> 7) as u8,
            0x01 | ((pts << 1) & 0xfe) as u8,
        ]);
        pes.extend_from_slice(payload);
        let mut rest = &pes[..];
        let mut first = true;
        while !rest.is_empty() {
            let flags = if first && random_access { 0x40 } else { 0 };
            let taken = self.packet(pid, first, flags, pcr.filter(|_| first), rest, out);
            rest = &rest[taken..];
            first = false;
        }
    }

    /// One transport packet with as much of `payload` as fits; returns how much.
    fn packet(
        &mut self,
        pid: u16,
        unit_start: bool,
        flags: u8,
        pcr: Option<u64>,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> usize {
        let cc = self.counters.entry(pid).or_insert(0);
        let mut adaptation = Vec::new();
        if flags != 0 || pcr.is_some() {
            adaptation.push(flags | if pcr.is_some() { 0x10 } else { 0 });
            if let Some(base) = pcr {
                adaptation.extend_from_slice(&[
                    (base >> 25) as u8,
                    (base >> 17) as u8,
                    (base >> 9) as u8,
                    (base >> 1) as u8,
                    ((base & 1) << 7) as u8 | 0x7e,
                    0,
                ]);
            }
        }
        // With an adaptation field: its length byte, then its body and stuffing.
        let room = if adaptation.is_empty() {
            184
        } else {
            183 - adaptation.len()
        };
        let taken = payload.len().min(room);
        if taken < 184 && adaptation.is_empty() {
            // Stuffing needs an adaptation field; one of length 0 is a single byte.
            if taken < 183 {
                adaptation.push(0);
            }
        }
        let mut packet = vec![
            0x47,
            (pid >> 8) as u8 | if unit_start { 0x40 } else { 0 },
            pid as u8,
        ];
        let taken = if taken < 184 {
            let af_total = 184 - taken;
            adaptation.resize(af_total - 1, 0xff);
            packet.push(0x30 | *cc);
            packet.push((af_total - 1) as u8);
            packet.extend_from_slice(&adaptation);
            taken
        } else {
            packet.push(0x10 | *cc);
            taken
        };
        packet.extend_from_slice(&payload[..taken]);
        assert_eq!(packet.len(), PACKET_LEN);
        out.extend_from_slice(&packet);
        *cc = (*cc + 1) & 0x0f;
        taken
    }
}
