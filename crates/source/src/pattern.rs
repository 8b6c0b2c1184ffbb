//! The synthetic test pattern and its tone.

use font8x8::UnicodeFonts;
use media::{MediaTime, VIDEO_TIMESCALE};

use crate::picture::{AudioFormat, AudioFrame, FrameRate, Picture, VideoFormat};
use crate::{Source, SourceError, SourceFrame, VideoFrame, time_strip};

/// 75 % colour bars (BT.601 video range, Y/Cb/Cr): white, yellow, cyan, green,
/// magenta, red, blue.
const BARS: [(u8, u8, u8); 7] = [
    (180, 128, 128),
    (162, 44, 142),
    (131, 156, 44),
    (112, 72, 58),
    (84, 184, 198),
    (65, 100, 212),
    (35, 212, 114),
];
const TEXT: (u8, u8, u8) = (235, 128, 128);
const PANEL: (u8, u8, u8) = (16, 128, 128);
/// One full scroll of the bars takes this long: motion keeps the encoder honest.
const SCROLL_PERIOD_MS: u64 = 4000;
/// The flash and the beep last this long at the start of every second.
const BEEP_MS: u64 = 100;
const SAMPLE_RATE: u32 = 48_000;
/// Samples per audio frame: one AAC frame.
const AUDIO_FRAME: usize = 1024;

/// Settings of a [`TestPattern`].
#[derive(Clone, Debug)]
pub struct TestPatternConfig {
    pub width: u32,
    pub height: u32,
    pub frame_rate: FrameRate,
    /// Drawn on the picture.
    pub name: String,
    /// The capture time of the first frame; frame `n` stands for this plus its pts.
    pub start_unix_ms: u64,
    pub audio: bool,
}

/// Colour bars, text, a flash and a time strip; a tone with a beep every second.
pub struct TestPattern {
    config: TestPatternConfig,
    next_video: u64,
    next_sample: u64,
    background: Picture,
}

impl TestPattern {
    pub fn new(config: TestPatternConfig) -> Result<Self, SourceError> {
        let (w, h) = (config.width, config.height);
        if !(64..=7680).contains(&w) || !(64..=4320).contains(&h) || w % 2 != 0 || h % 2 != 0 {
            return Err(SourceError::Config(format!(
                "test pattern size {w}x{h}: width and height must be even, 64..7680 x 64..4320"
            )));
        }
        if config.frame_rate.num == 0
            || config.frame_rate.den == 0
            || config.frame_rate.as_f64() > 240.0
        {
            return Err(SourceError::Config(format!(
                "frame rate {} is not between 1 and 240",
                config.frame_rate
            )));
        }
        // Bars twice as wide as the picture, so scrolling is a window into them.
        let mut background = Picture::black(2 * w, h);
        let bar = (2 * w).div_ceil(14);
        for i in 0..14 {
            background.fill_rect(i * bar, 0, bar, h, BARS[i as usize % 7]);
        }
        Ok(Self {
            config,
            next_video: 0,
            next_sample: 0,
            background,
        })
    }

    /// Draws video frame `index`.
    pub fn picture(&self, index: u64) -> (MediaTime, u64, Picture) {
        let c = &self.config;
        let (w, h) = (c.width, c.height);
        let pts_ticks = c.frame_rate.frame_time(index, VIDEO_TIMESCALE.get());
        let pts_ms = pts_ticks as u64 * 1000 / u64::from(VIDEO_TIMESCALE.get());
        let capture = c.start_unix_ms + pts_ms;

        let offset = (((pts_ms % SCROLL_PERIOD_MS) * u64::from(w) / SCROLL_PERIOD_MS) as u32) & !1;
        let mut p = Picture::black(w, h);
        let bg = &self.background;
        for row in 0..h as usize {
            let src = row * bg.width as usize + offset as usize;
            p.y[row * w as usize..(row + 1) * w as usize]
                .copy_from_slice(&bg.y[src..src + w as usize]);
        }
        let (cw, bcw) = (p.chroma_width() as usize, bg.chroma_width() as usize);
        for row in 0..h.div_ceil(2) as usize {
            let src = row * bcw + offset as usize / 2;
            p.u[row * cw..(row + 1) * cw].copy_from_slice(&bg.u[src..src + cw]);
            p.v[row * cw..(row + 1) * cw].copy_from_slice(&bg.v[src..src + cw]);
        }

        let scale = (h / 180).max(1);
        let lines = [
            c.name.clone(),
            format_utc(capture),
            format!("frame {index}"),
        ];
        let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
        let pad = 4 * scale;
        p.fill_rect(
            pad,
            pad,
            longest * 8 * scale + 2 * pad,
            lines.len() as u32 * 10 * scale + 2 * pad,
            PANEL,
        );
        for (i, line) in lines.iter().enumerate() {
            draw_text(
                &mut p,
                2 * pad,
                2 * pad + i as u32 * 10 * scale,
                scale,
                line,
            );
        }

        // The flash: white while the beep sounds.
        let flash = if pts_ms % 1000 < BEEP_MS { TEXT } else { PANEL };
        let side = 24 * scale;
        p.fill_rect(w.saturating_sub(side + pad), pad, side, side, flash);

        let (top, rows) = time_strip::band(h);
        p.fill_rect(0, top, w, rows, PANEL);
        time_strip::draw(capture, &mut p.y, w, h, w as usize);
        (MediaTime::new(pts_ticks, VIDEO_TIMESCALE), capture, p)
    }

    fn audio_frame(&self, first_sample: u64) -> AudioFrame {
        let left: Vec<f32> = (first_sample..first_sample + AUDIO_FRAME as u64)
            .map(tone_sample)
            .collect();
        AudioFrame {
            pts: MediaTime::new(first_sample as i64, sample_rate()),
            planes: vec![left.clone(), left],
        }
    }
}

fn sample_rate() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::MIN.saturating_add(SAMPLE_RATE - 1)
}

/// Sample `n` of the tone at 48 kHz: a quiet 440 Hz, replaced by a loud 1 kHz beep
/// during the first 100 ms of every second.
pub fn tone_sample(n: u64) -> f32 {
    let t = n as f64 / f64::from(SAMPLE_RATE);
    let in_beep = n % u64::from(SAMPLE_RATE) < u64::from(SAMPLE_RATE) * BEEP_MS / 1000;
    let (freq, amp) = if in_beep { (1000.0, 0.5) } else { (440.0, 0.1) };
    (amp * (2.0 * std::f64::consts::PI * freq * t).sin()) as f32
}

impl Source for TestPattern {
    fn video_format(&self) -> Option<VideoFormat> {
        Some(VideoFormat {
            width: self.config.width,
            height: self.config.height,
            frame_rate: self.config.frame_rate,
        })
    }

    fn audio_format(&self) -> Option<AudioFormat> {
        self.config.audio.then_some(AudioFormat {
            sample_rate: SAMPLE_RATE,
            channels: 2,
        })
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame>, SourceError> {
        let video_ticks = self
            .config
            .frame_rate
            .frame_time(self.next_video, VIDEO_TIMESCALE.get());
        let video_time = MediaTime::new(video_ticks, VIDEO_TIMESCALE);
        let audio_time = MediaTime::new(self.next_sample as i64, sample_rate());
        if self.config.audio && audio_time < video_time {
            let frame = self.audio_frame(self.next_sample);
            self.next_sample += AUDIO_FRAME as u64;
            return Ok(Some(SourceFrame::Audio(frame)));
        }
        let (pts, capture_unix_ms, picture) = self.picture(self.next_video);
        self.next_video += 1;
        Ok(Some(SourceFrame::Video(VideoFrame {
            pts,
            capture_unix_ms,
            picture,
        })))
    }
}

fn draw_text(p: &mut Picture, x: u32, y: u32, scale: u32, text: &str) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        let gx = x + i as u32 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                // font8x8: the least significant bit is the leftmost pixel.
                if bits >> col & 1 == 1 {
                    p.fill_rect(gx + col * scale, y + row as u32 * scale, scale, scale, TEXT);
                }
            }
        }
    }
}

/// `2026-11-25 06:12:33.123 UTC`, without a calendar crate: civil-from-days
/// (Howard Hinnant's algorithm).
fn format_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pattern(w: u32, h: u32, audio: bool) -> TestPattern {
        TestPattern::new(TestPatternConfig {
            width: w,
            height: h,
            frame_rate: FrameRate::new(30, 1),
            name: "demo".into(),
            start_unix_ms: 1_764_050_000_000,
            audio,
        })
        .unwrap()
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(format_utc(1_764_051_153_123), "2025-11-25 06:12:33.123 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
    }

    #[test]
    fn frames_carry_their_capture_time_in_the_strip() {
        let mut p = pattern(320, 180, false);
        for i in 0..40 {
            let Some(SourceFrame::Video(v)) = p.next_frame().unwrap() else {
                panic!("video only")
            };
            let expected_ms = i * 1000 / 30;
            assert_eq!(v.pts, MediaTime::new(i as i64 * 3000, VIDEO_TIMESCALE));
            assert_eq!(v.capture_unix_ms, 1_764_050_000_000 + expected_ms);
            let pic = &v.picture;
            assert_eq!(
                time_strip::read(&pic.y, pic.width, pic.height, pic.width as usize),
                Ok(v.capture_unix_ms)
            );
        }
    }

    #[test]
    fn interleaves_audio_and_video_in_time_order() {
        let mut p = pattern(128, 72, true);
        let mut last = MediaTime::new(0, VIDEO_TIMESCALE);
        let (mut video, mut audio) = (0, 0);
        for _ in 0..200 {
            let f = p.next_frame().unwrap().unwrap();
            assert!(f.pts() >= last, "{:?} after {:?}", f.pts(), last);
            last = f.pts();
            match f {
                SourceFrame::Video(_) => video += 1,
                SourceFrame::Audio(a) => {
                    assert_eq!(a.samples(), 1024);
                    assert_eq!(a.planes.len(), 2);
                    audio += 1;
                }
            }
        }
        // 30 fps vs 46.875 AAC frames per second.
        assert!((75..=82).contains(&video), "{video} video frames");
        assert_eq!(video + audio, 200);
    }

    #[test]
    fn beeps_for_the_first_tenth_of_every_second() {
        let loud =
            |range: std::ops::Range<u64>| range.map(tone_sample).fold(0f32, |m, s| m.max(s.abs()));
        assert!(loud(0..4800) > 0.45);
        assert!(loud(4800..48_000) < 0.11);
        assert!(loud(48_000..48_100) > 0.45);
    }

    #[test]
    fn refuses_odd_sizes_and_absurd_rates() {
        let mut c = pattern(320, 180, false).config;
        c.width = 321;
        assert!(TestPattern::new(c.clone()).is_err());
        c.width = 320;
        c.frame_rate = FrameRate::new(1000, 1);
        let err = TestPattern::new(c).err().unwrap().to_string();
        assert!(err.contains("frame rate"), "{err}");
    }
}
