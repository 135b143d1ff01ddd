//! The middleware stack, assembled in one place.
//!
//! A request passes these layers from top to bottom; the response comes back up:
//!
//! | layer | does |
//! |---|---|
//! | [`metrics::record`] | times the request by route template and status (unless `TERN_METRICS_PORT=off`) |
//! | `SetRequestId` | gives the request an `x-request-id` (a UUID) unless it has one |
//! | `PropagateRequestId` | copies `x-request-id` onto the response |
//! | [`access_log`] | opens the request span (request id, trace context: the caller's continued, or a new trace), logs one line per request, exports the span (`OTEL_EXPORTER_OTLP_ENDPOINT`) |
//! | `Compression` | gzip when the client accepts it |
//! | [`problem_bodies`] | turns any 4xx/5xx that is not yet a problem into one |
//! | `CatchPanic` | a panicking handler becomes a 500 problem; the process keeps serving |
//! | [`timeout`] | a request running past `TERN_REQUEST_TIMEOUT` becomes a 504 problem |
//! | `RequestBodyLimit` | a body over `TERN_BODY_LIMIT` becomes a 413 problem |
//! | router | `/_tern/live`, `/_tern/ready`, then the function's own service |

use crate::context::Context;
use crate::health;
use crate::metrics;
use crate::problem::{Problem, is_problem};
use crate::spans::{Finished, Spans};
use crate::trace_context::{self, TraceContext};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use http_body::Body as _;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tracing::Instrument;

/// Wraps a function's service in the runtime's routes and middleware.
pub fn assemble<S>(app: S, ctx: &Context) -> Router
where
    S: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    let cfg = ctx.config();
    let access = AccessLog {
        enabled: cfg.access_log,
        spans: ctx.spans(),
    };
    let router = Router::new()
        .route(health::LIVE_PATH, get(health::live))
        .route(health::READY_PATH, get(health::ready))
        .with_state(ctx.clone())
        .fallback_service(app)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn_with_state(access, access_log))
                .layer(CompressionLayer::new())
                .layer(middleware::from_fn(problem_bodies))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(middleware::from_fn_with_state(cfg.request_timeout, timeout))
                .layer(RequestBodyLimitLayer::new(cfg.body_limit)),
        );
    // Outermost, so the latency covers the whole stack and every status is counted as sent.
    match cfg.metrics_port {
        Some(_) => router.layer(metrics::RecordLayer(ctx.metrics().http())),
        None => router,
    }
}

#[derive(Clone)]
struct AccessLog {
    enabled: bool,
    /// Where the request's span goes, when spans are exported.
    spans: Option<Arc<Spans>>,
}

/// Opens the request span and logs one line per request with Cloud Logging's `httpRequest`.
async fn access_log(State(cfg): State<AccessLog>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // This request is a span of the caller's trace, or the first of a new one.
    let tc = match (TraceContext::from_headers(req.headers()), &cfg.spans) {
        (Some(caller), Some(spans)) => spans.continue_caller(&caller),
        (Some(caller), None) => caller.child(),
        (None, Some(spans)) => spans.root(),
        (None, None) => TraceContext::root(|_| false),
    };
    // The span's fields are known now: recorded once, with the span (a consumer that continues
    // its event's trace records the new ids on it later).
    let span = tracing::info_span!(
        "request",
        request_id = request_id.as_str(),
        trace_id = tc.trace_id.as_str(),
        span_id = tc.span_id.as_str(),
        trace_sampled = tc.sampled,
    );
    let health = req.uri().path().starts_with(health::HEALTH_PREFIX);
    // The request's span, exported once it is answered (with the trace it ended in: a
    // consumer continues its event's).
    let spans = cfg.spans.clone().filter(|_| !health);
    let exported = spans
        .as_ref()
        .map(|_| (req.method().clone(), req.uri().path().to_owned()));
    let started = SystemTime::now();
    let next = |req| async move {
        let (res, tc) = trace_context::scope(tc, next.run(req)).await;
        if let (Some(spans), Some((method, path))) = (spans, exported) {
            let status = res.status();
            spans.finish(
                &tc,
                &Finished {
                    method,
                    path,
                    status,
                    start: started,
                    end: SystemTime::now(),
                },
            );
        }
        (res, tc)
    };
    if !cfg.enabled || health {
        return next(req).instrument(span).await.0;
    }
    let method = req.method().clone();
    let url = req.uri().to_string();
    let protocol = protocol(req.version());
    let user_agent = header_str(&req, header::USER_AGENT);
    let remote_ip = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
        })
        .unwrap_or_default();
    let (res, tc) = next(req).instrument(span.clone()).await;
    let status = res.status().as_u16();
    let latency = format!("{:.6}s", start.elapsed().as_secs_f64());
    let size = res.body().size_hint().exact();
    let level = if status >= 500 {
        tracing::Level::ERROR
    } else if status >= 400 {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    let line = crate::logging::Access {
        level,
        method: method.as_str(),
        url: &url,
        status,
        latency: &latency,
        response_size: size,
        user_agent: &user_agent,
        remote_ip: &remote_ip,
        protocol,
        request_id: &request_id,
        trace: &tc,
        location: (file!(), line!(), TARGET),
    };
    // With JSON logs, the line goes to the log writer directly (`logging::direct`), when the
    // filter lets this module's lines of its level through.
    if let Some(json) = crate::logging::direct() {
        // Asked inside the request span, where the event was logged: a filter may name it.
        let enabled = span.in_scope(|| match level {
            tracing::Level::ERROR => tracing::enabled!(tracing::Level::ERROR),
            tracing::Level::WARN => tracing::enabled!(tracing::Level::WARN),
            _ => tracing::enabled!(tracing::Level::INFO),
        });
        if enabled {
            json.access(&line);
        }
        return res;
    }
    let _enter = span.enter();
    access_event(&line);
    res
}

/// Where the access line is logged from, as its `sourceLocation.function` shows it.
pub(crate) const TARGET: &str = module_path!();

/// The access line as a `tracing` event, in the request span (text logs, or a subscriber that
/// is not ours): the fields the JSON layer turns into `httpRequest`.
pub(crate) fn access_event(a: &crate::logging::Access<'_>) {
    let (method, url, status) = (a.method, a.url, a.status);
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                http.method = %method,
                http.url = %url,
                http.status = status,
                http.latency = %a.latency,
                http.response_size = a.response_size,
                http.user_agent = %a.user_agent,
                http.remote_ip = %a.remote_ip,
                http.protocol = %a.protocol,
                "{method} {url} {status}"
            )
        };
    }
    match a.level {
        tracing::Level::ERROR => line!(error),
        tracing::Level::WARN => line!(warn),
        _ => line!(info),
    }
}

/// The protocol as `httpRequest.protocol` shows it (the `Debug` form of [`http::Version`]).
fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP",
    }
}

fn header_str(req: &Request, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Every 4xx/5xx leaves as `application/problem+json`, whoever produced it (the router's 404
/// and 405, the body limit's 413, a handler that returned a bare status), except HTML error
/// pages that a web function renders for people.
async fn problem_bodies(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&res) || is_page(&res)
    {
        return res;
    }
    let (parts, _) = res.into_parts();
    let mut problem = Problem::for_status(status);
    if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        problem = problem.with_detail("The request body is larger than this function accepts.");
    }
    let mut out = problem.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// An HTML error page a function rendered on purpose is left alone.
fn is_page(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// A handler running past the request timeout is dropped and answered with 504.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            Problem::for_status(http::StatusCode::GATEWAY_TIMEOUT)
                .with_detail(format!(
                    "The function did not answer within {}ms.",
                    limit.as_millis()
                ))
                .into_response()
        }
    }
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "handler panicked");
    Problem::internal().into_response()
}

/// `x-request-id` for a request that came without one: a random (version 4) UUID from the
/// thread's own generator. tower-http's `MakeRequestUuid` asks the kernel (`getrandom(2)`) for
/// every request: one system call per request (decision 0030).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let id = uuid_v4(rand::random::<u128>());
        http::HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// `bits` as a version 4, RFC 9562 variant UUID in its hyphenated form.
fn uuid_v4(bits: u128) -> String {
    let v = (bits & !(0xf << 76) & !(0b11 << 62)) | (0x4 << 76) | (0b10 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn protocol_names_are_the_versions_debug_forms() {
        for v in [
            http::Version::HTTP_09,
            http::Version::HTTP_10,
            http::Version::HTTP_11,
            http::Version::HTTP_2,
            http::Version::HTTP_3,
        ] {
            assert_eq!(super::protocol(v), format!("{v:?}"));
        }
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        for bits in [0u128, u128::MAX, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef] {
            let id = super::uuid_v4(bits);
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
        assert_ne!(
            super::uuid_v4(rand::random()),
            super::uuid_v4(rand::random())
        );
    }
}
