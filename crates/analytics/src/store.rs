//! The analytics tables, in the database the metadata server uses too (SQLite by
//! default, PostgreSQL by URL), through the same sqlx Any pool ([`db::Database`]).
//!
//! As in `meta`, the SQL is written once for both databases (`$N` placeholders,
//! integer epoch-ms times); only the schema differs (`migrations/{sqlite,postgres}`).
//! Our migrations are numbered from 1000 up and share sqlx's `_sqlx_migrations` table
//! with the metadata store's (below 1000), each side ignoring the other's.

use db::{Database, EmbeddedMigration, Migrations};
use sqlx::{AnyPool, Row};

use crate::error::AnalyticsError;
use crate::event::DeliveryEvent;
use crate::rollup::{Counters, Dim, RollupRow};

/// The analytics tables. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AnalyticsStore {
    pool: AnyPool,
}

/// A beacon as stored raw.
#[derive(Clone, Debug)]
pub struct RawBeacon {
    pub ts: i64,
    pub stream: String,
    pub session: String,
    pub client_ip: String,
    pub country: String,
    /// The validated beacon, as JSON.
    pub body: String,
}

/// A delivery event as stored raw.
#[derive(Clone, Debug)]
pub struct RawDelivery {
    pub event: DeliveryEvent,
    pub country: String,
}

impl AnalyticsStore {
    /// The analytics tables in `db`, after applying the analytics migrations.
    pub async fn open(db: &Database) -> Result<Self, AnalyticsError> {
        db.migrate(&MIGRATIONS).await?;
        Ok(Self {
            pool: db.pool().clone(),
        })
    }

    /// Writes rollup rows and raw events in one transaction.
    pub async fn write(
        &self,
        rows: &[RollupRow],
        deliveries: &[RawDelivery],
        beacons: &[RawBeacon],
    ) -> Result<(), AnalyticsError> {
        if rows.is_empty() && deliveries.is_empty() && beacons.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(CHUNK) {
            let sql = insert_sql(
                "analytics_rollups (minute, stream, dim, value, counters)",
                5,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                let counters = serde_json::to_string(&r.counters)
                    .map_err(|e| AnalyticsError::Corrupt(e.to_string()))?;
                q = q
                    .bind(r.minute)
                    .bind(r.stream.clone())
                    .bind(r.dim.unwrap_or(Dim::Total).as_str())
                    .bind(r.value.clone())
                    .bind(counters);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in deliveries.chunks(CHUNK) {
            let sql = insert_sql(
                "analytics_deliveries (ts, stream, rendition, edge, kind, status, bytes, ttfb_us, \
                 client_ip, country, session, cmcd)",
                12,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for d in chunk {
                let e = &d.event;
                let kind = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let cmcd = e.cmcd.as_ref().and_then(|c| serde_json::to_string(c).ok());
                q = q
                    .bind(e.ts)
                    .bind(e.stream.clone())
                    .bind(e.rendition.clone())
                    .bind(e.edge.clone())
                    .bind(kind)
                    .bind(i64::from(e.status))
                    .bind(saturate(e.bytes))
                    .bind(saturate(e.ttfb_us))
                    .bind(e.client.to_string())
                    .bind(d.country.clone())
                    .bind(e.session.clone())
                    .bind(cmcd);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in beacons.chunks(CHUNK) {
            let sql = insert_sql(
                "analytics_beacons (ts, stream, session, client_ip, country, body)",
                6,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for b in chunk {
                q = q
                    .bind(b.ts)
                    .bind(b.stream.clone())
                    .bind(b.session.clone())
                    .bind(b.client_ip.clone())
                    .bind(b.country.clone())
                    .bind(b.body.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stored rows of `stream` (`""`: the platform) in `dims`, for minutes that
    /// overlap `from..to` (ms since the epoch).
    pub async fn rollups(
        &self,
        stream: &str,
        dims: &[Dim],
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>, AnalyticsError> {
        let dim_list = dims
            .iter()
            .enumerate()
            .map(|(i, _)| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT minute, dim, value, counters FROM analytics_rollups \
             WHERE stream = $1 AND minute > $2 AND minute < $3 AND dim IN ({dim_list})"
        );
        let mut q = sqlx::query(&sql)
            .bind(stream)
            .bind(from.saturating_sub(crate::rollup::MINUTE_MS))
            .bind(to);
        for d in dims {
            q = q.bind(d.as_str());
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let dim: String = row.try_get("dim")?;
                let counters: String = row.try_get("counters")?;
                Ok(RollupRow {
                    minute: row.try_get("minute")?,
                    stream: stream.to_owned(),
                    dim: Dim::parse(&dim),
                    value: row.try_get("value")?,
                    counters: serde_json::from_str::<Counters>(&counters)
                        .map_err(|e| AnalyticsError::Corrupt(format!("rollup counters: {e}")))?,
                })
            })
            .collect()
    }

    /// Stored total rows of every stream (not the platform's) for minutes that
    /// overlap `from..to`.
    pub async fn stream_totals(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>, AnalyticsError> {
        sqlx::query(
            "SELECT minute, stream, value, counters FROM analytics_rollups \
             WHERE stream <> '' AND dim = 'total' AND minute > $1 AND minute < $2",
        )
        .bind(from.saturating_sub(crate::rollup::MINUTE_MS))
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let counters: String = row.try_get("counters")?;
            Ok(RollupRow {
                minute: row.try_get("minute")?,
                stream: row.try_get("stream")?,
                dim: Some(Dim::Total),
                value: row.try_get("value")?,
                counters: serde_json::from_str::<Counters>(&counters)
                    .map_err(|e| AnalyticsError::Corrupt(format!("rollup counters: {e}")))?,
            })
        })
        .collect()
    }

    /// Deletes raw events older than `before` (ms since the epoch); returns how many.
    pub async fn prune(&self, before: i64) -> Result<u64, AnalyticsError> {
        let mut n = 0;
        for table in ["analytics_deliveries", "analytics_beacons"] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE ts < $1"))
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Deletes the oldest raw events of each table beyond `cap` rows; returns how many.
    pub async fn cap_raw(&self, cap: u64) -> Result<u64, AnalyticsError> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let mut n = 0;
        for table in ["analytics_deliveries", "analytics_beacons"] {
            // The id of the newest row beyond the cap, through the primary key: no
            // count of the table, no sort.
            let edge: Option<i64> = sqlx::query(&format!(
                "SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET $1"
            ))
            .bind(cap)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?;
            if let Some(edge) = edge {
                n += sqlx::query(&format!("DELETE FROM {table} WHERE id <= $1"))
                    .bind(edge)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            }
        }
        Ok(n)
    }

    /// Raw delivery events and raw beacons stored: `(deliveries, beacons)`.
    pub async fn raw_counts(&self) -> Result<(i64, i64), AnalyticsError> {
        let count = |table: &'static str| async move {
            sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await?
                .try_get::<i64, _>(0)
        };
        Ok((
            count("analytics_deliveries").await?,
            count("analytics_beacons").await?,
        ))
    }

    /// The distinct client addresses in the raw tables (for privacy checks).
    pub async fn stored_addresses(&self) -> Result<Vec<String>, AnalyticsError> {
        let rows = sqlx::query(
            "SELECT client_ip FROM analytics_deliveries UNION SELECT client_ip FROM analytics_beacons",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }
}

/// Rows per INSERT: 12 columns × 200 stays far below both databases' limits on
/// parameters (SQLite 32 766, PostgreSQL 65 535).
const CHUNK: usize = 200;

fn insert_sql(table: &str, columns: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            sql += &format!("${n}");
        }
        sql.push(')');
    }
    sql
}

fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The schema, compiled into the binary. Versions from 1000 up: the metadata
/// store's stay below, in the same `_sqlx_migrations` table.
const MIGRATIONS: Migrations = Migrations {
    sqlite: &[EmbeddedMigration {
        version: 1001,
        description: "analytics",
        sql: include_str!("../migrations/sqlite/1001_analytics.sql"),
    }],
    postgres: &[EmbeddedMigration {
        version: 1001,
        description: "analytics",
        sql: include_str!("../migrations/postgres/1001_analytics.sql"),
    }],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_placeholders() {
        assert_eq!(
            insert_sql("t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
    }
}
