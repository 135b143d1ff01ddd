//! The measurements, in the order of issue 3, each against its baseline in the same run.

use crate::stats::{Spread, percentile};
use crate::wrk::{self, WrkResult};
use crate::{drills, load, report};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_cli::local::{Emulator, FunctionProcess, Postgres, free_port, repo_root};
use tern_events::PubSubConfig;

/// Connections from the load generator; database connections per server.
pub const HTTP_CONNECTIONS: u32 = 32;
/// Pool size for Tern, connections for baseline (b) and pgbench.
pub const DB_CONNECTIONS: usize = 8;

/// Everything a measurement needs.
pub struct Bench {
    pub quick: bool,
    pub reps: usize,
    pub dur: Duration,
    pub bin: PathBuf,
    pub scratch: PathBuf,
    pub pg: Postgres,
    pub emulator: Emulator,
    pub db_url: String,
    pub pubsub: PubSubConfig,
    pub order_id: String,
}

impl Bench {
    /// The environment of a function under test: JSON logs (to /dev/null), the bench database.
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", self.db_url.clone()),
            ("DB_POOL_SIZE", DB_CONNECTIONS.to_string()),
            ("PUBSUB_EMULATOR_HOST", self.emulator.addr.clone()),
            ("PUBSUB_PROJECT", self.pubsub.project.clone()),
            ("TERN_LOG_FORMAT", "json".to_owned()),
            ("ORDERS_API_KEY_HASHES", tern::ApiKeys::hash("bench")),
            (
                "WEB_CSRF_SECRET",
                "bench-csrf-secret-0123456789abcdef0123".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    }

    /// Starts a function (release build) and waits until it is ready.
    pub fn start(&self, name: &str, extra: &[(&str, &str)]) -> Result<FunctionProcess, String> {
        let mut p = FunctionProcess::spawn(&self.bin, name, free_port(), &self.env(extra), false)?;
        p.wait_for(tern::health::READY_PATH, 200, Duration::from_secs(30))?;
        Ok(p)
    }

    /// Starts one of our baselines as its own process.
    pub fn baseline(&self, args: &[&str]) -> Result<(Child, u16), String> {
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        cmd.args(args)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        tern_cli::local::die_with_parent(&mut cmd, libc::SIGTERM);
        let child = cmd.spawn().map_err(|e| e.to_string())?;
        tern_cli::local::wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(10))?;
        Ok((child, port))
    }

    /// A connection for set-up and checks.
    pub async fn sql(&self) -> Result<tokio_postgres::Client, String> {
        let (c, conn) = tokio_postgres::connect(&self.db_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(c)
    }

    /// Inserts `n` pending orders of 1250 EUR-cents and returns their ids.
    pub async fn seed_orders(&self, n: i64) -> Result<Vec<String>, String> {
        let db = self.sql().await?;
        let rows = db
            .query(
                "WITH o AS (
                   INSERT INTO orders (id, customer_email, currency, total_cents)
                   SELECT 'ord_' || translate(substr(md5(random()::text || g), 1, 26), '0189', 'wxyz'), 'bench@example.com', 'EUR', 1250
                   FROM generate_series(1, $1::bigint) g RETURNING id)
                 INSERT INTO order_items (order_id, line, sku, quantity, unit_price_cents)
                 SELECT id, 0, 'TEA', 2, 625 FROM o RETURNING order_id",
                &[&n],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

fn stop(mut c: Child) {
    tern_cli::local::signal(&c, libc::SIGTERM);
    let _ = c.wait();
}

fn say(what: &str) {
    println!("[{}] {what}", chrono::Utc::now().format("%H:%M:%S"));
}

/// Runs everything and writes the outputs.
pub async fn run(quick: bool, bin: &Path, out: &Path) -> Result<(), String> {
    let root = repo_root()?;
    let bin = root.join(bin);
    let scratch = root.join(".local/bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let started = Instant::now();

    say("starting PostgreSQL and the Pub/Sub emulator");
    let pg = Postgres::start(&scratch.join("pg"), 0)?;
    tern_cli::dev::ensure_database(&pg.url("postgres"), "bench").await?;
    let db_url = pg.url("bench");
    tern_cli::dev::migrate(
        &bin,
        &[
            ("DATABASE_URL".into(), db_url.clone()),
            ("TERN_LOG".into(), "warn".into()),
        ],
    )?;
    let emulator = Emulator::start(&root.join(".local/bin/pubsub-emulator"), 0)?;
    let pubsub = PubSubConfig {
        project: "bench".into(),
        emulator_host: Some(emulator.addr.clone()),
        publish_timeout: Duration::from_secs(2),
    };
    let table =
        tern_routes::RouteTable::load(&root.join("routes.toml")).map_err(|e| e.to_string())?;
    tern_cli::dev::create_topology(&pubsub, &table).await?;

    let mut b = Bench {
        quick,
        reps: 3,
        dur: Duration::from_secs(if quick { 2 } else { 8 }),
        bin,
        scratch,
        pg,
        emulator,
        db_url,
        pubsub,
        order_id: String::new(),
    };
    b.order_id = b.seed_orders(1000).await?.pop().ok_or("no order seeded")?;

    let mut r = json!({
        "mode": if quick { "quick" } else { "full" },
        "repetitions": b.reps,
        "seconds_per_run": b.dur.as_secs(),
        "http_connections": HTTP_CONNECTIONS,
        "db_connections": DB_CONNECTIONS,
        "machine": report::machine(),
        "commit": report::commit(&root),
        "date": chrono::Utc::now().to_rfc3339(),
        "tools": report::tools(),
    });
    r["route"] = route_and_db(&b).await?;
    r["write"] = write_path(&b).await?;
    r["logging"] = logging_cost(&b).await?;
    r["events"] = event_path(&b).await?;
    r["cold_start"] = cold_start(&b).await?;
    r["footprint"] = footprint(&b).await?;
    r["drills"] = drills::all(&mut b).await?;
    r["total_seconds"] = json!(started.elapsed().as_secs());

    std::fs::create_dir_all(root.join(out)).map_err(|e| e.to_string())?;
    let out = root.join(out);
    std::fs::write(
        out.join("performance.json"),
        serde_json::to_string_pretty(&r).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(out.join("performance.svg"), report::svg(&r)).map_err(|e| e.to_string())?;
    std::fs::write(out.join("performance.md"), report::markdown(&r)).map_err(|e| e.to_string())?;
    say(&format!(
        "wrote {0}/performance.md, .json, .svg in {1}s",
        out.display(),
        started.elapsed().as_secs()
    ));
    Ok(())
}

fn spread<F: Fn(&WrkResult) -> f64>(runs: &[WrkResult], f: F) -> Spread {
    Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
}

fn wrk_json(runs: &[WrkResult]) -> Value {
    json!({
        "runs": runs,
        "rps": spread(runs, |w| w.rps),
        "p50_ms": spread(runs, |w| w.p50_ms),
        "p99_ms": spread(runs, |w| w.p99_ms),
        "errors": runs.iter().map(|w| w.errors).sum::<u64>(),
    })
}

/// 1 and 2: orders-get against bare hyper and bare hyper + tokio-postgres; SELECTs/s against pgbench.
async fn route_and_db(b: &Bench) -> Result<Value, String> {
    say("route efficiency: orders-get vs bare hyper vs bare hyper + tokio-postgres; pgbench");
    let get = b.start("orders-get", &[])?;
    let (hyper_child, hyper_port) = b.baseline(&["bare-hyper"])?;
    let (pg_child, pg_port) = b.baseline(&[
        "bare-pg",
        "--database-url",
        &b.db_url,
        "--connections",
        &DB_CONNECTIONS.to_string(),
    ])?;
    let path = format!("/api/orders/{}", b.order_id);
    let pgbench_db = "pgbench";
    tern_cli::dev::ensure_database(&b.pg.url("postgres"), pgbench_db).await?;
    let pgbench = pgbench_bin()?;
    run_cmd(Command::new(&pgbench).args([
        "-i",
        "-q",
        "-s",
        "10",
        "-h",
        "127.0.0.1",
        "-p",
        &b.pg.port.to_string(),
        "-U",
        "postgres",
        pgbench_db,
    ]))?;

    let (mut tern, mut bare_pg, mut bare_hyper, mut pgb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..b.reps {
        tern.push(wrk::run(
            &format!("{}{path}", get.url()),
            HTTP_CONNECTIONS,
            b.dur,
            None,
        )?);
        bare_pg.push(wrk::run(
            &format!("http://127.0.0.1:{pg_port}{path}"),
            HTTP_CONNECTIONS,
            b.dur,
            None,
        )?);
        bare_hyper.push(wrk::run(
            &format!("http://127.0.0.1:{hyper_port}/"),
            HTTP_CONNECTIONS,
            b.dur,
            None,
        )?);
        let out = run_cmd(Command::new(&pgbench).args([
            "-S",
            "-M",
            "prepared",
            "-n",
            "-c",
            &DB_CONNECTIONS.to_string(),
            "-j",
            "1",
            "-T",
            &b.dur.as_secs().to_string(),
            "-h",
            "127.0.0.1",
            "-p",
            &b.pg.port.to_string(),
            "-U",
            "postgres",
            pgbench_db,
        ]))?;
        pgb.push(parse_pgbench_tps(&out)?);
    }
    stop(hyper_child);
    stop(pg_child);
    // orders-get runs two SELECTs per request (the order, its items).
    let selects: Vec<f64> = tern.iter().map(|w| w.rps * 2.0).collect();
    Ok(json!({
        "tern_orders_get": wrk_json(&tern),
        "bare_hyper_tokio_postgres": wrk_json(&bare_pg),
        "bare_hyper_constant": wrk_json(&bare_hyper),
        "tern_selects_per_s": Spread::of(&selects),
        "pgbench_select_tps": Spread::of(&pgb),
        "pgbench_runs": pgb,
    }))
}

fn pgbench_bin() -> Result<PathBuf, String> {
    Ok(tern_cli::local::postgres_bin_dir()?.join("pgbench"))
}

fn run_cmd(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `tps = 41234.5 (without initial connection time)`.
pub fn parse_pgbench_tps(out: &str) -> Result<f64, String> {
    out.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| {
            l.trim_start_matches("tps = ")
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("no tps in pgbench output: {out}"))
}

/// 3: orders-create against a bare tokio-postgres loop doing the same inserts.
async fn write_path(b: &Bench) -> Result<Value, String> {
    say("write path: orders-create vs a bare tokio-postgres insert loop");
    let create = b.start("orders-create", &[])?;
    let body = json!({"customer_email": "bench@example.com", "currency": "EUR", "items": [{"sku": "TEA", "quantity": 2, "unit_price_cents": 625}]}).to_string();
    let script = wrk::post_script(&b.scratch, "create", &body).map_err(|e| e.to_string())?;
    let (mut tern, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..b.reps {
        tern.push(wrk::run(
            &format!("{}/api/orders", create.url()),
            HTTP_CONNECTIONS,
            b.dur,
            Some(&script),
        )?);
        bare.push(bare_insert_loop(&b.db_url, DB_CONNECTIONS, b.dur).await?);
    }
    // The baseline's outbox rows are not Tern's to publish: leave no backlog for later measurements.
    b.sql()
        .await?
        .execute("DELETE FROM tern_outbox WHERE source = '//bench'", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(json!({
        "tern_orders_create": wrk_json(&tern),
        "bare_tokio_postgres_inserts": wrk_json(&bare),
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
    })
}

/// 7: orders-get with one structured log line per request against logging off.
async fn logging_cost(b: &Bench) -> Result<Value, String> {
    say("logging cost: orders-get with and without the access log");
    let on = b.start("orders-get", &[])?;
    let off = b.start("orders-get", &[("TERN_ACCESS_LOG", "false")])?;
    let path = format!("/api/orders/{}", b.order_id);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..b.reps {
        with.push(wrk::run(
            &format!("{}{path}", on.url()),
            HTTP_CONNECTIONS,
            b.dur,
            None,
        )?);
        without.push(wrk::run(
            &format!("{}{path}", off.url()),
            HTTP_CONNECTIONS,
            b.dur,
            None,
        )?);
    }
    Ok(json!({"logging_on": wrk_json(&with), "logging_off": wrk_json(&without)}))
}

/// 4: CloudEvents/s through payments-events, and publish → order.paid latency end to end.
async fn event_path(b: &Bench) -> Result<Value, String> {
    say(
        "event path: CloudEvents/s through payments-events; payment published → order.paid received",
    );
    let consumer = b.start("payments-events", &[])?;
    let url = format!("{}/events/payments", consumer.url());
    let ids = b.seed_orders(if b.quick { 20_000 } else { 60_000 }).await?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = std::sync::Arc::new(ids);
    let start = Instant::now();
    let workers = (0..HTTP_CONNECTIONS).map(|_| {
        let (ids, next, url, dur) = (ids.clone(), next.clone(), url.clone(), b.dur);
        tokio::spawn(async move {
            let c = load::client();
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while start.elapsed() < dur {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let body = push_body(&format!("bench-{i}"), id);
                let t = Instant::now();
                if load::one(&c, &url, Some(&body)).await != 200 {
                    errors += 1;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (lat, errors)
        })
    });
    let (mut lat, mut errors) = (Vec::new(), 0);
    for w in futures::future::join_all(workers).await {
        let (l, e) = w.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors += e;
    }
    let throughput = lat.len() as f64 / start.elapsed().as_secs_f64();
    let e2e =
        drills::end_to_end_latency(b, &consumer.url(), if b.quick { 50 } else { 200 }).await?;
    Ok(json!({
        "cloudevents_per_s": throughput,
        "p50_ms": percentile(&lat, 50.0),
        "p99_ms": percentile(&lat, 99.0),
        "errors": errors,
        "end_to_end_ms": e2e,
    }))
}

/// A Pub/Sub push request carrying a payment.completed for `order_id`.
pub fn push_body(event_id: &str, order_id: &str) -> String {
    use base64::Engine;
    let data = json!({"order_id": order_id, "payment_id": format!("pay-{event_id}"), "amount_cents": 1250, "currency": "EUR"});
    json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
            "attributes": {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "//bench", "ce-type": "com.example.payment.completed"},
            "messageId": event_id,
        },
        "subscription": "projects/bench/subscriptions/payments-events-payments"
    })
    .to_string()
}

/// 5: process start → first 200 on readiness, → first 200 on orders-get; bare hyper's start.
async fn cold_start(b: &Bench) -> Result<Value, String> {
    say("cold start");
    let n = if b.quick { 10 } else { 20 };
    let (mut ready, mut first, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let path = format!("/api/orders/{}", b.order_id);
    for _ in 0..n {
        let port = free_port();
        let t = Instant::now();
        let mut p = FunctionProcess::spawn(&b.bin, "orders-get", port, &b.env(&[]), false)?;
        p.wait_for(tern::health::READY_PATH, 200, Duration::from_secs(10))?;
        ready.push(t.elapsed().as_secs_f64() * 1000.0);
        p.terminate();

        let port = free_port();
        let t = Instant::now();
        let mut p = FunctionProcess::spawn(&b.bin, "orders-get", port, &b.env(&[]), false)?;
        p.wait_for(&path, 200, Duration::from_secs(10))?;
        first.push(t.elapsed().as_secs_f64() * 1000.0);
        p.terminate();

        let t = Instant::now();
        let port = free_port();
        let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        cmd.args(["bare-hyper", "--port", &port.to_string()])
            .stdout(Stdio::null());
        let child = cmd.spawn().map_err(|e| e.to_string())?;
        // Polled like FunctionProcess::wait_for polls Tern: every 2 ms.
        while tern_cli::local::http_status(port, "/") != Some(200) {
            if t.elapsed() > Duration::from_secs(10) {
                return Err("bare hyper did not start".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
        stop(child);
    }
    Ok(json!({
        "starts": n,
        "tern_start_to_ready_ms": Spread::of(&ready),
        "tern_start_to_first_get_ms": Spread::of(&first),
        "bare_hyper_start_to_first_response_ms": Spread::of(&bare),
    }))
}

/// 6: idle RSS and RSS under load per function; stripped release binary sizes.
async fn footprint(b: &Bench) -> Result<Value, String> {
    say("footprint");
    let mut idle = serde_json::Map::new();
    let mut size = serde_json::Map::new();
    for name in [
        "orders-create",
        "orders-get",
        "orders-list",
        "web",
        "payments-events",
        "outbox-relay",
    ] {
        let p = b.start(name, &[])?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle.insert(name.into(), json!(rss_mib(p.pid())));
    }
    for name in [
        "orders-create",
        "orders-get",
        "orders-list",
        "web",
        "payments-events",
        "outbox-relay",
        "migrate",
    ] {
        let bytes = std::fs::metadata(b.bin.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        size.insert(name.into(), json!(bytes as f64 / 1_048_576.0));
    }
    // Under load: orders-get at full tilt, RSS sampled every 100 ms.
    let p = b.start("orders-get", &[])?;
    let pid = p.pid();
    let url = format!("{}/api/orders/{}", p.url(), b.order_id);
    let dur = b.dur;
    let sampler = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        let t = Instant::now();
        while t.elapsed() < dur {
            peak = peak.max(rss_mib(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    let load = tokio::task::spawn_blocking(move || wrk::run(&url, HTTP_CONNECTIONS, dur, None));
    let _ = load.await.map_err(|e| e.to_string())??;
    let peak = sampler.await.map_err(|e| e.to_string())?;
    Ok(json!({"idle_rss_mib": idle, "orders_get_rss_under_load_mib": peak, "binary_mib": size}))
}

/// Resident set size of `pid`, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pgbench_tps() {
        let out = "transaction type: <builtin: select only>\nscaling factor: 10\ntps = 41234.567890 (without initial connection time)\n";
        assert_eq!(super::parse_pgbench_tps(out).unwrap(), 41234.56789);
        assert!(super::parse_pgbench_tps("").is_err());
    }
}
