//! Failures of what the functions depend on, and of the functions' own lifecycle.

use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tern_e2e::*;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_gives_fast_503s_and_recovers_without_a_restart() {
    let mut pg = Postgres::start(&scratch("pg-outage"), 0).unwrap();
    migrated_template(&pg).await;
    let emulator = Emulator::start(&root().join(".local/bin/pubsub-emulator"), 0).unwrap();
    let mut sys = System::on(&pg, &emulator.addr).await;
    let create = sys.start("orders-create");
    let get = sys.start("orders-get");
    let o: serde_json::Value = sys
        .create_order(&create, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let url = format!("{get}/api/orders/{}", o["id"].as_str().unwrap());
    assert_eq!(sys.http.get(&url).send().await.unwrap().status(), 200);

    pg.stop();
    // DB_WAIT_TIMEOUT=1s + DB_CONNECT_TIMEOUT=1s: every answer within a few seconds, all 503.
    for _ in 0..3 {
        let t = Instant::now();
        let r = sys
            .http
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        // The detail says what to do; the driver's text stays in the log.
        let problem: serde_json::Value = r.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.to_lowercase().contains("retry after"), "{detail}");
        for driver in ["os error", "refused", "error connecting", "timed out"] {
            assert!(!detail.contains(driver), "{detail}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }
    let ready = sys
        .http
        .get(format!("{}/_tern/ready", sys.pod_url("orders-get")))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let post = sys.create_order(&create, &order_body()).await;
    assert_eq!(post.status(), 503);

    pg.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = sys.http.get(&url).send().await.unwrap().status();
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: last status {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sys.http
            .get(format!("{}/_tern/ready", sys.pod_url("orders-get")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(sys.create_order(&create, &order_body()).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn pubsub_down_loses_nothing_and_publishes_nothing_twice() {
    let mut emulator = Emulator::start(&root().join(".local/bin/pubsub-emulator"), 0).unwrap();
    let pg = Postgres::start(&scratch("pg-pubsub-outage"), 0).unwrap();
    migrated_template(&pg).await;
    let mut sys = System::on(&pg, &emulator.addr).await;
    sys.set("PUBSUB_PUBLISH_TIMEOUT", "1s");
    // Failed rows are due again at once: each flush below sees all of them.
    sys.set("OUTBOX_RETRY_BACKOFF", "10ms");
    let create = sys.start("orders-create");
    let relay = sys.start("outbox-relay");

    emulator.stop();
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let r = sys.create_order(&create, &order_body()).await;
        assert_eq!(r.status(), 201, "creates succeed while Pub/Sub is down");
        ids.insert(
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Let the after-commit publishes fail.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sys.pending_outbox().await, 5);
    let relay_down = sys
        .http
        .post(format!("{relay}/internal/outbox/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(relay_down.status(), 503, "the relay reports the outage");

    emulator.restart().unwrap();
    tern_local::create_topology(&sys.pubsub, &table())
        .await
        .unwrap();
    sys.subscribe("watch-orders", "orders").await;
    let report: serde_json::Value = sys
        .http
        .post(format!("{relay}/internal/outbox/flush"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["published"], 5, "{report}");
    assert_eq!(report["pending"], 0);
    // A second flush finds nothing.
    let again: serde_json::Value = sys
        .http
        .post(format!("{relay}/internal/outbox/flush"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["published"], 0);

    let msgs = sys
        .collect("watch-orders", 10, Duration::from_secs(3))
        .await;
    let got: std::collections::BTreeSet<String> =
        msgs.iter().map(|m| attr(m, "ce-subject")).collect();
    assert_eq!(msgs.len(), 5, "each order.created exactly once");
    assert_eq!(got, ids);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let mut sys = System::new().await;
    sys.set("TERN_DRAIN_DELAY", "300ms");
    sys.set("TERN_GRACE_PERIOD", "10s");
    // The runtime's own drain, on the bare process (the pod's is tests/tests/pod.rs).
    let create = sys.start_process("orders-create");
    let port = sys.processes["orders-create"].port;

    // Three requests whose bodies are still arriving when SIGTERM comes.
    let body = order_body().to_string();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        s.write_all(&body.as_bytes()[..10]).unwrap();
        streams.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let child = sys
        .processes
        .get_mut("orders-create")
        .unwrap()
        .send_sigterm()
        .unwrap();
    // Readiness turns 503 at once, while requests are still served during the drain delay.
    std::thread::sleep(Duration::from_millis(100));
    let ready = reqwest::get(format!("{create}/_tern/ready")).await.unwrap();
    assert_eq!(ready.status(), 503);
    std::thread::sleep(Duration::from_millis(400));
    for s in &mut streams {
        s.write_all(&body.as_bytes()[10..]).unwrap();
    }
    for s in &mut streams {
        let mut buf = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"}") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 201"),
            "in-flight request failed: {text}"
        );
    }
    let mut child = child;
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        started.elapsed()
    );
    let n = sys.count("orders").await;
    assert_eq!(n, 3);
}

#[test]
fn bad_configuration_is_one_line_and_a_non_zero_exit() {
    /// (binary, environment, the variable the error must name)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("orders-get", &[("PORT", "http")], "PORT"),
        (
            "orders-get",
            &[("TERN_REQUEST_TIMEOUT", "30")],
            "TERN_REQUEST_TIMEOUT",
        ),
        ("orders-get", &[], "DATABASE_URL"),
        (
            "orders-get",
            &[("TERN_METRICS_PORT", "nine")],
            "TERN_METRICS_PORT",
        ),
        (
            "orders-get",
            &[("TERN_HTTP_ROUTES", "GET /api/orders/{id")],
            "TERN_HTTP_ROUTES",
        ),
        (
            "orders-get",
            &[("DATABASE_URL", "mysql://x")],
            "DATABASE_URL",
        ),
        (
            "orders-get",
            &[
                ("DATABASE_URL", "postgres://u@h/d"),
                ("DB_POOL_SIZE", "lots"),
            ],
            "DB_POOL_SIZE",
        ),
        (
            "orders-create",
            &[("DATABASE_URL", "postgres://u@h/d")],
            "PUBSUB_PROJECT",
        ),
        (
            "orders-list",
            &[("DATABASE_URL", "postgres://u@h/d")],
            "ORDERS_API_KEY_HASHES",
        ),
        (
            "orders-list",
            &[
                ("DATABASE_URL", "postgres://u@h/d"),
                ("ORDERS_API_KEY_HASHES", "abc"),
            ],
            "ORDERS_API_KEY_HASHES",
        ),
        (
            "web",
            &[
                ("DATABASE_URL", "postgres://u@h/d"),
                ("WEB_CSRF_SECRET", "short"),
            ],
            "WEB_CSRF_SECRET",
        ),
        (
            "outbox-relay",
            &[("RELAY_BATCH_SIZE", "0")],
            "RELAY_BATCH_SIZE",
        ),
        (
            "migrate",
            &[
                ("DATABASE_URL", "postgres://u@h/d"),
                ("MIGRATE_WAIT", "soon"),
            ],
            "MIGRATE_WAIT",
        ),
        (
            "orders-create",
            &[
                ("DATABASE_URL", "postgres://u@h/d"),
                ("PUBSUB_PROJECT", "p"),
                ("OUTBOX_MAX_IN_FLIGHT", "0"),
            ],
            "OUTBOX_MAX_IN_FLIGHT",
        ),
        (
            "outbox-relay",
            &[
                ("DATABASE_URL", "postgres://u@h/d"),
                ("PUBSUB_PROJECT", "p"),
                ("TERN_REQUEST_TIMEOUT", "8s"),
            ],
            "TERN_REQUEST_TIMEOUT",
        ),
    ];
    for (bin, env, var) in cases {
        let out = std::process::Command::new(bin_dir().join(bin))
            .env_clear()
            .envs(env.iter().copied())
            .env(
                "PORT",
                env.iter()
                    .find(|(k, _)| *k == "PORT")
                    .map_or("0", |(_, v)| v)
                    .replace('0', &free_port().to_string()),
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {env:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{bin}: {stderr}");
        assert!(
            stderr.contains(&format!("configuration error: {var}:")),
            "{bin} {env:?}: {stderr}"
        );
    }
}
