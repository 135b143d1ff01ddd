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
    /// Traces starting here are sampled when the trace id's low 64 bits, shifted right by one,
    /// fall under this (the SDK's TraceIdRatioBased).
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
            "Finished spans not exported: the queue to the collector was full, or the collector refused them or did not answer",
            None,
            dropped.clone(),
        );
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export_loop(
            rx,
            Export {
                exporter,
                endpoint: export.endpoint.clone(),
                dropped: dropped.clone(),
                failing: false,
            },
        ));
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

    /// This request's span in an HTTP caller's trace: sampled when the caller sampled it *and*
    /// the ratio takes its trace id, so a client (any client of a public function) cannot make
    /// a function export more than its ratio. Every function decides alike on one trace id, so
    /// a trace is whole or absent. An event's context is kept as its producer decided
    /// ([`crate::platform::continue_trace`]): that decision was already bound by the ratio.
    pub(crate) fn continue_caller(&self, caller: &TraceContext) -> TraceContext {
        let mut tc = caller.child();
        tc.sampled = tc.sampled && sampled(&tc.trace_id, self.threshold);
        tc
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
            // TLS ends at the load balancer; the function is reached over plain HTTP.
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("url.path", request.path.clone()),
            KeyValue::new(
                "http.response.status_code",
                i64::from(request.status.as_u16()),
            ),
        ];
        if request.status.is_server_error() {
            attributes.push(KeyValue::new(
                "error.type",
                request.status.as_u16().to_string(),
            ));
        }
        // HTTP semantic conventions: `METHOD /route`, `METHOD` without a route, `HTTP` for a
        // method outside the known ones.
        let method_name = if method == "_OTHER" { "HTTP" } else { method };
        let name = if route.is_empty() {
            Cow::Borrowed(method_name)
        } else {
            attributes.push(KeyValue::new("http.route", route.to_string()));
            Cow::Owned(format!("{method_name} {route}"))
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
            // Server spans: a 5xx is the server's error (`error.type` says which); a 4xx is the
            // client's.
            status: if request.status.is_server_error() {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        };
        if self.queue.try_send(Msg::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    /// Sends what is queued and waits for it (shutdown), [`FLUSH_TIMEOUT`] at most in all: a
    /// collector that hangs costs the shutdown that long, not the export timeout.
    pub(crate) async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
            if self.queue.send(Msg::Flush(done)).await.is_ok() {
                let _ = sent.await;
            }
        })
        .await;
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

/// OpenTelemetry's TraceIdRatioBased: a trace is sampled when the low 64 bits of its id,
/// shifted right by one, fall under `ratio` of their range, so every process decides alike.
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

/// The export task's side: the exporter, and what it counts and remembers.
struct Export {
    exporter: opentelemetry_otlp::SpanExporter,
    endpoint: String,
    dropped: Counter,
    /// Whether the last export failed (logged when it starts and when it ends, not per batch).
    failing: bool,
}

/// Drains the queue: a batch leaves when it is [`BATCH`] spans, when its first span has
/// waited [`DELAY`], or on a flush.
async fn export_loop(mut rx: mpsc::Receiver<Msg>, mut export: Export) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    let mut due = tokio::time::Instant::now();
    loop {
        let msg = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout_at(due, rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => {
                    export.send(&mut batch).await;
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
                    export.send(&mut batch).await;
                }
            }
            Some(Msg::Flush(done)) => {
                export.send(&mut batch).await;
                let _ = done.send(());
            }
            None => {
                export.send(&mut batch).await;
                return;
            }
        }
    }
}

impl Export {
    /// Exports `batch` (emptying it); a batch that fails is dropped and counted.
    async fn send(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = batch.len();
        let result = tokio::time::timeout(
            EXPORT_TIMEOUT + Duration::from_secs(1),
            self.exporter.export(std::mem::take(batch)),
        )
        .await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("timed out".to_owned()),
        };
        if error.is_some() {
            self.dropped.inc_by(spans as u64);
        }
        let endpoint = self.endpoint.as_str();
        match (error, self.failing) {
            (None, true) => {
                self.failing = false;
                tracing::info!(endpoint, "span export recovered");
            }
            (Some(error), false) => {
                self.failing = true;
                tracing::warn!(
                    endpoint,
                    spans,
                    error,
                    "span export failing; spans are dropped (tern_spans_dropped_total) until it recovers"
                );
            }
            _ => {}
        }
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
    /// over without waiting, what does not fit in the queue is dropped and counted, and the
    /// shutdown's flush returns (bounded by FLUSH_TIMEOUT) though the export is stuck.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        // The export task takes at most one batch to the hung collector and waits there; the
        // queue holds QUEUE more: of QUEUE + BATCH + 100 spans, at least 100 are dropped.
        let extra = 100;
        for _ in 0..QUEUE + BATCH + extra {
            spans.finish(&tc, &request);
        }
        let dropped = |text: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("tern_spans_dropped_total ")?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        let text = metrics.render().await;
        assert!(dropped(&text) >= extra as f64, "{text}");
        // The shutdown's flush gives up on the stuck export and returns.
        spans.flush().await;
        drop(hung);
    }
}
