//! Spans over OTLP: every request but the health probes is one server span, with the ids its
//! log lines carry ([`crate::trace_context`]), sent in batches over OTLP/HTTP (protobuf) to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` ([`crate::RuntimeConfig::traces`]): in the cluster, GKE's
//! managed OpenTelemetry collector, which writes them to Cloud Trace; locally, Jaeger.
//!
//! A request never waits for the export: a finished span goes into a bounded queue
//! ([`QUEUE`] spans) that one task drains every [`DELAY`] or every [`BATCH`] spans. When the
//! collector is slow or away, the queue fills and further spans are dropped and counted
//! (`tern_spans_dropped_total`); the request path costs the same either way.

use crate::config::{KnativeIdentity, TraceExport};
use crate::metrics::{Metrics, RouteTemplates, method_label};
use crate::trace_context::TraceContext;
use http::Method;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Spans waiting for export; more are dropped (OpenTelemetry's default queue size).
pub(crate) const QUEUE: usize = 2048;
/// At most this many spans per export request (OpenTelemetry's default batch size).
pub(crate) const BATCH: usize = 512;
/// A span waits at most this long before its batch is sent.
pub(crate) const DELAY: Duration = Duration::from_secs(1);
/// One export request may take this long before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Shutdown waits this long for the last batch.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

enum Msg {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The running exporter: where finished requests hand their spans.
pub(crate) struct Spans {
    queue: mpsc::Sender<Msg>,
    /// Traces starting here are sampled when the trace id's low 63 bits fall under this.
    threshold: u64,
    routes: RouteTemplates,
    scope: InstrumentationScope,
    dropped: Counter,
}

impl std::fmt::Debug for Spans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spans")
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Spans {
    /// Starts the export task (on the running Tokio runtime) for `export`.
    pub(crate) fn start(
        export: &TraceExport,
        identity: &KnativeIdentity,
        routes: &[(Method, String)],
        metrics: &Metrics,
    ) -> Result<Arc<Self>, String> {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(export.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot export spans to {}: {e}", export.endpoint))?;
        let mut resource = Resource::builder_empty().with_service_name(identity.service.clone());
        if let Some(revision) = &identity.revision {
            resource = resource.with_attribute(KeyValue::new("service.version", revision.clone()));
        }
        exporter.set_resource(&resource.build());
        let dropped = Counter::default();
        metrics.register(
            "tern_spans_dropped",
            "Finished spans dropped because the export queue was full (the collector is slow or away)",
            None,
            dropped.clone(),
        );
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export_loop(rx, exporter, export.endpoint.clone()));
        Ok(Arc::new(Self {
            queue,
            threshold: threshold(export.ratio),
            routes: RouteTemplates::new(routes),
            scope: InstrumentationScope::builder("tern")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            dropped,
        }))
    }

    /// A trace starting here, sampled by `OTEL_TRACES_SAMPLER`.
    pub(crate) fn root(&self) -> TraceContext {
        TraceContext::root(|trace_id| sampled(trace_id, self.threshold))
    }

    /// Hands the span of a finished request to the export task, when its trace is sampled.
    pub(crate) fn finish(&self, tc: &TraceContext, request: &Finished) {
        if !tc.sampled {
            return;
        }
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(&tc.trace_id),
            SpanId::from_hex(&tc.span_id),
        ) else {
            return;
        };
        let parent = tc
            .parent_span_id
            .as_deref()
            .and_then(|p| SpanId::from_hex(p).ok());
        let route = self.routes.of(&request.path);
        let method = method_label(&request.method);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", request.path.clone()),
            KeyValue::new(
                "http.response.status_code",
                i64::from(request.status.as_u16()),
            ),
        ];
        let name = if route.is_empty() {
            Cow::Borrowed(method)
        } else {
            attributes.push(KeyValue::new("http.route", route.to_string()));
            Cow::Owned(format!("{method} {route}"))
        };
        let span = SpanData {
            span_context: SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: parent.is_some(),
            span_kind: SpanKind::Server,
            name,
            start_time: request.start,
            end_time: request.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // Server spans: a 5xx is the server's error; a 4xx is the client's.
            status: if request.status.is_server_error() {
                Status::error(request.status.to_string())
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        };
        if self.queue.try_send(Msg::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    /// Sends what is queued and waits for it (shutdown), within [`FLUSH_TIMEOUT`].
    pub(crate) async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.queue.send(Msg::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, sent).await;
        }
    }
}

/// What the span of a finished request records.
pub(crate) struct Finished {
    pub method: Method,
    pub path: String,
    pub status: http::StatusCode,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// OpenTelemetry's TraceIdRatioBased: a trace is sampled when the low 63 bits of its id fall
/// under `ratio` of their range, so every process that starts a trace decides alike.
fn threshold(ratio: f64) -> u64 {
    (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64
}

fn sampled(trace_id: &str, threshold: u64) -> bool {
    let low = trace_id
        .get(16..)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    (low >> 1) < threshold
}

/// Drains the queue: a batch leaves when it is [`BATCH`] spans, when its first span has
/// waited [`DELAY`], or on a flush. A failed export drops its batch (logged when exports
/// start failing and when they recover, not per batch).
async fn export_loop(
    mut rx: mpsc::Receiver<Msg>,
    exporter: opentelemetry_otlp::SpanExporter,
    endpoint: String,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    let mut failing = false;
    let mut due = tokio::time::Instant::now();
    loop {
        let msg = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(due, rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => {
                    send(&exporter, &mut batch, &mut failing, &endpoint).await;
                    continue;
                }
            }
        };
        match msg {
            Some(Msg::Span(span)) => {
                if batch.is_empty() {
                    due = tokio::time::Instant::now() + DELAY;
                }
                batch.push(*span);
                if batch.len() >= BATCH {
                    send(&exporter, &mut batch, &mut failing, &endpoint).await;
                }
            }
            Some(Msg::Flush(done)) => {
                send(&exporter, &mut batch, &mut failing, &endpoint).await;
                let _ = done.send(());
            }
            None => {
                send(&exporter, &mut batch, &mut failing, &endpoint).await;
                return;
            }
        }
    }
}

async fn send(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    failing: &mut bool,
    endpoint: &str,
) {
    if batch.is_empty() {
        return;
    }
    let spans = batch.len();
    let result = tokio::time::timeout(
        EXPORT_TIMEOUT + Duration::from_secs(1),
        exporter.export(std::mem::take(batch)),
    )
    .await;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_owned()),
    };
    match (error, *failing) {
        (None, true) => {
            *failing = false;
            tracing::info!(endpoint, "span export recovered");
        }
        (Some(error), false) => {
            *failing = true;
            tracing::warn!(
                endpoint,
                spans,
                error,
                "span export failing; spans are dropped until it recovers"
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_samples_by_trace_id_alike_everywhere() {
        let all = threshold(1.0);
        let none = threshold(0.0);
        let half = threshold(0.5);
        let low = "4bf92f3577b34da60000000000000010";
        let high = "4bf92f3577b34da6ffffffffffffff00";
        assert!(sampled(low, all) && sampled(high, all));
        assert!(!sampled(low, none) && !sampled(high, none));
        assert!(sampled(low, half));
        assert!(!sampled(high, half));
        // About half of random trace ids.
        let n = (0..10_000)
            .filter(|_| sampled(&format!("{:032x}", rand::random::<u128>()), half))
            .count();
        assert!((4_500..5_500).contains(&n), "{n} of 10000");
    }

    /// A collector that accepts connections and never answers: requests still hand their spans
    /// over without waiting, and what does not fit in the queue is dropped and counted.
    #[tokio::test]
    async fn a_collector_that_hangs_costs_the_requests_nothing() {
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let export = TraceExport {
            endpoint: format!("http://{}/v1/traces", hung.local_addr().unwrap()),
            ratio: 1.0,
        };
        let identity = KnativeIdentity {
            service: "orders-get".into(),
            revision: None,
            configuration: None,
        };
        let routes = [(Method::GET, "/api/orders/{id}".to_owned())];
        let metrics = Metrics::new("orders-get", None, &routes);
        let spans = Spans::start(&export, &identity, &routes, &metrics).unwrap();
        let tc = spans.root();
        assert!(
            tc.sampled,
            "parentbased_always_on samples every trace started here"
        );
        let request = Finished {
            method: Method::GET,
            path: "/api/orders/ord_1".into(),
            status: http::StatusCode::OK,
            start: SystemTime::now(),
            end: SystemTime::now(),
        };
        // On this single-threaded runtime the export task cannot run between these calls: the
        // queue takes QUEUE spans and the rest are dropped, none waited for.
        let extra = 100;
        for _ in 0..QUEUE + extra {
            spans.finish(&tc, &request);
        }
        let text = metrics.render().await;
        let dropped = text.lines().find_map(|l| {
            l.strip_prefix("tern_spans_dropped_total ")?
                .parse::<f64>()
                .ok()
        });
        assert_eq!(dropped, Some(extra as f64), "{text}");
        // An unsampled trace costs nothing at all.
        let unsampled = TraceContext::root(|_| false);
        spans.finish(&unsampled, &request);
        let text = metrics.render().await;
        assert!(
            text.contains(&format!("tern_spans_dropped_total {extra}")),
            "{text}"
        );
        drop(hung);
    }
}
