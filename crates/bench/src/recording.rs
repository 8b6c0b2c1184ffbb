//! `rivulet-bench recording`: what recording costs. The same server and the same
//! CBR publishers run twice, recording off then on (into a local directory, DVR on):
//! the server's CPU, the live part-availability delay (p50/p99) of each run, and with
//! recording on the write amplification (bytes in the store / bytes of init segments
//! and segments handed to the recorder) and the thumbnail's cost per request, cached
//! and uncached.
//!
//! The streams are packaged as published (no transcoding, whose CPU would drown the
//! recorder's): `--streams 4` at 6 Mbit/s records the bytes of four 6 Mbit/s
//! renditions, more than a 6 Mbit/s stream's ladder of four.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::{
    Reaped, cbr_input, clock_ticks_per_second, free_port, http_get, http_get_bytes,
    process_tree_ticks, quantile, tempfile_dir, wait_for_port,
};

#[derive(Args, Debug)]
pub(crate) struct RecordingBenchArgs {
    /// Streams (each one rendition, as published) recorded at once.
    #[arg(long, default_value_t = 4)]
    pub(crate) streams: u32,
    /// Video bitrate of each, in Mbit/s (CBR with filler).
    #[arg(long, default_value_t = 6)]
    pub(crate) mbps: u32,
    /// Seconds of CPU measurement per configuration (after a warm-up of 4 s).
    #[arg(long, default_value_t = 30)]
    pub(crate) seconds: u64,
}

/// One configuration's figures.
struct Run {
    cpu_cores: f64,
    delay_p50: Option<f64>,
    delay_p99: Option<f64>,
    /// With recording on: bytes handed to the recorder, bytes in the store.
    produced: Option<u64>,
    stored: Option<u64>,
    /// With recording on: thumbnail latencies (uncached, cached), seconds.
    thumbnails: Option<(Vec<f64>, Vec<f64>)>,
}

pub(crate) fn run(args: RecordingBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let input = cbr_input(&dir, args.mbps)?;
    println!(
        "{} stream(s) of {} Mbit/s packaged as published, {} s per configuration",
        args.streams, args.mbps, args.seconds
    );
    let off = one_run(&dir, &input, &args, false)?;
    let on = one_run(&dir, &input, &args, true)?;

    let per_core = |c: f64| c * 100.0;
    println!();
    println!("server CPU (all streams):");
    println!(
        "  recording off  {:6.2} % of a core",
        per_core(off.cpu_cores)
    );
    println!(
        "  recording on   {:6.2} % of a core",
        per_core(on.cpu_cores)
    );
    println!(
        "  extra          {:+6.2} % of a core   (goal <= 2 %), ratio on/off {:.3}",
        per_core(on.cpu_cores - off.cpu_cores),
        on.cpu_cores / off.cpu_cores.max(f64::EPSILON)
    );
    if let (Some(produced), Some(stored)) = (on.produced, on.stored) {
        println!(
            "write amplification: {stored} bytes in the store / {produced} bytes produced = {:.4}   (goal <= 1.05)",
            stored as f64 / produced.max(1) as f64
        );
    }
    println!("part availability delay (last frame of a part at ingest -> part servable):");
    for (label, r) in [("off", &off), ("on ", &on)] {
        match (r.delay_p50, r.delay_p99) {
            (Some(p50), Some(p99)) => println!(
                "  recording {label}  p50 {:.3} ms   p99 {:.3} ms",
                p50 * 1e3,
                p99 * 1e3
            ),
            _ => println!("  recording {label}  no parts measured"),
        }
    }
    if let (Some(a), Some(b)) = (off.delay_p99, on.delay_p99) {
        println!(
            "  p99 ratio on/off {:.3}   (goal: no change)",
            b / a.max(f64::EPSILON)
        );
    }
    if let Some((uncached, cached)) = &on.thumbnails {
        let ms = |v: &[f64]| median(v) * 1e3;
        println!(
            "thumbnail (JPEG of the latest keyframe of a 1280x720 stream, default size), per request: uncached {:.1} ms (median of {}), cached {:.2} ms (median of {}), ratio {:.0}",
            ms(uncached),
            uncached.len(),
            ms(cached),
            cached.len(),
            median(uncached) / median(cached).max(f64::EPSILON)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn one_run(
    dir: &Path,
    input: &Path,
    args: &RecordingBenchArgs,
    record: bool,
) -> anyhow::Result<Run> {
    let rtmp_port = free_port()?;
    let http_port = free_port()?;
    let store = dir.join(if record { "store-on" } else { "store-off" });
    let mut cmd = Command::new(crate::rivulet_exe()?);
    cmd.args([
        "serve",
        "--rtmp-listen",
        &format!("127.0.0.1:{rtmp_port}"),
        "--http-listen",
        &format!("127.0.0.1:{http_port}"),
        "--renditions",
        "source",
        "--grace-period-ms",
        "1000",
        &format!("--record-default={record}"),
        "--record-store",
    ])
    .arg(&store)
    .arg("--data-dir")
    .arg(dir.join(if record { "data-on" } else { "data-off" }))
    .env("RIVULET_LOG", "warn");
    for i in 0..args.streams {
        cmd.args(["--stream", &format!("rec{i}=rec-key-{i}")]);
    }
    let server = Reaped(
        cmd.stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(rtmp_port)?;
    wait_for_port(http_port)?;
    println!(
        "recording {}: publishing ...",
        if record { "on" } else { "off" }
    );
    let publishers = crate::copy_publishers(rtmp_port, "live/rec-key-", input, args.streams)?;
    std::thread::sleep(Duration::from_secs(4));
    let pid = server.0.id();
    let start_ticks = process_tree_ticks(pid)?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let ticks = process_tree_ticks(pid)? - start_ticks;
    let cpu_cores = ticks as f64 / clock_ticks_per_second() / start.elapsed().as_secs_f64();
    let metrics = http_get(http_port, "/metrics").unwrap_or_default();
    let thumbnails = if record {
        Some(thumbnails(http_port)?)
    } else {
        None
    };
    drop(publishers);
    let (produced, stored) = if record {
        // The grace period, then the writers finish (playlists and manifests).
        let deadline = Instant::now() + Duration::from_secs(20);
        while manifests(&store) < args.streams as usize {
            if Instant::now() > deadline {
                bail!("the recordings did not finish within 20 s of the end of the streams");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let page = http_get(http_port, "/metrics").unwrap_or_default();
        (
            counter(&page, "record_bytes_written_total"),
            Some(dir_bytes(&store)),
        )
    } else {
        (None, None)
    };
    drop(server);
    Ok(Run {
        cpu_cores,
        delay_p50: quantile(&metrics, "part_availability_delay_seconds", "0.5"),
        delay_p99: quantile(&metrics, "part_availability_delay_seconds", "0.99"),
        produced,
        stored,
        thumbnails,
    })
}

/// Ten rounds, each after a new keyframe (2 s apart): the first request decodes
/// (uncached), the next five are answered from the cache.
fn thumbnails(http_port: u16) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut uncached, mut cached) = (Vec::new(), Vec::new());
    let path = "/live/rec0/thumbnail.jpg";
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(2100));
        let t = Instant::now();
        let jpeg = http_get_bytes(http_port, path)?;
        uncached.push(t.elapsed().as_secs_f64());
        if !jpeg.starts_with(&[0xff, 0xd8]) {
            bail!("the thumbnail is not a JPEG ({} bytes)", jpeg.len());
        }
        for _ in 0..5 {
            let t = Instant::now();
            http_get_bytes(http_port, path)?;
            cached.push(t.elapsed().as_secs_f64());
        }
    }
    Ok((uncached, cached))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// A counter's value on a /metrics page.
fn counter(page: &str, name: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Finished recordings (manifests) in the store.
fn manifests(store: &Path) -> usize {
    std::fs::read_dir(store)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().join("recording.json").exists())
                .count()
        })
        .unwrap_or(0)
}

/// Bytes of every file below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
