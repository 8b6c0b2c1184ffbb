//! The keys of signed playback a server uses: the configured ones, else the one in
//! `DATA_DIR/playback-key` (generated on the first start, like the admin token).

use std::path::{Path, PathBuf};

use access::playback::{KeyError, PlaybackKeys};
use db::secret::{SecretFileError, TokenSource};

/// The file in the data directory holding the generated playback key.
pub const PLAYBACK_KEY_FILE: &str = "playback-key";
/// The id of the generated playback key.
pub const PLAYBACK_KEY_ID: &str = "local";

/// Why the generated playback key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaybackKeyError {
    #[error("cannot set up the playback key (set --playback-key ID=SECRET)")]
    File(#[source] SecretFileError),
    #[error("the playback key in {} is not usable", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
}

/// `configured` if it holds any key, else the data directory's (made if missing).
pub fn playback_keys(
    configured: &PlaybackKeys,
    data_dir: &Path,
) -> Result<(PlaybackKeys, TokenSource), PlaybackKeyError> {
    if !configured.is_empty() {
        return Ok((configured.clone(), TokenSource::Configured));
    }
    let path = data_dir.join(PLAYBACK_KEY_FILE);
    let (secret, source) =
        db::secret::load_or_generate_secret(&path).map_err(PlaybackKeyError::File)?;
    let mut keys = PlaybackKeys::default();
    keys.add(PLAYBACK_KEY_ID, secret.as_bytes())
        .map_err(|source| PlaybackKeyError::Unusable { path, source })?;
    Ok((keys, source))
}
