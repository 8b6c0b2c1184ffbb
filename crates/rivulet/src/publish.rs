//! `rivulet publish`: the test pattern or a media file, encoded live and published
//! over RTMP to one or more ingest URLs at once.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use encoder::publish::{PublishConfig, Publisher, UrlState, UrlStatus};
use encoder::{AudioEncoderConfig, EncoderConfig, LiveEncoder, LiveStats, VideoEncoderConfig};
use rtmp::PublishUrl;
use source::{FileSource, FileSourceConfig, FrameRate, Source, TestPattern, TestPatternConfig};

/// The options of `rivulet publish`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  rivulet publish --test-pattern rtmp://127.0.0.1:1935/live/KEY\n  rivulet publish --test-pattern --size 1920x1080 --fps 60 --bitrate 6M rtmp://a/live/KEY rtmp://b/live/KEY\n  rivulet publish talk.mp4 --loop rtmp://127.0.0.1:1935/live/KEY\n  rivulet publish --test-pattern --tls-ca server.crt rtmps://ingest.example.com:1936/live/KEY"
)]
pub(crate) struct PublishArgs {
    /// Publish the built-in test pattern (colour bars, clock, time strip, tone)
    /// instead of a file.
    #[arg(long)]
    pub(crate) test_pattern: bool,

    /// The media FILE (unless --test-pattern) followed by one or more RTMP URLs
    /// (rtmp://HOST[:PORT]/APP/STREAM_KEY, or rtmps://HOST[:PORT]/APP/STREAM_KEY
    /// with TLS, port 443 by default). Every URL gets the same packets.
    #[arg(value_name = "FILE|URL", required = true)]
    pub(crate) inputs: Vec<String>,

    /// Picture size WIDTHxHEIGHT. [default: 1280x720 for the test pattern, the
    /// file's own size for a file]
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub(crate) size: Option<(u32, u32)>,

    /// Frame rate of the test pattern (30, 29.97, 60, 30000/1001).
    #[arg(long, default_value = "30", value_parser = parse_fps)]
    pub(crate) fps: FrameRate,

    /// Video bitrate (bits/s; k and M suffixes).
    #[arg(long, default_value = "3M", value_parser = parse_bitrate)]
    pub(crate) bitrate: u64,

    /// Audio bitrate (bits/s; k and M suffixes).
    #[arg(long, default_value = "128k", value_parser = parse_bitrate)]
    pub(crate) audio_bitrate: u64,

    /// Video codec: h264 (libx264, classic RTMP), hevc (libx265) or av1 (libsvtav1),
    /// both over Enhanced RTMP.
    #[arg(long, default_value = "h264", value_parser = parse_video_codec)]
    pub(crate) video_codec: media::VideoCodec,

    /// x264 preset: ultrafast, superfast, veryfast, faster, fast, medium, slow.
    #[arg(long, default_value = "veryfast")]
    pub(crate) preset: String,

    /// H.264 profile: baseline, main or high.
    #[arg(long, default_value = "high")]
    pub(crate) profile: String,

    /// A keyframe wherever the timestamp crosses a multiple of this (ms): the
    /// server's segment target, so every segment starts with one.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub(crate) keyframe_interval_ms: u32,

    /// Play the file again from the start when it ends, timestamps continuing.
    #[arg(long = "loop")]
    pub(crate) looped: bool,

    /// Leave out the audio track.
    #[arg(long)]
    pub(crate) no_audio: bool,

    /// Text drawn on the test pattern. [default: rivulet]
    #[arg(long, default_value = "rivulet")]
    pub(crate) name: String,

    /// Stop after this many seconds (default: run until Ctrl-C, or the file's end).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) duration: Option<f64>,

    /// For rtmps:// URLs: trust the CA certificate (or the server's self-signed
    /// certificate) in this PEM file instead of the web's public authorities.
    #[arg(long, value_name = "FILE", conflicts_with = "tls_insecure")]
    pub(crate) tls_ca: Option<PathBuf>,

    /// For rtmps:// URLs: accept any server certificate. The connection is encrypted
    /// but the server is not authenticated: for tests and trusted networks only.
    #[arg(long)]
    pub(crate) tls_insecure: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not WIDTHxHEIGHT (example: 1280x720)"))?;
    let (w, h): (u32, u32) = (
        w.parse().map_err(|_| format!("'{w}' is not a width"))?,
        h.parse().map_err(|_| format!("'{h}' is not a height"))?,
    );
    if w < 64 || h < 64 || w > 7680 || h > 4320 || w % 2 == 1 || h % 2 == 1 {
        return Err(format!(
            "{w}x{h}: width and height must be even, between 64x64 and 7680x4320"
        ));
    }
    Ok((w, h))
}

fn parse_fps(s: &str) -> Result<FrameRate, String> {
    FrameRate::parse(s)
        .ok_or_else(|| format!("'{s}' is not a frame rate (examples: 30, 29.97, 30000/1001)"))
}

fn parse_video_codec(s: &str) -> Result<media::VideoCodec, String> {
    s.parse()
}

pub(crate) fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1_000.0),
        Some((i, 'm' | 'M')) => (&t[..i], 1_000_000.0),
        _ => (t, 1.0),
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a bitrate (examples: 800k, 3M, 2500000)"))?;
    let bits = (value * scale).round();
    if !(10_000.0..=200_000_000.0).contains(&bits) {
        return Err(format!("bitrate {s} is outside 10k..200M"));
    }
    Ok(bits as u64)
}

/// What to publish, resolved from the arguments.
pub(crate) struct PublishPlan {
    pub(crate) file: Option<PathBuf>,
    pub(crate) urls: Vec<PublishUrl>,
    pub(crate) args: PublishArgs,
}

impl PublishArgs {
    pub(crate) fn plan(self) -> anyhow::Result<PublishPlan> {
        let mut inputs = self.inputs.clone();
        let file = if self.test_pattern {
            None
        } else {
            if inputs.first().is_some_and(|i| i.contains("://")) {
                bail!(
                    "the first argument must be a media FILE, or add --test-pattern to publish the built-in pattern"
                );
            }
            let path = PathBuf::from(inputs.remove(0));
            if !path.exists() {
                bail!("{}: no such file", path.display());
            }
            Some(path)
        };
        if inputs.is_empty() {
            bail!("no RTMP URL given: add one or more rtmp://HOST[:PORT]/APP/STREAM_KEY");
        }
        let urls = inputs
            .iter()
            .map(|u| PublishUrl::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        if self.looped && file.is_none() {
            bail!("--loop applies to a file; the test pattern runs until stopped");
        }
        Ok(PublishPlan {
            file,
            urls,
            args: self,
        })
    }
}

/// Starts the live encoder for `plan`.
pub(crate) fn start_encoder(plan: &PublishPlan) -> LiveEncoder {
    let args = plan.args.clone();
    let file = plan.file.clone();
    let size = args.size;
    let make_source = move |start_unix_ms: u64| -> Result<Box<dyn Source>, source::SourceError> {
        Ok(match file {
            Some(path) => Box::new(FileSource::open(FileSourceConfig {
                path,
                looped: args.looped,
                size,
                start_unix_ms,
            })?),
            None => {
                let (width, height) = size.unwrap_or((1280, 720));
                Box::new(TestPattern::new(TestPatternConfig {
                    width,
                    height,
                    frame_rate: args.fps,
                    name: args.name.clone(),
                    start_unix_ms,
                    audio: !args.no_audio,
                })?)
            }
        })
    };
    let args = plan.args.clone();
    let make_config = move |video: Option<source::VideoFormat>,
                            audio: Option<source::AudioFormat>| {
        EncoderConfig {
            video: video.map(|v| {
                let mut c = VideoEncoderConfig::new(v.width, v.height, v.frame_rate, args.bitrate);
                c.codec = args.video_codec;
                c.preset = args.preset.clone();
                c.profile = args.profile.clone();
                c
            }),
            audio: audio
                .filter(|_| !args.no_audio)
                .map(|a| AudioEncoderConfig {
                    sample_rate: a.sample_rate,
                    channels: a.channels,
                    bitrate: args.audio_bitrate,
                }),
            keyframe_interval: Duration::from_millis(u64::from(args.keyframe_interval_ms.max(100))),
        }
    };
    LiveEncoder::start(make_source, make_config)
}

/// The publisher's settings: whom rtmps:// URLs trust.
fn publish_config(args: &PublishArgs) -> anyhow::Result<PublishConfig> {
    let trust = match (&args.tls_ca, args.tls_insecure) {
        (Some(ca), _) => Some(tls::ClientTrust::CaFile(ca.clone())),
        (None, true) => Some(tls::ClientTrust::Insecure),
        (None, false) => None,
    };
    let tls = match trust {
        Some(trust) => Some(tls::client_config(&trust).context("check --tls-ca")?),
        None => None,
    };
    Ok(PublishConfig {
        tls,
        ..PublishConfig::default()
    })
}

/// Runs `rivulet publish` until the duration, the file's end, or `shutdown`.
pub(crate) async fn run(
    plan: PublishPlan,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let shown: Vec<String> = plan.urls.iter().map(ToString::to_string).collect();
    let config = publish_config(&plan.args)?;
    let mut live = start_encoder(&plan);
    let stats = live.stats.clone();
    // Connect while the encoder produces its first frames (they are queued).
    let mut publisher = match Publisher::connect(plan.urls.clone(), config).await {
        Ok(p) => p,
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || live.join()).await;
            return Err(e).context("cannot start publishing");
        }
    };
    eprintln!("Publishing to {}", shown.join(", "));
    let started = Instant::now();
    let deadline = plan
        .args
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
        .context("encoder thread")?
        .context("encoding failed")?;
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The one-line live status: uptime, fps, bitrate, drops, each URL's state; a
/// progress bar for a file. Redrawn in place on a terminal, a line every 10 s in logs.
struct StatusLine {
    stats: Arc<LiveStats>,
    urls: Vec<Arc<UrlStatus>>,
    file: bool,
    terminal: bool,
    last: (Duration, u64, u64),
    printed: Duration,
}

impl StatusLine {
    fn new(stats: Arc<LiveStats>, urls: Vec<Arc<UrlStatus>>, file: bool) -> Self {
        Self {
            stats,
            urls,
            file,
            terminal: std::io::stderr().is_terminal(),
            last: (Duration::ZERO, 0, 0),
            printed: Duration::ZERO,
        }
    }

    fn line(&mut self, uptime: Duration) -> String {
        let frames = self.stats.video_frames.load(Ordering::Relaxed);
        let bytes = self.stats.bytes.load(Ordering::Relaxed);
        let (t0, f0, b0) = self.last;
        let dt = (uptime - t0).as_secs_f64().max(0.001);
        let fps = (frames - f0) as f64 / dt;
        let mbps = (bytes - b0) as f64 * 8.0 / dt / 1e6;
        self.last = (uptime, frames, bytes);
        let secs = uptime.as_secs();
        let mut line = format!(
            "{:02}:{:02}:{:02}  {fps:5.1} fps  {mbps:5.2} Mbit/s  dropped {}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            self.stats.dropped_frames.load(Ordering::Relaxed)
                + self.urls.iter().map(|u| u.dropped_frames()).sum::<u64>()
        );
        if self.file {
            let (pos, len) = (
                self.stats.position_ms.load(Ordering::Relaxed),
                self.stats.duration_ms.load(Ordering::Relaxed),
            );
            if pos >= 0 && len > 0 {
                let filled = (pos * 20 / len).clamp(0, 20) as usize;
                line.push_str(&format!(
                    "  [{}{}] {}/{}",
                    "#".repeat(filled),
                    ".".repeat(20 - filled),
                    clock(pos),
                    clock(len)
                ));
            }
        }
        for u in &self.urls {
            let state = match u.state() {
                UrlState::Connecting => "connecting".to_owned(),
                UrlState::Publishing => "publishing".to_owned(),
                UrlState::Retrying { error } => format!("retrying ({error})"),
                UrlState::Stopped => "stopped".to_owned(),
            };
            line.push_str(&format!("  | {} {state}", u.url));
        }
        line
    }

    fn print(&mut self, uptime: Duration) {
        let line = self.line(uptime);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else if uptime >= self.printed + Duration::from_secs(10) {
            self.printed = uptime;
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// The last line: averages over the whole run.
    fn finish(&mut self, uptime: Duration) {
        self.last = (Duration::ZERO, 0, 0);
        let line = self.line(uptime);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

fn clock(ms: i64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bitrates_sizes_and_rates() {
        assert_eq!(parse_bitrate("3M"), Ok(3_000_000));
        assert_eq!(parse_bitrate("800k"), Ok(800_000));
        assert_eq!(parse_bitrate("2.5M"), Ok(2_500_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("5").is_err());
        assert_eq!(parse_size("1280x720"), Ok((1280, 720)));
        assert!(parse_size("1281x720").unwrap_err().contains("even"));
        assert!(parse_size("720p").is_err());
        assert_eq!(parse_fps("29.97"), Ok(FrameRate::new(30000, 1001)));
        assert!(parse_fps("0").is_err());
    }
}
