//! Cheap signal levels of decoded media, for input health (sans-IO, no libav).
//!
//! Audio is *silent* when its RMS level is below -60 dBFS: digital silence and the
//! hiss of an unplugged line input, not a quiet room or a pause in speech (those sit
//! around -50 to -40 dBFS with a microphone open).
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

/// -60 dBFS as a linear RMS (samples in [-1, 1]).
const SILENT_RMS: f64 = 0.001;

/// Whether decoded audio (one slice of samples per channel) is silent. No samples is
/// not silence: nothing is known.
pub fn audio_is_silent(planes: &[&[f32]]) -> bool {
    let (mut n, mut squares) = (0usize, 0f64);
    for plane in planes {
        n += plane.len();
        squares += plane.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
    }
    n > 0 && (squares / n as f64).sqrt() < SILENT_RMS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digital_silence_and_faint_hiss_are_silent_a_tone_and_a_quiet_voice_are_not() {
        let zero = vec![0f32; 1024];
        assert!(audio_is_silent(&[&zero, &zero]));
        let hiss: Vec<f32> = (0..1024)
            .map(|i| if i % 2 == 0 { 0.0005 } else { -0.0005 })
            .collect();
        assert!(audio_is_silent(&[&hiss]));
        let tone: Vec<f32> = (0..1024)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * 0.5)
            .collect();
        assert!(!audio_is_silent(&[&tone, &zero]));
        // -46 dBFS: quiet, but somebody is there.
        let quiet: Vec<f32> = (0..1024)
            .map(|i| if i % 2 == 0 { 0.005 } else { -0.005 })
            .collect();
        assert!(!audio_is_silent(&[&quiet]));
        assert!(!audio_is_silent(&[]));
        assert!(!audio_is_silent(&[&[]]));
    }

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
