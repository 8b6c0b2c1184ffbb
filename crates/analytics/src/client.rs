//! Who a request came from: the client's address (behind trusted proxies only) and
//! the playback session it belongs to.

use std::net::IpAddr;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Addresses whose `X-Forwarded-For` is believed: `--trusted-proxy`, each an address
/// (`10.0.0.5`) or a network (`10.0.0.0/8`, `fd00::/8`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ProxyNet>);

/// One trusted address or network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxy` value is not an address or a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyNetError {
    /// The part before any `/` is not an IPv4 or IPv6 address.
    #[error("'{0}' is not an IP address or ADDRESS/PREFIX network")]
    NotAnAddress(String),
    /// The prefix length is not a number up to the address's width.
    #[error("'{value}': the prefix length must be 0 to {max}")]
    BadPrefix { value: String, max: u8 },
}

impl FromStr for ProxyNet {
    type Err = ProxyNetError;

    fn from_str(s: &str) -> Result<Self, ProxyNetError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| ProxyNetError::NotAnAddress(s.to_owned()))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                ProxyNetError::BadPrefix {
                    value: s.to_owned(),
                    max,
                }
            })?,
        };
        Ok(ProxyNet { addr, prefix })
    }
}

impl ProxyNet {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TrustedProxies {
    pub fn new(nets: Vec<ProxyNet>) -> Self {
        Self(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: `peer` (the TCP peer) unless it is a trusted proxy, in
    /// which case `X-Forwarded-For` (all its values, joined by commas) is read from the
    /// right, skipping trusted proxies, and the first address that is not one is the
    /// client. Entries to its left were written by the client itself and prove
    /// nothing. An unreadable entry stops the walk at the last address we can believe.
    pub fn client_addr(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for entry in header.rsplit(',') {
            let Some(ip) = parse_forwarded_entry(entry) else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// A playback session's id, by the first of these that the request carries: the CMCD
/// `sid`, a player-supplied id (`X-Player-Id`), or else a hash of the client's address
/// and user agent salted with `salt`. The salt is random per process, so that the
/// hash cannot be reversed into an address by trying every IPv4 address.
pub fn session_id(
    cmcd_sid: Option<&str>,
    player_id: Option<&str>,
    client: IpAddr,
    user_agent: Option<&str>,
    salt: &[u8; 16],
) -> String {
    if let Some(sid) = cmcd_sid.filter(|s| !s.is_empty()) {
        return sid.to_owned();
    }
    if let Some(id) = player_id
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= crate::cmcd::MAX_ID_LEN)
    {
        return id.to_owned();
    }
    let mut hash = Sha256::new();
    hash.update(salt);
    hash.update(client.to_string().as_bytes());
    hash.update([0]);
    hash.update(user_agent.unwrap_or("").as_bytes());
    let digest = hash.finalize();
    let mut id = String::from("h-");
    for b in &digest[..12] {
        id += &format!("{b:02x}");
    }
    id
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack socket reports)
/// as the IPv4 address it is, so that it matches IPv4 networks and the GeoIP data.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:80`.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(ip, _)| ip.parse().ok())
            .map(canonical);
    }
    entry
        .rsplit_once(':')
        .and_then(|(ip, port)| port.parse::<u16>().ok().and(ip.parse().ok()))
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::new(vec![
            "127.0.0.1".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        // Untrusted peer: its header is ignored.
        assert_eq!(
            trusted.client_addr(ip("203.0.113.9"), Some("8.8.8.8")),
            ip("203.0.113.9")
        );
        // Trusted peer: the rightmost untrusted entry is the client; a spoofed entry
        // further left is not.
        assert_eq!(
            trusted.client_addr(ip("127.0.0.1"), Some("1.1.1.1, 8.8.8.8, 10.1.2.3")),
            ip("8.8.8.8")
        );
        assert_eq!(
            trusted.client_addr(ip("::ffff:10.0.0.1"), Some("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
        assert_eq!(
            trusted.client_addr(ip("10.0.0.1"), Some("8.8.4.4:1234")),
            ip("8.8.4.4")
        );
        // Junk stops the walk at the last believable hop.
        assert_eq!(
            trusted.client_addr(ip("10.0.0.1"), Some("8.8.8.8, junk, 10.0.0.2")),
            ip("10.0.0.2")
        );
        assert_eq!(trusted.client_addr(ip("10.0.0.1"), None), ip("10.0.0.1"));
        assert_eq!(
            TrustedProxies::default().client_addr(ip("127.0.0.1"), Some("8.8.8.8")),
            ip("127.0.0.1")
        );
        assert_eq!(
            "10.0.0.0/33".parse::<ProxyNet>().unwrap_err().to_string(),
            "'10.0.0.0/33': the prefix length must be 0 to 32"
        );
        assert_eq!(
            "nope".parse::<ProxyNet>(),
            Err(ProxyNetError::NotAnAddress("nope".into()))
        );
        assert!(TrustedProxies::new(vec!["::/0".parse().unwrap()]).contains(ip("2001:db8::5")));
    }

    #[test]
    fn session_ids_prefer_cmcd_then_player_then_hash() {
        let salt = [7; 16];
        let a = ip("192.0.2.1");
        assert_eq!(session_id(Some("s1"), Some("p"), a, None, &salt), "s1");
        assert_eq!(session_id(None, Some(" p1 "), a, None, &salt), "p1");
        let h1 = session_id(None, None, a, Some("UA"), &salt);
        assert!(h1.starts_with("h-") && h1.len() == 26, "{h1}");
        assert_eq!(h1, session_id(None, None, a, Some("UA"), &salt));
        assert_ne!(h1, session_id(None, None, a, Some("UA2"), &salt));
        assert_ne!(h1, session_id(None, None, a, Some("UA"), &[8; 16]));
    }
}
