//! The names of the objects a rendition serves: one source of truth for the playlist
//! writer, the origin's router, the edge and analytics, kept in `media::live_path`.

pub use media::live_path::MediaObject;
