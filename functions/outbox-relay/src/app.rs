use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::post};
use std::time::{Duration, Instant};
use tern::{ConfigError, Context, Problem, StartError};
use tern_db::Db;
use tern_events::{Outbox, Retention};

/// Kept free at the end of the request timeout: the counts query and the answer.
const ANSWER_TIME: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct App {
    ctx: Context,
    outbox: Outbox,
    db: Db,
    retention: Retention,
    batch_size: i64,
    max_batches: u32,
}

pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let batch_size: u32 = ctx.env().or("RELAY_BATCH_SIZE", 100)?;
    let max_batches: u32 = ctx.env().or("RELAY_MAX_BATCHES", 50)?;
    if batch_size == 0 {
        return Err(ConfigError::new("RELAY_BATCH_SIZE", "must be at least 1").into());
    }
    let retention = Retention::from_env(ctx.env())?;
    let db = Db::connect(&ctx).await?;
    let outbox = tern_events::outbox(&ctx, &db).await?;
    // A flush must finish inside the request timeout with at least one batch and the answer.
    let batch = outbox.policy().batch_limit();
    if ctx.config().request_timeout <= batch + ANSWER_TIME {
        return Err(ConfigError::new(
            "TERN_REQUEST_TIMEOUT",
            format!(
                "{:?} leaves no time for one relay batch and its answer ({:?}: PUBSUB_PUBLISH_TIMEOUT + 10s)",
                ctx.config().request_timeout,
                batch + ANSWER_TIME
            ),
        )
        .into());
    }
    let app = App {
        ctx: ctx.clone(),
        outbox,
        db,
        retention,
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

/// Publishes due rows, then prunes what is past its retention window (`Retention`) with the
/// time left. 200 with the counts; 503 when Pub/Sub failed to answer and nothing could be
/// published (an outage), so the scheduler records a failed run and alerting sees it. Rows
/// Pub/Sub refuses are retried with backoff and set aside after `OUTBOX_SET_ASIDE_AFTER`
/// refusals, counted in `set_aside` and `set_aside_total`; they never block the others.
async fn flush(State(app): State<App>) -> Result<Response, Problem> {
    // Stop claiming batches in time to answer inside the request timeout. The flush runs as a
    // task of its own, so a caller that goes away does not cut it between a publish and its
    // mark (which would publish those rows again once their lease ends).
    let deadline = Instant::now() + app.ctx.config().request_timeout - ANSWER_TIME;
    let outbox = app.outbox.clone();
    let (batch_size, max_batches) = (app.batch_size, app.max_batches);
    let (db, retention) = (app.db.clone(), app.retention);
    let (report, pruned) = app
        .ctx
        .spawn(async move {
            let report = outbox
                .flush(batch_size, max_batches, Some(deadline))
                .await?;
            // Pruning deletes in small statements, until the deadline; its failures are logged
            // and never fail the flush.
            let pruned = retention.prune(&db, deadline).await;
            Ok::<_, Problem>((report, pruned))
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the flush task failed");
            Problem::internal()
        })??;
    let counts = app.outbox.counts().await?;
    if report.unavailable > 0 && report.published == 0 {
        return Err(Problem::unavailable(
            format!(
                "published 0, failed {}, {} pending; Pub/Sub is unavailable",
                report.failed, counts.pending
            ),
            Duration::from_secs(10),
        ));
    }
    Ok(Json(serde_json::json!({
        "published": report.published,
        "failed": report.failed,
        "set_aside": report.set_aside,
        "out_of_time": report.out_of_time,
        "pending": counts.pending,
        "set_aside_total": counts.set_aside,
        "pruned": pruned,
    }))
    .into_response())
}
