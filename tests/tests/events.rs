//! Payment events: duplicates, out-of-order, mismatches; and relays publishing each outbox row
//! exactly once while several run at once.

use std::collections::BTreeSet;
use std::time::Duration;
use tern_e2e::*;

async fn deliver(
    sys: &System,
    consumer: &str,
    event_id: &str,
    ty: &str,
    data: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let res = sys
        .http
        .post(format!("{consumer}/events/payments"))
        .json(&push_body(event_id, ty, data))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

async fn new_order(sys: &System, create: &str) -> String {
    let o: serde_json::Value = sys
        .create_order(create, &order_body())
        .await
        .json()
        .await
        .unwrap();
    o["id"].as_str().unwrap().to_owned()
}

async fn status_of(sys: &System, id: &str) -> String {
    let db = sys.sql().await;
    db.query_one("SELECT status FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_are_acknowledged_and_change_nothing() {
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let consumer = sys.start("payments-events");
    let id = new_order(&sys, &create).await;
    let data = payment(&id, 1250, "EUR");
    let (s, body) = deliver(
        &sys,
        &consumer,
        "evt-1",
        "com.example.payment.completed",
        &data,
    )
    .await;
    assert_eq!((s, body["result"].as_str()), (200, Some("updated")));
    // The same event again, several times and concurrently: 2xx, no second effect.
    let again = futures::future::join_all((0..4).map(|_| {
        deliver(
            &sys,
            &consumer,
            "evt-1",
            "com.example.payment.completed",
            &data,
        )
    }))
    .await;
    for (s, body) in again {
        assert_eq!(s, 200);
        assert_eq!(body["result"], "duplicate");
    }
    let db = sys.sql().await;
    let paid_events: i64 = db
        .query_one(
            "SELECT count(*) FROM tern_outbox WHERE event_type = 'com.example.order.paid'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(paid_events, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_order_events_never_move_an_order_backwards() {
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let consumer = sys.start("payments-events");

    // Paid, then a stale failure arrives: still paid.
    let id = new_order(&sys, &create).await;
    assert_eq!(
        deliver(
            &sys,
            &consumer,
            "a-ok",
            "com.example.payment.completed",
            &payment(&id, 1250, "EUR")
        )
        .await
        .0,
        200
    );
    let (s, body) = deliver(
        &sys,
        &consumer,
        "a-fail",
        "com.example.payment.failed",
        &payment(&id, 1250, "EUR"),
    )
    .await;
    assert_eq!((s, body["result"].as_str()), (200, Some("unchanged")));
    assert_eq!(status_of(&sys, &id).await, "paid");

    // Failed, then a successful retry: paid.
    let id2 = new_order(&sys, &create).await;
    assert_eq!(
        deliver(
            &sys,
            &consumer,
            "b-fail",
            "com.example.payment.failed",
            &payment(&id2, 1250, "EUR")
        )
        .await
        .0,
        200
    );
    assert_eq!(status_of(&sys, &id2).await, "failed");
    assert_eq!(
        deliver(
            &sys,
            &consumer,
            "b-ok",
            "com.example.payment.completed",
            &payment(&id2, 1250, "EUR")
        )
        .await
        .0,
        200
    );
    assert_eq!(status_of(&sys, &id2).await, "paid");
}

#[tokio::test(flavor = "multi_thread")]
async fn mismatched_or_unknown_payments_are_permanent_errors() {
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let consumer = sys.start("payments-events");
    let id = new_order(&sys, &create).await;
    for (event_id, data, slug) in [
        ("m1", payment(&id, 999, "EUR"), "payment-mismatch"),
        ("m2", payment(&id, 1250, "USD"), "payment-mismatch"),
        (
            "m3",
            payment("ord_aaaaaaaaaaaaaaaaaaaaaaaaaa", 1250, "EUR"),
            "unknown-order",
        ),
        ("m4", serde_json::json!({"order_id": id}), "invalid-event"),
    ] {
        let (s, body) = deliver(
            &sys,
            &consumer,
            event_id,
            "com.example.payment.completed",
            &data,
        )
        .await;
        assert_eq!(s, 422, "{event_id}: {body}");
        assert_eq!(
            body["type"],
            format!("urn:tern:problem:{slug}"),
            "{event_id}"
        );
    }
    let (s, _) = deliver(
        &sys,
        &consumer,
        "m5",
        "com.example.payment.refunded",
        &payment(&id, 1250, "EUR"),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(status_of(&sys, &id).await, "pending");
    // A rejected event left no inbox record: a fixed redelivery would still apply.
    let inbox = sys.count("tern_inbox").await;
    assert_eq!(inbox, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_relays_publish_each_row_exactly_once() {
    let mut sys = System::new().await;
    sys.subscribe("watch-orders", "orders").await;
    const ROWS: i64 = 300;
    let db = sys.sql().await;
    db.execute(
        "INSERT INTO tern_outbox (topic, event_id, event_type, source, data)
         SELECT 'orders', 'e-' || g, 'com.example.order.created', '//tests', jsonb_build_object('n', g)
         FROM generate_series(1, $1::bigint) g",
        &[&ROWS],
    )
    .await
    .unwrap();
    sys.set("RELAY_BATCH_SIZE", "25");
    let relays = [
        sys.start_as("relay-1", "outbox-relay"),
        sys.start_as("relay-2", "outbox-relay"),
    ];
    let calls = (0..8).map(|i| {
        let url = format!("{}/internal/outbox/flush", relays[i % 2]);
        let http = sys.http.clone();
        async move {
            http.post(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    let reports = futures::future::join_all(calls).await;
    let published: i64 = reports
        .iter()
        .map(|r| r["published"].as_i64().unwrap())
        .sum();
    assert_eq!(published, ROWS, "{reports:?}");

    let msgs = sys
        .collect("watch-orders", ROWS as usize + 10, Duration::from_secs(3))
        .await;
    let ids: BTreeSet<String> = msgs.iter().map(|m| attr(m, "ce-id")).collect();
    assert_eq!(msgs.len() as i64, ROWS, "each row once");
    assert_eq!(ids.len() as i64, ROWS);
    assert_eq!(sys.pending_outbox().await, 0);
}
