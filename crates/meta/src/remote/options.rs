//! How `serve` talks to a remote metadata server: the options as given (flags over the
//! config file, merged by the binary), checked and filled with the defaults.

use std::time::Duration;

use super::{KeyCacheConfig, RemoteConfig, RemoteError, RemoteMeta};

/// The `--meta-…` options; `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    pub url: Option<String>,
    pub token: Option<String>,
    pub cache_ttl_ms: Option<u64>,
    pub negative_ttl_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

/// How `serve` talks to a remote metadata server.
#[derive(Clone)]
pub struct RemoteSettings {
    pub url: String,
    pub token: String,
    pub cache: KeyCacheConfig,
    pub client: RemoteConfig,
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the token.
        f.debug_struct("RemoteSettings")
            .field("url", &self.url)
            .field("cache", &self.cache)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// A remote metadata server option set to what cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteOptionsError {
    #[error(
        "--meta-url needs --meta-token (RIVULET_META_TOKEN, meta_token): the admin token of that metadata server"
    )]
    NoToken,
    #[error("--meta-timeout-ms must be more than 0")]
    Timeout,
    #[error("check --meta-url (RIVULET_META_URL, meta_url)")]
    Url(#[source] RemoteError),
}

impl RemoteOptions {
    /// The settings, `None` without a URL (the metadata server runs in this process).
    pub fn resolve(self) -> Result<Option<RemoteSettings>, RemoteOptionsError> {
        let Some(url) = self.url else {
            return Ok(None);
        };
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .ok_or(RemoteOptionsError::NoToken)?;
        let ms = |given: Option<u64>, default| Duration::from_millis(given.unwrap_or(default));
        let timeout = ms(self.timeout_ms, 2_000);
        if timeout.is_zero() {
            return Err(RemoteOptionsError::Timeout);
        }
        let settings = RemoteSettings {
            url,
            token,
            cache: KeyCacheConfig {
                ttl: ms(self.cache_ttl_ms, 30_000),
                negative_ttl: ms(self.negative_ttl_ms, 2_000),
                ..Default::default()
            },
            client: RemoteConfig {
                timeout,
                connect_timeout: timeout.min(Duration::from_secs(1)),
            },
        };
        settings.client()?;
        Ok(Some(settings))
    }
}

impl RemoteSettings {
    /// The client these settings describe.
    pub fn client(&self) -> Result<RemoteMeta, RemoteOptionsError> {
        RemoteMeta::new(&self.url, &self.token, self.client).map_err(RemoteOptionsError::Url)
    }
}
