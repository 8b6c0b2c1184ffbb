//! A publish session, what `rivulet publish` runs: the test pattern or a media file,
//! encoded live and published over RTMP to one or more ingest URLs at once, with a
//! status line on stderr. The binary turns its flags into [`PublishOptions`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rtmp::PublishUrl;
use source::{FileSource, FileSourceConfig, FrameRate, Source, TestPattern, TestPatternConfig};

use crate::publish::{PublishConfig, PublishError, Publisher};
use crate::status::StatusLine;
use crate::{AudioEncoderConfig, EncoderConfig, LiveEncoder, LiveError, VideoEncoderConfig};

/// What a publish session encodes and how.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Publish the built-in test pattern instead of a file.
    pub test_pattern: bool,
    /// The media file (unless `test_pattern`) followed by the RTMP URLs.
    pub inputs: Vec<String>,
    /// `None`: 1280x720 for the test pattern, the file's own size for a file.
    pub size: Option<(u32, u32)>,
    pub fps: FrameRate,
    /// Video bitrate, bits/s.
    pub bitrate: u64,
    /// Audio bitrate, bits/s.
    pub audio_bitrate: u64,
    pub video_codec: media::VideoCodec,
    pub preset: String,
    pub profile: String,
    /// A keyframe wherever the timestamp crosses a multiple of this.
    pub keyframe_interval_ms: u32,
    /// Play the file again from the start when it ends.
    pub looped: bool,
    pub no_audio: bool,
    /// Text drawn on the test pattern.
    pub name: String,
    /// Stop after this many seconds (`None`: until stopped, or the file's end).
    pub duration: Option<f64>,
    /// Whom rtmps:// URLs trust (`None`: the web's public authorities).
    pub trust: Option<tls::ClientTrust>,
}

/// A value given on the command line that is not what it should be.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(String);

/// Why a publish session could not be planned or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "the first argument must be a media FILE, or add --test-pattern to publish the built-in pattern"
    )]
    UrlInsteadOfFile,
    #[error("{0}: no such file")]
    NoSuchFile(String),
    #[error("no RTMP URL given: add one or more rtmp://HOST[:PORT]/APP/STREAM_KEY")]
    NoUrl,
    #[error("--loop applies to a file; the test pattern runs until stopped")]
    LoopWithoutFile,
    #[error(transparent)]
    Url(#[from] rtmp::ClientError),
    #[error("check --tls-ca")]
    Tls(#[source] tls::TlsError),
    #[error("cannot start publishing")]
    Connect(#[source] PublishError),
    #[error("encoder thread")]
    EncoderThread(#[source] tokio::task::JoinError),
    #[error("encoding failed")]
    Encoding(#[source] LiveError),
}

/// `WIDTHxHEIGHT`, even, between 64x64 and 7680x4320.
pub fn parse_size(s: &str) -> Result<(u32, u32), BadValue> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| BadValue(format!("'{s}' is not WIDTHxHEIGHT (example: 1280x720)")))?;
    let (w, h): (u32, u32) = (
        w.parse()
            .map_err(|_| BadValue(format!("'{w}' is not a width")))?,
        h.parse()
            .map_err(|_| BadValue(format!("'{h}' is not a height")))?,
    );
    if w < 64 || h < 64 || w > 7680 || h > 4320 || w % 2 == 1 || h % 2 == 1 {
        return Err(BadValue(format!(
            "{w}x{h}: width and height must be even, between 64x64 and 7680x4320"
        )));
    }
    Ok((w, h))
}

/// `30`, `29.97`, `30000/1001`.
pub fn parse_fps(s: &str) -> Result<FrameRate, BadValue> {
    FrameRate::parse(s).ok_or_else(|| {
        BadValue(format!(
            "'{s}' is not a frame rate (examples: 30, 29.97, 30000/1001)"
        ))
    })
}

/// `h264`, `hevc`, `av1`.
pub fn parse_video_codec(s: &str) -> Result<media::VideoCodec, BadValue> {
    s.parse().map_err(BadValue)
}

/// Bits per second with `k` and `M` suffixes, 10k..200M.
pub fn parse_bitrate(s: &str) -> Result<u64, BadValue> {
    let t = s.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1_000.0),
        Some((i, 'm' | 'M')) => (&t[..i], 1_000_000.0),
        _ => (t, 1.0),
    };
    let value: f64 = digits.parse().map_err(|_| {
        BadValue(format!(
            "'{s}' is not a bitrate (examples: 800k, 3M, 2500000)"
        ))
    })?;
    let bits = (value * scale).round();
    if !(10_000.0..=200_000_000.0).contains(&bits) {
        return Err(BadValue(format!("bitrate {s} is outside 10k..200M")));
    }
    Ok(bits as u64)
}

/// What to publish, resolved from the options.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub file: Option<PathBuf>,
    pub urls: Vec<PublishUrl>,
    pub options: PublishOptions,
}

impl PublishOptions {
    /// Splits the inputs into the file and the URLs, and checks them.
    pub fn plan(self) -> Result<PublishPlan, SessionError> {
        let mut inputs = self.inputs.clone();
        let file = if self.test_pattern {
            None
        } else {
            if inputs.first().is_some_and(|i| i.contains("://")) {
                return Err(SessionError::UrlInsteadOfFile);
            }
            let path = PathBuf::from(inputs.remove(0));
            if !path.exists() {
                return Err(SessionError::NoSuchFile(path.display().to_string()));
            }
            Some(path)
        };
        if inputs.is_empty() {
            return Err(SessionError::NoUrl);
        }
        let urls = inputs
            .iter()
            .map(|u| PublishUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        if self.looped && file.is_none() {
            return Err(SessionError::LoopWithoutFile);
        }
        Ok(PublishPlan {
            file,
            urls,
            options: self,
        })
    }
}

/// Starts the live encoder for `plan`.
pub fn start_encoder(plan: &PublishPlan) -> LiveEncoder {
    let options = plan.options.clone();
    let file = plan.file.clone();
    let size = options.size;
    let make_source = move |start_unix_ms: u64| -> Result<Box<dyn Source>, source::SourceError> {
        Ok(match file {
            Some(path) => Box::new(FileSource::open(FileSourceConfig {
                path,
                looped: options.looped,
                size,
                start_unix_ms,
            })?),
            None => {
                let (width, height) = size.unwrap_or((1280, 720));
                Box::new(TestPattern::new(TestPatternConfig {
                    width,
                    height,
                    frame_rate: options.fps,
                    name: options.name.clone(),
                    start_unix_ms,
                    audio: !options.no_audio,
                })?)
            }
        })
    };
    let options = plan.options.clone();
    let make_config = move |video: Option<source::VideoFormat>,
                            audio: Option<source::AudioFormat>| {
        EncoderConfig {
            video: video.map(|v| {
                let mut c =
                    VideoEncoderConfig::new(v.width, v.height, v.frame_rate, options.bitrate);
                c.codec = options.video_codec;
                c.preset = options.preset.clone();
                c.profile = options.profile.clone();
                c
            }),
            audio: audio
                .filter(|_| !options.no_audio)
                .map(|a| AudioEncoderConfig {
                    sample_rate: a.sample_rate,
                    channels: a.channels,
                    bitrate: options.audio_bitrate,
                }),
            keyframe_interval: Duration::from_millis(u64::from(
                options.keyframe_interval_ms.max(100),
            )),
        }
    };
    LiveEncoder::start(make_source, make_config)
}

/// The publisher's settings: whom rtmps:// URLs trust.
fn publish_config(options: &PublishOptions) -> Result<PublishConfig, SessionError> {
    let tls = match &options.trust {
        Some(trust) => Some(tls::client_config(trust).map_err(SessionError::Tls)?),
        None => None,
    };
    Ok(PublishConfig {
        tls,
        ..PublishConfig::default()
    })
}

/// Runs a publish session until the duration, the file's end, or `shutdown`.
pub async fn run(
    plan: PublishPlan,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SessionError> {
    let shown: Vec<String> = plan.urls.iter().map(ToString::to_string).collect();
    let config = publish_config(&plan.options)?;
    let mut live = start_encoder(&plan);
    let stats = live.stats.clone();
    // Connect while the encoder produces its first frames (they are queued).
    let mut publisher = match Publisher::connect(plan.urls.clone(), config).await {
        Ok(p) => p,
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || live.join()).await;
            return Err(SessionError::Connect(e));
        }
    };
    eprintln!("Publishing to {}", shown.join(", "));
    let started = Instant::now();
    let deadline = plan
        .options
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut status = StatusLine::new(
        stats.clone(),
        publisher.statuses().to_vec(),
        plan.file.is_some(),
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            encoded = live.output.recv() => match encoded {
                Some(e) => publisher.send(&e),
                None => break,
            },
            _ = tick.tick() => status.print(started.elapsed()),
            () = &mut shutdown => break,
            () = sleep_until(deadline) => break,
        }
    }
    status.finish(started.elapsed());
    publisher.finish().await;
    tokio::task::spawn_blocking(move || live.join())
        .await
        .map_err(SessionError::EncoderThread)?
        .map_err(SessionError::Encoding)
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bitrates_sizes_and_rates() {
        assert_eq!(parse_bitrate("3M").ok(), Some(3_000_000));
        assert_eq!(parse_bitrate("800k").ok(), Some(800_000));
        assert_eq!(parse_bitrate("2.5M").ok(), Some(2_500_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("5").is_err());
        assert_eq!(parse_size("1280x720").ok(), Some((1280, 720)));
        assert!(parse_size("1281x720").is_err_and(|e| e.to_string().contains("even")));
        assert!(parse_size("720p").is_err());
        assert_eq!(parse_fps("29.97").ok(), Some(FrameRate::new(30000, 1001)));
        assert!(parse_fps("0").is_err());
    }
}
