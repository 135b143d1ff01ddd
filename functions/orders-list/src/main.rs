//! `orders-list`: `GET /api/orders` (back office, API key).
mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern_secret_manager::install();
    tern::run(app::app).await
}
