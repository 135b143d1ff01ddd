//! `outbox-relay`: `POST /internal/outbox/flush`, called on a schedule.
mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern::run(app::app).await
}
