//! The whole flow through the real binaries: create → order.created on the orders topic as a
//! CloudEvent → a payment on payments, delivered as Google Cloud delivers it → paid → order.paid.

use std::time::Duration;
use tern_e2e::*;
use tern_events::{EventPublisher, OutgoingEvent};
use tern_local::Mode;

/// The trace of the caller of `POST /api/orders` (a Gateway or a browser's instrumentation).
const CALLER_TRACE: &str = "5e1c0d3a9b8f47e2a6c4d2b0f8e6a4c2";

/// The trace id of a `traceparent` value (`00-TRACE-SPAN-FLAGS`).
fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

async fn flow(mode: Mode) {
    let mut sys = System::new().await;
    sys.subscribe("watch-orders", "orders").await;
    let create = sys.start("orders-create");
    let get = sys.start("orders-get");
    let consumer = sys.start_keeping_output("payments-events");

    // Deliver the payments subscription to the consumer the way Pub/Sub push (or Eventarc) does.
    let stop = sys.deliver_payments(&consumer, mode, 5).await;

    // The order is placed within a trace the caller started.
    let res = sys
        .http
        .post(format!("{create}/api/orders"))
        .header(
            "traceparent",
            format!("00-{CALLER_TRACE}-a1b2c3d4e5f60718-01"),
        )
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let order: serde_json::Value = res.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/orders/{id}"));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["customer_email"], "a***@example.com");
    assert_eq!(order["total_cents"], 1250);

    // order.created arrives as a CloudEvent (Pub/Sub binding attributes), in the caller's
    // trace: the outbox row kept the request's context across the commit and the relay.
    let created = sys
        .collect("watch-orders", 1, Duration::from_secs(10))
        .await;
    assert_eq!(created.len(), 1, "order.created was not published");
    assert_eq!(attr(&created[0], "ce-specversion"), "1.0");
    assert_eq!(attr(&created[0], "ce-type"), "com.example.order.created");
    assert_eq!(attr(&created[0], "ce-source"), "//tern/orders-create");
    assert_eq!(attr(&created[0], "ce-subject"), id);
    let created_trace = attr(&created[0], "ce-traceparent");
    assert_eq!(trace_id(&created_trace), CALLER_TRACE, "{created_trace}");
    assert_ne!(
        created_trace,
        format!("00-{CALLER_TRACE}-a1b2c3d4e5f60718-01"),
        "the event names orders-create's own span as its parent, not the caller's"
    );
    let data: serde_json::Value = serde_json::from_slice(&created[0].data).unwrap();
    assert_eq!(data["order_id"], id.as_str());

    // A payment provider that propagates trace context answers within the same trace.
    let event =
        publish_payment_in_trace(&sys.pubsub, "pay-event-1", &id, Some(created_trace)).await;

    let paid = sys
        .collect("watch-orders", 1, Duration::from_secs(10))
        .await;
    assert_eq!(paid.len(), 1, "order.paid was not published");
    assert_eq!(attr(&paid[0], "ce-type"), "com.example.order.paid");
    assert_eq!(attr(&paid[0], "ce-subject"), id);
    assert_eq!(trace_id(&attr(&paid[0], "ce-traceparent")), CALLER_TRACE);

    // The consumer's log lines for the payment (its own and the access log's) name the same
    // trace, as Cloud Logging reads it.
    let logs = sys.functions["payments-events"].output_lines();
    let trace_of = |message: &str| {
        logs.iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .and_then(|l| {
                l["logging.googleapis.com/trace"]
                    .as_str()
                    .map(str::to_owned)
            })
    };
    let want = format!("projects/{}/traces/{CALLER_TRACE}", sys.pubsub.project);
    for message in ["order updated", "POST "] {
        assert_eq!(
            trace_of(message).as_deref(),
            Some(want.as_str()),
            "the consumer's {message:?} line: {logs:#?}"
        );
    }

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
    let stop = sys.deliver_payments(&consumer, Mode::Push, 2).await;

    // The amount does not match the order: 422 on every attempt.
    let publisher = EventPublisher::new(sys.pubsub.clone()).await.unwrap();
    let event = OutgoingEvent {
        id: "bad-amount".into(),
        source: "//payments-provider".into(),
        ty: "com.example.payment.completed".into(),
        subject: None,
        time: chrono::Utc::now(),
        data: payment(o["id"].as_str().unwrap(), 1, "EUR"),
        traceparent: None,
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
