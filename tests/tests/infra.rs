//! `infra/`, validated offline with the real OpenTofu and provider builds from `scripts/tools`:
//! `tofu fmt`, `tofu init -backend=false` + `tofu validate` and `tofu test` (mock providers, real
//! schemas) in every root, and checkov with no failed check.

use std::path::{Path, PathBuf};
use std::process::Command;
use tern_e2e::root;

fn local(path: &str) -> PathBuf {
    let p = root().join(".local").join(path);
    assert!(
        p.exists(),
        "{} is missing: run scripts/tools (scripts/test does)",
        p.display()
    );
    p
}

/// Runs tofu in `dir` with the offline CLI configuration; returns (success, combined output).
fn tofu(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(local("bin/tofu"))
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", local("tofu/tofurc"))
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_DATA_DIR")
        .output()
        .expect("run tofu");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every root: each module, the stack, each environment, the bootstrap.
fn roots(under: &str) -> Vec<PathBuf> {
    let dir = root().join("infra").join(under);
    if dir.join("versions.tf").exists() {
        return vec![dir];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("infra dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("versions.tf").exists())
        .collect();
    out.sort();
    out
}

/// init, validate, and test (where tests exist); returns the runs passed.
fn check(dir: &Path) -> usize {
    let name = dir
        .strip_prefix(root())
        .unwrap_or(dir)
        .display()
        .to_string();
    let (ok, out) = tofu(
        dir,
        &["init", "-backend=false", "-input=false", "-no-color"],
    );
    assert!(ok, "{name}: tofu init\n{out}");
    let (ok, out) = tofu(dir, &["validate", "-no-color"]);
    assert!(ok, "{name}: tofu validate\n{out}");
    if !dir.join("tests").exists() {
        return 0;
    }
    let (ok, out) = tofu(dir, &["test", "-no-color"]);
    assert!(ok, "{name}: tofu test\n{out}");
    // "Success! N passed, 0 failed."
    let passed = out
        .lines()
        .find_map(|l| l.strip_prefix("Success! "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no test summary in\n{out}"));
    eprintln!("{name}: validate ok, tofu test {passed} runs passed");
    passed
}

fn assertions_in(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join("tests")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.matches("assert {").count())
        .sum()
}

#[test]
fn infra_is_formatted() {
    let (ok, out) = tofu(
        &root(),
        &["fmt", "-check", "-recursive", "-diff", "-no-color", "infra"],
    );
    assert!(ok, "run `tofu fmt -recursive infra`:\n{out}");
}

#[test]
fn every_module_validates_and_passes_its_tests() {
    let mut runs = 0;
    let mut assertions = 0;
    for dir in roots("modules") {
        assert!(
            dir.join("README.md").exists(),
            "{} has no README",
            dir.display()
        );
        assert!(
            assertions_in(&dir) > 0,
            "{} has no tofu test assertions",
            dir.display()
        );
        runs += check(&dir);
        assertions += assertions_in(&dir);
    }
    eprintln!("modules: {runs} test runs passed, {assertions} assertions");
    assert!(runs >= 13);
}

#[test]
fn every_environment_and_the_bootstrap_validate_and_pass_their_tests() {
    let mut runs = 0;
    let mut assertions = 0;
    check(&root().join("infra/stack"));
    for dir in roots("envs").into_iter().chain(roots("bootstrap")) {
        assert!(
            dir.join("terraform.tfvars").exists(),
            "{} has no example tfvars",
            dir.display()
        );
        assert!(
            dir.join("backend.hcl").exists(),
            "{} has no backend config",
            dir.display()
        );
        runs += check(&dir);
        assertions += assertions_in(&dir);
    }
    eprintln!("environments and bootstrap: {runs} test runs passed, {assertions} assertions");
    assert!(runs >= 7);
}

#[test]
fn every_environment_has_its_own_state_prefix_and_project() {
    let mut prefixes = Vec::new();
    let mut projects = Vec::new();
    for dir in roots("envs") {
        let backend = std::fs::read_to_string(dir.join("backend.hcl")).expect("backend.hcl");
        let env = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        assert!(
            backend.contains(&format!("prefix = \"envs/{env}\"")),
            "{env}: {backend}"
        );
        prefixes.push(env.clone());
        let tfvars = std::fs::read_to_string(dir.join("terraform.tfvars")).expect("tfvars");
        let project = tfvars
            .lines()
            .find_map(|l| l.trim().strip_prefix("project_id"))
            .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
            .expect("project_id");
        projects.push(project);
    }
    projects.sort();
    projects.dedup();
    assert_eq!(projects.len(), 3, "separate projects: {projects:?}");
    assert_eq!(prefixes, ["dev", "prod", "staging"]);
}

#[test]
fn checkov_finds_no_failed_check() {
    let out = Command::new(local("venv/bin/checkov"))
        .args([
            "-d",
            "infra",
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--output",
            "json",
            "--skip-download",
        ])
        .current_dir(root())
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("run checkov");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov output is not JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary = report
        .as_array()
        .map_or(&report["summary"], |reports| &reports[0]["summary"]);
    let failed = summary["failed"].as_u64().unwrap_or(u64::MAX);
    eprintln!(
        "checkov: {} passed, {} failed, {} skipped",
        summary["passed"], summary["failed"], summary["skipped"]
    );
    if failed != 0 {
        let checks =
            report.as_array().map_or(
                &report["results"]["failed_checks"],
                |r| &r[0]["results"]["failed_checks"],
            );
        let list: Vec<String> = checks
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} {}", c["check_id"], c["resource"], c["file_path"]))
            .collect();
        panic!("checkov failed checks:\n{}", list.join("\n"));
    }
    assert!(
        summary["passed"].as_u64().unwrap_or_default() > 50,
        "{summary}"
    );
}

/// Facts both sides state must agree: the chart's values and the environments' OpenTofu.
#[test]
fn chart_values_agree_with_the_infrastructure() {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).expect(p);
    let yaml = |p: &str| -> serde_json::Value {
        use serde::Deserialize;
        serde_json::Value::deserialize(serde_norway::Deserializer::from_str(&read(p))).expect(p)
    };
    for env in ["dev", "staging", "prod"] {
        let values = yaml(&format!("knative/chart/tern-functions/env/{env}.yaml"));
        let main = read(&format!("infra/envs/{env}/main.tf"));
        let tfvars = read(&format!("infra/envs/{env}/terraform.tfvars"));
        let cidr = values["networkPolicy"]["databaseCidr"]
            .as_str()
            .unwrap_or_default();
        assert!(
            main.contains(&format!("private_services_cidr = \"{cidr}\"")),
            "{env}: the chart's databaseCidr {cidr} is not infra's private services range"
        );
        let host = values["database"]["host"].as_str().unwrap_or_default();
        let prefix = cidr.rsplit_once('.').map(|(p, _)| p).unwrap_or_default();
        assert!(
            host.starts_with(prefix),
            "{env}: database.host {host} outside {cidr}"
        );
        let project = values["gcp"]["project"].as_str().unwrap_or_default();
        assert!(
            tfvars.contains(&format!("project_id = \"{project}\"")),
            "{env}: project {project}"
        );
        let first_host = values["hosts"][0].as_str().unwrap_or_default();
        assert!(
            tfvars.contains(&format!("hosts      = [\"{first_host}\"")),
            "{env}: the first host {first_host} differs (push and scheduler audiences use it)"
        );
        assert!(main.contains(&format!(
            "region      = \"{}\"",
            values["region"].as_str().unwrap_or_default()
        )));
        let images = yaml(&format!("knative/environments/{env}.yaml"));
        assert_eq!(
            images["images"]["repository"], "europe-docker.pkg.dev/tern-ops/tern",
            "{env}: the bootstrap's registry"
        );
        let repository = images["images"]["repository"].as_str().unwrap_or_default();
        assert!(
            tfvars.contains(&format!("image_repository = \"{repository}\"")),
            "{env}: Binary Authorization's own registry is not the chart's images.repository"
        );
    }
    let standby = yaml("knative/chart/tern-functions/env/prod-standby.yaml");
    let prod_main = read("infra/envs/prod/main.tf");
    assert!(prod_main.contains(&format!(
        "region = \"{}\"",
        standby["region"].as_str().unwrap_or_default()
    )));
    let defaults = yaml("knative/chart/tern-functions/values.yaml");
    let identity = read("infra/modules/identity/main.tf");
    // The database users the chart logs in as are the ones infra creates: each function's own
    // service account (account_id fn-<name>), named as Cloud SQL names IAM users.
    assert!(identity.contains("account_id   = \"fn-${each.value}\""));
    let helpers = read("knative/chart/tern-functions/templates/_helpers.tpl");
    assert!(
        helpers.contains("printf \"fn-%s@%s.iam\""),
        "the chart's DB_USER"
    );
    let cloudsql = read("infra/modules/cloudsql/main.tf");
    assert!(cloudsql.contains("trimsuffix(each.value, \".gserviceaccount.com\")"));
    for account in [
        &defaults["oidc"]["pushServiceAccount"],
        &defaults["oidc"]["schedulerServiceAccount"],
    ] {
        let account = account.as_str().unwrap_or_default();
        assert!(
            identity.contains(&format!("account_id   = \"{account}\"")),
            "{account}"
        );
    }
}

/// Issue 16, point 6: OpenTofu holds no secret, so none is in its state. No configuration
/// generates a value (random_password, random_string), writes a secret version, or sets a
/// database password; the secrets are created empty (scripts/secret-init adds the generated
/// ones) and the database users are IAM users.
#[test]
fn no_secret_value_is_managed_by_opentofu() {
    let mut offending = Vec::new();
    let mut stack = vec![root().join("infra")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != ".terraform" {
                    stack.push(path);
                }
                continue;
            }
            if !name.ends_with(".tf") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in [
                "resource \"random_password\"",
                "resource \"random_string\"",
                "resource \"google_secret_manager_secret_version\"",
                "secret_data",
                "root_password",
            ] {
                if text.contains(needle) {
                    offending.push(format!("{}: {needle}", path.display()));
                }
            }
            for block in text.split("resource \"google_sql_user\"").skip(1) {
                let body = block.split("\n}").next().unwrap_or_default();
                if body.contains("password") || !body.contains("CLOUD_IAM_SERVICE_ACCOUNT") {
                    offending.push(format!(
                        "{}: a google_sql_user that is not an IAM user",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(offending.is_empty(), "{offending:#?}");
}
