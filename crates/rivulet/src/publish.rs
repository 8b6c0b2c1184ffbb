//! `rivulet publish`: its flags. The session (encoding, publishing, the status line)
//! is `encoder::session`.

use std::path::PathBuf;

use clap::Args;
use encoder::session::{
    PublishOptions, PublishPlan, parse_bitrate, parse_fps, parse_size, parse_video_codec,
};
use source::FrameRate;

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

impl PublishArgs {
    /// The session these flags describe, checked.
    pub(crate) fn plan(self) -> anyhow::Result<PublishPlan> {
        let trust = match (self.tls_ca, self.tls_insecure) {
            (Some(ca), _) => Some(tls::ClientTrust::CaFile(ca)),
            (None, true) => Some(tls::ClientTrust::Insecure),
            (None, false) => None,
        };
        Ok(PublishOptions {
            test_pattern: self.test_pattern,
            inputs: self.inputs,
            size: self.size,
            fps: self.fps,
            bitrate: self.bitrate,
            audio_bitrate: self.audio_bitrate,
            video_codec: self.video_codec,
            preset: self.preset,
            profile: self.profile,
            keyframe_interval_ms: self.keyframe_interval_ms,
            looped: self.looped,
            no_audio: self.no_audio,
            name: self.name,
            duration: self.duration,
            trust,
        }
        .plan()?)
    }
}

/// Runs `rivulet publish` until the duration, the file's end, or `shutdown`.
pub(crate) async fn run(
    plan: PublishPlan,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    Ok(encoder::session::run(plan, shutdown).await?)
}
