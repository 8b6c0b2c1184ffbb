//! Parameter sets from a real encoder (x264 via ffmpeg, generated at test time) parse
//! to the size, profile and frame rate the encoder was asked for.

use std::process::Command;

use bytes::Bytes;
use media::AvcConfig;
use media::avc::annexb_nalus;

fn encode(size: &str, rate: &str, preset: &str, profile: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate={rate}:duration=0.2"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            preset,
            "-profile:v",
            profile,
            "-pix_fmt",
            "yuv420p",
            "-f",
            "h264",
            "-",
        ])
        .output()
        .expect("ffmpeg must be installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn x264_parameter_sets_parse() {
    for (size, rate, preset, profile, idc, fps) in [
        ("1280x720", "30", "ultrafast", "baseline", 66, 30.0),
        ("320x240", "30", "veryfast", "high", 100, 30.0),
        ("854x480", "25", "medium", "main", 77, 25.0),
        // x264's --profile is a ceiling: ultrafast tools fit Constrained Baseline.
        ("1920x1080", "60", "ultrafast", "high", 66, 60.0),
    ] {
        let stream = encode(size, rate, preset, profile);
        let nalus = annexb_nalus(&stream);
        let sps: Vec<Bytes> = nalus
            .iter()
            .filter(|n| n[0] & 0x1f == 7)
            .map(|n| Bytes::copy_from_slice(n))
            .collect();
        let pps: Vec<Bytes> = nalus
            .iter()
            .filter(|n| n[0] & 0x1f == 8)
            .map(|n| Bytes::copy_from_slice(n))
            .collect();
        let config = AvcConfig::from_parameter_sets(&sps[..1], &pps[..1])
            .unwrap_or_else(|e| panic!("{size} {profile}: {e}"));
        assert_eq!(format!("{}x{}", config.width, config.height), size);
        assert_eq!(config.profile_idc, idc);
        let (n, d) = config.frame_rate.expect("x264 writes VUI timing");
        assert!(
            (f64::from(n) / f64::from(d) - fps).abs() < 1e-9,
            "{size}: {n}/{d}"
        );
        assert!(
            config
                .codec_string()
                .starts_with(&format!("avc1.{idc:02x}"))
        );
    }
}
