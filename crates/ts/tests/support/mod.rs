//! Transport streams that ffmpeg writes at test time: the one fixture of the demuxer's
//! tests and of the SRT end-to-end tests (`crates/rivulet/tests/srt.rs` includes this
//! file by path).
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// The length of a transport stream packet.
const PACKET_LEN: usize = 188;

/// ffmpeg's inputs: `seconds` of a 320x240 30 fps test pattern and a 48 kHz tone.
pub fn test_pattern_inputs(seconds: &str) -> [&str; 10] {
    [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        seconds,
    ]
}

/// `seconds` of the test pattern (encoded by the `video` options) and AAC at 64 kbit/s
/// as MPEG-TS, plus `extra` output options.
pub fn generate(seconds: u32, video: &[&str], extra: &[&str]) -> Vec<u8> {
    let duration = seconds.to_string();
    let mut args = vec!["-hide_banner", "-loglevel", "error"];
    args.extend_from_slice(&test_pattern_inputs(&duration));
    args.extend_from_slice(video);
    args.extend_from_slice(&["-c:a", "aac", "-b:a", "64k"]);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", "mpegts", "-"]);
    let out = Command::new("ffmpeg")
        .args(&args)
        .output()
        .expect("ffmpeg runs (Debian's ffmpeg package)");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len() % PACKET_LEN, 0);
    out.stdout
}
