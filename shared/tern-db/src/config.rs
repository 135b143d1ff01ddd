//! Database settings from the environment.

use std::str::FromStr;
use std::time::Duration;
use tern::{ConfigError, Env};

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (local runs, a Unix socket, or the Cloud SQL Auth Proxy).
    Disable,
    /// TLS, the server's chain checked against `DB_SSL_ROOT_CERT`, the host name not checked.
    /// This is what Cloud SQL on a private IP needs: its server certificate names the
    /// instance, not the IP address.
    VerifyCa,
    /// TLS, chain and host name checked (against `DB_SSL_ROOT_CERT` or the web PKI roots).
    VerifyFull,
}

impl tern::Setting for SslMode {
    const EXPECTED: &'static str = "disable, verify-ca or verify-full";
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "disable" => Ok(Self::Disable),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(format!("expected {}, got {other:?}", Self::EXPECTED)),
        }
    }
}

/// How the pool authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbAuth {
    /// `DB_PASSWORD` (its file or Secret Manager forms), or the URL's password (local runs).
    Password,
    /// Cloud SQL IAM database authentication: the workload identity's access token as the
    /// password of each new connection (`iam.rs`).
    Iam,
}

impl tern::Setting for DbAuth {
    const EXPECTED: &'static str = "password or iam";
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "password" => Ok(Self::Password),
            "iam" => Ok(Self::Iam),
            other => Err(format!("expected {}, got {other:?}", Self::EXPECTED)),
        }
    }
}

/// Everything the pool needs. Variables and defaults are in the README's configuration table.
#[derive(Clone)]
pub struct DbConfig {
    /// Where and as whom to connect.
    pub pg: tokio_postgres::Config,
    /// `DB_AUTH` (default `password`).
    pub auth: DbAuth,
    /// `GCE_METADATA_HOST` (with `DB_AUTH=iam`): the metadata server to ask for tokens, as
    /// `host:port`; unset, GKE's.
    pub metadata_host: Option<String>,
    /// `DB_SSLMODE` (default `disable`).
    pub ssl_mode: SslMode,
    /// `DB_SSL_ROOT_CERT`: PEM file of the CA that signed the server certificate.
    pub ssl_root_cert: Option<String>,
    /// `DB_POOL_SIZE` (default 8): connections per instance.
    pub pool_size: usize,
    /// `DB_READS_PER_CONNECTION` (default 8): how many reads outside a transaction
    /// ([`crate::Db::read`]) may share one connection once none is free; 1: none share.
    pub reads_per_connection: usize,
    /// `DB_CONNECT_TIMEOUT` (default 3s): opening one connection.
    pub connect_timeout: Duration,
    /// `DB_WAIT_TIMEOUT` (default 2s): waiting for a free connection.
    pub wait_timeout: Duration,
    /// `DB_RETRY_AFTER` (default 2s): the `Retry-After` of a 503 when the database is unavailable.
    pub retry_after: Duration,
    /// `DB_STALL_TIMEOUT` (default `DB_STATEMENT_TIMEOUT` + 2s): a connection whose server owes
    /// an answer and sent nothing for this long is closed. `None`: never (the migrate job).
    pub stall_timeout: Option<Duration>,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of debug output.
        f.debug_struct("DbConfig")
            .field("hosts", &self.pg.get_hosts())
            .field("dbname", &self.pg.get_dbname())
            .field("user", &self.pg.get_user())
            .field("auth", &self.auth)
            .field("ssl_mode", &self.ssl_mode)
            .field("pool_size", &self.pool_size)
            .field("reads_per_connection", &self.reads_per_connection)
            .finish()
    }
}

impl DbConfig {
    /// Reads `DATABASE_URL`, or `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER` and the secret
    /// `DB_PASSWORD` (`DB_PASSWORD_FILE`, `DB_PASSWORD_SECRET`), plus the pool settings.
    pub async fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let auth = env.or("DB_AUTH", DbAuth::Password)?;
        let password = match auth {
            DbAuth::Password => tern::secrets::resolve(env, "DB_PASSWORD").await?,
            DbAuth::Iam => {
                for var in ["DB_PASSWORD", "DB_PASSWORD_FILE", "DB_PASSWORD_SECRET"] {
                    if env.raw(var).is_some() {
                        return Err(ConfigError::new(
                            var,
                            "must not be set with DB_AUTH=iam: the password is the identity's access token",
                        ));
                    }
                }
                None
            }
        };
        let mut pg = match (env.raw("DATABASE_URL"), env.raw("DB_HOST")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "set either DATABASE_URL or DB_HOST/DB_NAME/DB_USER, not both",
                ));
            }
            (Some(url), None) => tokio_postgres::Config::from_str(url.trim()).map_err(|e| {
                ConfigError::new("DATABASE_URL", format!("not a valid PostgreSQL URL: {e}"))
            })?,
            (None, Some(host)) => {
                let mut pg = tokio_postgres::Config::new();
                pg.host(host.trim())
                    .port(env.or("DB_PORT", 5432u16)?)
                    .dbname(env.required::<String>("DB_NAME")?)
                    .user(env.required::<String>("DB_USER")?);
                pg
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "is required (or DB_HOST, DB_NAME and DB_USER) but not set",
                ));
            }
        };
        if let Some(p) = password {
            pg.password(p);
        }
        if pg.get_user().is_none() {
            return Err(ConfigError::new("DATABASE_URL", "names no user"));
        }
        if auth == DbAuth::Iam && pg.get_password().is_some() {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must carry no password with DB_AUTH=iam: the password is the identity's access token",
            ));
        }
        let connect_timeout = env.or("DB_CONNECT_TIMEOUT", Duration::from_secs(3))?;
        pg.connect_timeout(connect_timeout);
        pg.application_name(tern::platform::binary_name());
        let statement_timeout: Duration =
            env.or("DB_STATEMENT_TIMEOUT", Duration::from_secs(10))?;
        pg.options(format!(
            "-c statement_timeout={}",
            statement_timeout.as_millis()
        ));

        let ssl_mode = env.or("DB_SSLMODE", SslMode::Disable)?;
        let ssl_root_cert: Option<String> = env.optional("DB_SSL_ROOT_CERT")?;
        if ssl_mode == SslMode::VerifyCa && ssl_root_cert.is_none() {
            return Err(ConfigError::new(
                "DB_SSL_ROOT_CERT",
                "is required with DB_SSLMODE=verify-ca (the server CA certificate, PEM)",
            ));
        }
        // A token is a bearer credential: it crosses the network only inside TLS. Loopback and
        // Unix sockets (the Cloud SQL Auth Proxy, a local test) carry it in the clear.
        if auth == DbAuth::Iam && ssl_mode == SslMode::Disable && !local_only(&pg) {
            return Err(ConfigError::new(
                "DB_SSLMODE",
                "must be verify-ca or verify-full with DB_AUTH=iam to a host that is not on loopback",
            ));
        }
        let pool_size: usize = env.or("DB_POOL_SIZE", 8)?;
        if pool_size == 0 {
            return Err(ConfigError::new("DB_POOL_SIZE", "must be at least 1"));
        }
        let reads_per_connection: usize = env.or("DB_READS_PER_CONNECTION", 8)?;
        if !(1..=1024).contains(&reads_per_connection) {
            return Err(ConfigError::new(
                "DB_READS_PER_CONNECTION",
                format!("must be from 1 (no sharing) to 1024, got {reads_per_connection}"),
            ));
        }
        // With no statement timeout, a query may legitimately run for ever: no default stall.
        let stall_default = if statement_timeout.is_zero() {
            Duration::ZERO
        } else {
            statement_timeout + Duration::from_secs(2)
        };
        let stall_timeout: Duration = env.or("DB_STALL_TIMEOUT", stall_default)?;
        if !statement_timeout.is_zero()
            && !stall_timeout.is_zero()
            && stall_timeout <= statement_timeout
        {
            return Err(ConfigError::new(
                "DB_STALL_TIMEOUT",
                format!(
                    "{stall_timeout:?} would cut queries the server is still running; make it longer than DB_STATEMENT_TIMEOUT ({statement_timeout:?})"
                ),
            ));
        }
        Ok(Self {
            pg,
            auth,
            metadata_host: env.optional("GCE_METADATA_HOST")?,
            ssl_mode,
            ssl_root_cert,
            pool_size,
            reads_per_connection,
            connect_timeout,
            wait_timeout: env.or("DB_WAIT_TIMEOUT", Duration::from_secs(2))?,
            retry_after: env.or("DB_RETRY_AFTER", Duration::from_secs(2))?,
            stall_timeout: (!stall_timeout.is_zero()).then_some(stall_timeout),
        })
    }
}

/// Whether every host is a Unix socket or a loopback address.
fn local_only(pg: &tokio_postgres::Config) -> bool {
    use tokio_postgres::config::Host;
    pg.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn iam_auth_takes_no_password_and_needs_tls_off_loopback() {
        let c = cfg(&[
            ("DB_AUTH", "iam"),
            ("DATABASE_URL", "postgres://fn-web%40p.iam@127.0.0.1/tern"),
        ])
        .await
        .unwrap();
        assert_eq!(c.auth, DbAuth::Iam);
        assert_eq!(c.pg.get_user(), Some("fn-web@p.iam"));
        assert_eq!(c.pg.get_password(), None);
        let remote = [
            ("DB_AUTH", "iam"),
            ("DB_HOST", "10.30.32.3"),
            ("DB_NAME", "tern"),
            ("DB_USER", "fn-web@p.iam"),
        ];
        assert_eq!(cfg(&remote).await.unwrap_err().var, "DB_SSLMODE");
        let mut tls = remote.to_vec();
        tls.extend([("DB_SSLMODE", "verify-full")]);
        assert!(cfg(&tls).await.is_ok());
        for var in ["DB_PASSWORD", "DB_PASSWORD_FILE", "DB_PASSWORD_SECRET"] {
            let mut with = tls.clone();
            with.push((var, "x"));
            let err = cfg(&with).await.unwrap_err();
            assert_eq!(err.var, var);
        }
        let err = cfg(&[
            ("DB_AUTH", "iam"),
            ("DATABASE_URL", "postgres://u:pw@127.0.0.1/d"),
        ])
        .await
        .unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert_eq!(
            cfg(&[
                ("DB_AUTH", "kerberos"),
                ("DATABASE_URL", "postgres://u@h/d")
            ])
            .await
            .unwrap_err()
            .var,
            "DB_AUTH"
        );
    }

    async fn cfg(pairs: &[(&str, &str)]) -> Result<DbConfig, ConfigError> {
        DbConfig::from_env(&Env::from_pairs(pairs.iter().copied())).await
    }

    #[tokio::test]
    async fn url_or_discrete_settings() {
        let c = cfg(&[("DATABASE_URL", "postgres://app:pw@127.0.0.1:5433/orders")])
            .await
            .unwrap();
        assert_eq!(c.pg.get_dbname(), Some("orders"));
        assert_eq!(c.pool_size, 8);
        assert_eq!(c.reads_per_connection, 8);
        let c = cfg(&[
            ("DB_HOST", "10.0.0.3"),
            ("DB_NAME", "orders"),
            ("DB_USER", "app"),
            ("DB_PASSWORD", "pw"),
        ])
        .await
        .unwrap();
        assert_eq!(c.pg.get_ports(), &[5432]);
        assert_eq!(c.pg.get_password(), Some(&b"pw"[..]));
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[tokio::test]
    async fn bad_settings_name_their_variable() {
        assert_eq!(cfg(&[]).await.unwrap_err().var, "DATABASE_URL");
        assert_eq!(
            cfg(&[("DATABASE_URL", "mysql://x")]).await.unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            cfg(&[("DB_HOST", "h"), ("DB_USER", "u")])
                .await
                .unwrap_err()
                .var,
            "DB_NAME"
        );
        let url = ("DATABASE_URL", "postgres://u@h/d");
        assert_eq!(
            cfg(&[url, ("DB_POOL_SIZE", "0")]).await.unwrap_err().var,
            "DB_POOL_SIZE"
        );
        for bad in ["0", "1025", "many"] {
            assert_eq!(
                cfg(&[url, ("DB_READS_PER_CONNECTION", bad)])
                    .await
                    .unwrap_err()
                    .var,
                "DB_READS_PER_CONNECTION"
            );
        }
        assert_eq!(
            cfg(&[url, ("DB_SSLMODE", "prefer")]).await.unwrap_err().var,
            "DB_SSLMODE"
        );
        assert_eq!(
            cfg(&[url, ("DB_SSLMODE", "verify-ca")])
                .await
                .unwrap_err()
                .var,
            "DB_SSL_ROOT_CERT"
        );
        assert_eq!(
            cfg(&[url, ("DB_WAIT_TIMEOUT", "2")]).await.unwrap_err().var,
            "DB_WAIT_TIMEOUT"
        );
        assert_eq!(
            cfg(&[url, ("DB_STALL_TIMEOUT", "5s")])
                .await
                .unwrap_err()
                .var,
            "DB_STALL_TIMEOUT",
            "shorter than the statement timeout (10 s)"
        );
    }

    #[tokio::test]
    async fn the_stall_timeout_follows_the_statement_timeout() {
        let url = ("DATABASE_URL", "postgres://u@h/d");
        let stall = async |pairs: &[(&str, &str)]| cfg(pairs).await.unwrap().stall_timeout;
        assert_eq!(stall(&[url]).await, Some(Duration::from_secs(12)));
        assert_eq!(
            stall(&[url, ("DB_STATEMENT_TIMEOUT", "2s")]).await,
            Some(Duration::from_secs(4))
        );
        assert_eq!(stall(&[url, ("DB_STATEMENT_TIMEOUT", "0s")]).await, None);
        assert_eq!(stall(&[url, ("DB_STALL_TIMEOUT", "0s")]).await, None);
        assert_eq!(
            stall(&[url, ("DB_STALL_TIMEOUT", "30s")]).await,
            Some(Duration::from_secs(30))
        );
    }
}
