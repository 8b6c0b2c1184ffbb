//! The stream store: sqlx's Any driver over an SQLite file or PostgreSQL.
//!
//! All SQL here is written once for both databases: `$N` placeholders (SQLite reads
//! them as numbered parameters too), `ON CONFLICT`, `RETURNING`, integer epoch-ms
//! times and integer booleans, so that the only per-database text is the schema
//! (`migrations/sqlite`, `migrations/postgres`).
//!
//! Every write transaction starts with a write to the stream's row. On SQLite that takes
//! the database's write lock at once (waiting for it under `busy_timeout`) instead of
//! upgrading a read lock later, which WAL mode refuses with `SQLITE_BUSY` under
//! concurrency; on PostgreSQL it locks the row, which serialises concurrent edits of
//! one stream, so that `add_tags` from many clients at once lose nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use db::{Database, EmbeddedMigration, Migrations};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use tokio::sync::broadcast;

use crate::error::MetaError;
use crate::events::StreamEvent;
use crate::model::{
    ListQuery, LiveReport, LiveState, MAX_TAGS, Stream, StreamName, StreamPage, StreamWithKey,
    ValidNewStream, ValidStreamUpdate, ValidationError,
};
use crate::secret::{generate_key, hash_key};

/// The streams and their metadata. Cheap to clone; clones share the connection pool
/// and the event channel.
#[derive(Clone, Debug)]
pub struct MetaStore {
    db: Database,
    pool: AnyPool,
    events: broadcast::Sender<StreamEvent>,
    /// Told of every change before the call that made it returns (see [`Self::observe`]).
    observers: Arc<Observers>,
    /// The forwarding tasks' states of restream targets, set once by the binary.
    restream_states: Arc<crate::restream::StatesSlot>,
}

impl MetaStore {
    /// Opens the database at `database_url` if given (`postgres://…` or `sqlite://…`),
    /// else the SQLite file `meta.db` in `data_dir` (created if missing), and applies
    /// the migrations.
    pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Self, MetaError> {
        Self::on(Database::connect(database_url, data_dir).await?).await
    }

    /// Opens the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> Result<Self, MetaError> {
        Self::on(Database::open(url).await?).await
    }

    /// The store over a database opened already (which other crates may share, with
    /// their own migrations), after applying the migrations.
    pub async fn on(db: Database) -> Result<Self, MetaError> {
        db.migrate(&MIGRATIONS).await?;
        tracing::debug!(backend = ?db.backend(), "metadata store open");
        Ok(Self {
            pool: db.pool().clone(),
            db,
            events: broadcast::channel(EVENT_CAPACITY).0,
            observers: Arc::default(),
            restream_states: Arc::default(),
        })
    }

    pub(crate) fn restream_states(&self) -> &OnceLock<Arc<dyn crate::restream::RestreamStates>> {
        &self.restream_states.0
    }

    /// The connection pool, for the store's other tables (webhooks, restreams).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The database under the store, for other stores sharing it.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Every change from now on, to any stream.
    pub fn subscribe(&self) -> broadcast::Receiver<StreamEvent> {
        self.events.subscribe()
    }

    /// Calls `observer` with every change from now on, before the call that made the
    /// change returns: an origin in the same process guards a stream from the moment
    /// the API answers that it was made private, not a task switch later.
    pub fn observe(&self, observer: ChangeObserver) {
        self.observers
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Creates a stream with a new random key, returned this once.
    pub async fn create(&self, new: ValidNewStream) -> Result<StreamWithKey, MetaError> {
        let key = generate_key();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO streams (name, key_hash, title, description, created_at, updated_at, version, live, private) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, 0, $7) RETURNING id",
        )
        .bind(new.name.as_str())
        .bind(hash_key(&key))
        .bind(new.title.as_str())
        .bind(new.description.as_str())
        .bind(now)
        .bind(now)
        .bind(i64::from(new.private))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unique_violation(e, new.name.as_str()))?
        .try_get(0)?;
        for tag in &new.tags {
            add_tag(&mut tx, id, tag).await?;
        }
        let stream = fetch_stream(&mut tx, new.name.as_str()).await?;
        tx.commit().await?;
        self.emit(metadata_event(&stream));
        Ok(StreamWithKey { stream, key })
    }

    /// Declares a stream with a key chosen by the operator (`--stream NAME=KEY`):
    /// creates it, or gives an existing stream of that name this key. Returns whether
    /// anything changed.
    pub async fn upsert_with_key(&self, name: &StreamName, key: &str) -> Result<bool, MetaError> {
        let now = now_ms();
        let result = sqlx::query(
            "INSERT INTO streams (name, key_hash, title, description, created_at, updated_at, version, live) \
             VALUES ($1, $2, '', '', $3, $4, 1, 0) \
             ON CONFLICT (name) DO UPDATE SET key_hash = excluded.key_hash, \
                 updated_at = excluded.updated_at, version = streams.version + 1 \
             WHERE streams.key_hash <> excluded.key_hash",
        )
        .bind(name.as_str())
        .bind(hash_key(key))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, name.as_str()))?;
        Ok(result.rows_affected() > 0)
    }

    /// One stream, as the public sees it.
    pub async fn get(&self, name: &StreamName) -> Result<Stream, MetaError> {
        let mut conn = self.pool.acquire().await?;
        fetch_stream(&mut conn, name.as_str()).await
    }

    /// The title of `name`, or `None` if there is no such stream: what the origin puts
    /// in the multivariant playlist's `EXT-X-SESSION-DATA`.
    pub async fn title(&self, name: &str) -> Result<Option<String>, MetaError> {
        let row = sqlx::query("SELECT title FROM streams WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// A page of streams, by name, filtered.
    pub async fn list(&self, query: &ListQuery) -> Result<StreamPage, MetaError> {
        let mut sql = format!("SELECT {STREAM_COLUMNS} FROM streams s WHERE 1 = 1");
        let mut args = Args::default();
        if let Some(live) = query.live {
            sql += &format!(" AND s.live = {}", args.push(Arg::Int(i64::from(live))));
        }
        if let Some(after) = &query.after {
            sql += &format!(" AND s.name > {}", args.push(Arg::Text(after.to_string())));
        }
        if let Some(tag) = &query.tag {
            sql += &format!(
                " AND EXISTS (SELECT 1 FROM stream_tags st JOIN tags t ON t.id = st.tag_id \
                 WHERE st.stream_id = s.id AND t.name = {})",
                args.push(Arg::Text(tag.clone()))
            );
        }
        let limit = args.push(Arg::Int(i64::from(query.limit)));
        let offset = args.push(Arg::Int(i64::try_from(query.offset).unwrap_or(i64::MAX)));
        sql += &format!(" ORDER BY s.name LIMIT {limit} OFFSET {offset}");

        let mut conn = self.pool.acquire().await?;
        let rows = args.bind(sqlx::query(&sql)).fetch_all(&mut *conn).await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tags = load_tags(&mut conn, &ids).await?;
        let streams = rows
            .iter()
            .zip(&ids)
            .map(|(row, id)| stream_from_row(row, tags.remove(id).unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if streams.len() == query.limit as usize {
            streams.last().map(|s| s.name.clone())
        } else {
            None
        };
        Ok(StreamPage {
            streams,
            next_cursor,
        })
    }

    /// Applies an edit atomically and returns the stream as it is after it.
    pub async fn update(
        &self,
        name: &StreamName,
        update: ValidStreamUpdate,
    ) -> Result<Stream, MetaError> {
        let mut args = Args::default();
        let mut sql = format!(
            "UPDATE streams SET updated_at = {}, version = version + 1",
            args.push(Arg::Int(now_ms()))
        );
        if let Some(title) = update.title {
            sql += &format!(", title = {}", args.push(Arg::Text(title)));
        }
        if let Some(description) = update.description {
            sql += &format!(", description = {}", args.push(Arg::Text(description)));
        }
        if let Some(record) = update.record {
            sql += &format!(", record = {}", args.push(Arg::Int(i64::from(record))));
        }
        if let Some(private) = update.private {
            sql += &format!(", private = {}", args.push(Arg::Int(i64::from(private))));
        }
        sql += &format!(
            " WHERE name = {} RETURNING id",
            args.push(Arg::Text(name.to_string()))
        );

        let mut tx = self.pool.begin().await?;
        let row = args
            .bind(sqlx::query(&sql))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| MetaError::NotFound(name.to_string()))?;
        let id: i64 = row.try_get(0)?;
        if let Some(tags) = &update.tags {
            sqlx::query("DELETE FROM stream_tags WHERE stream_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for tag in tags {
                add_tag(&mut tx, id, tag).await?;
            }
        }
        for tag in &update.add_tags {
            add_tag(&mut tx, id, tag).await?;
        }
        for tag in &update.remove_tags {
            sqlx::query(
                "DELETE FROM stream_tags WHERE stream_id = $1 \
                 AND tag_id IN (SELECT id FROM tags WHERE name = $2)",
            )
            .bind(id)
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await?;
        }
        let stream = fetch_stream(&mut tx, name.as_str()).await?;
        if stream.tags.len() > MAX_TAGS {
            // Dropping `tx` rolls the whole edit back.
            return Err(ValidationError::new(
                if update.add_tags.is_empty() {
                    "tags"
                } else {
                    "add_tags"
                },
                format!("a stream has at most {MAX_TAGS} tags"),
            )
            .into());
        }
        tx.commit().await?;
        self.emit(metadata_event(&stream));
        Ok(stream)
    }

    /// Deletes a stream; its key stops working at once.
    pub async fn delete(&self, name: &StreamName) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM streams WHERE name = $1 RETURNING id")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| MetaError::NotFound(name.to_string()))?;
        let id: i64 = row.try_get(0)?;
        // The foreign key cascades too; this keeps a database opened without
        // `foreign_keys = ON` (e.g. by the sqlite3 shell) from leaving rows behind.
        sqlx::query("DELETE FROM stream_tags WHERE stream_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.emit(StreamEvent::Deleted {
            stream: name.to_string(),
        });
        Ok(())
    }

    /// Gives a stream a new random key, returned this once; the old key stops
    /// working at once (a publish already running is not cut).
    pub async fn rotate_key(&self, name: &StreamName) -> Result<StreamWithKey, MetaError> {
        let key = generate_key();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE streams SET key_hash = $1, updated_at = $2, version = version + 1 WHERE name = $3",
        )
        .bind(hash_key(&key))
        .bind(now_ms())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(MetaError::NotFound(name.to_string()));
        }
        let stream = fetch_stream(&mut tx, name.as_str()).await?;
        tx.commit().await?;
        Ok(StreamWithKey { stream, key })
    }

    /// The names of the streams, at most `limit` (sorted): what other parts of Rivulet
    /// sharing the database may take as "streams that exist".
    pub async fn stream_names(&self, limit: u32) -> Result<Vec<String>, MetaError> {
        let rows = sqlx::query("SELECT name FROM streams ORDER BY name LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }

    /// The name of the stream whose key is `key`, if any.
    pub async fn stream_for_key(&self, key: &str) -> Result<Option<String>, MetaError> {
        let row = sqlx::query("SELECT name FROM streams WHERE key_hash = $1")
            .bind(hash_key(key))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Marks a stream live with the facts the ingest knows.
    pub async fn set_live(&self, name: &str, report: &LiveReport) -> Result<(), MetaError> {
        let renditions = report.renditions.as_ref().map(serde_json::Value::to_string);
        let ingest_stats = report
            .ingest_stats
            .as_ref()
            .map(serde_json::Value::to_string);
        let row = sqlx::query(
            "UPDATE streams SET live = 1, live_since = $1, ingest_node = $2, ingest_bitrate = $3, \
                 renditions = $4, ingest_stats = $7, updated_at = $5, version = version + 1 \
             WHERE name = $6 RETURNING version",
        )
        .bind(report.since)
        .bind(report.ingest_node.clone())
        .bind(report.ingest_bitrate)
        .bind(renditions)
        .bind(now_ms())
        .bind(name)
        .bind(ingest_stats)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| MetaError::NotFound(name.to_owned()))?;
        self.emit(StreamEvent::Live {
            stream: name.to_owned(),
            version: row.try_get(0)?,
            live: LiveState {
                live: true,
                since: Some(report.since),
                ingest_node: report.ingest_node.clone(),
                ingest_bitrate: report.ingest_bitrate,
                renditions: report.renditions.clone(),
                ingest_stats: report.ingest_stats.clone(),
            },
        });
        Ok(())
    }

    /// Marks a stream offline, if it is live. With `since`, only if the live publish
    /// is the one that started then: an offline report that arrives after the next
    /// publish started must not end that one.
    pub async fn set_offline(&self, name: &str, since: Option<i64>) -> Result<(), MetaError> {
        let mut args = Args::default();
        let mut sql = format!(
            "UPDATE streams SET live = 0, live_since = NULL, ingest_bitrate = NULL, \
                 renditions = NULL, ingest_stats = NULL, updated_at = {}, version = version + 1 \
             WHERE live = 1 AND name = {}",
            args.push(Arg::Int(now_ms())),
            args.push(Arg::Text(name.to_owned())),
        );
        if let Some(since) = since {
            sql += &format!(" AND live_since = {}", args.push(Arg::Int(since)));
        }
        sql += " RETURNING version";
        if let Some(row) = args
            .bind(sqlx::query(&sql))
            .fetch_optional(&self.pool)
            .await?
        {
            self.emit(StreamEvent::Offline {
                stream: name.to_owned(),
                version: row.try_get(0)?,
            });
        }
        Ok(())
    }

    /// Marks offline every stream that `node` reported live: at start, a node's
    /// publishes from before a crash are gone.
    pub async fn reset_node(&self, node: &str) -> Result<usize, MetaError> {
        let rows = sqlx::query(
            "UPDATE streams SET live = 0, live_since = NULL, ingest_bitrate = NULL, \
                 renditions = NULL, ingest_stats = NULL, updated_at = $1, version = version + 1 \
             WHERE live = 1 AND ingest_node = $2 RETURNING name, version",
        )
        .bind(now_ms())
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            self.emit(StreamEvent::Offline {
                stream: row.try_get(0)?,
                version: row.try_get(1)?,
            });
        }
        Ok(rows.len())
    }

    fn emit(&self, event: StreamEvent) {
        for observer in self
            .observers
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            observer(&event);
        }
        // An error only means nobody is listening.
        let _ = self.events.send(event);
    }
}

/// A synchronous listener to the store's changes (see [`MetaStore::observe`]); it must
/// not block.
pub type ChangeObserver = Arc<dyn Fn(&StreamEvent) + Send + Sync>;

#[derive(Default)]
struct Observers(Mutex<Vec<ChangeObserver>>);

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.0.lock().map_or(0, |o| o.len());
        write!(f, "{count} observer(s)")
    }
}

/// Events buffered for a slow SSE client before it is told it lagged (and resyncs).
const EVENT_CAPACITY: usize = 1024;

const STREAM_COLUMNS: &str = "s.id, s.name, s.title, s.description, s.thumbnail, s.created_at, \
     s.updated_at, s.version, s.live, s.live_since, s.ingest_node, s.ingest_bitrate, s.renditions, \
     s.ingest_stats, s.record, s.private";

async fn fetch_stream(conn: &mut AnyConnection, name: &str) -> Result<Stream, MetaError> {
    let row = sqlx::query(&format!(
        "SELECT {STREAM_COLUMNS} FROM streams s WHERE s.name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| MetaError::NotFound(name.to_owned()))?;
    let id: i64 = row.try_get("id")?;
    let tags = load_tags(conn, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    stream_from_row(&row, tags)
}

/// Tags of the given streams, each list sorted.
async fn load_tags(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, MetaError> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut args = Args::default();
    let list = ids
        .iter()
        .map(|id| args.push(Arg::Int(*id)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT st.stream_id, t.name FROM stream_tags st JOIN tags t ON t.id = st.tag_id \
         WHERE st.stream_id IN ({list}) ORDER BY t.name"
    );
    for row in args.bind(sqlx::query(&sql)).fetch_all(&mut *conn).await? {
        out.entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    Ok(out)
}

async fn add_tag(conn: &mut AnyConnection, stream_id: i64, tag: &str) -> Result<(), MetaError> {
    sqlx::query("INSERT INTO tags (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(tag)
        .execute(&mut *conn)
        .await?;
    let tag_id: i64 = sqlx::query("SELECT id FROM tags WHERE name = $1")
        .bind(tag)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    sqlx::query(
        "INSERT INTO stream_tags (stream_id, tag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(stream_id)
    .bind(tag_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn stream_from_row(row: &AnyRow, tags: Vec<String>) -> Result<Stream, MetaError> {
    let name: String = row.try_get("name")?;
    let renditions = row
        .try_get::<Option<String>, _>("renditions")?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| MetaError::Corrupt(format!("renditions of stream '{name}': {e}")))
        })
        .transpose()?;
    let ingest_stats = row
        .try_get::<Option<String>, _>("ingest_stats")?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| MetaError::Corrupt(format!("ingest_stats of stream '{name}': {e}")))
        })
        .transpose()?;
    Ok(Stream {
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        tags,
        thumbnail: row.try_get("thumbnail")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
        private: row.try_get::<i64, _>("private")? != 0,
        live: LiveState {
            live: row.try_get::<i64, _>("live")? != 0,
            since: row.try_get("live_since")?,
            ingest_node: row.try_get("ingest_node")?,
            ingest_bitrate: row.try_get("ingest_bitrate")?,
            renditions,
            ingest_stats,
        },
        record: row.try_get::<Option<i64>, _>("record")?.map(|r| r != 0),
        name,
    })
}

fn metadata_event(stream: &Stream) -> StreamEvent {
    StreamEvent::Metadata {
        stream: stream.name.clone(),
        version: stream.version,
        title: stream.title.clone(),
        description: stream.description.clone(),
        tags: stream.tags.clone(),
        private: stream.private,
        updated_at: stream.updated_at,
    }
}

/// Maps a unique-constraint violation to a conflict naming the field.
fn unique_violation(e: sqlx::Error, name: &str) -> MetaError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        // PostgreSQL names the constraint; SQLite only says it in the message.
        let on_key = db.constraint().is_some_and(|c| c.contains("key_hash"))
            || db.message().contains("key_hash");
        return if on_key {
            MetaError::Conflict {
                field: "key",
                value: "(hidden)".into(),
            }
        } else {
            MetaError::Conflict {
                field: "name",
                value: name.to_owned(),
            }
        };
    }
    MetaError::Database(e)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Arguments of a query whose text is built at run time, numbered as they are pushed.
#[derive(Default)]
struct Args(Vec<Arg>);

enum Arg {
    Text(String),
    Int(i64),
}

impl Args {
    /// Adds an argument and returns its placeholder (`$N`).
    fn push(&mut self, arg: Arg) -> String {
        self.0.push(arg);
        format!("${}", self.0.len())
    }

    fn bind<'q>(
        &'q self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for arg in &self.0 {
            query = match arg {
                Arg::Text(s) => query.bind(s.as_str()),
                Arg::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

/// The schema, compiled into the binary. Versions stay below 1000: analytics
/// numbers its own from 1000 up in the same `_sqlx_migrations` table.
const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        EmbeddedMigration {
            version: 1,
            description: "streams",
            sql: include_str!("../migrations/sqlite/0001_streams.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "private streams",
            sql: include_str!("../migrations/sqlite/0002_private_streams.sql"),
        },
        EmbeddedMigration {
            version: 3,
            description: "webhooks restream",
            sql: include_str!("../migrations/sqlite/0003_webhooks_restream.sql"),
        },
        EmbeddedMigration {
            version: 4,
            description: "stream record",
            sql: include_str!("../migrations/sqlite/0004_stream_record.sql"),
        },
        EmbeddedMigration {
            version: 7,
            description: "ingest stats",
            sql: include_str!("../migrations/sqlite/0007_ingest_stats.sql"),
        },
    ],
    postgres: &[
        EmbeddedMigration {
            version: 1,
            description: "streams",
            sql: include_str!("../migrations/postgres/0001_streams.sql"),
        },
        EmbeddedMigration {
            version: 2,
            description: "private streams",
            sql: include_str!("../migrations/postgres/0002_private_streams.sql"),
        },
        EmbeddedMigration {
            version: 3,
            description: "webhooks restream",
            sql: include_str!("../migrations/postgres/0003_webhooks_restream.sql"),
        },
        EmbeddedMigration {
            version: 4,
            description: "stream record",
            sql: include_str!("../migrations/postgres/0004_stream_record.sql"),
        },
        EmbeddedMigration {
            version: 7,
            description: "ingest stats",
            sql: include_str!("../migrations/postgres/0007_ingest_stats.sql"),
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::connect(None, dir.path()).await.unwrap();
        store
            .upsert_with_key(&StreamName::parse("cam").unwrap(), "a-key-of-some-length")
            .await
            .unwrap();
        let db = dir.path().join(db::SQLITE_FILE);
        // The WAL and shared-memory files exist while the store is open.
        for file in [
            db.clone(),
            dir.path().join("meta.db-wal"),
            dir.path().join("meta.db-shm"),
        ] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        store.close().await;

        // A database an older version created world-readable is made private.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = MetaStore::connect(None, dir.path()).await.unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(
            store.stream_names(10).await.unwrap(),
            vec!["cam".to_owned()]
        );
        store.close().await;
    }
}
