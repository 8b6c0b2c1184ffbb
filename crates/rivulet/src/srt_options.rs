//! The SRT listener's options: `--srt-listen` (a flag, `RIVULET_SRT_LISTEN` and the
//! file's `srt_listen`, like `--rtmp-listen`), and `--srt-latency`,
//! `--srt-passphrase`, `--srt-pbkeylen` (also keys of the file's `[srt]` table).
//! Connection caps, the bitrate cap and the idle timeout are the RTMP listener's
//! (`--rtmp-max-…`, `--rtmp-idle-timeout-ms`).

use clap::Args;

pub(crate) use ingest::SrtOptions;

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
pub(crate) use ingest::SrtFileOptions as SrtFile;

impl SrtArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(
        &self,
        file_listen: Option<&str>,
        file: &SrtFile,
    ) -> anyhow::Result<SrtOptions> {
        let flags = SrtFile {
            listen: self.srt_listen.clone(),
            latency: self.srt_latency,
            passphrase: self.srt_passphrase.clone(),
            pbkeylen: self.srt_pbkeylen,
        };
        let file = SrtFile {
            listen: file_listen.map(str::to_owned),
            ..file.clone()
        };
        Ok(flags.or(&file).resolve()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use ingest::{DEFAULT_SRT_LISTEN as DEFAULT_LISTEN, SrtListen};

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
