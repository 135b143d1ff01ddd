//! Knative Serving's version is written in three places that must agree: the version the
//! platform's KnativeServing installs (`knative/platform/values.yaml`, `1.x`), the CRD schemas the
//! manifests are validated against (`tools/k8s-schemas/sources.txt`, `knative.dev/serving@v0.y`),
//! and the queue-proxy, controller and webhook built here, all from one module
//! (`tools/knative-serving/go.mod`). Knative's Go modules number
//! release `1.x` as `v0.(x + 27)` (1.23 is v0.50).

use tern_e2e::root;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The version of `module` that `tools/k8s-schemas/sources.txt` pins.
fn source_version(module: &str) -> String {
    read("tools/k8s-schemas/sources.txt")
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .next()?
                .strip_prefix(&format!("{module}@"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("{module} in sources.txt"))
}

/// `v0.50.0` → `1.23`.
fn release_of_module(version: &str) -> String {
    let minor: u32 = version
        .trim_start_matches("v0.")
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("not a knative module version: {version}"));
    format!("1.{}", minor - 27)
}

#[test]
fn knative_serving_is_the_same_version_everywhere() {
    let values = read("knative/platform/values.yaml");
    let installed = values
        .lines()
        .skip_while(|l| !l.starts_with("knative:"))
        .find_map(|l| l.trim().strip_prefix("version:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("knative.version in the platform values");

    let schemas = source_version("knative.dev/serving");
    let schemas = schemas.as_str();

    let gomod = read("tools/knative-serving/go.mod");
    for tool in [
        "knative.dev/serving/cmd/queue",
        "knative.dev/serving/cmd/controller",
        "knative.dev/serving/cmd/webhook",
    ] {
        assert!(
            gomod.lines().any(|l| l == format!("tool {tool}")),
            "{tool} is built from the one Serving module"
        );
    }
    let queue = required(&gomod, "knative.dev/serving").expect("knative.dev/serving in go.mod");
    let queue = queue.as_str();
    assert_eq!(
        schemas, queue,
        "the CRD schemas and queue-proxy pin different Serving modules"
    );
    assert_eq!(
        release_of_module(queue),
        installed,
        "the platform installs Knative Serving {installed}, queue-proxy is built from {queue}"
    );
}

#[test]
fn module_versions_map_to_releases() {
    assert_eq!(release_of_module("v0.50.0"), "1.23");
    assert_eq!(release_of_module("v0.46.2"), "1.19");
}

/// `MODULE VERSION` of `module` in a go.mod (a `require` line or block).
fn required(gomod: &str, module: &str) -> Option<String> {
    gomod.lines().find_map(|l| {
        let l = l.trim().trim_start_matches("require ").trim();
        l.strip_prefix(&format!("{module} "))
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned)
    })
}

/// The control plane is the Kubernetes version the schemas are generated from, and Knative's
/// controller the Serving version queue-proxy is built from.
#[test]
fn the_control_plane_is_the_schemas_kubernetes_and_the_platforms_knative() {
    let sources = read("tools/k8s-schemas/sources.txt");
    let schemas = source_version("k8s.io/kubernetes");
    let kubernetes = read("tools/kubernetes/go.mod");
    for tool in ["kube-apiserver", "kubectl"] {
        assert!(
            kubernetes
                .lines()
                .any(|l| l == format!("tool github.com/tern-platform/tern/tools/kubernetes/{tool}")),
            "{tool} is built from tools/kubernetes"
        );
    }
    let apiserver = required(&kubernetes, "k8s.io/kubernetes");
    assert_eq!(
        apiserver.as_deref(),
        Some(schemas.as_str()),
        "kube-apiserver"
    );
    // Staging modules (kubectl among them) number release 1.Y.Z as v0.Y.Z, and every one is
    // replaced by that version.
    let staging = schemas.replacen("v1.", "v0.", 1);
    let replaces: Vec<&str> = kubernetes.lines().filter(|l| l.contains(" => ")).collect();
    assert!(
        replaces
            .iter()
            .any(|l| l.trim() == format!("k8s.io/kubectl => k8s.io/kubectl {staging}")),
        "kubectl is not {staging}"
    );
    for line in replaces {
        assert!(
            line.ends_with(&staging),
            "tools/kubernetes's replace {line:?} is not {staging}"
        );
    }
    let controller_mod = read("tools/knative-serving/go.mod");
    let queue = required(&controller_mod, "knative.dev/serving");
    let manifests = read("tools/k8s-schemas/manifests.txt");
    let serving = format!("knative.dev/serving@{}", queue.unwrap_or_default());
    assert!(
        manifests.contains(&serving),
        "the control plane's manifests are {serving}'s"
    );
    // A module both lists name (Serving, the operator, the Gateway API, Argo CD) is the same
    // version in both: the control plane applies the CRDs kubeconform's schemas come from.
    let mut shared = 0;
    for line in sources.lines().filter(|l| !l.starts_with('#')) {
        let Some((module, version)) = line
            .split_whitespace()
            .next()
            .and_then(|m| m.split_once('@'))
        else {
            continue;
        };
        let named: Vec<&str> = manifests
            .split_whitespace()
            .filter(|w| w.starts_with(&format!("{module}@")))
            .collect();
        for n in &named {
            assert_eq!(
                *n,
                format!("{module}@{version}"),
                "manifests.txt and sources.txt"
            );
        }
        shared += usize::from(!named.is_empty());
    }
    assert!(shared >= 4, "only {shared} modules in both lists");
    // The networking and caching CRDs are those of the versions that Serving requires.
    for module in ["knative.dev/networking", "knative.dev/caching"] {
        let v = required(&controller_mod, module).unwrap_or_else(|| panic!("{module}"));
        assert!(
            manifests.contains(&format!("{module}@{v} ")),
            "manifests.txt must copy {module}@{v}"
        );
    }
}
