//! HEVC and AV1 configurations from real encoders (libx265 and libsvtav1 via ffmpeg,
//! generated at test time): the records we build from the parameter sets parse to the
//! size, profile and level ffprobe reads, and agree with the records ffmpeg's own MP4
//! muxer writes.

use std::process::Command;

use bytes::Bytes;
use media::avc::annexb_nalus;
use media::hevc::{NAL_PPS, NAL_SPS, NAL_VPS, nal_type};
use media::{Av1Config, CodecConfig, HevcConfig, Track, TrackKind, Tracks, VIDEO_TIMESCALE};

/// The CMAF init segment of a video track: ffprobe reads its codec and size back.
fn init_segment_probes_as(codec: CodecConfig, dir: &std::path::Path, want: &str) {
    let init = media::cmaf::init_segment(&Tracks {
        video: Some(Track {
            kind: TrackKind::Video,
            timescale: VIDEO_TIMESCALE,
            codec,
        }),
        audio: None,
    })
    .expect("init segment");
    let path = dir.join("init.mp4");
    std::fs::write(&path, &init).expect("write init");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_tag_string,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed (scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn testsrc(size: &str) -> String {
    format!("testsrc2=size={size}:rate=30:duration=0.2")
}

/// ffprobe's `profile` and `level` of the file at `path`.
fn probe(path: &std::path::Path) -> (String, i64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=profile,level"])
        .args(["-of", "default=nw=1"])
        .arg(path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_owned))
            .unwrap_or_default()
    };
    (field("profile"), field("level").parse().unwrap_or(-1))
}

/// The body of the first box of type `kind` in an MP4 file.
fn box_body(mp4: &[u8], kind: &[u8; 4]) -> Bytes {
    let at = mp4.windows(4).position(|w| w == kind).expect("box present");
    let size = u32::from_be_bytes([mp4[at - 4], mp4[at - 3], mp4[at - 2], mp4[at - 1]]) as usize;
    Bytes::copy_from_slice(&mp4[at + 4..at - 4 + size])
}

#[test]
fn x265_parameter_sets_make_the_hvcc_ffmpeg_makes() {
    let dir = std::env::temp_dir().join(format!("rivulet-hevc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (size, pix_fmt, profile, profile_idc, rate) in [
        ("320x240", "yuv420p", "Main", 1, "30"),
        ("640x360", "yuv420p10le", "Main 10", 2, "24000/1001"),
        // Not a multiple of the 8-pixel coding block: the conformance window crops.
        ("330x186", "yuv420p", "Main", 1, "24"),
    ] {
        let src = format!("testsrc2=size={size}:rate={rate}:duration=0.3");
        let enc = [
            "-f",
            "lavfi",
            "-i",
            &src,
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            pix_fmt,
            "-x265-params",
            "log-level=error",
        ];
        let raw = dir.join("t.hevc");
        let mp4 = dir.join("t.mp4");
        let raw_s = raw.to_string_lossy().into_owned();
        let mp4_s = mp4.to_string_lossy().into_owned();
        ffmpeg(&[&enc[..], &["-y", "-f", "hevc", &raw_s]].concat());
        ffmpeg(&[&enc[..], &["-y", "-tag:v", "hvc1", "-f", "mp4", &mp4_s]].concat());
        let stream = std::fs::read(&raw).expect("hevc written");
        let sets = |t: u8| -> Vec<Bytes> {
            annexb_nalus(&stream)
                .into_iter()
                .filter(|n| nal_type(n) == Some(t))
                .map(Bytes::copy_from_slice)
                .take(1)
                .collect()
        };
        let ours = HevcConfig::from_parameter_sets(&sets(NAL_VPS), &sets(NAL_SPS), &sets(NAL_PPS))
            .unwrap_or_else(|e| panic!("{size}: {e}"));
        assert_eq!(format!("{}x{}", ours.width, ours.height), size);
        let (p, level) = probe(&raw);
        assert_eq!(p, profile, "{size}");
        assert_eq!(ours.profile.profile_idc, profile_idc);
        assert_eq!(i64::from(ours.profile.level_idc), level);
        let bit_depth = if pix_fmt.contains("10") { 10 } else { 8 };
        assert_eq!(ours.bit_depth_luma, bit_depth);
        // The SPS's VUI timing, read past its reference picture sets.
        let (n, d) = ours
            .frame_rate
            .unwrap_or_else(|| panic!("{size}: no frame rate"));
        let (want_n, want_d) = rate.split_once('/').unwrap_or((rate, "1"));
        assert_eq!(
            u64::from(n) * want_d.parse::<u64>().unwrap(),
            u64::from(d) * want_n.parse::<u64>().unwrap(),
            "{size}: {n}/{d} fps, not {rate}"
        );
        let tier = ours.codec_string();
        assert!(
            tier.starts_with(&format!("hvc1.{profile_idc}."))
                && tier.contains(&format!(".L{level}")),
            "{tier}"
        );
        // ffmpeg's muxer reads the same parameter sets into its own hvcC.
        let theirs = HevcConfig::parse(box_body(&std::fs::read(&mp4).expect("mp4"), b"hvcC"))
            .expect("ffmpeg's hvcC parses");
        assert_eq!(theirs.codec_string(), ours.codec_string());
        assert_eq!((theirs.width, theirs.height), (ours.width, ours.height));
        assert!(theirs.sets(NAL_SPS).eq(ours.sets(NAL_SPS)));
        let (w, h) = (ours.width, ours.height);
        init_segment_probes_as(CodecConfig::Hevc(ours), &dir, &format!("hvc1,{w},{h}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn svtav1_sequence_header_makes_the_av1c_ffmpeg_makes() {
    let dir = std::env::temp_dir().join(format!("rivulet-av1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (size, pix_fmt, depth) in [("320x240", "yuv420p", 8), ("480x270", "yuv420p10le", 10)] {
        let src = testsrc(size);
        let enc = [
            "-f",
            "lavfi",
            "-i",
            &src,
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-pix_fmt",
            pix_fmt,
        ];
        let mp4 = dir.join("t.mp4");
        let mp4_s = mp4.to_string_lossy().into_owned();
        let stream = ffmpeg(&[&enc[..], &["-f", "obu", "-"]].concat());
        ffmpeg(&[&enc[..], &["-y", "-f", "mp4", &mp4_s]].concat());
        let ours = Av1Config::from_sequence_header(
            media::av1::find_sequence_header(&stream).expect("a sequence header"),
        )
        .unwrap_or_else(|e| panic!("{size}: {e}"));
        assert_eq!(format!("{}x{}", ours.width, ours.height), size);
        assert_eq!(ours.seq_profile, 0, "libsvtav1 makes Main profile");
        assert_eq!(ours.bit_depth, depth);
        assert_eq!(probe(&mp4).0, "Main");
        assert!(ours.codec_string().starts_with("av01.0."));
        assert!(ours.codec_string().ends_with(&format!(".{depth:02}")));
        let theirs = Av1Config::parse(box_body(&std::fs::read(&mp4).expect("mp4"), b"av1C"))
            .expect("ffmpeg's av1C parses");
        assert_eq!(theirs.codec_string(), ours.codec_string());
        assert_eq!((theirs.width, theirs.height), (ours.width, ours.height));
        let (w, h) = (ours.width, ours.height);
        init_segment_probes_as(CodecConfig::Av1(ours), &dir, &format!("av01,{w},{h}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
