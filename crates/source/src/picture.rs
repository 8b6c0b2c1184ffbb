//! Raw picture and sound formats shared by sources and the encoder.

use media::MediaTime;

/// A frame rate as a fraction (30000/1001 is 29.97).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    pub const fn new(num: u32, den: u32) -> Self {
        Self { num, den }
    }

    /// Frames per second, for display and rate control.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }

    /// The presentation time of frame `index` in `timescale` ticks (floor).
    pub fn frame_time(self, index: u64, timescale: u32) -> i64 {
        let ticks = u128::from(index) * u128::from(timescale) * u128::from(self.den)
            / u128::from(self.num.max(1));
        ticks as i64
    }

    /// Parses `30`, `29.97`, `30000/1001`.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some((n, d)) = text.split_once('/') {
            let (num, den) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
            return (num > 0 && den > 0).then_some(Self { num, den });
        }
        match text.trim() {
            "29.97" => Some(Self::new(30000, 1001)),
            "59.94" => Some(Self::new(60000, 1001)),
            "23.976" => Some(Self::new(24000, 1001)),
            t => {
                let fps: u32 = t.parse().ok()?;
                (1..=240).contains(&fps).then_some(Self::new(fps, 1))
            }
        }
    }
}

impl std::fmt::Display for FrameRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{:.3}", self.as_f64())
        }
    }
}

/// What a video source produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoFormat {
    pub width: u32,
    pub height: u32,
    pub frame_rate: FrameRate,
}

/// What an audio source produces: planar 32-bit float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioFormat {
    pub sample_rate: u32,
    pub channels: u16,
}

/// An 8-bit 4:2:0 picture (I420), planes tightly packed: `y` is `width × height`,
/// `u` and `v` are `ceil(width/2) × ceil(height/2)`. Video range (16–235).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Picture {
    /// A black picture.
    pub fn black(width: u32, height: u32) -> Self {
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        Self {
            width,
            height,
            y: vec![16; (width * height) as usize],
            u: vec![128; (cw * ch) as usize],
            v: vec![128; (cw * ch) as usize],
        }
    }

    pub fn chroma_width(&self) -> u32 {
        self.width.div_ceil(2)
    }

    /// Fills a rectangle (clipped to the picture) with one YUV colour.
    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, (cy, cu, cv): (u8, u8, u8)) {
        if x >= self.width || y >= self.height {
            // Entirely outside (text running past a small picture's edge).
            return;
        }
        let x1 = x.saturating_add(w).min(self.width);
        let y1 = y.saturating_add(h).min(self.height);
        for row in y.min(y1)..y1 {
            let start = (row * self.width) as usize;
            self.y[start + x as usize..start + x1 as usize].fill(cy);
        }
        let cw = self.chroma_width();
        let (cx0, cx1) = (x / 2, x1.div_ceil(2));
        for row in y / 2..y1.div_ceil(2) {
            let start = (row * cw) as usize;
            if cx0 < cx1 {
                self.u[start + cx0 as usize..start + cx1 as usize].fill(cu);
                self.v[start + cx0 as usize..start + cx1 as usize].fill(cv);
            }
        }
    }
}

/// Raw sound: one `Vec` of samples per channel, all of the same length.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    /// In samples (timescale = the sample rate).
    pub pts: MediaTime,
    pub planes: Vec<Vec<f32>>,
}

impl AudioFrame {
    pub fn samples(&self) -> usize {
        self.planes.first().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_clipped_to_the_picture() {
        let mut p = Picture::black(16, 8);
        p.fill_rect(12, 6, 100, 100, (235, 128, 128));
        p.fill_rect(40, 2, 4, 4, (200, 0, 0));
        p.fill_rect(2, 40, 4, 4, (200, 0, 0));
        p.fill_rect(u32::MAX - 1, 0, 10, 10, (200, 0, 0));
        let lit: Vec<(u32, u32)> = (0..8)
            .flat_map(|y| (0..16).map(move |x| (x, y)))
            .filter(|(x, y)| p.y[(y * 16 + x) as usize] == 235)
            .collect();
        assert_eq!(lit.len(), 4 * 2);
        assert!(lit.iter().all(|(x, y)| *x >= 12 && *y >= 6));
        assert!(
            p.u.iter().all(|u| *u == 128),
            "chroma untouched by the off-picture fills"
        );
    }
}
