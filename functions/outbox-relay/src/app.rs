use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::post};
use std::time::Duration;
use tern::{Context, Problem, StartError};
use tern_db::Db;
use tern_events::Outbox;

#[derive(Clone)]
struct App {
    outbox: Outbox,
    batch_size: i64,
    max_batches: u32,
}

pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let batch_size: u32 = ctx.env().or("RELAY_BATCH_SIZE", 100)?;
    let max_batches: u32 = ctx.env().or("RELAY_MAX_BATCHES", 50)?;
    if batch_size == 0 {
        return Err(tern::ConfigError::new("RELAY_BATCH_SIZE", "must be at least 1").into());
    }
    let db = Db::connect(&ctx).await?;
    let outbox = tern_events::outbox(&ctx, &db).await?;
    let app = App {
        outbox,
        batch_size: i64::from(batch_size),
        max_batches,
    };
    // In Google Cloud the caller is Cloud Scheduler with an OIDC token (TERN_OIDC=google).
    let oidc = tern::GoogleOidc::from_env(ctx.env())?;
    Ok(Router::new()
        .route("/internal/outbox/flush", post(flush))
        .layer(oidc.layer())
        .with_state(app))
}

/// Publishes pending rows. 200 with the counts; 503 when some could not be published, so the
/// scheduler records a failed run (and alerting sees it).
async fn flush(State(app): State<App>) -> Result<Response, Problem> {
    let report = app.outbox.flush(app.batch_size, app.max_batches).await?;
    let pending = app.outbox.pending().await?;
    if report.failed > 0 {
        return Err(Problem::unavailable(
            format!(
                "published {}, failed {}, {pending} pending; Pub/Sub is unavailable",
                report.published, report.failed
            ),
            Duration::from_secs(10),
        ));
    }
    Ok(Json(serde_json::json!({"published": report.published, "failed": report.failed, "pending": pending})).into_response())
}
