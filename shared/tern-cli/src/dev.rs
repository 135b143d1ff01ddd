//! `tern dev`: the whole system on one machine: a [`World`] with every HTTP function started
//! and an [`Edge`] in front, until Ctrl-C. See the README's "What `scripts/dev` does".

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tern_local::{
    Database, EMULATOR_PORT, Edge, LOCAL_API_KEY, LOCAL_PROJECT, Mode, Output, POSTGRES_PORT,
    PubSub, World, WorldOptions,
};
use tern_routes::{Kind, RouteTable};

/// Settings of a local run.
pub struct DevOptions {
    /// Router port.
    pub port: u16,
    /// First function port; functions take consecutive ports.
    pub first_function_port: u16,
    /// How events reach consumers.
    pub mode: Mode,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// How often scheduled functions (the outbox relay) are called.
    pub schedule_every: Duration,
}

/// Runs everything until Ctrl-C.
pub async fn run(root: PathBuf, opts: DevOptions) -> Result<(), String> {
    let limits = router_limits()?;
    let database = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => Database::Url(url),
        None => Database::Throwaway {
            dir: root.join(".local/dev/pg"),
            port: POSTGRES_PORT,
            name: "tern".into(),
        },
    };
    let pubsub = match std::env::var("PUBSUB_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        Some(host) => PubSub::At(host),
        None => PubSub::Start {
            port: EMULATOR_PORT,
        },
    };
    let mut world = World::start(WorldOptions {
        root,
        bin_dir: opts.bin_dir.clone(),
        database,
        pubsub,
        project: LOCAL_PROJECT.into(),
        output: Output::Prefixed,
    })
    .await?;
    step(&format!(
        "PostgreSQL at {}, Pub/Sub emulator at {}; topics and subscriptions created from routes.toml; migrations applied",
        world.env.database_url(),
        world.pubsub().emulator_host.as_deref().unwrap_or("?"),
    ));

    match &world.launcher.why_direct {
        Some(why) => step(&format!("warning: {why}")),
        None => step(
            "every function runs as a Knative pod: its own network namespace, Knative Serving's queue-proxy in front (h2c)",
        ),
    }
    // The web form's CSRF check accepts posts from the origins the router is reached at.
    world.env = world
        .env
        .clone()
        .public_origins(tern_local::local_origins(opts.port));
    let mut instances = world.start_http_instances(opts.first_function_port)?;
    let mut upstreams: HashMap<String, Vec<String>> = HashMap::new();
    for i in &instances {
        upstreams
            .entry(i.name().to_owned())
            .or_default()
            .push(i.addr());
    }
    let listener = tern::platform::bind(([127, 0, 0, 1], opts.port).into())
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", opts.port))?;
    print_banner(&opts, &world, &upstreams);
    let edge = Edge {
        table: world.table.clone(),
        pubsub: world.pubsub().clone(),
        upstreams,
        delivery: opts.mode,
        schedule_every: opts.schedule_every,
        limits,
    };
    edge.serve_until_signal(listener).await?;

    println!("\nstopping: functions drain, then the emulator and PostgreSQL stop");
    for i in &mut instances {
        let status = i.stop();
        println!(
            "{:>16} | exited: {}",
            i.name(),
            status.map_or("?".into(), |s| s.to_string())
        );
    }
    drop(instances);
    Ok(())
}

/// The router's client-connection limits: `TERN_HEADER_READ_TIMEOUT`, `TERN_IDLE_TIMEOUT` and
/// `TERN_MAX_HEADER_BYTES`, as the runtime reads them, checked before anything starts.
pub fn router_limits() -> Result<tern::platform::ConnLimits, String> {
    tern::platform::ConnLimits::from_env(&tern::Env::from_process()).map_err(|e| e.to_string())
}

fn step(what: &str) {
    println!("{:>16} | {what}", "tern dev");
}

fn print_banner(opts: &DevOptions, world: &World, upstreams: &HashMap<String, Vec<String>>) {
    let table: &RouteTable = &world.table;
    let (db, emulator) = (
        world.env.database_url(),
        world.pubsub().emulator_host.as_deref().unwrap_or("?"),
    );
    println!("\n  Tern is running.\n");
    println!("  web pages     http://127.0.0.1:{}/", opts.port);
    println!("  JSON API      http://127.0.0.1:{}/api/orders", opts.port);
    println!(
        "  back office   curl -H 'Authorization: Bearer {LOCAL_API_KEY}' http://127.0.0.1:{}/api/orders",
        opts.port
    );
    println!("  PostgreSQL    {db}");
    println!(
        "  Pub/Sub       {emulator} (project {LOCAL_PROJECT}), deliveries as {}",
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
            upstreams[&f.name].join(" "),
            routes.join(", ")
        );
    }
    println!(
        "\n  publish a payment:  scripts/dev publish payments '{{\"order_id\":\"ord_...\",\"payment_id\":\"pay_1\",\"amount_cents\":1250,\"currency\":\"EUR\"}}'"
    );
    println!("  stop:               Ctrl-C\n");
}
