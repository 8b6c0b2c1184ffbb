//! WebRTC playback (WHEP) end to end: an ffmpeg RTMP publisher, `rivulet serve`, and
//! clients we did not write — Debian's Chromium (its own `RTCPeerConnection`, driven
//! by playwright-core: `web/tests/webrtc.mjs`). Needs `node`, `ffmpeg`,
//! `/usr/bin/chromium` and `web/node_modules` (scripts/setup.sh).
#![allow(clippy::unwrap_used)]

mod common;

use common::node;

#[test]
fn chromium_plays_the_watch_page_in_real_time_and_bad_offers_get_400() {
    node(&["tests/webrtc.mjs", env!("CARGO_BIN_EXE_rivulet")]);
}
