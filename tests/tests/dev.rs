//! The main job as a user runs it: `tern dev` (what `scripts/dev` runs after building) starts
//! every function behind the router, delivers events, calls the scheduled outbox relay, and
//! Ctrl-C stops all of it. Only PostgreSQL and the emulator are the test's (through
//! `DATABASE_URL` and `PUBSUB_EMULATOR_HOST`, which `tern dev` honours), so the run does not
//! touch a developer's `.local/dev` or the fixed local ports.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tern_e2e::*;
use tern_events::PubSubConfig;
use tern_local::{LOCAL_API_KEY, LOCAL_PROJECT};
use tern_routes::Kind;

/// Kills `tern dev` if the test fails before stopping it (its functions die with it).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` consecutive free loopback ports.
fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let base = free_port();
        if base.checked_add(n).is_some()
            && (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Ctrl-C to `tern dev`: it must exit 0; returns what it printed.
async fn ctrl_c(dev: &mut Running, out: &std::path::Path) -> String {
    let pid = i32::try_from(dev.0.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = eventually("tern dev exiting", Duration::from_secs(60), || {
        let exited = dev.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let stdout = std::fs::read_to_string(out.join("stdout")).unwrap();
    assert!(status.success(), "tern dev exited with {status}: {stdout}");
    stdout
}

fn accepts(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn tern_dev_serves_delivers_schedules_and_stops_on_ctrl_c() {
    let sys = System::new().await;
    let emulator = sys.pubsub.emulator_host.clone().unwrap();
    let http_functions = table()
        .functions
        .iter()
        .filter(|f| f.kind == Kind::Http)
        .count() as u16;
    let port = free_port();
    let first = free_ports(http_functions);
    let jaeger_ui = free_port();
    let out = scratch("tern-dev");
    let mut cmd = Command::new(bin_dir().join("tern"));
    cmd.current_dir(root())
        .args(["dev", "--port", &port.to_string()])
        .args(["--function-port", &first.to_string()])
        .args(["--traces", &jaeger_ui.to_string()])
        .args(["--otlp-port", &free_port().to_string()])
        .args(["--prometheus-port", &free_port().to_string()])
        .args(["--schedule-seconds", "1", "--bin-dir"])
        .arg(bin_dir())
        .env("DATABASE_URL", &sys.database_url)
        .env("PUBSUB_EMULATOR_HOST", &emulator)
        .env("TERN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out.join("stdout")).unwrap())
        .stderr(std::fs::File::create(out.join("stderr")).unwrap());
    let mut dev = Running(cmd.spawn().expect("spawn tern dev"));
    let base = format!("http://127.0.0.1:{port}");
    let http = &sys.http;

    // Up: the web page through the router.
    eventually("the router serving GET /", Duration::from_secs(90), || {
        if let Ok(Some(status)) = dev.0.try_wait() {
            panic!(
                "tern dev exited early ({status}): {}",
                std::fs::read_to_string(out.join("stderr")).unwrap_or_default()
            );
        }
        async {
            let res = http.get(format!("{base}/")).send().await.ok()?;
            (res.status() == 200).then_some(())
        }
    })
    .await;
    // Where the functions listen: pods (queue-proxy's serving port in each pod's namespace), or,
    // without root, consecutive loopback ports.
    let banner = std::fs::read_to_string(out.join("stdout")).unwrap();
    let addrs: Vec<std::net::SocketAddr> = match launcher().runner {
        tern_local::Runner::Pods(_) => {
            assert!(banner.contains("queue-proxy in front (h2c)"), "{banner}");
            banner
                .split_whitespace()
                .filter(|w| w.ends_with(&format!(":{}", tern_local::SERVING_PORT)))
                .map(|w| w.parse().unwrap())
                .collect()
        }
        tern_local::Runner::Direct => (first..first + http_functions)
            .map(|p| ([127, 0, 0, 1], p).into())
            .collect(),
    };
    assert_eq!(addrs.len(), usize::from(http_functions), "{banner}");
    for a in &addrs {
        assert!(accepts(*a), "{a} is not listening");
    }

    // A request through the router to orders-create, then orders-get.
    let res = sys.create_order(&base, &order_body()).await;
    assert_eq!(res.status(), 201);
    let order: serde_json::Value = res.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    let unknown = http.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );

    // A payment producer publishes; the delivery loop pushes it to payments-events.
    let producer = PubSubConfig::emulator(emulator.clone(), LOCAL_PROJECT);
    let event = publish_payment(&producer, &format!("pay-{id}"), &id).await;
    let paid = sys.until_paid(&base, &id, Duration::from_secs(30)).await;
    assert_eq!(paid["payment_id"], event.data["payment_id"]);

    // --traces: the functions' spans reach the Jaeger whose UI the banner prints.
    let jaeger = format!("http://127.0.0.1:{jaeger_ui}");
    assert!(
        banner.contains(&format!("Jaeger        {jaeger}")),
        "{banner}"
    );
    eventually(
        "spans of orders-create and payments-events in Jaeger",
        Duration::from_secs(20),
        || async {
            let services = fetch_json(http, &format!("{jaeger}/api/services")).await?;
            let names = services["data"].as_array()?;
            ["orders-create", "payments-events"]
                .iter()
                .all(|s| names.iter().any(|n| n == s))
                .then_some(())
        },
    )
    .await;

    // The functions publish after commit; a row they could not publish waits for the relay, which
    // the scheduler calls every second. Such a row, written here, must leave the outbox.
    let db = sys.sql().await;
    let stranded = format!("stranded-{id}");
    db.execute(
        "INSERT INTO tern_outbox (topic, event_id, event_type, source, subject, data) \
         VALUES ('orders', $1, 'com.example.order.created', '//tern/orders-create', $2, $3)",
        &[
            &stranded,
            &id,
            &serde_json::json!({"order_id": id, "total_cents": 1250, "currency": "EUR", "items": 1}),
        ],
    )
    .await
    .unwrap();
    eventually(
        "the relay publishing the stranded row",
        Duration::from_secs(30),
        || async {
            let row = db
                .query_one(
                    "SELECT published_at IS NOT NULL FROM tern_outbox WHERE event_id = $1",
                    &[&stranded],
                )
                .await
                .ok()?;
            row.get::<_, bool>(0).then_some(())
        },
    )
    .await;
    assert_eq!(sys.pending_outbox().await, 0);

    // The back-office list with the local API key printed in the banner.
    let list: serde_json::Value = http
        .get(format!("{base}/api/orders"))
        .bearer_auth(LOCAL_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.to_string().contains(&id), "{list}");

    // Ctrl-C: everything stops, with a zero exit.
    let stdout = ctrl_c(&mut dev, &out).await;
    assert!(stdout.contains("stopping"), "{stdout}");
    assert!(
        !accepts(([127, 0, 0, 1], port).into()),
        "the router still listens"
    );
    for a in &addrs {
        // A pod's address, once its link is gone, routes to the default gateway, which may answer
        // anything: what must be gone is the pod's link on the host.
        match a.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_loopback() => {
                let host_end = std::net::Ipv4Addr::from(u32::from(ip) - 1);
                let links = Command::new("ip")
                    .args(["-o", "-4", "addr", "show"])
                    .output()
                    .unwrap();
                let links = String::from_utf8_lossy(&links.stdout);
                assert!(
                    !links.contains(&format!("{host_end}/30")),
                    "the pod at {a} is still wired: {links}"
                );
            }
            _ => assert!(!accepts(*a), "{a} still listens"),
        }
    }
}

/// `tern dev --standby`: a second region as prod's standby before a failover, on a streaming
/// replica of the database: its own router on PORT+1 serves reads of what the primary wrote and
/// answers writes 503 `region-standby`; Ctrl-C stops both regions.
#[tokio::test(flavor = "multi_thread")]
async fn tern_dev_runs_a_standby_region_on_a_replica() {
    // A cluster of this test's own: the replica copies all of it.
    let pg = own_postgres("dev-standby").await;
    let emulator = own_emulator();
    let sys = System::on(&pg, &emulator.addr).await;
    let http_functions = table()
        .functions
        .iter()
        .filter(|f| f.kind == Kind::Http)
        .count() as u16;
    let port = free_ports(2);
    // The standby's functions start 50 ports above the primary's (without root, on loopback).
    let first = free_ports(50 + http_functions);
    let out = scratch("tern-dev-standby");
    let mut cmd = Command::new(bin_dir().join("tern"));
    cmd.current_dir(root())
        .args(["dev", "--standby", "--port", &port.to_string()])
        .args(["--function-port", &first.to_string()])
        .args(["--prometheus-port", &free_port().to_string(), "--bin-dir"])
        .arg(bin_dir())
        .env("DATABASE_URL", &sys.database_url)
        .env("PUBSUB_EMULATOR_HOST", &emulator.addr)
        .env("TERN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out.join("stdout")).unwrap())
        .stderr(std::fs::File::create(out.join("stderr")).unwrap());
    let mut dev = Running(cmd.spawn().expect("spawn tern dev --standby"));
    let (base, standby) = (
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{}", port + 1),
    );
    let http = &sys.http;
    eventually(
        "both regions serving GET /",
        Duration::from_secs(120),
        || {
            if let Ok(Some(status)) = dev.0.try_wait() {
                panic!(
                    "tern dev --standby exited early ({status}): {}",
                    std::fs::read_to_string(out.join("stderr")).unwrap_or_default()
                );
            }
            async {
                for b in [&base, &standby] {
                    let res = http.get(format!("{b}/")).send().await.ok()?;
                    if res.status() != 200 {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    let banner = std::fs::read_to_string(out.join("stdout")).unwrap();
    assert!(banner.contains("standby region"), "{banner}");
    assert!(
        banner.contains(&format!("http://127.0.0.1:{}/", port + 1)),
        "{banner}"
    );

    // Written through the primary, read through the standby (by replication).
    let res = sys.create_order(&base, &order_body()).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = eventually(
        "the order on the standby",
        Duration::from_secs(20),
        || async {
            let o = sys.order(&standby, &id).await;
            (o["id"] == id.as_str()).then_some(o)
        },
    )
    .await;
    assert_eq!(order["status"], "pending");
    // A write through the standby: refused, saying why.
    let res = http
        .post(format!("{standby}/api/orders"))
        .header("idempotency-key", "dev-standby-1")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "30");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["type"], "urn:tern:problem:region-standby", "{body}");

    let stdout = ctrl_c(&mut dev, &out).await;
    assert!(stdout.contains("stopping"), "{stdout}");
    for p in [port, port + 1] {
        assert!(!accepts(([127, 0, 0, 1], p).into()), "{p} still listens");
    }
}
