//! The control plane's foundation: one database and the private files in the data
//! directory, shared by the metadata and analytics servers without either knowing the
//! other.
//!
//! What is here:
//! - [`Database`]: a sqlx Any pool over an SQLite file (by default `meta.db` in the
//!   data directory, created readable by its owner only) or PostgreSQL (by URL), with
//!   the per-connection settings both stores rely on.
//! - [`Migrations`]: a crate's embedded schema, one list per [`Backend`], applied with
//!   [`Database::migrate`]. Every crate's migrations share sqlx's `_sqlx_migrations`
//!   table, each ignoring the others': so their version numbers must not overlap
//!   (the metadata store uses 1–999, analytics 1000 and up).
//! - [`secret`]: secrets kept in files of the data directory (the admin token, the
//!   analytics events token), generated once and compared in constant time.
//!
//! Not here: any table of its own, sockets, HTTP.
//!
//! Call order: the binary opens the database once ([`Database::connect`]) and hands a
//! clone to each store, which applies its own [`Migrations`]; [`Database::close`] at
//! the end.

mod database;
mod migrate;
pub mod secret;

pub use database::{Backend, Database, DbError, SQLITE_FILE, redact_url, sqlite_url};
pub use migrate::{EmbeddedMigration, Migrations};
