//! Cheap signal levels of decoded media, for input health (sans-IO, no libav).
//!
//! A picture is *black* when the mean and the spread of its luma are both low, on a
//! grid of one sample in 8 × 8: a black frame from a disconnected camera is flat at
//! video black (16 in limited range) with a little noise, while a dark scene still
//! has detail. About 1/64 of the pixels are read: ~900 for 320x180, ~32 000 for
//! 1080p, per decoded picture.

/// Luma samples apart, in each direction.
const STEP: usize = 8;
/// Mean luma at or below this is dark (limited-range black is 16).
const BLACK_MEAN: u64 = 24;
/// Variance at or below this is flat (a standard deviation of 4 levels).
const BLACK_VARIANCE: u64 = 16;

/// Whether the luma plane (`stride` bytes per row) of a `width` × `height` picture
/// is black. An empty or truncated plane is not.
pub fn picture_is_black(luma: &[u8], stride: usize, width: usize, height: usize) -> bool {
    let (mut n, mut sum, mut squares) = (0u64, 0u64, 0u64);
    for y in (0..height).step_by(STEP) {
        let Some(row) = luma.get(y * stride..y * stride + width) else {
            return false;
        };
        for &v in row.iter().step_by(STEP) {
            let v = u64::from(v);
            n += 1;
            sum += v;
            squares += v * v;
        }
    }
    if n == 0 {
        return false;
    }
    let mean = sum / n;
    let variance = (squares / n).saturating_sub(mean * mean);
    mean <= BLACK_MEAN && variance <= BLACK_VARIANCE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        let stride = width + 32;
        let mut plane = vec![0u8; stride * height];
        for y in 0..height {
            for x in 0..width {
                plane[y * stride + x] = f(x, y);
            }
        }
        plane
    }

    #[test]
    fn flat_black_with_noise_is_black() {
        let p = picture(320, 180, |x, y| 16 + ((x * 7 + y * 13) % 5) as u8);
        assert!(picture_is_black(&p, 352, 320, 180));
    }

    #[test]
    fn bars_a_dark_scene_and_grey_are_not() {
        let bars = picture(320, 180, |x, _| {
            [235u8, 210, 170, 145, 106, 81, 41, 16][x / 40]
        });
        assert!(!picture_is_black(&bars, 352, 320, 180));
        // Dark, but with detail: a lit window in a night scene.
        let night = picture(320, 180, |x, y| {
            if (100..160).contains(&x) && (60..120).contains(&y) {
                120
            } else {
                18
            }
        });
        assert!(!picture_is_black(&night, 352, 320, 180));
        let grey = picture(320, 180, |_, _| 128);
        assert!(!picture_is_black(&grey, 352, 320, 180));
        assert!(!picture_is_black(&[], 0, 0, 0));
        assert!(!picture_is_black(&grey[..100], 352, 320, 180), "truncated");
    }
}
