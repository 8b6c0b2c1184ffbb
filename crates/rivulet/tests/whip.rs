//! WHIP ingest end to end: `rivulet serve` and publishers we did not write — Debian's
//! Chromium (its own `RTCPeerConnection` on a fake camera and microphone, driven by
//! playwright-core: `web/tests/whip.mjs`) and aiortc (`web/tests/whip_aiortc.py`);
//! ffprobe reads the LL-HLS that comes out. Needs `node`, `ffprobe`,
//! `/usr/bin/chromium`, aiortc and `web/node_modules` (scripts/setup.sh).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

#[test]
fn chromium_and_aiortc_publish_over_whip_and_the_stream_plays_over_ll_hls() {
    let out = Command::new("node")
        .args(["tests/whip.mjs", env!("CARGO_BIN_EXE_rivulet")])
        .current_dir(web_dir())
        .output()
        .expect("node must be installed (scripts/setup.sh)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "web/tests/whip.mjs failed:\n{text}");
}
