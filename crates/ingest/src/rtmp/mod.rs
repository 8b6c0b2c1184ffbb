//! RTMP ingest: the sans-IO [`proto`] core and the tokio [`server`] around it.

pub mod proto;
pub mod server;
