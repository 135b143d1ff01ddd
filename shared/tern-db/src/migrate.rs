//! Versioned SQL migrations, applied by the `migrate` job — never by every instance at start.
//!
//! Two `migrate` runs at once are safe: each takes a session advisory lock first, so the second
//! waits and then finds nothing left to do. Each migration runs in its own transaction and is
//! recorded with the SHA-256 of its text; a migration edited after it was applied is an error,
//! not a silent skip.

use crate::{Db, DbConfig};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tern::{Context, StartError};
use tokio_postgres::Client;

/// The `migrate` job, for [`tern::run_job`]: waits up to `MIGRATE_WAIT` (default 60s) for the
/// database to accept connections (so it can start beside a database that is still coming up),
/// then applies `migrations`. A bad setting is a [`StartError::Config`] (exit 2); a database
/// that stays unreachable or a migration that fails is [`StartError::Failed`] (exit 1).
pub async fn job(ctx: Context, migrations: &[Migration]) -> Result<(), StartError> {
    let mut cfg = DbConfig::from_env(ctx.env()).await?;
    // The lock wait has no statement timeout (`Migrator::run`): the server sends nothing while
    // another run holds it, which is not a stall.
    cfg.stall_timeout = None;
    let wait: Duration = ctx.env().or("MIGRATE_WAIT", Duration::from_secs(60))?;
    let db = Db::from_config(&cfg)?;
    let deadline = Instant::now() + wait;
    let mut client = loop {
        match db.get().await {
            Ok(c) => break c,
            Err(p) if Instant::now() < deadline => {
                tracing::info!(
                    reason = p.detail().unwrap_or_default(),
                    "waiting for the database"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(p) => {
                return Err(StartError::failed(format!(
                    "the database did not become reachable within {wait:?}: {p}"
                )));
            }
        }
    };
    // A standby region's database is a read-only replica: its schema comes from the primary by
    // replication, and even `CREATE TABLE IF NOT EXISTS` fails there. Say so in one line (the
    // chart renders no migrate Job for a standby cluster; this is for a job pointed there by hand).
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| StartError::failed(format!("cannot ask the database its role: {e}")))?
        .get(0);
    if in_recovery {
        return Err(StartError::failed(
            "the database is a read-only replica (pg_is_in_recovery() is true): migrations run against the primary and reach a replica by replication",
        ));
    }
    let report = Migrator::new(migrations.to_vec())
        .run(&mut client)
        .await
        .map_err(StartError::failed)?;
    tracing::info!(applied = ?report.applied, already = report.already, "database is up to date");
    Ok(())
}

/// The advisory lock key ("tern" in ASCII).
const LOCK_KEY: i64 = 0x7465_726e;

/// One migration: `0002_orders.sql` is version 2, named `orders`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Unique, increasing.
    pub version: i32,
    /// A short name from the file name.
    pub name: &'static str,
    /// The SQL, run as one batch in a transaction.
    pub sql: &'static str,
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database refused a statement.
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        /// Which.
        version: i32,
        /// Which.
        name: String,
        /// The database error.
        source: tokio_postgres::Error,
    },
    /// An applied migration's text changed.
    #[error(
        "migration {version} ({name}) was edited after it was applied; add a new migration instead"
    )]
    Changed {
        /// Which.
        version: i32,
        /// Which.
        name: String,
    },
    /// The migrations' own bookkeeping failed.
    #[error("migration bookkeeping failed: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Applies a fixed list of migrations.
#[derive(Debug)]
pub struct Migrator {
    migrations: Vec<Migration>,
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Versions applied by this run.
    pub applied: Vec<i32>,
    /// Versions that were already there.
    pub already: usize,
}

impl Migrator {
    /// A migrator for `migrations`, sorted by version.
    pub fn new(mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by_key(|m| m.version);
        Self { migrations }
    }

    /// Applies whatever is missing, holding the advisory lock. Waiting for the lock is not
    /// subject to `DB_STATEMENT_TIMEOUT`: a second run waits for the first however long its
    /// migrations take (the Job's own deadline bounds it), then finds nothing left to do.
    pub async fn run(&self, client: &mut Client) -> Result<MigrateReport, MigrateError> {
        client
            .batch_execute(&format!(
                "SET statement_timeout = 0; SELECT pg_advisory_lock({LOCK_KEY}); RESET statement_timeout"
            ))
            .await?;
        let result = self.run_locked(client).await;
        // The lock is session-level: release it whatever happened.
        let unlock = client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await;
        let report = result?;
        unlock?;
        Ok(report)
    }

    async fn run_locked(&self, client: &mut Client) -> Result<MigrateReport, MigrateError> {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS tern_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await?;
        let applied: Vec<(i32, String)> = client
            .query("SELECT version, checksum FROM tern_migrations", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut report = MigrateReport::default();
        for m in &self.migrations {
            let sum = checksum(m.sql);
            if let Some((_, have)) = applied.iter().find(|(v, _)| *v == m.version) {
                if *have != sum {
                    return Err(MigrateError::Changed {
                        version: m.version,
                        name: m.name.to_owned(),
                    });
                }
                report.already += 1;
                continue;
            }
            let failed = |source| MigrateError::Failed {
                version: m.version,
                name: m.name.to_owned(),
                source,
            };
            let tx = client.transaction().await?;
            tx.batch_execute(m.sql).await.map_err(failed)?;
            tx.execute(
                "INSERT INTO tern_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &sum],
            )
            .await?;
            tx.commit().await.map_err(failed)?;
            tracing::info!(version = m.version, name = m.name, "migration applied");
            report.applied.push(m.version);
        }
        Ok(report)
    }
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}
