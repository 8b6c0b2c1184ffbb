//! Sans-IO WebRTC sessions on [`str0m`]: WHEP playback and WHIP ingest.
//!
//! A [`WhepSession`] is one viewer: built from the browser's SDP offer (which must
//! carry H.264), it answers as an ICE-lite peer with host candidates on the one UDP
//! port the caller listens on, and sends the H.264 access units and Opus packets it is
//! handed (str0m encrypts them and keeps a bounded buffer for NACK resends).
//! Bytes and `now` in, datagrams and events out: the socket belongs to the caller, who
//! hands each datagram to the session that [accepts](WhepSession::accepts) it.
//!
//! [`rtp_payloads`] turns a frame of the hub (length-prefixed NAL units, as in avcC)
//! into its RTP payloads once per stream: every viewer's session sends the same
//! `Arc<[u8]>`s (str0m's RTP mode), and its resend buffer holds them by reference.
//! [`KeyframeRequests`] limits how often viewers' picture-loss requests reach the
//! encoder side.

mod h264;
mod keyframe;
mod peer;
mod session;
mod whip;

pub use h264::{H264Error, rtp_payloads};
pub use keyframe::KeyframeRequests;
pub use peer::Transport;
pub use session::{
    AudioPacket, DEFAULT_SEND_BUFFER_AUDIO, DEFAULT_SEND_BUFFER_VIDEO, OfferError, SessionOutput,
    VideoAccessUnit, WhepConfig, WhepSession,
};
pub use whip::{AccessUnit, AssembleError, WhipEvent, WhipSession, assemble};
