//! One stream's transcoding: a decode thread and one thread per rung, joined by
//! bounded queues. Nothing here runs on the async runtime; the async side pushes with
//! [`TranscodeInput`] (never blocking) and reads a tokio channel.
//!
//! ```text
//! TranscodeInput ─(bounded)─▶ decode thread ─┬─(bounded)─▶ rung 720p: x264 ─┐
//!                              decode once,   ├─(bounded)─▶ rung 480p: x264 ─┼─▶ output
//!                              scale in a     └─(bounded)─▶ rung 360p: x264 ─┘
//!                              cascade, decide IDRs
//! ```
//!
//! Load shedding: a full rung queue drops that rung's picture (the largest, most
//! expensive rung falls behind first), counted in `transcode_dropped_frames_total`;
//! a forced IDR that is dropped moves to the rung's next picture. A full input queue
//! drops source frames until the next keyframe (the decoder needs its references).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use encoder::{EncodedPicture, VideoEncoderConfig, X264Encoder};
use ffmpeg_next as ff;
use hub::{IdrRequests, InputSignal, RenditionOutput, RenditionUpdate};
use media::avc::avcc_to_annexb;
use media::{CodecConfig, Frame, Track, TrackKind, Tracks, VIDEO_TIMESCALE, VideoCodec};
use tokio::sync::mpsc;

use crate::audio::{AacLevel, ToAac};
use crate::keyframes::{KeyframePlanner, RequestedIdrs};
use crate::ladder::{PlannedRung, Rung, plan};

/// Settings of the transcoder.
#[derive(Clone, Debug)]
pub struct TranscodeConfig {
    pub rungs: Vec<Rung>,
    /// A passthrough `source` rendition is served too: IDRs then go on the first
    /// source keyframe of each segment interval, where the packager cuts the source
    /// rendition, so that all renditions cut alike.
    pub align_to_source_keyframes: bool,
    /// The packager's segment target: an IDR starts every interval.
    pub segment_target: Duration,
    /// Source frames waiting for the decoder.
    pub input_queue: usize,
    /// Pictures and audio frames waiting for each rung's encoder. About a second
    /// of media: a publisher's encoder flushes its delayed frames in one burst (ffmpeg
    /// at the end of a file sends x264's whole lookahead at once), and a burst is not
    /// a rung that cannot keep up.
    pub rung_queue: usize,
    /// Wait for room instead of dropping (offline use: benchmarks, files). A live
    /// stream must never set this: a slow rung would hold back every other.
    pub lossless: bool,
    /// The passthrough `source` rendition carries the AAC made of MP3 audio (CMAF
    /// carries no MP3): the transcoder sends it there too, made once for all.
    pub source_audio: bool,
    /// A rung that drops frames (its encoder queue full) for this long without a
    /// pause is more than the machine can encode in real time: the top rung is
    /// withdrawn (logged, counted in `transcode_rungs_withdrawn_total`, gone from
    /// the master) rather than every rung dropping frames silently.
    pub lag_limit: Duration,
    /// Test only: the named rung's encoder sleeps this long per picture, a machine
    /// too slow for it on demand (`RIVULET_TEST_SLOW_RUNG=NAME:MS`).
    pub slow_rung: Option<(String, Duration)>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            rungs: crate::default_rungs(),
            align_to_source_keyframes: false,
            segment_target: Duration::from_secs(2),
            input_queue: 180,
            rung_queue: 80,
            lossless: false,
            source_audio: false,
            lag_limit: Duration::from_secs(3),
            slow_rung: None,
        }
    }
}

enum Input {
    Tracks(Arc<Tracks>),
    Frame(Frame, SystemTime),
}

/// The least time between two IDRs of a rung when the second is only asked for (a
/// WebRTC viewer joining): each costs every viewer of the rung a large picture, so a
/// stream with viewers coming and going gets at most one such IDR a second.
const REQUESTED_IDR_INTERVAL: Duration = Duration::from_secs(1);
const REQUESTED_IDR_INTERVAL_TICKS: i64 =
    REQUESTED_IDR_INTERVAL.as_millis() as i64 * VIDEO_TIMESCALE.get() as i64 / 1000;

/// The feeding end. Dropping it ends the session (after the encoders flush).
pub struct TranscodeInput {
    tx: SyncSender<Input>,
    stream: String,
    waiting_for_keyframe: bool,
    lossless: bool,
    idr_requests: IdrRequests,
}

impl TranscodeInput {
    /// Where outputs ask a rung for an IDR (honoured at most once per
    /// `REQUESTED_IDR_INTERVAL` per rung).
    pub fn idr_requests(&self) -> IdrRequests {
        self.idr_requests.clone()
    }

    /// New tracks from the publisher. Rare and small: waits for room if it must.
    pub fn push_tracks(&mut self, tracks: Arc<Tracks>) {
        let _ = self.tx.send(Input::Tracks(tracks));
        self.waiting_for_keyframe = true;
    }

    /// One source frame. Never blocks: when the decoder is behind, video is dropped
    /// until the next keyframe.
    pub fn push_frame(&mut self, frame: Frame, arrival: SystemTime) {
        let is_video = frame.kind == TrackKind::Video;
        if is_video && self.waiting_for_keyframe {
            if !frame.keyframe {
                return;
            }
            self.waiting_for_keyframe = false;
        }
        if self.lossless {
            let _ = self.tx.send(Input::Frame(frame, arrival));
            return;
        }
        match self.tx.try_send(Input::Frame(frame, arrival)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("transcode_input_dropped_total", "stream" => self.stream.clone())
                    .increment(1);
                if is_video {
                    if !self.waiting_for_keyframe {
                        tracing::warn!(stream = %self.stream, "transcoder cannot keep up; skipping to the next keyframe");
                    }
                    self.waiting_for_keyframe = true;
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Starts transcoding `stream`. Output arrives on the returned channel, which closes
/// when the input has been dropped and everything in flight has come out.
pub fn start(
    config: Arc<TranscodeConfig>,
    stream: &str,
) -> (TranscodeInput, mpsc::Receiver<RenditionOutput>) {
    let (tx, rx) = sync_channel(config.input_queue.max(1));
    let (out_tx, out_rx) = mpsc::channel(1024);
    let lossless = config.lossless;
    let name = stream.to_owned();
    let idr_requests = IdrRequests::default();
    let requests = idr_requests.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("decode-{stream}"))
        .spawn(move || Decoder::new(config, name, out_tx, requests).run(rx));
    if let Err(e) = spawned {
        tracing::error!(stream, error = %e, "cannot start the transcoder thread");
    }
    (
        TranscodeInput {
            tx,
            stream: stream.to_owned(),
            waiting_for_keyframe: true,
            lossless,
            idr_requests,
        },
        out_rx,
    )
}

enum RungInput {
    Picture {
        frame: ff::frame::Video,
        pts: i64,
        keyframe: bool,
        arrival: SystemTime,
    },
    Audio(Frame, SystemTime),
    AudioTrack(Option<Track>),
}

struct RungWorker {
    name: Arc<str>,
    planned: PlannedRung,
    tx: Option<SyncSender<RungInput>>,
    depth: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    scaler: Option<(
        ff::software::scaling::Context,
        (ff::format::Pixel, u32, u32),
    )>,
    /// A forced IDR was dropped: the next picture sent is one.
    pending_keyframe: bool,
    /// IDRs outputs asked for (see [`IdrRequests`]).
    requested_idrs: RequestedIdrs,
    /// Frame-rate cap: after a picture is sent, the next one at or after this many
    /// ticks is (`None`: every picture).
    keep_every: Option<i64>,
    /// Frame-rate cap: the next picture at or after this pts is sent.
    next_pts: i64,
    dropped: u64,
    /// Since when this rung has dropped frames without a pause of `lag_limit`, and
    /// its latest drop.
    dropping: Option<(Instant, Instant)>,
}

impl RungWorker {
    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn send(&mut self, stream: &str, lossless: bool, input: RungInput) -> Result<(), RungInput> {
        let Some(tx) = &self.tx else {
            return Err(input);
        };
        // Counted before the send: the worker may take it out at once.
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        let sent = if lossless {
            tx.send(input).map_err(|e| TrySendError::Disconnected(e.0))
        } else {
            tx.try_send(input)
        };
        match sent {
            Ok(()) => {
                metrics::gauge!("transcode_queue_depth", "stream" => stream.to_owned(), "rendition" => self.name.to_string())
                    .set(depth as f64);
                Ok(())
            }
            Err(TrySendError::Full(i) | TrySendError::Disconnected(i)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(i)
            }
        }
    }
}

struct Decoder {
    config: Arc<TranscodeConfig>,
    stream: String,
    out: mpsc::Sender<RenditionOutput>,
    decoder: Option<ff::decoder::Video>,
    /// The source's video configuration (H.264, HEVC or AV1) the decoder was opened for.
    source_video: Option<CodecConfig>,
    /// The audio every rendition carries: the source's AAC, or AAC made from MP3.
    audio: Option<Track>,
    /// Set when the source's audio is MP3: decoded and encoded to AAC once, here.
    to_aac: Option<ToAac>,
    rungs: Vec<RungWorker>,
    /// Rungs withdrawn for lag: stopped when the session ends.
    retired: Vec<RungWorker>,
    /// Every rendition name this stream has had (kept across source changes).
    names: Vec<String>,
    /// Source frames sent to the decoder: (pts, keyframe, arrival).
    pending: VecDeque<(i64, bool, SystemTime)>,
    /// Which pictures start a segment (IDR in every rung).
    keyframes: KeyframePlanner,
    /// IDRs asked for by outputs, in one rung each.
    idr_requests: IdrRequests,
    /// Whether the last decoded picture was black.
    black: Option<bool>,
    /// Decodes the source's AAC (passed through untouched) only to hear its level.
    aac_level: Option<AacLevel>,
    /// Whether the last decoded audio was silent.
    silent: Option<bool>,
}

impl Decoder {
    fn new(
        config: Arc<TranscodeConfig>,
        stream: String,
        out: mpsc::Sender<RenditionOutput>,
        idr_requests: IdrRequests,
    ) -> Self {
        let segment_ticks = (config.segment_target.as_micros() as i64
            * i64::from(VIDEO_TIMESCALE.get())
            / 1_000_000)
            .max(1);
        let keyframes = KeyframePlanner::new(segment_ticks, config.align_to_source_keyframes);
        Self {
            config,
            stream,
            out,
            decoder: None,
            source_video: None,
            audio: None,
            to_aac: None,
            rungs: Vec::new(),
            retired: Vec::new(),
            names: Vec::new(),
            pending: VecDeque::new(),
            keyframes,
            idr_requests,
            black: None,
            aac_level: None,
            silent: None,
        }
    }

    fn run(mut self, rx: Receiver<Input>) {
        if let Err(e) = ff::init() {
            tracing::error!(error = %e, "libav does not initialise; no transcoding");
            return;
        }
        while let Ok(input) = rx.recv() {
            match input {
                Input::Tracks(tracks) => self.handle_tracks(&tracks),
                Input::Frame(frame, arrival) if frame.kind == TrackKind::Video => {
                    self.handle_video(frame, arrival)
                }
                Input::Frame(frame, arrival) => self.handle_audio(frame, arrival),
            }
        }
        self.flush_decoder();
        for r in self.rungs.iter_mut().chain(self.retired.iter_mut()) {
            r.stop();
        }
    }

    fn handle_tracks(&mut self, tracks: &Tracks) {
        let audio = match tracks.audio.as_ref().map(|t| &t.codec) {
            Some(CodecConfig::Aac(aac)) => {
                self.to_aac = None;
                if self.aac_level.as_ref().is_none_or(|l| l.config != *aac) {
                    self.aac_level = match AacLevel::new(aac.clone()) {
                        Ok(l) => Some(l),
                        Err(e) => {
                            tracing::warn!(stream = %self.stream, error = %e, "cannot decode the AAC audio: its silence goes unnoticed");
                            None
                        }
                    };
                }
                tracks.audio.clone()
            }
            Some(source @ (CodecConfig::Mp3(_) | CodecConfig::Opus(_))) => {
                self.aac_level = None;
                let same = self.to_aac.as_ref().is_some_and(|m| m.source == *source);
                if !same {
                    self.to_aac = match ToAac::new(source) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            tracing::error!(stream = %self.stream, codec = %source.codec_string(), error = %e, "cannot transcode the audio to AAC; renditions will be silent");
                            None
                        }
                    };
                }
                self.to_aac.as_ref().map(|m| m.track().clone())
            }
            _ => None,
        };
        if audio != self.audio {
            self.audio = audio.clone();
            for r in &mut self.rungs {
                let _ = r.send(
                    &self.stream,
                    self.config.lossless,
                    RungInput::AudioTrack(audio.clone()),
                );
            }
        }
        let Some((video, codec, (width, height))) = tracks.video.as_ref().and_then(|t| {
            Some((
                t.codec.clone(),
                t.codec.video_codec()?,
                t.codec.video_size()?,
            ))
        }) else {
            tracing::warn!(stream = %self.stream, "no video: nothing to transcode");
            return;
        };
        if self.source_video.as_ref() == Some(&video) {
            return;
        }
        // A new source format: finish the old ladder, start a new one.
        self.flush_decoder();
        for r in &mut self.rungs {
            r.stop();
        }
        self.rungs.clear();
        self.pending.clear();
        self.keyframes.reset();
        // AV1: dav1d (libavcodec's own AV1 decoder needs a hardware device).
        let found = match codec {
            VideoCodec::Avc => ff::decoder::find(ff::codec::Id::H264),
            VideoCodec::Hevc => ff::decoder::find(ff::codec::Id::HEVC),
            VideoCodec::Av1 => ff::decoder::find_by_name("libdav1d"),
        };
        let decoder = found.ok_or(ff::Error::DecoderNotFound).and_then(|codec| {
            let mut ctx = ff::codec::context::Context::new_with_codec(codec);
            // Slice threads only: frame threads would add a frame of delay each.
            ctx.set_threading(ff::threading::Config {
                kind: ff::threading::Type::Slice,
                count: 0,
                ..Default::default()
            });
            ctx.set_time_base(ff::Rational::new(1, VIDEO_TIMESCALE.get() as i32));
            ctx.decoder().video()
        });
        match decoder {
            Ok(d) => self.decoder = Some(d),
            Err(e) => {
                tracing::error!(stream = %self.stream, error = %e, codec = codec.name(), "cannot open the video decoder");
                return;
            }
        }
        let frame_rate = video
            .frame_rate()
            .filter(|(n, d)| *n > 0 && *d > 0)
            .unwrap_or((30, 1));
        let planned = plan(&self.config.rungs, width, height, &self.names);
        tracing::info!(
            stream = %self.stream,
            source = %format!("{} {width}x{height}", codec.name()),
            renditions = %planned.iter().map(|p| format!("{}={}x{}", p.rung.name, p.width, p.height)).collect::<Vec<_>>().join(" "),
            "transcoding"
        );
        for p in planned {
            if !self.names.contains(&p.rung.name) {
                self.names.push(p.rung.name.clone());
            }
            self.rungs.push(self.spawn_rung(p, frame_rate));
        }
        self.source_video = Some(video);
    }

    fn spawn_rung(&self, planned: PlannedRung, frame_rate: (u32, u32)) -> RungWorker {
        let (tx, rx) = sync_channel(self.config.rung_queue.max(1));
        let name: Arc<str> = Arc::from(planned.rung.name.as_str());
        let depth = Arc::new(AtomicUsize::new(0));
        let source = source_rate(frame_rate);
        let rate = capped_rate(source, planned.rung.max_fps);
        // Kept pictures are one rung interval apart; half a source interval of slack
        // takes jittery timestamps.
        let keep_every = (rate != source).then(|| {
            let ticks = |r: source::FrameRate| {
                i64::from(VIDEO_TIMESCALE.get()) * i64::from(r.den) / i64::from(r.num.max(1))
            };
            ticks(rate) - ticks(source) / 2
        });
        let mut settings =
            VideoEncoderConfig::new(planned.width, planned.height, rate, planned.rung.bitrate);
        settings.max_rate = planned.rung.max_rate;
        settings.buffer_size = planned.rung.buffer_size;
        settings.preset = planned.rung.preset.clone();
        settings.profile = planned.rung.profile.clone();
        settings.codec = planned.rung.codec;
        if settings.codec == VideoCodec::Av1 {
            // libsvtav1 through this libavcodec ignores forced keyframes; libaom's
            // real-time mode takes them, so the AV1 rung stays aligned.
            settings.encoder = Some("libaom-av1".into());
        }
        let worker = RungThread {
            stream: self.stream.clone(),
            name: name.clone(),
            settings,
            audio: self.audio.clone(),
            out: self.out.clone(),
            depth: depth.clone(),
            delay: self
                .config
                .slow_rung
                .as_ref()
                .filter(|(n, _)| *n == planned.rung.name)
                .map(|(_, d)| *d),
        };
        let thread = std::thread::Builder::new()
            .name(format!("x264-{}", planned.rung.name))
            .spawn(move || worker.run(rx))
            .map_err(|e| tracing::error!(error = %e, "cannot start a rung thread"))
            .ok();
        RungWorker {
            name,
            planned,
            tx: Some(tx),
            depth,
            thread,
            scaler: None,
            pending_keyframe: false,
            requested_idrs: RequestedIdrs::new(REQUESTED_IDR_INTERVAL_TICKS),
            keep_every,
            next_pts: i64::MIN,
            dropped: 0,
            dropping: None,
        }
    }

    fn handle_video(&mut self, frame: Frame, arrival: SystemTime) {
        let (Some(decoder), Some(video)) = (self.decoder.as_mut(), self.source_video.as_ref())
        else {
            return;
        };
        let data = decoder_input(video, &frame);
        let mut packet = ff::Packet::copy(&data);
        packet.set_pts(Some(frame.pts.ticks));
        packet.set_dts(Some(frame.dts.ticks));
        if frame.keyframe {
            packet.set_flags(ff::codec::packet::Flags::KEY);
        }
        if let Err(e) = decoder.send_packet(&packet) {
            metrics::counter!("transcode_decode_errors_total", "stream" => self.stream.clone())
                .increment(1);
            tracing::debug!(stream = %self.stream, error = %e, "undecodable frame skipped");
        }
        self.pending
            .push_back((frame.pts.ticks, frame.keyframe, arrival));
        if self.pending.len() > 256 {
            self.pending.pop_front();
        }
        self.drain_decoder();
    }

    fn flush_decoder(&mut self) {
        if let Some(d) = self.decoder.as_mut() {
            let _ = d.send_eof();
            self.drain_decoder();
        }
        self.decoder = None;
    }

    fn drain_decoder(&mut self) {
        let mut decoded = ff::frame::Video::empty();
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return;
            };
            if decoder.receive_frame(&mut decoded).is_err() {
                return;
            }
            let Some(pts) = decoded.timestamp().or(decoded.pts()) else {
                continue;
            };
            // Find what we know of this picture's source frame.
            let (keyframe, arrival) = match self.pending.iter().position(|p| p.0 == pts) {
                Some(i) => {
                    let (_, k, a) = self.pending[i];
                    self.pending.remove(i);
                    (k, a)
                }
                None => (false, SystemTime::now()),
            };
            let force = self.keyframes.place(pts, keyframe);
            let black = crate::levels::picture_is_black(
                decoded.data(0),
                decoded.stride(0),
                decoded.width() as usize,
                decoded.height() as usize,
            );
            if self.black != Some(black) {
                self.black = Some(black);
                // On this thread, never the runtime's: waiting for room is fine.
                let _ = self
                    .out
                    .blocking_send(RenditionOutput::Input(InputSignal::Picture { black }));
            }
            for name in self.idr_requests.take() {
                if let Some(r) = self.rungs.iter_mut().find(|r| r.name == name) {
                    r.requested_idrs.ask();
                }
            }
            self.fan_out(&decoded, pts, force, arrival);
        }
    }

    /// Scales the picture down the ladder (each rung from the one above it) and hands
    /// each rung its copy.
    fn fan_out(&mut self, decoded: &ff::frame::Video, pts: i64, force: bool, arrival: SystemTime) {
        let mut previous: Option<ff::frame::Video> = None;
        let mut lagging = None;
        for i in 0..self.rungs.len() {
            let input = previous.as_ref().unwrap_or(decoded);
            let r = &mut self.rungs[i];
            let (w, h) = (r.planned.width, r.planned.height);
            let scaled = if input.width() == w
                && input.height() == h
                && input.format() == ff::format::Pixel::YUV420P
            {
                input.clone()
            } else {
                let key = (input.format(), input.width(), input.height());
                if r.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
                    match ff::software::scaling::Context::get(
                        key.0,
                        key.1,
                        key.2,
                        ff::format::Pixel::YUV420P,
                        w,
                        h,
                        ff::software::scaling::Flags::AREA,
                    ) {
                        Ok(s) => r.scaler = Some((s, key)),
                        Err(e) => {
                            tracing::error!(stream = %self.stream, rendition = %r.name, error = %e, "cannot scale");
                            return;
                        }
                    }
                }
                let mut out = ff::frame::Video::empty();
                if let Some((scaler, _)) = r.scaler.as_mut()
                    && scaler.run(input, &mut out).is_err()
                {
                    continue;
                }
                out
            };
            let capped = pts < r.next_pts;
            // A requested IDR is not a segment boundary (the packager cuts only at the
            // planned ones), just a picture a new viewer can start from.
            let requested = r.requested_idrs.due(pts);
            let keyframe = force || r.pending_keyframe || requested;
            if !capped || force {
                if let Some(interval) = r.keep_every {
                    r.next_pts = pts + interval;
                }
                let picture = RungInput::Picture {
                    frame: scaled.clone(),
                    pts,
                    keyframe,
                    arrival,
                };
                match r.send(&self.stream, self.config.lossless, picture) {
                    Ok(()) => {
                        r.pending_keyframe = false;
                        if keyframe {
                            r.requested_idrs.handle_idr(pts);
                            if requested && !force {
                                metrics::counter!("transcode_requested_idrs_total", "stream" => self.stream.clone(), "rendition" => r.name.to_string())
                                    .increment(1);
                            }
                        }
                    }
                    Err(_) => {
                        r.pending_keyframe |= keyframe;
                        r.dropped += 1;
                        metrics::counter!("transcode_dropped_frames_total", "stream" => self.stream.clone(), "rendition" => r.name.to_string())
                            .increment(1);
                        if r.dropped.is_power_of_two() {
                            tracing::warn!(stream = %self.stream, rendition = %r.name, dropped = r.dropped, "rung cannot keep up; dropping its frames");
                        }
                        let now = Instant::now();
                        let since = match r.dropping {
                            Some((since, last))
                                if now.duration_since(last) < self.config.lag_limit =>
                            {
                                since
                            }
                            _ => now,
                        };
                        r.dropping = Some((since, now));
                        if now.duration_since(since) >= self.config.lag_limit {
                            lagging = Some(r.name.clone());
                        }
                    }
                }
            }
            previous = Some(scaled);
        }
        if let Some(lagging) = lagging {
            self.withdraw_top_rung(&lagging);
        }
    }

    /// `lagging` has dropped frames for `lag_limit`: the machine cannot encode the
    /// ladder in real time. The top rung (the most expensive) goes, once, unless it is
    /// the last: the others then get the time it took.
    fn withdraw_top_rung(&mut self, lagging: &str) {
        if self.rungs.len() < 2 {
            return;
        }
        let mut top = self.rungs.remove(0);
        // Not joined here: it may still be encoding its queue, and this thread must
        // not wait for it.
        top.tx = None;
        tracing::warn!(
            stream = %self.stream,
            rendition = %top.name,
            lagging,
            lag_limit = ?self.config.lag_limit,
            "the transcoder cannot keep real time (a rung dropped frames for the lag limit): \
             the top rung is withdrawn from the master; use a smaller ladder, faster presets \
             or more CPU"
        );
        metrics::counter!("transcode_rungs_withdrawn_total", "stream" => self.stream.clone(), "rendition" => top.name.to_string())
            .increment(1);
        // On this thread, never the runtime's: waiting for room is fine.
        let _ = self
            .out
            .blocking_send(RenditionOutput::Withdraw(top.name.clone()));
        // The rest start afresh: their drops were the withdrawn rung's doing.
        for r in &mut self.rungs {
            r.dropping = None;
        }
        self.retired.push(top);
    }

    fn handle_audio(&mut self, frame: Frame, arrival: SystemTime) {
        if self.audio.is_none() {
            return;
        }
        if let Some(m) = self.to_aac.as_mut() {
            let (aac, silent) = m.transcode(&frame, &self.stream);
            self.report_silence(silent);
            if self.config.source_audio {
                let source: Arc<str> = Arc::from(hub::SOURCE_RENDITION);
                for f in &aac {
                    // On this thread, never the runtime's: waiting for room is fine.
                    let _ = self.out.blocking_send(RenditionOutput::media(
                        &source,
                        RenditionUpdate::Frame(f.clone(), arrival),
                    ));
                }
            }
            for f in aac {
                self.send_audio(f, arrival);
            }
            return;
        }
        let silent = self.aac_level.as_mut().and_then(|l| l.silent(&frame));
        self.report_silence(silent);
        self.send_audio(frame, arrival);
    }

    fn report_silence(&mut self, silent: Option<bool>) {
        if let Some(silent) = silent
            && self.silent != Some(silent)
        {
            self.silent = Some(silent);
            // On this thread, never the runtime's: waiting for room is fine.
            let _ = self
                .out
                .blocking_send(RenditionOutput::Input(InputSignal::Audio { silent }));
        }
    }

    fn send_audio(&mut self, frame: Frame, arrival: SystemTime) {
        for i in 0..self.rungs.len() {
            let stream = self.stream.clone();
            let lossless = self.config.lossless;
            let r = &mut self.rungs[i];
            if r.send(&stream, lossless, RungInput::Audio(frame.clone(), arrival))
                .is_err()
            {
                metrics::counter!("transcode_dropped_audio_total", "stream" => stream, "rendition" => r.name.to_string())
                    .increment(1);
            }
        }
    }
}

fn source_rate((num, den): (u32, u32)) -> source::FrameRate {
    source::FrameRate::new(num, den)
}

/// A rung's frame rate under its cap: the source's divided by the smallest whole number
/// that brings it to the cap or below (60 → 30, 50 → 25, 59.94 → 29.97), so that the
/// pictures kept are evenly spaced source pictures (30 of 50 a second would judder).
fn capped_rate(source: source::FrameRate, cap: Option<u32>) -> source::FrameRate {
    let Some(cap) = cap.filter(|&c| c > 0) else {
        return source;
    };
    let mut divisor = 1u32;
    // (A hundredth of slack: 30000/1001 is not above 30.)
    while source.as_f64() / f64::from(divisor) > f64::from(cap) + 0.01 && divisor < 64 {
        divisor += 1;
    }
    source::FrameRate::new(source.num, source.den.saturating_mul(divisor))
}

/// One rung's encoder, on its own thread.
struct RungThread {
    stream: String,
    name: Arc<str>,
    settings: VideoEncoderConfig,
    audio: Option<Track>,
    out: mpsc::Sender<RenditionOutput>,
    depth: Arc<AtomicUsize>,
    /// Test only: sleep this long per picture (see `TranscodeConfig::slow_rung`).
    delay: Option<Duration>,
}

impl RungThread {
    fn run(mut self, rx: Receiver<RungInput>) {
        let mut encoder = match X264Encoder::new(self.settings.clone()) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(stream = %self.stream, rendition = %self.name, error = %e, "cannot open the rung's encoder");
                return;
            }
        };
        let mut announced: Option<Arc<Tracks>> = None;
        let mut held_audio: Vec<(Frame, SystemTime)> = Vec::new();
        let mut encoded: Vec<EncodedPicture> = Vec::new();
        let mut last_arrival = SystemTime::now();
        let mut window = (Instant::now(), 0u64, None::<i64>, 0i64);
        let labels = [
            ("stream", self.stream.clone()),
            ("rendition", self.name.to_string()),
        ];
        while let Ok(input) = rx.recv() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            match input {
                RungInput::Picture {
                    mut frame,
                    pts,
                    keyframe,
                    arrival,
                } => {
                    if let Some(d) = self.delay {
                        std::thread::sleep(d);
                    }
                    last_arrival = arrival;
                    if let Err(e) = encoder.encode_av_frame(&mut frame, pts, keyframe, &mut encoded)
                    {
                        tracing::warn!(stream = %self.stream, rendition = %self.name, error = %e, "picture not encoded");
                    }
                    // Frames per second and media seconds per wall second, per rung.
                    window.1 += 1;
                    let first = *window.2.get_or_insert(pts);
                    window.3 = pts - first;
                    let elapsed = window.0.elapsed();
                    if elapsed >= Duration::from_secs(2) {
                        metrics::gauge!("transcode_rung_fps", &labels)
                            .set(window.1 as f64 / elapsed.as_secs_f64());
                        metrics::gauge!("transcode_realtime_factor", &labels).set(
                            window.3 as f64
                                / f64::from(VIDEO_TIMESCALE.get())
                                / elapsed.as_secs_f64(),
                        );
                        window = (Instant::now(), 0, None, 0);
                    }
                }
                RungInput::Audio(frame, arrival) => {
                    if announced.is_some() {
                        if !self.emit(RenditionOutput::media(
                            &self.name,
                            RenditionUpdate::Frame(frame, arrival),
                        )) {
                            return;
                        }
                    } else if held_audio.len() < 500 {
                        held_audio.push((frame, arrival));
                    }
                }
                RungInput::AudioTrack(track) => {
                    self.audio = track;
                    announced = None;
                }
            }
            if !self.publish(
                &encoder,
                &mut announced,
                &mut held_audio,
                &mut encoded,
                last_arrival,
            ) {
                return;
            }
        }
        let _ = encoder_flush(&mut encoder, &mut encoded);
        self.publish(
            &encoder,
            &mut announced,
            &mut held_audio,
            &mut encoded,
            last_arrival,
        );
    }

    /// Sends tracks (when new) and what was encoded; false once nobody listens.
    fn publish(
        &self,
        encoder: &X264Encoder,
        announced: &mut Option<Arc<Tracks>>,
        held_audio: &mut Vec<(Frame, SystemTime)>,
        encoded: &mut Vec<EncodedPicture>,
        arrival: SystemTime,
    ) -> bool {
        use encoder::VideoEncode;
        let Some(video) = encoder.config() else {
            return true;
        };
        let tracks = Arc::new(Tracks {
            video: Some(Track {
                kind: TrackKind::Video,
                timescale: VIDEO_TIMESCALE,
                codec: video.clone(),
            }),
            audio: self.audio.clone(),
        });
        if announced.as_ref() != Some(&tracks) {
            *announced = Some(tracks.clone());
            if !self.emit(RenditionOutput::media(
                &self.name,
                RenditionUpdate::Tracks(tracks),
            )) {
                return false;
            }
        }
        for p in encoded.drain(..) {
            if !self.emit(RenditionOutput::media(
                &self.name,
                RenditionUpdate::Frame(p.frame, arrival),
            )) {
                return false;
            }
        }
        for (frame, arrival) in held_audio.drain(..) {
            if !self.emit(RenditionOutput::media(
                &self.name,
                RenditionUpdate::Frame(frame, arrival),
            )) {
                return false;
            }
        }
        true
    }

    fn emit(&self, output: RenditionOutput) -> bool {
        self.out.blocking_send(output).is_ok()
    }
}

/// A source frame as the decoder takes it, with the parameter sets in band on key
/// frames (the decoder then needs no extradata, and a new source configuration needs no
/// new decoder): Annex B for H.264 and HEVC, the OBUs for AV1 with the sequence header
/// put in front when the key frame lacks it.
fn decoder_input(video: &CodecConfig, frame: &Frame) -> Vec<u8> {
    let mut data = Vec::with_capacity(frame.data.len() + 64);
    let (sets, nal_length_size): (Vec<&[u8]>, u8) = match video {
        CodecConfig::Avc(avc) => (
            avc.sps
                .iter()
                .chain(avc.pps.iter())
                .map(|b| &b[..])
                .collect(),
            avc.nal_length_size,
        ),
        CodecConfig::Hevc(hevc) => (
            hevc.parameter_sets.iter().map(|b| &b[..]).collect(),
            hevc.nal_length_size,
        ),
        CodecConfig::Av1(av1) => {
            if frame.keyframe && media::av1::find_sequence_header(&frame.data).is_none() {
                data.extend_from_slice(&av1.sequence_header);
            }
            data.extend_from_slice(&frame.data);
            return data;
        }
        CodecConfig::Aac(_) | CodecConfig::Mp3(_) | CodecConfig::Opus(_) => return data,
    };
    if frame.keyframe {
        for ps in sets {
            data.extend_from_slice(&[0, 0, 0, 1]);
            data.extend_from_slice(ps);
        }
    }
    data.extend_from_slice(&avcc_to_annexb(&frame.data, nal_length_size));
    data
}

fn encoder_flush(
    encoder: &mut X264Encoder,
    out: &mut Vec<EncodedPicture>,
) -> Result<(), encoder::EncodeError> {
    use encoder::VideoEncode;
    encoder.flush(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_rung_keeps_evenly_spaced_source_pictures() {
        let rate = source::FrameRate::new;
        assert_eq!(capped_rate(rate(60, 1), Some(30)), rate(60, 2));
        assert_eq!(capped_rate(rate(50, 1), Some(30)), rate(50, 2));
        assert_eq!(
            capped_rate(rate(60_000, 1001), Some(30)),
            rate(60_000, 2002)
        );
        assert_eq!(capped_rate(rate(120, 1), Some(30)), rate(120, 4));
        // At or under the cap, or no cap: the source's rate.
        assert_eq!(
            capped_rate(rate(30_000, 1001), Some(30)),
            rate(30_000, 1001)
        );
        assert_eq!(capped_rate(rate(25, 1), Some(30)), rate(25, 1));
        assert_eq!(capped_rate(rate(60, 1), None), rate(60, 1));
        assert_eq!(capped_rate(rate(60, 1), Some(0)), rate(60, 1));
        // An unknown source rate stays unknown.
        assert_eq!(capped_rate(rate(0, 1), Some(30)), rate(0, 1));
    }
}
