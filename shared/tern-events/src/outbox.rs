//! The transactional outbox.
//!
//! A handler writes its rows and stages its outgoing events in one call, [`Outbox::write`]: the
//! work runs in one transaction ([`OutboxTx`], which is a [`Transaction`] for queries and stages
//! events with [`OutboxTx::stage`]); the commit makes rows and events durable together, and the
//! staged events are then published at once in the background. Whatever that misses — Pub/Sub
//! down or hanging, the process killed, too many publishes already in flight — the relay
//! publishes: [`Outbox::flush`], behind the `outbox-relay` function, which a scheduler calls.
//!
//! Publishing never holds a database connection or an open transaction while it waits on
//! Pub/Sub (issue 13). A row is **leased** (`leased_until`) by whoever publishes it, in a short
//! statement; the publish runs with no connection held; a second short statement marks the
//! outcome. After a commit, that mark is not one per request: the instance's **marker** task
//! records the outcomes of every publish that ended in the last `MARK_LINGER` in one statement,
//! so a request costs one transaction (its own) and the marks a fraction of one. The writer leases its rows in the transaction that inserts them, when one of the
//! instance's `OUTBOX_MAX_IN_FLIGHT` publish slots is free, and publishes from the values in
//! hand; the relay leases due rows with `FOR UPDATE SKIP LOCKED`. A lease outlives the longest
//! publish, so each row is published by one of them; if the process dies after Pub/Sub accepted
//! a message but before the mark, the lease runs out and the row is published again: delivery
//! is at-least-once, and consumers deduplicate on the event id.
//!
//! A failed row waits `OUTBOX_RETRY_BACKOFF`, doubling per attempt up to
//! `OUTBOX_RETRY_BACKOFF_MAX`, before it is due again, so it never blocks the rows behind it. A
//! failure that Pub/Sub says is the message's own (topic not found, permission denied, invalid
//! or too large: [`PublishError::permanent`]) is a strike; after `OUTBOX_SET_ASIDE_AFTER`
//! strikes the row is **set aside** (`set_aside_at`): logged, counted by the relay, left in the
//! table for an operator (`docs/operations.md`). A timeout or an unreachable Pub/Sub is an
//! outage, never a strike: it delays events, and loses none.

use crate::publisher::{EventPublisher, OutgoingEvent, PublishError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern::{ConfigError, Context, Env, Problem};
use tern_db::{Db, DbResultExt, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// How long the marker gathers the outcomes of after-commit publishes, from the first one it
/// receives, before it records them in one statement (which then waits for a pooled connection
/// like any other). Only the publish tasks wait for the marks; the slots are free already.
const MARK_LINGER: Duration = Duration::from_millis(10);
/// The most outcomes one marker statement records.
const MARK_MAX_ROWS: usize = 1024;
/// Leased rows whose marks may wait in the marker's queue. Past it (the database too slow to
/// take the marks), writes lease nothing and leave their rows to the relay, as when no publish
/// slot is free: a row leased is a row whose mark is bounded, so its lease outlives its mark.
const MARK_BACKLOG_MAX: usize = 4 * MARK_MAX_ROWS;

/// A transaction whose staged events are published after it commits; see [`Outbox::write`].
/// Dereferences to the [`Transaction`], for the rows.
#[derive(Debug)]
pub struct OutboxTx<'c> {
    tx: Transaction<'c>,
    outbox: Outbox,
    /// The lease token of the rows this transaction leases.
    token: String,
    staged: Vec<Staged>,
    /// A stage failed: the transaction is aborted, and its COMMIT would silently roll back.
    failed: bool,
    /// Stages begun ([`OutboxTx::stage_begin`]) and not yet recorded ([`OutboxTx::staged`]).
    begun: AtomicUsize,
}

/// A staged row this instance leased at insertion, with what it takes to publish it.
#[derive(Debug)]
struct Staged {
    id: i64,
    topic: String,
    event: OutgoingEvent,
    /// When the row was inserted: its lease runs from then.
    at: Instant,
    /// One of the instance's publish slots, held until the publish has ended.
    _slot: OwnedSemaphorePermit,
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
        let begun = self.stage_begin(topic, ty, subject, data).await;
        self.staged(begun)
    }

    /// The first half of [`OutboxTx::stage`], to send the event's insert together with other
    /// statements of the transaction: await it beside them (`futures::join!`; PostgreSQL runs
    /// them in the order sent, and they share round trips), then hand its result to
    /// [`OutboxTx::staged`]. A stage begun and not finished keeps the transaction from
    /// committing: [`Outbox::write`] answers 500 and writes nothing.
    pub fn stage_begin<'a>(
        &'a self,
        topic: &'a str,
        ty: &'a str,
        subject: Option<&'a str>,
        data: &'a serde_json::Value,
    ) -> impl Future<Output = Result<BegunStage, Problem>> + Send + 'a {
        self.begun.fetch_add(1, Ordering::SeqCst);
        async move {
            // A free slot: this instance publishes the row right after the commit, so it
            // leases it now. None free (Pub/Sub slow or hanging): the row is left to the relay.
            let backlog = self.outbox.unmarked.load(Ordering::Relaxed);
            let slot = if backlog < MARK_BACKLOG_MAX {
                self.outbox.slots.clone().try_acquire_owned().ok()
            } else {
                None
            };
            let at = Instant::now();
            let token = slot.as_ref().map(|_| self.token.as_str());
            let (id, event) = self
                .outbox
                .insert(&self.tx, topic, ty, subject, data, token)
                .await?;
            Ok(BegunStage {
                id,
                topic: topic.to_owned(),
                event,
                at,
                slot,
            })
        }
    }

    /// The second half of [`OutboxTx::stage`]: records a stage begun with
    /// [`OutboxTx::stage_begin`]; its error, if it failed (the transaction is then aborted and
    /// will not commit).
    pub fn staged(&mut self, begun: Result<BegunStage, Problem>) -> Result<(), Problem> {
        // Saturating: a result handed in twice, or from another transaction, must not wrap
        // the count (that write then fails anyway: its own stage stays unrecorded).
        let _ = self
            .begun
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match begun {
            Ok(b) => {
                if let Some(slot) = b.slot {
                    self.staged.push(Staged {
                        id: b.id,
                        topic: b.topic,
                        event: b.event,
                        at: b.at,
                        _slot: slot,
                    });
                }
                Ok(())
            }
            Err(p) => {
                self.failed = true;
                Err(p)
            }
        }
    }
}

/// An event's outbox row inserted by [`OutboxTx::stage_begin`], for [`OutboxTx::staged`].
#[derive(Debug)]
pub struct BegunStage {
    id: i64,
    topic: String,
    event: OutgoingEvent,
    at: Instant,
    slot: Option<OwnedSemaphorePermit>,
}

/// How the outbox publishes and retries. [`OutboxPolicy::from_env`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxPolicy {
    /// `OUTBOX_MAX_IN_FLIGHT` (default 64): after-commit publishes one instance runs at once;
    /// rows staged beyond it wait for the relay.
    pub max_in_flight: usize,
    /// `OUTBOX_RETRY_BACKOFF` (default 2s): how long a failed row waits before its first retry;
    /// doubled after each further failure.
    pub backoff: Duration,
    /// `OUTBOX_RETRY_BACKOFF_MAX` (default 10m): the longest wait between two attempts.
    pub backoff_max: Duration,
    /// `OUTBOX_SET_ASIDE_AFTER` (default 5): permanent failures after which a row is set aside.
    pub set_aside_after: u32,
    /// `OUTBOX_SET_ASIDE_MIN_AGE` (default 1h): no row younger is set aside, so that a topic
    /// created or a permission granted minutes after a deploy does not park its first events.
    pub set_aside_min_age: Duration,
    /// How long a claim holds a row: twice the longest publish plus 10 s, derived from
    /// `PUBSUB_PUBLISH_TIMEOUT`.
    pub lease: Duration,
    /// The longest one publish can take (`PUBSUB_PUBLISH_TIMEOUT` plus the 1 s backstop).
    pub publish_limit: Duration,
}

impl OutboxPolicy {
    /// The defaults for a publish timeout of `publish_timeout`.
    pub fn for_publish_timeout(publish_timeout: Duration) -> Self {
        let publish_limit = publish_timeout + Duration::from_secs(1);
        Self {
            max_in_flight: 64,
            backoff: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            set_aside_after: 5,
            set_aside_min_age: Duration::from_secs(3600),
            lease: publish_limit * 2 + Duration::from_secs(10),
            publish_limit,
        }
    }

    /// Reads the `OUTBOX_*` settings over the defaults for `publish_timeout`.
    pub fn from_env(env: &Env, publish_timeout: Duration) -> Result<Self, ConfigError> {
        let d = Self::for_publish_timeout(publish_timeout);
        let p = Self {
            max_in_flight: env.or("OUTBOX_MAX_IN_FLIGHT", d.max_in_flight)?,
            backoff: env.or("OUTBOX_RETRY_BACKOFF", d.backoff)?,
            backoff_max: env.or("OUTBOX_RETRY_BACKOFF_MAX", d.backoff_max)?,
            set_aside_after: env.or("OUTBOX_SET_ASIDE_AFTER", d.set_aside_after)?,
            set_aside_min_age: env.or("OUTBOX_SET_ASIDE_MIN_AGE", d.set_aside_min_age)?,
            ..d
        };
        if p.max_in_flight == 0 {
            return Err(ConfigError::new(
                "OUTBOX_MAX_IN_FLIGHT",
                "must be at least 1",
            ));
        }
        if p.backoff.is_zero() {
            return Err(ConfigError::new("OUTBOX_RETRY_BACKOFF", "must be above 0"));
        }
        if p.backoff_max < p.backoff {
            return Err(ConfigError::new(
                "OUTBOX_RETRY_BACKOFF_MAX",
                format!(
                    "{:?} is shorter than OUTBOX_RETRY_BACKOFF ({:?})",
                    p.backoff_max, p.backoff
                ),
            ));
        }
        if p.set_aside_after == 0 {
            return Err(ConfigError::new(
                "OUTBOX_SET_ASIDE_AFTER",
                "must be at least 1",
            ));
        }
        Ok(p)
    }

    /// The longest one batch of a flush takes: its publishes plus marking them (a pool wait
    /// and a connect, at most a few seconds).
    pub fn batch_limit(&self) -> Duration {
        self.publish_limit + Duration::from_secs(4)
    }
}

/// Stages and publishes events.
#[derive(Clone, Debug)]
pub struct Outbox {
    db: Db,
    publisher: EventPublisher,
    source: String,
    ctx: Option<Context>,
    policy: OutboxPolicy,
    slots: Arc<Semaphore>,
    /// The instance's marker task, started with the first after-commit publish (and again if
    /// it ever ended).
    marker: Arc<Mutex<Option<mpsc::UnboundedSender<MarkJob>>>>,
    /// Rows waiting in the marker's queue or being marked ([`MARK_BACKLOG_MAX`]).
    unmarked: Arc<AtomicUsize>,
}

/// The outcomes of one after-commit publish, for the marker; `done` answers once they are
/// recorded (or could not be).
#[derive(Debug)]
struct MarkJob {
    outcomes: Vec<Outcome>,
    token: String,
    done: oneshot::Sender<()>,
}

/// What the marker (and a flush) needs to record outcomes: no publisher, no slots.
#[derive(Clone, Debug)]
struct Marks {
    db: Db,
    policy: OutboxPolicy,
    unmarked: Arc<AtomicUsize>,
}

/// What a flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// Rows published and marked sent.
    pub published: u64,
    /// Rows whose publish failed (pending again after their backoff, attempts counted).
    pub failed: u64,
    /// Of those, the rows that failed because Pub/Sub did not answer or was unavailable: an
    /// outage, not the rows' fault.
    pub unavailable: u64,
    /// Rows set aside by this flush (their failures were permanent, `OUTBOX_SET_ASIDE_AFTER`
    /// times).
    pub set_aside: u64,
    /// Whether the flush stopped before the pending rows ran out because its time was up.
    pub out_of_time: bool,
}

/// What the table holds, for the relay's answer and the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    /// Rows still to publish (set-aside rows excluded).
    pub pending: i64,
    /// Rows set aside, waiting for an operator.
    pub set_aside: i64,
}

/// A claimed row's outcome.
type Outcome = (i64, Result<String, PublishError>);

impl Outbox {
    /// An outbox writing through `db` and publishing with `publisher`. `source` becomes the
    /// CloudEvents `source` of every event (`//tern/<service>`).
    pub fn new(
        db: Db,
        publisher: EventPublisher,
        source: String,
        ctx: Option<Context>,
        policy: OutboxPolicy,
    ) -> Self {
        Self {
            db,
            publisher,
            source,
            ctx,
            slots: Arc::new(Semaphore::new(policy.max_in_flight)),
            policy,
            marker: Arc::new(Mutex::new(None)),
            unmarked: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn marks(&self) -> Marks {
        Marks {
            db: self.db.clone(),
            policy: self.policy,
            unmarked: self.unmarked.clone(),
        }
    }

    /// Hands `outcomes` to the instance's marker and waits until they are recorded. The marker
    /// runs until the last clone of this outbox is gone.
    async fn mark_soon(&self, outcomes: Vec<Outcome>, token: String) {
        let rows = outcomes.len();
        let marker = {
            let mut slot = self.marker.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(tx) if !tx.is_closed() => tx.clone(),
                ended => {
                    if ended.is_some() {
                        tracing::warn!("the outbox marker had ended; starting it again");
                    }
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(run_marker(self.marks(), rx));
                    *slot = Some(tx.clone());
                    tx
                }
            }
        };
        let (done, recorded) = oneshot::channel();
        let job = MarkJob {
            outcomes,
            token,
            done,
        };
        self.unmarked.fetch_add(rows, Ordering::Relaxed);
        if marker.send(job).is_ok() {
            // The marker answers once the rows are recorded or could not be; if it ends first
            // (the runtime is ending), the relay publishes these rows again once their lease
            // ends.
            let _ = recorded.await;
        } else {
            self.unmarked.fetch_sub(rows, Ordering::Relaxed);
        }
    }

    /// The policy it runs with.
    pub fn policy(&self) -> &OutboxPolicy {
        &self.policy
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
            token: uuid::Uuid::new_v4().to_string(),
            staged: Vec::new(),
            failed: false,
            begun: AtomicUsize::new(0),
        };
        let value = work(&mut otx).await?;
        let OutboxTx {
            tx,
            staged,
            failed,
            token,
            begun,
            ..
        } = otx;
        if begun.into_inner() > 0 {
            // A stage begun whose result was never recorded may have failed, aborting the
            // transaction, or may have inserted a row nobody publishes now. Nothing is written.
            return Err(Problem::internal()
                .with_detail("an event's staging was not finished; nothing was written")
                .into());
        }
        if failed {
            // `work` went on after a failed stage: PostgreSQL would turn the COMMIT into a
            // ROLLBACK and report success. Nothing was written; say so.
            return Err(Problem::internal()
                .with_detail("an event could not be staged; nothing was written")
                .into());
        }
        tx.commit().await.or_problem()?;
        if !staged.is_empty() {
            self.publish_soon(staged, token);
        }
        Ok(value)
    }

    /// Inserts one outbox row in `tx`, leased with `token` when given; returns its id and the
    /// event as it will be published. The lease runs from the insert (`clock_timestamp()`), not
    /// from the transaction's start.
    async fn insert(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        ty: &str,
        subject: Option<&str>,
        data: &serde_json::Value,
        token: Option<&str>,
    ) -> Result<(i64, OutgoingEvent), Problem> {
        let event_id = uuid::Uuid::now_v7().to_string();
        let lease_ms = token.map(|_| millis(self.policy.lease));
        // The request's trace goes on with the event (docs/events.md, "Tracing").
        let traceparent = tern::platform::current_traceparent();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO tern_outbox (topic, event_id, event_type, source, subject, data,
                                          leased_until, lease_token, traceparent)
                 VALUES ($1, $2, $3, $4, $5, $6,
                         clock_timestamp() + $7::bigint * interval '1 millisecond', $8, $9)
                 RETURNING id, created_at",
            )
            .await
            .or_problem()?;
        let row = tx
            .query_one(
                &stmt,
                &[
                    &topic,
                    &event_id,
                    &ty,
                    &self.source,
                    &subject,
                    data,
                    &lease_ms,
                    &token,
                    &traceparent,
                ],
            )
            .await
            .or_problem()?;
        let event = OutgoingEvent {
            id: event_id,
            source: self.source.clone(),
            ty: ty.to_owned(),
            subject: subject.map(str::to_owned),
            time: row.get::<_, DateTime<Utc>>(1),
            data: data.clone(),
            traceparent,
        };
        Ok((row.get(0), event))
    }

    /// Publishes the given committed, leased rows in the background, from the values in hand;
    /// then marks them. The runtime waits for it at shutdown.
    fn publish_soon(&self, staged: Vec<Staged>, token: String) {
        let this = self.clone();
        let task = async move {
            // A row whose lease has too little left for a publish and its mark (a transaction
            // that ran long after staging) is left to the relay, which claims it once the lease
            // ends: publishing it here could overlap the relay's.
            let room = this.policy.publish_limit + Duration::from_secs(4);
            let sends = staged
                .iter()
                .filter(|s| s.at.elapsed() + room <= this.policy.lease)
                .map(|s| async { (s.id, this.publisher.publish(&s.topic, &s.event).await) });
            let outcomes = futures::future::join_all(sends).await;
            // The slots bound the publishes in flight; the marks wait in the marker's queue,
            // which one statement empties, so the next writes need not wait for them.
            drop(staged);
            this.mark_soon(outcomes, token).await;
        };
        match &self.ctx {
            Some(ctx) => drop(ctx.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Publishes due rows in batches of `batch_size` until none are left, `max_batches`
    /// batches have run, a whole batch failed (Pub/Sub is down: the rest would fail too), or
    /// `deadline` is too close for one more batch ([`OutboxPolicy::batch_limit`]). A row that
    /// fails is due again after its backoff, so it never stops the rows behind it.
    pub async fn flush(
        &self,
        batch_size: i64,
        max_batches: u32,
        deadline: Option<Instant>,
    ) -> Result<FlushReport, Problem> {
        let mut total = FlushReport::default();
        for _ in 0..max_batches {
            if deadline.is_some_and(|d| Instant::now() + self.policy.batch_limit() > d) {
                total.out_of_time = true;
                break;
            }
            let token = uuid::Uuid::new_v4().to_string();
            let claimed = self.claim(batch_size, &token).await?;
            let n = claimed.len();
            if n == 0 {
                break;
            }
            let sends = claimed.iter().map(|(id, topic, event)| async move {
                (*id, self.publisher.publish(topic, event).await)
            });
            let outcomes = futures::future::join_all(sends).await;
            let rows: Vec<_> = outcomes.iter().map(|o| (o, token.as_str())).collect();
            let report = self.marks().mark(&rows).await?;
            if report.published > 0 || report.failed > 0 {
                tracing::info!(
                    published = report.published,
                    failed = report.failed,
                    set_aside = report.set_aside,
                    "outbox batch"
                );
            }
            total.published += report.published;
            total.failed += report.failed;
            total.unavailable += report.unavailable;
            total.set_aside += report.set_aside;
            if report.published == 0 || (n as i64) < batch_size {
                break;
            }
        }
        Ok(total)
    }

    /// Leases up to `limit` due rows, oldest first, in one short statement.
    async fn claim(
        &self,
        limit: i64,
        token: &str,
    ) -> Result<Vec<(i64, String, OutgoingEvent)>, Problem> {
        let client = self.db.get().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE tern_outbox o
                 SET leased_until = clock_timestamp() + $2::bigint * interval '1 millisecond',
                     lease_token = $3
                 FROM (SELECT id FROM tern_outbox
                       WHERE published_at IS NULL AND set_aside_at IS NULL
                         AND next_attempt_at <= now()
                         AND (leased_until IS NULL OR leased_until <= now())
                       ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) due
                 WHERE o.id = due.id
                 RETURNING o.id, o.topic, o.event_id, o.event_type, o.source, o.subject, o.data,
                           o.created_at, o.traceparent",
            )
            .await
            .or_problem()?;
        let rows = client
            .query(&stmt, &[&limit, &millis(self.policy.lease), &token])
            .await
            .or_problem()?;
        let mut claimed: Vec<_> = rows
            .iter()
            .map(|row| {
                let event = OutgoingEvent {
                    id: row.get(2),
                    ty: row.get(3),
                    source: row.get(4),
                    subject: row.get(5),
                    data: row.get(6),
                    time: row.get::<_, DateTime<Utc>>(7),
                    traceparent: row.get(8),
                };
                (row.get::<_, i64>(0), row.get::<_, String>(1), event)
            })
            .collect();
        claimed.sort_by_key(|(id, _, _)| *id);
        Ok(claimed)
    }

    /// Rows still to publish, and rows set aside.
    pub async fn counts(&self) -> Result<OutboxCounts, Problem> {
        let client = self.db.get().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM tern_outbox
                         WHERE published_at IS NULL AND set_aside_at IS NULL),
                        (SELECT count(*) FROM tern_outbox
                         WHERE published_at IS NULL AND set_aside_at IS NOT NULL)",
                &[],
            )
            .await
            .or_problem()?;
        Ok(OutboxCounts {
            pending: row.get(0),
            set_aside: row.get(1),
        })
    }

    /// Rows not yet published (set-aside rows excluded).
    pub async fn pending(&self) -> Result<i64, Problem> {
        Ok(self.counts().await?.pending)
    }
}

impl Marks {
    /// Records the outcomes of rows, each with the token it was leased with, and releases
    /// them: published rows are marked (whoever holds them now: Pub/Sub has the
    /// message); failed ones, only while their lease still holds them, get their backoff, a strike when the failure was permanent, and
    /// are set aside at `OUTBOX_SET_ASIDE_AFTER` strikes once older than
    /// `OUTBOX_SET_ASIDE_MIN_AGE`. Two short statements.
    async fn mark(&self, rows: &[(&Outcome, &str)]) -> Result<FlushReport, Problem> {
        let mut report = FlushReport::default();
        let (mut ok_ids, mut message_ids) = (Vec::new(), Vec::new());
        let (mut bad_ids, mut errors, mut strikes) = (Vec::new(), Vec::new(), Vec::new());
        let mut bad_tokens = Vec::new();
        for ((id, outcome), token) in rows {
            match outcome {
                Ok(m) => {
                    ok_ids.push(*id);
                    message_ids.push(m.clone());
                }
                Err(e) => {
                    bad_ids.push(*id);
                    bad_tokens.push(*token);
                    errors.push(e.to_string());
                    strikes.push(i32::from(e.permanent));
                    report.unavailable += u64::from(!e.permanent);
                }
            }
        }
        let client = self.db.get().await?;
        if !ok_ids.is_empty() {
            let stmt = client
                .prepare_cached(
                    "UPDATE tern_outbox o SET published_at = now(), message_id = m.message_id,
                            attempts = o.attempts + 1, last_error = NULL, leased_until = NULL,
                            lease_token = NULL
                     FROM unnest($1::bigint[], $2::text[]) AS m(id, message_id)
                     WHERE o.id = m.id AND o.published_at IS NULL",
                )
                .await
                .or_problem()?;
            client
                .execute(&stmt, &[&ok_ids, &message_ids])
                .await
                .or_problem()?;
            report.published = ok_ids.len() as u64;
        }
        if !bad_ids.is_empty() {
            let stmt = client
                .prepare_cached(
                    "UPDATE tern_outbox o SET attempts = o.attempts + 1, last_error = f.error,
                            leased_until = NULL, lease_token = NULL,
                            strikes = o.strikes + f.strike,
                            next_attempt_at = now() + least($4::float8 * power(2, least(o.attempts, 30)),
                                                            $5::float8) * interval '1 millisecond',
                            set_aside_at = CASE WHEN o.strikes + f.strike >= $3
                                                 AND o.created_at <= now() - $7::bigint * interval '1 millisecond'
                                                THEN now() END
                     FROM unnest($1::bigint[], $2::text[], $6::int[], $8::text[])
                          AS f(id, error, strike, token)
                     WHERE o.id = f.id AND o.published_at IS NULL AND o.lease_token = f.token
                     RETURNING o.id, o.topic, o.event_id, o.attempts, o.set_aside_at IS NOT NULL",
                )
                .await
                .or_problem()?;
            let limit = i32::try_from(self.policy.set_aside_after).unwrap_or(i32::MAX);
            let rows = client
                .query(
                    &stmt,
                    &[
                        &bad_ids,
                        &errors,
                        &limit,
                        &(millis(self.policy.backoff) as f64),
                        &(millis(self.policy.backoff_max) as f64),
                        &strikes,
                        &millis(self.policy.set_aside_min_age),
                        &bad_tokens,
                    ],
                )
                .await
                .or_problem()?;
            report.failed = bad_ids.len() as u64;
            for row in rows.iter().filter(|r| r.get::<_, bool>(4)) {
                report.set_aside += 1;
                let id: i64 = row.get(0);
                let error = bad_ids
                    .iter()
                    .position(|b| *b == id)
                    .map(|i| errors[i].as_str())
                    .unwrap_or_default();
                tracing::error!(
                    outbox_id = id,
                    topic = row.get::<_, String>(1),
                    event_id = row.get::<_, String>(2),
                    attempts = row.get::<_, i32>(3),
                    error,
                    "outbox row set aside: Pub/Sub keeps refusing it (docs/operations.md, \"Set-aside outbox rows\")"
                );
            }
        }
        Ok(report)
    }
}

/// The marker: gathers the outcomes of after-commit publishes for `MARK_LINGER` after the
/// first one arrives, records them in one statement of each kind, and answers each job. Ends
/// when every outbox that could send it a job is gone.
async fn run_marker(marks: Marks, mut jobs: mpsc::UnboundedReceiver<MarkJob>) {
    let mut batch = Vec::new();
    while let Some(first) = jobs.recv().await {
        let mut rows = first.outcomes.len();
        batch.push(first);
        let until = tokio::time::Instant::now() + MARK_LINGER;
        while rows < MARK_MAX_ROWS {
            match tokio::time::timeout_at(until, jobs.recv()).await {
                Ok(Some(job)) => {
                    rows += job.outcomes.len();
                    batch.push(job);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let outcomes: Vec<(&Outcome, &str)> = batch
            .iter()
            .flat_map(|j| j.outcomes.iter().map(|o| (o, j.token.as_str())))
            .collect();
        match marks.mark(&outcomes).await {
            Ok(report) if report.failed > 0 => tracing::info!(
                published = report.published,
                failed = report.failed,
                set_aside = report.set_aside,
                "outbox batch"
            ),
            Ok(report) => tracing::debug!(published = report.published, "outbox batch"),
            Err(p) => tracing::warn!(
                error = p.detail().unwrap_or_default(),
                rows,
                "after-commit publishes could not all be recorded; the relay publishes the unmarked rows again once their lease ends"
            ),
        }
        marks.unmarked.fetch_sub(rows, Ordering::Relaxed);
        for job in batch.drain(..) {
            let _ = job.done.send(());
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_settings_are_checked() {
        let env = |pairs: &[(&str, &str)]| Env::from_pairs(pairs.iter().copied());
        let five = Duration::from_secs(5);
        let p = OutboxPolicy::from_env(&env(&[]), five).unwrap();
        assert_eq!(p, OutboxPolicy::for_publish_timeout(five));
        assert_eq!(p.publish_limit, Duration::from_secs(6));
        assert_eq!(p.lease, Duration::from_secs(22));
        for (var, value) in [
            ("OUTBOX_MAX_IN_FLIGHT", "0"),
            ("OUTBOX_RETRY_BACKOFF", "0s"),
            ("OUTBOX_RETRY_BACKOFF_MAX", "1s"),
            ("OUTBOX_SET_ASIDE_AFTER", "0"),
            ("OUTBOX_SET_ASIDE_AFTER", "many"),
        ] {
            assert_eq!(
                OutboxPolicy::from_env(&env(&[(var, value)]), five)
                    .unwrap_err()
                    .var,
                var,
                "{var}={value}"
            );
        }
    }
}
