//! WHIP ingest end to end: `rivulet serve` and publishers we did not write — Debian's
//! Chromium (its own `RTCPeerConnection` on a fake camera and microphone, driven by
//! playwright-core: `web/tests/whip.mjs`) and aiortc (`web/tests/whip_aiortc.py`);
//! ffprobe reads the LL-HLS that comes out. Needs `node`, `ffprobe`,
//! `/usr/bin/chromium`, aiortc and `web/node_modules` (scripts/setup.sh).
#![allow(clippy::unwrap_used)]

mod common;

#[test]
fn chromium_and_aiortc_publish_over_whip_and_the_stream_plays_over_ll_hls() {
    common::node(&["tests/whip.mjs", env!("CARGO_BIN_EXE_rivulet")]);
}
