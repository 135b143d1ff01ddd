use axum::extract::State;
use axum::http::StatusCode;
use axum::{Json, Router, routing::post};
use orders_domain::Status;
use orders_domain::events::{PAYMENT_COMPLETED, PAYMENT_FAILED, Payment};
use orders_domain::repo::{self, PaymentOutcome};
use serde_json::{Value, json};
use tern::{Context, Problem, StartError};
use tern_db::Db;
use tern_events::{DomainEvent, Outbox, inbox};

const CONSUMER: &str = "payments-events";

#[derive(Clone)]
struct App {
    outbox: Outbox,
}

pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let db = Db::connect(&ctx).await?;
    let outbox = tern_events::outbox(&ctx, &db).await?;
    // In Google Cloud the caller is a Pub/Sub push subscription with an OIDC token
    // (TERN_OIDC=google); the token is checked before the body is read.
    let oidc = tern::GoogleOidc::from_env(ctx.env())?;
    Ok(Router::new()
        .route("/events/payments", post(handle))
        .layer(oidc.layer())
        .with_state(App { outbox }))
}

/// 2xx acknowledges (including duplicates and stale events); 4xx is permanent (the event goes to
/// the dead-letter topic after the retry budget); 503 is transient (Pub/Sub retries with backoff).
async fn handle(State(app): State<App>, event: DomainEvent) -> Result<Json<Value>, Problem> {
    let to = match event.ty.as_str() {
        PAYMENT_COMPLETED => Status::Paid,
        PAYMENT_FAILED => Status::Failed,
        other => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-event",
                "Unexpected event type",
            )
            .with_detail(format!(
                "{other} is not handled here; expected {PAYMENT_COMPLETED} or {PAYMENT_FAILED}"
            )));
        }
    };
    let payment: Payment = event.data_as()?;
    let outcome = app
        .outbox
        .write(async |tx| {
            // The event id is recorded in the same transaction as the effect.
            if !inbox::first_delivery(tx, CONSUMER, &event).await? {
                return Ok(None);
            }
            repo::apply_payment(tx, &payment, to).await.map(Some)
        })
        .await
        .map_err(Problem::from)?;
    let result = match outcome {
        None => {
            tracing::info!(event_id = %event.id, "duplicate event ignored");
            json!({"result": "duplicate"})
        }
        Some(PaymentOutcome::Moved { to }) => {
            tracing::info!(order_id = %payment.order_id, status = to.as_str(), "order updated");
            json!({"result": "updated", "status": to})
        }
        Some(PaymentOutcome::Unchanged(status)) => {
            tracing::info!(order_id = %payment.order_id, status = status.as_str(), "stale payment event; order unchanged");
            json!({"result": "unchanged", "status": status})
        }
    };
    Ok(Json(result))
}
