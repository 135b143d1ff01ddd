//! `migrate`: applies the migrations under `migrations/` and exits; a Job (Argo CD PreSync hook)
//! once per deploy, never every instance at start. Exit 0: up to date, 1: failed, 2: bad setting.
const MIGRATIONS: &[tern_db::Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern::run_job(|ctx| tern_db::migrate::job(ctx, MIGRATIONS)).await
}
