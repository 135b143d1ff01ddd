//! The pool's series, named by OpenTelemetry's database client conventions
//! (`db.client.connection.*`), labelled with `db_client_connection_pool_name` (the database's
//! name):
//!
//! | series | what |
//! |---|---|
//! | `db_client_connection_count{db_client_connection_state="idle"\|"used"}` | connections open, by state |
//! | `db_client_connection_max` | the pool's size limit (`DB_POOL_SIZE`) |
//! | `db_client_connection_pending_requests` | callers waiting for a connection |
//! | `db_client_connection_wait_time_seconds` | how long callers waited for one (histogram) |
//! | `db_client_connection_timeouts_total` | callers that gave up after `DB_WAIT_TIMEOUT` (they got 503) |

use crate::DbConfig;
use deadpool_postgres::Pool;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use std::sync::Arc;
use std::time::Duration;
use tern::metrics::Metrics;

/// Wait-time buckets in seconds: OpenTelemetry's for `db.client.connection.wait_time` start at
/// 1 ms; most checkouts from a warm pool take microseconds, so the first bucket is 0.1 ms.
const WAIT_BUCKETS: [f64; 13] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    db_client_connection_pool_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    db_client_connection_pool_name: String,
    db_client_connection_state: &'static str,
}

pub(crate) struct PoolMetrics {
    wait: Histogram,
    timeouts: Counter,
}

impl PoolMetrics {
    /// Registers the pool's series on `metrics`; the gauges are read from `pool` at each scrape.
    pub(crate) fn register(metrics: &Metrics, pool: &Pool, cfg: &DbConfig) -> Arc<Self> {
        let name = cfg.pg.get_dbname().unwrap_or("postgres").to_owned();
        let label = PoolLabel {
            db_client_connection_pool_name: name.clone(),
        };
        let count = Family::<StateLabels, Gauge>::default();
        let max = Family::<PoolLabel, Gauge>::default();
        let pending = Family::<PoolLabel, Gauge>::default();
        let wait =
            Family::<PoolLabel, Histogram>::new_with_constructor(|| Histogram::new(WAIT_BUCKETS));
        let timeouts = Family::<PoolLabel, Counter>::default();
        metrics.register(
            "db_client_connection_count",
            "Connections open in the pool, by state (idle or used)",
            None,
            count.clone(),
        );
        metrics.register(
            "db_client_connection_max",
            "The most connections the pool opens",
            None,
            max.clone(),
        );
        metrics.register(
            "db_client_connection_pending_requests",
            "Callers waiting for a connection",
            None,
            pending.clone(),
        );
        metrics.register(
            "db_client_connection_wait_time",
            "How long callers waited for a connection",
            Some(Unit::Seconds),
            wait.clone(),
        );
        metrics.register(
            "db_client_connection_timeouts",
            "Callers that gave up waiting for a connection (answered 503)",
            None,
            timeouts.clone(),
        );
        let this = Arc::new(Self {
            wait: wait.get_or_create(&label).clone(),
            timeouts: timeouts.get_or_create(&label).clone(),
        });
        let pool = pool.clone();
        metrics.on_scrape(move || {
            let s = pool.status();
            let state = |st: &'static str| StateLabels {
                db_client_connection_pool_name: name.clone(),
                db_client_connection_state: st,
            };
            let idle = i64::try_from(s.available).unwrap_or(i64::MAX);
            let size = i64::try_from(s.size).unwrap_or(i64::MAX);
            count.get_or_create(&state("idle")).set(idle);
            count.get_or_create(&state("used")).set(size - idle);
            max.get_or_create(&label)
                .set(i64::try_from(s.max_size).unwrap_or(i64::MAX));
            pending
                .get_or_create(&label)
                .set(i64::try_from(s.waiting).unwrap_or(i64::MAX));
            std::future::ready(())
        });
        this
    }

    /// One checkout: how long it waited, and whether it gave up.
    pub(crate) fn waited(&self, took: Duration, timed_out: bool) {
        self.wait.observe(took.as_secs_f64());
        if timed_out {
            self.timeouts.inc();
        }
    }
}
