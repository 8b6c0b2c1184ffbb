//! The start-up banner of `rivulet analytics`: where its API is, where other servers
//! send delivery events and with which token (shown only the once it is generated),
//! and which GeoIP database it reads. Text returned, the binary prints it.

use std::path::Path;

use db::secret::TokenSource;

use crate::{EVENTS_TOKEN_FILE, EventsToken, GeoIp};

/// The lines after the server's first ones, each ending in a newline; `http` is the
/// address to show (`HOST:PORT`).
pub fn alone(
    http: &str,
    token: &EventsToken,
    source: TokenSource,
    data_dir: &Path,
    geo: &GeoIp,
) -> String {
    let file = data_dir.join(EVENTS_TOKEN_FILE);
    let token_line = match source {
        TokenSource::Configured => "  Events token: the one configured".to_owned(),
        TokenSource::File => format!("  Events token: in {}", file.display()),
        TokenSource::Generated => format!(
            "  Events token (generated now and shown only this once; kept in {}): {}",
            file.display(),
            token.expose()
        ),
    };
    let geo = geo.path().map_or_else(
        || "none (every country \"unknown\")".into(),
        |p| p.display().to_string(),
    );
    format!(
        "  API: http://{http}/api/analytics (OpenAPI document: http://{http}/api/openapi.json)\n  \
         Delivery events: POST http://{http}/api/analytics/events (rivulet serve --analytics-url http://{http} --analytics-token TOKEN)\n\
         {token_line}\n  GeoIP: {geo}\n"
    )
}

/// Where `serve`'s analytics is (`http`: its address as people type it): here, a
/// remote server, or off.
pub fn serve(mode: &crate::AnalyticsMode, http: &str) -> String {
    match mode {
        crate::AnalyticsMode::Local => format!(
            "  Analytics: http://{http}/api/analytics/summary (beacons: POST /api/analytics/beacons)\n"
        ),
        crate::AnalyticsMode::Remote(url) => format!("  Analytics: delivery events to {url}\n"),
        crate::AnalyticsMode::Off => "  Analytics: off\n".to_owned(),
    }
}

/// The analytics API's address when it is the only API a server runs here.
pub fn api(http: &str) -> String {
    format!("  API: {http}/api/analytics (OpenAPI document: /api/openapi.json)\n")
}
