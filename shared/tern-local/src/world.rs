//! A local world: PostgreSQL, the Pub/Sub emulator with the route table's topology, the
//! migrated database, and the functions started on it, all with one [`FunctionEnv`].
//!
//! `tern dev` is a world with every HTTP function started and an [`Edge`](crate::Edge) in
//! front; the end-to-end tests and the bench start the functions they measure on a world of
//! their own. A part added to a local system (a sidecar, a replica) is added here once.

use crate::env::FunctionEnv;
use crate::postgres::{Postgres, ensure_database};
use crate::process::{FunctionProcess, Output, free_port, run_job};
use crate::pubsub::{Emulator, create_topology};
use std::path::PathBuf;
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
        let world = Self {
            table,
            bin_dir: opts.bin_dir,
            env: FunctionEnv::new(database_url).pubsub(pubsub.clone()),
            output: opts.output,
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

    /// Starts every HTTP function of the route table on consecutive ports from `first_port`,
    /// all at once, and waits until each is ready.
    pub fn start_http_functions(&self, first_port: u16) -> Result<Vec<FunctionProcess>, String> {
        let mut procs = Vec::new();
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
            procs.push(self.spawn_with(&f.name, port, &self.env)?);
        }
        for p in &mut procs {
            p.wait_for(tern::platform::READY_PATH, 200, READY_TIMEOUT)?;
        }
        Ok(procs)
    }
}
