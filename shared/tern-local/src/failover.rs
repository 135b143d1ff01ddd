//! The region failover, run on a local two-region world: the same ordered steps as
//! `scripts/failover` runs in Google Cloud (both read `scripts/lib/failover-steps`), each done
//! with what stands in for the cloud here. A PostgreSQL streaming replica
//! ([`Postgres::start_replica`](crate::Postgres::start_replica)) is the standby region's Cloud
//! SQL replica, a router per region its Gateway, a [`Schedule`] per region its Cloud Scheduler
//! job, and a [`DnsRecord`] the public host's A record.
//!
//! | step | Google Cloud (`scripts/failover`) | here ([`LocalFailover`]) |
//! |---|---|---|
//! | confirm-primary-down | `gcloud sql instances describe`, `curl` the host | connect to the primary's database, `GET` through its Gateway |
//! | stop-primary-writers | `gcloud scheduler jobs pause`, `gcloud sql instances patch --activation-policy=NEVER` | pause the primary's relay [`Schedule`], stop its PostgreSQL (a hung one stops when it resumes: the signal waits for it) |
//! | promote-replica | `gcloud sql instances promote-replica`, then `patch` to HA + PITR | `SELECT pg_promote()`, checked with `pg_is_in_recovery()` |
//! | resume-standby-relay | `gcloud scheduler jobs resume` | resume the standby's relay [`Schedule`] |
//! | warm-standby | `kn service update --scale-min 1` | each standby pod's readiness answers 200 |
//! | switch-dns | `gcloud dns record-sets update` | [`DnsRecord::set`] to the standby's router |
//! | verify | `kn service list`, `kubectl get` | `GET` through the public host; the database writable |
//!
//! A step the list marks `may-fail` reports its failure and the failover goes on; any other
//! step's failure stops it, as in the script.
//!
//! The failback (`scripts/lib/failback-steps`, [`LocalFailback`]; `scripts/failback` in the
//! cloud) starts where the failover ended, once the lost region is back:
//!
//! | step | Google Cloud (`scripts/failback`) | here ([`LocalFailback`]) |
//! |---|---|---|
//! | fence-old-primary | `gcloud scheduler jobs pause`, `gcloud sql instances patch --activation-policy=NEVER` | pause the old relay [`Schedule`], stop the old primary's PostgreSQL (fast shutdown), check it refuses connections |
//! | rebuild-replica | `tofu state mv`, `tofu apply`: a new cross-region replica in the primary region | `pg_basebackup` of the serving database, started on the old primary's address |
//! | replica-caught-up | the new instance `RUNNABLE`, its replica lag 0 | its replay position reaches the serving database's WAL position; reads through the primary Gateway |
//! | stop-writes | `gcloud scheduler jobs pause`, `gcloud sql instances patch --activation-policy=NEVER` on the serving instance | pause the serving relay, stop its PostgreSQL cleanly, check it refuses connections |
//! | promote-replica | `gcloud sql instances promote-replica`, `patch` to HA + PITR | `pg_promote()`, checked with `pg_is_in_recovery()` |
//! | resume-primary-relay | `gcloud scheduler jobs resume` | resume the primary's relay [`Schedule`] |
//! | switch-dns | `gcloud dns record-sets update` | [`DnsRecord::set`] to the primary's router |
//! | verify | `curl` the host, the instance's type | `GET` through the public host; the database writable |
//! | rebuild-standby-replica | the state made to match, `tofu apply`: a new replica in the standby region | `pg_basebackup` of the primary onto the serving database's old address, caught up; reads through the standby Gateway |

use crate::delivery::loopback;
use crate::delivery::stop::StopToken;
use crate::postgres::{Durability, Postgres};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What the Gateway probes ask for: orders-get answers it (404, an order nobody made) when the
/// region serves, so any answer below 500 means a function answered through the Gateway.
const PROBE_PATH: &str = "/api/orders/ord_failover_probe";

/// How long an action of a may-fail step waits, as `scripts/failover`'s give up (its probe's
/// `curl --max-time 10`, and `try`'s 60 s limit on a gcloud call): short, so that a hung
/// primary does not hold the failover.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The failover's list, shared with `scripts/failover`.
const FAILOVER: &str = include_str!("../../../scripts/lib/failover-steps");
/// The failback's list, shared with `scripts/failback`.
const FAILBACK: &str = include_str!("../../../scripts/lib/failback-steps");

/// Which procedure's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Procedure {
    /// `scripts/lib/failover-steps`.
    Failover,
    /// `scripts/lib/failback-steps`.
    Failback,
}

impl Procedure {
    fn list(self) -> (&'static str, &'static str) {
        match self {
            Self::Failover => ("failover-steps", FAILOVER),
            Self::Failback => ("failback-steps", FAILBACK),
        }
    }
}

/// One step of the failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its number, from 1, in order.
    pub number: u32,
    /// Its id, such as `promote-replica`.
    pub id: String,
    /// Whether a lost primary region is expected to make it fail (the failover goes on).
    pub may_fail: bool,
    /// What it does.
    pub title: String,
}

/// The failover's steps, in order, from `scripts/lib/failover-steps`.
pub fn steps() -> Result<Vec<Step>, String> {
    steps_of(Procedure::Failover)
}

/// A procedure's steps, in order, from its list in `scripts/lib`.
pub fn steps_of(procedure: Procedure) -> Result<Vec<Step>, String> {
    let (name, text) = procedure.list();
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.splitn(4, '|').collect();
        let [number, id, kind, title] = f[..] else {
            return Err(format!("{name}: {line:?} is not number|id|kind|title"));
        };
        let number: u32 = number
            .parse()
            .map_err(|_| format!("{name}: {number:?} is not a step number"))?;
        if number as usize != out.len() + 1 {
            return Err(format!("{name}: step {number} is out of order"));
        }
        let may_fail = match kind {
            "may-fail" => true,
            "must" => false,
            other => {
                return Err(format!("{name}: kind {other:?} is not may-fail or must"));
            }
        };
        out.push(Step {
            number,
            id: id.to_owned(),
            may_fail,
            title: title.to_owned(),
        });
    }
    Ok(out)
}

/// The public host's DNS record: the Gateway address clients resolve the host to. Clients that
/// resolve it per connection follow a switch at once (the cloud's record has a 60 s TTL).
#[derive(Debug, Clone)]
pub struct DnsRecord(Arc<RwLock<SocketAddr>>);

impl DnsRecord {
    /// A record answering `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self(Arc::new(RwLock::new(addr)))
    }

    /// What the host resolves to now.
    pub fn get(&self) -> SocketAddr {
        *self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Points the host at `addr`.
    pub fn set(&self, addr: SocketAddr) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = addr;
    }
}

/// A Cloud Scheduler job: POSTs to a URL at a fixed interval while it is not paused. Dropping
/// it deletes the job.
#[derive(Debug)]
pub struct Schedule {
    paused: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    stop: StopToken,
}

impl Schedule {
    /// Starts calling `url` every `every`, paused or not (a standby's job is created paused).
    pub fn start(url: String, every: Duration, paused: bool) -> Self {
        let s = Self {
            paused: Arc::new(AtomicBool::new(paused)),
            calls: Arc::new(AtomicU64::new(0)),
            stop: StopToken::default(),
        };
        let (paused, calls, stop) = (s.paused.clone(), s.calls.clone(), s.stop.clone());
        tokio::spawn(async move {
            let client = loopback::client();
            loop {
                tokio::select! { () = tokio::time::sleep(every) => {}, () = stop.cancelled() => return }
                if paused.load(Ordering::SeqCst) {
                    continue;
                }
                calls.fetch_add(1, Ordering::Relaxed);
                // A failed call is retried at the next tick, as Cloud Scheduler's job is.
                let _ = tokio::time::timeout(
                    every.max(Duration::from_secs(30)),
                    loopback::post(&client, &url, &[], Vec::new()),
                )
                .await;
            }
        });
        s
    }

    /// Pauses the job (`gcloud scheduler jobs pause`).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Resumes it (`gcloud scheduler jobs resume`).
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// How many calls it has made.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the failover and the failback act on in one local region.
#[derive(Debug, Clone)]
pub struct Region {
    /// Its name, for the output.
    pub name: String,
    /// Its database (a superuser connection: promotion needs one).
    pub database_url: String,
    /// Its database server's folder ([`Postgres::dir`]) and port: the failback stops it and
    /// builds a replica in its place.
    pub database: (PathBuf, u16),
    /// Its Gateway (the region's router).
    pub gateway: SocketAddr,
    /// Its relay's Cloud Scheduler job.
    pub relay: Arc<Schedule>,
    /// The readiness URLs of its customer-facing pods.
    pub ready_urls: Vec<String>,
}

impl Region {
    /// Its relay paused and its database stopped, then checked to refuse connections.
    fn fence(&self) -> Vec<Action> {
        vec![
            Action::Pause(self.name.clone(), self.relay.clone()),
            Action::Stop(self.database.0.clone()),
            Action::Query(self.database_url.clone(), Query::Refuses),
        ]
    }

    /// Its replica promoted, then checked to take writes.
    fn promote(&self) -> Vec<Action> {
        vec![
            Action::Query(self.database_url.clone(), Query::Promote),
            Action::Query(self.database_url.clone(), Query::Writable),
        ]
    }

    /// The public host answers (now resolving to this region), on its writable database.
    fn verify(&self) -> Vec<Action> {
        vec![
            Action::Get(format!("http://{{host}}{PROBE_PATH}")),
            Action::Query(self.database_url.clone(), Query::Writable),
        ]
    }
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The step.
    pub step: Step,
    /// How long it took.
    pub took: Duration,
    /// Its failures, when it was expected to fail and went on.
    pub failures: Vec<String>,
}

/// The failover's local back-end: the steps of `scripts/lib/failover-steps` on a local
/// two-region world.
#[derive(Debug, Clone)]
pub struct LocalFailover {
    /// The region being abandoned.
    pub primary: Region,
    /// The region taking over.
    pub standby: Region,
    /// The public host's record.
    pub dns: DnsRecord,
    /// How long a step may wait for what it checks.
    pub patience: Duration,
}

impl LocalFailover {
    /// Runs the steps numbered in `only` (every step when empty), in the list's order, printing
    /// each heading and action to `out` as the script prints them. Stops at the first failure
    /// of a step not marked may-fail.
    pub async fn run(
        &self,
        only: &[u32],
        out: &mut (dyn FnMut(String) + Send),
    ) -> Result<Vec<Outcome>, String> {
        let runner = Runner {
            dns: &self.dns,
            patience: self.patience,
            built: None,
        };
        runner
            .run(Procedure::Failover, only, out, |id| self.actions(id))
            .await
    }

    fn actions(&self, id: &str) -> Result<Vec<Action>, String> {
        let (p, s) = (&self.primary, &self.standby);
        Ok(match id {
            "confirm-primary-down" => vec![
                Action::Query(p.database_url.clone(), Query::Answers),
                Action::Get(format!("http://{}{PROBE_PATH}", p.gateway)),
            ],
            "stop-primary-writers" => vec![
                Action::Pause(p.name.clone(), p.relay.clone()),
                Action::Stop(p.database.0.clone()),
            ],
            "promote-replica" => s.promote(),
            "resume-standby-relay" => vec![Action::Resume(s.name.clone(), s.relay.clone())],
            "warm-standby" => s.ready_urls.iter().cloned().map(Action::Ready).collect(),
            "switch-dns" => vec![Action::Dns(s.gateway)],
            "verify" => s.verify(),
            other => return Err(format!("the local failover has no step {other:?}")),
        })
    }
}

/// The failback's local back-end: the steps of `scripts/lib/failback-steps`, once the lost
/// primary region is back (its PostgreSQL running again, writable, on data that forked from the
/// promoted replica's at the promotion).
#[derive(Debug, Clone)]
pub struct LocalFailback {
    /// The primary region, back: its old database is fenced, and the new replica takes its
    /// address (`database`), so its functions find it where the old primary was (in the cloud,
    /// the chart's `database.host` is set to the new instance's).
    pub primary: Region,
    /// The region serving since the failover, on the promoted replica.
    pub serving: Region,
    /// Where the new replica is built (not the old primary's folder: that one is kept).
    pub replica_dir: PathBuf,
    /// Where the standby region's fresh replica is built, at the last step (on the address of
    /// the database that served during the outage, which its functions use).
    pub standby_replica_dir: PathBuf,
    /// The public host's record.
    pub dns: DnsRecord,
    /// How long a step may wait for what it checks.
    pub patience: Duration,
    /// The replicas it built, in order (the primary region's, then the standby's): the caller
    /// takes them (dropping one stops it).
    pub built: Arc<Mutex<Vec<Postgres>>>,
}

impl LocalFailback {
    /// Runs the steps numbered in `only` (every step when empty), as [`LocalFailover::run`].
    pub async fn run(
        &self,
        only: &[u32],
        out: &mut (dyn FnMut(String) + Send),
    ) -> Result<Vec<Outcome>, String> {
        let runner = Runner {
            dns: &self.dns,
            patience: self.patience,
            built: Some(&self.built),
        };
        runner
            .run(Procedure::Failback, only, out, |id| self.actions(id))
            .await
    }

    fn actions(&self, id: &str) -> Result<Vec<Action>, String> {
        let (p, s) = (&self.primary, &self.serving);
        Ok(match id {
            "fence-old-primary" => p.fence(),
            "rebuild-replica" => vec![Action::Replicate {
                source_port: s.database.1,
                dir: self.replica_dir.clone(),
                port: p.database.1,
            }],
            "replica-caught-up" => vec![
                Action::CaughtUp {
                    source: s.database_url.clone(),
                    replica: p.database_url.clone(),
                },
                Action::Get(format!("http://{}{PROBE_PATH}", p.gateway)),
            ],
            "stop-writes" => s.fence(),
            "promote-replica" => p.promote(),
            "resume-primary-relay" => vec![Action::Resume(p.name.clone(), p.relay.clone())],
            "switch-dns" => vec![Action::Dns(p.gateway)],
            "verify" => p.verify(),
            "rebuild-standby-replica" => vec![
                Action::Replicate {
                    source_port: p.database.1,
                    dir: self.standby_replica_dir.clone(),
                    port: s.database.1,
                },
                Action::CaughtUp {
                    source: p.database_url.clone(),
                    replica: s.database_url.clone(),
                },
                Action::Get(format!("http://{}{PROBE_PATH}", s.gateway)),
            ],
            other => return Err(format!("the local failback has no step {other:?}")),
        })
    }
}

/// Runs a procedure's steps with the local actions.
struct Runner<'a> {
    dns: &'a DnsRecord,
    patience: Duration,
    /// Where a `Replicate` action leaves its replica.
    built: Option<&'a Mutex<Vec<Postgres>>>,
}

impl Runner<'_> {
    async fn run(
        &self,
        procedure: Procedure,
        only: &[u32],
        out: &mut (dyn FnMut(String) + Send),
        actions: impl Fn(&str) -> Result<Vec<Action>, String>,
    ) -> Result<Vec<Outcome>, String> {
        let mut done = Vec::new();
        for step in steps_of(procedure)? {
            if !only.is_empty() && !only.contains(&step.number) {
                continue;
            }
            out(format!(
                "# {}. {} ({}{})",
                step.number,
                step.title,
                step.id,
                if step.may_fail {
                    ", expected to fail in a lost region"
                } else {
                    ""
                }
            ));
            let start = Instant::now();
            let mut failures = Vec::new();
            for action in actions(&step.id)? {
                out(format!("+ {}", action.describe()));
                // A step expected to fail in a lost region gives up as soon as the script's probes
                // do (a hung primary must not hold the failover for the full patience).
                let patience = if step.may_fail {
                    self.patience.min(PROBE_TIMEOUT)
                } else {
                    self.patience
                };
                if let Err(e) = self.act(&action, patience).await {
                    if step.may_fail {
                        out(format!(
                            "# failed: {e}; expected when the primary region is down, going on"
                        ));
                        failures.push(e);
                    } else {
                        return Err(format!("step {} ({}): {e}", step.number, step.id));
                    }
                }
            }
            done.push(Outcome {
                step,
                took: start.elapsed(),
                failures,
            });
        }
        Ok(done)
    }

    async fn act(&self, action: &Action, patience: Duration) -> Result<(), String> {
        match action {
            Action::Query(url, q) => tokio::time::timeout(patience, q.run(url))
                .await
                .map_err(|_| format!("no answer within {patience:?}"))?,
            Action::Get(url) => {
                let url = url.replace("{host}", &self.dns.get().to_string());
                let client = loopback::client();
                let status = tokio::time::timeout(patience, loopback::get(&client, &url))
                    .await
                    .map_err(|_| format!("GET {url}: no answer within {patience:?}"))??;
                if status < 500 {
                    Ok(())
                } else {
                    Err(format!("GET {url}: HTTP {status}"))
                }
            }
            Action::Ready(url) => {
                let client = loopback::client();
                let deadline = Instant::now() + patience;
                loop {
                    match loopback::get(&client, url).await {
                        Ok(200) => return Ok(()),
                        last if Instant::now() >= deadline => {
                            return Err(format!("{url} not ready within {patience:?}: {last:?}"));
                        }
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
            Action::Pause(_, s) => {
                s.pause();
                Ok(())
            }
            Action::Resume(_, s) => {
                s.resume();
                Ok(())
            }
            Action::Dns(addr) => {
                self.dns.set(*addr);
                Ok(())
            }
            Action::Stop(dir) => stop_server(dir, patience).await,
            Action::Replicate {
                source_port,
                dir,
                port,
            } => {
                let slot = self.built.ok_or("nowhere to keep a replica")?;
                // Resumable: a replica built already (a rerun after a later step failed) stays.
                let exists = |pg: &Postgres| pg.dir == *dir;
                if slot.lock().map_err(|e| e.to_string())?.iter().any(exists) {
                    return Ok(());
                }
                // On this worker thread, not a blocking-pool one: the server dies with the thread
                // that started it (die_with_parent), and the pool retires idle threads. Needs the
                // multi-threaded runtime.
                let pg = tokio::task::block_in_place(|| {
                    Postgres::replica_of(*source_port, dir, *port, Durability::Durable)
                })?;
                slot.lock().map_err(|e| e.to_string())?.push(pg);
                Ok(())
            }
            Action::CaughtUp { source, replica } => {
                tokio::time::timeout(patience, caught_up(source, replica))
                    .await
                    .map_err(|_| format!("the replica did not catch up within {patience:?}"))?
            }
        }
    }
}

/// Stops the PostgreSQL server whose folder is `dir` with a fast shutdown (SIGINT to the pid in
/// its `postmaster.pid`, as `pg_ctl stop -m fast`), waiting until it is gone. Its connected
/// replicas are sent every write first: a clean stop loses nothing.
async fn stop_server(dir: &Path, patience: Duration) -> Result<(), String> {
    let pidfile = dir.join("data/postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pidfile) else {
        // Stopped already (a rerun).
        return Ok(());
    };
    let pid: i32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("{}: no pid", pidfile.display()))?;
    // The file outlives a server that was killed: only a postgres process of that pid is it.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "postgres" {
        return Ok(());
    }
    // SAFETY: kill has no memory preconditions; the pid is the server's, from its own file.
    if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(format!("cannot stop PostgreSQL {pid}: {e}"));
    }
    // A hung (stopped) server keeps the signal pending and shuts down as soon as it resumes;
    // until then this waits, and a may-fail step gives up after its probe timeout.
    let deadline = Instant::now() + patience;
    while pidfile.exists() {
        if Instant::now() >= deadline {
            return Err(format!("PostgreSQL {pid} still running after {patience:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until `replica` streams from `source` and has replayed every write `source` had when
/// the wait began.
async fn caught_up(source: &str, replica: &str) -> Result<(), String> {
    let connect = |url: &str| {
        let url = url.to_owned();
        async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            tokio::spawn(conn);
            Ok::<_, String>(client)
        }
    };
    let (src, rep) = (connect(source).await?, connect(replica).await?);
    let target: i64 = src
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    loop {
        let streaming: i64 = src
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let row = rep
            .query_one(
                "SELECT pg_is_in_recovery(),
                        COALESCE(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), 0)::bigint",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        if !row.get::<_, bool>(0) {
            return Err("the new database is not a replica".to_owned());
        }
        if streaming > 0 && row.get::<_, i64>(1) >= target {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One action of a step.
enum Action {
    Query(String, Query),
    Get(String),
    Ready(String),
    Pause(String, Arc<Schedule>),
    Resume(String, Arc<Schedule>),
    Dns(SocketAddr),
    /// Stop the PostgreSQL server of this folder (fast shutdown).
    Stop(PathBuf),
    /// A streaming replica of the server on `source_port`, built in `dir`, listening on `port`.
    Replicate {
        source_port: u16,
        dir: PathBuf,
        port: u16,
    },
    /// The replica has replayed what the source had.
    CaughtUp {
        source: String,
        replica: String,
    },
}

impl Action {
    fn describe(&self) -> String {
        match self {
            Self::Query(url, q) => format!("psql {} -c {:?}", redact(url), q.sql()),
            Self::Get(url) => format!("curl {url} (any answer below 500)"),
            Self::Ready(url) => format!("until curl {url} answers 200"),
            Self::Pause(region, _) => format!("pause the relay schedule of {region}"),
            Self::Resume(region, _) => format!("resume the relay schedule of {region}"),
            Self::Dns(addr) => format!("the public host's record answers {addr}"),
            Self::Stop(dir) => format!("pg_ctl stop -m fast -D {}/data", dir.display()),
            Self::Replicate {
                source_port,
                dir,
                port,
            } => format!(
                "pg_basebackup -R -X stream -h 127.0.0.1 -p {source_port} -D {}/data, then postgres -p {port}",
                dir.display()
            ),
            Self::CaughtUp { source, replica } => format!(
                "until {} has replayed pg_current_wal_lsn() of {}",
                redact(replica),
                redact(source)
            ),
        }
    }
}

/// The SQL a step runs.
#[derive(Debug, Clone, Copy)]
enum Query {
    /// The database answers.
    Answers,
    /// Promote a replica and wait until it is writable.
    Promote,
    /// The database takes writes.
    Writable,
    /// The database refuses connections (fenced).
    Refuses,
}

impl Query {
    fn sql(self) -> &'static str {
        match self {
            Self::Answers => "SELECT 1",
            // Resumable: a database promoted already (a rerun of the step) is not promoted again.
            Self::Promote => "SELECT NOT pg_is_in_recovery() OR pg_promote(true, 60)",
            Self::Writable => "SELECT pg_is_in_recovery()",
            Self::Refuses => "SELECT 1 (must fail to connect)",
        }
    }

    async fn run(self, url: &str) -> Result<(), String> {
        let connected = tokio_postgres::connect(url, tokio_postgres::NoTls).await;
        if let Self::Refuses = self {
            return match connected {
                Err(_) => Ok(()),
                Ok(_) => Err("the fenced database still accepts connections".to_owned()),
            };
        }
        let (client, conn) = connected.map_err(|e| format!("connect: {e}"))?;
        tokio::spawn(conn);
        let row = client
            .query_one(self.sql(), &[])
            .await
            .map_err(|e| format!("{}: {e}", self.sql()))?;
        match self {
            Self::Answers => Ok(()),
            Self::Promote if row.get::<_, bool>(0) => Ok(()),
            Self::Promote => Err("the replica did not finish promotion within 60 s".to_owned()),
            Self::Writable if !row.get::<_, bool>(0) => Ok(()),
            Self::Writable => Err("the database is still a read-only replica".to_owned()),
            Self::Refuses => Ok(()),
        }
    }
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_parse_and_the_local_back_ends_have_every_step() {
        let list = steps().expect("scripts/lib/failover-steps");
        assert_eq!(list.len(), 7);
        assert!(list[0].may_fail && list[1].may_fail);
        assert!(list[2..].iter().all(|s| !s.may_fail));
        let back = steps_of(Procedure::Failback).expect("scripts/lib/failback-steps");
        assert_eq!(back[0].id, "fence-old-primary", "fencing comes first");
        assert!(
            back.iter().all(|s| !s.may_fail),
            "the region is back: no step may fail"
        );
        let promote = back.iter().position(|s| s.id == "promote-replica").unwrap();
        let dns = back.iter().position(|s| s.id == "switch-dns").unwrap();
        let stop = back.iter().position(|s| s.id == "stop-writes").unwrap();
        assert!(
            stop < promote && promote < dns,
            "writes stop before the promotion, traffic returns after"
        );
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let region = |name: &str| Region {
            name: name.into(),
            database_url: "postgres://postgres:secret@127.0.0.1:1/x".into(),
            database: (PathBuf::from("/nowhere"), 1),
            gateway: addr,
            relay: Arc::new(Schedule {
                paused: Arc::default(),
                calls: Arc::default(),
                stop: StopToken::default(),
            }),
            ready_urls: vec!["http://127.0.0.1:1/_tern/ready".into()],
        };
        let f = LocalFailover {
            primary: region("primary"),
            standby: region("standby"),
            dns: DnsRecord::new(addr),
            patience: Duration::from_secs(1),
        };
        let b = LocalFailback {
            primary: region("primary"),
            serving: region("standby"),
            replica_dir: PathBuf::from("/nowhere/replica"),
            standby_replica_dir: PathBuf::from("/nowhere/standby-replica"),
            dns: DnsRecord::new(addr),
            patience: Duration::from_secs(1),
            built: Arc::default(),
        };
        let all = list
            .iter()
            .map(|s| f.actions(&s.id))
            .chain(back.iter().map(|s| b.actions(&s.id)));
        for (actions, s) in all.zip(list.iter().chain(&back)) {
            let actions = actions.unwrap_or_else(|e| panic!("{e}"));
            assert!(!actions.is_empty(), "{} does nothing here", s.id);
            for a in actions {
                assert!(!a.describe().contains("secret"), "{}", a.describe());
            }
        }
    }
}
