//! Wires the transcoder between the hub and the packagers: the origin's
//! [`Renditions`] seam, filled with a passthrough `source` rendition and/or the
//! transcoded rungs of the ladder.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use hub::MediaEvent;
use origin::{
    PassthroughInput, RenditionInput, RenditionOutput, RenditionPipeline, RenditionUpdate,
    Renditions,
};
use transcode::{TranscodeConfig, TranscodeInput, TranscodeOutput};

/// The renditions of every stream, as configured.
pub(crate) struct Ladder {
    source: bool,
    transcode: Option<Arc<TranscodeConfig>>,
}

impl Ladder {
    pub(crate) fn new(
        renditions: &[String],
        ladder: &[transcode::Rung],
        segment_target: Duration,
    ) -> Self {
        let source = renditions.iter().any(|r| r == transcode::SOURCE);
        let rungs: Vec<_> = ladder
            .iter()
            .filter(|r| renditions.contains(&r.name))
            .cloned()
            .collect();
        let transcode = (!rungs.is_empty()).then(|| {
            Arc::new(TranscodeConfig {
                rungs,
                align_to_source_keyframes: source,
                segment_target,
                ..TranscodeConfig::default()
            })
        });
        Self { source, transcode }
    }
}

struct LadderInput {
    source: Option<PassthroughInput>,
    transcode: Option<TranscodeInput>,
}

impl RenditionInput for LadderInput {
    fn push(&mut self, event: MediaEvent, arrival: SystemTime, out: &mut Vec<RenditionOutput>) {
        if let Some(t) = self.transcode.as_mut() {
            match &event {
                MediaEvent::Tracks(tracks) => t.push_tracks(tracks.clone()),
                MediaEvent::Frame(frame) => t.push_frame(frame.clone(), arrival),
            }
        }
        if let Some(s) = self.source.as_mut() {
            s.push(event, arrival, out);
        }
    }
}

impl Renditions for Ladder {
    fn start(&self, stream: &str) -> RenditionPipeline {
        let source = self
            .source
            .then(|| PassthroughInput::new(transcode::SOURCE));
        let (transcode, output) = match &self.transcode {
            Some(config) => {
                let (input, rx) = transcode::start(config.clone(), stream);
                let output = tokio_stream::wrappers::ReceiverStream::new(rx)
                    .map(|o| match o {
                        TranscodeOutput::Tracks { rendition, tracks } => RenditionOutput {
                            rendition,
                            update: RenditionUpdate::Tracks(tracks),
                        },
                        TranscodeOutput::Frame {
                            rendition,
                            frame,
                            arrival,
                        } => RenditionOutput {
                            rendition,
                            update: RenditionUpdate::Frame(frame, arrival),
                        },
                        TranscodeOutput::Picture { black } => RenditionOutput {
                            rendition: Arc::from(""),
                            update: RenditionUpdate::Picture { black },
                        },
                        TranscodeOutput::Audio { silent } => RenditionOutput {
                            rendition: Arc::from(""),
                            update: RenditionUpdate::Audio { silent },
                        },
                    })
                    .boxed();
                (Some(input), Some(output))
            }
            None => (None, None),
        };
        RenditionPipeline {
            input: Box::new(LadderInput { source, transcode }),
            output,
        }
    }
}
