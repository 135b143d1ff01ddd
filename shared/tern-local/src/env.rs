//! The one place a function's environment is built for a local run.
//!
//! `tern dev`, the Compose file, the end-to-end tests and the bench all start functions (and
//! the `migrate` job) with a [`FunctionEnv`]; a new setting is added here once and every one of
//! them passes it. In the cluster the same variables come from the chart
//! (`knative/chart/tern-functions/templates/service.yaml`).

use std::collections::BTreeMap;
use tern::LogFormat;
use tern_events::PubSubConfig;
use tern_routes::Function;

/// The API key `tern dev` configures for the back-office list and prints in its banner.
pub const LOCAL_API_KEY: &str = "local-dev-key";
/// The CSRF secret of local runs (local credentials only).
const LOCAL_CSRF_SECRET: &str = "local-only-csrf-secret-0123456789abcdef";
/// The router port of `tern dev` and of the Compose file's `tern edge`.
pub const ROUTER_PORT: u16 = 8080;

/// The origins a browser reaches a router on `port` of this machine at.
pub fn local_origins(port: u16) -> Vec<String> {
    vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ]
}

/// `TERN_LOG_FORMAT`'s spelling of `format`.
fn log_format_value(format: LogFormat) -> &'static str {
    match format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
        LogFormat::Auto => "auto",
    }
}

/// The settings every function of a local system gets: its database, its Pub/Sub project and
/// emulator, the local credentials, and any setting a caller adds with [`FunctionEnv::set`].
#[derive(Debug, Clone)]
pub struct FunctionEnv {
    database_url: String,
    pubsub: Option<PubSubConfig>,
    log_format: LogFormat,
    api_key: String,
    public_origins: Vec<String>,
    extra: BTreeMap<String, String>,
}

impl FunctionEnv {
    /// Functions on `database_url`, with text logs and the local API key; no Pub/Sub until
    /// [`FunctionEnv::pubsub`] is given (the `migrate` job needs none).
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            pubsub: None,
            log_format: LogFormat::Text,
            api_key: LOCAL_API_KEY.to_owned(),
            public_origins: local_origins(ROUTER_PORT),
            extra: BTreeMap::new(),
        }
    }

    /// The same functions on another database (a standby region's replica).
    #[must_use]
    pub fn database(mut self, database_url: impl Into<String>) -> Self {
        self.database_url = database_url.into();
        self
    }

    /// Publishes to and is configured for `pubsub` (its project, emulator and publish timeout).
    #[must_use]
    pub fn pubsub(mut self, pubsub: PubSubConfig) -> Self {
        self.pubsub = Some(pubsub);
        self
    }

    /// The log format.
    #[must_use]
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// The API key the back-office list accepts (its hash is what the function is given).
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    /// The origins the public reaches the functions at (`TERN_PUBLIC_ORIGINS`, which the chart
    /// renders from the hosts the Gateway routes); by default the local router's,
    /// [`local_origins`]`(`[`ROUTER_PORT`]`)`.
    #[must_use]
    pub fn public_origins(mut self, origins: Vec<String>) -> Self {
        self.public_origins = origins;
        self
    }

    /// Adds (or replaces) one setting, such as `DB_POOL_SIZE`.
    #[must_use]
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// Adds each setting that was not set with [`FunctionEnv::set`] (defaults from elsewhere,
    /// such as the chart's, that a caller may have overridden).
    #[must_use]
    pub fn defaults(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        for (k, v) in pairs {
            self.extra.entry(k).or_insert(v);
        }
        self
    }

    /// The database URL.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The Pub/Sub settings, if any.
    pub fn pubsub_settings(&self) -> Option<&PubSubConfig> {
        self.pubsub.as_ref()
    }

    /// The variables shared by every function, in a stable order.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            vars.insert(k.to_owned(), v);
        };
        put("DATABASE_URL", self.database_url.clone());
        if let Some(ps) = &self.pubsub {
            put("PUBSUB_PROJECT", ps.project.clone());
            // The chart sets the Google Cloud project (values gcp.project); locally the Pub/Sub
            // project stands for it, so that log lines join their trace as in the cluster.
            put("GOOGLE_CLOUD_PROJECT", ps.project.clone());
            if let Some(host) = &ps.emulator_host {
                put("PUBSUB_EMULATOR_HOST", host.clone());
            }
            put(
                "PUBSUB_PUBLISH_TIMEOUT",
                format!("{}ms", ps.publish_timeout.as_millis()),
            );
        }
        put(
            "TERN_LOG_FORMAT",
            log_format_value(self.log_format).to_owned(),
        );
        put("ORDERS_API_KEY_HASHES", tern::ApiKeys::hash(&self.api_key));
        put("WEB_CSRF_SECRET", LOCAL_CSRF_SECRET.to_owned());
        put("TERN_PUBLIC_ORIGINS", self.public_origins.join(","));
        // Local runs are plain HTTP: a Secure cookie would never come back.
        put("WEB_COOKIE_SECURE", "false".to_owned());
        vars.extend(self.extra.clone());
        vars.into_iter().collect()
    }

    /// The variables of `function` listening on `bind:port` with its metrics on
    /// `bind:metrics_port`: [`FunctionEnv::vars`] plus the Knative runtime contract's `PORT` and
    /// `K_SERVICE`, and the route templates its metrics label requests by
    /// (`TERN_HTTP_ROUTES`, as the chart renders it).
    ///
    /// A function only the scheduler calls (the outbox relay) gets no access log locally: a line
    /// every few seconds saying nothing was published buries the rest. Its own lines (a batch
    /// published, a publish that failed) stay, and the local scheduler prints a call that fails.
    pub fn for_function(
        &self,
        function: &Function,
        bind: &str,
        port: u16,
        metrics_port: u16,
    ) -> Vec<(String, String)> {
        let mut vars = self.vars();
        if function.schedule.is_some() && !self.extra.contains_key("TERN_ACCESS_LOG") {
            vars.push(("TERN_ACCESS_LOG".to_owned(), "false".to_owned()));
        }
        vars.extend([
            ("PORT".to_owned(), port.to_string()),
            ("TERN_BIND".to_owned(), bind.to_owned()),
            ("K_SERVICE".to_owned(), function.name.clone()),
            ("TERN_HTTP_ROUTES".to_owned(), http_routes(function)),
        ]);
        // A caller that asked for another (`off` in the bench's metrics-off run) keeps it.
        if !self.extra.contains_key("TERN_METRICS_PORT") {
            vars.push(("TERN_METRICS_PORT".to_owned(), metrics_port.to_string()));
        }
        vars
    }
}

/// `TERN_HTTP_ROUTES`: the function's routes as `METHOD /template`, comma-separated.
pub(crate) fn http_routes(function: &Function) -> String {
    function
        .routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn get<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn one_builder_for_every_setting() {
        let ps = PubSubConfig::emulator("127.0.0.1:8085", "p1")
            .with_publish_timeout(Duration::from_secs(2));
        let env = FunctionEnv::new("postgres://db")
            .pubsub(ps)
            .log_format(LogFormat::Json)
            .api_key("k")
            .set("DB_POOL_SIZE", "8")
            .set("WEB_COOKIE_SECURE", "true");
        let table = crate::test_table();
        let get_fn = table.function("orders-get").unwrap();
        let vars = env.for_function(get_fn, "127.0.0.1", 8101, 9101);
        assert_eq!(get(&vars, "DATABASE_URL"), Some("postgres://db"));
        assert_eq!(get(&vars, "PUBSUB_PROJECT"), Some("p1"));
        assert_eq!(get(&vars, "GOOGLE_CLOUD_PROJECT"), Some("p1"));
        assert_eq!(get(&vars, "PUBSUB_EMULATOR_HOST"), Some("127.0.0.1:8085"));
        assert_eq!(get(&vars, "PUBSUB_PUBLISH_TIMEOUT"), Some("2000ms"));
        assert_eq!(get(&vars, "TERN_LOG_FORMAT"), Some("json"));
        assert_eq!(
            get(&vars, "ORDERS_API_KEY_HASHES"),
            Some(tern::ApiKeys::hash("k").as_str())
        );
        assert_eq!(get(&vars, "DB_POOL_SIZE"), Some("8"));
        // A setting given with `set` wins over the default.
        assert_eq!(get(&vars, "WEB_COOKIE_SECURE"), Some("true"));
        assert_eq!(get(&vars, "PORT"), Some("8101"));
        assert_eq!(get(&vars, "K_SERVICE"), Some("orders-get"));
        // Each name once.
        let names: std::collections::BTreeSet<&str> =
            vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names.len(), vars.len());
    }

    #[test]
    fn only_scheduled_functions_lose_the_access_log() {
        let table = crate::test_table();
        let env = FunctionEnv::new("postgres://db");
        let relay = env.for_function(table.function("outbox-relay").unwrap(), "127.0.0.1", 1, 2);
        assert_eq!(get(&relay, "TERN_ACCESS_LOG"), Some("false"));
        let get_fn = env.for_function(table.function("orders-get").unwrap(), "127.0.0.1", 1, 2);
        assert_eq!(get(&get_fn, "TERN_ACCESS_LOG"), None);
        let asked = env.set("TERN_ACCESS_LOG", "true");
        let relay = asked.for_function(table.function("outbox-relay").unwrap(), "127.0.0.1", 1, 2);
        assert_eq!(get(&relay, "TERN_ACCESS_LOG"), Some("true"));
    }

    #[test]
    fn the_migrate_job_needs_no_pubsub() {
        let vars = FunctionEnv::new("postgres://db").vars();
        assert_eq!(get(&vars, "PUBSUB_PROJECT"), None);
        assert_eq!(get(&vars, "DATABASE_URL"), Some("postgres://db"));
    }
}
