//! The ingest's key check, answered by the store.

use access::{AuthorizeFuture, KeyRejection, PublishRequest, StreamKeys, check_app};

use crate::store::MetaStore;

impl StreamKeys for MetaStore {
    /// Hashes the presented key and looks the stream up; the RTMP application must be
    /// `live`. A database error refuses the publish as `Unavailable` (the encoder
    /// retries) rather than as an unknown key.
    fn authorize<'a>(&'a self, request: &'a PublishRequest) -> AuthorizeFuture<'a> {
        Box::pin(async move {
            check_app(request)?;
            match self.stream_for_key(&request.stream_key).await {
                Ok(Some(name)) => Ok(name),
                Ok(None) => Err(KeyRejection::UnknownKey),
                Err(e) => {
                    tracing::error!(error = %e, "cannot check a stream key against the metadata store");
                    Err(KeyRejection::Unavailable(
                        "metadata store unavailable".into(),
                    ))
                }
            }
        })
    }
}
