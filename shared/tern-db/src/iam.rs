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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The scope Cloud SQL's connectors ask for: database login only.
const SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

/// At most one fresh start of the credentials per this long (a metadata server that keeps
/// failing is not asked in a loop).
const REBUILD_EVERY: Duration = Duration::from_secs(2);

/// The workload's access tokens, for the password of each new connection.
///
/// Google's library gives up for good on an answer it deems permanent (any 4xx but 408 and 429:
/// GKE's metadata server answers 404 for a pod's identity in its first seconds, or while a
/// binding propagates) and sets no timeout on its requests. So a failed or timed-out fetch
/// starts the credentials afresh, at most every [`REBUILD_EVERY`]: the next connection attempt
/// asks again, and the pool's connect timeout bounds every wait.
#[derive(Clone)]
pub(crate) struct IamToken {
    metadata_host: Option<String>,
    wait: Duration,
    current: Arc<Mutex<(AccessTokenCredentials, Instant)>>,
}

impl IamToken {
    /// `metadata_host`: `GCE_METADATA_HOST` as the settings give it (the library also reads the
    /// process environment itself, first); `None`, the metadata server GKE provides. `wait`:
    /// the longest a fetch may take (the connect timeout).
    pub(crate) fn new(metadata_host: Option<&str>, wait: Duration) -> Result<Self, String> {
        let creds = build(metadata_host)?;
        Ok(Self {
            metadata_host: metadata_host.map(str::to_owned),
            wait,
            current: Arc::new(Mutex::new((creds, Instant::now()))),
        })
    }

    /// The current token (fetched on first use, then refreshed before it expires).
    pub(crate) async fn current(&self) -> Result<String, String> {
        let creds = self.current.lock().expect("credentials").0.clone();
        let failure = match tokio::time::timeout(self.wait, creds.access_token()).await {
            Ok(Ok(token)) => return Ok(token.token),
            Ok(Err(e)) => format!("no IAM database token from the metadata server: {e}"),
            Err(_) => format!(
                "no IAM database token from the metadata server within {:?}",
                self.wait
            ),
        };
        let mut current = self.current.lock().expect("credentials");
        if current.1.elapsed() >= REBUILD_EVERY
            && let Ok(fresh) = build(self.metadata_host.as_deref())
        {
            *current = (fresh, Instant::now());
        }
        Err(failure)
    }
}

fn build(metadata_host: Option<&str>) -> Result<AccessTokenCredentials, String> {
    let mut builder = mds::Builder::default();
    if let Some(host) = metadata_host {
        builder = builder.with_endpoint(format!("http://{host}"));
    }
    builder
        .with_scopes([SCOPE])
        .build_access_token_credentials()
        .map_err(|e| format!("cannot set up the metadata server's credentials: {e}"))
}

#[cfg(test)]
mod tests {
    use super::IamToken;
    use crate::{Db, DbConfig};
    use std::time::{Duration, Instant};
    use tern::Env;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A metadata server that first answers 404 (GKE's, in a pod's first seconds), then a token:
    /// the library alone would keep the 404 for the life of the process; ours asks again.
    #[tokio::test]
    async fn a_refusal_from_the_metadata_server_is_not_forever() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut socket, _)) = listener.accept().await {
                n += 1;
                let mut buf = vec![0; 4096];
                let _ = socket.read(&mut buf).await;
                let (status, body) = if n == 1 {
                    ("404 Not Found", "not defined".to_owned())
                } else {
                    (
                        "200 OK",
                        r#"{"access_token":"t-2","expires_in":3600,"token_type":"Bearer"}"#
                            .to_owned(),
                    )
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nmetadata-flavor: Google\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        let token = IamToken::new(Some(&host), Duration::from_secs(2)).unwrap();
        assert!(token.current().await.is_err(), "the first answer is a 404");
        let started = Instant::now();
        let got = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(t) = token.current().await {
                break t;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never recovered"
            );
        };
        assert_eq!(got, "t-2");
    }

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
