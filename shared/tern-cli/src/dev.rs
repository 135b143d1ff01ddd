//! `tern dev`: the whole system on one machine: a [`World`] with every HTTP function started
//! and an [`Edge`] in front, until Ctrl-C. See the README's "What `scripts/dev` does".

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tern_local::{
    Database, EMULATOR_PORT, Edge, LOCAL_API_KEY, LOCAL_PROJECT, Output, POSTGRES_PORT, Policy,
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
    pub delivery: Policy,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// How often scheduled functions (the outbox relay) are called.
    pub schedule_every: Duration,
    /// Also run a standby region: a streaming replica, every HTTP function against it, and its
    /// own router on `port + 1`.
    pub standby: bool,
    /// Prometheus' port; 0 runs without it.
    pub prometheus_port: u16,
    /// Also run Jaeger (`.local/bin/jaeger`, `scripts/tools traces`) with its UI on this port
    /// and OTLP/HTTP on `otlp_port`, and export every function's spans to it.
    pub traces: Option<u16>,
    /// Where Jaeger receives OTLP/HTTP (with `traces`).
    pub otlp_port: u16,
    /// Rebuild on save and swap in what changed ([`crate::watch`]).
    pub watch: bool,
}

/// Where the standby region's functions start, above the primary's.
const STANDBY_PORT_OFFSET: u16 = 50;

/// Starts Prometheus on `opts.prometheus_port` scraping every instance, when it is installed
/// and asked for.
fn start_prometheus(
    root: &std::path::Path,
    opts: &DevOptions,
    world: &World,
    instances: &[tern_local::Instance],
) -> Result<Option<tern_local::prometheus::Prometheus>, String> {
    if opts.prometheus_port == 0 || !tern_local::prometheus::available() {
        return Ok(None);
    }
    let targets = scrape_targets(world, instances);
    // Its own directory per port, so two local runs (the tests run several) never share a TSDB.
    tern_local::prometheus::Prometheus::start(
        &root.join(format!(".local/dev/prometheus-{}", opts.prometheus_port)),
        root,
        opts.prometheus_port,
        &targets,
        Duration::from_secs(2),
    )
    .map(Some)
}

/// What Prometheus scrapes of `instances`, as the chart's PodMonitorings select pods.
fn scrape_targets(
    world: &World,
    instances: &[tern_local::Instance],
) -> Vec<tern_local::prometheus::ScrapeTarget> {
    instances
        .iter()
        .map(|i| {
            let visibility =
                world
                    .table
                    .function(i.name())
                    .map_or("internal", |f| match f.visibility {
                        tern_routes::Visibility::Public => "public",
                        tern_routes::Visibility::Internal => "internal",
                    });
            i.scrape_target(visibility)
        })
        .collect()
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
    let root_dir = root.clone();
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
    // Spans go to a local Jaeger, as they go to the cluster's collector.
    let jaeger = match opts.traces {
        Some(ui_port) => {
            let j = tern_local::jaeger::Jaeger::start(
                &root_dir.join(".local/dev/jaeger"),
                &root_dir,
                ui_port,
                opts.otlp_port,
            )?;
            world.env = world
                .env
                .clone()
                .set("OTEL_EXPORTER_OTLP_ENDPOINT", j.otlp_endpoint());
            Some(j)
        }
        None => None,
    };
    let mut instances = world.start_http_instances(opts.first_function_port)?;
    let upstreams = upstreams_of(&instances);
    let listener = tern::platform::bind(([127, 0, 0, 1], opts.port).into())
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", opts.port))?;
    let standby = if opts.standby {
        Some(Standby::start(&root_dir, &world, &opts, limits).await?)
    } else {
        None
    };
    let metrics: HashMap<String, String> = instances
        .iter()
        .map(|i| (i.name().to_owned(), i.metrics_url()))
        .collect();
    let prometheus = start_prometheus(&root_dir, &opts, &world, &instances)?;
    print_banner(&opts, &world, &upstreams, &metrics);
    match &prometheus {
        Some(p) => println!(
            "  Prometheus    {}  (jobs tern-functions, tern-queue-proxy; the chart's rules: {}/alerts)\n",
            p.url(),
            p.url()
        ),
        None if opts.prometheus_port != 0 => println!(
            "  Prometheus    not installed (apt-get install prometheus; scripts/dev installs it as root)\n"
        ),
        None => {}
    }
    if let Some(j) = &jaeger {
        println!(
            "  Jaeger        {}  (every request's span; a web order and its events are one trace; OTLP at {})\n",
            j.url(),
            j.otlp_endpoint()
        );
    }
    if let Some(s) = &standby {
        s.print_banner();
    }
    let upstreams: tern_local::Upstreams = Arc::new(RwLock::new(upstreams));
    let edge = Edge {
        table: world.table.clone(),
        pubsub: world.pubsub().clone(),
        upstreams: upstreams.clone(),
        delivery: opts.delivery,
        schedule_every: opts.schedule_every,
        limits,
    };
    // The router runs on its own task: a swap's waits never hold a request.
    let mut serving = tokio::spawn(edge.serve_until_signal(listener));
    let mut draining = Vec::new();
    // The watch runs here, on the thread of `main`'s `block_on`, which lives as long as `tern`:
    // the pods it starts are tied to it (`die_with_parent`), so it must not move to a spawned
    // task or the blocking pool, whose threads come and go.
    let served = if opts.watch {
        let mut swaps = Swaps::new(
            &root_dir,
            &world,
            &mut instances,
            &upstreams,
            prometheus.as_ref(),
            &mut draining,
        );
        tokio::select! {
            served = &mut serving => served,
            watched = swaps.watch() => {
                if let Err(e) = watched {
                    step(&format!("warning: {e}; serving without --watch"));
                }
                serving.await
            }
        }
    } else {
        serving.await
    };
    // Pods swapped out and still draining go first, whatever ended the run.
    for d in draining {
        d.finish();
    }
    served.map_err(|e| e.to_string())??;

    println!("\nstopping: functions drain, then the emulator and PostgreSQL stop");
    let (mut standby_instances, standby_db) = match standby {
        Some(s) => {
            let (i, db) = s.stop();
            (i, Some(db))
        }
        None => (Vec::new(), None),
    };
    for i in instances.iter_mut().chain(standby_instances.iter_mut()) {
        let status = i.stop();
        println!(
            "{:>16} | exited: {}",
            i.name(),
            status.map_or("?".into(), |s| s.to_string())
        );
    }
    drop(instances);
    drop(standby_instances);
    if let Some(db) = standby_db {
        let dir = db.dir.clone();
        drop(db);
        // A replica in a folder of this run's (beside a DATABASE_URL) goes with the run.
        if dir.starts_with(std::env::temp_dir()) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(())
}

/// What `--watch` swaps: each function's instance and its router entry.
struct Swaps<'a> {
    root: &'a std::path::Path,
    world: &'a World,
    instances: &'a mut Vec<tern_local::Instance>,
    upstreams: &'a tern_local::Upstreams,
    prometheus: Option<&'a tern_local::prometheus::Prometheus>,
    draining: &'a mut Vec<Draining>,
    /// The binary each running function, the last migrate job and `tern` itself were started
    /// from: what is on disk is compared with it, not with the last build, so a binary a failed
    /// build or swap left behind is swapped in by the next one.
    running: HashMap<String, Option<crate::watch::Stamp>>,
}

impl<'a> Swaps<'a> {
    fn new(
        root: &'a std::path::Path,
        world: &'a World,
        instances: &'a mut Vec<tern_local::Instance>,
        upstreams: &'a tern_local::Upstreams,
        prometheus: Option<&'a tern_local::prometheus::Prometheus>,
        draining: &'a mut Vec<Draining>,
    ) -> Self {
        let running = instances
            .iter()
            .map(|i| i.name().to_owned())
            .chain(["migrate".to_owned(), "tern".to_owned()])
            .map(|n| {
                let stamp = crate::watch::stamp(&world.bin_dir.join(&n));
                (n, stamp)
            })
            .collect();
        Self {
            root,
            world,
            instances,
            upstreams,
            prometheus,
            draining,
            running,
        }
    }

    /// Until the watch ends (it fails to start, or its channel closes): each batch of saves
    /// rebuilt and what changed swapped in.
    async fn watch(&mut self) -> Result<(), String> {
        let built_into = crate::watch::build_dir(self.root);
        if !same_dir(&built_into, &self.world.bin_dir) {
            return Err(format!(
                "--watch rebuilds into {}, not --bin-dir {}",
                built_into.display(),
                self.world.bin_dir.display()
            ));
        }
        let mut sources = crate::watch::SourceWatch::start(self.root)?;
        step(
            "watching functions/, shared/, migrations/ and routes.toml: a save rebuilds what depends on it, and each function whose binary changed is swapped in as a revision is",
        );
        while let Some(changes) = sources.next().await {
            println!("{:>16} | {} changed: building", "watch", changes.summary());
            if changes.paths.contains(std::path::Path::new("routes.toml")) {
                println!(
                    "{:>16} | routes.toml changed: the router and the subscriptions follow it once scripts/dev restarts",
                    "watch"
                );
            }
            self.rebuild(&changes).await?;
            self.draining.retain(|d| !d.thread.is_finished());
        }
        Err("the source watch closed".into())
    }

    /// Whether `name`'s binary differs from the one it runs.
    fn changed(&self, name: &str) -> bool {
        let now = crate::watch::stamp(&self.world.bin_dir.join(name));
        self.running.get(name).is_none_or(|r| *r != now)
    }

    /// One rebuild and the swaps it calls for. A failed build or a new build that does not
    /// become ready leaves the previous one serving (and is tried again after the next save).
    async fn rebuild(&mut self, changes: &crate::watch::Changes) -> Result<(), String> {
        let started = std::time::Instant::now();
        if let Err(e) = crate::watch::build(self.root).await {
            println!("{:>16} | {e}: still serving the previous build", "watch");
            return Ok(());
        }
        let built = started.elapsed();
        if self.changed("tern") {
            println!(
                "{:>16} | tern itself changed: restart scripts/dev to run the new one",
                "watch"
            );
            let now = crate::watch::stamp(&self.world.bin_dir.join("tern"));
            self.running.insert("tern".into(), now);
        }
        if self.changed("migrate") {
            // Migrations first, as a deploy's migrate job runs before the new revisions.
            let now = crate::watch::stamp(&self.world.bin_dir.join("migrate"));
            let world = self.world;
            match tokio::task::block_in_place(|| world.migrate()) {
                Ok(()) => {
                    println!("{:>16} | the migrate job ran again", "migrate");
                    self.running.insert("migrate".into(), now);
                }
                Err(e) => {
                    println!(
                        "{:>16} | the migrate job failed ({e}): functions not swapped",
                        "migrate"
                    );
                    return Ok(());
                }
            }
        }
        let functions: Vec<String> = self
            .instances
            .iter()
            .map(|i| i.name().to_owned())
            .filter(|n| self.changed(n))
            .collect();
        if functions.is_empty() {
            println!(
                "{:>16} | built in {:.1} s; no function's binary changed",
                "watch",
                built.as_secs_f64()
            );
            return Ok(());
        }
        println!(
            "{:>16} | built in {:.1} s; swapping {}",
            "watch",
            built.as_secs_f64(),
            functions.join(", ")
        );
        // The new builds start together, as a deploy's new revisions do.
        let mut fresh = Vec::new();
        for name in &functions {
            let f = self.world.function(name)?;
            let stamp = crate::watch::stamp(&self.world.bin_dir.join(name));
            match self.world.launcher.spawn(f, &self.world.env, 0) {
                Ok(i) => fresh.push((i, stamp, std::time::Instant::now())),
                Err(e) => println!(
                    "{name:>16} | the new build did not start ({e}): still serving the previous one"
                ),
            }
        }
        for (mut new, stamp, spawned) in fresh {
            let name = new.name().to_owned();
            let (new, ready) = tokio::task::spawn_blocking(move || {
                let r = new.wait_ready();
                (new, r)
            })
            .await
            .map_err(|e| e.to_string())?;
            if let Err(e) = ready {
                println!(
                    "{name:>16} | the new build did not become ready ({e}): still serving the previous one"
                );
                continue;
            }
            let ready_in = spawned.elapsed();
            if let Ok(mut u) = self.upstreams.write() {
                u.insert(name.clone(), vec![new.addr()]);
            }
            println!(
                "{name:>16} | swapped: the new build serves {:.1} s after the save (build {:.1} s, start to ready {:.1} s); the previous one drains",
                changes.first.elapsed().as_secs_f64(),
                built.as_secs_f64(),
                ready_in.as_secs_f64()
            );
            self.running.insert(name.clone(), stamp);
            match self.instances.iter().position(|i| i.name() == name) {
                Some(at) => {
                    let old = std::mem::replace(&mut self.instances[at], new);
                    self.draining.push(Draining::start(old));
                }
                None => self.instances.push(new),
            }
        }
        if let Some(p) = self.prometheus
            && let Err(e) = p.retarget(&scrape_targets(self.world, self.instances))
        {
            println!("{:>16} | {e}", "prometheus");
        }
        Ok(())
    }
}

/// Whether two paths name the same directory.
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A replaced instance on its way out, on a thread of its own: a pod's drain waits for 30 s
/// without requests.
struct Draining {
    queue_proxy: Option<u32>,
    thread: std::thread::JoinHandle<()>,
}

impl Draining {
    fn start(mut old: tern_local::Instance) -> Self {
        let queue_proxy = old.queue_proxy_pid();
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            old.retire();
            println!(
                "{:>16} | the previous build drained and exited ({:.1} s)",
                old.name(),
                started.elapsed().as_secs_f64()
            );
        });
        Self {
            queue_proxy,
            thread,
        }
    }

    /// At Ctrl-C: cuts queue-proxy's drain short (nothing routes to it any more), then waits for
    /// the function's own.
    fn finish(self) {
        // The draining thread reaps queue-proxy once the function has exited, so the pid may
        // be free by now: it is signalled only while it is still a child of ours.
        if !self.thread.is_finished()
            && let Some(pid) = self.queue_proxy
            && parent_of(pid) == Some(std::process::id())
        {
            tern_local::signal_tree(pid, libc::SIGKILL);
        }
        let _ = self.thread.join();
    }
}

/// The parent of process `pid` (`/proc/PID/stat`), if it is running.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses; it ends at the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The router's upstreams: each function's instance addresses.
fn upstreams_of(instances: &[tern_local::Instance]) -> HashMap<String, Vec<String>> {
    let mut upstreams: HashMap<String, Vec<String>> = HashMap::new();
    for i in instances {
        upstreams
            .entry(i.name().to_owned())
            .or_default()
            .push(i.addr());
    }
    upstreams
}

/// A standby region, as prod's europe-west4 before a failover: a streaming replica of the local
/// PostgreSQL (`pg_basebackup`), every HTTP function against it (reads answer; writes answer 503
/// `region-standby`), and its own router. No deliveries and no scheduler: Pub/Sub pushes to the
/// public host (the primary's router), and the standby's relay job is paused until failover.
struct Standby {
    replica: tern_local::Postgres,
    database_url: String,
    port: u16,
    instances: Vec<tern_local::Instance>,
    stop: tern_local::StopToken,
    router: tokio::task::JoinHandle<()>,
}

impl Standby {
    async fn start(
        root: &std::path::Path,
        world: &World,
        opts: &DevOptions,
        limits: tern::platform::ConnLimits,
    ) -> Result<Self, String> {
        let port = opts
            .port
            .checked_add(1)
            .ok_or("--standby needs the port above --port")?;
        // Beside the local cluster; with DATABASE_URL (not ours), in a folder of this run's.
        let dir = if world.postgres().is_some() {
            root.join(".local/dev/pg-standby")
        } else {
            std::env::temp_dir().join(format!("tern-dev-standby-{}", std::process::id()))
        };
        let (replica, database_url) =
            tern_local::Postgres::replica_of_url(world.env.database_url(), &dir, 0)
                .map_err(|e| format!("--standby: {e}"))?;
        step(&format!(
            "standby region: a streaming replica of the database at {database_url} (pg_basebackup)"
        ));
        let env = world
            .env
            .clone()
            .database(&database_url)
            .public_origins(tern_local::local_origins(port));
        let first = opts
            .first_function_port
            .checked_add(STANDBY_PORT_OFFSET)
            .ok_or("--standby: no room for its function ports")?;
        let instances = world.start_http_instances_with(&env, first)?;
        let upstreams = upstreams_of(&instances);
        let listener = tern::platform::bind(([127, 0, 0, 1], port).into())
            .await
            .map_err(|e| format!("--standby: cannot listen on 127.0.0.1:{port}: {e}"))?;
        let router = tern_local::Router::new(
            &world.table,
            std::sync::Arc::new(std::sync::RwLock::new(upstreams)),
        )
        .limits(limits);
        let stop = tern_local::StopToken::default();
        let cancelled = stop.clone();
        let router = tokio::spawn(async move {
            router
                .serve(listener, async move { cancelled.cancelled().await })
                .await;
        });
        Ok(Self {
            replica,
            database_url,
            port,
            instances,
            stop,
            router,
        })
    }

    fn print_banner(&self) {
        println!(
            "  standby region (before a failover: reads answer, writes answer 503 region-standby)"
        );
        println!("    web pages   http://127.0.0.1:{}/", self.port);
        println!("    JSON API    http://127.0.0.1:{}/api/orders", self.port);
        println!("    replica     {}", self.database_url);
        println!(
            "    functions   {}\n",
            self.instances
                .iter()
                .map(|i| format!("{} {}", i.name(), i.addr()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// Stops the router; the functions are the caller's to stop (they drain), then the
    /// replica's (it stops when dropped).
    fn stop(self) -> (Vec<tern_local::Instance>, tern_local::Postgres) {
        self.stop.cancel();
        self.router.abort();
        (self.instances, self.replica)
    }
}

/// The router's client-connection limits: `TERN_HEADER_READ_TIMEOUT`, `TERN_IDLE_TIMEOUT` and
/// `TERN_MAX_HEADER_BYTES`, as the runtime reads them, checked before anything starts.
pub fn router_limits() -> Result<tern::platform::ConnLimits, String> {
    tern::platform::ConnLimits::from_env(&tern::Env::from_process()).map_err(|e| e.to_string())
}

fn step(what: &str) {
    println!("{:>16} | {what}", "tern dev");
}

fn print_banner(
    opts: &DevOptions,
    world: &World,
    upstreams: &HashMap<String, Vec<String>>,
    metrics: &HashMap<String, String>,
) {
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
        opts.delivery.mode
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
    println!("  metrics (OpenMetrics text, docs/operations.md \"Metrics\"):");
    for f in table.functions.iter().filter(|f| f.kind == Kind::Http) {
        if let Some(url) = metrics.get(&f.name) {
            println!("    {:<16} {url}", f.name);
        }
    }
    println!(
        "\n  publish a payment:  scripts/dev publish payments '{{\"order_id\":\"ord_...\",\"payment_id\":\"pay_1\",\"amount_cents\":1250,\"currency\":\"EUR\"}}'"
    );
    println!("  stop:               Ctrl-C\n");
}
