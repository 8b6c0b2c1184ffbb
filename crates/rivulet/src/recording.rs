//! Recording in `serve`: the options (flag > `RIVULET_…` environment > the config
//! file's `[record]` section > default), the recorder's policy over the metadata
//! server, and the recordings API's catalog over the recorder. See docs/recording.md.

use clap::Args;
use futures::FutureExt;
use futures::future::BoxFuture;
use meta::record_rules::RecordRules;
use meta::recordings::{RecordingCatalog, RecordingInfo};
use record::{RecordPolicy, Recorder, StreamDescription};
use std::path::Path;
use std::sync::Arc;

/// The flags (and environment variables) of recording.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct RecordArgs {
    /// Record streams whose `record` is not set (PATCH /api/streams/NAME
    /// {"record": true|false} sets it per stream). [default: false]
    #[arg(long, env = "RIVULET_RECORD_DEFAULT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) record_default: Option<bool>,

    /// Where recordings are kept: a directory, or s3://BUCKET[/PREFIX] for an
    /// S3-compatible store (credentials and region from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION). [default: DATA_DIR/recordings]
    #[arg(long, env = "RIVULET_RECORD_STORE", value_name = "DIR|URL")]
    pub(crate) record_store: Option<String>,

    /// The S3-compatible server of an s3:// --record-store (MinIO, Ceph, …), e.g.
    /// http://127.0.0.1:9000. [default: AWS]
    #[arg(long, env = "RIVULET_RECORD_S3_ENDPOINT", value_name = "URL")]
    pub(crate) record_s3_endpoint: Option<String>,

    /// Segments (all renditions) queued per stream for the store; when full, further
    /// segments are left out of the recording (a gap, logged and counted) rather than
    /// holding up the live stream. [default: 64]
    #[arg(long, env = "RIVULET_RECORD_QUEUE_SEGMENTS", value_name = "N")]
    pub(crate) record_queue_segments: Option<usize>,

    /// Delete recordings this many days after their stream ended. [default: keep]
    #[arg(long, env = "RIVULET_RECORD_RETENTION_DAYS", value_name = "DAYS")]
    pub(crate) record_retention_days: Option<f64>,

    /// Per stream, keep the newest recordings while they fit in this many bytes and
    /// delete older ones (the newest is always kept). [default: no limit]
    #[arg(long, env = "RIVULET_RECORD_RETENTION_BYTES", value_name = "BYTES")]
    pub(crate) record_retention_bytes: Option<u64>,

    /// How far back viewers of a recorded live stream may rewind, in seconds
    /// (/live/NAME/dvr.m3u8); 0 turns DVR off. [default: 7200]
    #[arg(long, env = "RIVULET_DVR_WINDOW", value_name = "SECS")]
    pub(crate) dvr_window: Option<u64>,
}

/// The config file's `[record]` section.
pub(crate) use record::{RecordOptions as RecordFile, RecordSettings};

impl RecordArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: Option<&RecordFile>) -> anyhow::Result<RecordSettings> {
        let flags = RecordFile {
            default: self.record_default,
            store: self.record_store.clone(),
            s3_endpoint: self.record_s3_endpoint.clone(),
            queue_segments: self.record_queue_segments,
            retention_days: self.record_retention_days,
            retention_bytes: self.record_retention_bytes,
            dvr_window: self.dvr_window,
        };
        Ok(flags.or(file.unwrap_or(&RecordFile::default())).resolve()?)
    }
}

/// Opens the store and the recorder (its catalog read from the store), which records
/// by the metadata store's word.
pub(crate) async fn open(
    settings: &RecordSettings,
    data_dir: &Path,
    store: Option<meta::MetaStore>,
    webhooks: meta::webhooks::SenderConfig,
) -> anyhow::Result<Recorder> {
    let policy = Arc::new(MetaPolicy(RecordRules {
        store,
        default: settings.default,
        webhooks,
    }));
    let recorder = settings.open(data_dir, policy).await?;
    // The live thumbnail's painter (FFmpeg) paints the recordings' posters too.
    recorder.set_poster_painter(transcode::thumbnail::keyframe_jpeg);
    Ok(recorder)
}

/// Runs retention in the background until `stop`.
pub(crate) fn spawn_retention(
    recorder: &Recorder,
    settings: &RecordSettings,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    settings.spawn_retention(recorder, stop)
}

/// The recorder's policy: the metadata store's [`RecordRules`].
struct MetaPolicy(RecordRules);

impl RecordPolicy for MetaPolicy {
    fn should_record<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, bool> {
        self.0.should_record(stream).boxed()
    }

    fn describe<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, StreamDescription> {
        async move {
            self.0
                .stream(stream)
                .await
                .map(|s| StreamDescription {
                    title: s.title,
                    description: s.description,
                    tags: s.tags,
                    private: s.private,
                })
                .unwrap_or_default()
        }
        .boxed()
    }

    fn finished(&self, recording: &record::Recording) {
        self.0.recording_ready(serde_json::json!({
            "stream": recording.stream,
            "recording": recording.id,
            "vod": format!("/vod/{}/master.m3u8", recording.id),
            "started_at": recording.started_at,
            "ended_at": recording.ended_at,
            "duration_ms": recording.duration_ms,
            "bytes": recording.bytes,
            "gaps": recording.gaps,
        }));
    }
}

/// The recordings API's view of the recorder.
pub(crate) struct Catalog(pub(crate) Recorder);

impl RecordingCatalog for Catalog {
    fn list(&self) -> Vec<RecordingInfo> {
        self.0
            .list()
            .into_iter()
            .map(|r| RecordingInfo {
                playlist: format!("/vod/{}/master.m3u8", r.id),
                poster: r
                    .poster
                    .as_ref()
                    .map(|file| format!("/vod/{}/{file}", r.id)),
                id: r.id,
                stream: r.stream,
                started_at: r.started_at,
                ended_at: r.ended_at,
                duration_ms: r.duration_ms,
                bytes: r.bytes,
                renditions: r.renditions.into_iter().map(|r| r.name).collect(),
                gaps: r.gaps,
                title: r.title,
                description: r.description,
                tags: r.tags,
            })
            .collect()
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        async move { self.0.delete(id).await.map_err(|e| e.to_string()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn flag_over_section_over_default() {
        let file: RecordFile =
            toml::from_str("default = true\nretention_days = 2\nqueue_segments = 8\n")
                .expect("toml");
        let none = RecordArgs::default().resolve(None).expect("ok");
        assert!(!none.default);
        assert!(none.retention.is_off());
        let from_file = RecordArgs::default().resolve(Some(&file)).expect("ok");
        assert!(from_file.default);
        assert_eq!(from_file.recorder.queue_segments, 8);
        assert_eq!(none.recorder.dvr_window, Duration::from_secs(7200));
        let dvr_file: RecordFile = toml::from_str("dvr_window = 600\n").expect("toml");
        let dvr = RecordArgs::default().resolve(Some(&dvr_file)).expect("ok");
        assert_eq!(dvr.recorder.dvr_window, Duration::from_secs(600));
        let off = RecordArgs {
            dvr_window: Some(0),
            ..RecordArgs::default()
        };
        assert!(
            off.resolve(Some(&dvr_file))
                .expect("ok")
                .recorder
                .dvr_window
                .is_zero()
        );
        assert_eq!(
            from_file.retention.max_age,
            Some(Duration::from_secs(2 * 86_400))
        );
        let flag = RecordArgs {
            record_default: Some(false),
            ..RecordArgs::default()
        };
        assert!(!flag.resolve(Some(&file)).expect("ok").default);
        let bad = RecordArgs {
            record_retention_days: Some(-1.0),
            ..RecordArgs::default()
        };
        assert!(format!("{:#}", bad.resolve(None).unwrap_err()).contains("retention-days"));
    }
}
