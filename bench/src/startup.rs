//! Start-up and footprint: process start to ready and to a first answer against bare hyper's
//! start, idle and loaded memory per function, binary sizes.

use crate::harness::{Bench, HTTP_CONNECTIONS, say, spawn_baseline, stop};
use crate::stats::Spread;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tern_routes::Kind;

/// 5: process start → first 200 on readiness, → first 200 on orders-get; bare hyper's start.
pub async fn cold_start(b: &Bench) -> Result<Value, String> {
    say("cold start");
    let n = if b.quick { 10 } else { 20 };
    let (mut ready, mut first, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let path = format!("/api/orders/{}", b.order_id);
    for _ in 0..n {
        let t = Instant::now();
        let mut p = b.world.spawn_with("orders-get", 0, &b.env(&[]))?;
        p.wait_for(tern::platform::READY_PATH, 200, Duration::from_secs(10))?;
        ready.push(t.elapsed().as_secs_f64() * 1000.0);
        p.terminate();

        let t = Instant::now();
        let mut p = b.world.spawn_with("orders-get", 0, &b.env(&[]))?;
        p.wait_for(&path, 200, Duration::from_secs(10))?;
        first.push(t.elapsed().as_secs_f64() * 1000.0);
        p.terminate();

        let t = Instant::now();
        let (child, port) = spawn_baseline(&["bare-hyper"])?;
        // Polled like FunctionProcess::wait_for polls Tern: every 2 ms.
        while tern_local::http_status(port, "/") != Some(200) {
            if t.elapsed() > Duration::from_secs(10) {
                return Err("bare hyper did not start".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
        stop(child);
    }
    // The same through queue-proxy, in a pod of its own, as Knative starts a revision's pod.
    let mut pod_first = Vec::new();
    for _ in 0..n {
        let env = b.env(&[]);
        let get = b.world.function("orders-get")?;
        let t = Instant::now();
        let pod = b.world.launcher.spawn(get, &env, 0)?;
        let addr: std::net::SocketAddr = pod
            .addr()
            .parse()
            .map_err(|e| format!("pod address: {e}"))?;
        while status_at(addr, &path) != Some(200) {
            if t.elapsed() > Duration::from_secs(10) {
                return Err("orders-get's pod did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        pod_first.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(pod);
    }
    Ok(json!({
        "starts": n,
        "pod_start_to_first_get_ms": Spread::of(&pod_first),
        "tern_start_to_ready_ms": Spread::of(&ready),
        "tern_start_to_first_get_ms": Spread::of(&first),
        "bare_hyper_start_to_first_response_ms": Spread::of(&bare),
    }))
}

/// `GET path` on `addr` over HTTP/1.1; the status, if any.
fn status_at(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// 6: idle RSS and RSS under load per function; stripped release binary sizes.
pub async fn footprint(b: &Bench) -> Result<Value, String> {
    say("footprint");
    let mut idle = serde_json::Map::new();
    let mut size = serde_json::Map::new();
    // Every function of the route table; the HTTP ones are also started for their idle memory.
    let table = &b.world.table;
    for f in table.functions.iter().filter(|f| f.kind == Kind::Http) {
        let name = f.name.as_str();
        let p = b.start(name, &[])?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle.insert(name.into(), json!(crate::harness::rss_mib(p.pid())));
    }
    for name in table.functions.iter().map(|f| f.name.as_str()) {
        let bytes = std::fs::metadata(b.world.bin_dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        size.insert(name.into(), json!(bytes as f64 / 1_048_576.0));
    }
    // Under load: orders-get at full tilt, RSS sampled every 100 ms.
    let p = b.start("orders-get", &[])?;
    let url = format!("{}/api/orders/{}", p.url(), b.order_id);
    let (_, peak) =
        crate::harness::load_with_rss(&url, HTTP_CONNECTIONS, b.dur, None, p.pid()).await?;
    Ok(json!({"idle_rss_mib": idle, "orders_get_rss_under_load_mib": peak, "binary_mib": size}))
}
