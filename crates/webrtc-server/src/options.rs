//! The WebRTC options as the config file's `[webrtc]` table holds them and the
//! binary's flags give them (`--webrtc-…`): merged ([`WebRtcOptions::or`], flags over
//! the file), checked into [`WebRtcSettings`], and the UDP socket bound by them
//! ([`bind`]). Errors name the flag. See docs/webrtc.md.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;
use tokio::net::{TcpListener, UdpSocket};

use crate::{ServerConfig, WhipIngest};

/// The UDP port every WebRTC session shares, unless configured.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8189);
const DEFAULT_MAX_SESSIONS: usize = 500;
/// ICE-TCP connections from one address: a peer opens one per candidate pair, and an
/// office's NAT (where UDP is blocked, the case ICE-TCP is for) hides many viewers.
const DEFAULT_TCP_MAX_PER_IP: usize = 64;

/// The config file's `[webrtc]` table: the flags' names without `--webrtc-`; `None`:
/// not given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcOptions {
    pub listen: Option<SocketAddr>,
    pub candidates: Option<Vec<IpAddr>>,
    pub max_sessions: Option<usize>,
    pub enabled: Option<bool>,
    /// ICE-TCP on the same port (on unless `false`).
    pub tcp: Option<bool>,
    pub tcp_max_per_ip: Option<usize>,
}

/// WebRTC as configured.
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Whether `listen` was configured (a bind failure is then an error).
    pub listen_given: bool,
    /// Empty: chosen from the bound address ([`candidate_ips`]).
    pub candidates: Vec<IpAddr>,
    pub max_sessions: usize,
    /// ICE-TCP: a TCP listener on the UDP socket's address and port, offered as
    /// passive candidates.
    pub tcp: bool,
    /// ICE-TCP connections at most from one client address.
    pub tcp_max_per_ip: usize,
}

/// A WebRTC option set to what cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebRtcOptionsError {
    #[error("--webrtc-max-sessions must be more than 0 (use --no-webrtc to turn WebRTC off)")]
    MaxSessions,
    #[error(
        "--webrtc-tcp-max-per-ip must be more than 0 (use --no-webrtc-tcp to turn ICE-TCP off)"
    )]
    TcpMaxPerIp,
    #[error(
        "--webrtc-candidate {0} is not an address a viewer can reach: give the server's public or LAN IP"
    )]
    Candidate(IpAddr),
}

/// The configured UDP address cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for WebRTC on UDP {addr} (is another server using the port? set --webrtc-listen)"
)]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_LISTEN,
            listen_given: false,
            candidates: Vec::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            tcp: true,
            tcp_max_per_ip: DEFAULT_TCP_MAX_PER_IP,
        }
    }
}

impl WebRtcOptions {
    /// Each option of `self`, else `other`'s (flags over the file).
    pub fn or(self, other: &WebRtcOptions) -> WebRtcOptions {
        WebRtcOptions {
            listen: self.listen.or(other.listen),
            candidates: self.candidates.or_else(|| other.candidates.clone()),
            max_sessions: self.max_sessions.or(other.max_sessions),
            enabled: self.enabled.or(other.enabled),
            tcp: self.tcp.or(other.tcp),
            tcp_max_per_ip: self.tcp_max_per_ip.or(other.tcp_max_per_ip),
        }
    }

    /// The settings, defaults filling what is not given.
    pub fn resolve(&self) -> Result<WebRtcSettings, WebRtcOptionsError> {
        let max_sessions = self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            return Err(WebRtcOptionsError::MaxSessions);
        }
        let tcp_max_per_ip = self.tcp_max_per_ip.unwrap_or(DEFAULT_TCP_MAX_PER_IP);
        if tcp_max_per_ip == 0 {
            return Err(WebRtcOptionsError::TcpMaxPerIp);
        }
        let candidates = self.candidates.clone().unwrap_or_default();
        if let Some(bad) = candidates.iter().find(|c| c.is_unspecified()) {
            return Err(WebRtcOptionsError::Candidate(*bad));
        }
        Ok(WebRtcSettings {
            enabled: self.enabled.unwrap_or(true),
            listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            listen_given: self.listen.is_some(),
            candidates,
            max_sessions,
            tcp: self.tcp.unwrap_or(true),
            tcp_max_per_ip,
        })
    }
}

impl WebRtcSettings {
    /// The server's configuration for a socket bound at `bound`.
    pub fn server_config(&self, bound: SocketAddr, whip: WhipIngest) -> ServerConfig {
        ServerConfig {
            candidates: candidate_ips(&self.candidates, bound),
            max_sessions: self.max_sessions,
            tcp_max_per_ip: self.tcp_max_per_ip,
            whip: Some(whip),
        }
    }
}

/// The host candidates for a socket bound at `bound`: the configured IPs, else the
/// bound IP, else (a wildcard) the address this host routes from, else loopback.
pub fn candidate_ips(configured: &[IpAddr], bound: SocketAddr) -> Vec<SocketAddr> {
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
    let routed = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
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

/// What WebRTC listens on: the UDP socket every session shares and, for ICE-TCP, a
/// TCP listener on the same address and port.
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: Option<TcpListener>,
}

/// Ports tried for a UDP and TCP pair when the listen port is 0.
const EPHEMERAL_TRIES: usize = 16;

/// The sockets, bound before anything starts. `None`: WebRTC is off (turned off, or
/// the default port is taken: a warning). A TCP port that cannot be bound leaves
/// ICE-TCP off with a warning; for port 0 the pair is chosen where both are free (a
/// random UDP port's TCP twin may be a closed connection's, in TIME_WAIT).
pub async fn bind(settings: &WebRtcSettings) -> Result<Option<Sockets>, BindError> {
    if !settings.enabled {
        return Ok(None);
    }
    if settings.tcp && settings.listen.port() == 0 {
        for _ in 0..EPHEMERAL_TRIES {
            // tokio binds with SO_REUSEADDR: the last run's connections in TIME_WAIT
            // do not keep the port after a restart.
            let Ok(tcp) = TcpListener::bind(settings.listen).await else {
                break;
            };
            let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
                break;
            };
            let addr = SocketAddr::new(settings.listen.ip(), port);
            if let Ok(udp) = UdpSocket::bind(addr).await {
                return Ok(Some(Sockets {
                    udp,
                    tcp: Some(tcp),
                }));
            }
        }
    }
    let udp = match bind_udp(settings).await? {
        Some(udp) => udp,
        None => return Ok(None),
    };
    let tcp = if settings.tcp {
        let addr = udp.local_addr().unwrap_or(settings.listen);
        match TcpListener::bind(addr).await {
            Ok(tcp) => Some(tcp),
            Err(e) => {
                tracing::warn!(
                    %addr, error = %e,
                    "WebRTC over TCP is off: its port cannot be bound (viewers whose network blocks UDP fall back to LL-HLS; --no-webrtc-tcp silences this)"
                );
                None
            }
        }
    } else {
        None
    };
    Ok(Some(Sockets { udp, tcp }))
}

async fn bind_udp(settings: &WebRtcSettings) -> Result<Option<UdpSocket>, BindError> {
    match UdpSocket::bind(settings.listen).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if !settings.listen_given => {
            tracing::warn!(
                addr = %settings.listen, error = %e,
                "WebRTC is off: its default UDP port cannot be bound (set --webrtc-listen, or --no-webrtc)"
            );
            Ok(None)
        }
        Err(source) => Err(BindError {
            addr: settings.listen,
            source,
        }),
    }
}

/// The start-up lines: the sessions' UDP socket (and TCP port, with `tcp`) and the
/// WHEP and WHIP resources on `http` (the HTTP server's address as people type it).
pub fn banner(udp: SocketAddr, tcp: bool, http: &str) -> String {
    let transports = if tcp { "UDP and TCP" } else { "UDP" };
    format!(
        "  WebRTC (WHEP): {transports} {udp} (POST http://{http}/live/NAME/whep)\n  WHIP ingest: POST http://{http}/whip/STREAM_KEY (or /whip with Authorization: Bearer STREAM_KEY)\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_first_given_wins_and_defaults_fill_the_rest() {
        let s = WebRtcOptions::default()
            .resolve()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.enabled && !s.listen_given);
        assert_eq!((s.listen, s.max_sessions), (DEFAULT_LISTEN, 500));

        let file = WebRtcOptions {
            listen: Some(SocketAddr::new(ip("127.0.0.1"), 9000)),
            candidates: Some(vec![ip("192.0.2.5")]),
            max_sessions: Some(7),
            enabled: None,
            tcp: None,
            tcp_max_per_ip: Some(5),
        };
        let s = WebRtcOptions::default()
            .or(&file)
            .resolve()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.listen_given);
        assert_eq!((s.listen.port(), s.max_sessions), (9000, 7));
        assert_eq!(s.candidates, vec![ip("192.0.2.5")]);
        assert_eq!(s.tcp_max_per_ip, 5);

        let flags = WebRtcOptions {
            max_sessions: Some(3),
            enabled: Some(false),
            ..WebRtcOptions::default()
        };
        let s = flags.or(&file).resolve().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.max_sessions, 3);
        assert!(!s.enabled);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag() {
        let zero = WebRtcOptions {
            max_sessions: Some(0),
            ..WebRtcOptions::default()
        };
        let e = zero.resolve().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("--webrtc-max-sessions")));
        let zero = WebRtcOptions {
            tcp_max_per_ip: Some(0),
            ..WebRtcOptions::default()
        };
        let e = zero.resolve().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("--webrtc-tcp-max-per-ip")));
        let wildcard = WebRtcOptions {
            candidates: Some(vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]),
            ..WebRtcOptions::default()
        };
        let e = wildcard.resolve().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("reach")));
    }

    #[tokio::test]
    async fn ice_tcp_listens_on_the_udp_port_or_is_off_with_the_udp_socket_kept() {
        let settings = |listen: SocketAddr, tcp: bool| WebRtcSettings {
            listen,
            listen_given: true,
            tcp,
            ..WebRtcSettings::default()
        };
        let any = SocketAddr::new(ip("127.0.0.1"), 0);
        // Port 0: a pair where both are free, on one port.
        let both = bind(&settings(any, true)).await.unwrap().unwrap();
        let udp = both.udp.local_addr().unwrap();
        let tcp = both.tcp.as_ref().map(|t| t.local_addr().unwrap());
        assert_eq!(tcp, Some(udp));
        let udp_only = bind(&settings(any, false)).await.unwrap().unwrap();
        assert!(udp_only.tcp.is_none());
        // A TCP port already taken: UDP still, ICE-TCP off.
        let taken = std::net::TcpListener::bind(any).unwrap();
        let port = taken.local_addr().unwrap();
        let Ok(Some(without)) = bind(&settings(port, true)).await else {
            // That UDP port is taken too on this host: nothing to check.
            return;
        };
        assert_eq!(without.udp.local_addr().unwrap(), port);
        assert!(without.tcp.is_none());
    }

    #[test]
    fn candidates_follow_the_bound_socket() {
        let bound = SocketAddr::new(ip("127.0.0.1"), 8189);
        assert_eq!(candidate_ips(&[], bound), vec![bound]);
        let public = ip("203.0.113.7");
        assert_eq!(
            candidate_ips(&[public], bound),
            vec![SocketAddr::new(public, 8189)]
        );
        let chosen = candidate_ips(
            &[],
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8189),
        );
        assert_eq!(chosen.len(), 1);
        assert!(!chosen[0].ip().is_unspecified() && chosen[0].port() == 8189);
    }
}
