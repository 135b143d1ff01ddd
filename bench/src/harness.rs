//! What every measurement and drill shares: a local world (PostgreSQL, the emulator, the
//! migrated bench database) from `tern-local`, the functions started on it, our baselines as
//! processes, and seeding.

use crate::wrk::{self, WrkResult};
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tern_events::PubSubConfig;
use tern_local::{FunctionEnv, FunctionProcess, Instance, LogFormat, Postgres, World, free_port};

/// Connections from the load generator; database connections per server.
pub const HTTP_CONNECTIONS: u32 = 32;
/// Pool size for Tern, connections for baseline (b) and pgbench.
pub const DB_CONNECTIONS: usize = 8;

/// Everything a measurement needs.
pub struct Bench {
    pub quick: bool,
    pub reps: usize,
    pub dur: Duration,
    pub scratch: PathBuf,
    pub world: World,
    pub order_id: String,
}

impl Bench {
    /// The environment of a function under test: the world's, with JSON logs (to /dev/null), the
    /// bench's pool size, and `extra` on top.
    pub fn env(&self, extra: &[(&str, &str)]) -> FunctionEnv {
        let mut env = self
            .world
            .env
            .clone()
            .log_format(LogFormat::Json)
            .api_key("bench")
            .set("DB_POOL_SIZE", DB_CONNECTIONS.to_string());
        for (k, v) in extra {
            env = env.set(*k, *v);
        }
        env
    }

    /// Starts a function (release build) and waits until it is ready.
    pub fn start(&self, name: &str, extra: &[(&str, &str)]) -> Result<FunctionProcess, String> {
        self.world.start_function_with(name, &self.env(extra))
    }

    /// Starts a function as a Knative pod (queue-proxy in front, its own network namespace) and
    /// waits until queue-proxy reports it ready. Needs root.
    pub fn start_pod(&self, name: &str, extra: &[(&str, &str)]) -> Result<Instance, String> {
        if let Some(why) = &self.world.launcher.why_direct {
            return Err(format!("the queue-proxy measurements need pods: {why}"));
        }
        self.world.start_instance(name, &self.env(extra))
    }

    /// The bench's PostgreSQL cluster.
    pub fn pg(&self) -> Result<&Postgres, String> {
        self.world
            .postgres()
            .ok_or_else(|| "the bench world has no PostgreSQL of its own".to_owned())
    }

    /// The bench database's URL.
    pub fn db_url(&self) -> &str {
        self.world.env.database_url()
    }

    /// The bench's Pub/Sub project.
    pub fn pubsub(&self) -> &PubSubConfig {
        self.world.pubsub()
    }

    /// Starts one of our baselines as its own process and waits until it accepts connections.
    pub fn baseline(&self, args: &[&str]) -> Result<(Child, u16), String> {
        let (child, port) = spawn_baseline(args)?;
        tern_local::wait_for_port(&format!("127.0.0.1:{port}"), Duration::from_secs(10))?;
        Ok((child, port))
    }

    /// A connection for set-up and checks.
    pub async fn sql(&self) -> Result<tokio_postgres::Client, String> {
        let (c, conn) = tokio_postgres::connect(self.db_url(), tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(c)
    }

    /// Inserts `n` pending orders of 1250 EUR-cents and returns their ids.
    pub async fn seed_orders(&self, n: i64) -> Result<Vec<String>, String> {
        let db = self.sql().await?;
        let rows = db
            .query(
                "WITH o AS (
                   INSERT INTO orders (id, customer_email, currency, total_cents)
                   SELECT 'ord_' || translate(substr(md5(random()::text || g), 1, 26), '0189', 'wxyz'), 'bench@example.com', 'EUR', 1250
                   FROM generate_series(1, $1::bigint) g RETURNING id)
                 INSERT INTO order_items (order_id, line, sku, quantity, unit_price_cents)
                 SELECT id, 0, 'TEA', 2, 625 FROM o RETURNING order_id",
                &[&n],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Starts one of our baselines (this binary with `args`) on a free port; does not wait.
pub fn spawn_baseline(args: &[&str]) -> Result<(Child, u16), String> {
    let port = free_port();
    let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    cmd.args(args)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    tern_local::die_with_parent(&mut cmd, libc::SIGTERM);
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    Ok((child, port))
}

/// Stops a baseline.
pub fn stop(mut c: Child) {
    tern_local::signal(&c, libc::SIGTERM);
    let _ = c.wait();
}

/// A progress line.
pub fn say(what: &str) {
    eprintln!("[{}] {what}", chrono::Utc::now().format("%H:%M:%S"));
}

/// One `SELECT count(*) …` answer.
pub async fn count(db: &tokio_postgres::Client, sql: &str) -> Result<i64, String> {
    db.query_one(sql, &[])
        .await
        .map(|row| row.get(0))
        .map_err(|e| e.to_string())
}

/// Runs `wrk` on `url` while sampling the memory of `pid` and its children every 100 ms: the
/// result and the peak resident set, MiB.
pub async fn load_with_rss(
    url: &str,
    connections: u32,
    dur: Duration,
    script: Option<&Path>,
    pid: u32,
) -> Result<(WrkResult, f64), String> {
    let (url, script) = (url.to_owned(), script.map(Path::to_path_buf));
    let load =
        tokio::task::spawn_blocking(move || wrk::run(&url, connections, dur, script.as_deref()));
    let mut peak: f64 = 0.0;
    while !load.is_finished() {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = load.await.map_err(|e| e.to_string())??;
    Ok((result, peak))
}

/// CPU time (user + system) used so far by `pid` and every process below it, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    // `/proc/PID/stat` counts in USER_HZ, which the kernel's ABI fixes at 100.
    const USER_HZ: f64 = 100.0;
    if pid == 0 {
        return 0.0; // a process already stopped: not the whole machine's tree
    }
    tern_local::process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum::<u64>() as f64
        / USER_HZ
}

/// `wrk` on `url` and the CPU that `pid` (and its children) spent per request meanwhile, µs.
pub fn load_with_cpu(url: &str, dur: Duration, pid: u32) -> Result<(WrkResult, f64), String> {
    let before = cpu_seconds(pid);
    let w = wrk::run(url, HTTP_CONNECTIONS, dur, None)?;
    let spent = cpu_seconds(pid) - before;
    Ok((w, spent * 1e6 / w.requests.max(1) as f64))
}

/// Resident set size of `pid` and every process below it (a server's workers), MiB.
pub fn rss_mib(pid: u32) -> f64 {
    tern_local::process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1024.0
}
