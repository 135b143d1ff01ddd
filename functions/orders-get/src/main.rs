//! `orders-get`: `GET /api/orders/{id}`.
mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern::run(app::app).await
}
