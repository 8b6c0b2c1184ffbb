//! Rivulet's recorder: keeps what was streamed.
//!
//! - [`Recorder`] is a [`package::SegmentSink`]: the origin hands it every complete
//!   segment of every rendition on the live path. It never waits there: each stream has
//!   a bounded queue, and a segment that does not fit is left out of the recording (a
//!   gap, marked in the recording's playlist with `EXT-X-DISCONTINUITY`, logged and
//!   counted in `record_segments_dropped_total`). A writer task per stream puts the
//!   init segments and segments into an [`object_store::ObjectStore`] (a local
//!   directory or an S3-compatible bucket, see [`open_store`]), retrying failed writes
//!   with backoff.
//! - A publisher returning within the grace period continues the same recording; when
//!   the stream ends, the writer adds the VOD playlists (`ID/RENDITION/index.m3u8`,
//!   `ID/master.m3u8`) and the manifest (`ID/recording.json`, a [`Recording`]) and
//!   the recording is listed.
//! - [`router`] serves `/vod/ID/master.m3u8`, the renditions' playlists and objects,
//!   and `/vod/ID/RENDITION.mp4`: the init segment and every segment concatenated, a
//!   fragmented MP4 made without re-encoding.
//! - A few seconds into a recording, the writer paints its poster (`ID/poster.jpg`)
//!   from a keyframe of the smallest rendition, with the [`PosterPainter`] the binary
//!   set ([`Recorder::set_poster_painter`]); served as `/vod/ID/poster.jpg`.
//! - [`RetentionPolicy`] says which recordings to delete (age, bytes per stream);
//!   [`Recorder::run_retention`] applies it in the background.
//!
//! - While a stream is recorded, the last [`RecorderConfig::dvr_window`] of it is its
//!   DVR window: [`Recorder::dvr_playlist`] and [`Recorder::dvr_object`] (served by
//!   the binary below `/live/STREAM/`, beside the live objects).
//!
//! Which streams are recorded, and their titles, come from a [`RecordPolicy`] the
//! caller implements (the binary, over the metadata server): this crate knows nothing of
//! the control plane.
//!
//! Object layout, the same names as the live paths below `/live/STREAM/`:
//!
//! ```text
//! ID/recording.json           the manifest, written last
//! ID/master.m3u8              VOD multivariant playlist
//! ID/poster.jpg               the poster, when one could be painted
//! ID/RENDITION/index.m3u8     VOD media playlist (PLAYLIST-TYPE:VOD, ENDLIST)
//! ID/RENDITION/init-V.mp4     init segment
//! ID/RENDITION/seg-N.m4s      segment N
//! ```

mod dvr;
mod error;
mod http;
mod options;
mod poster;
mod recorder;
mod retention;
mod store;
mod vod;

pub use error::RecordError;
pub use http::router;
pub use options::{RETENTION_INTERVAL, RecordOptions, RecordOptionsError, RecordSettings};
pub use poster::{POSTER, PosterPainter};
pub use recorder::{RecordPolicy, Recorder, RecorderConfig, StreamDescription};
pub use retention::RetentionPolicy;
pub use store::open_store;
pub use vod::{RecordedRendition, Recording, valid_id};
