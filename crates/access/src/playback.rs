//! Who may watch a private stream: signed playback tokens.
//!
//! A token is a JSON Web Token (RFC 7519) signed with HMAC-SHA256 (`HS256`): a header
//! naming the key (`kid`), and claims naming the stream (`sub`), the expiry (`exp`,
//! seconds since the Unix epoch) and optionally the viewer's address (`ip`) and a
//! session id (`sid`). JWT because an operator's own system (a ticket shop, a
//! login) can mint tokens with any JWT library and the shared key, without
//! Rivulet; HMAC because origin and edges share one secret anyway and it costs a
//! microsecond per check. Only `HS256` is accepted (never `none` or a public-key
//! algorithm), and the MAC is compared in constant time (`hmac`'s `verify_slice`).
//!
//! [`PlaybackKeys`] holds the keys by id: the first signs, all verify, so that a key
//! can be rotated by adding the new one first, waiting for old tokens to expire, then
//! removing the old one. [`set_token`] and [`with_token`] carry a token into the URIs
//! of a playlist, so that it reaches every request a player makes.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The query parameter that carries a token (`master.m3u8?token=…`).
pub const TOKEN_PARAM: &str = "token";

/// The response header by which an origin marks the answers about a private stream,
/// so that an edge in front of it learns which streams need a token.
pub const ACCESS_HEADER: &str = "x-rivulet-access";
/// The value of [`ACCESS_HEADER`] on a private stream's answers.
pub const ACCESS_PRIVATE: &str = "private";

/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 32;
/// Shortest signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest token accepted, in bytes: refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 2048;
/// Longest session id, in bytes.
pub const MAX_SESSION_LEN: usize = 128;

/// Why a key given as `ID=SECRET` is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("a playback key is written ID=SECRET (e.g. k1=a-long-random-secret)")]
    NoId,
    #[error(
        "playback key id '{0}' must be 1-{MAX_KEY_ID_LEN} characters of letters, digits, '-' and '_'"
    )]
    BadId(String),
    #[error("the secret of playback key '{0}' must be at least {MIN_SECRET_LEN} bytes")]
    ShortSecret(String),
    #[error("playback key id '{0}' is given twice")]
    DuplicateId(String),
}

/// Why a token does not let its bearer watch. The first four mean "no valid token"
/// (HTTP 401), the others "a valid token, but not for this" (HTTP 403); the text is
/// for the viewer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("this stream is private: add ?token=… (ask the stream's owner for a token)")]
    Missing,
    #[error("the playback token is malformed ({0})")]
    Malformed(&'static str),
    #[error("the playback token is signed with a key this server does not know (kid '{0}')")]
    UnknownKey(String),
    #[error("the playback token's signature is not valid (altered, or signed with another key)")]
    BadSignature,
    #[error("the playback token expired; get a new one")]
    Expired,
    #[error("the playback token is for stream '{0}', not this one")]
    WrongStream(String),
    #[error("the playback token is bound to another viewer address")]
    WrongAddress,
    #[error("this server cannot check playback tokens: no playback key is configured")]
    NoKeys,
}

impl TokenError {
    /// `true` for a valid token that does not cover this request (HTTP 403); `false`
    /// for a missing or invalid one (HTTP 401).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Self::Expired | Self::WrongStream(_) | Self::WrongAddress
        )
    }

    /// The HTTP status for this refusal: 403 or 401.
    pub fn status(&self) -> u16 {
        if self.is_forbidden() { 403 } else { 401 }
    }
}

/// What a token grants: one stream, until a time, optionally to one address or session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The stream's name.
    #[serde(rename = "sub")]
    pub stream: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires: u64,
    /// The only viewer address it is good for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// A session id, for the operator's own bookkeeping (analytics, revocation lists).
    #[serde(default, rename = "sid", skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// One signing key.
#[derive(Clone)]
struct Key {
    id: String,
    secret: Vec<u8>,
}

/// The playback keys by id: the first signs, every one verifies.
#[derive(Clone, Default)]
pub struct PlaybackKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for PlaybackKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("PlaybackKeys").field("ids", &ids).finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

impl PlaybackKeys {
    /// From `ID=SECRET` specs, the signing key first.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, KeyError> {
        let mut keys = Self::default();
        for spec in specs {
            let (id, secret) = spec.as_ref().split_once('=').ok_or(KeyError::NoId)?;
            keys.add(id, secret.as_bytes())?;
        }
        Ok(keys)
    }

    /// Adds a key (after those already there: it verifies, and signs only if first).
    pub fn add(&mut self, id: &str, secret: &[u8]) -> Result<(), KeyError> {
        if id.is_empty()
            || id.len() > MAX_KEY_ID_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(KeyError::BadId(id.to_owned()));
        }
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::ShortSecret(id.to_owned()));
        }
        if self.keys.iter().any(|k| k.id == id) {
            return Err(KeyError::DuplicateId(id.to_owned()));
        }
        self.keys.push(Key {
            id: id.to_owned(),
            secret: secret.to_vec(),
        });
        Ok(())
    }

    /// No keys: tokens can be neither made nor checked.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of the key that signs.
    pub fn signing_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// The ids of all keys, the signing one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// A token for `grant`, signed with the first key; `None` without keys.
    pub fn sign(&self, grant: &Grant) -> Option<String> {
        let key = self.keys.first()?;
        let header = Header {
            alg: "HS256".into(),
            typ: Some("JWT".into()),
            kid: Some(key.id.clone()),
        };
        // Serialising these plain structs cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let claims = serde_json::to_vec(grant).unwrap_or_default();
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let mac = mac(&key.secret, token.as_bytes()).finalize().into_bytes();
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(mac));
        Some(token)
    }

    /// Checks `token` (signature, then expiry against `now_secs`, stream, address) for
    /// a request for `stream` from `client`.
    pub fn verify(
        &self,
        token: &str,
        stream: &str,
        client: Option<IpAddr>,
        now_secs: u64,
    ) -> Result<Grant, TokenError> {
        if self.keys.is_empty() {
            return Err(TokenError::NoKeys);
        }
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        let signed = &token[..header.len() + 1 + claims.len()];
        let header: Header = decode_json(header, "header")?;
        if header.alg != "HS256" {
            return Err(TokenError::Malformed("only HS256 tokens are accepted"));
        }
        let kid = header.kid.unwrap_or_default();
        let key =
            self.keys.iter().find(|k| k.id == kid).ok_or_else(|| {
                TokenError::UnknownKey(kid.chars().take(MAX_KEY_ID_LEN).collect())
            })?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        // Constant time: `verify_slice` compares the whole MAC whatever differs.
        mac(&key.secret, signed.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let grant: Grant = decode_json(claims, "claims")?;
        if grant.expires <= now_secs {
            return Err(TokenError::Expired);
        }
        if grant.stream != stream {
            return Err(TokenError::WrongStream(grant.stream));
        }
        if let Some(ip) = grant.ip
            && client.map(canonical) != Some(canonical(ip))
        {
            return Err(TokenError::WrongAddress);
        }
        Ok(grant)
    }
}

/// The token in a raw query string (`a=1&token=…`), if any.
pub fn token_in_query(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// `uri` with its `token` query parameter set to `token` (added, or replacing one
/// there); other parameters kept in their order.
pub fn set_token(uri: &str, token: &str) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut out = String::with_capacity(uri.len() + token.len() + 8);
    out.push_str(path);
    let mut sep = '?';
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair == TOKEN_PARAM || pair.starts_with("token=") {
            continue;
        }
        out.push(sep);
        out.push_str(pair);
        sep = '&';
    }
    out.push(sep);
    out.push_str(TOKEN_PARAM);
    out.push('=');
    out.push_str(token);
    out
}

/// `playlist` (multivariant or media) with `token` set on every URI it holds: the
/// URI lines (segments, variant playlists) and every `URI="…"` attribute (`EXT-X-MAP`,
/// `EXT-X-PART`, `EXT-X-PRELOAD-HINT`, `EXT-X-RENDITION-REPORT`, `EXT-X-MEDIA`), so
/// that a player needs nothing special to carry it. A player adds the LL-HLS query
/// (`_HLS_msn`…) after it, as RFC 8216bis asks of URIs that have a query.
pub fn with_token(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + playlist.len() / 4);
    for line in playlist.split_inclusive('\n') {
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            out.push_str(line);
            continue;
        }
        if text.starts_with('#') {
            let mut rest = text;
            while let Some(start) = rest.find("URI=\"") {
                let (before, after) = rest.split_at(start + 5);
                out.push_str(before);
                match after.find('"') {
                    Some(close) => {
                        out.push_str(&set_token(&after[..close], token));
                        rest = &after[close..];
                    }
                    None => {
                        rest = after;
                        break;
                    }
                }
            }
            out.push_str(rest);
        } else {
            out.push_str(&set_token(text.trim(), token));
        }
        out.push_str(&line[text.len()..]);
    }
    out
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mac(secret: &[u8], data: &[u8]) -> HmacSha256 {
    #[allow(clippy::expect_used)]
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .expect("HMAC takes keys of any length (only fixed-size MACs refuse one)");
    mac.update(data);
    mac
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        TokenError::Malformed(if what == "header" {
            "header is not base64url"
        } else {
            "claims are not base64url"
        })
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        TokenError::Malformed(if what == "header" {
            "header is not a JWT header"
        } else {
            "claims lack sub/exp or are not JSON"
        })
    })
}

#[cfg(test)]
mod tests;
