#![allow(clippy::unwrap_used)]

use super::*;

const NOW: u64 = 1_800_000_000;

fn keys(specs: &[&str]) -> PlaybackKeys {
    PlaybackKeys::parse(specs).unwrap()
}

fn grant(stream: &str, expires: u64) -> Grant {
    Grant {
        stream: stream.into(),
        expires,
        ip: None,
        session: None,
    }
}

#[test]
fn a_signed_token_verifies_and_carries_its_grant() {
    let k = keys(&["k1=0123456789abcdef-secret"]);
    let g = Grant {
        session: Some("viewer-42".into()),
        ..grant("cam", NOW + 60)
    };
    let token = k.sign(&g).unwrap();
    // URL-safe as it is: it goes into query strings unescaped.
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "{token}"
    );
    assert_eq!(k.verify(&token, "cam", None, NOW), Ok(g));
}

#[test]
fn the_token_is_a_standard_hs256_jwt() {
    // Computed independently (Python: base64url + hmac.new(key, msg, sha256)) for
    // {"alg":"HS256","typ":"JWT","kid":"k1"} . {"sub":"cam","exp":1800000060}.
    let k = keys(&["k1=0123456789abcdef-secret"]);
    let token = k.sign(&grant("cam", NOW + 60)).unwrap();
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let claims = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    assert_eq!(
        std::str::from_utf8(&header).unwrap(),
        r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#
    );
    assert_eq!(
        std::str::from_utf8(&claims).unwrap(),
        r#"{"sub":"cam","exp":1800000060}"#
    );
    assert_eq!(parts.next().unwrap(), EXPECTED_MAC);
}

/// `python3 -c 'import hmac,hashlib,base64;h=base64.urlsafe_b64encode(b"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}").rstrip(b"=");c=base64.urlsafe_b64encode(b"{\"sub\":\"cam\",\"exp\":1800000060}").rstrip(b"=");print(base64.urlsafe_b64encode(hmac.new(b"0123456789abcdef-secret",h+b"."+c,hashlib.sha256).digest()).rstrip(b"="))'`
const EXPECTED_MAC: &str = "lrBlMUsg4YFsrdMPPxL8TaQ_fHRkErB9BN40inwOkoQ";

#[test]
fn expiry_is_checked_after_the_signature() {
    let k = keys(&["k1=0123456789abcdef-secret"]);
    let token = k.sign(&grant("cam", NOW)).unwrap();
    assert_eq!(k.verify(&token, "cam", None, NOW), Err(TokenError::Expired));
    assert_eq!(k.verify(&token, "cam", None, NOW - 1).map(|_| ()), Ok(()));
    assert!(TokenError::Expired.is_forbidden());
    assert_eq!(TokenError::Expired.status(), 403);
}

#[test]
fn a_token_names_one_stream() {
    let k = keys(&["k1=0123456789abcdef-secret"]);
    let token = k.sign(&grant("cam", NOW + 60)).unwrap();
    assert_eq!(
        k.verify(&token, "other", None, NOW),
        Err(TokenError::WrongStream("cam".into()))
    );
    assert_eq!(TokenError::WrongStream("cam".into()).status(), 403);
}

#[test]
fn tampering_anywhere_breaks_the_signature() {
    let k = keys(&["k1=0123456789abcdef-secret"]);
    let token = k.sign(&grant("cam", NOW + 60)).unwrap();
    // Claims rewritten to another stream and a later expiry, signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"other","exp":1900000000}"#);
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert_eq!(
        k.verify(&forged, "other", None, NOW),
        Err(TokenError::BadSignature)
    );
    // Every single character changed, in turn.
    for i in 0..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        if altered == token {
            continue;
        }
        let e = k.verify(&altered, "cam", None, NOW).unwrap_err();
        assert_eq!(e.status(), 401, "char {i}: {e}");
    }
    // Signed with another secret under the same id.
    let other = keys(&["k1=another-secret-of-length"]);
    let token = other.sign(&grant("cam", NOW + 60)).unwrap();
    assert_eq!(
        k.verify(&token, "cam", None, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn only_hs256_is_accepted() {
    let k = keys(&["k1=0123456789abcdef-secret"]);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"cam","exp":1900000000}"#);
    for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
        assert!(matches!(
            k.verify(&token, "cam", None, NOW),
            Err(TokenError::Malformed(_))
        ));
    }
    for junk in ["x", "a.b.c", "....", &"a".repeat(MAX_TOKEN_LEN + 1)] {
        assert_eq!(k.verify(junk, "cam", None, NOW).unwrap_err().status(), 401);
    }
    assert_eq!(k.verify("", "cam", None, NOW), Err(TokenError::Missing));
}

#[test]
fn keys_rotate_the_first_signs_all_verify() {
    let old = keys(&["k1=0123456789abcdef-secret"]);
    let old_token = old.sign(&grant("cam", NOW + 60)).unwrap();
    // Rotation: the new key first, the old one kept for tokens still out there.
    let both = keys(&["k2=fedcba9876543210-secret", "k1=0123456789abcdef-secret"]);
    assert_eq!(both.signing_id(), Some("k2"));
    let new_token = both.sign(&grant("cam", NOW + 60)).unwrap();
    assert!(both.verify(&old_token, "cam", None, NOW).is_ok());
    assert!(both.verify(&new_token, "cam", None, NOW).is_ok());
    // The old key removed: its tokens stop working, with a reason.
    let new = keys(&["k2=fedcba9876543210-secret"]);
    assert_eq!(
        new.verify(&old_token, "cam", None, NOW),
        Err(TokenError::UnknownKey("k1".into()))
    );
    assert!(new.verify(&new_token, "cam", None, NOW).is_ok());
    // And nothing verifies without keys.
    assert_eq!(
        PlaybackKeys::default().verify(&new_token, "cam", None, NOW),
        Err(TokenError::NoKeys)
    );
}

#[test]
fn an_address_bound_token_is_good_for_that_address_only() {
    let k = keys(&["k1=0123456789abcdef-secret"]);
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let token = k
        .sign(&Grant {
            ip: Some(ip),
            ..grant("cam", NOW + 60)
        })
        .unwrap();
    assert!(k.verify(&token, "cam", Some(ip), NOW).is_ok());
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert!(k.verify(&token, "cam", Some(mapped), NOW).is_ok());
    let other: IpAddr = "192.0.2.8".parse().unwrap();
    assert_eq!(
        k.verify(&token, "cam", Some(other), NOW),
        Err(TokenError::WrongAddress)
    );
    assert_eq!(
        k.verify(&token, "cam", None, NOW),
        Err(TokenError::WrongAddress)
    );
}

#[test]
fn key_specs_are_checked() {
    assert_eq!(
        PlaybackKeys::parse(&["nosecret"]).unwrap_err(),
        KeyError::NoId
    );
    assert!(matches!(
        PlaybackKeys::parse(&["k 1=0123456789abcdef"]),
        Err(KeyError::BadId(_))
    ));
    assert!(matches!(
        PlaybackKeys::parse(&["k1=short"]),
        Err(KeyError::ShortSecret(_))
    ));
    assert!(matches!(
        PlaybackKeys::parse(&["k1=0123456789abcdef", "k1=0123456789abcdeg"]),
        Err(KeyError::DuplicateId(_))
    ));
    // The secret may itself contain '='.
    let k = PlaybackKeys::parse(&["k1=abc=def=0123456789"]).unwrap();
    assert_eq!(k.ids().collect::<Vec<_>>(), ["k1"]);
    assert!(!format!("{k:?}").contains("abc"));
}

#[test]
fn tokens_are_set_on_every_uri_of_a_playlist() {
    let media = "#EXTM3U\n\
#EXT-X-MAP:URI=\"init-0.mp4\"\n\
#EXT-X-PART:DURATION=0.33400,URI=\"part-5-0.m4s\",INDEPENDENT=YES\n\
#EXTINF:2.00000,\n\
seg-5.m4s\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-6-1.m4s\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=6,LAST-PART=0\n";
    let out = with_token(media, "T.K.N");
    assert_eq!(
        out,
        "#EXTM3U\n\
#EXT-X-MAP:URI=\"init-0.mp4?token=T.K.N\"\n\
#EXT-X-PART:DURATION=0.33400,URI=\"part-5-0.m4s?token=T.K.N\",INDEPENDENT=YES\n\
#EXTINF:2.00000,\n\
seg-5.m4s?token=T.K.N\n\
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-6-1.m4s?token=T.K.N\"\n\
#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8?token=T.K.N\",LAST-MSN=6,LAST-PART=0\n"
    );
    // A token already there (an edge passing on its upstream's playlist) is replaced.
    assert_eq!(with_token(&out, "V"), with_token(media, "V"));
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\r\n720p/index.m3u8\r\n";
    assert_eq!(
        with_token(master, "V"),
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\r\n720p/index.m3u8?token=V\r\n"
    );
    assert_eq!(
        set_token("a.m3u8?x=1&token=old&y", "n"),
        "a.m3u8?x=1&y&token=n"
    );
    assert_eq!(token_in_query(Some("_HLS_msn=3&token=abc")), Some("abc"));
    assert_eq!(token_in_query(Some("tokens=abc")), None);
    assert_eq!(token_in_query(None), None);
}
