//! `rivulet bench analytics`: how many delivery events one analytics process ingests
//! per second, and what emitting them costs a server that serves cached parts.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use analytics::{DeliveryBatch, DeliveryEvent, ObjectKind};
use anyhow::{Context, bail};
use clap::Args;

use super::{Reaped, free_port, http_get, tempfile_dir, wait_for_port};

#[derive(Args, Debug)]
pub(crate) struct AnalyticsBenchArgs {
    /// Seconds of each measurement (after a warm-up of 3 s).
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Cached parts requested per second in the serving comparison.
    #[arg(long, default_value_t = 400)]
    pub(crate) rate: u32,
    /// Rounds of the serving comparison (each: analytics off, emitting to a remote
    /// analytics server, analytics in-process), averaged.
    #[arg(long, default_value_t = 2)]
    pub(crate) rounds: u32,
}

pub(crate) fn run(args: AnalyticsBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let events = sample_events(200_000);

    // 1. In-process: the aggregator, GeoIP and raw buffering, without HTTP or JSON.
    let rate = runtime.block_on(in_process_rate(&dir, &events))?;
    println!("ingest, in-process (aggregation + country look-up + raw buffer, one thread):");
    println!("  {:.0} events/s", rate);

    // 2. Over HTTP into `rivulet analytics`: JSON batches as servers send them.
    let an_port = free_port()?;
    let analytics = Reaped(
        Command::new(crate::rivulet_exe()?)
            .args([
                "analytics",
                "--http-listen",
                &format!("127.0.0.1:{an_port}"),
                "--analytics-token",
                EVENTS_TOKEN,
            ])
            .arg("--data-dir")
            .arg(dir.join("analytics"))
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet analytics")?,
    );
    wait_for_port(an_port)?;
    http_ingest(&runtime, &analytics, an_port, &events, &args)?;

    // 3. Serving cached parts with and without emission.
    serving_cost(&runtime, &dir, an_port, &args)?;
    drop(analytics);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Posts JSON batches to `rivulet analytics` on `an_port` for `args.seconds`, and
/// prints the rate accepted, the process's CPU and the raw events it stored.
fn http_ingest(
    runtime: &tokio::runtime::Runtime,
    analytics: &Reaped,
    an_port: u16,
    events: &[DeliveryEvent],
    args: &AnalyticsBenchArgs,
) -> anyhow::Result<()> {
    let bodies: Vec<String> = events
        .chunks(2_000)
        .take(50)
        .map(|c| serde_json::to_string(&DeliveryBatch { events: c.to_vec() }))
        .collect::<Result<_, _>>()?;
    let cpu0 = cpu_ns(analytics.0.id())?;
    let t0 = Instant::now();
    let accepted = runtime.block_on(post_batches(
        an_port,
        bodies,
        Duration::from_secs(args.seconds),
    ))?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ns(analytics.0.id())? - cpu0) as f64 / 1e9 / elapsed;
    // Let the last raw rows reach the database.
    std::thread::sleep(Duration::from_secs(3));
    let metrics = http_get(an_port, "/metrics").unwrap_or_default();
    println!(
        "ingest over HTTP (rivulet analytics, JSON batches of 2000 events, 4 connections, {} s):",
        args.seconds
    );
    println!(
        "  {:.0} events/s accepted, analytics process at {:.0} % of a core ({:.0} events per CPU-second)",
        accepted as f64 / elapsed,
        cpu * 100.0,
        accepted as f64 / elapsed / cpu.max(f64::EPSILON)
    );
    let ingested = metric(&metrics, "analytics_events_ingested_total");
    let not_stored = metric(&metrics, "analytics_raw_dropped_total");
    println!(
        "  raw events stored: {:.0} of {:.0} ({:.0} events/s over the run and 3 s after); the rest \
         did not fit the raw buffer while the database fell behind (the rollups count them all)",
        ingested - not_stored,
        ingested,
        (ingested - not_stored) / (elapsed + 3.0)
    );
    Ok(())
}

/// The CPU of `rivulet serve` serving cached parts with analytics off, emitting to the
/// remote analytics server on `an_port`, and in-process, alternated in rounds.
fn serving_cost(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    an_port: u16,
    args: &AnalyticsBenchArgs,
) -> anyhow::Result<()> {
    let input = dir.join("input.flv");
    make_input(&input)?;
    let mut cpu: [Vec<f64>; 3] = Default::default();
    let mut dropped = [0.0; 3];
    let modes = [
        "analytics off",
        "emit to remote analytics",
        "analytics in-process",
    ];
    for round in 0..args.rounds {
        for (m, name) in modes.iter().enumerate() {
            let extra: Vec<String> = match m {
                0 => vec!["--no-analytics".into()],
                1 => vec![
                    "--analytics-url".into(),
                    format!("http://127.0.0.1:{an_port}"),
                    "--analytics-token".into(),
                    EVENTS_TOKEN.into(),
                ],
                _ => vec![],
            };
            let (c, d) = serve_and_measure(runtime, dir, &input, &extra, args)
                .with_context(|| format!("round {}, {name}", round + 1))?;
            println!(
                "  round {} {name:<26} {:6.2} % of a core",
                round + 1,
                c * 100.0
            );
            cpu[m].push(c);
            dropped[m] += d;
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let base = mean(&cpu[0]);
    println!(
        "CPU of rivulet serve serving {} cached parts/s (mean of {} rounds, {} s each):",
        args.rate, args.rounds, args.seconds
    );
    for (m, name) in modes.iter().enumerate() {
        let c = mean(&cpu[m]);
        println!(
            "  {name:<26} {:6.2} % of a core   ratio to off {:.3}   events dropped {:.0}",
            c * 100.0,
            c / base.max(f64::EPSILON),
            dropped[m]
        );
    }
    println!("  (goal: emission adds at most 5 %: ratio of 'emit to remote analytics' <= 1.05)");
    Ok(())
}

/// `n` delivery events of 20 000 sessions on 4 streams, from addresses all over.
fn sample_events(n: usize) -> Vec<DeliveryEvent> {
    let now = analytics::now_ms();
    (0..n)
        .map(|i| {
            let session = i % 20_000;
            // A spread of public addresses: different countries, realistic look-ups.
            let ip = IpAddr::from([
                [8, 85, 133, 194, 41, 200, 31, 103][session % 8],
                (session / 8 % 250) as u8 + 1,
                (session / 2000) as u8,
                1,
            ]);
            DeliveryEvent {
                ts: now + (i / 1000) as i64,
                stream: format!("s{}", session % 4),
                rendition: Some(["1080p", "720p", "360p"][session % 3].into()),
                kind: ObjectKind::Part,
                status: 200,
                bytes: 40_000,
                ttfb_us: 300,
                client: ip,
                session: format!("session-{session}"),
                edge: "bench".into(),
                upstream: None,
                cmcd: Some(Box::new(analytics::cmcd::Cmcd {
                    br: Some(1_000),
                    ..Default::default()
                })),
            }
        })
        .collect()
}

async fn in_process_rate(dir: &std::path::Path, events: &[DeliveryEvent]) -> anyhow::Result<f64> {
    let data = dir.join("in-process");
    std::fs::create_dir_all(&data)?;
    let store = meta::MetaStore::connect(None, &data).await?;
    let geo = analytics::default_paths()
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| analytics::GeoIp::open(&p))
        .transpose()?
        .unwrap_or_else(analytics::GeoIp::none);
    let an = analytics::Analytics::new(
        analytics::AnalyticsStore::open(store.database()).await?,
        geo,
        analytics::AnalyticsConfig {
            raw_buffer: usize::MAX,
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    for chunk in events.chunks(1_000) {
        an.ingest_deliveries(chunk.iter().cloned());
    }
    let rate = events.len() as f64 / t0.elapsed().as_secs_f64();
    store.close().await;
    Ok(rate)
}

async fn post_batches(port: u16, bodies: Vec<String>, duration: Duration) -> anyhow::Result<u64> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/analytics/events");
    let accepted = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new(bodies);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (client, url, accepted, bodies) = (
            client.clone(),
            url.clone(),
            accepted.clone(),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                let body = bodies[i % bodies.len()].clone();
                i += 4;
                let r = client
                    .post(&url)
                    .bearer_auth(EVENTS_TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if r.status().as_u16() != 202 {
                    bail!("analytics answered {}", r.status());
                }
                accepted.fetch_add(2_000, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(accepted.load(Ordering::Relaxed))
}

/// A 1 Mbit/s 360p H.264/AAC file, looped by the publisher with `-c copy` (so that
/// publishing costs next to nothing).
fn make_input(path: &std::path::Path) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "1000k",
        ])
        .args([
            "-g",
            "60",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-f",
            "flv",
        ])
        .arg(path)
        .status()
        .context("ffmpeg is needed for the benchmark (scripts/setup.sh installs it)")?;
    if !status.success() {
        bail!("ffmpeg could not generate the benchmark input");
    }
    Ok(())
}

/// Starts `rivulet serve` with `extra`, publishes the input, requests its complete
/// parts at `args.rate` per second, and returns the server's CPU (fraction of a core)
/// over the measurement, and the events it dropped.
fn serve_and_measure(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    input: &std::path::Path,
    extra: &[String],
    args: &AnalyticsBenchArgs,
) -> anyhow::Result<(f64, f64)> {
    let (rtmp, http) = (free_port()?, free_port()?);
    let data = dir.join(format!("serve-{http}"));
    let serve = Reaped(
        Command::new(crate::rivulet_exe()?)
            .args(["serve", "--rtmp-listen", &format!("127.0.0.1:{rtmp}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .arg("--data-dir")
            .arg(&data)
            .args(["--stream", "b=bench-key-b"])
            .args(extra)
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(rtmp)?;
    let publisher = Reaped(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
            ])
            .arg(input)
            .args([
                "-c",
                "copy",
                "-f",
                "flv",
                &format!("rtmp://127.0.0.1:{rtmp}/live/bench-key-b"),
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start ffmpeg")?,
    );
    let base = format!("http://127.0.0.1:{http}/live/b/source");
    let cpu = runtime.block_on(async {
        let load = tokio::spawn(load(base, args.rate, Duration::from_secs(args.seconds + 5)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let cpu0 = cpu_ns(serve.0.id())?;
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let cpu = (cpu_ns(serve.0.id())? - cpu0) as f64 / 1e9 / t0.elapsed().as_secs_f64();
        let served = load.await??;
        if served == 0 {
            bail!("no part was served");
        }
        anyhow::Ok(cpu)
    })?;
    let metrics = http_get(http, "/metrics").unwrap_or_default();
    let dropped = metric(&metrics, "analytics_events_dropped_total");
    // The publisher first, so that it does not complain of a broken pipe.
    drop(publisher);
    drop(serve);
    let _ = std::fs::remove_dir_all(&data);
    Ok((cpu, dropped))
}

/// Requests complete parts of the newest segments at `rate` per second for `duration`,
/// as 500 sessions (CMCD header), and returns how many were answered 200.
async fn load(base: String, rate: u32, duration: Duration) -> anyhow::Result<u64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let parts: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let deadline = Instant::now() + duration;
    // Keep the list of complete parts fresh.
    let refresher = {
        let (client, base, parts) = (client.clone(), base.clone(), parts.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Ok(r) = client.get(format!("{base}/index.m3u8")).send().await
                    && let Ok(text) = r.text().await
                {
                    let list: Vec<String> = text
                        .lines()
                        .filter(|l| l.starts_with("#EXT-X-PART:"))
                        .filter_map(|l| {
                            l.split("URI=\"")
                                .nth(1)?
                                .split('"')
                                .next()
                                .map(str::to_owned)
                        })
                        .collect();
                    if !list.is_empty() {
                        *parts.lock().unwrap_or_else(|e| e.into_inner()) = list;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let served = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        let uri = {
            let list = parts.lock().unwrap_or_else(|e| e.into_inner());
            // The last listed part may still be growing: take the complete ones before it.
            if list.len() < 2 {
                continue;
            }
            list[list.len() - 2 - (n as usize % (list.len() - 1).min(6))].clone()
        };
        n += 1;
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (client, url, served) = (client.clone(), format!("{base}/{uri}"), served.clone());
        let sid = n % 500;
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(r) = client
                .get(url)
                .header("CMCD-Session", format!("sid=\"bench-{sid}\",st=l"))
                .header("CMCD-Object", "br=1000,d=334,ot=av")
                .send()
                .await
                && r.status().as_u16() == 200
                && r.bytes().await.is_ok()
            {
                served.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    refresher.abort();
    Ok(served.load(Ordering::Relaxed))
}

/// The sum of a counter's series on a /metrics page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

/// CPU time of all of `pid`'s threads, in nanoseconds (`/proc/PID/task/*/schedstat`):
/// finer than the 10 ms ticks of `/proc/PID/stat`, which matters for a difference of
/// a few percent. Threads that have exited are not counted; the server's threads
/// live as long as it does.
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("process {pid} is gone"))?
    {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// The events token of the analytics server the benchmark starts.
const EVENTS_TOKEN: &str = "bench-events-token";
