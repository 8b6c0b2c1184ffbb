//! The webhooks' tables: hooks and their delivery log.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    DELIVERY_LOG_LEN, DeclaredWebhook, Delivery, NewWebhook, Webhook, WebhookEvent, WebhookUpdate,
    WebhookWithSecret, redact_secret, validate_events, validate_secret, validate_url,
};
use crate::error::MetaError;
use crate::secret::generate_key;
use crate::store::{MetaStore, now_ms};

/// A hook with its secret, as the sender needs it.
#[derive(Clone, Debug)]
pub(crate) struct HookTarget {
    pub(crate) id: i64,
    pub(crate) url: String,
    pub(crate) secret: String,
}

impl MetaStore {
    /// Creates a webhook; the answer holds its secret in full, this once.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<WebhookWithSecret, MetaError> {
        let url = validate_url(&new.url)?;
        let events = validate_events(new.events.as_ref())?;
        let secret = match new.secret {
            Some(s) => {
                validate_secret(&s)?;
                s
            }
            None => format!("whsec_{}", generate_key()),
        };
        let row = sqlx::query(
            "INSERT INTO webhooks (url, events, secret, declared, created_at) \
             VALUES ($1, $2, $3, 0, $4) RETURNING id",
        )
        .bind(url.as_str())
        .bind(join_events(&events))
        .bind(secret.as_str())
        .bind(now_ms())
        .fetch_one(self.pool())
        .await
        .map_err(|e| url_conflict(e, &url))?;
        let webhook = self.webhook(row.try_get(0)?).await?;
        Ok(WebhookWithSecret {
            webhook,
            signing_secret: secret,
        })
    }

    /// Stores the configuration's webhooks (by URL: a declared URL that exists gets the
    /// declared events and secret), and forgets declared ones no longer declared.
    pub async fn declare_webhooks(&self, hooks: &[DeclaredWebhook]) -> Result<(), MetaError> {
        let mut urls = Vec::new();
        for hook in hooks {
            let (events, url) = hook.validate()?;
            sqlx::query(
                "INSERT INTO webhooks (url, events, secret, declared, created_at) \
                 VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT (url) DO UPDATE SET events = excluded.events, \
                     secret = excluded.secret, declared = 1",
            )
            .bind(url.as_str())
            .bind(join_events(&events))
            .bind(hook.secret.as_str())
            .bind(now_ms())
            .execute(self.pool())
            .await?;
            urls.push(url);
        }
        for hook in self.webhooks().await? {
            if hook.declared && !urls.contains(&hook.url) {
                self.delete_webhook(hook.id).await?;
            }
        }
        Ok(())
    }

    /// Every webhook, by id.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, MetaError> {
        let rows = sqlx::query(
            "SELECT id, url, events, secret, declared, created_at FROM webhooks ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// One webhook.
    pub async fn webhook(&self, id: i64) -> Result<Webhook, MetaError> {
        let row = sqlx::query(
            "SELECT id, url, events, secret, declared, created_at FROM webhooks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| not_found(id))?;
        webhook_from_row(&row)
    }

    /// Changes a webhook's URL, events or secret.
    pub async fn update_webhook(
        &self,
        id: i64,
        update: WebhookUpdate,
    ) -> Result<Webhook, MetaError> {
        let current = self.webhook(id).await?;
        let url = match &update.url {
            Some(u) => validate_url(u)?,
            None => current.url,
        };
        let events = match &update.events {
            Some(e) => validate_events(Some(e))?,
            None => current.events,
        };
        if let Some(secret) = &update.secret {
            validate_secret(secret)?;
        }
        sqlx::query(
            "UPDATE webhooks SET url = $1, events = $2, secret = COALESCE($3, secret) WHERE id = $4",
        )
        .bind(url.as_str())
        .bind(join_events(&events))
        .bind(update.secret)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(|e| url_conflict(e, &url))?;
        self.webhook(id).await
    }

    /// Deletes a webhook and its delivery log.
    pub async fn delete_webhook(&self, id: i64) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// The last [`DELIVERY_LOG_LEN`] attempts of a webhook, newest first.
    pub async fn deliveries(&self, id: i64) -> Result<Vec<Delivery>, MetaError> {
        self.webhook(id).await?;
        let rows = sqlx::query(
            "SELECT delivery, event, stream, attempt, at, status, error, duration_ms \
             FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(id)
        .bind(DELIVERY_LOG_LEN)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    delivery: r.try_get(0)?,
                    event: r.try_get(1)?,
                    stream: r.try_get(2)?,
                    attempt: r.try_get(3)?,
                    at: r.try_get(4)?,
                    status: r.try_get(5)?,
                    error: r.try_get(6)?,
                    duration_ms: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// The hooks that want `event`, with their secrets.
    pub(crate) async fn hook_targets(
        &self,
        event: WebhookEvent,
    ) -> Result<Vec<HookTarget>, MetaError> {
        let rows = sqlx::query("SELECT id, url, events, secret FROM webhooks ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            if split_events(&r.try_get::<String, _>(2)?).contains(&event) {
                out.push(HookTarget {
                    id: r.try_get(0)?,
                    url: r.try_get(1)?,
                    secret: r.try_get(3)?,
                });
            }
        }
        Ok(out)
    }

    /// Appends one attempt to a hook's delivery log and trims the log to its length.
    pub async fn log_delivery(
        &self,
        webhook_id: i64,
        delivery: &Delivery,
    ) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO webhook_deliveries \
                 (webhook_id, delivery, event, stream, attempt, at, status, error, duration_ms) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $1)",
        )
        .bind(webhook_id)
        .bind(delivery.delivery.as_str())
        .bind(delivery.event.as_str())
        .bind(delivery.stream.clone())
        .bind(delivery.attempt)
        .bind(delivery.at)
        .bind(delivery.status)
        .bind(delivery.error.clone())
        .bind(delivery.duration_ms)
        .execute(self.pool())
        .await?;
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND id <= \
                 (SELECT id FROM webhook_deliveries WHERE webhook_id = $1 \
                  ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(webhook_id)
        .bind(DELIVERY_LOG_LEN)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

fn webhook_from_row(r: &AnyRow) -> Result<Webhook, MetaError> {
    Ok(Webhook {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        events: split_events(&r.try_get::<String, _>(2)?),
        secret: redact_secret(&r.try_get::<String, _>(3)?),
        declared: r.try_get::<i64, _>(4)? != 0,
        created_at: r.try_get(5)?,
    })
}

fn join_events(events: &[WebhookEvent]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn split_events(stored: &str) -> Vec<WebhookEvent> {
    stored.split(',').filter_map(WebhookEvent::parse).collect()
}

fn not_found(id: i64) -> MetaError {
    MetaError::NotFoundWhat(format!("no webhook with id {id}"))
}

fn url_conflict(e: sqlx::Error, url: &str) -> MetaError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => MetaError::Taken {
            field: "url",
            reason: format!("a webhook for '{url}' exists already; change that one"),
        },
        _ => e.into(),
    }
}
