//! Reads over shared connections (`Db::read`, `shared/tern-db/src/reads.rs`) against a real
//! PostgreSQL: a read has a connection to itself while one is free, shares one once none is,
//! never more than `DB_READS_PER_CONNECTION` on one, never joins while a transaction waits, and
//! never joins a connection that broke.

use std::collections::HashMap;
use std::time::Duration;
use tern_db::{Db, DbResultExt, GenericClient};
use tern_e2e::*;

async fn db(pg: &Postgres, pairs: &[(&str, &str)]) -> Db {
    let url = pg.url("postgres");
    let mut all = vec![("DATABASE_URL", url.as_str())];
    all.extend_from_slice(pairs);
    let env = tern::Env::from_pairs(all.iter().copied());
    Db::from_config(&tern_db::DbConfig::from_env(&env).await.unwrap()).unwrap()
}

/// The backend process serving `c`: which connection a read is on.
async fn pid<C: GenericClient>(c: &C) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..500 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 5 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_share_connections_only_once_none_is_free_and_never_starve_a_transaction() {
    let pg = Postgres::start(&scratch("reads-share"), 0).unwrap();
    let db = db(
        &pg,
        &[
            ("DB_POOL_SIZE", "2"),
            ("DB_READS_PER_CONNECTION", "3"),
            ("DB_WAIT_TIMEOUT", "30s"),
        ],
    )
    .await;

    // While a connection is free, each read has one to itself.
    let r1 = db.read().await.unwrap();
    let r2 = db.read().await.unwrap();
    let (a, b) = (pid(&*r1).await, pid(&*r2).await);
    assert_ne!(a, b);
    assert_eq!(db.reads(), (2, 2));

    // None free: the next four share them, the least busy first, three reads at most on each;
    // their queries run at once, pipelined on the two connections.
    let mut more = Vec::new();
    for _ in 0..4 {
        more.push(db.read().await.unwrap());
    }
    assert_eq!(db.reads(), (2, 6));
    let pids = futures::future::join_all(more.iter().map(|r| pid(&**r))).await;
    let mut on = HashMap::new();
    for p in pids.iter().chain([&a, &b]) {
        *on.entry(*p).or_insert(0) += 1;
    }
    assert_eq!(on, HashMap::from([(a, 3), (b, 3)]));
    drop(more);
    assert_eq!(db.reads(), (2, 2));

    // A transaction waits for the pool: from then on reads queue behind it instead of joining
    // the connections that have room, so the lent ones drain and it is served first.
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut client = db.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let p: i32 = tx
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            tx.commit().await.unwrap();
            (client, p)
        })
    };
    until("the transaction waiting", || db.status().waiting == 1).await;
    let reader = {
        let db = db.clone();
        tokio::spawn(async move {
            let r = db.read().await.unwrap();
            let p = pid(&*r).await;
            (r, p)
        })
    };
    until("the read queued behind it", || db.status().waiting == 2).await;
    assert_eq!(
        db.reads(),
        (2, 2),
        "the read joined while a transaction waited"
    );
    drop(r1);
    let (writer_client, writer_pid) = writer.await.unwrap();
    assert_eq!(
        writer_pid, a,
        "the transaction got the connection that drained"
    );
    assert!(!reader.is_finished(), "the read overtook the transaction");
    drop(r2);
    let (read, read_pid) = reader.await.unwrap();
    assert_eq!(read_pid, b);
    assert_eq!(db.reads(), (1, 1));
    drop((read, writer_client));
    assert_eq!(db.reads(), (0, 0));
    assert_eq!(db.status().available, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_queued_for_the_pool_takes_room_on_a_lent_connection_as_soon_as_there_is() {
    let pg = Postgres::start(&scratch("reads-room"), 0).unwrap();
    let db = db(
        &pg,
        &[
            ("DB_POOL_SIZE", "1"),
            ("DB_READS_PER_CONNECTION", "2"),
            ("DB_WAIT_TIMEOUT", "30s"),
        ],
    )
    .await;
    let r1 = db.read().await.unwrap();
    let r2 = db.read().await.unwrap();
    let a = pid(&*r1).await;
    assert_eq!(pid(&*r2).await, a);
    // The only connection is full: a third read queues for the pool...
    let third = {
        let db = db.clone();
        tokio::spawn(async move {
            let r = db.read().await.unwrap();
            let p = pid(&*r).await;
            (r, p)
        })
    };
    until("the third read queued", || db.status().waiting == 1).await;
    // ...and takes the room the second leaves, with the first still running: it does not wait
    // for the connection to come back, and it leaves the queue.
    drop(r2);
    let (r3, p) = third.await.unwrap();
    assert_eq!(p, a);
    assert_eq!(db.reads(), (1, 2));
    assert_eq!(db.status().waiting, 0);
    drop((r1, r3));
    assert_eq!(db.reads(), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_answers_503_and_one_read_per_connection_turns_sharing_off() {
    let pg = Postgres::start(&scratch("reads-full"), 0).unwrap();
    for (per_connection, held) in [("2", 4), ("1", 2)] {
        let db = db(
            &pg,
            &[
                ("DB_POOL_SIZE", "2"),
                ("DB_READS_PER_CONNECTION", per_connection),
                ("DB_WAIT_TIMEOUT", "200ms"),
                ("DB_RETRY_AFTER", "3s"),
            ],
        )
        .await;
        let mut reads = Vec::new();
        for _ in 0..held {
            reads.push(db.read().await.unwrap());
        }
        let pids: std::collections::HashSet<i32> =
            futures::future::join_all(reads.iter().map(|r| pid(&**r)))
                .await
                .into_iter()
                .collect();
        assert_eq!(pids.len(), 2, "DB_READS_PER_CONNECTION={per_connection}");
        let full = db.read().await.unwrap_err();
        assert_eq!(full.status(), 503);
        assert!(
            full.detail().unwrap().contains("busy"),
            "{:?}",
            full.detail()
        );
        drop(reads);
        // Given back, the connections serve the next read.
        assert!(pid(&*db.read().await.unwrap()).await > 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_connection_that_breaks_fails_its_reads_with_503_and_is_not_joined() {
    let pg = Postgres::start(&scratch("reads-broken"), 0).unwrap();
    let db = db(
        &pg,
        &[
            ("DB_POOL_SIZE", "1"),
            ("DB_READS_PER_CONNECTION", "4"),
            ("DB_WAIT_TIMEOUT", "200ms"),
        ],
    )
    .await;
    let r1 = db.read().await.unwrap();
    let r2 = db.read().await.unwrap();
    let a = pid(&*r1).await;
    assert_eq!(pid(&*r2).await, a);

    let admin = db.get().await;
    assert!(admin.is_err(), "the only connection is lent to reads");
    let (killer, conn) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&a])
        .await
        .unwrap();
    until("the driver seeing the connection closed", || r1.is_closed()).await;
    // Both reads on it fail as the database being unavailable: 503, nothing changed.
    for r in [&r1, &r2] {
        let e = r.query_one("SELECT 1", &[]).await.or_problem().unwrap_err();
        assert_eq!(e.status(), 503);
    }
    // A new read does not join the broken connection: with the pool's only one still lent, it
    // waits and gets the pool's 503.
    assert_eq!(db.read().await.unwrap_err().status(), 503);
    drop((r1, r2));
    // Back in the pool, the broken connection is discarded and a new one made.
    let r3 = db.read().await.unwrap();
    assert_ne!(pid(&*r3).await, a);
}
