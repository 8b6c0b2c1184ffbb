//! Who may publish and who may watch.
//!
//! Publishing: the stream-key check, as a trait both sides can see.
//! The ingest asks ([`StreamKeys::authorize`] with a [`PublishRequest`]); the metadata
//! server (in-process or remote) and static configuration ([`StaticKeys`]) answer. It
//! is its own small crate so that the data path (ingest) and the control plane (meta)
//! meet here instead of depending on each other.

//!
//! Watching a private stream: [`playback::PlaybackKeys`] signs and verifies playback
//! tokens (HS256 JWTs naming a stream, an expiry, optionally an address or session);
//! the metadata server signs, the origin and the edge verify, and [`playback::with_token`]
//! carries a viewer's token into every URI of the playlists it is served.

mod keys;
pub mod playback;

pub use keys::{
    AuthorizeFuture, KeyRejection, PublishRequest, StaticKeys, StreamKeys, check_app, redact,
};
