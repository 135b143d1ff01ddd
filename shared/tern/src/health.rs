//! Liveness and readiness, on the reserved prefix [`HEALTH_PREFIX`].
//!
//! Liveness answers 200 while the process can run a handler at all. Readiness answers 503
//! while draining after SIGTERM and while any [`ReadinessCheck`](crate::ReadinessCheck)
//! (the database pool, say) fails, so Knative stops routing to an instance that cannot serve.

use crate::context::Context;
use crate::problem::Problem;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Paths under this prefix belong to the runtime; the route table may not use them.
pub const HEALTH_PREFIX: &str = "/_tern/";
/// Liveness probe path.
pub const LIVE_PATH: &str = "/_tern/live";
/// Readiness probe path.
pub const READY_PATH: &str = "/_tern/ready";

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn live() -> Response {
    Json(serde_json::json!({"status": "live"})).into_response()
}

/// Answers the readiness probe and records the answer in `tern_ready` (the alert on a function
/// with min-scale > 0 and no ready instance reads it).
pub(crate) async fn ready(State(ctx): State<Context>) -> Response {
    let res = readiness(&ctx).await;
    ctx.metrics().set_ready(res.status().is_success());
    res
}

async fn readiness(ctx: &Context) -> Response {
    if ctx.is_draining() {
        return Problem::unavailable("draining: shutting down", Duration::from_secs(1))
            .into_response();
    }
    for check in ctx.readiness_checks() {
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, check.check()).await;
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(why)) => why,
            Err(_) => format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
        };
        return Problem::unavailable(
            format!("{} not ready: {failure}", check.name()),
            Duration::from_secs(1),
        )
        .into_response();
    }
    Json(serde_json::json!({"status": "ready"})).into_response()
}
