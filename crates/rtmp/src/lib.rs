//! Sans-IO RTMP: handshake (simple and the FP9 digest form), chunk streams, messages,
//! and the two session state machines: [`ServerSession`] (ingest) and
//! [`ClientSession`] (our encoder publishing). No sockets, no clocks read, no async
//! runtime: bytes in, events and bytes out, so both ends are tested against each other
//! in memory.

pub mod chunk;
mod client;
pub(crate) mod handshake;
pub(crate) mod message;
mod server;

pub use client::{ClientConfig, ClientError, ClientEvent, ClientSession, PublishUrl};
pub use handshake::PACKET_LEN as HANDSHAKE_PACKET_LEN;
pub use server::{RtmpError, ServerSession, SessionConfig, SessionEvent};
