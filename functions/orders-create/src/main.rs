//! `orders-create`: `POST /api/orders`.
mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern::run(app::app).await
}
