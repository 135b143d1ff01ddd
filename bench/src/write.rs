//! 3: the write path, orders-create against a bare tokio-postgres loop doing the same inserts.

use crate::harness::{Bench, DB_CONNECTIONS, HTTP_CONNECTIONS, count, say};
use crate::stats::percentile;
use crate::wrk::{self, WrkResult, wrk_json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// 3: orders-create against a bare tokio-postgres loop doing the same inserts, at the same
/// concurrency: wrk's connections equal the loop's (and the pool's) `DB_CONNECTIONS`, so neither
/// side's latency includes queueing the other's does not. orders-create at the route
/// measurement's `HTTP_CONNECTIONS` too, for its throughput under more clients than the pool.
pub async fn write_path(b: &Bench) -> Result<Value, String> {
    say("write path: orders-create vs a bare tokio-postgres insert loop");
    let create = b.start("orders-create", &[])?;
    let body = json!({"customer_email": "bench@example.com", "currency": "EUR", "items": [{"sku": "TEA", "quantity": 2, "unit_price_cents": 625}]}).to_string();
    let script = wrk::post_script(&b.scratch, "create", &body).map_err(|e| e.to_string())?;
    let url = format!("{}/api/orders", create.url());
    let (mut tern, mut wide, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..b.reps {
        tern.push(wrk::run(&url, DB_CONNECTIONS as u32, b.dur, Some(&script))?);
        wide.push(wrk::run(&url, HTTP_CONNECTIONS, b.dur, Some(&script))?);
        bare.push(bare_insert_loop(b.db_url(), DB_CONNECTIONS, b.dur).await?);
    }
    // The baseline's outbox rows are not Tern's to publish: leave no backlog for later measurements.
    let db = b.sql().await?;
    db.execute("DELETE FROM tern_outbox WHERE source = '//bench'", &[])
        .await
        .map_err(|e| e.to_string())?;
    // Rows orders-create did not publish right after its commit (no publish slot free): the
    // relay's, a minute later in the cluster. Counted once the last publishes have ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = count(
        &db,
        "SELECT count(*) FROM tern_outbox WHERE published_at IS NULL",
    )
    .await?;
    let total = count(&db, "SELECT count(*) FROM tern_outbox").await?;
    Ok(json!({
        "tern_orders_create": wrk_json(&tern),
        "tern_orders_create_http_connections": wrk_json(&wide),
        "bare_tokio_postgres_inserts": wrk_json(&bare),
        "rows_left_to_the_relay": left,
        "rows_written": total,
    }))
}

/// The same transaction as orders-create (order, item, outbox row), on `conns` connections.
async fn bare_insert_loop(url: &str, conns: usize, dur: Duration) -> Result<WrkResult, String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (mut c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        tasks.push(tokio::spawn(async move {
            let o = c.prepare("INSERT INTO orders (id, customer_email, currency, total_cents) VALUES ($1, $2, 'EUR', 1250)").await?;
            let i = c.prepare("INSERT INTO order_items (order_id, line, sku, quantity, unit_price_cents) VALUES ($1, 0, 'TEA', 2, 625)").await?;
            let e = c
                .prepare("INSERT INTO tern_outbox (topic, event_id, event_type, source, subject, data) VALUES ('orders', $1, 'com.example.order.created', '//bench', $2, $3)")
                .await?;
            let mut lat = Vec::new();
            while start.elapsed() < dur {
                let t = Instant::now();
                let id = format!("ord_{}", &uuid::Uuid::new_v4().simple().to_string()[..26]);
                let tx = c.transaction().await?;
                tx.execute(&o, &[&id, &"bench@example.com"]).await?;
                tx.execute(&i, &[&id]).await?;
                let data = json!({"order_id": id});
                tx.execute(&e, &[&uuid::Uuid::now_v7().to_string(), &id, &data]).await?;
                tx.commit().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, tokio_postgres::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(WrkResult {
        rps: all.len() as f64 / start.elapsed().as_secs_f64(),
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
        errors: 0,
        requests: all.len() as u64,
    })
}
