//! Retention: the tables behind exactly-once effects grow with every event and every order, so
//! the relay prunes them on its schedule, in small batches that hold no long locks.
//!
//! | table | kept for | setting | why that long |
//! | --- | --- | --- | --- |
//! | `tern_inbox` | 8 days | `RETENTION_INBOX` | a redelivery can arrive as long as Pub/Sub keeps the message (`message_retention`, 7 days in `infra/modules/pubsub`), plus a day of margin; an inbox row pruned earlier would let a late duplicate apply twice |
//! | `tern_outbox`, published rows | 7 days | `RETENTION_OUTBOX` | the record of what was published and its message id, for an incident's questions; unpublished and set-aside rows are never pruned |
//! | `idempotency_keys` | 48 hours | `RETENTION_IDEMPOTENCY_KEYS` | clients retry within minutes; at least 24 h is promised (`docs/events.md`) |
//!
//! Each table is pruned by `DELETE … WHERE <key> IN (SELECT <key> … ORDER BY <time> LIMIT n)`
//! through an index on its time column (migration `0004_retention.sql`): `RETENTION_BATCH_SIZE`
//! rows per statement (1000), at most `RETENTION_MAX_BATCHES` statements per table per call (10).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tern::{ConfigError, Env, Problem};
use tern_db::{Db, DbResultExt};

/// `RETENTION_INBOX`'s default: Pub/Sub's longest message retention (7 days) plus a day.
pub const INBOX_DEFAULT: Duration = Duration::from_secs(8 * 24 * 3600);
/// `RETENTION_OUTBOX`'s default.
pub const OUTBOX_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);
/// `RETENTION_IDEMPOTENCY_KEYS`'s default.
pub const IDEMPOTENCY_KEYS_DEFAULT: Duration = Duration::from_secs(48 * 3600);
/// The shortest idempotency window any setting may choose: the promise to API clients.
pub const IDEMPOTENCY_KEYS_LEAST: Duration = Duration::from_secs(24 * 3600);

/// One table's pruning: what identifies a row, what dates it, which rows may go at all.
struct Table {
    name: &'static str,
    key: &'static str,
    time: &'static str,
    window: Duration,
}

/// The windows and batch sizes; [`Retention::from_env`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `RETENTION_INBOX`.
    pub inbox: Duration,
    /// `RETENTION_OUTBOX`.
    pub outbox: Duration,
    /// `RETENTION_IDEMPOTENCY_KEYS`.
    pub idempotency_keys: Duration,
    /// `RETENTION_BATCH_SIZE`.
    pub batch_size: i64,
    /// `RETENTION_MAX_BATCHES`.
    pub max_batches: u32,
}

impl Retention {
    /// Reads the `RETENTION_*` settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let r = Self {
            inbox: env.or("RETENTION_INBOX", INBOX_DEFAULT)?,
            outbox: env.or("RETENTION_OUTBOX", OUTBOX_DEFAULT)?,
            idempotency_keys: env.or("RETENTION_IDEMPOTENCY_KEYS", IDEMPOTENCY_KEYS_DEFAULT)?,
            batch_size: i64::from(env.or::<u32>("RETENTION_BATCH_SIZE", 1000)?),
            max_batches: env.or("RETENTION_MAX_BATCHES", 10)?,
        };
        if r.idempotency_keys < IDEMPOTENCY_KEYS_LEAST {
            return Err(ConfigError::new(
                "RETENTION_IDEMPOTENCY_KEYS",
                format!(
                    "{:?} is shorter than the 24 h clients are promised",
                    r.idempotency_keys
                ),
            ));
        }
        if r.batch_size == 0 {
            return Err(ConfigError::new(
                "RETENTION_BATCH_SIZE",
                "must be at least 1",
            ));
        }
        Ok(r)
    }

    fn tables(&self) -> [Table; 3] {
        [
            Table {
                name: "tern_inbox",
                key: "ctid",
                time: "processed_at",
                window: self.inbox,
            },
            Table {
                name: "tern_outbox",
                key: "id",
                time: "published_at",
                window: self.outbox,
            },
            Table {
                name: "idempotency_keys",
                key: "key",
                time: "created_at",
                window: self.idempotency_keys,
            },
        ]
    }

    /// Deletes rows older than their windows, batch by batch, until none are left, the batches
    /// run out, or `deadline` passes (no statement runs past it); returns the rows deleted per
    /// table. A failed batch is logged and ends that table's pruning for this run.
    pub async fn prune(&self, db: &Db, deadline: Instant) -> BTreeMap<&'static str, u64> {
        let mut deleted = BTreeMap::new();
        for t in self.tables() {
            let mut n = 0;
            // `ctid = ANY(ARRAY(...))` is a TID scan; a key IN (...) uses the primary key.
            let sql = if t.key == "ctid" {
                format!(
                    "DELETE FROM {name} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {name}
                     WHERE {time} < now() - $1::bigint * interval '1 millisecond'
                     ORDER BY {time} LIMIT $2))",
                    name = t.name,
                    time = t.time
                )
            } else {
                format!(
                    "DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM {name}
                     WHERE {time} < now() - $1::bigint * interval '1 millisecond'
                     ORDER BY {time} LIMIT $2)",
                    name = t.name,
                    key = t.key,
                    time = t.time
                )
            };
            let window = i64::try_from(t.window.as_millis()).unwrap_or(i64::MAX);
            for _ in 0..self.max_batches {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                // A connection per batch, the pool never held for a whole run; no statement
                // runs past the deadline.
                let batch = async {
                    let mut client = db.get().await?;
                    let tx = client.transaction().await.or_problem()?;
                    tx.batch_execute(&format!(
                        "SET LOCAL statement_timeout = {}",
                        left.as_millis().max(1)
                    ))
                    .await
                    .or_problem()?;
                    let stmt = tx.prepare_cached(&sql).await.or_problem()?;
                    let n = tx
                        .execute(&stmt, &[&window, &self.batch_size])
                        .await
                        .or_problem()?;
                    tx.commit().await.or_problem()?;
                    Ok::<_, Problem>(n)
                };
                match batch.await {
                    Ok(batch) => {
                        n += batch;
                        if i64::try_from(batch).unwrap_or(i64::MAX) < self.batch_size {
                            break;
                        }
                    }
                    // Pruning is housekeeping: the next run carries on where this one stopped.
                    Err(p) => {
                        tracing::warn!(
                            table = t.name,
                            error = p.detail().unwrap_or_default(),
                            "pruning stopped"
                        );
                        break;
                    }
                }
            }
            if n > 0 {
                tracing::info!(table = t.name, deleted = n, "pruned");
            }
            deleted.insert(t.name, n);
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let env = |pairs: &[(&str, &str)]| Env::from_pairs(pairs.iter().copied());
        let r = Retention::from_env(&env(&[])).unwrap();
        assert_eq!(r.inbox, INBOX_DEFAULT);
        assert_eq!(r.idempotency_keys, IDEMPOTENCY_KEYS_DEFAULT);
        assert_eq!(
            Retention::from_env(&env(&[("RETENTION_IDEMPOTENCY_KEYS", "12h")]))
                .unwrap_err()
                .var,
            "RETENTION_IDEMPOTENCY_KEYS"
        );
        assert_eq!(
            Retention::from_env(&env(&[("RETENTION_BATCH_SIZE", "0")]))
                .unwrap_err()
                .var,
            "RETENTION_BATCH_SIZE"
        );
        assert_eq!(
            Retention::from_env(&env(&[("RETENTION_INBOX", "soon")]))
                .unwrap_err()
                .var,
            "RETENTION_INBOX"
        );
    }
}
