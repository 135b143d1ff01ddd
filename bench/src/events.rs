//! The event path: CloudEvents/s through payments-events, and the latency from a payment
//! published to its order.paid received, through a delivery loop as Google Cloud delivers.

use crate::harness::{Bench, HTTP_CONNECTIONS, say};
use crate::load;
use crate::stats::percentile;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tern_events::{EventPublisher, OutgoingEvent};
use tern_local::{Mode, StopToken, Target};

/// 4: CloudEvents/s through payments-events, and publish → order.paid latency end to end.
pub async fn event_path(b: &Bench) -> Result<Value, String> {
    say(
        "event path: CloudEvents/s through payments-events; payment published → order.paid received",
    );
    let consumer = b.start("payments-events", &[])?;
    let url = format!("{}/events/payments", consumer.url());
    let ids = b.seed_orders(if b.quick { 20_000 } else { 60_000 }).await?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = std::sync::Arc::new(ids);
    let start = Instant::now();
    let workers = (0..HTTP_CONNECTIONS).map(|_| {
        let (ids, next, url, dur) = (ids.clone(), next.clone(), url.clone(), b.dur);
        tokio::spawn(async move {
            let c = load::client();
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while start.elapsed() < dur {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let body = push_body(&format!("bench-{i}"), id);
                let t = Instant::now();
                if load::one(&c, &url, Some(&body)).await != 200 {
                    errors += 1;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (lat, errors)
        })
    });
    let (mut lat, mut errors) = (Vec::new(), 0);
    for w in futures::future::join_all(workers).await {
        let (l, e) = w.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors += e;
    }
    let throughput = lat.len() as f64 / start.elapsed().as_secs_f64();
    let e2e = end_to_end_latency(b, &consumer.url(), if b.quick { 50 } else { 200 }).await?;
    Ok(json!({
        "cloudevents_per_s": throughput,
        "p50_ms": percentile(&lat, 50.0),
        "p99_ms": percentile(&lat, 99.0),
        "errors": errors,
        "end_to_end_ms": e2e,
    }))
}

/// A Pub/Sub push request carrying a payment.completed for `order_id`.
pub fn push_body(event_id: &str, order_id: &str) -> String {
    use base64::Engine;
    let data = json!({"order_id": order_id, "payment_id": format!("pay-{event_id}"), "amount_cents": 1250, "currency": "EUR"});
    json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
            "attributes": {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "//bench", "ce-type": "com.example.payment.completed"},
            "messageId": event_id,
        },
        "subscription": "projects/bench/subscriptions/payments-events-payments"
    })
    .to_string()
}

/// Publishes `n` payments (10 at a time) and times each until its order.paid arrives.
async fn end_to_end_latency(b: &Bench, consumer: &str, n: usize) -> Result<Value, String> {
    let admin = tern_local::Admin::new(b.pubsub()).await?;
    admin.subscription("bench-e2e", "orders").await?;
    let stop = StopToken::default();
    let dlq = EventPublisher::new(b.pubsub().clone()).await?;
    let target = Target {
        subscription: "payments-events-payments".into(),
        topic: "payments".into(),
        url: format!("{consumer}/events/payments"),
    };
    tokio::spawn(tern_local::deliver(
        tern_local::Policy::new(Mode::Push),
        b.pubsub().clone(),
        target,
        dlq,
        stop.clone(),
    ));
    let ids = b.seed_orders(n as i64).await?;
    let publisher = EventPublisher::new(b.pubsub().clone()).await?;
    let sent: Arc<RwLock<HashMap<String, Instant>>> = Arc::default();

    let receiver = {
        let sub = tern_local::subscriber(b.pubsub()).await?;
        let path = b.pubsub().subscription_path("bench-e2e");
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut stream = tern_local::pull(&sub, &path);
            let mut lat = Vec::new();
            while lat.len() < n {
                match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                    Ok(Some(Ok((m, h)))) => {
                        h.ack();
                        if m.attributes
                            .get("ce-type")
                            .is_some_and(|t| t == "com.example.order.paid")
                            && let Some(t) = m
                                .attributes
                                .get("ce-subject")
                                .and_then(|s| sent.read().ok()?.get(s).copied())
                        {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    Ok(Some(Err(_))) => {}
                    _ => break,
                }
            }
            lat
        })
    };
    for chunk in ids.chunks(10) {
        let sends = chunk.iter().map(|id| {
            let ev = OutgoingEvent {
                id: format!("e2e-{id}"),
                source: "//bench".into(),
                ty: "com.example.payment.completed".into(),
                subject: Some(id.clone()),
                time: chrono::Utc::now(),
                data: json!({"order_id": id, "payment_id": format!("p-{id}"), "amount_cents": 1250, "currency": "EUR"}),
                traceparent: None,
            };
            if let Ok(mut s) = sent.write() {
                s.insert(id.clone(), Instant::now());
            }
            let publisher = publisher.clone();
            async move { publisher.publish("payments", &ev).await }
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|e| e.to_string())?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lat = receiver.await.map_err(|e| e.to_string())?;
    stop.cancel();
    Ok(
        json!({"events": n, "received": lat.len(), "p50_ms": percentile(&lat, 50.0), "p99_ms": percentile(&lat, 99.0)}),
    )
}
