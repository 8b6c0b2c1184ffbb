//! Audio the transcoder decodes: MP3 and Opus made into AAC ([`ToAac`], for the
//! renditions and for WHIP publishers), and the source's AAC decoded only to hear its
//! level.

use ffmpeg_next as ff;
use media::{CodecConfig, Frame, Track, TrackKind};

/// Why the source's audio cannot be decoded (its level goes unmeasured, or MP3 or Opus
/// is not made into AAC).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("no {0} decoder in libavcodec")]
    NoDecoder(&'static str),
    #[error("{0} decoder: {1}")]
    Decoder(&'static str, ff::Error),
    #[error("AAC encoder: {0}")]
    Encoder(#[from] encoder::EncodeError),
    #[error("the source's sample rate is 0")]
    ZeroSampleRate,
    #[error(
        "AAC object type {object_type} at {sample_rate} Hz, {channels} channels has no ADTS form"
    )]
    NoAdtsForm {
        object_type: u8,
        sample_rate: u32,
        channels: u8,
    },
}

/// The AAC encoder MP3 or Opus audio of `source`'s kind is turned into, and its track.
fn aac_for(source: &CodecConfig) -> Result<(encoder::AacEncoder, Track), AudioError> {
    let (sample_rate, channels) = match source {
        CodecConfig::Mp3(mp3) => (mp3.sample_rate, u16::from(mp3.channels)),
        // libavcodec's Opus decoder without a header (TS signals none we keep) decodes
        // to stereo at 48 kHz, mono sources included.
        CodecConfig::Opus(_) => (media::opus::OPUS_RATE, 2),
        _ => return Err(AudioError::NoDecoder("this audio codec's")),
    };
    let aac = encoder::AacEncoder::new(encoder::AudioEncoderConfig {
        sample_rate,
        channels,
        bitrate: 128_000,
    })?;
    let timescale = std::num::NonZeroU32::new(sample_rate).ok_or(AudioError::ZeroSampleRate)?;
    let track = Track {
        kind: TrackKind::Audio,
        timescale,
        codec: CodecConfig::Aac(aac.config().clone()),
    };
    Ok((aac, track))
}

/// The AAC track the transcoder makes of MP3 or Opus audio like `source`'s (what the
/// passthrough advertises when it carries that AAC), or why it cannot.
pub fn aac_track_for(source: &CodecConfig) -> Result<Track, String> {
    ff::init().map_err(|e| e.to_string())?;
    aac_for(source)
        .map(|(_, track)| track)
        .map_err(|e| e.to_string())
}

/// MP3 or Opus decoded and encoded to AAC: once per stream for every rendition (the
/// transcoder), or for a WHIP publisher's Opus (HLS carries AAC). Blocking libav work:
/// run it off the async runtime's workers.
pub struct ToAac {
    pub(crate) source: CodecConfig,
    decoder: ff::decoder::Audio,
    /// Decoded audio in another sample format than planar float (libopus's decoder
    /// gives packed), converted for the encoder.
    converter: Option<ff::software::resampling::Context>,
    aac: encoder::AacEncoder,
    pub(crate) track: Track,
    timescale: std::num::NonZeroU32,
}

impl ToAac {
    /// A transcoder of `source` (MP3 or Opus) to AAC; other codecs are refused.
    pub fn new(source: &CodecConfig) -> Result<Self, AudioError> {
        // What `aac_for` takes (and refuses anything else).
        let (aac, track) = aac_for(source)?;
        let (id, name) = match source {
            CodecConfig::Opus(_) => (ff::codec::Id::OPUS, "Opus"),
            _ => (ff::codec::Id::MP3, "MP3"),
        };
        let codec = ff::decoder::find(id).ok_or(AudioError::NoDecoder(name))?;
        let decoder = ff::codec::context::Context::new_with_codec(codec)
            .decoder()
            .audio()
            .map_err(|e| AudioError::Decoder(name, e))?;
        let source = source.clone();
        let timescale = track.timescale;
        Ok(Self {
            source,
            decoder,
            converter: None,
            aac,
            track,
            timescale,
        })
    }

    /// The AAC track it makes.
    pub fn track(&self) -> &Track {
        &self.track
    }

    /// The frame as AAC, on the same clock, and whether it was silent (when it decoded
    /// to anything). A frame that does not decode is skipped (counted for `stream`).
    pub fn transcode(&mut self, frame: &Frame, stream: &str) -> (Vec<Frame>, Option<bool>) {
        let mut packet = ff::Packet::copy(&frame.data);
        packet.set_pts(Some(frame.pts.ticks));
        packet.set_dts(Some(frame.dts.ticks));
        if self.decoder.send_packet(&packet).is_err() {
            metrics::counter!("transcode_decode_errors_total", "stream" => stream.to_owned())
                .increment(1);
            return (Vec::new(), None);
        }
        let mut silent = None;
        let mut out = Vec::new();
        let mut decoded = ff::frame::Audio::empty();
        let mut next_pts = frame.pts.ticks;
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let Some(planes) = self.planar_float(&decoded, stream) else {
                continue;
            };
            let n = planes.first().map_or(0, Vec::len);
            let pts = decoded.pts().unwrap_or(next_pts);
            next_pts = pts + n as i64;
            let raw = source::AudioFrame {
                pts: media::MediaTime::new(pts, self.timescale),
                planes,
            };
            let planes: Vec<&[f32]> = raw.planes.iter().map(Vec::as_slice).collect();
            silent = Some(crate::levels::audio_is_silent(&planes));
            if let Err(e) = self.aac.encode(&raw, &mut out) {
                tracing::warn!(stream, error = %e, "AAC encoding failed");
            }
        }
        (out, silent)
    }

    /// The decoded samples as planar f32 in the encoder's layout: as they are from
    /// libav's own decoders (planar float), converted from anything else.
    fn planar_float(&mut self, decoded: &ff::frame::Audio, stream: &str) -> Option<Vec<Vec<f32>>> {
        let planar = ff::format::Sample::F32(ff::format::sample::Type::Planar);
        let channels = usize::from(self.aac.config().channels.max(1));
        if decoded.format() == planar && usize::from(decoded.channels()) == channels {
            let n = decoded.samples();
            return Some(
                (0..channels)
                    .map(|c| decoded.plane::<f32>(c).get(..n).unwrap_or(&[]).to_vec())
                    .collect(),
            );
        }
        if self.converter.is_none() {
            let layout = |channels: u16| ff::ChannelLayout::default(i32::from(channels.max(1)));
            let from = if decoded.channel_layout().is_empty() {
                layout(decoded.channels())
            } else {
                decoded.channel_layout()
            };
            match ff::software::resampling::Context::get(
                decoded.format(),
                from,
                decoded.rate().max(1),
                planar,
                layout(channels as u16),
                self.timescale.get(),
            ) {
                Ok(c) => self.converter = Some(c),
                Err(e) => {
                    tracing::warn!(stream, format = ?decoded.format(), error = %e, "cannot convert the decoded audio; dropped");
                    return None;
                }
            }
        }
        let converter = self.converter.as_mut()?;
        let mut converted = ff::frame::Audio::new(
            planar,
            decoded.samples() * 2 + 256,
            ff::ChannelLayout::default(channels as i32),
        );
        converter.run(decoded, &mut converted).ok()?;
        let n = converted.samples();
        Some(
            (0..channels)
                .map(|c| converted.plane::<f32>(c).get(..n).unwrap_or(&[]).to_vec())
                .collect(),
        )
    }
}

/// The source's AAC decoded, only for its level: the renditions carry the AAC
/// untouched. Raw AAC frames get an ADTS header, which tells the decoder what the
/// `AudioSpecificConfig` would.
pub(crate) struct AacLevel {
    pub(crate) config: media::AacConfig,
    decoder: ff::decoder::Audio,
}

impl AacLevel {
    pub(crate) fn new(config: media::AacConfig) -> Result<Self, AudioError> {
        if media::aac::adts_header(&config, 0).is_none() {
            return Err(AudioError::NoAdtsForm {
                object_type: config.object_type,
                sample_rate: config.sample_rate,
                channels: config.channels,
            });
        }
        let codec = ff::decoder::find(ff::codec::Id::AAC).ok_or(AudioError::NoDecoder("AAC"))?;
        let decoder = ff::codec::context::Context::new_with_codec(codec)
            .decoder()
            .audio()
            .map_err(|e| AudioError::Decoder("AAC", e))?;
        Ok(Self { config, decoder })
    }

    /// Whether `frame` is silent; `None` when it does not decode (yet).
    pub(crate) fn silent(&mut self, frame: &Frame) -> Option<bool> {
        let header = media::aac::adts_header(&self.config, frame.data.len())?;
        // Header and payload written straight into the packet: one copy of the frame.
        let mut packet = ff::Packet::new(header.len() + frame.data.len());
        let data = packet.data_mut()?;
        data[..header.len()].copy_from_slice(&header);
        data[header.len()..].copy_from_slice(&frame.data);
        self.decoder.send_packet(&packet).ok()?;
        let mut decoded = ff::frame::Audio::empty();
        let mut silent = None;
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            if decoded.format() != ff::format::Sample::F32(ff::format::sample::Type::Planar) {
                continue;
            }
            let n = decoded.samples();
            let channels = usize::from(decoded.channels().max(1));
            let planes: Vec<&[f32]> = (0..channels)
                .map(|c| decoded.plane::<f32>(c).get(..n).unwrap_or(&[]))
                .collect();
            silent = Some(crate::levels::audio_is_silent(&planes));
        }
        silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real Opus from libopus (a tone through AacToOpus), back to AAC: a WHIP
    /// publisher's audio.
    #[test]
    fn opus_becomes_aac_on_the_same_clock() {
        let mut aac = encoder::AacEncoder::new(encoder::AudioEncoderConfig {
            sample_rate: 48_000,
            channels: 2,
            bitrate: 128_000,
        })
        .unwrap();
        let rate = std::num::NonZeroU32::new(48_000).unwrap();
        let mut frames = Vec::new();
        for i in 0..50i64 {
            let tone: Vec<f32> = (0..1024)
                .map(|k| {
                    ((i * 1024 + k) as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.3
                })
                .collect();
            let raw = source::AudioFrame {
                pts: media::MediaTime::new(96_000 + i * 1024, rate),
                planes: vec![tone.clone(), tone],
            };
            aac.encode(&raw, &mut frames).unwrap();
        }
        let mut to_opus = crate::opus::AacToOpus::new(aac.config()).unwrap();
        let mut opus = Vec::new();
        for f in &frames {
            to_opus.transcode(f, &mut opus);
        }
        assert!(opus.len() >= 40, "{} Opus packets", opus.len());
        let opus_source = CodecConfig::Opus(media::OpusConfig { channels: 2 });
        let mut back = ToAac::new(&opus_source).unwrap();
        assert!(
            matches!(&back.track().codec, CodecConfig::Aac(a) if a.sample_rate == 48_000 && a.channels == 2),
            "{:?}",
            back.track()
        );
        let mut out = Vec::new();
        let mut heard = false;
        for p in &opus {
            let frame = Frame {
                kind: media::TrackKind::Audio,
                dts: p.pts,
                pts: p.pts,
                keyframe: true,
                data: p.data.clone(),
            };
            let (aac, silent) = back.transcode(&frame, "test");
            out.extend(aac);
            heard |= silent == Some(false);
        }
        assert!(out.len() >= 35, "{} AAC frames", out.len());
        assert!(heard, "the tone is heard (not silence)");
        assert!(
            out.iter()
                .all(|f| f.pts.timescale.get() == 48_000 && !f.data.is_empty())
        );
        let steps: Vec<i64> = out
            .windows(2)
            .map(|w| w[1].pts.ticks - w[0].pts.ticks)
            .collect();
        assert!(steps.iter().all(|s| *s == 1024), "{steps:?}");
        // The AAC starts where the Opus did (about 2 s in), not at 0.
        assert!(
            (out[0].pts.ticks - opus[0].pts.ticks).abs() <= 2048,
            "{} vs {}",
            out[0].pts.ticks,
            opus[0].pts.ticks
        );
    }
}
