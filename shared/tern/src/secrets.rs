//! Secrets, one mechanism for all of them.
//!
//! A secret setting `NAME` is read from, in order:
//! - `NAME_SECRET`: a Secret Manager version (`projects/P/secrets/S/versions/latest`), read
//!   through the process's [`SecretStore`]: `tern-secret-manager`, which a function that
//!   declares `secrets` in `routes.toml` installs in `main` (the others do not link Google's
//!   client; for them this form is a configuration error that says so);
//! - `NAME_FILE`: a file (a mounted Kubernetes secret, a local file), trailing newline trimmed;
//! - `NAME`: the value itself (fine locally; never in a manifest).
//!
//! Setting more than one is a configuration error: which one wins would be a guess.

use crate::config::{ConfigError, Env};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

/// Where `NAME_SECRET` settings are read from: `tern_secret_manager::SecretManager` in the
/// cluster.
pub trait SecretStore: Send + Sync + 'static {
    /// Reads one secret version (`projects/P/secrets/S/versions/V`) as text.
    fn access<'a>(
        &'a self,
        version: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

static STORE: OnceLock<Box<dyn SecretStore>> = OnceLock::new();

/// Installs the process's secret store; the first one installed stays.
pub fn set_store(store: Box<dyn SecretStore>) {
    let _ = STORE.set(store);
}

/// Reads the secret `name`, or `None` when none of its three forms is set.
pub async fn resolve(env: &Env, name: &str) -> Result<Option<String>, ConfigError> {
    let secret_var = format!("{name}_SECRET");
    let file_var = format!("{name}_FILE");
    let set: Vec<&str> = [secret_var.as_str(), file_var.as_str(), name]
        .into_iter()
        .filter(|v| env.raw(v).is_some())
        .collect();
    if set.len() > 1 {
        return Err(ConfigError::new(
            name,
            format!(
                "set only one of {}, not {}",
                [name, &file_var, &secret_var].join(", "),
                set.join(" and ")
            ),
        ));
    }
    if let Some(resource) = env.raw(&secret_var) {
        return access_secret(resource.trim())
            .await
            .map(Some)
            .map_err(|e| ConfigError::new(&secret_var, e));
    }
    if let Some(path) = env.raw(&file_var) {
        return std::fs::read_to_string(path.trim())
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|e| ConfigError::new(&file_var, format!("cannot read {path:?}: {e}")));
    }
    Ok(env.raw(name).map(str::to_owned))
}

/// Reads one secret version through the installed store.
async fn access_secret(resource: &str) -> Result<String, String> {
    if !resource.starts_with("projects/") || !resource.contains("/secrets/") {
        return Err(format!(
            "expected projects/PROJECT/secrets/NAME/versions/VERSION, got {resource:?}"
        ));
    }
    let name = if resource.contains("/versions/") {
        resource.to_owned()
    } else {
        format!("{resource}/versions/latest")
    };
    let Some(store) = STORE.get() else {
        return Err(
            "this function is built without Secret Manager: declare the secret in routes.toml and call tern_secret_manager::install() in main, or set the _FILE form"
                .to_owned(),
        );
    };
    store.access(&name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn value_file_and_conflicts() {
        let env = Env::from_pairs([("API_KEY", "plain")]);
        assert_eq!(
            resolve(&env, "API_KEY").await.unwrap().as_deref(),
            Some("plain")
        );

        let dir = std::env::temp_dir().join(format!("tern-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        let env = Env::from_pairs([("API_KEY_FILE", file.to_str().unwrap())]);
        assert_eq!(
            resolve(&env, "API_KEY").await.unwrap().as_deref(),
            Some("from-file")
        );

        let env = Env::from_pairs([("API_KEY", "a"), ("API_KEY_FILE", "/x")]);
        let err = resolve(&env, "API_KEY").await.unwrap_err();
        assert_eq!(err.var, "API_KEY");

        let env = Env::from_pairs([("API_KEY_FILE", "/nonexistent/tern")]);
        assert_eq!(
            resolve(&env, "API_KEY").await.unwrap_err().var,
            "API_KEY_FILE"
        );

        let env = Env::from_pairs([("API_KEY_SECRET", "my-secret")]);
        let err = resolve(&env, "API_KEY").await.unwrap_err();
        assert!(err.problem.contains("projects/PROJECT/secrets"), "{err}");

        // No store installed (this test process installs none): one line naming the setting.
        let env = Env::from_pairs([("API_KEY_SECRET", "projects/p/secrets/key")]);
        let err = resolve(&env, "API_KEY").await.unwrap_err();
        assert_eq!(err.var, "API_KEY_SECRET");
        assert!(
            err.problem.contains("built without Secret Manager"),
            "{err}"
        );

        assert_eq!(resolve(&Env::default(), "API_KEY").await.unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
