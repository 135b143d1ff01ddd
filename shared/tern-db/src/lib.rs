//! # tern-db: the pooled PostgreSQL library
//!
//! [`Db::connect`] builds a deadpool pool over tokio-postgres from the environment
//! ([`DbConfig`]), registers it with the runtime (readiness depends on it; it closes at
//! shutdown) and returns a cheap handle. Connections open lazily, so a function starts in
//! milliseconds even when the database is down; it is simply not ready.
//!
//! ```no_run
//! # async fn handler(db: tern_db::Db) -> Result<String, tern::Problem> {
//! use tern_db::DbResultExt;
//! let client = db.get().await?; // 503 + Retry-After when the database cannot serve
//! let row = client
//!     .query_one(&client.prepare_cached("SELECT 'ok'::text").await.or_problem()?, &[])
//!     .await
//!     .or_problem()?;
//! Ok(row.get(0))
//! # }
//! ```
//!
//! Every failure to reach the database — refused, timed out, pool exhausted, connection lost
//! mid-query — becomes a 503 problem with `Retry-After` within `DB_WAIT_TIMEOUT` +
//! `DB_CONNECT_TIMEOUT`; broken connections are dropped and replaced when the database returns.

pub mod config;
mod iam;
mod metrics;
pub mod migrate;
mod reads;
mod stall;
mod tls;

pub use config::{DbAuth, DbConfig, SslMode};
pub use deadpool_postgres::{Client, GenericClient, Transaction};
pub use migrate::{Migration, Migrator};
pub use reads::Read;
pub use tokio_postgres;

use deadpool_postgres::{
    Hook, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tern::{Context, Problem, ReadinessCheck, StartError};

/// A handle to the pool. Clone it into handlers.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    retry_after: Duration,
    /// How long every connection may be busy without one coming back before readiness fails:
    /// the longest a legitimate query runs (`DB_STALL_TIMEOUT`, else `DB_WAIT_TIMEOUT`).
    busy_limit: Duration,
    /// When a connection last became usable: made, or handed out again after a query
    /// finished with it. Readiness reads it when every connection is busy.
    progress: Arc<Progress>,
    /// The wait-time histogram and timeout counter, once [`Db::connect`] registered them.
    metrics: Option<Arc<metrics::PoolMetrics>>,
    /// The connections lent to reads ([`Db::read`]).
    sharing: Arc<reads::Sharing>,
}

/// Milliseconds since `start` at the last sign of progress.
#[derive(Debug)]
struct Progress {
    start: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn mark(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn since(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Db {
    /// Reads the settings, builds the pool, and ties it to the runtime's readiness and shutdown.
    pub async fn connect(ctx: &Context) -> Result<Self, StartError> {
        let cfg = DbConfig::from_env(ctx.env()).await?;
        let mut db = Self::from_config(&cfg)?;
        db.metrics = Some(metrics::PoolMetrics::register(
            ctx.metrics(),
            &db.pool,
            &cfg,
        ));
        ctx.add_readiness(Arc::new(db.clone()));
        let closing = db.clone();
        ctx.on_shutdown("database pool", move || async move { closing.close() });
        Ok(db)
    }

    /// Builds the pool without a runtime (tools, tests, the migrate job).
    pub fn from_config(cfg: &DbConfig) -> Result<Self, StartError> {
        let mgr_cfg = ManagerConfig {
            // `Fast` trusts a connection unless it is known closed: no round trip per checkout.
            // A connection that died silently fails its next query, which answers 503 and
            // drops the connection.
            recycling_method: RecyclingMethod::Fast,
        };
        // Every connection is made over a socket that gives up on a server that stopped
        // answering (`stall.rs`).
        let stall = cfg.stall_timeout;
        let iam = match cfg.auth {
            config::DbAuth::Password => None,
            config::DbAuth::Iam => Some(
                iam::IamToken::new(cfg.metadata_host.as_deref(), cfg.connect_timeout)
                    .map_err(StartError::failed)?,
            ),
        };
        let manager = match tls::client_config(cfg)? {
            None => Manager::from_connect(
                cfg.pg.clone(),
                stall::WatchedConnect {
                    tls: tokio_postgres::NoTls,
                    stall,
                    iam,
                },
                mgr_cfg,
            ),
            Some(tls) => Manager::from_connect(
                cfg.pg.clone(),
                stall::WatchedConnect {
                    tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                    stall,
                    iam,
                },
                mgr_cfg,
            ),
        };
        let progress = Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        });
        let (created, recycled) = (progress.clone(), progress.clone());
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .post_create(Hook::sync_fn(move |_, _| {
                created.mark();
                Ok(())
            }))
            .post_recycle(Hook::sync_fn(move |_, _| {
                recycled.mark();
                Ok(())
            }))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(cfg.wait_timeout),
                create: Some(cfg.connect_timeout),
                recycle: Some(cfg.connect_timeout),
            })
            .build()
            .map_err(|e| StartError::failed(format!("cannot build the database pool: {e}")))?;
        Ok(Self {
            pool,
            sharing: Arc::new(reads::Sharing::new(
                cfg.reads_per_connection,
                progress.clone(),
            )),
            retry_after: cfg.retry_after,
            busy_limit: cfg
                .stall_timeout
                .unwrap_or(cfg.wait_timeout)
                .max(cfg.wait_timeout),
            progress,
            metrics: None,
        })
    }

    /// A connection from the pool, or a 503 problem when none can be had in time.
    pub async fn get(&self) -> Result<Client, Problem> {
        let start = Instant::now();
        // Counted as waiting while it may wait: reads stop joining lent connections meanwhile,
        // so that the connections lent to them drain and come back to the pool's queue.
        let waiting = self.sharing.waiting();
        let got = self.pool.get().await;
        drop(waiting);
        // Only a wait that ran out counts as "no connection became free"; a connect or
        // recycle timeout is the database not answering.
        let no_free = matches!(
            got,
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait))
        );
        self.waited(start, no_free);
        got.map_err(|e| self.unavailable(&e))
    }

    /// A connection for reads outside a transaction: the caller's own when one is free,
    /// otherwise shared with other reads (`DB_READS_PER_CONNECTION`), otherwise one waited
    /// for as with [`Db::get`]; the rules are in `reads.rs`. A 503 problem when none can be had
    /// in time. Pass `&*read` where a [`GenericClient`] is wanted.
    ///
    /// ```no_run
    /// # async fn handler(db: tern_db::Db) -> Result<String, tern::Problem> {
    /// use tern_db::{DbResultExt, GenericClient};
    /// let read = db.read().await?;
    /// let row = read.query_one("SELECT 'ok'::text", &[]).await.or_problem()?;
    /// Ok(row.get(0))
    /// # }
    /// ```
    pub async fn read(&self) -> Result<Read, Problem> {
        if self.sharing.per_connection <= 1 {
            let client = self.get().await?;
            return Ok(self.sharing.lend(client));
        }
        let start = Instant::now();
        let now = Timeouts {
            wait: Some(Duration::ZERO),
            ..self.pool.timeouts()
        };
        let failed = match self.pool.timeout_get(&now).await {
            Ok(client) => {
                self.waited(start, false);
                return Ok(self.sharing.lend(client));
            }
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => None,
            Err(PoolError::Closed) => {
                self.waited(start, false);
                return Err(self.unavailable(&PoolError::Closed));
            }
            // A new connection could not be opened: a lent one with room still serves.
            Err(e) => Some(e),
        };
        if let Some(read) = self.sharing.join() {
            self.waited(start, false);
            return Ok(read);
        }
        if let Some(e) = failed {
            self.waited(start, false);
            return Err(self.unavailable(&e));
        }
        // Rule 3: a pool slot or room on a lent connection, whichever comes first. This read
        // keeps its place in the pool's queue meanwhile, and is not counted as waiting: only
        // transactions stop reads from joining.
        let mut queued = std::pin::pin!(self.pool.get());
        loop {
            let room = self.sharing.room();
            tokio::select! {
                got = &mut queued => {
                    let no_free = matches!(
                        got,
                        Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait))
                    );
                    self.waited(start, no_free);
                    return got.map(|c| self.sharing.lend(c)).map_err(|e| self.unavailable(&e));
                }
                () = room => {
                    if let Some(read) = self.sharing.join() {
                        self.waited(start, false);
                        return Ok(read);
                    }
                }
            }
        }
    }

    /// Connections lent to reads now, and the reads in flight on them.
    pub fn reads(&self) -> (usize, usize) {
        self.sharing.status()
    }

    fn waited(&self, start: Instant, no_free: bool) {
        if let Some(m) = &self.metrics {
            m.waited(start.elapsed(), no_free);
        }
    }

    /// The 503 for a connection that could not be had. The detail says what the client can
    /// do; what the driver said goes to the log only.
    fn unavailable(&self, e: &PoolError) -> Problem {
        let detail = match e {
            PoolError::Timeout(_) => {
                "The service is busy: no database connection became free in time. Retry after the Retry-After delay."
            }
            PoolError::Closed => {
                "This instance is shutting down. Retry; another instance will answer."
            }
            _ => {
                "The database is unreachable. Nothing was changed; retry after the Retry-After delay."
            }
        };
        tracing::warn!(error = %e, "database unavailable");
        Problem::unavailable(detail, self.retry_after)
    }

    /// A connection for the platform's own bookkeeping (the metrics' reads), only if one is free
    /// or can be made now: it never queues behind requests and is not counted in the pool's
    /// wait metrics. `None` when the pool is busy or the database cannot be reached.
    pub async fn try_get_for_metrics(&self) -> Option<Client> {
        let now = Timeouts {
            wait: Some(Duration::ZERO),
            ..self.pool.timeouts()
        };
        self.pool.timeout_get(&now).await.ok()
    }

    /// The pool's current size and idle count.
    pub fn status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Closes the pool: waiting callers get 503, open connections are dropped.
    pub fn close(&self) {
        self.pool.close();
    }

    /// The `Retry-After` used for 503s.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl ReadinessCheck for Db {
    fn name(&self) -> &str {
        "database"
    }

    /// Never waits for a pool slot (issue 13): a busy pool is not a reason to take an
    /// instance out of rotation, and a probe queued behind requests would fail the instance
    /// for being busy. With a slot free, one `SELECT 1` on it (a connection is made if none is
    /// idle); with every connection busy, ready while connections keep coming back, that is
    /// when one was handed out again within the longest a query may run (`DB_STALL_TIMEOUT`).
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let now = Timeouts {
                wait: Some(Duration::ZERO),
                ..self.pool.timeouts()
            };
            let client = match self.pool.timeout_get(&now).await {
                Ok(c) => c,
                Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => {
                    let idle_for = self.progress.since();
                    return if idle_for <= self.busy_limit {
                        Ok(())
                    } else {
                        Err(format!(
                            "every database connection is busy and none came back for {} ms",
                            idle_for.as_millis()
                        ))
                    };
                }
                Err(PoolError::Closed) => return Err("the database pool is closed".to_owned()),
                Err(e) => return Err(format!("the database cannot be reached: {e}")),
            };
            client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| format!("the database did not answer: {e}"))
        })
    }
}

/// Turns database errors into problems: unavailability is 503, anything else 500 (logged).
pub trait DbResultExt<T> {
    /// See the trait docs.
    fn or_problem(self) -> Result<T, Problem>;
}

impl<T> DbResultExt<T> for Result<T, tokio_postgres::Error> {
    fn or_problem(self) -> Result<T, Problem> {
        self.map_err(|e| problem(&e))
    }
}

/// The problem for a database error. See [`DbResultExt`].
pub fn problem(e: &tokio_postgres::Error) -> Problem {
    if is_read_only(e) {
        tracing::info!(error = %e, "a write reached a read-only replica: this region is on standby");
        return standby();
    }
    if is_transient(e) {
        tracing::warn!(error = %e, "database unavailable");
        return Problem::unavailable(
            "The database is unavailable. Retry after the Retry-After delay.",
            Duration::from_secs(2),
        );
    }
    tracing::error!(error = %e, "database error");
    Problem::internal()
}

/// How long a client is asked to wait before retrying a write refused on standby: a failover
/// takes minutes, and the public host's DNS record lives 60 s.
pub const STANDBY_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The 503 for a write that reached a standby region (`region-standby`): its database is a
/// read-only replica, so nothing was changed. Reads keep working there; writes belong to the
/// active region (`docs/operations.md`, "Region failover").
pub fn standby() -> Problem {
    Problem::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "region-standby",
        "This region is on standby",
    )
    .with_detail(
        "This region's database is a read-only replica: it serves reads, and writes go to the active region. Nothing was changed; retry after the Retry-After delay.",
    )
    .with_retry_after(STANDBY_RETRY_AFTER)
}

/// Whether the server refused a write because it is a read-only replica (a hot standby, or a
/// Cloud SQL read replica): SQLSTATE 25006, `read_only_sql_transaction`.
pub fn is_read_only(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// Whether retrying later may succeed: a lost connection, a server shutting down or starting,
/// a serialization failure or deadlock, a statement timeout, resources exhausted.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => true, // I/O: the connection failed before the server answered.
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("53") // insufficient resources
                || c.starts_with("57P") // admin/crash shutdown, cannot connect now
                || c == "40001" // serialization failure
                || c == "40P01" // deadlock
                || c == "57014" // query canceled (statement timeout)
        }
    }
}
