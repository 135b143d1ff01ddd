//! `tern new NAME --route "METHOD /path"` and `tern new NAME --event TOPIC`: a new function
//! crate, its route-table entry, and a test that passes as generated. The templates are in
//! `shared/tern-cli/templates/`.

use std::path::Path;

/// What to scaffold.
#[derive(Debug, Clone, Copy)]
pub enum Template<'a> {
    /// An HTTP function serving one route.
    Http {
        /// `GET`, `POST`, ...
        method: &'a str,
        /// `/api/things/{id}`.
        path: &'a str,
    },
    /// A consumer of one topic's events, pushed to `POST /events/NAME`.
    Event {
        /// A topic of the route table.
        topic: &'a str,
    },
}

const MAIN: &str = include_str!("../templates/main.rs");
const HTTP_CARGO: &str = include_str!("../templates/http/Cargo.toml.tmpl");
const HTTP_APP: &str = include_str!("../templates/http/app.rs");
const EVENT_CARGO: &str = include_str!("../templates/event/Cargo.toml.tmpl");
const EVENT_APP: &str = include_str!("../templates/event/app.rs");

/// `/api/orders/{id}` → `/api/orders/example`: a path the route matches.
fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "example"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_owned(), |t, (k, v)| t.replace(k, v))
}

/// Creates `functions/NAME` and appends its `routes.toml` entry. Refuses, changing nothing, when
/// the name or route is malformed, the crate exists, or the entry does not fit the table.
pub fn new_function(root: &Path, name: &str, template: Template<'_>) -> Result<(), String> {
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_name || name.starts_with('-') {
        return Err(format!(
            "{name:?}: a function name is lower-case letters, digits and '-'"
        ));
    }
    let dir = root.join("functions").join(name);
    if dir.exists() {
        return Err(format!("{} exists already", dir.display()));
    }
    let routes_file = root.join("routes.toml");
    let mut table = std::fs::read_to_string(&routes_file).map_err(|e| e.to_string())?;
    let current = tern_routes::RouteTable::parse(&table).map_err(|e| e.to_string())?;
    let description = format!("TODO: one line saying what {name} does.");
    let (method, path, summary, entry, cargo, app, types);
    match template {
        Template::Http { method: m, path: p } => {
            method = m.to_ascii_uppercase();
            path = p.to_owned();
            if !path.starts_with('/') || path.starts_with("/_tern") {
                return Err(format!(
                    "{path:?}: a route starts with / and not with /_tern"
                ));
            }
            summary = format!("{method} {path}");
            entry = format!(
                "\n[[function]]\nname = \"{name}\"\ndescription = \"{description}\"\nroutes = [{{ method = \"{method}\", path = \"{path}\" }}]\nvisibility = \"public\"\n"
            );
            (cargo, app, types) = (HTTP_CARGO, HTTP_APP, String::new());
        }
        Template::Event { topic } => {
            let known = current.topic(topic)?;
            method = "POST".to_owned();
            path = format!("/events/{name}");
            summary = format!("handles the {topic} topic's events, pushed to POST {path}");
            let quoted: Vec<String> = known
                .event_types
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect();
            types = quoted.join(", ");
            entry = format!(
                "\n[[function]]\nname = \"{name}\"\ndescription = \"{description}\"\nroutes = [{{ method = \"POST\", path = \"{path}\" }}]\nvisibility = \"public\"\nsubscriptions = [\n  {{ topic = \"{topic}\", path = \"{path}\", types = [{types}] }},\n]\n"
            );
            (cargo, app) = (EVENT_CARGO, EVENT_APP);
        }
    }
    table.push_str(&entry);
    let parsed = tern_routes::RouteTable::parse(&table)
        .map_err(|e| format!("the new entry does not fit the table: {e}"))?;

    let (topic, subscription) = match template {
        Template::Event { topic } => {
            let id = parsed
                .function(name)
                .and_then(|f| f.subscriptions.first())
                .map(|s| s.id(name))
                .ok_or("the new entry has no subscription")?;
            (topic, id)
        }
        Template::Http { .. } => ("", String::new()),
    };
    let sample = sample_path(&path);
    let vars = [
        ("__NAME__", name),
        ("__SUMMARY__", summary.as_str()),
        ("__METHOD__", method.as_str()),
        ("__AXUM_METHOD__", &method.to_ascii_lowercase()),
        ("__SAMPLE_PATH__", sample.as_str()),
        ("__PATH__", path.as_str()),
        ("__TOPIC__", topic),
        ("__TYPES__", types.as_str()),
        ("__SUBSCRIPTION__", subscription.as_str()),
    ];
    std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
    for (file, text) in [
        ("Cargo.toml", cargo),
        ("src/main.rs", MAIN),
        ("src/app.rs", app),
    ] {
        std::fs::write(dir.join(file), render(text, &vars)).map_err(|e| e.to_string())?;
    }
    std::fs::write(&routes_file, table).map_err(|e| e.to_string())?;
    format_sources(&dir);
    Ok(())
}

/// Lays the generated sources out as `cargo fmt` would (names and paths change line lengths).
/// Without rustfmt they stay as generated, which compiles the same; `cargo fmt` fixes them later.
fn format_sources(dir: &Path) {
    let status = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(dir.join("src/main.rs"))
        .arg(dir.join("src/app.rs"))
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("tern: rustfmt did not run; `cargo fmt` lays out the new sources");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("tern-scaffold-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("functions")).unwrap();
        let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../routes.toml");
        std::fs::copy(table, root.join("routes.toml")).unwrap();
        root
    }

    #[test]
    fn scaffolds_an_http_function_and_a_valid_entry() {
        let root = scratch("http");
        let route = Template::Http {
            method: "post",
            path: "/api/orders/{id}/cancel",
        };
        new_function(&root, "orders-cancel", route).unwrap();
        let t = tern_routes::RouteTable::load(&root.join("routes.toml")).unwrap();
        let f = t.function("orders-cancel").unwrap();
        assert_eq!(f.routes[0].method, "POST");
        let main =
            std::fs::read_to_string(root.join("functions/orders-cancel/src/main.rs")).unwrap();
        assert!(main.contains("tern::run(app::app).await"));
        let app = std::fs::read_to_string(root.join("functions/orders-cancel/src/app.rs")).unwrap();
        assert!(app.contains(".route(\"/api/orders/{id}/cancel\", post(handle))"));
        assert!(app.contains("\"/api/orders/example/cancel\""));
        assert!(!app.contains("__"), "a placeholder is left: {app}");

        // Refusals leave everything as it was.
        assert!(
            new_function(
                &root,
                "orders-cancel",
                Template::Http {
                    method: "POST",
                    path: "/x"
                }
            )
            .unwrap_err()
            .contains("exists")
        );
        let taken = Template::Http {
            method: "GET",
            path: "/api/orders",
        };
        assert!(
            new_function(&root, "other", taken)
                .unwrap_err()
                .contains("both")
        );
        let ok = Template::Http {
            method: "GET",
            path: "/y",
        };
        assert!(new_function(&root, "Bad_Name", ok).is_err());
        let reserved = Template::Http {
            method: "GET",
            path: "/_tern/x",
        };
        assert!(new_function(&root, "health", reserved).is_err());
        assert!(!root.join("functions/other").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn scaffolds_an_event_function_subscribed_to_its_topic() {
        let root = scratch("event");
        new_function(&root, "order-audit", Template::Event { topic: "orders" }).unwrap();
        let t = tern_routes::RouteTable::load(&root.join("routes.toml")).unwrap();
        let f = t.function("order-audit").unwrap();
        assert_eq!(f.subscriptions[0].topic, "orders");
        assert_eq!(f.subscriptions[0].path, "/events/order-audit");
        let orders = t.topics.iter().find(|t| t.name == "orders").unwrap();
        assert_eq!(f.subscriptions[0].types, orders.event_types);
        let app = std::fs::read_to_string(root.join("functions/order-audit/src/app.rs")).unwrap();
        assert!(app.contains("\"com.example.order.created\""));
        assert!(app.contains("projects/local/subscriptions/order-audit-orders"));
        assert!(!app.contains("__"), "a placeholder is left: {app}");
        let refused = new_function(&root, "x-events", Template::Event { topic: "nope" });
        assert!(refused.unwrap_err().contains("not a topic"));
        assert!(!root.join("functions/x-events").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
