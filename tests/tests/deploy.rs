//! The Kubernetes side, validated offline with the real tools `scripts/tools` builds from their Go
//! modules: `helm lint --strict` and `helm template` of every chart for every environment and
//! cluster, `kubeconform -strict` of everything rendered and of the Argo CD manifests against the
//! schemas of the pinned Kubernetes and CRD versions, and the policies the deployment must keep.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use tern_e2e::{root, table};

/// Environment and cluster combinations, with the functions chart's value files for each
/// (relative to the chart), as `knative/argocd/apps/functions.yaml` lists them; after them come
/// the environment's image digests ([`images`]), as its templatePatch's `valuesObject`.
const TARGETS: [(&str, &[&str]); 4] = [
    ("dev", &["env/dev.yaml"]),
    ("staging", &["env/staging.yaml"]),
    ("prod", &["env/prod.yaml"]),
    ("prod-standby", &["env/prod.yaml", "env/prod-standby.yaml"]),
];

/// A value file (absolute path) with the image digests of a target's environment, from
/// `knative/environments/<env>.yaml`: what the ApplicationSet passes as `valuesObject`.
fn images(target: &str) -> String {
    let env = target.split_once('-').map_or(target, |(env, _)| env);
    let dir = tern_e2e::scratch(&format!(
        "images-{target}-{:?}",
        std::thread::current().id()
    ));
    let file = dir.join("images.json");
    let images = serde_json::json!({ "images": tern_e2e::release_of(env)["images"] });
    std::fs::write(&file, images.to_string()).expect("images values");
    file.display().to_string()
}
const FUNCTIONS_CHART: &str = "knative/chart/tern-functions";
const PLATFORM_CHART: &str = "knative/platform";
const PLATFORM_APPS_CHART: &str = "knative/argocd/platform-apps";
const COMPONENTS: [&str; 4] = ["namespaces", "serving", "gateway", "monitoring"];

fn tool(name: &str) -> PathBuf {
    let path = root().join(".local/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/tools (scripts/test does)",
        path.display()
    );
    path
}

/// Runs a tool in the repository root; returns (success, stdout, stderr).
fn run(name: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tool(name))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run tool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn helm_template(chart: &str, values: &[&str], set: &[&str]) -> Result<String, String> {
    let mut args = vec!["template", "tern", chart, "--namespace", "tern"];
    let files: Vec<String> = values
        .iter()
        .map(|v| {
            if v.starts_with('/') {
                (*v).to_owned()
            } else {
                format!("{chart}/{v}")
            }
        })
        .collect();
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    for s in set {
        args.extend(["--set", s]);
    }
    let (ok, out, err) = run("helm", &args);
    if ok { Ok(out) } else { Err(err) }
}

fn functions(target: &str) -> String {
    functions_with(target, &[]).unwrap_or_else(|e| panic!("{target}: {e}"))
}

/// The functions chart of a target with its image digests, and `--set` values.
fn functions_with(target: &str, set: &[&str]) -> Result<String, String> {
    let (_, values) = TARGETS.iter().find(|(t, _)| *t == target).expect("target");
    let images = images(target);
    let mut all: Vec<&str> = values.to_vec();
    all.push(&images);
    helm_template(FUNCTIONS_CHART, &all, set)
}

fn platform_values(target: &str) -> Vec<&'static str> {
    match target {
        "prod-standby" => vec!["env/prod.yaml", "env/prod-standby.yaml"],
        "dev" => vec!["env/dev.yaml"],
        "staging" => vec!["env/staging.yaml"],
        _ => vec!["env/prod.yaml"],
    }
}

/// Every YAML document of a rendered stream, as JSON values.
fn docs(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(yaml)
        .filter_map(|d| Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn kubeconform(files: &[&Path]) -> (bool, String) {
    let schemas = root().join(".local/schemas");
    assert!(
        schemas.exists(),
        "run scripts/tools: .local/schemas is missing"
    );
    let location = format!(
        "{}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        schemas.display()
    );
    let mut args = vec!["-strict", "-summary", "-schema-location", location.as_str()];
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let (ok, out, err) = run("kubeconform", &args);
    (ok, format!("{out}{err}"))
}

fn write_scratch(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn the_rendered_route_table_matches_routes_toml() {
    let committed = std::fs::read_to_string(root().join(tern_local::render::DEPLOY_JSON))
        .expect("the rendered route table");
    assert_eq!(
        committed,
        tern_local::render::deploy_json(&table()),
        "{} drifted from routes.toml: run scripts/render",
        tern_local::render::DEPLOY_JSON
    );
}

#[test]
fn every_chart_lints_strictly_for_every_target() {
    for (target, values) in TARGETS {
        let mut files: Vec<String> = values
            .iter()
            .map(|v| format!("{FUNCTIONS_CHART}/{v}"))
            .collect();
        files.push(images(target));
        let mut args = vec!["lint", "--strict", FUNCTIONS_CHART];
        for f in &files {
            args.extend(["-f", f.as_str()]);
        }
        let (ok, out, err) = run("helm", &args);
        assert!(ok, "helm lint {target}: {out}{err}");
        for component in COMPONENTS {
            let set = format!("component={component}");
            let files: Vec<String> = platform_values(target)
                .iter()
                .map(|v| format!("{PLATFORM_CHART}/{v}"))
                .collect();
            let mut args = vec!["lint", "--strict", PLATFORM_CHART, "--set", set.as_str()];
            for f in &files {
                args.extend(["-f", f.as_str()]);
            }
            let (ok, out, err) = run("helm", &args);
            assert!(ok, "helm lint platform {component} {target}: {out}{err}");
        }
    }
    let (ok, out, err) = run(
        "helm",
        &[
            "lint",
            "--strict",
            PLATFORM_APPS_CHART,
            "--set",
            "cluster.name=tern-prod-primary,cluster.environment=prod",
        ],
    );
    assert!(ok, "helm lint platform-apps: {out}{err}");
}

#[test]
fn everything_rendered_and_the_argo_cd_manifests_pass_kubeconform_strict() {
    let dir = tern_e2e::scratch("deploy-kubeconform");
    let mut files = Vec::new();
    for (target, _) in TARGETS {
        files.push(write_scratch(
            &dir,
            &format!("functions-{target}.yaml"),
            &functions(target),
        ));
        let mut platform = String::new();
        for component in COMPONENTS {
            let set = format!("component={component}");
            platform += &helm_template(PLATFORM_CHART, &platform_values(target), &[set.as_str()])
                .unwrap_or_else(|e| panic!("platform {component} {target}: {e}"));
        }
        files.push(write_scratch(
            &dir,
            &format!("platform-{target}.yaml"),
            &platform,
        ));
        let (env, role) = target.split_once('-').unwrap_or((target, "primary"));
        let apps = helm_template(
            PLATFORM_APPS_CHART,
            &[],
            &[&format!(
                "cluster.name=tern-{target},cluster.environment={env},cluster.role={role}"
            )],
        )
        .unwrap_or_else(|e| panic!("platform apps {target}: {e}"));
        files.push(write_scratch(
            &dir,
            &format!("platform-apps-{target}.yaml"),
            &apps,
        ));
    }
    for dir in ["knative/argocd/bootstrap", "knative/argocd/apps"] {
        files.push(root().join(dir));
    }
    files.push(root().join("knative/argocd/install/argocd-cm.yaml"));
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, out) = kubeconform(&refs);
    assert!(ok, "kubeconform -strict:\n{out}");
    assert!(out.contains("Invalid: 0, Errors: 0, Skipped: 0"), "{out}");
    eprintln!("{}", out.trim());
}

#[test]
fn knative_exports_the_metrics_the_pod_monitorings_scrape() {
    for (target, _) in TARGETS {
        let render = |component: &str| {
            let set = format!("component={component}");
            docs(
                &helm_template(PLATFORM_CHART, &platform_values(target), &[set.as_str()])
                    .unwrap_or_else(|e| panic!("platform {component} {target}: {e}")),
            )
        };
        let serving = render("serving");
        let ks = of_kind(&serving, "KnativeServing");
        let observability =
            &ks.first().expect("a KnativeServing")["spec"]["config"]["observability"];
        // The keys Serving 1.19+ reads; the old `metrics.backend-destination` is ignored.
        assert_eq!(observability["metrics-protocol"], "prometheus", "{target}");
        assert_eq!(
            observability["request-metrics-protocol"], "prometheus",
            "{target}"
        );
        assert!(
            observability["metrics.backend-destination"].is_null(),
            "{target}: a key Serving no longer reads"
        );
        // Where those endpoints are: the control plane on 9090 (knative.dev/pkg's Prometheus
        // default), scraped by the platform; each function pod's queue-proxy on 9091
        // (networking.UserQueueMetricsPort) and the runtime's own listener on the rendered
        // metrics port, scraped by the functions chart as two jobs, and let in by its
        // NetworkPolicy from Managed Prometheus' collectors (GKE's managed collection runs them
        // in gke-gmp-system; a self-deployed one in gmp-system).
        let ports = |docs: &[Value]| -> BTreeMap<String, u64> {
            of_kind(docs, "PodMonitoring")
                .iter()
                .map(|m| {
                    let name = m["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    (
                        name,
                        m["spec"]["endpoints"][0]["port"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        };
        let platform = ports(&render("monitoring"));
        assert_eq!(
            platform.keys().collect::<Vec<_>>(),
            ["knative-serving"],
            "{target}"
        );
        assert_eq!(platform["knative-serving"], 9090, "{target}");
        let fns = docs(&functions(target));
        let scraped = ports(&fns);
        let metrics_port = u64::from(tern::platform::METRICS_PORT);
        assert_eq!(
            scraped,
            BTreeMap::from([
                ("tern-functions".to_owned(), metrics_port),
                ("tern-queue-proxy".to_owned(), 9091)
            ]),
            "{target}"
        );
        let from_gmp: Vec<u64> = of_kind(&fns, "NetworkPolicy")
            .iter()
            .flat_map(|p| p["spec"]["ingress"].as_array().cloned().unwrap_or_default())
            .filter(|rule| {
                let ns = &rule["from"][0]["namespaceSelector"]["matchExpressions"][0];
                ns["key"] == "kubernetes.io/metadata.name"
                    && ns["operator"] == "In"
                    && ns["values"] == serde_json::json!(["gke-gmp-system", "gmp-system"])
            })
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["port"].as_u64())
            .collect();
        assert_eq!(from_gmp, [9091, metrics_port], "{target}");
        // Every function is told its port and its route templates, as the local run tells it.
        let table = table();
        for (what, c) in containers(&fns) {
            let Some(name) = what.strip_prefix("Service ") else {
                continue; // the migrate Job serves nothing
            };
            let env = env_of(c);
            assert_eq!(env["TERN_METRICS_PORT"], metrics_port.to_string(), "{name}");
            let f = table.function(name).expect("a function of the table");
            let want: Vec<String> = f
                .routes
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            assert_eq!(env["TERN_HTTP_ROUTES"], want.join(","), "{name}");
        }
    }
}

#[test]
fn kubeconform_rejects_what_the_cluster_would_reject() {
    // The schemas are strict: a misspelled field, a wrong type or a bad enum fails.
    let dir = tern_e2e::scratch("deploy-reject");
    let good = functions("dev");
    let cases = [
        ("containerConcurrency:", "containerConcurency:"),
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: \"yes\"",
        ),
        ("type: PathPrefix", "type: Prefix"),
    ];
    for (from, to) in cases {
        assert!(good.contains(from), "{from}");
        let bad = write_scratch(&dir, "bad.yaml", &good.replacen(from, to, 1));
        let (ok, out) = kubeconform(&[&bad]);
        assert!(!ok, "kubeconform accepted {to:?}:\n{out}");
    }
}

#[test]
fn bad_values_fail_at_render_time_with_a_message() {
    let cases = [
        ("database.sslMode=disable", "/database/sslMode"),
        ("images.digests.web=latest", "/images/digests/web"),
        // No password setting exists any more: the functions log in with IAM.
        ("database.password=hunter2", "password"),
        ("hosts=null", "hosts"),
        ("defaults.timeoutSeconds=15", "below its timeoutSeconds"),
        // 30 s of queue-proxy drain + 0 + 20 = 50: a 50 s timeout leaves no room.
        ("defaults.timeoutSeconds=50", "queue-proxy's drain (30s)"),
        ("images.candidates.web.percent=0", "/images/candidates/web"),
        ("environment=qa", "/environment"),
    ];
    for (set, says) in cases {
        let err = functions_with("dev", &[set])
            .err()
            .unwrap_or_else(|| panic!("{set} rendered"));
        assert!(err.contains(says), "{set}: {err}");
    }
}

#[test]
fn every_function_has_its_service_and_routes() {
    let table = table();
    for (target, _) in TARGETS {
        let docs = docs(&functions(target));
        let services: BTreeMap<String, &Value> = of_kind(&docs, "Service")
            .into_iter()
            .map(|s| {
                (
                    s["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    s,
                )
            })
            .collect();
        let route = of_kind(&docs, "HTTPRoute")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "tern-functions")
            .expect("the functions HTTPRoute");
        for f in &table.functions {
            let name = f.name.as_str();
            if f.kind == tern_routes::Kind::Job {
                let jobs = of_kind(&docs, "Job");
                let job = jobs.iter().find(|j| j["metadata"]["name"] == name);
                if target.ends_with("-standby") {
                    // Its database is a read-only replica: a migrate hook there fails, and a
                    // failed PreSync hook stops the whole sync (issue 14).
                    assert!(
                        job.is_none(),
                        "{target}: a standby must not run the {name} Job"
                    );
                    assert!(
                        !of_kind(&docs, "ServiceAccount")
                            .iter()
                            .any(|a| a["metadata"]["name"] == format!("fn-{name}")),
                        "{target}: no account for a Job the standby does not run"
                    );
                    continue;
                }
                let job = job.unwrap_or_else(|| panic!("{target}: no Job for {name}"));
                assert_eq!(
                    job["metadata"]["annotations"]["argocd.argoproj.io/hook"], "PreSync",
                    "{target}: {name} must run before each sync"
                );
                // No Knative here to name it: without K_SERVICE its logs would say "function"
                // (the image's binary name).
                let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
                let service = env
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["name"] == "K_SERVICE");
                assert_eq!(
                    service.map(|e| &e["value"]),
                    Some(&serde_json::json!(name)),
                    "{target}: the {name} Job must set K_SERVICE"
                );
                continue;
            }
            let svc = services
                .get(name)
                .unwrap_or_else(|| panic!("{target}: no Knative Service for {name}"));
            assert_eq!(
                svc["metadata"]["labels"]["networking.knative.dev/visibility"], "cluster-local",
                "{target}: {name}"
            );
            let rev = &svc["spec"]["template"];
            assert_eq!(
                rev["spec"]["containerConcurrency"], f.scale.concurrency,
                "{target}: {name}"
            );
            assert_eq!(
                rev["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"],
                f.scale.max.to_string(),
                "{target}: {name}"
            );
            // Knative aims at containerConcurrency x utilization (ResolveMetricTarget); a `target`
            // annotation below containerConcurrency would be discounted by the utilization again.
            let annotations = &rev["metadata"]["annotations"];
            assert_eq!(
                annotations["autoscaling.knative.dev/target-utilization-percentage"], "70",
                "{target}: {name}"
            );
            if let Some(t) = annotations["autoscaling.knative.dev/target"].as_str() {
                let t: u32 = t.parse().unwrap();
                assert!(
                    f.scale.concurrency == 0 || t >= f.scale.concurrency,
                    "{target}: {name}'s target {t} discounts the concurrency {} twice",
                    f.scale.concurrency
                );
            }
            let routed = f.visibility == tern_routes::Visibility::Public || f.schedule.is_some();
            let rule = route["spec"]["rules"].as_array().and_then(|rules| {
                rules.iter().find(|r| {
                    r["filters"][0]["urlRewrite"]["hostname"]
                        == format!("{name}.tern.svc.cluster.local")
                })
            });
            match (routed, rule) {
                (true, None) => panic!("{target}: no HTTPRoute rule for {name}"),
                (false, Some(_)) => panic!("{target}: {name} is internal but routed"),
                (true, Some(rule)) => {
                    for r in &f.routes {
                        let prefix = r.path.split('{').next().unwrap_or_default();
                        let (ty, value) = if r.path.contains('{') {
                            ("PathPrefix", prefix)
                        } else {
                            ("Exact", r.path.as_str())
                        };
                        let found = rule["matches"].as_array().is_some_and(|ms| {
                            ms.iter().any(|m| {
                                m["method"] == r.method.as_str()
                                    && m["path"]["type"] == ty
                                    && m["path"]["value"] == value
                            })
                        });
                        assert!(
                            found,
                            "{target}: {} {} not routed to {name}",
                            r.method, r.path
                        );
                    }
                }
                (false, None) => {}
            }
        }
        assert_eq!(
            services.len(),
            table
                .functions
                .iter()
                .filter(|f| f.kind == tern_routes::Kind::Http)
                .count(),
            "{target}: a Service without a route-table entry"
        );
    }
}

fn containers(docs: &[Value]) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for d in docs {
        let (name, spec) = match d["kind"].as_str() {
            Some("Service") => (&d["metadata"]["name"], &d["spec"]["template"]["spec"]),
            Some("Job") => (&d["metadata"]["name"], &d["spec"]["template"]["spec"]),
            _ => continue,
        };
        for c in spec["containers"].as_array().into_iter().flatten() {
            out.push((
                format!(
                    "{} {}",
                    d["kind"].as_str().unwrap_or(""),
                    name.as_str().unwrap_or("")
                ),
                c,
            ));
        }
    }
    out
}

#[test]
fn every_container_is_restricted_with_resources_and_probes() {
    for (target, _) in TARGETS {
        let docs = docs(&functions(target));
        let all = containers(&docs);
        // One container per function; a standby runs no jobs (its database is a replica).
        let jobs = table()
            .functions
            .iter()
            .filter(|f| f.kind == tern_routes::Kind::Job)
            .count();
        let want = table().functions.len()
            - if target.ends_with("-standby") {
                jobs
            } else {
                0
            };
        assert_eq!(all.len(), want, "{target}: {} containers", all.len());
        for (who, c) in all {
            let sc = &c["securityContext"];
            assert_eq!(sc["runAsNonRoot"], true, "{target} {who}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{target} {who}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{target} {who}");
            assert_eq!(
                sc["seccompProfile"]["type"], "RuntimeDefault",
                "{target} {who}"
            );
            assert!(
                sc["capabilities"]["drop"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "ALL")),
                "{target} {who}: capabilities not dropped"
            );
            for kind in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    assert!(
                        !c["resources"][kind][res].is_null(),
                        "{target} {who}: no resources.{kind}.{res}"
                    );
                }
            }
            if who.starts_with("Service") {
                assert!(
                    c["readinessProbe"]["httpGet"]["path"].is_string(),
                    "{target} {who}"
                );
                assert!(
                    c["livenessProbe"]["httpGet"]["path"].is_string(),
                    "{target} {who}"
                );
            }
        }
    }
}

fn env_of(c: &Value) -> BTreeMap<String, String> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn seconds(s: &str) -> u64 {
    s.trim_end_matches('s').parse().unwrap_or(u64::MAX)
}

#[test]
fn shutdown_timing_oidc_and_images_are_consistent() {
    let table = table();
    for (target, _) in TARGETS {
        let docs = docs(&functions(target));
        // The origins the web form's CSRF check accepts are the hosts the Gateway routes.
        let route = of_kind(&docs, "HTTPRoute")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "tern-functions")
            .expect("the functions' HTTPRoute");
        let origins: Vec<String> = route["spec"]["hostnames"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| format!("https://{}", h.as_str().unwrap_or_default()))
            .collect();
        assert!(!origins.is_empty(), "{target}: no hostnames");
        for svc in of_kind(&docs, "Service") {
            let name = svc["metadata"]["name"].as_str().unwrap_or_default();
            let spec = &svc["spec"]["template"]["spec"];
            let c = &spec["containers"][0];
            let env = env_of(c);
            if svc["metadata"]["labels"]["tern.dev/visibility"] == "public" {
                assert_eq!(
                    env.get("TERN_PUBLIC_ORIGINS").map(String::as_str),
                    Some(origins.join(",").as_str()),
                    "{target} {name}"
                );
            }
            // Knative gives the pod timeoutSeconds of termination grace: queue-proxy's drain
            // (the function's preStop hook), then the function's drain + grace must fit.
            let timeout = spec["timeoutSeconds"].as_u64().unwrap_or_default();
            let used = tern_local::QUEUE_PROXY_DRAIN.as_secs()
                + seconds(&env["TERN_DRAIN_DELAY"])
                + seconds(&env["TERN_GRACE_PERIOD"]);
            assert!(
                used < timeout,
                "{target} {name}: queue-proxy drain + drain + grace {used}s >= {timeout}s"
            );
            assert!(
                seconds(&env["TERN_REQUEST_TIMEOUT"]) < timeout,
                "{target} {name}"
            );
            // Functions that Google services call require their OIDC token.
            let f = table
                .functions
                .iter()
                .find(|f| f.name == name)
                .expect("in the table");
            if !f.subscriptions.is_empty() || f.schedule.is_some() {
                assert_eq!(
                    env.get("TERN_OIDC").map(String::as_str),
                    Some("google"),
                    "{target} {name}"
                );
                assert!(
                    env["TERN_OIDC_AUDIENCE"].starts_with("https://"),
                    "{target} {name}"
                );
            }
        }
        // Production images are pinned by digest.
        if target.starts_with("prod") {
            for (who, c) in containers(&docs) {
                let image = c["image"].as_str().unwrap_or_default();
                let digest = image
                    .rsplit_once("@sha256:")
                    .map(|(_, d)| d)
                    .unwrap_or_default();
                assert!(
                    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{target} {who}: image {image} is not pinned by digest"
                );
            }
        }
    }
}

/// Names that hold credentials. A manifest may name where a secret is (`*_SECRET`, `*_FILE`, a
/// Secret Manager secret id) but never carry one.
fn looks_like_secret(key: &str, value: &str) -> bool {
    let k = key.to_ascii_uppercase();
    let named = [
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "API_KEY",
        "APIKEY",
        "PRIVATE_KEY",
        "CREDENTIALS",
        "HASHES",
        "CSRF",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("SECRET");
    let pointer = k.ends_with("_SECRET") && value.starts_with("projects/")
        || k.ends_with("_FILE")
        || k.ends_with("PASSWORDSECRET")
        || value.is_empty();
    let shaped = value.contains("PRIVATE KEY-----")
        || value.starts_with("AIza")
        || value.starts_with("ghp_")
        || value.starts_with("tern_")
        || value.contains("\"private_key\"")
        || (value.len() >= 40
            && !value.contains('/')
            && !value.starts_with("sha256:")
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'=' || b == b'_'));
    (named && !pointer) || shaped
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(
                    &format!("{prefix}{}{k}", if prefix.is_empty() { "" } else { "." }),
                    v,
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn values_file(chart: &str, file: &str) -> Value {
    let text = std::fs::read_to_string(root().join(chart).join(file)).expect("values file");
    docs(&text).into_iter().next().unwrap_or(Value::Null)
}

#[test]
fn no_value_or_manifest_carries_a_secret() {
    // The detector itself: it must catch these and let the pointers through.
    assert!(looks_like_secret("DB_PASSWORD", "hunter2"));
    assert!(looks_like_secret("database.password", "hunter2"));
    assert!(looks_like_secret(
        "ORDERS_API_KEY_HASHES",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    ));
    assert!(looks_like_secret("note", "-----BEGIN PRIVATE KEY-----"));
    assert!(!looks_like_secret(
        "database.serverCa",
        "-----BEGIN CERTIFICATE-----"
    ));
    assert!(!looks_like_secret(
        "DB_PASSWORD_SECRET",
        "projects/p/secrets/db/versions/latest"
    ));
    assert!(!looks_like_secret(
        "database.passwordSecret",
        "tern-db-password"
    ));
    assert!(!looks_like_secret(
        "images.digests.web",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000"
    ));

    let mut found = Vec::new();
    for chart in [FUNCTIONS_CHART, PLATFORM_CHART] {
        let dir = root().join(chart).join("env");
        for entry in std::fs::read_dir(&dir).expect("env dir").flatten() {
            let file = format!("env/{}", entry.file_name().to_string_lossy());
            let mut pairs = Vec::new();
            flatten("", &values_file(chart, &file), &mut pairs);
            flatten("", &values_file(chart, "values.yaml"), &mut pairs);
            for (k, v) in pairs {
                if looks_like_secret(&k, &v) {
                    found.push(format!("{chart}/{file}: {k}"));
                }
            }
        }
    }
    for (target, _) in TARGETS {
        for (who, c) in containers(&docs(&functions(target))) {
            for (k, v) in env_of(c) {
                if looks_like_secret(&k, &v) {
                    found.push(format!("{target} {who}: env {k}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "values that look like secrets:\n{}",
        found.join("\n")
    );
}

/// After failover the promoted replica is the primary: `database.replica: false` in the
/// standby's values brings the migrate Job back, so the next release's migrations run there.
#[test]
fn a_promoted_standby_runs_its_migrations_again() {
    let promoted = functions_with("prod-standby", &["database.replica=false"]).expect("render");
    let jobs = of_kind(&docs(&promoted), "Job")
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap_or("").to_owned())
        .collect::<Vec<_>>();
    assert_eq!(jobs, ["migrate"]);
}

#[test]
fn the_standby_differs_from_prod_only_in_region_scale_and_hosts() {
    let allowed = [
        "cluster",
        "region",
        "scale.",
        "hosts",
        "database.host",
        "database.replica",
        // Each Cloud SQL instance has its own server CA.
        "database.serverCa",
        "gateway.addressName",
    ];
    for chart in [FUNCTIONS_CHART, PLATFORM_CHART] {
        let mut pairs = Vec::new();
        flatten("", &values_file(chart, "env/prod-standby.yaml"), &mut pairs);
        for (k, _) in pairs {
            assert!(
                allowed
                    .iter()
                    .any(|a| k == *a || k.starts_with(a) || k.starts_with(&format!("{a}["))),
                "{chart}/env/prod-standby.yaml sets {k}, which must stay as in prod"
            );
        }
    }
    // Rendered: the same Services with the same spec, except labels, scale and the database host.
    let normalize = |docs: Vec<Value>| -> BTreeMap<String, Value> {
        docs.into_iter()
            .map(|mut d| {
                let key = format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap_or("")
                );
                let mut text = d.to_string();
                for (from, to) in [
                    ("europe-west4", "REGION"),
                    ("europe-west1", "REGION"),
                    ("\"standby\"", "\"CLUSTER\""),
                    ("\"primary\"", "\"CLUSTER\""),
                    ("10.30.32.5", "DBHOST"),
                    ("10.30.32.3", "DBHOST"),
                    // The standby's own test host is one more public origin.
                    (",https://standby.orders.example.com", ""),
                ] {
                    text = text.replace(from, to);
                }
                d = serde_json::from_str(&text).unwrap_or(Value::Null);
                if let Some(a) = d["spec"]["template"]["metadata"]["annotations"].as_object_mut() {
                    a.remove("autoscaling.knative.dev/min-scale");
                }
                if let Some(h) = d["spec"]["hostnames"].as_array_mut() {
                    h.clear();
                }
                // Warm instances follow min-scale, which the standby keeps at 0: its Rules have
                // no warm-instance group.
                if let Some(g) = d["spec"]["groups"].as_array_mut() {
                    g.retain(|g| g["name"] != "tern-warm-instances");
                }
                (key, d)
            })
            .collect()
    };
    let prod = normalize(docs(&functions("prod")));
    let standby_docs = docs(&functions("prod-standby"));
    for svc in of_kind(&standby_docs, "Service") {
        assert_eq!(
            svc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"],
            "0",
            "standby {} must be at min-scale 0",
            svc["metadata"]["name"]
        );
    }
    let standby = normalize(standby_docs);
    // The real differences: the standby runs no jobs (its database is a read-only replica, so
    // the migrate PreSync hook would fail and stop every sync), so it has neither the Jobs nor
    // their accounts. Everything else is the same set of objects.
    let jobs: BTreeSet<String> = table()
        .functions
        .iter()
        .filter(|f| f.kind == tern_routes::Kind::Job)
        .flat_map(|f| {
            [
                format!("Job/{}", f.name),
                format!("ServiceAccount/fn-{}", f.name),
            ]
        })
        .collect();
    assert!(!jobs.is_empty());
    let prod_keys: BTreeSet<&String> = prod.keys().collect();
    let standby_keys: BTreeSet<&String> = standby.keys().collect();
    assert_eq!(
        prod_keys
            .difference(&standby_keys)
            .map(|k| (*k).clone())
            .collect::<BTreeSet<_>>(),
        jobs,
        "only the jobs and their accounts are prod's alone"
    );
    assert!(
        standby_keys.is_subset(&prod_keys),
        "the standby renders nothing prod does not"
    );
    for (k, v) in &standby {
        assert_eq!(v, &prod[k], "{k} differs between prod and its standby");
    }
}

/// The local router follows the rules the chart renders: the same functions, the same method +
/// path matches, the same host rewrite, in the namespace Argo CD releases the chart into.
#[test]
fn the_router_routes_as_the_rendered_httproutes_do() {
    use tern_routes::gateway::PathMatch;
    let apps = std::fs::read_to_string(root().join("knative/argocd/apps/functions.yaml")).unwrap();
    let namespaces: BTreeSet<String> = docs(&apps)
        .iter()
        .filter_map(|d| d["spec"]["template"]["spec"]["destination"]["namespace"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from([tern_local::NAMESPACE.to_owned()]),
        "the functions' namespace"
    );
    type Rule = (String, Vec<(String, PathMatch)>);
    let ours: Vec<Rule> = table()
        .gateway_rules(tern_local::NAMESPACE)
        .into_iter()
        .map(|r| (r.host, r.matches))
        .collect();
    assert!(!ours.is_empty());
    for (target, _) in TARGETS {
        let docs = docs(&functions(target));
        let route = of_kind(&docs, "HTTPRoute")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "tern-functions")
            .expect("the functions' HTTPRoute");
        let rendered: Vec<Rule> = route["spec"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rule| {
                let host = rule["filters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["type"] == "URLRewrite")
                    .and_then(|f| f["urlRewrite"]["hostname"].as_str())
                    .unwrap_or_else(|| panic!("{target}: a rule without a host rewrite: {rule}"))
                    .to_owned();
                let removed: Vec<&str> = rule["filters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|f| f["type"] == "RequestHeaderModifier")
                    .flat_map(|f| f["requestHeaderModifier"]["remove"].as_array().unwrap())
                    .filter_map(|h| h.as_str())
                    .collect();
                assert_eq!(
                    removed,
                    tern_routes::gateway::REMOVED_HEADERS,
                    "{target}: every public rule removes the tag header: {rule}"
                );
                let matches = rule["matches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        let value = m["path"]["value"].as_str().unwrap().to_owned();
                        let path = match m["path"]["type"].as_str() {
                            Some("Exact") => PathMatch::Exact(value),
                            Some("PathPrefix") => PathMatch::Prefix(value),
                            other => panic!("{target}: path match type {other:?}"),
                        };
                        (m["method"].as_str().unwrap().to_owned(), path)
                    })
                    .collect();
                (host, matches)
            })
            .collect();
        assert_eq!(
            rendered, ours,
            "{target}: the router and the HTTPRoute disagree"
        );
    }
}

/// The connection budget (issue 13): every function with a database at its max-scale, each
/// instance with a full pool, plus the reserve, fits in the database's `max_connections`; the
/// chart's `database.maxConnections` is what `infra/envs/<env>` sets; a pool too large for the
/// budget fails to render.
#[test]
fn the_connection_budget_fits_the_databases_max_connections() {
    let defaults = values_file(FUNCTIONS_CHART, "values.yaml");
    for (target, files) in TARGETS {
        let env = target.trim_end_matches("-standby");
        let infra = std::fs::read_to_string(root().join(format!("infra/envs/{env}/main.tf")))
            .expect("the environment's OpenTofu root");
        let infra_max: i64 = infra
            .split("max_connections")
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .trim_start_matches('=')
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("infra/envs/{env} sets database.max_connections"));
        // The value files in order over the defaults, as Helm merges them.
        let mut database = defaults["database"].clone();
        for f in files {
            if let Some(over) = values_file(FUNCTIONS_CHART, f)["database"].as_object() {
                for (k, v) in over {
                    database[k] = v.clone();
                }
            }
        }
        let chart_max = database["maxConnections"].as_i64().unwrap();
        assert_eq!(
            chart_max, infra_max,
            "{target}: database.maxConnections and infra/envs/{env}'s max_connections differ"
        );
        let reserved = database["reservedConnections"].as_i64().unwrap();
        // What the rendered Services would open at most.
        let docs = docs(&functions(target));
        let mut pools = 0;
        for svc in of_kind(&docs, "Service")
            .into_iter()
            .filter(|s| s["apiVersion"] == "serving.knative.dev/v1")
        {
            let template = &svc["spec"]["template"];
            let max: i64 = template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let env = env_of(&template["spec"]["containers"][0]);
            if let Some(pool) = env.get("DB_POOL_SIZE") {
                pools += max * pool.parse::<i64>().unwrap();
            }
        }
        assert!(pools > 0, "{target}: no function has a pool");
        assert!(
            pools + reserved <= chart_max,
            "{target}: {pools} pooled connections + {reserved} reserved > {chart_max}"
        );
        eprintln!("{target}: {pools} pooled + {reserved} reserved of {chart_max}");
    }
    let err = functions_with("prod", &["database.poolSize=8"])
        .expect_err("prod with 8 connections per instance exceeds 400");
    assert!(
        err.contains("connection budget is exceeded") && err.contains("infra/envs/prod"),
        "{err}"
    );
}

/// Debian's promtool (the `prometheus` package; `.ci/run` installs it).
fn promtool() -> PathBuf {
    let path = PathBuf::from("/usr/bin/promtool");
    assert!(
        path.exists(),
        "promtool is missing: apt-get install prometheus (.ci/run does)"
    );
    path
}

/// The rule groups of `target`'s Rules object, as a Prometheus rule file.
fn rules_file(target: &str) -> (Value, String) {
    let fns = docs(&functions(target));
    let rules = of_kind(&fns, "Rules");
    assert_eq!(rules.len(), 1, "{target}: one Rules object");
    let groups = serde_json::json!({"groups": rules[0]["spec"]["groups"]});
    let text = serde_norway::to_string(&groups).expect("YAML");
    (groups, text)
}

fn promtool_run(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_rendering_of_the_rules_and_the_local_run_s_pass_promtool_check() {
    let dir = tern_e2e::scratch("rules-check");
    let mut files = Vec::new();
    for (target, _) in TARGETS {
        let (_, text) = rules_file(target);
        files.push(write_scratch(&dir, &format!("{target}.yaml"), &text));
    }
    // What `scripts/dev`'s Prometheus loads: its thresholds, then the chart's file.
    files.push(write_scratch(
        &dir,
        "local-thresholds.yaml",
        tern_local::prometheus::LOCAL_THRESHOLDS,
    ));
    files.push(root().join(tern_local::prometheus::RULES_FILE));
    let mut args = vec!["check".to_owned(), "rules".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = promtool_run(&dir, &args);
    assert!(ok, "promtool check rules:\n{out}");
    // The standby cluster keeps nothing warm: no warm-instance group there.
    let (standby, _) = rules_file("prod-standby");
    let names: Vec<&str> = standby["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(!names.contains(&"tern-warm-instances"), "{names:?}");
}

#[test]
fn promtool_unit_tests_pass_and_cover_every_rule() {
    let dir = tern_e2e::scratch("rules-test");
    let (groups, text) = rules_file("prod");
    write_scratch(&dir, "rules.yaml", &text);
    let tests_text = std::fs::read_to_string(root().join("tests/rules/rules.test.yaml"))
        .expect("tests/rules/rules.test.yaml");
    write_scratch(&dir, "rules.test.yaml", &tests_text);
    let (ok, out) = promtool_run(&dir, &["test", "rules", "rules.test.yaml"]);
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");

    // Coverage: every alert fires in a case and stays quiet in another; every recording rule
    // is evaluated by an expression test.
    let tests: Value = serde_norway::from_str(&tests_text).expect("the tests' YAML");
    let cases: Vec<&Value> = tests["tests"].as_array().into_iter().flatten().collect();
    let alert_cases = |name: &str, firing: bool| {
        cases
            .iter()
            .flat_map(|c| c["alert_rule_test"].as_array().cloned().unwrap_or_default())
            .filter(|t| t["alertname"] == name)
            .any(|t| {
                t["exp_alerts"]
                    .as_array()
                    .is_some_and(|a| a.is_empty() != firing)
            })
    };
    let exprs: Vec<String> = cases
        .iter()
        .flat_map(|c| {
            c["promql_expr_test"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let rules: Vec<&Value> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let mut alerts = BTreeSet::new();
    for r in &rules {
        if let Some(name) = r["alert"].as_str() {
            alerts.insert(name);
            assert!(alert_cases(name, true), "{name} never fires in a test");
            assert!(alert_cases(name, false), "{name} is never tested quiet");
        }
        if let Some(name) = r["record"].as_str() {
            assert!(
                exprs.iter().any(|e| e.contains(name)),
                "recording rule {name} has no expression test"
            );
        }
    }
    // Every alert has its row in the runbook's table (`| `NAME`, `NAME` | severity | ...`), and
    // every row names alerts.
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let described: BTreeSet<&str> = ops
        .lines()
        .filter(|l| l.starts_with("| `Tern"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split(','))
        .map(|name| name.trim().trim_matches('`'))
        .collect();
    assert_eq!(alerts, described, "the alerts docs/operations.md describes");
}

/// `scripts/render-env` (what Argo CD applies to one cluster), with Helm from `.local/bin`.
fn render_env(repo: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(repo.join("scripts/render-env"))
        .args(args)
        .env("HELM", tool("helm"))
        .current_dir(repo)
        .output()
        .expect("scripts/render-env");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The values this file's TARGETS pass are the ones the ApplicationSet's generated Application
/// gives Helm: its value files, then its `valuesObject` (the environment file's images).
#[test]
fn the_targets_values_are_the_ones_argo_cd_passes() {
    for (target, files) in TARGETS {
        let (env, role) = target.split_once('-').unwrap_or((target, "primary"));
        let ours: Vec<String> = files
            .iter()
            .map(|f| format!("{FUNCTIONS_CHART}/{f}"))
            .collect();
        assert_eq!(ours, tern_e2e::clusters::value_files(env, role), "{target}");
        let object: Value =
            serde_json::from_str(&std::fs::read_to_string(images(target)).unwrap()).unwrap();
        assert_eq!(
            object,
            tern_e2e::clusters::values_object(env, role),
            "{target}"
        );
        assert!(
            object["images"]["digests"]
                .as_object()
                .is_some_and(|d| d.len() >= 7),
            "{target}: {object}"
        );
    }
}

/// Every cluster renders at the revision its environment runs (its file on main: the
/// ApplicationSets' git generator), with that file's image digests, and what it renders passes
/// kubeconform; rendered at main, it is what the other tests here check.
#[test]
fn every_environment_renders_at_the_revision_promoted_to_it() {
    let dir = tern_e2e::scratch("render-env");
    let mut files = Vec::new();
    for (target, _) in TARGETS {
        let (env, role) = target.split_once('-').unwrap_or((target, "primary"));
        let release = tern_e2e::release_of(env);
        assert_eq!(release["environment"], env);
        let revision = release["revision"].as_str().expect("revision");
        if env == "dev" {
            assert_eq!(revision, "main", "dev follows main");
        } else {
            assert!(
                revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
                "{env} runs a promoted commit, not {revision}"
            );
        }
        let rendered = render_env(&root(), &[env, "--cluster", role])
            .unwrap_or_else(|e| panic!("{target} at {revision}: {e}"));
        assert!(rendered.contains("kind: Service"), "{target}");
        files.push(write_scratch(&dir, &format!("{target}.yaml"), &rendered));
        // At main: the chart as this file's tests render it.
        let at_main = render_env(
            &root(),
            &[
                env,
                "--cluster",
                role,
                "--revision",
                "main",
                "--only",
                "functions",
            ],
        )
        .unwrap();
        let body = at_main.split_once('\n').map_or("", |(_, rest)| rest);
        assert_eq!(body, functions(target), "{target}");
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, out) = kubeconform(&refs);
    assert!(ok, "kubeconform -strict:\n{out}");
    // Refusals, each naming what is wrong.
    for (args, says) in [
        (vec!["qa"], "ENV must be dev, staging or prod"),
        (
            vec!["dev", "--cluster", "standby"],
            "dev has no standby cluster",
        ),
        (
            vec![
                "prod",
                "--revision",
                "0123456789abcdef0123456789abcdef01234567",
            ],
            "no commit",
        ),
    ] {
        let err = render_env(&root(), &args).expect_err(says);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Issue 16, point 3: a change to the chart, the platform, an environment's values or dev's
/// images on main reaches dev at once, staging when dev is promoted, prod when staging is; a
/// revert of the promotion is the way back. In a clone, with the scripts the promote workflow
/// runs.
#[test]
fn a_change_on_main_reaches_prod_only_when_promoted() {
    let dir = tern_e2e::scratch("staged");
    let repo = dir.join("repo");
    let clone = Command::new("git")
        .args(["clone", "-q"])
        .arg(format!("file://{}", root().display()))
        .arg(&repo)
        .output()
        .expect("git clone");
    assert!(
        clone.status.success(),
        "{}",
        String::from_utf8_lossy(&clone.stderr)
    );
    let sh = |cmd: &str| -> String {
        let out = Command::new("bash")
            .args(["-c", cmd])
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let render = |env: &str| render_env(&repo, &[env]).unwrap_or_else(|e| panic!("{env}: {e}"));
    // Every environment at this commit to start with.
    sh("scripts/promote dev staging && scripts/promote staging prod && git commit -qam promote");
    let prod_before = render("prod");
    let staging_before = render("staging");
    let dev_before = render("dev");

    // One commit on main: a chart template, a platform template, prod's values, a dev digest.
    let marker = |what: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: staged-{what}\n  namespace: tern\ndata:\n  change: \"1\"\n"
        )
    };
    std::fs::write(
        repo.join("knative/chart/tern-functions/templates/staged.yaml"),
        marker("chart"),
    )
    .unwrap();
    std::fs::write(
        repo.join("knative/platform/templates/staged.yaml"),
        format!(
            "{{{{- if eq .Values.component \"monitoring\" }}}}\n---\n{}{{{{- end }}}}\n",
            marker("platform")
        ),
    )
    .unwrap();
    sh(
        "sed -i 's/^  rolloutDurationSeconds: .*/  rolloutDurationSeconds: 299/' knative/chart/tern-functions/env/prod.yaml",
    );
    let digest = format!("sha256:{}", "cd".repeat(32));
    sh(&format!(
        "scripts/set-digest knative/environments/dev.yaml web {digest}"
    ));
    sh("git add -A && git commit -qm 'a change on main'");
    let changed = |text: &str| {
        [
            text.contains("name: staged-chart"),
            text.contains("name: staged-platform"),
            text.contains("rollout-duration: \"299s\""),
            text.contains(&digest),
        ]
    };
    let dev = render("dev");
    assert_eq!(changed(&dev), [true, true, false, true], "dev follows main");
    assert_ne!(dev, dev_before);
    assert_eq!(
        render("staging"),
        staging_before,
        "staging waits for a promotion"
    );
    assert_eq!(render("prod"), prod_before, "prod waits for a promotion");

    // dev -> staging: the revision and the digests, in one change to staging's file.
    let said = sh("scripts/promote dev staging");
    assert!(
        said.contains("revision: ") && said.contains("a change on main"),
        "{said}"
    );
    assert!(said.contains("web: ") && said.contains(&digest), "{said}");
    let touched = sh("git status --porcelain");
    assert_eq!(touched.trim(), "M knative/environments/staging.yaml");
    sh("git commit -qam 'staging: promote what dev runs'");
    let staging = render("staging");
    assert_eq!(
        changed(&staging),
        [true, true, false, true],
        "staging runs dev's"
    );
    assert_eq!(render("prod"), prod_before, "prod still waits");

    // staging -> prod.
    sh("scripts/promote staging prod && git commit -qam 'prod: promote what staging runs'");
    let prod = render("prod");
    assert_eq!(
        changed(&prod),
        [true, true, true, true],
        "prod runs it, with its own values"
    );

    // The way back: revert the promotion.
    sh("git revert --no-edit HEAD >/dev/null");
    assert_eq!(render("prod"), prod_before, "the revert puts prod back");
}

/// Issue 16, point 6: no database password exists. Every container that reaches the database
/// logs in as its own Google service account (the user Cloud SQL makes of it:
/// `fn-<name>@<project>.iam`, the account the pod's Workload Identity annotation names) with a
/// token (`DB_AUTH=iam`), over TLS, and no container carries a password setting of any form.
#[test]
fn every_function_logs_in_to_the_database_as_itself_with_no_password() {
    for (target, _) in TARGETS {
        let env = target.split_once('-').map_or(target, |(env, _)| env);
        let project = tern_e2e::release_of(env)["environment"]
            .as_str()
            .map(|e| format!("tern-{e}"))
            .unwrap();
        let docs = docs(&functions(target));
        let mut with_db = 0;
        for (who, c) in containers(&docs) {
            let vars = env_of(c);
            assert!(
                !vars.keys().any(|k| k.starts_with("DB_PASSWORD")),
                "{target} {who}: {vars:?}"
            );
            if !vars.contains_key("DB_HOST") {
                continue;
            }
            with_db += 1;
            // "<kind> <name>": the Service or Job is named after its function.
            let name = who.split_once(' ').map_or("", |(_, n)| n);
            assert_eq!(vars["DB_AUTH"], "iam", "{target} {who}");
            assert_eq!(
                vars["DB_USER"],
                format!("fn-{name}@{project}.iam"),
                "{target} {who}"
            );
            assert!(vars["DB_SSLMODE"].starts_with("verify-"), "{target} {who}");
        }
        assert!(
            with_db >= 4,
            "{target}: {with_db} containers with a database"
        );
        // ... and the account each pod runs as is that user's service account.
        for sa in of_kind(&docs, "ServiceAccount") {
            let name = sa["metadata"]["name"].as_str().unwrap();
            let gsa = sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
                .as_str()
                .unwrap();
            assert_eq!(
                gsa,
                format!("{}@{project}.iam.gserviceaccount.com", name),
                "{target}"
            );
        }
    }
}
