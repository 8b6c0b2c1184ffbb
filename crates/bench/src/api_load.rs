//! `rivulet bench api`: the metadata API's reads and writes per second on SQLite and
//! PostgreSQL (a `rivulet meta` process, loaded over loopback HTTP), and the latency
//! the key check adds to a publish: in-process, remote uncached, remote cached.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use access::{PublishRequest, StreamKeys};
use anyhow::{Context, bail};
use clap::Args;
use meta::remote::{KeyCacheConfig, RemoteConfig, RemoteKeys, RemoteMeta};
use meta::{MetaStore, StreamName};
use serde_json::json;

use super::{Reaped, free_port, tempfile_dir, wait_for_port};

#[derive(Args, Debug)]
pub(crate) struct ApiBenchArgs {
    /// Seconds of each throughput measurement.
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
    /// Concurrent client connections in the throughput measurements.
    #[arg(long, default_value_t = 16)]
    pub(crate) connections: usize,
    /// Streams in the database.
    #[arg(long, default_value_t = 100)]
    pub(crate) streams: usize,
    /// Key checks per latency measurement.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) checks: usize,
    /// A PostgreSQL server to use (a user that may create databases): the bench
    /// creates a database of its own on it. [default: a throwaway cluster started with
    /// Debian's initdb, as the tests do]
    #[arg(long, value_name = "URL")]
    pub(crate) postgres_url: Option<String>,
    /// Skip PostgreSQL.
    #[arg(long)]
    pub(crate) no_postgres: bool,
}

const TOKEN: &str = "bench-admin-token-0123";

pub(crate) fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.streams == 0 || args.checks == 0 || args.seconds == 0 {
        bail!("--seconds, --connections, --streams and --checks must be more than 0");
    }
    let dir = tempfile_dir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let duration = Duration::from_secs(args.seconds);
    println!(
        "API throughput: rivulet meta over loopback HTTP, {} connections, {} s per figure, {} streams",
        args.connections, args.seconds, args.streams
    );
    let mut rows = Vec::new();

    // SQLite: the default, a file in the data directory.
    let sqlite_dir = dir.join("sqlite");
    let (sqlite_meta, sqlite_base) = start_meta(&sqlite_dir, None)?;
    let keys = runtime.block_on(create_streams(&sqlite_base, args.streams))?;
    rows.push((
        "SQLite".to_owned(),
        runtime.block_on(throughput(&sqlite_base, &args, duration))?,
    ));

    // PostgreSQL: a given server, or a throwaway cluster.
    let mut postgres_note = None;
    if args.no_postgres {
        postgres_note = Some("skipped (--no-postgres)".to_owned());
    } else {
        let url = match &args.postgres_url {
            Some(url) => Ok(url.clone()),
            None => pgtest::PgCluster::start(&pgtest::PgOptions::default())
                .and_then(pgtest::PgCluster::stop_at_exit)
                .context("cannot start a throwaway PostgreSQL (or pass --postgres-url)"),
        };
        match url {
            Ok(url) => {
                let (pg_meta, pg_base) = start_meta(&dir.join("postgres"), Some(&url))?;
                runtime.block_on(create_streams(&pg_base, args.streams))?;
                rows.push((
                    "PostgreSQL".to_owned(),
                    runtime.block_on(throughput(&pg_base, &args, duration))?,
                ));
                drop(pg_meta);
            }
            Err(e) => postgres_note = Some(format!("SKIPPED: {e:#}")),
        }
    }
    println!(
        "  {:<12} {:>12} {:>13} {:>8}",
        "database", "reads/s", "writes/s", "errors"
    );
    for (db, t) in &rows {
        println!(
            "  {:<12} {:>12.0} {:>13.0} {:>8}",
            db, t.reads, t.writes, t.errors
        );
    }
    if let Some(note) = postgres_note {
        println!("  PostgreSQL   {note}");
    }
    println!(
        "  (reads: GET /api/streams/NAME; writes: PATCH /api/streams/NAME with a new title, admin token)"
    );

    // Key checks: in-process against a store of the same streams, and remote against
    // the SQLite `rivulet meta` above, without and with the cache.
    let in_process = runtime.block_on(in_process_latency(&dir.join("inproc"), &args))?;
    let remote_uncached = runtime.block_on(remote_latency(
        &sqlite_base,
        &keys,
        args.checks,
        KeyCacheConfig {
            ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            ..Default::default()
        },
    ))?;
    let remote_cached = runtime.block_on(remote_latency(
        &sqlite_base,
        &keys,
        args.checks,
        KeyCacheConfig::default(),
    ))?;
    drop(sqlite_meta);
    println!(
        "Key check latency on the publish path ({} checks each, {} keys):",
        args.checks,
        keys.len()
    );
    println!("  {:<36} {:>10} {:>10} {:>10}", "path", "p50", "p99", "max");
    for (name, l) in [
        ("in-process store (serve, SQLite)", &in_process),
        ("remote meta, uncached (HTTP)", &remote_uncached),
        ("remote meta, cached (30 s TTL)", &remote_cached),
    ] {
        println!(
            "  {:<36} {:>10} {:>10} {:>10}",
            name,
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
    }
    let verdict = if remote_cached.p99 <= Duration::from_millis(5) {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "  goal: a cached key check adds at most 5 ms to a publish: p99 {} -> {verdict}",
        ms(remote_cached.p99)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

struct Throughput {
    reads: f64,
    writes: f64,
    errors: u64,
}

struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Starts `rivulet meta` on a free port; returns it and its base URL.
fn start_meta(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<(Reaped, String)> {
    std::fs::create_dir_all(data_dir)?;
    let port = free_port()?;
    let mut command = Command::new(crate::rivulet_exe()?);
    command
        .args(["meta", "--http-listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-token", TOKEN])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RIVULET_LOG", "warn")
        .env_remove("RIVULET_DATABASE_URL")
        .stdout(Stdio::null());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let child = Reaped(command.spawn().context("start rivulet meta")?);
    wait_for_port(port)?;
    Ok((child, format!("http://127.0.0.1:{port}")))
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// Creates streams `s0…` through the API; returns their keys (name, key).
async fn create_streams(base: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let client = http()?;
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("s{i}");
        let response = client
            .post(format!("{base}/api/streams"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "title": "bench", "tags": ["bench"]}))
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!(
                "creating a stream failed: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let created: serde_json::Value = response.json().await?;
        let key = created["key"]
            .as_str()
            .context("no key in the answer")?
            .to_owned();
        keys.push((name, key));
    }
    Ok(keys)
}

/// Reads, then writes, each for `duration`.
async fn throughput(
    base: &str,
    args: &ApiBenchArgs,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let (reads, read_errors) = hammer(base, args, duration, false).await?;
    let (writes, write_errors) = hammer(base, args, duration, true).await?;
    Ok(Throughput {
        reads,
        writes,
        errors: read_errors + write_errors,
    })
}

/// `connections` clients in a loop for `duration`; returns (successes/s, errors).
async fn hammer(
    base: &str,
    args: &ApiBenchArgs,
    duration: Duration,
    write: bool,
) -> anyhow::Result<(f64, u64)> {
    let client = http()?;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (client, done, errors) = (client.clone(), done.clone(), errors.clone());
        let base = base.to_owned();
        let streams = args.streams;
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                let url = format!("{base}/api/streams/s{}", i % streams);
                let request = if write {
                    client
                        .patch(&url)
                        .bearer_auth(TOKEN)
                        .json(&json!({"title": format!("title {i}")}))
                } else {
                    client.get(&url)
                };
                // A request is done when its whole answer is read.
                let ok = match request.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                let counter = if ok { &done } else { &errors };
                counter.fetch_add(1, Ordering::Relaxed);
                i += stride(streams);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((
        done.load(Ordering::Relaxed) as f64 / elapsed,
        errors.load(Ordering::Relaxed),
    ))
}

/// Steps through the streams so that concurrent clients touch different rows.
fn stride(streams: usize) -> usize {
    if streams > 7 { 7 } else { 1 }
}

/// The store's own key check (`serve` without --meta-url).
async fn in_process_latency(dir: &std::path::Path, args: &ApiBenchArgs) -> anyhow::Result<Latency> {
    std::fs::create_dir_all(dir)?;
    let store = MetaStore::connect(None, dir).await?;
    let mut keys = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let key = meta::generate_key();
        let name = StreamName::parse(&format!("s{i}")).map_err(|e| anyhow::anyhow!(e))?;
        store.upsert_with_key(&name, &key).await?;
        keys.push((name.to_string(), key));
    }
    let latency = measure(&store, &keys, args.checks).await;
    store.close().await;
    latency
}

/// [`RemoteKeys`] against the server at `base`, warmed with one check per key.
async fn remote_latency(
    base: &str,
    keys: &[(String, String)],
    checks: usize,
    cache: KeyCacheConfig,
) -> anyhow::Result<Latency> {
    let remote = RemoteMeta::new(base, TOKEN, RemoteConfig::default())?;
    let checker = RemoteKeys::new(remote, cache);
    for (_, key) in keys {
        let _ = checker.check(key).await;
    }
    measure(&checker, keys, checks).await
}

/// `checks` key checks round-robin over `keys`; every one must name its stream.
/// Stops after a minute whatever the count, so that a stuck server cannot hold the
/// bench.
async fn measure(
    checker: &dyn StreamKeys,
    keys: &[(String, String)],
    checks: usize,
) -> anyhow::Result<Latency> {
    let peer = "127.0.0.1:5000".parse()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut times = Vec::with_capacity(checks);
    for i in 0..checks {
        if Instant::now() > deadline {
            break;
        }
        let (name, key) = &keys[i % keys.len()];
        let request = PublishRequest {
            app: "live".into(),
            stream_key: key.clone(),
            peer,
        };
        let start = Instant::now();
        let answer = checker.authorize(&request).await;
        times.push(start.elapsed());
        match answer {
            Ok(stream) if &stream == name => {}
            other => bail!("the key of '{name}' was answered {other:?}"),
        }
    }
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1));
        times.get(i).copied().unwrap_or_default()
    };
    Ok(Latency {
        p50: at(0.50),
        p99: at(0.99),
        max: times.last().copied().unwrap_or_default(),
    })
}
