//! `Outbox::write`: rows and events commit together, or neither does — against the real
//! PostgreSQL and the real emulator.

use serde_json::json;
use std::time::Duration;
use tern::Problem;
use tern_db::DbResultExt;
use tern_e2e::*;
use tern_events::{EventPublisher, Outbox, OutboxPolicy};

async fn outbox(sys: &System) -> Outbox {
    let env = tern::Env::from_pairs([("DATABASE_URL", sys.database_url.as_str())]);
    let cfg = tern_db::DbConfig::from_env(&env).await.unwrap();
    let db = tern_db::Db::from_config(&cfg).unwrap();
    let publisher = EventPublisher::new(sys.pubsub.clone()).await.unwrap();
    let policy = OutboxPolicy::for_publish_timeout(sys.pubsub.publish_timeout);
    Outbox::new(db, publisher, "//tests".into(), None, policy)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_commits_its_rows_and_events_together_or_neither() {
    let sys = System::new().await;
    sys.subscribe("watch-orders", "orders").await;
    let outbox = outbox(&sys).await;
    let rows = |subject: &'static str| {
        let sys = &sys;
        async move {
            sys.sql()
                .await
                .query_one(
                    "SELECT count(*) FROM tern_outbox WHERE subject = $1",
                    &[&subject],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };

    // The work fails after staging: nothing is stored, nothing published.
    let failed: Result<(), Problem> = outbox
        .write(async |tx| {
            tx.stage(
                "orders",
                "com.example.test.failed",
                Some("failed"),
                &json!({}),
            )
            .await?;
            Err(Problem::malformed("the caller changed its mind"))
        })
        .await;
    assert_eq!(failed.unwrap_err().slug(), "malformed-request");
    assert_eq!(rows("failed").await, 0);

    // The work swallows a failed stage and returns Ok: still nothing stored, and an error.
    let swallowed: Result<(), Problem> = outbox
        .write(async |tx| {
            let _ = tx.execute("SELECT 1/0", &[]).await.or_problem();
            let _ = tx
                .stage(
                    "orders",
                    "com.example.test.swallowed",
                    Some("swallowed"),
                    &json!({}),
                )
                .await;
            Ok(())
        })
        .await;
    assert_eq!(swallowed.unwrap_err().status(), 500);
    assert_eq!(rows("swallowed").await, 0);

    // The work begins a stage beside a statement of its own and never records it: its row
    // was inserted, but nothing commits, and the caller hears so.
    let unfinished: Result<(), Problem> = outbox
        .write(async |tx| {
            let data = json!({});
            let (_begun, updated) = futures::join!(
                tx.stage_begin(
                    "orders",
                    "com.example.test.unfinished",
                    Some("unfinished"),
                    &data,
                ),
                tx.execute("SELECT 1", &[]),
            );
            updated.or_problem()?;
            Ok(())
        })
        .await;
    let e = unfinished.unwrap_err();
    assert_eq!(e.status(), 500);
    assert!(e.detail().unwrap().contains("nothing was written"), "{e:?}");
    assert_eq!(rows("unfinished").await, 0);

    // The work succeeds: the row and its event, published after the commit.
    let value = outbox
        .write(async |tx| {
            tx.execute(
                "INSERT INTO tern_inbox (consumer, event_source, event_id, event_type)
                 VALUES ('outbox-test', '//tests', 'e1', 'x')",
                &[],
            )
            .await
            .or_problem()?;
            tx.stage(
                "orders",
                "com.example.test.ok",
                Some("ok"),
                &json!({"n": 1}),
            )
            .await?;
            Ok::<_, Problem>(42)
        })
        .await
        .unwrap();
    assert_eq!(value, 42);
    assert_eq!(sys.count("tern_inbox").await, 1, "the row committed");
    let msgs = sys.collect("watch-orders", 2, Duration::from_secs(3)).await;
    let types: Vec<String> = msgs.iter().map(|m| attr(m, "ce-type")).collect();
    assert_eq!(
        types,
        ["com.example.test.ok"],
        "only the committed event is published"
    );
    eventually(
        "the row marked published",
        Duration::from_secs(10),
        || async { (sys.pending_outbox().await == 0).then_some(()) },
    )
    .await;
}

/// The after-commit publishes of many writes are marked together: the instance's marker records
/// the outcomes of every publish that ended within a few milliseconds in one statement, so a
/// write costs its own transaction and a small share of one mark (issue 17), not a second
/// transaction of its own. Each marked row's `xmin` is the transaction that marked it.
#[tokio::test(flavor = "multi_thread")]
async fn after_commit_publishes_are_marked_in_shared_statements() {
    let sys = System::new().await;
    let outbox = outbox(&sys).await;
    // Every write gets a publish slot, so every row is published after its commit.
    let policy = OutboxPolicy {
        max_in_flight: 1000,
        ..*outbox.policy()
    };
    let env = tern::Env::from_pairs([("DATABASE_URL", sys.database_url.as_str())]);
    let db = tern_db::Db::from_config(&tern_db::DbConfig::from_env(&env).await.unwrap()).unwrap();
    let publisher = EventPublisher::new(sys.pubsub.clone()).await.unwrap();
    let outbox = Outbox::new(db, publisher, "//tests".into(), None, policy);
    let writes = 200;
    let all = (0..writes).map(|i| {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            outbox
                .write(async |tx| {
                    let subject = format!("batch-{i}");
                    tx.stage(
                        "orders",
                        "com.example.test.batch",
                        Some(&subject),
                        &json!({ "i": i }),
                    )
                    .await
                })
                .await
        })
    });
    for w in futures::future::join_all(all).await {
        w.unwrap().unwrap();
    }
    eventually(
        "every row marked published",
        Duration::from_secs(20),
        || async { (sys.pending_outbox().await == 0).then_some(()) },
    )
    .await;
    let row = sys
        .sql()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT xmin::text), count(*) FILTER (WHERE message_id IS NULL)
             FROM tern_outbox WHERE subject LIKE 'batch-%'",
            &[],
        )
        .await
        .unwrap();
    let (rows, marks, unmarked) = (
        row.get::<_, i64>(0),
        row.get::<_, i64>(1),
        row.get::<_, i64>(2),
    );
    eprintln!("{rows} rows published after their commits, marked by {marks} statements");
    assert_eq!(rows, writes);
    assert_eq!(unmarked, 0, "every row carries its Pub/Sub message id");
    assert!(
        marks <= rows / 2,
        "{marks} mark statements for {rows} concurrent writes: the marks are not shared"
    );
}
