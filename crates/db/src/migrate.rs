//! The one migration loader: embedded SQL per backend, applied through sqlx's
//! migrator into the `_sqlx_migrations` table every store of the database shares.

use futures::future::BoxFuture;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

use crate::database::{Backend, Database};

/// One migration compiled into the binary (so that it runs without its source tree).
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedMigration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// A crate's schema: the same migrations written for each backend.
#[derive(Clone, Copy, Debug)]
pub struct Migrations {
    pub sqlite: &'static [EmbeddedMigration],
    pub postgres: &'static [EmbeddedMigration],
}

impl Database {
    /// Applies the migrations of `set` not applied yet. Migrations of other crates in
    /// the same table are ignored, so versions must be unique across the crates (see
    /// the crate docs for the ranges).
    pub async fn migrate(&self, set: &Migrations) -> Result<(), MigrateError> {
        let files = match self.backend() {
            Backend::Sqlite => set.sqlite,
            Backend::Postgres => set.postgres,
        };
        let mut migrator = Migrator::new(Source(files)).await?;
        migrator.set_ignore_missing(true);
        migrator.run(self.pool()).await
    }
}

#[derive(Debug)]
struct Source(&'static [EmbeddedMigration]);

impl MigrationSource<'static> for Source {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    m.description.into(),
                    MigrationType::Simple,
                    m.sql.into(),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const A: Migrations = Migrations {
        sqlite: &[EmbeddedMigration {
            version: 1,
            description: "a",
            sql: "CREATE TABLE a (x INTEGER)",
        }],
        postgres: &[],
    };
    const B: Migrations = Migrations {
        sqlite: &[EmbeddedMigration {
            version: 1000,
            description: "b",
            sql: "CREATE TABLE b (y INTEGER)",
        }],
        postgres: &[],
    };

    /// Two crates' migrations share one table, each ignoring the other's, and
    /// applying them again changes nothing.
    #[tokio::test]
    async fn two_sets_share_one_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(None, dir.path()).await.unwrap();
        for _ in 0..2 {
            db.migrate(&A).await.unwrap();
            db.migrate(&B).await.unwrap();
        }
        for table in ["a", "b"] {
            sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(db.pool())
                .await
                .unwrap();
        }
        db.close().await;
    }
}
