//! Rivulet's analytics server: how many people watch, from where, and how well it
//! plays for them.
//!
//! Two inputs:
//! - *delivery events* ([`DeliveryEvent`]): one per playlist, part or segment request
//!   an origin or edge answered, made by the [`record_delivery`] middleware. Servers
//!   hand them to an [`Emitter`], a bounded queue
//!   that never blocks serving: in-process into an [`Analytics`], or batched and
//!   POSTed to a remote `rivulet analytics`. What it cannot take is counted as
//!   dropped (`analytics_events_dropped_total`).
//! - *player beacons* ([`beacon`]): startup time, stalls, latency, CMCD keys, POSTed by
//!   players to `/api/analytics/beacons`.
//!
//! [`Aggregator`] (sans-IO) keeps the sessions and the open minutes; [`Analytics`]
//! drives it, writes per-minute rollups and raw events (pruned after the retention)
//! to the database it shares with the metadata server through [`AnalyticsStore`], and answers the API
//! in [`api`]. Definitions of every figure are on [`Figures`].
//!
//! Bounded against hostile input: beacons are taken only for *known* streams (in the
//! [`StreamDirectory`] the caller wires, or served successfully), delivery events only with the
//! [`EventsToken`] ([`EventsAccess`]); sessions, breakdown values and raw rows are
//! capped ([`AggregatorConfig`], [`AnalyticsConfig`]); no query holds the aggregator's
//! lock for longer than what it returns takes to copy.
//!
//! Not here: sockets of its own (the caller serves [`api::routes`]), media, the
//! database connection (the caller opens a [`db::Database`], shared with the metadata
//! server), the list of streams (the caller hands in a [`StreamDirectory`]).
//!
//! Call order: [`AnalyticsStore::open`] → [`Analytics::new`] → spawn
//! [`Analytics::run`] → [`Emitter::local`] (or [`Emitter::remote`] on another host) for
//! the origin → merge [`api::routes`] into the HTTP server.

mod access;
mod aggregate;
pub mod api;
pub mod banner;
pub mod beacon;
mod client;
pub mod cmcd;
mod delivery;
mod emit;
mod error;
mod event;
mod geo;
mod known;
mod options;
mod rollup;
mod service;
mod serving;
mod settings;
mod store;

pub use access::{
    EVENTS_TOKEN_FILE, EventsAccess, EventsToken, EventsTokenError, EventsTokenSetup,
    MIN_EVENTS_TOKEN_LEN,
};
pub use aggregate::{
    Aggregator, AggregatorConfig, AggregatorStats, Concurrent, DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_VALUES, OTHER,
};
pub use client::{ProxyNet, ProxyNetError, TrustedProxies, canonical, session_id};
pub use delivery::record_delivery;
pub use emit::{EmitConfig, Emitter, PLAYER_ID_HEADER, RequestInfo};
pub use error::AnalyticsError;
pub use event::{
    DeliveryBatch, DeliveryEvent, MAX_NODE_NAME_LEN, MAX_STREAM_NAME_LEN, ObjectKind, now_ms,
};
pub use geo::{GeoIp, PACKAGE_FILE, UNKNOWN, default_paths, viewer_country};
pub use known::{DirectoryError, StreamDirectory};
pub use options::{AnalyticsOptions, AnalyticsOptionsError};
pub use rollup::{
    Counters, Dim, Figures, METRICS, MINUTE_MS, RollupRow, SAMPLE_CAP, Samples, minute_of,
    percentile,
};
pub use service::{
    Analytics, AnalyticsConfig, Breakdown, DEFAULT_MAX_RAW_ROWS, EdgeUpstream, PlatformSummary,
    Series, StreamSummary, Timeseries, UnknownStream,
};
pub use serving::{Serving, ServingError};
pub use settings::{
    AnalyticsLimits, AnalyticsLimitsFile, AnalyticsMode, AnalyticsSettings, LimitError,
};
pub use store::{AnalyticsStore, RawBeacon, RawDelivery};
