//! The RTMP listener's limits: connection caps, timeouts, buffer budgets and the
//! per-stream bitrate cap. Each is a flag, a `RIVULET_RTMP_…` variable and a key of
//! the config file's `[rtmp]` table (flag > environment > file > default); see
//! docs/limits.md.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde::Deserialize;

/// The options (flattened into `serve`'s).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct RtmpLimitArgs {
    /// RTMP connections open at most, all publishers together; more are closed at
    /// once with a log line. [default: 1024]
    #[arg(long, env = "RIVULET_RTMP_MAX_CONNECTIONS", value_name = "N")]
    pub(crate) rtmp_max_connections: Option<usize>,

    /// RTMP connections open at most from one client address. [default: 32]
    #[arg(long, env = "RIVULET_RTMP_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub(crate) rtmp_max_connections_per_ip: Option<usize>,

    /// The RTMP handshake must complete within this. [default: 10000]
    #[arg(long, env = "RIVULET_RTMP_HANDSHAKE_TIMEOUT_MS", value_name = "MS")]
    pub(crate) rtmp_handshake_timeout_ms: Option<u64>,

    /// A connection must ask to publish within this from its start. [default: 15000]
    #[arg(long, env = "RIVULET_RTMP_SETUP_TIMEOUT_MS", value_name = "MS")]
    pub(crate) rtmp_setup_timeout_ms: Option<u64>,

    /// A connection that completes no RTMP message for this long (no audio or video,
    /// once publishing) is closed; a trickle of bytes does not count. [default: 30000]
    #[arg(long, env = "RIVULET_RTMP_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub(crate) rtmp_idle_timeout_ms: Option<u64>,

    /// A write to an RTMP peer must finish within this; a peer that stops reading its
    /// socket is closed (and its stream freed for the real encoder). [default: 10000]
    #[arg(long, env = "RIVULET_RTMP_WRITE_TIMEOUT_MS", value_name = "MS")]
    pub(crate) rtmp_write_timeout_ms: Option<u64>,

    /// A publisher sending above this many kbit/s (with 4 s of burst allowed) is
    /// stopped with an RTMP error status; one that declares its video bitrate in
    /// onMetaData is held to 4 times that (at least 1000) within this cap. 0 turns both
    /// off. [default: 60000]
    #[arg(long, env = "RIVULET_RTMP_MAX_BITRATE_KBPS", value_name = "KBPS")]
    pub(crate) rtmp_max_bitrate_kbps: Option<u64>,

    /// Bytes one RTMP session may hold in unfinished messages, all chunk streams
    /// together, once its publish is accepted. [default: 16777216]
    #[arg(long, env = "RIVULET_RTMP_MAX_BUFFERED_BYTES", value_name = "BYTES")]
    pub(crate) rtmp_max_buffered_bytes: Option<usize>,

    /// The same before the publish is accepted (room for connect and publish
    /// commands only). [default: 65536]
    #[arg(
        long,
        env = "RIVULET_RTMP_MAX_SETUP_BUFFERED_BYTES",
        value_name = "BYTES"
    )]
    pub(crate) rtmp_max_setup_buffered_bytes: Option<usize>,
}

/// The config file's `[rtmp]` table: the flags' names without `--rtmp-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RtmpLimitFile {
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    handshake_timeout_ms: Option<u64>,
    setup_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    write_timeout_ms: Option<u64>,
    max_bitrate_kbps: Option<u64>,
    max_buffered_bytes: Option<usize>,
    max_setup_buffered_bytes: Option<usize>,
}

impl RtmpLimitArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: &RtmpLimitFile) -> anyhow::Result<ingest::RtmpConfig> {
        let mut config = ingest::RtmpConfig::default();
        let ms = |flag: Option<u64>, file: Option<u64>, default: Duration, name: &str| match flag
            .or(file)
        {
            Some(0) => bail!("--rtmp-{name} must be more than 0"),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(default),
        };
        let session = &mut config.session;
        session.handshake_timeout = ms(
            self.rtmp_handshake_timeout_ms,
            file.handshake_timeout_ms,
            session.handshake_timeout,
            "handshake-timeout-ms",
        )?;
        session.setup_timeout = ms(
            self.rtmp_setup_timeout_ms,
            file.setup_timeout_ms,
            session.setup_timeout,
            "setup-timeout-ms",
        )?;
        session.idle_timeout = ms(
            self.rtmp_idle_timeout_ms,
            file.idle_timeout_ms,
            session.idle_timeout,
            "idle-timeout-ms",
        )?;
        config.write_timeout = ms(
            self.rtmp_write_timeout_ms,
            file.write_timeout_ms,
            config.write_timeout,
            "write-timeout-ms",
        )?;
        let limits = &mut session.chunk_limits;
        if let Some(bytes) = self.rtmp_max_buffered_bytes.or(file.max_buffered_bytes) {
            if bytes < limits.max_message_len as usize {
                bail!(
                    "--rtmp-max-buffered-bytes must be at least {} (the longest RTMP message taken)",
                    limits.max_message_len
                );
            }
            limits.max_buffered = bytes;
        }
        if let Some(bytes) = self
            .rtmp_max_setup_buffered_bytes
            .or(file.max_setup_buffered_bytes)
        {
            if bytes < 4096 {
                bail!("--rtmp-max-setup-buffered-bytes must be at least 4096 (a connect command)");
            }
            limits.max_buffered_setup = bytes;
        }
        if let Some(n) = self.rtmp_max_connections.or(file.max_connections) {
            config.max_connections = n.max(1);
        }
        if let Some(n) = self
            .rtmp_max_connections_per_ip
            .or(file.max_connections_per_ip)
        {
            config.max_connections_per_ip = n.max(1);
        }
        if let Some(kbps) = self.rtmp_max_bitrate_kbps.or(file.max_bitrate_kbps) {
            config.max_bitrate = (kbps > 0).then(|| ingest::Bitrate(kbps.saturating_mul(1000)));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file: RtmpLimitFile = toml::from_str(
            "idle_timeout_ms = 5000\nmax_connections_per_ip = 4\nmax_bitrate_kbps = 0",
        )
        .unwrap();
        let args = RtmpLimitArgs {
            rtmp_max_connections_per_ip: Some(8),
            ..Default::default()
        };
        let c = args.resolve(&file).unwrap();
        assert_eq!(c.session.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections_per_ip, 8);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.max_bitrate, None);
        let bad = RtmpLimitArgs {
            rtmp_write_timeout_ms: Some(0),
            ..Default::default()
        };
        let err = bad.resolve(&RtmpLimitFile::default()).unwrap_err();
        assert!(err.to_string().contains("--rtmp-write-timeout-ms"), "{err}");
        assert!(toml::from_str::<RtmpLimitFile>("idle_timeout = 1").is_err());
    }
}
