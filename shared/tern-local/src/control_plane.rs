//! A Kubernetes control plane on loopback: etcd and kube-apiserver built from their Go modules
//! (`tools/etcd`, `tools/kubernetes`), a bearer token with `system:masters`, and the
//! manifests the pinned Knative Serving ships (its CRDs, those of knative.dev/networking and
//! knative.dev/caching it needs, its config maps), extracted from the modules by `scripts/tools`
//! into `.local/control-plane`. No kubelet runs: objects are stored, validated, defaulted and
//! reconciled by controllers, but no pod ever starts.
//!
//! Two of them (a primary and a standby cluster) are cheap: each is two processes and a
//! directory.

use crate::process::{die_with_parent, free_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/tools` puts the manifests Knative's modules ship, relative to the root.
pub const MANIFESTS: &str = ".local/control-plane";

/// A running control plane. Dropping it stops both processes.
pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig for it (context `tern`, namespace `default`).
    pub kubeconfig: PathBuf,
    /// The bearer token of its administrator.
    pub token: String,
    bin: PathBuf,
    dir: PathBuf,
    etcd: Child,
    apiserver: Child,
    controllers: Vec<Child>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `root`'s `.local/bin` with their files under `dir`,
    /// waits until the API server is ready, and writes a kubeconfig. Their ports are picked
    /// free, then bound by them: when another process takes one in between, it starts again
    /// (up to three times).
    pub fn start(root: &Path, dir: &Path) -> Result<Self, String> {
        let mut attempt = 1;
        loop {
            match Self::start_once(root, dir) {
                Err(e) if e.contains("address already in use") && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    fn start_once(root: &Path, dir: &Path) -> Result<Self, String> {
        let bin = root.join(".local/bin");
        for tool in ["etcd", "kube-apiserver", "kubectl"] {
            if !bin.join(tool).exists() {
                return Err(format!(
                    "{} is missing: run scripts/tools",
                    bin.join(tool).display()
                ));
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("certs"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        let token = random_hex(24)?;
        let tokens = write(
            "tokens.csv",
            &format!("{token},admin,admin,\"system:masters\"\n"),
        )?;
        let (private, public) = signing_key_pem()?;
        let sa_key = write("service-accounts.key", &private)?;
        let sa_pub = write("service-accounts.pub", &public)?;
        let log = |name: &str| -> Result<Stdio, String> {
            std::fs::File::create(dir.join(name))
                .map(Stdio::from)
                .map_err(|e| format!("{name}: {e}"))
        };

        let (client, peer) = (free_port(), free_port());
        let mut cmd = Command::new(bin.join("etcd"));
        cmd.arg("--name=tern")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=tern=http://127.0.0.1:{peer}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log("etcd.log")?)
            .stderr(log("etcd.log")?);
        die_with_parent(&mut cmd, libc::SIGKILL);
        let etcd = cmd.spawn().map_err(|e| format!("cannot start etcd: {e}"))?;

        let port = free_port();
        let mut cmd = Command::new(bin.join("kube-apiserver"));
        cmd.arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--authorization-mode=RBAC")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--disable-admission-plugins=ServiceAccount")
            // Webhooks are called at their Service's endpoints, not its cluster IP: no
            // kube-proxy here (start_knative_webhook).
            .arg("--enable-aggregator-routing=true")
            .arg("--v=0")
            .stdin(Stdio::null())
            .stdout(log("kube-apiserver.log")?)
            .stderr(log("kube-apiserver.log")?);
        die_with_parent(&mut cmd, libc::SIGKILL);
        let apiserver = cmd
            .spawn()
            .map_err(|e| format!("cannot start kube-apiserver: {e}"))?;

        let url = format!("https://127.0.0.1:{port}");
        let mut cp = Self {
            kubeconfig: dir.join("kubeconfig"),
            url,
            token,
            bin,
            dir: dir.to_path_buf(),
            etcd,
            apiserver,
            controllers: Vec::new(),
        };
        cp.wait_ready(dir, Duration::from_secs(60))?;
        Ok(cp)
    }

    /// Waits for `/readyz`, then writes the kubeconfig (the serving certificate, and the CA that
    /// signed it, exist once the server listens).
    fn wait_ready(&mut self, dir: &Path, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        let ca = dir.join("certs/apiserver.crt");
        loop {
            for (name, child) in [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ] {
                if let Ok(Some(status)) = child.try_wait() {
                    let logs = std::fs::read_to_string(dir.join(format!("{name}.log")))
                        .unwrap_or_default();
                    let tail: Vec<&str> = logs.lines().rev().take(5).collect();
                    return Err(format!("{name} exited ({status}): {}", tail.join(" | ")));
                }
            }
            if ca.exists() {
                self.write_kubeconfig()?;
                if self
                    .kubectl(&["get", "--raw", "/readyz"])
                    .is_ok_and(|o| o.trim() == "ok")
                {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                return Err(format!("kube-apiserver not ready within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn write_kubeconfig(&self) -> Result<(), String> {
        write_kubeconfig(&self.kubeconfig, &[("tern", self)])
    }

    /// Runs `kubectl` against this control plane; its stdout, or its stderr as the error.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.run_tool(Command::new(self.bin.join("kubectl")), "kubectl", args)
    }

    /// Runs a client (`kubectl`, `helm`) with this control plane's kubeconfig and `args`; its
    /// stdout, or its stderr as the error.
    fn run_tool(&self, mut cmd: Command, name: &str, args: &[&str]) -> Result<String, String> {
        let out = cmd
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .map_err(|e| format!("{name}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{name} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Applies the CRDs a cluster of ours has before the charts (`scripts/tools` copied them
    /// from the pinned modules under `root`: Knative Serving's with the networking and caching
    /// ones it needs, the operator's KnativeServing, the Gateway API, Argo CD's, GKE's and
    /// Managed Prometheus's), and waits until the API server serves them.
    pub fn install_crds(&self, root: &Path) -> Result<(), String> {
        let crds = root.join(MANIFESTS).join("crds");
        if !crds.exists() {
            return Err(format!("{} is missing: run scripts/tools", crds.display()));
        }
        self.kubectl(&["apply", "--server-side", "-f", &crds.display().to_string()])?;
        // `kubectl wait` fails on a CRD whose status is not written yet: poll instead.
        let start = Instant::now();
        loop {
            let list: serde_json::Value =
                serde_json::from_str(&self.kubectl(&["get", "crd", "-o", "json"])?)
                    .map_err(|e| format!("CRDs: {e}"))?;
            let waiting: Vec<&str> = list["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|crd| {
                    !crd["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
                })
                .map(|crd| crd["metadata"]["name"].as_str().unwrap_or("?"))
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "CRDs not established within 60 s: {}",
                    waiting.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Applies Serving's config maps (as the operator installs them with Serving) into the
    /// `knative-serving` namespace, which must exist.
    pub fn install_serving_config(&self, root: &Path) -> Result<(), String> {
        let config = root.join(MANIFESTS).join("config");
        self.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &config.display().to_string(),
        ])?;
        Ok(())
    }

    /// Runs Helm (`.local/bin/helm`) against this control plane; its stdout, or its stderr as
    /// the error.
    pub fn helm(&self, root: &Path, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("helm"));
        cmd.current_dir(root)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"));
        self.run_tool(cmd, "helm", args)
    }

    /// The kubeconfig entries for this control plane under the context name `context`.
    fn kubeconfig_entries(&self, context: &str) -> (String, String, String) {
        let ca = self.dir.join("certs/apiserver.crt");
        (
            format!(
                "- name: {context}\n  cluster:\n    server: {}\n    certificate-authority: {}\n",
                self.url,
                ca.display()
            ),
            format!("- name: {context}\n  user:\n    token: {}\n", self.token),
            format!("- name: {context}\n  context:\n    cluster: {context}\n    user: {context}\n"),
        )
    }

    /// Starts Knative Serving's own controller (`tools/knative-serving`) against this control
    /// plane, as its Deployment runs it in `knative-serving`; it runs until the control plane is
    /// dropped.
    pub fn start_knative_controller(&mut self) -> Result<(), String> {
        self.start_knative("controller", &[])
    }

    /// Starts one of Knative Serving's binaries (`tools/knative-serving`) against this control
    /// plane with the environment its Deployment gives it, plus `env`; it runs until the control
    /// plane is dropped, its output in `<name>.log`.
    fn start_knative(&mut self, name: &str, env: &[(&str, String)]) -> Result<(), String> {
        let bin = self.bin.join(name);
        if !bin.exists() {
            return Err(format!("{} is missing: run scripts/tools", bin.display()));
        }
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))
            .map_err(|e| format!("{name}.log: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .env("SYSTEM_NAMESPACE", "knative-serving")
            .env("POD_NAME", name)
            .env("METRICS_DOMAIN", "knative.dev/serving")
            .env("KUBERNETES_MIN_VERSION", "v1.30.0")
            // Its Prometheus and profiling servers on ports of their own: several control
            // planes run side by side here.
            .env("METRICS_PROMETHEUS_PORT", free_port().to_string())
            .env("PROFILING_PORT", free_port().to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        die_with_parent(&mut cmd, libc::SIGKILL);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start Knative's {name}: {e}"))?;
        self.controllers.push(child);
        Ok(())
    }
    /// Starts Knative Serving's webhook (`tools/knative-serving`) and registers it as its
    /// Deployment and Service do, so the API server sends Knative's objects and config maps
    /// through Serving's own defaulting and validation: the webhook configurations Serving ships
    /// (from `.local/control-plane/webhook`), a `webhook` Service whose endpoint is this
    /// machine's non-loopback address (endpoints may not be loopback addresses; the API server
    /// calls a webhook at its endpoints with `--enable-aggregator-routing`), and the webhook
    /// listening there. Returns once the API server has called it successfully.
    pub fn start_knative_webhook(&mut self, root: &Path) -> Result<(), String> {
        let bin = self.bin.join("webhook");
        if !bin.exists() {
            return Err(format!("{} is missing: run scripts/tools", bin.display()));
        }
        let address = reachable_address().ok_or(
            "no IPv4 address outside loopback on a default route: an endpoint may not be a loopback address, so the API server cannot call Knative's webhook here (connect a network, or add a default route)",
        )?;
        let port = free_port();
        let registration = format!(
            "apiVersion: v1
kind: Service
metadata:
  name: webhook
  namespace: knative-serving
spec:
  ports:
    - name: https-webhook
      port: 443
      targetPort: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: webhook-local
  namespace: knative-serving
  labels:
    kubernetes.io/service-name: webhook
addressType: IPv4
endpoints:
  - addresses: [\"{address}\"]
    conditions:
      ready: true
ports:
  - name: https-webhook
    port: {port}
    protocol: TCP
"
        );
        let file = self.dir.join("webhook-service.yaml");
        std::fs::write(&file, registration).map_err(|e| format!("{}: {e}", file.display()))?;
        self.kubectl(&["apply", "--server-side", "-f", &file.display().to_string()])?;
        let configs = root.join(MANIFESTS).join("webhook");
        self.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &configs.display().to_string(),
        ])?;

        self.start_knative(
            "webhook",
            &[
                ("WEBHOOK_NAME", "webhook".to_owned()),
                ("WEBHOOK_PORT", port.to_string()),
                ("CONFIG_LOGGING_NAME", "config-logging".to_owned()),
                (
                    "CONFIG_OBSERVABILITY_NAME",
                    "config-observability".to_owned(),
                ),
            ],
        )?;

        // Ready when the API server's call through it succeeds: a server-side dry run of a
        // config map Serving's config webhook validates.
        let probe = self.dir.join("webhook-probe.yaml");
        std::fs::write(
            &probe,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-autoscaler\n  namespace: knative-serving\ndata:\n  max-scale-up-rate: \"not a number\"\n",
        )
        .map_err(|e| e.to_string())?;
        let start = Instant::now();
        loop {
            let answer = self.kubectl(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                &probe.display().to_string(),
            ]);
            match answer {
                Err(e) if e.contains("denied the request") => return Ok(()),
                other => {
                    if start.elapsed() > Duration::from_secs(60) {
                        return Err(format!(
                            "Knative's webhook did not answer the API server within 60 s ({address}:{port}): {other:?}"
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// This machine's address on the interface of its default route (no packet is sent: a UDP
/// socket is only connected), if it is not a loopback address.
fn reachable_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.255.255.255:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Writes one kubeconfig that reaches several control planes, each under its context name (for
/// example the GKE context names the operations scripts use), the first one current.
pub fn write_kubeconfig(path: &Path, clusters: &[(&str, &ControlPlane)]) -> Result<(), String> {
    let (mut c, mut u, mut x) = (String::new(), String::new(), String::new());
    for (name, cp) in clusters {
        let (cluster, user, context) = cp.kubeconfig_entries(name);
        c.push_str(&cluster);
        u.push_str(&user);
        x.push_str(&context);
    }
    let current = clusters.first().map(|(n, _)| *n).unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{c}users:\n{u}contexts:\n{x}current-context: {current}\n"
    );
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for mut c in self.controllers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for child in [&mut self.apiserver, &mut self.etcd] {
            crate::process::signal(child, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` random bytes, hex.
fn random_hex(n: usize) -> Result<String, String> {
    use aws_lc_rs::rand::SecureRandom;
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| "no randomness".to_owned())?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new ECDSA P-256 key for signing service-account tokens: the private key (PKCS#8) and the
/// public key (SubjectPublicKeyInfo), both PEM.
fn signing_key_pem() -> Result<(String, String), String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let doc = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .map_err(|_| "cannot generate a signing key".to_owned())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref())
        .map_err(|_| "cannot read the signing key back".to_owned())?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| "cannot encode the public key".to_owned())?;
    Ok((
        pem("PRIVATE KEY", doc.as_ref()),
        pem("PUBLIC KEY", public.as_ref()),
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
