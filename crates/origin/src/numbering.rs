//! The highest media sequence number each stream used, kept across origin restarts.
//!
//! Segment and part names carry the media sequence number and are served
//! `immutable`; a restarted origin whose publisher starts again at timestamp 0 would
//! name its new segments as the last process did (`package::StreamNumbering` has the
//! rule). The origin therefore records, per stream, the highest number it started a
//! segment with, and reads it back when the stream is first named in a new process.

use std::path::{Path, PathBuf};

/// Where the highest media sequence number of each stream is kept.
pub trait NumberingStore: Send + Sync {
    /// The highest number `stream` used before, if it was ever packaged.
    fn last_msn(&self, stream: &str) -> Option<u64>;
    /// `stream` started a segment numbered `msn` (called when the highest number grows,
    /// about once per segment duration per stream).
    fn record_msn(&self, stream: &str, msn: u64);
}

/// One small file per stream in a directory (`DIR/NAME`, the number in decimal),
/// replaced atomically (write, then rename). Stream names are URL-safe, hence
/// file-name-safe.
#[derive(Clone, Debug)]
pub struct NumberingDir {
    dir: PathBuf,
}

impl NumberingDir {
    /// Keeps the numbers in `dir`, created if missing.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, stream: &str) -> Option<PathBuf> {
        media::live_path::check_stream_name(stream).ok()?;
        Some(self.dir.join(stream))
    }
}

impl NumberingStore for NumberingDir {
    fn last_msn(&self, stream: &str) -> Option<u64> {
        let path = self.path(stream)?;
        let text = std::fs::read_to_string(&path).ok()?;
        match text.trim().parse() {
            Ok(msn) => Some(msn),
            Err(_) => {
                tracing::warn!(
                    path = %path.display(),
                    "the stream's last media sequence number is unreadable; numbering from its timestamps (delete the file to silence this)"
                );
                None
            }
        }
    }

    fn record_msn(&self, stream: &str, msn: u64) {
        let Some(path) = self.path(stream) else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, msn.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot keep the stream's media sequence number: after a restart its segment names may repeat"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_survive_a_new_store_on_the_same_directory() {
        let dir = std::env::temp_dir().join(format!("rivulet-numbering-{}", std::process::id()));
        let store = NumberingDir::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.last_msn("cam"), None);
        store.record_msn("cam", 41);
        store.record_msn("cam", 42);
        let again = NumberingDir::open(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.last_msn("cam"), Some(42));
        assert_eq!(again.last_msn("other"), None);
        // Not a stream name: nothing is read or written outside the directory.
        again.record_msn("../x", 1);
        assert_eq!(again.last_msn("../x"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
