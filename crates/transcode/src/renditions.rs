//! The renditions of every stream, as configured: a passthrough `source` rendition
//! and/or the transcoded rungs of the ladder, behind the hub's [`Renditions`] seam, so
//! that the origin's feed drives the transcoder without knowing it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hub::{
    AnnouncedRendition, DeclaredRate, MediaEvent, PassthroughInput, RenditionInput,
    RenditionOutput, RenditionPipeline, Renditions, SOURCE_RENDITION,
};
use media::{CodecConfig, TrackKind, Tracks};

use crate::audio::aac_track_for;
use crate::ladder::{Rung, plan};
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
                source_audio: source,
                slow_rung: slow_rung_for_tests(),
                ..TranscodeConfig::default()
            })
        });
        Self { source, transcode }
    }
}

/// `RIVULET_TEST_SLOW_RUNG=NAME:MS`: the tests' way to make one rung's encoder too
/// slow for real time, deterministically (see `TranscodeConfig::slow_rung`).
fn slow_rung_for_tests() -> Option<(String, Duration)> {
    let value = std::env::var("RIVULET_TEST_SLOW_RUNG").ok()?;
    let (name, ms) = value.split_once(':')?;
    Some((name.to_owned(), Duration::from_millis(ms.parse().ok()?)))
}

/// What the audio of a transcoded rendition is counted at in its declared rate: the
/// source's AAC passes through at a rate nobody declared (128 kbit/s is what encoders
/// send by default), MP3 becomes AAC at 128 kbit/s.
const AUDIO_ALLOWANCE: u64 = 128_000;

/// H.264 profiles (profile_idc) whose 4:2:2, 4:4:4 or 10-bit pictures browsers do
/// not decode: a source in one of them is transcoded only.
const UNPLAYABLE_PROFILES: [(u8, &str); 4] = [
    (110, "High 10"),
    (122, "High 4:2:2"),
    (244, "High 4:4:4 Predictive"),
    (44, "CAVLC 4:4:4 Intra"),
];

/// One session's input: to the passthrough at once, to the transcoder's thread.
struct LadderInput {
    source: Option<PassthroughInput>,
    transcode: Option<TranscodeInput>,
    config: Option<Arc<TranscodeConfig>>,
    /// Every rung name this session has had: the transcoder keeps them across source
    /// changes, and so does the announcement.
    names: Vec<String>,
    /// The source's audio is MP3 and the passthrough carries the transcoder's AAC of
    /// it instead (the MP3 frames are not passed through).
    source_gets_aac: bool,
    /// The source's video is one a browser cannot play (4:2:2, 4:4:4 or 10-bit
    /// H.264) and there are rungs: this session leaves the passthrough out.
    source_left_out: bool,
}

impl LadderInput {
    /// The renditions these tracks make: the passthrough (if on) and the rungs the
    /// transcoder plans for the source's size, with their configured rates.
    fn announcement(&mut self, tracks: &Tracks) -> Arc<[AnnouncedRendition]> {
        let mut set = Vec::new();
        if self.source.is_some() && !self.source_left_out {
            set.push(AnnouncedRendition {
                name: Arc::from(SOURCE_RENDITION),
                declared: None,
            });
        }
        // H.264, HEVC and AV1 sources are all decoded into the ladder.
        let video = tracks.video.as_ref().and_then(|t| t.codec.video_size());
        if let (Some(config), Some((width, height))) = (&self.config, video) {
            let audio = if tracks.audio.is_some() {
                AUDIO_ALLOWANCE
            } else {
                0
            };
            for p in plan(&config.rungs, width, height, &self.names) {
                if !self.names.contains(&p.rung.name) {
                    self.names.push(p.rung.name.clone());
                }
                let peak = p.rung.max_rate.unwrap_or(p.rung.bitrate * 3 / 2);
                set.push(AnnouncedRendition {
                    name: Arc::from(p.rung.name.as_str()),
                    declared: Some(DeclaredRate {
                        peak: peak + audio,
                        average: p.rung.bitrate + audio,
                    }),
                });
            }
        }
        Arc::from(set)
    }
}

impl RenditionInput for LadderInput {
    fn push(&mut self, event: MediaEvent, arrival: SystemTime, out: &mut Vec<RenditionOutput>) {
        if let MediaEvent::Tracks(tracks) = &event {
            let unplayable = tracks.video.as_ref().and_then(|t| match &t.codec {
                CodecConfig::Avc(avc) => UNPLAYABLE_PROFILES
                    .iter()
                    .find(|(idc, _)| *idc == avc.profile_idc),
                _ => None,
            });
            self.source_left_out =
                self.source.is_some() && self.config.is_some() && unplayable.is_some();
            if let Some((_, profile)) = unplayable {
                if self.source_left_out {
                    tracing::warn!(
                        profile,
                        "H.264 {profile} is not played by browsers: the source rendition is left out, the ladder is 8-bit 4:2:0"
                    );
                } else if self.source.is_some() {
                    tracing::warn!(
                        profile,
                        "H.264 {profile} is passed through (no ladder configured); browsers will not play it"
                    );
                }
            }
            out.push(RenditionOutput::Announce(self.announcement(tracks)));
        }
        if let Some(t) = self.transcode.as_mut() {
            match &event {
                MediaEvent::Tracks(tracks) => t.push_tracks(tracks.clone()),
                MediaEvent::Frame(frame) => t.push_frame(frame.clone(), arrival),
            }
        }
        if self.source.is_some() && !self.source_left_out {
            let event = match event {
                MediaEvent::Tracks(tracks) => {
                    MediaEvent::Tracks(self.source_tracks(tracks, self.transcode.is_some()))
                }
                MediaEvent::Frame(f) if self.source_gets_aac && f.kind == TrackKind::Audio => {
                    return;
                }
                event => event,
            };
            if let Some(s) = self.source.as_mut() {
                s.push(event, arrival, out);
            }
        }
    }
}

impl LadderInput {
    /// The passthrough's tracks: the source's, except MP3 or Opus audio (which our CMAF
    /// does not carry) becomes the AAC the transcoder makes of it, when there is one.
    fn source_tracks(&mut self, tracks: Arc<Tracks>, transcoding: bool) -> Arc<Tracks> {
        self.source_gets_aac = false;
        let source = match tracks.audio.as_ref().map(|a| &a.codec) {
            Some(c @ (CodecConfig::Mp3(_) | CodecConfig::Opus(_))) if transcoding => c,
            _ => return tracks,
        };
        match aac_track_for(source) {
            Ok(aac) => {
                self.source_gets_aac = true;
                Arc::new(Tracks {
                    video: tracks.video.clone(),
                    audio: Some(aac),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot make AAC of the MP3 or Opus audio; the source rendition goes without audio");
                tracks
            }
        }
    }
}

impl Renditions for Ladder {
    fn start(&self, stream: &str) -> RenditionPipeline {
        let source = self
            .source
            .then(|| PassthroughInput::beside_others(SOURCE_RENDITION));
        let (transcode, output) = match &self.transcode {
            Some(config) => {
                let (input, output) = start(config.clone(), stream);
                (Some(input), Some(output))
            }
            None => (None, None),
        };
        let idr_requests = transcode.as_ref().map(TranscodeInput::idr_requests);
        RenditionPipeline {
            input: Box::new(LadderInput {
                source,
                transcode,
                config: self.transcode.clone(),
                names: Vec::new(),
                source_gets_aac: false,
                source_left_out: false,
            }),
            output,
            idr_requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use media::{AacConfig, AvcConfig, CodecConfig, Track, TrackKind, VIDEO_TIMESCALE};

    use super::*;

    fn tracks(width: u32, height: u32, audio: bool) -> Tracks {
        let mut avc = AvcConfig::from_parameter_sets(
            &[Bytes::from_static(&[
                0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03,
                0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
            ])],
            &[Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0])],
        )
        .expect("avcC");
        avc.width = width;
        avc.height = height;
        Tracks {
            video: Some(Track {
                kind: TrackKind::Video,
                timescale: VIDEO_TIMESCALE,
                codec: CodecConfig::Avc(avc),
            }),
            audio: audio.then(|| Track {
                kind: TrackKind::Audio,
                timescale: std::num::NonZeroU32::new(48_000).expect("rate"),
                codec: CodecConfig::Aac(AacConfig::build(2, 48_000, 2)),
            }),
        }
    }

    fn input(source: bool) -> LadderInput {
        LadderInput {
            source: source.then(|| PassthroughInput::beside_others(SOURCE_RENDITION)),
            transcode: None,
            config: Some(Arc::new(TranscodeConfig {
                rungs: crate::default_rungs(),
                ..TranscodeConfig::default()
            })),
            names: Vec::new(),
            source_gets_aac: false,
            source_left_out: false,
        }
    }

    #[test]
    fn the_announcement_is_the_ladder_the_source_size_gets_with_configured_rates() {
        let mut ladder = input(true);
        let set = ladder.announcement(&tracks(1280, 720, true));
        let names: Vec<&str> = set.iter().map(|a| &*a.name).collect();
        assert_eq!(names, ["source", "720p", "480p", "360p", "234p"]);
        assert_eq!(set[0].declared, None);
        assert_eq!(
            set[1].declared,
            Some(DeclaredRate {
                peak: 4_500_000 + AUDIO_ALLOWANCE,
                average: 3_000_000 + AUDIO_ALLOWANCE,
            })
        );
        // Without audio, the rates are the video's alone.
        let set = input(false).announcement(&tracks(640, 360, false));
        let names: Vec<&str> = set.iter().map(|a| &*a.name).collect();
        assert_eq!(names, ["360p", "234p"]);
        assert_eq!(set[0].declared.map(|d| d.average), Some(730_000));
        // A smaller source later in the session keeps the rungs it had.
        let set = ladder.announcement(&tracks(640, 360, true));
        assert_eq!(set.len(), 5);
    }

    #[test]
    fn new_tracks_announce_before_anything_else() {
        let mut ladder = input(true);
        let mut out = Vec::new();
        ladder.push(
            MediaEvent::Tracks(Arc::new(tracks(854, 480, true))),
            SystemTime::now(),
            &mut out,
        );
        assert!(matches!(&out[0], RenditionOutput::Announce(set) if set.len() == 4));
        // Then the passthrough's own tracks, and no second announcement.
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[1], RenditionOutput::Media { rendition, .. } if &**rendition == "source")
        );
    }
}
