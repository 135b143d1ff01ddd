//! The event side's series:
//!
//! | series | what |
//! |---|---|
//! | `messaging_client_operation_duration_seconds{messaging_system,messaging_operation_name="publish",messaging_destination_name,error_type}` | each publish to Pub/Sub, until it answered or gave up (OpenTelemetry's messaging conventions; `error_type` is empty on success, else `unavailable` (no answer in time, or a transient error) or `rejected` (permanent)) |
//! | `messaging_client_sent_messages_total{messaging_system,messaging_destination_name,error_type}` | messages published, and failed publishes |
//! | `tern_outbox_pending_rows` | outbox rows waiting to be published (read at each scrape; NaN when the table cannot be read) |
//! | `tern_outbox_oldest_pending_age_seconds` | how long the oldest of them that Pub/Sub never refused has waited (0 when none) |
//! | `tern_outbox_refused_rows` | pending rows Pub/Sub refused at least once (set aside later) |
//! | `tern_outbox_set_aside_rows` | rows set aside after permanent failures, waiting for an operator |
//!
//! Event deliveries (`tern_events_handled_total`) are counted by the runtime's middleware from
//! what the extractors and the inbox note; see `tern::metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tern::metrics::Metrics;
use tern_db::Db;

/// Publish latency buckets in seconds: a local emulator answers in about a millisecond, Pub/Sub
/// in tens, and a publish gives up after `PUBSUB_PUBLISH_TIMEOUT` (5 s by default).
const PUBLISH_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    messaging_system: &'static str,
    messaging_operation_name: &'static str,
    messaging_destination_name: String,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SentLabels {
    messaging_system: &'static str,
    messaging_destination_name: String,
    error_type: &'static str,
}

/// A publish's result as `error_type` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PublishResult {
    Ok,
    /// No answer in time, or a transient error: an outage, which only delays.
    Unavailable,
    /// Pub/Sub refused the message (permanent).
    Rejected,
}

impl PublishResult {
    fn error_type(self) -> &'static str {
        match self {
            Self::Ok => "",
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
        }
    }
}

/// The publisher's histogram and counter.
#[derive(Clone)]
pub(crate) struct PublishMetrics {
    duration: Family<PublishLabels, Histogram>,
    sent: Family<SentLabels, Counter>,
}

impl PublishMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let duration = Family::<PublishLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(PUBLISH_BUCKETS)
        });
        let sent = Family::<SentLabels, Counter>::default();
        metrics.register(
            "messaging_client_operation_duration",
            "Duration of each publish to Pub/Sub, until it answered or gave up",
            Some(Unit::Seconds),
            duration.clone(),
        );
        metrics.register(
            "messaging_client_sent_messages",
            "Messages published to Pub/Sub; error_type is set on those that failed",
            None,
            sent.clone(),
        );
        Self { duration, sent }
    }

    pub(crate) fn published(&self, topic: &str, took: Duration, result: PublishResult) {
        let error_type = result.error_type();
        self.duration
            .get_or_create(&PublishLabels {
                messaging_system: "gcp_pubsub",
                messaging_operation_name: "publish",
                messaging_destination_name: topic.to_owned(),
                error_type,
            })
            .observe(took.as_secs_f64());
        self.sent
            .get_or_create(&SentLabels {
                messaging_system: "gcp_pubsub",
                messaging_destination_name: topic.to_owned(),
                error_type,
            })
            .inc();
    }
}

/// Registers the outbox's backlog gauges, read from the table at each scrape.
pub(crate) fn register_outbox(metrics: &Metrics, db: &Db) {
    let pending = Gauge::<f64, AtomicU64>::default();
    let struck = Gauge::<f64, AtomicU64>::default();
    let set_aside = Gauge::<f64, AtomicU64>::default();
    let oldest = Gauge::<f64, AtomicU64>::default();
    metrics.register(
        "tern_outbox_pending_rows",
        "Outbox rows waiting to be published (NaN when the table could not be read)",
        None,
        pending.clone(),
    );
    metrics.register(
        "tern_outbox_oldest_pending_age",
        "How long the oldest outbox row Pub/Sub never refused has waited to be published (0 when none; NaN when the table could not be read)",
        Some(Unit::Seconds),
        oldest.clone(),
    );
    metrics.register(
        "tern_outbox_refused_rows",
        "Pending outbox rows Pub/Sub refused at least once (permanent errors; set aside after OUTBOX_SET_ASIDE_AFTER)",
        None,
        struck.clone(),
    );
    metrics.register(
        "tern_outbox_set_aside_rows",
        "Outbox rows set aside after permanent publish failures, waiting for an operator",
        None,
        set_aside.clone(),
    );
    let db = db.clone();
    let gauges = Arc::new([pending, struck, set_aside, oldest]);
    metrics.on_scrape(move || {
        let (db, gauges) = (db.clone(), gauges.clone());
        async move {
            // What cannot be read now is unknown, not what it was: a stale age would keep an
            // alert firing (or quiet) through a database outage.
            let values = backlog(&db).await.unwrap_or([f64::NAN; 4]);
            for (g, v) in gauges.iter().zip(values) {
                g.set(v);
            }
        }
    });
}

/// Pending rows, the pending rows Pub/Sub refused at least once, set-aside rows, and the age in
/// seconds of the oldest pending row never refused (a backlog is Pub/Sub out of reach; a refused
/// row is its own problem, counted apart and set aside in time). Read on a connection that does
/// not queue behind requests (`Db::try_get_for_metrics`), through the partial index on pending
/// rows.
async fn backlog(db: &Db) -> Option<[f64; 4]> {
    let client = db.try_get_for_metrics().await?;
    let stmt = client
        .prepare_cached(
            "SELECT (SELECT count(*) FROM tern_outbox
                     WHERE published_at IS NULL AND set_aside_at IS NULL),
                    (SELECT count(*) FROM tern_outbox
                     WHERE published_at IS NULL AND set_aside_at IS NULL AND strikes > 0),
                    (SELECT count(*) FROM tern_outbox
                     WHERE published_at IS NULL AND set_aside_at IS NOT NULL),
                    COALESCE((SELECT extract(epoch FROM now() - created_at)::float8
                              FROM tern_outbox
                              WHERE published_at IS NULL AND set_aside_at IS NULL AND strikes = 0
                              ORDER BY id LIMIT 1), 0)",
        )
        .await
        .ok()?;
    let row = client.query_one(&stmt, &[]).await.ok()?;
    let count = |i: usize| row.get::<_, i64>(i) as f64;
    Some([count(0), count(1), count(2), row.get::<_, f64>(3).max(0.0)])
}
