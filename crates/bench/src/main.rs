//! `rivulet-bench` (also run as `rivulet bench`): measurements that compare Rivulet
//! with a peer on this machine, in the same run, printed as ratios. Never run as
//! tests: these machines are noisy. A crate of its own so that the server's build
//! carries none of it; it drives the `rivulet` binary built beside it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

mod analytics_load;
mod api_load;
mod codecs;
mod failover;
mod fleet;
mod latency;
mod recording;
mod soak;
mod srt;
mod viewer;
mod webrtc;

/// Benchmarks against a peer (nginx-rtmp, ffmpeg, nginx) run in the same go, printed
/// as ratios. Build it in release mode beside the server:
/// `cargo build --release -p rivulet -p rivulet-bench`.
#[derive(Parser, Debug)]
#[command(name = "rivulet-bench", version, about, long_about)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) which: BenchKind,
}

/// Errors end the process with one line naming what was wrong (and its causes).
fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIVULET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(BenchArgs::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The `rivulet` binary the benchmarks run: `RIVULET_BIN`, or the one built beside
/// this program (same cargo profile directory).
pub(crate) fn rivulet_exe() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("RIVULET_BIN") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("cannot find this program's own path")?;
    let beside = me.with_file_name("rivulet");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "no rivulet binary at {}: build it in the same profile (cargo build --release -p rivulet) or set RIVULET_BIN",
        beside.display()
    )
}

#[derive(Subcommand, Debug)]
pub(crate) enum BenchKind {
    /// Passthrough ingest+packaging: part availability delay (p50/p99) and CPU per
    /// 6 Mbps stream, side by side with nginx-rtmp (HLS, 1 s fragments).
    Ingest(IngestBenchArgs),
    /// Encoder CPU per stream (test pattern + libx264 + AAC + RTMP) at 720p30 and
    /// 360p30, against the ffmpeg CLI with the same x264 settings, and how well the
    /// time strip reads back from the packaged output.
    Encoder(EncoderBenchArgs),
    /// The transcoder's ladder (one decode, 720p/480p/360p/234p with libx264) on a
    /// 720p30 file as fast as it goes, against the ffmpeg CLI doing the same with
    /// `split` + `scale` + one libx264 per output: CPU seconds, wall fps, ratio.
    Ladder(LadderBenchArgs),
    /// What an HEVC (libx265) or AV1 (libaom-av1, libsvtav1) rung costs against the
    /// H.264 rung (libx264) at the same size and bitrate: CPU seconds per media second
    /// of each encoder on the same pictures, and the ratio.
    Codecs(codecs::CodecsBenchArgs),
    /// The edge against nginx (proxy_cache + proxy_cache_lock) in front of the same
    /// origin: cached playlist and part requests per second and p99, and upstream
    /// fetches during a 1,000-client burst for a part not yet produced.
    Edge(EdgeBenchArgs),
    /// Delivery events ingested per second by one analytics process (in-process and
    /// over HTTP), and the CPU that emitting them adds to serving cached parts:
    /// analytics off, emitting to a remote analytics server, and in-process.
    Analytics(analytics_load::AnalyticsBenchArgs),
    /// Hot A/B pipelines behind two edges on loopback: the stall a viewer sees, the
    /// time for the edge to switch, and the load on the origin taking over, when A is
    /// killed, when it comes back, and when B freezes (a silent host).
    Failover(failover::FailoverBenchArgs),
    /// The metadata API's reads and writes per second on SQLite and PostgreSQL, and
    /// the key check's latency on the publish path: in-process, against a remote
    /// metadata server uncached, and cached (goal: cached adds at most 5 ms).
    Api(api_load::ApiBenchArgs),
    /// A long run (not a test): streams whose publishers leave and come back, a crowd
    /// of LL-HLS viewers through an edge, API and beacon traffic; prints memory,
    /// descriptors, threads, tasks and held requests of the origin and the edge every
    /// interval, and whether they grew.
    Soak(soak::SoakArgs),
    /// A small CDN in network namespaces (origin, shield, N edges) under a crowd of
    /// simulated LL-HLS players: origin requests per object, edge CPU and memory per
    /// 1,000 players, players behind live. The figures behind docs/capacity.md.
    Fleet(fleet::FleetArgs),
    /// SRT ingest against RTMP: the server's CPU per 6 Mbit/s passthrough stream
    /// published by ffmpeg over each (MPEG-TS in SRT, FLV in RTMP), and the ratio
    /// (goal: SRT at most 1.5 × RTMP).
    Srt(srt::SrtBenchArgs),
    /// Recording's cost, off then on with the same publishers: server CPU, write
    /// amplification (bytes in the store / bytes produced), the live part-availability
    /// delay p50/p99, and a thumbnail's cost per request cached and uncached.
    Recording(recording::RecordingBenchArgs),
    /// The latency budget: an external ffmpeg publisher (drawing the wall clock into
    /// its pictures), the default ladder, hls.js in headless Chromium through
    /// `rivulet edge`; glass to glass and each stage's share (web/bench/latency.mjs).
    Latency(latency::LatencyBenchArgs),
    /// What a WHEP viewer costs: the server's CPU and memory with no viewer, then with
    /// N WebRTC viewers (str0m clients in this process) on one stream, per viewer.
    Webrtc(webrtc::WebRtcBenchArgs),
}

#[derive(Args, Debug)]
pub(crate) struct EdgeBenchArgs {
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 4)]
    pub(crate) seconds: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: usize,
    /// Blocking playlist requests held at once on the edge.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) held: usize,
}

#[derive(Args, Debug)]
pub(crate) struct LadderBenchArgs {
    /// Seconds of 720p30 input.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u32,
}

#[derive(Args, Debug)]
pub(crate) struct EncoderBenchArgs {
    /// Seconds of measurement per run (after a warm-up of 3 s).
    #[arg(long, default_value_t = 15)]
    pub(crate) seconds: u64,
}

#[derive(Args, Debug)]
pub(crate) struct IngestBenchArgs {
    /// Concurrent streams published to each server.
    #[arg(long, default_value_t = 4)]
    pub(crate) streams: u32,
    /// Seconds of measurement (after a warm-up of 4 s).
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,
    /// Video bitrate of the published streams, in Mbit/s (CBR with filler).
    #[arg(long, default_value_t = 6)]
    pub(crate) mbps: u32,
    /// Skip the nginx-rtmp side (prints Rivulet's figures only).
    #[arg(long)]
    pub(crate) no_nginx: bool,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchKind::Ingest(a) => ingest(a),
        BenchKind::Encoder(a) => encoder(a),
        BenchKind::Ladder(a) => ladder(a),
        BenchKind::Codecs(a) => codecs::run(a),
        BenchKind::Edge(a) => edge_bench(a),
        BenchKind::Analytics(a) => analytics_load::run(a),
        BenchKind::Failover(a) => failover::run(a),
        BenchKind::Api(a) => api_load::run(a),
        BenchKind::Soak(a) => soak::run(a),
        BenchKind::Fleet(a) => fleet::run(a),
        BenchKind::Recording(a) => recording::run(a),
        BenchKind::Latency(a) => latency::run(a),
        BenchKind::Webrtc(a) => webrtc::run(a),
        BenchKind::Srt(a) => srt::run(a),
    }
}

fn ingest(args: IngestBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let input = cbr_input(&dir, args.mbps)?;

    // Rivulet: this very binary, `serve` on free loopback ports.
    let rtmp_port = free_port()?;
    let http_port = free_port()?;
    let mut cmd = Command::new(crate::rivulet_exe()?);
    cmd.args([
        "serve",
        "--rtmp-listen",
        &format!("127.0.0.1:{rtmp_port}"),
        "--http-listen",
        &format!("127.0.0.1:{http_port}"),
        // Repackaged as published, like nginx-rtmp's HLS: ingest and packaging are
        // compared, not transcoding.
        "--renditions",
        "source",
    ])
    .arg("--data-dir")
    .arg(dir.join("data"))
    .env("RIVULET_LOG", "warn");
    for i in 0..args.streams {
        cmd.args(["--stream", &format!("bench{i}=bench-key-{i}")]);
    }
    let ours = Reaped(
        cmd.stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(rtmp_port)?;
    let ours_cpu = measure(ours.0.id(), rtmp_port, "live/bench-key-", &input, &args)?;
    let metrics = http_get(http_port, "/metrics").unwrap_or_default();
    drop(ours);
    let p50 = quantile(&metrics, "part_availability_delay_seconds", "0.5");
    let p99 = quantile(&metrics, "part_availability_delay_seconds", "0.99");

    println!();
    println!("part availability delay (last frame of a part at ingest -> part servable):");
    match (p50, p99) {
        (Some(p50), Some(p99)) => println!(
            "  p50 {:.3} ms   p99 {:.3} ms   (goal p99 <= 30 ms)",
            p50 * 1e3,
            p99 * 1e3
        ),
        _ => {
            bail!("Rivulet produced no parts: the publishers were not packaged (see the log above)")
        }
    }
    let per_stream = |cpu: f64| cpu / f64::from(args.streams) * 100.0;
    println!(
        "CPU per {} Mbit/s passthrough stream ({} streams, {} s):",
        args.mbps, args.streams, args.seconds
    );
    println!("  rivulet     {:6.3} % of a core", per_stream(ours_cpu));

    if args.no_nginx {
        return Ok(());
    }
    let nginx_port = free_port()?;
    let nginx = start_nginx(&dir, nginx_port)?;
    wait_for_port(nginx_port)?;
    let nginx_cpu = measure(nginx.0.id(), nginx_port, "live/bench-key-", &input, &args)?;
    drop(nginx);
    println!(
        "  nginx-rtmp  {:6.3} % of a core (HLS, 1 s fragments)",
        per_stream(nginx_cpu)
    );
    println!(
        "  ratio rivulet / nginx-rtmp: {:.2}",
        ours_cpu / nginx_cpu.max(f64::EPSILON)
    );
    Ok(())
}

/// A 15 s 720p30 H.264 (CBR, B-frames, 2 s GOP) + AAC FLV file at `mbps`.
fn cbr_input(dir: &Path, mbps: u32) -> anyhow::Result<PathBuf> {
    let input = dir.join("input.flv");
    println!(
        "generating a {} Mbit/s 720p30 H.264/AAC input (15 s, looped) ...",
        mbps
    );
    let kbps = mbps * 1000;
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args([
            "-t",
            "15",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "2",
            "-g",
            "60",
            "-sc_threshold",
            "0",
        ])
        .args([
            "-b:v",
            &format!("{kbps}k"),
            "-minrate",
            &format!("{kbps}k"),
            "-maxrate",
            &format!("{kbps}k"),
            "-bufsize",
            &format!("{kbps}k"),
        ])
        .args([
            "-x264-params",
            "nal-hrd=cbr:force-cfr=1",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "flv",
        ])
        .arg(&input)
        .status()
        .context("ffmpeg is needed for the benchmark (scripts/setup.sh installs it)")?;
    if !status.success() {
        bail!("ffmpeg could not generate the benchmark input");
    }
    Ok(input)
}

/// Publishes `args.streams` copies of `input` (no re-encoding) to the server whose
/// main process is `pid`, and returns the CPU it used, in cores, during the measurement.
fn measure(
    pid: u32,
    rtmp_port: u16,
    path_prefix: &str,
    input: &Path,
    args: &IngestBenchArgs,
) -> anyhow::Result<f64> {
    let publishers = copy_publishers(rtmp_port, path_prefix, input, args.streams)?;
    std::thread::sleep(Duration::from_secs(4));
    let start_ticks = process_tree_ticks(pid)?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let ticks = process_tree_ticks(pid)? - start_ticks;
    let elapsed = start.elapsed().as_secs_f64();
    drop(publishers);
    Ok(ticks as f64 / clock_ticks_per_second() / elapsed)
}

/// `streams` ffmpeg publishers sending `input` in real time, looped, without
/// re-encoding, to `rtmp://127.0.0.1:PORT/{path_prefix}{i}`.
fn copy_publishers(
    rtmp_port: u16,
    path_prefix: &str,
    input: &Path,
    streams: u32,
) -> anyhow::Result<Vec<Reaped>> {
    (0..streams)
        .map(|i| {
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
                    &format!("rtmp://127.0.0.1:{rtmp_port}/{path_prefix}{i}"),
                ])
                .stdin(Stdio::null())
                .spawn()
                .map(Reaped)
        })
        .collect::<Result<_, _>>()
        .context("start ffmpeg publishers")
}

fn start_nginx(dir: &Path, port: u16) -> anyhow::Result<Reaped> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("hls"))?;
    std::fs::create_dir_all(prefix.join("logs"))?;
    let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
    if !Path::new(module).exists() {
        bail!(
            "nginx-rtmp is not installed ({module} is missing): run scripts/setup.sh, or pass --no-nginx"
        );
    }
    let conf = format!(
        "load_module {module};\ndaemon off;\nmaster_process on;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
           application live {{ live on; record off; hls on; hls_path {p}/hls; hls_fragment 1s; hls_playlist_length 10s; }} }} }}\n",
        p = prefix.display()
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .spawn()
        .context("start nginx (scripts/setup.sh installs it)")?;
    Ok(Reaped(child))
}

/// utime + stime of `pid` and all its descendants, in clock ticks.
fn encoder(args: EncoderBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let rtmp_port = free_port()?;
    let http_port = free_port()?;
    // One sink for both publishers; only the publishers' CPU is measured.
    let sink = Reaped(
        Command::new(crate::rivulet_exe()?)
            .args([
                "serve",
                "--rtmp-listen",
                &format!("127.0.0.1:{rtmp_port}"),
                "--http-listen",
                &format!("127.0.0.1:{http_port}"),
                "--grace-period-ms",
                "600000",
                "--stream",
                "ours720=ours-720",
                "--stream",
                "ours360=ours-360",
                "--stream",
                "peer=peer-key",
                // Packaged as published: the time strip is read from what our
                // encoder made, and the sink spends no CPU transcoding.
                "--renditions",
                "source",
            ])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(rtmp_port)?;
    let rungs = [(1280u32, 720u32, 3_000_000u64), (640, 360, 1_000_000)];
    println!(
        "encoder CPU per stream, {} s each, 30 fps, x264 veryfast + zerolatency, AAC 128k, RTMP to a local sink:",
        args.seconds
    );
    for (w, h, bitrate) in rungs {
        let ours = Reaped(
            Command::new(crate::rivulet_exe()?)
                .args([
                    "publish",
                    "--test-pattern",
                    "--size",
                    &format!("{w}x{h}"),
                    "--fps",
                    "30",
                    "--bitrate",
                    &bitrate.to_string(),
                    "--preset",
                    "veryfast",
                ])
                .arg(format!("rtmp://127.0.0.1:{rtmp_port}/live/ours-{h}"))
                .env("RIVULET_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start rivulet publish")?,
        );
        let ours_cpu = cpu_over(ours.0.id(), args.seconds)?;
        drop(ours);
        let peer = ffmpeg_publisher(w, h, bitrate, rtmp_port)?;
        let peer_cpu = cpu_over(peer.0.id(), args.seconds)?;
        drop(peer);
        println!(
            "  {h}p30: rivulet publish {:5.1} % of a core, ffmpeg {:5.1} %, ratio {:.2}",
            ours_cpu * 100.0,
            peer_cpu * 100.0,
            ours_cpu / peer_cpu.max(f64::EPSILON)
        );
    }

    report_time_strip(http_port, &dir)?;
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// ffmpeg's CLI encoding its own test source with the x264 settings of
/// `rivulet publish` at `w`x`h`, publishing to the sink.
fn ffmpeg_publisher(w: u32, h: u32, bitrate: u64, rtmp_port: u16) -> anyhow::Result<Reaped> {
    let config = encoder::VideoEncoderConfig::new(w, h, source::FrameRate::new(30, 1), bitrate);
    Ok(Reaped(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size={w}x{h}:rate=30"),
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
            ])
            .args(["-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "60"])
            .args([
                "-b:v",
                &bitrate.to_string(),
                "-maxrate",
                &(bitrate * 3 / 2).to_string(),
            ])
            .args([
                "-bufsize",
                &(bitrate * 2).to_string(),
                "-x264-params",
                &config.x264_params(),
            ])
            .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv"])
            .arg(format!("rtmp://127.0.0.1:{rtmp_port}/live/peer-key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("ffmpeg is needed for the benchmark (scripts/setup.sh installs it)")?,
    ))
}

/// Reads the time strip back from every frame of the packaged 720p stream, scaled to
/// each ladder size, and prints how many frames read and stepped by one interval.
fn report_time_strip(http_port: u16, dir: &Path) -> anyhow::Result<()> {
    println!("time strip read back from the packaged HLS (rivulet publish, 720p source):");
    let playlist = http_get(http_port, "/live/ours720/source/index.m3u8")?;
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .context("the packaged playlist names no init segment")?;
    let init = http_get_bytes(http_port, &format!("/live/ours720/source/{map}"))?;
    let segments: Vec<&str> = playlist.lines().filter(|l| l.starts_with("seg-")).collect();
    if segments.is_empty() {
        bail!("the sink packaged nothing from our publisher:\n{playlist}");
    }
    for (w, h) in [(1280u32, 720u32), (640, 360), (416, 234)] {
        let (mut frames, mut read, mut bad_steps) = (0usize, 0usize, 0usize);
        for seg in &segments {
            let body = http_get_bytes(http_port, &format!("/live/ours720/source/{seg}"))?;
            let file = dir.join("strip.mp4");
            std::fs::write(&file, [init.as_slice(), body.as_slice()].concat())?;
            let out = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-i"])
                .arg(&file)
                .args(["-vf", &format!("scale={w}:{h}"), "-fps_mode", "passthrough"])
                .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
                .output()?;
            let mut last: Option<u64> = None;
            for y in out.stdout.chunks_exact((w * h) as usize) {
                frames += 1;
                if let Ok(t) = source::time_strip::read(y, w, h, w as usize) {
                    read += 1;
                    if let Some(prev) = last
                        && !(33..=34).contains(&t.wrapping_sub(prev))
                    {
                        bad_steps += 1;
                    }
                    last = Some(t);
                }
            }
        }
        println!(
            "  at {w}x{h}: {read}/{frames} frames read ({:.2} %), {bad_steps} steps not one frame interval",
            read as f64 * 100.0 / frames.max(1) as f64
        );
    }
    Ok(())
}

/// ffmpeg publishing a 5 Mbit/s CBR 720p30 test source: parts of about 200 KB.
fn cbr_publisher(rtmp_port: u16) -> anyhow::Result<Reaped> {
    Ok(Reaped(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "60",
                "-b:v",
                "5M",
                "-minrate",
                "5M",
                "-maxrate",
                "5M",
            ])
            .args([
                "-bufsize",
                "5M",
                "-x264-params",
                "nal-hrd=cbr",
                "-an",
                "-f",
                "flv",
            ])
            .arg(format!("rtmp://127.0.0.1:{rtmp_port}/live/bench-key"))
            .stdin(Stdio::null())
            .spawn()
            .context("ffmpeg is needed for the benchmark")?,
    ))
}

/// nginx as an LL-HLS cache in front of the origin: proxy_cache with proxy_cache_lock
/// (its coalescing), keyed like our edge.
fn start_nginx_cache(dir: &Path, nginx_port: u16, origin_port: u16) -> anyhow::Result<Reaped> {
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    std::fs::create_dir_all(prefix.join("cache"))?;
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("0777")
        .arg(&prefix)
        .status();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes auto;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{ access_log off; proxy_cache_path {p}/cache levels=1:2 keys_zone=live:10m max_size=1g inactive=60s use_temp_path=off;\n\
           server {{ listen 127.0.0.1:{nginx_port};\n\
             location /live/ {{ proxy_pass http://127.0.0.1:{origin_port}; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
               proxy_cache live; proxy_cache_lock on; proxy_cache_lock_timeout 10s; proxy_cache_lock_age 10s;\n\
               proxy_cache_key $uri$is_args$arg__HLS_msn.$arg__HLS_part.$arg__HLS_skip; }} }} }}\n",
        p = prefix.display()
    );
    std::fs::write(prefix.join("nginx.conf"), conf)?;
    Ok(Reaped(
        Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdout(Stdio::null())
            .spawn()
            .context("start nginx (scripts/setup.sh installs it)")?,
    ))
}

fn edge_bench(args: EdgeBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let (rtmp_port, origin_port, edge_port, nginx_port) =
        (free_port()?, free_port()?, free_port()?, free_port()?);
    let exe = crate::rivulet_exe()?;
    let _origin = Reaped(
        Command::new(&exe)
            .args([
                "serve",
                "--rtmp-listen",
                &format!("127.0.0.1:{rtmp_port}"),
                "--http-listen",
                &format!("127.0.0.1:{origin_port}"),
            ])
            .args(["--stream", "bench=bench-key", "--renditions", "source"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet serve")?,
    );
    wait_for_port(rtmp_port)?;
    let _publisher = cbr_publisher(rtmp_port)?;
    let edge_process = Reaped(
        Command::new(&exe)
            .args([
                "edge",
                "--http-listen",
                &format!("127.0.0.1:{edge_port}"),
                "--origin",
                &format!("http://127.0.0.1:{origin_port}"),
            ])
            .env("RIVULET_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start rivulet edge")?,
    );
    let edge_pid = edge_process.0.id();
    let _nginx = start_nginx_cache(&dir, nginx_port, origin_port)?;
    wait_for_port(edge_port)?;
    wait_for_port(nginx_port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(edge_figures(
        &args,
        origin_port,
        edge_port,
        nginx_port,
        edge_pid,
    ))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `held` blocking reloads for a part about one segment ahead, all held by the edge:
/// how soon after the first answer (the part appearing) the last ones come, and the
/// edge's memory per held request. Over HTTP/1.1 (a connection each), or over
/// HTTP/2 with `h2_streams` requests per connection.
/// The measurements of `bench edge`, once the origin, the edge and nginx run.
async fn edge_figures(
    args: &EdgeBenchArgs,
    origin_port: u16,
    edge_port: u16,
    nginx_port: u16,
    edge_pid: u32,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2000)
        .build()?;
    let origin = format!("http://127.0.0.1:{origin_port}");
    let playlist_url = format!("{origin}/live/bench/source/index.m3u8");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut playlist = String::new();
    while !playlist.contains("#EXTINF") {
        if Instant::now() > deadline {
            bail!("the origin packaged nothing in 20 s");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        playlist = match client.get(&playlist_url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
    }
    // A complete part and a blocking reload for it (cacheable, ~2 KB).
    let last_part = playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| {
            l.split("URI=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .next_back()
        .context("no part in the playlist")?;
    let (msn, part) = last_part
        .trim_start_matches("part-")
        .trim_end_matches(".m4s")
        .split_once('-')
        .and_then(|(m, p)| Some((m.parse::<u64>().ok()?, p.parse::<u32>().ok()?)))
        .context("part name")?;
    let objects = [
        (
            "playlist (blocking, cached)",
            format!("/live/bench/source/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
        ),
        ("part", format!("/live/bench/source/{last_part}")),
    ];
    println!(
        "cached objects through each cache, {} connections, {} s each:",
        args.connections, args.seconds
    );
    for (what, path) in &objects {
        let size = client
            .get(format!("{origin}{path}"))
            .send()
            .await?
            .bytes()
            .await?
            .len();
        let mut row = Vec::new();
        for (name, port) in [("rivulet edge", edge_port), ("nginx", nginx_port)] {
            let url = format!("http://127.0.0.1:{port}{path}");
            // Warm the cache.
            client.get(&url).send().await?.bytes().await?;
            let (rps, p99) = hammer(
                &client,
                &url,
                args.connections,
                Duration::from_secs(args.seconds),
            )
            .await;
            println!(
                "  {what} ({size} B) {name:13}: {rps:8.0} req/s, p99 {:6.2} ms",
                p99 * 1e3
            );
            row.push((rps, p99));
        }
        println!(
            "  {what}: throughput ratio edge/nginx {:.2} (goal >= 1.0), p99 ratio {:.2} (goal <= 1.0)",
            row[0].0 / row[1].0.max(f64::EPSILON),
            row[0].1 / row[1].1.max(f64::EPSILON)
        );
    }
    burst_figures(&client, &origin, &playlist_url, edge_port, nginx_port).await?;
    // HTTP/1.1 holds a connection per request; HTTP/2 (what browsers use for
    // LL-HLS) multiplexes them: both are measured.
    held_requests(&client, &origin, edge_port, edge_pid, args.held, None).await?;
    held_requests(&client, &origin, edge_port, edge_pid, args.held, Some(100)).await?;
    Ok(())
}

/// 1,000 clients at once for the part after the preload hint, not produced yet
/// anywhere: how many upstream requests each cache makes.
async fn burst_figures(
    client: &reqwest::Client,
    origin: &str,
    playlist_url: &str,
    edge_port: u16,
    nginx_port: u16,
) -> anyhow::Result<()> {
    println!("1,000 clients at once for a part not yet produced:");
    for (name, port) in [("rivulet edge", edge_port), ("nginx", nginx_port)] {
        let playlist = client.get(playlist_url).send().await?.text().await?;
        let hint = playlist
            .lines()
            .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
            .and_then(|l| {
                l.split("URI=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_owned)
            })
            .context("no preload hint")?;
        let before = origin_requests(client, origin).await;
        let url = format!("http://127.0.0.1:{port}/live/bench/source/{hint}");
        let burst: Vec<_> = (0..1000)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    client
                        .get(&url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        let mut ok = 0;
        for b in burst {
            ok += usize::from(b.await.unwrap_or(0) == 200);
        }
        let fetched = origin_requests(client, origin).await - before;
        println!("  {name:13}: {fetched} upstream requests (goal 1), {ok}/1000 answered 200");
    }
    Ok(())
}

async fn held_requests(
    client: &reqwest::Client,
    origin: &str,
    edge_port: u16,
    edge_pid: u32,
    held: usize,
    h2_streams: Option<usize>,
) -> anyhow::Result<()> {
    let playlist = client
        .get(format!("{origin}/live/bench/source/index.m3u8"))
        .send()
        .await?
        .text()
        .await?;
    let (msn, part) = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .and_then(|l| {
            l.split("URI=\"part-")
                .nth(1)?
                .split(".m4s")
                .next()
                .map(str::to_owned)
        })
        .and_then(|p| {
            let (m, n) = p.split_once('-')?;
            Some((m.parse::<u64>().ok()?, n.parse::<u32>().ok()?))
        })
        .context("no preload hint")?;
    // One segment ahead: about 2 s to open every connection before it appears.
    let url = format!(
        "http://127.0.0.1:{edge_port}/live/bench/source/index.m3u8?_HLS_msn={}&_HLS_part={part}",
        msn + 1
    );
    let clients: Vec<reqwest::Client> = match h2_streams {
        None => vec![client.clone()],
        Some(per) => (0..held.div_ceil(per.max(1)))
            .map(|_| reqwest::Client::builder().http2_prior_knowledge().build())
            .collect::<Result<_, _>>()?,
    };
    let rss_before = rss_kib(edge_pid);
    let start = Instant::now();
    let tasks: Vec<_> = (0..held)
        .map(|i| {
            let (client, url) = (clients[i % clients.len()].clone(), url.clone());
            tokio::spawn(async move {
                let ok = match client.get(&url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                (ok, start.elapsed())
            })
        })
        .collect();
    // While they are held: the edge's memory.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rss_held = rss_kib(edge_pid);
    let mut answers = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok((true, at)) => answers.push(at.as_secs_f64()),
            _ => failed += 1,
        }
    }
    answers.sort_by(f64::total_cmp);
    let first = answers.first().copied().unwrap_or(f64::NAN);
    let p99 = answers
        .get(answers.len() * 99 / 100)
        .copied()
        .unwrap_or(f64::NAN);
    let how = match h2_streams {
        None => "HTTP/1.1, a connection each".to_owned(),
        Some(_) => format!("HTTP/2, {} connections", clients.len()),
    };
    println!("{held} blocking reloads ({how}) held by the edge for a part one segment ahead:");
    println!(
        "  answered {} ({failed} failed); after the first answer (the part appearing): p99 +{:.1} ms, last +{:.1} ms (goal p99 <= 20 ms)",
        answers.len(),
        (p99 - first) * 1e3,
        (answers.last().copied().unwrap_or(f64::NAN) - first) * 1e3
    );
    if let (Some(before), Some(during)) = (rss_before, rss_held) {
        println!(
            "  edge memory while holding: {} KiB more, {:.1} KiB per held request (goal <= 8 KB)",
            during.saturating_sub(before),
            during.saturating_sub(before) as f64 / held as f64
        );
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `connections` loops fetching `url` for `duration`: requests per second and p99 (s).
async fn hammer(
    client: &reqwest::Client,
    url: &str,
    connections: usize,
    duration: Duration,
) -> (f64, f64) {
    let end = Instant::now() + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    let ok = match client.get(&url).send().await {
                        Ok(r) => r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t.elapsed().as_secs_f64());
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    all.sort_by(f64::total_cmp);
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or(f64::NAN);
    (all.len() as f64 / duration.as_secs_f64(), p99)
}

async fn origin_requests(client: &reqwest::Client, origin: &str) -> u64 {
    let page = match client.get(format!("{origin}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    page.lines()
        .filter(|l| l.starts_with("origin_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Our transcoder over the FLV file `input`, in this process: (CPU s, wall s, frames out).
fn our_ladder(input: &Path, rungs: &[transcode::Rung]) -> anyhow::Result<(f64, f64, u64)> {
    use std::sync::Arc;

    let data = bytes::Bytes::from(std::fs::read(input)?);
    let tags = media::flv::file_tags(&data)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", input.display()))?;
    let config = Arc::new(transcode::TranscodeConfig {
        rungs: rungs.to_vec(),
        lossless: true,
        ..transcode::TranscodeConfig::default()
    });
    let cpu0 = process_tree_ticks(std::process::id())?;
    let t0 = Instant::now();
    let (mut feed, mut output) = transcode::start(config, "bench");
    let counter = std::thread::spawn(move || {
        let mut frames = 0u64;
        while let Some(o) = output.blocking_recv() {
            if matches!(
                o,
                hub::RenditionOutput::Media {
                    update: hub::RenditionUpdate::Frame(..),
                    ..
                }
            ) {
                frames += 1;
            }
        }
        frames
    });
    let mut assembler = ingest::StreamAssembler::new();
    let mut assembled = Vec::new();
    for (header, body) in tags {
        let result = match header.tag_type {
            9 => assembler.handle_video(header.timestamp_ms, body, &mut assembled),
            8 => assembler.handle_audio(header.timestamp_ms, body, &mut assembled),
            _ => Ok(()),
        };
        result.map_err(|e| anyhow::anyhow!("benchmark input: {e}"))?;
        for a in assembled.drain(..) {
            match a {
                ingest::Assembled::Tracks(t) => feed.push_tracks(Arc::new(t)),
                ingest::Assembled::Frame(f) => feed.push_frame(f, std::time::SystemTime::now()),
            }
        }
    }
    drop(feed);
    let frames_out = counter
        .join()
        .map_err(|_| anyhow::anyhow!("counter thread panicked"))?;
    let ours_wall = t0.elapsed().as_secs_f64();
    let ours_cpu =
        (process_tree_ticks(std::process::id())? - cpu0) as f64 / clock_ticks_per_second();
    Ok((ours_cpu, ours_wall, frames_out))
}

/// ffmpeg's CLI doing the same ladder (`split`, `scale`, one libx264 per rung) under
/// `/usr/bin/time`: (wall s, CPU s).
fn ffmpeg_ladder(input: &Path, planned: &[transcode::PlannedRung]) -> anyhow::Result<(f64, f64)> {
    let n = planned.len();
    let mut graph = format!("[0:v]split={n}");
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, p) in planned.iter().enumerate() {
        graph.push_str(&format!(";[s{i}]scale={}:{}[v{i}]", p.width, p.height));
    }
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args([
        "-f",
        "TIME %e %U %S",
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
    ])
    .arg(input)
    .args(["-filter_complex", &graph]);
    for (i, p) in planned.iter().enumerate() {
        let mut c = encoder::VideoEncoderConfig::new(
            p.width,
            p.height,
            source::FrameRate::new(30, 1),
            p.rung.bitrate,
        );
        c.preset = p.rung.preset.clone();
        cmd.args([
            "-map",
            &format!("[v{i}]"),
            "-c:v",
            "libx264",
            "-preset",
            &c.preset,
            "-tune",
            "zerolatency",
        ])
        .args([
            "-profile:v",
            &p.rung.profile,
            "-b:v",
            &c.bitrate.to_string(),
        ])
        .args([
            "-maxrate",
            &(c.bitrate * 3 / 2).to_string(),
            "-bufsize",
            &(c.bitrate * 2).to_string(),
        ])
        .args([
            "-g",
            "600",
            "-force_key_frames",
            "expr:gte(t,n_forced*2)",
            "-x264-params",
            &c.x264_params(),
        ])
        .args(["-f", "null", "-"]);
    }
    let out = cmd.output().context("run ffmpeg under /usr/bin/time")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let times: Vec<f64> = stderr
        .lines()
        .find_map(|l| l.strip_prefix("TIME "))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if !out.status.success() || times.len() != 3 {
        bail!("ffmpeg failed: {stderr}");
    }
    Ok((times[0], times[1] + times[2]))
}

fn ladder(args: LadderBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let input = dir.join("ladder-input.flv");
    println!(
        "generating a 720p30 H.264 input ({} s, 4 Mbit/s) ...",
        args.seconds
    );
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "testsrc2=size=1280x720:rate=30:duration={}",
            args.seconds
        ))
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-g", "60", "-bf", "2", "-an",
            "-f", "flv",
        ])
        .arg(&input)
        .status()
        .context("ffmpeg is needed for the benchmark (scripts/setup.sh installs it)")?;
    if !status.success() {
        bail!("ffmpeg could not generate the benchmark input");
    }
    let rungs: Vec<transcode::Rung> = transcode::default_rungs()
        .into_iter()
        .filter(|r| r.height <= 720)
        .collect();
    let planned = transcode::plan(&rungs, 1280, 720, &[]);
    let frames_in = u64::from(args.seconds) * 30;

    // Ours, in this process, as fast as it goes (lossless: no shedding).
    let (ours_cpu, ours_wall, frames_out) = our_ladder(&input, &rungs)?;
    let (peer_wall, peer_cpu) = ffmpeg_ladder(&input, &planned)?;
    let ladder: Vec<String> = planned
        .iter()
        .map(|p| format!("{}x{}", p.width, p.height))
        .collect();
    println!(
        "ladder {} from {} frames of 720p30, x264 veryfast + zerolatency, as fast as possible:",
        ladder.join(", "),
        frames_in
    );
    println!(
        "  rivulet transcode: {ours_cpu:6.2} CPU s, {ours_wall:6.2} s wall, {:6.1} source fps ({frames_out} frames out)",
        frames_in as f64 / ours_wall
    );
    println!(
        "  ffmpeg CLI:        {peer_cpu:6.2} CPU s, {peer_wall:6.2} s wall, {:6.1} source fps",
        frames_in as f64 / peer_wall
    );
    println!(
        "  CPU ratio rivulet / ffmpeg: {:.2} (goal <= 0.90)",
        ours_cpu / peer_cpu.max(f64::EPSILON)
    );
    println!(
        "  encoder delay: 0 frames (tune=zerolatency: each picture leaves x264 in the call it enters)"
    );
    if frames_out < frames_in * planned.len() as u64 {
        bail!(
            "the ladder lost frames: {frames_out} of {}",
            frames_in * planned.len() as u64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// CPU (fraction of one core) used by `pid` and its children over `seconds`, after a
/// 3 s warm-up.
fn cpu_over(pid: u32, seconds: u64) -> anyhow::Result<f64> {
    std::thread::sleep(Duration::from_secs(3));
    let start = process_tree_ticks(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let ticks = process_tree_ticks(pid)? - start;
    Ok(ticks as f64 / clock_ticks_per_second() / t0.elapsed().as_secs_f64())
}

fn process_tree_ticks(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .with_context(|| format!("process {p} is gone"))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += field(14) + field(15);
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    Ok(total)
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture Debian ships.
    100.0
}

/// Reads one quantile of a Prometheus summary from a /metrics page.
fn quantile(page: &str, name: &str, q: &str) -> Option<f64> {
    let prefix = format!("{name}{{quantile=\"{q}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

fn http_get_bytes(port: u16, path: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| out[i + 4..].to_vec())
        .unwrap_or_default();
    Ok(body)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rivulet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SIGTERM first, so that nginx's master stops its workers and ffmpeg closes cleanly.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .stderr(Stdio::null())
            .status();
        for _ in 0..30 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
