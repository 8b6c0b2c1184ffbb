//! Two recorders (the pipelines of an A/B pair) over one real local store, fed the
//! same segments except one that B loses: both name the recording alike, and B's
//! finished recording lists every segment (the lost one from A's write, its duration
//! read from the segment), without a gap. And the DVR window of a recording in
//! progress: its playlists and objects, from memory or the store.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use media::cmaf::{Sample, TrackFragment, VIDEO_TRACK_ID};
use media::live_path::MediaObject;
use package::{CompletedSegment, SegmentSink};
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

const TIMESCALE: u32 = 90_000;
/// 60 frames of 1500 ticks: 1 s.
const FRAMES: u32 = 60;
const FRAME_TICKS: u32 = 1500;

/// Segment `msn`: two CMAF chunks of 30 frames each, as the packager's parts are.
fn segment(msn: u64, start_ms: i64) -> CompletedSegment {
    let base = msn * u64::from(FRAMES * FRAME_TICKS);
    let chunk = |i: u32| {
        let samples = (0..FRAMES / 2)
            .map(|f| Sample {
                duration: FRAME_TICKS,
                composition_offset: 0,
                keyframe: i == 0 && f == 0,
                data: Bytes::from(vec![msn as u8; 100]),
            })
            .collect();
        media::cmaf::fragment(
            msn as u32 * 2 + i,
            &[TrackFragment {
                track_id: VIDEO_TRACK_ID,
                base_media_decode_time: base + u64::from(i * FRAMES / 2 * FRAME_TICKS),
                samples,
            }],
        )
        .unwrap()
    };
    CompletedSegment {
        msn,
        duration_ticks: i64::from(FRAMES * FRAME_TICKS),
        timescale: TIMESCALE,
        discontinuity: false,
        init_version: 1,
        init: Bytes::from_static(b"init"),
        program_date_ms: start_ms + msn as i64 * 1000,
        chunks: vec![chunk(0), chunk(1)],
        variant: None,
    }
}

async fn open(dir: &std::path::Path) -> Recorder {
    let store = record::open_store(dir.to_str().unwrap(), None).unwrap();
    Recorder::open(store, Arc::new(AlwaysRecord), RecorderConfig::default())
        .await
        .unwrap()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn b_fills_the_segment_it_lost_from_what_a_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()).await, open(dir.path()).await);
    // Both clocks agree to the millisecond here; the id is rounded to 10 s anyway.
    let start = now_ms() / 10_000 * 10_000 + 1;
    a.session_started("show");
    b.session_started("show");
    for msn in 0..6 {
        a.segment_completed("show", "source", segment(msn, start));
        if msn != 3 {
            b.segment_completed("show", "source", segment(msn, start));
        }
    }
    // A stops mid-stream (killed: no end); B finishes after A's writes are done.
    let seg3 = dir
        .path()
        .join(format!("show-{}", start - 1))
        .join("source/seg-5.m4s");
    until("A wrote its segments under the shared name", || {
        seg3.exists()
    })
    .await;
    b.stream_ended("show");
    until("B's recording is listed", || !b.list().is_empty()).await;
    let recording = &b.list()[0];
    assert_eq!(recording.id, format!("show-{}", start - 1));
    assert_eq!(recording.gaps, 0, "the lost segment was filled");
    assert_eq!(recording.renditions[0].segments, 6);
    assert_eq!(recording.duration_ms, 6000);
    let playlist =
        std::fs::read_to_string(dir.path().join(&recording.id).join("source/index.m3u8")).unwrap();
    assert!(!playlist.contains("DISCONTINUITY"), "{playlist}");
    assert!(
        playlist.contains("#EXTINF:1.00000,\nseg-3.m4s\n"),
        "{playlist}"
    );
    drop(a);
}

#[tokio::test]
async fn the_dvr_window_lists_and_serves_a_recording_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = open(dir.path()).await;
    let start = now_ms();
    recorder.session_started("live");
    for msn in 10..14 {
        recorder.segment_completed("live", "source", segment(msn, start));
    }
    until("the window lists four segments", || {
        recorder
            .dvr_playlist("live", "source")
            .is_some_and(|p| p.matches("#EXTINF").count() == 4)
    })
    .await;
    let playlist = recorder.dvr_playlist("live", "source").unwrap();
    assert!(
        playlist.contains("#EXT-X-MEDIA-SEQUENCE:10\n"),
        "{playlist}"
    );
    let uri = playlist
        .lines()
        .find(|l| l.ends_with("seg-10.m4s"))
        .unwrap();
    let t: u64 = uri
        .strip_prefix("rec-")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = recorder
        .dvr_object("live", "source", t, MediaObject::Segment { msn: 10 })
        .await
        .unwrap()
        .unwrap();
    let expected: Vec<u8> = segment(10, start).chunks.concat();
    assert_eq!(bytes, expected);
    assert!(
        recorder
            .dvr_object("live", "source", t + 1, MediaObject::Segment { msn: 10 })
            .await
            .unwrap()
            .is_none(),
        "another recording's name is another object"
    );
    assert!(
        recorder.dvr_multivariant("live").is_none(),
        "no variant facts yet"
    );
    recorder.stream_ended("live");
    assert!(recorder.dvr_playlist("live", "source").is_none());
}
