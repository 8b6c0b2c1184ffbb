//! The listeners' options as the config file holds them (the `[rtmp]` and `[srt]`
//! tables) and as the binary's flags give them, merged (`or`) and checked
//! (`resolve`) into [`RtmpConfig`] and [`SrtOptions`]. Errors name the flag.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::{Bitrate, RtmpConfig, SrtConfig, SrtStatsRegistry};

/// The default SRT address (`srt://HOST:9000?streamid=publish:KEY`).
pub const DEFAULT_SRT_LISTEN: ([u8; 4], u16) = ([0, 0, 0, 0], 9000);

/// An option set to what cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    #[error("--rtmp-{0} must be more than 0")]
    ZeroTimeout(&'static str),
    #[error("--rtmp-max-buffered-bytes must be at least {0} (the longest RTMP message taken)")]
    BufferedBytes(u32),
    #[error("--rtmp-max-setup-buffered-bytes must be at least 4096 (a connect command)")]
    SetupBufferedBytes,
    #[error("--srt-listen '{value}' is not an address like 0.0.0.0:9000 (or `off`)")]
    SrtListen {
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error(
        "--srt-latency {0} is out of range: give milliseconds from 20 to 60000 (120 is SRT's default; lossy links want 4 times the round-trip time)"
    )]
    SrtLatency(u64),
    #[error("--srt-passphrase must be 10 to 79 characters long (SRT's rule), it has {0}")]
    SrtPassphrase(usize),
    #[error("--srt-pbkeylen {0} is not an AES key length: use 16, 24 or 32")]
    SrtKeyLength(u16),
    #[error(
        "cannot listen for SRT on {addr} (is another server using the port? set --srt-listen, or `--srt-listen off`)"
    )]
    SrtBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The config file's `[rtmp]` table (the flags' names without `--rtmp-`); `None`:
/// not given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpOptions {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub handshake_timeout_ms: Option<u64>,
    pub setup_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub max_bitrate_kbps: Option<u64>,
    pub max_buffered_bytes: Option<usize>,
    pub max_setup_buffered_bytes: Option<usize>,
}

impl RtmpOptions {
    /// Each option of `self`, else `other`'s (flags over the file).
    pub fn or(self, other: &RtmpOptions) -> RtmpOptions {
        RtmpOptions {
            max_connections: self.max_connections.or(other.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(other.max_connections_per_ip),
            handshake_timeout_ms: self.handshake_timeout_ms.or(other.handshake_timeout_ms),
            setup_timeout_ms: self.setup_timeout_ms.or(other.setup_timeout_ms),
            idle_timeout_ms: self.idle_timeout_ms.or(other.idle_timeout_ms),
            write_timeout_ms: self.write_timeout_ms.or(other.write_timeout_ms),
            max_bitrate_kbps: self.max_bitrate_kbps.or(other.max_bitrate_kbps),
            max_buffered_bytes: self.max_buffered_bytes.or(other.max_buffered_bytes),
            max_setup_buffered_bytes: self
                .max_setup_buffered_bytes
                .or(other.max_setup_buffered_bytes),
        }
    }

    /// The listener's settings: the defaults where nothing is given, checked.
    pub fn resolve(&self) -> Result<RtmpConfig, OptionsError> {
        let mut config = RtmpConfig::default();
        let ms = |given: Option<u64>, default: Duration, name| match given {
            Some(0) => Err(OptionsError::ZeroTimeout(name)),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(default),
        };
        let session = &mut config.session;
        session.handshake_timeout = ms(
            self.handshake_timeout_ms,
            session.handshake_timeout,
            "handshake-timeout-ms",
        )?;
        session.setup_timeout = ms(
            self.setup_timeout_ms,
            session.setup_timeout,
            "setup-timeout-ms",
        )?;
        session.idle_timeout = ms(
            self.idle_timeout_ms,
            session.idle_timeout,
            "idle-timeout-ms",
        )?;
        config.write_timeout = ms(
            self.write_timeout_ms,
            config.write_timeout,
            "write-timeout-ms",
        )?;
        let limits = &mut session.chunk_limits;
        if let Some(bytes) = self.max_buffered_bytes {
            if bytes < limits.max_message_len as usize {
                return Err(OptionsError::BufferedBytes(limits.max_message_len));
            }
            limits.max_buffered = bytes;
        }
        if let Some(bytes) = self.max_setup_buffered_bytes {
            if bytes < 4096 {
                return Err(OptionsError::SetupBufferedBytes);
            }
            limits.max_buffered_setup = bytes;
        }
        if let Some(n) = self.max_connections {
            config.max_connections = n.max(1);
        }
        if let Some(n) = self.max_connections_per_ip {
            config.max_connections_per_ip = n.max(1);
        }
        if let Some(kbps) = self.max_bitrate_kbps {
            config.max_bitrate = (kbps > 0).then(|| Bitrate(kbps.saturating_mul(1000)));
        }
        Ok(config)
    }
}

/// The config file's `[srt]` table (the flags' names without `--srt-`), plus the
/// top-level `srt_listen`; `None`: not given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtFileOptions {
    #[serde(skip)]
    pub listen: Option<String>,
    pub latency: Option<u64>,
    pub passphrase: Option<String>,
    pub pbkeylen: Option<u16>,
}

impl SrtFileOptions {
    /// Each option of `self`, else `other`'s (flags over the file).
    pub fn or(self, other: &SrtFileOptions) -> SrtFileOptions {
        SrtFileOptions {
            listen: self.listen.or(other.listen.clone()),
            latency: self.latency.or(other.latency),
            passphrase: self.passphrase.or(other.passphrase.clone()),
            pbkeylen: self.pbkeylen.or(other.pbkeylen),
        }
    }

    /// The SRT options: the defaults where nothing is given, checked.
    pub fn resolve(&self) -> Result<SrtOptions, OptionsError> {
        let listen = match self.listen.as_deref() {
            None => SrtListen::Default(DEFAULT_SRT_LISTEN.into()),
            Some(s) if s.trim().eq_ignore_ascii_case("off") => SrtListen::Off,
            Some(s) => {
                SrtListen::Given(s.trim().parse().map_err(|source| OptionsError::SrtListen {
                    value: s.to_owned(),
                    source,
                })?)
            }
        };
        let latency = match self.latency {
            None => 120,
            Some(ms @ 20..=60_000) => ms,
            Some(ms) => return Err(OptionsError::SrtLatency(ms)),
        };
        if let Some(p) = &self.passphrase
            && !(10..=79).contains(&p.chars().count())
        {
            return Err(OptionsError::SrtPassphrase(p.chars().count()));
        }
        let key_size = match self.pbkeylen {
            None => 16,
            Some(n @ (16 | 24 | 32)) => n,
            Some(n) => return Err(OptionsError::SrtKeyLength(n)),
        };
        Ok(SrtOptions {
            listen,
            latency: Duration::from_millis(latency),
            passphrase: self.passphrase.clone(),
            key_size,
        })
    }
}

/// Where the SRT listener listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrtListen {
    Off,
    /// The default address: if it is taken, SRT is off (with a warning).
    Default(SocketAddr),
    /// An address the operator chose: it must be free.
    Given(SocketAddr),
}

/// The resolved SRT options.
#[derive(Clone, Debug)]
pub struct SrtOptions {
    pub listen: SrtListen,
    pub latency: Duration,
    pub passphrase: Option<String>,
    pub key_size: u16,
}

impl SrtOptions {
    /// The listener's settings; caps shared with the RTMP listener.
    pub fn ingest_config(&self, rtmp: &RtmpConfig, stats: SrtStatsRegistry) -> SrtConfig {
        SrtConfig {
            latency: self.latency,
            passphrase: self.passphrase.clone(),
            key_size: self.key_size,
            max_connections: rtmp.max_connections,
            max_connections_per_ip: rtmp.max_connections_per_ip,
            max_bitrate: rtmp.max_bitrate,
            bitrate_burst: rtmp.bitrate_burst,
            idle_timeout: rtmp.session.idle_timeout,
            stats,
        }
    }

    /// Binds the UDP socket; `None` when SRT is off (or its default port is taken).
    pub async fn bind(&self) -> Result<Option<tokio::net::UdpSocket>, OptionsError> {
        match self.listen {
            SrtListen::Off => Ok(None),
            SrtListen::Given(addr) => tokio::net::UdpSocket::bind(addr)
                .await
                .map(Some)
                .map_err(|source| OptionsError::SrtBind { addr, source }),
            SrtListen::Default(addr) => match tokio::net::UdpSocket::bind(addr).await {
                Ok(socket) => Ok(Some(socket)),
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "SRT ingest is off: its default address is taken; set --srt-listen ADDR (or `--srt-listen off` to silence this)");
                    Ok(None)
                }
            },
        }
    }
}
