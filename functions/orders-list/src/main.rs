//! `orders-list`: `GET /api/orders` (back office, API key).
mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern::run(app::app).await
}
