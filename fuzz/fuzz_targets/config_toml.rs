//! The TOML configuration. The server's `FileConfig` is private to the binary, so this
//! fuzzes the parts of it libraries own: the ladder (`[[ladder]]` of `transcode::Rung`)
//! with its validation and planning, the packager settings' validation, and the
//! `[rtmp]`, `[srt]` and `[http]` tables with their checks (`[webrtc]`'s crate would
//! bring the whole origin, recording and S3 client into this build).
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
#[allow(dead_code)]
struct File {
    ladder: Option<Vec<transcode::Rung>>,
    segment_target_ms: Option<u32>,
    part_target_ms: Option<u32>,
    window_segments: Option<usize>,
    rtmp: Option<ingest::RtmpOptions>,
    srt: Option<ingest::SrtFileOptions>,
    http: Option<httpd::HttpOptions>,
    #[serde(flatten)]
    other: toml::Table,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<File>(text) else {
        return;
    };
    let defaults = package::PackagerConfig::default();
    let config = package::PackagerConfig {
        segment_target_ms: file.segment_target_ms.unwrap_or(defaults.segment_target_ms),
        part_target_ms: file.part_target_ms.unwrap_or(defaults.part_target_ms),
        window_segments: file.window_segments.unwrap_or(defaults.window_segments),
    };
    let _ = config.validate();
    // Each table merged over the defaults and checked, as the server does at start.
    if let Some(rtmp) = &file.rtmp {
        let _ = rtmp.clone().or(&ingest::RtmpOptions::default()).resolve();
    }
    if let Some(srt) = &file.srt {
        let _ = srt.clone().or(&ingest::SrtFileOptions::default()).resolve();
    }
    if let Some(http) = &file.http {
        let http = http.clone().or(&httpd::HttpOptions::default());
        let _ = (http.limits(), http.held());
    }

    if let Some(rungs) = file.ladder {
        if rungs.iter().all(|r| r.validate().is_ok()) {
            let keep: Vec<String> = rungs.iter().map(|r| r.name.clone()).collect();
            for (w, h) in [(1920, 1080), (1280, 720), (640, 360), (2, 2), (7680, 4320)] {
                let _ = transcode::plan(&rungs, w, h, &keep);
            }
        }
    }
});
