//! The admin side of the API from another program (`rivulet streams …`): create,
//! list, change, re-key and delete streams, each answer typed, each error answer
//! turned into an error naming the field at fault.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::ErrorBody;
use crate::model::{Stream, StreamPage, StreamWithKey};

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error(
        "--server must be an http:// URL (got '{0}'); put TLS in front of Rivulet with a reverse proxy"
    )]
    NotHttp(String),
    #[error("this command needs the admin token: pass --admin-token or set RIVULET_ADMIN_TOKEN")]
    NoToken,
    #[error("cannot reach the Rivulet server at {server} (set --server)")]
    Unreachable {
        server: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the server's answer broke off")]
    BrokeOff(#[source] reqwest::Error),
    /// The token was refused.
    #[error("{0} (check --admin-token)")]
    Unauthorized(String),
    /// Any other error answer: the API's message, with its field.
    #[error("{method} {path}: {status}: {detail}")]
    Refused {
        method: Method,
        path: String,
        status: StatusCode,
        detail: String,
    },
    #[error("unexpected answer from {url}")]
    Unexpected {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Query(#[from] serde_urlencoded::ser::Error),
}

/// Which streams [`AdminClient::list`] lists.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub tag: Option<String>,
    /// `Some(true)`: only live streams; `Some(false)`: only offline ones.
    pub live: Option<bool>,
}

/// The changes of [`AdminClient::update`]; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StreamChanges {
    pub title: Option<String>,
    pub description: Option<String>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
}

/// An HTTP client of a Rivulet server's `/api/streams`.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client of the server at `server` (`http://…`); without `token`, the one a
    /// local server keeps in `data_dir` (read-only commands need none).
    pub fn new(server: &str, token: Option<String>, data_dir: &Path) -> Result<Self, AdminError> {
        let server = server.trim_end_matches('/').to_owned();
        if !server.starts_with("http://") {
            return Err(AdminError::NotHttp(server));
        }
        let token = token.or_else(|| {
            std::fs::read_to_string(data_dir.join(crate::TOKEN_FILE))
                .ok()
                .map(|t| t.trim().to_owned())
        });
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            server,
            token,
        })
    }

    /// The server's base URL, without a trailing `/`.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub async fn create(
        &self,
        name: &str,
        title: Option<&str>,
        description: Option<&str>,
        tags: &[String],
    ) -> Result<StreamWithKey, AdminError> {
        let body = json!({"name": name, "title": title, "description": description, "tags": tags});
        self.call(Method::POST, "/api/streams", Some(body), true)
            .await
    }

    /// Every stream the filter lets through, all pages.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Stream>, AdminError> {
        let mut streams = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", "500".to_owned())];
            query.extend(filter.tag.clone().map(|t| ("tag", t)));
            query.extend(filter.live.map(|live| ("live", live.to_string())));
            query.extend(after.take().map(|a| ("after", a)));
            let query = serde_urlencoded::to_string(&query)?;
            let page: StreamPage = self
                .call(Method::GET, &format!("/api/streams?{query}"), None, false)
                .await?;
            streams.extend(page.streams);
            match page.next_cursor {
                Some(cursor) => after = Some(cursor),
                None => return Ok(streams),
            }
        }
    }

    pub async fn show(&self, name: &str) -> Result<Stream, AdminError> {
        self.call(Method::GET, &stream_path(name), None, false)
            .await
    }

    pub async fn update(&self, name: &str, changes: &StreamChanges) -> Result<Stream, AdminError> {
        let body = json!({
            "title": changes.title, "description": changes.description,
            "add_tags": changes.add_tags, "remove_tags": changes.remove_tags,
        });
        self.call(Method::PATCH, &stream_path(name), Some(body), true)
            .await
    }

    pub async fn rotate_key(&self, name: &str) -> Result<StreamWithKey, AdminError> {
        let path = format!("{}/rotate-key", stream_path(name));
        self.call(Method::POST, &path, None, true).await
    }

    pub async fn delete(&self, name: &str) -> Result<(), AdminError> {
        let _: Value = self
            .call(Method::DELETE, &stream_path(name), None, true)
            .await?;
        Ok(())
    }

    /// Sends a request; an error answer becomes an error naming the field at fault.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        admin: bool,
    ) -> Result<T, AdminError> {
        let url = format!("{}{path}", self.server);
        let mut request = self.http.request(method.clone(), &url);
        if admin {
            let token = self.token.as_deref().ok_or(AdminError::NoToken)?;
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&strip_nulls(body));
        }
        let response = request
            .send()
            .await
            .map_err(|source| AdminError::Unreachable {
                server: self.server.clone(),
                source,
            })?;
        let status = response.status();
        let text = response.text().await.map_err(AdminError::BrokeOff)?;
        if !status.is_success() {
            let detail = serde_json::from_str::<ErrorBody>(&text)
                .map(|e| match e.field {
                    Some(field) => format!("{field}: {}", e.error),
                    None => e.error,
                })
                .unwrap_or(text);
            if status == StatusCode::UNAUTHORIZED {
                return Err(AdminError::Unauthorized(detail));
            }
            return Err(AdminError::Refused {
                method,
                path: path.to_owned(),
                status,
                detail,
            });
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|source| AdminError::Unexpected { url, source })
    }
}

fn stream_path(name: &str) -> String {
    super::stream_path(name, "")
}

/// Drops `null` fields: absent means "leave as it is" in a PATCH.
fn strip_nulls(body: Value) -> Value {
    match body {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}
