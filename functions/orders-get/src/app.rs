use axum::extract::{Path, State};
use axum::{Json, Router, routing::get};
use orders_domain::{Order, id::is_order_id, repo};
use tern::{Context, Problem, StartError};
use tern_db::Db;

pub async fn app(ctx: Context) -> Result<Router, StartError> {
    let db = Db::connect(&ctx).await?;
    Ok(Router::new()
        .route("/api/orders/{id}", get(get_order))
        .with_state(db))
}

async fn get_order(State(db): State<Db>, Path(id): Path<String>) -> Result<Json<Order>, Problem> {
    let not_found = || Problem::not_found(format!("There is no order {id}."));
    if !is_order_id(&id) {
        return Err(not_found());
    }
    let client = db.read().await?;
    repo::get(&*client, &id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}
