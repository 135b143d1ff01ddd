//! `tern-bench`: Tern, its baselines and its peers measured side by side in one run; see
//! `scripts/bench`.
//!
//! Module graph (no cycles): `main` → `measure` → {`events`, `startup`, `drills`, `stack`,
//! `peers`, `write`} → `harness` → {`wrk`, `tern-local`}; `report` → `peers` (its section of the
//! page); `load`, `wrk`, `stats`, `svg` and `baselines` are leaves.

mod baselines;
mod drills;
mod events;
mod harness;
mod load;
mod measure;
mod peers;
mod report;
mod stack;
mod startup;
mod stats;
mod svg;
mod write;
mod wrk;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tern-bench",
    about = "Benchmarks Tern against bare baselines and runs load drills."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every measurement and drill, and write docs/performance.{md,json,svg}.
    Run {
        /// Fewer and shorter repetitions (about 3 minutes).
        #[arg(long)]
        quick: bool,
        /// Where the release binaries are.
        #[arg(long, default_value = "target/release")]
        bin_dir: std::path::PathBuf,
        /// Where the outputs go.
        #[arg(long, default_value = "docs")]
        out: std::path::PathBuf,
        /// Run one measurement only (route, write, logging, events, cold-start, footprint, peers, drills) and
        /// print its JSON instead of writing the report: for a before → after of one change.
        #[arg(long, value_parser = ["route", "write", "logging", "events", "cold-start", "footprint", "peers", "drills"])]
        only: Option<String>,
    },
    /// Writes performance.md and performance.svg again from the figures of a run
    /// (performance.json), after a change to how they are rendered: nothing is measured.
    Render {
        /// Where the run's performance.json is, and where the outputs go.
        #[arg(long, default_value = "docs")]
        out: std::path::PathBuf,
    },
    /// Only the in-process stack measurement: ns per request with the metrics on and off.
    Stack {
        /// Samples of each stack.
        #[arg(long, default_value_t = 7)]
        samples: usize,
    },
    /// Baseline (a): a bare hyper server answering a constant.
    BareHyper {
        #[arg(long)]
        port: u16,
    },
    /// Baseline (b): bare hyper + tokio-postgres doing orders-get's SELECTs.
    BarePg {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// One request per connection at a time, as with a pool.
        #[arg(long)]
        exclusive: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The baselines run on the same runtime flavour as Tern's functions (#[tokio::main]).
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        eprintln!("tern-bench: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run {
                quick,
                bin_dir,
                out,
                only,
            } => measure::run(quick, &bin_dir, &out, only.as_deref()).await,
            Command::Render { out } => measure::render(&out),
            Command::Stack { samples } => stack::stack_cost(samples).await.map(|v| {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }),
            Command::BareHyper { port } => {
                baselines::bare_hyper(port).await.map_err(|e| e.to_string())
            }
            Command::BarePg {
                port,
                database_url,
                connections,
                exclusive,
            } => baselines::bare_pg(port, &database_url, connections, exclusive).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
