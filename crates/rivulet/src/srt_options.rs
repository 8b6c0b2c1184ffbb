//! The SRT listener's options: `--srt-listen` (a flag, `RIVULET_SRT_LISTEN` and the
//! file's `srt_listen`, like `--rtmp-listen`), and `--srt-latency`,
//! `--srt-passphrase`, `--srt-pbkeylen` (also keys of the file's `[srt]` table).
//! Connection caps, the bitrate cap and the idle timeout are the RTMP listener's
//! (`--rtmp-max-…`, `--rtmp-idle-timeout-ms`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// The default SRT address (ARCHITECTURE.md: `srt://HOST:9000?streamid=publish:KEY`).
pub(crate) const DEFAULT_LISTEN: ([u8; 4], u16) = ([0, 0, 0, 0], 9000);

/// The options (flattened into `serve`'s).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct SrtArgs {
    /// Address of the SRT listener (publish to srt://HOST:PORT?streamid=publish:STREAM_KEY,
    /// MPEG-TS with H.264 and AAC), or `off`. When the default address is taken, SRT
    /// stays off with a warning; an address given here must be free.
    /// [default: 0.0.0.0:9000]
    #[arg(long, env = "RIVULET_SRT_LISTEN", value_name = "ADDR|off")]
    pub(crate) srt_listen: Option<String>,

    /// SRT receive latency in milliseconds: how long packets are held to recover
    /// losses (at least 2.5 to 4 times the round-trip time on lossy links). The larger
    /// of this and the caller's latency applies. [default: 120]
    #[arg(long, env = "RIVULET_SRT_LATENCY", value_name = "MS")]
    pub(crate) srt_latency: Option<u64>,

    /// Encrypt SRT with this passphrase (10 to 79 characters); publishers must set
    /// the same (`passphrase=` in the srt:// URL). [default: none, unencrypted]
    #[arg(
        long,
        env = "RIVULET_SRT_PASSPHRASE",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub(crate) srt_passphrase: Option<String>,

    /// AES key length in bytes with --srt-passphrase: 16, 24 or 32. [default: 16]
    #[arg(long, env = "RIVULET_SRT_PBKEYLEN", value_name = "BYTES")]
    pub(crate) srt_pbkeylen: Option<u16>,
}

/// The config file's `[srt]` table: the flags' names without `--srt-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SrtFile {
    latency: Option<u64>,
    passphrase: Option<String>,
    pbkeylen: Option<u16>,
}

/// Where the SRT listener listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SrtListen {
    Off,
    /// The default address: if it is taken, SRT is off (with a warning).
    Default(SocketAddr),
    /// An address the operator chose: it must be free.
    Given(SocketAddr),
}

/// The resolved SRT options.
#[derive(Clone, Debug)]
pub(crate) struct SrtOptions {
    pub(crate) listen: SrtListen,
    pub(crate) latency: Duration,
    pub(crate) passphrase: Option<String>,
    pub(crate) key_size: u16,
}

impl SrtArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(
        &self,
        file_listen: Option<&str>,
        file: &SrtFile,
    ) -> anyhow::Result<SrtOptions> {
        let listen = match self.srt_listen.as_deref().or(file_listen) {
            None => SrtListen::Default(DEFAULT_LISTEN.into()),
            Some(s) if s.trim().eq_ignore_ascii_case("off") => SrtListen::Off,
            Some(s) => SrtListen::Given(s.trim().parse().with_context(|| {
                format!("--srt-listen '{s}' is not an address like 0.0.0.0:9000 (or `off`)")
            })?),
        };
        let latency = match self.srt_latency.or(file.latency) {
            None => 120,
            Some(ms @ 20..=60_000) => ms,
            Some(ms) => bail!(
                "--srt-latency {ms} is out of range: give milliseconds from 20 to 60000 (120 is SRT's default; lossy links want 4 times the round-trip time)"
            ),
        };
        let passphrase = self.srt_passphrase.clone().or(file.passphrase.clone());
        if let Some(p) = &passphrase
            && !(10..=79).contains(&p.chars().count())
        {
            bail!(
                "--srt-passphrase must be 10 to 79 characters long (SRT's rule), it has {}",
                p.chars().count()
            );
        }
        let key_size = match self.srt_pbkeylen.or(file.pbkeylen) {
            None => 16,
            Some(n @ (16 | 24 | 32)) => n,
            Some(n) => bail!("--srt-pbkeylen {n} is not an AES key length: use 16, 24 or 32"),
        };
        Ok(SrtOptions {
            listen,
            latency: Duration::from_millis(latency),
            passphrase,
            key_size,
        })
    }
}

impl SrtOptions {
    /// The listener's settings; caps shared with the RTMP listener.
    pub(crate) fn ingest_config(
        &self,
        rtmp: &ingest::RtmpConfig,
        stats: ingest::SrtStatsRegistry,
    ) -> ingest::SrtConfig {
        ingest::SrtConfig {
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
    pub(crate) async fn bind(&self) -> anyhow::Result<Option<tokio::net::UdpSocket>> {
        match self.listen {
            SrtListen::Off => Ok(None),
            SrtListen::Given(addr) => tokio::net::UdpSocket::bind(addr)
                .await
                .map(Some)
                .with_context(|| format!("cannot listen for SRT on {addr} (is another server using the port? set --srt-listen, or `--srt-listen off`)")),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_bad_values_say_what_to_do() {
        let file: SrtFile = toml::from_str("latency = 500\npassphrase = \"0123456789\"").unwrap();
        let args = SrtArgs {
            srt_listen: Some("127.0.0.1:9001".into()),
            srt_latency: Some(300),
            ..Default::default()
        };
        let o = args.resolve(Some("off"), &file).unwrap();
        assert_eq!(
            o.listen,
            SrtListen::Given("127.0.0.1:9001".parse().unwrap())
        );
        assert_eq!(o.latency, Duration::from_millis(300));
        assert_eq!(o.passphrase.as_deref(), Some("0123456789"));
        assert_eq!(o.key_size, 16);

        let defaults = SrtArgs::default()
            .resolve(None, &SrtFile::default())
            .unwrap();
        assert_eq!(defaults.listen, SrtListen::Default(DEFAULT_LISTEN.into()));
        let off = SrtArgs::default()
            .resolve(Some("off"), &SrtFile::default())
            .unwrap();
        assert_eq!(off.listen, SrtListen::Off);

        for (args, needle) in [
            (
                SrtArgs {
                    srt_listen: Some("nine".into()),
                    ..Default::default()
                },
                "--srt-listen",
            ),
            (
                SrtArgs {
                    srt_latency: Some(5),
                    ..Default::default()
                },
                "--srt-latency",
            ),
            (
                SrtArgs {
                    srt_passphrase: Some("short".into()),
                    ..Default::default()
                },
                "10 to 79",
            ),
            (
                SrtArgs {
                    srt_pbkeylen: Some(20),
                    ..Default::default()
                },
                "16, 24 or 32",
            ),
        ] {
            let err = args
                .resolve(None, &SrtFile::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert!(toml::from_str::<SrtFile>("latency_ms = 1").is_err());
    }
}
