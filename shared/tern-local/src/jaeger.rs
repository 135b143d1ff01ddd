//! A real Jaeger (v2, built from its Go module into `.local/bin/jaeger` by `scripts/tools`)
//! receiving the functions' spans over OTLP/HTTP, as GKE's managed collector receives them in
//! the cluster, and keeping them in memory for its UI and query API.

use crate::process::{Daemon, free_port, http_status};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running Jaeger; stopped when dropped.
pub struct Jaeger {
    _daemon: Daemon,
    ui_port: u16,
    otlp_port: u16,
}

impl std::fmt::Debug for Jaeger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jaeger")
            .field("ui_port", &self.ui_port)
            .field("otlp_port", &self.otlp_port)
            .finish_non_exhaustive()
    }
}

/// `.local/bin/jaeger` under the repository `root`.
pub fn binary(root: &Path) -> PathBuf {
    root.join(".local/bin/jaeger")
}

/// Whether Jaeger has been built (`scripts/tools traces`).
pub fn available(root: &Path) -> bool {
    binary(root).is_file()
}

/// Jaeger's configuration: the OTLP/HTTP receiver on `127.0.0.1:otlp`, memory storage, the
/// query service (UI and API) on `127.0.0.1:ui`; nothing else listens.
pub fn config(otlp: u16, ui: u16, query_grpc: u16) -> String {
    format!(
        "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memory:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memory
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{ui}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memory
"
    )
}

impl Jaeger {
    /// Writes the configuration under `dir` (emptied first), starts `.local/bin/jaeger` with
    /// its UI on `ui_port` and OTLP/HTTP on `otlp_port` (0: free ports), and waits until both
    /// answer.
    pub fn start(dir: &Path, root: &Path, ui_port: u16, otlp_port: u16) -> Result<Self, String> {
        let bin = binary(root);
        if !bin.is_file() {
            return Err(format!(
                "{} not found: scripts/tools traces builds it",
                bin.display()
            ));
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let pick = |p: u16| if p == 0 { free_port() } else { p };
        let (ui_port, otlp_port) = (pick(ui_port), pick(otlp_port));
        let cfg = dir.join("jaeger.yaml");
        std::fs::write(&cfg, config(otlp_port, ui_port, free_port())).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config={}", cfg.display()));
        let mut daemon = Daemon::spawn(cmd, "Jaeger", dir.join("jaeger.log"))?;
        // The receiver answers a GET on its path (405): it is listening.
        daemon.wait_until(Duration::from_secs(30), || {
            http_status(ui_port, "/api/services") == Some(200)
                && http_status(otlp_port, "/v1/traces").is_some()
        })?;
        Ok(Self {
            _daemon: daemon,
            ui_port,
            otlp_port,
        })
    }

    /// `http://127.0.0.1:PORT`: the UI and the query API (`/api/traces/{id}`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ui_port)
    }

    /// `http://127.0.0.1:PORT`: what the functions get as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn otlp_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_receiver_and_the_query_service_listen_on_loopback() {
        let doc: serde_json::Value =
            serde_norway::from_str(&config(14318, 16687, 16689)).expect("YAML");
        assert_eq!(
            doc["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
            "127.0.0.1:14318"
        );
        assert_eq!(
            doc["extensions"]["jaeger_query"]["http"]["endpoint"],
            "127.0.0.1:16687"
        );
        assert_eq!(doc["service"]["telemetry"]["metrics"]["level"], "none");
        assert_eq!(
            doc["service"]["pipelines"]["traces"]["receivers"],
            serde_json::json!(["otlp"])
        );
    }
}
