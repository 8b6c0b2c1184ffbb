//! The options of webhooks and of the publish authorisation hook, as the config file
//! holds them (top-level keys and `[[webhooks]]`) and the binary's flags give them:
//! merged (`or`) and checked into [`WebhookSettings`] and a
//! [`PublishHookConfig`](crate::publish_hook::PublishHookConfig). Errors name the flag.

use std::time::Duration;

use serde::Deserialize;

use crate::ValidationError;
use crate::publish_hook::PublishHookConfig;
use crate::webhooks::{DeclaredWebhook, SenderConfig};

/// The config file's keys of both hooks; `None`: not given.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HookOptions {
    #[serde(default)]
    pub webhooks: Vec<DeclaredWebhook>,
    pub webhook_timeout_ms: Option<u64>,
    pub webhook_retry_for_ms: Option<u64>,
    pub on_publish_url: Option<String>,
    pub on_publish_timeout_ms: Option<u64>,
    pub on_publish_fail_open: Option<bool>,
    pub on_publish_secret: Option<String>,
}

/// The resolved webhook settings.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    pub declared: Vec<DeclaredWebhook>,
    pub sender: SenderConfig,
}

/// A hook option set to what cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookOptionsError {
    #[error("in the config file's [[webhooks]] for {url}")]
    FileWebhook {
        url: String,
        #[source]
        source: ValidationError,
    },
    #[error(
        "--webhook needs --webhook-secret (RIVULET_WEBHOOK_SECRET): the key its requests are signed with"
    )]
    NoWebhookSecret,
    #[error("check --webhook and --webhook-secret")]
    FlagWebhook(#[source] ValidationError),
    #[error("--webhook-timeout-ms must be more than 0")]
    WebhookTimeout,
    #[error("--on-publish-url '{0}' is not an http:// or https:// URL")]
    PublishHookUrl(String),
    #[error("--on-publish-timeout-ms must be more than 0")]
    PublishHookTimeout,
}

impl HookOptions {
    /// Each option of `self`, else `other`'s (flags over the file); the declared
    /// webhooks are `other`'s (the flags' own come to [`HookOptions::webhooks`]).
    pub fn or(self, other: &HookOptions) -> HookOptions {
        HookOptions {
            webhooks: other.webhooks.clone(),
            webhook_timeout_ms: self.webhook_timeout_ms.or(other.webhook_timeout_ms),
            webhook_retry_for_ms: self.webhook_retry_for_ms.or(other.webhook_retry_for_ms),
            on_publish_url: self.on_publish_url.or(other.on_publish_url.clone()),
            on_publish_timeout_ms: self.on_publish_timeout_ms.or(other.on_publish_timeout_ms),
            on_publish_fail_open: match (self.on_publish_fail_open, other.on_publish_fail_open) {
                (Some(true), _) => Some(true),
                (_, file) => file,
            },
            on_publish_secret: self.on_publish_secret.or(other.on_publish_secret.clone()),
        }
    }

    /// The declared webhooks (the file's, then the `flag_urls` signed with
    /// `flag_secret`, which replace a file's hook of the same URL) and how they are sent.
    pub fn webhooks(
        &self,
        flag_urls: &[String],
        flag_secret: Option<&str>,
    ) -> Result<WebhookSettings, HookOptionsError> {
        let mut declared = self.webhooks.clone();
        for hook in &declared {
            hook.validate()
                .map_err(|source| HookOptionsError::FileWebhook {
                    url: hook.url.clone(),
                    source,
                })?;
        }
        if !flag_urls.is_empty() {
            let secret = flag_secret.ok_or(HookOptionsError::NoWebhookSecret)?;
            for url in flag_urls {
                let hook = DeclaredWebhook {
                    url: url.clone(),
                    events: Vec::new(),
                    secret: secret.to_owned(),
                };
                hook.validate().map_err(HookOptionsError::FlagWebhook)?;
                declared.retain(|d| d.url != hook.url);
                declared.push(hook);
            }
        }
        let defaults = SenderConfig::default();
        let ms = |given: Option<u64>, default| given.map_or(default, Duration::from_millis);
        let sender = SenderConfig {
            timeout: ms(self.webhook_timeout_ms, defaults.timeout),
            retry_for: ms(self.webhook_retry_for_ms, defaults.retry_for),
            ..defaults
        };
        if sender.timeout.is_zero() {
            return Err(HookOptionsError::WebhookTimeout);
        }
        Ok(WebhookSettings { declared, sender })
    }

    /// The publish authorisation hook, if one is configured.
    pub fn publish_hook(&self) -> Result<Option<PublishHookConfig>, HookOptionsError> {
        let Some(url) = self.on_publish_url.clone() else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if parsed.is_none() {
            return Err(HookOptionsError::PublishHookUrl(url));
        }
        let timeout = Duration::from_millis(self.on_publish_timeout_ms.unwrap_or(3000));
        if timeout.is_zero() {
            return Err(HookOptionsError::PublishHookTimeout);
        }
        Ok(Some(PublishHookConfig {
            url,
            timeout,
            fail_open: self.on_publish_fail_open.unwrap_or(false),
            secret: self.on_publish_secret.clone(),
        }))
    }
}
