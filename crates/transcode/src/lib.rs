//! Rivulet's transcoder: the published stream decoded once, scaled down a ladder of
//! renditions (each rung from the one above it), each encoded with libx264 on its own
//! thread, with IDR frames forced at the same presentation times in every rung so
//! that segments and parts line up across renditions. AAC audio passes through to
//! every rendition untouched. Output timestamps are the input timestamps.
//!
//! - [`ladder`]: which rungs a source of a given size gets (pure).
//! - [`start`]: one stream's transcoding session (threads, bounded queues, shedding).
//! - [`levels`]: whether a decoded picture is black (for input health; pure).

pub mod ladder;
pub mod levels;
mod session;

pub use ladder::{PlannedRung, Rung, SOURCE, default_rungs, plan};
pub use session::{TranscodeConfig, TranscodeInput, TranscodeOutput, start};
