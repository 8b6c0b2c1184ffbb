//! Who may publish: the stream-key check, as a trait both sides can see.
//!
//! The ingest asks ([`StreamKeys::authorize`] with a [`PublishRequest`]); the metadata
//! server (in-process or remote) and static configuration ([`StaticKeys`]) answer. It
//! is its own small crate so that the data path (ingest) and the control plane (meta)
//! meet here instead of depending on each other.

mod keys;

pub use keys::{
    AuthorizeFuture, KeyRejection, PublishRequest, StaticKeys, StreamKeys, check_app, redact,
};
