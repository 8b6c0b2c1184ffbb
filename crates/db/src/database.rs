//! Opening the database: the URL, the SQLite file's mode, the pool's settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// Which database a pool runs on. The SQL of the stores is written once for both
/// (`$N` placeholders, integer epoch-ms times); only their schemas differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error(
        "the database URL '{0}' is not supported: use postgres://… or sqlite://… (or leave it unset for DATA_DIR/meta.db)"
    )]
    UnsupportedUrl(String),
    /// The SQLite file cannot be created or its mode set.
    #[error("cannot prepare the database file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A connection pool and the database it runs on. Cheap to clone; clones share the
/// pool.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl Database {
    /// Opens the database at `database_url` if given (`postgres://…` or `sqlite://…`),
    /// else the SQLite file [`SQLITE_FILE`] in `data_dir` (created if missing).
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Self, DbError> {
        match database_url {
            Some(url) => Self::open(url).await,
            None => Self::open(&sqlite_url(&data_dir.join(SQLITE_FILE))).await,
        }
    }

    /// Opens the database at `url`. An SQLite file is created (or made, if older
    /// versions created it otherwise) readable by its owner only: it holds client
    /// addresses and key hashes.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        if let Some(path) = sqlite_path(url) {
            make_private(&path, url.contains("mode=rwc")).map_err(|source| DbError::File {
                path: path.clone(),
                source,
            })?;
        }
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match backend {
            Backend::Postgres => options.max_connections(16),
            Backend::Sqlite => options.max_connections(8).after_connect(|conn, _meta| {
                Box::pin(async move {
                    // sqlx's SQLite URL has no way to say these; they are per connection
                    // (journal_mode is stored in the file, and setting it again is free).
                    for pragma in [
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            }),
        };
        let pool = options.connect(url).await?;
        tracing::debug!(?backend, "database open");
        Ok(Self { pool, backend })
    }

    /// The connection pool, for the stores' queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The sqlx URL of an SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    // Percent-encode the path: a data directory may contain spaces, '#' or '?'.
    let mut url = String::from("sqlite://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            url.push(char::from(b));
        } else {
            url += &format!("%{b:02X}");
        }
    }
    url + "?mode=rwc"
}

/// A URL for logs: the password, if any, replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The SQLite file in the data directory.
pub const SQLITE_FILE: &str = "meta.db";

/// The file of an `sqlite:` URL, if it names one (not `:memory:`).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    // Undo `sqlite_url`'s percent-encoding.
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out).into_owned()))
}

/// Creates the database file (if `create`) with mode 0600 before SQLite does (SQLite would use
/// 0644, and gives its `-wal` and `-shm` files the database file's mode), or takes
/// group and other access away from an existing one.
fn make_private(path: &Path, create: bool) -> std::io::Result<()> {
    let created = if create {
        crate::secret::create_private(path).map(|_| ())
    } else {
        Err(std::io::ErrorKind::AlreadyExists.into())
    };
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                for file in [
                    path.to_owned(),
                    PathBuf::from(format!("{}-wal", path.display())),
                    PathBuf::from(format!("{}-shm", path.display())),
                ] {
                    let Ok(meta) = std::fs::metadata(&file) else {
                        continue;
                    };
                    let mode = meta.permissions().mode();
                    if mode & 0o077 != 0 {
                        std::fs::set_permissions(
                            &file,
                            std::fs::Permissions::from_mode(mode & 0o700),
                        )?;
                        tracing::info!(file = %file.display(), "database file made readable by its owner only (was {:o})", mode & 0o777);
                    }
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_are_built_and_redacted() {
        assert_eq!(
            sqlite_url(Path::new("/data dir/meta.db")),
            "sqlite:///data%20dir/meta.db?mode=rwc"
        );
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            sqlite_path(&sqlite_url(Path::new("/data dir/meta.db"))),
            Some(PathBuf::from("/data dir/meta.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[tokio::test]
    async fn other_urls_are_refused_by_name() {
        let err = Database::open("mysql://u:pw@h/db").await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("mysql://u:***@h/db") && text.contains("postgres://"),
            "{text}"
        );
    }
}
