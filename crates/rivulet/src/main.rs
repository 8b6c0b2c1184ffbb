//! `rivulet`: one binary, one subcommand per role.

mod analytics_limits;
mod analytics_server;
mod api_limits;
mod config;
mod demo;
mod edge;
mod hooks_options;
mod http_options;
mod metadata;
mod publish;
mod recording;
mod restreams;
mod rtmp_limits;
mod serve;
mod srt_options;
mod streams;
mod systemd;
mod tls_options;
mod webrtc_options;

// The DVR routes are the origin's; `serve` merges them.
use origin::dvr;

use clap::{Parser, Subcommand};

use crate::config::{AnalyticsCmdArgs, MetaArgs, ServeArgs};

/// Rivulet: a self-hosted low-latency live streaming platform.
///
/// Publish with RTMP (OBS: Server rtmp://HOST:1935/live, Stream Key = the stream's key),
/// watch at http://HOST:8080/live/NAME/master.m3u8 with any HLS player.
#[derive(Parser, Debug)]
#[command(name = "rivulet", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Everything in one process with a built-in test-pattern publisher: prints the
    /// URL to watch. The quickest way to see Rivulet work.
    Demo(demo::DemoArgs),
    /// Run every role in one process: RTMP ingest, packager, HTTP origin, the
    /// metadata server (API, database) and the analytics server.
    Serve(ServeArgs),
    /// Encode the test pattern or a media file live and publish it over RTMP to one
    /// or more ingest URLs at once (the same packets to each).
    Publish(publish::PublishArgs),
    /// Run the metadata server alone: the /api over its database.
    Meta(MetaArgs),
    /// Run the analytics server alone: viewer and playback-quality figures from the
    /// delivery events other servers POST (`serve --analytics-url`) and from players.
    Analytics(AnalyticsCmdArgs),
    /// Create, list, change, re-key and delete streams through a server's API.
    Streams(streams::StreamsArgs),
    /// Run a CDN edge: a pull-through LL-HLS cache in front of one or more origins
    /// (or another edge), with request coalescing and origin failover.
    Edge(edge::EdgeArgs),
    /// Send each stream's viewers to one edge (redirects), spreading streams across
    /// healthy edges.
    Route(edge::RouteArgs),
    /// Benchmarks against a peer (nginx-rtmp, ffmpeg) run in the same go, printed as
    /// ratios: runs `rivulet-bench` (built beside this binary with
    /// `cargo build --release -p rivulet-bench`) with the same arguments.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Errors end the process with one line naming what was wrong (and its causes), not
/// a backtrace: they are for the person at the terminal.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The log filter: `RIVULET_LOG` (`info` without it). srt-protocol's own lines are kept
/// to errors unless it is named there: it logs per packet (a warning for each datagram
/// after its listener closed, ~35,000 lines at a shutdown with one SRT publisher), and
/// the ingest logs what matters of an SRT connection itself.
fn log_filter(env: Option<&str>) -> tracing_subscriber::EnvFilter {
    let directives = env.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if directives.contains("srt_protocol") {
        return filter;
    }
    match "srt_protocol=error".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RIVULET_LOG").ok().as_deref()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            if args.node.check {
                return config_ok(&args.node);
            }
            runtime()?.block_on(serve::run(config, httpd::shutdown::signal()))
        }
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Publish(args) => {
            let plan = args.plan()?;
            runtime()?.block_on(publish::run(plan, httpd::shutdown::signal()))
        }
        Command::Meta(args) => {
            let config = args.resolve()?;
            if args.node.check {
                return config_ok(&args.node);
            }
            runtime()?.block_on(metadata::run(config, httpd::shutdown::signal()))
        }
        Command::Analytics(args) => {
            let config = args.resolve()?;
            if args.node.check {
                return config_ok(&args.node);
            }
            runtime()?.block_on(analytics_server::run(config, httpd::shutdown::signal()))
        }
        Command::Streams(args) => runtime()?.block_on(streams::run(args)),
        Command::Edge(args) => runtime()?.block_on(edge::run_edge(args)),
        Command::Route(args) => runtime()?.block_on(edge::run_route(args)),
        Command::Bench { args } => run_bench(&args),
    }
}

/// `--check`: the configuration resolved without an error (resolving reads and
/// validates the file, flags and environment); say so and start nothing.
fn config_ok(node: &config::NodeArgs) -> anyhow::Result<()> {
    match &node.config {
        Some(path) => println!("configuration OK ({})", path.display()),
        None => println!("configuration OK (flags, environment and defaults; no --config)"),
    }
    Ok(())
}

/// `rivulet bench …` forwards to the `rivulet-bench` program beside this one, so that
/// the server's build carries no benchmark code.
fn run_bench(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    use anyhow::Context;
    let me = std::env::current_exe().context("cannot find this program's own path")?;
    let bench = me.with_file_name("rivulet-bench");
    let status = std::process::Command::new(&bench)
        .args(args)
        .env("RIVULET_BIN", &me)
        .status()
        .with_context(|| {
            format!(
                "cannot run {} (build it with: cargo build --release -p rivulet-bench)",
                bench.display()
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        anyhow::bail!("rivulet-bench ended with {status}")
    }
}
