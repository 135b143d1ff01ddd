//! The shape the architecture promises (docs/architecture.md, "Three faces"), checked so it stays:
//! a function's `main.rs` is a few lines, the `tern` command has no library face, function
//! processes start through `tern-local`, and the bench harness has no module over 400 lines.

use std::path::Path;
use tern_e2e::root;

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_function_main_is_at_most_ten_lines() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("functions"))
        .unwrap()
        .flatten()
    {
        let main = entry.path().join("src/main.rs");
        let lines = std::fs::read_to_string(&main).unwrap().lines().count();
        assert!(lines <= 10, "{} has {lines} lines", main.display());
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} functions found");
}

#[test]
fn the_command_is_only_a_command() {
    let cli = root().join("shared/tern-cli");
    assert!(
        !cli.join("src/lib.rs").exists(),
        "tern-cli must not grow a library face"
    );
    for manifest in ["tests/Cargo.toml", "bench/Cargo.toml"] {
        let text = std::fs::read_to_string(root().join(manifest)).unwrap();
        assert!(
            !text.contains("tern-cli"),
            "{manifest} depends on tern-cli; use tern-local"
        );
    }
}

#[test]
fn functions_start_through_tern_local() {
    // A function process is started by `FunctionProcess::spawn` (tern-local), called by the
    // local world and by the test harness's `System` — nowhere else; and Pub/Sub settings come
    // from `PubSubConfig::emulator` or `from_env`, never a struct literal.
    for dir in ["shared", "tests", "bench"] {
        for file in rust_files(&root().join(dir)) {
            let rel = file
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with("shared/tern-local/") || rel == "tests/tests/shape.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            if rel != "tests/src/lib.rs" {
                assert!(
                    !text.contains("FunctionProcess::spawn"),
                    "{rel} starts a function itself; use World or the test System"
                );
            }
            if !rel.starts_with("shared/tern-events/") {
                assert!(
                    !writes_out_pubsub_config(&text),
                    "{rel} writes out a PubSubConfig; use PubSubConfig::emulator or from_env"
                );
            }
        }
    }
}

/// `PubSubConfig { project: ..., ... }`, not `-> PubSubConfig {`.
fn writes_out_pubsub_config(text: &str) -> bool {
    text.match_indices("PubSubConfig {")
        .any(|(at, m)| text[at + m.len()..].trim_start().starts_with("project"))
}

#[test]
fn bench_modules_stay_under_400_lines() {
    for file in rust_files(&root().join("bench/src")) {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 400, "{} has {lines} lines", file.display());
    }
}

/// A function links Google's Pub/Sub client only when `routes.toml` says it publishes, and the
/// Secret Manager client only when it declares secrets (issue 17): the others start faster and
/// are smaller. Read from the symbols of the binaries this test run built.
#[test]
fn a_function_links_only_the_google_clients_it_declares() {
    let table = tern_e2e::table();
    let symbols = |name: &str, crate_name: &str| {
        let out = std::process::Command::new("nm")
            .arg(tern_e2e::bin_dir().join(name))
            .output()
            .expect("nm (binutils)");
        assert!(out.status.success(), "nm {name}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(crate_name))
            .count()
    };
    let mut seen = Vec::new();
    for f in &table.functions {
        let pubsub = symbols(&f.name, "google_cloud_pubsub");
        let secrets = symbols(&f.name, "google_cloud_secretmanager");
        seen.push(format!(
            "{}: pubsub {pubsub}, secretmanager {secrets}",
            f.name
        ));
        assert_eq!(
            pubsub > 0,
            !f.publishes.is_empty(),
            "{}: {pubsub} Pub/Sub client symbols, publishes {:?}",
            f.name,
            f.publishes
        );
        assert_eq!(
            secrets > 0,
            !f.secrets.is_empty(),
            "{}: {secrets} Secret Manager client symbols, secrets {:?} (tern_secret_manager::install() in main)",
            f.name,
            f.secrets
        );
    }
    eprintln!("{}", seen.join("\n"));
}
