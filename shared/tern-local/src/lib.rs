//! # tern-local: a Tern system on one machine
//!
//! What runs a Tern system locally, the way it runs in the cluster: PostgreSQL (a throwaway
//! cluster, or `DATABASE_URL`), the Pub/Sub emulator with the topics and subscriptions of the
//! route table, the `migrate` job, the function processes, and around them the [`Edge`]: the
//! router (the stand-in for the Gateway), event deliveries (push subscriptions or Eventarc) and
//! the scheduler (Cloud Scheduler).
//!
//! `tern dev`, `tern edge`, the Compose file, the end-to-end tests and the bench all build on
//! this crate, so they start functions the same way:
//!
//! - a function's environment is built in one place, [`FunctionEnv`];
//! - a function process is started in one place, [`FunctionProcess::spawn`];
//! - a whole world (database, emulator, topology, migrations) in one place, [`World::start`].
//!
//! ```no_run
//! # async fn example() -> Result<(), String> {
//! use tern_local::{Database, Output, PubSub, World, WorldOptions};
//! let root = tern_local::repo_root()?;
//! let world = World::start(WorldOptions {
//!     bin_dir: root.join("target/debug"),
//!     database: Database::Throwaway { dir: root.join(".local/example/pg"), port: 0, name: "tern".into() },
//!     pubsub: PubSub::Start { port: 0 },
//!     project: "example".into(),
//!     output: Output::Quiet,
//!     root,
//! })
//! .await?;
//! let get = world.start_function("orders-get")?; // ready when this returns
//! println!("orders-get at {}", get.url());
//! # Ok(())
//! # }
//! ```

mod chart;
mod control_plane;
mod delivery;
mod edge;
mod env;
pub mod failover;
pub mod jaeger;
pub mod peers;
mod pod;
mod postgres;
mod process;
pub mod prometheus;
mod pubsub;
pub mod render;
mod router;
mod world;

pub use chart::ChartValues;
pub use control_plane::{ControlPlane, MANIFESTS, write_kubeconfig};
pub use delivery::{
    ACK_DEADLINE, Mode, PUSH_CONCURRENCY, Policy, Target, loopback, run as deliver, stop::StopToken,
};
pub use edge::{Edge, MAX_DELIVERY_ATTEMPTS};
pub use env::{FunctionEnv, LOCAL_API_KEY, ROUTER_PORT, local_origins};
pub use pod::{
    ADMIN_PORT, Pod, QUEUE_PROXY_DRAIN, READY_TIMEOUT, REQUEST_METRICS_PORT, RevisionSettings,
    SERVING_PORT, Termination, USER_PORT,
};
pub use postgres::{Durability, Postgres, ensure_database, postgres_bin_dir};
pub use process::{
    FunctionProcess, Output, die_with_parent, free_port, http_status, kill_tree, process_tree,
    repo_root, run_job, signal, signal_tree, wait_for_port,
};
pub use pubsub::{
    Admin, Emulator, PULL_STREAMS, Pull, Pulled, create_topology, dead_letter_topic, pull,
    subscriber,
};
pub use router::{NAMESPACE, Router, Upstreams};
pub use tern::LogFormat;
pub use world::{
    Database, EMULATOR_PORT, Instance, LOCAL_PROJECT, Launcher, POSTGRES_PORT, PubSub, Runner,
    World, WorldOptions,
};

#[cfg(test)]
fn test_table() -> tern_routes::RouteTable {
    tern_routes::RouteTable::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../routes.toml"),
    )
    .expect("routes.toml")
}
