//! Sans-IO RTMP: handshake, chunk streams, messages and the server session. No
//! sockets, no clocks read, no async runtime.

pub mod chunk;
pub(crate) mod handshake;
pub(crate) mod message;
pub mod session;

pub use handshake::PACKET_LEN as HANDSHAKE_PACKET_LEN;
