//! `web`: the server-rendered pages of the orders application.
mod app;
mod csrf;
mod pages;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tern_secret_manager::install();
    tern::run(app::app).await
}
