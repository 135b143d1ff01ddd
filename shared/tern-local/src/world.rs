//! A local world: PostgreSQL, the Pub/Sub emulator with the route table's topology, the
//! migrated database, and the functions started on it, all with one [`FunctionEnv`].
//!
//! `tern dev` is a world with every HTTP function started and an [`Edge`](crate::Edge) in
//! front; the end-to-end tests and the bench start the functions they measure on a world of
//! their own. A part added to a local system (a sidecar, a replica) is added here once.

use crate::chart::ChartValues;
use crate::env::FunctionEnv;
use crate::pod::Pod;
use crate::postgres::{Postgres, ensure_database};
use crate::process::{FunctionProcess, Output, free_port, run_job};
use crate::pubsub::{Emulator, create_topology};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use tern_events::PubSubConfig;
use tern_routes::{Function, Kind, RouteTable};

/// The Pub/Sub project of `tern dev`.
pub const LOCAL_PROJECT: &str = "tern-local";
/// The emulator port of `tern dev`.
pub const EMULATOR_PORT: u16 = 8085;
/// The PostgreSQL port of `tern dev`'s throwaway cluster.
pub const POSTGRES_PORT: u16 = 54329;
/// How long a function may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database a world uses.
#[derive(Debug, Clone)]
pub enum Database {
    /// A throwaway cluster in `dir` on `port` (0: any free port), with database `name` in it.
    Throwaway {
        /// Where the cluster's files go.
        dir: PathBuf,
        /// Its port on 127.0.0.1.
        port: u16,
        /// The database the functions use.
        name: String,
    },
    /// A database that is already there (`DATABASE_URL`).
    Url(String),
}

/// Which Pub/Sub emulator a world uses.
#[derive(Debug, Clone)]
pub enum PubSub {
    /// Start ours on `127.0.0.1:port` (0: any free port).
    Start {
        /// Its port.
        port: u16,
    },
    /// One that is already running (`PUBSUB_EMULATOR_HOST`).
    At(String),
}

/// What a world is made of.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// The repository root (`routes.toml`, `.local/bin`).
    pub root: PathBuf,
    /// Where the function binaries are.
    pub bin_dir: PathBuf,
    /// The database.
    pub database: Database,
    /// The emulator.
    pub pubsub: PubSub,
    /// The Pub/Sub project (each test has its own).
    pub project: String,
    /// Where the functions' and the migrate job's output goes.
    pub output: Output,
}

/// How a world runs its HTTP functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// As Knative runs them: each in a pod of its own (a network namespace) behind Knative
    /// Serving's queue-proxy, the binary at this path ([`Pod`]).
    Pods(PathBuf),
    /// As plain processes on loopback ports, without queue-proxy: only where pods cannot be
    /// made (not root).
    Direct,
}

impl Runner {
    /// Pods when this process runs as root (network namespaces need it); otherwise
    /// [`Runner::Direct`], with the reason to print. As root, a missing `ip` or queue-proxy is an
    /// error, never a quiet fallback.
    pub fn detect(root: &Path) -> Result<(Self, Option<String>), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok((
                Self::Direct,
                Some(
                    "not running as root, so functions run without Knative's queue-proxy \
                      (each pod needs a network namespace: `ip netns`, root only); run as root \
                      for the path the cluster takes"
                        .to_owned(),
                ),
            ));
        }
        let queue = root.join(".local/bin/queue");
        if !queue.exists() {
            return Err(format!(
                "{} is missing: run scripts/tools (Knative Serving's queue-proxy)",
                queue.display()
            ));
        }
        if !crate::pod::ip_command().exists() {
            return Err("`ip` (iproute2) is missing: apt-get install -y iproute2".to_owned());
        }
        Ok((Self::Pods(queue), None))
    }
}

/// Starts HTTP functions as the cluster runs them, with the chart's settings for each.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// Where the function binaries are.
    pub bin_dir: PathBuf,
    /// Pods or processes.
    pub runner: Runner,
    /// Why functions run without queue-proxy, when they do.
    pub why_direct: Option<String>,
    /// The chart's revision settings.
    pub chart: ChartValues,
    /// Where the functions' output goes.
    pub output: Output,
}

impl Launcher {
    /// A launcher for the repository at `root` ([`Runner::detect`], the chart's values).
    pub fn detect(root: &Path, bin_dir: PathBuf, output: Output) -> Result<Self, String> {
        let (runner, why_direct) = Runner::detect(root)?;
        Ok(Self {
            bin_dir,
            runner,
            why_direct,
            chart: ChartValues::load(root)?,
            output,
        })
    }

    /// Starts `function` with `env` plus the chart's settings for it (those `env` sets win); a
    /// process takes `port` (0: any free port). Does not wait.
    pub fn spawn(
        &self,
        function: &Function,
        env: &FunctionEnv,
        port: u16,
    ) -> Result<Instance, String> {
        let env = env.clone().defaults(self.chart.function_env(function));
        match &self.runner {
            Runner::Pods(queue) => Pod::spawn(
                &self.bin_dir,
                queue,
                function,
                &env,
                &self.chart.revision(function),
                self.output,
            )
            .map(Instance::Pod),
            Runner::Direct => {
                let port = if port == 0 { free_port() } else { port };
                FunctionProcess::spawn(&self.bin_dir, function, port, &env, self.output)
                    .map(Instance::Process)
            }
        }
    }

    /// [`Launcher::spawn`], and waits until it is ready.
    pub fn start(&self, function: &Function, env: &FunctionEnv) -> Result<Instance, String> {
        let mut i = self.spawn(function, env, 0)?;
        i.wait_ready()?;
        Ok(i)
    }
}

/// A running HTTP function: a pod (queue-proxy and the function), or a plain process.
pub enum Instance {
    /// Behind queue-proxy in its own network namespace.
    Pod(Pod),
    /// A process on a loopback port.
    Process(FunctionProcess),
}

impl Instance {
    /// What the function has printed so far, when started with [`Output::Kept`].
    pub fn output_lines(&self) -> Vec<String> {
        match self {
            Self::Pod(p) => p.function().output_lines(),
            Self::Process(p) => p.output_lines(),
        }
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Pod(p) => p.name(),
            Self::Process(p) => &p.name,
        }
    }

    /// `host:port` the router sends its requests to (queue-proxy's, for a pod).
    pub fn addr(&self) -> String {
        match self {
            Self::Pod(p) => p.addr(),
            Self::Process(p) => format!("127.0.0.1:{}", p.port),
        }
    }

    /// `http://` + [`Instance::addr`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// What a local Prometheus scrapes of it, as the chart's PodMonitorings scrape a pod.
    pub fn scrape_target(&self, visibility: &str) -> crate::prometheus::ScrapeTarget {
        let (metrics, queue_proxy) = match self {
            Self::Pod(p) => (
                p.function_metrics_addr(),
                Some(format!("{}:{}", p.ip(), crate::pod::REQUEST_METRICS_PORT)),
            ),
            Self::Process(p) => (format!("127.0.0.1:{}", p.metrics_port), None),
        };
        crate::prometheus::ScrapeTarget {
            function: self.name().to_owned(),
            visibility: visibility.to_owned(),
            metrics,
            queue_proxy,
        }
    }

    /// Where the function's own metrics are served (`GET /metrics`).
    pub fn metrics_url(&self) -> String {
        match self {
            Self::Pod(p) => p.function_metrics_url(),
            Self::Process(p) => p.metrics_url(),
        }
    }

    /// The function's own process.
    pub fn process_mut(&mut self) -> &mut FunctionProcess {
        match self {
            Self::Pod(p) => p.function_mut(),
            Self::Process(p) => p,
        }
    }

    /// Stops the function with SIGTERM (it drains as configured) and waits for it; a pod's
    /// queue-proxy is then killed when the instance is dropped, without its 30 s drain.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.process_mut().terminate()
    }

    /// queue-proxy's process id, for a pod whose queue-proxy runs.
    pub fn queue_proxy_pid(&self) -> Option<u32> {
        match self {
            Self::Pod(p) => p.queue_proxy_pid(),
            Self::Process(_) => None,
        }
    }

    /// Stops it as its platform deletes it: a pod as the kubelet does ([`Pod::terminate`]:
    /// queue-proxy's drain, then SIGTERM to the function), a process with SIGTERM. Waits.
    pub fn retire(&mut self) {
        match self {
            Self::Pod(p) => {
                p.terminate();
            }
            Self::Process(p) => {
                p.terminate();
            }
        }
    }

    /// Waits until it is ready (queue-proxy's readiness probe for a pod).
    pub fn wait_ready(&mut self) -> Result<(), String> {
        match self {
            Self::Pod(p) => p.wait_ready(crate::pod::READY_TIMEOUT),
            Self::Process(p) => p.wait_for(tern::platform::READY_PATH, 200, READY_TIMEOUT),
        }
    }
}

/// A running local world. Dropping it stops what it started.
pub struct World {
    /// The route table.
    pub table: RouteTable,
    /// Where the function binaries are.
    pub bin_dir: PathBuf,
    /// The environment every function of this world gets; adjust it before starting functions.
    pub env: FunctionEnv,
    /// Where the functions' output goes.
    pub output: Output,
    /// How HTTP functions are started ([`World::start_instance`]).
    pub launcher: Launcher,
    pubsub: PubSubConfig,
    postgres: Option<Postgres>,
    emulator: Option<Emulator>,
}

impl World {
    /// Starts (or connects to) PostgreSQL and the emulator, creates the route table's topics
    /// and subscriptions, and runs the `migrate` job.
    pub async fn start(opts: WorldOptions) -> Result<Self, String> {
        let table = RouteTable::load(&opts.root.join("routes.toml")).map_err(|e| e.to_string())?;
        let (postgres, database_url) = match opts.database {
            Database::Url(url) => (None, url),
            Database::Throwaway { dir, port, name } => {
                let pg = Postgres::start(&dir, port)?;
                ensure_database(&pg.url("postgres"), &name).await?;
                let url = pg.url(&name);
                (Some(pg), url)
            }
        };
        let (emulator, host) = match opts.pubsub {
            PubSub::At(host) => (None, host),
            PubSub::Start { port } => {
                let e = Emulator::start(&opts.root.join(".local/bin/pubsub-emulator"), port)?;
                let host = e.addr.clone();
                (Some(e), host)
            }
        };
        let pubsub = PubSubConfig::emulator(host, opts.project);
        create_topology(&pubsub, &table).await?;
        let launcher = Launcher::detect(&opts.root, opts.bin_dir.clone(), opts.output)?;
        let world = Self {
            table,
            bin_dir: opts.bin_dir,
            env: FunctionEnv::new(database_url).pubsub(pubsub.clone()),
            output: opts.output,
            launcher,
            pubsub,
            postgres,
            emulator,
        };
        world.migrate()?;
        Ok(world)
    }

    /// Runs the `migrate` job against this world's database, as a deploy's PreSync hook does.
    pub fn migrate(&self) -> Result<(), String> {
        run_job(&self.bin_dir, "migrate", &self.env, self.output)
    }

    /// The Pub/Sub settings of this world.
    pub fn pubsub(&self) -> &PubSubConfig {
        &self.pubsub
    }

    /// The throwaway PostgreSQL cluster, when this world started one.
    pub fn postgres(&self) -> Option<&Postgres> {
        self.postgres.as_ref()
    }

    /// The same, to stop and restart it.
    pub fn postgres_mut(&mut self) -> Option<&mut Postgres> {
        self.postgres.as_mut()
    }

    /// The emulator, when this world started one (to stop and restart it).
    pub fn emulator_mut(&mut self) -> Option<&mut Emulator> {
        self.emulator.as_mut()
    }

    /// The route table's entry for `name`.
    pub fn function(&self, name: &str) -> Result<&Function, String> {
        self.table
            .function(name)
            .ok_or_else(|| format!("no function {name} in routes.toml"))
    }

    /// Starts `name` with `env` on `port` (0: any free port); does not wait.
    pub fn spawn_with(
        &self,
        name: &str,
        port: u16,
        env: &FunctionEnv,
    ) -> Result<FunctionProcess, String> {
        let port = if port == 0 { free_port() } else { port };
        FunctionProcess::spawn(&self.bin_dir, self.function(name)?, port, env, self.output)
    }

    /// Starts `name` with this world's environment on a free port and waits until it is ready.
    pub fn start_function(&self, name: &str) -> Result<FunctionProcess, String> {
        self.start_function_with(name, &self.env)
    }

    /// Starts `name` with `env` (this world's, adjusted) and waits until it is ready.
    pub fn start_function_with(
        &self,
        name: &str,
        env: &FunctionEnv,
    ) -> Result<FunctionProcess, String> {
        let mut p = self.spawn_with(name, 0, env)?;
        p.wait_for(tern::platform::READY_PATH, 200, READY_TIMEOUT)?;
        Ok(p)
    }

    /// Starts `name` as the cluster runs it ([`Launcher`]) with `env`, and waits until it is
    /// ready.
    pub fn start_instance(&self, name: &str, env: &FunctionEnv) -> Result<Instance, String> {
        self.launcher.start(self.function(name)?, env)
    }

    /// Starts every HTTP function of the route table at once, with this world's environment,
    /// and waits until each is ready; processes take consecutive ports from `first_port`.
    pub fn start_http_instances(&self, first_port: u16) -> Result<Vec<Instance>, String> {
        self.start_http_instances_with(&self.env, first_port)
    }

    /// [`World::start_http_instances`] with another environment (a standby region's).
    pub fn start_http_instances_with(
        &self,
        env: &FunctionEnv,
        first_port: u16,
    ) -> Result<Vec<Instance>, String> {
        let mut all = Vec::new();
        for (i, f) in self
            .table
            .functions
            .iter()
            .filter(|f| f.kind == Kind::Http)
            .enumerate()
        {
            let port = first_port
                .checked_add(i as u16)
                .ok_or("no room for the function ports above the first one")?;
            all.push(self.launcher.spawn(f, env, port)?);
        }
        for i in &mut all {
            i.wait_ready()?;
        }
        Ok(all)
    }
}
