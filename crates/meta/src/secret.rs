//! Stream keys and the admin token: generation, hashing, comparison, the token file.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use db::secret::{MIN_TOKEN_LEN, TokenSource, load_or_generate_secret, secret_matches};
use sha2::{Digest, Sha256};

/// A new random stream key: 192 bits from the thread-local CSPRNG (ChaCha, seeded from
/// the OS), base64url without padding (32 characters), so it needs no escaping in an
/// RTMP URL or an SRT streamid.
pub fn generate_key() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

/// What the store keeps of a key: its SHA-256, hex. A plain hash is enough here (no
/// salt, no slow KDF) because keys are generated with 192 bits of entropy; keys a
/// person typed (`--stream NAME=KEY`) are that person's choice.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    hex
}

/// The bearer token that guards the admin endpoints. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the admin token must be at least {MIN_TOKEN_LEN} characters without spaces")]
    TooShort,
    #[error("cannot read or write the admin token file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AdminToken {
    /// A token the operator chose.
    pub fn new(token: impl Into<String>) -> Result<Self, TokenError> {
        let token = token.into();
        if token.len() < MIN_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            return Err(TokenError::TooShort);
        }
        Ok(Self(token))
    }

    /// The configured token if there is one; else the one in `DATA_DIR/admin-token`;
    /// else a new random one, written there (mode 0600) for the next start.
    pub fn load_or_generate(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<(Self, TokenSource), TokenError> {
        if let Some(token) = configured {
            return Ok((Self::new(token)?, TokenSource::Configured));
        }
        let (token, source) = load_or_generate_secret(&data_dir.join(TOKEN_FILE)).map_err(
            |db::secret::SecretFileError { path, source }| TokenError::File { path, source },
        )?;
        Ok((Self::new(token)?, source))
    }

    /// Compares in time independent of where the first difference is, so that the
    /// token cannot be guessed byte by byte from response times.
    pub fn matches(&self, presented: &str) -> bool {
        secret_matches(&self.0, presented)
    }

    /// The token itself, to print once or send as `Authorization: Bearer …`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(…)")
    }
}

/// Name of the generated token's file in the data directory.
pub const TOKEN_FILE: &str = "admin-token";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_url_safe() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_is_generated_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (t1, s1) = AdminToken::load_or_generate(None, dir.path()).unwrap();
        let (t2, s2) = AdminToken::load_or_generate(None, dir.path()).unwrap();
        assert_eq!((s1, s2), (TokenSource::Generated, TokenSource::File));
        assert_eq!(t1, t2);
        assert!(t1.matches(t2.expose()) && !t1.matches("nope"));
        let (t3, s3) = AdminToken::load_or_generate(Some("configured-token"), dir.path()).unwrap();
        assert_eq!(s3, TokenSource::Configured);
        assert!(t3.matches("configured-token"));
        assert!(AdminToken::new("short").is_err());
        assert_eq!(format!("{t3:?}"), "AdminToken(…)");
    }

    #[cfg(unix)]
    #[test]
    fn generated_token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        AdminToken::load_or_generate(None, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
