//! `rivulet-bench srt`: what SRT ingest costs against RTMP. One `rivulet serve`
//! (passthrough only, as published) takes the same CBR input from ffmpeg publishers
//! copying it in real time, first over RTMP (FLV), then over SRT (MPEG-TS in SRT,
//! ffmpeg's libsrt caller): the server's CPU per stream for each, and the ratio
//! (goal: SRT at most 1.5 × RTMP). The protocols take turns for `--rounds` rounds so
//! that a drift of the machine's load hits both alike, and the server's CPU while idle
//! (measured first) is taken off before dividing by the streams: what a stream costs,
//! not what the process costs. Use a release build for figures.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::{
    Reaped, cbr_input, clock_ticks_per_second, copy_publishers, free_port, process_tree_ticks,
    tempfile_dir, wait_for_port,
};

#[derive(Args, Debug)]
pub(crate) struct SrtBenchArgs {
    /// Streams published at once over each protocol.
    #[arg(long, default_value_t = 2)]
    pub(crate) streams: u32,
    /// Video bitrate of each, in Mbit/s (CBR with filler).
    #[arg(long, default_value_t = 6)]
    pub(crate) mbps: u32,
    /// Seconds of CPU measurement per protocol and round (after a warm-up of 4 s).
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,
    /// Rounds of RTMP then SRT.
    #[arg(long, default_value_t = 2)]
    pub(crate) rounds: u32,
}

pub(crate) fn run(args: SrtBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let input = cbr_input(&dir, args.mbps)?;
    let (rtmp_port, http_port, srt_port) = (free_port()?, free_port()?, free_port()?);
    let mut cmd = Command::new(crate::rivulet_exe()?);
    cmd.args([
        "serve",
        "--renditions",
        "source",
        "--no-webrtc",
        "--no-analytics",
    ])
    .args(["--rtmp-listen", &format!("127.0.0.1:{rtmp_port}")])
    .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
    .args(["--srt-listen", &format!("127.0.0.1:{srt_port}")])
    .arg("--data-dir")
    .arg(dir.join("data"))
    .env("RIVULET_LOG", "warn");
    for i in 0..args.streams {
        cmd.args(["--stream", &format!("rtmp{i}=rtmp-key-{i}")]);
        cmd.args(["--stream", &format!("srt{i}=srt-key-{i}")]);
    }
    let serve = Reaped(
        cmd.stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(rtmp_port)?;
    let pid = serve.0.id();

    let idle = cpu_while(pid, args.seconds)?;
    let (mut rtmp, mut srt) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        rtmp.push({
            let _publishers = copy_publishers(rtmp_port, "live/rtmp-key-", &input, args.streams)?;
            cpu_while(pid, args.seconds)?
        });
        srt.push({
            let _publishers = srt_publishers(srt_port, &input, args.streams)?;
            cpu_while(pid, args.seconds)?
        });
        // An SRT caller killed mid-stream is noticed by the peer-idle timeout (5 s):
        // the next round's warm-up covers it.
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let per_stream = |cores: f64| (cores - idle).max(0.0) / f64::from(args.streams) * 100.0;
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|c| format!("{:.3}", per_stream(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (rtmp_mean, srt_mean) = (per_stream(mean(&rtmp)), per_stream(mean(&srt)));
    println!();
    println!(
        "CPU of rivulet serve per {} Mbit/s passthrough stream ({} streams, {} s per round, idle {:.3} % of a core taken off):",
        args.mbps,
        args.streams,
        args.seconds,
        idle * 100.0
    );
    println!(
        "  RTMP  {rtmp_mean:6.3} % of a core  (rounds: {})",
        rounds(&rtmp)
    );
    println!(
        "  SRT   {srt_mean:6.3} % of a core  (rounds: {})",
        rounds(&srt)
    );
    println!(
        "  SRT / RTMP = {:.2}  (goal <= 1.5)",
        srt_mean / rtmp_mean.max(f64::EPSILON)
    );
    // Both protocols' streams must have been packaged, or the figures mean nothing.
    for name in ["rtmp0", "srt0"] {
        let playlist = crate::http_get(http_port, &format!("/live/{name}/source/index.m3u8"))
            .unwrap_or_default();
        anyhow::ensure!(
            playlist.contains("#EXTINF"),
            "{name} was not packaged (see the log above): the figures are void"
        );
    }
    Ok(())
}

/// The server's CPU (cores) over `seconds`, after a warm-up of 4 s.
fn cpu_while(pid: u32, seconds: u64) -> anyhow::Result<f64> {
    std::thread::sleep(Duration::from_secs(4));
    let start = process_tree_ticks(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let ticks = process_tree_ticks(pid)? - start;
    Ok(ticks as f64 / clock_ticks_per_second() / t0.elapsed().as_secs_f64())
}

/// `streams` ffmpeg publishers copying `input` in real time, looped, as MPEG-TS over
/// SRT to `srt://127.0.0.1:PORT?streamid=publish:srt-key-{i}`.
fn srt_publishers(port: u16, input: &Path, streams: u32) -> anyhow::Result<Vec<Reaped>> {
    (0..streams)
        .map(|i| {
            Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-re"])
                .args(["-stream_loop", "-1", "-i"])
                .arg(input)
                .args(["-c", "copy", "-f", "mpegts"])
                .arg(format!(
                    "srt://127.0.0.1:{port}?streamid=publish:srt-key-{i}&pkt_size=1316"
                ))
                .stdin(Stdio::null())
                .spawn()
                .map(Reaped)
                .context("start ffmpeg (with libsrt)")
        })
        .collect()
}
