//! The server certificate that can be replaced while the server runs.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::files::{CertificateFiles, TlsError, fingerprint};

/// How often [`watch`] looks at the files' modification times.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The server's certificate and key, loaded from [`CertificateFiles`] and swapped by
/// [`ReloadingCert::reload`]. As a rustls certificate resolver, it hands every new
/// handshake the pair loaded last.
pub struct ReloadingCert {
    files: CertificateFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the pair; an error here should stop the server from starting.
    pub fn load(files: CertificateFiles) -> Result<Arc<Self>, TlsError> {
        let key = files.load()?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    pub fn files(&self) -> &CertificateFiles {
        &self.files
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The SHA-256 fingerprint of the server certificate in use.
    pub fn fingerprint(&self) -> String {
        self.current()
            .end_entity_cert()
            .map_or_else(|_| "-".to_owned(), fingerprint)
    }

    /// Reads the files again; on success new handshakes get the new pair, on error
    /// the pair in use stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = Arc::new(self.files.load()?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }

    /// [`reload`](Self::reload), logged: which certificate is now in use, or why the
    /// old one stays.
    pub fn reload_logged(&self, cause: &str) {
        let before = self.fingerprint();
        match self.reload() {
            Ok(()) => {
                let after = self.fingerprint();
                metrics_reloaded(true);
                tracing::info!(
                    cause,
                    cert = %self.files.cert.display(),
                    fingerprint = %after,
                    changed = after != before,
                    "TLS certificate reloaded"
                );
            }
            Err(e) => {
                metrics_reloaded(false);
                tracing::warn!(
                    cause,
                    error = %e,
                    fingerprint = %before,
                    "TLS certificate not reloaded; the one in use stays"
                );
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A server configuration presenting `cert`, offering `alpn` (e.g. `h2`,
/// `http/1.1`; none for RTMPS).
pub fn server_config(
    cert: Arc<ReloadingCert>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Reloads `cert` on SIGHUP and whenever either file's modification time or size
/// changes (looked at every `interval`), until `stop` completes. A pair that does not
/// load (a half-written file, a key for another certificate) is logged and the old
/// one kept; the next change tries again.
pub async fn watch(cert: Arc<ReloadingCert>, interval: Duration, stop: impl Future<Output = ()>) {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the TLS certificate reloads only when its files change");
            None
        }
    };
    #[cfg(not(unix))]
    let mut hangup: Option<()> = None;
    let mut seen = Stamp::of(cert.files());
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = next_hangup(&mut hangup) => {
                // Taken before reading, so that a write that ends after the read is
                // seen as a change at the next look.
                seen = Stamp::of(cert.files());
                cert.reload_logged("SIGHUP");
            }
            _ = ticker.tick() => {
                let now = Stamp::of(cert.files());
                if now != seen {
                    seen = now;
                    cert.reload_logged("file changed");
                }
            }
        }
    }
}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Option<tokio::signal::unix::Signal>) {
    match hangup {
        Some(s) => {
            if s.recv().await.is_none() {
                *hangup = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Option<()>) {
    std::future::pending().await
}

fn metrics_reloaded(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!("tls_certificate_reloads_total", "result" => result).increment(1);
}

/// What the files look like from outside: modification time and size of each.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

impl Stamp {
    fn of(files: &CertificateFiles) -> Self {
        let look = |p: &std::path::Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        Stamp(look(&files.cert), look(&files.key))
    }
}
