//! Prometheus metrics every function reports with no code of its own.
//!
//! The runtime serves them as OpenMetrics text on `TERN_METRICS_PORT` (default
//! [`METRICS_PORT`], `off` to disable) at [`METRICS_PATH`], on a listener of its own: the port is
//! not routed publicly (Knative routes only the container port; the chart's `PodMonitoring`
//! scrapes the pod directly). Names follow the OpenTelemetry semantic conventions in their
//! Prometheus form (`http.server.request.duration` → `http_server_request_duration_seconds`);
//! Tern's own carry the `tern_` prefix.
//!
//! | series | from |
//! |---|---|
//! | `http_server_request_duration_seconds{http_request_method,http_route,http_response_status_code}` | every request but the health probes; `_count` is the request count |
//! | `http_server_active_requests{http_request_method,http_route}` | requests in flight |
//! | `tern_events_handled_total{cloudevents_event_type,outcome}` | event deliveries: `acknowledged`, `duplicate`, `retry`, `permanent_failure` |
//! | `db_client_connection_*` | the pool (`tern-db`) |
//! | `tern_outbox_*`, `messaging_client_*` | the outbox and the publisher (`tern-events`) |
//! | `tern_ready` | 1 when the last readiness probe passed |
//! | `process_*`, `tern_build_info` | the process |
//!
//! `http_route` is the route template from `TERN_HTTP_ROUTES` (the chart and the local run
//! render it from `routes.toml`), never the raw path: a request no route matches has an empty
//! `http_route`, so a scan of random paths cannot grow the series.
//!
//! Platform libraries register their own series through [`Metrics::register`] and refresh
//! gauges that are read, not counted (the pool's size, the outbox's backlog), in
//! [`Metrics::on_scrape`].

use crate::health;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::future::BoxFuture;
use http::{Method, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry, Unit};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

/// Where the metrics listener binds unless `TERN_METRICS_PORT` says otherwise: the
/// OpenTelemetry Prometheus exporter's port, clear of queue-proxy's (8012, 8013, 8022, 9090,
/// 9091) in the same pod.
pub const METRICS_PORT: u16 = 9464;

/// The path the metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// The OpenMetrics text media type the scrape answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request latency buckets in seconds: OpenTelemetry's for `http.server.request.duration`, with
/// 1 ms and 2.5 ms below (a Tern function answers most reads in a few milliseconds).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// How long one scrape's refresh may take before the scrape answers with what it has.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The function's metrics: a cheap handle, clone it freely.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    refresh: Mutex<Vec<Refresh>>,
    http: Arc<HttpMetrics>,
    process: Process,
    ready: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The runtime's own series for a function named `service` serving `routes`
    /// (`(method, template)` pairs), with build info from `revision`.
    pub fn new(service: &str, revision: Option<&str>, routes: &[(Method, String)]) -> Self {
        let mut registry = Registry::default();
        let http = Arc::new(HttpMetrics::new(routes));
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests, to the response head",
            Unit::Seconds,
            http.duration.clone(),
        );
        registry.register(
            "http_server_active_requests",
            "Number of active HTTP server requests",
            http.active.clone(),
        );
        registry.register(
            "tern_events_handled",
            "Event deliveries handled, by outcome: acknowledged, duplicate, retry (the sender redelivers), permanent_failure (heading for the dead-letter topic)",
            http.events.clone(),
        );
        let process = Process::default();
        process.register(&mut registry);
        let ready = Gauge::default();
        registry.register(
            "tern_ready",
            "1 when the last readiness probe passed, 0 when it failed or none came yet",
            ready.clone(),
        );
        registry.register(
            "tern_build",
            "The function and the runtime that built it",
            Info::new(vec![
                ("service", service.to_owned()),
                ("revision", revision.unwrap_or_default().to_owned()),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ]),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                refresh: Mutex::new(Vec::new()),
                http,
                process,
                ready,
            }),
        }
    }

    /// Adds a series. `name` is the OpenMetrics family name without its unit or `_total`
    /// suffix, which the encoder adds (`Unit::Seconds` → `_seconds`, a counter → `_total`).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        metric: impl Metric + 'static,
    ) {
        let mut registry = lock(&self.inner.registry);
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, metric),
            None => registry.register(name, help, metric),
        }
    }

    /// Runs `refresh` before each scrape, to set gauges that are read rather than counted. It
    /// is given two seconds; a slower one leaves the previous values.
    pub fn on_scrape<F>(&self, refresh: impl Fn() -> F + Send + Sync + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        lock(&self.inner.refresh).push(Arc::new(move || Box::pin(refresh())));
    }

    /// Refreshes the read gauges, then renders every series as OpenMetrics text.
    pub async fn render(&self) -> String {
        self.inner.process.refresh();
        let hooks: Vec<Refresh> = lock(&self.inner.refresh).clone();
        let all = futures::future::join_all(hooks.iter().map(|h| h()));
        if tokio::time::timeout(REFRESH_TIMEOUT, all).await.is_err() {
            tracing::warn!(
                timeout_ms = REFRESH_TIMEOUT.as_millis() as u64,
                "a metrics refresh did not finish in time; the scrape has its previous values"
            );
        }
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::text::encode(&mut out, &lock(&self.inner.registry))
        {
            tracing::error!(error = %e, "cannot render the metrics");
        }
        out
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    pub(crate) fn http(&self) -> Arc<HttpMetrics> {
        self.inner.http.clone()
    }
}

// ----- HTTP -----------------------------------------------------------------------------------

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    http_request_method: &'static str,
    http_route: Arc<str>,
    http_response_status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActiveLabels {
    http_request_method: &'static str,
    http_route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    cloudevents_event_type: String,
    outcome: &'static str,
}

/// The function's route templates (`TERN_HTTP_ROUTES`), to name a request by the template
/// its path matches, never by the path itself.
pub(crate) struct RouteTemplates {
    table: matchit::Router<Arc<str>>,
    unmatched: Arc<str>,
}

impl RouteTemplates {
    pub(crate) fn new(routes: &[(Method, String)]) -> Self {
        let mut table = matchit::Router::new();
        for (_, path) in routes {
            // Two methods on one path share its template; the first insert wins.
            let _ = table.insert(path.clone(), Arc::from(path.as_str()));
        }
        Self {
            table,
            unmatched: Arc::from(""),
        }
    }

    /// The template `path` matches; empty when none does.
    pub(crate) fn of(&self, path: &str) -> Arc<str> {
        self.table
            .at(path)
            .map_or_else(|_| self.unmatched.clone(), |m| m.value.clone())
    }
}

pub(crate) struct HttpMetrics {
    routes: RouteTemplates,
    duration: Family<RequestLabels, Histogram>,
    active: Family<ActiveLabels, Gauge>,
    events: Family<EventLabels, Counter>,
}

impl HttpMetrics {
    fn new(routes: &[(Method, String)]) -> Self {
        Self {
            routes: RouteTemplates::new(routes),
            duration: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            active: Family::default(),
            events: Family::default(),
        }
    }

    fn route(&self, path: &str) -> Arc<str> {
        self.routes.of(path)
    }
}

/// The method as OpenTelemetry labels it: the known ones by name, any other as `_OTHER`.
pub(crate) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Lowers the in-flight gauge however the request ends (answered, or its connection dropped).
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The middleware: times every request but the health probes, by route template and status.
///
/// A tower layer of its own rather than `axum::middleware::from_fn`: that one boxes the inner
/// service and the request's future on every call, which measured (`tern-bench stack`) as most
/// of this middleware's cost.
#[derive(Clone)]
pub(crate) struct RecordLayer(pub(crate) Arc<HttpMetrics>);

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            m: self.0.clone(),
            inner,
        }
    }
}

/// The service [`RecordLayer`] wraps around the stack.
#[derive(Clone)]
pub(crate) struct Record<S> {
    m: Arc<HttpMetrics>,
    inner: S,
}

impl<S> tower::Service<Request> for Record<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let path = req.uri().path();
        if path.starts_with(health::HEALTH_PREFIX) {
            return Box::pin(self.inner.call(req));
        }
        let route = self.m.route(path);
        let method = method_label(req.method());
        let gauge = self
            .m
            .active
            .get_or_create(&ActiveLabels {
                http_request_method: method,
                http_route: route.clone(),
            })
            .clone();
        gauge.inc();
        let in_flight = InFlight(gauge);
        let start = Instant::now();
        let m = self.m.clone();
        // Only a request with a body can carry an event.
        if *req.method() == Method::POST {
            let note = Arc::new(EventNote::default());
            let fut = EVENT.scope(note.clone(), self.inner.call(req));
            Box::pin(async move {
                let _in_flight = in_flight;
                let Ok(res) = fut.await;
                if let Some(ty) = note.ty() {
                    m.events
                        .get_or_create(&EventLabels {
                            cloudevents_event_type: ty,
                            outcome: note.outcome(res.status()),
                        })
                        .inc();
                }
                m.observe(method, route, res.status(), start);
                Ok(res)
            })
        } else {
            let fut = self.inner.call(req);
            Box::pin(async move {
                let _in_flight = in_flight;
                let Ok(res) = fut.await;
                m.observe(method, route, res.status(), start);
                Ok(res)
            })
        }
    }
}

impl HttpMetrics {
    fn observe(&self, method: &'static str, route: Arc<str>, status: StatusCode, start: Instant) {
        self.duration
            .get_or_create(&RequestLabels {
                http_request_method: method,
                http_route: route,
                http_response_status_code: status.as_u16(),
            })
            .observe(start.elapsed().as_secs_f64());
    }
}

// ----- events ---------------------------------------------------------------------------------

/// What the event extractors and the inbox tell the middleware about the request's event.
#[derive(Default)]
struct EventNote {
    ty: Mutex<Option<String>>,
    duplicate: AtomicBool,
}

impl EventNote {
    fn ty(&self) -> Option<String> {
        lock(&self.ty).clone()
    }

    fn outcome(&self, status: StatusCode) -> &'static str {
        if self.duplicate.load(std::sync::atomic::Ordering::Relaxed) && status.is_success() {
            "duplicate"
        } else if status.is_success() {
            "acknowledged"
        } else if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            "retry"
        } else {
            "permanent_failure"
        }
    }
}

tokio::task_local! {
    static EVENT: Arc<EventNote>;
}

/// Marks the request being handled as an event delivery of type `ty` (empty when the event
/// could not be decoded). Called by `tern-events`' extractors; outside a request, a no-op.
pub fn note_event(ty: &str) {
    let _ = EVENT.try_with(|n| *lock(&n.ty) = Some(ty.to_owned()));
}

/// Marks the event being handled as a duplicate (the inbox had it). Called by
/// `tern_events::inbox::first_delivery`; outside a request, a no-op.
pub fn note_duplicate() {
    let _ = EVENT.try_with(|n| {
        n.duplicate
            .store(true, std::sync::atomic::Ordering::Relaxed)
    });
}

// ----- the process ----------------------------------------------------------------------------

/// The standard process series, read from `/proc/self` at each scrape.
struct Process {
    start_time: Gauge<f64, AtomicU64>,
    cpu: Counter<f64, AtomicU64>,
    resident: Gauge,
    open_fds: Gauge,
}

impl Default for Process {
    fn default() -> Self {
        let start_time = Gauge::<f64, AtomicU64>::default();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        start_time.set(now.as_secs_f64());
        Self {
            start_time,
            cpu: Counter::default(),
            resident: Gauge::default(),
            open_fds: Gauge::default(),
        }
    }
}

impl Process {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "process_start_time",
            "When the runtime started, in seconds since the Unix epoch",
            Unit::Seconds,
            self.start_time.clone(),
        );
        registry.register_with_unit(
            "process_cpu",
            "User and system CPU time spent",
            Unit::Seconds,
            self.cpu.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            self.resident.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            self.open_fds.clone(),
        );
    }

    fn refresh(&self) {
        // /proc/self/stat fields 14 and 15 (utime, stime) are in USER_HZ, 100 on Linux.
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(after) = stat.rsplit_once(") ").map(|(_, s)| s)
        {
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let cpu = (ticks(11) + ticks(12)) / 100.0;
            let seen = self.cpu.get();
            if cpu > seen {
                self.cpu.inc_by(cpu - seen);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.resident.set(kb * 1024);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
    }
}

// ----- the listener ---------------------------------------------------------------------------

/// Serves `GET /metrics` on `listener` until the process ends.
pub(crate) fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    let app = axum::Router::new()
        .route(METRICS_PATH, axum::routing::get(scrape))
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
}

async fn scrape(State(metrics): State<Metrics>) -> Response {
    let body = metrics.render().await;
    let mut res = Response::new(axum::body::Body::from(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    res
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<(Method, String)> {
        vec![
            (Method::GET, "/api/orders/{id}".to_owned()),
            (Method::POST, "/api/orders".to_owned()),
        ]
    }

    #[test]
    fn routes_are_templates_and_anything_else_is_unmatched() {
        let m = HttpMetrics::new(&routes());
        assert_eq!(&*m.route("/api/orders/ord_123"), "/api/orders/{id}");
        assert_eq!(&*m.route("/api/orders"), "/api/orders");
        assert_eq!(&*m.route("/wp-admin/setup.php"), "");
        assert_eq!(&*m.route("/api/orders/ord_1/extra"), "");
    }

    #[test]
    fn outcomes_follow_what_the_sender_does_next() {
        let n = EventNote::default();
        assert_eq!(n.outcome(StatusCode::OK), "acknowledged");
        assert_eq!(n.outcome(StatusCode::NO_CONTENT), "acknowledged");
        assert_eq!(n.outcome(StatusCode::SERVICE_UNAVAILABLE), "retry");
        assert_eq!(n.outcome(StatusCode::GATEWAY_TIMEOUT), "retry");
        assert_eq!(n.outcome(StatusCode::TOO_MANY_REQUESTS), "retry");
        assert_eq!(n.outcome(StatusCode::BAD_REQUEST), "permanent_failure");
        assert_eq!(
            n.outcome(StatusCode::UNPROCESSABLE_ENTITY),
            "permanent_failure"
        );
        n.duplicate
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(n.outcome(StatusCode::OK), "duplicate");
        // A duplicate whose answer failed is still a failure.
        assert_eq!(n.outcome(StatusCode::SERVICE_UNAVAILABLE), "retry");
    }

    /// A series' value in the text, by its exact name and labels.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn requests_are_counted_by_template_status_and_event_outcome() {
        use tower::ServiceExt;
        let m = Metrics::new("orders-get", Some("orders-get-00001"), &routes());
        let app = axum::Router::new()
            .route(
                "/api/orders/{id}",
                axum::routing::get(|| async { "an order" }),
            )
            .route(
                "/api/orders",
                axum::routing::post(|| async {
                    note_event("com.example.payment.completed");
                    note_duplicate();
                    "seen"
                }),
            )
            .route(health::READY_PATH, axum::routing::get(|| async { "ok" }))
            .layer(RecordLayer(m.http()));
        for uri in [
            "/api/orders/ord_1",
            "/api/orders/ord_2",
            "/nope",
            "/_tern/ready",
        ] {
            let req = Request::get(uri)
                .body(axum::body::Body::empty())
                .expect("request");
            app.clone().oneshot(req).await.expect("infallible");
        }
        let req = Request::post("/api/orders")
            .body(axum::body::Body::empty())
            .expect("request");
        app.clone().oneshot(req).await.expect("infallible");

        let text = m.render().await;
        let count = |route: &str, code: u16| {
            let method = if route == "/api/orders" {
                "POST"
            } else {
                "GET"
            };
            value(
                &text,
                &format!(
                    "http_server_request_duration_seconds_count{{http_request_method=\"{method}\",http_route=\"{route}\",http_response_status_code=\"{code}\"}}"
                ),
            )
        };
        assert_eq!(count("/api/orders/{id}", 200), Some(2.0), "{text}");
        assert_eq!(count("", 404), Some(1.0), "{text}");
        assert_eq!(count("/api/orders", 200), Some(1.0), "{text}");
        assert!(
            !text.contains("/_tern/"),
            "health probes are not counted:\n{text}"
        );
        assert!(
            !text.contains("ord_1"),
            "raw paths never become labels:\n{text}"
        );
        assert_eq!(
            value(
                &text,
                "tern_events_handled_total{cloudevents_event_type=\"com.example.payment.completed\",outcome=\"duplicate\"}"
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "http_server_active_requests{http_request_method=\"GET\",http_route=\"/api/orders/{id}\"}"
            ),
            Some(0.0),
            "{text}"
        );
        for want in [
            "# TYPE process_start_time_seconds gauge",
            "# TYPE process_cpu_seconds counter",
            "tern_build_info{service=\"orders-get\",revision=\"orders-get-00001\",version=",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let rss = value(&text, "process_resident_memory_bytes").unwrap_or(0.0);
        assert!(rss > 1e6, "resident memory {rss} bytes");
    }
}
