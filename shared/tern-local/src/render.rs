//! What deployment tooling reads: the route table plus the runtime's contract, as one JSON
//! document. `scripts/dev routes --deploy` prints it; `scripts/render` writes it into the Helm
//! chart (`knative/chart/tern-functions/files/routes.json`), where the chart and `infra/` read it;
//! a test fails when the committed copy drifts from `routes.toml`.

use crate::env::FunctionEnv;
use crate::world::LOCAL_PROJECT;
use serde_json::{Value, json};
use tern::LogFormat;
use tern_events::PubSubConfig;
use tern_routes::{Function, Kind, RouteTable};

/// Where the rendered document lives, relative to the repository root.
pub const DEPLOY_JSON: &str = "knative/chart/tern-functions/files/routes.json";

/// The route table and the runtime contract (port, health paths) as pretty JSON.
pub fn deploy_json(table: &RouteTable) -> String {
    let table: Value = serde_json::from_str(&table.to_json()).unwrap_or(Value::Null);
    let doc = json!({
        "_comment": "Rendered from routes.toml by `scripts/render`; do not edit.",
        "runtime": {
            "port": 8080,
            "metrics_port": tern::platform::METRICS_PORT,
            "metrics_path": tern::platform::METRICS_PATH,
            "live_path": tern::platform::LIVE_PATH,
            "ready_path": tern::platform::READY_PATH,
        },
        "table": table,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// What every container of ours runs with, as the images and the chart do.
const HARDENED: &str = "    read_only: true\n    user: \"65532:65532\"\n    cap_drop: [ALL]\n    security_opt: [\"no-new-privileges:true\"]\n";

/// Where the rendered Compose file lives, relative to the repository root.
pub const COMPOSE_YAML: &str = "compose.yaml";

/// The local container check as a Compose file: PostgreSQL, the Pub/Sub emulator, the migrate job,
/// every HTTP function with the environment every local run gives it ([`FunctionEnv`]) and the
/// image's runtime settings (non-root, read-only root filesystem), and `tern edge` in front.
pub fn compose_yaml(table: &RouteTable) -> String {
    use std::fmt::Write as _;
    let pg_image = "docker.io/library/postgres:17-alpine@sha256:742f40ea20b9ff2ff31db5458d127452988a2164df9e17441e191f3b72252193";
    let env = FunctionEnv::new("postgres://tern:tern-local@postgres:5432/tern")
        .pubsub(PubSubConfig::emulator(
            "pubsub-emulator:8085",
            LOCAL_PROJECT,
        ))
        .log_format(LogFormat::Json);
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Rendered from routes.toml by `scripts/render`; do not edit. The local container check:\n\
         # `scripts/containers up` (docs/delivery.md). Local credentials only.\n\
         name: tern\n\
         \n\
         services:\n\
         \x20 postgres:\n\
         \x20   image: {pg_image}\n\
         \x20   environment:\n\
         \x20     POSTGRES_USER: tern\n\
         \x20     POSTGRES_PASSWORD: tern-local\n\
         \x20     POSTGRES_DB: tern\n\
         \x20   healthcheck:\n\
         \x20     test: [\"CMD\", \"pg_isready\", \"-U\", \"tern\"]\n\
         \x20     interval: 2s\n\
         \x20     retries: 30\n\
         \x20 pubsub-emulator:\n\
         {HARDENED}\
         \x20   build: {{context: ., target: pubsub-emulator}}\n\
         \x20   image: tern-pubsub-emulator:local"
    );
    let mut function = |f: &Function| {
        let name = &f.name;
        let _ = writeln!(
            y,
            "  {name}:\n{HARDENED}    build: {{context: ., target: function, args: {{FUNCTION: {name}}}}}\n    image: tern-{name}:local\n    environment:"
        );
        for (k, v) in env.for_function(f, "0.0.0.0", 8080, tern::platform::METRICS_PORT) {
            let _ = writeln!(y, "      {k}: \"{v}\"");
        }
        if f.kind == Kind::Job {
            let _ = writeln!(
                y,
                "    restart: \"no\"\n    depends_on:\n      postgres: {{condition: service_healthy}}"
            );
        } else {
            let _ = writeln!(
                y,
                "    depends_on:\n      migrate: {{condition: service_completed_successfully}}\n      pubsub-emulator: {{condition: service_started}}"
            );
        }
    };
    for f in &table.functions {
        function(f);
    }
    let _ = writeln!(
        y,
        "  edge:\n{HARDENED}    build: {{context: ., target: edge}}\n    image: tern-edge:local\n    environment:\n      PUBSUB_EMULATOR_HOST: pubsub-emulator:8085\n      PUBSUB_PROJECT: {}\n    ports:\n      - \"127.0.0.1:8080:8080\"\n    depends_on:",
        LOCAL_PROJECT
    );
    for f in table.functions.iter().filter(|f| f.kind == Kind::Http) {
        let _ = writeln!(y, "      {}: {{condition: service_started}}", f.name);
    }
    y
}
