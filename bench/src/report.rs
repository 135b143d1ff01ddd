//! The outputs: docs/performance.md (the table), performance.json (every figure), performance.svg
//! (the headline ratios).

use serde_json::{Value, json};
use std::fmt::Write;
use std::path::Path;
use std::process::Command;

/// The machine the run was on.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "memory_gib": (mem_kib / 1_048_576.0 * 10.0).round() / 10.0,
        "kernel": output("uname", &["-r"]),
    })
}

/// The commit measured.
pub fn commit(root: &Path) -> String {
    output(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
}

/// Versions of the tools in the run.
pub fn tools() -> Value {
    let pg = tern_local::postgres_bin_dir()
        .map(|d| d.join("postgres").display().to_string())
        .unwrap_or_default();
    json!({
        "wrk": output("sh", &["-c", "dpkg-query -W -f='${Version}' wrk 2>/dev/null"]),
        "postgres": output(&pg, &["--version"]),
        "rustc": output("rustc", &["--version"]),
    })
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn spread(v: &Value, digits: usize) -> String {
    format!(
        "{:.d$} ({:.d$}–{:.d$})",
        f(&v["median"]),
        f(&v["min"]),
        f(&v["max"]),
        d = digits
    )
}

/// The headline ratios: (label, ratio, target).
pub fn headlines(r: &Value) -> Vec<(&'static str, f64, Option<f64>)> {
    let rt = &r["route"];
    let med = |v: &Value| f(&v["median"]);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    vec![
        (
            "orders-get ÷ bare hyper+tokio-postgres (req/s)",
            ratio(
                med(&rt["tern_orders_get"]["rps"]),
                med(&rt["bare_hyper_tokio_postgres"]["rps"]),
            ),
            Some(0.9),
        ),
        (
            "orders-get ÷ the same baseline, one request per connection at a time (req/s)",
            ratio(
                med(&rt["tern_orders_get"]["rps"]),
                med(&rt["bare_hyper_tokio_postgres_exclusive"]["rps"]),
            ),
            None,
        ),
        (
            "orders-get, reads sharing connections ÷ each read on a connection of its own (req/s)",
            ratio(
                med(&rt["tern_orders_get"]["rps"]),
                med(&rt["tern_orders_get_reads_unshared"]["rps"]),
            ),
            None,
        ),
        (
            "orders-get ÷ bare hyper constant (req/s)",
            ratio(
                med(&rt["tern_orders_get"]["rps"]),
                med(&rt["bare_hyper_constant"]["rps"]),
            ),
            None,
        ),
        (
            "SELECTs/s via orders-get ÷ pgbench -S",
            ratio(
                med(&rt["tern_selects_per_s"]),
                med(&rt["pgbench_select_tps"]),
            ),
            Some(0.7),
        ),
        (
            "orders-get via queue-proxy ÷ the same pod without it (req/s)",
            ratio(
                med(&rt["tern_orders_get_via_queue_proxy"]["rps"]),
                med(&rt["tern_orders_get_in_pod_without_queue_proxy"]["rps"]),
            ),
            None,
        ),
        (
            "orders-get via queue-proxy ÷ on the host (req/s)",
            ratio(
                med(&rt["tern_orders_get_via_queue_proxy"]["rps"]),
                med(&rt["tern_orders_get"]["rps"]),
            ),
            None,
        ),
        (
            "orders-create ÷ bare insert loop (tx/s)",
            ratio(
                med(&r["write"]["tern_orders_create"]["rps"]),
                med(&r["write"]["bare_tokio_postgres_inserts"]["rps"]),
            ),
            Some(0.6),
        ),
        (
            "logging on ÷ logging off (req/s)",
            ratio(
                med(&r["logging"]["logging_on"]["rps"]),
                med(&r["logging"]["logging_off"]["rps"]),
            ),
            Some(0.95),
        ),
        (
            "metrics on ÷ metrics off (req/s)",
            ratio(
                med(&r["logging"]["logging_on"]["rps"]),
                med(&r["logging"]["metrics_off"]["rps"]),
            ),
            Some(0.97),
        ),
        (
            "spans exported ÷ not (req/s)",
            ratio(
                med(&r["logging"]["spans_exported"]["rps"]),
                med(&r["logging"]["logging_on"]["rps"]),
            ),
            None,
        ),
    ]
}

/// What each change of issue 17 did and what the profiles found: history, not this run's.
const CHANGES: &str = include_str!("changes.md");

/// docs/performance.md.
pub fn markdown(r: &Value) -> String {
    let m = &r["machine"];
    let rt = &r["route"];
    let mut s = String::new();
    let _ = writeln!(s, "# Performance\n");
    let _ = writeln!(
        s,
        "Measured by `scripts/bench{}` on {} ({} CPUs, {} GiB, Linux {}), commit `{}`, {}. Every figure is the median of {} runs of {} s, with the smallest and largest in brackets; the raw figures are in [`performance.json`](performance.json). Load: wrk {} with {} connections (one thread); database connections: {} (Tern's pool, baseline (b) and pgbench alike). Everything — load generator, servers, PostgreSQL — shares the same machine, so ratios matter more than absolute numbers.\n",
        if r["mode"] == "quick" { " --quick" } else { "" },
        m["cpu_model"].as_str().unwrap_or("?"),
        m["cpus"],
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or("?"),
        r["commit"].as_str().unwrap_or("?"),
        r["date"]
            .as_str()
            .unwrap_or("?")
            .split('T')
            .next()
            .unwrap_or(""),
        r["repetitions"],
        r["seconds_per_run"],
        r["tools"]["wrk"].as_str().unwrap_or("?"),
        r["http_connections"],
        r["db_connections"],
    );
    let _ = writeln!(s, "![headline ratios](performance.svg)\n");
    let _ = writeln!(
        s,
        "## Headline ratios\n\n| ratio | measured | target |\n|---|---|---|"
    );
    for (label, ratio, target) in headlines(r) {
        let t = target.map_or("—".to_owned(), |t| format!("≥ {t}"));
        let _ = writeln!(s, "| {label} | {ratio:.2} | {t} |");
    }
    s.push_str(&crate::peers::markdown(&r["peers"]));
    let _ = writeln!(
        s,
        "\n## Throughput and latency\n\n| what | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|"
    );
    for (label, v) in [
        (
            "orders-get (Tern: pool, middleware, JSON logs)",
            &rt["tern_orders_get"],
        ),
        (
            "orders-get, each read on a connection of its own (`DB_READS_PER_CONNECTION=1`)",
            &rt["tern_orders_get_reads_unshared"],
        ),
        (
            "orders-get in its pod, straight to the function (no queue-proxy; PostgreSQL through the pod's forwarder)",
            &rt["tern_orders_get_in_pod_without_queue_proxy"],
        ),
        (
            "orders-get as a Knative pod: wrk → queue-proxy (HTTP/1.1) → function",
            &rt["tern_orders_get_via_queue_proxy"],
        ),
        (
            "orders-get, the whole local path: wrk → router → h2c → queue-proxy → h2c → function",
            &rt["tern_orders_get_via_router_and_queue_proxy"],
        ),
        (
            "baseline (b): bare hyper + tokio-postgres, same SELECTs",
            &rt["bare_hyper_tokio_postgres"],
        ),
        (
            "baseline (b) with one request per connection at a time, as with a pool",
            &rt["bare_hyper_tokio_postgres_exclusive"],
        ),
        (
            "baseline (a): bare hyper, constant body",
            &rt["bare_hyper_constant"],
        ),
        (
            "orders-create (Tern: transaction + outbox + publish), 8 connections",
            &r["write"]["tern_orders_create"],
        ),
        (
            "orders-create, 32 connections (4 clients per pooled connection)",
            &r["write"]["tern_orders_create_http_connections"],
        ),
        (
            "baseline: bare tokio-postgres insert loop, same rows, 8 connections",
            &r["write"]["bare_tokio_postgres_inserts"],
        ),
        ("orders-get, access log on", &r["logging"]["logging_on"]),
        ("orders-get, access log off", &r["logging"]["logging_off"]),
        (
            "orders-get, metrics off (access log on)",
            &r["logging"]["metrics_off"],
        ),
    ] {
        if v.is_null() {
            continue; // a run from before the row existed
        }
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} |",
            spread(&v["rps"], 0),
            spread(&v["p50_ms"], 2),
            spread(&v["p99_ms"], 2),
            v["errors"]
        );
    }
    let _ = writeln!(
        s,
        "\nQueue-proxy (Knative Serving's own, built here) runs on the same cores as wrk, the function and PostgreSQL, so its CPU is taken from theirs; in the cluster it has its own request (`queue-sidecar-cpu-request` in the platform's KnativeServing). Its cost is the pod-without-it row against the pod-through-it row.\n\nDatabase efficiency: {} SELECTs/s through orders-get (two per request) against {} with `pgbench -S -M prepared` on the same PostgreSQL.\n",
        spread(&rt["tern_selects_per_s"], 0),
        spread(&rt["pgbench_select_tps"], 0)
    );
    let cpu = &rt["cpu_us_per_request"];
    if !cpu.is_null() {
        let _ = writeln!(
            s,
            "CPU per request (user + system time of the server's process over its own runs ÷ its requests, µs; wrk and PostgreSQL not counted): orders-get {}, with each read on a connection of its own {}; baseline (b) {}, one request per connection {}.\n",
            spread(&cpu["tern_orders_get"], 1),
            spread(&cpu["tern_orders_get_reads_unshared"], 1),
            spread(&cpu["bare_hyper_tokio_postgres"], 1),
            spread(&cpu["bare_hyper_tokio_postgres_exclusive"], 1),
        );
    }
    let w = &r["write"];
    let _ = writeln!(
        s,
        "The write path at equal concurrency: orders-create's p99 is {:.1}× the bare loop's (target ≤ 3×); {} of the {} outbox rows written were still unpublished 2 s after the last request (left to the relay: no publish slot free, or the publish failed), the rest published right after their commits.\n",
        f(&w["tern_orders_create"]["p99_ms"]["median"])
            / f(&w["bare_tokio_postgres_inserts"]["p99_ms"]["median"]),
        w["rows_left_to_the_relay"],
        w["rows_written"]
    );
    let st = &r["stack"];
    let extra = f(&st["metrics_ns_per_request"]);
    let rps = f(&r["logging"]["logging_on"]["rps"]["median"]);
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let _ = writeln!(
        s,
        "The metrics middleware in process (the whole runtime stack around a constant handler, no sockets, {} requests a sample): {} ns per request with the metrics on, {} ns off, so the metrics cost {extra:.0} ns per request. At orders-get's {rps:.0} req/s on {cores} cores, where every request has {:.0} µs of the machine's CPU (wrk, PostgreSQL and the function together), that is {:.2} % of the throughput: the wrk ratio above measures the same thing through the noise of a shared machine.\n",
        st["requests_per_sample"],
        spread(&st["metrics_on_ns"], 0),
        spread(&st["metrics_off_ns"], 0),
        if rps > 0.0 { cores * 1e6 / rps } else { 0.0 },
        if rps > 0.0 {
            100.0 * extra * rps / (cores * 1e9)
        } else {
            0.0
        },
    );
    let ev = &r["events"];
    let _ = writeln!(
        s,
        "## Event path\n\n- CloudEvents through payments-events (decode, dedupe, update, outbox, publish): {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors.\n- Payment published to the emulator → `order.paid` received on a subscription (local push delivery): p50 {:.1} ms, p99 {:.1} ms over {} events ({} received).\n",
        f(&ev["cloudevents_per_s"]),
        f(&ev["p50_ms"]),
        f(&ev["p99_ms"]),
        ev["errors"],
        f(&ev["end_to_end_ms"]["p50_ms"]),
        f(&ev["end_to_end_ms"]["p99_ms"]),
        ev["end_to_end_ms"]["events"],
        ev["end_to_end_ms"]["received"]
    );
    let cs = &r["cold_start"];
    let _ = writeln!(
        s,
        "## Cold start ({} starts)\n\n| from process start to | ms | target |\n|---|---|---|\n| first 200 on `/_tern/ready` (includes the first PostgreSQL connection) | {} | ≤ 20 |\n| first 200 on `GET /api/orders/{{id}}` | {} | ≤ 50 |\n| bare hyper's first response | {} | — |\n| as a Knative pod: namespace made, queue-proxy and function started → first 200 on `GET /api/orders/{{id}}` through queue-proxy | {} | — |\n",
        cs["starts"],
        spread(&cs["tern_start_to_ready_ms"], 1),
        spread(&cs["tern_start_to_first_get_ms"], 1),
        spread(&cs["bare_hyper_start_to_first_response_ms"], 1),
        spread(&cs["pod_start_to_first_get_ms"], 1)
    );
    let fp = &r["footprint"];
    let _ = writeln!(
        s,
        "## Footprint\n\n| function | idle RSS MiB (target ≤ 10) | stripped binary MiB |\n|---|---|---|"
    );
    if let Some(idle) = fp["idle_rss_mib"].as_object() {
        for (name, rss) in idle {
            let _ = writeln!(
                s,
                "| {name} | {:.1} | {:.1} |",
                f(rss),
                f(&fp["binary_mib"][name])
            );
        }
    }
    let _ = writeln!(
        s,
        "\norders-get under load: {:.1} MiB RSS at peak.\n",
        f(&fp["orders_get_rss_under_load_mib"])
    );
    let d = &r["drills"];
    let _ = writeln!(
        s,
        "## Drills\n\n| drill | result |\n|---|---|\n| revision swap under load through router → queue-proxy (h2c) → function (new pod ready → router switched → old pod deleted as the kubelet does: queue-proxy drains, then the function gets SIGTERM) | {} requests, {} failed; old pod's preStop returned after {:.1} s, function: {} |\n| burst from idle: {} clients at once on a fresh orders-get | first success after {:.1} ms, {} errors in {} requests, p99 {:.1} ms |\n| Pub/Sub down while {} orders are created | {} created, backlog published in {:.0} ms after the emulator returned, {} `order.created` received for {} distinct orders |\n| PostgreSQL stopped 2 s under load | {} requests during the outage: {} fast 503s, {} hung, {} other errors; first success {:.0} ms after PostgreSQL was back |\n",
        d["drain"]["requests"],
        d["drain"]["failed"],
        f(&d["drain"]["pre_stop_ms"]) / 1000.0,
        d["drain"]["old_function_exit"].as_str().unwrap_or("?"),
        d["burst"]["clients"],
        f(&d["burst"]["first_success_ms"]),
        d["burst"]["errors"],
        d["burst"]["requests"],
        f(&d["burst"]["p99_ms"]),
        d["pubsub_outage"]["orders_created"],
        d["pubsub_outage"]["orders_created"],
        f(&d["pubsub_outage"]["backlog_drain_ms"]),
        d["pubsub_outage"]["order_created_received"],
        d["pubsub_outage"]["distinct_orders"],
        d["database_restart"]["during_outage"],
        d["database_restart"]["failed_fast_503"],
        d["database_restart"]["hung"],
        d["database_restart"]["other_errors"],
        f(&d["database_restart"]["back_to_first_success_ms"]),
    );
    let _ = writeln!(
        s,
        "{CHANGES}## Reproduce\n\n```sh\nscripts/bench           # 3 runs of 8 s per measurement: about 10 minutes after the release build\nscripts/bench --quick   # 3 runs of 2 s: about 4 minutes after the release build\n```\n\n`scripts/bench` installs wrk (Debian's package, pinned) when missing, builds the release binaries (about 10 minutes from scratch on 2 cores; each binary is optimised across crates, decision 0031), and rewrites this page, `performance.json` and `performance.svg`. This run took {} s after the build.",
        r["total_seconds"]
    );
    s
}
