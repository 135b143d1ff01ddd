//! What deployment tooling reads: the route table plus the runtime's contract, as one JSON
//! document. `scripts/dev routes --deploy` prints it; `scripts/render` writes it into the Helm
//! chart (`knative/chart/tern-functions/files/routes.json`), where the chart and `infra/` read it;
//! a test fails when the committed copy drifts from `routes.toml`.

use serde_json::{Value, json};
use tern_routes::RouteTable;

/// Where the rendered document lives, relative to the repository root.
pub const DEPLOY_JSON: &str = "knative/chart/tern-functions/files/routes.json";

/// The route table and the runtime contract (port, health paths) as pretty JSON.
pub fn deploy_json(table: &RouteTable) -> String {
    let table: Value = serde_json::from_str(&table.to_json()).unwrap_or(Value::Null);
    let doc = json!({
        "_comment": "Rendered from routes.toml by `scripts/render`; do not edit.",
        "runtime": {
            "port": 8080,
            "live_path": tern::health::LIVE_PATH,
            "ready_path": tern::health::READY_PATH,
        },
        "table": table,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}
