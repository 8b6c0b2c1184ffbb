//! The time strip: a capture time in milliseconds drawn as a row of black and white
//! blocks along the bottom of the picture, and read back from any decoded copy of it.
//!
//! Layout (`CELLS` equal-width cells across the full width, in a band of `1/10` of the
//! height just above the bottom edge): a white then a black reference cell, 48 bits of
//! the time (most significant first), then a CRC-8 of those six bytes. Cell edges are
//! proportional to the width, so the strip reads the same after any scaling that keeps
//! the aspect ratio; at 234p a cell is still ~7 pixels wide, which x264 keeps sharp.
//! Reading compares each cell's centre with the mid-level of the two reference cells,
//! so it does not care about levels shifted by encoding or a full-range conversion.

/// Cells across the picture: 2 references, 48 data bits, 8 check bits.
pub const CELLS: u32 = 2 + 48 + 8;
const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// Why a strip could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StripError {
    #[error("picture too small for a time strip ({width}x{height}; needs at least {CELLS}x40)")]
    TooSmall { width: u32, height: u32 },
    #[error("no time strip: the reference cells have no contrast")]
    NoStrip,
    #[error("time strip damaged: checksum mismatch")]
    Checksum,
}

/// The band the strip occupies: (top row, rows).
pub fn band(height: u32) -> (u32, u32) {
    let rows = (height / 10).max(4);
    let margin = height / 40;
    (height.saturating_sub(rows + margin), rows)
}

fn cell_span(width: u32, index: u32) -> (u32, u32) {
    let x0 = (u64::from(width) * u64::from(index) / u64::from(CELLS)) as u32;
    let x1 = (u64::from(width) * u64::from(index + 1) / u64::from(CELLS)) as u32;
    (x0, x1)
}

fn cells(millis: u64) -> [bool; CELLS as usize] {
    let bytes = &millis.to_be_bytes()[2..];
    let crc = crc8(bytes);
    let mut out = [false; CELLS as usize];
    out[0] = true;
    out[1] = false;
    for i in 0..48 {
        out[2 + i] = (millis >> (47 - i)) & 1 == 1;
    }
    for i in 0..8 {
        out[50 + i] = (crc >> (7 - i)) & 1 == 1;
    }
    out
}

/// CRC-8, polynomial 0x07 (ATM HEC).
fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Draws `millis` (only its low 48 bits: good until the year 10889) into a luma plane
/// of `width × height` with rows `stride` bytes apart. Chroma is the caller's: keep it
/// neutral under the band so colour does not bleed into the blocks.
pub fn draw(millis: u64, luma: &mut [u8], width: u32, height: u32, stride: usize) {
    let (top, rows) = band(height);
    for (i, white) in cells(millis).into_iter().enumerate() {
        let (x0, x1) = cell_span(width, i as u32);
        let level = if white { WHITE } else { BLACK };
        for row in top..(top + rows).min(height) {
            let start = row as usize * stride;
            if let Some(line) = luma.get_mut(start + x0 as usize..start + x1 as usize) {
                line.fill(level);
            }
        }
    }
}

/// Reads the time back from a decoded luma plane (any size, any stride).
pub fn read(luma: &[u8], width: u32, height: u32, stride: usize) -> Result<u64, StripError> {
    if width < CELLS || height < 40 {
        return Err(StripError::TooSmall { width, height });
    }
    let (top, rows) = band(height);
    // The middle half of each cell in both directions: away from edges that
    // compression and scaling blur.
    let (r0, r1) = (top + rows / 4, top + rows - rows / 4);
    let level = |index: u32| -> u32 {
        let (x0, x1) = cell_span(width, index);
        let quarter = (x1 - x0) / 4;
        let (c0, c1) = (x0 + quarter, (x1 - quarter).max(x0 + quarter + 1));
        let (mut sum, mut n) = (0u32, 0u32);
        for row in r0..r1.max(r0 + 1) {
            let start = row as usize * stride;
            for &p in luma
                .get(start + c0 as usize..start + c1 as usize)
                .unwrap_or(&[])
            {
                sum += u32::from(p);
                n += 1;
            }
        }
        sum.checked_div(n).unwrap_or(0)
    };
    let (white, black) = (level(0), level(1));
    if white < black + 60 {
        return Err(StripError::NoStrip);
    }
    let threshold = (white + black) / 2;
    let bit = |index: u32| u64::from(level(index) > threshold);
    let millis = (2..50).fold(0u64, |acc, i| (acc << 1) | bit(i));
    let crc = (50..58).fold(0u8, |acc, i| (acc << 1) | bit(i) as u8);
    if crc != crc8(&millis.to_be_bytes()[2..]) {
        return Err(StripError::Checksum);
    }
    Ok(millis)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_back_what_it_draws_at_many_sizes() {
        for (w, h) in [(1920, 1080), (1280, 720), (416, 234), (320, 240), (64, 40)] {
            for millis in [0, 1, 1_764_000_000_123, (1 << 48) - 1] {
                let mut luma = vec![100u8; (w * h) as usize];
                draw(millis, &mut luma, w, h, w as usize);
                assert_eq!(
                    read(&luma, w, h, w as usize),
                    Ok(millis),
                    "{w}x{h} {millis}"
                );
            }
        }
    }

    #[test]
    fn survives_nearest_neighbour_downscaling_and_level_shifts() {
        let (w, h) = (1280u32, 720u32);
        let mut luma = vec![128u8; (w * h) as usize];
        let t = 1_764_045_600_042;
        draw(t, &mut luma, w, h, w as usize);
        let (sw, sh) = (416u32, 234u32);
        let stride = 448usize;
        let mut small = vec![0u8; stride * sh as usize];
        for y in 0..sh {
            for x in 0..sw {
                let src = luma[((y * h / sh) * w + x * w / sw) as usize];
                // Full-range expansion as a decoder might apply.
                small[y as usize * stride + x as usize] =
                    ((i32::from(src) - 16) * 255 / 219).clamp(0, 255) as u8;
            }
        }
        assert_eq!(read(&small, sw, sh, stride), Ok(t));
    }

    #[test]
    fn refuses_pictures_without_a_strip_or_with_a_damaged_one() {
        let (w, h) = (320u32, 240u32);
        let flat = vec![80u8; (w * h) as usize];
        assert_eq!(read(&flat, w, h, w as usize), Err(StripError::NoStrip));
        let mut luma = flat.clone();
        draw(123_456, &mut luma, w, h, w as usize);
        // Flip one data cell.
        let (top, rows) = band(h);
        let (x0, x1) = cell_span(w, 20);
        for row in top..top + rows {
            for x in x0..x1 {
                let p = &mut luma[(row * w + x) as usize];
                *p = if *p > 128 { BLACK } else { WHITE };
            }
        }
        assert_eq!(read(&luma, w, h, w as usize), Err(StripError::Checksum));
        assert!(matches!(
            read(&flat, 10, 10, 10),
            Err(StripError::TooSmall { .. })
        ));
    }
}
