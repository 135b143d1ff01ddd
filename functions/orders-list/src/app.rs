use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Json, Router, routing::get};
use orders_domain::cursor::Cursor;
use orders_domain::{Order, Status, repo};
use serde::{Deserialize, Serialize};
use tern::{ApiKeys, Context, FieldError, Problem, StartError};
use tern_db::Db;

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let keys = ApiKeys::from_secret(&ctx, "ORDERS_API_KEY_HASHES").await?;
    let db = Db::connect(&ctx).await?;
    Ok(Router::new()
        .route("/api/orders", get(list))
        .route_layer(keys.layer())
        .with_state(db))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Page {
    orders: Vec<Order>,
    next_cursor: Option<String>,
}

async fn list(
    State(db): State<Db>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Page>, Problem> {
    let Query(p) = params.map_err(|e| Problem::malformed(e.body_text()))?;
    let mut errors = Vec::new();
    let status = match p.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Status::parse(s).or_else(|| {
            errors.push(FieldError::new("status", "must be pending, paid or failed"));
            None
        }),
    };
    let limit = match p.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        },
    };
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let cursor = p
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(Cursor::decode)
        .transpose()?;
    let client = db.read().await?;
    let (orders, next) = repo::list(&*client, status, limit, cursor.as_ref()).await?;
    Ok(Json(Page {
        orders,
        next_cursor: next.map(|c| c.encode()),
    }))
}
