//! The operations scripts in dry-run mode (their default): each answers --help, prints every
//! command it would run for the chosen environment and cluster, refuses bad arguments, and every
//! `kn` command it prints is accepted by the real `kn` (built by scripts/tools), flags included.

use std::process::Command;
use tern_e2e::root;

/// Runs a script; returns (exit code, stdout, stderr).
fn script(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(root().join("scripts").join(name))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run script");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The printed commands (`+ cmd args...`), split into argv the way bash would.
fn commands(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("+ "))
        .map(|line| {
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!("printf '%s\\0' {line}"))
                .output()
                .expect("bash");
            String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// kn parses its flags before --help, so an unknown subcommand or flag fails here.
fn kn_accepts(argv: &[String]) {
    let kn = root().join(".local/bin/kn");
    assert!(
        kn.exists(),
        "run scripts/tools: {} is missing",
        kn.display()
    );
    let out = Command::new(&kn)
        .args(&argv[1..])
        .arg("--help")
        .output()
        .expect("kn");
    assert!(
        out.status.success(),
        "kn rejects {argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn every_script_answers_help() {
    for name in [
        "canary",
        "rollback",
        "pin-scale",
        "autosync",
        "replay-dead-letters",
        "failover",
        "failback",
        "secret-init",
    ] {
        let (code, out, _) = script(name, &["--help"]);
        assert_eq!(code, 0, "{name} --help");
        assert!(
            out.contains(&format!("scripts/{name}")),
            "{name} --help: {out}"
        );
        assert!(
            out.contains("--execute"),
            "{name} --help must say how to run for real"
        );
    }
}

#[test]
fn dry_runs_print_every_command_and_run_none() {
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "rollback",
            vec!["web", "--env", "prod"],
            vec![
                "kubectl",
                "kn revision list",
                "kn service update web",
                "--traffic",
            ],
        ),
        (
            "rollback",
            vec!["web", "web-00003", "--env", "staging"],
            vec![
                "--traffic web-00003=100",
                "gke_tern-staging_europe-west1_tern-staging-primary",
            ],
        ),
        (
            "canary",
            vec!["start", "orders-get", DIGEST],
            vec!["kn revision list -s orders-get"],
        ),
        (
            "canary",
            vec!["smoke", "web", "/"],
            vec![
                "-n knative-serving port-forward svc/kourier-internal 18080:80",
                "Host: web.tern.svc.cluster.local -H Knative-Serving-Tag: candidate http://127.0.0.1:18080/",
            ],
        ),
        (
            "canary",
            vec!["shift", "web", "10"],
            vec!["candidate=10,current=90"],
        ),
        ("canary", vec!["promote", "web"], vec!["candidate=100"]),
        (
            "canary",
            vec!["status", "web", "--env", "dev"],
            vec!["kn service describe web"],
        ),
        (
            "pin-scale",
            vec!["web", "3"],
            vec![
                "--scale-min 3",
                "{\"spec\":{\"syncPolicy\":{\"automated\":null}}}",
                "tern.dev/sync-suspended=",
            ],
        ),
        (
            "autosync",
            vec!["suspend", "--reason", "a drill", "--cluster", "standby"],
            vec![
                "tern-functions-tern-prod-standby",
                "{\"spec\":{\"syncPolicy\":{\"automated\":null}}}",
                ": a drill",
                "--context=gke_tern-prod_europe-west4_tern-prod-standby -n argocd",
            ],
        ),
        (
            "autosync",
            vec!["resume"],
            vec![
                "{\"automated\":{\"prune\":true,\"selfHeal\":true}}",
                "tern.dev/sync-suspended-",
                "refresh=hard",
            ],
        ),
        (
            "failover",
            vec![],
            vec![
                "gcloud sql instances promote-replica tern-prod-replica",
                "gcloud scheduler jobs resume outbox-relay-standby --location=europe-west4",
                "kn service update web -n tern --context=gke_tern-prod_europe-west4_tern-prod-standby --scale-min 1",
                "gcloud dns record-sets update orders.example.com.",
            ],
        ),
        (
            "failover",
            vec!["status"],
            vec!["tern-prod-replica", "kn service list"],
        ),
        (
            "failback",
            vec!["--new-replica", "tern-prod-b"],
            vec![
                "gcloud sql instances patch tern-prod --project=tern-prod --quiet --activation-policy=NEVER",
                "state mv module.tern.module.cloudsql.google_sql_database_instance.replica[0] module.tern.module.cloudsql.google_sql_database_instance.primary",
                "writer_region = \"standby\", replica = \"tern-prod-b\"",
                "gcloud sql instances patch tern-prod-replica --project=tern-prod --quiet --activation-policy=NEVER",
                "gcloud sql instances promote-replica tern-prod-b",
                "gcloud scheduler jobs resume outbox-relay --location=europe-west1",
                "gcloud compute addresses describe tern-prod-ip --global",
                "kn service list -n tern --context=gke_tern-prod_europe-west1_tern-prod-primary",
            ],
        ),
        (
            "replay-dead-letters",
            vec!["payments", "--limit", "3"],
            vec![
                "payments-dead-letter-inspect",
                "--limit=3",
                "topics publish",
                "subscriptions ack",
            ],
        ),
    ];
    let mut kn_checked = 0;
    for (name, args, expect) in cases {
        let (code, out, err) = script(name, &args);
        assert_eq!(code, 0, "{name} {args:?}: {err}");
        assert!(
            out.starts_with("# dry run"),
            "{name} {args:?} must default to a dry run: {out}"
        );
        let cmds = commands(&out);
        assert!(!cmds.is_empty(), "{name} {args:?} printed no command");
        let joined = cmds
            .iter()
            .map(|c| c.join(" "))
            .collect::<Vec<_>>()
            .join("\n");
        for e in expect {
            assert!(joined.contains(e), "{name} {args:?}: no {e:?} in\n{joined}");
        }
        for c in cmds.iter().filter(|c| c[0] == "kn") {
            kn_accepts(c);
            kn_checked += 1;
        }
    }
    assert!(kn_checked >= 10, "only {kn_checked} kn commands checked");
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("rollback", vec!["web", "--env", "qa"], "--env must be"),
        (
            "autosync",
            vec![
                "suspend",
                "--reason",
                "x",
                "--env",
                "dev",
                "--cluster",
                "standby",
            ],
            "dev has no standby cluster",
        ),
        ("autosync", vec!["stop"], "suspend, resume or status"),
        ("autosync", vec!["suspend"], "suspend needs --reason"),
        ("pin-scale", vec!["web", "many"], "MIN must be a number"),
        (
            "secret-init",
            vec!["Web_Csrf"],
            "SECRET_ID must be a Secret Manager id",
        ),
        ("canary", vec!["start", "web", "latest"], "sha256"),
        ("canary", vec!["shift", "web", "150"], "PERCENT"),
        (
            "replay-dead-letters",
            vec!["nosuchtopic"],
            "no topic nosuchtopic",
        ),
        ("failover", vec!["sideways"], "failover (default) or status"),
        (
            "failover",
            vec!["--steps", "8"],
            "--steps must list steps 1 to 7",
        ),
        (
            "failover",
            vec!["--steps", "1,,2"],
            "--steps must list steps 1 to 7",
        ),
        ("failover", vec!["--steps", "7-5"], "runs backwards"),
        (
            "failback",
            vec!["--env", "staging"],
            "staging has no standby region",
        ),
        (
            "failback",
            vec!["--steps", "10"],
            "--steps must list steps 1 to 9",
        ),
        (
            "failback",
            vec!["--new-replica", "tern-prod"],
            "must be three instances",
        ),
        (
            "failback",
            vec!["--new-replica", "Tern_Prod"],
            "not a Cloud SQL instance name",
        ),
        ("failback", vec!["now"], "unexpected now"),
        ("failover", vec!["--steps"], "--steps needs a list"),
        (
            "failover",
            vec!["status", "--steps", "3"],
            "--steps is for the failover",
        ),
    ];
    for (name, args, says) in cases {
        let (code, out, err) = script(name, &args);
        assert_ne!(code, 0, "{name} {args:?} accepted: {out}");
        assert!(err.contains(says), "{name} {args:?}: {err}");
        assert!(
            !out.contains("\n+ "),
            "{name} {args:?} printed commands before refusing"
        );
    }
}

/// The failback's order, as printed: the old primary is fenced (its scheduler paused, then the
/// instance stopped) before any other command, and writes stop on the serving instance before
/// the new replica is promoted and DNS moves back.
#[test]
fn the_failback_fences_first_and_stops_writes_before_promoting() {
    let (code, out, err) = script("failback", &["--new-replica", "tern-prod-b"]);
    assert_eq!(code, 0, "{err}");
    let cmds: Vec<String> = commands(&out).iter().map(|c| c.join(" ")).collect();
    let at = |needle: &str| {
        cmds.iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {cmds:#?}"))
    };
    assert!(
        cmds[0].starts_with("gcloud scheduler jobs pause outbox-relay --location=europe-west1")
    );
    let fence = at("patch tern-prod --project=tern-prod --quiet --activation-policy=NEVER");
    let rebuild = at("tofu -chdir=");
    let stop_writes =
        at("patch tern-prod-replica --project=tern-prod --quiet --activation-policy=NEVER");
    let promote = at("promote-replica tern-prod-b");
    let dns = at("gcloud dns record-sets update");
    assert!(fence < rebuild && rebuild < stop_writes && stop_writes < promote && promote < dns);
    // Each fence is checked, not assumed.
    assert!(out.contains("describe tern-prod --project=tern-prod --format=value\\(settings.activationPolicy\\,state\\)"), "{out}");
}

/// A rehearsal needs only an environment with a standby: the scripts take their names from the
/// environment's values and tfvars. Here staging gets one (env/staging-standby.yaml, as docs/
/// operations.md says) in a copy of the repository's scripts and values.
#[test]
fn a_rehearsal_runs_wherever_an_environment_has_a_standby() {
    let tree = tern_e2e::scratch("ops-rehearsal");
    let copy = |rel: &str| {
        let to = tree.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let ok = Command::new("cp")
            .args(["-r"])
            .arg(root().join(rel))
            .arg(&to)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp {rel}");
    };
    copy("scripts");
    copy("knative/chart/tern-functions/env");
    for env in ["dev", "staging", "prod"] {
        copy(&format!("infra/envs/{env}/terraform.tfvars"));
    }
    std::fs::write(
        tree.join("knative/chart/tern-functions/env/staging-standby.yaml"),
        "cluster: standby\nregion: europe-west4\nscale:\n  allAtZero: true\ndatabase:\n  host: 10.20.32.5\n  replica: true\n",
    )
    .unwrap();
    let run = |name: &str, args: &[&str]| {
        let out = Command::new(tree.join("scripts").join(name))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        commands(&stdout)
            .iter()
            .map(|c| c.join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let over = run("failover", &["--env", "staging"]);
    for want in [
        "gcloud sql instances promote-replica tern-staging-replica --project=tern-staging",
        "gcloud scheduler jobs pause outbox-relay --location=europe-west1 --project=tern-staging",
        "gcloud scheduler jobs resume outbox-relay-standby --location=europe-west4 --project=tern-staging",
        "kn service update web -n tern --context=gke_tern-staging_europe-west4_tern-staging-standby --scale-min 1",
        "gcloud dns record-sets update staging.orders.example.com. --type=A --ttl=60 --zone=tern-staging",
        "gcloud compute addresses describe tern-staging-standby-ip",
    ] {
        assert!(over.contains(want), "no {want:?} in\n{over}");
    }
    assert!(!over.contains("tern-prod"), "{over}");
    let back = run(
        "failback",
        &["--env", "staging", "--new-replica", "tern-staging-b"],
    );
    for want in [
        "gcloud sql instances patch tern-staging --project=tern-staging --quiet --activation-policy=NEVER",
        "tofu -chdir=",
        "infra/envs/staging init",
        "gcloud sql instances promote-replica tern-staging-b --project=tern-staging",
        "gcloud dns record-sets update staging.orders.example.com.",
    ] {
        assert!(back.contains(want), "no {want:?} in\n{back}");
    }
    assert!(!back.contains("tern-prod"), "{back}");
    let heal = run(
        "autosync",
        &[
            "suspend",
            "--reason",
            "rehearsal",
            "--env",
            "staging",
            "--cluster",
            "standby",
        ],
    );
    assert!(
        heal.contains("--context=gke_tern-staging_europe-west4_tern-staging-standby -n argocd patch application tern-functions-tern-staging-standby"),
        "{heal}"
    );
}

/// Writes an executable script.
fn executable(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `scripts/failback --execute` against stand-ins for gcloud, tofu, curl and kn that log each
/// call and answer as those tools print (gcloud's `value(...)` fields tab-separated, a replica's
/// master as `project:instance`): every step runs, in order, and a check that reads the wrong
/// answer stops the script before the next command.
#[test]
fn the_failback_executes_and_stops_at_a_wrong_answer() {
    let dir = tern_e2e::scratch("failback-execute");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls");
    executable(
        &bin.join("gcloud"),
        &format!(
            r#"#!/usr/bin/env bash
echo "gcloud $*" >> {log}
args="$*"
case "$args" in
  *"auth print-access-token"*) echo token ;;
  *"scheduler jobs describe"*) echo PAUSED ;;
  *"value(settings.activationPolicy,state)"*) printf '%s\t%s\n' "${{FAKE_POLICY:-NEVER}}" STOPPED ;;
  *"value(state,masterInstanceName)"*) printf 'RUNNABLE\ttern-prod:tern-prod-replica\n' ;;
  *"value(instanceType,settings.availabilityType"*) printf 'CLOUD_SQL_INSTANCE\tREGIONAL\tTrue\n' ;;
  *"value(instanceType,state)"*) printf 'CLOUD_SQL_INSTANCE\tRUNNABLE\n' ;;
  *"value(instanceType)"*) echo READ_REPLICA_INSTANCE ;;
  *"compute addresses describe"*) echo 203.0.113.10 ;;
esac
"#,
            log = log.display()
        ),
    );
    executable(
        &bin.join("tofu"),
        &format!(
            r#"#!/usr/bin/env bash
echo "tofu $*" >> {log}
case "$*" in
  *"state show"*) printf 'resource "google_sql_database_instance" "primary" {{\n    name = "tern-prod"\n}}\n' ;;
esac
"#,
            log = log.display()
        ),
    );
    executable(
        &bin.join("curl"),
        &format!(
            r#"#!/usr/bin/env bash
echo "curl $*" >> {log}
case "$*" in
  *monitoring.googleapis.com*) echo '{{"timeSeries":[{{"points":[{{"value":{{"doubleValue":0}}}}]}}]}}' ;;
  *ord_failback_probe*) printf 404 ;;
  *) echo 200 ;;
esac
"#,
            log = log.display()
        ),
    );
    executable(
        &bin.join("kn"),
        &format!("#!/usr/bin/env bash\necho \"kn $*\" >> {}\n", log.display()),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |policy: &str| {
        let _ = std::fs::remove_file(&log);
        let out = Command::new(root().join("scripts/failback"))
            .args(["--execute", "--new-replica", "tern-prod-b"])
            .env("PATH", &path)
            .env("FAKE_POLICY", policy)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        (out, calls)
    };

    let (out, calls) = run("NEVER");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = calls.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {calls}"))
    };
    assert!(
        lines[0].starts_with("gcloud scheduler jobs pause outbox-relay --location=europe-west1")
    );
    let order = [
        at("sql instances patch tern-prod --project=tern-prod --quiet --activation-policy=NEVER"),
        at("state mv module.tern.module.cloudsql.google_sql_database_instance.replica[0]"),
        at("monitoring.googleapis.com"),
        at(
            "sql instances patch tern-prod-replica --project=tern-prod --quiet --activation-policy=NEVER",
        ),
        at("sql instances promote-replica tern-prod-b"),
        at("scheduler jobs resume outbox-relay --location=europe-west1"),
        at("dns record-sets update orders.example.com."),
        at("active_region=primary"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?} in {calls}"
    );

    // The old primary does not read as stopped: the failback ends at the fence's check.
    let (out, calls) = run("ALWAYS");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected \"NEVER\tSTOPPED\""), "{err}");
    assert!(!calls.contains("tofu"), "went on past the fence: {calls}");
}

/// scripts/secret-init with --execute, against a stand-in for gcloud's two secrets commands
/// (Google's CLI cannot run here): the value goes on stdin only, never in an argument; it is 48
/// random characters; a second run leaves a secret that has a value as it is.
#[test]
fn secret_init_adds_one_random_value_on_stdin_and_never_twice() {
    let dir = tern_e2e::scratch("secret-init");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let gcloud = bin.join("gcloud");
    std::fs::write(
        &gcloud,
        format!(
            r#"#!/usr/bin/env bash
# gcloud secrets versions list|add SECRET --project=P ...: versions are files under {store}.
set -euo pipefail
echo "$*" >> {store}/argv
[[ "$1 $2" == "secrets versions" ]] || exit 3
case "$3" in
  list) (ls {store}/"$4".* 2>/dev/null || true) | head -1 | sed 's/.*[.]//' ;;
  add) n=$( (ls {store}/"$4".* 2>/dev/null || true) | wc -l); cat > {store}/"$4".$((n + 1)) ;;
  *) exit 3 ;;
esac
"#,
            store = store.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&gcloud)
        .status()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = || {
        let out = Command::new(root().join("scripts/secret-init"))
            .args(["web-csrf-secret", "--env", "prod", "--execute"])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run();
    let value = std::fs::read_to_string(store.join("web-csrf-secret.1")).expect("a first version");
    assert_eq!(value.len(), 48, "{value:?}");
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    );
    let second = run();
    assert!(
        second.contains("has a value (version 1): left as it is"),
        "{second}"
    );
    assert!(
        !store.join("web-csrf-secret.2").exists(),
        "a re-run adds no version"
    );
    let argv = std::fs::read_to_string(store.join("argv")).unwrap();
    assert!(!argv.contains(&value), "the value reached a command line");
    assert!(
        argv.lines().all(|l| l.contains("--project=tern-prod")),
        "{argv}"
    );
}
