//! Rivulet's ingest: publishers in, live streams on the [`hub::Hub`] out.
//!
//! - [`rtmp`] (this crate's module): the tokio listener that drives one sans-IO
//!   [`::rtmp::ServerSession`] per connection (the protocol core is its own crate);
//!   [`RtmpListener::tls`] makes a listener RTMPS (TLS with rustls, then RTMP).
//! - [`serve_srt`]: the SRT listener (`srt-tokio`), MPEG-TS demuxed by the `ts` crate
//!   into the same tracks and frames; the key is checked in the SRT handshake.
//! - [`StreamAssembler`]: FLV tag bodies to [`media::Frame`]s, unwrapping RTMP's 32-bit
//!   millisecond timestamps once, here, per track.
//! - [`StreamKeys`]: who may publish (a stream key resolves to a stream name); the
//!   trait lives in the `access` crate, re-exported here, so that `meta` answers it
//!   without depending on the ingest.
//!
//! Flow: TCP bytes → `ServerSession::handle_input` → `SessionEvent::PublishRequested`
//! → `StreamKeys::authorize` → `Hub::publish` → `accept_publish` → media events →
//! `StreamAssembler` → `Publisher::send_tracks` / `send_frame`.

mod assemble;
mod escape;
mod limits;
mod options;
mod rtmp;
mod srt;

pub use access::{
    AuthorizeFuture, KeyRejection, PublishRequest, StaticKeys, StreamKeys, check_app, redact,
};
pub use assemble::{AssembleError, Assembled, StreamAssembler};
pub use escape::Escaped;
pub use limits::{
    AcceptBackoff, Bitrate, BitrateExceeded, BitrateLimiter, ConnectionLimiter, ConnectionPermit,
    ConnectionRefusal, DECLARED_FLOOR, DECLARED_HEADROOM, LimitNames, LogThrottle, RTMP_LIMITS,
};
pub use options::{
    DEFAULT_SRT_LISTEN, OptionsError, RtmpOptions, SrtFileOptions, SrtListen, SrtOptions,
};
pub use rtmp::{RtmpConfig, RtmpListener, serve, serve_all};
pub use srt::{Rejection, SrtConfig, SrtConnectionStats, SrtStatsRegistry, serve_srt, stream_key};
