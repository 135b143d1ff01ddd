//! `migrate`: applies the migrations and exits. Runs once per deploy (a Kubernetes Job, Argo CD
//! PreSync hook), never from every function instance at start.
//!
//! Waits up to `MIGRATE_WAIT` (default 60s) for the database to accept connections, so it can
//! start alongside a database that is still coming up. Exit 0: up to date; 1: failed; 2: bad
//! configuration.

use std::process::ExitCode;
use std::time::{Duration, Instant};
use tern::{Env, RuntimeConfig};
use tern_db::{Db, DbConfig, Migrator};

const MIGRATIONS: &[tern_db::Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

#[tokio::main]
async fn main() -> ExitCode {
    let env = Env::from_process();
    let settings = async {
        let rt = RuntimeConfig::from_env(&env, "migrate")?;
        let db = DbConfig::from_env(&env).await?;
        let wait: Duration = env.or("MIGRATE_WAIT", Duration::from_secs(60))?;
        Ok::<_, tern::ConfigError>((rt, db, wait))
    };
    let (rt, cfg, wait) = match settings.await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("migrate: {e}");
            return ExitCode::from(2);
        }
    };
    let _logs = tern::logging::init(
        rt.log_format,
        &rt.log_filter,
        &rt.knative,
        rt.project_id.as_deref(),
    );
    match migrate(&cfg, wait).await {
        Ok(report) => {
            tracing::info!(applied = ?report.applied, already = report.already, "database is up to date");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "migration failed");
            eprintln!("migrate: {e}");
            ExitCode::from(1)
        }
    }
}

async fn migrate(
    cfg: &DbConfig,
    wait: Duration,
) -> Result<tern_db::migrate::MigrateReport, String> {
    let db = Db::from_config(cfg).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + wait;
    let mut client = loop {
        match db.get().await {
            Ok(c) => break c,
            Err(p) if Instant::now() < deadline => {
                tracing::info!(
                    reason = p.detail().unwrap_or_default(),
                    "waiting for the database"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(p) => {
                return Err(format!(
                    "the database did not become reachable within {wait:?}: {p}"
                ));
            }
        }
    };
    Migrator::new(MIGRATIONS.to_vec())
        .run(&mut client)
        .await
        .map_err(|e| e.to_string())
}
