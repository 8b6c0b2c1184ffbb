//! Rivulet's metadata server: what a stream *is*.
//!
//! A stream has a public name (in play URLs), a secret key (in the publish URL; only
//! its SHA-256 is stored, the key is shown once on creation and on rotation), a title,
//! a description, tags, and a live state reported by the ingest. This crate holds them
//! in SQLite (a file in the data directory, the default) or PostgreSQL (by URL), serves
//! them as a REST API under `/api`, pushes changes over server-sent events, and answers
//! the ingest's key check.
//!
//! Not here: sockets of its own (the caller serves [`api::router`] with axum), media.
//!
//! Main types and call order:
//! 1. [`MetaStore::connect`] opens the database and applies the migrations (or
//!    [`MetaStore::on`] over a [`db::Database`] the caller opened and shares).
//! 2. [`AdminToken::load_or_generate`] gets the token that guards the admin endpoints.
//! 3. [`api::router`] builds the `/api` routes over the store; merge it into a server.
//! 4. The store is an [`access::StreamKeys`]: hand it to `ingest::serve`. Report
//!    publishes with [`MetaStore::set_live`] / [`MetaStore::set_offline`].
//! 5. [`MetaStore::subscribe`] follows every change; [`MetaStore::title`] gives the title
//!    the origin puts into `EXT-X-SESSION-DATA`.
//!
//! On a node whose metadata server runs elsewhere, [`remote::RemoteMeta`] is the HTTP
//! client of that server's `/api`, and [`remote::RemoteKeys`] the ingest's key check
//! through it (cached; last known good when the server is unreachable).

pub mod api;
pub mod banner;
pub mod declared;
mod error;
mod events;
pub mod hook_options;
mod keys;
pub mod live;
mod model;
pub mod playback_key;
pub mod publish_hook;
pub mod record_rules;
pub mod recordings;
pub mod remote;
pub mod restream;
mod secret;
mod store;
pub mod webhooks;

pub use db::secret::{MIN_TOKEN_LEN, TokenSource};
pub use error::MetaError;
pub use events::StreamEvent;
pub use model::{
    DEFAULT_PAGE, Declared, DeclaredKey, KeyCheck, KeyOwner, ListQuery, LiveReport, LiveState,
    MAX_DESCRIPTION_LEN, MAX_NAME_LEN, MAX_NODE_LEN, MAX_PAGE, MAX_TAG_LEN, MAX_TAGS,
    MAX_TITLE_LEN, MIN_DECLARED_KEY_LEN, NewStream, NodeReset, NodeResetDone, Stream, StreamName,
    StreamPage, StreamUpdate, StreamWithKey, ValidNewStream, ValidStreamUpdate, ValidationError,
    normalize_tag, validate_declared_key, validate_node_name,
};
pub use secret::{AdminToken, TOKEN_FILE, TokenError, generate_key, hash_key};
pub use store::{ChangeObserver, MetaStore};
