//! Who may publish: stream keys resolved to stream names.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// A publish attempt, as the key check sees it.
#[derive(Clone, Debug)]
pub struct PublishRequest {
    /// The RTMP application (`live` in `rtmp://host/live/KEY`).
    pub app: String,
    pub stream_key: String,
    pub peer: SocketAddr,
}

/// Why a publish was refused. The text goes to the encoder and the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRejection {
    #[error("stream key not recognised: check the Stream Key in your encoder settings")]
    UnknownKey,
    #[error("application '{0}' does not exist: publish to rtmp://HOST:PORT/live/STREAM_KEY")]
    WrongApp(String),
    #[error("cannot check the stream key right now ({0}); try again shortly")]
    Unavailable(String),
    /// The operator's authorisation hook (`on_publish_url`) said no.
    #[error("publish refused by the server's authorisation hook: {0}")]
    Refused(String),
}

/// A boxed future returned by [`StreamKeys::authorize`].
pub type AuthorizeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, KeyRejection>> + Send + 'a>>;

/// Resolves a publish request to the name of the stream it publishes. Async, because a
/// key may be checked against a remote metadata server.
pub trait StreamKeys: Send + Sync + 'static {
    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> AuthorizeFuture<'a>;
}

/// The one RTMP application publishes go to: `rtmp://HOST/live/KEY`. Every
/// [`StreamKeys`] refuses the others with this, before it looks at the key.
pub fn check_app(request: &PublishRequest) -> Result<(), KeyRejection> {
    if request.app == "live" {
        Ok(())
    } else {
        Err(KeyRejection::WrongApp(request.app.clone()))
    }
}

/// Keys declared in configuration.
#[derive(Clone, Debug, Default)]
pub struct StaticKeys {
    by_key: HashMap<String, String>,
}

impl StaticKeys {
    /// From (name, key) pairs.
    pub fn new(streams: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            by_key: streams.into_iter().map(|(name, key)| (key, name)).collect(),
        }
    }
}

impl StreamKeys for StaticKeys {
    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> AuthorizeFuture<'a> {
        let result = check_app(request).and_then(|()| {
            self.by_key
                .get(&request.stream_key)
                .cloned()
                .ok_or(KeyRejection::UnknownKey)
        });
        Box::pin(std::future::ready(result))
    }
}

/// A key as it may appear in logs: its first three characters.
pub fn redact(key: &str) -> String {
    let shown: String = key.chars().take(3).collect();
    format!("{shown}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_keys_resolve_names_and_refuse_the_rest() {
        let keys = StaticKeys::new([("studio".to_owned(), "s3cret".to_owned())]);
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let req = |app: &str, key: &str| PublishRequest {
            app: app.into(),
            stream_key: key.into(),
            peer,
        };
        assert_eq!(
            keys.authorize(&req("live", "s3cret")).await,
            Ok("studio".into())
        );
        assert_eq!(
            keys.authorize(&req("live", "nope")).await,
            Err(KeyRejection::UnknownKey)
        );
        assert_eq!(
            keys.authorize(&req("app", "s3cret")).await,
            Err(KeyRejection::WrongApp("app".into()))
        );
        assert_eq!(redact("s3cret"), "s3c…");
    }
}
