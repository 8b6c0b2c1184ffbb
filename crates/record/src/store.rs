//! Where recordings are kept: a local directory, or an S3-compatible bucket.

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

use crate::error::RecordError;

/// Opens the store at `location`: a directory (created if missing; `file:///PATH`
/// too), or `s3://BUCKET[/PREFIX]`. For S3, credentials and region come from the
/// `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`, …); `s3_endpoint` points at an S3-compatible server (MinIO, Ceph,
/// …), plain HTTP allowed when it says `http://`.
pub fn open_store(
    location: &str,
    s3_endpoint: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, RecordError> {
    let bad = |reason: String| RecordError::BadLocation {
        url: location.to_owned(),
        reason,
    };
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket named".into()));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let s3 = builder.build().map_err(|e| bad(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        });
    }
    if location.contains("://") && !location.starts_with("file://") {
        return Err(bad("unknown scheme".into()));
    }
    let dir = Path::new(location.strip_prefix("file://").unwrap_or(location));
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create the directory: {e}")))?;
    let local = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| bad(e.to_string()))?
        // A deleted recording leaves no empty directories behind.
        .with_automatic_cleanup(true);
    Ok(Arc::new(local))
}
