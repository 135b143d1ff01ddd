//! The end-to-end harness: real PostgreSQL, the real Pub/Sub emulator, the real function
//! binaries, each test isolated in its own database and its own Pub/Sub project.
//!
//! One PostgreSQL cluster and one emulator serve every test of a test binary; tests that stop
//! them start their own ([`Postgres::start`], [`Emulator::start`]).

pub mod clusters;
pub mod oidc;

use google_cloud_pubsub::model::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tern_events::{EventPublisher, OutgoingEvent, PubSubConfig};
pub use tern_local::{
    Emulator, FunctionEnv, FunctionProcess, Instance, Launcher, LogFormat, Output, Postgres, World,
    free_port,
};
use tern_routes::RouteTable;

/// The API key the harness configures for `orders-list`.
pub const API_KEY: &str = "test-api-key";

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// Where the workspace binaries are (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// The route table.
pub fn table() -> RouteTable {
    RouteTable::load(&root().join("routes.toml")).expect("routes.toml")
}

/// An environment's file, `knative/environments/<env>.yaml`: `environment`, the `revision` it
/// runs (dev: `main`; staging and prod: a promoted commit) and its `images`.
pub fn release_of(environment: &str) -> serde_json::Value {
    let path = root().join(format!("knative/environments/{environment}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A scratch directory under `target/tmp`, emptied first. Directories of the same name left by
/// test processes that have ended are removed (a PostgreSQL cluster is 40 to 100 MB).
pub fn scratch(name: &str) -> PathBuf {
    let tmp = bin_dir().join("../tmp");
    remove_stale(&tmp, name);
    let dir = tmp.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.canonicalize().expect("scratch dir path")
}

fn remove_stale(tmp: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(name))
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts something on a thread that lives as long as the process, so `PR_SET_PDEATHSIG`
/// (tied to the spawning thread) fires only when the test process ends.
fn on_keeper_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("keeper thread")
}

/// The PostgreSQL cluster and emulator every test of a test binary shares: a world whose
/// database, `tern_template`, is migrated once and copied for each test ([`fresh_database`]).
fn shared() -> &'static World {
    static SHARED: OnceLock<World> = OnceLock::new();
    SHARED.get_or_init(|| {
        on_keeper_thread(|| {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(World::start(tern_local::WorldOptions {
                root: root(),
                bin_dir: bin_dir(),
                database: tern_local::Database::Throwaway {
                    dir: scratch("pg"),
                    port: 0,
                    name: "tern_template".into(),
                },
                pubsub: tern_local::PubSub::Start { port: 0 },
                project: "tern-template".into(),
                output: Output::Quiet,
            }))
            .expect("start PostgreSQL and the emulator, migrate the template")
        })
    })
}

/// How the tests start HTTP functions: as Knative pods behind queue-proxy (as root, which CI
/// is), or as plain processes where pods cannot be made (said once on stderr).
pub fn launcher() -> &'static Launcher {
    static LAUNCHER: OnceLock<Launcher> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let l = Launcher::detect(&root(), bin_dir(), Output::Quiet)
            .expect("pods need scripts/tools (queue-proxy) and iproute2");
        if let Some(why) = &l.why_direct {
            eprintln!("warning: {why}");
        }
        l
    })
}

/// The environment every test's functions get, on `database_url` and `pubsub`: JSON logs,
/// the test API key, short database timeouts (the resilience tests stop the database).
pub fn test_env(database_url: &str, pubsub: PubSubConfig) -> FunctionEnv {
    FunctionEnv::new(database_url)
        .pubsub(pubsub)
        .log_format(LogFormat::Json)
        .api_key(API_KEY)
        .set("DB_WAIT_TIMEOUT", "1s")
        .set("DB_CONNECT_TIMEOUT", "1s")
        .set("DB_RETRY_AFTER", "1s")
}

/// A Pub/Sub project of the test's own on the emulator at `host`.
pub fn test_pubsub(host: &str) -> PubSubConfig {
    PubSubConfig::emulator(host, format!("test-{}", uuid::Uuid::new_v4().simple()))
        .with_publish_timeout(Duration::from_secs(2))
}

/// A PostgreSQL cluster of the test's own (for tests that stop it), with the migrated template
/// that [`fresh_database`] copies.
pub async fn own_postgres(name: &str) -> Postgres {
    let pg = Postgres::start(&scratch(name), 0).expect("start PostgreSQL");
    migrated_template(&pg).await;
    pg
}

/// Creates and migrates `tern_template` on `pg`.
pub async fn migrated_template(pg: &Postgres) {
    tern_local::ensure_database(&pg.url("postgres"), "tern_template")
        .await
        .expect("template db");
    let env = FunctionEnv::new(pg.url("tern_template")).set("TERN_LOG", "warn");
    tern_local::run_job(&bin_dir(), "migrate", &env, Output::Quiet).expect("migrate the template");
}

/// An emulator of the test's own (for tests that stop it).
pub fn own_emulator() -> Emulator {
    Emulator::start(&root().join(".local/bin/pubsub-emulator"), 0).expect("start the emulator")
}

/// A fresh, migrated database on `pg`; returns its URL.
pub async fn fresh_database(pg: &Postgres) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let name = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(conn);
    let sql = format!("CREATE DATABASE {name} TEMPLATE tern_template");
    let _guard = LOCK.lock().await;
    client
        .batch_execute(&sql)
        .await
        .expect("create test database");
    drop(client);
    let _ = task.await;
    pg.url(&name)
}

/// One test's world: its own database and Pub/Sub project, the functions it started, and a
/// router in front of them that does what the cluster's Gateway does ([`tern_local::Router`]).
/// Requests take the production path: router → queue-proxy (h2c) → function.
pub struct System {
    pub database_url: String,
    pub pubsub: PubSubConfig,
    /// The HTTP functions started with [`System::start`], by key.
    pub functions: HashMap<String, Instance>,
    /// Functions started as bare processes ([`System::start_process`]), by name.
    pub processes: HashMap<String, FunctionProcess>,
    /// `http://127.0.0.1:PORT`: the router.
    pub router: String,
    upstreams: tern_local::Upstreams,
    stop_router: Option<tokio::sync::oneshot::Sender<()>>,
    /// The environment the functions of this world get; add settings with `FunctionEnv::set`.
    pub env: FunctionEnv,
    pub http: reqwest::Client,
}

impl System {
    /// A new world on the shared PostgreSQL and emulator, with the route table's topology.
    pub async fn new() -> Self {
        let s = shared();
        let host = s.pubsub().emulator_host.clone().expect("emulator");
        Self::on(s.postgres().expect("shared PostgreSQL"), &host).await
    }

    /// A new world on the given PostgreSQL and emulator.
    pub async fn on(pg: &Postgres, emulator_addr: &str) -> Self {
        let database_url = fresh_database(pg).await;
        let pubsub = test_pubsub(emulator_addr);
        tern_local::create_topology(&pubsub, &table())
            .await
            .expect("topics and subscriptions");
        Self::at(database_url, pubsub).await
    }

    /// The standby region of `primary`'s world: the same database, on `replica` (a streaming
    /// replica of `primary`'s PostgreSQL), the same Pub/Sub project (Pub/Sub is global), and a
    /// router of its own (the region's Gateway).
    pub async fn standby_of(primary: &System, replica: &Postgres) -> Self {
        let name = primary
            .database_url
            .rsplit('/')
            .next()
            .expect("a database name");
        Self::at(replica.url(name), primary.pubsub.clone()).await
    }

    /// A world on `database_url` and `pubsub` as they are, with a router of its own.
    pub async fn at(database_url: String, pubsub: PubSubConfig) -> Self {
        let table = table();
        let listener = tern::platform::bind(([127, 0, 0, 1], 0).into())
            .await
            .expect("router port");
        let port = listener.local_addr().expect("router address").port();
        let upstreams = tern_local::Upstreams::default();
        let (stop_router, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = tern_local::Router::new(&table, upstreams.clone());
        tokio::spawn(router.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            env: test_env(&database_url, pubsub.clone())
                .public_origins(tern_local::local_origins(port)),
            database_url,
            pubsub,
            functions: HashMap::new(),
            processes: HashMap::new(),
            router: format!("http://127.0.0.1:{port}"),
            upstreams,
            stop_router: Some(stop_router),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    /// Adds (or replaces) a setting for the functions started after this.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.env = self.env.clone().set(name, value);
    }

    /// Starts `name` as the cluster runs it and waits until it is ready; returns the router's
    /// base URL, through which its routes reach it.
    pub fn start(&mut self, name: &str) -> String {
        self.start_as(name, name)
    }

    /// Starts another pod of `binary`, known as `key`; the router sends `binary`'s requests to
    /// its pods in turn, as a Kubernetes Service does. Returns the router's base URL.
    pub fn start_as(&mut self, key: &str, binary: &str) -> String {
        self.start_with(key, binary, launcher())
    }

    /// [`System::start`], keeping what the function prints for [`Instance::output_lines`]
    /// (`sys.functions[name]`).
    pub fn start_keeping_output(&mut self, name: &str) -> String {
        let keeping = Launcher {
            output: Output::Kept,
            ..launcher().clone()
        };
        self.start_with(name, name, &keeping)
    }

    fn start_with(&mut self, key: &str, binary: &str, launcher: &Launcher) -> String {
        let table = table();
        let function = table
            .function(binary)
            .expect("a function of the route table");
        let instance = launcher
            .start(function, &self.env)
            .unwrap_or_else(|e| panic!("start {key}: {e}"));
        self.upstreams
            .write()
            .expect("upstreams")
            .entry(binary.to_owned())
            .or_default()
            .push(instance.addr());
        self.functions.insert(key.to_owned(), instance);
        self.router.clone()
    }

    /// Starts `name` as a bare process on a loopback port, without queue-proxy or router: for
    /// tests of the runtime's own server. Returns its base URL.
    pub fn start_process(&mut self, name: &str) -> String {
        let table = table();
        let function = table.function(name).expect("a function of the route table");
        let env = self
            .env
            .clone()
            .defaults(launcher().chart.function_env(function));
        let mut p = FunctionProcess::spawn(&bin_dir(), function, free_port(), &env, Output::Quiet)
            .expect("spawn");
        p.wait_for(tern::platform::READY_PATH, 200, Duration::from_secs(20))
            .expect("ready");
        let url = p.url();
        self.processes.insert(name.to_owned(), p);
        url
    }

    /// Hands `key` over, still running and still in the router's endpoints (to be terminated,
    /// and taken out of them with [`System::unroute`]).
    pub fn take(&mut self, key: &str) -> Instance {
        self.functions.remove(key).expect("a started function")
    }

    /// Takes the pod at `addr` out of the router's endpoints, as Kubernetes does to a pod being
    /// deleted (at about the time the kubelet sends SIGTERM, not before).
    pub fn unroute(&self, addr: &str) {
        for pods in self.upstreams.write().expect("upstreams").values_mut() {
            pods.retain(|a| a != addr);
        }
    }

    /// The base URL of `key`'s pod itself (its queue-proxy), for the paths the Gateway does not
    /// route, such as the runtime's `/_tern/ready`.
    pub fn pod_url(&self, key: &str) -> String {
        self.functions[key].url()
    }

    /// The router's address (the region's Gateway).
    pub fn gateway(&self) -> std::net::SocketAddr {
        self.router
            .trim_start_matches("http://")
            .parse()
            .expect("the router's address")
    }

    /// The base URL a started function is reached at: the router's.
    pub fn url(&self, name: &str) -> String {
        assert!(self.functions.contains_key(name), "{name} was not started");
        self.router.clone()
    }

    /// A database connection for assertions.
    pub async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }

    /// `SELECT count(*) FROM <table>`.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        self.sql()
            .await
            .query_one(&sql, &[])
            .await
            .expect("count")
            .get(0)
    }

    /// Outbox rows not yet published.
    pub async fn pending_outbox(&self) -> i64 {
        self.sql()
            .await
            .query_one(
                "SELECT count(*) FROM tern_outbox WHERE published_at IS NULL",
                &[],
            )
            .await
            .expect("count pending outbox rows")
            .get(0)
    }

    /// `GET {base}/api/orders/{id}` as JSON (`null` when the call or the body fails).
    pub async fn order(&self, base: &str, id: &str) -> serde_json::Value {
        let res = self
            .http
            .get(format!("{base}/api/orders/{id}"))
            .send()
            .await;
        match res {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// Waits until orders-get at `base` reports order `id` paid; returns the order.
    pub async fn until_paid(&self, base: &str, id: &str, limit: Duration) -> serde_json::Value {
        eventually("the order becoming paid", limit, || async {
            let order = self.order(base, id).await;
            (order["status"] == "paid").then_some(order)
        })
        .await
    }

    /// Creates subscription `name` on `topic` in this world's project.
    pub async fn subscribe(&self, name: &str, topic: &str) {
        let admin = tern_local::Admin::new(&self.pubsub).await.expect("admin");
        admin.subscription(name, topic).await.expect("subscription");
    }

    /// A plain Pub/Sub publisher on `topic`, as a producer that is not Tern has (`gcloud pubsub
    /// topics publish`, a storage notification): bytes and attributes, no CloudEvent.
    pub async fn plain_publisher(&self, topic: &str) -> google_cloud_pubsub::client::Publisher {
        google_cloud_pubsub::client::BasePublisher::builder()
            .with_endpoint(self.pubsub.endpoint().expect("the emulator"))
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .expect("a publisher")
            .publisher(self.pubsub.topic_path(topic))
            .build()
    }

    /// Pulls from `subscription` until `want` messages arrived or `quiet` passed with none.
    pub async fn collect(&self, subscription: &str, want: usize, quiet: Duration) -> Vec<Message> {
        let sub = tern_local::subscriber(&self.pubsub)
            .await
            .expect("subscriber");
        let mut stream = tern_local::pull(&sub, &self.pubsub.subscription_path(subscription));
        let mut out = Vec::new();
        while out.len() < want {
            match tokio::time::timeout(quiet, stream.next()).await {
                Ok(Some(Ok((m, h)))) => {
                    h.ack();
                    out.push(m);
                }
                Ok(Some(Err(_))) => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(None) | Err(_) => break,
            }
        }
        out
    }

    /// Places an order through the web form of `web` (the router's base URL) as a browser does:
    /// the home page's cookie and CSRF token, the site's own Origin; with `traceparent`, inside
    /// that trace. Returns the new order's id.
    pub async fn web_order(&self, web: &str, traceparent: Option<&str>) -> String {
        let home = self
            .http
            .get(format!("{web}/"))
            .send()
            .await
            .expect("GET /");
        let cookie = home.headers()["set-cookie"]
            .to_str()
            .expect("a cookie")
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        let html = home.text().await.expect("the home page");
        let token = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a CSRF token in the form")
            .to_owned();
        let mut post = self
            .http
            .post(format!("{web}/orders"))
            .header("cookie", &cookie)
            .header("origin", &self.router)
            .form(&[
                ("csrf", token.as_str()),
                ("customer_email", "ada@example.com"),
                ("currency", "EUR"),
                ("sku_0", "TEA-SENCHA"),
                ("quantity_0", "1"),
                ("price_0", "12.50"),
            ]);
        if let Some(tp) = traceparent {
            post = post.header("traceparent", tp);
        }
        let res = post.send().await.expect("POST /orders");
        assert_eq!(res.status(), 303, "the form was refused");
        res.headers()["location"]
            .to_str()
            .expect("a Location")
            .trim_start_matches("/orders/")
            .to_owned()
    }

    /// Runs the local delivery loop of the `payments` subscription to the consumer at
    /// `consumer` (the router's base URL), the way Pub/Sub push (or Eventarc) delivers it;
    /// cancel the token to stop it.
    pub async fn deliver_payments(
        &self,
        consumer: &str,
        mode: tern_local::Mode,
        max_attempts: u32,
    ) -> tern_local::StopToken {
        let stop = tern_local::StopToken::default();
        let target = tern_local::Target {
            subscription: "payments-events-payments".into(),
            topic: "payments".into(),
            url: format!("{consumer}/events/payments"),
        };
        let dlq = EventPublisher::new(self.pubsub.clone())
            .await
            .expect("a publisher for the dead letters");
        let policy = tern_local::Policy {
            max_attempts,
            ..tern_local::Policy::new(mode)
        };
        tokio::spawn(tern_local::deliver(
            policy,
            self.pubsub.clone(),
            target,
            dlq,
            stop.clone(),
        ));
        stop
    }

    /// POSTs a new order (JSON API) and returns the response.
    pub async fn create_order(&self, base: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{base}/api/orders"))
            .json(body)
            .send()
            .await
            .expect("POST /api/orders")
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_router.take() {
            let _ = stop.send(());
        }
    }
}

/// GETs `url` and reads its JSON body; `None` when it does not answer or answers no JSON (for
/// [`eventually`] loops that wait for a server's view to change).
pub async fn fetch_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Polls `check` every 100 ms until it returns `Some`; panics naming `what` after `limit`.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes a completed payment of 1250 EUR-cents for `order_id` on the `payments` topic of
/// `pubsub`'s project, as the payment provider does; returns the event.
pub async fn publish_payment(
    pubsub: &PubSubConfig,
    event_id: &str,
    order_id: &str,
) -> OutgoingEvent {
    publish_payment_in_trace(pubsub, event_id, order_id, None).await
}

/// [`publish_payment`] by a provider that propagates trace context: the payment continues
/// `traceparent` (the trace of the `order.created` it answers).
pub async fn publish_payment_in_trace(
    pubsub: &PubSubConfig,
    event_id: &str,
    order_id: &str,
    traceparent: Option<String>,
) -> OutgoingEvent {
    let event = OutgoingEvent {
        id: event_id.to_owned(),
        source: "//payments-provider".into(),
        ty: "com.example.payment.completed".into(),
        subject: Some(order_id.to_owned()),
        time: chrono::Utc::now(),
        data: payment(order_id, 1250, "EUR"),
        traceparent,
    };
    EventPublisher::new(pubsub.clone())
        .await
        .expect("publisher")
        .publish("payments", &event)
        .await
        .expect("publish the payment");
    event
}

/// A valid order body with total 1250 EUR-cents.
pub fn order_body() -> serde_json::Value {
    serde_json::json!({
        "customer_email": "ada@example.com",
        "currency": "EUR",
        "items": [{"sku": "TEA-SENCHA", "quantity": 2, "unit_price_cents": 625}]
    })
}

/// The data of a payment event for `order_id`.
pub fn payment(order_id: &str, amount: i64, currency: &str) -> serde_json::Value {
    serde_json::json!({"order_id": order_id, "payment_id": format!("pay_{}", uuid::Uuid::new_v4().simple()), "amount_cents": amount, "currency": currency})
}

/// Builds a Pub/Sub push request body carrying a CloudEvent (Pub/Sub binding attributes).
pub fn push_body(event_id: &str, ty: &str, data: &serde_json::Value) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(data).unwrap_or_default()),
            "attributes": {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "//tests", "ce-type": ty, "content-type": "application/json"},
            "messageId": uuid::Uuid::new_v4().simple().to_string(),
            "publishTime": chrono::Utc::now().to_rfc3339()
        },
        "subscription": "projects/test/subscriptions/payments-events-payments"
    })
}

/// Reads an attribute of a message.
pub fn attr(m: &Message, k: &str) -> String {
    m.attributes.get(k).cloned().unwrap_or_default()
}
