//! RTMP message types (RTMP spec §5.4, §6, §7) and the builders for the messages a
//! server sends.

use bytes::Bytes;
use media::amf0::{self, Amf0Value};

use crate::chunk::{ChunkDecoder, Message};

pub(crate) const SET_CHUNK_SIZE: u8 = 1;
pub(crate) const ABORT: u8 = 2;
pub(crate) const ACKNOWLEDGEMENT: u8 = 3;
pub(crate) const USER_CONTROL: u8 = 4;
pub(crate) const WINDOW_ACK_SIZE: u8 = 5;
pub(crate) const SET_PEER_BANDWIDTH: u8 = 6;
pub(crate) const AUDIO: u8 = 8;
pub(crate) const VIDEO: u8 = 9;
pub(crate) const DATA_AMF3: u8 = 15;
pub(crate) const COMMAND_AMF3: u8 = 17;
pub(crate) const DATA_AMF0: u8 = 18;
pub(crate) const COMMAND_AMF0: u8 = 20;

pub(crate) const USER_STREAM_BEGIN: u16 = 0;
pub(crate) const USER_PING_REQUEST: u16 = 6;
pub(crate) const USER_PING_RESPONSE: u16 = 7;

/// Chunk stream for protocol control messages (§5.4).
pub(crate) const CONTROL_CSID: u32 = 2;
/// Chunk stream for our command messages.
pub(crate) const COMMAND_CSID: u32 = 3;

pub(crate) fn control(type_id: u8, payload: Vec<u8>) -> Message {
    Message {
        chunk_stream_id: CONTROL_CSID,
        timestamp: 0,
        type_id,
        stream_id: 0,
        payload: Bytes::from(payload),
    }
}

pub(crate) fn user_control(event: u16, data: &[u8]) -> Message {
    let mut p = event.to_be_bytes().to_vec();
    p.extend_from_slice(data);
    control(USER_CONTROL, p)
}

pub(crate) fn command(stream_id: u32, values: &[Amf0Value]) -> Message {
    let mut p = Vec::new();
    for v in values {
        amf0::encode(v, &mut p);
    }
    Message {
        chunk_stream_id: COMMAND_CSID,
        timestamp: 0,
        type_id: COMMAND_AMF0,
        stream_id,
        payload: Bytes::from(p),
    }
}

/// `onStatus` for a NetStream (§7.2.2).
pub(crate) fn on_status(stream_id: u32, level: &str, code: &str, description: &str) -> Message {
    command(
        stream_id,
        &[
            Amf0Value::String("onStatus".into()),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Object(vec![
                ("level".into(), Amf0Value::String(level.into())),
                ("code".into(), Amf0Value::String(code.into())),
                ("description".into(), Amf0Value::String(description.into())),
            ]),
        ],
    )
}

pub(crate) fn u32_payload(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// The first four bytes of a payload as a big-endian u32.
pub(crate) fn read_u32(p: &[u8]) -> Option<u32> {
    p.get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A protocol control message that cannot be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ControlError {
    ShortChunkSize,
    ZeroChunkSize,
}

/// Applies what both ends of a session do alike: Set Chunk Size, Abort, Window
/// Acknowledgement Size, and answering pings. Returns whether `msg` was one of these,
/// with a reply to send (a ping response).
pub(crate) fn apply_control(
    msg: &Message,
    decoder: &mut ChunkDecoder,
    peer_window: &mut u32,
) -> Result<(bool, Option<Message>), ControlError> {
    match msg.type_id {
        SET_CHUNK_SIZE => {
            let size = read_u32(&msg.payload).ok_or(ControlError::ShortChunkSize)? & 0x7fff_ffff;
            if size == 0 {
                return Err(ControlError::ZeroChunkSize);
            }
            decoder.set_chunk_size(size);
        }
        ABORT => {
            if let Some(csid) = read_u32(&msg.payload) {
                decoder.abort(csid);
            }
        }
        WINDOW_ACK_SIZE => {
            if let Some(w) = read_u32(&msg.payload) {
                *peer_window = w.max(4096);
            }
        }
        USER_CONTROL => {
            let p = &msg.payload;
            if p.len() >= 6 && u16::from_be_bytes([p[0], p[1]]) == USER_PING_REQUEST {
                return Ok((true, Some(user_control(USER_PING_RESPONSE, &p[2..6]))));
            }
        }
        _ => return Ok((false, None)),
    }
    Ok((true, None))
}
