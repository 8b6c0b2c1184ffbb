//! A media file played back as a live source: anything libav reads, decoded once,
//! converted to I420 pictures and 48 kHz stereo float sound, optionally looped with
//! continuous timestamps.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::PathBuf;

use ffmpeg_next as ff;
use media::{MediaTime, VIDEO_TIMESCALE};

use crate::picture::{AudioFormat, AudioFrame, FrameRate, Picture, VideoFormat};
use crate::{Source, SourceError, SourceFrame, VideoFrame};

const SAMPLE_RATE: u32 = 48_000;
/// Decoded frames a badly interleaved file may make us hold before we hand out
/// whatever is first anyway.
const MAX_QUEUED: usize = 600;

/// Settings of a [`FileSource`].
#[derive(Clone, Debug)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    /// Start again at the end, timestamps continuing.
    pub looped: bool,
    /// Scale pictures to this size (default: the file's).
    pub size: Option<(u32, u32)>,
    /// Wall-clock time that the first frame stands for (for `capture_unix_ms`).
    pub start_unix_ms: u64,
}

struct VideoIn {
    index: usize,
    time_base: ff::Rational,
    decoder: ff::decoder::Video,
    scaler: Option<(
        ff::software::scaling::Context,
        (ff::format::Pixel, u32, u32),
    )>,
    width: u32,
    height: u32,
    frame_rate: FrameRate,
    /// 90 kHz time of the next frame if the file has no timestamps.
    next_ticks: i64,
    queue: VecDeque<VideoFrame>,
}

struct AudioIn {
    index: usize,
    time_base: ff::Rational,
    decoder: ff::decoder::Audio,
    resampler: Option<(
        ff::software::resampling::Context,
        (ff::format::Sample, u32, u16),
        ff::ChannelLayout,
    )>,
    next_sample: i64,
    queue: VecDeque<AudioFrame>,
}

/// A file decoded in presentation order.
pub struct FileSource {
    config: FileSourceConfig,
    name: String,
    input: ff::format::context::Input,
    video: Option<VideoIn>,
    audio: Option<AudioIn>,
    /// The file's first timestamp, in 90 kHz (subtracted from all).
    origin_ticks: Option<i64>,
    /// Added to every timestamp: the length of the loops already played.
    loop_offset_ticks: i64,
    /// The end of the latest frame handed out in this loop, in 90 kHz.
    loop_end_ticks: i64,
    duration_ticks: Option<i64>,
    position_ticks: i64,
    finished: bool,
}

fn ticks(ts: i64, tb: ff::Rational, timescale: u32) -> i64 {
    let (num, den) = (
        i128::from(tb.numerator()),
        i128::from(tb.denominator().max(1)),
    );
    (i128::from(ts) * num * i128::from(timescale) / den) as i64
}

fn sample_rate() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(SAMPLE_RATE - 1)
}

impl FileSource {
    pub fn open(config: FileSourceConfig) -> Result<Self, SourceError> {
        let name = config.path.display().to_string();
        let open_err = |e: ff::Error| SourceError::Open {
            path: name.clone(),
            reason: e.to_string(),
        };
        ff::init().map_err(open_err)?;
        ff::util::log::set_level(ff::util::log::Level::Error);
        let input = ff::format::input(&config.path).map_err(open_err)?;
        let video = match input.streams().best(ff::media::Type::Video) {
            Some(stream) => {
                let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
                    .map_err(open_err)?;
                let decoder = ctx.decoder().video().map_err(open_err)?;
                let rate = stream.avg_frame_rate();
                let frame_rate = if rate.numerator() > 0 && rate.denominator() > 0 {
                    FrameRate::new(rate.numerator() as u32, rate.denominator() as u32)
                } else {
                    FrameRate::new(30, 1)
                };
                let (width, height) = config
                    .size
                    .unwrap_or((decoder.width() & !1, decoder.height() & !1));
                if width == 0 || height == 0 {
                    return Err(SourceError::Open {
                        path: name,
                        reason: "the video stream has no picture size".into(),
                    });
                }
                Some(VideoIn {
                    index: stream.index(),
                    time_base: stream.time_base(),
                    decoder,
                    scaler: None,
                    width,
                    height,
                    frame_rate,
                    next_ticks: 0,
                    queue: VecDeque::new(),
                })
            }
            None => None,
        };
        let audio = match input.streams().best(ff::media::Type::Audio) {
            Some(stream) => {
                let ctx = ff::codec::context::Context::from_parameters(stream.parameters())
                    .map_err(open_err)?;
                Some(AudioIn {
                    index: stream.index(),
                    time_base: stream.time_base(),
                    decoder: ctx.decoder().audio().map_err(open_err)?,
                    resampler: None,
                    next_sample: 0,
                    queue: VecDeque::new(),
                })
            }
            None => None,
        };
        if video.is_none() && audio.is_none() {
            return Err(SourceError::NoStreams { path: name });
        }
        let duration = input.duration();
        let duration_ticks = (duration > 0).then(|| {
            ticks(
                duration,
                ff::Rational::new(1, ff::ffi::AV_TIME_BASE),
                VIDEO_TIMESCALE.get(),
            )
        });
        Ok(Self {
            config,
            name,
            input,
            video,
            audio,
            origin_ticks: None,
            loop_offset_ticks: 0,
            loop_end_ticks: 0,
            duration_ticks,
            position_ticks: 0,
            finished: false,
        })
    }

    fn decode_error(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Decode {
            path: self.name.clone(),
            reason: e.to_string(),
        }
    }

    /// Whether each present stream has a frame queued (or the file is done).
    fn ready(&self) -> bool {
        let waiting_video = self.video.as_ref().is_some_and(|v| v.queue.is_empty());
        let waiting_audio = self.audio.as_ref().is_some_and(|a| a.queue.is_empty());
        let overfull = self
            .video
            .as_ref()
            .is_some_and(|v| v.queue.len() > MAX_QUEUED)
            || self
                .audio
                .as_ref()
                .is_some_and(|a| a.queue.len() > MAX_QUEUED);
        self.finished || overfull || !(waiting_video || waiting_audio)
    }

    /// Reads and decodes until every stream has a frame queued, or the end.
    fn fill(&mut self) -> Result<(), SourceError> {
        while !self.ready() {
            let mut packet = ff::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => self.decode_packet(&packet)?,
                Err(ff::Error::Eof) => self.end_of_file()?,
                Err(e) => return Err(self.decode_error(e)),
            }
        }
        Ok(())
    }

    fn decode_packet(&mut self, packet: &ff::Packet) -> Result<(), SourceError> {
        let index = packet.stream();
        if self.video.as_ref().is_some_and(|v| v.index == index) {
            if let Some(v) = self.video.as_mut() {
                // A damaged packet is skipped, as players do; the next keyframe recovers.
                let _ = v.decoder.send_packet(packet);
            }
            self.drain_video()?;
        } else if self.audio.as_ref().is_some_and(|a| a.index == index) {
            if let Some(a) = self.audio.as_mut() {
                let _ = a.decoder.send_packet(packet);
            }
            self.drain_audio()?;
        }
        Ok(())
    }

    fn end_of_file(&mut self) -> Result<(), SourceError> {
        if let Some(v) = self.video.as_mut() {
            let _ = v.decoder.send_eof();
        }
        if let Some(a) = self.audio.as_mut() {
            let _ = a.decoder.send_eof();
        }
        self.drain_video()?;
        self.drain_audio()?;
        if !self.config.looped {
            self.finished = true;
            return Ok(());
        }
        if self.loop_end_ticks <= 0 {
            // Nothing decodable in a whole pass: looping would spin forever.
            return Err(self.decode_error("no frame could be decoded"));
        }
        self.input
            .seek(0, ..)
            .map_err(|e| self.decode_error(format!("cannot seek back to loop: {e}")))?;
        if let Some(v) = self.video.as_mut() {
            v.decoder.flush();
        }
        if let Some(a) = self.audio.as_mut() {
            a.decoder.flush();
        }
        self.loop_offset_ticks += self.loop_end_ticks;
        self.loop_end_ticks = 0;
        Ok(())
    }

    /// The file's time `ts` (in `tb`) on the continuous output timeline, in 90 kHz.
    fn timeline(&mut self, ts: i64, tb: ff::Rational) -> i64 {
        let t = ticks(ts, tb, VIDEO_TIMESCALE.get());
        let origin = *self.origin_ticks.get_or_insert(t);
        (t - origin).max(0) + self.loop_offset_ticks
    }

    fn drain_video(&mut self) -> Result<(), SourceError> {
        let mut decoded = ff::frame::Video::empty();
        loop {
            let Some(v) = self.video.as_mut() else {
                return Ok(());
            };
            if v.decoder.receive_frame(&mut decoded).is_err() {
                return Ok(());
            }
            let tb = v.time_base;
            let frame_ticks = v.frame_rate.frame_time(1, VIDEO_TIMESCALE.get()).max(1);
            let pts = match decoded.timestamp() {
                Some(ts) => self.timeline(ts, tb),
                None => self.video.as_ref().map_or(0, |v| v.next_ticks),
            };
            let Some(v) = self.video.as_mut() else {
                return Ok(());
            };
            // Never backwards: a stray timestamp becomes "one frame later".
            let pts = pts.max(v.next_ticks);
            v.next_ticks = pts + frame_ticks;
            let key = (decoded.format(), decoded.width(), decoded.height());
            if v.scaler.as_ref().is_none_or(|(_, k)| *k != key) {
                let scaler = ff::software::scaling::Context::get(
                    key.0,
                    key.1,
                    key.2,
                    ff::format::Pixel::YUV420P,
                    v.width,
                    v.height,
                    ff::software::scaling::Flags::BILINEAR,
                )
                .map_err(|e| SourceError::Decode {
                    path: self.name.clone(),
                    reason: format!("cannot convert {key:?} pictures: {e}"),
                })?;
                v.scaler = Some((scaler, key));
            }
            let mut out = ff::frame::Video::empty();
            if let Some((scaler, _)) = v.scaler.as_mut() {
                scaler
                    .run(&decoded, &mut out)
                    .map_err(|e| SourceError::Decode {
                        path: self.name.clone(),
                        reason: e.to_string(),
                    })?;
            }
            let picture = to_picture(&out, v.width, v.height);
            let end = v.next_ticks - self.loop_offset_ticks;
            self.loop_end_ticks = self.loop_end_ticks.max(end);
            let capture_unix_ms = self.config.start_unix_ms
                + (pts.max(0) as u64) * 1000 / u64::from(VIDEO_TIMESCALE.get());
            if let Some(v) = self.video.as_mut() {
                v.queue.push_back(VideoFrame {
                    pts: MediaTime::new(pts, VIDEO_TIMESCALE),
                    capture_unix_ms,
                    picture,
                });
            }
        }
    }

    fn drain_audio(&mut self) -> Result<(), SourceError> {
        let mut decoded = ff::frame::Audio::empty();
        loop {
            let Some(a) = self.audio.as_mut() else {
                return Ok(());
            };
            if a.decoder.receive_frame(&mut decoded).is_err() {
                return Ok(());
            }
            let tb = a.time_base;
            let start = match decoded.timestamp() {
                Some(ts) => {
                    self.timeline(ts, tb) * i64::from(SAMPLE_RATE)
                        / i64::from(VIDEO_TIMESCALE.get())
                }
                None => self.audio.as_ref().map_or(0, |a| a.next_sample),
            };
            let Some(a) = self.audio.as_mut() else {
                return Ok(());
            };
            let channels = decoded.channels().max(1);
            let key = (decoded.format(), decoded.rate(), channels);
            if a.resampler.as_ref().is_none_or(|(_, k, _)| *k != key) {
                let layout = if decoded.channel_layout().channels() == i32::from(channels) {
                    decoded.channel_layout()
                } else {
                    ff::ChannelLayout::default(i32::from(channels))
                };
                let resampler = ff::software::resampling::Context::get(
                    key.0,
                    layout,
                    key.1,
                    ff::format::Sample::F32(ff::format::sample::Type::Planar),
                    ff::ChannelLayout::default(2),
                    SAMPLE_RATE,
                )
                .map_err(|e| SourceError::Decode {
                    path: self.name.clone(),
                    reason: format!("cannot convert {key:?} sound: {e}"),
                })?;
                a.resampler = Some((resampler, key, layout));
            }
            // Room for the rate change plus what the resampler holds back.
            let capacity = decoded.samples() * SAMPLE_RATE as usize / key.1.max(1) as usize + 256;
            let mut out = ff::frame::Audio::new(
                ff::format::Sample::F32(ff::format::sample::Type::Planar),
                capacity,
                ff::ChannelLayout::default(2),
            );
            if let Some((resampler, _, layout)) = a.resampler.as_mut() {
                // Decoders of raw PCM leave the layout unspecified; the resampler
                // insists that every frame match what it was built for.
                decoded.set_channel_layout(*layout);
                resampler
                    .run(&decoded, &mut out)
                    .map_err(|e| SourceError::Decode {
                        path: self.name.clone(),
                        reason: e.to_string(),
                    })?;
            }
            let n = out.samples();
            if n == 0 {
                continue;
            }
            let planes = (0..2).map(|i| out.plane::<f32>(i)[..n].to_vec()).collect();
            let start = start.max(a.next_sample);
            a.next_sample = start + n as i64;
            let end = a.next_sample * i64::from(VIDEO_TIMESCALE.get()) / i64::from(SAMPLE_RATE)
                - self.loop_offset_ticks;
            self.loop_end_ticks = self.loop_end_ticks.max(end);
            if let Some(a) = self.audio.as_mut() {
                a.queue.push_back(AudioFrame {
                    pts: MediaTime::new(start, sample_rate()),
                    planes,
                });
            }
        }
    }
}

fn to_picture(frame: &ff::frame::Video, width: u32, height: u32) -> Picture {
    let mut p = Picture::black(width, height);
    let cw = p.chroma_width() as usize;
    let copy = |plane: usize, dst: &mut [u8], w: usize, h: usize| {
        let stride = frame.stride(plane);
        let src = frame.data(plane);
        for row in 0..h {
            if let (Some(d), Some(s)) = (
                dst.get_mut(row * w..(row + 1) * w),
                src.get(row * stride..row * stride + w),
            ) {
                d.copy_from_slice(s);
            }
        }
    };
    let ch = height.div_ceil(2) as usize;
    copy(0, &mut p.y, width as usize, height as usize);
    copy(1, &mut p.u, cw, ch);
    copy(2, &mut p.v, cw, ch);
    p
}

impl Source for FileSource {
    fn video_format(&self) -> Option<VideoFormat> {
        self.video.as_ref().map(|v| VideoFormat {
            width: v.width,
            height: v.height,
            frame_rate: v.frame_rate,
        })
    }

    fn audio_format(&self) -> Option<AudioFormat> {
        self.audio.as_ref().map(|_| AudioFormat {
            sample_rate: SAMPLE_RATE,
            channels: 2,
        })
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
        self.fill()?;
        let video_head = self
            .video
            .as_ref()
            .and_then(|v| v.queue.front())
            .map(|f| f.pts);
        let audio_head = self
            .audio
            .as_ref()
            .and_then(|a| a.queue.front())
            .map(|f| f.pts);
        let take_video = match (video_head, audio_head) {
            (Some(v), Some(a)) => v <= a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let frame = if take_video {
            self.video
                .as_mut()
                .and_then(|v| v.queue.pop_front())
                .map(SourceFrame::Video)
        } else {
            self.audio
                .as_mut()
                .and_then(|a| a.queue.pop_front())
                .map(SourceFrame::Audio)
        };
        if let Some(f) = &frame {
            let t = f.pts();
            self.position_ticks =
                t.ticks * i64::from(VIDEO_TIMESCALE.get()) / i64::from(t.timescale.get());
        }
        Ok(frame)
    }

    fn progress(&self) -> Option<(MediaTime, MediaTime)> {
        let total = self.duration_ticks?;
        let position = (self.position_ticks - self.loop_offset_ticks).clamp(0, total);
        Some((
            MediaTime::new(position, VIDEO_TIMESCALE),
            MediaTime::new(total, VIDEO_TIMESCALE),
        ))
    }
}
