//! The transactional outbox.
//!
//! A handler writes its rows and stages its outgoing events in one call, [`Outbox::write`]: the
//! work runs in one transaction ([`OutboxTx`], which is a [`Transaction`] for queries and stages
//! events with [`OutboxTx::stage`]); the commit makes rows and events durable together, and the
//! staged events are then published at once in the background (best effort). Whatever that
//! misses — Pub/Sub down, the process killed — the relay publishes: [`Outbox::flush`], behind the
//! `outbox-relay` function, which a scheduler calls.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` inside a transaction that stays open while they
//! are published and is committed with `published_at` set, so any number of relays and
//! after-commit publishers can run at once and each row is published by exactly one of them.
//! (A process that dies after Pub/Sub accepted a message but before its commit leaves the row
//! pending and it is published again: delivery is at-least-once, and consumers deduplicate on
//! the event id.)

use crate::publisher::{EventPublisher, OutgoingEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::ops::Deref;
use tern::{Context, Problem};
use tern_db::{Db, DbResultExt, Transaction};

/// A transaction whose staged events are published after it commits; see [`Outbox::write`].
/// Dereferences to the [`Transaction`], for the rows.
#[derive(Debug)]
pub struct OutboxTx<'c> {
    tx: Transaction<'c>,
    outbox: Outbox,
    staged: Vec<i64>,
    /// A stage failed: the transaction is aborted, and its COMMIT would silently roll back.
    failed: bool,
}

impl<'c> Deref for OutboxTx<'c> {
    type Target = Transaction<'c>;
    fn deref(&self) -> &Transaction<'c> {
        &self.tx
    }
}

impl OutboxTx<'_> {
    /// Stages an event in this transaction: it is published only if the transaction commits.
    pub async fn stage(
        &mut self,
        topic: &str,
        ty: &str,
        subject: Option<&str>,
        data: &serde_json::Value,
    ) -> Result<(), Problem> {
        match self.outbox.insert(&self.tx, topic, ty, subject, data).await {
            Ok(id) => {
                self.staged.push(id);
                Ok(())
            }
            Err(p) => {
                self.failed = true;
                Err(p)
            }
        }
    }
}

/// Stages and publishes events.
#[derive(Clone, Debug)]
pub struct Outbox {
    db: Db,
    publisher: EventPublisher,
    source: String,
    ctx: Option<Context>,
}

/// What a flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// Rows published and marked sent.
    pub published: u64,
    /// Rows whose publish failed (left pending, attempts counted).
    pub failed: u64,
}

impl Outbox {
    /// An outbox writing through `db` and publishing with `publisher`. `source` becomes the
    /// CloudEvents `source` of every event (`//tern/<service>`).
    pub fn new(db: Db, publisher: EventPublisher, source: String, ctx: Option<Context>) -> Self {
        Self {
            db,
            publisher,
            source,
            ctx,
        }
    }

    /// Runs `work` in one transaction, commits it, and publishes the events it staged soon
    /// after. An error from `work` (or from the commit) rolls everything back and publishes
    /// nothing; so does a stage that failed even if `work` carried on and returned `Ok`.
    /// `E` is the caller's error type; database failures reach it as a [`Problem`]
    /// (503 with `Retry-After`).
    ///
    /// ```no_run
    /// # use tern::Problem;
    /// # use tern_db::DbResultExt;
    /// # async fn example(outbox: &tern_events::Outbox, id: &str) -> Result<(), Problem> {
    /// let data = serde_json::json!({ "order_id": id });
    /// outbox
    ///     .write(async |tx| {
    ///         tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&id]).await.or_problem()?;
    ///         tx.stage("orders", "com.example.order.created", Some(id), &data).await?;
    ///         Ok::<_, Problem>(())
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn write<T, E>(
        &self,
        work: impl AsyncFnOnce(&mut OutboxTx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<Problem>,
    {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await.or_problem()?;
        let mut otx = OutboxTx {
            tx,
            outbox: self.clone(),
            staged: Vec::new(),
            failed: false,
        };
        let value = work(&mut otx).await?;
        let OutboxTx {
            tx, staged, failed, ..
        } = otx;
        if failed {
            // `work` went on after a failed stage: PostgreSQL would turn the COMMIT into a
            // ROLLBACK and report success. Nothing was written; say so.
            return Err(Problem::internal()
                .with_detail("an event could not be staged; nothing was written")
                .into());
        }
        tx.commit().await.or_problem()?;
        if !staged.is_empty() {
            self.publish_soon(staged);
        }
        Ok(value)
    }

    /// Inserts one outbox row in `tx`; returns its id.
    async fn insert(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        ty: &str,
        subject: Option<&str>,
        data: &serde_json::Value,
    ) -> Result<i64, Problem> {
        let event_id = uuid::Uuid::now_v7().to_string();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO tern_outbox (topic, event_id, event_type, source, subject, data)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .await
            .or_problem()?;
        let row = tx
            .query_one(
                &stmt,
                &[&topic, &event_id, &ty, &self.source, &subject, data],
            )
            .await
            .or_problem()?;
        Ok(row.get(0))
    }

    /// Publishes the given committed rows in the background. The runtime waits for it at shutdown.
    fn publish_soon(&self, ids: Vec<i64>) {
        let this = self.clone();
        let task = async move {
            if let Err(e) = this.publish_batch(Some(&ids), ids.len() as i64).await {
                tracing::warn!(error = %e, "after-commit publish failed; the relay will retry");
            }
        };
        match &self.ctx {
            Some(ctx) => ctx.spawn(task),
            None => {
                tokio::spawn(task);
            }
        }
    }

    /// Publishes pending rows in batches of `batch_size` until none are left, a publish fails,
    /// or `max_batches` batches have run.
    pub async fn flush(&self, batch_size: i64, max_batches: u32) -> Result<FlushReport, Problem> {
        let mut total = FlushReport::default();
        for _ in 0..max_batches {
            let (report, claimed) = self.publish_batch(None, batch_size).await?;
            total.published += report.published;
            total.failed += report.failed;
            if report.failed > 0 || (claimed as i64) < batch_size {
                break;
            }
        }
        Ok(total)
    }

    /// Rows not yet published.
    pub async fn pending(&self) -> Result<i64, Problem> {
        let client = self.db.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM tern_outbox WHERE published_at IS NULL",
                &[],
            )
            .await
            .or_problem()?;
        Ok(row.get(0))
    }

    async fn publish_batch(
        &self,
        only: Option<&[i64]>,
        limit: i64,
    ) -> Result<(FlushReport, usize), Problem> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await.or_problem()?;
        let rows = match only {
            Some(ids) => {
                let stmt = tx
                    .prepare_cached(
                        "SELECT id, topic, event_id, event_type, source, subject, data, created_at
                         FROM tern_outbox WHERE published_at IS NULL AND id = ANY($1)
                         ORDER BY id FOR UPDATE SKIP LOCKED",
                    )
                    .await
                    .or_problem()?;
                tx.query(&stmt, &[&ids]).await.or_problem()?
            }
            None => {
                let stmt = tx
                    .prepare_cached(
                        "SELECT id, topic, event_id, event_type, source, subject, data, created_at
                         FROM tern_outbox WHERE published_at IS NULL
                         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    )
                    .await
                    .or_problem()?;
                tx.query(&stmt, &[&limit]).await.or_problem()?
            }
        };
        let claimed = rows.len();
        let sends = rows.iter().map(|row| {
            let id: i64 = row.get(0);
            let topic: String = row.get(1);
            let event = OutgoingEvent {
                id: row.get(2),
                ty: row.get(3),
                source: row.get(4),
                subject: row.get(5),
                data: row.get(6),
                time: row.get::<_, DateTime<Utc>>(7),
            };
            let publisher = self.publisher.clone();
            async move { (id, publisher.publish(&topic, &event).await) }
        });
        let results = futures::future::join_all(sends).await;
        let mut report = FlushReport::default();
        let sent = tx
            .prepare_cached(
                "UPDATE tern_outbox SET published_at = now(), message_id = $2, attempts = attempts + 1,
                 last_error = NULL WHERE id = $1",
            )
            .await
            .or_problem()?;
        let failed = tx
            .prepare_cached(
                "UPDATE tern_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
            )
            .await
            .or_problem()?;
        for (id, result) in results {
            match result {
                Ok(message_id) => {
                    tx.execute(&sent, &[&id, &message_id]).await.or_problem()?;
                    report.published += 1;
                }
                Err(e) => {
                    tx.execute(&failed, &[&id, &e.to_string()])
                        .await
                        .or_problem()?;
                    report.failed += 1;
                }
            }
        }
        tx.commit().await.or_problem()?;
        if report.published > 0 || report.failed > 0 {
            tracing::info!(
                published = report.published,
                failed = report.failed,
                "outbox batch"
            );
        }
        Ok((report, claimed))
    }
}
