//! The RTMP handshake (RTMP spec §5.2), server and client sides, including the
//! digest ("FP9" / complex) handshake that ffmpeg, OBS and librtmp clients send.
//!
//! Digest scheme, as deployed by Flash Media Server: a 32-byte HMAC-SHA256 digest sits
//! inside C1/S1 at an offset derived from four bytes of the packet; scheme 0 ("key
//! first") computes the offset from bytes 772..776, scheme 1 ("digest first") from
//! bytes 8..12. The server answers a digest C1 with a digest S1 and an S2 signed with a
//! key derived from the client's digest.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Size of C1/C2/S1/S2.
pub const PACKET_LEN: usize = 1536;
const DIGEST_LEN: usize = 32;
/// RTMP version in C0/S0.
pub(crate) const RTMP_VERSION: u8 = 3;

/// "Genuine Adobe Flash Media Server 001" followed by 32 fixed bytes.
const SERVER_KEY: [u8; 68] = {
    let text = *b"Genuine Adobe Flash Media Server 001";
    let mut k = [0u8; 68];
    let mut i = 0;
    while i < 36 {
        k[i] = text[i];
        i += 1;
    }
    let mut j = 0;
    while j < 32 {
        k[36 + j] = KEY_TAIL[j];
        j += 1;
    }
    k
};
/// "Genuine Adobe Flash Player 001" (the client's key is its first 30 bytes).
const PLAYER_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];

/// Why a handshake failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HandshakeError {
    #[error("RTMP version {0} is not supported (expected 3; is this an RTMPS or HTTP client?)")]
    Version(u8),
}

/// The server's answer to C0+C1: S0+S1+S2, written into `out`.
///
/// `random` fills the random parts (the caller owns randomness, so tests are
/// deterministic); `epoch_ms` is the server's time field.
pub(crate) fn server_response(
    c0c1: &[u8],
    random: &[u8; PACKET_LEN],
    epoch_ms: u32,
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    let version = c0c1[0];
    if version != RTMP_VERSION {
        return Err(HandshakeError::Version(version));
    }
    let c1 = &c0c1[1..1 + PACKET_LEN];
    out.push(RTMP_VERSION);
    let client_digest = [Scheme::DigestFirst, Scheme::KeyFirst]
        .into_iter()
        .find_map(|scheme| scheme.verify(c1, &player_key()).map(|d| (scheme, d)));
    match client_digest {
        None => {
            // Simple handshake: S1 = time, zero, random; S2 = echo of C1.
            let mut s1 = *random;
            s1[..4].copy_from_slice(&epoch_ms.to_be_bytes());
            s1[4..8].fill(0);
            out.extend_from_slice(&s1);
            out.extend_from_slice(c1);
        }
        Some((scheme, digest)) => {
            let mut s1 = *random;
            s1[..4].copy_from_slice(&epoch_ms.to_be_bytes());
            // A server version >= 3.0 tells the client that S1 carries a digest.
            s1[4..8].copy_from_slice(&[0x04, 0x05, 0x00, 0x01]);
            scheme.sign(&mut s1, &SERVER_KEY[..36]);
            out.extend_from_slice(&s1);
            // S2: random bytes signed with a key derived from the client's digest.
            let mut s2 = *random;
            s2.reverse();
            let key = hmac_sha256(&SERVER_KEY, &[&digest]);
            let signature = hmac_sha256(&key, &[&s2[..PACKET_LEN - DIGEST_LEN]]);
            s2[PACKET_LEN - DIGEST_LEN..].copy_from_slice(&signature);
            out.extend_from_slice(&s2);
        }
    }
    Ok(())
}

/// The client's C0+C1 (simple handshake).
pub(crate) fn client_hello(random: &[u8; PACKET_LEN], epoch_ms: u32, out: &mut Vec<u8>) {
    out.push(RTMP_VERSION);
    let mut c1 = *random;
    c1[..4].copy_from_slice(&epoch_ms.to_be_bytes());
    c1[4..8].fill(0);
    out.extend_from_slice(&c1);
}

fn player_key() -> [u8; 30] {
    *PLAYER_KEY_TEXT
}

#[derive(Clone, Copy, Debug)]
enum Scheme {
    /// Digest offset from bytes 772..776 (the key block comes first).
    KeyFirst,
    /// Digest offset from bytes 8..12.
    DigestFirst,
}

impl Scheme {
    fn digest_offset(self, packet: &[u8]) -> usize {
        let base = match self {
            Scheme::KeyFirst => 772,
            Scheme::DigestFirst => 8,
        };
        let sum: usize = packet[base..base + 4].iter().map(|b| usize::from(*b)).sum();
        sum % 728 + base + 4
    }

    /// The client's digest, if `packet` carries a valid one under this scheme.
    fn verify(self, packet: &[u8], key: &[u8]) -> Option<[u8; DIGEST_LEN]> {
        let at = self.digest_offset(packet);
        let expected = hmac_sha256(key, &[&packet[..at], &packet[at + DIGEST_LEN..]]);
        (packet[at..at + DIGEST_LEN] == expected).then_some(expected)
    }

    fn sign(self, packet: &mut [u8; PACKET_LEN], key: &[u8]) {
        let at = self.digest_offset(packet);
        let digest = hmac_sha256(key, &[&packet[..at], &packet[at + DIGEST_LEN..]]);
        packet[at..at + DIGEST_LEN].copy_from_slice(&digest);
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; DIGEST_LEN];
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c0c1(digest: Option<Scheme>) -> Vec<u8> {
        let mut c1 = [0u8; PACKET_LEN];
        for (i, b) in c1.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        c1[4..8].copy_from_slice(&[0x80, 0x00, 0x07, 0x02]);
        if let Some(s) = digest {
            s.sign(&mut c1, &player_key());
        }
        let mut v = vec![RTMP_VERSION];
        v.extend_from_slice(&c1);
        v
    }

    #[test]
    fn simple_handshake_echoes_c1() {
        let hello = c0c1(None);
        let mut out = Vec::new();
        server_response(&hello, &[9; PACKET_LEN], 1234, &mut out).expect("ok");
        assert_eq!(out.len(), 1 + 2 * PACKET_LEN);
        assert_eq!(&out[1 + PACKET_LEN..], &hello[1..]);
    }

    #[test]
    fn digest_handshake_answers_with_verifiable_s1_and_s2() {
        for scheme in [Scheme::KeyFirst, Scheme::DigestFirst] {
            let hello = c0c1(Some(scheme));
            let mut out = Vec::new();
            server_response(&hello, &[9; PACKET_LEN], 1234, &mut out).expect("ok");
            let s1 = &out[1..1 + PACKET_LEN];
            assert!(
                scheme.verify(s1, &SERVER_KEY[..36]).is_some(),
                "{scheme:?}: S1 digest"
            );
            let client_digest = scheme
                .verify(&hello[1..], &player_key())
                .expect("client digest");
            let s2 = &out[1 + PACKET_LEN..];
            let key = hmac_sha256(&SERVER_KEY, &[&client_digest]);
            assert_eq!(
                s2[PACKET_LEN - 32..],
                hmac_sha256(&key, &[&s2[..PACKET_LEN - 32]])
            );
        }
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut hello = c0c1(None);
        hello[0] = 6;
        assert_eq!(
            server_response(&hello, &[0; PACKET_LEN], 0, &mut Vec::new()),
            Err(HandshakeError::Version(6))
        );
    }
}
