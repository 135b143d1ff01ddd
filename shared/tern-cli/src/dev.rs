//! `tern dev`: the whole system on one machine. See the README's "Run it" section.

use crate::delivery::{self, Mode, Target, stop::StopToken};
use crate::local::{Emulator, FunctionProcess, Postgres};
use crate::pubsub::Admin;
use crate::router::Router;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tern_events::{EventPublisher, PubSubConfig};
use tern_routes::{Kind, RouteTable};

/// Settings of a local run.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Router port.
    pub port: u16,
    /// First function port; functions take consecutive ports.
    pub first_function_port: u16,
    /// How events reach consumers.
    pub mode: Mode,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// Seconds between outbox relay runs.
    pub relay_interval: Duration,
}

/// The Pub/Sub project used locally.
pub const LOCAL_PROJECT: &str = "tern-local";
/// The local emulator port.
pub const EMULATOR_PORT: u16 = 8085;
/// The local PostgreSQL port.
pub const POSTGRES_PORT: u16 = 54329;
/// The API key printed for the back-office list in local runs.
pub const LOCAL_API_KEY: &str = "local-dev-key";

/// Runs everything until Ctrl-C.
pub async fn run(root: &Path, opts: DevOptions) -> Result<(), String> {
    let table = RouteTable::load(&root.join("routes.toml")).map_err(|e| e.to_string())?;
    let state = root.join(".local/dev");

    // PostgreSQL: DATABASE_URL, or a throwaway cluster under .local/.
    let (_pg, database_url) = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => (None, url),
        None => {
            let pg = Postgres::start(&state.join("pg"), POSTGRES_PORT)?;
            let admin = pg.url("postgres");
            ensure_database(&admin, "tern").await?;
            let url = pg.url("tern");
            (Some(pg), url)
        }
    };

    // The Pub/Sub emulator: PUBSUB_EMULATOR_HOST, or ours.
    let (_emulator, emulator_host) = match std::env::var("PUBSUB_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        Some(h) => (None, h),
        None => {
            let e = Emulator::start(&root.join(".local/bin/pubsub-emulator"), EMULATOR_PORT)?;
            let addr = e.addr.clone();
            (Some(e), addr)
        }
    };
    let ps = PubSubConfig {
        project: LOCAL_PROJECT.to_owned(),
        emulator_host: Some(emulator_host.clone()),
        publish_timeout: Duration::from_secs(5),
    };
    step(&format!(
        "PostgreSQL at {database_url}, Pub/Sub emulator at {emulator_host}"
    ));
    create_topology(&ps, &table).await?;
    step("topics and subscriptions created from routes.toml");

    // Migrate, as the deploy's migrate job would.
    let base_env = function_env(&database_url, &emulator_host);
    migrate(&opts.bin_dir, &base_env)?;
    step("migrations applied");

    // Every HTTP function on its own port.
    let mut procs = Vec::new();
    let mut ports = HashMap::new();
    for (i, f) in table
        .functions
        .iter()
        .filter(|f| f.kind == Kind::Http)
        .enumerate()
    {
        let port = opts.first_function_port + i as u16;
        procs.push(FunctionProcess::spawn(
            &opts.bin_dir,
            &f.name,
            port,
            &base_env,
            true,
        )?);
        ports.insert(f.name.clone(), port);
    }
    for p in &mut procs {
        p.wait_for(tern::health::READY_PATH, 200, Duration::from_secs(30))?;
    }

    let upstreams: HashMap<String, String> = ports
        .iter()
        .map(|(f, p)| (f.clone(), format!("127.0.0.1:{p}")))
        .collect();
    let listener = tern::server::bind(([127, 0, 0, 1], opts.port).into())
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", opts.port))?;
    print_banner(&opts, &table, &upstreams, &database_url, &emulator_host);
    edge(
        table,
        ps,
        upstreams,
        opts.mode,
        opts.relay_interval,
        listener,
    )
    .await?;

    println!("\nstopping: functions drain, then the emulator and PostgreSQL stop");
    for mut p in procs {
        let status = p.terminate();
        println!(
            "{:>16} | exited: {}",
            p.name,
            status.map_or("?".into(), |s| s.to_string())
        );
    }
    Ok(())
}

/// The parts around the functions, as in the cloud: event deliveries to the consumers (push or
/// CloudEvents), a tap printing every event, the scheduler calling scheduled functions, and the
/// router mapping method + path to each function's upstream (`host:port`). Runs until Ctrl-C or
/// SIGTERM.
pub async fn edge(
    table: RouteTable,
    ps: PubSubConfig,
    upstreams: HashMap<String, String>,
    mode: Mode,
    relay_interval: Duration,
    listener: tokio::net::TcpListener,
) -> Result<(), String> {
    let stop = StopToken::default();
    let dlq = EventPublisher::new(ps.clone()).await?;
    let url = |f: &str, path: &str| -> Result<String, String> {
        upstreams
            .get(f)
            .map(|u| format!("http://{u}{path}"))
            .ok_or_else(|| format!("no upstream for {f}"))
    };
    for f in &table.functions {
        for s in &f.subscriptions {
            let target = Target {
                subscription: s.id(&f.name),
                topic: s.topic.clone(),
                url: url(&f.name, &s.path)?,
            };
            tokio::spawn(log_err(delivery::run(
                mode,
                ps.clone(),
                target,
                5,
                dlq.clone(),
                stop.clone(),
            )));
        }
    }
    // The tap that prints every event; only local runs have one (unread, it would hold every
    // message in the emulator).
    let tap_admin = Admin::new(&ps).await?;
    for t in &table.topics {
        tap_admin
            .subscription(&format!("tern-dev-tap-{}", t.name), &t.name)
            .await?;
        tokio::spawn(log_err(tap(ps.clone(), t.name.clone(), stop.clone())));
    }
    for f in table.functions.iter().filter(|f| f.schedule.is_some()) {
        if let Some(route) = f.routes.first() {
            tokio::spawn(schedule(
                url(&f.name, &route.path)?,
                relay_interval,
                stop.clone(),
            ));
        }
    }
    let router = Router::new(
        table,
        std::sync::Arc::new(std::sync::RwLock::new(upstreams)),
    );
    router
        .serve(listener, async {
            tern::server::stop_signal().await;
        })
        .await;
    stop.cancel();
    Ok(())
}

fn step(what: &str) {
    println!("{:>16} | {what}", "tern dev");
}

async fn log_err(f: impl Future<Output = Result<(), String>>) {
    if let Err(e) = f.await {
        eprintln!("tern dev: {e}");
    }
}

/// The settings every local function gets.
pub fn function_env(database_url: &str, emulator_host: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url.to_owned()),
        ("PUBSUB_EMULATOR_HOST", emulator_host.to_owned()),
        ("PUBSUB_PROJECT", LOCAL_PROJECT.to_owned()),
        ("TERN_LOG_FORMAT", "text".to_owned()),
        ("ORDERS_API_KEY_HASHES", tern::ApiKeys::hash(LOCAL_API_KEY)),
        (
            "WEB_CSRF_SECRET",
            "local-only-csrf-secret-0123456789abcdef".to_owned(),
        ),
        ("WEB_COOKIE_SECURE", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs the `migrate` binary with `env`.
pub fn migrate(bin_dir: &Path, env: &[(String, String)]) -> Result<(), String> {
    let status = std::process::Command::new(bin_dir.join("migrate"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .map_err(|e| format!("cannot run migrate: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("migrate failed: {status}"))
    }
}

/// Creates database `name` if it does not exist.
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Topics, their dead-letter topics, and one subscription per consumer, from the route table.
pub async fn create_topology(ps: &PubSubConfig, table: &RouteTable) -> Result<(), String> {
    let admin = Admin::new(ps).await?;
    for t in &table.topics {
        admin.topic(&t.name).await?;
        admin.topic(&format!("{}-dead-letter", t.name)).await?;
    }
    for f in &table.functions {
        for s in &f.subscriptions {
            admin.subscription(&s.id(&f.name), &s.topic).await?;
        }
    }
    Ok(())
}

async fn tap(ps: PubSubConfig, topic: String, stop: StopToken) -> Result<(), String> {
    let sub = crate::pubsub::subscriber(&ps).await?;
    let mut stream = sub
        .subscribe(ps.subscription_path(&format!("tern-dev-tap-{topic}")))
        .build();
    loop {
        let next =
            tokio::select! { n = stream.next() => n, () = stop.cancelled() => return Ok(()) };
        let (msg, handler) = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("event tap on {topic}: {e}")),
            None => return Ok(()),
        };
        handler.ack();
        let a = |k: &str| msg.attributes.get(k).cloned().unwrap_or_default();
        println!(
            "{:>16} | {topic}: {} subject={} id={} data={}",
            "event",
            a("ce-type"),
            a("ce-subject"),
            a("ce-id"),
            String::from_utf8_lossy(&msg.data)
        );
    }
}

async fn schedule(url: String, every: Duration, stop: StopToken) {
    let client = delivery::reqwest_like::client();
    loop {
        tokio::select! { () = tokio::time::sleep(every) => {}, () = stop.cancelled() => return }
        let _ = delivery::reqwest_like::post(&client, &url, &[], Vec::new()).await;
    }
}

fn print_banner(
    opts: &DevOptions,
    table: &RouteTable,
    upstreams: &HashMap<String, String>,
    db: &str,
    emulator: &str,
) {
    println!("\n  Tern is running.\n");
    println!("  web pages     http://127.0.0.1:{}/", opts.port);
    println!("  JSON API      http://127.0.0.1:{}/api/orders", opts.port);
    println!(
        "  back office   curl -H 'Authorization: Bearer {LOCAL_API_KEY}' http://127.0.0.1:{}/api/orders",
        opts.port
    );
    println!("  PostgreSQL    {db}");
    println!(
        "  Pub/Sub       {emulator} (project {LOCAL_PROJECT}), deliveries as {:?}",
        opts.mode
    );
    println!("  functions:");
    for f in table.functions.iter().filter(|f| f.kind == Kind::Http) {
        let routes: Vec<String> = f
            .routes
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        println!(
            "    {:<16} {:<15} {}",
            f.name,
            upstreams[&f.name],
            routes.join(", ")
        );
    }
    println!(
        "\n  publish a payment:  scripts/dev publish payments '{{\"order_id\":\"ord_...\",\"payment_id\":\"pay_1\",\"amount_cents\":1250,\"currency\":\"EUR\"}}'"
    );
    println!("  stop:               Ctrl-C\n");
}
