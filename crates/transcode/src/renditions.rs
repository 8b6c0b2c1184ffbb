//! The renditions of every stream, as configured: a passthrough `source` rendition
//! and/or the transcoded rungs of the ladder, behind the hub's [`Renditions`] seam, so
//! that the origin's feed drives the transcoder without knowing it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hub::{
    MediaEvent, PassthroughInput, RenditionInput, RenditionOutput, RenditionPipeline, Renditions,
    SOURCE_RENDITION,
};

use crate::ladder::Rung;
use crate::session::{TranscodeConfig, TranscodeInput, start};

/// A stream's renditions: `source` (passed through) if configured, and one transcoded
/// rendition per configured rung of the ladder.
pub struct Ladder {
    source: bool,
    transcode: Option<Arc<TranscodeConfig>>,
}

impl Ladder {
    /// `renditions` names what every stream gets (`source` and/or rungs of `ladder`);
    /// rungs are cut into segments of `segment_target`.
    pub fn new(renditions: &[String], ladder: &[Rung], segment_target: Duration) -> Self {
        let source = renditions.iter().any(|r| r == SOURCE_RENDITION);
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

/// One session's input: to the passthrough at once, to the transcoder's thread.
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
        let source = self.source.then(|| PassthroughInput::new(SOURCE_RENDITION));
        let (transcode, output) = match &self.transcode {
            Some(config) => {
                let (input, output) = start(config.clone(), stream);
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
