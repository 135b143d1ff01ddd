//! The whole flow through the real binaries: create → order.created on the orders topic as a
//! CloudEvent → a payment on payments, delivered as Google Cloud delivers it → paid → order.paid.

use std::time::Duration;
use tern_e2e::*;
use tern_events::{EventPublisher, OutgoingEvent};
use tern_local::{Mode, StopToken, Target};

/// Runs the local delivery loop of the `payments` subscription to `consumer`; cancel to stop.
async fn deliver_payments(
    sys: &System,
    consumer: &str,
    mode: Mode,
    max_attempts: u32,
) -> StopToken {
    let stop = StopToken::default();
    let target = Target {
        subscription: "payments-events-payments".into(),
        topic: "payments".into(),
        url: format!("{consumer}/events/payments"),
    };
    let dlq = EventPublisher::new(sys.pubsub.clone()).await.unwrap();
    tokio::spawn(tern_local::deliver(
        mode,
        sys.pubsub.clone(),
        target,
        max_attempts,
        dlq,
        stop.clone(),
    ));
    stop
}

async fn flow(mode: Mode) {
    let mut sys = System::new().await;
    sys.subscribe("watch-orders", "orders").await;
    let create = sys.start("orders-create");
    let get = sys.start("orders-get");
    let consumer = sys.start("payments-events");

    // Deliver the payments subscription to the consumer the way Pub/Sub push (or Eventarc) does.
    let stop = deliver_payments(&sys, &consumer, mode, 5).await;

    let res = sys.create_order(&create, &order_body()).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let order: serde_json::Value = res.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/orders/{id}"));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["customer_email"], "a***@example.com");
    assert_eq!(order["total_cents"], 1250);

    // order.created arrives as a CloudEvent (Pub/Sub binding attributes).
    let created = sys
        .collect("watch-orders", 1, Duration::from_secs(10))
        .await;
    assert_eq!(created.len(), 1, "order.created was not published");
    assert_eq!(attr(&created[0], "ce-specversion"), "1.0");
    assert_eq!(attr(&created[0], "ce-type"), "com.example.order.created");
    assert_eq!(attr(&created[0], "ce-source"), "//tern/orders-create");
    assert_eq!(attr(&created[0], "ce-subject"), id);
    let data: serde_json::Value = serde_json::from_slice(&created[0].data).unwrap();
    assert_eq!(data["order_id"], id.as_str());

    // A producer publishes the payment.
    let event = publish_payment(&sys.pubsub, "pay-event-1", &id).await;

    let paid = sys
        .collect("watch-orders", 1, Duration::from_secs(10))
        .await;
    assert_eq!(paid.len(), 1, "order.paid was not published");
    assert_eq!(attr(&paid[0], "ce-type"), "com.example.order.paid");
    assert_eq!(attr(&paid[0], "ce-subject"), id);

    let now = sys.order(&get, &id).await;
    assert_eq!(now["status"], "paid");
    assert_eq!(now["payment_id"], event.data["payment_id"]);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn create_pay_and_events_with_push_delivery() {
    flow(Mode::Push).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_pay_and_events_with_eventarc_cloudevents() {
    flow(Mode::Cloudevents).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_replay_or_refuse() {
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let post = |key: &'static str, body: serde_json::Value| {
        let http = sys.http.clone();
        let url = format!("{create}/api/orders");
        async move {
            http.post(url)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let first = post("key-1", order_body()).await;
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();

    // A retried POST returns the same order, even when retries race.
    let retries = futures::future::join_all((0..5).map(|_| post("key-1", order_body()))).await;
    for r in retries {
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        let again: serde_json::Value = r.json().await.unwrap();
        assert_eq!(again["id"], first["id"]);
    }
    // Racing first uses of a new key make one order.
    let racing = futures::future::join_all((0..6).map(|_| post("key-2", order_body()))).await;
    let mut ids = std::collections::BTreeSet::new();
    for r in racing {
        assert_eq!(r.status(), 201);
        ids.insert(
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 1);

    // The same key with another body is refused.
    let mut other = order_body();
    other["currency"] = "USD".into();
    let conflict = post("key-1", other).await;
    assert_eq!(conflict.status(), 422);
    let p: serde_json::Value = conflict.json().await.unwrap();
    assert_eq!(p["type"], "urn:tern:problem:idempotency-key-reused");

    let n = sys.count("orders").await;
    assert_eq!(n, 2);
    let outbox = sys.count("tern_outbox").await;
    assert_eq!(outbox, 2, "one order.created per order");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_back_office_list_needs_the_key_and_pages() {
    let mut sys = System::new().await;
    let create = sys.start("orders-create");
    let list = sys.start("orders-list");
    for _ in 0..5 {
        assert_eq!(sys.create_order(&create, &order_body()).await.status(), 201);
    }
    let url = format!("{list}/api/orders");
    let no_key = sys.http.get(&url).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(no_key.headers()["content-type"], "application/problem+json");
    assert_eq!(no_key.headers()["www-authenticate"], "Bearer");
    let wrong = sys.http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = sys
            .http
            .get(&url)
            .bearer_auth(API_KEY)
            .query(&[("limit", "2"), ("status", "pending")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let page: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        for o in page["orders"].as_array().unwrap() {
            seen.push(o["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 5, "pages overlap: {seen:?}");

    let paid: serde_json::Value = sys
        .http
        .get(&url)
        .bearer_auth(API_KEY)
        .query(&[("status", "paid")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["orders"].as_array().unwrap().len(), 0);

    for bad in [
        ("cursor", "tampered"),
        ("limit", "1000"),
        ("status", "shipped"),
        ("colour", "red"),
    ] {
        let r = sys
            .http
            .get(&url)
            .bearer_auth(API_KEY)
            .query(&[bad])
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 400 || r.status() == 422,
            "{bad:?}: {}",
            r.status()
        );
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn permanently_bad_events_are_retried_then_dead_lettered() {
    let mut sys = System::new().await;
    sys.subscribe("watch-dead", "payments-dead-letter").await;
    let create = sys.start("orders-create");
    let consumer = sys.start("payments-events");
    let o: serde_json::Value = sys
        .create_order(&create, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let stop = deliver_payments(&sys, &consumer, Mode::Push, 2).await;

    // The amount does not match the order: 422 on every attempt.
    let publisher = EventPublisher::new(sys.pubsub.clone()).await.unwrap();
    let event = OutgoingEvent {
        id: "bad-amount".into(),
        source: "//payments-provider".into(),
        ty: "com.example.payment.completed".into(),
        subject: None,
        time: chrono::Utc::now(),
        data: payment(o["id"].as_str().unwrap(), 1, "EUR"),
    };
    publisher.publish("payments", &event).await.unwrap();
    let dead = sys.collect("watch-dead", 1, Duration::from_secs(15)).await;
    assert_eq!(
        dead.len(),
        1,
        "the event did not reach the dead-letter topic"
    );
    assert_eq!(attr(&dead[0], "ce-id"), "bad-amount");
    stop.cancel();
    let status: String = sys
        .sql()
        .await
        .query_one("SELECT status FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "pending");
}
