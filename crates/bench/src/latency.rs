//! `rivulet-bench latency`: the latency budget, stage by stage, with an external ffmpeg
//! publisher and hls.js in headless Chromium through `rivulet edge`. The browser side
//! lives in `web/bench/latency.mjs` (playwright-core drives Debian's Chromium); this
//! runs it against the `rivulet` binary built beside this program.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args, Debug)]
pub(crate) struct LatencyBenchArgs {
    /// Seconds the viewer watches (the first 5 s are left out of the figures).
    #[arg(long, default_value_t = 45)]
    pub(crate) seconds: u64,
    /// `--renditions` for the server (default: the server's default ladder).
    #[arg(long)]
    pub(crate) renditions: Option<String>,
    /// `--part-target-ms` for the server (default: the server's default).
    #[arg(long)]
    pub(crate) part_target_ms: Option<u32>,
    /// The peer watched after rivulet on the same encode: `nginx-rtmp` (HLS) or `none`.
    #[arg(long, default_value = "nginx-rtmp")]
    pub(crate) peer: String,
    /// A lossy, delaying link between the viewer and the edge: `DELAY_MS,JITTER_MS,LOSS_PERCENT`
    /// (e.g. `50,20,1`).
    #[arg(long)]
    pub(crate) netem: Option<String>,
}

pub(crate) fn run(args: LatencyBenchArgs) -> anyhow::Result<()> {
    let rivulet = crate::rivulet_exe()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/bench/latency.mjs");
    let mut node = Command::new("node");
    node.arg(&script)
        .arg("--bin")
        .arg(&rivulet)
        .arg("--duration")
        .arg(args.seconds.to_string());
    if let Some(r) = &args.renditions {
        node.arg("--renditions").arg(r);
    }
    if let Some(p) = args.part_target_ms {
        node.arg("--part-target-ms").arg(p.to_string());
    }
    node.arg("--peer").arg(&args.peer);
    if let Some(n) = &args.netem {
        node.arg("--netem").arg(n);
    }
    let status = node.status().with_context(|| {
        format!(
            "cannot run node on {} (scripts/setup.sh installs node, Chromium and web/node_modules)",
            script.display()
        )
    })?;
    if !status.success() {
        bail!("the latency bench failed ({status})");
    }
    Ok(())
}
