//! WebRTC (WHEP) options: the UDP socket, the addresses advertised to viewers, the
//! session cap. Each is a flag, a `RIVULET_WEBRTC_…` variable and a key of the config
//! file's `[webrtc]` table (flag > environment > file > default); see docs/webrtc.md.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// The UDP port every WebRTC session shares, unless configured.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8189);
const DEFAULT_MAX_SESSIONS: usize = 500;

/// The options (flattened into `serve`'s).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct WebRtcArgs {
    /// The UDP address every WebRTC session uses (one port: the firewall needs one
    /// hole). If the default port is taken, WebRTC is off with a warning; an address
    /// given here that cannot be bound stops the start. [default: 0.0.0.0:8189]
    #[arg(long, env = "RIVULET_WEBRTC_LISTEN", value_name = "ADDR")]
    pub(crate) webrtc_listen: Option<SocketAddr>,

    /// An address viewers reach the WebRTC port on, advertised as an ICE host
    /// candidate (repeatable; the port is the listener's). [default: the listen
    /// address, or for 0.0.0.0 the first non-loopback interface address, else 127.0.0.1]
    #[arg(
        long,
        env = "RIVULET_WEBRTC_CANDIDATE",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub(crate) webrtc_candidate: Vec<IpAddr>,

    /// WebRTC sessions (WHEP viewers) at most in this process; more get 503.
    /// [default: 500]
    #[arg(long, env = "RIVULET_WEBRTC_MAX_SESSIONS", value_name = "N")]
    pub(crate) webrtc_max_sessions: Option<usize>,

    /// Turns WebRTC (WHEP) off.
    #[arg(long, env = "RIVULET_NO_WEBRTC")]
    pub(crate) no_webrtc: bool,
}

/// The config file's `[webrtc]` table: the flags' names without `--webrtc-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebRtcFile {
    listen: Option<SocketAddr>,
    candidates: Option<Vec<IpAddr>>,
    max_sessions: Option<usize>,
    enabled: Option<bool>,
}

/// WebRTC as configured.
#[derive(Debug, Clone)]
pub(crate) struct WebRtcSettings {
    pub(crate) enabled: bool,
    pub(crate) listen: SocketAddr,
    /// Whether `listen` was configured (a bind failure is then an error).
    pub(crate) listen_given: bool,
    /// Empty: chosen from the bound address ([`candidate_ips`]).
    pub(crate) candidates: Vec<IpAddr>,
    pub(crate) max_sessions: usize,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN,
            listen_given: false,
            candidates: Vec::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

impl WebRtcArgs {
    pub(crate) fn resolve(&self, file: &WebRtcFile) -> anyhow::Result<WebRtcSettings> {
        let listen = self.webrtc_listen.or(file.listen);
        let max_sessions = self
            .webrtc_max_sessions
            .or(file.max_sessions)
            .unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            bail!("--webrtc-max-sessions must be more than 0 (use --no-webrtc to turn WebRTC off)");
        }
        let candidates = if self.webrtc_candidate.is_empty() {
            file.candidates.clone().unwrap_or_default()
        } else {
            self.webrtc_candidate.clone()
        };
        if let Some(bad) = candidates.iter().find(|c| c.is_unspecified()) {
            bail!(
                "--webrtc-candidate {bad} is not an address a viewer can reach: give the server's public or LAN IP"
            );
        }
        Ok(WebRtcSettings {
            enabled: !self.no_webrtc && file.enabled.unwrap_or(true),
            listen: listen.unwrap_or(DEFAULT_LISTEN),
            listen_given: listen.is_some(),
            candidates,
            max_sessions,
        })
    }
}

/// The host candidates for a socket bound at `bound`: the configured IPs, else the
/// bound IP, else (a wildcard) the address this host routes from, else loopback.
pub(crate) fn candidate_ips(configured: &[IpAddr], bound: SocketAddr) -> Vec<SocketAddr> {
    if !configured.is_empty() {
        return configured
            .iter()
            .map(|ip| SocketAddr::new(*ip, bound.port()))
            .collect();
    }
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    // The source address of a route to a public address: no packet is sent.
    let routed = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
    let ip = routed.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    vec![SocketAddr::new(ip, bound.port())]
}

/// The UDP socket, bound before anything starts. `None`: WebRTC is off.
pub(crate) async fn bind(
    settings: &WebRtcSettings,
) -> anyhow::Result<Option<tokio::net::UdpSocket>> {
    if !settings.enabled {
        return Ok(None);
    }
    match tokio::net::UdpSocket::bind(settings.listen).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if !settings.listen_given => {
            tracing::warn!(
                addr = %settings.listen, error = %e,
                "WebRTC is off: its default UDP port cannot be bound (set --webrtc-listen, or --no-webrtc)"
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot listen for WebRTC on UDP {} (is another server using the port? set --webrtc-listen)",
                settings.listen
            )
        }),
    }
}

/// Starts the WebRTC server on `socket`: its state (for the routes) and its task.
pub(crate) fn start(
    socket: tokio::net::UdpSocket,
    settings: &WebRtcSettings,
    streams: origin::LiveStreams,
    analytics: analytics::Emitter,
    whip: webrtc_server::WhipIngest,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(webrtc_server::WebRtc, tokio::task::JoinHandle<()>)> {
    let bound = socket
        .local_addr()
        .context("the WebRTC socket has no address")?;
    let config = webrtc_server::ServerConfig {
        candidates: candidate_ips(&settings.candidates, bound),
        max_sessions: settings.max_sessions,
        whip: Some(whip),
    };
    let reports: Arc<dyn webrtc_server::ViewerReports> = Arc::new(AnalyticsReports(analytics));
    webrtc_server::start(socket, &config, streams, reports, stop).context("cannot start WebRTC")
}

/// WebRTC viewers as analytics delivery events of kind `webrtc`.
struct AnalyticsReports(analytics::Emitter);

impl webrtc_server::ViewerReports for AnalyticsReports {
    fn is_enabled(&self) -> bool {
        self.0.is_enabled()
    }

    fn report(&self, r: webrtc_server::ViewerReport) {
        self.0.emit(analytics::DeliveryEvent {
            ts: analytics::now_ms(),
            stream: r.stream,
            rendition: Some(r.rendition),
            kind: analytics::ObjectKind::WebRtc,
            status: 200,
            bytes: r.bytes,
            ttfb_us: u64::try_from(r.interval.as_micros()).unwrap_or(u64::MAX),
            client: r.client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            session: r.session,
            edge: self.0.edge().to_owned(),
            upstream: None,
            cmcd: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(toml_text: &str) -> WebRtcFile {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let none = WebRtcArgs::default();
        let s = none
            .resolve(&WebRtcFile::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.enabled && !s.listen_given);
        assert_eq!((s.listen, s.max_sessions), (DEFAULT_LISTEN, 500));

        let f =
            file("listen = \"127.0.0.1:9000\"\ncandidates = [\"192.0.2.5\"]\nmax_sessions = 7\n");
        let s = none.resolve(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.listen_given);
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.max_sessions, 7);
        assert_eq!(
            s.candidates,
            vec![
                "192.0.2.5"
                    .parse::<IpAddr>()
                    .unwrap_or_else(|e| panic!("{e}"))
            ]
        );

        let flags = WebRtcArgs {
            webrtc_max_sessions: Some(3),
            no_webrtc: true,
            ..WebRtcArgs::default()
        };
        let s = flags.resolve(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.max_sessions, 3);
        assert!(!s.enabled);
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let zero = WebRtcArgs {
            webrtc_max_sessions: Some(0),
            ..WebRtcArgs::default()
        };
        let e = zero
            .resolve(&WebRtcFile::default())
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("--webrtc-max-sessions")));
        let wildcard = WebRtcArgs {
            webrtc_candidate: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            ..WebRtcArgs::default()
        };
        let e = wildcard
            .resolve(&WebRtcFile::default())
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("reach")));
        assert!(toml::from_str::<WebRtcFile>("lisen = \"x\"").is_err());
    }

    #[test]
    fn candidates_follow_the_bound_socket() {
        let bound: SocketAddr = "127.0.0.1:8189".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(candidate_ips(&[], bound), vec![bound]);
        let public: IpAddr = "203.0.113.7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            candidate_ips(&[public], bound),
            vec![SocketAddr::new(public, 8189)]
        );
        let wildcard = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8189);
        let chosen = candidate_ips(&[], wildcard);
        assert_eq!(chosen.len(), 1);
        assert!(!chosen[0].ip().is_unspecified() && chosen[0].port() == 8189);
    }
}
