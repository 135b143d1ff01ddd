//! 9: Tern against what a team would write instead, in the same run: the same two routes in Go
//! (`net/http` + pgx) and in Python (FastAPI + uvicorn + asyncpg), on the same database with the
//! same pool size and the same bodies (`tests/peers.rs`); see `tern_local::peers`.

use crate::harness::{Bench, DB_CONNECTIONS, HTTP_CONNECTIONS, load_with_rss, rss_mib, say};
use crate::stats::Spread;
use crate::wrk::{self, wrk_json};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tern_local::peers::{Peer, PeerProcess};

/// One server under test: where its two routes are, and the processes that serve each.
struct Server {
    name: &'static str,
    get: String,
    post: String,
    get_pid: u32,
    post_pid: u32,
}

/// Process start → first 200 on `GET path`, asked every 2 ms.
fn start_ms(b: &Bench, root: &Path, who: Option<Peer>, path: &str) -> Result<f64, String> {
    let t = Instant::now();
    match who {
        None => {
            let mut p = b.world.spawn_with("orders-get", 0, &b.env(&[]))?;
            p.wait_for(path, 200, Duration::from_secs(10))?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            p.terminate();
            Ok(ms)
        }
        Some(peer) => {
            let log = b.scratch.join(format!("peer-{}.log", peer.name()));
            let mut p = PeerProcess::spawn(peer, root, b.db_url(), DB_CONNECTIONS, log)?;
            p.wait_for(path, 200, Duration::from_secs(60))?;
            Ok(t.elapsed().as_secs_f64() * 1000.0)
        }
    }
}

/// The measurement; `null` when the peers are not installed (`scripts/tools peers`).
pub async fn peers(b: &Bench) -> Result<Value, String> {
    let root = tern_local::repo_root()?;
    if let Err(why) = tern_local::peers::available(&root) {
        say(&format!("  (peers not measured: {why})"));
        return Ok(Value::Null);
    }
    say("peers: Tern against Go (net/http + pgx) and Python (FastAPI + asyncpg)");
    let path = format!("/api/orders/{}", b.order_id);
    let kinds: [(&str, Option<Peer>); 3] = [
        ("tern", None),
        ("go", Some(Peer::Go)),
        ("python", Some(Peer::Python)),
    ];
    let starts = if b.quick { 3 } else { 7 };
    let mut start: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for _ in 0..starts {
        for (i, (_, who)) in kinds.iter().enumerate() {
            start[i].push(start_ms(b, &root, *who, &path)?);
        }
    }

    // Tern serves the routes as two functions, a peer as one server.
    let get = b.start("orders-get", &[])?;
    let create = b.start("orders-create", &[])?;
    let mut servers = vec![Server {
        name: "tern",
        get: format!("{}{path}", get.url()),
        post: format!("{}/api/orders", create.url()),
        get_pid: get.pid(),
        post_pid: create.pid(),
    }];
    let mut running = Vec::new();
    for peer in Peer::ALL {
        let log = b.scratch.join(format!("peer-{}.log", peer.name()));
        let mut p = PeerProcess::spawn(peer, &root, b.db_url(), DB_CONNECTIONS, log)?;
        p.wait_for(&path, 200, Duration::from_secs(60))?;
        servers.push(Server {
            name: peer.name(),
            get: format!("{}{path}", p.url()),
            post: format!("{}/api/orders", p.url()),
            get_pid: p.pid(),
            post_pid: p.pid(),
        });
        running.push(p);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle: Vec<(f64, f64)> = servers
        .iter()
        .map(|s| (rss_mib(s.get_pid), rss_mib(s.post_pid)))
        .collect();

    let body = json!({"customer_email": "bench@example.com", "currency": "EUR", "items": [{"sku": "TEA", "quantity": 2, "unit_price_cents": 625}]}).to_string();
    let script = wrk::post_script(&b.scratch, "peers-create", &body).map_err(|e| e.to_string())?;
    let n = servers.len();
    let (mut gets, mut posts) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let (mut get_peak, mut post_peak) = (vec![0.0f64; n], vec![0.0f64; n]);
    for rep in 0..b.reps {
        // Each repetition starts with another server, so none always loads the fullest tables.
        let order: Vec<usize> = (0..n).map(|k| (k + rep) % n).collect();
        for &i in &order {
            let s = &servers[i];
            let (w, peak) = load_with_rss(&s.get, HTTP_CONNECTIONS, b.dur, None, s.get_pid).await?;
            gets[i].push(w);
            get_peak[i] = get_peak[i].max(peak);
        }
        for &i in &order {
            let s = &servers[i];
            let (w, peak) =
                load_with_rss(&s.post, HTTP_CONNECTIONS, b.dur, Some(&script), s.post_pid).await?;
            posts[i].push(w);
            post_peak[i] = post_peak[i].max(peak);
        }
    }
    drop(running);
    // The peers' outbox rows have no relay: leave no backlog for the drills that follow.
    b.sql()
        .await?
        .execute(
            "DELETE FROM tern_outbox WHERE source IN ('//peer-go', '//peer-python')",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out = serde_json::Map::new();
    for (i, s) in servers.iter().enumerate() {
        out.insert(
            s.name.into(),
            json!({
                "get": wrk_json(&gets[i]),
                "post": wrk_json(&posts[i]),
                "start_to_first_get_ms": Spread::of(&start[i]),
                "idle_rss_mib": {"get": idle[i].0, "post": idle[i].1},
                "loaded_rss_mib": {"get": get_peak[i], "post": post_peak[i]},
            }),
        );
    }
    out.insert("starts".into(), json!(starts));
    out.insert(
        "stacks".into(),
        json!({
            "tern": "orders-get and orders-create (release, JSON access log on, metrics on)",
            "go": Peer::Go.stack(),
            "python": format!("{}, {} workers", Peer::Python.stack(), tern_local::peers::PYTHON_WORKERS),
        }),
    );
    Ok(Value::Object(out))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The section of docs/performance.md: each figure, and Tern's against each peer's.
pub fn markdown(p: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if p.is_null() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n## Peers: what a team would write instead\n\nThe same `GET /api/orders/{{id}}` (two SELECTs: pipelined in one round trip by Tern and Go, two round trips with asyncpg) and `POST /api/orders` (order, item and outbox row in one transaction) on the same database, with {DB_CONNECTIONS} database connections each (Python: split over its workers) and the same bodies and statuses (`tests/tests/peers.rs` compares them), wrk with {HTTP_CONNECTIONS} connections. Tern: {}. Go: {}. Python: {}. Tern does more per request: it writes a JSON access line and keeps metrics, and orders-create also publishes each event to the emulator after its commit and marks the row; the peers log nothing and leave their outbox rows to a relay they do not have. Start is process start → first 200 on `GET /api/orders/{{id}}`, the median of {} starts; RSS counts a server's workers too; loaded RSS is the peak under the load of that route; decision 0030 has the profile.\n",
        p["stacks"]["tern"].as_str().unwrap_or("?"),
        p["stacks"]["go"].as_str().unwrap_or("?"),
        p["stacks"]["python"].as_str().unwrap_or("?"),
        p["starts"],
    );
    let _ = writeln!(
        s,
        "| measure | Tern | Go | Python | Tern ÷ Go | Tern ÷ Python | goal |\n|---|---|---|---|---|---|---|"
    );
    type Pick = fn(&Value) -> f64;
    let rows: [(&str, Pick, &str); 9] = [
        (
            "GET req/s",
            |v| f(&v["get"]["rps"]["median"]),
            "≥ 1.2 and ≥ 3",
        ),
        (
            "POST req/s",
            |v| f(&v["post"]["rps"]["median"]),
            "≥ 1.2 and ≥ 3",
        ),
        (
            "GET p99 ms",
            |v| f(&v["get"]["p99_ms"]["median"]),
            "÷ Go ≤ 1",
        ),
        (
            "POST p99 ms",
            |v| f(&v["post"]["p99_ms"]["median"]),
            "÷ Go ≤ 1",
        ),
        (
            "start → first 200 ms",
            |v| f(&v["start_to_first_get_ms"]["median"]),
            "÷ Go ≤ 1",
        ),
        (
            "idle RSS MiB, GET's server",
            |v| f(&v["idle_rss_mib"]["get"]),
            "÷ Go ≤ 1",
        ),
        (
            "idle RSS MiB, POST's server",
            |v| f(&v["idle_rss_mib"]["post"]),
            "÷ Go ≤ 1",
        ),
        (
            "peak RSS MiB under GET load",
            |v| f(&v["loaded_rss_mib"]["get"]),
            "÷ Go ≤ 1",
        ),
        (
            "peak RSS MiB under POST load",
            |v| f(&v["loaded_rss_mib"]["post"]),
            "÷ Go ≤ 1",
        ),
    ];
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "—".into()
        }
    };
    for (label, pick, goal) in rows {
        let (t, g, py) = (pick(&p["tern"]), pick(&p["go"]), pick(&p["python"]));
        let _ = writeln!(
            s,
            "| {label} | {t:.1} | {g:.1} | {py:.1} | {} | {} | {goal} |",
            ratio(t, g),
            ratio(t, py)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn server(rps: f64, p99: f64, start: f64, rss: f64) -> serde_json::Value {
        json!({
            "get": {"rps": {"median": rps}, "p99_ms": {"median": p99}},
            "post": {"rps": {"median": rps / 4.0}, "p99_ms": {"median": p99 * 4.0}},
            "start_to_first_get_ms": {"median": start},
            "idle_rss_mib": {"get": rss, "post": rss},
            "loaded_rss_mib": {"get": rss * 2.0, "post": rss * 2.0},
        })
    }

    #[test]
    fn the_table_divides_terns_figures_by_each_peers() {
        let p = json!({
            "tern": server(9000.0, 8.0, 12.0, 10.0),
            "go": server(7500.0, 10.0, 20.0, 20.0),
            "python": server(3000.0, 40.0, 600.0, 100.0),
            "starts": 7,
            "stacks": {"tern": "t", "go": "g", "python": "p"},
        });
        let md = super::markdown(&p);
        assert!(
            md.contains("| GET req/s | 9000.0 | 7500.0 | 3000.0 | 1.20 | 3.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| POST p99 ms | 32.0 | 40.0 | 160.0 | 0.80 | 0.20 |"),
            "{md}"
        );
        assert!(md.contains("| start → first 200 ms | 12.0 | 20.0 | 600.0 | 0.60 | 0.02 |"));
        assert!(super::markdown(&serde_json::Value::Null).is_empty());
    }
}
