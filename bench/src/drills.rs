//! The load drills: a revision swap under load, a database restart under load, a Pub/Sub outage
//! during order creation, and a burst from idle.

use crate::harness::{Bench, count};
use crate::load::{self, Sample};
use crate::stats::percentile;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tern_local::StopToken;

/// All drills, in an order where each leaves the system as it found it.
pub async fn all(b: &mut Bench) -> Result<Value, String> {
    Ok(json!({
        "drain": drain(b).await?,
        "burst": burst(b).await?,
        "pubsub_outage": pubsub_outage(b).await?,
        "database_restart": database_restart(b).await?,
    }))
}

fn failed(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.status != 200).count()
}

/// The local router in front of orders-get's `pods`; its URL, and the token that stops it.
pub async fn router_in_front(b: &Bench, pods: Vec<String>) -> Result<(String, StopToken), String> {
    let upstreams = Arc::new(RwLock::new(HashMap::from([(
        "orders-get".to_owned(),
        pods,
    )])));
    router_on(b, upstreams).await
}

async fn router_on(
    b: &Bench,
    upstreams: tern_local::Upstreams,
) -> Result<(String, StopToken), String> {
    let router = tern_local::Router::new(&b.world.table, upstreams);
    let listener = tern::platform::bind(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = StopToken::default();
    let s2 = stop.clone();
    tokio::spawn(async move {
        router
            .serve(listener, async move { s2.cancelled().await })
            .await
    });
    Ok((format!("http://{addr}"), stop))
}

/// Replace orders-get the way a Knative revision swap does, under load through the whole path
/// (router → queue-proxy over h2c → function): the new revision's pod ready, then the old one
/// deleted as the kubelet deletes it (queue-proxy drains 30 s of quiet while the function's
/// preStop hook waits, then the function gets SIGTERM), out of the router's endpoints a second
/// after its SIGTERM.
async fn drain(b: &Bench) -> Result<Value, String> {
    eprintln!("drill: revision swap under load (about 40 s: queue-proxy drains for 30 s)");
    let old = b.start_pod("orders-get", &[])?;
    let upstreams: tern_local::Upstreams = Arc::new(RwLock::new(HashMap::from([(
        "orders-get".to_owned(),
        vec![old.addr()],
    )])));
    let (router, stop) = router_on(b, upstreams.clone()).await?;
    let url = format!("{router}/api/orders/{}", b.order_id);
    let load =
        tokio::spawn(async move { load::run(&url, 16, None, Duration::from_secs(36)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new = b.start_pod("orders-get", &[])?;
    if let Ok(mut u) = upstreams.write() {
        u.insert("orders-get".into(), vec![old.addr(), new.addr()]);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The kubelet's SIGTERM and the endpoints update race: the old pod still gets requests for a
    // second after queue-proxy got SIGTERM.
    let tern_local::Instance::Pod(mut old) = old else {
        return Err("orders-get did not start as a pod".into());
    };
    let ending = tokio::task::spawn_blocking(move || old.terminate());
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(mut u) = upstreams.write() {
        u.insert("orders-get".into(), vec![new.addr()]);
    }
    let end = ending.await.map_err(|e| e.to_string())?;
    let samples = load.await.map_err(|e| e.to_string())?;
    stop.cancel();
    drop(new);
    Ok(json!({
        "requests": samples.len(),
        "failed": failed(&samples),
        "pre_stop_ms": end.pre_stop_took.as_secs_f64() * 1000.0,
        "termination_ms": end.took.as_secs_f64() * 1000.0,
        "old_function_exit": end.function.map(|s| s.to_string()),
        "old_queue_proxy_exit": end.queue_proxy.map(|s| s.to_string()),
    }))
}

/// From idle (a fresh process, no pooled connections) to many concurrent clients at once.
async fn burst(b: &Bench) -> Result<Value, String> {
    eprintln!("drill: burst from idle");
    let p = b.start("orders-get", &[])?;
    let url = format!("{}/api/orders/{}", p.url(), b.order_id);
    let clients = 64;
    let samples = load::run(&url, clients, None, Duration::from_secs(2)).await;
    let first_ok = samples
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| (s.at + s.took).as_secs_f64() * 1000.0)
        .fold(f64::MAX, f64::min);
    Ok(json!({
        "clients": clients,
        "requests": samples.len(),
        "errors": failed(&samples),
        "first_success_ms": first_ok,
        "p99_ms": percentile(&samples.iter().map(|s| s.took.as_secs_f64() * 1000.0).collect::<Vec<_>>(), 99.0),
    }))
}

/// PostgreSQL stops for 2 s under load: how many requests failed fast (503) or hung, and how
/// long from PostgreSQL's return to the first success.
async fn database_restart(b: &mut Bench) -> Result<Value, String> {
    eprintln!("drill: PostgreSQL restart under load");
    let p = b.start(
        "orders-get",
        &[
            ("DB_WAIT_TIMEOUT", "1s"),
            ("DB_CONNECT_TIMEOUT", "1s"),
            ("DB_RETRY_AFTER", "1s"),
        ],
    )?;
    let url = format!("{}/api/orders/{}", p.url(), b.order_id);
    let load = tokio::spawn(async move { load::run(&url, 16, None, Duration::from_secs(8)).await });
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg_mut(b)?.stop();
    let down_at = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg_mut(b)?.restart()?;
    let back_at = t0.elapsed();
    let samples = load.await.map_err(|e| e.to_string())?;
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at + s.took >= down_at && s.at <= back_at)
        .collect();
    let fast_503 = during
        .iter()
        .filter(|s| s.status == 503 && s.took < Duration::from_secs(3))
        .count();
    let hung = samples
        .iter()
        .filter(|s| s.status == 0 || s.took >= Duration::from_secs(5))
        .count();
    let other = during
        .iter()
        .filter(|s| s.status != 503 && s.status != 200)
        .count();
    let recovery = samples
        .iter()
        .filter(|s| s.status == 200 && s.at >= back_at)
        .map(|s| (s.at + s.took - back_at).as_secs_f64() * 1000.0)
        .fold(f64::MAX, f64::min);
    Ok(json!({
        "requests": samples.len(),
        "during_outage": during.len(),
        "failed_fast_503": fast_503,
        "hung": hung,
        "other_errors": other,
        "back_to_first_success_ms": recovery,
    }))
}

/// The emulator stops while orders are created; once it returns, the relay publishes the backlog.
async fn pubsub_outage(b: &mut Bench) -> Result<Value, String> {
    eprintln!("drill: Pub/Sub outage during order creation");
    let create = b.start("orders-create", &[("PUBSUB_PUBLISH_TIMEOUT", "1s")])?;
    let relay = b.start("outbox-relay", &[])?;
    let c = load::client();
    let db = b.sql().await?;
    // Rows earlier measurements left to the relay are published first: the backlog measured
    // below is this drill's own.
    drain_outbox(&c, &relay.url(), &db).await?;
    emulator_mut(b)?.stop();
    let n = if b.quick { 100 } else { 300 };
    let body = json!({"customer_email": "outage@example.com", "currency": "EUR", "items": [{"sku": "TEA", "quantity": 1, "unit_price_cents": 100}]}).to_string();
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        if let Some(id) = create_order(&c, &format!("{}/api/orders", create.url()), &body).await {
            ids.insert(id);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    emulator_mut(b)?.restart()?;
    tern_local::create_topology(b.pubsub(), &b.world.table).await?;
    let admin = tern_local::Admin::new(b.pubsub()).await?;
    admin.subscription("bench-outage", "orders").await?;
    let t = Instant::now();
    drain_outbox(&c, &relay.url(), &db).await?;
    let drained_ms = t.elapsed().as_secs_f64() * 1000.0;
    let msgs = collect(b, "bench-outage", n * 2, Duration::from_secs(3)).await?;
    let ours: Vec<&String> = msgs
        .iter()
        .filter(|m| {
            m.attributes
                .get("ce-type")
                .is_some_and(|t| t == "com.example.order.created")
        })
        .filter_map(|m| m.attributes.get("ce-subject"))
        .filter(|s| ids.contains(*s))
        .collect();
    let distinct: BTreeSet<&String> = ours.iter().copied().collect();
    Ok(json!({
        "orders_created": ids.len(),
        "order_created_received": ours.len(),
        "distinct_orders": distinct.len(),
        "backlog_drain_ms": drained_ms,
    }))
}

/// Calls the relay until no outbox row is left unpublished (at most 60 s).
async fn drain_outbox(
    c: &load::HttpClient,
    relay: &str,
    db: &tokio_postgres::Client,
) -> Result<(), String> {
    let t = Instant::now();
    loop {
        load::one(c, &format!("{relay}/internal/outbox/flush"), Some("")).await;
        let pending = count(
            db,
            "SELECT count(*) FROM tern_outbox WHERE published_at IS NULL AND set_aside_at IS NULL",
        )
        .await?;
        if pending == 0 {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err("the outbox backlog did not drain in 60 s".into());
        }
    }
}

/// POSTs an order and returns its id.
async fn create_order(c: &load::HttpClient, url: &str, body: &str) -> Option<String> {
    use http_body_util::BodyExt;
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .ok()?;
    let res = c.request(req).await.ok()?;
    if res.status() != 201 {
        return None;
    }
    let bytes = res.into_body().collect().await.ok()?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["id"].as_str().map(str::to_owned)
}

async fn collect(
    b: &Bench,
    sub: &str,
    max: usize,
    quiet: Duration,
) -> Result<Vec<google_cloud_pubsub::model::Message>, String> {
    let s = tern_local::subscriber(b.pubsub()).await?;
    let mut stream = tern_local::pull(&s, &b.pubsub().subscription_path(sub));
    let mut out = Vec::new();
    while out.len() < max {
        match tokio::time::timeout(quiet, stream.next()).await {
            Ok(Some(Ok((m, h)))) => {
                h.ack();
                out.push(m);
            }
            Ok(Some(Err(_))) => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => break,
        }
    }
    Ok(out)
}

fn pg_mut(b: &mut Bench) -> Result<&mut tern_local::Postgres, String> {
    b.world
        .postgres_mut()
        .ok_or_else(|| "the bench world has no PostgreSQL of its own".to_owned())
}

fn emulator_mut(b: &mut Bench) -> Result<&mut tern_local::Emulator, String> {
    b.world
        .emulator_mut()
        .ok_or_else(|| "the bench world has no emulator of its own".to_owned())
}
