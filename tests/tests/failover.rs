//! Region failover (issue 14), against a real PostgreSQL streaming replica: the standby region
//! serves reads and refuses writes with a fast 503 before failover, and the drill kills the
//! primary's PostgreSQL (SIGKILL) under a steady stream of orders, runs the failover's steps
//! (`scripts/lib/failover-steps`, local back-end), brings the lost region back and runs the
//! failback's (`scripts/lib/failback-steps`): fence, rebuild, planned switch back; and measures
//! what the clients saw.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_e2e::*;
use tern_local::Durability;
use tern_local::failover::{DnsRecord, LocalFailback, LocalFailover, Region, Schedule};

/// A write on the standby: 503 `region-standby` with Retry-After, at once (the replica refuses
/// the statement; nothing waits for a timeout), while reads answer 200 and readiness stays up.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_serves_reads_and_answers_writes_with_a_503() {
    let emulator = own_emulator();
    let primary_pg = own_postgres("standby-primary").await;
    let mut primary = System::on(&primary_pg, &emulator.addr).await;
    let base = primary.start("orders-create");
    let res = primary.create_order(&base, &order_body()).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let replica = primary_pg
        .start_replica(&scratch("standby-replica"), 0)
        .expect("a streaming replica");
    let mut standby = System::standby_of(&primary, &replica).await;
    // A wait timeout long enough that a write held up anywhere would show.
    standby.set("DB_WAIT_TIMEOUT", "5s");
    let sbase = standby.start("orders-get");
    standby.start("orders-create");

    // Reads: the order written on the primary, by replication.
    let order = eventually(
        "the order on the standby",
        Duration::from_secs(20),
        || async {
            let o = standby.order(&sbase, &id).await;
            (o["id"] == id.as_str()).then_some(o)
        },
    )
    .await;
    assert_eq!(order["status"], "pending");

    // Writes: refused at once, with the reason and when to retry, and nothing written.
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let start = Instant::now();
        let res = standby
            .http
            .post(format!("{sbase}/api/orders"))
            .header("idempotency-key", format!("standby-{i}"))
            .json(&order_body())
            .send()
            .await
            .unwrap();
        slowest = slowest.max(start.elapsed());
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "30");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["type"], "urn:tern:problem:region-standby", "{body}");
    }
    assert!(
        slowest < Duration::from_secs(5),
        "a refused write took {slowest:?}, the DB wait timeout is 5 s"
    );
    eprintln!("standby: 20 writes answered 503 region-standby, slowest {slowest:?}");
    for key in ["orders-get", "orders-create"] {
        let ready = standby
            .http
            .get(format!("{}/_tern/ready", standby.pod_url(key)))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "{key} on the standby must be ready");
    }

    // migrate pointed at the replica by hand: one line saying why, and a failure.
    let out = std::process::Command::new(bin_dir().join("migrate"))
        .env_clear()
        .env("DATABASE_URL", &standby.database_url)
        .env("TERN_LOG_FORMAT", "text")
        .env("MIGRATE_WAIT", "5s")
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("read-only replica"), "{said}");
}

/// What one client saw of one order.
#[derive(Debug, Clone)]
struct Ack {
    email: String,
    id: String,
    at: Instant,
    /// The Gateway the public host resolved to for this request.
    via: std::net::SocketAddr,
}

/// The drill's figures, for one run.
#[derive(Debug)]
struct Figures {
    acked_before_kill: usize,
    lost: usize,
    lost_span: Duration,
    lag_bytes: i64,
    lag_seconds: f64,
    first_write_after_kill: Duration,
    failover_took: Duration,
    acked_after_kill: usize,
    refused: usize,
    unacked_present: usize,
    events: usize,
    orders: usize,
    published_by_standby: i64,
    fenced_write: u16,
    failback_took: Duration,
    switchback_gap: Duration,
    acked_after_failback: usize,
    /// `order.created` events of orders the final database does not hold (published by the
    /// lost side before it was fenced).
    phantom_events: usize,
}

/// How the primary region is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Its PostgreSQL killed (SIGKILL): connections refused at once. It comes back by restarting.
    Kill,
    /// Its PostgreSQL hung (SIGSTOP of every process): connections accepted, never answered, as a
    /// partitioned or wedged region. It comes back by resuming (SIGCONT), with whatever it held.
    Hang,
}

/// Runs of the drill, each on a fresh primary, replica and pair of regions: `TERN_DRILL_KILLS`
/// (default 1; the figures in docs/operations.md are from 3) with the primary's PostgreSQL
/// killed, then one with it hung.
#[tokio::test(flavor = "multi_thread")]
async fn region_failover_drill() {
    let emulator = own_emulator();
    let kills: usize = std::env::var("TERN_DRILL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let faults = std::iter::repeat_n(Fault::Kill, kills).chain([Fault::Hang]);
    let mut all = Vec::new();
    for (run, fault) in (1..).zip(faults) {
        let f = drill(run, &emulator.addr, fault).await;
        eprintln!(
            "drill {run} ({fault:?}): {} orders acknowledged before the fault, {} lost ({:.3} s of them; lag at the kill {} bytes, {:.3} s); first write {:.2} s after the fault (failover steps {:.2} s); {} acknowledged after, {} refusals retried, {} present unacknowledged; {} orders, {} with their events ({} of the lost side's outbox rows published by the promoted side); no order twice",
            f.acked_before_kill,
            f.lost,
            f.lost_span.as_secs_f64(),
            f.lag_bytes,
            f.lag_seconds,
            f.first_write_after_kill.as_secs_f64(),
            f.failover_took.as_secs_f64(),
            f.acked_after_kill,
            f.refused,
            f.unacked_present,
            f.orders,
            f.events,
            f.published_by_standby,
        );
        eprintln!(
            "drill {run} ({fault:?}): failback: a write through the returned primary region after the fence answered {}; the failback's steps {:.2} s; writes paused {:.2} s by the planned switch back (from stop-writes to the first order acknowledged by the primary region); {} acknowledged after it; nothing acknowledged lost; {} order.created events of orders the final database does not hold",
            f.fenced_write,
            f.failback_took.as_secs_f64(),
            f.switchback_gap.as_secs_f64(),
            f.acked_after_failback,
            f.phantom_events,
        );
        if fault == Fault::Hang {
            // Fenced by step 2, the resumed primary stops instead of committing what it held for
            // clients still waiting: nothing they were told is lost. (A statement already in its
            // commit when the process resumes may still finish: its client had given up, so it
            // can show only as an event of an order that is not there, counted below.)
            assert_eq!(f.lost, 0, "a hung primary lost acknowledged orders");
        }
        all.push((fault, f));
    }
    for fault in [Fault::Kill, Fault::Hang] {
        let runs: Vec<&Figures> = all
            .iter()
            .filter(|(f, _)| *f == fault)
            .map(|(_, f)| f)
            .collect();
        eprintln!(
            "drill ({fault:?}): {} runs, {} orders acknowledged before the fault, {} lost, worst time to the first write {:.2} s",
            runs.len(),
            runs.iter().map(|f| f.acked_before_kill).sum::<usize>(),
            runs.iter().map(|f| f.lost).sum::<usize>(),
            runs.iter()
                .map(|f| f.first_write_after_kill)
                .max()
                .unwrap_or_default()
                .as_secs_f64()
        );
    }
}

async fn drill(run: u32, emulator: &str, fault: Fault) -> Figures {
    let primary_pg = Postgres::start_with(
        &scratch(&format!("drill{run}-primary")),
        0,
        Durability::Durable,
    )
    .expect("the primary's PostgreSQL");
    migrated_template(&primary_pg).await;
    let mut primary_pg = primary_pg;
    let mut primary = System::on(&primary_pg, emulator).await;
    primary.subscribe("drill-orders", "orders").await;
    let replica = primary_pg
        .start_replica(&scratch(&format!("drill{run}-standby")), 0)
        .expect("the standby's replica");
    let mut standby = System::standby_of(&primary, &replica).await;
    for sys in [&mut primary, &mut standby] {
        for f in ["orders-create", "orders-get", "outbox-relay"] {
            sys.start(f);
        }
    }
    let ready = |sys: &System| -> Vec<String> {
        ["orders-create", "orders-get"]
            .iter()
            .map(|k| format!("{}/_tern/ready", sys.pod_url(k)))
            .collect()
    };
    let every = Duration::from_secs(1);
    let region = |name: &str, sys: &System, pg: &Postgres, paused: bool| Region {
        name: name.into(),
        database_url: sys.database_url.clone(),
        database: (pg.dir.clone(), pg.port),
        gateway: sys.gateway(),
        relay: Arc::new(Schedule::start(
            format!("{}/internal/outbox/flush", sys.router),
            every,
            paused,
        )),
        ready_urls: ready(sys),
    };
    let failover = LocalFailover {
        primary: region("primary", &primary, &primary_pg, false),
        // The standby's relay job exists, paused, until failover (infra: outbox-relay-standby).
        standby: region("standby", &standby, &replica, true),
        dns: DnsRecord::new(primary.gateway()),
        patience: Duration::from_secs(30),
    };

    // Clients: each sends its orders one after another through the public host, resolving it
    // for each connection; an order refused or unanswered is sent again with the same
    // Idempotency-Key until it is acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut clients = Vec::new();
    for c in 0..6 {
        let (stop, acks, refused, http, dns) = (
            stop.clone(),
            acks.clone(),
            refused.clone(),
            http.clone(),
            failover.dns.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            'orders: while !stop.load(Ordering::SeqCst) {
                n += 1;
                let email = format!("r{run}c{c}n{n}@drill.example");
                let key = uuid::Uuid::new_v4().to_string();
                let mut body = order_body();
                body["customer_email"] = email.clone().into();
                loop {
                    let via = dns.get();
                    let res = http
                        .post(format!("http://{via}/api/orders"))
                        .header("idempotency-key", &key)
                        .json(&body)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 201 => {
                            let at = Instant::now();
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            let id = v["id"].as_str().unwrap_or_default().to_owned();
                            acks.lock().unwrap().push(Ack { email, id, at, via });
                            continue 'orders;
                        }
                        Ok(r) => {
                            let s = r.status().as_u16();
                            assert!(
                                s == 503 || s == 504 || s == 502,
                                "an order answered {s}: only unavailability is expected"
                            );
                        }
                        Err(_) => {}
                    }
                    refused.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }

    // Load for 3 s, then the primary's PostgreSQL is killed: its replication lag first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (lag_bytes, lag_seconds) = {
        let (client, conn) = tokio_postgres::connect(&primary.database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint,
                        COALESCE(EXTRACT(epoch FROM replay_lag), 0)::float8
                 FROM pg_stat_replication",
                &[],
            )
            .await
            .expect("the replica is connected");
        (row.get::<_, i64>(0), row.get::<_, f64>(1))
    };
    let killed_at = Instant::now();
    let killed_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    match fault {
        Fault::Kill => primary_pg.kill(),
        Fault::Hang => primary_pg.freeze(),
    }

    // The failover, as production runs it, on this world.
    let started = Instant::now();
    let outcomes = failover
        .run(&[], &mut |line| eprintln!("drill {run} | {line}"))
        .await
        .expect("the failover");
    let failover_took = started.elapsed();
    assert_eq!(outcomes.len(), 7);
    assert!(
        !outcomes[0].failures.is_empty(),
        "step 1 must see the primary down"
    );

    // Writes resume through the standby: its first acknowledgement (an answer from the primary
    // that arrives after the kill was committed before it, and does not count).
    let standby_gateway = standby.gateway();
    let first_write_after_kill = eventually(
        "an order acknowledged by the standby",
        Duration::from_secs(60),
        || async {
            acks.lock()
                .unwrap()
                .iter()
                .find(|a| a.via == standby_gateway)
                .map(|a| a.at - killed_at)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The primary region comes back as it was lost, and its scheduler (whose pause could not
    // reach it) runs its relay again. Killed, its PostgreSQL restarts writable, on data that
    // forked from the promoted replica's: two writable databases, and the failback fences the
    // old one first. Hung, it resumes with the stop of the failover's step 2 waiting for it, so
    // it shuts down instead of committing what it held.
    failover.primary.relay.resume();
    match fault {
        Fault::Kill => {
            tokio::task::block_in_place(|| primary_pg.restart()).expect("the old primary restarts");
            let old = primary.sql().await;
            let in_recovery: bool = old
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .unwrap()
                .get(0);
            assert!(
                !in_recovery,
                "the old primary is back writable: the split brain to prevent"
            );
        }
        Fault::Hang => {
            primary_pg.thaw();
            let url = primary.database_url.clone();
            eventually(
                "the resumed primary stopping (fenced by step 2)",
                Duration::from_secs(30),
                || {
                    let url = url.clone();
                    async move {
                        tokio_postgres::connect(&url, tokio_postgres::NoTls)
                            .await
                            .is_err()
                            .then_some(())
                    }
                },
            )
            .await;
        }
    }
    let built = Arc::new(Mutex::new(Vec::new()));
    let failback = LocalFailback {
        primary: failover.primary.clone(),
        serving: failover.standby.clone(),
        replica_dir: scratch(&format!("drill{run}-primary-rebuilt")),
        standby_replica_dir: scratch(&format!("drill{run}-standby-rebuilt")),
        dns: failover.dns.clone(),
        patience: Duration::from_secs(60),
        built: built.clone(),
    };
    let log = |line: String| eprintln!("drill {run} failback | {line}");
    let started = Instant::now();
    failback.run(&[1], &mut { log }).await.expect("the fence");
    // Fenced: a write sent to the old region (a client holding its address) is not taken.
    let fenced_write = http
        .post(format!("http://{}/api/orders", primary.gateway()))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&order_body())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert!(
        fenced_write >= 500,
        "a write through the fenced region answered {fenced_write}"
    );
    let calls = failover.primary.relay.calls();
    failback
        .run(&[2, 3], &mut { log })
        .await
        .expect("the new replica");
    assert_eq!(
        failover.primary.relay.calls(),
        calls,
        "the fenced region's relay ran"
    );
    let stop_writes = Instant::now();
    failback
        .run(&[4, 5, 6, 7, 8, 9], &mut { log })
        .await
        .expect("the switch back");
    let failback_took = started.elapsed();
    // The primary region's new database, promoted, and the standby's fresh replica of it.
    let rebuilt = std::mem::take(&mut *built.lock().unwrap());
    assert_eq!(rebuilt.len(), 2, "two databases built");
    let primary_gateway = primary.gateway();
    let switchback_gap = eventually(
        "an order acknowledged by the primary region again",
        Duration::from_secs(60),
        || async {
            acks.lock()
                .unwrap()
                .iter()
                .find(|a| a.via == primary_gateway && a.at > stop_writes)
                .map(|a| a.at - stop_writes)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client panicked");
    }

    // What the database holds at the end: the rebuilt replica, promoted by the failback, at the
    // old primary's address (everything the standby took reached it before the clean stop).
    let db = primary.sql().await;
    let rows = db
        .query(
            "SELECT customer_email, id FROM orders WHERE customer_email LIKE $1",
            &[&format!("r{run}c%")],
        )
        .await
        .unwrap();
    let mut present: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        present
            .entry(r.get::<_, String>(0))
            .or_default()
            .push(r.get(1));
    }
    let twice: Vec<_> = present.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "orders present twice: {twice:?}");
    let acks = acks.lock().unwrap().clone();
    // By who acknowledged it: an answer of the primary that arrives after the kill was committed
    // before it, and is lost if it had not reached the replica; the primary region answers again
    // only after the switch back.
    let (before, rest): (Vec<&Ack>, Vec<&Ack>) = acks
        .iter()
        .partition(|a| a.via != standby_gateway && a.at < stop_writes);
    let (after, after_failback): (Vec<&Ack>, Vec<&Ack>) =
        rest.into_iter().partition(|a| a.via == standby_gateway);
    let lost: Vec<&&Ack> = before
        .iter()
        .filter(|a| present.get(&a.email).is_none_or(|ids| ids[0] != a.id))
        .collect();
    for a in after.iter().chain(&after_failback) {
        assert_eq!(
            present.get(&a.email).map(|ids| ids[0].as_str()),
            Some(a.id.as_str()),
            "an order acknowledged after the failover is missing (by {})",
            a.via
        );
    }
    let lost_span = lost
        .iter()
        .map(|a| killed_at.saturating_duration_since(a.at))
        .max()
        .unwrap_or_default();
    let acked: BTreeSet<&str> = acks.iter().map(|a| a.email.as_str()).collect();
    let unacked_present = present
        .keys()
        .filter(|e| !acked.contains(e.as_str()))
        .count();

    // The promoted side's relay publishes what the lost side had not: every order present has
    // its order.created event (at least once).
    eventually("the outbox drained", Duration::from_secs(90), || async {
        (primary.pending_outbox().await == 0).then_some(())
    })
    .await;
    // The lost side's backlog: rows committed before the kill and published after it (by the
    // promoted side's relay; the fenced primary's relay never ran again).
    let published_by_standby: i64 = db
        .query_one(
            "SELECT count(*) FROM tern_outbox
             WHERE created_at < to_timestamp($1) AND published_at > to_timestamp($1)",
            &[&killed_epoch],
        )
        .await
        .unwrap()
        .get(0);
    let ids: BTreeSet<String> = present.values().map(|ids| ids[0].clone()).collect();
    let messages = primary
        .collect("drill-orders", usize::MAX, Duration::from_secs(3))
        .await;
    let with_events: BTreeSet<String> = messages
        .iter()
        .map(|m| attr(m, "ce-subject"))
        .filter(|s| ids.contains(s))
        .collect();
    let phantom_events = messages
        .iter()
        .filter(|m| attr(m, "ce-type") == "com.example.order.created")
        .filter(|m| !ids.contains(&attr(m, "ce-subject")))
        .count();
    let missing: Vec<_> = ids.difference(&with_events).collect();
    assert!(
        missing.is_empty(),
        "orders without their event: {missing:?}"
    );

    drop(failover);
    drop(failback);
    Figures {
        acked_before_kill: before.len(),
        lost: lost.len(),
        lost_span,
        lag_bytes,
        lag_seconds,
        first_write_after_kill,
        failover_took,
        acked_after_kill: after.len(),
        refused: refused.load(Ordering::Relaxed),
        unacked_present,
        events: with_events.len(),
        orders: ids.len(),
        published_by_standby,
        fenced_write,
        failback_took,
        switchback_gap,
        acked_after_failback: after_failback.len(),
        phantom_events,
    }
}
