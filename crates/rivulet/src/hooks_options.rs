//! Webhooks and the publish authorisation hook: flags, environment and config file
//! (flag > `RIVULET_…` environment > file > default). See docs/webhooks.md.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use meta::publish_hook::PublishHookConfig;
use meta::webhooks::{DeclaredWebhook, SenderConfig};
use serde::Deserialize;

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
#[derive(Debug, Default, Deserialize)]
pub(crate) struct HooksFile {
    #[serde(default)]
    pub(crate) webhooks: Vec<DeclaredWebhook>,
    pub(crate) webhook_timeout_ms: Option<u64>,
    pub(crate) webhook_retry_for_ms: Option<u64>,
    pub(crate) on_publish_url: Option<String>,
    pub(crate) on_publish_timeout_ms: Option<u64>,
    pub(crate) on_publish_fail_open: Option<bool>,
    pub(crate) on_publish_secret: Option<String>,
}

/// The resolved webhook settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct WebhookSettings {
    pub(crate) declared: Vec<DeclaredWebhook>,
    pub(crate) sender: SenderConfig,
}

impl WebhookArgs {
    pub(crate) fn resolve(&self, file: &HooksFile) -> anyhow::Result<WebhookSettings> {
        let mut declared = file.webhooks.clone();
        for hook in &declared {
            hook.validate()
                .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))
                .with_context(|| format!("in the config file's [[webhooks]] for {}", hook.url))?;
        }
        if !self.webhooks.is_empty() {
            let Some(secret) = &self.webhook_secret else {
                bail!(
                    "--webhook needs --webhook-secret (RIVULET_WEBHOOK_SECRET): the key its requests are signed with"
                );
            };
            for url in &self.webhooks {
                let hook = DeclaredWebhook {
                    url: url.clone(),
                    events: Vec::new(),
                    secret: secret.clone(),
                };
                hook.validate()
                    .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))
                    .context("check --webhook and --webhook-secret")?;
                declared.retain(|d| d.url != hook.url);
                declared.push(hook);
            }
        }
        let defaults = SenderConfig::default();
        let ms = |flag: Option<u64>, file: Option<u64>, default: Duration| {
            flag.or(file).map(Duration::from_millis).unwrap_or(default)
        };
        let sender = SenderConfig {
            timeout: ms(
                self.webhook_timeout_ms,
                file.webhook_timeout_ms,
                defaults.timeout,
            ),
            retry_for: ms(
                self.webhook_retry_for_ms,
                file.webhook_retry_for_ms,
                defaults.retry_for,
            ),
            ..defaults
        };
        if sender.timeout.is_zero() {
            bail!("--webhook-timeout-ms must be more than 0");
        }
        Ok(WebhookSettings { declared, sender })
    }
}

impl PublishHookArgs {
    pub(crate) fn resolve(&self, file: &HooksFile) -> anyhow::Result<Option<PublishHookConfig>> {
        let Some(url) = self.on_publish_url.clone().or(file.on_publish_url.clone()) else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if parsed.is_none() {
            bail!("--on-publish-url '{url}' is not an http:// or https:// URL");
        }
        let timeout = Duration::from_millis(
            self.on_publish_timeout_ms
                .or(file.on_publish_timeout_ms)
                .unwrap_or(3000),
        );
        if timeout.is_zero() {
            bail!("--on-publish-timeout-ms must be more than 0");
        }
        Ok(Some(PublishHookConfig {
            url,
            timeout,
            fail_open: self.on_publish_fail_open || file.on_publish_fail_open.unwrap_or(false),
            secret: self
                .on_publish_secret
                .clone()
                .or(file.on_publish_secret.clone()),
        }))
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
