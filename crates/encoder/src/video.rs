//! Video encoding. [`VideoEncode`] is the seam for hardware encoders (NVENC, VAAPI,
//! QSV) later; [`LibavVideoEncoder`] is libx264 (H.264), libx265 (HEVC) or libsvtav1
//! (AV1) through libavcodec, with the same forced-keyframe contract for all three.

use bytes::Bytes;
use ffmpeg_next as ff;
use media::avc::annexb_nalus;
use media::hevc::{self, NAL_AUD, NAL_PPS, NAL_SPS, NAL_VPS};
use media::{
    Av1Config, AvcConfig, CodecConfig, Frame, HevcConfig, MediaTime, TrackKind, VIDEO_TIMESCALE,
    VideoCodec,
};
use source::{FrameRate, Picture};

use crate::EncodeError;

/// Encoder settings. Defaults are the low-latency ones: no B-frames, no lookahead
/// (`tune=zerolatency`, SVT-AV1's low-delay prediction), no scene-cut keyframes — every
/// keyframe is one we force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoEncoderConfig {
    /// H.264 (libx264, the default), HEVC (libx265) or AV1 (libsvtav1).
    pub codec: VideoCodec,
    pub width: u32,
    pub height: u32,
    pub frame_rate: FrameRate,
    /// Target bits per second.
    pub bitrate: u64,
    /// VBV maximum rate (bits/s); `None` = 1.5 × bitrate. Keeps segments near the
    /// BANDWIDTH the playlist promises.
    pub max_rate: Option<u64>,
    /// VBV buffer (bits); `None` = 2 × bitrate (two seconds at the target).
    pub buffer_size: Option<u64>,
    /// `ultrafast` … `veryslow` (x264, x265); for SVT-AV1 these names map to its
    /// numeric presets (`ultrafast` = 12 … `veryslow` = 4), or give the number.
    pub preset: String,
    /// `baseline`, `main`, `high` (a ceiling: x264 may pick less). HEVC and AV1 use
    /// their Main profile.
    pub profile: String,
    /// B-frames. Each one delays output by a frame: keep 0 for low latency.
    pub b_frames: u32,
    /// Encoder threads; 0 = x264 decides.
    pub threads: u32,
    /// A fixed keyframe period in pictures; `None`: a 10 s ceiling, every real keyframe
    /// is one we force. SVT-AV1 through Debian 12's libavcodec (5.1) ignores forced
    /// keyframes, so AV1 keyframes come from this period instead.
    pub gop: Option<u32>,
    /// The libavcodec encoder by name, in place of the codec's default (libx264,
    /// libx265, libsvtav1); `libaom-av1` is the other AV1 encoder known here.
    pub encoder: Option<String>,
}

impl VideoEncoderConfig {
    pub fn new(width: u32, height: u32, frame_rate: FrameRate, bitrate: u64) -> Self {
        Self {
            codec: VideoCodec::Avc,
            width,
            height,
            frame_rate,
            bitrate,
            max_rate: None,
            buffer_size: None,
            preset: "veryfast".into(),
            profile: "high".into(),
            b_frames: 0,
            threads: 0,
            gop: None,
            encoder: None,
        }
    }

    /// SVT-AV1's numeric preset for [`VideoEncoderConfig::preset`].
    pub fn svtav1_preset(&self) -> String {
        match self.preset.as_str() {
            "ultrafast" | "superfast" => "12",
            "veryfast" => "11",
            "faster" => "10",
            "fast" => "9",
            "medium" => "8",
            "slow" => "6",
            "slower" | "veryslow" | "placebo" => "4",
            other => other,
        }
        .to_owned()
    }

    /// The libx265 private options (`x265-params`): the x264 ones' equivalents, and the
    /// parameter sets repeated before every keyframe (we take them from the stream).
    pub fn x265_params(&self) -> String {
        let max_rate = self.max_rate.unwrap_or(self.bitrate * 3 / 2);
        let buffer = self.buffer_size.unwrap_or(self.bitrate * 2);
        format!(
            "log-level=error:scenecut=0:open-gop=0:bframes={}:vbv-maxrate={}:vbv-bufsize={}:repeat-headers=1:aud=0",
            self.b_frames,
            max_rate / 1000,
            buffer / 1000
        )
    }

    /// The libx264 private options, as `x264opts`-style text. Shared with the ffmpeg CLI
    /// comparison in the benchmark so both run the same settings.
    pub fn x264_params(&self) -> String {
        let max_rate = self.max_rate.unwrap_or(self.bitrate * 3 / 2);
        let buffer = self.buffer_size.unwrap_or(self.bitrate * 2);
        format!(
            "scenecut=0:open-gop=0:bframes={}:vbv-maxrate={}:vbv-bufsize={}:rc-lookahead=0:sync-lookahead=0",
            self.b_frames,
            max_rate / 1000,
            buffer / 1000
        )
    }
}

/// One encoded picture.
#[derive(Clone, Debug)]
pub struct EncodedPicture {
    /// AVCC framed, 4-byte lengths, parameter sets moved to the track's avcC.
    pub frame: Frame,
}

/// Something that turns pictures into coded video.
pub trait VideoEncode: Send {
    /// Encodes `picture` presented at `pts` (90 kHz); `keyframe` forces an IDR.
    fn encode(
        &mut self,
        picture: &Picture,
        pts: i64,
        keyframe: bool,
        out: &mut Vec<EncodedPicture>,
    ) -> Result<(), EncodeError>;
    /// Drains what the encoder still holds.
    fn flush(&mut self, out: &mut Vec<EncodedPicture>) -> Result<(), EncodeError>;
    /// The decoder configuration (avcC, hvcC or av1C), once the first keyframe is out.
    fn config(&self) -> Option<&CodecConfig>;
}

/// The libavcodec private options of encoder `name` for `config`: x264/x265 tuned for
/// low delay with forced IDRs, libaom in real-time mode, SVT-AV1 in low-delay mode.
fn codec_options(config: &VideoEncoderConfig, name: &str) -> ff::Dictionary<'static> {
    let mut options = ff::Dictionary::new();
    match config.codec {
        VideoCodec::Avc => {
            options.set("preset", &config.preset);
            options.set("tune", "zerolatency");
            options.set("profile", &config.profile);
            options.set("forced-idr", "1");
            options.set("x264-params", &config.x264_params());
        }
        VideoCodec::Hevc => {
            options.set("preset", &config.preset);
            options.set("tune", "zerolatency");
            options.set("profile", "main");
            options.set("forced-idr", "1");
            options.set("x265-params", &config.x265_params());
        }
        VideoCodec::Av1 if name == "libaom-av1" => {
            // Real-time mode, no lookahead: each picture out as it goes in.
            options.set("usage", "realtime");
            options.set("cpu-used", "8");
            options.set("lag-in-frames", "0");
            options.set("row-mt", "1");
        }
        VideoCodec::Av1 => {
            options.set("preset", &config.svtav1_preset());
            // Low-delay prediction (no frames held back), keyframes only where we
            // force them.
            options.set("svtav1-params", "pred-struct=1:scd=0");
        }
    }
    options
}

/// The name this encoder had when it made only H.264.
pub type X264Encoder = LibavVideoEncoder;

/// libx264, libx265 or libsvtav1 through libavcodec.
pub struct LibavVideoEncoder {
    encoder: ff::encoder::Video,
    config: VideoEncoderConfig,
    frame: ff::frame::Video,
    codec_config: Option<CodecConfig>,
    /// The libavcodec encoder's name, for messages.
    name: &'static str,
}

impl LibavVideoEncoder {
    pub fn new(config: VideoEncoderConfig) -> Result<Self, EncodeError> {
        let name = match (config.codec, config.encoder.as_deref()) {
            (VideoCodec::Av1, Some("libaom-av1")) => "libaom-av1",
            (VideoCodec::Avc, _) => "libx264",
            (VideoCodec::Hevc, _) => "libx265",
            (VideoCodec::Av1, _) => "libsvtav1",
        };
        let setup = |e: ff::Error| EncodeError::Setup(format!("{name}: {e}"));
        ff::init().map_err(setup)?;
        // libav's own console chatter (encoder statistics) is not for our users.
        ff::util::log::set_level(ff::util::log::Level::Error);
        if !config.width.is_multiple_of(2)
            || !config.height.is_multiple_of(2)
            || config.width == 0
            || config.height == 0
        {
            return Err(EncodeError::Setup(format!(
                "picture size {}x{} must be even and non-zero for 4:2:0 {}",
                config.width,
                config.height,
                config.codec.name()
            )));
        }
        let codec = ff::encoder::find_by_name(name).ok_or_else(|| {
            EncodeError::Setup(format!(
                "{name} is not available in this libavcodec (install libavcodec-extra or an FFmpeg built with --enable-{name})"
            ))
        })?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(setup)?;
        enc.set_width(config.width);
        enc.set_height(config.height);
        enc.set_format(ff::format::Pixel::YUV420P);
        enc.set_time_base(ff::Rational::new(1, VIDEO_TIMESCALE.get() as i32));
        enc.set_frame_rate(Some(ff::Rational::new(
            config.frame_rate.num as i32,
            config.frame_rate.den as i32,
        )));
        enc.set_bit_rate(config.bitrate as usize);
        enc.set_max_bit_rate(config.max_rate.unwrap_or(config.bitrate * 3 / 2) as usize);
        // Forced keyframes only: a long GOP ceiling, the real cadence comes from us.
        enc.set_gop(
            config
                .gop
                .unwrap_or(config.frame_rate.as_f64().ceil() as u32 * 10)
                .max(1),
        );
        enc.set_max_b_frames(config.b_frames as usize);
        enc.set_colorspace(ff::color::Space::BT709);
        enc.set_color_range(ff::color::Range::MPEG);
        if config.threads > 0 {
            enc.set_threading(ff::threading::Config {
                kind: ff::threading::Type::Slice,
                count: config.threads as usize,
                ..Default::default()
            });
        }
        let options = codec_options(&config, name);
        let encoder = enc.open_as_with(codec, options).map_err(|e| {
            EncodeError::Setup(format!(
                "{name} refused the settings (preset '{}', profile '{}'): {e}",
                config.preset, config.profile
            ))
        })?;
        let frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, config.width, config.height);
        Ok(Self {
            encoder,
            config,
            frame,
            codec_config: None,
            name,
        })
    }

    /// Encodes a libav picture (I420 at the encoder's size) without copying it: the
    /// transcoder's path. `pts` is in 90 kHz; `keyframe` forces an IDR.
    pub fn encode_av_frame(
        &mut self,
        frame: &mut ff::frame::Video,
        pts: i64,
        keyframe: bool,
        out: &mut Vec<EncodedPicture>,
    ) -> Result<(), EncodeError> {
        if (frame.width(), frame.height(), frame.format())
            != (
                self.config.width,
                self.config.height,
                ff::format::Pixel::YUV420P,
            )
        {
            return Err(EncodeError::Encode(format!(
                "picture is {}x{} {:?}, the encoder was opened for {}x{} yuv420p",
                frame.width(),
                frame.height(),
                frame.format(),
                self.config.width,
                self.config.height
            )));
        }
        frame.set_pts(Some(pts));
        frame.set_kind(if keyframe {
            ff::picture::Type::I
        } else {
            ff::picture::Type::None
        });
        self.encoder
            .send_frame(frame)
            .map_err(|e| EncodeError::Encode(format!("{}: {e}", self.name)))?;
        self.receive(out)
    }

    pub fn settings(&self) -> &VideoEncoderConfig {
        &self.config
    }

    fn receive(&mut self, out: &mut Vec<EncodedPicture>) -> Result<(), EncodeError> {
        let mut packet = ff::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let Some(data) = packet.data() else { continue };
            let pts = packet.pts().unwrap_or(0);
            let dts = packet.dts().unwrap_or(pts);
            let (sample, keyframe, config) = match self.config.codec {
                VideoCodec::Avc => avc_sample(data)?,
                VideoCodec::Hevc => hevc_sample(data)?,
                VideoCodec::Av1 => {
                    let rate = self.config.frame_rate;
                    av1_sample(data, (rate.num, rate.den))?
                }
            };
            if let Some(config) = config
                && self.codec_config.as_ref() != Some(&config)
            {
                self.codec_config = Some(config);
            }
            out.push(EncodedPicture {
                frame: Frame {
                    kind: TrackKind::Video,
                    dts: MediaTime::new(dts, VIDEO_TIMESCALE),
                    pts: MediaTime::new(pts, VIDEO_TIMESCALE),
                    keyframe,
                    data: Bytes::from(sample),
                },
            });
        }
        Ok(())
    }
}

/// A coded picture as the encoder gave it, made a sample: (data, keyframe, the
/// configuration its in-band parameter sets describe).
type Sample = (Vec<u8>, bool, Option<CodecConfig>);

/// x264's Annex B to AVCC, parameter sets moved to the avcC.
fn avc_sample(data: &[u8]) -> Result<Sample, EncodeError> {
    let mut sps = Vec::new();
    let mut pps = Vec::new();
    let mut avcc = Vec::with_capacity(data.len() + 16);
    let mut idr = false;
    for nal in annexb_nalus(data) {
        match nal.first().map(|b| b & 0x1f) {
            Some(7) => sps.push(Bytes::copy_from_slice(nal)),
            Some(8) => pps.push(Bytes::copy_from_slice(nal)),
            // Access unit delimiters carry nothing a player needs.
            Some(9) | None => {}
            Some(t) => {
                idr |= t == 5;
                avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                avcc.extend_from_slice(nal);
            }
        }
    }
    let config = if !sps.is_empty() && !pps.is_empty() {
        let avc = AvcConfig::from_parameter_sets(&sps, &pps)
            .map_err(|e| EncodeError::Encode(format!("x264 parameter sets: {e}")))?;
        Some(CodecConfig::Avc(avc))
    } else {
        None
    };
    Ok((avcc, idr, config))
}

/// x265's Annex B to length-prefixed NAL units, parameter sets moved to the hvcC.
fn hevc_sample(data: &[u8]) -> Result<Sample, EncodeError> {
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut irap = false;
    for nal in annexb_nalus(data) {
        match hevc::nal_type(nal) {
            Some(NAL_VPS) => vps.push(Bytes::copy_from_slice(nal)),
            Some(NAL_SPS) => sps.push(Bytes::copy_from_slice(nal)),
            Some(NAL_PPS) => pps.push(Bytes::copy_from_slice(nal)),
            Some(NAL_AUD) | None => {}
            Some(t) => {
                irap |= hevc::is_irap(t);
                out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                out.extend_from_slice(nal);
            }
        }
    }
    let config = if !vps.is_empty() && !sps.is_empty() && !pps.is_empty() {
        let hevc = HevcConfig::from_parameter_sets(&vps, &sps, &pps)
            .map_err(|e| EncodeError::Encode(format!("x265 parameter sets: {e}")))?;
        Some(CodecConfig::Hevc(hevc))
    } else {
        None
    };
    Ok((out, irap, config))
}

/// An AV1 encoder's temporal unit without its temporal delimiter; the av1C from the sequence
/// header that key frames carry. Key frames are read from the frame header (the
/// wrapper's packet flag is not reliable). SVT-AV1 writes no `timing_info`, so the
/// configuration takes the rate the encoder was opened with: the packager sizes its
/// parts by it (24 fps needs a longer PART-TARGET than 30).
fn av1_sample(data: &[u8], frame_rate: (u32, u32)) -> Result<Sample, EncodeError> {
    let key = media::av1::is_key_frame(data);
    let config = match media::av1::find_sequence_header(data) {
        Some(header) => Some(CodecConfig::Av1(
            Av1Config::from_sequence_header(header)
                .map_err(|e| EncodeError::Encode(format!("AV1 sequence header: {e}")))?
                .with_frame_rate(frame_rate),
        )),
        None => None,
    };
    Ok((media::av1::strip_temporal_delimiters(data), key, config))
}

impl VideoEncode for LibavVideoEncoder {
    fn encode(
        &mut self,
        picture: &Picture,
        pts: i64,
        keyframe: bool,
        out: &mut Vec<EncodedPicture>,
    ) -> Result<(), EncodeError> {
        if (picture.width, picture.height) != (self.config.width, self.config.height) {
            return Err(EncodeError::Encode(format!(
                "picture is {}x{}, the encoder was opened for {}x{}",
                picture.width, picture.height, self.config.width, self.config.height
            )));
        }
        let (w, h) = (picture.width as usize, picture.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        for (plane, src, width, rows) in [
            (0, &picture.y, w, h),
            (1, &picture.u, cw, ch),
            (2, &picture.v, cw, ch),
        ] {
            let stride = self.frame.stride(plane);
            let dst = self.frame.data_mut(plane);
            for row in 0..rows {
                dst[row * stride..row * stride + width]
                    .copy_from_slice(&src[row * width..(row + 1) * width]);
            }
        }
        self.frame.set_pts(Some(pts));
        self.frame.set_kind(if keyframe {
            ff::picture::Type::I
        } else {
            ff::picture::Type::None
        });
        self.encoder
            .send_frame(&self.frame)
            .map_err(|e| EncodeError::Encode(format!("{}: {e}", self.name)))?;
        self.receive(out)
    }

    fn flush(&mut self, out: &mut Vec<EncodedPicture>) -> Result<(), EncodeError> {
        let _ = self.encoder.send_eof();
        self.receive(out)
    }

    fn config(&self) -> Option<&CodecConfig> {
        self.codec_config.as_ref()
    }
}
