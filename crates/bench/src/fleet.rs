//! `rivulet-bench fleet`: the simulation behind `docs/capacity.md`.
//!
//! A small CDN in network namespaces: one origin (`rivulet serve`, fed by an ffmpeg
//! publisher), one shield (`rivulet edge` in front of the origin) and N edges
//! (`rivulet edge` in front of the shield, or of the origin with `--no-shield`), each
//! in a host of its own on one bridge. A crowd of simulated LL-HLS players on a host of
//! their own spreads over the edges and the renditions (an ABR mix): each follows
//! blocking playlist reloads and fetches every preload-hinted part as it is produced.
//!
//! It prints what a capacity model needs: origin requests per object produced (goal:
//! exactly 1 through the shield), edge CPU and memory per 1,000 players, requests per
//! second per edge, and the players that stalled or fell behind live (goal 0).
//! Not a test: it asserts nothing. Needs root (network namespaces).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::{Reaped, clock_ticks_per_second, process_tree_ticks, rss_kib, tempfile_dir};

#[allow(dead_code, unreachable_pub)]
#[path = "../../rivulet/tests/common/netns.rs"]
mod netns;

#[derive(Args, Debug)]
pub(crate) struct FleetArgs {
    /// Simulated LL-HLS players, spread evenly over the edges and the renditions.
    #[arg(long, default_value_t = 4000)]
    pub(crate) viewers: usize,
    /// Edges (each a host of its own).
    #[arg(long, default_value_t = 8)]
    pub(crate) edges: usize,
    /// Seconds of measurement, after the players have started and warmed up.
    #[arg(long, default_value_t = 60)]
    pub(crate) seconds: u64,
    /// Seconds between the players' start and the measurement.
    #[arg(long, default_value_t = 10)]
    pub(crate) warmup_seconds: u64,
    /// The origin's renditions (`--renditions`); players spread over all of them.
    #[arg(long, default_value = "source,234p")]
    pub(crate) renditions: String,
    /// Edges fetch from the origin directly (no shield): shows the fan-in a shield saves.
    #[arg(long)]
    pub(crate) no_shield: bool,
}

const STREAM: &str = "fleet";
const KEY: &str = "fleet-key-0123456789";
const HTTP_PORT: u16 = 8080;
/// A player whose part arrivals pause for longer than this has stalled (a real player
/// holding ~1 s of buffer at the live edge would have shown a spinner).
const STALL: Duration = Duration::from_millis(1500);

fn host_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, i)
}

/// What one player saw.
#[derive(Default)]
struct PlayerRecord {
    parts: AtomicU64,
    bytes: AtomicU64,
    playlists: AtomicU64,
    errors: AtomicU64,
    /// Part arrival pauses longer than [`STALL`] during the measurement.
    stalls: AtomicU64,
    /// The latest part fetched, as `msn << 16 | part`.
    latest: AtomicU64,
}

struct Crowd {
    players: Vec<(usize, Arc<PlayerRecord>)>,
    /// Players count stalls only while this is set (not while the stream warms up).
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// One server process in its host, and the name it is reported under.
struct Node {
    name: String,
    addr: Ipv4Addr,
    process: Reaped,
}

pub(crate) fn run(args: FleetArgs) -> anyhow::Result<()> {
    if args.edges == 0 || args.edges > 64 || args.viewers == 0 {
        bail!("--edges must be 1..=64 and --viewers at least 1");
    }
    let renditions: Vec<String> = args
        .renditions
        .split(',')
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let exe = crate::rivulet_exe()?;
    let dir = tempfile_dir()?;

    let mut hosts: Vec<(String, Ipv4Addr)> = vec![
        ("origin".into(), host_addr(1)),
        ("shield".into(), host_addr(2)),
        ("players".into(), host_addr(200)),
    ];
    for i in 0..args.edges {
        hosts.push((format!("edge{i}"), host_addr(10 + i as u8)));
    }
    let host_refs: Vec<(&str, Ipv4Addr)> = hosts.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let lab = netns::Lab::create(&host_refs).map_err(|e| {
        anyhow::anyhow!("cannot make the network namespaces ({e}); run as root with iproute2")
    })?;

    // From here on, this thread and the runtime's threads (which inherit it) live on
    // the players' host (`ip netns exec` still starts the servers in their own).
    lab.enter("players").map_err(|e| anyhow::anyhow!(e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.viewers * 2)
        .timeout(Duration::from_secs(20))
        .build()?;

    let origin = start_origin(&lab, &exe, &dir, &renditions.join(","))?;
    let origin_url = format!("http://{}:{HTTP_PORT}", origin.addr);
    runtime
        .block_on(wait_for_http(&client, &origin_url))
        .context("the origin did not start")?;
    let shield = if args.no_shield {
        None
    } else {
        Some(start_edge(&lab, &exe, "shield", origin.addr)?)
    };
    let upstream = shield.as_ref().map_or(origin.addr, |s| s.addr);
    let edges = (0..args.edges)
        .map(|i| start_edge(&lab, &exe, &format!("edge{i}"), upstream))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let publisher = start_publisher(&lab)?;
    runtime
        .block_on(wait_for_stream(&client, &origin_url, &renditions))
        .context("the stream did not come up at the origin")?;
    println!(
        "fleet: 1 origin, {}, {} edges, {} players over {:?} (one stream, {} s warm-up, {} s measured)",
        if args.no_shield {
            "no shield"
        } else {
            "1 shield"
        },
        args.edges,
        args.viewers,
        renditions,
        args.warmup_seconds,
        args.seconds
    );

    // The servers' memory before any player: what a player adds is measured from here.
    let idle = Crowd {
        players: Vec::new(),
        measuring: Arc::new(AtomicBool::new(false)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let baseline = Snapshot::take(&runtime, &client, &origin, shield.as_ref(), &edges, &idle);
    let crowd = start_crowd(&runtime, &client, &edges, &renditions, args.viewers);
    std::thread::sleep(Duration::from_secs(args.warmup_seconds));

    let before = Snapshot::take(&runtime, &client, &origin, shield.as_ref(), &edges, &crowd);
    crowd.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let after = Snapshot::take(&runtime, &client, &origin, shield.as_ref(), &edges, &crowd);
    let elapsed = t0.elapsed().as_secs_f64();
    crowd.stop.store(true, Ordering::Relaxed);
    runtime.shutdown_timeout(Duration::from_secs(2));

    report(&args, &baseline, &before, &after, elapsed, &crowd);
    drop(publisher);
    drop((edges, shield, origin));
    let _ = std::fs::remove_dir_all(&dir);
    drop(lab);
    Ok(())
}

fn start_origin(
    lab: &netns::Lab,
    exe: &std::path::Path,
    dir: &std::path::Path,
    renditions: &str,
) -> anyhow::Result<Node> {
    let addr = lab.addr("origin");
    let process = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &lab.namespace("origin")])
            .arg(exe)
            .arg("serve")
            .args(["--rtmp-listen", "127.0.0.1:1935"])
            .args(["--http-listen", &format!("{addr}:{HTTP_PORT}")])
            .args(["--renditions", renditions])
            .args(["--stream", &format!("{STREAM}={KEY}")])
            .arg("--data-dir")
            .arg(dir.join("origin"))
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve in the origin's namespace")?,
    );
    Ok(Node {
        name: "origin".into(),
        addr,
        process,
    })
}

fn start_edge(
    lab: &netns::Lab,
    exe: &std::path::Path,
    host: &str,
    upstream: Ipv4Addr,
) -> anyhow::Result<Node> {
    let addr = lab.addr(host);
    // Every player comes from one address (the players' host), and the edges from
    // one each: lift the per-client caps a real edge keeps.
    let process = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &lab.namespace(host)])
            .arg(exe)
            .arg("edge")
            .args(["--http-listen", &format!("{addr}:{HTTP_PORT}")])
            .args(["--origin", &format!("http://{upstream}:{HTTP_PORT}")])
            .args(["--http-max-connections-per-client", "100000"])
            .args(["--max-held-per-client", "100000"])
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("start rivulet edge on {host}"))?,
    );
    Ok(Node {
        name: host.to_owned(),
        addr,
        process,
    })
}

/// ffmpeg on the origin's host: 640x360 at 30 fps, 2 s GOP, 1 Mbit/s, AAC.
fn start_publisher(lab: &netns::Lab) -> anyhow::Result<Reaped> {
    Ok(Reaped(
        Command::new("ip")
            .args(["netns", "exec", &lab.namespace("origin")])
            .args(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
            .args(["-b:v", "1000k", "-c:a", "aac", "-b:a", "64k", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:1935/live/{KEY}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("start ffmpeg (scripts/setup.sh installs it)")?,
    ))
}

/// Waits until `base` answers HTTP (its `/metrics`).
async fn wait_for_http(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/metrics")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing answers at {base} after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits until every rendition's playlist has a preload hint at the origin.
async fn wait_for_stream(
    client: &reqwest::Client,
    origin: &str,
    renditions: &[String],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for r in renditions {
        let url = format!("{origin}/live/{STREAM}/{r}/index.m3u8");
        loop {
            if let Ok(resp) = client.get(&url).send().await
                && resp.status().is_success()
                && let Ok(text) = resp.text().await
                && super::soak::preload_hint(&text).is_some()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("no playlist with a preload hint at {url} after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// Player `i` watches edge `i % edges` and rendition `(i / edges) % renditions`, so
/// that every edge serves every rendition.
fn start_crowd(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    edges: &[Node],
    renditions: &[String],
    viewers: usize,
) -> Crowd {
    let crowd = Crowd {
        players: Vec::with_capacity(viewers),
        measuring: Arc::new(AtomicBool::new(false)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let mut crowd = crowd;
    for i in 0..viewers {
        let edge = &edges[i % edges.len()];
        let rendition = (i / edges.len()) % renditions.len();
        let base = format!(
            "http://{}:{HTTP_PORT}/live/{STREAM}/{}",
            edge.addr, renditions[rendition]
        );
        let record = Arc::new(PlayerRecord::default());
        crowd.players.push((rendition, record.clone()));
        runtime.spawn(player(
            client.clone(),
            base,
            record,
            crowd.measuring.clone(),
            crowd.stop.clone(),
        ));
    }
    crowd
}

/// An LL-HLS player's requests: the preload-hinted part, then a blocking reload for
/// the part after it; a plain reload after a failure.
async fn player(
    client: reqwest::Client,
    base: String,
    record: Arc<PlayerRecord>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let playlist_url = format!("{base}/index.m3u8");
    let mut hint = None;
    let mut last_part = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Some((msn, part)) = hint else {
            hint = fetch_hint(&client, &playlist_url, &record).await;
            if hint.is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            continue;
        };
        match client
            .get(format!("{base}/part-{msn}-{part}.m4s"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(body) => {
                    let now = Instant::now();
                    if measuring.load(Ordering::Relaxed) && now - last_part > STALL {
                        record.stalls.fetch_add(1, Ordering::Relaxed);
                    }
                    last_part = now;
                    record.parts.fetch_add(1, Ordering::Relaxed);
                    record.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    record
                        .latest
                        .store(msn << 16 | u64::from(part), Ordering::Relaxed);
                }
                Err(_) => {
                    record.errors.fetch_add(1, Ordering::Relaxed);
                }
            },
            _ => {
                record.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let url = format!("{playlist_url}?_HLS_msn={msn}&_HLS_part={part}");
        hint = fetch_hint(&client, &url, &record).await;
        if hint.is_none() {
            record.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn fetch_hint(
    client: &reqwest::Client,
    url: &str,
    record: &PlayerRecord,
) -> Option<(u64, u32)> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let text = response.text().await.ok()?;
    record.playlists.fetch_add(1, Ordering::Relaxed);
    super::soak::preload_hint(&text)
}

/// A server process's counters at one moment.
#[derive(Clone, Default)]
struct NodeSample {
    cpu_ticks: u64,
    rss_kib: u64,
    metrics: String,
}

impl NodeSample {
    /// The sum of a Prometheus counter's samples whose labels contain `labels`.
    fn counter(&self, name: &str, labels: &str) -> f64 {
        self.metrics
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter(|l| l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

struct Snapshot {
    origin: NodeSample,
    shield: Option<NodeSample>,
    edges: Vec<NodeSample>,
    parts: u64,
    bytes: u64,
    playlists: u64,
    errors: u64,
}

impl Snapshot {
    fn take(
        runtime: &tokio::runtime::Runtime,
        client: &reqwest::Client,
        origin: &Node,
        shield: Option<&Node>,
        edges: &[Node],
        crowd: &Crowd,
    ) -> Snapshot {
        let sample = |node: &Node| NodeSample {
            cpu_ticks: process_tree_ticks(node.process.0.id()).unwrap_or(0),
            rss_kib: rss_kib(node.process.0.id()).unwrap_or(0),
            metrics: runtime.block_on(async {
                let url = format!("http://{}:{HTTP_PORT}/metrics", node.addr);
                match client.get(&url).send().await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => {
                        eprintln!("fleet: no metrics from {}: {e}", node.name);
                        String::new()
                    }
                }
            }),
        };
        let sum = |f: fn(&PlayerRecord) -> &AtomicU64| {
            crowd
                .players
                .iter()
                .map(|(_, p)| f(p).load(Ordering::Relaxed))
                .sum()
        };
        Snapshot {
            origin: sample(origin),
            shield: shield.map(sample),
            edges: edges.iter().map(sample).collect(),
            parts: sum(|p| &p.parts),
            bytes: sum(|p| &p.bytes),
            playlists: sum(|p| &p.playlists),
            errors: sum(|p| &p.errors),
        }
    }
}

fn report(
    args: &FleetArgs,
    baseline: &Snapshot,
    before: &Snapshot,
    after: &Snapshot,
    elapsed: f64,
    crowd: &Crowd,
) {
    let delta = |a: &NodeSample, b: &NodeSample, name: &str, labels: &str| {
        b.counter(name, labels) - a.counter(name, labels)
    };
    let cores = |a: &NodeSample, b: &NodeSample| {
        b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / clock_ticks_per_second() / elapsed
    };
    let (o0, o1) = (&before.origin, &after.origin);
    let produced = delta(o0, o1, "origin_parts_total", "");
    let part_requests = delta(o0, o1, "origin_requests_total", "kind=\"part")
        + delta(o0, o1, "origin_requests_total", "kind=\"segment\"");
    let playlist_requests = delta(o0, o1, "origin_requests_total", "kind=\"playlist\"");
    println!(
        "origin: {:.2} cores, RSS {} KiB; {produced:.0} parts produced, {part_requests:.0} part/segment requests = {:.2} per part (goal: 1 through a shield), {playlist_requests:.0} playlist requests ({:.1}/s)",
        cores(o0, o1),
        o1.rss_kib,
        part_requests / produced.max(1.0),
        playlist_requests / elapsed
    );
    if let (Some(s0), Some(s1)) = (&before.shield, &after.shield) {
        println!(
            "shield: {:.2} cores, RSS {} KiB, {:.0} requests/s from the edges, {:.0} upstream fetches/s",
            cores(s0, s1),
            s1.rss_kib,
            delta(s0, s1, "edge_requests_total", "") / elapsed,
            delta(s0, s1, "edge_upstream_fetches_total", "") / elapsed
        );
    }
    let per_edge = args.viewers as f64 / args.edges as f64;
    let mut edge_cores = 0.0;
    let mut edge_rss_added = 0i64;
    let mut edge_requests = 0.0;
    for (i, (e0, e1)) in before.edges.iter().zip(&after.edges).enumerate() {
        let c = cores(e0, e1);
        let requests = delta(e0, e1, "edge_requests_total", "");
        edge_cores += c;
        edge_rss_added += e1.rss_kib as i64 - baseline.edges[i].rss_kib as i64;
        edge_requests += requests;
        println!(
            "edge{i}: {c:.2} cores, RSS {} KiB ({} KiB idle), {:.0} requests/s, {:.0} upstream fetches/s",
            e1.rss_kib,
            baseline.edges[i].rss_kib,
            requests / elapsed,
            delta(e0, e1, "edge_upstream_fetches_total", "") / elapsed
        );
    }
    let thousands = args.viewers as f64 / 1000.0;
    println!(
        "edges: {:.3} cores and {:.1} MiB (over idle) per 1,000 players ({per_edge:.0} players per edge), {:.0} requests/s per 1,000 players, {:.0} requests per core-second",
        edge_cores / thousands,
        edge_rss_added as f64 / 1024.0 / thousands,
        edge_requests / elapsed / thousands,
        edge_requests / elapsed / edge_cores.max(1e-9)
    );

    // Behind live: more than one segment behind the furthest player of the same rendition.
    let mut furthest = std::collections::HashMap::new();
    for (r, p) in &crowd.players {
        let msn = p.latest.load(Ordering::Relaxed) >> 16;
        let f = furthest.entry(*r).or_insert(0);
        *f = (*f).max(msn);
    }
    let behind = crowd
        .players
        .iter()
        .filter(|(r, p)| (p.latest.load(Ordering::Relaxed) >> 16) + 1 < furthest[r])
        .count();
    let stalled = crowd
        .players
        .iter()
        .filter(|(_, p)| p.stalls.load(Ordering::Relaxed) > 0)
        .count();
    println!(
        "players: {:.0} parts/s ({:.1} Mbit/s), {:.0} playlists/s, {} errors; {stalled} stalled (a pause over {:.1} s), {behind} more than a segment behind live (goal 0 and 0)",
        (after.parts - before.parts) as f64 / elapsed,
        (after.bytes - before.bytes) as f64 * 8.0 / 1e6 / elapsed,
        (after.playlists - before.playlists) as f64 / elapsed,
        after.errors - before.errors,
        STALL.as_secs_f64()
    );
}
