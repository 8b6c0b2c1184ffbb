//! The client side: which servers a Rivulet client (the publisher's `rtmps://`)
//! trusts.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::files::{TlsError, read_certificates};

/// Whose certificates a client accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientTrust {
    /// Certificates issued by the web's public authorities (webpki-roots), as
    /// browsers accept: what YouTube, Twitch and Facebook present.
    #[default]
    WebRoots,
    /// Certificates issued by a CA in this PEM file, or exactly a certificate in it
    /// (a server's self-signed certificate), for a private deployment.
    CaFile(PathBuf),
    /// Any certificate, unchecked: the connection is encrypted but the server is not
    /// authenticated. For tests and trusted networks only.
    Insecure,
}

/// A client configuration trusting `trust` (no ALPN, no client certificate).
pub fn client_config(trust: &ClientTrust) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = crate::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = match trust {
        ClientTrust::WebRoots => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ClientTrust::CaFile(path) => {
            let bad = |reason: String| TlsError::BadCa {
                path: path.clone(),
                reason,
            };
            let pinned = read_certificates(path, "CA certificate")?;
            let mut roots = RootCertStore::empty();
            for cert in &pinned {
                roots.add(cert.clone()).map_err(|e| bad(e.to_string()))?;
            }
            let issued =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    issued: Some(issued),
                    pinned,
                    provider,
                }))
                .with_no_client_auth()
        }
        ClientTrust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                issued: None,
                pinned: Vec::new(),
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The two verifiers of our own: a CA file's (certificates issued by the file's CAs,
/// and the file's certificates themselves: a self-signed server certificate made with
/// `openssl req -x509` is marked as a CA, which the web's rules refuse as a server's
/// own certificate), and "any certificate" (`issued: None`, nothing pinned). Both
/// still check the handshake's signatures: the server holds the key of the
/// certificate it showed.
#[derive(Debug)]
struct Verifier {
    /// `None`: any certificate is accepted.
    issued: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(issued) = &self.issued else {
            return Ok(ServerCertVerified::assertion());
        };
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        issued.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
