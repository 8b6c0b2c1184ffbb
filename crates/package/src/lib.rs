//! The sans-IO packager: the frames of one rendition in, CMAF parts and segments and
//! Low-Latency HLS playlists out (RFC 8216bis, "HTTP Live Streaming 2nd edition").
//!
//! No sockets, no clocks, no async runtime: the wall-clock time arrives as a `now`
//! argument and the caller (the HTTP origin) does all waiting. Call order:
//! [`RenditionPackager::handle_tracks`], then [`RenditionPackager::handle_frame`] for
//! every frame, draining [`RenditionPackager::poll_event`] after each call to wake
//! waiting requests; [`RenditionPackager::handle_discontinuity`] when a publisher
//! returns; [`RenditionPackager::handle_end`] when the stream ends. Queries
//! (`media_playlist`, `part`, `segment`, `blocking_readiness`, …) may come at any time.
//!
//! Design:
//! - **Muxed renditions**: one fMP4 stream carries video (track 1) and audio (track 2),
//!   so a player makes one request per part.
//! - **Parts are lists of CMAF chunks** (one `moof`+`mdat` per video frame, with the
//!   audio that arrived since the previous one), so a part can be served while it grows.
//!   A chunk is written as soon as its video frame arrives; the frame's duration is
//!   estimated from the last frame intervals (their median; the next frame's `tfdt` is
//!   exact), as ffmpeg's own low-latency fragmenting does. A part is complete as soon as the next
//!   frame would no longer fit in the part target, so the part is servable the moment
//!   its last frame arrives.
//! - **Numbers from timestamps**: with segment target S, the boundary index of a time t
//!   is floor(t / S). A segment starts at a video keyframe whose boundary index is
//!   greater than the current segment's. The first segment's media sequence number is
//!   its boundary index; each later one is the previous plus one (HLS needs consecutive
//!   numbers). Parts are cut so that none is longer than the part target, counting from
//!   the segment start. Two pipelines fed by the same encoder thus agree on numbers and
//!   boundaries as long as every segment-target interval holds a keyframe, which our
//!   encoder and transcoder guarantee. Numbers never repeat for a stream, even across
//!   origin restarts: [`StreamNumbering`] shifts a session whose timestamps started over
//!   above the highest number used before.
//! - **Discontinuities** (a publisher returning, a new resolution) rebase the new
//!   timestamps so the timeline continues where it stopped (`tfdt` never goes back), and
//!   mark the next segment with `EXT-X-DISCONTINUITY`.

mod config;
mod numbering;
mod object;
mod packager;
mod playlist;
mod sink;
mod time_format;

pub use config::{PackageError, PackagerConfig};
pub use numbering::StreamNumbering;
pub use object::MediaObject;
pub use packager::{PackageEvent, PartView, Readiness, RenditionPackager};
pub use playlist::{RenditionReport, VariantInfo, multivariant_playlist};
pub use sink::{CompletedSegment, SegmentSink};
/// `EXT-X-PROGRAM-DATE-TIME` values, for playlists written outside the packager (the DVR).
pub use time_format::iso8601_millis;
