//! The recorder: a [`package::SegmentSink`] that queues each stream's segments and a
//! writer task per stream that puts them into the object store, then the VOD playlists
//! and the manifest when the stream ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use media::live_path::MediaObject;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use package::{CompletedSegment, SegmentSink};
use tokio::sync::{mpsc, oneshot};

use crate::dvr::{self, DvrLog};
use crate::error::RecordError;
use crate::poster::{POSTER, POSTER_AFTER_MS, PosterPainter};
use crate::retention::RetentionPolicy;
use crate::vod::{self, LoggedSegment, MANIFEST, RecordedRendition, Recording};

/// Settings of the recorder.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// Segments (of all renditions) queued per stream before further ones are dropped
    /// from the recording (a gap), so that a slow store never holds up the live path.
    pub queue_segments: usize,
    /// Tries of one write before its segment is given up (a gap).
    pub write_tries: u32,
    /// The first retry's delay; each later one doubles it.
    pub retry_delay: Duration,
    /// While a stream is not being recorded, how often its policy is asked again (so
    /// that `record: true` set on a live stream takes effect).
    pub policy_recheck: Duration,
    /// How far back a viewer of a recorded live stream may rewind (the DVR playlists);
    /// zero: no DVR.
    pub dvr_window: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            queue_segments: 64,
            write_tries: 4,
            retry_delay: Duration::from_millis(200),
            policy_recheck: Duration::from_secs(5),
            dvr_window: Duration::from_secs(2 * 3600),
        }
    }
}

/// Facts about a stream that a finished recording keeps.
#[derive(Clone, Debug, Default)]
pub struct StreamDescription {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// A private stream's recording needs the stream's playback token, as its live
    /// media did.
    pub private: bool,
}

/// Which streams are recorded, and what they are: answered by the control plane
/// (the binary implements it over the metadata server).
pub trait RecordPolicy: Send + Sync {
    /// Whether `stream` is to be recorded now.
    fn should_record<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, bool>;
    /// The stream's title, description and tags, copied into a finished recording.
    fn describe<'a>(&'a self, stream: &'a str) -> BoxFuture<'a, StreamDescription>;
    /// A recording is finished and listed (its VOD playable): tell whoever wants to
    /// know (the `recording.ready` webhook). Must not wait for the network.
    fn finished(&self, _recording: &Recording) {}
}

/// Records every stream its policy says to. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    policy: Arc<dyn RecordPolicy>,
    config: RecorderConfig,
    runtime: tokio::runtime::Handle,
    /// The streams being recorded (or considered), by name.
    active: Mutex<HashMap<String, ActiveStream>>,
    /// Finished recordings, by id.
    catalog: RwLock<BTreeMap<String, Recording>>,
    /// Paints the recordings' posters; none until the binary sets it.
    painter: OnceLock<Arc<dyn PosterPainter>>,
}

/// The live path's side of one stream's recording.
struct ActiveStream {
    jobs: mpsc::Sender<CompletedJob>,
    end: Option<oneshot::Sender<()>>,
    /// Renditions that lost a segment to a full queue: their next queued segment is
    /// marked as following a gap.
    gapped: HashSet<String>,
    /// The DVR window, shared with the writer.
    dvr: Arc<Mutex<DvrLog>>,
}

struct CompletedJob {
    rendition: String,
    segment: CompletedSegment,
    after_gap: bool,
}

impl Recorder {
    /// A recorder over `store`, its catalog loaded from the manifests already there.
    /// Must be called inside a tokio runtime, whose handle runs the writer tasks.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        policy: Arc<dyn RecordPolicy>,
        config: RecorderConfig,
    ) -> Result<Self, RecordError> {
        let recorder = Self {
            inner: Arc::new(Inner {
                store,
                policy,
                config,
                runtime: tokio::runtime::Handle::current(),
                active: Mutex::default(),
                catalog: RwLock::default(),
                painter: OnceLock::new(),
            }),
        };
        recorder.load_catalog().await?;
        Ok(recorder)
    }

    /// Paints a poster for each recording from now on (`ID/poster.jpg`). Once: a
    /// second painter is ignored.
    pub fn set_poster_painter(&self, painter: impl PosterPainter) {
        let _ = self.inner.painter.set(Arc::new(painter));
    }

    /// The store the recordings are in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    async fn load_catalog(&self) -> Result<(), RecordError> {
        let listing = self.inner.store.list_with_delimiter(None).await?;
        let mut catalog = BTreeMap::new();
        for prefix in listing.common_prefixes {
            let id = prefix.to_string();
            if !vod::valid_id(&id) {
                continue;
            }
            match self.read_manifest(&id).await {
                Ok(Some(recording)) => {
                    catalog.insert(id, recording);
                }
                // A recording the process did not finish (it stopped mid-stream).
                Ok(None) => {
                    tracing::warn!(recording = %id, "recording has no manifest (unfinished); not listed")
                }
                Err(e) => {
                    tracing::warn!(recording = %id, error = %e, "recording manifest unreadable; not listed")
                }
            }
        }
        *self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner()) = catalog;
        Ok(())
    }

    async fn read_manifest(&self, id: &str) -> Result<Option<Recording>, RecordError> {
        match self
            .inner
            .store
            .get(&vod::object_path(id, None, MANIFEST))
            .await
        {
            Ok(got) => Ok(Some(serde_json::from_slice(&got.bytes().await?)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Finished recordings, newest first.
    pub fn list(&self) -> Vec<Recording> {
        let catalog = self.inner.catalog.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<Recording> = catalog.values().cloned().collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        all
    }

    /// A finished recording.
    pub fn get(&self, id: &str) -> Option<Recording> {
        self.inner
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Removes a finished recording and all its objects. `false` if there is none.
    pub async fn delete(&self, id: &str) -> Result<bool, RecordError> {
        let removed = self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if removed.is_none() {
            return Ok(false);
        }
        let prefix = object_store::path::Path::from(id);
        let locations = self
            .inner
            .store
            .list(Some(&prefix))
            .map(|meta| meta.map(|m| m.location))
            .boxed();
        let mut deleted = self.inner.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(recording = %id, "recording deleted");
        Ok(true)
    }

    /// Applies `policy` once at `now`: deletes what it expires. Returns the ids deleted.
    pub async fn enforce_retention(
        &self,
        policy: &RetentionPolicy,
        now: SystemTime,
    ) -> Vec<String> {
        let expired = policy.expired(&self.list(), epoch_ms(now));
        let mut deleted = Vec::new();
        for id in expired {
            match self.delete(&id).await {
                Ok(true) => {
                    metrics::counter!("record_retention_deleted_total").increment(1);
                    deleted.push(id);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(recording = %id, error = %e, "retention could not delete a recording; will retry")
                }
            }
        }
        deleted
    }

    /// Applies `policy` every `interval` until `stop` completes.
    pub async fn run_retention(
        self,
        policy: RetentionPolicy,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        if policy.is_off() {
            return;
        }
        tokio::pin!(stop);
        loop {
            let deleted = self.enforce_retention(&policy, SystemTime::now()).await;
            if !deleted.is_empty() {
                tracing::info!(count = deleted.len(), "retention deleted recordings");
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// The DVR window of `stream`, while it is being recorded (and DVR is on).
    fn dvr_log(&self, stream: &str) -> Option<Arc<Mutex<DvrLog>>> {
        if self.inner.config.dvr_window.is_zero() {
            return None;
        }
        self.active().get(stream).map(|s| s.dvr.clone())
    }

    /// The DVR multivariant playlist of `stream` (`/live/STREAM/dvr.m3u8`): `None`
    /// unless it is being recorded with DVR on and has a segment.
    pub fn dvr_multivariant(&self, stream: &str) -> Option<String> {
        let log = self.dvr_log(stream)?;
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        dvr::multivariant_playlist(&log)
    }

    /// The DVR playlist of one rendition (`/live/STREAM/RENDITION/dvr.m3u8`): the
    /// window's segments, `None` as for [`Recorder::dvr_multivariant`].
    pub fn dvr_playlist(&self, stream: &str, rendition: &str) -> Option<String> {
        let log = self.dvr_log(stream)?;
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        let (_, t) = log.recording.as_ref()?;
        dvr::media_playlist(*t, &log.renditions.get(rendition)?.segments, false)
    }

    /// A recorded object the DVR playlists name (`RENDITION/rec-T/seg-N.m4s`,
    /// `…/init-V.mp4`): from memory while it is being written, else from the store.
    /// `Ok(None)` when there is no such object.
    pub async fn dvr_object(
        &self,
        stream: &str,
        rendition: &str,
        recording: u64,
        object: MediaObject,
    ) -> Result<Option<Bytes>, RecordError> {
        if let Some(log) = self.dvr_log(stream) {
            let log = log.lock().unwrap_or_else(|e| e.into_inner());
            let pending = log
                .recording
                .as_ref()
                .filter(|(_, t)| *t == recording)
                .and_then(|_| log.renditions.get(rendition)?.pending.get(&object).cloned());
            if let Some(bytes) = pending {
                return Ok(Some(bytes));
            }
        }
        let id = format!("{stream}-{recording}");
        if !vod::valid_id(&id) {
            return Ok(None);
        }
        let path = vod::object_path(&id, Some(rendition), &object.file_name());
        match self.inner.store.get(&path).await {
            Ok(got) => Ok(Some(got.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActiveStream>> {
        self.inner.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SegmentSink for Recorder {
    fn session_started(&self, stream: &str) {
        let mut active = self.active();
        // A publisher returning within the grace period continues the same recording.
        if active.contains_key(stream) {
            return;
        }
        let (jobs, rx) = mpsc::channel(self.inner.config.queue_segments.max(1));
        let (end, end_rx) = oneshot::channel();
        let dvr = Arc::new(Mutex::new(DvrLog::default()));
        active.insert(
            stream.to_owned(),
            ActiveStream {
                jobs,
                end: Some(end),
                gapped: HashSet::new(),
                dvr: dvr.clone(),
            },
        );
        let writer = Writer::new(self.inner.clone(), stream.to_owned(), dvr);
        self.inner.runtime.spawn(writer.run(rx, end_rx));
    }

    fn segment_completed(&self, stream: &str, rendition: &str, segment: CompletedSegment) {
        let mut active = self.active();
        let Some(s) = active.get_mut(stream) else {
            return;
        };
        let after_gap = s.gapped.contains(rendition);
        let job = CompletedJob {
            rendition: rendition.to_owned(),
            segment,
            after_gap,
        };
        match s.jobs.try_send(job) {
            Ok(()) => {
                if after_gap {
                    s.gapped.remove(rendition);
                }
            }
            Err(mpsc::error::TrySendError::Full(job)) => {
                metrics::counter!("record_segments_dropped_total", "reason" => "queue_full")
                    .increment(1);
                if s.gapped.insert(rendition.to_owned()) {
                    tracing::warn!(
                        stream,
                        rendition,
                        msn = job.segment.msn,
                        "recording queue full (the store is slow or failing): segment left out of the recording; the live stream is not affected"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn stream_ended(&self, stream: &str) {
        if let Some(mut s) = self.active().remove(stream)
            && let Some(end) = s.end.take()
        {
            let _ = end.send(());
        }
    }
}

/// One stream's recording, in its own task.
struct Writer {
    inner: Arc<Inner>,
    stream: String,
    /// Set once the policy said yes: the recording's id and when it started.
    recording: Option<(String, i64)>,
    renditions: BTreeMap<String, RenditionLog>,
    gaps: u64,
    bytes: u64,
    /// When the store last failed, to log a failing store once in a while, not per write.
    last_failure_log: Option<Instant>,
    dvr: Arc<Mutex<DvrLog>>,
    /// Whether the poster was attempted, and its object name once written.
    poster_tried: bool,
    poster: Option<String>,
    /// The first keyframe chunk of the smallest rendition so far (rendition, init,
    /// chunk): the poster of a recording that ends before [`POSTER_AFTER_MS`].
    poster_fallback: Option<(String, Bytes, Bytes)>,
}

#[derive(Default)]
struct RenditionLog {
    segments: Vec<LoggedSegment>,
    inits_written: HashSet<u32>,
    variant: Option<package::VariantInfo>,
    bytes: u64,
    ticks: i64,
    timescale: u32,
}

impl Writer {
    fn new(inner: Arc<Inner>, stream: String, dvr: Arc<Mutex<DvrLog>>) -> Self {
        Self {
            inner,
            stream,
            recording: None,
            renditions: BTreeMap::new(),
            gaps: 0,
            bytes: 0,
            last_failure_log: None,
            dvr,
            poster_tried: false,
            poster: None,
            poster_fallback: None,
        }
    }

    fn dvr(&self) -> std::sync::MutexGuard<'_, DvrLog> {
        self.dvr.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dvr_on(&self) -> bool {
        !self.inner.config.dvr_window.is_zero()
    }

    /// The recording's id, `STREAM-T`. Both pipelines of an A/B pair must name it
    /// alike, so that they write the same objects: `T` is the first segment's wall
    /// clock rounded down to [`ID_ROUNDING_MS`] (the pipelines' clocks for one segment
    /// differ by milliseconds). Should a finished recording already have that name (a
    /// stream that ended and came back within the rounding), the exact time is used.
    async fn recording_id(&self, started: i64) -> (String, u64) {
        let exact = u64::try_from(started).unwrap_or(0);
        let rounded = exact - exact % ID_ROUNDING_MS;
        let id = format!("{}-{rounded}", self.stream);
        let taken = self
            .inner
            .store
            .head(&vod::object_path(&id, None, MANIFEST))
            .await
            .is_ok();
        if taken {
            (format!("{}-{exact}", self.stream), exact)
        } else {
            (id, rounded)
        }
    }

    async fn run(mut self, mut jobs: mpsc::Receiver<CompletedJob>, end: oneshot::Receiver<()>) {
        let mut asked: Option<Instant> = None;
        tokio::pin!(end);
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => {
                        if self.recording.is_none() {
                            let due = asked.is_none_or(|at| at.elapsed() >= self.inner.config.policy_recheck);
                            if !due {
                                continue;
                            }
                            asked = Some(Instant::now());
                            if !self.inner.policy.should_record(&self.stream).await {
                                continue;
                            }
                            let started = job.segment.program_date_ms;
                            let (id, t) = self.recording_id(started).await;
                            tracing::info!(stream = %self.stream, recording = %id, "recording started");
                            metrics::gauge!("record_active_recordings").increment(1.0);
                            self.dvr().recording = Some((id.clone(), t));
                            self.recording = Some((id, started));
                        }
                        self.write_segment(job).await;
                    }
                    None => break,
                },
                _ = &mut end => {
                    // Write what was queued before the end, then finish.
                    jobs.close();
                    while let Some(job) = jobs.recv().await {
                        if self.recording.is_some() {
                            self.write_segment(job).await;
                        }
                    }
                    break;
                }
            }
        }
        if self.recording.is_some() {
            metrics::gauge!("record_active_recordings").decrement(1.0);
            self.finish().await;
        }
    }

    async fn write_segment(&mut self, job: CompletedJob) {
        let Some((id, _)) = self.recording.clone() else {
            return;
        };
        let CompletedJob {
            rendition,
            segment,
            after_gap,
        } = job;
        if after_gap {
            self.gaps += 1;
        }
        // A missing segment before this one shows as a hole in the numbering (the
        // playlists mark it); the flag is the stream's own discontinuity.
        let logged = LoggedSegment {
            msn: segment.msn,
            duration_ticks: segment.duration_ticks,
            timescale: segment.timescale,
            discontinuity: segment.discontinuity,
            init_version: segment.init_version,
            program_date_ms: segment.program_date_ms,
        };
        let mut body = Vec::with_capacity(segment.len());
        for chunk in &segment.chunks {
            body.extend_from_slice(chunk);
        }
        let body = Bytes::from(body);
        let init_object = MediaObject::Init {
            version: segment.init_version,
        };
        let segment_object = MediaObject::Segment { msn: segment.msn };
        if self.dvr_on() {
            // Listed at once, served from memory until the store has it.
            let window_ms =
                i64::try_from(self.inner.config.dvr_window.as_millis()).unwrap_or(i64::MAX);
            let mut dvr = self.dvr();
            dvr.push(
                &rendition,
                logged.clone(),
                segment.variant.clone(),
                window_ms,
            );
            if let Some(r) = dvr.renditions.get_mut(&rendition) {
                r.pending.insert(init_object, segment.init.clone());
                r.pending.insert(segment_object, body.clone());
            }
        }
        let stored = self.store_segment(&id, &rendition, &segment, body).await;
        if self.dvr_on() {
            let mut dvr = self.dvr();
            if let Some(r) = dvr.renditions.get_mut(&rendition) {
                r.pending.remove(&init_object);
                r.pending.remove(&segment_object);
                if stored.is_none() {
                    r.segments.retain(|s| s.msn != logged.msn);
                }
            }
        }
        let Some(written) = stored else {
            self.lose_segment(&rendition);
            return;
        };
        metrics::counter!("record_segments_written_total").increment(1);
        metrics::counter!("record_bytes_written_total").increment(written);
        self.bytes += written;
        let poster_candidate = (!self.poster_tried && self.inner.painter.get().is_some())
            .then(|| segment.chunks.first().cloned())
            .flatten()
            .map(|chunk| (rendition.clone(), segment.init.clone(), chunk));
        let poster_due = self
            .recording
            .as_ref()
            .is_some_and(|(_, started)| segment.program_date_ms - started >= POSTER_AFTER_MS);
        let log = self.renditions.entry(rendition).or_default();
        log.segments.push(logged);
        log.bytes += written;
        // Durations in one timescale per rendition; a change of timescale (tracks) is
        // rare, and the total is for display only.
        log.ticks += segment.duration_ticks;
        log.timescale = segment.timescale;
        if segment.variant.is_some() {
            log.variant = segment.variant;
        }
        if let Some((rendition, init, chunk)) = poster_candidate
            && self.is_smallest(&rendition)
        {
            if poster_due {
                self.paint_poster(&id, &rendition, init, chunk).await;
            } else if self
                .poster_fallback
                .as_ref()
                .is_none_or(|(kept, _, _)| !self.is_smallest(kept))
            {
                self.poster_fallback = Some((rendition, init, chunk));
            }
        }
    }

    /// Whether `rendition` is the smallest picture among the renditions recorded so
    /// far (the lowest rung: cheapest to decode, and a poster is shown small).
    fn is_smallest(&self, rendition: &str) -> bool {
        let size = |log: &RenditionLog| {
            log.variant
                .as_ref()
                .and_then(|v| v.resolution)
                .map_or(u64::MAX, |(w, h)| u64::from(w) * u64::from(h))
        };
        let Some(own) = self.renditions.get(rendition).map(size) else {
            return false;
        };
        // Sizes not known (yet): any rendition will do.
        self.renditions.values().all(|log| size(log) >= own)
    }

    /// Paints the poster from the keyframe that starts `chunk` and writes it beside the
    /// recording. Tried once; a recording without a poster is still complete.
    async fn paint_poster(&mut self, id: &str, rendition: &str, init: Bytes, chunk: Bytes) {
        self.poster_tried = true;
        self.poster_fallback = None;
        let Some(painter) = self.inner.painter.get().cloned() else {
            return;
        };
        let made = tokio::task::spawn_blocking(move || {
            let (avc, data) = media::cmaf::first_avc_keyframe(&init, &chunk)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the segment does not start with an H.264 keyframe".to_owned())?;
            painter.paint(&avc, &data, None)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the painting task failed: {e}")));
        let jpeg = match made {
            Ok(jpeg) => jpeg,
            Err(e) => {
                metrics::counter!("record_posters_total", "result" => "failed").increment(1);
                tracing::warn!(stream = %self.stream, recording = %id, rendition, error = %e, "cannot paint the recording's poster; it will have none");
                return;
            }
        };
        let path = vod::object_path(id, None, POSTER);
        if self.put_with_retries(&path, Bytes::from(jpeg)).await {
            metrics::counter!("record_posters_total", "result" => "written").increment(1);
            tracing::debug!(stream = %self.stream, recording = %id, rendition, "poster written");
            self.poster = Some(POSTER.to_owned());
        } else {
            metrics::counter!("record_posters_total", "result" => "failed").increment(1);
            tracing::warn!(stream = %self.stream, recording = %id, "cannot write the recording's poster; it will have none");
        }
    }

    /// Puts the segment (and its init segment, the first time): the bytes written, or
    /// `None` when the store would not take them.
    async fn store_segment(
        &mut self,
        id: &str,
        rendition: &str,
        segment: &CompletedSegment,
        body: Bytes,
    ) -> Option<u64> {
        let mut written = 0u64;
        let log = self.renditions.entry(rendition.to_owned()).or_default();
        if !log.inits_written.contains(&segment.init_version) {
            let file = MediaObject::Init {
                version: segment.init_version,
            }
            .file_name();
            let path = vod::object_path(id, Some(rendition), &file);
            if !self.put_with_retries(&path, segment.init.clone()).await {
                return None;
            }
            written += segment.init.len() as u64;
            let log = self.renditions.entry(rendition.to_owned()).or_default();
            log.inits_written.insert(segment.init_version);
        }
        let file = MediaObject::Segment { msn: segment.msn }.file_name();
        let path = vod::object_path(id, Some(rendition), &file);
        let len = body.len() as u64;
        if !self.put_with_retries(&path, body).await {
            return None;
        }
        Some(written + len)
    }

    fn lose_segment(&mut self, rendition: &str) {
        metrics::counter!("record_segments_dropped_total", "reason" => "write_failed").increment(1);
        self.gaps += 1;
        self.renditions.entry(rendition.to_owned()).or_default();
    }

    /// Puts one object, retrying with backoff. `false` when every try failed.
    async fn put_with_retries(&mut self, path: &object_store::path::Path, bytes: Bytes) -> bool {
        let mut delay = self.inner.config.retry_delay;
        let tries = self.inner.config.write_tries.max(1);
        for attempt in 1..=tries {
            match self
                .inner
                .store
                .put(path, PutPayload::from_bytes(bytes.clone()))
                .await
            {
                Ok(_) => return true,
                Err(e) => {
                    metrics::counter!("record_write_errors_total").increment(1);
                    let log_now = self
                        .last_failure_log
                        .is_none_or(|at| at.elapsed() >= Duration::from_secs(30));
                    if log_now {
                        self.last_failure_log = Some(Instant::now());
                        tracing::error!(
                            stream = %self.stream,
                            object = %path,
                            attempt,
                            error = %e,
                            "cannot write to the recording store (check its permissions, space or credentials); retrying, the live stream is not affected"
                        );
                    }
                    if attempt < tries {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        false
    }

    /// Segments this writer lacks but the store has, written by the other pipeline of
    /// an A/B pair under the same names (a segment this one lost, or the start of a
    /// stream it joined late): added to the log, their durations read from their
    /// `tfdt`/`trun`, so that the VOD lists them.
    async fn fill_from_store(&mut self, id: &str) {
        let names: Vec<String> = self.renditions.keys().cloned().collect();
        let mut filled = 0u64;
        for rendition in names {
            let prefix = object_store::path::Path::from(format!("{id}/{rendition}"));
            let listing = match self.inner.store.list_with_delimiter(Some(&prefix)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(recording = %id, error = %e, "cannot list the recording to fill its gaps");
                    return;
                }
            };
            let Some(log) = self.renditions.get(&rendition) else {
                continue;
            };
            let Some(template) = log.segments.first().cloned() else {
                continue;
            };
            let own: HashSet<u64> = log.segments.iter().map(|s| s.msn).collect();
            let missing: Vec<(u64, object_store::path::Path)> = listing
                .objects
                .into_iter()
                .filter_map(|o| match MediaObject::parse(o.location.filename()?) {
                    Some(MediaObject::Segment { msn }) if !own.contains(&msn) => {
                        Some((msn, o.location))
                    }
                    _ => None,
                })
                .collect();
            for (msn, path) in missing {
                let bytes = match self.inner.store.get(&path).await {
                    Ok(got) => match got.bytes().await {
                        Ok(b) => b,
                        Err(_) => continue,
                    },
                    Err(_) => continue,
                };
                let Some(duration_ticks) = segment_duration(&bytes) else {
                    tracing::warn!(recording = %id, object = %path, "a segment of the other pipeline cannot be read; left out");
                    continue;
                };
                let Some(log) = self.renditions.get_mut(&rendition) else {
                    continue;
                };
                // Next to its neighbours: their init segment, a date from theirs.
                let at = log.segments.partition_point(|s| s.msn < msn);
                let ms =
                    |s: &LoggedSegment| s.duration_ticks * 1000 / i64::from(s.timescale.max(1));
                let (init_version, program_date_ms) = match (
                    at.checked_sub(1).and_then(|i| log.segments.get(i)),
                    log.segments.get(at),
                ) {
                    (Some(before), _) => (before.init_version, before.program_date_ms + ms(before)),
                    (None, Some(after)) => (
                        after.init_version,
                        after.program_date_ms
                            - duration_ticks * 1000 / i64::from(template.timescale.max(1)),
                    ),
                    (None, None) => (template.init_version, template.program_date_ms),
                };
                log.segments.insert(
                    at,
                    LoggedSegment {
                        msn,
                        duration_ticks,
                        timescale: template.timescale,
                        discontinuity: false,
                        init_version,
                        program_date_ms,
                    },
                );
                log.ticks += duration_ticks;
                log.bytes += bytes.len() as u64;
                self.bytes += bytes.len() as u64;
                filled += 1;
            }
        }
        if filled > 0 {
            tracing::info!(stream = %self.stream, recording = %id, segments = filled, "recording completed with segments the other pipeline wrote");
            // What is still missing: the holes left in the numbering.
            self.gaps = self
                .renditions
                .values()
                .map(|log| {
                    log.segments
                        .windows(2)
                        .filter(|w| w[0].msn + 1 != w[1].msn)
                        .count() as u64
                })
                .sum();
        }
    }

    /// The stream ended: the VOD playlists and the manifest.
    async fn finish(&mut self) {
        let Some((id, started_at)) = self.recording.clone() else {
            return;
        };
        self.fill_from_store(&id).await;
        // A recording shorter than the poster's delay: its first keyframe.
        if !self.poster_tried
            && let Some((rendition, init, chunk)) = self.poster_fallback.take()
        {
            self.paint_poster(&id, &rendition, init, chunk).await;
        }
        let description = self.inner.policy.describe(&self.stream).await;
        let finished: Vec<(String, String, RecordedRendition)> = self
            .renditions
            .iter()
            .filter(|(_, log)| !log.segments.is_empty())
            .map(|(name, log)| {
                (
                    name.clone(),
                    vod::media_playlist(&log.segments),
                    recorded_rendition(name, log),
                )
            })
            .collect();
        let mut renditions = Vec::new();
        for (name, playlist, rendition) in finished {
            let path = vod::object_path(&id, Some(&name), media::live_path::MEDIA_PLAYLIST);
            if !self.put_with_retries(&path, Bytes::from(playlist)).await {
                tracing::error!(stream = %self.stream, recording = %id, rendition = %name, "cannot write the recording's playlist; rendition left out");
                continue;
            }
            renditions.push(rendition);
        }
        if renditions.is_empty() {
            tracing::warn!(stream = %self.stream, recording = %id, "nothing was recorded");
            return;
        }
        let recording = Recording {
            id: id.clone(),
            stream: self.stream.clone(),
            started_at,
            ended_at: epoch_ms(SystemTime::now()),
            duration_ms: renditions.iter().map(|r| r.duration_ms).max().unwrap_or(0),
            bytes: self.bytes,
            renditions,
            gaps: self.gaps,
            title: description.title,
            description: description.description,
            tags: description.tags,
            private: description.private,
            poster: self.poster.clone(),
        };
        let master = vod::master_playlist(&recording);
        let master_path = vod::object_path(&id, None, media::live_path::MULTIVARIANT_PLAYLIST);
        let manifest = match serde_json::to_vec_pretty(&recording) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(recording = %id, error = %e, "cannot encode the recording's manifest");
                return;
            }
        };
        let manifest_path = vod::object_path(&id, None, MANIFEST);
        if !self
            .put_with_retries(&master_path, Bytes::from(master))
            .await
            || !self
                .put_with_retries(&manifest_path, Bytes::from(manifest))
                .await
        {
            tracing::error!(stream = %self.stream, recording = %id, "cannot write the recording's manifest; it is not listed");
            return;
        }
        tracing::info!(
            stream = %self.stream,
            recording = %id,
            duration_ms = recording.duration_ms,
            bytes = recording.bytes,
            gaps = recording.gaps,
            vod = %format!("/vod/{id}/master.m3u8"),
            "recording finished"
        );
        self.inner.policy.finished(&recording);
        self.inner
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, recording);
    }
}

/// A rendition's line in the manifest: sizes, duration, and its multivariant facts.
fn recorded_rendition(name: &str, log: &RenditionLog) -> RecordedRendition {
    let duration_ms =
        u64::try_from(i128::from(log.ticks) * 1000 / i128::from(log.timescale.max(1))).unwrap_or(0);
    let average = (log.bytes * 8 * 1000).checked_div(duration_ms).unwrap_or(0);
    let variant = log.variant.as_ref();
    RecordedRendition {
        name: name.to_owned(),
        segments: log.segments.len() as u64,
        bytes: log.bytes,
        duration_ms,
        bandwidth: variant.map_or(average, |v| v.bandwidth.max(average)),
        average_bandwidth: average,
        codecs: variant.map(|v| v.codecs.clone()).unwrap_or_default(),
        resolution: variant.and_then(|v| v.resolution),
        frame_rate: variant.and_then(|v| v.frame_rate),
    }
}

/// A segment's duration in its main track's timescale (video if it has video): the
/// sum of the sample durations of its CMAF chunks. `None` if it does not parse.
fn segment_duration(mut bytes: &[u8]) -> Option<i64> {
    let box_len = |b: &[u8]| -> Option<usize> {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        (len >= 8 && len <= b.len()).then_some(len)
    };
    let mut total = 0i64;
    while !bytes.is_empty() {
        let moof = box_len(bytes)?;
        let mdat = box_len(bytes.get(moof..)?)?;
        let summary = media::cmaf::inspect_fragment(bytes.get(..moof + mdat)?).ok()?;
        let main = summary
            .tracks
            .iter()
            .find(|t| t.track_id == media::cmaf::VIDEO_TRACK_ID)
            .or_else(|| summary.tracks.first())?;
        total += main.durations.iter().map(|d| i64::from(*d)).sum::<i64>();
        bytes = &bytes[moof + mdat..];
    }
    Some(total)
}

/// Recording ids round the start down to this (see `Writer::recording_id`).
const ID_ROUNDING_MS: u64 = 10_000;

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
