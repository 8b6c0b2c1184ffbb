//! The HTTP origin: serves what the packager produces.
//!
//! - [`LiveStreams`] is the registry of packaged streams: one [`LiveStream`] per stream
//!   name, each holding one sans-IO [`package::RenditionPackager`] per rendition behind a
//!   mutex, plus a `watch` channel bumped on every packager event.
//! - [`feed`] is the task that moves frames from the [`hub`] into the packagers, and owns
//!   a stream's lifecycle: live → publisher gone (grace period, same playlist) → ended
//!   (`EXT-X-ENDLIST`) → offline (404), and back to live with a discontinuity.
//! - [`router`] is the axum router for `/live/NAME/…`: the multivariant playlist, media
//!   playlists with blocking reload (`_HLS_msn`, `_HLS_part`) and delta updates
//!   (`_HLS_skip`), the init segment, segments, and parts, where the preload-hinted part
//!   is held and streamed (chunked) while it is produced.
//!
//! Waiting, timeouts, HTTP status codes and `Cache-Control` live here; the packager
//! only answers questions about its state.
//!
//! Private streams ([`LiveStreams::set_private`], fed by the binary from the metadata
//! server): every `/live/NAME/…` request needs a playback token (`?token=`), checked
//! with [`OriginConfig::playback_keys`] (`access::playback`); playlists carry it into
//! every URI they hold, and answers are marked `X-Rivulet-Access: private` for edges.
//! Public streams are served exactly as before.

pub mod dvr;
mod feed;
pub mod health;
mod http;
mod live;
pub mod live_report;
pub mod numbering;
pub mod rung_tap;
pub mod thumbnail;

pub use feed::run_feed;
pub use health::{HealthConfig, InputHealth, InputState};
pub use http::{ClientAddr, INPUT_HEADER, playback_refusal, router};
pub use live::{
    LatestKeyframe, LiveStream, LiveStreams, OriginConfig, SOURCE_RENDITION, StreamPhase,
    TappedMedia,
};
pub use numbering::{NumberingDir, NumberingStore};
