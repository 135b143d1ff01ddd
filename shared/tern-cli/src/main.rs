//! `tern`: run the whole system locally, publish events, print the route table, scaffold.
//! The command only parses, calls `tern-local` (or `scaffold`), and prints.

mod dev;
mod scaffold;
mod watch;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tern_events::{EventPublisher, OutgoingEvent, PubSubConfig};
use tern_local::{Mode, Policy, render, repo_root};
use tern_routes::RouteTable;

#[derive(Parser)]
#[command(
    name = "tern",
    about = "Run Tern functions locally, publish events, read the route table."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything: PostgreSQL, the Pub/Sub emulator, migrations, every function, the router.
    Dev {
        /// The router's port.
        #[arg(long, default_value_t = tern_local::ROUTER_PORT)]
        port: u16,
        /// The first function port (functions take consecutive ports).
        #[arg(long, default_value_t = 8101)]
        function_port: u16,
        /// How subscription messages reach consumers.
        /// `push` or `cloudevents`.
        #[arg(long, default_value_t = Mode::Push, value_parser = mode_parser())]
        delivery: Mode,
        /// How long a push may go unanswered before the message is retried, as a push
        /// subscription's ack deadline does (infra/ sets the default; Pub/Sub takes 10 to 600,
        /// shorter ones are for tests).
        #[arg(long, default_value_t = tern_local::ACK_DEADLINE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=600))]
        ack_deadline_seconds: u64,
        /// Where the function binaries are.
        #[arg(long, default_value = "target/debug")]
        bin_dir: PathBuf,
        /// How often scheduled functions (the outbox relay) are called.
        #[arg(long, default_value_t = 10)]
        schedule_seconds: u64,
        /// Also run a standby region, as prod's before a failover: a streaming replica of the
        /// database (pg_basebackup), every HTTP function against it (reads answer, writes 503
        /// region-standby) and its own router on PORT+1.
        #[arg(long)]
        standby: bool,
        /// Prometheus' port (Debian's package, scraping every function and queue-proxy with
        /// the chart's rules); 0 runs without it. Not 9090, where Debian's own service listens.
        #[arg(long, default_value_t = 9190)]
        prometheus_port: u16,
        /// Also run Jaeger (built by `scripts/tools traces`; scripts/dev --traces does it) and
        /// export every function's spans to it over OTLP/HTTP on 4318; its UI on this port.
        #[arg(long, num_args = 0..=1, default_missing_value = "16686", value_name = "UI_PORT")]
        traces: Option<u16>,
        /// With --traces: where Jaeger receives the spans (OTLP/HTTP).
        #[arg(long, default_value_t = 4318)]
        otlp_port: u16,
        /// Rebuild on save: a change under functions/, shared/ or migrations/ rebuilds what
        /// depends on it (the dev profile, into --bin-dir, which must be Cargo's target/debug),
        /// and each function whose binary changed is swapped in as a revision swap does (new
        /// pod ready, router switched, old pod drained).
        #[arg(long, conflicts_with = "standby")]
        watch: bool,
    },
    /// Only the parts around the functions (router, event delivery, scheduler) for functions that
    /// run elsewhere, each at http://<name>:<upstream-port>: the container setup (compose.yaml).
    /// Needs PUBSUB_EMULATOR_HOST.
    Edge {
        /// The address the router listens on.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// The port every function listens on, under its own host name.
        #[arg(long, default_value_t = tern_local::ROUTER_PORT)]
        upstream_port: u16,
        /// How subscription messages reach consumers.
        /// `push` or `cloudevents`.
        #[arg(long, default_value_t = Mode::Push, value_parser = mode_parser())]
        delivery: Mode,
        /// How long a push may go unanswered before the message is retried, as a push
        /// subscription's ack deadline (infra/ sets the same).
        #[arg(long, default_value_t = tern_local::ACK_DEADLINE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=600))]
        ack_deadline_seconds: u64,
        /// How often scheduled functions (the outbox relay) are called.
        #[arg(long, default_value_t = 10)]
        schedule_seconds: u64,
        /// Where a function listens instead of <name>:<upstream-port>, as NAME=HOST:PORT
        /// (repeatable).
        #[arg(long = "upstream", value_name = "NAME=HOST:PORT")]
        upstreams: Vec<String>,
    },
    /// Publish an event to a topic as a producer would (CloudEvents Pub/Sub binding).
    Publish {
        /// The topic, such as `payments`.
        topic: String,
        /// The event data, JSON.
        data: String,
        /// The CloudEvents type (default: the topic's first type in routes.toml).
        #[arg(long = "type")]
        ty: Option<String>,
        /// The CloudEvents source.
        #[arg(long, default_value = "//tern/cli")]
        source: String,
        /// The CloudEvents id (default: a new UUID). Reuse one to send a duplicate.
        #[arg(long)]
        id: Option<String>,
        /// The trace the event continues (W3C traceparent, `ce-traceparent`), as a producer
        /// that propagates trace context sends it: copy it from the order.created line.
        #[arg(long)]
        traceparent: Option<String>,
    },
    /// Print the route table as JSON.
    Routes {
        /// With the runtime contract, as the Helm chart and infra/ read it.
        #[arg(long)]
        deploy: bool,
        /// As the local container check's Compose file.
        #[arg(long, conflicts_with = "deploy")]
        compose: bool,
    },
    /// Create a new function crate, its route-table entry and its test: an HTTP function
    /// (--route) or a consumer of a topic's events (--event).
    New {
        /// The function's name, such as `orders-cancel`.
        name: String,
        /// Its route, such as "POST /api/orders/{id}/cancel".
        #[arg(long, required_unless_present = "event", conflicts_with = "event")]
        route: Option<String>,
        /// The topic it consumes, such as `orders`: a subscription pushing the topic's event
        /// types to POST /events/NAME.
        #[arg(long)]
        event: Option<String>,
    },
    /// Generate an API key and the SHA-256 hash to configure for it.
    ApiKey,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("TERN_LOG").unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    let result = match cli.command {
        Command::Dev {
            port,
            function_port,
            delivery,
            ack_deadline_seconds,
            bin_dir,
            schedule_seconds,
            standby,
            prometheus_port,
            traces,
            otlp_port,
            watch,
        } => match repo_root() {
            Ok(root) => {
                let opts = dev::DevOptions {
                    port,
                    first_function_port: function_port,
                    delivery: policy(delivery, ack_deadline_seconds),
                    bin_dir: root.join(bin_dir),
                    schedule_every: Duration::from_secs(schedule_seconds.max(1)),
                    standby,
                    prometheus_port,
                    traces,
                    otlp_port,
                    watch,
                };
                dev::run(root, opts).await
            }
            Err(e) => Err(e),
        },
        Command::Edge {
            listen,
            upstream_port,
            delivery,
            ack_deadline_seconds,
            schedule_seconds,
            upstreams,
        } => {
            edge(
                listen,
                upstream_port,
                &upstreams,
                policy(delivery, ack_deadline_seconds),
                schedule_seconds,
            )
            .await
        }
        Command::Publish {
            topic,
            data,
            ty,
            source,
            id,
            traceparent,
        } => publish(&topic, &data, ty, source, id, traceparent).await,
        Command::Routes { deploy: true, .. } => {
            table().map(|t| print!("{}", render::deploy_json(&t)))
        }
        Command::Routes { compose: true, .. } => {
            table().map(|t| print!("{}", render::compose_yaml(&t)))
        }
        Command::Routes { .. } => table().map(|t| println!("{}", t.to_json())),
        Command::New { name, route, event } => {
            new_function(&name, route.as_deref(), event.as_deref())
        }
        Command::ApiKey => {
            let key = format!("tern_{}", hex::encode(rand::random::<[u8; 24]>()));
            println!("key:  {key}\nhash: {}", tern::ApiKeys::hash(&key));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn edge(
    listen: std::net::SocketAddr,
    upstream_port: u16,
    overrides: &[String],
    delivery: Policy,
    every: u64,
) -> Result<(), String> {
    let limits = dev::router_limits()?;
    let table = table()?;
    let emulator = std::env::var("PUBSUB_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .ok_or("PUBSUB_EMULATOR_HOST is required (host:port of the Pub/Sub emulator)")?;
    let project =
        std::env::var("PUBSUB_PROJECT").unwrap_or_else(|_| tern_local::LOCAL_PROJECT.to_owned());
    let ps = PubSubConfig::emulator(emulator, project);
    // The emulator may still be starting (containers start together): retry for a while.
    let mut tries = 0;
    while let Err(e) = tern_local::create_topology(&ps, &table).await {
        tries += 1;
        if tries > 60 {
            return Err(format!("cannot create the Pub/Sub topology: {e}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut upstreams: std::collections::HashMap<String, Vec<String>> = table
        .functions
        .iter()
        .filter(|f| f.kind == tern_routes::Kind::Http)
        .map(|f| (f.name.clone(), vec![format!("{}:{upstream_port}", f.name)]))
        .collect();
    for o in overrides {
        let (name, addr) = o
            .split_once('=')
            .ok_or_else(|| format!("--upstream {o:?}: expected NAME=HOST:PORT"))?;
        if !upstreams.contains_key(name) {
            return Err(format!(
                "--upstream {o:?}: no HTTP function {name} in the route table"
            ));
        }
        upstreams.insert(name.to_owned(), vec![addr.to_owned()]);
    }
    let listener = tern::platform::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!(
        "tern edge: routing {listen} to the functions, deliveries as {}",
        delivery.mode
    );
    let edge = tern_local::Edge {
        table,
        pubsub: ps,
        upstreams: std::sync::Arc::new(std::sync::RwLock::new(upstreams)),
        delivery,
        schedule_every: Duration::from_secs(every.max(1)),
        limits,
    };
    edge.serve_until_signal(listener).await
}

/// `--delivery` and `--ack-deadline-seconds`, with the local dead-letter policy.
fn policy(mode: Mode, ack_deadline_seconds: u64) -> Policy {
    Policy {
        ack_deadline: Duration::from_secs(ack_deadline_seconds),
        ..Policy::new(mode)
    }
}

/// `--delivery`: `push` or `cloudevents`, listed in `--help`.
fn mode_parser() -> impl clap::builder::TypedValueParser<Value = Mode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["push", "cloudevents"]).try_map(|s| s.parse::<Mode>())
}

/// The route table: TERN_ROUTES (a path, as in the container image), or routes.toml of the
/// repository around the current directory.
fn table() -> Result<RouteTable, String> {
    if let Some(path) = std::env::var_os("TERN_ROUTES") {
        return RouteTable::load(std::path::Path::new(&path)).map_err(|e| e.to_string());
    }
    let root = repo_root()?;
    RouteTable::load(&root.join("routes.toml")).map_err(|e| e.to_string())
}

fn new_function(name: &str, route: Option<&str>, event: Option<&str>) -> Result<(), String> {
    let template = match (route, event) {
        (Some(route), _) => {
            let (method, path) = route
                .split_once(' ')
                .ok_or("--route takes \"METHOD /path\"")?;
            scaffold::Template::Http {
                method: method.trim(),
                path: path.trim(),
            }
        }
        (None, Some(topic)) => scaffold::Template::Event { topic },
        (None, None) => return Err("give --route \"METHOD /path\" or --event TOPIC".into()),
    };
    scaffold::new_function(&repo_root()?, name, template)?;
    println!(
        "created functions/{name}, its routes.toml entry and its test: `cargo test -p {name}` runs it, `scripts/dev` serves it; `scripts/render` updates the chart's route table before a commit"
    );
    Ok(())
}

async fn publish(
    topic: &str,
    data: &str,
    ty: Option<String>,
    source: String,
    id: Option<String>,
    traceparent: Option<String>,
) -> Result<(), String> {
    let table = table()?;
    let t = table.topic(topic)?;
    let ty = match ty {
        Some(ty) => ty,
        None => t
            .event_types
            .first()
            .cloned()
            .ok_or("the topic lists no event types; pass --type")?,
    };
    let data: serde_json::Value =
        serde_json::from_str(data).map_err(|e| format!("the data is not JSON: {e}"))?;
    let env = tern::Env::from_process();
    let project = env
        .or("PUBSUB_PROJECT", tern_local::LOCAL_PROJECT.to_owned())
        .map_err(|e| e.to_string())?;
    let host = env
        .or(
            "PUBSUB_EMULATOR_HOST",
            format!("127.0.0.1:{}", tern_local::EMULATOR_PORT),
        )
        .map_err(|e| e.to_string())?;
    let cfg = PubSubConfig::emulator(host, project);
    let event = OutgoingEvent {
        id: id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        source,
        ty,
        subject: data
            .get("order_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        time: chrono::Utc::now(),
        data,
        traceparent,
    };
    let publisher = EventPublisher::new(cfg).await?;
    let message_id = publisher
        .publish(topic, &event)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "published {} id={} to {topic} (message {message_id})",
        event.ty, event.id
    );
    Ok(())
}
