//! The container images, checked without a Docker engine: the Dockerfile's hardening, that the
//! binaries need nothing the distroless base lacks, and the whole system (functions and
//! `tern edge`) started the way the images and compose.yaml start it — as uid 65532, on a
//! read-only root filesystem, with no home directory, with the Compose file's environment — then
//! used through the router: an order created, read back, paid by an event.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_e2e::{System, bin_dir, free_port, order_body, publish_payment, root, table};

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    use serde::Deserialize;
    Value::deserialize(serde_norway::Deserializer::from_str(&read("compose.yaml")))
        .expect("compose.yaml")
}

#[test]
fn the_compose_file_is_rendered_from_the_route_table() {
    assert_eq!(
        read(tern_local::render::COMPOSE_YAML),
        tern_local::render::compose_yaml(&table()),
        "compose.yaml drifted from routes.toml: run scripts/render"
    );
    let services = compose()["services"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for f in &table().functions {
        let s = &services[&f.name];
        assert_eq!(s["user"], "65532:65532", "{}", f.name);
        assert_eq!(s["read_only"], true, "{}", f.name);
        assert_eq!(s["cap_drop"][0], "ALL", "{}", f.name);
    }
}

/// The `FROM`, `USER`, `ENTRYPOINT`, `LABEL` lines of each stage.
fn stages(dockerfile: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    let mut joined = String::new();
    for line in dockerfile.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        joined.push_str(line.trim_end_matches('\\'));
        if line.ends_with('\\') {
            continue;
        }
        let l = std::mem::take(&mut joined);
        if let Some(rest) = l.strip_prefix("FROM ") {
            current = rest
                .rsplit(" AS ")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
        if !current.is_empty() {
            out.entry(current.clone()).or_default().push(l);
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_small_hardened_images_from_pinned_bases() {
    let d = read("Dockerfile");
    assert!(
        d.starts_with("# syntax=docker/dockerfile:1"),
        "BuildKit syntax line"
    );
    for arg in d
        .lines()
        .filter(|l| l.starts_with("ARG ") && l.contains("_IMAGE="))
    {
        let digest = arg.split("@sha256:").nth(1).unwrap_or_default();
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "base image not pinned by digest: {arg}"
        );
    }
    assert!(
        d.contains("distroless/cc-debian12:nonroot@sha256:"),
        "a distroless runtime base"
    );
    assert!(d.contains("--mount=type=cache"), "dependency caching");
    let stages = stages(&d);
    for name in ["function", "edge", "pubsub-emulator"] {
        let lines = &stages[name];
        let has = |p: &str| lines.iter().any(|l| l.starts_with(p));
        assert!(
            lines[0].contains("${RUNTIME_IMAGE}"),
            "{name}: the distroless base"
        );
        assert!(
            lines.iter().any(|l| l == "USER 65532:65532"),
            "{name}: non-root"
        );
        assert!(
            !has("RUN "),
            "{name}: no RUN in a final stage (there is no shell)"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("ENTRYPOINT [\"")),
            "{name}: exec-form entrypoint"
        );
        // A function's image names its source hash, never the commit, so the same source keeps
        // its digest (scripts/source-hash, decision 0025); the local-only images name the commit.
        let identity = if name == "function" {
            "dev.tern.source-hash"
        } else {
            "org.opencontainers.image.revision"
        };
        for label in ["org.opencontainers.image.source", identity] {
            assert!(
                lines.iter().any(|l| l.contains(label)),
                "{name}: label {label}"
            );
        }
    }
}

#[test]
fn binaries_need_only_what_the_distroless_base_has() {
    // gcr.io/distroless/cc-debian12 ships glibc (libc, libm, ld-linux) and libgcc_s, nothing else.
    let allowed = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
    ];
    let mut names: Vec<String> = table().functions.iter().map(|f| f.name.clone()).collect();
    names.push("tern".into());
    for name in names {
        let out = Command::new("ldd")
            .arg(bin_dir().join(&name))
            .output()
            .expect("ldd");
        let text = String::from_utf8_lossy(&out.stdout);
        for lib in text.lines().filter_map(|l| l.split_whitespace().next()) {
            let base = lib.rsplit('/').next().unwrap_or(lib);
            assert!(
                allowed.contains(&base),
                "{name} needs {base}, which distroless/cc lacks"
            );
        }
    }
}

/// A process started as the image starts it: uid/gid 65532, the root filesystem read-only (a
/// read-only bind of / in a private mount namespace, chrooted into), an empty environment but
/// for `env`, and HOME pointing nowhere.
struct Sandboxed {
    child: Child,
    name: String,
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sandboxed(
    name: &str,
    bin: &Path,
    args: &[&str],
    env: &BTreeMap<String, String>,
    ro_root: &Path,
) -> Sandboxed {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut cmd = format!(
        "mount --rbind / {r} && mount -o remount,bind,ro {r} && exec chroot {r} setpriv --reuid=65532 --regid=65532 --clear-groups --no-new-privs env -i HOME=/nonexistent",
        r = quote(&ro_root.display().to_string())
    );
    for (k, v) in env {
        cmd.push_str(&format!(" {}={}", k, quote(v)));
    }
    cmd.push_str(&format!(" {}", quote(&bin.display().to_string())));
    for a in args {
        cmd.push_str(&format!(" {}", quote(a)));
    }
    let show = std::env::var_os("TERN_TEST_LOGS").is_some();
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &cmd])
        .stdin(Stdio::null())
        .stdout(if show {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(if show {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} sandboxed: {e}"));
    Sandboxed {
        child,
        name: name.to_owned(),
    }
}

async fn wait_ready(url: &str, who: &mut Sandboxed) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = who.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = who.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "{} exited ({status}) in the image's settings: {err}",
                who.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} not ready at {url}", who.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_runs_with_the_images_user_read_only_root_and_compose_environment() {
    let sys = System::new().await;
    let ro_root: PathBuf = tern_e2e::scratch("containers-root");
    let services = compose()["services"].clone();
    let mut running = Vec::new();
    let mut upstreams = Vec::new();
    for f in table()
        .functions
        .iter()
        .filter(|f| f.kind == tern_routes::Kind::Http)
    {
        // The Compose file's environment, with the addresses of this test's database and emulator.
        let mut env: BTreeMap<String, String> = services[&f.name]["environment"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect();
        let port = free_port();
        env.insert("DATABASE_URL".into(), sys.database_url.clone());
        env.insert(
            "PUBSUB_EMULATOR_HOST".into(),
            sys.pubsub.emulator_host.clone().unwrap_or_default(),
        );
        env.insert("PUBSUB_PROJECT".into(), sys.pubsub.project.clone());
        env.insert("PORT".into(), port.to_string());
        // Each container has its own 9464; here they share the host's loopback.
        env.insert("TERN_METRICS_PORT".into(), free_port().to_string());
        env.insert("TERN_BIND".into(), "127.0.0.1".into()); // loopback only in tests
        let mut p = sandboxed(&f.name, &bin_dir().join(&f.name), &[], &env, &ro_root);
        wait_ready(&format!("http://127.0.0.1:{port}/_tern/ready"), &mut p).await;
        upstreams.push(format!("{}=127.0.0.1:{port}", f.name));
        running.push(p);
    }

    // `tern edge` as its image runs it, with the route table where the image puts it.
    let edge_port = free_port();
    let listen = format!("127.0.0.1:{edge_port}");
    let mut args = vec![
        "edge",
        "--listen",
        listen.as_str(),
        "--schedule-seconds",
        "1",
    ];
    for u in &upstreams {
        args.extend(["--upstream", u.as_str()]);
    }
    let edge_env: BTreeMap<String, String> = [
        (
            "TERN_ROUTES",
            root().join("routes.toml").display().to_string(),
        ),
        (
            "PUBSUB_EMULATOR_HOST",
            sys.pubsub.emulator_host.clone().unwrap_or_default(),
        ),
        ("PUBSUB_PROJECT", sys.pubsub.project.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut edge = sandboxed(
        "tern edge",
        &bin_dir().join("tern"),
        &args,
        &edge_env,
        &ro_root,
    );
    let base = format!("http://{listen}");
    wait_ready(&format!("{base}/"), &mut edge).await;
    eprintln!("containers: tern edge routes; creating an order");

    // Through the router: create, read back, the home page.
    let created = sys.create_order(&base, &order_body()).await;
    assert_eq!(created.status(), 201);
    let order: Value = created.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    let got = sys
        .http
        .get(format!("{base}/api/orders/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(
        sys.http
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A payment event, delivered by `tern edge` to payments-events: the order becomes paid.
    publish_payment(&sys.pubsub, "container-pay-1", &id).await;
    eprintln!("containers: order {id} created and read; payment published");
    sys.until_paid(&base, &id, Duration::from_secs(20)).await;
    drop(edge);
    drop(running);
}
