//! A finished recording's poster: one keyframe of its smallest rendition, painted as a
//! JPEG a few seconds into the recording. The painting (FFmpeg) is the transcoder's:
//! the binary passes it in as a [`PosterPainter`], so that this crate stays free of
//! codecs.

use std::fmt::Display;

use media::AvcConfig;

/// The poster's object name, beside the manifest: `ID/poster.jpg`.
pub const POSTER: &str = "poster.jpg";

/// How far into a recording its poster is taken (the first seconds are often black
/// or a title card still fading in).
pub(crate) const POSTER_AFTER_MS: i64 = 2_000;

/// Paints one H.264 keyframe (AVCC data) as a JPEG, `width` pixels wide or as wide as
/// the picture. Blocking: the recorder runs it on a blocking thread. The same shape
/// as the live thumbnail's painter, so that the binary passes the same function.
pub trait PosterPainter: Send + Sync + 'static {
    fn paint(&self, avc: &AvcConfig, data: &[u8], width: Option<u32>) -> Result<Vec<u8>, String>;
}

impl<F, E> PosterPainter for F
where
    F: Fn(&AvcConfig, &[u8], Option<u32>) -> Result<Vec<u8>, E> + Send + Sync + 'static,
    E: Display,
{
    fn paint(&self, avc: &AvcConfig, data: &[u8], width: Option<u32>) -> Result<Vec<u8>, String> {
        self(avc, data, width).map_err(|e| e.to_string())
    }
}
