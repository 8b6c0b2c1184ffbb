//! Test harness: the real API served over loopback HTTP, on a real SQLite file in a
//! temporary directory or on a real PostgreSQL server.
//!
//! PostgreSQL: `RIVULET_TEST_POSTGRES_URL` (a server where the user may create
//! databases) is used if set; otherwise, if `/usr/lib/postgresql/*/bin/initdb` exists
//! (Debian's `postgresql` package, installed by scripts/setup.sh), one throwaway
//! cluster is created in a temporary directory for this test binary, started on
//! loopback on a free port, and stopped and removed by a watchdog when the test binary
//! exits. Each test gets its own database in it. If it cannot start, the PostgreSQL
//! variants print a loud `SKIPPED PostgreSQL: reason` and pass, unless
//! `RIVULET_TEST_REQUIRE_POSTGRES=1`, which makes them fail instead.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use meta::{AdminToken, MetaStore};
use sqlx::Connection;

/// The playback key the test server signs with.
pub const PLAYBACK_KEY: &str = "k1=test-playback-secret-0123456789";

pub const TOKEN: &str = "test-admin-token-123";

/// A running API over a fresh database.
pub struct Harness {
    pub base: String,
    pub store: MetaStore,
    pub client: reqwest::Client,
    /// The database's URL (for tests that open it again).
    pub url: String,
    /// The SQLite directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::connect(None, dir.path()).await.unwrap();
        // Byte 18 of an SQLite file header is 2 in WAL mode.
        let header = std::fs::read(dir.path().join("meta.db")).unwrap();
        assert_eq!(header[18], 2, "meta.db is not in WAL mode");
        let url = db::sqlite_url(&dir.path().join("meta.db"));
        Self::serve(store, url, Some(dir)).await
    }

    /// `None` (after saying so loudly) if no PostgreSQL can be had.
    pub async fn postgres(test: &str) -> Option<Harness> {
        let server_url = match postgres_server() {
            Ok(url) => url,
            Err(reason) => {
                if std::env::var_os("RIVULET_TEST_REQUIRE_POSTGRES").is_some_and(|v| v != "0") {
                    panic!("PostgreSQL is required (RIVULET_TEST_REQUIRE_POSTGRES) but: {reason}");
                }
                // Written to stderr directly: the test harness captures only print macros.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!!!!!!! SKIPPED PostgreSQL: {reason} (test {test}) !!!!!!!!\n"
                );
                return None;
            }
        };
        let db = fresh_database(&server_url, test).await;
        let store = MetaStore::open(&db).await.unwrap();
        Some(Self::serve(store, db, None).await)
    }

    async fn serve(store: MetaStore, url: String, dir: Option<tempfile::TempDir>) -> Harness {
        let (routes, doc) = meta::api::routes_with_keys(
            store.clone(),
            AdminToken::new(TOKEN).unwrap(),
            meta::api::MAX_BODY,
            access::playback::PlaybackKeys::parse(&[PLAYBACK_KEY]).unwrap(),
        );
        let app = routes.merge(meta::api::finish(doc));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Harness {
            base,
            store,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            url,
            _dir: dir,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An admin request.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
    }

    /// `(status, body as JSON)` of a request.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, json)
    }

    /// Creates a stream through the API; returns the JSON answer (with `key`).
    pub async fn create(&self, body: serde_json::Value) -> serde_json::Value {
        let (status, json) = self
            .send(
                self.admin(reqwest::Method::POST, "/api/streams")
                    .json(&body),
            )
            .await;
        assert_eq!(status, 201, "{json}");
        json
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The URL of a PostgreSQL server for this test binary, started on first use.
fn postgres_server() -> Result<String, String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("RIVULET_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start_cluster(),
        })
        .clone()
}

/// A new empty database on the server, named after the test.
async fn fresh_database(server_url: &str, test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    sqlx::any::install_default_drivers();
    let name = format!(
        "rivulet_{}_{}_{}",
        test.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::AnyConnection::connect(server_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    // Replace the database part of the URL.
    let (head, tail) = server_url.split_at(
        server_url
            .rfind('/')
            .filter(|i| *i > "postgres://".len())
            .unwrap_or(server_url.len()),
    );
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{head}/{name}{query}")
}

/// A throwaway cluster (the `pgtest` crate), stopped when this test binary exits.
fn start_cluster() -> Result<String, String> {
    let url = pgtest::PgCluster::start(&pgtest::PgOptions::default())
        .and_then(pgtest::PgCluster::stop_at_exit)
        .map_err(|e| e.to_string())?;
    let _ = writeln!(
        std::io::stderr(),
        "[meta tests] PostgreSQL started at {url}"
    );
    Ok(url)
}

/// Declares each listed `async fn NAME(h: Harness)` as two tests, `sqlite::NAME`
/// and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Harness::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(h) = super::common::Harness::postgres(stringify!($name)).await {
                        super::$name(h).await;
                    }
                }
            )*
        }
    };
}
