//! AAC → Opus for WebRTC viewers: one decode, a resample to 48 kHz stereo and one
//! libopus encode per stream, shared by every viewer (browsers' WebRTC has no AAC).
//! The other way (a WHIP publisher's Opus to AAC for HLS) is [`crate::ToAac`].

use std::num::NonZeroU32;

use ffmpeg_next as ff;
use media::{AacConfig, Frame, MediaTime};

/// Opus's clock and the only rate WebRTC signals for it.
pub use media::opus::OPUS_RATE;
/// 20 ms at 48 kHz: the usual WebRTC packet.
const OPUS_FRAME: usize = 960;
const CHANNELS: usize = 2;

/// Why Opus cannot be made of a stream's audio.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpusError {
    #[error("no {0} in this libavcodec (Debian's ffmpeg has libopus)")]
    NoCodec(&'static str),
    #[error(
        "AAC object type {object_type} at {sample_rate} Hz, {channels} channels has no ADTS form to decode"
    )]
    NoAdtsForm {
        object_type: u8,
        sample_rate: u32,
        channels: u8,
    },
    #[error("{0}: {1}")]
    Setup(&'static str, ff::Error),
    #[error("AAC encoder: {0}")]
    Encoder(String),
}

/// One Opus packet and its presentation time (48 kHz).
#[derive(Clone, Debug)]
pub struct OpusPacket {
    pub data: bytes::Bytes,
    pub pts: MediaTime,
}

/// A stream's AAC transcoded to Opus.
pub struct AacToOpus {
    config: AacConfig,
    decoder: ff::decoder::Audio,
    resampler: Option<ff::software::resampling::Context>,
    encoder: ff::encoder::Audio,
    /// Interleaved stereo samples waiting for a whole Opus frame.
    fifo: Vec<f32>,
    /// The pts of the next Opus frame, 48 kHz.
    next_pts: Option<i64>,
    timescale: NonZeroU32,
}

impl AacToOpus {
    pub fn new(config: &AacConfig) -> Result<Self, OpusError> {
        if media::aac::adts_header(config, 0).is_none() {
            return Err(OpusError::NoAdtsForm {
                object_type: config.object_type,
                sample_rate: config.sample_rate,
                channels: config.channels,
            });
        }
        ff::init().map_err(|e| OpusError::Setup("libav", e))?;
        let aac = ff::decoder::find(ff::codec::Id::AAC).ok_or(OpusError::NoCodec("AAC decoder"))?;
        let decoder = ff::codec::context::Context::new_with_codec(aac)
            .decoder()
            .audio()
            .map_err(|e| OpusError::Setup("AAC decoder", e))?;
        let opus =
            ff::encoder::find_by_name("libopus").ok_or(OpusError::NoCodec("libopus encoder"))?;
        let mut enc = ff::codec::context::Context::new_with_codec(opus)
            .encoder()
            .audio()
            .map_err(|e| OpusError::Setup("libopus", e))?;
        enc.set_rate(OPUS_RATE as i32);
        enc.set_format(ff::format::Sample::F32(ff::format::sample::Type::Packed));
        enc.set_channel_layout(ff::ChannelLayout::STEREO);
        enc.set_bit_rate(96_000);
        enc.set_time_base(ff::Rational::new(1, OPUS_RATE as i32));
        let encoder = enc
            .open_as(opus)
            .map_err(|e| OpusError::Setup("libopus", e))?;
        let timescale = NonZeroU32::new(OPUS_RATE).ok_or(OpusError::NoCodec("48 kHz"))?;
        Ok(Self {
            config: config.clone(),
            decoder,
            resampler: None,
            encoder,
            fifo: Vec::new(),
            next_pts: None,
            timescale,
        })
    }

    /// Whether this transcoder was made for `config` (new tracks may need another).
    pub fn is_for(&self, config: &AacConfig) -> bool {
        self.config == *config
    }

    /// One AAC frame in; the Opus packets it completes appended to `out`. A frame
    /// that does not decode is skipped (the viewers hear a gap, nothing else).
    pub fn transcode(&mut self, frame: &Frame, out: &mut Vec<OpusPacket>) {
        let Some(header) = media::aac::adts_header(&self.config, frame.data.len()) else {
            return;
        };
        let mut packet = ff::Packet::new(header.len() + frame.data.len());
        let Some(data) = packet.data_mut() else {
            return;
        };
        data[..header.len()].copy_from_slice(&header);
        data[header.len()..].copy_from_slice(&frame.data);
        if self.decoder.send_packet(&packet).is_err() {
            return;
        }
        if self.next_pts.is_none() {
            let rate = i64::from(self.config.sample_rate.max(1));
            self.next_pts = Some(frame.pts.ticks * i64::from(OPUS_RATE) / rate);
        }
        let mut decoded = ff::frame::Audio::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            self.resample(&decoded);
        }
        self.encode_whole_frames(out);
    }

    fn resample(&mut self, decoded: &ff::frame::Audio) {
        if self.resampler.is_none() {
            match stereo_48k(
                decoded,
                ff::format::Sample::F32(ff::format::sample::Type::Packed),
            ) {
                Ok(r) => self.resampler = Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resample the AAC audio for Opus");
                    return;
                }
            }
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return;
        };
        // Room for the upsampled count (44.1 → 48 kHz) and what the resampler held.
        let capacity = decoded.samples() * 2 + 256;
        let mut resampled = ff::frame::Audio::new(
            ff::format::Sample::F32(ff::format::sample::Type::Packed),
            capacity,
            ff::ChannelLayout::STEREO,
        );
        if resampler.run(decoded, &mut resampled).is_err() {
            return;
        }
        let n = resampled.samples() * CHANNELS;
        let bytes = resampled.data(0);
        self.fifo.extend(
            bytes
                .chunks_exact(4)
                .take(n)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        );
    }

    fn encode_whole_frames(&mut self, out: &mut Vec<OpusPacket>) {
        while self.fifo.len() >= OPUS_FRAME * CHANNELS {
            let mut frame = ff::frame::Audio::new(
                ff::format::Sample::F32(ff::format::sample::Type::Packed),
                OPUS_FRAME,
                ff::ChannelLayout::STEREO,
            );
            frame.set_rate(OPUS_RATE);
            let pts = self.next_pts.unwrap_or(0);
            frame.set_pts(Some(pts));
            for (dst, s) in frame
                .data_mut(0)
                .chunks_exact_mut(4)
                .zip(self.fifo.drain(..OPUS_FRAME * CHANNELS))
            {
                dst.copy_from_slice(&s.to_ne_bytes());
            }
            self.next_pts = Some(pts + OPUS_FRAME as i64);
            if self.encoder.send_frame(&frame).is_err() {
                continue;
            }
            let mut packet = ff::Packet::empty();
            while self.encoder.receive_packet(&mut packet).is_ok() {
                let Some(data) = packet.data() else { continue };
                out.push(OpusPacket {
                    data: bytes::Bytes::copy_from_slice(data),
                    pts: MediaTime::new(packet.pts().unwrap_or(pts), self.timescale),
                });
            }
        }
    }
}

/// A converter of decoded audio like `decoded` to 48 kHz stereo in `format`.
fn stereo_48k(
    decoded: &ff::frame::Audio,
    format: ff::format::Sample,
) -> Result<ff::software::resampling::Context, ff::Error> {
    let layout = if decoded.channel_layout().is_empty() {
        ff::ChannelLayout::default(i32::from(decoded.channels().max(1)))
    } else {
        decoded.channel_layout()
    };
    ff::software::resampling::Context::get(
        decoded.format(),
        layout,
        decoded.rate().max(1),
        format,
        ff::ChannelLayout::STEREO,
        OPUS_RATE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real AAC from the encoder crate (a 440 Hz tone at 44.1 kHz), through Opus.
    #[test]
    fn aac_becomes_20_ms_opus_packets_at_48_khz() {
        let mut aac = encoder::AacEncoder::new(encoder::AudioEncoderConfig {
            sample_rate: 44_100,
            channels: 2,
            bitrate: 128_000,
        })
        .unwrap();
        let rate = NonZeroU32::new(44_100).unwrap();
        let mut frames = Vec::new();
        for i in 0..50i64 {
            let n = 1024usize;
            let tone: Vec<f32> = (0..n)
                .map(|k| {
                    ((i * 1024 + k as i64) as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin()
                        * 0.3
                })
                .collect();
            let raw = source::AudioFrame {
                pts: MediaTime::new(i * 1024, rate),
                planes: vec![tone.clone(), tone],
            };
            aac.encode(&raw, &mut frames).unwrap();
        }
        assert!(!frames.is_empty());
        let mut opus = AacToOpus::new(aac.config()).unwrap();
        assert!(opus.is_for(aac.config()));
        let mut out = Vec::new();
        for f in &frames {
            opus.transcode(f, &mut out);
        }
        // About a second of audio in: about fifty 20 ms packets out, evenly spaced.
        assert!(out.len() >= 40, "{} Opus packets", out.len());
        assert!(
            out.iter()
                .all(|p| !p.data.is_empty() && p.pts.timescale.get() == 48_000)
        );
        let steps: Vec<i64> = out
            .windows(2)
            .map(|w| w[1].pts.ticks - w[0].pts.ticks)
            .collect();
        assert!(steps.iter().all(|s| *s == 960), "{steps:?}");
    }
}
