//! The GitHub Actions workflows and the Dockerfile, checked offline: actionlint (built from its Go
//! module), every action pinned by commit SHA, `permissions:` on every job, no secret or variable
//! that docs/delivery.md does not list, checkov with no failed check; and the digest scripts the
//! workflows run.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use tern_e2e::root;

fn workflows() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(".github/workflows"))
        .expect(".github/workflows")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    out.sort();
    out
}

fn yaml(path: &PathBuf) -> Value {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).expect("workflow");
    Value::deserialize(serde_norway::Deserializer::from_str(&text)).expect("workflow YAML")
}

#[test]
fn actionlint_accepts_every_workflow() {
    let bin = root().join(".local/bin/actionlint");
    assert!(
        bin.exists(),
        "run scripts/tools: {} is missing",
        bin.display()
    );
    let out = Command::new(bin)
        .args(workflows())
        .current_dir(root())
        .output()
        .expect("actionlint");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        workflows().len() >= 5,
        "ci, images, infra, promote and the reusable tofu workflow"
    );
}

#[test]
fn every_action_is_pinned_by_commit_sha_and_every_job_declares_permissions() {
    for path in workflows() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let Some(uses) = line
                .trim_start()
                .trim_start_matches("- ")
                .strip_prefix("uses:")
            else {
                continue;
            };
            let uses = uses.trim().trim_matches(['"', '\'']);
            let uses = uses.split_whitespace().next().unwrap_or_default();
            if uses.starts_with("./") {
                continue; // a reusable workflow of this repository
            }
            let sha = uses.rsplit_once('@').map(|(_, r)| r).unwrap_or_default();
            assert!(
                sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{name}: {uses} is not pinned by a commit SHA"
            );
        }
        let doc = yaml(&path);
        assert!(
            doc["permissions"].is_object(),
            "{name}: no top-level permissions (use {{}})"
        );
        for (job, spec) in doc["jobs"].as_object().expect("jobs") {
            assert!(
                spec["permissions"].is_object(),
                "{name}: job {job} declares no permissions"
            );
            if spec.get("uses").is_none() {
                assert!(
                    spec["timeout-minutes"].is_number(),
                    "{name}: job {job} has no timeout"
                );
            }
        }
    }
}

#[test]
fn applies_never_race_and_apply_identities_need_their_environment() {
    let tofu = yaml(&root().join(".github/workflows/_tofu.yml"));
    let job = &tofu["jobs"]["tofu"];
    assert_eq!(job["concurrency"]["cancel-in-progress"], false);
    assert!(
        job["concurrency"]["group"]
            .as_str()
            .unwrap_or_default()
            .contains("inputs.root")
    );
    assert_eq!(job["environment"], "${{ inputs.environment }}");
    let infra = yaml(&root().join(".github/workflows/infra.yml"));
    let jobs = &infra["jobs"];
    assert_eq!(jobs["apply-staging"]["needs"], "apply-dev");
    assert_eq!(jobs["apply-prod"]["needs"], "apply-staging");
    for env in ["dev", "staging", "prod"] {
        assert_eq!(jobs[format!("apply-{env}")]["with"]["environment"], env);
    }
}

#[test]
fn every_secret_and_variable_a_workflow_uses_is_documented() {
    let docs = std::fs::read_to_string(root().join("docs/delivery.md")).expect("docs/delivery.md");
    let mut used = BTreeSet::new();
    for path in workflows() {
        let text = std::fs::read_to_string(&path).unwrap();
        for kind in ["secrets.", "vars."] {
            for (i, _) in text.match_indices(kind) {
                let name: String = text[i + kind.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.insert(format!("{kind}{name}"));
            }
        }
    }
    assert!(!used.is_empty());
    for u in &used {
        let name = u.split('.').nth(1).unwrap_or_default();
        assert!(
            docs.contains(&format!("`{name}`")),
            "{u} is used by a workflow but docs/delivery.md does not list `{name}`"
        );
    }
}

#[test]
fn checkov_passes_the_dockerfile_and_the_workflows() {
    let out = Command::new(root().join(".local/venv/bin/checkov"))
        .args([
            "-d",
            ".",
            "--framework",
            "github_actions",
            "dockerfile",
            "--skip-path",
            "target",
            "--skip-path",
            ".local",
            "--quiet",
            "--compact",
            "--skip-download",
            "--output",
            "json",
        ])
        .current_dir(root())
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("checkov");
    let report: Value = serde_json::from_slice(&out.stdout).expect("checkov JSON");
    let reports = report
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![report.clone()]);
    assert_eq!(reports.len(), 2, "both frameworks report");
    for r in reports {
        let s = &r["summary"];
        eprintln!(
            "checkov {}: {} passed, {} failed, {} skipped",
            r["check_type"], s["passed"], s["failed"], s["skipped"]
        );
        let failed: Vec<String> = r["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {}", c["check_id"], c["file_path"]))
            .collect();
        assert!(failed.is_empty(), "checkov {}: {failed:?}", r["check_type"]);
        assert!(s["passed"].as_u64().unwrap_or_default() > 50);
    }
}

#[test]
fn the_digest_scripts_set_and_promote_exactly_the_digests() {
    let dir = tern_e2e::scratch("digests");
    let values = root().join("knative/chart/tern-functions/env");
    let dev = dir.join("dev.yaml");
    let staging = dir.join("staging.yaml");
    std::fs::copy(values.join("dev.yaml"), &dev).unwrap();
    std::fs::copy(values.join("staging.yaml"), &staging).unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let run = |script: &str, args: &[&str]| {
        Command::new(root().join("scripts").join(script))
            .args(args)
            .output()
            .expect("script")
    };
    let out = run("set-digest", &[dev.to_str().unwrap(), "web", &digest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        "promote-digests",
        &[dev.to_str().unwrap(), staging.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staging_text = std::fs::read_to_string(&staging).unwrap();
    assert!(staging_text.contains(&format!("    web: {digest}\n")));
    // Only the digests changed: the rest of the file is as it was.
    let before = std::fs::read_to_string(values.join("staging.yaml")).unwrap();
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(staging_text.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    // Refusals: a malformed digest, a function without a digest.
    assert_eq!(
        run("set-digest", &[dev.to_str().unwrap(), "web", "latest"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run("set-digest", &[dev.to_str().unwrap(), "nope", &digest])
            .status
            .code(),
        Some(2)
    );
}
