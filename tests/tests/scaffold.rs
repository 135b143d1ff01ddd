//! `tern new` as a user runs it: in a copy of the repository, an HTTP function and an event
//! function are scaffolded with the real CLI, then built and tested with `cargo test`, warnings
//! denied. Their generated tests must pass as generated, and the route table must take them.

use std::path::Path;
use std::process::Command;
use tern_e2e::*;

/// Copies the files git knows (tracked, or new and not ignored) from `from` to `to`.
fn copy_repository(from: &Path, to: &Path) {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(from)
        .output()
        .expect("git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    for path in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = Path::new(std::str::from_utf8(path).expect("a UTF-8 path"));
        let src = from.join(rel);
        if !src.is_file() {
            continue; // deleted in the working tree
        }
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    }
}

fn tern_new(repo: &Path, args: &[&str]) {
    let out = Command::new(bin_dir().join("tern"))
        .arg("new")
        .args(args)
        .current_dir(repo)
        .output()
        .expect("tern new");
    assert!(
        out.status.success(),
        "tern new {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn both_templates_build_and_pass_their_generated_tests() {
    let repo = scratch("scaffold");
    copy_repository(&root(), &repo);
    tern_new(&repo, &["stock-check", "--route", "GET /api/stock/{sku}"]);
    tern_new(&repo, &["order-audit", "--event", "orders"]);

    let table = tern_routes::RouteTable::load(&repo.join("routes.toml")).expect("routes.toml");
    assert!(table.function("stock-check").is_some());
    let audit = table.function("order-audit").expect("order-audit");
    assert_eq!(audit.subscriptions[0].topic, "orders");

    // Its own target directory: the one `cargo test` is running from is locked while it runs.
    // Kept between runs (target/scaffold), so only the first run builds the dependencies; no
    // debug info and no incremental state keep it near 0.75 GB. On CI, where every machine is
    // new, it is removed afterwards.
    let target = root().join("target/scaffold");
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.arg(args[0])
            .args(["-p", "stock-check", "-p", "order-audit"])
            .args(&args[1..])
            .current_dir(&repo)
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTFLAGS", "-D warnings")
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .env("CARGO_INCREMENTAL", "0")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_MANIFEST_DIR");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cargo {args:?}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    };
    // As scripts/test checks every crate: laid out as cargo fmt lays it out, clippy-clean under
    // the workspace's lints, then its tests.
    cargo(&["fmt", "--check"]);
    cargo(&[
        "clippy",
        "--offline",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    let stdout = cargo(&["test", "--offline"]);
    // The HTTP function's two tests and the event function's three, each file reported apart.
    for (passed, what) in [("2 passed", "stock-check"), ("3 passed", "order-audit")] {
        assert!(
            stdout.contains(&format!("test result: ok. {passed}")),
            "{what}: expected `{passed}`:\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&repo);
    if std::env::var_os("CI").is_some() {
        let _ = std::fs::remove_dir_all(&target);
    }
}
