//! IAM database authentication (issue 16, point 6): with `DB_AUTH=iam` a function connects as its
//! own identity and sends the metadata server's access token as the password, so no database
//! password exists anywhere. Here against a local PostgreSQL that takes the token as the role's
//! password (scram-sha-256 for members of `cloudsqliamserviceaccount`, as Cloud SQL's IAM
//! service-account users are), with a metadata server of the test's own on loopback speaking
//! the metadata server's token protocol (GKE's cannot run here), reached through
//! `GCE_METADATA_HOST` as Google's auth library reads it. The migrate job logs in the same way,
//! after the one grant infra/README.md has an operator make, and owns the tables; the functions
//! run as pods behind queue-proxy with the privileges its migration grants them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tern_e2e::*;
use tern_local::{FunctionEnv, Output, Postgres};
use tokio::sync::RwLock;

/// A metadata server's token endpoint: the token it hands out, for how long, and how often it
/// was asked.
#[derive(Clone, Default)]
struct Metadata {
    token: Arc<RwLock<(String, u64)>>,
    fetches: Arc<AtomicUsize>,
    /// Requests that came without `Metadata-Flavor: Google` (the real one refuses them).
    flavourless: Arc<AtomicUsize>,
}

impl Metadata {
    fn new(token: &str, expires_in: u64) -> Self {
        let m = Self::default();
        *m.token.try_write().unwrap() = (token.to_owned(), expires_in);
        m
    }

    /// Serves on loopback; returns `host:port` for `GCE_METADATA_HOST`.
    async fn serve(&self) -> String {
        async fn token(State(m): State<Metadata>, headers: HeaderMap) -> Response {
            if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                m.flavourless.fetch_add(1, Ordering::SeqCst);
                return (StatusCode::FORBIDDEN, "Metadata-Flavor: Google required").into_response();
            }
            m.fetches.fetch_add(1, Ordering::SeqCst);
            let (token, expires_in) = m.token.read().await.clone();
            axum::Json(serde_json::json!({
                "access_token": token,
                "expires_in": expires_in,
                "token_type": "Bearer",
            }))
            .into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(token),
            )
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    async fn set(&self, token: &str, expires_in: u64) {
        *self.token.write().await = (token.to_owned(), expires_in);
    }
}

async fn admin(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Whether `user` may log in to `db` with `password` right now.
async fn logs_in(pg: &Postgres, db: &str, user: &str, password: &str) -> bool {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(pg.port)
        .dbname(db)
        .user(user)
        .password(password);
    cfg.connect(tokio_postgres::NoTls).await.is_ok()
}

/// `GET /api/orders/{id}` through the router, with the test API key.
async fn get_order(
    http: &reqwest::Client,
    base: &str,
    id: &str,
) -> reqwest::Result<reqwest::Response> {
    http.get(format!("{base}/api/orders/{id}"))
        .header("x-api-key", API_KEY)
        .send()
        .await
}

/// The first column of every row `sql` returns, as text.
async fn column(db: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    db.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const GET_USER: &str = "fn-orders-get@tern-test.iam";
const CREATE_USER: &str = "fn-orders-create@tern-test.iam";
const MIGRATE_USER: &str = "fn-migrate@tern-test.iam";

#[tokio::test(flavor = "multi_thread")]
async fn functions_log_in_with_their_identity_token_and_take_the_next_before_it_expires() {
    let pg = Postgres::start(&scratch("pg-iam"), 0).unwrap();
    // The IAM users log in by password only (first matching line wins); postgres keeps trust.
    let hba = pg.dir.join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all +cloudsqliamserviceaccount 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    let db = admin(&pg).await;
    db.batch_execute(&format!(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE cloudsqliamserviceaccount NOLOGIN;
         CREATE ROLE \"{GET_USER}\" LOGIN PASSWORD 'get-token-1' IN ROLE cloudsqliamserviceaccount;
         CREATE ROLE \"{CREATE_USER}\" LOGIN PASSWORD 'create-token-1' IN ROLE cloudsqliamserviceaccount;
         CREATE ROLE \"{MIGRATE_USER}\" LOGIN PASSWORD 'migrate-token-1' IN ROLE cloudsqliamserviceaccount;
         SELECT pg_reload_conf();"
    ))
    .await
    .unwrap();
    tern_local::ensure_database(&pg.url("postgres"), "iam")
        .await
        .unwrap();
    let url_of = |user: &str| {
        format!(
            "postgres://{}@127.0.0.1:{}/iam",
            user.replace('@', "%40"),
            pg.port
        )
    };
    // The one grant an operator makes by hand, as infra/README.md says (step 4): the migrate
    // job's user may create in the schema. Then the migrate job runs as that IAM user, owns the
    // tables it creates and grants the functions' role (migration 0006).
    let (iam_db, conn) = tokio_postgres::connect(&pg.url("iam"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    iam_db
        .batch_execute(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO \"{MIGRATE_USER}\""
        ))
        .await
        .unwrap();
    let migrate_mds = Metadata::new("migrate-token-1", 3600);
    tern_local::run_job(
        &bin_dir(),
        "migrate",
        &FunctionEnv::new(url_of(MIGRATE_USER))
            .set("DB_AUTH", "iam")
            .set("GCE_METADATA_HOST", migrate_mds.serve().await)
            .set("TERN_LOG", "warn"),
        Output::Quiet,
    )
    .unwrap();
    let owners: Vec<String> = column(
        &iam_db,
        "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(
        owners,
        [MIGRATE_USER],
        "the migrate job's user owns every table"
    );
    assert!(migrate_mds.fetches.load(Ordering::SeqCst) >= 1);
    assert!(!logs_in(&pg, "iam", GET_USER, "a-wrong-token").await);
    assert!(logs_in(&pg, "iam", GET_USER, "get-token-1").await);

    let emulator = own_emulator();
    let pubsub = test_pubsub(&emulator.addr);
    tern_local::create_topology(&pubsub, &table())
        .await
        .unwrap();
    let url_of = |user: &str| {
        format!(
            "postgres://{}@127.0.0.1:{}/iam",
            user.replace('@', "%40"),
            pg.port
        )
    };
    let mut sys = System::at(url_of(GET_USER), pubsub).await;
    sys.set("DB_AUTH", "iam");
    // The first token has 250 s left: Google's library refreshes a token 240 s before it
    // expires, so it asks again 10 s from now, while this one is still good.
    let get_mds = Metadata::new("get-token-1", 250);
    sys.set("GCE_METADATA_HOST", get_mds.serve().await);
    let base = sys.start("orders-get");
    let create_mds = Metadata::new("create-token-1", 3600);
    sys.set("GCE_METADATA_HOST", create_mds.serve().await);
    sys.env = sys.env.clone().database(url_of(CREATE_USER));
    sys.start("orders-create");

    // Both serve through the database as their own users.
    let res = sys.create_order(&base, &order_body()).await;
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = get_order(&sys.http, &base, &id).await.unwrap();
    assert_eq!(res.status(), 200);
    let users: Vec<String> = column(
        &db,
        "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = 'iam'",
    )
    .await;
    assert!(
        users.contains(&GET_USER.to_owned()) && users.contains(&CREATE_USER.to_owned()),
        "{users:?}"
    );
    assert_eq!(get_mds.flavourless.load(Ordering::SeqCst), 0);

    // The next token: the role takes it, the old one stops working, and the library fetches it
    // before the old one expires (230 s before).
    let asked = get_mds.fetches.load(Ordering::SeqCst);
    get_mds.set("get-token-2", 3600).await;
    db.batch_execute(&format!("ALTER ROLE \"{GET_USER}\" PASSWORD 'get-token-2'"))
        .await
        .unwrap();
    assert!(!logs_in(&pg, "iam", GET_USER, "get-token-1").await);
    eventually(
        "the refresh ahead of expiry",
        Duration::from_secs(30),
        || async { (get_mds.fetches.load(Ordering::SeqCst) > asked).then_some(()) },
    )
    .await;
    // New connections take it: close the open ones (a connection stays open after its token
    // expires; PostgreSQL checks the password at connect only).
    let kill = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{GET_USER}'"
    );
    db.batch_execute(&kill).await.unwrap();
    eventually(
        "orders-get on a connection made with the new token",
        Duration::from_secs(20),
        || async {
            let res = get_order(&sys.http, &base, &id).await.ok()?;
            (res.status() == 200).then_some(())
        },
    )
    .await;

    // A token PostgreSQL no longer takes (the role's password moved on, as when an identity
    // loses its database user) costs a fast 503 with Retry-After, never a stuck request; the
    // next token it does take serves again. (A metadata server that hangs: tern-db's unit test.)
    db.batch_execute(&format!(
        "ALTER ROLE \"{GET_USER}\" PASSWORD 'get-token-3'; {kill}"
    ))
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let res = get_order(&sys.http, &base, &id).await.unwrap();
    assert_eq!(
        res.status(),
        503,
        "{}",
        res.text().await.unwrap_or_default()
    );
    assert!(res.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(15));
    db.batch_execute(&format!("ALTER ROLE \"{GET_USER}\" PASSWORD 'get-token-2'"))
        .await
        .unwrap();
    eventually("orders-get again", Duration::from_secs(20), || async {
        let res = get_order(&sys.http, &base, &id).await.ok()?;
        (res.status() == 200).then_some(())
    })
    .await;
    drop(sys);
}
