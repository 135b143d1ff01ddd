//! The charts installed for real, and the runbooks executed, against a real Kubernetes control
//! plane per cluster (etcd and kube-apiserver from their Go modules, Knative Serving's own
//! controller; `tern_e2e::clusters`): dev, staging, prod primary and prod standby, started once
//! for this test binary. No kubelet runs, so no pod starts and Revisions stay unready; what is
//! checked is what the API server (schemas, CEL rules, defaulting) and Knative's controller
//! decide, and what each operations script changes.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::RwLock;
use std::time::Duration;
use tern_e2e::clusters::{self, Cluster, clusters, get_json, until};
use tern_e2e::{release_of, root, scratch, table};

const MINUTE: Duration = Duration::from_secs(60);

/// The HTTP functions of the route table (each a Knative Service).
fn http_functions() -> Vec<tern_routes::Function> {
    table()
        .functions
        .into_iter()
        .filter(|f| f.kind == tern_routes::Kind::Http)
        .collect()
}

/// `helm template` of the functions chart for a cluster, as installed.
fn template(c: &Cluster) -> String {
    template_with(c, &[])
}

/// `helm template` of the functions chart for a cluster, with `extra` arguments.
fn template_with(c: &Cluster, extra: &[&str]) -> String {
    let chart = "knative/chart/tern-functions";
    let mut cmd = Command::new(root().join(".local/bin/helm"));
    cmd.args(["template", "tern", chart, "--namespace", "tern"])
        .current_dir(root());
    cmd.args(clusters::helm_value_args(c.environment, c.role));
    cmd.args(extra);
    let out = cmd.output().expect("helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first Revision Knative's controller made of a Service.
fn first_revision(c: &Cluster, name: &str) -> Value {
    until(&format!("{}: a Revision of {name}", c.name), MINUTE, || {
        get_json(
            &c.cp,
            &["-n", "tern", "get", "revision", &format!("{name}-00001")],
        )
        .ok()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_cluster_takes_the_charts_and_knative_makes_every_revision() {
    let _reading = reading();
    let all = clusters();
    eprintln!(
        "{} clusters ready in {:?}",
        all.all.len(),
        all.ready_in.as_secs_f64()
    );
    // The API servers are the Kubernetes version the schemas are generated from.
    let schemas = std::fs::read_to_string(root().join("tools/k8s-schemas/sources.txt")).unwrap();
    let version = get_json(&all.all[0].cp, &["version"]).unwrap();
    let server = version["serverVersion"]["gitVersion"].as_str().unwrap();
    assert!(
        schemas.contains(&format!("k8s.io/kubernetes@{server} ")),
        "the API server is {server}, the schemas pin another version"
    );
    let mut routes_checked = 0;
    for c in &all.all {
        eprintln!("{}: ready in {:?}", c.name, c.ready_in);
        // Every release deployed: the platform's components and the functions.
        let releases: Value =
            serde_json::from_str(&c.cp.helm(&root(), &["list", "-A", "-o", "json"]).unwrap())
                .unwrap();
        let mut names: Vec<&str> = releases
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "deployed")
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "platform-gateway",
                "platform-monitoring",
                "platform-namespaces",
                "platform-serving",
                "tern"
            ],
            "{}",
            c.name
        );
        // The platform's objects, as the API server stored them.
        let ns = get_json(&c.cp, &["get", "namespace", "tern"]).unwrap();
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
            "{}",
            c.name
        );
        let gateway = get_json(&c.cp, &["-n", "gateway-system", "get", "gateways"]).unwrap();
        assert_eq!(gateway["items"].as_array().unwrap().len(), 1, "{}", c.name);
        let network = get_json(
            &c.cp,
            &[
                "-n",
                "knative-serving",
                "get",
                "configmap",
                "config-network",
            ],
        )
        .unwrap();
        assert_eq!(
            network["data"]["ingress-class"], "kourier.ingress.networking.knative.dev",
            "{}: the KnativeServing's config reaches Serving's config maps",
            c.name
        );

        // Knative's controller turned each Service into a Revision with what the chart rendered
        // for this cluster, and a Route with the chart's traffic.
        let rendered = template(c);
        let services: Vec<Value> = clusters::rendered(&rendered, "Service")
            .iter()
            .map(|d| serde_norway::from_str::<Value>(d).unwrap())
            .filter(|v| v["apiVersion"] == "serving.knative.dev/v1")
            .collect();
        let functions = http_functions();
        assert_eq!(services.len(), functions.len(), "{}", c.name);
        for f in &functions {
            let svc = services
                .iter()
                .find(|s| s["metadata"]["name"] == f.name.as_str())
                .unwrap_or_else(|| panic!("{}: no Service {}", c.name, f.name));
            let want = &svc["spec"]["template"];
            let rev = first_revision(c, &f.name);
            let what = format!("{}: {}", c.name, f.name);
            let spec = &rev["spec"];
            assert_eq!(
                spec["containerConcurrency"],
                u64::from(f.scale.concurrency),
                "{what}"
            );
            assert_eq!(
                spec["containerConcurrency"], want["spec"]["containerConcurrency"],
                "{what}"
            );
            assert_eq!(
                spec["timeoutSeconds"], want["spec"]["timeoutSeconds"],
                "{what}"
            );
            assert_eq!(
                spec["serviceAccountName"],
                format!("fn-{}", f.name),
                "{what}"
            );
            let annotations = &rev["metadata"]["annotations"];
            for key in [
                "autoscaling.knative.dev/min-scale",
                "autoscaling.knative.dev/max-scale",
                "autoscaling.knative.dev/target-utilization-percentage",
            ] {
                assert_eq!(
                    annotations[key], want["metadata"]["annotations"][key],
                    "{what}: {key}"
                );
            }
            assert_eq!(
                annotations["autoscaling.knative.dev/max-scale"],
                f.scale.max.to_string(),
                "{what}"
            );
            if c.role == "standby" {
                assert_eq!(
                    annotations["autoscaling.knative.dev/min-scale"], "0",
                    "{what}: the standby waits at zero"
                );
            }
            assert_eq!(
                spec["containers"][0]["image"], want["spec"]["containers"][0]["image"],
                "{what}"
            );
            // The Route carries the chart's traffic, unless a runbook has changed the Service
            // since (the runbooks test runs beside this one on prod's primary).
            let route = until(&format!("{what}: its Route"), MINUTE, || {
                let r = get_json(&c.cp, &["-n", "tern", "get", "route", &f.name]).ok()?;
                r["spec"]["traffic"].is_array().then_some(r)
            })
            .unwrap();
            if service(c, &f.name)["metadata"]["generation"] == 1 {
                // Knative adds the Configuration a `latestRevision` target follows.
                let mut stored = route["spec"]["traffic"].clone();
                for t in stored.as_array_mut().unwrap() {
                    t.as_object_mut().unwrap().remove("configurationName");
                }
                assert_eq!(stored, svc["spec"]["traffic"], "{what}");
                routes_checked += 1;
            }
        }
    }
    // dev, staging and the standby are never touched by the runbooks.
    assert!(
        routes_checked >= 3 * http_functions().len(),
        "{routes_checked} Routes checked"
    );
}

/// `kubectl apply --dry-run=server` of a file on a cluster: what the API server decides.
fn server_accepts(c: &Cluster, file: &Path) -> Result<String, String> {
    c.cp.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=argocd",
        "-n",
        "tern",
        "-f",
        &file.display().to_string(),
    ])
}

fn kubeconform_accepts(file: &Path) -> bool {
    let schemas = root().join(".local/schemas");
    let location = format!(
        "{}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        schemas.display()
    );
    Command::new(root().join(".local/bin/kubeconform"))
        .args(["-strict", "-schema-location", &location])
        .arg(file)
        .status()
        .expect("kubeconform")
        .success()
}

#[test]
fn the_api_server_refuses_what_the_schemas_let_through() {
    let _reading = reading();
    let c = clusters().get("prod", "primary");
    let dir = scratch("cel");
    let routes = clusters::rendered(&template(c), "HTTPRoute");
    let public = routes
        .iter()
        .find(|d| d.contains("name: tern-functions\n"))
        .expect("the functions' HTTPRoute");
    let file = dir.join("route.yaml");
    std::fs::write(&file, public).unwrap();
    server_accepts(c, &file).expect("the rendered HTTPRoute");
    // Each mutation passes the JSON schemas (kubeconform does not run CEL rules) and breaks one
    // of the Gateway API's CEL rules, which the API server runs.
    let first_path = public
        .lines()
        .find_map(|l| l.trim().strip_prefix("value: \"/"))
        .expect("a path")
        .trim_end_matches('"');
    let cases = [
        (
            format!("value: \"/{first_path}\"\n"),
            format!("value: \"//{first_path}\"\n"),
            "must not contain '//'",
        ),
        (
            "      filters:\n        - type: URLRewrite".to_owned(),
            "      filters:\n        - type: RequestRedirect\n          requestRedirect:\n            scheme: https\n        - type: URLRewrite".to_owned(),
            "RequestRedirect filter must not be used together with backendRefs",
        ),
    ];
    for (from, to, says) in cases {
        assert!(public.contains(&from), "no {from:?} in the HTTPRoute");
        let broken = public.replacen(&from, &to, 1);
        std::fs::write(&file, &broken).unwrap();
        assert!(
            kubeconform_accepts(&file),
            "kubeconform refused {to:?}: the case no longer shows a CEL rule"
        );
        let err = server_accepts(c, &file).expect_err(&to);
        assert!(err.contains(says), "{to:?}: {err}");
    }
}

/// Knative Serving's webhook, registered with every API server, admits every Service the chart
/// renders for its cluster (the install went through it), and refuses what Serving refuses,
/// naming the field, with the defaults and features the platform's KnativeServing configures.
#[test]
fn knatives_webhook_refuses_what_knative_refuses() {
    let c = clusters().get("dev", "primary");
    let dir = scratch("webhook");
    let original: Value = clusters::rendered(&template(c), "Service")
        .iter()
        .map(|d| serde_norway::from_str::<Value>(d).unwrap())
        .find(|d| {
            d["apiVersion"] == "serving.knative.dev/v1" && d["metadata"]["name"] == "orders-get"
        })
        .expect("orders-get");
    let file = dir.join("service.json");
    std::fs::write(&file, original.to_string()).unwrap();
    server_accepts(c, &file).expect("the rendered Service");
    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation, &str); 7] = [
        (
            "containerConcurrency above 1000",
            |s| s["spec"]["template"]["spec"]["containerConcurrency"] = 5000.into(),
            "spec.template.spec.containerConcurrency",
        ),
        (
            "timeout above the 600 s maximum",
            |s| s["spec"]["template"]["spec"]["timeoutSeconds"] = 3600.into(),
            "spec.template.spec.timeoutSeconds",
        ),
        (
            "negative min-scale",
            |s| {
                s["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] =
                    "-1".into()
            },
            "autoscaling.knative.dev/min-scale",
        ),
        (
            "min-scale above max-scale",
            |s| {
                s["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] =
                    "50".into()
            },
            "min-scale",
        ),
        (
            "queue-proxy's port",
            |s| {
                s["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
                    8013.into()
            },
            "containerPort",
        ),
        (
            "a reserved variable",
            |s| {
                s["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"name": "K_SERVICE", "value": "x"}))
            },
            "K_SERVICE",
        ),
        (
            "traffic not summing to 100",
            |s| s["spec"]["traffic"][0]["percent"] = 90.into(),
            "spec.traffic",
        ),
    ];
    for (what, mutate, field) in cases {
        let mut svc = original.clone();
        mutate(&mut svc);
        std::fs::write(&file, svc.to_string()).unwrap();
        assert!(
            kubeconform_accepts(&file),
            "{what}: kubeconform refuses it already; the case shows nothing of the webhook"
        );
        let err = server_accepts(c, &file).expect_err(what);
        assert!(
            err.contains("validation.webhook.serving.knative.dev") && err.contains(field),
            "{what}: {err}"
        );
        eprintln!(
            "refused, {what}: {}",
            err.lines().next().unwrap_or_default()
        );
    }
    // A bad value in the chart's values, rendered and applied as Argo CD does: refused.
    let rendered = template_with(c, &["--set", "scale.min.orders-get=50"]);
    let bad = clusters::rendered(&rendered, "Service")
        .into_iter()
        .find(|d| d.contains("\n  name: orders-get\n") && d.contains("serving.knative.dev/v1"))
        .expect("orders-get");
    let file = dir.join("bad-value.yaml");
    std::fs::write(&file, bad).unwrap();
    let err = server_accepts(c, &file).expect_err("min-scale 50 above max-scale");
    assert!(err.contains("is less than min-scale=50"), "{err}");
}

#[test]
fn each_cluster_s_argo_cd_holds_the_applications_its_application_sets_generate() {
    let _reading = reading();
    let all = clusters();
    // Every cluster runs its own Argo CD, registered with that cluster only (decision 0021):
    // losing a region loses nothing that syncs the other.
    for this in &all.all {
        let env = this.environment;
        let argo = &this.cp;
        let sets = get_json(argo, &["-n", "argocd", "get", "applicationsets"]).unwrap();
        let mut set_names: Vec<&str> = sets["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap())
            .collect();
        set_names.sort();
        assert_eq!(set_names, ["tern-functions", "tern-platform"], "{env}");
        let projects = get_json(argo, &["-n", "argocd", "get", "appprojects"]).unwrap();
        assert!(
            projects["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["metadata"]["name"] == format!("tern-{env}")),
            "{env}: AppProject tern-{env}"
        );
        let apps = get_json(argo, &["-n", "argocd", "get", "applications"]).unwrap();
        let apps = apps["items"].as_array().unwrap();
        let find = |name: &str| {
            apps.iter()
                .find(|a| a["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{env}: no Application {name}"))
        };
        let targets = [this];
        let mut expected = 0;
        for c in targets {
            let app = find(&format!("tern-functions-{}", c.name));
            let spec = &app["spec"];
            assert_eq!(spec["project"], format!("tern-{env}"));
            assert_eq!(spec["destination"]["name"], c.name.as_str());
            assert_eq!(spec["destination"]["namespace"], "tern");
            // The chart and its values at the revision the environment runs (its file on
            // main), and the digests of that file through the templatePatch.
            let release = release_of(env);
            assert_eq!(spec["source"]["path"], "knative/chart/tern-functions");
            assert_eq!(
                spec["source"]["targetRevision"], release["revision"],
                "{}",
                c.name
            );
            assert_eq!(
                spec["source"]["helm"]["valuesObject"],
                serde_json::json!({ "images": release["images"] }),
                "{}",
                c.name
            );
            // The value files Argo CD passes, of which it skips the missing ones, are the ones
            // installed here: the environment's, then the standby's where it has one.
            let files = clusters::application_value_files(app).unwrap();
            let mut expected_files = vec![format!("knative/chart/tern-functions/env/{env}.yaml")];
            if c.role == "standby" {
                expected_files.push(format!(
                    "knative/chart/tern-functions/env/{env}-standby.yaml"
                ));
            }
            assert_eq!(files, expected_files, "{}", c.name);
            assert_eq!(spec["syncPolicy"]["automated"]["selfHeal"], true);

            // The cluster's platform Application, and the children it syncs wave after wave:
            // the operator, then the namespaces, Serving, the Gateway, monitoring; each child
            // with a path is a release installed on the cluster.
            let parent = find(&format!("tern-platform-{}", c.name));
            assert_eq!(
                parent["spec"]["source"]["path"],
                "knative/argocd/platform-apps"
            );
            assert_eq!(
                parent["spec"]["source"]["targetRevision"],
                release["revision"]
            );
            let children = clusters::platform_applications(&c.name, c.environment, c.role).unwrap();
            let order = [
                "knative-operator",
                "namespaces",
                "serving",
                "gateway",
                "monitoring",
            ];
            let stored: Vec<i64> = order
                .iter()
                .map(|component| clusters::sync_wave(find(&format!("{component}-{}", c.name))))
                .collect();
            assert!(
                stored.windows(2).all(|w| w[0] < w[1]),
                "{}: the waves of {order:?} are {stored:?}",
                c.name
            );
            assert_eq!(children.len(), order.len(), "{}", c.name);
            let mut from_argo: Vec<&str> = children
                .iter()
                .filter(|a| a["spec"]["source"]["path"].is_string())
                .map(|a| a["spec"]["source"]["helm"]["releaseName"].as_str().unwrap())
                .collect();
            from_argo.push("tern");
            from_argo.sort();
            let releases: Value =
                serde_json::from_str(&c.cp.helm(&root(), &["list", "-A", "-o", "json"]).unwrap())
                    .unwrap();
            let mut installed: Vec<&str> = releases
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap())
                .collect();
            installed.sort();
            assert_eq!(installed, from_argo, "{}", c.name);
            expected += 2 + children.len();
        }
        assert_eq!(apps.len(), expected, "{}: no other Application", this.name);
        // Each Application's destination is one its AppProject allows.
        let project = projects["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["name"] == format!("tern-{env}"))
            .unwrap();
        let glob = |pattern: &str, name: &str| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => pattern == name,
        };
        for app in apps {
            let dest = &app["spec"]["destination"];
            let allowed = project["spec"]["destinations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| {
                    glob(
                        d["name"].as_str().unwrap_or(""),
                        dest["name"].as_str().unwrap_or(""),
                    ) && glob(
                        d["namespace"].as_str().unwrap_or(""),
                        dest["namespace"].as_str().unwrap_or(""),
                    )
                });
            assert!(
                allowed,
                "{env}: {} goes to {dest}, which tern-{env} does not allow",
                app["metadata"]["name"]
            );
            assert_eq!(app["spec"]["project"], format!("tern-{env}"));
        }
    }
    // Were every cluster registered with one Argo CD, the functions' ApplicationSet would still
    // give each cluster one Application, in its own environment's project: the list x label
    // matrix keeps environments apart.
    let everyone: Vec<clusters::Target> = all.all.iter().map(Cluster::target).collect();
    let generated = clusters::generated_applications("functions.yaml", &everyone).unwrap();
    let mut names: Vec<String> = generated["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["metadata"]["name"].as_str().unwrap(),
                a["spec"]["project"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "tern-functions-tern-dev-primary tern-dev",
            "tern-functions-tern-prod-primary tern-prod",
            "tern-functions-tern-prod-standby tern-prod",
            "tern-functions-tern-staging-primary tern-staging",
        ]
    );
    // Argo CD runs PreSync hooks to completion, in the order of their sync waves, before it
    // applies the rest: the migration is a PreSync hook, what it runs as and mounts are hooks of
    // an earlier wave, and no Service is a hook. The Cloud SQL CA config map is rendered only when
    // `database.serverCa` is set (else it must exist already): both ways are checked.
    let prod = all.get("prod", "primary");
    for (extra, renders_ca) in [
        (vec![], false),
        (
            vec![
                "--set",
                "database.serverCa=-----BEGIN CERTIFICATE-----MIIBAA==-----END CERTIFICATE-----",
            ],
            true,
        ),
    ] {
        let docs: Vec<Value> = template_with(prod, &extra)
            .split("\n---")
            .filter_map(|d| serde_norway::from_str::<Value>(d).ok())
            .filter(|v| v.is_object())
            .collect();
        let hook = |d: &Value| d["metadata"]["annotations"]["argocd.argoproj.io/hook"].clone();
        let find = |kind: &str, name: &str| {
            docs.iter()
                .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        };
        let job = find("Job", "migrate").expect("the migrate Job");
        assert_eq!(hook(job), "PreSync");
        let pod = &job["spec"]["template"]["spec"];
        let account = find(
            "ServiceAccount",
            pod["serviceAccountName"].as_str().unwrap(),
        )
        .expect("the Job's service account is rendered");
        assert_eq!(hook(account), "PreSync");
        assert!(clusters::sync_wave(account) < clusters::sync_wave(job));
        let mounted: Vec<&str> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["configMap"]["name"].as_str())
            .collect();
        assert_eq!(mounted, ["cloudsql-server-ca"]);
        match find("ConfigMap", mounted[0]) {
            Some(cm) => {
                assert!(renders_ca, "rendered without database.serverCa");
                assert_eq!(hook(cm), "PreSync");
                assert!(clusters::sync_wave(cm) < clusters::sync_wave(job));
            }
            None => assert!(!renders_ca, "not rendered with database.serverCa"),
        }
        let services = docs
            .iter()
            .filter(|d| d["kind"] == "Service" || d["kind"] == "HTTPRoute");
        assert!(services.clone().count() > http_functions().len());
        for d in services {
            assert!(hook(d).is_null(), "{} is a hook", d["metadata"]["name"]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The runbooks, executed.

/// Runs an operations script with KUBECONFIG reaching every cluster; (exit code, stdout, stderr).
fn script(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(root().join("scripts").join(name))
        .args(args)
        .current_dir(root())
        .env("KUBECONFIG", &clusters().kubeconfig)
        .env("PATH", path_with_tools())
        .output()
        .expect("run script");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// PATH with `.local/bin` first: the scripts call `kn` and `kubectl` as an operator's shell has them.
fn path_with_tools() -> String {
    format!(
        "{}:{}",
        root().join(".local/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The commands a script printed (`+ ...` lines).
fn printed(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("+ "))
        .map(str::to_owned)
        .collect()
}

/// Runs a script with --execute, then as a dry run with the same arguments, and checks that the
/// dry run printed exactly the commands that were executed, where the values the execution
/// looked up (`captured`: placeholder → value) stand in the dry run's placeholders.
fn execute(name: &str, args: &[&str], captured: &[(&str, &str)]) -> String {
    let mut with = args.to_vec();
    with.push("--execute");
    let (code, out, err) = script(name, &with);
    assert_eq!(code, 0, "{name} {with:?}: {err}\n{out}");
    let (code, dry, err) = script(name, args);
    assert_eq!(code, 0, "{name} {args:?} (dry run): {err}");
    let mut expected = printed(&dry).join("\n");
    for (placeholder, value) in captured {
        assert!(
            dry.contains(placeholder),
            "{name}: the dry run prints no {placeholder}"
        );
        // The scripts print commands with `printf %q`, which escapes < and >.
        let quoted = placeholder.replace('<', "\\<").replace('>', "\\>");
        expected = expected.replace(&quoted, value).replace(placeholder, value);
    }
    assert_eq!(
        printed(&out).join("\n"),
        expected,
        "{name} {args:?}: the dry run does not print what --execute ran"
    );
    eprintln!("--- scripts/{name} {}\n{out}", with.join(" "));
    out
}

fn service(c: &Cluster, name: &str) -> Value {
    get_json(&c.cp, &["-n", "tern", "get", "ksvc", name]).unwrap()
}

/// (tag or revision, percent) of a Service's traffic, as stored.
fn traffic(c: &Cluster, name: &str) -> Vec<(String, i64)> {
    service(c, name)["spec"]["traffic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let who = t["tag"]
                .as_str()
                .or(t["revisionName"].as_str())
                .unwrap_or("latest")
                .to_owned();
            (who, t["percent"].as_i64().unwrap_or(0))
        })
        .collect()
}

/// Whether Argo CD syncs `app` from git by itself (automated sync with self-heal), and why not
/// when it does not (the annotation `scripts/autosync suspend` leaves).
fn auto_sync(c: &Cluster, app: &str) -> (bool, Option<String>) {
    let a = get_json(&c.cp, &["-n", "argocd", "get", "application", app]).unwrap();
    let automated = &a["spec"]["syncPolicy"]["automated"];
    let on = automated["selfHeal"] == true && automated["prune"] == true;
    let why = a["metadata"]["annotations"]["tern.dev/sync-suspended"]
        .as_str()
        .map(str::to_owned);
    (on, why)
}

fn suspended(c: &Cluster, app: &str) -> bool {
    let (on, why) = auto_sync(c, app);
    assert_eq!(
        on,
        why.is_none(),
        "{app}: automated sync is off exactly while it says why ({why:?})"
    );
    !on
}

fn revision_exists(c: &Cluster, name: &str) {
    until(&format!("{}: Revision {name}", c.name), MINUTE, || {
        get_json(&c.cp, &["-n", "tern", "get", "revision", name]).ok()
    })
    .unwrap();
}

/// The runbooks change prod's Services, Applications and release while they run: the tests that
/// read those take this for reading, the runbooks for writing. Whichever runs first, the
/// readers see either the state before the runbooks or the state they leave (automated sync resumed,
/// the release deployed), and their checks hold for both.
static RUNBOOKS: RwLock<()> = RwLock::new(());

fn reading() -> std::sync::RwLockReadGuard<'static, ()> {
    RUNBOOKS.read().unwrap_or_else(|e| e.into_inner())
}

const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn the_runbooks_take_effect_on_the_cluster() {
    let _only = RUNBOOKS.write().unwrap_or_else(|e| e.into_inner());
    let all = clusters();
    let prod = all.get("prod", "primary");
    let app = "tern-functions-tern-prod-primary";

    // canary start: what to commit, with the revision serving now looked up on the cluster.
    let out = execute(
        "canary",
        &["start", "web", DIGEST_A],
        &[("<current-revision>", "web-00001")],
    );
    assert!(out.contains("currentRevision: \"web-00001\""), "{out}");

    // The commit it prints (the `# ` lines after "commit this"), synced: the candidate beside the
    // current revision at 0 %, with a new digest for orders-get (the deployment rollback undoes).
    let commit: String = out
        .lines()
        .skip_while(|l| !l.contains("commit this to"))
        .skip(1)
        .take_while(|l| l.starts_with("#    "))
        .map(|l| format!("{}\n", &l[5..]))
        .collect();
    assert!(
        commit.starts_with("images:\n  candidates:\n    web: {"),
        "{commit}"
    );
    let values = scratch("canary").join("commit.yaml");
    std::fs::write(&values, commit).unwrap();
    clusters::install_functions(
        &prod.cp,
        "prod",
        "primary",
        &[
            "-f",
            &values.display().to_string(),
            "--set",
            &format!("images.digests.orders-get={DIGEST_B}"),
        ],
    )
    .expect("helm upgrade");
    let image = service(prod, "web")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert!(
        image.as_str().unwrap().ends_with(&format!("@{DIGEST_A}")),
        "{image}"
    );
    revision_exists(prod, "web-00002");
    revision_exists(prod, "orders-get-00002");
    assert_eq!(
        traffic(prod, "web"),
        [("current".to_owned(), 100), ("candidate".to_owned(), 0)]
    );

    // canary shift: automated sync suspended (neither self-heal nor the next merge to git undoes
    // it), 10 % to the candidate at once.
    execute("canary", &["shift", "web", "10", "--no-wait"], &[]);
    assert!(suspended(prod, app), "canary shift suspends automated sync");
    assert!(
        auto_sync(prod, app)
            .1
            .is_some_and(|why| why.contains("canary shift web")),
        "{:?}",
        auto_sync(prod, app)
    );
    let mut t = traffic(prod, "web");
    t.sort();
    assert_eq!(
        t,
        [("candidate".to_owned(), 10), ("current".to_owned(), 90)]
    );

    // canary status: reads only.
    execute("canary", &["status", "web"], &[]);

    // canary promote: all traffic to the candidate.
    execute("canary", &["promote", "web", "--no-wait"], &[]);
    let mut t = traffic(prod, "web");
    t.sort();
    assert_eq!(
        t,
        [("candidate".to_owned(), 100), ("current".to_owned(), 0)]
    );

    // rollback: orders-get's traffic back on the revision before the current one.
    execute(
        "rollback",
        &["orders-get", "--no-wait"],
        &[("<previous-revision>", "orders-get-00001")],
    );
    // kn keeps the `current` tag on the latest revision, at 0 %: only the tag's own host
    // reaches it.
    let mut t = traffic(prod, "orders-get");
    t.sort();
    assert_eq!(
        t,
        [
            ("current".to_owned(), 0),
            ("orders-get-00001".to_owned(), 100)
        ]
    );

    // pin-scale: min-scale on the Service's template now, so a new Revision carries it.
    execute("pin-scale", &["orders-create", "3", "--no-wait"], &[]);
    let template = &service(prod, "orders-create")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(template["autoscaling.knative.dev/min-scale"], "3");
    revision_exists(prod, "orders-create-00002");
    let rev = get_json(
        &prod.cp,
        &["-n", "tern", "get", "revision", "orders-create-00002"],
    )
    .unwrap();
    assert_eq!(
        rev["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"],
        "3"
    );

    // autosync resume: Argo CD applies git again, and is told to look now.
    execute("autosync", &["resume"], &[]);
    assert!(!suspended(prod, app));
    let application = get_json(&prod.cp, &["-n", "argocd", "get", "application", app]).unwrap();
    assert_eq!(
        application["metadata"]["annotations"]["argocd.argoproj.io/refresh"],
        "hard"
    );

    // autosync on the standby: its Application lives with the standby's own Argo CD, in the
    // standby cluster (decision 0021), which goes on syncing it when the primary region is lost.
    let standby = all.get("prod", "standby");
    let standby_app = "tern-functions-tern-prod-standby";
    execute(
        "autosync",
        &["suspend", "--reason", "a drill", "--cluster", "standby"],
        &[],
    );
    assert!(suspended(standby, standby_app));
    assert!(!suspended(prod, app), "the primary's is left alone");
    execute("autosync", &["resume", "--cluster", "standby"], &[]);
    assert!(!suspended(standby, standby_app));

    // failover, the steps on the standby cluster: the customer-facing functions warmed (their
    // min-scale from 0 to 1, in new Revisions), then the checks of step 7. Steps 1 to 4 and 6
    // are Cloud SQL, Cloud Scheduler and Cloud DNS calls (gcloud): cloud-only.
    let out = execute("failover", &["--steps", "5,7", "--no-wait"], &[]);
    // The standby's Argo CD keeps the warm-up: its automated sync is suspended until git says
    // the same (scale.allAtZero: false in env/prod-standby.yaml).
    let application = get_json(
        &standby.cp,
        &["-n", "argocd", "get", "application", standby_app],
    )
    .unwrap();
    assert!(
        application["spec"]["syncPolicy"].get("automated").is_none(),
        "{}",
        application["spec"]["syncPolicy"]
    );
    assert!(suspended(standby, standby_app), "the failover says why");
    for name in ["web", "orders-get", "orders-create"] {
        assert!(out.contains(&format!("{name} min-scale=1")), "{out}");
        revision_exists(standby, &format!("{name}-00002"));
        let rev = get_json(
            &standby.cp,
            &["-n", "tern", "get", "revision", &format!("{name}-00002")],
        )
        .unwrap();
        assert_eq!(
            rev["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"], "1",
            "{name}"
        );
    }
    // The internal functions stay at zero until traffic reaches them.
    for f in http_functions()
        .iter()
        .filter(|f| !["web", "orders-get", "orders-create"].contains(&f.name.as_str()))
    {
        let svc = service(standby, &f.name);
        assert_eq!(
            svc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"],
            "0",
            "{}",
            f.name
        );
    }
}
