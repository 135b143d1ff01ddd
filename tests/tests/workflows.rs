//! The GitHub Actions workflows and the Dockerfile, checked offline: actionlint (built from its Go
//! module), every action pinned by commit SHA, `permissions:` on every job, no secret or variable
//! that docs/delivery.md does not list, checkov with no failed check; and the digest scripts the
//! workflows run.

use serde_json::Value;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
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
    let values = root().join("knative/environments");
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

/// Paths a GitHub `paths:` filter of the forms this repository uses matches: `dir/**` or a file.
fn matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix("/**") {
        Some(dir) => path.starts_with(&format!("{dir}/")),
        None => path == pattern,
    }
}

fn source_hashes(dir: &std::path::Path) -> BTreeMap<String, String> {
    let out = Command::new(root().join("scripts/source-hash"))
        .current_dir(dir)
        .output()
        .expect("scripts/source-hash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(f, h)| (f.to_owned(), h.to_owned()))
        .collect()
}

/// Issue 16, point 1: images are built when their source changes and only then. The workflow's
/// `paths:` cover every input `scripts/source-hash` names and nothing the digest and promote pull
/// requests change; the image carries no commit; the hash follows the source, not the commit.
#[test]
fn images_build_only_when_their_source_changes() {
    let doc = yaml(&root().join(".github/workflows/images.yml"));
    let push = &doc["on"]["push"];
    assert!(
        push.get("paths-ignore").is_none(),
        "a paths-ignore list lets every new directory start a build"
    );
    let patterns: Vec<&str> = push["paths"]
        .as_array()
        .expect("images.yml: on.push.paths")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let out = Command::new(root().join("scripts/source-hash"))
        .arg("--inputs")
        .current_dir(root())
        .output()
        .expect("scripts/source-hash --inputs");
    let inputs: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|l| l.split_whitespace().skip(1).map(str::to_owned))
        .collect();
    assert!(inputs.contains("Dockerfile") && inputs.contains("Cargo.lock"));
    for input in &inputs {
        let is_dir = root().join(input).is_dir();
        let probe = if is_dir {
            format!("{input}/src/lib.rs")
        } else {
            input.clone()
        };
        assert!(
            patterns.iter().any(|p| matches(p, &probe)),
            "images.yml does not start on a change to {input} ({patterns:?})"
        );
    }
    // What the bot's pull requests change (scripts/set-digest, scripts/promote), and the values.
    for env in ["dev", "staging", "prod"] {
        for file in [
            format!("knative/environments/{env}.yaml"),
            format!("knative/chart/tern-functions/env/{env}.yaml"),
        ] {
            assert!(
                !patterns.iter().any(|p| matches(p, &file)),
                "merging a digest or promote pull request ({file}) would start a build"
            );
        }
    }
    // The image names its source, not its commit.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let function_stage = dockerfile
        .split("AS function")
        .nth(1)
        .and_then(|rest| rest.split("\nFROM ").next())
        .expect("the function stage");
    assert!(function_stage.contains("SOURCE_HASH"));
    assert!(!function_stage.contains("REVISION"), "{function_stage}");
    let workflow = std::fs::read_to_string(root().join(".github/workflows/images.yml")).unwrap();
    assert!(
        !workflow.contains("--build-arg REVISION") && !workflow.contains("=\"$GITHUB_SHA\""),
        "the commit must not reach the image"
    );

    // The hash follows the source: a clone, a commit that touches docs and the values, then one
    // that touches one function, then a shared crate.
    let dir = tern_e2e::scratch("source-hash");
    let repo = dir.join("repo");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let clone = Command::new("git")
        .args(["clone", "-q", "--depth", "1"])
        .arg(format!("file://{}", root().display()))
        .arg(&repo)
        .output()
        .expect("git clone");
    assert!(clone.status.success());
    let append = |path: &str, line: &str| {
        let p = repo.join(path);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(line);
        std::fs::write(&p, text).unwrap();
    };
    let before = source_hashes(&repo);
    assert!(before.len() >= 7, "{before:?}");
    append("README.md", "\nA docs change.\n");
    append(
        "knative/chart/tern-functions/env/dev.yaml",
        "\n# a values change\n",
    );
    append("knative/environments/dev.yaml", "\n# a digest change\n");
    git(&["commit", "-qam", "docs and values"]);
    assert_eq!(source_hashes(&repo), before, "same source, same hashes");
    append("functions/orders-get/src/main.rs", "\n// a change\n");
    git(&["commit", "-qam", "orders-get"]);
    let after = source_hashes(&repo);
    for (f, h) in &before {
        assert_eq!(
            after[f] != *h,
            f == "orders-get",
            "{f}: only orders-get's source changed"
        );
    }
    append("shared/tern-events/src/lib.rs", "\n// a change\n");
    git(&["commit", "-qam", "tern-events"]);
    let last = source_hashes(&repo);
    let inputs = |f: &str| {
        let out = Command::new(root().join("scripts/source-hash"))
            .args(["--inputs", f])
            .current_dir(&repo)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|i| i == "shared/tern-events")
    };
    let mut changed = 0;
    for (f, h) in &after {
        assert_eq!(
            last[f] != *h,
            inputs(f),
            "{f}: tern-events is an input or not"
        );
        changed += usize::from(last[f] != *h);
    }
    assert!(
        changed >= 2 && changed < after.len(),
        "{changed} of {after:?}"
    );
}

/// Issue 16, point 1, without BuildKit: the same source builds the same binary whatever commit
/// carries it. Two checkouts at one path (as the Dockerfile builds in /src): HEAD, then a commit
/// that changes only docs (the same `scripts/source-hash` for the function). Each is built with
/// `cargo build --locked`, the second after its workspace crates were cleaned so they are
/// compiled again from its files, and the two binaries are compared byte for byte. The registry
/// dependencies are compiled once (a target dir of the test's own), as the Dockerfile's cache
/// mount keeps them. The profile is the dev one here (about 2 minutes);
/// `TERN_REBUILD_PROFILE=release` builds as the Dockerfile does (`--release`, about 12 minutes
/// on 2 cores).
#[test]
fn the_same_source_builds_the_same_binary_from_another_commit() {
    let dir = tern_e2e::scratch("rebuild");
    let src = dir.join("src");
    let target = dir.join("target");
    let run = |cmd: &mut Command| -> String {
        let out = cmd.output().expect("spawn");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let clone = |rev: &str| {
        let _ = std::fs::remove_dir_all(&src);
        run(Command::new("git")
            .args(["clone", "-q", "--no-checkout"])
            .arg(format!("file://{}", root().display()))
            .arg(&src));
        run(Command::new("git")
            .args(["-c", "advice.detachedHead=false", "checkout", "-q", rev])
            .current_dir(&src));
    };
    let profile = std::env::var("TERN_REBUILD_PROFILE").unwrap_or_else(|_| "dev".into());
    let out_dir = if profile == "dev" {
        "debug"
    } else {
        profile.as_str()
    };
    let build = |what: &str| -> (String, String) {
        let log = run(Command::new("cargo")
            .args([
                "build",
                "--locked",
                "--profile",
                &profile,
                "-p",
                "orders-get",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .current_dir(&src));
        let bytes = std::fs::read(target.join(out_dir).join("orders-get")).expect(what);
        let hash = sha2::Sha256::digest(&bytes);
        (hex::encode(hash), log)
    };
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(root())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    clone(head.trim());
    let hash_a = source_hashes(&src)["orders-get"].clone();
    let (binary_a, _) = build("the first build");

    // A second commit: docs and values only, so the same source hash.
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&src))
    };
    let append = |path: &str| {
        let p = src.join(path);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("\n<!-- another commit -->\n");
        std::fs::write(&p, text).unwrap();
    };
    append("README.md");
    append("docs/delivery.md");
    git(&["commit", "-qam", "docs only"]);
    let second = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&src)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_ne!(second.trim(), head.trim());
    // The second commit, checked out afresh at the same path, its workspace crates compiled again.
    let bundle = dir.join("second.bundle");
    git(&["bundle", "create", bundle.to_str().unwrap(), "HEAD"]);
    let _ = std::fs::remove_dir_all(&src);
    run(Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg(&bundle)
        .arg(&src));
    assert_eq!(
        source_hashes(&src)["orders-get"],
        hash_a,
        "same source, same hash"
    );
    let mut clean = Command::new("cargo");
    clean
        .args(["clean", "--profile", &profile])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&src);
    for krate in [
        "orders-get",
        "tern",
        "tern-db",
        "tern-events",
        "orders-domain",
    ] {
        clean.args(["-p", krate]);
    }
    run(&mut clean);
    let (binary_b, log) = build("the second build");
    assert!(
        log.contains("Compiling orders-get") && log.contains("Compiling tern "),
        "the second build compiled the workspace crates again: {log}"
    );
    assert_eq!(binary_a, binary_b, "the same source, the same binary");
    eprintln!(
        "orders-get ({profile} profile) sha256 {binary_a} from {} and {}",
        head.trim(),
        second.trim()
    );
}

/// Issue 16, point 2: a pull request opened with `GITHUB_TOKEN` starts no workflow (GitHub's rule),
/// so its required checks never report. Every job that opens one does it with the bot GitHub
/// App's installation token, minted in the same job by the official action, and pushes its
/// branch with that token too.
#[test]
fn bot_pull_requests_are_opened_with_a_github_app_token() {
    let mut jobs_checked = 0;
    for path in workflows() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let doc = yaml(&path);
        for (job, spec) in doc["jobs"].as_object().expect("jobs") {
            let steps = spec["steps"].as_array().cloned().unwrap_or_default();
            let opens_pr = steps.iter().any(|s| {
                s["run"]
                    .as_str()
                    .is_some_and(|r| r.contains("gh pr create"))
            });
            if !opens_pr {
                continue;
            }
            jobs_checked += 1;
            let app = steps
                .iter()
                .find(|s| {
                    s["uses"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("actions/create-github-app-token@"))
                })
                .unwrap_or_else(|| panic!("{name}/{job}: no actions/create-github-app-token step"));
            let id = app["id"].as_str().expect("the token step has an id");
            let token = format!("${{{{ steps.{id}.outputs.token }}}}");
            assert_eq!(
                app["with"]["client-id"], "${{ vars.TERN_BOT_CLIENT_ID }}",
                "{name}/{job}"
            );
            assert_eq!(
                app["with"]["private-key"], "${{ secrets.TERN_BOT_PRIVATE_KEY }}",
                "{name}/{job}"
            );
            for s in &steps {
                if s["run"]
                    .as_str()
                    .is_some_and(|r| r.contains("gh pr create"))
                {
                    assert_eq!(s["env"]["GH_TOKEN"], token.as_str(), "{name}/{job}");
                }
                if s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/checkout@"))
                {
                    assert_eq!(
                        s["with"]["token"],
                        token.as_str(),
                        "{name}/{job}: the branch is pushed with the app's token"
                    );
                }
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("secrets.GITHUB_TOKEN"),
                "{name}: GITHUB_TOKEN must not open pull requests"
            );
            assert_eq!(
                spec["permissions"]["pull-requests"],
                Value::Null,
                "{name}/{job}: GITHUB_TOKEN needs no pull-request permission"
            );
        }
    }
    assert_eq!(jobs_checked, 2, "images and promote open pull requests");
}

/// Issue 16, point 5: the images workflow attests exactly the digests it built, after the scan
/// passed, with the attestor and key the bootstrap outputs, so Binary Authorization
/// (`infra/modules/binauthz-policy`, covered by its `tofu test`) admits them and nothing else.
#[test]
fn the_images_workflow_attests_what_it_built_after_the_scan() {
    let doc = yaml(&root().join(".github/workflows/images.yml"));
    let steps = doc["jobs"]["build"]["steps"]
        .as_array()
        .expect("build steps");
    let position = |needle: &str| {
        steps
            .iter()
            .position(|s| s["run"].as_str().is_some_and(|r| r.contains(needle)))
            .unwrap_or_else(|| panic!("images.yml: no step runs {needle:?}"))
    };
    let built = position("docker buildx build");
    let scan = position("--show-package-vulnerability");
    let attest = position("binauthz attestations sign-and-create");
    let tag = position("gcloud artifacts docker tags add");
    assert!(
        built < scan && scan < attest && attest < tag,
        "build, then scan, then attest, then tag: the src-<hash> tag means all of it passed"
    );
    let build = steps[built]["run"].as_str().unwrap();
    assert!(
        build.contains("push-by-digest=true") && !build.contains("--tag"),
        "the build pushes by digest only: {build}"
    );
    assert!(
        steps[tag]["run"]
            .as_str()
            .unwrap()
            .contains("\"$REGISTRY/$fn:src-$hash\""),
        "the tag names the source hash"
    );
    let step = &steps[attest];
    let run = step["run"].as_str().unwrap();
    assert!(
        run.contains("done < built.txt"),
        "every built digest: {run}"
    );
    assert!(
        run.contains("--artifact-url=\"$REGISTRY/$fn@$digest\""),
        "{run}"
    );
    assert_eq!(step["env"]["ATTESTOR"], "${{ vars.GCP_ATTESTOR }}");
    assert_eq!(
        step["env"]["KEY_VERSION"],
        "${{ vars.GCP_ATTESTOR_KEY_VERSION }}"
    );
    // The bootstrap outputs both, under the names docs/delivery.md lists.
    let outputs = std::fs::read_to_string(root().join("infra/bootstrap/outputs.tf")).unwrap();
    for name in ["GCP_ATTESTOR ", "GCP_ATTESTOR_KEY_VERSION"] {
        assert!(outputs.contains(name), "infra/bootstrap outputs no {name}");
    }
}

/// Issue 16, point 3: the promote workflow moves an environment's revision and digests together
/// (scripts/promote), commits nothing outside knative/environments/, shows the rendered change,
/// and has the history the renders and the commit list need; the test job has it too.
#[test]
fn promotion_moves_the_revision_and_the_digests_in_one_pull_request() {
    let doc = yaml(&root().join(".github/workflows/promote.yml"));
    let steps = doc["jobs"]["pull-request"]["steps"]
        .as_array()
        .expect("steps");
    let run = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("gh pr create"))
        .expect("the step that opens the pull request");
    assert!(run.contains("scripts/promote \"$FROM\" \"$to\""), "{run}");
    assert!(!run.contains("promote-digests"), "digests never move alone");
    assert!(
        run.contains("-- knative/environments"),
        "commits only the environments' files: {run}"
    );
    assert!(run.contains("scripts/render-env \"$to\" --cluster \"$c\" > \"before-$c.yaml\""));
    assert!(run.contains("scripts/render-env \"$to\" --cluster \"$c\" > \"after-$c.yaml\""));
    assert!(
        run.contains("git diff --quiet -- knative/environments"),
        "{run}"
    );
    let step = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("gh pr create"))
        })
        .unwrap();
    assert_eq!(
        step["shell"], "bash",
        "pipefail: a failed promotion must stop the step"
    );
    assert!(
        steps.iter().any(|s| s["run"] == "scripts/tools helm"),
        "Helm from its pinned module"
    );
    let full_history = |s: &Value| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/checkout@"))
            && s["with"]["fetch-depth"] == 0
    };
    assert!(
        steps.iter().any(full_history),
        "promote.yml checks out every commit"
    );
    let ci = yaml(&root().join(".github/workflows/ci.yml"));
    let test_steps = ci["jobs"]["test"]["steps"].as_array().expect("steps");
    assert!(
        test_steps.iter().any(full_history),
        "the tests render each environment's promoted revision"
    );
    // The only transitions, each refused otherwise with what is allowed.
    let out = Command::new(root().join("scripts/promote"))
        .args(["dev", "prod"])
        .output()
        .expect("scripts/promote");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only dev -> staging and staging -> prod")
    );
}

/// CODEOWNERS names only paths that exist, and gives prod's promotions and values, and the Argo
/// CD configuration every environment follows from main, to the prod approvers
/// (docs/delivery.md). The last matching line wins, so no later line may take them back.
#[test]
fn codeowners_cover_prods_promotions_and_values() {
    let text = std::fs::read_to_string(root().join(".github/CODEOWNERS")).expect("CODEOWNERS");
    let mut prod = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut fields = line.split_whitespace();
        let path = fields.next().unwrap();
        let owners: Vec<&str> = fields.collect();
        assert!(
            !owners.is_empty() && owners.iter().all(|o| o.starts_with('@')),
            "{line}"
        );
        if path != "*" {
            assert!(
                root().join(path.trim_start_matches('/')).exists(),
                "CODEOWNERS names {path}, which does not exist"
            );
        }
        if owners.contains(&"@tern-platform/prod-approvers") {
            prod.push(path.to_owned());
        } else {
            // A later line for a prod path (or a parent of one) would take it back.
            assert!(
                !prod.iter().any(|p| p.starts_with(path) || path == "*"),
                "{line} overrides the prod approvers"
            );
        }
    }
    for path in [
        "/knative/environments/prod.yaml",
        "/knative/argocd/",
        "/knative/chart/tern-functions/env/prod.yaml",
        "/knative/chart/tern-functions/env/prod-standby.yaml",
        "/knative/platform/env/prod.yaml",
    ] {
        assert!(prod.iter().any(|p| p == path), "{path}: {prod:?}");
    }
}
