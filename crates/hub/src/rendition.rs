//! The seam between a publish session and the packagers: a [`Renditions`] maker turns
//! one session's [`MediaEvent`]s into updates of named renditions. The origin drives
//! it; the passthrough here and the transcoder's ladder fill it. It lives in the hub,
//! below both, so that neither depends on the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use media::{Frame, Tracks};
use tokio::sync::mpsc;

use crate::MediaEvent;

/// The rendition that carries the published stream as it came.
pub const SOURCE_RENDITION: &str = "source";

/// What a rendition pipeline hands the packagers.
#[derive(Clone, Debug)]
pub enum RenditionOutput {
    /// An update of one named rendition.
    Media {
        rendition: Arc<str>,
        update: RenditionUpdate,
    },
    /// Something learnt of the input by decoding it (for the stream's input health;
    /// not tied to a rendition).
    Input(InputSignal),
    /// Every rendition this session will have, announced as soon as the source's
    /// tracks say what they are (its picture size decides the ladder) and before
    /// their first frames, so that the multivariant playlist is whole from its first
    /// answer. Replaces any earlier announcement of the session.
    Announce(Arc<[AnnouncedRendition]>),
    /// A rendition leaves the session's set (a rung the machine cannot encode in real
    /// time): the multivariant playlist stops listing it.
    Withdraw(Arc<str>),
}

/// A rendition a session will have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncedRendition {
    pub name: Arc<str>,
    /// The bit rates its encoder is configured for; `None` for a rendition whose rate
    /// is only known by measuring it (the passthrough).
    pub declared: Option<DeclaredRate>,
}

/// Bit rates in bits per second, video and audio together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeclaredRate {
    /// The most any segment may take (the VBV maximum): `BANDWIDTH`.
    pub peak: u64,
    /// The target: `AVERAGE-BANDWIDTH`.
    pub average: u64,
}

/// One update of a rendition.
#[derive(Clone, Debug)]
pub enum RenditionUpdate {
    /// The tracks of the frames that follow.
    Tracks(Arc<Tracks>),
    /// A frame, with the wall-clock time its source frame arrived at ingest (the
    /// PROGRAM-DATE-TIME anchor, alike in every rendition).
    Frame(Frame, SystemTime),
}

/// A change in what the decoded input looks or sounds like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputSignal {
    /// The decoded picture turned black, or stopped being black.
    Picture { black: bool },
    /// The decoded audio turned silent, or stopped being silent.
    Audio { silent: bool },
}

impl RenditionOutput {
    /// An update of `rendition`.
    pub fn media(rendition: &Arc<str>, update: RenditionUpdate) -> Self {
        Self::Media {
            rendition: rendition.clone(),
            update,
        }
    }
}

/// Receives one publish session's media. Must not block: work that takes time runs
/// elsewhere and reports on [`RenditionPipeline::output`].
pub trait RenditionInput: Send {
    /// One event from the publisher, which arrived at `arrival`; updates available at
    /// once (a passthrough) are appended to `out`.
    fn push(&mut self, event: MediaEvent, arrival: SystemTime, out: &mut Vec<RenditionOutput>);
}

/// A running pipeline for one publish session. Dropping `input` ends it; `output`
/// closes once everything in flight has come out.
pub struct RenditionPipeline {
    pub input: Box<dyn RenditionInput>,
    pub output: Option<mpsc::Receiver<RenditionOutput>>,
    /// Where outputs ask for an IDR in a rendition (a pipeline that encodes; a
    /// passthrough has only the publisher's keyframes).
    pub idr_requests: Option<IdrRequests>,
}

/// Renditions whose encoder should code an IDR soon, asked for by outputs that start
/// viewers between keyframes (a WebRTC viewer joining or recovering from loss shows
/// nothing until one). The pipeline decides when (it rate-limits: each IDR costs every
/// viewer of the rendition bits); asking is cheap, never blocks, and repeats collapse.
#[derive(Clone, Debug, Default)]
pub struct IdrRequests {
    inner: Arc<IdrRequestsInner>,
}

#[derive(Debug, Default)]
struct IdrRequestsInner {
    /// Whether `renditions` may be non-empty: the encoder's per-picture check is one
    /// atomic load.
    pending: AtomicBool,
    renditions: Mutex<Vec<Arc<str>>>,
}

impl IdrRequests {
    /// Asks for an IDR in `rendition`.
    pub fn request(&self, rendition: &str) {
        let mut renditions = self
            .inner
            .renditions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !renditions.iter().any(|r| &**r == rendition) {
            renditions.push(Arc::from(rendition));
        }
        self.inner.pending.store(true, Ordering::Release);
    }

    /// The renditions asked for since the last call (each once).
    pub fn take(&self) -> Vec<Arc<str>> {
        if !self.inner.pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(
            &mut *self
                .inner
                .renditions
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

/// Makes the renditions of a stream from its published media.
pub trait Renditions: Send + Sync + 'static {
    fn start(&self, stream: &str) -> RenditionPipeline;
}

/// The published stream as the one rendition, `source`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Passthrough;

impl Renditions for Passthrough {
    fn start(&self, _stream: &str) -> RenditionPipeline {
        RenditionPipeline {
            input: Box::new(PassthroughInput::new(SOURCE_RENDITION)),
            output: None,
            idr_requests: None,
        }
    }
}

/// Forwards every event to one rendition. Audio the packager cannot carry (MP3) is
/// left out, so the video still plays; the transcoder's renditions make AAC of it.
pub struct PassthroughInput {
    rendition: Arc<str>,
    drop_audio: bool,
    /// Announce this rendition as the session's only one (a pipeline with more
    /// renditions announces them all itself).
    announce: bool,
}

impl PassthroughInput {
    /// The passthrough as a session's only rendition: it announces itself.
    pub fn new(rendition: &str) -> Self {
        Self {
            rendition: Arc::from(rendition),
            drop_audio: false,
            announce: true,
        }
    }

    /// The passthrough beside other renditions, which the caller announces.
    pub fn beside_others(rendition: &str) -> Self {
        Self {
            announce: false,
            ..Self::new(rendition)
        }
    }
}

impl RenditionInput for PassthroughInput {
    fn push(&mut self, event: MediaEvent, arrival: SystemTime, out: &mut Vec<RenditionOutput>) {
        if self.announce && matches!(event, MediaEvent::Tracks(_)) {
            out.push(RenditionOutput::Announce(Arc::from([AnnouncedRendition {
                name: self.rendition.clone(),
                declared: None,
            }])));
        }
        let update = match event {
            MediaEvent::Tracks(t) => {
                let packageable = t.audio.as_ref().is_none_or(|a| {
                    !matches!(
                        a.codec,
                        media::CodecConfig::Mp3(_) | media::CodecConfig::Opus(_)
                    )
                });
                self.drop_audio = !packageable;
                if packageable {
                    RenditionUpdate::Tracks(t)
                } else {
                    tracing::info!(rendition = %self.rendition, "MP3 and Opus audio are not passed through (CMAF here carries AAC); the transcoded renditions have it as AAC");
                    RenditionUpdate::Tracks(Arc::new(Tracks {
                        video: t.video.clone(),
                        audio: None,
                    }))
                }
            }
            MediaEvent::Frame(f) if self.drop_audio && f.kind == media::TrackKind::Audio => return,
            MediaEvent::Frame(f) => RenditionUpdate::Frame(f, arrival),
        };
        out.push(RenditionOutput::media(&self.rendition, update));
    }
}
