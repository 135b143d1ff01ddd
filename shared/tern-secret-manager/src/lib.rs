//! Secret Manager behind Tern's `NAME_SECRET` settings ([`tern::secrets`]).
//!
//! A function that declares `secrets` in `routes.toml` (the chart then sets `NAME_SECRET` to a
//! Secret Manager version) calls [`install`] at the top of `main`:
//!
//! ```no_run
//! # mod app {
//! #     pub async fn app(_: tern::Context) -> Result<axum::Router, tern::StartError> {
//! #         Ok(axum::Router::new())
//! #     }
//! # }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     tern_secret_manager::install();
//!     tern::run(app::app).await
//! }
//! ```
//!
//! The other functions do not link Google's client at all (about 1.5 MiB of a stripped binary;
//! docs/decisions/0028); for them a `NAME_SECRET` setting is a configuration error that says so.

use std::future::Future;
use std::pin::Pin;

/// Reads secret versions with the workload's own identity (Workload Identity in GKE,
/// Application Default Credentials elsewhere) through Google's `google-cloud-secretmanager-v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretManager;

impl tern::secrets::SecretStore for SecretManager {
    fn access<'a>(
        &'a self,
        version: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let client = google_cloud_secretmanager_v1::client::SecretManagerService::builder()
                .build()
                .await
                .map_err(|e| format!("cannot create a Secret Manager client: {e}"))?;
            let got = client
                .access_secret_version()
                .set_name(version)
                .send()
                .await
                .map_err(|e| format!("cannot read {version}: {e}"))?;
            let data = got.payload.map(|p| p.data).unwrap_or_default();
            String::from_utf8(data.to_vec()).map_err(|_| format!("{version} is not UTF-8 text"))
        })
    }
}

/// Makes `NAME_SECRET` settings read from Secret Manager in this process.
pub fn install() {
    tern::secrets::set_store(Box::new(SecretManager));
}
