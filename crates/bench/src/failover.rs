//! `rivulet bench failover`: hot A/B pipelines on loopback (ingests on 127.0.0.11 and
//! 127.0.0.12, our publisher feeding both, two edges: edge-1 prefers A, edge-2
//! prefers B), one LL-HLS viewer per edge fetching every part, and three events:
//! A killed (SIGKILL: connections reset), A started again (edge-1 moves back once A
//! has caught up), B frozen (SIGSTOP: connections stay open and silent, as with a cut
//! link). For each: the stall the viewer saw, the time until the edge answered from
//! the other upstream, and the requests the new upstream's origin got meanwhile
//! compared with its steady rate afterwards.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::viewer::{self, ViewerControl, ViewerLog};
use super::{Reaped, tempfile_dir};

#[derive(Args, Debug)]
pub(crate) struct FailoverBenchArgs {
    /// Seconds of playing before, between and after the events.
    #[arg(long, default_value_t = 6)]
    pub(crate) seconds: u64,
}

/// Seconds after an event over which its figures are taken.
const WINDOW: Duration = Duration::from_secs(4);

struct Ingest {
    rtmp: String,
    http: String,
    data: std::path::PathBuf,
}

impl Ingest {
    fn new(host: &'static str, dir: &std::path::Path) -> anyhow::Result<Self> {
        let port = |h: &str| -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind((h, 0))?.local_addr()?.port())
        };
        Ok(Self {
            rtmp: format!("{host}:{}", port(host)?),
            http: format!("{host}:{}", port(host)?),
            data: dir.join(host),
        })
    }

    fn start(&self) -> anyhow::Result<Reaped> {
        let child = Command::new(crate::rivulet_exe()?)
            .args([
                "serve",
                "--rtmp-listen",
                &self.rtmp,
                "--http-listen",
                &self.http,
            ])
            .args(["--stream", "ab=ab-key", "--renditions", "source"])
            .args(["--no-analytics", "--grace-period-ms", "60000", "--data-dir"])
            .arg(&self.data)
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?;
        wait_for(&self.http)?;
        Ok(Reaped(child))
    }

    /// `origin_requests_total` for `/live/…`, summed over kinds.
    fn requests(&self) -> Option<f64> {
        let page = get_sync(&self.http, "/metrics").ok()?;
        Some(
            page.lines()
                .filter(|l| l.starts_with("origin_requests_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }
}

/// A `rivulet edge` on `host` in front of `upstreams` (the first preferred).
fn start_edge(
    exe: &std::path::Path,
    host: &str,
    upstreams: [&str; 2],
) -> anyhow::Result<(Reaped, String)> {
    let listen = format!(
        "{host}:{}",
        std::net::TcpListener::bind((host, 0))?.local_addr()?.port()
    );
    let child = Command::new(exe)
        .args(["edge", "--http-listen", &listen])
        .args(["--origin", &format!("http://{}", upstreams[0])])
        .args(["--origin", &format!("http://{}", upstreams[1])])
        .env("RIVULET_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("start rivulet edge")?;
    wait_for(&listen)?;
    Ok((Reaped(child), listen))
}

/// Prints the table: for each event (A killed, A restarted, B frozen, at `marks`), the
/// stall, the switch time and the load on the upstream taking over; then each viewer.
fn report(
    logs: &[ViewerLog],
    [killed, restarted, frozen]: [Duration; 3],
    loads: &[(f64, f64, f64)],
    back: Option<Duration>,
) {
    println!(
        "{:<34} {:>10} {:>12} {:>22} {:>16}",
        "event", "stall ms", "switch ms", "new upstream requests", "steady per 4 s"
    );
    let events = [
        (
            "A killed (SIGKILL), edge-1 to B",
            &logs[0],
            killed,
            Some(1),
            loads[0],
        ),
        (
            "A started again, edge-1 back to A",
            &logs[0],
            restarted,
            Some(0),
            loads[1],
        ),
        (
            "B frozen (SIGSTOP), edge-2 to A",
            &logs[1],
            frozen,
            Some(1),
            loads[2],
        ),
    ];
    for (name, log, at, to, (start, switch, steady)) in events {
        let stall = log
            .worst_stall_near(at, WINDOW * 3)
            .map_or("-".to_owned(), |s| format!("{:.0}", s.ms.max(0.0)));
        let switched = log
            .playlists
            .iter()
            .find(|p| p.at >= at && p.upstream == to)
            .map_or("-".to_owned(), |p| {
                format!("{:.0}", (p.at - at).as_secs_f64() * 1000.0)
            });
        let (during, after) = if start > 0.0 || switch > 0.0 {
            (
                format!("{:.0}", switch - start),
                format!("{:.0}", steady - switch),
            )
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        println!("{name:<34} {stall:>10} {switched:>12} {during:>22} {after:>16}");
    }
    match back {
        None => println!("edge-1 did not come back to A within 40 s of its restart"),
        Some(after) => println!(
            "edge-1 back on A {:.1} s after A was started again (the publisher reconnects with backoff)",
            after.as_secs_f64()
        ),
    }
    for (name, log) in ["viewer 1 (edge-1)", "viewer 2 (edge-2)"].iter().zip(logs) {
        let worst = log.worst_stall().map_or("-".to_owned(), |s| {
            format!("{:.0} ms (part {}.{})", s.ms, s.msn, s.part)
        });
        let from = |u: u32| log.parts.iter().filter(|p| p.upstream == Some(u)).count();
        println!(
            "{name}: {} parts ({} from upstream 0, {} from upstream 1), {} failed responses, {} regressions, {} timeline holes, worst stall {worst}, lag growth {:.0} ms, switches at {:?}",
            log.parts.len(),
            from(0),
            from(1),
            log.failures.len(),
            log.regressions().len(),
            log.timeline_gaps(900).len(),
            log.lag_growth_ms(),
            log.switches()
                .iter()
                .map(|(at, _, to)| format!(
                    "{:.1} s -> {}",
                    at.as_secs_f64(),
                    to.map_or(-1, i64::from)
                ))
                .collect::<Vec<_>>()
        );
        for f in &log.failures {
            println!("  failed at {:.1} s: {}", f.at.as_secs_f64(), f.what);
        }
    }
    println!(
        "stall: the wait for a part beyond its duration (worst within 12 s of the event); \
         switch: event to the first playlist from the other upstream; requests: origin \
         requests at the upstream taking over in the 4 s after the event, and in the 4 s after that"
    );
}

/// One LL-HLS viewer per edge, fetching every part, until told to stop.
fn start_viewers(
    runtime: &tokio::runtime::Runtime,
    edges: [&String; 2],
    clock: Instant,
) -> anyhow::Result<Vec<(Arc<ViewerControl>, tokio::task::JoinHandle<ViewerLog>)>> {
    edges
        .into_iter()
        .map(|e| {
            let control = Arc::new(ViewerControl::default());
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?;
            let task = runtime.spawn(viewer::watch(
                client,
                format!("http://{e}/live/ab/source"),
                control.clone(),
                clock,
                Duration::from_secs(30),
            ));
            Ok((control, task))
        })
        .collect()
}

pub(crate) fn run(args: FailoverBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let exe = crate::rivulet_exe()?;
    let a = Ingest::new("127.0.0.11", &dir)?;
    let b = Ingest::new("127.0.0.12", &dir)?;
    let mut a_process = Some(a.start()?);
    let b_process = b.start()?;
    let _publisher = Reaped(
        Command::new(&exe)
            .args(["publish", "--test-pattern", "--size", "320x180"])
            .args(["--bitrate", "400k"])
            .arg(format!("rtmp://{}/live/ab-key", a.rtmp))
            .arg(format!("rtmp://{}/live/ab-key", b.rtmp))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start rivulet publish")?,
    );
    let (_edge1, edge1) = start_edge(&exe, "127.0.0.21", [&a.http, &b.http])?;
    let (_edge2, edge2) = start_edge(&exe, "127.0.0.22", [&b.http, &a.http])?;
    println!(
        "A/B failover on loopback: ingests {} (A) and {} (B), passthrough 320x180 30 fps; \
         edge-1 {edge1} prefers A, edge-2 {edge2} prefers B",
        a.http, b.http
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let clock = Instant::now();
    let viewers = start_viewers(&runtime, [&edge1, &edge2], clock)?;
    let (one, two) = (viewers[0].0.clone(), viewers[1].0.clone());
    let wait = |what: &str, within: Duration, done: &dyn Fn() -> bool| -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while !done() {
            if Instant::now() > deadline {
                bail!("{what} did not happen within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    wait("both viewers playing", Duration::from_secs(30), &|| {
        one.parts.load(Ordering::Relaxed) >= 3 && two.parts.load(Ordering::Relaxed) >= 3
    })?;
    let pause = Duration::from_secs(args.seconds);
    std::thread::sleep(pause);

    // Origin requests at the upstream taking over: (at event, +WINDOW, +2·WINDOW).
    let mut loads = Vec::new();
    let sample = |i: &Ingest| -> (f64, f64, f64) {
        let start = i.requests().unwrap_or(0.0);
        std::thread::sleep(WINDOW);
        let switch = i.requests().unwrap_or(0.0);
        std::thread::sleep(WINDOW);
        let steady = i.requests().unwrap_or(0.0);
        (start, switch, steady)
    };

    let killed = clock.elapsed();
    // A crash, not a shutdown: SIGKILL (Reaped's SIGTERM would let A close gracefully).
    if let Some(mut p) = a_process.take() {
        let _ = p.0.kill();
        let _ = p.0.wait();
    }
    loads.push(sample(&b));
    std::thread::sleep(pause.saturating_sub(2 * WINDOW));

    let restarted = clock.elapsed();
    a_process = Some(a.start()?);
    let back = wait("edge-1 back on A", Duration::from_secs(40), &|| {
        one.current_upstream()
            .is_some_and(|(u, streak)| u == 0 && streak >= 3)
    });
    let caught_up = clock.elapsed();
    loads.push((0.0, 0.0, 0.0));
    std::thread::sleep(pause);

    let frozen = clock.elapsed();
    let stopped = Command::new("kill")
        .args(["-STOP", &b_process.0.id().to_string()])
        .status()?;
    if !stopped.success() {
        bail!("could not SIGSTOP B");
    }
    loads.push(sample(&a));
    std::thread::sleep(pause.saturating_sub(2 * WINDOW));
    for (c, _) in &viewers {
        c.stop.store(true, Ordering::Relaxed);
    }
    let logs: Vec<ViewerLog> = viewers
        .into_iter()
        .map(|(_, task)| runtime.block_on(task))
        .collect::<Result<_, _>>()?;
    // Let the frozen B die with the rest.
    let _ = Command::new("kill")
        .args(["-CONT", &b_process.0.id().to_string()])
        .status();

    let back = back.is_ok().then(|| caught_up.saturating_sub(restarted));
    report(&logs, [killed, restarted, frozen], &loads, back);
    drop(a_process);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn wait_for(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn get_sync(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}
