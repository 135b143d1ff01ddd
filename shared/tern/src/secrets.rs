//! Secrets, one mechanism for all of them.
//!
//! A secret setting `NAME` is read from, in order:
//! - `NAME_SECRET`: a Secret Manager version (`projects/P/secrets/S/versions/latest`), read with
//!   the workload's own identity (Workload Identity in GKE, Application Default Credentials
//!   elsewhere) through Google's official `google-cloud-secretmanager-v1` crate;
//! - `NAME_FILE`: a file (a mounted Kubernetes secret, a local file), trailing newline trimmed;
//! - `NAME`: the value itself (fine locally; never in a manifest).
//!
//! Setting more than one is a configuration error: which one wins would be a guess.

use crate::config::{ConfigError, Env};

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

/// Reads one secret version from Secret Manager.
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
    let client = google_cloud_secretmanager_v1::client::SecretManagerService::builder()
        .build()
        .await
        .map_err(|e| format!("cannot create a Secret Manager client: {e}"))?;
    let version = client
        .access_secret_version()
        .set_name(&name)
        .send()
        .await
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    let data = version.payload.map(|p| p.data).unwrap_or_default();
    String::from_utf8(data.to_vec()).map_err(|_| format!("{name} is not UTF-8 text"))
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

        assert_eq!(resolve(&Env::default(), "API_KEY").await.unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
