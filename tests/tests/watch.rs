//! `tern dev --watch` as a user runs it (issue 17): saving a function's source rebuilds that
//! function alone and swaps it in as a revision swap does, under load through the router and
//! queue-proxy, with no failed request; a change under `shared/` swaps every function built
//! from that crate and no other.
//!
//! The saves are real edits of this repository's sources (a comment appended, then removed;
//! the file is restored however the test ends), built by Cargo into `target/debug` as
//! `scripts/dev` builds. So this file is a test binary of its own: Cargo runs test binaries one
//! at a time, and no other test starts a function while one is being rebuilt.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tern_e2e::*;

/// Kills `tern dev` however the test ends (its functions die with it).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An edited source file, put back as it was when dropped.
struct Edit {
    path: PathBuf,
    original: String,
}

impl Edit {
    /// Appends a comment to `rel` (a save that changes the crate but not what it does).
    fn append_comment(rel: &str) -> Self {
        Self::append(
            rel,
            "// tests/watch.rs: a save while tern dev --watch runs\n",
        )
    }

    /// Appends `text` to `rel`.
    fn append(rel: &str, text: &str) -> Self {
        let path = root().join(rel);
        let original = std::fs::read_to_string(&path).expect("the source file");
        std::fs::write(&path, format!("{original}{text}")).expect("edit the source");
        Self { path, original }
    }
}

impl Drop for Edit {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.original).expect("restore the source");
    }
}

/// The functions whose swap lines `tern dev` has printed in `out` since byte `from`.
fn swapped(out: &Path, from: usize) -> Vec<String> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("| swapped: the new build serves"))
        .map(|l| l.split('|').next().unwrap_or("").trim().to_owned())
        .collect()
}

fn len(out: &Path) -> usize {
    std::fs::metadata(out).map_or(0, |m| m.len() as usize)
}

/// Waits until `want` have been swapped since `from` (and the build after a save has finished).
async fn until_swapped(dev: &mut Running, out: &Path, from: usize, want: &BTreeSet<String>) {
    eventually(
        "the rebuilt functions swapped in",
        Duration::from_secs(600),
        || {
            if let Ok(Some(status)) = dev.0.try_wait() {
                panic!(
                    "tern dev exited ({status}): {}",
                    std::fs::read_to_string(out).unwrap_or_default()
                );
            }
            let seen: BTreeSet<String> = swapped(out, from).into_iter().collect();
            async move { (seen.is_superset(want)).then_some(()) }
        },
    )
    .await;
}

/// Saves (`save`), then waits until exactly the functions in `want` have been swapped; returns
/// what `tern dev` printed meanwhile.
async fn after_save(
    dev: &mut Running,
    out: &Path,
    want: &BTreeSet<String>,
    save: impl FnOnce(),
) -> String {
    let from = len(out);
    save();
    until_swapped(dev, out, from, want).await;
    let text = std::fs::read_to_string(out).unwrap();
    let after = text[from..].to_owned();
    // What the build said it would swap, whole: a function swapped by mistake is listed there
    // even before its own line is printed.
    let listed: BTreeSet<String> = after
        .lines()
        .filter_map(|l| l.split_once("; swapping "))
        .flat_map(|(_, names)| names.split(", ").map(|n| n.trim().to_owned()))
        .collect();
    assert_eq!(&listed, want, "{after}");
    let seen: BTreeSet<String> = swapped(out, from).into_iter().collect();
    assert_eq!(&seen, want, "{after}");
    after
}

#[tokio::test(flavor = "multi_thread")]
async fn a_save_rebuilds_and_swaps_only_what_changed_with_no_failed_request() {
    let sys = System::new().await;
    let emulator = sys.pubsub.emulator_host.clone().unwrap();
    let port = free_port();
    let dir = scratch("tern-watch");
    let out = dir.join("stdout");
    let mut cmd = Command::new(bin_dir().join("tern"));
    cmd.current_dir(root())
        .args(["dev", "--watch", "--port", &port.to_string()])
        .args(["--function-port", &free_port().to_string()])
        .args(["--prometheus-port", "0", "--bin-dir"])
        .arg(bin_dir())
        .env("DATABASE_URL", &sys.database_url)
        .env("PUBSUB_EMULATOR_HOST", &emulator)
        .env("TERN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    let mut dev = Running(cmd.spawn().expect("spawn tern dev --watch"));
    let base = format!("http://127.0.0.1:{port}");
    eventually("the router serving GET /", Duration::from_secs(90), || {
        if let Ok(Some(status)) = dev.0.try_wait() {
            panic!(
                "tern dev exited early ({status}): {}",
                std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
            );
        }
        let http = sys.http.clone();
        let base = base.clone();
        async move {
            let res = http.get(format!("{base}/")).send().await.ok()?;
            (res.status() == 200).then_some(())
        }
    })
    .await;
    eventually("the watch started", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        async move { text.contains("watching functions/").then_some(()) }
    })
    .await;
    let res = sys.create_order(&base, &order_body()).await;
    assert_eq!(res.status(), 201);
    let order: serde_json::Value = res.json().await.unwrap();
    let url = format!("{base}/api/orders/{}", order["id"].as_str().unwrap());

    // Load on orders-get through the router for the whole test: 8 clients, back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, url, stop) = (sys.http.clone(), url.clone(), stop.clone());
        let (ok, failed, failures) = (ok.clone(), failed.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{:?}", other.map(|r| r.status())));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A save in orders-get: that function alone is rebuilt and swapped; then the save undone,
    // which is a save too.
    let only_get = BTreeSet::from(["orders-get".to_owned()]);
    let mut edit = None;
    let app = "functions/orders-get/src/app.rs";
    for save in [true, false] {
        after_save(&mut dev, &out, &only_get, || {
            edit = save.then(|| Edit::append_comment(app));
        })
        .await;
    }

    // A save that does not compile: the build fails, the previous build keeps serving, and the
    // save that fixes it is swapped in.
    let from = len(&out);
    edit = Some(Edit::append(app, "fn broken( {}\n"));
    eventually(
        "the failed build reported",
        Duration::from_secs(300),
        || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let after = text.get(from..).unwrap_or("").to_owned();
            async move {
                after
                    .contains("still serving the previous build")
                    .then_some(())
            }
        },
    )
    .await;
    assert!(swapped(&out, from).is_empty(), "nothing swapped");
    after_save(&mut dev, &out, &only_get, || edit = None).await;

    // A save in a shared crate: every function built from it is swapped, and no other
    // (outbox-relay does not use orders-domain); then the save undone.
    let uses_domain: BTreeSet<String> = [
        "orders-create",
        "orders-get",
        "orders-list",
        "payments-events",
        "web",
    ]
    .map(str::to_owned)
    .into();
    for save in [true, false] {
        after_save(&mut dev, &out, &uses_domain, || {
            edit = save.then(|| Edit::append_comment("shared/orders-domain/src/lib.rs"));
        })
        .await;
    }

    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("{ok} requests answered 200 across 5 swap rounds, {failed} failed");
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(failed, 0, "{:?}", failures.lock().unwrap());

    // The time from the save to the new build serving is printed for each swap.
    let text = std::fs::read_to_string(&out).unwrap();
    let timings = text
        .lines()
        .filter(|l| l.contains("serves") && l.contains("s after the save (build"))
        .count();
    assert_eq!(
        timings,
        2 + 1 + 2 * 5,
        "a swap line per swap, and no other swap: {text}"
    );
    // Ctrl-C: the swapped-out pods still draining are cut short; tern dev exits 0.
    let pid = i32::try_from(dev.0.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = eventually("tern dev exiting", Duration::from_secs(90), || {
        let exited = dev.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&out).unwrap()
    );
}
