//! One rendition of a live stream followed for another output: the top H.264 rung of
//! the ladder, for restream targets of an HEVC or AV1 publish (which RTMP targets cannot
//! take). Frames the transcoder made already, shared, not re-encoded.

use std::collections::HashMap;
use std::sync::Arc;

use hub::MediaEvent;
use media::{CodecConfig, TrackKind};
use tokio::sync::broadcast::error::RecvError;

use crate::{LiveStream, SOURCE_RENDITION, TappedMedia};

/// How long a rung may take to appear after the source's tracks (the transcoder's
/// start); past it the stream is taken to have no H.264 rung.
pub const RUNG_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Forwards the highest transcoded H.264 rendition of `live` to `out`: the first of the
/// announced ladder (largest first) whose tracks are H.264, chosen at its first
/// keyframe once the tracks of every rung above it are known (rungs start in any
/// order: the smallest is often first). A listener that falls behind (the channel
/// full, the tap lagging) skips to the next keyframe.
pub async fn follow_top_h264(live: Arc<LiveStream>, out: tokio::sync::mpsc::Sender<MediaEvent>) {
    let (current, mut tap) = live.tap();
    // The renditions' tracks (`Some` when the video is H.264); true if `update` was
    // H.264 tracks of a transcoded rendition.
    fn note(
        seen: &mut HashMap<Arc<str>, Option<Arc<media::Tracks>>>,
        update: &TappedMedia,
    ) -> bool {
        let TappedMedia::Tracks { rendition, tracks } = update else {
            return false;
        };
        let h264 = &**rendition != SOURCE_RENDITION
            && matches!(
                tracks.video.as_ref().map(|v| &v.codec),
                Some(CodecConfig::Avc(_))
            );
        seen.insert(rendition.clone(), h264.then(|| tracks.clone()));
        h264
    }
    // The rendition to forward, if it can be chosen now: the first transcoded one of
    // the ladder with H.264 tracks, provided every one above it has tracks of its own.
    fn best(
        live: &LiveStream,
        seen: &HashMap<Arc<str>, Option<Arc<media::Tracks>>>,
    ) -> Option<String> {
        let order = live
            .announced_renditions()
            .unwrap_or_else(|| live.rendition_names());
        for name in order {
            if name == SOURCE_RENDITION {
                continue;
            }
            match seen.get(name.as_str()) {
                Some(Some(_)) => return Some(name),
                Some(None) => {}
                None => return None,
            }
        }
        None
    }
    let mut seen: HashMap<Arc<str>, Option<Arc<media::Tracks>>> = HashMap::new();
    for update in &current {
        note(&mut seen, update);
    }
    let mut chosen: Option<Arc<str>> = None;
    let mut skipping = true;
    let deadline = tokio::time::Instant::now() + RUNG_WAIT;
    loop {
        let update = tokio::select! {
            u = tap.recv() => u,
            () = out.closed() => return,
            () = tokio::time::sleep_until(deadline), if chosen.is_none() => return,
        };
        let update = match update {
            Ok(u) => u,
            Err(RecvError::Lagged(_)) => {
                skipping = true;
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let is_h264_tracks = note(&mut seen, &update);
        match update {
            TappedMedia::Tracks { rendition, tracks } => {
                if is_h264_tracks && chosen.as_deref() == Some(&*rendition) {
                    skipping = out.try_send(MediaEvent::Tracks(tracks)).is_err();
                }
            }
            TappedMedia::Frame {
                rendition, frame, ..
            } => {
                let video_key = frame.kind == TrackKind::Video && frame.keyframe;
                if chosen.is_none()
                    && video_key
                    && best(&live, &seen).as_deref() == Some(&*rendition)
                {
                    let Some(Some(tracks)) = seen.get(&*rendition).cloned() else {
                        continue;
                    };
                    if out.send(MediaEvent::Tracks(tracks)).await.is_err() {
                        return;
                    }
                    tracing::info!(stream = %live.name(), %rendition, "restreaming this rung in place of the source");
                    chosen = Some(rendition.clone());
                }
                if chosen.as_deref() != Some(&*rendition) {
                    continue;
                }
                if skipping && !video_key {
                    continue;
                }
                skipping = match out.try_send(MediaEvent::Frame(frame)) {
                    Ok(()) => false,
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => true,
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                };
            }
        }
    }
}
