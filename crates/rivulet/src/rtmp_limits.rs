//! The RTMP listener's limits: connection caps, timeouts, buffer budgets and the
//! per-stream bitrate cap. Each is a flag, a `RIVULET_RTMP_…` variable and a key of
//! the config file's `[rtmp]` table (flag > environment > file > default); see
//! docs/limits.md.

use clap::Args;

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
pub(crate) use ingest::RtmpOptions as RtmpLimitFile;

impl RtmpLimitArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: &RtmpLimitFile) -> anyhow::Result<ingest::RtmpConfig> {
        let flags = RtmpLimitFile {
            max_connections: self.rtmp_max_connections,
            max_connections_per_ip: self.rtmp_max_connections_per_ip,
            handshake_timeout_ms: self.rtmp_handshake_timeout_ms,
            setup_timeout_ms: self.rtmp_setup_timeout_ms,
            idle_timeout_ms: self.rtmp_idle_timeout_ms,
            write_timeout_ms: self.rtmp_write_timeout_ms,
            max_bitrate_kbps: self.rtmp_max_bitrate_kbps,
            max_buffered_bytes: self.rtmp_max_buffered_bytes,
            max_setup_buffered_bytes: self.rtmp_max_setup_buffered_bytes,
        };
        Ok(flags.or(file).resolve()?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
