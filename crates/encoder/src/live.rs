//! The real-time driver: pulls raw frames from a source on its own thread, releases
//! each at its presentation time, encodes it, and hands the output to async code.
//! A frame that is already late by more than 300 ms (the machine cannot keep up) is
//! dropped rather than letting the stream fall further behind real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use source::{AudioFormat, Source, SourceError, SourceFrame, VideoFormat};
use tokio::sync::mpsc;

use crate::{EncodeError, Encoded, Encoder, EncoderConfig};

/// Why the live encoder stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Counters the status line reads.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub video_frames: AtomicU64,
    pub audio_frames: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped_frames: AtomicU64,
    /// Position and length of a file source, in ms (-1: unknown).
    pub position_ms: AtomicI64,
    pub duration_ms: AtomicI64,
}

/// A running live encoder.
pub struct LiveEncoder {
    pub output: mpsc::Receiver<Encoded>,
    pub stats: Arc<LiveStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), LiveError>>>,
}

impl LiveEncoder {
    /// Starts the thread. `make_source` gets the wall-clock time (ms since the epoch)
    /// that pts 0 stands for; `make_config` sees the source's formats.
    pub fn start<S, C>(make_source: S, make_config: C) -> Self
    where
        S: FnOnce(u64) -> Result<Box<dyn Source>, SourceError> + Send + 'static,
        C: FnOnce(Option<VideoFormat>, Option<AudioFormat>) -> EncoderConfig + Send + 'static,
    {
        let (tx, output) = mpsc::channel(256);
        let stats = Arc::new(LiveStats {
            position_ms: AtomicI64::new(-1),
            duration_ms: AtomicI64::new(-1),
            ..LiveStats::default()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::Builder::new()
                .name("live-encoder".into())
                .spawn(move || run(make_source, make_config, tx, &stats, &stop))
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the encoder thread");
                None
            }
        };
        Self {
            output,
            stats,
            stop,
            thread,
        }
    }

    /// Asks the thread to stop after the current frame.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the thread and returns how it ended.
    pub fn join(mut self) -> Result<(), LiveError> {
        self.stop();
        // Unblock a thread waiting on a full channel.
        self.output.close();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(LiveError::Encode(EncodeError::Encode(
                "the encoder thread panicked".into(),
            ))),
            None => Ok(()),
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run<S, C>(
    make_source: S,
    make_config: C,
    tx: mpsc::Sender<Encoded>,
    stats: &LiveStats,
    stop: &AtomicBool,
) -> Result<(), LiveError>
where
    S: FnOnce(u64) -> Result<Box<dyn Source>, SourceError>,
    C: FnOnce(Option<VideoFormat>, Option<AudioFormat>) -> EncoderConfig,
{
    let start_unix_ms = unix_ms();
    let start = Instant::now();
    let mut source = make_source(start_unix_ms)?;
    let video_format = source.video_format();
    let mut encoder = Encoder::new(make_config(video_format, source.audio_format()))?;
    // Short stalls (a busy machine) are caught up by encoding faster than real time;
    // only a source that stays behind loses frames.
    let late_limit = Duration::from_millis(300);
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(frame) = source.next_frame()? else {
            break;
        };
        let pts = frame.pts();
        let due = start
            + Duration::from_micros(
                (pts.ticks.max(0) as u64).saturating_mul(1_000_000)
                    / u64::from(pts.timescale.get()),
            );
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if matches!(frame, SourceFrame::Video(_)) && now - due > late_limit {
            stats.dropped_frames.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        encoder.encode(&frame, &mut out)?;
        match frame {
            SourceFrame::Video(_) => stats.video_frames.fetch_add(1, Ordering::Relaxed),
            SourceFrame::Audio(_) => stats.audio_frames.fetch_add(1, Ordering::Relaxed),
        };
        if let Some((position, total)) = source.progress() {
            stats.position_ms.store(
                position.ticks * 1000 / i64::from(position.timescale.get()),
                Ordering::Relaxed,
            );
            stats.duration_ms.store(
                total.ticks * 1000 / i64::from(total.timescale.get()),
                Ordering::Relaxed,
            );
        }
        if !forward(&tx, &mut out, stats) {
            return Ok(());
        }
    }
    encoder.finish(&mut out)?;
    forward(&tx, &mut out, stats);
    Ok(())
}

/// Sends encoder output on; false once nobody listens.
fn forward(tx: &mpsc::Sender<Encoded>, out: &mut Vec<Encoded>, stats: &LiveStats) -> bool {
    for e in out.drain(..) {
        if let Encoded::Frame(f) = &e {
            stats
                .bytes
                .fetch_add(f.data.len() as u64, Ordering::Relaxed);
        }
        if tx.blocking_send(e).is_err() {
            return false;
        }
    }
    true
}
