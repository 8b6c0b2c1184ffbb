//! Streams declared by the operator (`--stream NAME=KEY`, the config file's
//! `[[streams]]`): parsed, checked by the store's rules, and merged.

use serde::Deserialize;

use crate::model::{StreamName, validate_declared_key};

/// `NAME=KEY`: a stream and the secret key it is published with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamDecl {
    pub name: String,
    pub key: String,
}

/// A declaration that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclError {
    #[error("'{0}' is not NAME=KEY (example: --stream studio=s3cret-key)")]
    NotNameKey(String),
    /// The name breaks the store's naming rule.
    #[error("{0}")]
    Name(String),
    #[error("the key of stream '{name}': {reason}")]
    Key { name: String, reason: String },
    #[error("in the config file's [[streams]]")]
    InFile(#[source] Box<DeclError>),
    #[error("streams '{0}' and '{1}' have the same key; every stream needs its own key")]
    SameKey(String, String),
}

impl std::str::FromStr for StreamDecl {
    type Err = DeclError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, key) = s
            .split_once('=')
            .ok_or_else(|| DeclError::NotNameKey(s.to_owned()))?;
        let decl = StreamDecl {
            name: name.trim().to_owned(),
            key: key.trim().to_owned(),
        };
        decl.validate()?;
        Ok(decl)
    }
}

impl StreamDecl {
    /// The metadata store's naming and key rules, so that every declared stream can
    /// be stored.
    pub fn validate(&self) -> Result<(), DeclError> {
        StreamName::parse(&self.name).map_err(|e| DeclError::Name(e.reason))?;
        validate_declared_key(&self.key).map_err(|e| DeclError::Key {
            name: self.name.clone(),
            reason: e.reason,
        })
    }

    /// The file's streams (checked), with the flags' (which win by name); no two
    /// may share a key.
    pub fn merge(file: &[StreamDecl], flags: &[StreamDecl]) -> Result<Vec<StreamDecl>, DeclError> {
        let mut streams = file.to_vec();
        for s in &streams {
            s.validate().map_err(|e| DeclError::InFile(Box::new(e)))?;
        }
        // A flag redeclares a stream of the file by name.
        for s in flags {
            streams.retain(|f| f.name != s.name);
            streams.push(s.clone());
        }
        for (i, a) in streams.iter().enumerate() {
            if let Some(b) = streams[i + 1..].iter().find(|b| b.key == a.key) {
                return Err(DeclError::SameKey(a.name.clone(), b.name.clone()));
            }
        }
        Ok(streams)
    }
}

/// Why the store could not be opened with the declared streams.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("cannot open the metadata database {what} (check {flag})")]
    Database {
        /// The database, its password left out.
        what: String,
        flag: &'static str,
        #[source]
        source: crate::MetaError,
    },
    #[error(transparent)]
    Name(#[from] crate::ValidationError),
    #[error("cannot declare stream '{name}'")]
    Declare {
        name: String,
        #[source]
        source: crate::MetaError,
    },
    #[error("cannot declare stream '{name}'")]
    DeclareRemote {
        name: String,
        #[source]
        source: crate::remote::RemoteError,
    },
    #[error("cannot store the declared webhooks")]
    Webhooks(#[source] crate::MetaError),
    #[error("cannot set up the admin token (set --admin-token)")]
    AdminToken(#[source] crate::TokenError),
}

/// The metadata server's start: the store with the declared streams and webhooks (the
/// ones no longer declared forgotten), and the admin token (the configured one, else
/// the one generated into `data_dir`).
pub async fn open_server(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
    streams: &[StreamDecl],
    webhooks: &[crate::webhooks::DeclaredWebhook],
    admin_token: Option<&crate::AdminToken>,
) -> Result<(crate::MetaStore, crate::AdminToken, crate::TokenSource), OpenError> {
    let store = crate::MetaStore::open_declared(database_url, data_dir, streams).await?;
    store
        .declare_webhooks(webhooks)
        .await
        .map_err(OpenError::Webhooks)?;
    let (token, source) = match admin_token {
        Some(token) => (token.clone(), crate::TokenSource::Configured),
        None => {
            crate::AdminToken::load_or_generate(None, data_dir).map_err(OpenError::AdminToken)?
        }
    };
    Ok((store, token, source))
}

/// Stores the declared streams on the remote metadata server (see
/// [`crate::live::declare_remote`]); a refusal names the stream.
pub async fn declare_remote(
    keys: &crate::remote::RemoteKeys,
    streams: &[StreamDecl],
) -> Result<(), OpenError> {
    let declared = streams
        .iter()
        .map(|s| Ok((StreamName::parse(&s.name)?, s.key.clone())))
        .collect::<Result<Vec<_>, crate::ValidationError>>()?;
    crate::live::declare_remote(keys, &declared)
        .await
        .map_err(|(name, source)| OpenError::DeclareRemote {
            name: name.to_string(),
            source,
        })
}

impl crate::MetaStore {
    /// Opens the metadata database (`database_url`, else the SQLite file in
    /// `data_dir`) and creates (or re-keys) the declared streams.
    pub async fn open_declared(
        database_url: Option<&str>,
        data_dir: &std::path::Path,
        streams: &[StreamDecl],
    ) -> Result<Self, OpenError> {
        let store =
            Self::connect(database_url, data_dir)
                .await
                .map_err(|source| match database_url {
                    Some(url) => OpenError::Database {
                        what: db::redact_url(url),
                        flag: "--database-url",
                        source,
                    },
                    None => OpenError::Database {
                        what: data_dir.join(db::SQLITE_FILE).display().to_string(),
                        flag: "--data-dir",
                        source,
                    },
                })?;
        for s in streams {
            let name = StreamName::parse(&s.name)?;
            let changed = store
                .upsert_with_key(&name, &s.key)
                .await
                .map_err(|source| OpenError::Declare {
                    name: s.name.clone(),
                    source,
                })?;
            if changed {
                tracing::info!(stream = %s.name, "declared stream stored (its key is the one given)");
            }
        }
        Ok(store)
    }
}
