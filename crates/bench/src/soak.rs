//! `rivulet-bench soak --minutes N`: a long run that shows whether anything leaks.
//!
//! `rivulet serve` with a few streams whose publishers (ffmpeg) leave and come back
//! every few minutes, `rivulet edge` in front of it, a crowd of simulated LL-HLS
//! viewers through the edge (blocking playlist reloads, each preload-hinted part
//! fetched as it is produced), and API and beacon traffic beside them. Every report
//! interval it prints, for the origin and the edge: resident memory, open file
//! descriptors, threads, runtime tasks, held requests and HTTP connections; and the
//! viewers' parts and errors. At the end it compares the last report with the first one
//! after the warm-up (goal: RSS within +5 %, descriptors flat, no viewer error).
//! Not a test: it asserts nothing and runs for as long as it is told.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::{Reaped, free_port, http_get, rss_kib, tempfile_dir, wait_for_port};

#[derive(Args, Debug)]
pub(crate) struct SoakArgs {
    /// How long to run.
    #[arg(long, default_value_t = 60)]
    pub(crate) minutes: u64,
    /// Streams published at once.
    #[arg(long, default_value_t = 3)]
    pub(crate) streams: usize,
    /// Simulated LL-HLS viewers through the edge, spread over the streams.
    #[arg(long, default_value_t = 500)]
    pub(crate) viewers: usize,
    /// Each publisher leaves and comes back after this long (staggered per stream).
    #[arg(long, default_value_t = 180)]
    pub(crate) churn_seconds: u64,
    /// Seconds between reports.
    #[arg(long, default_value_t = 60)]
    pub(crate) report_seconds: u64,
    /// Reports at the start left out of the comparison: the edge keeps media for its
    /// max-age (300 s), so its cache fills for the first five minutes (60-minute run
    /// of 2026-12-03: edge RSS 89 → 166 MB over minutes 1–6, then +4 % to minute 60).
    #[arg(long, default_value_t = 6)]
    pub(crate) warmup_reports: usize,
    /// Transcode a one-rung ladder beside the passthrough (more CPU; the default
    /// passthrough soaks the serving side).
    #[arg(long)]
    pub(crate) ladder: bool,
}

const ADMIN_TOKEN: &str = "soak-admin-token-0123456789";

/// What the simulated viewers did, added up.
#[derive(Default)]
struct ViewerStats {
    parts: AtomicU64,
    bytes: AtomicU64,
    playlists: AtomicU64,
    errors: AtomicU64,
    /// The first errors, for the report.
    first_errors: std::sync::Mutex<Vec<String>>,
}

impl ViewerStats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 10 {
            first.push(what);
        }
    }
}

/// One sample of a server process.
#[derive(Clone, Copy, Debug, Default)]
struct ProcessSample {
    rss_kib: u64,
    fds: u64,
    threads: u64,
    tasks: f64,
    held: f64,
    connections: f64,
}

fn sample(pid: u32, http_port: u16) -> ProcessSample {
    let metrics = http_get(http_port, "/metrics").unwrap_or_default();
    let gauge = |name: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    ProcessSample {
        rss_kib: rss_kib(pid).unwrap_or(0),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        threads: std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0),
        tasks: gauge("rivulet_runtime_tasks"),
        held: gauge("origin_held_requests"),
        connections: gauge("http_connections"),
    }
}

pub(crate) fn run(args: SoakArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let (rtmp_port, origin_port, edge_port) = (free_port()?, free_port()?, free_port()?);
    let (origin, edge) = start_servers(&args, &dir, rtmp_port, origin_port, edge_port)?;
    println!(
        "soak: {} min, {} streams (publishers leave every {} s), {} viewers through the edge, API and beacons; report every {} s",
        args.minutes, args.streams, args.churn_seconds, args.viewers, args.report_seconds
    );

    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..args.streams)
        .map(|i| {
            let stop = stop.clone();
            // Staggered: the streams do not all leave at once.
            let first = args.churn_seconds * (i as u64 + 1) / args.streams.max(1) as u64;
            let churn = args.churn_seconds;
            std::thread::spawn(move || churning_publisher(rtmp_port, i, first, churn, &stop))
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stats = Arc::new(ViewerStats::default());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.viewers * 2)
        .timeout(Duration::from_secs(20))
        .build()?;
    for v in 0..args.viewers {
        let base = format!(
            "http://127.0.0.1:{edge_port}/live/soak{}/source",
            v % args.streams.max(1)
        );
        runtime.spawn(viewer(client.clone(), base, stop.clone(), stats.clone()));
    }
    runtime.spawn(api_traffic(
        client.clone(),
        origin_port,
        args.streams,
        args.viewers,
        stop.clone(),
    ));

    let reports = report_until_end(&args, &origin, &edge, origin_port, edge_port, &stats);
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        let _ = p.join();
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    summarize(&reports, args.warmup_reports, &stats);
    drop((edge, origin));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `rivulet serve` with the soak's streams declared, and `rivulet edge` in front of it.
fn start_servers(
    args: &SoakArgs,
    dir: &std::path::Path,
    rtmp_port: u16,
    origin_port: u16,
    edge_port: u16,
) -> anyhow::Result<(Reaped, Reaped)> {
    let exe = crate::rivulet_exe()?;
    let mut serve = Command::new(&exe);
    serve
        .arg("serve")
        .args(["--rtmp-listen", &format!("127.0.0.1:{rtmp_port}")])
        .args(["--http-listen", &format!("127.0.0.1:{origin_port}")])
        .args(["--admin-token", ADMIN_TOKEN, "--grace-period-ms", "20000"])
        .args([
            "--renditions",
            if args.ladder { "source,234p" } else { "source" },
        ])
        .arg("--data-dir")
        .arg(dir.join("data"));
    for i in 0..args.streams {
        serve.args(["--stream", &format!("soak{i}=soak-key-{i}-0123456789")]);
    }
    let origin = Reaped(
        serve
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(origin_port)?;
    // The crowd comes from one address: lift the per-client caps a real edge has.
    let edge = Reaped(
        Command::new(&exe)
            .arg("edge")
            .args(["--http-listen", &format!("127.0.0.1:{edge_port}")])
            .args(["--origin", &format!("http://127.0.0.1:{origin_port}")])
            .args(["--http-max-connections-per-client", "100000"])
            .args(["--max-held-per-client", "100000"])
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet edge")?,
    );
    wait_for_port(edge_port)?;
    Ok((origin, edge))
}

/// Samples both servers every report interval until the soak's time is up, printing a
/// row each time; returns the samples.
fn report_until_end(
    args: &SoakArgs,
    origin: &Reaped,
    edge: &Reaped,
    origin_port: u16,
    edge_port: u16,
    stats: &ViewerStats,
) -> Vec<(ProcessSample, ProcessSample)> {
    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let mut reports: Vec<(ProcessSample, ProcessSample)> = Vec::new();
    println!(
        "{:>6} | {:>9} {:>5} {:>4} {:>6} {:>5} {:>6} | {:>9} {:>5} {:>4} {:>6} {:>6} | {:>9} {:>9} {:>7}",
        "min",
        "origin KiB",
        "fds",
        "thr",
        "tasks",
        "held",
        "conns",
        "edge KiB",
        "fds",
        "thr",
        "tasks",
        "conns",
        "parts",
        "playlists",
        "errors"
    );
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_secs(args.report_seconds)
                .min(end.saturating_duration_since(Instant::now())),
        );
        let o = sample(origin.0.id(), origin_port);
        let e = sample(edge.0.id(), edge_port);
        println!(
            "{:>6.1} | {:>9} {:>5} {:>4} {:>6.0} {:>5.0} {:>6.0} | {:>9} {:>5} {:>4} {:>6.0} {:>6.0} | {:>9} {:>9} {:>7}",
            started.elapsed().as_secs_f64() / 60.0,
            o.rss_kib,
            o.fds,
            o.threads,
            o.tasks,
            o.held,
            o.connections,
            e.rss_kib,
            e.fds,
            e.threads,
            e.tasks,
            e.connections,
            stats.parts.load(Ordering::Relaxed),
            stats.playlists.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
        );
        reports.push((o, e));
    }
    reports
}

/// The verdicts: memory growth after the warm-up, descriptors, viewer errors.
fn summarize(reports: &[(ProcessSample, ProcessSample)], warmup: usize, stats: &ViewerStats) {
    let (Some(first), Some(last)) = (
        reports.get(warmup.min(reports.len().saturating_sub(1))),
        reports.last(),
    ) else {
        println!("no report: run for longer than one report interval");
        return;
    };
    let growth = |a: u64, b: u64| (b as f64 - a as f64) * 100.0 / (a.max(1) as f64);
    for (name, a, b) in [("origin", first.0, last.0), ("edge", first.1, last.1)] {
        println!(
            "{name}: RSS {} -> {} KiB ({:+.1} %, goal <= +5 %), descriptors {} -> {} (goal flat), tasks {:.0} -> {:.0}, threads {} -> {}",
            a.rss_kib,
            b.rss_kib,
            growth(a.rss_kib, b.rss_kib),
            a.fds,
            b.fds,
            a.tasks,
            b.tasks,
            a.threads,
            b.threads
        );
    }
    println!(
        "viewers: {} parts ({:.1} MB), {} playlists, {} errors (goal 0)",
        stats.parts.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed) as f64 / 1e6,
        stats.playlists.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed)
    );
    for e in stats
        .first_errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("  error: {e}");
    }
}

/// Publishes stream `i` with ffmpeg for `first` seconds, then again and again for
/// `churn` seconds each, until `stop`.
fn churning_publisher(rtmp_port: u16, i: usize, first: u64, churn: u64, stop: &AtomicBool) {
    let mut run_for = first.max(5);
    while !stop.load(Ordering::Relaxed) {
        let child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &run_for.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-g",
                "60",
                "-keyint_min",
                "60",
                "-sc_threshold",
                "0",
                "-b:v",
                "300k",
            ])
            .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
            .arg(format!(
                "rtmp://127.0.0.1:{rtmp_port}/live/soak-key-{i}-0123456789"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("soak: cannot start ffmpeg (scripts/setup.sh installs it)");
            return;
        };
        let mut child = Reaped(child);
        // Until it ends by itself, or the soak does.
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(Some(_)) = child.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        run_for = churn.max(5);
    }
}

/// An LL-HLS player's requests: a blocking reload for the part after the last one, and
/// that part, fetched from the preload hint while it is produced.
async fn viewer(
    client: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
    stats: Arc<ViewerStats>,
) {
    let playlist_url = format!("{base}/index.m3u8");
    // The stream may still be starting: wait for a first playlist with a hint.
    let mut hint = loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(r) = client.get(&playlist_url).send().await
            && r.status().is_success()
            && let Ok(text) = r.text().await
            && let Some(hint) = preload_hint(&text)
        {
            break hint;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    while !stop.load(Ordering::Relaxed) {
        let (msn, part) = hint;
        match client
            .get(format!("{base}/part-{msn}-{part}.m4s"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(body) => {
                    stats.parts.fetch_add(1, Ordering::Relaxed);
                    stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                }
                Err(e) => stats.error(format!("part {msn}.{part}: body: {e}")),
            },
            Ok(r) => stats.error(format!("part {msn}.{part}: {}", r.status())),
            Err(e) => stats.error(format!("part {msn}.{part}: {e}")),
        }
        let url = format!("{playlist_url}?_HLS_msn={msn}&_HLS_part={part}");
        let next = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.ok().and_then(|t| preload_hint(&t)),
            Ok(r) => {
                stats.error(format!("playlist {msn}.{part}: {}", r.status()));
                None
            }
            Err(e) => {
                stats.error(format!("playlist {msn}.{part}: {e}"));
                None
            }
        };
        stats.playlists.fetch_add(1, Ordering::Relaxed);
        match next {
            Some(n) => hint = n,
            // Start again from a plain reload after a second.
            None => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Some(n) = client
                    .get(&playlist_url)
                    .send()
                    .await
                    .ok()
                    .and_then(|r| r.status().is_success().then_some(r))
                    .map(|r| r.text())
                    && let Some(n) = n.await.ok().and_then(|t| preload_hint(&t))
                {
                    hint = n;
                }
            }
        }
    }
}

/// The `(msn, part)` of `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-M-P.m4s"`.
pub(crate) fn preload_hint(playlist: &str) -> Option<(u64, u32)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:") && l.contains("TYPE=PART"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
    let name = uri
        .rsplit('/')
        .next()?
        .strip_prefix("part-")?
        .strip_suffix(".m4s")?;
    let (msn, part) = name.split_once('-')?;
    Some((msn.parse().ok()?, part.parse().ok()?))
}

/// Operators and players beside the viewers: the stream list every second, a title
/// change every 10 s, and a batch of QoE beacons every second.
async fn api_traffic(
    client: reqwest::Client,
    origin_port: u16,
    streams: usize,
    viewers: usize,
    stop: Arc<AtomicBool>,
) {
    let base = format!("http://127.0.0.1:{origin_port}");
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick += 1;
        let _ = client
            .get(format!("{base}/api/streams"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        if tick.is_multiple_of(10) {
            let stream = format!("soak{}", tick as usize % streams.max(1));
            let _ = client
                .patch(format!("{base}/api/streams/{stream}"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({ "title": format!("Soak {tick}") }))
                .send()
                .await;
        }
        // Every viewer reports about every ten seconds.
        let batch: Vec<_> = (0..viewers.div_ceil(10))
            .map(|k| {
                let v = (tick as usize * 7 + k) % viewers.max(1);
                serde_json::json!({
                    "stream": format!("soak{}", v % streams.max(1)),
                    "session_id": format!("soak-viewer-{v}"),
                    "rendition": "source",
                    "play_ms": 10_000.0,
                })
            })
            .collect();
        for chunk in batch.chunks(50) {
            let _ = client
                .post(format!("{base}/api/analytics/beacons"))
                .json(&serde_json::json!({ "beacons": chunk }))
                .send()
                .await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preload_hint_names_msn_and_part() {
        let playlist = "#EXTM3U\n#EXT-X-PART:DURATION=0.33,URI=\"part-7-2.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-7-3.m4s\"\n";
        assert_eq!(preload_hint(playlist), Some((7, 3)));
        assert_eq!(preload_hint("#EXTM3U\n"), None);
    }
}
