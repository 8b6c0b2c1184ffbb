//! Publishers and players we did not write, against a real `rivulet serve` (and
//! `rivulet edge`): GStreamer's `rtmp2sink` publishes and ends cleanly; ffmpeg and
//! GStreamer read the LL-HLS back.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A GStreamer publish of `frames` frames at 30 fps (320x180 H.264 + AAC) to `url`,
/// ending with EOS (`-e`), as an encoder that stops does.
fn gstreamer_publish(url: &str, frames: u32) -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(["-e", "videotestsrc", &format!("num-buffers={frames}")])
        .args(["!", "video/x-raw,width=320,height=180,framerate=30/1"])
        .args(["!", "x264enc", "tune=zerolatency", "key-int-max=60"])
        .args(["!", "h264parse", "!", "flvmux", "name=m", "streamable=true"])
        .args(["!", "rtmp2sink", &format!("location={url}")])
        .args(["audiotestsrc", &format!("num-buffers={}", frames * 3 / 2)])
        .args([
            "!",
            "audioconvert",
            "!",
            "avenc_aac",
            "!",
            "aacparse",
            "!",
            "m.",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn have(tool: &str, element: &str) -> bool {
    Command::new(tool)
        .arg(element)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn gstreamer_rtmp2sink_publishes_and_ends_without_an_error() {
    // scripts/setup.sh installs GStreamer; without it this would prove nothing.
    for element in ["rtmp2sink", "x264enc", "avenc_aac", "flvmux"] {
        assert!(
            have("gst-inspect-1.0", element),
            "GStreamer's {element} is missing: run scripts/setup.sh"
        );
    }
    let server = Server::start(&["--stream", "gst=gst-key"]);
    let url = format!("{}/live/gst-key", server.rtmp);
    // 6 s: three segments.
    let (ok, out, err) = run(&mut gstreamer_publish(&url, 180));
    assert!(
        ok,
        "rtmp2sink failed at end of stream (the server must let it finish its unpublish \
         sequence):\n{out}\n{err}\n--- server ---\n{}",
        server.log()
    );
    assert!(
        server.log().contains("publisher stopped"),
        "{}",
        server.log()
    );
    // In the grace period the stream is still served: every frame is there to decode.
    let master = server.url("/live/gst/master.m3u8");
    let playlist = get_when_ready(
        &server.url("/live/gst/source/index.m3u8"),
        Duration::from_secs(5),
    )
    .await;
    assert!(playlist.contains("seg-"), "{playlist}");
    let (ok, out, err) = run(Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames,codec_name"])
        .args([
            "-of",
            "default=nw=1",
            &server.url("/live/gst/source/index.m3u8"),
        ]));
    assert!(ok, "{out}{err}");
    let frames: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("nb_read_frames="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // The live window may have dropped the first segment; most frames are there.
    assert!(frames >= 120, "{frames} frames read back: {out}{err}");
    assert!(err.trim().is_empty(), "decode errors: {err}");
    let (status, text) = get_text(&master).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("mp4a.40.2"), "audio from GStreamer: {text}");
}
