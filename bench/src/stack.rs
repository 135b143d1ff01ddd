//! 7b: what the runtime's own stack costs per request, in process and without sockets, so the
//! cost of the metrics middleware is seen apart from wrk's noise and the database round trip.
//!
//! The whole stack `tern::platform::assemble` builds (request id, access log switched off,
//! compression, problem bodies, panic catcher, timeout, body limit, and the metrics middleware
//! outermost) wraps a handler that answers a constant on the route template orders-get serves.
//! Two stacks, the metrics on and off (`TERN_METRICS_PORT=off`), are driven one request at a
//! time, interleaved sample by sample; each sample is the mean time of `PER_SAMPLE` requests.

use crate::harness::say;
use crate::stats::Spread;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use serde_json::{Value, json};
use std::time::Instant;
use tern::{Context, Env};
use tower::ServiceExt;

/// Requests per sample.
const PER_SAMPLE: u32 = 20_000;
/// The route, as orders-get declares it.
const ROUTE: &str = "/api/orders/{id}";

fn stack(metrics: bool) -> Result<Router, String> {
    let env = Env::from_pairs([
        ("TERN_HTTP_ROUTES", format!("GET {ROUTE}")),
        ("TERN_ACCESS_LOG", "false".to_owned()),
        (
            "TERN_METRICS_PORT",
            if metrics { "9464" } else { "off" }.to_owned(),
        ),
    ]);
    let ctx = Context::for_env(env).map_err(|e| e.to_string())?;
    let app = Router::new().route(ROUTE, get(|| async { r#"{"id":"x"}"# }));
    Ok(tern::platform::assemble(app, &ctx))
}

/// Mean nanoseconds per request over `PER_SAMPLE` requests through `router`.
async fn sample(router: &Router) -> Result<f64, String> {
    let start = Instant::now();
    for i in 0..PER_SAMPLE {
        let req = http::Request::get(format!("/api/orders/{i}"))
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let res = router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("the stack answered {}", res.status()));
        }
        axum::body::to_bytes(res.into_body(), 1024)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(start.elapsed().as_nanos() as f64 / f64::from(PER_SAMPLE))
}

/// Runs `samples` interleaved samples of each stack.
pub async fn stack_cost(samples: usize) -> Result<Value, String> {
    say("runtime stack in process: ns per request with the metrics on and off");
    let (on, off) = (stack(true)?, stack(false)?);
    // One warm-up sample each: allocator pools, the metric families' first entries.
    sample(&on).await?;
    sample(&off).await?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        with.push(sample(&on).await?);
        without.push(sample(&off).await?);
    }
    let (with_s, without_s) = (Spread::of(&with), Spread::of(&without));
    say(&format!(
        "  metrics on {:.0} ns, off {:.0} ns per request (medians of {samples})",
        with_s.median, without_s.median
    ));
    Ok(json!({
        "requests_per_sample": PER_SAMPLE,
        "metrics_on_ns": with_s,
        "metrics_off_ns": without_s,
        "metrics_ns_per_request": with_s.median - without_s.median,
    }))
}
