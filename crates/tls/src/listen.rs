//! The TLS listeners of a process (RTMPS, HTTPS) and the certificate they share:
//! bound at start, before anything else, so that a certificate that cannot be used
//! stops the start before any port is taken.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::{CertificateFiles, ReloadingCert, TlsError};

/// Why the TLS listeners could not start; each names the flag to check.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot use the TLS certificate and key (check --tls-cert and --tls-key)")]
    Certificate(#[source] TlsError),
    #[error("cannot configure TLS")]
    Config(#[source] TlsError),
    #[error(
        "cannot listen for RTMPS on {addr} (is another server using the port? set --rtmps-listen)"
    )]
    Rtmps {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen for HTTPS on {addr} (is another server using the port? set --https-listen)"
    )]
    Https {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where the TLS listeners are and the certificate files they present: all or nothing.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    pub rtmps_listen: Option<SocketAddr>,
    pub https_listen: Option<SocketAddr>,
    /// Set whenever a listener is.
    pub files: Option<CertificateFiles>,
}

/// A TLS listener without the certificate it needs; `.0` is `rtmps` or `https`.
#[derive(Debug, thiserror::Error)]
#[error(
    "--{0}-listen needs --tls-cert and --tls-key (RIVULET_TLS_CERT/RIVULET_TLS_KEY, tls_cert/tls_key): the certificate and key files, PEM"
)]
pub struct NoCertificate(pub &'static str);

impl ListenOptions {
    /// The options, checked: a listener needs the files.
    pub fn check(self) -> Result<Self, NoCertificate> {
        match (&self.files, self.rtmps_listen, self.https_listen) {
            (None, Some(_), _) => Err(NoCertificate("rtmps")),
            (None, None, Some(_)) => Err(NoCertificate("https")),
            _ => Ok(self),
        }
    }
}

/// The certificate and the listeners that use it.
pub struct TlsListeners {
    pub cert: Arc<ReloadingCert>,
    pub rtmps: Option<TcpListener>,
    pub https: Option<TcpListener>,
}

/// ALPN of the HTTPS listeners: HTTP/2, then HTTP/1.1.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The rustls configuration of an HTTPS listener over `cert` (HTTP/2 by ALPN), or with
/// `alpn` false of an RTMPS one (RTMP clients offer no ALPN).
pub fn listener_config(
    cert: &Arc<ReloadingCert>,
    https: bool,
) -> Result<Arc<crate::ServerConfig>, ListenError> {
    let alpn = if https { HTTP_ALPN } else { &[] };
    crate::server_config(cert.clone(), alpn).map_err(ListenError::Config)
}

/// Loads the pair for the process's TLS listeners; the error names the file and what
/// is wrong with it.
pub fn load(files: &CertificateFiles) -> Result<Arc<ReloadingCert>, ListenError> {
    let cert = ReloadingCert::load(files.clone()).map_err(ListenError::Certificate)?;
    tracing::info!(
        cert = %files.cert.display(),
        fingerprint = %cert.fingerprint(),
        "TLS certificate loaded (reloaded on SIGHUP and when the files change)"
    );
    Ok(cert)
}

impl TlsListeners {
    /// Loads the certificate and binds the listeners that need it; `None` without
    /// certificate files, or (with a warning) without a TLS listener.
    pub async fn bind(options: &ListenOptions) -> Result<Option<Self>, ListenError> {
        let (rtmps_listen, https_listen) = (options.rtmps_listen, options.https_listen);
        let Some(files) = &options.files else {
            return Ok(None);
        };
        if rtmps_listen.is_none() && https_listen.is_none() {
            tracing::warn!(
                "--tls-cert and --tls-key are set but no TLS listener is: add --rtmps-listen and/or --https-listen"
            );
            return Ok(None);
        }
        let cert = load(files)?;
        let rtmps = match rtmps_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ListenError::Rtmps { addr, source })?,
            ),
            None => None,
        };
        let https = match https_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ListenError::Https { addr, source })?,
            ),
            None => None,
        };
        Ok(Some(Self { cert, rtmps, https }))
    }

    /// The start-up lines: where to publish and watch over TLS, and the certificate.
    /// `show` turns an address into one people can use.
    pub fn banner(&self, show: impl Fn(SocketAddr) -> String) -> String {
        let mut text = String::new();
        let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(a) = addr(&self.rtmps) {
            text += &format!("  RTMPS ingest: rtmps://{}/live/STREAM_KEY\n", show(a));
        }
        if let Some(a) = addr(&self.https) {
            text += &format!("  HTTPS origin: https://{}/\n", show(a));
        }
        text += &format!(
            "  TLS certificate: {} (SHA-256 {}; reloaded on SIGHUP and when the files change)\n",
            self.cert.files().cert.display(),
            self.cert.fingerprint()
        );
        text
    }
}
