use axum::http::StatusCode;
use axum::{Json, Router, routing::post};
use serde_json::{Value, json};
use tern::{Context, Problem, StartError};
use tern_events::DomainEvent;

/// The event types handled here: the subscription's filter in routes.toml names the same.
const TYPES: &[&str] = &[__TYPES__];

/// Builds the function once, at start. In Google Cloud the caller is the `__TOPIC__` topic's
/// push subscription, with an OIDC token (`TERN_OIDC=google`) checked before the body is read.
pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let oidc = tern::GoogleOidc::from_env(ctx.env())?;
    Ok(Router::new()
        .route("__PATH__", post(handle))
        .layer(oidc.layer()))
}

/// One event, from a Pub/Sub push or an Eventarc CloudEvent alike. 2xx acknowledges it; 4xx is
/// permanent (after the retry budget the event goes to the dead-letter topic); 503 is transient
/// (retried with backoff). Delivery is at least once: an effect that must happen once records
/// the event's id in its own transaction (`tern_events::inbox::first_delivery`).
async fn handle(event: DomainEvent) -> Result<Json<Value>, Problem> {
    if !TYPES.contains(&event.ty.as_str()) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-event",
            "Unexpected event type",
        )
        .with_detail(format!(
            "{} is not handled here; expected one of {TYPES:?}",
            event.ty
        )));
    }
    let data: Value = event.data_as()?;
    tracing::info!(event_id = %event.id, event_type = %event.ty, subject = ?event.subject, fields = data.as_object().map_or(0, |o| o.len()), "event handled");
    Ok(Json(json!({"handled": event.id})))
}

#[cfg(test)]
mod tests {
    use super::TYPES;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::json;
    use tern::{Context, Env};
    use tern_events::{OutgoingEvent, PushEnvelope};
    use tower::ServiceExt;

    /// The function inside the runtime's whole stack, as `tern::run` serves it.
    async fn function() -> axum::Router {
        let env = Env::from_pairs([("TERN_HTTP_ROUTES", "POST __PATH__".to_owned())]);
        let ctx = Context::for_env(env).expect("the settings");
        let app = super::app(ctx.clone()).await.expect("the function starts");
        tern::platform::assemble(app, &ctx)
    }

    /// Posts `body` as the push subscription does; the status and the JSON answer.
    async fn push(body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let req = Request::post("__PATH__")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a request");
        let res = function().await.oneshot(req).await.expect("an answer");
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
            .await
            .expect("the body");
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// An event of type `ty` published to `__TOPIC__`, in the body its push subscription sends.
    fn pushed(ty: &str) -> Vec<u8> {
        let event = OutgoingEvent {
            id: "evt-1".into(),
            source: "//tests".into(),
            ty: ty.into(),
            subject: Some("example".into()),
            time: chrono::Utc::now(),
            data: json!({"example": true}),
            traceparent: None,
        };
        let envelope = PushEnvelope::for_event(&event, "projects/local/subscriptions/__SUBSCRIPTION__".into());
        serde_json::to_vec(&envelope).expect("JSON")
    }

    #[tokio::test]
    async fn acknowledges_its_events() {
        for ty in TYPES {
            let (status, body) = push(pushed(ty)).await;
            assert_eq!(status, StatusCode::OK, "{ty}: {body}");
            assert_eq!(body["handled"], "evt-1");
        }
    }

    #[tokio::test]
    async fn refuses_other_types_for_good() {
        let (status, body) = push(pushed("com.example.something.else")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }

    #[tokio::test]
    async fn refuses_what_is_not_an_event() {
        let (status, body) = push(b"{\"message\": {}}".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}
