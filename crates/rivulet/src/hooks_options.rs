//! Webhooks and the publish authorisation hook: flags, environment and config file
//! (flag > `RIVULET_…` environment > file > default). See docs/webhooks.md.

use clap::Args;
use meta::publish_hook::PublishHookConfig;

/// Webhook options of the metadata store's node (`serve` with its store here, `meta`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct WebhookArgs {
    /// POST stream events (stream.published, stream.unpublished, …) to this URL,
    /// signed with --webhook-secret. Repeatable; in the environment comma-separated.
    /// The config file's [[webhooks]] (url, events, secret) can also choose events.
    /// Hooks can be added at run time with POST /api/webhooks too.
    #[arg(
        long = "webhook",
        env = "RIVULET_WEBHOOKS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub(crate) webhooks: Vec<String>,

    /// The signing secret of the --webhook URLs (at least 16 characters).
    #[arg(
        long,
        env = "RIVULET_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub(crate) webhook_secret: Option<String>,

    /// Time limit of one webhook request. [default: 10000]
    #[arg(long, env = "RIVULET_WEBHOOK_TIMEOUT_MS", value_name = "MS")]
    pub(crate) webhook_timeout_ms: Option<u64>,

    /// How long a failing webhook is retried (waits of 1 s, 2 s, 4 s, … up to 5 min
    /// between tries), after which the event is given up. [default: 3600000]
    #[arg(long, env = "RIVULET_WEBHOOK_RETRY_FOR_MS", value_name = "MS")]
    pub(crate) webhook_retry_for_ms: Option<u64>,
}

/// The authorisation hook's options (`serve`: the ingest asks it).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct PublishHookArgs {
    /// Ask this URL before a publish goes ahead (like nginx-rtmp's on_publish): a JSON
    /// POST naming the stream and the client's address, after the stream key was
    /// accepted; only a 2xx answer lets the publish start. [default: no hook]
    #[arg(long, env = "RIVULET_ON_PUBLISH_URL", value_name = "URL")]
    pub(crate) on_publish_url: Option<String>,

    /// Time limit of the hook's answer. [default: 3000]
    #[arg(long, env = "RIVULET_ON_PUBLISH_TIMEOUT_MS", value_name = "MS")]
    pub(crate) on_publish_timeout_ms: Option<u64>,

    /// Let publishes go ahead when the hook does not answer (down, timeout) instead of
    /// refusing them. A hook that answers non-2xx always refuses. [default: refuse]
    #[arg(long, env = "RIVULET_ON_PUBLISH_FAIL_OPEN")]
    pub(crate) on_publish_fail_open: bool,

    /// Sign the hook's requests like webhooks (Rivulet-Signature) with this secret.
    #[arg(
        long,
        env = "RIVULET_ON_PUBLISH_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub(crate) on_publish_secret: Option<String>,
}

/// The config file's keys of both.
pub(crate) use meta::hook_options::{HookOptions as HooksFile, WebhookSettings};

impl WebhookArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: &HooksFile) -> anyhow::Result<WebhookSettings> {
        let flags = HooksFile {
            webhook_timeout_ms: self.webhook_timeout_ms,
            webhook_retry_for_ms: self.webhook_retry_for_ms,
            ..Default::default()
        };
        Ok(flags
            .or(file)
            .webhooks(&self.webhooks, self.webhook_secret.as_deref())?)
    }
}

impl PublishHookArgs {
    /// Flag > environment (both in `self`) > file > default.
    pub(crate) fn resolve(&self, file: &HooksFile) -> anyhow::Result<Option<PublishHookConfig>> {
        let flags = HooksFile {
            on_publish_url: self.on_publish_url.clone(),
            on_publish_timeout_ms: self.on_publish_timeout_ms,
            on_publish_fail_open: Some(self.on_publish_fail_open),
            on_publish_secret: self.on_publish_secret.clone(),
            ..Default::default()
        };
        Ok(flags.or(file).publish_hook()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hooks_and_flag_hooks_merge() {
        let file: HooksFile = toml::from_str(
            "on_publish_url = \"http://auth.local/check\"\n\
             [[webhooks]]\nurl = \"http://a.local/hook\"\nevents = [\"stream.published\"]\nsecret = \"0123456789abcdef\"\n",
        )
        .expect("toml");
        let args = WebhookArgs {
            webhooks: vec!["http://b.local/hook".into()],
            webhook_secret: Some("fedcba9876543210".into()),
            ..WebhookArgs::default()
        };
        let settings = args.resolve(&file).expect("valid");
        assert_eq!(settings.declared.len(), 2);
        let hook = PublishHookArgs::default()
            .resolve(&file)
            .expect("valid")
            .expect("configured");
        assert_eq!(hook.url, "http://auth.local/check");
        assert!(!hook.fail_open);
        let no_secret = WebhookArgs {
            webhooks: vec!["http://b.local/hook".into()],
            ..WebhookArgs::default()
        };
        let err = format!("{:#}", no_secret.resolve(&file).unwrap_err());
        assert!(err.contains("--webhook-secret"), "{err}");
    }
}
