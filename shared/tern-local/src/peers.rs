//! The bench's peers: `GET /api/orders/{id}` and `POST /api/orders` as a team would write them
//! without Tern, in Go (`net/http` + pgx, `bench/peers/go`, built by `scripts/tools peers` into
//! `.local/bin/peer-go`) and in Python (FastAPI on uvicorn + asyncpg, `bench/peers/python`,
//! installed by `scripts/tools peers` into `.local/peers-venv`). Started here, in one place, for
//! `scripts/bench` and for `tests/peers.rs`, which compares their bodies with the functions'.

use crate::process::{Daemon, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// uvicorn's worker processes for the Python peer: one per core of the bench machine, as its
/// documentation advises. The pool size is split over them.
pub const PYTHON_WORKERS: usize = 2;

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `net/http` + pgx.
    Go,
    /// FastAPI + uvicorn (uvloop, httptools) + asyncpg.
    Python,
}

impl Peer {
    /// Both, in the order the report lists them.
    pub const ALL: [Peer; 2] = [Peer::Go, Peer::Python];

    /// `go` or `python`.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Go => "go",
            Peer::Python => "python",
        }
    }

    /// What it is built from, for the report.
    pub fn stack(self) -> &'static str {
        match self {
            Peer::Go => "Go net/http + pgx pool",
            Peer::Python => "FastAPI + uvicorn (uvloop, httptools) + asyncpg",
        }
    }

    /// The program that runs it, under the repository `root`.
    fn program(self, root: &Path) -> PathBuf {
        match self {
            Peer::Go => root.join(".local/bin/peer-go"),
            Peer::Python => root.join(".local/peers-venv/bin/python"),
        }
    }
}

/// Whether both peers are installed (`scripts/tools peers`); the error says what is missing.
pub fn available(root: &Path) -> Result<(), String> {
    for p in Peer::ALL {
        let program = p.program(root);
        if !program.is_file() {
            return Err(format!(
                "{} not found: scripts/tools peers installs the {} peer",
                program.display(),
                p.name()
            ));
        }
    }
    Ok(())
}

/// A running peer; stopped (with its workers) when dropped.
pub struct PeerProcess {
    daemon: Daemon,
    port: u16,
}

impl PeerProcess {
    /// Starts `peer` on a free loopback port against `database_url` with `pool` connections in
    /// all, its log in `log`. Does not wait: the caller times the start.
    pub fn spawn(
        peer: Peer,
        root: &Path,
        database_url: &str,
        pool: usize,
        log: PathBuf,
    ) -> Result<Self, String> {
        let port = free_port();
        let mut cmd = Command::new(peer.program(root));
        cmd.env("DATABASE_URL", database_url)
            .env("DB_POOL_SIZE", pool.to_string())
            .env("PORT", port.to_string());
        if peer == Peer::Python {
            // uvicorn's own settings as its documentation gives them for production: the
            // workers (WEB_CONCURRENCY, which the app also reads to split the pool), uvloop and
            // httptools, no access log.
            cmd.current_dir(root.join("bench/peers/python"))
                .env("WEB_CONCURRENCY", PYTHON_WORKERS.to_string())
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1"])
                .args(["--port", &port.to_string()])
                .args(["--loop", "uvloop", "--http", "httptools"])
                .args(["--no-access-log", "--log-level", "warning"]);
        }
        let name = match peer {
            Peer::Go => "the Go peer",
            Peer::Python => "the Python peer",
        };
        let daemon = Daemon::spawn(cmd, name, log)?;
        Ok(Self { daemon, port })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (uvicorn's supervisor for the Python peer; its workers are its children).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Waits until `GET path` answers `status`, asking every 2 ms as `FunctionProcess::wait_for`
    /// does (the bench times starts with it); an exit before that is an error quoting its log.
    pub fn wait_for(&mut self, path: &str, status: u16, timeout: Duration) -> Result<(), String> {
        let port = self.port;
        self.daemon
            .wait_polling(timeout, Duration::from_millis(2), || {
                crate::http_status(port, path) == Some(status)
            })
    }
}
