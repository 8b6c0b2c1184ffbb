//! Signed playback tokens as an attacker sends them: whatever arrives in `?token=`,
//! `verify` answers with a grant or a reason and never panics; only a token signed
//! with a configured key, for this stream, unexpired and (if bound) from this address,
//! is accepted; and carrying a token into a playlist's URIs keeps the playlist's lines.
//!
//! Input: `TOKEN 0xff STREAM 0xff PLAYLIST 0xff REST` (0xff never occurs in UTF-8);
//! `REST` picks the clock, the client address and a grant to sign.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};

use access::playback::{Grant, PlaybackKeys, TokenError, token_in_query, with_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(4, |&b| b == 0xff);
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (token, stream, playlist) = (text(), text(), text());
    let rest = fields.next().unwrap_or_default();
    let byte = |i: usize| rest.get(i).copied().unwrap_or(0);
    let now = u64::from(u32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]));
    let client = IpAddr::V4(Ipv4Addr::new(10, 0, byte(4), byte(5)));

    let keys = match PlaybackKeys::parse(&[
        "k1=fuzzing-secret-0123456789",
        "k0=older-secret-0123456789",
    ]) {
        Ok(keys) => keys,
        Err(e) => panic!("the fuzz target's own keys are valid: {e}"),
    };

    // Anything: a grant only for this stream, unexpired, from the bound address.
    match keys.verify(&token, &stream, Some(client), now) {
        Ok(grant) => {
            assert_eq!(grant.stream, stream);
            assert!(grant.expires > now);
            // An IPv4-mapped IPv6 grant is the IPv4 address it maps.
            assert!(
                grant
                    .ip
                    .is_none_or(|ip| ip.to_canonical() == client.to_canonical())
            );
        }
        Err(e) => {
            let _ = (e.status(), e.to_string());
        }
    }

    // A token we sign verifies for its stream, and a changed byte breaks it.
    let grant = Grant {
        stream: stream.clone(),
        expires: now + 1 + u64::from(byte(6)),
        ip: (byte(7) & 1 == 1).then_some(client),
        session: (byte(7) & 2 == 2).then(|| playlist.chars().take(32).collect()),
    };
    if let Some(signed) = keys.sign(&grant)
        && signed.len() <= access::playback::MAX_TOKEN_LEN
    {
        assert_eq!(
            keys.verify(&signed, &stream, Some(client), now).as_ref(),
            Ok::<&Grant, &TokenError>(&grant)
        );
        assert_eq!(
            keys.verify(&signed, &stream, Some(client), grant.expires),
            Err(TokenError::Expired)
        );
        let at = usize::from(byte(8)) % signed.len();
        let mut altered = signed.clone().into_bytes();
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        if let Ok(altered) = String::from_utf8(altered)
            && altered != signed
        {
            assert!(keys.verify(&altered, &stream, Some(client), now).is_err());
        }

        // Carried into a playlist: one line out per line in, and every URI line
        // ends with the token.
        let carried = with_token(&playlist, &signed);
        assert_eq!(carried.lines().count(), playlist.lines().count());
        for line in carried.lines() {
            let line = line.trim_end_matches('\r');
            if !line.is_empty() && !line.starts_with('#') {
                let query = line.split_once('?').map(|(_, q)| q);
                assert_eq!(token_in_query(query), Some(signed.as_str()), "{line}");
            }
        }
    }
});
