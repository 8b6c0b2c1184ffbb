//! Secrets kept in files of the data directory (the admin token, the analytics events
//! token): generated once, private to their owner, compared in constant time.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Where a secret came from, so that a generated one can be printed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// Given by the operator (flag, environment, config file).
    Configured,
    /// Read from the file written at an earlier start.
    File,
    /// Generated now and written to the file.
    Generated,
}

/// A secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot read or write {path}: {source}")]
pub struct SecretFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The secret in the file at `path` (trimmed), or a new random one (256 bits,
/// base64url) written there with mode 0600 if the file does not exist. The file is
/// created exclusively: two processes starting at once cannot each write their own.
pub fn load_or_generate_secret(path: &Path) -> Result<(String, TokenSource), SecretFileError> {
    let file_error = |source| SecretFileError {
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

/// Shortest bearer token (admin, analytics events) accepted.
pub const MIN_TOKEN_LEN: usize = 8;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn secret_is_generated_once_private_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let (a, s1) = load_or_generate_secret(&path).unwrap();
        let (b, s2) = load_or_generate_secret(&path).unwrap();
        assert_eq!((s1, s2), (TokenSource::Generated, TokenSource::File));
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A directory where the file should be: the error names the path.
        let err = load_or_generate_secret(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
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
