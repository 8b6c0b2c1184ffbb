//! `rivulet-bench codecs`: what an HEVC or AV1 rung costs beside an H.264 rung at the
//! same size and bitrate. The same test-pattern pictures (made before the clock
//! starts) go through each rung encoder of the transcoder (`encoder::LibavVideoEncoder`
//! with the ladder's settings, keyframes forced every 2 s) and the publisher's AV1
//! encoder; the CPU time of each encode is measured from the process's own counters.

use std::time::Instant;

use anyhow::Context;
use clap::Args;
use encoder::{EncodedPicture, LibavVideoEncoder, VideoEncode, VideoEncoderConfig};
use media::VideoCodec;
use source::{FrameRate, Picture, Source, SourceFrame, TestPattern, TestPatternConfig};

#[derive(Args, Debug)]
pub(crate) struct CodecsBenchArgs {
    /// Seconds of 30 fps pictures per encoder.
    #[arg(long, default_value_t = 6)]
    pub(crate) seconds: u32,
    /// Picture size, WxH.
    #[arg(long, default_value = "640x360")]
    pub(crate) size: String,
    /// Target bitrate of every encoder (bits/s).
    #[arg(long, default_value_t = 730_000)]
    pub(crate) bitrate: u64,
}

pub(crate) fn run(args: CodecsBenchArgs) -> anyhow::Result<()> {
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .context("--size is WIDTHxHEIGHT")?;
    let rate = FrameRate::new(30, 1);
    let mut pattern = TestPattern::new(TestPatternConfig {
        width: w,
        height: h,
        frame_rate: rate,
        name: "codecs".into(),
        start_unix_ms: 1_800_000_000_000,
        audio: false,
    })?;
    let mut pictures: Vec<(i64, Picture)> = Vec::new();
    while pictures.len() < (args.seconds * 30) as usize {
        match pattern.next_frame()? {
            Some(SourceFrame::Video(v)) => pictures.push((v.pts.ticks, v.picture)),
            Some(SourceFrame::Audio(_)) => {}
            None => break,
        }
    }
    let media_seconds = pictures.len() as f64 / 30.0;
    println!(
        "codecs: {} pictures of {w}x{h} at 30 fps, {} kbit/s, keyframes every 2 s",
        pictures.len(),
        args.bitrate / 1000
    );
    let runs: [(&str, VideoCodec, Option<&str>); 4] = [
        ("H.264 rung (libx264 veryfast)", VideoCodec::Avc, None),
        ("HEVC rung (libx265 veryfast)", VideoCodec::Hevc, None),
        (
            "AV1 rung (libaom-av1 realtime, cpu-used 8)",
            VideoCodec::Av1,
            Some("libaom-av1"),
        ),
        ("AV1 publisher (libsvtav1 preset 11)", VideoCodec::Av1, None),
    ];
    let mut reference = None;
    for (label, codec, name) in runs {
        let mut config = VideoEncoderConfig::new(w, h, rate, args.bitrate);
        config.codec = codec;
        config.encoder = name.map(str::to_owned);
        if codec == VideoCodec::Av1 && name.is_none() {
            config.gop = Some(60);
        }
        let mut encoder = LibavVideoEncoder::new(config)?;
        let mut out: Vec<EncodedPicture> = Vec::new();
        let (cpu0, t0) = (own_cpu_seconds()?, Instant::now());
        let mut bytes = 0usize;
        for (pts, picture) in &pictures {
            let keyframe = pts.rem_euclid(180_000) == 0;
            encoder.encode(picture, *pts, keyframe, &mut out)?;
            bytes += out.drain(..).map(|p| p.frame.data.len()).sum::<usize>();
        }
        encoder.flush(&mut out)?;
        bytes += out.drain(..).map(|p| p.frame.data.len()).sum::<usize>();
        let cpu = own_cpu_seconds()? - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        let per_media_second = cpu / media_seconds;
        let reference = *reference.get_or_insert(per_media_second);
        println!(
            "  {label:44} {:6.3} CPU s per media s ({:5.1} % of a core in real time), wall {:5.1} fps, {:5} kbit/s out, ratio to H.264 {:.2}",
            per_media_second,
            per_media_second * 100.0,
            pictures.len() as f64 / wall,
            (bytes as f64 * 8.0 / media_seconds / 1000.0).round(),
            per_media_second / reference.max(f64::EPSILON)
        );
    }
    Ok(())
}

/// User + system CPU seconds of this process (every thread) so far.
fn own_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line; `after` starts at field 3.
    let field = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field(14) + field(15)) as f64 / 100.0)
}
