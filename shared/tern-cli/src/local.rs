//! The local stand-ins: a throwaway PostgreSQL cluster, the Pub/Sub emulator, and function
//! processes. Used by `tern dev` and by the end-to-end tests, so both run the same way.
//!
//! Every child is started with `PR_SET_PDEATHSIG`, so it dies with the process that started it,
//! even when that process is killed; and every handle stops its child when dropped.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Makes `cmd`'s child receive `signal` when the spawning thread exits.
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_port(addr: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!("nothing listened on {addr} within {timeout:?}"))
}

/// Sends SIGTERM (or another signal) to a child.
pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

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

/// A throwaway PostgreSQL cluster on loopback, trusted local auth.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    child: Option<Child>,
}

impl Postgres {
    /// Creates (if needed) and starts a cluster in `dir` on `port` (0: any free port).
    pub fn start(dir: &Path, port: u16) -> Result<Self, String> {
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
            let out = as_postgres_user(&mut cmd, dir)?
                .output()
                .map_err(|e| format!("initdb: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "initdb failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let sock = dir.join("sock");
        std::fs::create_dir_all(&sock).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&sock)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("postgres.log")).map_err(|e| e.to_string())?,
            ));
        as_postgres_user(&mut cmd, dir)?;
        die_with_parent(&mut cmd, libc::SIGINT);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let pg = Self {
            dir: dir.to_owned(),
            port,
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

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGINT);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let again = Self::start(&self.dir, self.port)?;
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

/// The Pub/Sub emulator (`pubsub-emulator`, our wrapper of Google's pstest).
pub struct Emulator {
    pub addr: String,
    child: Option<Child>,
    bin: PathBuf,
}

impl Emulator {
    /// Starts `bin` on `127.0.0.1:port` (0: any free port).
    pub fn start(bin: &Path, port: u16) -> Result<Self, String> {
        if !bin.exists() {
            return Err(format!(
                "{} not found: run scripts/tools first",
                bin.display()
            ));
        }
        let port = if port == 0 { free_port() } else { port };
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.args(["--addr", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd, libc::SIGTERM);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        wait_for_port(&addr, Duration::from_secs(20))?;
        Ok(Self {
            addr,
            child: Some(child),
            bin: bin.to_owned(),
        })
    }

    /// Stops it (its state is lost, as with the real emulator).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            let _ = c.wait();
        }
    }

    /// Starts it again on the same address.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let port = self
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let mut again = Self::start(&self.bin, port)?;
        self.child = again.child.take();
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The repository root: the nearest ancestor of the current directory with `routes.toml`.
pub fn repo_root() -> Result<PathBuf, String> {
    let mut dir = std::env::current_dir().map_err(|e| e.to_string())?;
    loop {
        if dir.join("routes.toml").exists() && dir.join("Cargo.toml").exists() {
            return Ok(dir);
        }
        if !dir.pop() {
            return Err(
                "not inside the Tern repository (no routes.toml above the current directory)"
                    .into(),
            );
        }
    }
}

/// A running function binary.
pub struct FunctionProcess {
    /// Its name (binary and K_SERVICE).
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl FunctionProcess {
    /// Starts `bin_dir/name` on `port` with `env` added to a clean environment (PATH and HOME
    /// kept). Output lines are copied to our stdout prefixed with the name when `prefix` is set,
    /// else discarded unless TERN_TEST_LOGS is set.
    pub fn spawn(
        bin_dir: &Path,
        name: &str,
        port: u16,
        env: &[(String, String)],
        prefix: bool,
    ) -> Result<Self, String> {
        let bin = bin_dir.join(name);
        if !bin.exists() {
            return Err(format!(
                "{} not found: build the workspace first (cargo build --workspace --bins)",
                bin.display()
            ));
        }
        let mut cmd = Command::new(&bin);
        cmd.env_clear();
        for keep in ["PATH", "HOME", "RUST_BACKTRACE"] {
            if let Ok(v) = std::env::var(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.env("PORT", port.to_string())
            .env("TERN_BIND", "127.0.0.1")
            .env("K_SERVICE", name);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let show = prefix || std::env::var_os("TERN_TEST_LOGS").is_some();
        cmd.stdin(Stdio::null())
            .stdout(if show { Stdio::piped() } else { Stdio::null() })
            .stderr(if show { Stdio::piped() } else { Stdio::null() });
        die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        if show {
            for stream in [
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let label = format!("{name:>16} | ");
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stream)
                        .lines()
                        .map_while(Result::ok)
                    {
                        println!("{label}{line}");
                    }
                });
            }
        }
        Ok(Self {
            name: name.to_owned(),
            port,
            child: Some(child),
        })
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `path` answers `want` (or the process exits).
    pub fn wait_for(&mut self, path: &str, want: u16, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("{} exited during start: {status}", self.name));
            }
            if http_status(self.port, path) == Some(want) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!(
            "{} did not answer {want} on {path} within {timeout:?}",
            self.name
        ))
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        signal(&child, libc::SIGTERM);
        child.wait().ok()
    }

    /// Sends SIGTERM without waiting; returns the child to wait on.
    pub fn send_sigterm(&mut self) -> Option<Child> {
        let child = self.child.take()?;
        signal(&child, libc::SIGTERM);
        Some(child)
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// `GET path` over a raw HTTP/1.0 connection; the status code, if any answer came.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 16];
    s.read_exact(&mut buf[..12]).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}
