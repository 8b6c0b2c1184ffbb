//! AAC-LC encoding with libavcodec's native encoder, fed from a FIFO so any frame
//! size in gives whole 1024-sample AAC frames out.

use std::num::NonZeroU32;

use bytes::Bytes;
use ffmpeg_next as ff;
use media::{AacConfig, Frame, MediaTime, TrackKind};
use source::AudioFrame;

use crate::EncodeError;

/// AAC settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioEncoderConfig {
    pub sample_rate: u32,
    pub channels: u16,
    pub bitrate: u64,
}

impl Default for AudioEncoderConfig {
    fn default() -> Self {
        Self {
            sample_rate: 48_000,
            channels: 2,
            bitrate: 128_000,
        }
    }
}

/// libavcodec's `aac` encoder.
pub struct AacEncoder {
    encoder: ff::encoder::Audio,
    config: AudioEncoderConfig,
    aac: AacConfig,
    frame_size: usize,
    /// Samples waiting for a whole frame, per channel.
    fifo: Vec<Vec<f32>>,
    /// The pts of `fifo[..][0]`, in samples.
    fifo_pts: Option<i64>,
    /// Samples the encoder adds before the first input sample (its priming).
    delay: i64,
    timescale: NonZeroU32,
}

impl AacEncoder {
    pub fn new(config: AudioEncoderConfig) -> Result<Self, EncodeError> {
        let setup = |e: ff::Error| EncodeError::Setup(format!("aac: {e}"));
        ff::init().map_err(setup)?;
        // libav's own console chatter (encoder statistics) is not for our users.
        ff::util::log::set_level(ff::util::log::Level::Error);
        let timescale = NonZeroU32::new(config.sample_rate)
            .ok_or_else(|| EncodeError::Setup("audio sample rate 0".into()))?;
        let codec = ff::encoder::find(ff::codec::Id::AAC)
            .ok_or_else(|| EncodeError::Setup("this libavcodec has no AAC encoder".into()))?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(setup)?;
        enc.set_rate(config.sample_rate as i32);
        enc.set_format(ff::format::Sample::F32(ff::format::sample::Type::Planar));
        enc.set_channel_layout(ff::ChannelLayout::default(i32::from(config.channels)));
        enc.set_bit_rate(config.bitrate as usize);
        enc.set_time_base(ff::Rational::new(1, config.sample_rate as i32));
        let encoder = enc.open_as(codec).map_err(setup)?;
        let frame_size = (encoder.frame_size() as usize).max(1);
        let channels = u8::try_from(config.channels)
            .map_err(|_| EncodeError::Setup("too many audio channels".into()))?;
        Ok(Self {
            aac: AacConfig::build(2, config.sample_rate, channels),
            fifo: vec![Vec::new(); usize::from(config.channels)],
            fifo_pts: None,
            delay: frame_size as i64,
            frame_size,
            timescale,
            encoder,
            config,
        })
    }

    pub fn config(&self) -> &AacConfig {
        &self.aac
    }

    /// Queues `frame`; encodes every whole AAC frame. A gap in the timestamps is filled
    /// with silence and an overlap is dropped, so output time never drifts from input.
    pub fn encode(&mut self, frame: &AudioFrame, out: &mut Vec<Frame>) -> Result<(), EncodeError> {
        let n = frame.samples();
        let pts = frame.pts.ticks;
        let queued = self.fifo.first().map_or(0, Vec::len) as i64;
        let expected = self.fifo_pts.map(|p| p + queued);
        let mut skip = 0usize;
        match expected {
            None => self.fifo_pts = Some(pts),
            Some(e) if pts > e => {
                let gap = (pts - e).min(i64::from(self.config.sample_rate)) as usize;
                for ch in &mut self.fifo {
                    ch.extend(std::iter::repeat_n(0.0, gap));
                }
            }
            Some(e) => skip = ((e - pts) as usize).min(n),
        }
        for (i, ch) in self.fifo.iter_mut().enumerate() {
            let src = frame.planes.get(i).or(frame.planes.first());
            match src {
                Some(s) => ch.extend_from_slice(s.get(skip..n).unwrap_or(&[])),
                None => ch.extend(std::iter::repeat_n(0.0, n - skip)),
            }
        }
        while self
            .fifo
            .first()
            .is_some_and(|c| c.len() >= self.frame_size)
        {
            self.encode_one(out)?;
        }
        Ok(())
    }

    fn encode_one(&mut self, out: &mut Vec<Frame>) -> Result<(), EncodeError> {
        let mut frame = ff::frame::Audio::new(
            ff::format::Sample::F32(ff::format::sample::Type::Planar),
            self.frame_size,
            ff::ChannelLayout::default(i32::from(self.config.channels)),
        );
        frame.set_rate(self.config.sample_rate);
        for (i, ch) in self.fifo.iter_mut().enumerate() {
            frame.plane_mut::<f32>(i)[..self.frame_size].copy_from_slice(&ch[..self.frame_size]);
            ch.drain(..self.frame_size);
        }
        let pts = self.fifo_pts.unwrap_or(0);
        frame.set_pts(Some(pts));
        self.fifo_pts = Some(pts + self.frame_size as i64);
        self.encoder
            .send_frame(&frame)
            .map_err(|e| EncodeError::Encode(format!("aac: {e}")))?;
        self.receive(out);
        Ok(())
    }

    fn receive(&mut self, out: &mut Vec<Frame>) {
        let mut packet = ff::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let Some(data) = packet.data() else { continue };
            // The encoder stamps its priming frame before the first sample; we keep
            // the output on the input's clock (the priming plays as 21 ms of delay).
            let t = MediaTime::new(packet.pts().unwrap_or(0) + self.delay, self.timescale);
            out.push(Frame {
                kind: TrackKind::Audio,
                dts: t,
                pts: t,
                keyframe: true,
                data: Bytes::copy_from_slice(data),
            });
        }
    }

    pub fn flush(&mut self, out: &mut Vec<Frame>) -> Result<(), EncodeError> {
        let _ = self.encoder.send_eof();
        self.receive(out);
        Ok(())
    }
}
