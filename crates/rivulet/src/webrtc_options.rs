//! WebRTC (WHEP) options: the UDP socket, the addresses advertised to viewers, the
//! session cap. Each is a flag, a `RIVULET_WEBRTC_…` variable and a key of the config
//! file's `[webrtc]` table (flag > environment > file > default; checked by
//! [`webrtc_server::options`]); see docs/webrtc.md.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

pub(crate) use webrtc_server::{WebRtcOptions as WebRtcFile, WebRtcSettings};

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

    /// Turns ICE-TCP off: by default the WebRTC port is also a TCP listener, offered
    /// to peers as a passive candidate, for networks that block UDP.
    #[arg(long, env = "RIVULET_NO_WEBRTC_TCP")]
    pub(crate) no_webrtc_tcp: bool,

    /// ICE-TCP connections at most from one client address; more are closed at once.
    /// (In all: twice --webrtc-max-sessions.) [default: 64]
    #[arg(long, env = "RIVULET_WEBRTC_TCP_MAX_PER_IP", value_name = "N")]
    pub(crate) webrtc_tcp_max_per_ip: Option<usize>,
}

impl WebRtcArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: &WebRtcFile) -> anyhow::Result<WebRtcSettings> {
        let flags = WebRtcFile {
            listen: self.webrtc_listen,
            candidates: (!self.webrtc_candidate.is_empty()).then(|| self.webrtc_candidate.clone()),
            max_sessions: self.webrtc_max_sessions,
            enabled: self.no_webrtc.then_some(false),
            tcp: self.no_webrtc_tcp.then_some(false),
            tcp_max_per_ip: self.webrtc_tcp_max_per_ip,
        };
        Ok(flags.or(file).resolve()?)
    }
}

/// The sockets (UDP, and TCP for ICE-TCP), bound before anything starts. `None`:
/// WebRTC is off.
pub(crate) async fn bind(settings: &WebRtcSettings) -> anyhow::Result<Option<Sockets>> {
    Ok(webrtc_server::options::bind(settings).await?)
}

pub(crate) use webrtc_server::options::Sockets;

/// Starts the WebRTC server on `sockets`: its state (for the routes) and its task.
pub(crate) fn start(
    sockets: Sockets,
    settings: &WebRtcSettings,
    streams: origin::LiveStreams,
    analytics: analytics::Emitter,
    whip: webrtc_server::WhipIngest,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(webrtc_server::WebRtc, tokio::task::JoinHandle<()>)> {
    let bound = sockets
        .udp
        .local_addr()
        .context("the WebRTC socket has no address")?;
    let config = settings.server_config(bound, whip);
    let reports: Arc<dyn webrtc_server::ViewerReports> = Arc::new(AnalyticsReports(analytics));
    webrtc_server::start(sockets, &config, streams, reports, stop).context("cannot start WebRTC")
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

    #[test]
    fn flags_win_over_the_file() {
        let file: WebRtcFile = toml::from_str("max_sessions = 7\ncandidates = [\"192.0.2.5\"]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let s = WebRtcArgs::default()
            .resolve(&file)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.enabled);
        assert_eq!((s.max_sessions, s.candidates.len()), (7, 1));
        let flags = WebRtcArgs {
            webrtc_max_sessions: Some(3),
            no_webrtc: true,
            ..WebRtcArgs::default()
        };
        let s = flags.resolve(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.max_sessions, 3);
        assert!(!s.enabled);
        assert!(toml::from_str::<WebRtcFile>("lisen = \"x\"").is_err());
    }
}
