//! The migrate job: two at once are safe, a re-run is a no-op, an edited migration is refused.

use tern_e2e::*;

fn run_migrate(url: &str) -> std::process::Child {
    std::process::Command::new(bin_dir().join("migrate"))
        .env_clear()
        .env("DATABASE_URL", url)
        .env("TERN_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_runs_apply_each_migration_once() {
    let pg = Postgres::start(&scratch("pg-migrate"), 0).unwrap();
    tern_local::ensure_database(&pg.url("postgres"), "m")
        .await
        .unwrap();
    let url = pg.url("m");
    let runs: Vec<_> = (0..3).map(|_| run_migrate(&url)).collect();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let versions: Vec<i32> = db
        .query("SELECT version FROM tern_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let files = std::fs::read_dir(root().join("migrations"))
        .unwrap()
        .count();
    assert_eq!(versions.len(), files);
    assert_eq!(versions, (1..=files as i32).collect::<Vec<_>>());

    // Again: nothing to do.
    assert!(
        run_migrate(&url)
            .wait_with_output()
            .unwrap()
            .status
            .success()
    );

    // A run waits for the lock longer than its statement timeout, as documented: another session
    // holds it for 2 s while migrate runs with a 500 ms statement timeout.
    let (holder, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    holder
        .execute("SELECT pg_advisory_lock(1952805486)", &[])
        .await
        .unwrap();
    let waiting = std::process::Command::new(bin_dir().join("migrate"))
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("DB_STATEMENT_TIMEOUT", "500ms")
        .env("TERN_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    holder
        .execute("SELECT pg_advisory_unlock(1952805486)", &[])
        .await
        .unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An applied migration whose text changed is refused, with a message saying what to do.
    db.execute(
        "UPDATE tern_migrations SET checksum = 'edited' WHERE version = 1",
        &[],
    )
    .await
    .unwrap();
    let out = run_migrate(&url).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was edited after it was applied; add a new migration instead"),
        "{stderr}"
    );
}
