//! IAM database authentication (Cloud SQL), `DB_AUTH=iam`: no database password exists.
//!
//! The function connects as its own Google service account (`DB_USER` is the account's email
//! without `.gserviceaccount.com`, the name Cloud SQL gives an IAM service-account user) and
//! sends a short-lived OAuth2 access token of that account as the password. The token comes
//! from the metadata server (GKE's, through Workload Identity; `GCE_METADATA_HOST` overrides
//! its address) through Google's `google-cloud-auth`, which caches it and refreshes it in the
//! background 4 minutes before it expires. Every new connection takes the current token; a
//! connection already open stays open when its token expires (PostgreSQL checks the password
//! only at connect).

use google_cloud_auth::credentials::AccessTokenCredentials;
use google_cloud_auth::credentials::mds;

/// The scope Cloud SQL's connectors ask for: database login only.
const SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

/// The workload's access tokens, for the password of each new connection.
#[derive(Clone)]
pub(crate) struct IamToken(AccessTokenCredentials);

impl IamToken {
    /// `metadata_host`: `GCE_METADATA_HOST` as the settings give it (the library also reads the
    /// process environment itself, first); `None`, the metadata server GKE provides.
    pub(crate) fn new(metadata_host: Option<&str>) -> Result<Self, String> {
        let mut builder = mds::Builder::default();
        if let Some(host) = metadata_host {
            builder = builder.with_endpoint(format!("http://{host}"));
        }
        builder
            .with_scopes([SCOPE])
            .build_access_token_credentials()
            .map(Self)
            .map_err(|e| format!("cannot set up the metadata server's credentials: {e}"))
    }

    /// The current token (fetched on first use, then refreshed before it expires).
    pub(crate) async fn current(&self) -> Result<String, String> {
        self.0
            .access_token()
            .await
            .map(|t| t.token)
            .map_err(|e| format!("no IAM database token from the metadata server: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, DbConfig};
    use std::time::{Duration, Instant};
    use tern::Env;

    /// A metadata server that accepts and never answers costs a request its connect timeout
    /// and a 503 with Retry-After, never a stuck request.
    #[tokio::test]
    async fn a_hanging_metadata_server_costs_the_connect_timeout_and_a_503() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let (seen, mut asked) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                let _ = seen.send(());
                held.push(socket);
            }
        });
        let env = Env::from_pairs([
            ("DB_AUTH", "iam"),
            ("DATABASE_URL", "postgres://fn-web%40p.iam@127.0.0.1:9/tern"),
            ("GCE_METADATA_HOST", host.as_str()),
            ("DB_CONNECT_TIMEOUT", "500ms"),
            ("DB_WAIT_TIMEOUT", "500ms"),
        ]);
        let cfg = DbConfig::from_env(&env).await.unwrap();
        assert_eq!(cfg.metadata_host.as_deref(), Some(host.as_str()));
        let db = Db::from_config(&cfg).unwrap();
        let started = Instant::now();
        let problem = db.get().await.expect_err("no token, no connection");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(problem.status().as_u16(), 503);
        asked.recv().await.expect("the metadata server was asked");
    }
}
