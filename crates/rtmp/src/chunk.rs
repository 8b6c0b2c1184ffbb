//! RTMP chunk streams (RTMP spec §5.3): splitting messages into chunks and joining
//! them back, with per-chunk-stream header compression.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

/// One RTMP message, reassembled from its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it came on (or goes out on).
    pub chunk_stream_id: u32,
    /// 32-bit milliseconds; wraps.
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// Why chunk bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("message of {len} bytes on chunk stream {csid} exceeds the limit of {limit} bytes")]
    MessageTooLong { csid: u32, len: u32, limit: u32 },
    #[error("chunk stream {csid} continues (format {fmt}) a message it never started")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("more than {0} chunk streams in use")]
    TooManyChunkStreams(usize),
    #[error("a message header changed its length in the middle of message on chunk stream {0}")]
    HeaderChangedMidMessage(u32),
    /// The partial messages of all chunk streams together would exceed the session's
    /// buffer budget (see [`ChunkDecoder::set_budget`]).
    #[error(
        "chunk stream {csid} would raise the bytes held in unfinished messages to {would_hold}, over the budget of {budget}"
    )]
    OverBudget {
        csid: u32,
        would_hold: usize,
        budget: usize,
    },
}

/// Limits on what a peer may make us buffer.
#[derive(Clone, Debug)]
pub struct ChunkLimits {
    /// The longest single message.
    pub max_message_len: u32,
    /// Chunk streams a session may use.
    pub max_chunk_streams: usize,
    /// Bytes a session may hold in unfinished messages, all chunk streams together,
    /// once its publish is accepted. Without a total, 64 chunk streams each holding
    /// most of a `max_message_len` message cost half a gigabyte per connection.
    pub max_buffered: usize,
    /// The same total before the publish is accepted: an unauthenticated peer only
    /// needs room for `connect`, `createStream` and `publish` commands.
    pub max_buffered_setup: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_message_len: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_buffered: 16 * 1024 * 1024,
            max_buffered_setup: 64 * 1024,
        }
    }
}

#[derive(Default)]
struct InStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header of this chunk stream carried an extended timestamp.
    extended: Option<u32>,
    has_header: bool,
    /// The message being reassembled; grows only as bytes arrive.
    partial: Vec<u8>,
}

/// Joins chunks into messages.
pub struct ChunkDecoder {
    chunk_size: u32,
    streams: HashMap<u32, InStream>,
    limits: ChunkLimits,
    /// Bytes in all `partial` buffers (kept as a sum so the check is O(1)).
    buffered: usize,
    /// The current cap on `buffered`.
    budget: usize,
}

impl ChunkDecoder {
    /// A decoder for a session that has not published yet: its budget is
    /// `limits.max_buffered_setup` until [`ChunkDecoder::set_budget`] raises it.
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            chunk_size: 128,
            streams: HashMap::new(),
            budget: limits.max_buffered_setup,
            limits,
            buffered: 0,
        }
    }

    /// Sets the cap on bytes held in unfinished messages, all chunk streams together.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    /// The current cap on bytes held in unfinished messages.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Applies the peer's Set Chunk Size. Any size is accepted: it bounds how much is
    /// read per chunk, never what is allocated.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, 0x7fff_ffff);
    }

    /// Drops the partial message of a chunk stream (Abort Message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.get_mut(&csid) {
            self.buffered -= s.partial.len();
            s.partial = Vec::new();
        }
    }

    /// Bytes held in partial messages.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Panics if the running total disagrees with the buffers. For tests and fuzzing.
    pub fn check_invariants(&self) {
        let sum: usize = self.streams.values().map(|s| s.partial.len()).sum();
        assert_eq!(sum, self.buffered);
        assert!(self.buffered <= self.budget.max(self.limits.max_buffered));
    }

    /// Reads one chunk from the front of `buf`. Returns `Ok(None)` when `buf` does not
    /// hold a whole chunk yet (nothing is consumed then); `Ok(Some(None))` when a chunk
    /// was consumed without completing a message.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Option<Message>>, ChunkError> {
        let Some(header) = self.read_header(&buf[..])? else {
            return Ok(None);
        };
        let take = self.admit(&header)?;
        if buf.len() < header.header_len + take {
            return Ok(None);
        }
        Ok(Some(self.commit(&header, take, buf)))
    }

    /// Parses the basic, message and extended-timestamp headers at the front of `data`,
    /// resolved against the chunk stream's previous header. `Ok(None)`: not all here yet.
    fn read_header(&self, data: &[u8]) -> Result<Option<ChunkHeader>, ChunkError> {
        let Some(&b0) = data.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match data.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match data.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let message_header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = data.get(pos..pos + message_header_len) else {
            return Ok(None);
        };
        pos += message_header_len;
        let known = self.streams.get(&csid);
        if fmt != 0 && !known.is_some_and(|s| s.has_header) {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        if known.is_none() && self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams(
                self.limits.max_chunk_streams,
            ));
        }
        let prev = known.map_or(Previous::default(), |s| Previous {
            timestamp: s.timestamp,
            delta: s.delta,
            length: s.length,
            type_id: s.type_id,
            stream_id: s.stream_id,
            extended: s.extended,
            partial: s.partial.len(),
        });
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let field = if fmt <= 2 { Some(u24(&h[0..3])) } else { None };

        // Extended timestamp: present when the 24-bit field is 0xffffff, and on type 3
        // chunks whose stream's last header had one (ffmpeg and OBS send it there; some
        // encoders do not, so only consume 4 bytes that repeat the value).
        let mut extended = None;
        if field == Some(0xff_ffff) {
            let Some(e) = data.get(pos..pos + 4) else {
                return Ok(None);
            };
            extended = Some(u32::from_be_bytes([e[0], e[1], e[2], e[3]]));
            pos += 4;
        } else if fmt == 3
            && let Some(value) = prev.extended
        {
            let Some(e) = data.get(pos..pos + 4) else {
                return Ok(None);
            };
            if u32::from_be_bytes([e[0], e[1], e[2], e[3]]) == value {
                pos += 4;
            }
            extended = Some(value);
        }
        Ok(Some(ChunkHeader {
            fmt,
            csid,
            header_len: pos,
            timestamp_field: extended.or(field),
            extended,
            length: if fmt <= 1 { u24(&h[3..6]) } else { prev.length },
            type_id: if fmt <= 1 { h[6] } else { prev.type_id },
            stream_id: if fmt == 0 {
                u32::from_le_bytes([h[7], h[8], h[9], h[10]])
            } else {
                prev.stream_id
            },
            prev,
        }))
    }

    /// Checks the chunk against the limits; returns how many payload bytes it carries.
    fn admit(&self, header: &ChunkHeader) -> Result<usize, ChunkError> {
        let csid = header.csid;
        let mid_message = header.prev.partial > 0;
        if header.fmt <= 1 && mid_message && header.length != header.prev.length {
            return Err(ChunkError::HeaderChangedMidMessage(csid));
        }
        if header.length > self.limits.max_message_len {
            return Err(ChunkError::MessageTooLong {
                csid,
                len: header.length,
                limit: self.limits.max_message_len,
            });
        }
        let length = header.length as usize;
        let take = (length - header.prev.partial.min(length)).min(self.chunk_size as usize);
        // Checked before the chunk's bytes are here, so that a peer cannot park a large
        // chunk in the caller's input buffer either; a message that completes in this
        // chunk counts too (its bytes are held until the caller takes the payload).
        let would_hold = self.buffered + take;
        if would_hold > self.budget {
            return Err(ChunkError::OverBudget {
                csid,
                would_hold,
                budget: self.budget,
            });
        }
        Ok(take)
    }

    /// The whole chunk is in `buf`: consumes it into its chunk stream and returns the
    /// message it completes, if any.
    fn commit(&mut self, header: &ChunkHeader, take: usize, buf: &mut BytesMut) -> Option<Message> {
        let prev = &header.prev;
        let stream = self.streams.entry(header.csid).or_default();
        if prev.partial == 0 {
            match header.fmt {
                0 => {
                    stream.timestamp = header.timestamp_field.unwrap_or(0);
                    stream.delta = 0;
                }
                1 | 2 => {
                    stream.delta = header.timestamp_field.unwrap_or(0);
                    stream.timestamp = prev.timestamp.wrapping_add(stream.delta);
                }
                _ => stream.timestamp = prev.timestamp.wrapping_add(prev.delta),
            }
        }
        stream.length = header.length;
        stream.type_id = header.type_id;
        stream.stream_id = header.stream_id;
        stream.extended = header.extended;
        stream.has_header = true;
        // Grows only with bytes that arrived: never reserve from the peer's `length`.
        let pos = header.header_len;
        stream.partial.extend_from_slice(&buf[pos..pos + take]);
        self.buffered += take;
        buf.advance(pos + take);
        if stream.partial.len() < header.length as usize {
            return None;
        }
        self.buffered -= stream.partial.len();
        Some(Message {
            chunk_stream_id: header.csid,
            timestamp: stream.timestamp,
            type_id: header.type_id,
            stream_id: header.stream_id,
            payload: Bytes::from(std::mem::take(&mut stream.partial)),
        })
    }
}

/// What a chunk stream's last header said (zero for a new chunk stream).
#[derive(Debug, Default, Clone, Copy)]
struct Previous {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: Option<u32>,
    /// Bytes of an unfinished message already held: the chunk continues it.
    partial: usize,
}

/// One chunk's header, resolved against its chunk stream's previous one.
#[derive(Debug)]
struct ChunkHeader {
    fmt: u8,
    csid: u32,
    /// Basic, message and extended-timestamp header bytes.
    header_len: usize,
    /// The timestamp (type 0) or delta (types 1, 2) the header carries.
    timestamp_field: Option<u32>,
    extended: Option<u32>,
    length: u32,
    type_id: u8,
    stream_id: u32,
    prev: Previous,
}

/// Splits messages into chunks.
pub struct ChunkEncoder {
    chunk_size: u32,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self { chunk_size: 128 }
    }
}

impl ChunkEncoder {
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Our chunk size, once the Set Chunk Size announcing it has been written.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, 0x7fff_ffff);
    }

    /// Appends `msg` as a type 0 chunk followed by type 3 continuation chunks.
    pub fn encode(&self, msg: &Message, out: &mut Vec<u8>) {
        let extended = msg.timestamp >= 0xff_ffff;
        let ts_field = if extended { 0xff_ffff } else { msg.timestamp };
        let len = msg.payload.len() as u32;
        basic_header(0, msg.chunk_stream_id, out);
        out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(msg.type_id);
        out.extend_from_slice(&msg.stream_id.to_le_bytes());
        if extended {
            out.extend_from_slice(&msg.timestamp.to_be_bytes());
        }
        let mut chunks = msg.payload.chunks(self.chunk_size as usize);
        if let Some(first) = chunks.next() {
            out.extend_from_slice(first);
        }
        for chunk in chunks {
            basic_header(3, msg.chunk_stream_id, out);
            if extended {
                out.extend_from_slice(&msg.timestamp.to_be_bytes());
            }
            out.extend_from_slice(chunk);
        }
    }
}

fn basic_header(fmt: u8, csid: u32, out: &mut Vec<u8>) {
    match csid {
        2..=63 => out.push((fmt << 6) | csid as u8),
        64..=319 => out.extend_from_slice(&[fmt << 6, (csid - 64) as u8]),
        _ => {
            let id = csid.saturating_sub(64).min(0xffff);
            out.extend_from_slice(&[(fmt << 6) | 1, id as u8, (id >> 8) as u8]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(csid: u32, ts: u32, len: usize) -> Message {
        Message {
            chunk_stream_id: csid,
            timestamp: ts,
            type_id: 9,
            stream_id: 1,
            payload: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
        }
    }

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8], split: usize) -> Vec<Message> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(m) = dec.decode(&mut buf).expect("valid chunks") {
                out.extend(m);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn round_trips_at_any_chunk_size_and_read_split() {
        for size in [1, 128, 4096, 65536] {
            let mut enc = ChunkEncoder::default();
            enc.set_chunk_size(size);
            let messages = vec![
                msg(4, 0, 300),
                msg(6, 40, 5000),
                msg(4, 0x0100_0000, 700),
                msg(320, 7, 10),
            ];
            let mut bytes = Vec::new();
            for m in &messages {
                enc.encode(m, &mut bytes);
            }
            for split in [1, 7, 1000, bytes.len()] {
                let mut dec = ChunkDecoder::new(ChunkLimits::default());
                dec.set_chunk_size(size);
                assert_eq!(
                    decode_all(&mut dec, &bytes, split),
                    messages,
                    "size {size} split {split}"
                );
            }
        }
    }

    #[test]
    fn compressed_headers_accumulate_deltas() {
        // fmt 0 at t=1000, fmt 2 with delta 33, fmt 3 (same delta), all 2-byte payloads.
        let bytes = [
            0x04, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x02, 0x09, 0x01, 0x00, 0x00, 0x00, 0xaa,
            0xbb, //
            0x84, 0x00, 0x00, 0x21, 0xcc, 0xdd, //
            0xc4, 0xee, 0xff,
        ];
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let ts: Vec<u32> = decode_all(&mut dec, &bytes, 1)
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, vec![1000, 1033, 1066]);
    }

    #[test]
    fn limits_are_enforced_before_buffering() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        dec.set_chunk_size(0x7fff_ffff);
        // A 16 MiB message header: refused at once, no allocation.
        let mut buf =
            BytesMut::from(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0, 1, 2, 3][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(ChunkError::MessageTooLong { .. })
        ));
        let mut buf = BytesMut::from(&[0xc5, 1, 2][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ChunkError::NoPreviousHeader { csid: 5, fmt: 3 })
        );
        assert_eq!(dec.buffered(), 0);
    }

    /// The attack of issue 21: many chunk streams, each one chunk into a long message.
    fn open_messages(dec: &mut ChunkDecoder, streams: u32, len: u32, chunk: usize) -> ChunkError {
        let mut buf = BytesMut::new();
        for csid in 3..3 + streams {
            let mut header = vec![csid as u8, 0, 0, 0];
            header.extend_from_slice(&len.to_be_bytes()[1..]);
            header.extend_from_slice(&[9, 1, 0, 0, 0]);
            buf.extend_from_slice(&header);
            buf.extend_from_slice(&vec![0x55; chunk]);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => return e,
                }
            }
            dec.check_invariants();
        }
        panic!("{streams} open messages stayed within the budget")
    }

    #[test]
    fn unfinished_messages_share_one_budget_across_chunk_streams() {
        let limits = ChunkLimits::default();
        // Before the publish: 60 streams × 4 KiB chunks of 8 MiB messages stop at 64 KiB.
        let mut dec = ChunkDecoder::new(limits.clone());
        dec.set_chunk_size(4096);
        let err = open_messages(&mut dec, 60, 8 << 20, 4096);
        assert!(
            matches!(err, ChunkError::OverBudget { budget, would_hold, .. } if budget == 64 * 1024 && would_hold > budget),
            "{err}"
        );
        assert!(dec.buffered() <= 64 * 1024);

        // After it: the total, not each stream, is capped.
        let mut dec = ChunkDecoder::new(limits.clone());
        dec.set_budget(limits.max_buffered);
        dec.set_chunk_size(1 << 20);
        let err = open_messages(&mut dec, 60, 8 << 20, 1 << 20);
        assert!(matches!(err, ChunkError::OverBudget { .. }), "{err}");
        assert!(dec.buffered() <= limits.max_buffered);

        // A message larger than the setup budget in one chunk is refused before its
        // bytes arrive.
        let mut dec = ChunkDecoder::new(limits);
        dec.set_chunk_size(0x7fff_ffff);
        let mut buf = BytesMut::from(&[0x03, 0, 0, 0, 0x10, 0, 0, 0x14, 0, 0, 0, 0][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(ChunkError::OverBudget { .. })
        ));
    }

    #[test]
    fn finished_and_aborted_messages_return_their_bytes() {
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut enc = ChunkEncoder::default();
        enc.set_chunk_size(128);
        let mut bytes = Vec::new();
        enc.encode(&msg(4, 0, 1000), &mut bytes);
        // Half of it: held.
        let mut buf = BytesMut::from(&bytes[..600]);
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
        assert!(dec.buffered() > 0);
        dec.abort(4);
        assert_eq!(dec.buffered(), 0);
        // The whole of it: handed over, nothing held.
        let mut buf = BytesMut::from(&bytes[..]);
        let mut done = Vec::new();
        while let Ok(Some(m)) = dec.decode(&mut buf) {
            done.extend(m);
        }
        assert_eq!(done.len(), 1);
        assert_eq!(dec.buffered(), 0);
        dec.check_invariants();
    }

    #[test]
    fn extended_timestamp_deltas_wrap_and_the_timeline_reanchors_them() {
        // fmt 0 at 1000 ms, then fmt 1 and fmt 3 each with an extended delta of
        // 0xffff_f830 (−2000 ms once wrapped): abuse a peer can send at any time.
        let bytes = [
            0x04, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x01, 0x09, 0x01, 0x00, 0x00, 0x00, 0xaa, //
            0x44, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x09, 0xff, 0xff, 0xf8, 0x30, 0xbb, //
            0xc4, 0xff, 0xff, 0xf8, 0x30, 0xcc,
        ];
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let ts: Vec<u32> = decode_all(&mut dec, &bytes, 1)
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(
            ts,
            vec![1000, 1000u32.wrapping_sub(2000), 1000u32.wrapping_sub(4000)]
        );
        // Ingest's timeline turns the backward steps into a steady forward one.
        let mut timeline = media::Timeline::new();
        let placed: Vec<i64> = ts.iter().map(|t| timeline.place(*t).ticks).collect();
        assert_eq!(placed, vec![1000, 1001, 1002]);
    }
}
