//! `tern new NAME --route "METHOD /path"`: a new function crate and its route-table entry.

use std::path::Path;

/// Creates `functions/NAME` and appends its `routes.toml` entry.
pub fn new_function(root: &Path, name: &str, method: &str, path: &str) -> Result<(), String> {
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_name || name.starts_with('-') {
        return Err(format!(
            "{name:?}: a function name is lower-case letters, digits and '-'"
        ));
    }
    let method = method.to_ascii_uppercase();
    if !path.starts_with('/') || path.starts_with("/_tern") {
        return Err(format!(
            "{path:?}: a route starts with / and not with /_tern"
        ));
    }
    let dir = root.join("functions").join(name);
    if dir.exists() {
        return Err(format!("{} exists already", dir.display()));
    }
    let routes_file = root.join("routes.toml");
    let mut table = std::fs::read_to_string(&routes_file).map_err(|e| e.to_string())?;
    let entry = format!(
        "\n[[function]]\nname = \"{name}\"\ndescription = \"TODO: one line saying what {name} does.\"\nroutes = [{{ method = \"{method}\", path = \"{path}\" }}]\nvisibility = \"public\"\n"
    );
    table.push_str(&entry);
    tern_routes::RouteTable::parse(&table)
        .map_err(|e| format!("the new entry does not fit the table: {e}"))?;

    std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
    let axum_method = method.to_ascii_lowercase();
    let files = [
        (
            "Cargo.toml",
            format!(
                "[package]\nname = \"{name}\"\ndescription = \"{method} {path}\"\nversion.workspace = true\nedition.workspace = true\nrust-version.workspace = true\nlicense.workspace = true\npublish.workspace = true\n\n[dependencies]\ntern.workspace = true\naxum.workspace = true\ntokio.workspace = true\nserde_json.workspace = true\n\n[lints]\nworkspace = true\n"
            ),
        ),
        (
            "src/main.rs",
            format!(
                "//! `{name}`: `{method} {path}`.\nmod app;\n\n#[tokio::main]\nasync fn main() -> std::process::ExitCode {{\n    tern::run(app::app).await\n}}\n"
            ),
        ),
        (
            "src/app.rs",
            format!(
                "use axum::{{Json, Router, routing::{axum_method}}};\nuse serde_json::{{Value, json}};\nuse tern::{{Context, Problem, StartError}};\n\npub async fn app(_ctx: Context) -> Result<Router, StartError> {{\n    Ok(Router::new().route(\"{path}\", {axum_method}(handle)))\n}}\n\nasync fn handle() -> Result<Json<Value>, Problem> {{\n    Ok(Json(json!({{\"hello\": \"from {name}\"}})))\n}}\n"
            ),
        ),
    ];
    for (file, text) in files {
        std::fs::write(dir.join(file), text).map_err(|e| e.to_string())?;
    }
    std::fs::write(&routes_file, table).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffolds_a_crate_and_a_valid_entry() {
        let root = std::env::temp_dir().join(format!("tern-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("functions")).unwrap();
        let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../routes.toml");
        std::fs::copy(table, root.join("routes.toml")).unwrap();

        new_function(&root, "orders-cancel", "post", "/api/orders/{id}/cancel").unwrap();
        let t = tern_routes::RouteTable::load(&root.join("routes.toml")).unwrap();
        let f = t.function("orders-cancel").unwrap();
        assert_eq!(f.routes[0].method, "POST");
        let main =
            std::fs::read_to_string(root.join("functions/orders-cancel/src/main.rs")).unwrap();
        assert!(main.contains("tern::run(app::app).await"));
        let app = std::fs::read_to_string(root.join("functions/orders-cancel/src/app.rs")).unwrap();
        assert!(app.contains(".route(\"/api/orders/{id}/cancel\", post(handle))"));

        // Refusals leave everything as it was.
        assert!(
            new_function(&root, "orders-cancel", "POST", "/x")
                .unwrap_err()
                .contains("exists")
        );
        assert!(
            new_function(&root, "other", "GET", "/api/orders")
                .unwrap_err()
                .contains("both")
        );
        assert!(new_function(&root, "Bad_Name", "GET", "/y").is_err());
        assert!(new_function(&root, "health", "GET", "/_tern/x").is_err());
        assert!(!root.join("functions/other").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
