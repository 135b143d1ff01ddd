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
//! | stop-primary-writers | `gcloud scheduler jobs pause` | pause the primary's relay [`Schedule`] |
//! | promote-replica | `gcloud sql instances promote-replica`, then `patch` to HA + PITR | `SELECT pg_promote()`, checked with `pg_is_in_recovery()` |
//! | resume-standby-relay | `gcloud scheduler jobs resume` | resume the standby's relay [`Schedule`] |
//! | warm-standby | `kn service update --scale-min 1` | each standby pod's readiness answers 200 |
//! | switch-dns | `gcloud dns record-sets update` | [`DnsRecord::set`] to the standby's router |
//! | verify | `kn service list`, `kubectl get` | `GET` through the public host; the database writable |
//!
//! A step the list marks `may-fail` reports its failure and the failover goes on; any other
//! step's failure stops it, as in the script.

use crate::delivery::loopback;
use crate::delivery::stop::StopToken;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What the Gateway probes ask for: orders-get answers it (404, an order nobody made) when the
/// region serves, so any answer below 500 means a function answered through the Gateway.
const PROBE_PATH: &str = "/api/orders/ord_failover_probe";

/// The steps' list, shared with `scripts/failover`.
const STEPS: &str = include_str!("../../../scripts/lib/failover-steps");

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
    let mut out = Vec::new();
    for line in STEPS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.splitn(4, '|').collect();
        let [number, id, kind, title] = f[..] else {
            return Err(format!(
                "failover-steps: {line:?} is not number|id|kind|title"
            ));
        };
        let number: u32 = number
            .parse()
            .map_err(|_| format!("failover-steps: {number:?} is not a step number"))?;
        if number as usize != out.len() + 1 {
            return Err(format!("failover-steps: step {number} is out of order"));
        }
        let may_fail = match kind {
            "may-fail" => true,
            "must" => false,
            other => {
                return Err(format!(
                    "failover-steps: kind {other:?} is not may-fail or must"
                ));
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

/// What the failover acts on in one local region.
#[derive(Debug, Clone)]
pub struct Region {
    /// Its name, for the output.
    pub name: String,
    /// Its database (a superuser connection: promotion needs one).
    pub database_url: String,
    /// Its Gateway (the region's router).
    pub gateway: SocketAddr,
    /// Its relay's Cloud Scheduler job.
    pub relay: Arc<Schedule>,
    /// The readiness URLs of its customer-facing pods.
    pub ready_urls: Vec<String>,
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
        let mut done = Vec::new();
        for step in steps()? {
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
            for action in self.actions(&step.id)? {
                out(format!("+ {}", action.describe()));
                if let Err(e) = self.act(&action).await {
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

    fn actions(&self, id: &str) -> Result<Vec<Action>, String> {
        let (p, s) = (&self.primary, &self.standby);
        Ok(match id {
            "confirm-primary-down" => vec![
                Action::Query(p.database_url.clone(), Query::Answers),
                Action::Get(format!("http://{}{PROBE_PATH}", p.gateway)),
            ],
            "stop-primary-writers" => vec![Action::Pause(p.name.clone(), p.relay.clone())],
            "promote-replica" => vec![
                Action::Query(s.database_url.clone(), Query::Promote),
                Action::Query(s.database_url.clone(), Query::Writable),
            ],
            "resume-standby-relay" => vec![Action::Resume(s.name.clone(), s.relay.clone())],
            "warm-standby" => s.ready_urls.iter().cloned().map(Action::Ready).collect(),
            "switch-dns" => vec![Action::Dns(s.gateway)],
            "verify" => vec![
                Action::Get(format!("http://{{host}}{PROBE_PATH}")),
                Action::Query(s.database_url.clone(), Query::Writable),
            ],
            other => return Err(format!("the local back-end has no step {other:?}")),
        })
    }

    async fn act(&self, action: &Action) -> Result<(), String> {
        let patience = self.patience;
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
        }
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
}

impl Query {
    fn sql(self) -> &'static str {
        match self {
            Self::Answers => "SELECT 1",
            // Resumable: a database promoted already (a rerun of the step) is not promoted again.
            Self::Promote => "SELECT NOT pg_is_in_recovery() OR pg_promote(true, 60)",
            Self::Writable => "SELECT pg_is_in_recovery()",
        }
    }

    async fn run(self, url: &str) -> Result<(), String> {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect: {e}"))?;
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
    fn the_list_parses_and_the_local_back_end_has_every_step() {
        let list = steps().expect("scripts/lib/failover-steps");
        assert_eq!(list.len(), 7);
        assert!(list[0].may_fail && list[1].may_fail);
        assert!(list[2..].iter().all(|s| !s.may_fail));
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let region = |name: &str| Region {
            name: name.into(),
            database_url: "postgres://postgres:secret@127.0.0.1:1/x".into(),
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
        for s in &list {
            let actions = f.actions(&s.id).unwrap_or_else(|e| panic!("{e}"));
            assert!(!actions.is_empty(), "{} does nothing here", s.id);
            for a in actions {
                assert!(!a.describe().contains("secret"), "{}", a.describe());
            }
        }
    }
}
