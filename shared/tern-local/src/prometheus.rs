//! A real Prometheus (Debian's package) scraping the local functions as Managed Prometheus
//! scrapes them in the cluster: the runtime's port as job `tern-functions`, queue-proxy's as job
//! `tern-queue-proxy`, each target labelled with its `function` and `visibility` as the chart's
//! PodMonitorings label them; and evaluating the chart's own rules
//! (`knative/chart/tern-functions/files/rules.yaml`) after a `tern-thresholds` group of local
//! thresholds ([`LOCAL_THRESHOLDS`]: an outage shows in seconds, not minutes).

use crate::process::Daemon;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The rules file the chart wraps in its `Rules` object, relative to the repository root.
pub const RULES_FILE: &str = "knative/chart/tern-functions/files/rules.yaml";

/// The thresholds group the chart renders from `alerts.*` values, with local values: an outbox
/// row pending for 10 s (300 s in the clusters) starts `TernOutboxBacklogOld`'s minute.
pub const LOCAL_THRESHOLDS: &str = "groups:
  - name: tern-thresholds
    rules:
      - record: tern:outbox_pending_age_threshold_seconds
        expr: vector(10)
";

/// One function instance to scrape.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    /// Its name (the `function` label).
    pub function: String,
    /// `public` or `internal` (the `visibility` label).
    pub visibility: String,
    /// `host:port` of the runtime's metrics listener.
    pub metrics: String,
    /// `host:port` of its queue-proxy's request metrics, when it runs in a pod.
    pub queue_proxy: Option<String>,
}

/// A running Prometheus; stopped when dropped.
pub struct Prometheus {
    daemon: Daemon,
    port: u16,
    config: PathBuf,
    rule_files: Vec<PathBuf>,
    interval: Duration,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Where Debian's package puts the binary, when it is on no `PATH` of ours.
fn binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// Whether Prometheus is installed (`apt-get install prometheus`).
pub fn available() -> bool {
    binary().is_some()
}

/// The scrape configuration for `targets`, every `interval`, with `rule_files`.
pub fn config(targets: &[ScrapeTarget], interval: Duration, rule_files: &[PathBuf]) -> String {
    let secs = interval.as_secs().max(1);
    let mut s = format!(
        "global:\n  scrape_interval: {secs}s\n  evaluation_interval: {secs}s\nrule_files:\n"
    );
    for f in rule_files {
        s += &format!("  - {:?}\n", f.display().to_string());
    }
    s += "scrape_configs:\n";
    for (job, pick) in [
        (
            "tern-functions",
            (|t: &ScrapeTarget| Some(t.metrics.clone())) as fn(&ScrapeTarget) -> Option<String>,
        ),
        ("tern-queue-proxy", |t: &ScrapeTarget| t.queue_proxy.clone()),
    ] {
        let mine: Vec<(&ScrapeTarget, String)> = targets
            .iter()
            .filter_map(|t| pick(t).map(|a| (t, a)))
            .collect();
        if mine.is_empty() {
            continue;
        }
        s += &format!("  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n");
        for (t, addr) in mine {
            s += &format!(
                "      - targets: [{addr:?}]\n        labels: {{function: {:?}, visibility: {:?}, revision: \"local\"}}\n",
                t.function, t.visibility
            );
        }
    }
    s
}

impl Prometheus {
    /// Writes the configuration and the local thresholds under `dir` (emptied first), starts
    /// Prometheus on `127.0.0.1:port` (0: a free port) with the repository's rules, and waits
    /// until it is ready.
    pub fn start(
        dir: &Path,
        repo: &Path,
        port: u16,
        targets: &[ScrapeTarget],
        interval: Duration,
    ) -> Result<Self, String> {
        let bin = binary().ok_or(
            "Prometheus is not installed (apt-get install prometheus; scripts/dev does it as root)",
        )?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let thresholds = dir.join("thresholds.yaml");
        std::fs::write(&thresholds, LOCAL_THRESHOLDS).map_err(|e| e.to_string())?;
        let cfg = dir.join("prometheus.yml");
        let rule_files = vec![thresholds, repo.join(RULES_FILE)];
        std::fs::write(&cfg, config(targets, interval, &rule_files)).map_err(|e| e.to_string())?;
        let port = if port == 0 {
            crate::process::free_port()
        } else {
            port
        };
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1d");
        let mut daemon = Daemon::spawn(cmd, "Prometheus", dir.join("prometheus.log"))?;
        daemon.wait_until(Duration::from_secs(30), || {
            crate::process::http_status(port, "/-/ready") == Some(200)
        })?;
        Ok(Self {
            daemon,
            port,
            config: cfg,
            rule_files,
            interval,
        })
    }

    /// Scrapes `targets` from now on (a function's pods were replaced): the configuration is
    /// rewritten and Prometheus reloads it on SIGHUP, as the Operator reloads a changed one.
    pub fn retarget(&self, targets: &[ScrapeTarget]) -> Result<(), String> {
        std::fs::write(
            &self.config,
            config(targets, self.interval, &self.rule_files),
        )
        .map_err(|e| format!("{}: {e}", self.config.display()))?;
        let pid = i32::try_from(self.daemon.pid()).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) on the pid of the Prometheus this value started and has not reaped.
        if pid == 0 || unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            return Err("Prometheus is not running".into());
        }
        Ok(())
    }

    /// `http://127.0.0.1:PORT`: the UI and the HTTP API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_the_jobs_the_rules_select() {
        let t = |f: &str, v: &str, qp: Option<&str>| ScrapeTarget {
            function: f.into(),
            visibility: v.into(),
            metrics: format!("10.0.0.1:{}", tern::platform::METRICS_PORT),
            queue_proxy: qp.map(Into::into),
        };
        let text = config(
            &[
                t("orders-get", "public", Some("10.0.0.1:9091")),
                t("outbox-relay", "internal", None),
            ],
            Duration::from_secs(2),
            &[PathBuf::from("/r/rules.yaml")],
        );
        let doc: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
        assert_eq!(doc["global"]["scrape_interval"], "2s");
        assert_eq!(doc["rule_files"][0], "/r/rules.yaml");
        let jobs = doc["scrape_configs"].as_array().expect("jobs");
        assert_eq!(jobs[0]["job_name"], "tern-functions");
        assert_eq!(jobs[0]["static_configs"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            jobs[0]["static_configs"][1]["labels"]["visibility"],
            "internal"
        );
        assert_eq!(jobs[1]["job_name"], "tern-queue-proxy");
        assert_eq!(jobs[1]["static_configs"][0]["targets"][0], "10.0.0.1:9091");
    }
}
