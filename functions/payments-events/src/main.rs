//! `payments-events`: payment CloudEvents from the `payments` topic.
mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern::run(app::app).await
}
