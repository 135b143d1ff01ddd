//! Fault drills (issue 13): dependencies that hang rather than refuse, and rows Pub/Sub keeps
//! refusing — against the real emulator and PostgreSQL, through the router and queue-proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tern_e2e::*;

/// Calls the relay until nothing is pending; returns how many rows it published.
async fn drain_outbox(sys: &System, relay: &str, limit: Duration) -> u64 {
    let published = std::cell::Cell::new(0);
    eventually("the outbox drained", limit, || async {
        let r: serde_json::Value = sys
            .http
            .post(format!("{relay}/internal/outbox/flush"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        published.set(published.get() + r["published"].as_u64().unwrap_or(0));
        if sys.pending_outbox().await == 0 {
            Some(())
        } else {
            tokio::time::sleep(Duration::from_millis(400)).await;
            None
        }
    })
    .await;
    published.get()
}

#[tokio::test(flavor = "multi_thread")]
async fn pubsub_hanging_slows_events_never_orders() {
    let emulator = own_emulator();
    let pg = own_postgres("pg-pubsub-frozen").await;
    let mut sys = System::on(&pg, &emulator.addr).await;
    let create = sys.start("orders-create");
    let relay = sys.start("outbox-relay");
    sys.subscribe("watch-orders", "orders").await;
    let ready_url = format!("{}/_tern/ready", sys.pod_url("orders-create"));

    emulator.freeze();
    // 40 clients, 5 orders each, while readiness is probed every 100 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let not_ready = Arc::new(AtomicUsize::new(0));
    let probes = Arc::new(AtomicUsize::new(0));
    let prober = {
        let (stop, not_ready, probes, http) = (
            stop.clone(),
            not_ready.clone(),
            probes.clone(),
            sys.http.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let ok = http
                    .get(&ready_url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                probes.fetch_add(1, Ordering::SeqCst);
                if !ok {
                    not_ready.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let clients = (0..40).map(|_| async {
        let mut out = Vec::new();
        for _ in 0..5 {
            let r = sys.create_order(&create, &order_body()).await;
            let status = r.status().as_u16();
            let id = r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned));
            out.push((status, id));
        }
        out
    });
    let results: Vec<(u16, Option<String>)> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    stop.store(true, Ordering::SeqCst);
    prober.await.unwrap();
    let mut statuses = BTreeMap::new();
    for (s, _) in &results {
        *statuses.entry(*s).or_insert(0) += 1;
    }
    let orders: BTreeSet<String> = results.iter().filter_map(|(_, id)| id.clone()).collect();
    eprintln!(
        "frozen Pub/Sub: statuses {statuses:?}; readiness probes {} of which not ready {}",
        probes.load(Ordering::SeqCst),
        not_ready.load(Ordering::SeqCst)
    );
    assert_eq!(statuses, BTreeMap::from([(201, 200)]), "every order 201");
    assert_eq!(orders.len(), 200);
    assert_eq!(not_ready.load(Ordering::SeqCst), 0, "readiness stayed 200");
    assert_eq!(sys.pending_outbox().await, 200, "nothing published yet");

    emulator.thaw();
    let by_relay = drain_outbox(&sys, &relay, Duration::from_secs(90)).await;
    let msgs = sys
        .collect("watch-orders", 1000, Duration::from_secs(5))
        .await;
    let ids: BTreeSet<String> = msgs.iter().map(|m| attr(m, "ce-id")).collect();
    let subjects: BTreeSet<String> = msgs.iter().map(|m| attr(m, "ce-subject")).collect();
    eprintln!(
        "after the thaw: {} messages, {} distinct events, {by_relay} published by the relay",
        msgs.len(),
        ids.len()
    );
    assert_eq!(subjects, orders, "every order's event arrived");
    assert_eq!(ids.len(), 200, "one event per order");
    // Each event still names its order's own trace, whoever published it: the relay reads the
    // context from the row (the request that staged it is long gone).
    let traces: BTreeSet<String> = msgs
        .iter()
        .filter_map(|m| {
            let tp = attr(m, "ce-traceparent");
            (tp.len() == 55 && tp.starts_with("00-")).then(|| tp[3..35].to_owned())
        })
        .collect();
    assert_eq!(traces.len(), 200, "one trace per order, on every event");
    let set_aside: i64 = sys
        .sql()
        .await
        .query_one(
            "SELECT count(*) FROM tern_outbox WHERE set_aside_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(set_aside, 0, "an outage sets nothing aside");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_row_is_set_aside_and_blocks_nothing() {
    let mut sys = System::new().await;
    sys.set("OUTBOX_RETRY_BACKOFF", "50ms");
    sys.set("OUTBOX_SET_ASIDE_AFTER", "3");
    // The rows are seconds old; in production no row under an hour is set aside.
    sys.set("OUTBOX_SET_ASIDE_MIN_AGE", "0s");
    let relay = sys.start("outbox-relay");
    sys.subscribe("watch-orders", "orders").await;
    // 300 good rows, and among them one for a topic that does not exist: Pub/Sub answers
    // NOT_FOUND to every attempt.
    let db = sys.sql().await;
    let insert = "INSERT INTO tern_outbox (topic, event_id, event_type, source, subject, data)
                  VALUES ($1, $2, 'com.example.test.drill', '//tests', $3, '{}')";
    for i in 0..300 {
        if i == 150 {
            db.execute(insert, &[&"no-such-topic", &"poison", &"poison"])
                .await
                .unwrap();
        }
        let id = format!("good-{i}");
        db.execute(insert, &[&"orders", &id, &id]).await.unwrap();
    }
    let published = std::cell::Cell::new(0);
    let set_aside = std::cell::Cell::new(0);
    eventually(
        "the poison row set aside",
        Duration::from_secs(60),
        || async {
            let r: serde_json::Value = sys
                .http
                .post(format!("{relay}/internal/outbox/flush"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            published.set(published.get() + r["published"].as_u64().unwrap_or(0));
            set_aside.set(set_aside.get() + r["set_aside"].as_u64().unwrap_or(0));
            eprintln!("relay: {r}");
            if r["set_aside_total"] == 1 && r["pending"] == 0 {
                Some(())
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        },
    )
    .await;
    assert_eq!(published.get(), 300, "every good row published once");
    assert_eq!(set_aside.get(), 1);
    let row = db
        .query_one(
            "SELECT strikes, attempts, last_error, published_at IS NULL FROM tern_outbox
             WHERE event_id = 'poison'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert!(row.get::<_, bool>(3));
    let error: String = row.get(2);
    assert!(error.contains("no-such-topic"), "{error}");
    let msgs = sys
        .collect("watch-orders", 400, Duration::from_secs(3))
        .await;
    let ids: BTreeSet<String> = msgs.iter().map(|m| attr(m, "ce-id")).collect();
    assert_eq!((msgs.len(), ids.len()), (300, 300), "each good row once");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_hanging_gives_fast_503s_and_recovers() {
    let pg = own_postgres("pg-frozen").await;
    let emulator = own_emulator();
    let mut sys = System::on(&pg, &emulator.addr).await;
    // DB_WAIT_TIMEOUT and DB_CONNECT_TIMEOUT are 1 s in tests.
    sys.set("DB_STATEMENT_TIMEOUT", "2s");
    let create = sys.start("orders-create");
    let get = sys.start("orders-get");
    let o: serde_json::Value = sys
        .create_order(&create, &order_body())
        .await
        .json()
        .await
        .unwrap();
    let url = format!("{get}/api/orders/{}", o["id"].as_str().unwrap());
    // Warm both pools: every connection idle and trusted when the server freezes.
    for _ in 0..20 {
        assert_eq!(sys.http.get(&url).send().await.unwrap().status(), 200);
    }

    pg.freeze();
    let started = std::time::Instant::now();
    let calls = (0..24).map(|i| {
        let (http, url, create) = (&sys.http, &url, &create);
        async move {
            let t = std::time::Instant::now();
            let r = if i % 2 == 0 {
                http.get(url).timeout(Duration::from_secs(60)).send().await
            } else {
                http.post(format!("{create}/api/orders"))
                    .json(&order_body())
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
            };
            let r = r.expect("an answer");
            (
                r.status().as_u16(),
                r.headers().contains_key("retry-after"),
                t.elapsed(),
            )
        }
    });
    let answers = futures::future::join_all(calls).await;
    let slowest = answers.iter().map(|a| a.2).max().unwrap();
    eprintln!(
        "frozen PostgreSQL: {:?}; slowest answer {} ms, all in {} ms",
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        slowest.as_millis(),
        started.elapsed().as_millis()
    );
    for (status, retry_after, _) in &answers {
        assert_eq!((*status, *retry_after), (503, true));
    }
    let ready = sys
        .http
        .get(format!("{}/_tern/ready", sys.pod_url("orders-get")))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while the database hangs");

    pg.thaw();
    eventually(
        "recovery without a restart",
        Duration::from_secs(30),
        || async { (sys.http.get(&url).send().await.ok()?.status() == 200).then_some(()) },
    )
    .await;
    assert_eq!(sys.create_order(&create, &order_body()).await.status(), 201);
}

/// A consumer that hangs costs latency, never messages: each push it leaves unanswered is given
/// up at the ack deadline and retried, as Pub/Sub push does. Here every first attempt hangs,
/// more of them than the loop pushes at once: without the deadline the loop would hold all
/// its slots for ever and deliver nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_hangs_costs_latency_never_messages() {
    use axum::extract::State;
    let sys = System::new().await;
    let admin = tern_local::Admin::new(&sys.pubsub).await.unwrap();
    admin.topic("hangs").await.unwrap();
    admin.topic("hangs-dead-letter").await.unwrap();
    sys.subscribe("hangs-consumer", "hangs").await;
    sys.subscribe("hangs-dead-letters", "hangs-dead-letter")
        .await;

    #[derive(Clone, Default)]
    struct Seen {
        hung: Arc<AtomicUsize>,
        taken: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    }
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/push",
            axum::routing::post(
                |State(s): State<Seen>, axum::Json(push): axum::Json<serde_json::Value>| async move {
                    let attempt = push["deliveryAttempt"].as_u64().unwrap_or(0);
                    if attempt <= 1 {
                        s.hung.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                    let id = push["message"]["messageId"].as_str().unwrap_or("").to_owned();
                    s.taken.lock().unwrap().insert(id, attempt);
                    "ok"
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stop = tern_local::StopToken::default();
    let policy = tern_local::Policy {
        ack_deadline: Duration::from_secs(1),
        ..tern_local::Policy::new(tern_local::Mode::Push)
    };
    let target = tern_local::Target {
        subscription: "hangs-consumer".into(),
        topic: "hangs".into(),
        url,
    };
    let dlq = tern_events::EventPublisher::new(sys.pubsub.clone())
        .await
        .unwrap();
    tokio::spawn(tern_local::deliver(
        policy,
        sys.pubsub.clone(),
        target,
        dlq,
        stop.clone(),
    ));

    let publisher = sys.plain_publisher("hangs").await;
    let n = tern_local::PUSH_CONCURRENCY + 16;
    let mut published = BTreeSet::new();
    for i in 0..n {
        let m = google_cloud_pubsub::model::Message::new().set_data(format!("{i}").into_bytes());
        published.insert(publisher.publish(m).await.unwrap());
    }

    eventually(
        "every message taken on its second attempt",
        Duration::from_secs(60),
        || async { (seen.taken.lock().unwrap().len() == n).then_some(()) },
    )
    .await;
    stop.cancel();
    let taken = seen.taken.lock().unwrap().clone();
    assert_eq!(
        taken.keys().cloned().collect::<BTreeSet<_>>(),
        published,
        "every message, none other"
    );
    assert!(
        taken.values().all(|&a| a == 2),
        "each taken on the attempt after the one that hung: {taken:?}"
    );
    assert!(seen.hung.load(Ordering::SeqCst) >= n);
    let dead = sys
        .collect("hangs-dead-letters", 1, Duration::from_secs(2))
        .await;
    assert!(dead.is_empty(), "nothing was dead-lettered: {dead:?}");
}
