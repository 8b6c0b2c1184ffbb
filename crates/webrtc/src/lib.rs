//! Sans-IO WebRTC sessions on [`str0m`]: WHEP playback and WHIP ingest.
//!
//! A [`WhepSession`] is one viewer: built from the browser's SDP offer (which must
//! carry H.264), it answers as an ICE-lite peer with host candidates on the one UDP
//! port the caller listens on, and sends the H.264 access units and Opus packets it is
//! handed (str0m packetises, encrypts, and keeps a bounded buffer for NACK resends).
//! Bytes and `now` in, datagrams and events out: the socket belongs to the caller, who
//! hands each datagram to the session that [accepts](WhepSession::accepts) it.
//!
//! [`annex_b`] turns a frame of the hub (length-prefixed NAL units, as in avcC) into
//! the start-code form the packetiser splits, once per stream: every viewer gets the
//! same `Arc<[u8]>`. [`KeyframeRequests`] limits how often viewers' picture-loss
//! requests reach the encoder side.

mod h264;
mod keyframe;
mod peer;
mod session;
mod whip;

pub use h264::{H264Error, annex_b};
pub use keyframe::KeyframeRequests;
pub use peer::Transport;
pub use session::{
    AudioPacket, DEFAULT_SEND_BUFFER_AUDIO, DEFAULT_SEND_BUFFER_VIDEO, OfferError, SessionOutput,
    VideoAccessUnit, WhepConfig, WhepSession,
};
pub use whip::{AccessUnit, AssembleError, WhipEvent, WhipSession, assemble};
