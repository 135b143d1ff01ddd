//! A real Kubernetes control plane here (etcd and kube-apiserver from their Go modules), with the
//! manifests Knative Serving's pinned modules ship and Knative's own controller: the functions
//! chart is applied with server-side validation, and the controller turns each Service into a
//! Configuration and a Revision. No kubelet runs, so no pod starts and Revisions stay
//! unready; what is checked is what the API server and the controller decide.

use serde_json::Value;
use std::time::{Duration, Instant};
use tern_e2e::{root, scratch, table};
use tern_local::ControlPlane;

fn json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cp.kubectl(&all).unwrap()).unwrap()
}

/// Polls `check` every 200 ms until it returns `Some`, or panics naming `what`.
fn until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn knatives_controller_makes_revisions_of_the_rendered_services() {
    let dir = scratch("control-plane");
    let started = Instant::now();
    let mut cp = ControlPlane::start(&root(), &dir).expect("control plane");
    let ready_in = started.elapsed();
    let version = json(&cp, &["version"]);
    let schemas = std::fs::read_to_string(root().join("tools/k8s-schemas/sources.txt")).unwrap();
    let server = version["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        schemas.contains(&format!("k8s.io/kubernetes@{server} ")),
        "the API server is {server}, the schemas pin another version"
    );
    cp.install_knative(&root())
        .expect("Knative's CRDs and config maps");
    // The platform's KnativeServing selects Kourier; the operator would write this.
    cp.kubectl(&[
        "-n",
        "knative-serving",
        "patch",
        "configmap",
        "config-network",
        "--type=merge",
        "-p",
        r#"{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}"#,
    ])
    .unwrap();
    cp.start_knative_controller().expect("Knative's controller");
    cp.kubectl(&["create", "namespace", "tern"]).unwrap();

    // prod's Services, as Argo CD applies them: server-side, validated against the CRDs' schemas.
    let rendered = std::process::Command::new(root().join(".local/bin/helm"))
        .args([
            "template",
            "tern",
            "knative/chart/tern-functions",
            "--namespace",
            "tern",
        ])
        .args(["-f", "knative/chart/tern-functions/env/prod.yaml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let services: Vec<String> = String::from_utf8_lossy(&rendered.stdout)
        .split("\n---")
        .filter(|d| d.contains("kind: Service\n") && d.contains("serving.knative.dev/v1"))
        .map(str::to_owned)
        .collect();
    let http: Vec<String> = table()
        .functions
        .iter()
        .filter(|f| f.kind == tern_routes::Kind::Http)
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(services.len(), http.len());
    let file = dir.join("services.yaml");
    std::fs::write(&file, services.join("\n---\n")).unwrap();
    let out = cp
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=argocd",
            "-n",
            "tern",
            "-f",
            &file.display().to_string(),
        ])
        .unwrap();
    eprintln!("{out}");

    for name in &http {
        let rev = until(
            &format!("a Revision of {name}"),
            Duration::from_secs(60),
            || {
                let list = json(
                    &cp,
                    &[
                        "-n",
                        "tern",
                        "get",
                        "revisions",
                        "-l",
                        &format!("serving.knative.dev/service={name}"),
                    ],
                );
                list["items"].as_array()?.first().cloned()
            },
        );
        let f = table().function(name).unwrap().clone();
        let spec = &rev["spec"];
        assert_eq!(
            spec["containerConcurrency"],
            u64::from(f.scale.concurrency),
            "{name}"
        );
        assert_eq!(spec["timeoutSeconds"], 60, "{name}");
        assert_eq!(spec["serviceAccountName"], format!("fn-{name}"), "{name}");
        let annotations = &rev["metadata"]["annotations"];
        assert_eq!(
            annotations["autoscaling.knative.dev/max-scale"],
            f.scale.max.to_string(),
            "{name}"
        );
        eprintln!(
            "{name}: {} (containerConcurrency {}, timeoutSeconds {})",
            rev["metadata"]["name"].as_str().unwrap_or("?"),
            spec["containerConcurrency"],
            spec["timeoutSeconds"]
        );
    }
    eprintln!("control plane ready in {ready_in:?}");
}
