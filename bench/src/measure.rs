//! The measurements of the HTTP and database paths, each against its baseline in the same run,
//! and the run that calls every measurement and drill and writes the report.

use crate::harness::{Bench, DB_CONNECTIONS, HTTP_CONNECTIONS, load_with_cpu, say, stop};
use crate::stats::Spread;
use crate::wrk;
use crate::{drills, events, peers, report, stack, startup, svg, write};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tern_local::{Database, Output, PubSub, World, WorldOptions, repo_root};

/// Runs everything and writes the outputs.
pub async fn run(quick: bool, bin: &Path, out: &Path, only: Option<&str>) -> Result<(), String> {
    let root = repo_root()?;
    let bin = root.join(bin);
    let scratch = root.join(".local/bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let started = Instant::now();

    say("starting PostgreSQL and the Pub/Sub emulator");
    let world = World::start(WorldOptions {
        root: root.clone(),
        bin_dir: bin,
        database: Database::Throwaway {
            dir: scratch.join("pg"),
            port: 0,
            name: "bench".into(),
        },
        pubsub: PubSub::Start { port: 0 },
        project: "bench".into(),
        output: Output::Quiet,
    })
    .await?;
    let mut b = Bench {
        quick,
        reps: 3,
        dur: Duration::from_secs(if quick { 2 } else { 8 }),
        scratch,
        world,
        order_id: String::new(),
    };
    b.order_id = b.seed_orders(1000).await?.pop().ok_or("no order seeded")?;
    if let Some(name) = only {
        let v = match name {
            "route" => route_and_db(&b).await?,
            "write" => write::write_path(&b).await?,
            "logging" => logging_cost(&b).await?,
            "events" => events::event_path(&b).await?,
            "cold-start" => startup::cold_start(&b).await?,
            "footprint" => startup::footprint(&b).await?,
            "peers" => peers::peers(&b).await?,
            _ => drills::all(&mut b).await?,
        };
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }

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
    r["write"] = write::write_path(&b).await?;
    r["logging"] = logging_cost(&b).await?;
    r["stack"] = stack::stack_cost(if quick { 3 } else { 7 }).await?;
    r["events"] = events::event_path(&b).await?;
    r["cold_start"] = startup::cold_start(&b).await?;
    r["footprint"] = startup::footprint(&b).await?;
    r["peers"] = peers::peers(&b).await?;
    r["drills"] = drills::all(&mut b).await?;
    r["total_seconds"] = json!(started.elapsed().as_secs());

    std::fs::create_dir_all(root.join(out)).map_err(|e| e.to_string())?;
    let out = root.join(out);
    std::fs::write(
        out.join("performance.json"),
        serde_json::to_string_pretty(&r).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    write_report(&out, &r)?;
    say(&format!(
        "wrote {0}/performance.md, .json, .svg in {1}s",
        out.display(),
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// performance.svg and performance.md in `out`, from the figures `r`.
fn write_report(out: &Path, r: &Value) -> Result<(), String> {
    std::fs::write(out.join("performance.svg"), svg::svg(r)).map_err(|e| e.to_string())?;
    std::fs::write(out.join("performance.md"), report::markdown(r)).map_err(|e| e.to_string())
}

/// `tern-bench render`: the report again from `out/performance.json`.
pub fn render(out: &Path) -> Result<(), String> {
    let out = tern_local::repo_root()?.join(out);
    let json = out.join("performance.json");
    let text = std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
    let r: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    write_report(&out, &r)?;
    say(&format!(
        "wrote {0}/performance.md, .svg from {0}/performance.json",
        out.display()
    ));
    Ok(())
}

/// 1 and 2: orders-get against bare hyper and bare hyper + tokio-postgres; SELECTs/s against pgbench.
async fn route_and_db(b: &Bench) -> Result<Value, String> {
    say("route efficiency: orders-get vs bare hyper vs bare hyper + tokio-postgres; pgbench");
    let get = b.start("orders-get", &[])?;
    // The same function with every request's reads on a connection of their own, as before
    // reads shared connections (decision 0033).
    let unshared = b.start("orders-get", &[("DB_READS_PER_CONNECTION", "1")])?;
    // The same function as a Knative pod: wrk → queue-proxy (HTTP/1.1) → orders-get; and the
    // whole local path: wrk → the router → h2c → queue-proxy → h2c → orders-get.
    let pod = b.start_pod("orders-get", &[])?;
    let (router, stop_router) = crate::drills::router_in_front(b, vec![pod.addr()]).await?;
    let (hyper_child, hyper_port) = b.baseline(&["bare-hyper"])?;
    let (pg_child, pg_port) = b.baseline(&[
        "bare-pg",
        "--database-url",
        b.db_url(),
        "--connections",
        &DB_CONNECTIONS.to_string(),
    ])?;
    let (pooled_child, pooled_port) = b.baseline(&[
        "bare-pg",
        "--database-url",
        b.db_url(),
        "--connections",
        &DB_CONNECTIONS.to_string(),
        "--exclusive",
    ])?;
    let path = format!("/api/orders/{}", b.order_id);
    let pgbench_db = "pgbench";
    let pg_port_s = b.pg()?.port.to_string();
    tern_local::ensure_database(&b.pg()?.url("postgres"), pgbench_db).await?;
    let pgbench = pgbench_bin()?;
    run_cmd(Command::new(&pgbench).args([
        "-i",
        "-q",
        "-s",
        "10",
        "-h",
        "127.0.0.1",
        "-p",
        &pg_port_s,
        "-U",
        "postgres",
        pgbench_db,
    ]))?;

    let (mut tern, mut bare_pg, mut bare_hyper, mut pgb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bare_pooled = Vec::new();
    let mut tern_unshared = Vec::new();
    // CPU per request of each server's process over its own runs, µs.
    let mut cpu: [Vec<f64>; 4] = Default::default();
    let (mut via_qp, mut via_router, mut in_pod) = (Vec::new(), Vec::new(), Vec::new());
    let in_pod_url = match &pod {
        tern_local::Instance::Pod(p) => format!("http://{}{path}", p.function_addr()),
        tern_local::Instance::Process(p) => format!("{}{path}", p.url()),
    };
    for _ in 0..b.reps {
        let (w, us) = load_with_cpu(&format!("{}{path}", get.url()), b.dur, get.pid())?;
        tern.push(w);
        cpu[0].push(us);
        let (w, us) = load_with_cpu(&format!("{}{path}", unshared.url()), b.dur, unshared.pid())?;
        tern_unshared.push(w);
        cpu[1].push(us);
        via_qp.push(wrk::run(
            &format!("{}{path}", pod.url()),
            HTTP_CONNECTIONS,
            b.dur,
            None,
        )?);
        in_pod.push(wrk::run(&in_pod_url, HTTP_CONNECTIONS, b.dur, None)?);
        via_router.push(wrk::run(
            &format!("{router}{path}"),
            HTTP_CONNECTIONS,
            b.dur,
            None,
        )?);
        let (w, us) = load_with_cpu(
            &format!("http://127.0.0.1:{pg_port}{path}"),
            b.dur,
            pg_child.id(),
        )?;
        bare_pg.push(w);
        cpu[2].push(us);
        let (w, us) = load_with_cpu(
            &format!("http://127.0.0.1:{pooled_port}{path}"),
            b.dur,
            pooled_child.id(),
        )?;
        bare_pooled.push(w);
        cpu[3].push(us);
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
            &pg_port_s,
            "-U",
            "postgres",
            pgbench_db,
        ]))?;
        pgb.push(parse_pgbench_tps(&out)?);
    }
    stop(hyper_child);
    stop(pg_child);
    stop(pooled_child);
    stop_router.cancel();
    drop(pod);
    // orders-get runs two SELECTs per request (the order, its items).
    let selects: Vec<f64> = tern.iter().map(|w| w.rps * 2.0).collect();
    Ok(json!({
        "tern_orders_get": wrk::wrk_json(&tern),
        "tern_orders_get_reads_unshared": wrk::wrk_json(&tern_unshared),
        "cpu_us_per_request": {
            "tern_orders_get": Spread::of(&cpu[0]),
            "tern_orders_get_reads_unshared": Spread::of(&cpu[1]),
            "bare_hyper_tokio_postgres": Spread::of(&cpu[2]),
            "bare_hyper_tokio_postgres_exclusive": Spread::of(&cpu[3]),
        },
        "tern_orders_get_via_queue_proxy": wrk::wrk_json(&via_qp),
        "tern_orders_get_in_pod_without_queue_proxy": wrk::wrk_json(&in_pod),
        "tern_orders_get_via_router_and_queue_proxy": wrk::wrk_json(&via_router),
        "bare_hyper_tokio_postgres": wrk::wrk_json(&bare_pg),
        "bare_hyper_tokio_postgres_exclusive": wrk::wrk_json(&bare_pooled),
        "bare_hyper_constant": wrk::wrk_json(&bare_hyper),
        "tern_selects_per_s": Spread::of(&selects),
        "pgbench_select_tps": Spread::of(&pgb),
        "pgbench_runs": pgb,
    }))
}

fn pgbench_bin() -> Result<PathBuf, String> {
    Ok(tern_local::postgres_bin_dir()?.join("pgbench"))
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

/// 7: what observability costs: orders-get as deployed (access log and metrics on) against the
/// same with the access log off, with the metrics off (`TERN_METRICS_PORT=off` removes the
/// middleware), and with every request's span exported over OTLP to a real Jaeger
/// (`scripts/tools traces` builds it; without it that run is skipped), interleaved run by run.
async fn logging_cost(b: &Bench) -> Result<Value, String> {
    say("observability cost: orders-get with and without the access log, the metrics, span export");
    let root = repo_root()?;
    let jaeger = if tern_local::jaeger::available(&root) {
        Some(tern_local::jaeger::Jaeger::start(
            &b.scratch.join("jaeger"),
            &root,
            0,
            0,
        )?)
    } else {
        say("  (no .local/bin/jaeger: span export not measured; scripts/tools traces builds it)");
        None
    };
    let on = b.start("orders-get", &[])?;
    let off = b.start("orders-get", &[("TERN_ACCESS_LOG", "false")])?;
    let no_metrics = b.start("orders-get", &[("TERN_METRICS_PORT", "off")])?;
    let exporting = match &jaeger {
        Some(j) => Some(b.start(
            "orders-get",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", j.otlp_endpoint().as_str())],
        )?),
        None => None,
    };
    let path = format!("/api/orders/{}", b.order_id);
    let (mut with, mut without, mut unmeasured, mut traced) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..b.reps {
        for (runs, instance) in [
            (&mut with, Some(&on)),
            (&mut without, Some(&off)),
            (&mut unmeasured, Some(&no_metrics)),
            (&mut traced, exporting.as_ref()),
        ] {
            let Some(instance) = instance else { continue };
            runs.push(wrk::run(
                &format!("{}{path}", instance.url()),
                HTTP_CONNECTIONS,
                b.dur,
                None,
            )?);
        }
    }
    Ok(json!({
        "logging_on": wrk::wrk_json(&with),
        "logging_off": wrk::wrk_json(&without),
        "metrics_off": wrk::wrk_json(&unmeasured),
        "spans_exported": if traced.is_empty() { Value::Null } else { wrk::wrk_json(&traced) },
    }))
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
