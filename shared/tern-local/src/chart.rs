//! What the functions' chart tells Knative about each revision, read from its values
//! (`knative/chart/tern-functions/values.yaml`), so a local pod runs with the settings the
//! cluster's would: the revision timeout and container concurrency queue-proxy enforces, and the
//! runtime's timing settings the Service template derives from them.

use crate::pod::RevisionSettings;
use std::path::Path;
use tern_routes::Function;

/// The chart's values file, relative to the repository root.
pub(crate) const VALUES: &str = "knative/chart/tern-functions/values.yaml";

/// The chart's defaults and per-function overrides that shape a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartValues {
    timeout_seconds: u32,
    drain_delay_seconds: u32,
    grace_period_seconds: u32,
    overrides: serde_json::Value,
}

impl ChartValues {
    /// Reads the values file under `root`.
    pub fn load(root: &Path) -> Result<Self, String> {
        let path = root.join(VALUES);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a values document.
    pub fn parse(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let d = &v["defaults"];
        let num = |k: &str| -> Result<u32, String> {
            d[k].as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("defaults.{k} is not a whole number"))
        };
        Ok(Self {
            timeout_seconds: num("timeoutSeconds")?,
            drain_delay_seconds: num("drainDelaySeconds")?,
            grace_period_seconds: num("gracePeriodSeconds")?,
            overrides: v["functions"].clone(),
        })
    }

    /// `timeoutSeconds` of `function`'s revisions (its override, or the default).
    pub fn timeout_seconds(&self, function: &str) -> u32 {
        self.overrides[function]["timeoutSeconds"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(self.timeout_seconds)
    }

    /// What Knative's controller gives `function`'s queue-proxy.
    pub fn revision(&self, function: &Function) -> RevisionSettings {
        RevisionSettings {
            container_concurrency: function.scale.concurrency,
            timeout_seconds: self.timeout_seconds(&function.name),
        }
    }

    /// The runtime settings the Service template renders for `function` (service.yaml): the
    /// request timeout 5 s inside the revision's, the drain delay and the grace period.
    pub fn function_env(&self, function: &Function) -> Vec<(String, String)> {
        let timeout = self.timeout_seconds(&function.name);
        vec![
            (
                "TERN_REQUEST_TIMEOUT".into(),
                format!("{}s", timeout.saturating_sub(5)),
            ),
            (
                "TERN_DRAIN_DELAY".into(),
                format!("{}s", self.drain_delay_seconds),
            ),
            (
                "TERN_GRACE_PERIOD".into(),
                format!("{}s", self.grace_period_seconds),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let v = ChartValues::parse(
            "defaults:\n  timeoutSeconds: 60\n  drainDelaySeconds: 0\n  gracePeriodSeconds: 20\nfunctions:\n  web:\n    timeoutSeconds: 30\n",
        )
        .unwrap();
        assert_eq!(v.timeout_seconds("web"), 30);
        assert_eq!(v.timeout_seconds("orders-get"), 60);
        let table = crate::test_table();
        let get = table.function("orders-get").unwrap();
        let r = v.revision(get);
        assert_eq!(
            (r.container_concurrency, r.timeout_seconds),
            (get.scale.concurrency, 60)
        );
        assert!(
            v.function_env(get)
                .contains(&("TERN_REQUEST_TIMEOUT".into(), "55s".into()))
        );
        assert!(ChartValues::parse("defaults: {}").is_err());
    }

    #[test]
    fn the_repository_values_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let v = ChartValues::load(&root).unwrap();
        assert!(v.timeout_seconds("orders-get") > v.drain_delay_seconds + v.grace_period_seconds);
    }
}
