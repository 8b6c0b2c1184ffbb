//! The TLS options of `serve` and `edge`: one certificate and key, for every TLS
//! listener of the process (HTTPS, RTMPS), reloaded on SIGHUP and when the files
//! change.

use std::path::PathBuf;

use clap::Args;

/// The flags (flattened into `serve`'s and `edge`'s).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct TlsArgs {
    /// TLS certificate chain (PEM, the server's certificate first) for HTTPS and
    /// RTMPS; reloaded on SIGHUP and when the file changes. Needs --tls-key.
    #[arg(long, env = "RIVULET_TLS_CERT", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RIVULET_TLS_KEY", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The files, flag > environment > config file; both or neither.
    pub(crate) fn resolve(
        &self,
        file_cert: Option<PathBuf>,
        file_key: Option<PathBuf>,
    ) -> anyhow::Result<Option<tls::CertificateFiles>> {
        Ok(tls::CertificateFiles::pair(
            self.tls_cert.clone().or(file_cert),
            self.tls_key.clone().or(file_key),
        )?)
    }
}
