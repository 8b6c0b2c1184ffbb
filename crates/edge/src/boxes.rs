//! Splits an fMP4 byte stream into whole top-level boxes. The edge forwards media in
//! whole boxes (a CMAF chunk is a `moof` + `mdat` pair), so that when an upstream
//! breaks off mid-part, viewers hold a clean box boundary and the rest of the part
//! can come from the next upstream, which numbers and cuts its chunks alike.

use bytes::{Bytes, BytesMut};

/// Accumulates bytes, yields complete boxes.
#[derive(Debug, Default)]
pub struct BoxSplitter {
    buf: BytesMut,
}

impl BoxSplitter {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete box, if one is buffered.
    pub fn next_box(&mut self) -> Option<Bytes> {
        let len = box_len(&self.buf)?;
        (self.buf.len() >= len).then(|| self.buf.split_to(len).freeze())
    }

    /// Bytes of an incomplete box left at the end (forwarded as they are).
    pub fn rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// The length of the box starting at `b[0]`, once its header is there. A size of 0
/// ("to the end") or below the header size is not splittable: treated as the rest.
fn box_len(b: &[u8]) -> Option<usize> {
    let size = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    match size {
        1 => {
            let large = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
            usize::try_from(large).ok().filter(|l| *l >= 16)
        }
        s if s >= 8 => Some(s as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload: usize) -> Vec<u8> {
        let mut b = ((8 + payload) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend(std::iter::repeat_n(7u8, payload));
        b
    }

    #[test]
    fn yields_whole_boxes_whatever_the_read_sizes() {
        let stream: Vec<u8> = [
            mp4_box(b"moof", 100),
            mp4_box(b"mdat", 3000),
            mp4_box(b"moof", 0),
        ]
        .concat();
        for step in [1, 3, 8, 50, 4096] {
            let mut s = BoxSplitter::default();
            let mut out = Vec::new();
            for piece in stream.chunks(step) {
                s.push(piece);
                while let Some(b) = s.next_box() {
                    out.push(b);
                }
            }
            assert_eq!(
                out.iter().map(Bytes::len).collect::<Vec<_>>(),
                vec![108, 3008, 8],
                "step {step}"
            );
            assert!(s.rest().is_empty());
        }
    }

    #[test]
    fn large_sizes_and_garbage() {
        let mut big = 1u32.to_be_bytes().to_vec();
        big.extend_from_slice(b"mdat");
        big.extend_from_slice(&20u64.to_be_bytes());
        big.extend_from_slice(&[1, 2, 3, 4]);
        let mut s = BoxSplitter::default();
        s.push(&big);
        assert_eq!(s.next_box().map(|b| b.len()), Some(20));
        s.push(&[0, 0, 0, 3, b'x']);
        assert_eq!(s.next_box(), None, "a size below 8 is not a box");
        assert_eq!(s.rest().len(), 5);
    }
}
