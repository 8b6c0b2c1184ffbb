//! Sans-IO MPEG-TS demuxing for Rivulet's SRT ingest (and anything else that carries
//! a transport stream): bytes in, [`media::Tracks`] and [`media::Frame`]s out.
//!
//! Hand-written rather than built on `mpeg2ts-reader` (docs/srt.md says why): the
//! transport layer is small (188-byte packets, PAT/PMT sections, PES headers), and
//! what matters here is around it — one 33-bit timeline for the whole program,
//! continuity gaps counted and survived, a PMT change as a new track set, H.264 and
//! HEVC and AV1 access units and ADTS frames turned into the pipeline's own frames.
//!
//! ```text
//! push(bytes) → 188-byte packets → PAT → PMT → PES per PID
//!   → H.264 (0x1B): Annex B → AVCC frames, avcC from SPS/PPS
//!   → HEVC (0x24): Annex B → length-prefixed frames, hvcC from VPS/SPS/PPS
//!   → AV1 (0x06, `AV01`): start-code OBUs → low-overhead samples, av1C from the
//!     sequence header
//!   → AAC (0x0F): ADTS → raw frames on the sample clock
//!   → other streams: named (UnsupportedStream), PES payloads passed on
//! poll_event() → Program, Tracks, Frame, UnsupportedStream, ElementaryStream,
//!                ContinuityGap, Malformed
//! ```

mod clock;
mod demux;
mod packet;

pub use clock::{Unwrapper, WRAP};
pub use demux::{DemuxEvent, DemuxStats, Demuxer, ElementaryData, ProgramInfo, stream_name};
pub use packet::{NULL_PID, PACKET_LEN, PAT_PID, SYNC_BYTE, StreamEntry, crc32_mpeg2};
