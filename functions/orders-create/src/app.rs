use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use orders_domain::NewOrder;
use orders_domain::repo::{self, IdempotencyKey};
use sha2::{Digest, Sha256};
use tern::{Context, Problem, StartError};
use tern_db::Db;
use tern_events::Outbox;

#[derive(Clone)]
struct App {
    outbox: Outbox,
}

pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let db = Db::connect(&ctx).await?;
    let outbox = tern_events::outbox(&ctx, &db).await?;
    Ok(Router::new()
        .route("/api/orders", post(create))
        .with_state(App { outbox }))
}

async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    tern::Json(new): tern::Json<NewOrder>,
) -> Result<Response, Problem> {
    let total = new.validate()?;
    let key = idempotency_key(&headers, &new)?;
    let created = app
        .outbox
        .write(async |tx| repo::create(tx, &new, total, key.as_ref()).await)
        .await?;
    tracing::info!(order_id = %created.order.id, replayed = created.replayed, "order created");
    let location = format!("/api/orders/{}", created.order.id);
    let mut res = (StatusCode::CREATED, Json(&created.order)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if created.replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(res)
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap, new: &NewOrder) -> Result<Option<IdempotencyKey>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::malformed("Idempotency-Key must be 1 to 255 visible ASCII characters.")
        })?;
    let canonical = serde_json::to_vec(new).map_err(|_| Problem::internal())?;
    Ok(Some(IdempotencyKey {
        key: key.to_owned(),
        request_hash: hex::encode(Sha256::digest(&canonical)),
    }))
}
