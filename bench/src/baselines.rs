//! The baselines: small programs of ours that do the least possible for the same answer.
//!
//! - (a) `bare-hyper`: hyper answering a constant JSON body.
//! - (b) `bare-pg`: hyper + tokio-postgres running orders-get's two SELECTs as prepared
//!   statements over a fixed set of connections, JSON out. No pool, no middleware, no logs.
//!   Requests share the connections: tokio-postgres pipelines the queries of every request on a
//!   connection. With `--exclusive`, a request has its connection to itself, as with a pool
//!   (Tern's, pgx's, asyncpg's): the same program, so the difference is the sharing alone.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls, Statement};

async fn serve<F, Fut>(port: u16, handler: F) -> std::io::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, std::convert::Infallible>(h(req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// Baseline (a).
pub async fn bare_hyper(port: u16) -> std::io::Result<()> {
    serve(port, |_req| async {
        json(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
    })
    .await
}

/// A connection taken for one request; given back when dropped.
struct Checkout {
    i: usize,
    free: Arc<std::sync::Mutex<Vec<usize>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Ok(mut f) = self.free.lock() {
            f.push(self.i);
        }
    }
}

struct Conn {
    client: Client,
    order: Statement,
    items: Statement,
}

/// Baseline (b); `exclusive`: one request per connection at a time.
pub async fn bare_pg(
    port: u16,
    database_url: &str,
    connections: usize,
    exclusive: bool,
) -> Result<(), String> {
    let mut conns = Vec::new();
    for _ in 0..connections {
        let (client, conn) = tokio_postgres::connect(database_url, NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let order = client
            .prepare("SELECT id, status, customer_email, currency, total_cents, payment_id, created_at, updated_at FROM orders WHERE id = $1")
            .await
            .map_err(|e| e.to_string())?;
        let items = client
            .prepare("SELECT sku, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY line")
            .await
            .map_err(|e| e.to_string())?;
        conns.push(Conn {
            client,
            order,
            items,
        });
    }
    let conns = Arc::new(conns);
    let next = Arc::new(AtomicUsize::new(0));
    // The free connections, for `exclusive`: a permit, then one of them, like a pool's checkout.
    let free = Arc::new(std::sync::Mutex::new((0..conns.len()).collect::<Vec<_>>()));
    let permits = Arc::new(tokio::sync::Semaphore::new(conns.len()));
    serve(port, move |req| {
        let conns = conns.clone();
        let next = next.clone();
        let (free, permits) = (free.clone(), permits.clone());
        async move {
            let id = req.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
            let checkout = if exclusive {
                let Ok(permit) = permits.acquire_owned().await else {
                    return json(StatusCode::SERVICE_UNAVAILABLE, br#"{"status":503}"#.to_vec());
                };
                let i = free.lock().ok().and_then(|mut f| f.pop()).unwrap_or(0);
                Some(Checkout { i, free: free.clone(), _permit: permit })
            } else {
                None
            };
            let i = checkout
                .as_ref()
                .map_or_else(|| next.fetch_add(1, Ordering::Relaxed) % conns.len(), |c| c.i);
            let c = &conns[i];
            // Both SELECTs sent together, as orders-get sends them: one round trip.
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
            let (row, items) = tokio::join!(
                c.client.query_opt(&c.order, &params),
                c.client.query(&c.items, &params)
            );
            let Ok(Some(row)) = row else {
                return json(StatusCode::NOT_FOUND, br#"{"status":404}"#.to_vec());
            };
            let Ok(items) = items else {
                return json(StatusCode::SERVICE_UNAVAILABLE, br#"{"status":503}"#.to_vec());
            };
            let items: Vec<serde_json::Value> = items
                .iter()
                .map(|i| serde_json::json!({"sku": i.get::<_, String>(0), "quantity": i.get::<_, i32>(1), "unit_price_cents": i.get::<_, i64>(2)}))
                .collect();
            let body = serde_json::json!({
                "id": row.get::<_, String>(0),
                "status": row.get::<_, String>(1),
                "customer_email": row.get::<_, String>(2),
                "currency": row.get::<_, String>(3),
                "total_cents": row.get::<_, i64>(4),
                "items": items,
                "payment_id": row.get::<_, Option<String>>(5),
                "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(6),
                "updated_at": row.get::<_, chrono::DateTime<chrono::Utc>>(7),
            });
            json(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
        }
    })
    .await
    .map_err(|e| e.to_string())
}
