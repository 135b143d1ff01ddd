//! Processes of a local run: the one place a function (or a job) is started, and the small
//! helpers every local part uses (free ports, readiness polling, signals).
//!
//! Every child is started with `PR_SET_PDEATHSIG`, so it dies with the process that started it,
//! even when that process is killed; and every handle stops its child when dropped.

use crate::env::FunctionEnv;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_routes::Function;

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

/// Sends `sig` to `pid` and every process below it (children first found, then theirs): how
/// the fault drills freeze a server with its workers (`SIGSTOP`) and thaw it (`SIGCONT`).
pub fn signal_tree(pid: u32, sig: libc::c_int) {
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        // SAFETY: kill(2) on a pid of a process we started or its descendant.
        unsafe {
            libc::kill(p as libc::pid_t, sig);
        }
        todo.extend(children(p));
    }
}

/// Kills `pid` and every descendant with SIGKILL, as a machine lost with its region: the tree
/// is stopped and listed first, so no child escapes to init before it is killed.
pub fn kill_tree(pid: u32) {
    signal_tree(pid, libc::SIGSTOP);
    for p in process_tree(pid) {
        // SAFETY: kill(2) on a pid of a process we started or its descendant, stopped above.
        unsafe {
            libc::kill(p as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// `pid` and every process below it, parents before their children: a server with its workers
/// (the bench sums their memory).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let more = children(all[i]);
        all.extend(more);
        i += 1;
    }
    all
}

/// The pids whose parent is `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
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

/// Where a function's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Each line copied to our stdout behind the function's name (`tern dev`).
    Prefixed,
    /// Discarded, unless `TERN_TEST_LOGS` is set (tests and the bench).
    Quiet,
    /// Kept in memory for [`FunctionProcess::output_lines`] (tests that read a function's
    /// logs), and shown as [`Output::Quiet`] is.
    Kept,
}

impl Output {
    /// Whether a child's output is shown (`TERN_TEST_LOGS` shows it for tests and the bench).
    pub(crate) fn shows(self) -> bool {
        self == Self::Prefixed || std::env::var_os("TERN_TEST_LOGS").is_some()
    }
}

/// The lines a child printed, when its output is [`Output::Kept`].
type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Runs job `name` (such as `migrate`) from `bin_dir` to completion with `env`. With
/// [`Output::Prefixed`] its lines are copied behind its name, as a function's are; quiet, its
/// stdout is discarded but its one-line error, if any, still reaches our stderr.
pub fn run_job(
    bin_dir: &Path,
    name: &str,
    env: &FunctionEnv,
    output: Output,
) -> Result<(), String> {
    let mut cmd = Command::new(bin_dir.join(name));
    clean_env(&mut cmd);
    cmd.envs(env.vars()).env("K_SERVICE", name);
    let (mut child, copiers, _) = spawn(&mut cmd, name, output, Stdio::inherit())
        .map_err(|e| format!("cannot run {name} ({}): {e}", bin_dir.display()))?;
    let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
    for c in copiers {
        let _ = c.join();
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed: {status}"))
    }
}

/// Starts `cmd` (stdin closed, dying with its parent) and, when `output` shows it, copies each
/// line of its stdout and stderr to ours behind `name` (and keeps it, when `output` is
/// [`Output::Kept`]); otherwise stdout is discarded and stderr goes to `quiet_stderr`. Returns
/// the child, the copying threads (they end at its exit) and the kept lines.
fn spawn(
    cmd: &mut Command,
    name: &str,
    output: Output,
    quiet_stderr: Stdio,
) -> std::io::Result<(Child, Vec<std::thread::JoinHandle<()>>, Lines)> {
    let show = output.shows();
    let keep = output == Output::Kept;
    let (stdout, stderr) = if show || keep {
        (Stdio::piped(), Stdio::piped())
    } else {
        (Stdio::null(), quiet_stderr)
    };
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    die_with_parent(cmd, libc::SIGTERM);
    let mut child = cmd.spawn()?;
    let mut copiers = Vec::new();
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ];
    let lines = Lines::default();
    for stream in streams.into_iter().flatten() {
        let label = format!("{name:>16} | ");
        let kept = lines.clone();
        copiers.push(std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                if show {
                    println!("{label}{line}");
                }
                if keep {
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }
        }));
    }
    Ok((child, copiers, lines))
}

/// A function starts from a clean environment: only what [`FunctionEnv`] says, plus `PATH`,
/// `HOME` and `RUST_BACKTRACE`.
fn clean_env(cmd: &mut Command) {
    cmd.env_clear();
    for keep in ["PATH", "HOME", "RUST_BACKTRACE"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
}

/// A running function binary.
pub struct FunctionProcess {
    /// Its name (binary and K_SERVICE).
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where it serves `GET /metrics`: on 127.0.0.1 for a plain process, on the pod's address
    /// in a pod.
    pub metrics_port: u16,
    child: Option<Child>,
    lines: Lines,
}

impl FunctionProcess {
    /// Starts `function`'s binary from `bin_dir` on `127.0.0.1:port` with `env` (and nothing
    /// else of ours).
    pub fn spawn(
        bin_dir: &Path,
        function: &Function,
        port: u16,
        env: &FunctionEnv,
        output: Output,
    ) -> Result<Self, String> {
        Self::spawn_in(bin_dir, function, port, env, output, None)
    }

    /// [`FunctionProcess::spawn`], inside network namespace `netns` when given (a [`Pod`]'s).
    ///
    /// [`Pod`]: crate::Pod
    pub(crate) fn spawn_in(
        bin_dir: &Path,
        function: &Function,
        port: u16,
        env: &FunctionEnv,
        output: Output,
        netns: Option<&str>,
    ) -> Result<Self, String> {
        let name = function.name.as_str();
        let bin = bin_dir.join(name);
        if !bin.exists() {
            return Err(format!(
                "{} not found: build the workspace first (cargo build --workspace --bins)",
                bin.display()
            ));
        }
        let mut cmd = match netns {
            None => Command::new(&bin),
            Some(ns) => {
                let mut c = Command::new(crate::pod::ip_command());
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
        };
        clean_env(&mut cmd);
        // In a pod the function listens on all of the pod's addresses, as the chart leaves it
        // (queue-proxy reaches it on loopback); on the host, on loopback only.
        let bind = if netns.is_some() {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        // In a pod the metrics port is the chart's; on the host, any free one.
        let metrics_port = if netns.is_some() {
            tern::platform::METRICS_PORT
        } else {
            free_port()
        };
        cmd.envs(env.for_function(function, bind, port, metrics_port));
        let (child, _copiers, lines) = spawn(&mut cmd, name, output, Stdio::null())
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            port,
            metrics_port,
            child: Some(child),
            lines,
        })
    }

    /// What it has printed so far (stdout and stderr, line by line), when started with
    /// [`Output::Kept`]; empty otherwise.
    pub fn output_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `http://127.0.0.1:METRICS_PORT/metrics` (a plain process's; a pod's is
    /// [`crate::Pod::function_metrics_url`]).
    pub fn metrics_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}{}",
            self.metrics_port,
            tern::platform::METRICS_PATH
        )
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

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Kills it (SIGKILL) and waits.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        signal(&child, libc::SIGKILL);
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

/// A helper server of the local run (Prometheus, Jaeger): its stderr in a log file, stopped with
/// SIGTERM when dropped (or when we die).
pub(crate) struct Daemon {
    child: Option<Child>,
    name: &'static str,
    log: std::path::PathBuf,
}

impl Daemon {
    /// Starts `cmd` as `name` (stdin closed, stdout discarded, stderr to `log`).
    pub(crate) fn spawn(
        mut cmd: Command,
        name: &'static str,
        log: std::path::PathBuf,
    ) -> Result<Self, String> {
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        die_with_parent(&mut cmd, libc::SIGTERM);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self {
            child: Some(child),
            name,
            log,
        })
    }

    /// The process id (0 once stopped).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until `ready` holds; an exit before that is an error quoting the log's last lines.
    pub(crate) fn wait_until(
        &mut self,
        timeout: Duration,
        ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        self.wait_polling(timeout, Duration::from_millis(50), ready)
    }

    /// [`Daemon::wait_until`], asking `ready` every `every`.
    pub(crate) fn wait_polling(
        &mut self,
        timeout: Duration,
        every: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let last = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(format!("{} exited ({status}): {last}", self.name));
            }
            if ready() {
                return Ok(());
            }
            std::thread::sleep(every);
        }
        Err(format!("{} not ready within {timeout:?}", self.name))
    }
}

impl Drop for Daemon {
    /// SIGTERM, and SIGKILL after 10 s if it has not stopped.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if !matches!(c.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
