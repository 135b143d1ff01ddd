//! Spans over OTLP into a real Jaeger (built from its Go module by `scripts/tools traces`): a
//! web order, its `order.created`, the payment that answers it and the consumer that marks the
//! order paid are one trace, and Jaeger's query API finds both sides of the Pub/Sub hop.

use serde_json::Value;
use std::time::Duration;
use tern_e2e::*;
use tern_local::Mode;
use tern_local::jaeger::Jaeger;

/// The trace id of a `traceparent` value, and its span id.
fn ids(traceparent: &str) -> (String, String) {
    let mut parts = traceparent.split('-').skip(1);
    let trace = parts.next().unwrap_or_default().to_owned();
    let span = parts.next().unwrap_or_default().to_owned();
    (trace, span)
}

/// The spans of `trace` in Jaeger, each as (service, operation, span id, parent span id).
async fn spans(http: &reqwest::Client, jaeger: &str, trace: &str) -> Vec<[String; 4]> {
    let Some(body) = fetch_json(http, &format!("{jaeger}/api/traces/{trace}")).await else {
        return Vec::new();
    };
    let t = &body["data"][0];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    t["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|span| {
            let service = &t["processes"][span["processID"].as_str().unwrap_or_default()];
            [
                s(&service["serviceName"]),
                s(&span["operationName"]),
                s(&span["spanID"]),
                s(&span["references"][0]["spanID"]),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_web_order_and_its_payment_are_one_trace_in_jaeger() {
    let jaeger = Jaeger::start(&scratch("jaeger"), &root(), 0, 0)
        .expect("Jaeger (scripts/tools traces builds .local/bin/jaeger)");
    let mut sys = System::new().await;
    sys.set("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint());
    sys.subscribe("watch-orders", "orders").await;
    let web = sys.start("web");
    let consumer = sys.start("payments-events");
    let stop = sys.deliver_payments(&consumer, Mode::Push, 5).await;

    // A browser without trace context: the web function starts the trace.
    let id = sys.web_order(&web, None).await;
    let created = sys
        .collect("watch-orders", 1, Duration::from_secs(10))
        .await;
    assert_eq!(created.len(), 1, "order.created was not published");
    let created_tp = attr(&created[0], "ce-traceparent");
    let (trace, web_span) = ids(&created_tp);
    assert!(created_tp.ends_with("-01"), "sampled: {created_tp}");

    // The payment provider answers within the trace; the consumer marks the order paid.
    publish_payment_in_trace(&sys.pubsub, "pay-traced-1", &id, Some(created_tp.clone())).await;
    let paid = sys
        .collect("watch-orders", 1, Duration::from_secs(10))
        .await;
    assert_eq!(paid.len(), 1, "order.paid was not published");
    let (paid_trace, consumer_span) = ids(&attr(&paid[0], "ce-traceparent"));
    assert_eq!(paid_trace, trace);

    // Jaeger has both sides of the hop: the web order's span, and the consumer's span as its
    // child (the payment named the web span as its parent), within the batch delay.
    let http = reqwest::Client::new();
    let found = eventually(
        "both spans of the trace in Jaeger",
        Duration::from_secs(20),
        || async {
            let spans = spans(&http, &jaeger.url(), &trace).await;
            let has = |service: &str, op: &str| {
                spans
                    .iter()
                    .find(|s| s[0] == service && s[1] == op)
                    .cloned()
            };
            match (
                has("web", "POST /orders"),
                has("payments-events", "POST /events/payments"),
            ) {
                (Some(w), Some(c)) => Some((w, c, spans)),
                _ => None,
            }
        },
    )
    .await;
    let (web_side, consumer_side, all) = found;
    assert_eq!(
        web_side[2], web_span,
        "the web span is the one order.created names"
    );
    assert_eq!(
        consumer_side[2], consumer_span,
        "the consumer span is the one order.paid names"
    );
    assert_eq!(
        consumer_side[3], web_span,
        "the consumer's span continues the web order's: {all:?}"
    );
    // Every span of the web function is named after one of its routes: the readiness probes
    // queue-proxy sent all along (which match no route) made none.
    let table = table();
    let routes: Vec<String> = table
        .function("web")
        .expect("web")
        .routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let operations = fetch_json(
        &http,
        &format!("{}/api/services/web/operations", jaeger.url()),
    )
    .await
    .expect("Jaeger's operations of web");
    let operations = operations["data"].as_array().expect("a list");
    assert!(!operations.is_empty());
    assert!(
        operations
            .iter()
            .all(|o| routes.iter().any(|r| o.as_str() == Some(r.as_str()))),
        "web's spans are its routes only: {operations:?} (routes {routes:?}; {all:?})"
    );
    stop.cancel();
}
