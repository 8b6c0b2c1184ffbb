//! H.264 encoding. [`VideoEncode`] is the seam for hardware encoders (NVENC, VAAPI,
//! QSV) later; [`X264Encoder`] is libx264 through libavcodec.

use bytes::Bytes;
use ffmpeg_next as ff;
use media::avc::annexb_nalus;
use media::{AvcConfig, Frame, MediaTime, TrackKind, VIDEO_TIMESCALE};
use source::{FrameRate, Picture};

use crate::EncodeError;

/// x264 settings. Defaults are the low-latency ones: no B-frames, no lookahead
/// (`tune=zerolatency`), no scene-cut keyframes — every keyframe is one we force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoEncoderConfig {
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
    /// `ultrafast` … `veryslow`.
    pub preset: String,
    /// `baseline`, `main`, `high` (a ceiling: x264 may pick less).
    pub profile: String,
    /// B-frames. Each one delays output by a frame: keep 0 for low latency.
    pub b_frames: u32,
    /// Encoder threads; 0 = x264 decides.
    pub threads: u32,
}

impl VideoEncoderConfig {
    pub fn new(width: u32, height: u32, frame_rate: FrameRate, bitrate: u64) -> Self {
        Self {
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
        }
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

/// Something that turns pictures into H.264.
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
    /// The parameter sets, once the first IDR is out.
    fn config(&self) -> Option<&AvcConfig>;
}

/// libx264 through libavcodec.
pub struct X264Encoder {
    encoder: ff::encoder::Video,
    config: VideoEncoderConfig,
    frame: ff::frame::Video,
    avc: Option<AvcConfig>,
}

impl X264Encoder {
    pub fn new(config: VideoEncoderConfig) -> Result<Self, EncodeError> {
        let setup = |e: ff::Error| EncodeError::Setup(format!("libx264: {e}"));
        ff::init().map_err(setup)?;
        // libav's own console chatter (encoder statistics) is not for our users.
        ff::util::log::set_level(ff::util::log::Level::Error);
        if !config.width.is_multiple_of(2)
            || !config.height.is_multiple_of(2)
            || config.width == 0
            || config.height == 0
        {
            return Err(EncodeError::Setup(format!(
                "picture size {}x{} must be even and non-zero for 4:2:0 H.264",
                config.width, config.height
            )));
        }
        let codec = ff::encoder::find_by_name("libx264").ok_or_else(|| {
            EncodeError::Setup(
                "libx264 is not available in this libavcodec (install libavcodec-extra or an FFmpeg built with --enable-libx264)".into(),
            )
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
        enc.set_gop(config.frame_rate.as_f64().ceil() as u32 * 10);
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
        let mut options = ff::Dictionary::new();
        options.set("preset", &config.preset);
        options.set("tune", "zerolatency");
        options.set("profile", &config.profile);
        options.set("forced-idr", "1");
        options.set("x264-params", &config.x264_params());
        let encoder = enc.open_as_with(codec, options).map_err(|e| {
            EncodeError::Setup(format!(
                "libx264 refused the settings (preset '{}', profile '{}'): {e}",
                config.preset, config.profile
            ))
        })?;
        let frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, config.width, config.height);
        Ok(Self {
            encoder,
            config,
            frame,
            avc: None,
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
            .map_err(|e| EncodeError::Encode(format!("libx264: {e}")))?;
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
            if !sps.is_empty() && !pps.is_empty() {
                let avc = AvcConfig::from_parameter_sets(&sps, &pps)
                    .map_err(|e| EncodeError::Encode(format!("x264 parameter sets: {e}")))?;
                if self.avc.as_ref() != Some(&avc) {
                    self.avc = Some(avc);
                }
            }
            out.push(EncodedPicture {
                frame: Frame {
                    kind: TrackKind::Video,
                    dts: MediaTime::new(dts, VIDEO_TIMESCALE),
                    pts: MediaTime::new(pts, VIDEO_TIMESCALE),
                    keyframe: idr,
                    data: Bytes::from(avcc),
                },
            });
        }
        Ok(())
    }
}

impl VideoEncode for X264Encoder {
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
            .map_err(|e| EncodeError::Encode(format!("libx264: {e}")))?;
        self.receive(out)
    }

    fn flush(&mut self, out: &mut Vec<EncodedPicture>) -> Result<(), EncodeError> {
        let _ = self.encoder.send_eof();
        self.receive(out)
    }

    fn config(&self) -> Option<&AvcConfig> {
        self.avc.as_ref()
    }
}
