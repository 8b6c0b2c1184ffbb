//! A recording's poster over a real local store: painted once from the first keyframe
//! of the smallest rendition a few seconds in, written as `ID/poster.jpg` and named in
//! the manifest; a painter that fails leaves a complete recording without a poster.
//! The painter stands in for the transcoder's (FFmpeg), which this crate must not
//! depend on; the binary's end-to-end test (`tests/recording.rs`) paints a real one.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use media::cmaf::{Sample, TrackFragment, VIDEO_TRACK_ID};
use media::{AvcConfig, CodecConfig, Track, TrackKind, Tracks};
use package::{CompletedSegment, SegmentSink, VariantInfo};
use record::{RecordPolicy, Recorder, RecorderConfig, StreamDescription};

struct AlwaysRecord;

impl RecordPolicy for AlwaysRecord {
    fn should_record<'a>(&'a self, _: &'a str) -> BoxFuture<'a, bool> {
        async { true }.boxed()
    }
    fn describe<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StreamDescription> {
        async { StreamDescription::default() }.boxed()
    }
}

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn init() -> Bytes {
    let avc =
        AvcConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)])
            .unwrap();
    media::cmaf::init_segment(&Tracks {
        video: Some(Track {
            kind: TrackKind::Video,
            timescale: media::VIDEO_TIMESCALE,
            codec: CodecConfig::Avc(avc),
        }),
        audio: None,
    })
    .unwrap()
}

/// One second of `rendition` (`width` pixels wide): a keyframe saying which segment and
/// rendition it is, then ordinary frames.
fn segment(rendition: &str, width: u32, msn: u64, start_ms: i64) -> CompletedSegment {
    let samples = (0..30)
        .map(|f| Sample {
            duration: 3000,
            composition_offset: 0,
            keyframe: f == 0,
            data: if f == 0 {
                Bytes::from(format!("key {rendition} {msn}"))
            } else {
                Bytes::from_static(b"delta")
            },
        })
        .collect();
    let chunk = media::cmaf::fragment(
        msn as u32,
        &[TrackFragment {
            track_id: VIDEO_TRACK_ID,
            base_media_decode_time: msn * 90_000,
            samples,
        }],
    )
    .unwrap();
    CompletedSegment {
        msn,
        duration_ticks: 90_000,
        timescale: 90_000,
        discontinuity: false,
        init_version: 1,
        init: init(),
        program_date_ms: start_ms + msn as i64 * 1000,
        chunks: vec![chunk],
        variant: Some(VariantInfo {
            bandwidth: u64::from(width) * 1000,
            average_bandwidth: u64::from(width) * 1000,
            codecs: "avc1.64000d".into(),
            resolution: Some((width, width * 9 / 16)),
            frame_rate: Some(30.0),
        }),
    }
}

async fn recorded(
    dir: &std::path::Path,
    segments: u64,
    painter: impl record::PosterPainter,
) -> record::Recording {
    let store = record::open_store(dir.to_str().unwrap(), None).unwrap();
    let recorder = Recorder::open(store, Arc::new(AlwaysRecord), RecorderConfig::default())
        .await
        .unwrap();
    recorder.set_poster_painter(painter);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    recorder.session_started("show");
    for msn in 0..segments {
        recorder.segment_completed("show", "high", segment("high", 1280, msn, start));
        recorder.segment_completed("show", "low", segment("low", 320, msn, start));
    }
    // The stream ends once its segments are written (as after a grace period).
    let deadline = Instant::now() + Duration::from_secs(10);
    let written = |rendition: &str| {
        std::fs::read_dir(dir).unwrap().flatten().any(|recording| {
            recording
                .path()
                .join(rendition)
                .join(format!("seg-{}.m4s", segments - 1))
                .exists()
        })
    };
    while !(written("low") && written("high")) {
        assert!(Instant::now() < deadline, "the segments are not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recorder.stream_ended("show");
    while recorder.list().is_empty() {
        assert!(Instant::now() < deadline, "the recording is not listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recorder.list().remove(0)
}

#[tokio::test]
async fn the_poster_is_the_smallest_renditions_keyframe_two_seconds_in() {
    let dir = tempfile::tempdir().unwrap();
    let painted: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = painted.clone();
    let painter = move |avc: &AvcConfig, data: &[u8], width: Option<u32>| {
        assert_eq!(&avc.sps[0][..], SPS);
        assert_eq!(width, None, "the poster keeps the rendition's size");
        let keyframe = String::from_utf8_lossy(data).into_owned();
        seen.lock().unwrap().push(keyframe.clone());
        Ok::<_, String>(format!("JPEG of {keyframe}").into_bytes())
    };
    let recording = recorded(dir.path(), 5, painter).await;
    assert_eq!(
        *painted.lock().unwrap(),
        vec!["key low 2".to_owned()],
        "painted once, from the smallest rendition's segment 2 s in"
    );
    assert_eq!(recording.poster.as_deref(), Some(record::POSTER));
    let stored = std::fs::read(dir.path().join(&recording.id).join("poster.jpg")).unwrap();
    assert_eq!(stored, b"JPEG of key low 2");
    let manifest =
        std::fs::read_to_string(dir.path().join(&recording.id).join("recording.json")).unwrap();
    assert!(
        manifest.contains("\"poster\": \"poster.jpg\""),
        "{manifest}"
    );
}

#[tokio::test]
async fn a_poster_that_cannot_be_painted_leaves_a_complete_recording_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let painter = |_: &AvcConfig, _: &[u8], _: Option<u32>| -> Result<Vec<u8>, String> {
        Err("the keyframe did not decode to a picture".into())
    };
    let recording = recorded(dir.path(), 5, painter).await;
    assert_eq!(recording.poster, None);
    assert_eq!(recording.gaps, 0);
    assert_eq!(recording.renditions.len(), 2);
    assert!(recording.renditions.iter().all(|r| r.segments == 5));
    assert!(!dir.path().join(&recording.id).join("poster.jpg").exists());
    let manifest =
        std::fs::read_to_string(dir.path().join(&recording.id).join("recording.json")).unwrap();
    assert!(!manifest.contains("poster"), "{manifest}");
}

#[tokio::test]
async fn a_recording_shorter_than_the_delay_gets_its_first_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let painted: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = painted.clone();
    let painter = move |_: &AvcConfig, data: &[u8], _: Option<u32>| {
        seen.lock()
            .unwrap()
            .push(String::from_utf8_lossy(data).into_owned());
        Ok::<_, String>(b"JPEG".to_vec())
    };
    let recording = recorded(dir.path(), 1, painter).await;
    assert_eq!(*painted.lock().unwrap(), vec!["key low 0".to_owned()]);
    assert_eq!(recording.poster.as_deref(), Some(record::POSTER));
}
