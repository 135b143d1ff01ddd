//! Retention (issue 13): the relay prunes what is past its window, in small batches, and keeps
//! everything younger — against the real PostgreSQL, through the real relay.

use serde_json::Value;
use std::time::Duration;
use tern_e2e::*;

async fn sizes(sys: &System) -> [i64; 3] {
    [
        sys.count("tern_inbox").await,
        sys.count("tern_outbox").await,
        sys.count("idempotency_keys").await,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_past_their_window_are_pruned_younger_ones_kept() {
    let mut sys = System::new().await;
    sys.set("RETENTION_INBOX", "2h");
    sys.set("RETENTION_OUTBOX", "1h");
    sys.set("RETENTION_IDEMPOTENCY_KEYS", "24h");
    // One row per statement: the pruning loops in batches.
    sys.set("RETENTION_BATCH_SIZE", "1");
    let create = sys.start("orders-create");
    let relay = sys.start("outbox-relay");
    let post = |key: &'static str| {
        let (http, url) = (sys.http.clone(), format!("{create}/api/orders"));
        async move {
            let r = http
                .post(url)
                .header("idempotency-key", key)
                .json(&order_body())
                .send()
                .await
                .unwrap();
            let replayed = r.headers().contains_key("idempotent-replayed");
            let body: Value = r.json().await.unwrap();
            (body["id"].as_str().unwrap().to_owned(), replayed)
        }
    };
    let (old_order, _) = post("old-key").await;
    let (young_order, _) = post("young-key").await;
    post("fresh-key").await;
    eventually(
        "the orders' events published",
        Duration::from_secs(20),
        || async { (sys.pending_outbox().await == 0).then_some(()) },
    )
    .await;

    let db = sys.sql().await;
    db.batch_execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old-key';
         UPDATE idempotency_keys SET created_at = now() - interval '23 hours' WHERE key = 'young-key';
         UPDATE tern_outbox SET published_at = now() - interval '2 hours'
           WHERE id IN (SELECT id FROM tern_outbox ORDER BY id LIMIT 2);
         -- Never published, and not due: old, but never pruned.
         INSERT INTO tern_outbox (topic, event_id, event_type, source, data, created_at, next_attempt_at)
           VALUES ('orders', 'unpublished', 'x', '//tests', '{}', now() - interval '3 days', now() + interval '1 day');
         -- Set aside: kept for an operator however old.
         INSERT INTO tern_outbox (topic, event_id, event_type, source, data, created_at, set_aside_at)
           VALUES ('orders', 'set-aside', 'x', '//tests', '{}', now() - interval '3 days', now() - interval '3 days');
         INSERT INTO tern_inbox (consumer, event_source, event_id, event_type, processed_at) VALUES
           ('c', '//p', 'old-1', 't', now() - interval '3 hours'),
           ('c', '//p', 'old-2', 't', now() - interval '150 minutes'),
           ('c', '//p', 'young', 't', now() - interval '1 hour');",
    )
    .await
    .unwrap();
    let before = sizes(&sys).await;

    let r: Value = sys
        .http
        .post(format!("{relay}/internal/outbox/flush"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = sizes(&sys).await;
    eprintln!(
        "table sizes (tern_inbox, tern_outbox, idempotency_keys) before pruning {before:?}, after {after:?}; relay: {r}"
    );
    assert_eq!(
        r["pruned"],
        serde_json::json!({"tern_inbox": 2, "tern_outbox": 2, "idempotency_keys": 1})
    );
    assert_eq!(after, [before[0] - 2, before[1] - 2, before[2] - 1]);
    let left: Vec<String> = db
        .query("SELECT event_id FROM tern_inbox ORDER BY event_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["young"]);
    let kept: i64 = db
        .query_one(
            "SELECT count(*) FROM tern_outbox WHERE event_id IN ('unpublished', 'set-aside')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2, "unpublished and set-aside rows are never pruned");

    // Inside the window a retry still replays; past it the key is free again.
    assert_eq!(post("young-key").await, (young_order, true));
    let (again, replayed) = post("old-key").await;
    assert!(!replayed && again != old_order);

    // A second run finds nothing more to prune.
    let r: Value = sys
        .http
        .post(format!("{relay}/internal/outbox/flush"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["pruned"],
        serde_json::json!({"tern_inbox": 0, "tern_outbox": 0, "idempotency_keys": 0})
    );
}

/// The inbox is kept at least as long as Pub/Sub may still redeliver: the subscriptions'
/// message retention in `infra/modules/pubsub`, plus a day.
#[test]
fn the_inbox_outlives_pubsub_retention() {
    let vars = std::fs::read_to_string(root().join("infra/modules/pubsub/variables.tf")).unwrap();
    let block = &vars[vars.find("variable \"message_retention\"").unwrap()..];
    let default = block
        .lines()
        .find_map(|l| l.trim().strip_prefix("default"))
        .unwrap();
    let secs: u64 = default
        .trim()
        .trim_start_matches('=')
        .trim()
        .trim_matches('"')
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        tern_events::retention::INBOX_DEFAULT >= Duration::from_secs(secs + 86_400),
        "RETENTION_INBOX's default must cover {secs} s of Pub/Sub retention plus a day"
    );
}
