//! Retention against a real local object store: recordings written as the recorder
//! leaves them, the recorder opened over the directory, the policy applied; exactly
//! the expired recordings' files are gone, every other file is still there.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use record::{
    RecordPolicy, RecordedRendition, Recorder, RecorderConfig, Recording, RetentionPolicy,
    StreamDescription,
};

/// The control plane's answers do not matter to retention.
struct NeverRecord;

impl RecordPolicy for NeverRecord {
    fn should_record<'a>(&'a self, _: &'a str) -> BoxFuture<'a, bool> {
        async { false }.boxed()
    }
    fn describe<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StreamDescription> {
        async { StreamDescription::default() }.boxed()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A finished recording on disk: manifest, playlists, an init segment and segments.
fn write_recording(root: &Path, stream: &str, ended_at: i64, segment_bytes: usize) -> String {
    let id = format!("{stream}-{ended_at}");
    let dir = root.join(&id).join("source");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("init-1.mp4"), vec![0u8; 100]).unwrap();
    for msn in 0..3 {
        std::fs::write(dir.join(format!("seg-{msn}.m4s")), vec![1u8; segment_bytes]).unwrap();
    }
    std::fs::write(dir.join("index.m3u8"), "#EXTM3U\n#EXT-X-ENDLIST\n").unwrap();
    std::fs::write(root.join(&id).join("master.m3u8"), "#EXTM3U\n").unwrap();
    let recording = Recording {
        id: id.clone(),
        stream: stream.into(),
        started_at: ended_at - 6000,
        ended_at,
        duration_ms: 6000,
        bytes: 100 + 3 * segment_bytes as u64,
        renditions: vec![RecordedRendition {
            name: "source".into(),
            segments: 3,
            bytes: 100 + 3 * segment_bytes as u64,
            duration_ms: 6000,
            bandwidth: 1,
            average_bandwidth: 1,
            codecs: "avc1.64001f".into(),
            resolution: None,
            frame_rate: None,
        }],
        gaps: 0,
        title: String::new(),
        description: String::new(),
        tags: Vec::new(),
        private: false,
        poster: None,
    };
    std::fs::write(
        root.join(&id).join("recording.json"),
        serde_json::to_vec(&recording).unwrap(),
    )
    .unwrap();
    id
}

fn files_below(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        files_below(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn retention_deletes_what_it_should_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let now = now_ms();
    let day = 86_400_000;
    // Stream a: one old recording (age limit), three recent ones of which the oldest
    // goes over the byte limit. Stream b: one recent recording over the byte limit on
    // its own (kept: the newest is always kept).
    let a_old = write_recording(root.path(), "a", now - 10 * day, 1000);
    let a1 = write_recording(root.path(), "a", now - 3000, 1000);
    let a2 = write_recording(root.path(), "a", now - 2000, 1000);
    let a3 = write_recording(root.path(), "a", now - 1000, 1000);
    let b1 = write_recording(root.path(), "b", now - 1000, 50_000);
    // Something that is not a recording of ours: never touched.
    std::fs::write(root.path().join("README"), "operator's note").unwrap();
    // An unfinished recording (no manifest): not listed, not deleted.
    std::fs::create_dir_all(root.path().join("c-1").join("source")).unwrap();
    std::fs::write(root.path().join("c-1/source/seg-0.m4s"), "x").unwrap();

    let store = record::open_store(root.path().to_str().unwrap(), None).unwrap();
    let recorder = Recorder::open(store, Arc::new(NeverRecord), RecorderConfig::default())
        .await
        .unwrap();
    assert_eq!(recorder.list().len(), 5);
    let policy = RetentionPolicy {
        max_age: Some(Duration::from_secs(7 * 86_400)),
        // Two of a's recent recordings (3,100 bytes each) fit, the third does not.
        max_bytes_per_stream: Some(7_000),
    };
    let mut deleted = recorder.enforce_retention(&policy, SystemTime::now()).await;
    deleted.sort();
    let mut expected = vec![a_old.clone(), a1.clone()];
    expected.sort();
    assert_eq!(deleted, expected);

    for gone in [&a_old, &a1] {
        assert!(!root.path().join(gone).exists(), "{gone} is still on disk");
    }
    for kept in [&a2, &a3, &b1] {
        assert_eq!(files_below(&root.path().join(kept)), 7, "{kept} lost files");
    }
    assert!(root.path().join("README").exists());
    assert!(root.path().join("c-1/source/seg-0.m4s").exists());
    let mut listed: Vec<String> = recorder.list().into_iter().map(|r| r.id).collect();
    listed.sort();
    let mut left = vec![a2, a3, b1];
    left.sort();
    assert_eq!(listed, left);

    // Applying it again deletes nothing more.
    assert!(
        recorder
            .enforce_retention(&policy, SystemTime::now())
            .await
            .is_empty()
    );
}
