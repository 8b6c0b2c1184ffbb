//! `rivulet`: one binary, one subcommand per role.

mod bench;
mod config;
mod demo;
mod publish;
mod serve;

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;

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
    /// Run every role in one process: RTMP ingest, packager and HTTP origin.
    Serve(ServeArgs),
    /// Encode the test pattern or a media file live and publish it over RTMP to one
    /// or more ingest URLs at once (the same packets to each).
    Publish(publish::PublishArgs),
    /// Benchmarks against a peer (nginx-rtmp, ffmpeg) run in the same go, printed as ratios.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIVULET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            runtime.block_on(serve::run(config, serve::shutdown_signal()))
        }
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Publish(args) => {
            let plan = args.plan()?;
            runtime.block_on(publish::run(plan, serve::shutdown_signal()))
        }
        Command::Bench(args) => bench::run(args),
    }
}
