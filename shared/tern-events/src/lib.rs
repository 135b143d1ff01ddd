//! # tern-events: events in and out of Tern functions
//!
//! - In: [`DomainEvent`] (a CloudEvent with JSON data), [`CloudEvent`] (any CloudEvent, any
//!   data) and [`PubSubMessage`] (a plain Pub/Sub message from any producer) are axum
//!   extractors that accept CloudEvents (binary and structured mode), Pub/Sub push requests and
//!   Eventarc deliveries; see [`incoming`].
//! - Idempotency: [`inbox::first_delivery`] records the event id in the effect's transaction.
//! - Out: [`Outbox`] stages events in the same transaction as the rows they describe and
//!   publishes them after commit; the `outbox-relay` function publishes what is left.
//! - Pub/Sub: [`EventPublisher`] over Google's official `google-cloud-pubsub`, pointed at
//!   `PUBSUB_EMULATOR_HOST` when set.

pub mod inbox;
pub mod incoming;
mod metrics;
pub mod outbox;
pub mod publisher;
pub mod retention;

pub use incoming::{
    CloudEvent, Delivery, DomainEvent, EventData, PubSubMessage, PushEnvelope, PushMessage,
};
pub use outbox::{BegunStage, FlushReport, Outbox, OutboxCounts, OutboxPolicy, OutboxTx};
pub use publisher::{EventPublisher, OutgoingEvent, PubSubConfig};
pub use retention::Retention;

use tern::{Context, StartError};
use tern_db::Db;

/// The CloudEvents type of a Pub/Sub delivery (what Eventarc sends).
pub const MESSAGE_PUBLISHED: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// Builds the function's outbox from the environment (see [`PubSubConfig`] and
/// [`OutboxPolicy`]) and flushes the publisher at shutdown.
pub async fn outbox(ctx: &Context, db: &Db) -> Result<Outbox, StartError> {
    let cfg = PubSubConfig::from_env(ctx.env())?;
    let policy = OutboxPolicy::from_env(ctx.env(), cfg.publish_timeout)?;
    let publisher = EventPublisher::new(cfg)
        .await
        .map_err(StartError::failed)?
        .with_metrics(ctx.metrics());
    metrics::register_outbox(ctx.metrics(), db);
    let flushing = publisher.clone();
    ctx.on_shutdown(
        "pubsub publisher",
        move || async move { flushing.flush().await },
    );
    let source = format!("//tern/{}", ctx.config().knative.service);
    Ok(Outbox::new(
        db.clone(),
        publisher,
        source,
        Some(ctx.clone()),
        policy,
    ))
}
