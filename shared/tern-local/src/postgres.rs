//! PostgreSQL for a local run: a throwaway cluster on loopback, and its databases. (A world
//! that uses `DATABASE_URL` instead starts none; the `migrate` job is run by `process::run_job`.)

use crate::process::{die_with_parent, free_port, kill_tree, signal, signal_tree};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds PostgreSQL's server binaries: `PG_BIN`, `pg_config --bindir`, or Debian's layout.
pub fn postgres_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().ok_or_else(|| {
        "PostgreSQL server binaries not found: install them (apt-get install -y postgresql) or set DATABASE_URL".to_owned()
    })
}

/// How a cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// No fsync, asynchronous commit, no full-page writes: for tests and `tern dev`, where the
    /// data is thrown away. A commit may be acknowledged before its WAL is written, so a killed
    /// server can lose the last few hundred milliseconds of acknowledged commits.
    #[default]
    Fast,
    /// PostgreSQL's defaults, as Cloud SQL runs: a commit is acknowledged once its WAL is
    /// flushed, which is also when a streaming replica can be sent it. The failover drill runs
    /// its primary so, so that what it counts as lost is what replication lost.
    Durable,
}

/// A throwaway PostgreSQL cluster on loopback, trusted local auth.
#[derive(Debug)]
pub struct Postgres {
    /// Where its files are (data, socket, log).
    pub dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    durability: Durability,
    bin: PathBuf,
    child: Option<Child>,
}

impl Postgres {
    /// Creates (if needed) and starts a cluster in `dir` on `port` (0: any free port), tuned for
    /// speed ([`Durability::Fast`]).
    pub fn start(dir: &Path, port: u16) -> Result<Self, String> {
        Self::start_with(dir, port, Durability::Fast)
    }

    /// [`Postgres::start`] with the given durability.
    pub fn start_with(dir: &Path, port: u16, durability: Durability) -> Result<Self, String> {
        let bin = postgres_bin_dir()?;
        let port = if port == 0 { free_port() } else { port };
        let data = dir.join("data");
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let mut cmd = Command::new(bin.join("initdb"));
            cmd.args(["-D"]).arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
            run_as_postgres_user("initdb", &mut cmd, dir)?;
        }
        Self::launch(dir, port, durability, bin)
    }

    /// A streaming replica of this cluster in `dir` (emptied first), as a standby region's read
    /// replica: a base backup (`pg_basebackup -R`, which also writes the connection to this
    /// primary and `standby.signal`), then a hot standby that serves reads and refuses writes
    /// (SQLSTATE 25006) until [`Postgres::promote`]. Replication is asynchronous, as Cloud SQL's
    /// cross-region replicas are.
    pub fn start_replica(&self, dir: &Path, port: u16) -> Result<Self, String> {
        Self::replica_of(self.port, dir, port, self.durability)
    }

    /// [`Postgres::start_replica`] of whatever server listens on `source_port` (one this process
    /// may not have started, such as a promoted replica a failback rebuilds from).
    pub fn replica_of(
        source_port: u16,
        dir: &Path,
        port: u16,
        durability: Durability,
    ) -> Result<Self, String> {
        let bin = postgres_bin_dir()?;
        let port = if port == 0 { free_port() } else { port };
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| format!("cannot empty {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut cmd = Command::new(bin.join("pg_basebackup"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &source_port.to_string(),
            "-U",
            "postgres",
            "-D",
        ])
        .arg(dir.join("data"))
        .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        run_as_postgres_user("pg_basebackup", &mut cmd, dir)?;
        Self::launch(dir, port, durability, bin)
    }

    /// [`Postgres::replica_of`] the loopback server `database_url` names, and the same database's
    /// URL on the replica. The server must let `postgres` replicate from 127.0.0.1 (a local
    /// cluster made with trust authentication does).
    pub fn replica_of_url(
        database_url: &str,
        dir: &Path,
        port: u16,
    ) -> Result<(Self, String), String> {
        let config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| format!("DATABASE_URL: {e}"))?;
        let local = config.get_hosts().iter().all(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => {
                ["127.0.0.1", "localhost", "::1"].contains(&name.as_str())
            }
            _ => false,
        });
        if !local {
            return Err(
                "a standby replica needs a PostgreSQL on this machine (127.0.0.1 or localhost)"
                    .to_owned(),
            );
        }
        let source_port = config.get_ports().first().copied().unwrap_or(5432);
        let name = config.get_dbname().unwrap_or("postgres").to_owned();
        let pg = Self::replica_of(source_port, dir, port, Durability::Fast)?;
        let url = pg.url(&name);
        Ok((pg, url))
    }

    fn launch(dir: &Path, port: u16, durability: Durability, bin: PathBuf) -> Result<Self, String> {
        let data = dir.join("data");
        let sock = dir.join("sock");
        std::fs::create_dir_all(&sock).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&sock)
            .args(["-c", "max_connections=200"]);
        if durability == Durability::Fast {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("postgres.log"))
                    .map_err(|e| e.to_string())?,
            ));
        as_postgres_user(&mut cmd, dir)?;
        die_with_parent(&mut cmd, libc::SIGINT);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let pg = Self {
            dir: dir.to_owned(),
            port,
            durability,
            bin,
            child: Some(child),
        };
        pg.wait_ready(Duration::from_secs(30))?;
        Ok(pg)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        Err(format!("postgres did not become ready: {log}"))
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Freezes the server and every backend (`SIGSTOP`): connections are accepted by the
    /// kernel, queries are never answered. [`Postgres::thaw`] resumes it.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            signal_tree(c.id(), libc::SIGSTOP);
        }
    }

    /// Resumes a frozen server (`SIGCONT`).
    pub fn thaw(&self) {
        if let Some(c) = &self.child {
            signal_tree(c.id(), libc::SIGCONT);
        }
    }

    /// Kills the server and every backend with SIGKILL, as a region lost at once: nothing is
    /// flushed or shut down, and a replica keeps only what it had received.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_tree(child.id());
            let _ = child.wait();
        }
    }

    /// Whether the server process is running (not stopped or killed by us).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Promotes a replica ([`Postgres::start_replica`]) to a writable primary, waiting until it
    /// is (`pg_promote`, up to 60 s). Replication from the old primary stops for good.
    pub async fn promote(&self) -> Result<(), String> {
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect to the replica: {e}"))?;
        tokio::spawn(conn);
        let done: bool = client
            .query_one("SELECT pg_promote(true, 60)", &[])
            .await
            .map_err(|e| format!("pg_promote: {e}"))?
            .get(0);
        if done {
            Ok(())
        } else {
            Err("pg_promote: the replica did not finish promotion within 60 s".to_owned())
        }
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        self.thaw();
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGINT);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let again = Self::start_with(&self.dir, self.port, self.durability)?;
        let mut again = std::mem::ManuallyDrop::new(again);
        self.child = again.child.take();
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs one of PostgreSQL's tools to completion as the server's user ([`as_postgres_user`]);
/// a failure carries its standard error.
fn run_as_postgres_user(what: &str, cmd: &mut Command, dir: &Path) -> Result<(), String> {
    let out = as_postgres_user(cmd, dir)?
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// PostgreSQL refuses to run as root: when we are root, run it as `nobody` and hand it the folder.
fn as_postgres_user<'a>(cmd: &'a mut Command, dir: &Path) -> Result<&'a mut Command, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(cmd);
    }
    let (uid, gid) = (65534u32, 65534u32);
    chown_tree(dir, uid, gid)?;
    cmd.uid(uid).gid(gid);
    Ok(cmd)
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let mut p = Some(dir);
    // Every ancestor must be searchable by the server user.
    while let Some(d) = p {
        if let Ok(meta) = std::fs::metadata(d) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o001 == 0 {
                let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001));
            }
        }
        p = d.parent();
    }
    let status = Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(dir)
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("chown {} failed", dir.display()))
    }
}

/// Creates database `name` if it does not exist, connecting with `admin_url`.
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {admin_url}: {e}"))?;
    tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
