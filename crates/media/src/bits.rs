//! A big-endian bit reader over RBSP bytes, for the parameter sets of HEVC and AV1
//! (H.264 uses `h264-reader`, which knows only H.264's syntax).

/// Ran past the end of the bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfBits;

pub(crate) struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, OutOfBits> {
        let byte = self.data.get(self.pos / 8).ok_or(OutOfBits)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` bits (at most 32) as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, OutOfBits> {
        let mut v = 0u32;
        for _ in 0..n.min(32) {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Ok(v)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), OutOfBits> {
        if self.pos + n > self.data.len() * 8 {
            return Err(OutOfBits);
        }
        self.pos += n;
        Ok(())
    }

    /// Exp-Golomb `ue(v)` (H.265 §9.2).
    pub(crate) fn ue(&mut self) -> Result<u32, OutOfBits> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(OutOfBits);
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    /// AV1 `uvlc()` (AV1 §4.10.3).
    pub(crate) fn uvlc(&mut self) -> Result<u32, OutOfBits> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Ok(u32::MAX);
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`) from a NAL unit payload.
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bits_and_exp_golomb() {
        // 1 | 010 | 011 | 00100 | 1...
        let mut b = Bits::new(&[0b1010_0110, 0b0100_1000]);
        assert_eq!(b.bit(), Ok(true));
        assert_eq!(b.ue(), Ok(1));
        assert_eq!(b.ue(), Ok(2));
        assert_eq!(b.ue(), Ok(3));
        assert_eq!(b.bits(4), Ok(0b1000));
        assert_eq!(b.bit(), Err(OutOfBits));
        assert_eq!(unescape_rbsp(&[1, 0, 0, 3, 1, 0, 0, 3]), [1, 0, 0, 1, 0, 0]);
    }
}
