//! Rivulet's transcoder: the published stream decoded once, scaled down a ladder of
//! renditions (each rung from the one above it), each encoded with libx264 on its own
//! thread, with IDR frames forced at the same presentation times in every rung so
//! that segments and parts line up across renditions. AAC audio passes through to
//! every rendition untouched. Output timestamps are the input timestamps.
//!
//! - [`ladder`]: which rungs a source of a given size gets (pure).
//! - [`KeyframePlanner`]: which pictures start a segment in every rung (pure).
//! - [`Ladder`]: the hub's `Renditions` seam, filled with a passthrough `source`
//!   and/or the transcoded rungs; the origin's feed drives it.
//! - [`start`]: one stream's transcoding session (threads, bounded queues, shedding);
//!   it emits the hub's `RenditionOutput`s.
//! - [`levels`]: whether a decoded picture is black (for input health; pure).
//! - [`thumbnail`]: one keyframe decoded into a JPEG (the thumbnail endpoint).

mod audio;
mod keyframes;
pub mod ladder;
pub mod levels;
pub mod opus;
mod renditions;
mod session;
pub mod thumbnail;

pub use audio::{AudioError, ToAac, aac_track_for};
pub use keyframes::{KeyframePlanner, RequestedIdrs};
pub use ladder::{PlannedRung, Rung, RungError, SOURCE, default_rungs, plan};
pub use renditions::Ladder;
pub use session::{TranscodeConfig, TranscodeInput, start};
