//! The web pages in a real browser: `web/tests/*.mjs` drive Debian's Chromium
//! (playwright-core, headless) against this build's `rivulet` binary with a real
//! publisher, and the time-strip decoder's unit tests run under node's test runner.
//! Needs `node`, `/usr/bin/chromium` and `web/node_modules` (scripts/setup.sh).
#![allow(clippy::unwrap_used)]

mod common;

use common::node;

use std::sync::Mutex;

/// One browser test at a time: each runs a server, a publisher, an encoder ladder
/// and Chromium, which is plenty for a 2-core machine.
static BROWSER: Mutex<()> = Mutex::new(());

fn browser_test(script: &str) {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    node(&[script, env!("CARGO_BIN_EXE_rivulet")]);
}

#[test]
fn time_strip_decoder_unit_tests() {
    node(&["--test", "tests/timestrip.test.mjs"]);
}

#[test]
fn viewer_page_plays_switches_and_follows_the_api() {
    browser_test("tests/player.mjs");
}

#[test]
fn dashboard_lists_creates_and_edits() {
    browser_test("tests/dashboard.mjs");
}

#[test]
fn a_private_stream_plays_through_an_edge_with_its_token() {
    browser_test("tests/private.mjs");
}

#[test]
fn a_recorded_stream_rewinds_20_s_and_returns_to_live() {
    browser_test("tests/dvr.mjs");
}

#[test]
fn a_finished_recording_plays_in_hls_js_to_its_end() {
    browser_test("tests/vod.mjs");
}

#[test]
fn a_viewer_waiting_through_an_edge_gets_every_rendition_at_go_live() {
    browser_test("tests/golive.mjs");
}

#[test]
fn a_publisher_that_drops_frames_mid_gop_plays_without_a_frozen_picture() {
    browser_test("tests/holes.mjs");
}
