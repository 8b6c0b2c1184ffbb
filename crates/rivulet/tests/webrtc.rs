//! WebRTC playback (WHEP) end to end: an ffmpeg RTMP publisher, `rivulet serve`, and
//! clients we did not write — Debian's Chromium (its own `RTCPeerConnection`, driven
//! by playwright-core: `web/tests/webrtc.mjs`). Needs `node`, `ffmpeg`,
//! `/usr/bin/chromium` and `web/node_modules` (scripts/setup.sh).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

/// Runs `node ARGS` in `web/`, failing with its output on a non-zero exit.
fn node(args: &[&str]) {
    let out = Command::new("node")
        .args(args)
        .current_dir(web_dir())
        .output()
        .expect("node must be installed (scripts/setup.sh)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "node {args:?} failed:\n{text}");
}

#[test]
fn chromium_plays_the_watch_page_in_real_time_and_bad_offers_get_400() {
    node(&["tests/webrtc.mjs", env!("CARGO_BIN_EXE_rivulet")]);
}
