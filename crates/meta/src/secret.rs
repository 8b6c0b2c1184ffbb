//! Stream keys and the admin token: generation, hashing, comparison, the token file.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

/// Where an [`AdminToken`] came from, so that a generated one can be printed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// Given by the operator (flag, environment, config file).
    Configured,
    /// Read from the token file written at an earlier start.
    File,
    /// Generated now and written to the token file.
    Generated,
}

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
        let (token, source) = load_or_generate_secret(&data_dir.join(TOKEN_FILE))?;
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

/// The secret in the file at `path` (trimmed), or a new random one (256 bits,
/// base64url) written there with mode 0600 if the file does not exist. The file is
/// created exclusively: two processes starting at once cannot each write their own.
pub fn load_or_generate_secret(path: &Path) -> Result<(String, TokenSource), TokenError> {
    let file_error = |source| TokenError::File {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text.trim().to_owned(), TokenSource::File)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error(e)),
    }
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let mut file = create_private(path).map_err(file_error)?;
    writeln!(file, "{secret}").map_err(file_error)?;
    Ok((secret, TokenSource::Generated))
}

/// Creates a new file readable and writable by its owner only (0600 on Unix): for
/// secrets and for databases holding client addresses. Fails if it exists.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Whether `presented` is `secret`, in time that depends on neither the position of
/// the first difference nor the length of either: both are hashed to 32 bytes first,
/// then compared with `subtle`'s constant-time equality.
pub fn secret_matches(secret: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (
        Sha256::digest(secret.as_bytes()),
        Sha256::digest(presented.as_bytes()),
    );
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Name of the generated token's file in the data directory.
pub const TOKEN_FILE: &str = "admin-token";
/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 8;

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

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_matches("s3cret-token", "s3cret-token"));
        for wrong in [
            "",
            "s3cret-toke",
            "s3cret-token!",
            "S3cret-token",
            "x3cret-token",
        ] {
            assert!(!secret_matches("s3cret-token", wrong), "{wrong}");
        }
    }
}
