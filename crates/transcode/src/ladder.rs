//! The ABR ladder: which renditions to make from a source of a given size. Pure
//! computation, no libav.

use media::VideoCodec;
use serde::Deserialize;

/// One rung as configured.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// The rendition's name, in its URL (`/live/NAME/720p/index.m3u8`).
    pub name: String,
    /// Picture height; the width follows the source's aspect ratio.
    pub height: u32,
    /// Target bits per second.
    pub bitrate: u64,
    /// VBV maximum rate (default 1.5 × bitrate).
    #[serde(default)]
    pub max_rate: Option<u64>,
    /// VBV buffer (default 2 × bitrate).
    #[serde(default)]
    pub buffer_size: Option<u64>,
    /// Frames per second above which frames are dropped (e.g. 30 for a 60 fps source).
    #[serde(default)]
    pub max_fps: Option<u32>,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default = "default_profile")]
    pub profile: String,
    /// The rung's video codec: `h264` (libx264, the default, what every player plays),
    /// `hevc` (libx265) or `av1` (libaom-av1 in real-time mode). HEVC and AV1 rungs are
    /// extra renditions for the players that support them; their keyframes are forced
    /// at the same times as the H.264 rungs'. `profile` applies to H.264 only.
    #[serde(default = "default_codec", deserialize_with = "codec_from_str")]
    pub codec: VideoCodec,
}

fn default_codec() -> VideoCodec {
    VideoCodec::Avc
}

fn codec_from_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VideoCodec, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn default_preset() -> String {
    "veryfast".into()
}

fn default_profile() -> String {
    "high".into()
}

impl Rung {
    pub fn new(name: &str, height: u32, bitrate: u64) -> Self {
        Self {
            name: name.into(),
            height,
            bitrate,
            max_rate: None,
            buffer_size: None,
            max_fps: None,
            preset: default_preset(),
            profile: default_profile(),
            codec: default_codec(),
        }
    }

    /// Checks what the encoder would otherwise refuse later, with the reason.
    pub fn validate(&self) -> Result<(), RungError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok || self.name == SOURCE {
            return Err(RungError::Name(self.name.clone()));
        }
        if !(64..=4320).contains(&self.height) {
            return Err(RungError::Height {
                rung: self.name.clone(),
                height: self.height,
            });
        }
        if !(50_000..=100_000_000).contains(&self.bitrate) {
            return Err(RungError::Bitrate {
                rung: self.name.clone(),
                bitrate: self.bitrate,
            });
        }
        if !X264_PRESETS.contains(&self.preset.as_str()) {
            return Err(RungError::Preset {
                rung: self.name.clone(),
                preset: self.preset.clone(),
            });
        }
        if !["baseline", "main", "high"].contains(&self.profile.as_str()) {
            return Err(RungError::Profile {
                rung: self.name.clone(),
                profile: self.profile.clone(),
            });
        }
        Ok(())
    }
}

/// libx264's presets, fastest first.
const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// A configured rung the encoder would refuse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RungError {
    #[error("rung name '{0}' must be 1-32 letters, digits, '-' or '_' and not 'source'")]
    Name(String),
    #[error("rung '{rung}': height {height} is not within 64..4320")]
    Height { rung: String, height: u32 },
    #[error("rung '{rung}': bitrate {bitrate} is not within 50k..100M")]
    Bitrate { rung: String, bitrate: u64 },
    #[error(
        "rung '{rung}': unknown x264 preset '{preset}' (one of ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo)"
    )]
    Preset { rung: String, preset: String },
    #[error("rung '{rung}': profile '{profile}' is not baseline, main or high")]
    Profile { rung: String, profile: String },
}

/// The name of the passthrough rendition.
pub const SOURCE: &str = hub::SOURCE_RENDITION;

/// The default ladder, after Apple's HLS authoring specification (16:9, 30 fps):
/// 1080p 6 Mbit/s, 720p 3 Mbit/s, 480p 1.2 Mbit/s, 360p 730 kbit/s, 234p 145 kbit/s.
/// Rungs up to 720p keep at most 30 frames a second (a 60 fps source is halved there:
/// five 60 fps encodes do not keep real time on a small machine, and a small picture
/// gains little from them); 1080p keeps the source's rate.
pub fn default_rungs() -> Vec<Rung> {
    let at_30 = |mut r: Rung| {
        r.max_fps = Some(30);
        r
    };
    vec![
        Rung::new("1080p", 1080, 6_000_000),
        at_30(Rung::new("720p", 720, 3_000_000)),
        at_30(Rung::new("480p", 480, 1_200_000)),
        at_30(Rung::new("360p", 360, 730_000)),
        at_30(Rung::new("234p", 234, 145_000)),
    ]
}

/// A rung fitted to a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRung {
    pub rung: Rung,
    pub width: u32,
    pub height: u32,
}

/// The rungs to make from a `width × height` source, largest first: none above the
/// source (no upscaling), widths keeping the aspect ratio rounded to even numbers.
/// Rungs named in `keep` (renditions that already exist for this stream) are kept at
/// the source height when they would be above it, so that a source that shrinks
/// mid-stream does not leave players on a rendition that stopped.
pub fn plan(rungs: &[Rung], width: u32, height: u32, keep: &[String]) -> Vec<PlannedRung> {
    let even = |v: u64| (v.div_ceil(2) * 2).max(2) as u32;
    let fit = |h: u32| {
        let h = h.min(height) & !1;
        let w = even(u64::from(width) * u64::from(h) / u64::from(height.max(1)));
        (w, h.max(2))
    };
    let mut out: Vec<PlannedRung> = rungs
        .iter()
        .filter(|r| r.height <= height || keep.contains(&r.name))
        .map(|r| {
            let (w, h) = fit(r.height);
            PlannedRung {
                rung: r.clone(),
                width: w,
                height: h,
            }
        })
        .collect();
    if out.is_empty()
        && let Some(smallest) = rungs.iter().min_by_key(|r| r.height)
    {
        // A source smaller than every rung still gets one rendition, at its own size.
        let (w, h) = fit(smallest.height);
        out.push(PlannedRung {
            rung: smallest.clone(),
            width: w,
            height: h,
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.height));
    out
}

/// Why the renditions or the ladder of the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenditionsError {
    #[error("in the config file's [[ladder]]")]
    Rung(#[source] RungError),
    #[error("the ladder has two rungs called '{0}'")]
    TwoRungsCalled(String),
    #[error("renditions is empty: name at least one (`source` passes the stream through)")]
    Empty,
    #[error("unknown rendition '{name}': use `source` or a rung of the ladder ({ladder})")]
    Unknown { name: String, ladder: String },
}

/// The renditions every stream gets (`None`: every rung of the ladder) and the ladder
/// their rungs come from (`None`: [`default_rungs`]), checked.
pub fn resolve_renditions(
    renditions: Option<Vec<String>>,
    ladder: Option<Vec<Rung>>,
) -> Result<(Vec<String>, Vec<Rung>), RenditionsError> {
    let ladder = ladder.unwrap_or_else(default_rungs);
    for (i, rung) in ladder.iter().enumerate() {
        rung.validate().map_err(RenditionsError::Rung)?;
        if ladder[..i].iter().any(|r| r.name == rung.name) {
            return Err(RenditionsError::TwoRungsCalled(rung.name.clone()));
        }
    }
    let renditions = renditions.unwrap_or_else(|| ladder.iter().map(|r| r.name.clone()).collect());
    if renditions.is_empty() {
        return Err(RenditionsError::Empty);
    }
    for r in &renditions {
        if r != SOURCE && !ladder.iter().any(|l| &l.name == r) {
            return Err(RenditionsError::Unknown {
                name: r.clone(),
                ladder: ladder
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok((renditions, ladder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[PlannedRung]) -> Vec<(String, u32, u32)> {
        p.iter()
            .map(|r| (r.rung.name.clone(), r.width, r.height))
            .collect()
    }

    #[test]
    fn never_upscales_and_keeps_the_aspect_ratio_in_even_widths() {
        let p = plan(&default_rungs(), 1280, 720, &[]);
        assert_eq!(
            names(&p),
            vec![
                ("720p".into(), 1280, 720),
                ("480p".into(), 854, 480),
                ("360p".into(), 640, 360),
                ("234p".into(), 416, 234),
            ]
        );
        // 4:3 source.
        let p = plan(&default_rungs(), 640, 480, &[]);
        assert_eq!(names(&p)[0], ("480p".into(), 640, 480));
        assert_eq!(names(&p)[1], ("360p".into(), 480, 360));
        assert_eq!(names(&p)[2], ("234p".into(), 312, 234));
        // Odd source dimensions never give odd sizes.
        for r in plan(&default_rungs(), 1918, 1078, &[]) {
            assert!(r.width % 2 == 0 && r.height % 2 == 0, "{r:?}");
        }
    }

    #[test]
    fn a_tiny_source_gets_one_rendition_at_its_own_size() {
        let p = plan(&default_rungs(), 320, 180, &[]);
        assert_eq!(names(&p), vec![("234p".into(), 320, 180)]);
    }

    #[test]
    fn renditions_that_exist_survive_a_smaller_source() {
        let before: Vec<String> = plan(&default_rungs(), 1280, 720, &[])
            .into_iter()
            .map(|r| r.rung.name)
            .collect();
        let after = plan(&default_rungs(), 640, 360, &before);
        assert_eq!(
            names(&after),
            vec![
                ("720p".into(), 640, 360),
                ("480p".into(), 640, 360),
                ("360p".into(), 640, 360),
                ("234p".into(), 416, 234),
            ]
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut r = Rung::new("720p", 720, 3_000_000);
        assert!(r.validate().is_ok());
        r.preset = "warp".into();
        assert!(r.validate().unwrap_err().to_string().contains("preset"));
        let r = Rung::new("source", 720, 3_000_000);
        assert!(r.validate().unwrap_err().to_string().contains("source"));
        let r = Rung::new("tiny", 20, 3_000_000);
        assert!(r.validate().unwrap_err().to_string().contains("height"));
    }
}
