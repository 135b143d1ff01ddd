//! The clusters of every environment, as real control planes (etcd, kube-apiserver, Knative
//! Serving's controller; `tern_local::ControlPlane`), with the platform and the functions
//! installed by Helm the way Argo CD installs them: one control plane per cluster the
//! ApplicationSets target (dev, staging, prod primary, prod standby), started once per test
//! binary and shared by its tests.
//!
//! What Argo CD would do, done here with the same inputs:
//! - the platform chart's components (`knative/argocd/platform-apps`: namespaces, serving,
//!   gateway, monitoring), each a Helm release with the environment's value files and the
//!   component and cluster role set as the parent Application sets them;
//! - the functions chart (`knative/argocd/apps/functions.yaml`): release `tern` in namespace
//!   `tern`, with `env/<env>.yaml` and `env/<env>-<role>.yaml` where it exists, then the
//!   `valuesObject` its templatePatch sets: the image digests of `knative/environments/<env>.yaml`;
//! - the AppProjects, the ApplicationSets, and the Applications the ApplicationSets generate, in
//!   `argocd` on every cluster (each runs its own Argo CD, registered with itself only:
//!   decision 0021).
//!
//! Each environment is installed from this checkout, as it will run once this commit is promoted
//! to it: the Applications name the revision each environment runs now
//! (`knative/environments/<env>.yaml`), and `deploy.rs` renders that revision.
//!
//! What the Knative operator would do: Serving's config maps, with the KnativeServing's
//! `spec.config` written into them. What is not here: the operator itself (its chart comes from a
//! Helm repository this machine cannot reach), kubelets (no pod starts: Revisions stay
//! unready), kube-controller-manager (no garbage collection, no Job runs).

use crate::root;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tern_local::ControlPlane;

/// One cluster: which environment and role it is, its GKE context name, its control plane.
pub struct Cluster {
    /// dev, staging or prod.
    pub environment: &'static str,
    /// primary or standby.
    pub role: &'static str,
    /// `tern-<environment>-<role>`: the cluster's name, and Argo CD's name for it.
    pub name: String,
    /// `gke_<project>_<region>_<name>`: the context `gcloud container clusters get-credentials`
    /// writes, which the operations scripts use.
    pub context: String,
    /// Its API server.
    pub cp: ControlPlane,
    /// How long it took to start, install the platform and the functions.
    pub ready_in: Duration,
}

/// What an ApplicationSet's cluster generator knows of a cluster: its name and labels.
#[derive(Debug, Clone)]
pub struct Target {
    /// `tern-<environment>-<role>`.
    pub name: String,
    /// The `tern.dev/environment` label.
    pub environment: String,
    /// The `tern.dev/cluster` label.
    pub role: String,
}

impl Target {
    pub fn new(environment: &str, role: &str) -> Self {
        Self {
            name: format!("tern-{environment}-{role}"),
            environment: environment.to_owned(),
            role: role.to_owned(),
        }
    }
}

impl Cluster {
    /// The cluster as the ApplicationSets' generators see it.
    pub fn target(&self) -> Target {
        Target::new(self.environment, self.role)
    }
}

/// Every cluster, and one kubeconfig with a context for each.
pub struct Clusters {
    pub all: Vec<Cluster>,
    /// A kubeconfig with every cluster's context (KUBECONFIG for the operations scripts).
    pub kubeconfig: PathBuf,
    /// From the first start to the last cluster ready.
    pub ready_in: Duration,
}

impl Clusters {
    /// The cluster of `environment` and `role`.
    pub fn get(&self, environment: &str, role: &str) -> &Cluster {
        self.all
            .iter()
            .find(|c| c.environment == environment && c.role == role)
            .unwrap_or_else(|| panic!("no cluster {environment}/{role}"))
    }
}

/// The targets of the ApplicationSets: every environment's primary, and prod's standby.
pub const TARGETS: [(&str, &str); 4] = [
    ("dev", "primary"),
    ("staging", "primary"),
    ("prod", "primary"),
    ("prod", "standby"),
];

/// The clusters, started on first use and shared by every test of the binary. Each is started by
/// a thread that then stays parked: the processes die with the thread that started them
/// (PR_SET_PDEATHSIG), so that thread must outlive the tests.
pub fn clusters() -> &'static Clusters {
    static CLUSTERS: OnceLock<Result<Clusters, String>> = OnceLock::new();
    // A failed start is kept and reported to every test, never retried.
    match CLUSTERS.get_or_init(start_all) {
        Ok(c) => c,
        Err(e) => panic!("the clusters did not start: {e}"),
    }
}

fn start_all() -> Result<Clusters, String> {
    let started = Instant::now();
    let dir = crate::scratch("clusters");
    let mut waiting = Vec::new();
    for (environment, role) in TARGETS {
        let (tx, rx) = mpsc::channel();
        let dir = dir.join(format!("{environment}-{role}"));
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let made = std::panic::catch_unwind(|| start_cluster(environment, role, &dir))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()));
                    Err(format!(
                        "tern-{environment}-{role}: {}",
                        what.unwrap_or_default()
                    ))
                })
                .map(|mut c| {
                    c.ready_in = t0.elapsed();
                    c
                });
            let _ = tx.send(made);
            loop {
                std::thread::park();
            }
        });
        waiting.push(rx);
    }
    // Every cluster is received (the ones that started stay up until the process ends), then
    // the first failure is returned.
    let made: Vec<Result<Cluster, String>> = waiting
        .into_iter()
        .map(|rx| rx.recv().unwrap_or_else(|_| Err("its thread ended".into())))
        .collect();
    let mut all = Vec::new();
    for m in made {
        all.push(m?);
    }
    let kubeconfig = dir.join("kubeconfig");
    let entries: Vec<(&str, &ControlPlane)> =
        all.iter().map(|c| (c.context.as_str(), &c.cp)).collect();
    tern_local::write_kubeconfig(&kubeconfig, &entries)?;
    let mut clusters = Clusters {
        all,
        kubeconfig,
        ready_in: Duration::ZERO,
    };
    // Every cluster runs its own Argo CD, registered with only that cluster (decision 0021).
    for (environment, role) in TARGETS {
        install_argocd_objects(&clusters, environment, role)?;
    }
    clusters.ready_in = started.elapsed();
    Ok(clusters)
}

/// A value of a chart's values file (`key: value` at the top level), or of its `gcp:` block.
fn top_value(file: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

fn nested_value(file: &Path, block: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .skip_while(|l| *l != format!("{block}:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

/// The Application the functions ApplicationSet generates for a target.
pub fn functions_application(environment: &str, role: &str) -> Value {
    let apps = generated_applications("functions.yaml", &[Target::new(environment, role)])
        .unwrap_or_else(|e| panic!("{e}"));
    match apps["items"].as_array().map(Vec::as_slice) {
        Some([app]) => app.clone(),
        _ => panic!(
            "tern-functions generates {} for {environment}/{role}",
            apps["items"]
        ),
    }
}

/// The functions chart's value files for a target, root-relative, as its generated Application
/// lists them (relative to the chart's path), the missing ones skipped
/// (`ignoreMissingValueFiles`); after them Argo CD applies the Application's `valuesObject`
/// ([`values_object`]: the environment's image digests).
pub fn value_files(environment: &str, role: &str) -> Vec<String> {
    application_value_files(&functions_application(environment, role))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The `helm.valuesObject` of a target's functions Application.
pub fn values_object(environment: &str, role: &str) -> Value {
    functions_application(environment, role)["spec"]["source"]["helm"]["valuesObject"].clone()
}

/// Helm's value arguments for a target's functions chart, as Argo CD passes them: `-f` for each
/// value file, then the `valuesObject`, written to a file of its own in this process's scratch.
pub fn helm_value_args(environment: &str, role: &str) -> Vec<String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let mut args = Vec::new();
    for f in value_files(environment, role) {
        args.extend(["-f".to_owned(), root().join(f).display().to_string()]);
    }
    let dir = DIR.get_or_init(|| crate::scratch("values-objects"));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("{environment}-{role}-{n}.json"));
    std::fs::write(&file, values_object(environment, role).to_string()).expect("valuesObject");
    args.extend(["-f".to_owned(), file.display().to_string()]);
    args
}

/// The sources of an Application: `spec.sources`, or its one `spec.source`. Argo CD's
/// repo-server refuses two sources of one repository at different revisions ("cannot reference
/// a different revision of the same repository"), and so does this.
pub fn sources(app: &Value) -> Result<Vec<&Value>, String> {
    let all: Vec<&Value> = match app["spec"]["sources"].as_array() {
        Some(all) => all.iter().collect(),
        None => vec![&app["spec"]["source"]],
    };
    for a in &all {
        for b in &all {
            if a["repoURL"] == b["repoURL"] && a["targetRevision"] != b["targetRevision"] {
                return Err(format!(
                    "{}: two sources of {} at different revisions, which Argo CD refuses",
                    app["metadata"]["name"], a["repoURL"]
                ));
            }
        }
    }
    Ok(all)
}

/// The value files of an Application's Helm source (the one with a `path`), root-relative, the
/// missing ones skipped; see [`value_files`].
pub fn application_value_files(app: &Value) -> Result<Vec<String>, String> {
    let all = sources(app)?;
    let chart = all
        .iter()
        .find(|s| s["path"].is_string())
        .ok_or("no source with a path")?;
    let path = chart["path"].as_str().unwrap_or_default();
    let mut files = Vec::new();
    for f in chart["helm"]["valueFiles"].as_array().into_iter().flatten() {
        let f = f.as_str().ok_or("a value file that is not a string")?;
        if f.starts_with('$') {
            return Err(format!("{f}: a ref source this test does not evaluate"));
        }
        let file = format!("{path}/{f}");
        if root().join(&file).exists() {
            files.push(file);
        }
    }
    Ok(files)
}

/// The GKE context name of a target, from its values: `gke_<gcp.project>_<region>_<cluster>`.
pub fn context_of(environment: &str, role: &str) -> String {
    let files: Vec<PathBuf> = value_files(environment, role)
        .iter()
        .map(|f| root().join(f))
        .collect();
    let last = |f: &dyn Fn(&Path) -> Option<String>| files.iter().rev().find_map(|p| f(p));
    let project = last(&|p| nested_value(p, "gcp", "project")).expect("gcp.project");
    let region = last(&|p| top_value(p, "region")).expect("region");
    format!("gke_{project}_{region}_tern-{environment}-{role}")
}

fn start_cluster(
    environment: &'static str,
    role: &'static str,
    dir: &Path,
) -> Result<Cluster, String> {
    let root = root();
    let name = format!("tern-{environment}-{role}");
    let what = |e: String| format!("{name}: {e}");
    let mut cp = ControlPlane::start(&root, dir).map_err(what)?;
    cp.install_crds(&root).map_err(what)?;
    install_platform(&cp, &name, environment, role, dir).map_err(what)?;
    cp.install_serving_config(&root).map_err(what)?;
    // From here on, Serving's webhook admits Knative's objects and validates its config maps.
    cp.start_knative_webhook(&root).map_err(what)?;
    operator_writes_config(&cp).map_err(what)?;
    cp.start_knative_controller().map_err(what)?;
    install_functions(&cp, environment, role, &[]).map_err(what)?;
    Ok(Cluster {
        environment,
        role,
        context: context_of(environment, role),
        name,
        cp,
        ready_in: Duration::ZERO,
    })
}

/// The child Applications `knative/argocd/platform-apps` renders for a cluster (what the cluster's
/// `tern-platform-<cluster>` Application syncs), in the order of their sync waves.
pub fn platform_applications(
    name: &str,
    environment: &str,
    role: &str,
) -> Result<Vec<Value>, String> {
    let mut target = Target::new(environment, role);
    target.name = name.to_owned();
    let parent = generated_applications("platform.yaml", &[target])?;
    if parent["items"].as_array().map(Vec::len) != Some(1) {
        return Err(format!(
            "tern-platform generates {} Applications for {name}, not one",
            parent["items"]
        ));
    }
    let values = &parent["items"][0]["spec"]["source"]["helm"]["valuesObject"];
    let dir = crate::scratch(&format!("platform-apps-{name}"));
    let file = dir.join("values.json");
    std::fs::write(&file, values.to_string()).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(root().join(".local/bin/helm"))
        .args(["template", "platform", "knative/argocd/platform-apps", "-f"])
        .arg(&file)
        .current_dir(root())
        .output()
        .map_err(|e| format!("helm: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut apps: Vec<Value> = documents(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|d| serde_norway::from_str::<Value>(d).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    apps.sort_by_key(sync_wave);
    Ok(apps)
}

/// An object's `argocd.argoproj.io/sync-wave` (0 when unset).
pub fn sync_wave(object: &Value) -> i64 {
    object["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0)
}

/// The platform chart's components, installed as the cluster's child Applications define them,
/// wave after wave: each a Helm release of `spec.source.path` with its value files (the missing
/// ones skipped: `ignoreMissingValueFiles`) and its `valuesObject`, into its destination
/// namespace. The Knative operator (an upstream chart from a Helm repository) is not installed;
/// its KnativeServing CRD is ([`ControlPlane::install_crds`]). A release whose namespace does
/// not exist yet (the namespaces' own) is recorded in `default`: its objects are cluster-scoped,
/// and Argo CD keeps no release record.
fn install_platform(
    cp: &ControlPlane,
    name: &str,
    environment: &str,
    role: &str,
    dir: &Path,
) -> Result<(), String> {
    let root = root();
    for app in platform_applications(name, environment, role)? {
        let source = &app["spec"]["source"];
        let Some(path) = source["path"].as_str() else {
            continue;
        };
        let helm = &source["helm"];
        let release = helm["releaseName"].as_str().ok_or("releaseName")?;
        let namespace = app["spec"]["destination"]["namespace"]
            .as_str()
            .ok_or("destination.namespace")?;
        let namespace = if cp.kubectl(&["get", "namespace", namespace]).is_ok() {
            namespace
        } else {
            "default"
        };
        let mut args: Vec<String> = ["install", release, path, "--namespace", namespace]
            .map(str::to_owned)
            .to_vec();
        for f in helm["valueFiles"].as_array().into_iter().flatten() {
            let f = format!("{path}/{}", f.as_str().unwrap_or_default());
            if root.join(&f).exists() {
                args.extend(["-f".into(), f]);
            }
        }
        let values = dir.join(format!("{release}.values.json"));
        std::fs::write(&values, helm["valuesObject"].to_string()).map_err(|e| e.to_string())?;
        args.extend(["-f".into(), values.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cp.helm(&root, &args)?;
    }
    Ok(())
}

/// `helm upgrade --install` of the functions chart as Argo CD syncs it, with `extra` arguments
/// (`--set ...`) standing for a commit to the values.
pub fn install_functions(
    cp: &ControlPlane,
    environment: &str,
    role: &str,
    extra: &[&str],
) -> Result<String, String> {
    let chart = "knative/chart/tern-functions";
    let mut args: Vec<String> = ["upgrade", "--install", "tern", chart, "--namespace", "tern"]
        .map(str::to_owned)
        .to_vec();
    args.extend(helm_value_args(environment, role));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cp.helm(&root(), &args)
}

/// What the Knative operator does with a KnativeServing's `spec.config`: each `config.<name>`
/// map is merged into the config map `config-<name>` of the namespace.
fn operator_writes_config(cp: &ControlPlane) -> Result<(), String> {
    let ks: Value = serde_json::from_str(&cp.kubectl(&[
        "-n",
        "knative-serving",
        "get",
        "knativeserving",
        "knative-serving",
        "-o",
        "json",
    ])?)
    .map_err(|e| e.to_string())?;
    let Some(config) = ks["spec"]["config"].as_object() else {
        return Ok(());
    };
    for (name, data) in config {
        let patch = serde_json::json!({ "data": data }).to_string();
        cp.kubectl(&[
            "-n",
            "knative-serving",
            "patch",
            "configmap",
            &format!("config-{name}"),
            "--type=merge",
            "-p",
            &patch,
        ])?;
    }
    Ok(())
}

/// The YAML documents of a file.
fn documents(text: &str) -> Vec<String> {
    text.split("\n---")
        .map(|d| d.trim().to_owned())
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .collect()
}

/// Argo CD's objects in a cluster: the `argocd` namespace, our AppProjects and ApplicationSets,
/// and the Applications the ApplicationSets generate for the one cluster registered with that
/// Argo CD, itself ([`generated_applications`]; decision 0021).
fn install_argocd_objects(
    clusters: &Clusters,
    environment: &str,
    role: &str,
) -> Result<(), String> {
    let cp = &clusters.get(environment, role).cp;
    let dir = root().join("knative/argocd/apps");
    cp.kubectl(&["create", "namespace", "argocd"])?;
    for file in ["projects.yaml", "functions.yaml", "platform.yaml"] {
        cp.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &dir.join(file).display().to_string(),
        ])?;
    }
    let targets: Vec<Target> = clusters
        .all
        .iter()
        .filter(|c| c.environment == environment && c.role == role)
        .map(Cluster::target)
        .collect();
    let mut items = Vec::new();
    // The cluster registered with this Argo CD: its own (docs/deploy.md).
    for set in ["functions.yaml", "platform.yaml"] {
        let list = generated_applications(set, &targets)?;
        items.extend(list["items"].as_array().cloned().unwrap_or_default());
    }
    for c in &targets {
        items.extend(platform_applications(&c.name, &c.environment, &c.role)?);
    }
    let file = clusters
        .kubeconfig
        .with_file_name(format!("applications-{environment}-{role}.json"));
    let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
    std::fs::write(&file, list.to_string()).map_err(|e| e.to_string())?;
    cp.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=argocd-applicationset-controller",
        "-f",
        &file.display().to_string(),
    ])?;
    Ok(())
}

/// The Applications an ApplicationSet of `knative/argocd/apps` (`functions.yaml`,
/// `platform.yaml`) generates when the clusters registered with its Argo CD are `registered`.
/// Its generators are evaluated the way Argo CD's documentation specifies them, for the kinds
/// we use (anything else is an error): `list` yields its elements; `git` with `files` yields
/// the top-level keys of each file its pattern matches on main (this checkout), with `.path`;
/// a `templatePatch` is filled with the same parameters and merged over the Application;
/// `clusters` yields each
/// registered cluster whose labels satisfy the selector (`matchLabels`, `matchExpressions` with
/// `In`, `NotIn`, `Exists`, `DoesNotExist`), with `.name` and `.metadata.labels`; `matrix` yields
/// every pair of its two generators' parameters, the second generator's fields templated with
/// the first's. The template is then filled in (`goTemplate`: `{{ .key }}` and
/// `{{ index .metadata.labels "key" }}`).
pub fn generated_applications(set: &str, registered: &[Target]) -> Result<Value, String> {
    let text = std::fs::read_to_string(root().join("knative/argocd/apps").join(set))
        .map_err(|e| e.to_string())?;
    let appset: Value = serde_norway::from_str(&text).map_err(|e| format!("{set}: {e}"))?;
    let mut params = Vec::new();
    for generator in appset["spec"]["generators"]
        .as_array()
        .ok_or("no generators")?
    {
        params.extend(generate(generator, registered, &serde_json::Map::new())?);
    }
    let template = serde_json::to_string(&appset["spec"]["template"]).map_err(|e| e.to_string())?;
    let mut items = Vec::new();
    for p in &params {
        let filled = fill(&template, p);
        if filled.contains("{{") {
            return Err(format!(
                "{set}: a template field is left unrendered: {filled}"
            ));
        }
        let mut app: Value = serde_json::from_str(&filled).map_err(|e| e.to_string())?;
        if let Some(patch) = appset["spec"]["templatePatch"].as_str() {
            // Rendered with the same parameters, then merged over the Application (Argo CD
            // applies it as a strategic merge patch; for the maps we patch, a merge of maps).
            let patch = fill(patch, p);
            if patch.contains("{{") {
                return Err(format!("{set}: templatePatch left unrendered: {patch}"));
            }
            let patch: Value =
                serde_norway::from_str(&patch).map_err(|e| format!("{set}: templatePatch: {e}"))?;
            merge(&mut app, &patch);
        }
        sources(&app)?;
        app["apiVersion"] = "argoproj.io/v1alpha1".into();
        app["kind"] = "Application".into();
        app["metadata"]["namespace"] = "argocd".into();
        items.push(app);
    }
    Ok(serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }))
}

type Params = serde_json::Map<String, Value>;

/// Merges `patch` into `target`: maps key by key, anything else replaced.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Fills `{{ .key }}` (a string parameter), `{{ toJson .key }}` (any parameter, as JSON) and
/// `{{ index .metadata.labels "key" }}` from `params`. In the JSON text of the template the
/// string values are escaped as JSON strings; the templatePatch is YAML, where the values we
/// fill need no escaping.
fn fill(text: &str, params: &Params) -> String {
    let mut out = text.to_owned();
    for (key, value) in params {
        if let Some(v) = value.as_str() {
            out = out.replace(&format!("{{{{ .{key} }}}}"), v);
        }
        out = out.replace(&format!("{{{{ toJson .{key} }}}}"), &value.to_string());
    }
    if let Some(labels) = params.get("metadata").and_then(|m| m["labels"].as_object()) {
        for (key, value) in labels {
            let field = format!("{{{{ index .metadata.labels \\\"{key}\\\" }}}}");
            out = out.replace(&field, value.as_str().unwrap_or_default());
        }
    }
    out
}

fn generate(
    generator: &Value,
    registered: &[Target],
    outer: &Params,
) -> Result<Vec<Params>, String> {
    // A generator's fields may use the parameters of the generator before it in a matrix.
    let generator: Value =
        serde_json::from_str(&fill(&generator.to_string(), outer)).map_err(|e| e.to_string())?;
    if let Some(elements) = generator["list"]["elements"].as_array() {
        return Ok(elements
            .iter()
            .filter_map(|e| e.as_object().cloned())
            .collect());
    }
    if generator.get("clusters").is_some() {
        let selector = &generator["clusters"]["selector"];
        let mut out = Vec::new();
        for t in registered {
            let labels = serde_json::json!({
                "tern.dev/environment": t.environment,
                "tern.dev/cluster": t.role,
            });
            if selects(selector, &labels)? {
                let mut p = Params::new();
                p.insert("name".into(), t.name.clone().into());
                p.insert("metadata".into(), serde_json::json!({ "labels": labels }));
                out.push(p);
            }
        }
        return Ok(out);
    }
    if let Some(files) = generator["git"]["files"].as_array() {
        // The generator reads main; here, this checkout.
        if generator["git"]["revision"] != "main" {
            return Err(format!("a git generator not on main: {generator}"));
        }
        let mut out = Vec::new();
        for f in files {
            let pattern = f["path"].as_str().ok_or("git.files[].path")?;
            for path in glob(pattern)? {
                let text = std::fs::read_to_string(root().join(&path))
                    .map_err(|e| format!("{path}: {e}"))?;
                let mut p: Params =
                    serde_norway::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
                let dir = Path::new(&path).parent().unwrap_or(Path::new(""));
                let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
                p.insert(
                    "path".into(),
                    serde_json::json!({
                        "path": dir.display().to_string(),
                        "basename": name(dir),
                        "filename": name(Path::new(&path)),
                    }),
                );
                out.push(p);
            }
        }
        return Ok(out);
    }
    if let Some(pair) = generator["matrix"]["generators"].as_array() {
        let [first, second] = pair.as_slice() else {
            return Err("a matrix has two generators".into());
        };
        let mut out = Vec::new();
        for a in generate(first, registered, outer)? {
            for b in generate(second, registered, &a)? {
                let mut p = a.clone();
                p.extend(b);
                out.push(p);
            }
        }
        return Ok(out);
    }
    Err(format!(
        "a generator this test does not evaluate: {generator}"
    ))
}

/// The files of this checkout a git generator's path pattern matches (`*` within one path
/// segment), root-relative and sorted.
fn glob(pattern: &str) -> Result<Vec<String>, String> {
    let mut found = vec![String::new()];
    for segment in pattern.split('/') {
        let mut next = Vec::new();
        for base in &found {
            let join = |name: &str| {
                if base.is_empty() {
                    name.to_owned()
                } else {
                    format!("{base}/{name}")
                }
            };
            match segment.split_once('*') {
                None => next.push(join(segment)),
                Some((prefix, suffix)) => {
                    let dir = root().join(base);
                    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{pattern}: {e}"))? {
                        let name = entry.map_err(|e| e.to_string())?.file_name();
                        let name = name.to_string_lossy();
                        if name.len() >= prefix.len() + suffix.len()
                            && name.starts_with(prefix)
                            && name.ends_with(suffix)
                        {
                            next.push(join(&name));
                        }
                    }
                }
            }
        }
        found = next;
    }
    found.retain(|f| root().join(f).is_file());
    found.sort();
    Ok(found)
}

/// Whether a label selector selects `labels`.
fn selects(selector: &Value, labels: &Value) -> Result<bool, String> {
    if let Some(want) = selector["matchLabels"].as_object()
        && want.iter().any(|(k, v)| &labels[k] != v)
    {
        return Ok(false);
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let have = labels[e["key"].as_str().unwrap_or_default()].as_str();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let ok = match e["operator"].as_str() {
            Some("In") => have.is_some_and(|h| values.contains(&h)),
            Some("NotIn") => !have.is_some_and(|h| values.contains(&h)),
            Some("Exists") => have.is_some(),
            Some("DoesNotExist") => have.is_none(),
            other => return Err(format!("selector operator {other:?}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Polls `check` every 200 ms until it returns `Some`, or fails naming `what`.
pub fn until<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl ... -o json`, parsed.
pub fn get_json(cp: &ControlPlane, args: &[&str]) -> Result<Value, String> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cp.kubectl(&all)?).map_err(|e| e.to_string())
}

/// The documents of a rendered chart (`helm template`) of a kind.
pub fn rendered(text: &str, kind: &str) -> Vec<String> {
    documents(text)
        .into_iter()
        .filter(|d| d.lines().any(|l| l == format!("kind: {kind}")))
        .collect()
}
