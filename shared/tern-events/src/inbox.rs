//! Idempotent consumption: record the event in the same transaction as its effect.

use crate::incoming::DomainEvent;
use tern::Problem;
use tern_db::{DbResultExt, Transaction};

/// Records that `consumer` handles `event` in `tx`. Returns `false` when it was already
/// handled: the caller then does nothing and acknowledges (a duplicate is a 2xx no-op).
/// Two concurrent deliveries of the same event serialize on the primary key; the second sees
/// `false` once the first commits.
pub async fn first_delivery(
    tx: &Transaction<'_>,
    consumer: &str,
    event: &DomainEvent,
) -> Result<bool, Problem> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO tern_inbox (consumer, event_source, event_id, event_type)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .await
        .or_problem()?;
    let n = tx
        .execute(&stmt, &[&consumer, &event.source, &event.id, &event.ty])
        .await
        .or_problem()?;
    if n == 0 {
        tern::platform::note_duplicate();
    }
    Ok(n == 1)
}
