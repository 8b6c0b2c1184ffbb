//! Limits of the metadata API (`/api/streams…`), for `serve` and `meta`
//! (flag > `RIVULET_…` environment > the config file's `[api_limits]` > default).
//! See docs/analytics-limits.md.

use anyhow::bail;
use clap::Args;
use serde::Deserialize;

/// The flags (and environment variables) of the limits.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ApiLimitArgs {
    /// Largest request body the metadata API (/api/streams…) takes, in bytes; larger
    /// ones are answered 413 with the reason. A stream's fields at their longest fit
    /// in the default many times over. [default: 65536]
    #[arg(long, env = "RIVULET_API_MAX_BODY_BYTES", value_name = "BYTES")]
    pub(crate) api_max_body_bytes: Option<usize>,
}

/// The config file's `[api_limits]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiLimitsFile {
    max_body_bytes: Option<usize>,
}

impl ApiLimitArgs {
    /// The largest request body: flag over the file's section over the default.
    pub(crate) fn resolve(&self, file: Option<&ApiLimitsFile>) -> anyhow::Result<usize> {
        let max = self
            .api_max_body_bytes
            .or(file.and_then(|f| f.max_body_bytes))
            .unwrap_or(meta::api::MAX_BODY);
        if max < MIN_BODY {
            bail!("--api-max-body-bytes must be at least {MIN_BODY}");
        }
        Ok(max)
    }
}

/// Smaller bodies would refuse ordinary requests.
const MIN_BODY: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_over_section_over_default() {
        let file: ApiLimitsFile = toml::from_str("max_body_bytes = 4096\n").expect("toml");
        assert_eq!(
            ApiLimitArgs::default().resolve(None).expect("ok"),
            meta::api::MAX_BODY
        );
        assert_eq!(
            ApiLimitArgs::default().resolve(Some(&file)).expect("ok"),
            4096
        );
        let flag = ApiLimitArgs {
            api_max_body_bytes: Some(8192),
        };
        assert_eq!(flag.resolve(Some(&file)).expect("ok"), 8192);
        let tiny = ApiLimitArgs {
            api_max_body_bytes: Some(10),
        };
        assert!(format!("{:#}", tiny.resolve(None).unwrap_err()).contains("--api-max-body-bytes"));
    }
}
