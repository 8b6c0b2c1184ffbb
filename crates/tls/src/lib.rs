//! TLS for every Rivulet listener and client: HTTPS (`serve --https-listen`, `edge`)
//! and RTMPS (`serve --rtmps-listen`, `publish rtmps://…`), on rustls.
//!
//! - [`CertificateFiles`]: a PEM certificate chain and its private key, loaded into a
//!   rustls `CertifiedKey` with errors that name the file and what is wrong with it
//!   (unreadable, no certificate, no key, a key that is not the certificate's).
//! - [`ReloadingCert`]: the server certificate as a rustls certificate resolver
//!   holding an `Arc<CertifiedKey>` that [`ReloadingCert::reload`] swaps; handshakes
//!   under way keep the one they started with, new ones get the new one. A new pair
//!   that does not load leaves the old one in place. [`watch`] reloads it on SIGHUP
//!   and when either file changes.
//! - [`server_config`]: a rustls `ServerConfig` over that resolver, with ALPN.
//! - [`client_config`]: a rustls `ClientConfig` trusting the web's roots
//!   (webpki-roots), a CA file, or (for tests and private set-ups only) anything.
//!
//! Not here: sockets and handshakes, which belong to the servers (`httpd`, `ingest`)
//! and clients (`encoder`) that use these configurations with tokio-rustls.
//!
//! Call order for a server: `CertificateFiles::new(cert, key)` → `ReloadingCert::load`
//! (fails at startup with the reason) → `server_config(&cert, alpn)` for each
//! listener → spawn `watch(cert, WATCH_INTERVAL, shutdown)`.

mod client;
mod files;
mod listen;
mod reload;

pub use client::{ClientTrust, client_config};
pub use files::{CertificateFiles, PairError, TlsError, fingerprint};
pub use listen::{
    HTTP_ALPN, ListenError, ListenOptions, NoCertificate, TlsListeners, listener_config, load,
};
pub use reload::{ReloadingCert, WATCH_INTERVAL, server_config, watch};
pub use rustls::{ClientConfig, ServerConfig};

/// The crypto provider every configuration here uses (aws-lc-rs, rustls' default).
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
mod tests;
