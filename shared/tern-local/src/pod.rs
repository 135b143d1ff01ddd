//! A function as a Knative pod runs it: in a network namespace of its own (as Kubernetes gives
//! every pod), Knative Serving's own queue-proxy on the pod's serving port in front of it, and the
//! function on its user port behind, reached by queue-proxy over loopback — h2c when the request
//! came in as HTTP/2, as the chart's `h2c` port name makes Kourier send it.
//!
//! queue-proxy's admin (8022) and autoscaling-metrics (9090) ports are constants and it listens on
//! all addresses, so two cannot share a namespace: each pod gets its own, joined to the host by a
//! veth pair with a /30 of its own. Namespaces need root (`ip netns`); CI and these tests run as
//! root.

use crate::env::FunctionEnv;
use crate::process::{FunctionProcess, Output, signal};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tern_routes::Function;

/// The pod's serving port: Knative's `QUEUE_SERVING_PORT` for a revision whose port is named
/// `h2c`, as the chart names it (`networking.BackendHTTP2Port`; 8012 is the HTTP/1 one).
pub const SERVING_PORT: u16 = 8013;
/// queue-proxy's admin port (Knative's `networking.QueueAdminPort`): the preStop hook's target.
pub const ADMIN_PORT: u16 = 8022;
/// How long queue-proxy's drain waits for quiet after SIGTERM (serving's `drainSleepDuration`):
/// the preStop hook of the function's container returns only after it.
pub const QUEUE_PROXY_DRAIN: Duration = Duration::from_secs(30);
/// Where queue-proxy serves the request metrics (Knative's `networking.UserQueueMetricsPort`).
pub const REQUEST_METRICS_PORT: u16 = 9091;
/// The function's port inside the pod (the chart's `containerPort`, the runtime's default).
pub const USER_PORT: u16 = 8080;
/// How long a pod may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the Knative controller tells a revision's queue-proxy.
#[derive(Debug, Clone)]
pub struct RevisionSettings {
    /// `containerConcurrency` (0: unlimited).
    pub container_concurrency: u32,
    /// `timeoutSeconds`.
    pub timeout_seconds: u32,
}

/// A running pod. Dropping it kills both processes at once (queue-proxy's own SIGTERM drain waits
/// 30 s for quiet; use [`Pod::terminate`] to go through it) and removes the namespace.
pub struct Pod {
    /// The namespace's name.
    pub netns: String,
    /// The pod's address, reachable from the host.
    pub ip: Ipv4Addr,
    function: FunctionProcess,
    queue_proxy: Option<Child>,
    host_link: String,
    forwarders: Arc<AtomicBool>,
}

impl Pod {
    /// Starts `function` from `bin_dir` with `env` behind the queue-proxy at `queue_bin`, in a
    /// new namespace, and waits until queue-proxy answers Knative's readiness probe.
    pub fn start(
        bin_dir: &Path,
        queue_bin: &Path,
        function: &Function,
        env: &FunctionEnv,
        revision: &RevisionSettings,
        output: Output,
    ) -> Result<Self, String> {
        let mut pod = Self::spawn(bin_dir, queue_bin, function, env, revision, output)?;
        pod.wait_ready(READY_TIMEOUT)?;
        Ok(pod)
    }

    /// [`Pod::start`] without the wait: several pods start at once, then
    /// [`Pod::wait_ready`] each.
    pub fn spawn(
        bin_dir: &Path,
        queue_bin: &Path,
        function: &Function,
        env: &FunctionEnv,
        revision: &RevisionSettings,
        output: Output,
    ) -> Result<Self, String> {
        if !queue_bin.exists() {
            return Err(format!(
                "{} not found: run scripts/tools first",
                queue_bin.display()
            ));
        }
        let mut pod_net = Netns::claim()?;
        let (netns, host_link) = (pod_net.name.clone(), pod_net.host_link.clone());
        let ip = pod_net.pod_ip;
        let forwarders = Arc::new(AtomicBool::new(false));
        // Until the pod is whole, a failure stops the forwarders (their sockets keep the
        // namespace alive) and the guard removes what was made.
        let stop_on_error = |e: String| {
            forwarders.store(true, Ordering::SeqCst);
            e
        };
        pod_net.create().map_err(stop_on_error)?;
        // The pod reaches PostgreSQL and the emulator at the same loopback addresses the host
        // does, as a pod reaches them through its node's network in the cluster.
        for port in loopback_ports(env) {
            forward_into(&netns, port, forwarders.clone()).map_err(stop_on_error)?;
        }
        let function_proc =
            FunctionProcess::spawn_in(bin_dir, function, USER_PORT, env, output, Some(&netns))
                .map_err(stop_on_error)?;
        let mut cmd = Command::new(ip_command());
        cmd.args(["netns", "exec", &netns])
            .arg(queue_bin)
            .env_clear()
            .envs(queue_proxy_env(function, revision, ip))
            .stdin(Stdio::null());
        // queue-proxy logs each failed readiness probe while the function starts: shown where
        // the function's own output is.
        let shown = output.shows();
        let stream = || {
            if shown {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        cmd.stdout(stream()).stderr(stream());
        crate::process::die_with_parent(&mut cmd, libc::SIGKILL);
        let queue_proxy = cmd.spawn().map_err(|e| {
            stop_on_error(format!(
                "cannot start queue-proxy for {}: {e}",
                function.name
            ))
        })?;
        pod_net.armed = false;
        Ok(Self {
            netns,
            ip,
            function: function_proc,
            queue_proxy: Some(queue_proxy),
            host_link,
            forwarders,
        })
    }

    /// queue-proxy's process id, while it runs.
    pub fn queue_proxy_pid(&self) -> Option<u32> {
        self.queue_proxy.as_ref().map(Child::id)
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.function.name
    }

    /// `IP:8013`: where the router sends this pod's requests (queue-proxy's serving port).
    pub fn addr(&self) -> String {
        format!("{}:{SERVING_PORT}", self.ip)
    }

    /// `IP:8080`: the function itself, past queue-proxy (the kubelet's liveness probes, and the
    /// bench's measure of what queue-proxy costs).
    pub fn function_addr(&self) -> String {
        format!("{}:{USER_PORT}", self.ip)
    }

    /// `http://IP:8013`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The function's process.
    pub fn function(&self) -> &FunctionProcess {
        &self.function
    }

    /// The function's process (to signal it alone, or read its exit).
    pub fn function_mut(&mut self) -> &mut FunctionProcess {
        &mut self.function
    }

    /// `http://IP:9091/metrics`: queue-proxy's request metrics (Prometheus text).
    pub fn metrics_url(&self) -> String {
        format!("http://{}:{REQUEST_METRICS_PORT}/metrics", self.ip)
    }

    /// `http://IP:9464/metrics`: the function's own metrics (the runtime's listener).
    pub fn function_metrics_url(&self) -> String {
        format!(
            "http://{}{}",
            self.function_metrics_addr(),
            tern::platform::METRICS_PATH
        )
    }

    /// `IP:9464`.
    pub fn function_metrics_addr(&self) -> String {
        format!("{}:{}", self.ip, tern::platform::METRICS_PORT)
    }

    /// The pod's address.
    pub fn ip(&self) -> std::net::Ipv4Addr {
        self.ip
    }

    /// Probes queue-proxy as the kubelet does (`K-Network-Probe: queue`): 200 once queue-proxy
    /// has found the function ready. Fails at once when either process has exited.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        let addr = std::net::SocketAddr::from((self.ip, SERVING_PORT));
        while std::time::Instant::now() < deadline {
            if probe(addr) == Some(200) {
                return Ok(());
            }
            if let Some(q) = self.queue_proxy.as_mut()
                && let Ok(Some(status)) = q.try_wait()
            {
                return Err(format!(
                    "{}: queue-proxy exited: {status}",
                    self.function.name
                ));
            }
            if let Some(status) = self.function.exited() {
                return Err(format!(
                    "{} exited during start: {status}",
                    self.function.name
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "{}: queue-proxy did not report ready within {timeout:?}",
            self.function.name
        ))
    }

    /// Deletes the pod as the kubelet does: SIGTERM to queue-proxy while the function's
    /// preStop hook runs (Knative sets it: `GET :8022/wait-for-drain` on queue-proxy, which
    /// returns once 30 s have passed without a request); then SIGTERM to the function, which
    /// drains as `TERN_DRAIN_DELAY` and `TERN_GRACE_PERIOD` say. Waits for both processes.
    pub fn terminate(&mut self) -> Termination {
        let started = std::time::Instant::now();
        let qp = self.queue_proxy.take();
        if let Some(q) = &qp {
            signal(q, libc::SIGTERM);
        }
        let pre_stop = http_get(
            std::net::SocketAddr::from((self.ip, ADMIN_PORT)),
            "/wait-for-drain",
            Duration::from_secs(120),
        );
        let pre_stop_took = started.elapsed();
        let function = self.function.terminate();
        let queue_proxy = qp.and_then(|mut q| q.wait().ok());
        Termination {
            pre_stop,
            pre_stop_took,
            took: started.elapsed(),
            function,
            queue_proxy,
        }
    }
}

/// How a pod's termination went.
#[derive(Debug)]
pub struct Termination {
    /// The preStop hook's status (`None`: it could not be called).
    pub pre_stop: Option<u16>,
    /// From SIGTERM to queue-proxy until the preStop hook returned (queue-proxy's drain).
    pub pre_stop_took: Duration,
    /// The whole termination.
    pub took: Duration,
    /// The function's exit.
    pub function: Option<std::process::ExitStatus>,
    /// queue-proxy's exit.
    pub queue_proxy: Option<std::process::ExitStatus>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(mut q) = self.queue_proxy.take() {
            signal(&q, libc::SIGKILL);
            let _ = q.wait();
        }
        let _ = self.function.kill();
        self.forwarders.store(true, Ordering::SeqCst);
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

/// The environment Knative's controller gives queue-proxy (`pkg/queue/sharedmain`'s `config`).
fn queue_proxy_env(
    function: &Function,
    revision: &RevisionSettings,
    ip: Ipv4Addr,
) -> Vec<(String, String)> {
    let name = &function.name;
    // The chart's readinessProbe (service.yaml: periodSeconds 5, failureThreshold 3) with the
    // defaults Knative's controller fills in (timeoutSeconds 1, successThreshold 1).
    let probe = format!(
        r#"{{"httpGet":{{"path":"{}","port":{USER_PORT},"host":"127.0.0.1","scheme":"HTTP"}},"timeoutSeconds":1,"periodSeconds":5,"successThreshold":1,"failureThreshold":3}}"#,
        tern::platform::READY_PATH
    );
    [
        (
            "CONTAINER_CONCURRENCY",
            revision.container_concurrency.to_string(),
        ),
        ("QUEUE_SERVING_PORT", SERVING_PORT.to_string()),
        ("QUEUE_SERVING_TLS_PORT", "8112".to_owned()),
        ("USER_PORT", USER_PORT.to_string()),
        (
            "REVISION_TIMEOUT_SECONDS",
            revision.timeout_seconds.to_string(),
        ),
        ("SERVING_LOGGING_CONFIG", String::new()),
        ("SERVING_LOGGING_LEVEL", "warn".to_owned()),
        ("SERVING_NAMESPACE", "tern".to_owned()),
        ("SERVING_SERVICE", name.clone()),
        ("SERVING_CONFIGURATION", name.clone()),
        ("HOSTNAME", format!("{name}-pod")),
        ("SERVING_REVISION", format!("{name}-00001")),
        ("SERVING_POD", format!("{name}-pod")),
        ("SERVING_POD_IP", ip.to_string()),
        ("SERVING_READINESS_PROBE", probe),
        // What the platform's KnativeServing sets (request-metrics-protocol: prometheus).
        (
            "OBSERVABILITY_CONFIG",
            r#"{"requestMetrics":{"protocol":"prometheus"}}"#.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The loopback ports the environment points at (the database, the emulator, a key server a
/// test runs): every `127.0.0.1:PORT` or `localhost:PORT` in a value, but the public origins
/// (where browsers come from, not where the pod goes) and the pod's own ports.
fn loopback_ports(env: &FunctionEnv) -> Vec<u16> {
    let own = [
        USER_PORT,
        SERVING_PORT,
        8112,
        8022,
        9090,
        REQUEST_METRICS_PORT,
    ];
    let mut ports = std::collections::BTreeSet::new();
    for (name, value) in env.vars() {
        if name == "TERN_PUBLIC_ORIGINS" {
            continue;
        }
        for host in ["127.0.0.1:", "localhost:"] {
            for (at, _) in value.match_indices(host) {
                let digits: String = value[at + host.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(p) = digits.parse::<u16>()
                    && p != 0
                    && !own.contains(&p)
                {
                    ports.insert(p);
                }
            }
        }
    }
    ports.into_iter().collect()
}

/// Listens on `127.0.0.1:port` inside `netns` and forwards each connection to `127.0.0.1:port`
/// on the host, until `stop` is set. The listening socket is made on a thread that enters the
/// namespace (`setns`) and leaves it again: a socket stays in the namespace it was made in.
fn forward_into(netns: &str, port: u16, stop: Arc<AtomicBool>) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let target = std::fs::File::open(format!("/var/run/netns/{netns}"))
        .map_err(|e| format!("open netns {netns}: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = (|| -> Result<std::net::TcpListener, String> {
            let home = std::fs::File::open("/proc/thread-self/ns/net")
                .map_err(|e| format!("open own netns: {e}"))?;
            // SAFETY: setns on this thread only, with descriptors we hold open.
            if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            let listener = std::net::TcpListener::bind(("127.0.0.1", port));
            // SAFETY: as above, back to the namespace this thread started in.
            if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns back: {}", std::io::Error::last_os_error()));
            }
            listener.map_err(|e| format!("listen on 127.0.0.1:{port} in the pod: {e}"))
        })();
        let listener = match bound {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let _ = listener.set_nonblocking(true);
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((inner, _)) => {
                    let _ = inner.set_nonblocking(false);
                    if let Ok(outer) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                        // Small request/response messages (PostgreSQL's protocol) must not wait
                        // for Nagle's algorithm and delayed ACKs: 40 ms a round trip otherwise.
                        let _ = inner.set_nodelay(true);
                        let _ = outer.set_nodelay(true);
                        splice(inner, outer);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    rx.recv()
        .map_err(|_| "the forwarding thread ended".to_owned())?
}

/// Copies both ways between two connections until either side closes.
fn splice(a: std::net::TcpStream, b: std::net::TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    for (mut from, mut to) in [(a, b2), (b, a2)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// `GET /` with the kubelet's queue-proxy probe header; the status, if any.
fn probe(addr: std::net::SocketAddr) -> Option<u16> {
    request(
        addr,
        &format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nK-Network-Probe: queue\r\nUser-Agent: kube-probe/1.35\r\nConnection: close\r\n\r\n"
        ),
        Duration::from_secs(2),
    )
}

/// `GET path` as the kubelet's HTTP lifecycle hooks send it; the status, if any.
fn http_get(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    request(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-lifecycle/1.35\r\nConnection: close\r\n\r\n"
        ),
        timeout,
    )
}

fn request(addr: std::net::SocketAddr, head: &str, timeout: Duration) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(head.as_bytes()).ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// The slots pods are numbered by: one /30 each in 10.200.0.0/13.
const SLOTS: u32 = 1 << 17;

/// A pod's namespace (`tern-pod-<slot>`), its veth pair (`tp<slot>` on the host, `tp<slot>p` in
/// the pod) and its /30; removed on drop while `armed`, and only what this process made.
struct Netns {
    name: String,
    host_link: String,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    link_made: bool,
    armed: bool,
}

impl Netns {
    /// Claims a free slot: `ip netns add` fails when the name exists, so two processes (or two
    /// pods of one) never get the same slot, its names or its addresses.
    fn claim() -> Result<Self, String> {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(sweep_stale);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let start = std::process::id().wrapping_mul(64);
        let mut last = String::new();
        for _ in 0..64 {
            let slot = start.wrapping_add(NEXT.fetch_add(1, Ordering::SeqCst)) % SLOTS;
            let name = format!("tern-pod-{slot}");
            match ip(&["netns", "add", &name]) {
                Ok(()) => {
                    let base = u32::from(Ipv4Addr::new(10, 200, 0, 0)) + slot * 4;
                    return Ok(Self {
                        name,
                        host_link: format!("tp{slot}"),
                        host_ip: Ipv4Addr::from(base + 1),
                        pod_ip: Ipv4Addr::from(base + 2),
                        link_made: false,
                        armed: true,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(format!(
            "cannot make the network namespace of a pod (needs root and iproute2): {last}"
        ))
    }

    fn create(&mut self) -> Result<(), String> {
        let peer = format!("{}p", self.host_link);
        let ns = self.name.clone();
        let (host_cidr, pod_cidr) = (
            format!("{}/30", self.host_ip),
            format!("{}/30", self.pod_ip),
        );
        let fail = |e: String| format!("cannot wire the pod's network namespace {ns}: {e}");
        ip(&["-n", &ns, "link", "set", "lo", "up"]).map_err(fail)?;
        ip(&[
            "link",
            "add",
            &self.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])
        .map_err(fail)?;
        self.link_made = true;
        let steps: [&[&str]; 5] = [
            &["link", "set", &peer, "netns", &ns],
            &["addr", "add", &host_cidr, "dev", &self.host_link],
            &["link", "set", &self.host_link, "up"],
            &["-n", &ns, "addr", "add", &pod_cidr, "dev", &peer],
            &["-n", &ns, "link", "set", &peer, "up"],
        ];
        for args in steps {
            ip(args).map_err(fail)?;
        }
        Ok(())
    }

    fn remove(&mut self) {
        if self.link_made {
            let _ = ip(&["link", "del", &self.host_link]);
        }
        let _ = ip(&["netns", "del", &self.name]);
        self.armed = false;
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.armed {
            self.remove();
        }
    }
}

/// Removes the pods a killed process left behind (SIGKILL runs no destructor): a `tern-pod-*`
/// namespace older than a minute with no process in it. A live pod always has its queue-proxy and
/// function inside once started, and starting takes seconds.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(slot) = name.strip_prefix("tern-pod-") else {
            continue;
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        let empty = Command::new(ip_command())
            .args(["netns", "pids", &name])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace));
        if old && empty {
            let _ = ip(&["link", "del", &format!("tp{slot}")]);
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// `ip`, found where iproute2 puts it even when PATH lacks the sbin directories.
pub(crate) fn ip_command() -> std::path::PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join("ip"))
        .find(|p| p.exists())
        .unwrap_or_else(|| "ip".into())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new(ip_command())
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
