//! Certificate and key files: read, parsed and checked against each other, with
//! errors that name the file and say what to do.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// Why a certificate, key or CA file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read (missing, no permission, a directory).
    #[error("cannot read the {what} file {path}: {source}")]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error(
        "{path} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block): give the certificate chain, the server's certificate first{detail}"
    )]
    NoCertificate { path: PathBuf, detail: String },
    /// The file holds no PEM private key.
    #[error(
        "{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1 -----BEGIN … PRIVATE KEY----- block){detail}"
    )]
    NoKey { path: PathBuf, detail: String },
    /// The key is of a kind or form rustls cannot sign with.
    #[error("the private key in {path} cannot be used: {reason}")]
    BadKey { path: PathBuf, reason: String },
    /// The certificate cannot be parsed.
    #[error("the certificate in {path} cannot be used: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    /// The key and the certificate are not a pair.
    #[error(
        "the private key {key} does not belong to the certificate {cert} ({reason}): give the key the certificate was issued for"
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// A CA file whose certificates cannot be trusted as roots.
    #[error("the CA certificate in {path} cannot be used: {reason}")]
    BadCa { path: PathBuf, reason: String },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A certificate without its key, or a key without its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("--tls-cert needs --tls-key (RIVULET_TLS_KEY, tls_key): the certificate's private key")]
    NoKey,
    #[error("--tls-key needs --tls-cert (RIVULET_TLS_CERT, tls_cert): the certificate chain")]
    NoCert,
}

/// A PEM certificate chain (server certificate first) and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertificateFiles {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// The pair from options given apart: both or neither (`None`).
    pub fn pair(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<Self>, PairError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Self::new(cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(PairError::NoKey),
            (None, Some(_)) => Err(PairError::NoCert),
        }
    }

    /// Reads both files and checks that the key belongs to the certificate.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let chain = read_certificates(&self.cert, "TLS certificate")?;
        let key_pem = read(&self.key, "TLS key")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
            path: self.key.clone(),
            detail: detail(&e),
        })?;
        let provider = crate::provider();
        let signing =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::BadKey {
                    path: self.key.clone(),
                    reason: e.to_string(),
                })?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => Ok(certified),
            // A key type whose public half rustls cannot derive: nothing to compare.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(e @ rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
                reason: e.to_string(),
            }),
            Err(e) => Err(TlsError::BadCertificate {
                path: self.cert.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// The SHA-256 fingerprint of a certificate as `openssl x509 -fingerprint -sha256`
/// shows it (`AB:CD:…`), for logs that say which certificate is in use.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Every certificate in a PEM file (at least one).
pub(crate) fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: path.to_owned(),
            detail: detail(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
            detail: String::new(),
        });
    }
    Ok(chain)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        what,
        path: path.to_owned(),
        source,
    })
}

/// What the PEM parser said, unless it only found nothing.
fn detail(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => String::new(),
        other => format!(" ({other:?})"),
    }
}
