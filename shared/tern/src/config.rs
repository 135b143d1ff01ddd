//! Typed configuration from the environment.
//!
//! Every setting is read through [`Env`], which turns a bad or missing value into a
//! [`ConfigError`] that names the variable and says what is wrong. [`crate::run`] prints
//! that error as one line and exits non-zero, so a misconfigured revision fails its
//! start instead of serving with surprising defaults.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A setting that is missing or cannot be used. Displayed as one line:
/// `configuration error: PORT: expected an integer 1-65535, got "http"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {var}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: String,
    /// What is wrong with it, and what would be right.
    pub problem: String,
}

impl ConfigError {
    /// A new error for `var`.
    pub fn new(var: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            problem: problem.into(),
        }
    }
}

/// A snapshot of the environment that settings are parsed from.
///
/// Tests build one from a map instead of touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// An environment made of the given pairs (for tests and tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value, with empty strings treated as unset.
    pub fn raw(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A required setting.
    pub fn required<T: Setting>(&self, var: &str) -> Result<T, ConfigError> {
        match self.raw(var) {
            Some(raw) => T::parse(raw).map_err(|p| ConfigError::new(var, p)),
            None => Err(ConfigError::new(
                var,
                format!("is required ({}) but not set", T::EXPECTED),
            )),
        }
    }

    /// An optional setting: `None` when unset.
    pub fn optional<T: Setting>(&self, var: &str) -> Result<Option<T>, ConfigError> {
        self.raw(var)
            .map(|raw| T::parse(raw).map_err(|p| ConfigError::new(var, p)))
            .transpose()
    }

    /// A setting with a default used when unset.
    pub fn or<T: Setting>(&self, var: &str, default: T) -> Result<T, ConfigError> {
        Ok(self.optional(var)?.unwrap_or(default))
    }
}

/// A type that a setting can be parsed into.
pub trait Setting: Sized {
    /// What a valid value looks like, for error messages.
    const EXPECTED: &'static str;
    /// Parses `raw`, or says what is wrong in words a user can act on.
    fn parse(raw: &str) -> Result<Self, String>;
}

fn expected<T: Setting>(raw: &str) -> String {
    format!("expected {}, got {raw:?}", T::EXPECTED)
}

impl Setting for String {
    const EXPECTED: &'static str = "a non-empty string";
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(raw.trim().to_owned())
    }
}

macro_rules! int_setting {
    ($($t:ty => $what:literal),*) => {$(
        impl Setting for $t {
            const EXPECTED: &'static str = $what;
            fn parse(raw: &str) -> Result<Self, String> {
                <$t>::from_str(raw.trim()).map_err(|_| expected::<Self>(raw))
            }
        }
    )*};
}
int_setting!(u16 => "an integer 0-65535", u32 => "a non-negative integer", usize => "a non-negative integer", u64 => "a non-negative integer");

impl Setting for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(expected::<Self>(raw)),
        }
    }
}

/// A duration written with a unit: `250ms`, `5s`, `2m`, `48h`, `8d`. A bare number is rejected
/// so nobody has to guess the unit.
impl Setting for Duration {
    const EXPECTED: &'static str = "a duration with a unit such as 250ms, 5s, 2m, 48h or 8d";
    fn parse(raw: &str) -> Result<Self, String> {
        let raw_t = raw.trim();
        let split = raw_t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| expected::<Self>(raw))?;
        let (num, unit) = raw_t.split_at(split);
        let n: u64 = num.parse().map_err(|_| expected::<Self>(raw))?;
        match unit {
            "ms" => Ok(Duration::from_millis(n)),
            "s" => Ok(Duration::from_secs(n)),
            "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
            "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
            "d" => Ok(Duration::from_secs(n.saturating_mul(86_400))),
            _ => Err(expected::<Self>(raw)),
        }
    }
}

/// A comma-separated list; empty items are dropped.
impl Setting for Vec<String> {
    const EXPECTED: &'static str = "a comma-separated list";
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Cloud Logging structured JSON, one object per line.
    Json,
    /// Readable text for a terminal.
    Text,
    /// Text when stdout is a terminal, JSON otherwise.
    Auto,
}

impl Setting for LogFormat {
    const EXPECTED: &'static str = "json, text or auto";
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            "auto" => Ok(Self::Auto),
            _ => Err(expected::<Self>(raw)),
        }
    }
}

/// The runtime's own settings. Each field documents its variable and default;
/// the README's configuration reference lists the same.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `PORT` (default 8080): the port to listen on, as the Knative runtime contract sets it.
    pub port: u16,
    /// `TERN_BIND` (default `0.0.0.0`): the address to bind; the local run uses 127.0.0.1.
    pub bind: std::net::IpAddr,
    /// `K_SERVICE`, `K_REVISION`, `K_CONFIGURATION`: set by Knative; used as log labels.
    pub knative: KnativeIdentity,
    /// `TERN_DRAIN_DELAY` (default 0s locally; set it to the load balancer's deregistration
    /// time in the cluster): after SIGTERM, readiness is 503 but requests are still served
    /// for this long, so the routing layer stops sending new ones first.
    pub drain_delay: Duration,
    /// `TERN_GRACE_PERIOD` (default 20s): how long in-flight requests may take to finish
    /// after the listener closes. Keep drain delay + grace below the pod's
    /// terminationGracePeriodSeconds.
    pub grace_period: Duration,
    /// `TERN_REQUEST_TIMEOUT` (default 30s): a request taking longer gets a 504 problem.
    pub request_timeout: Duration,
    /// `TERN_BODY_LIMIT` (default 65536 bytes): larger request bodies get a 413 problem.
    pub body_limit: usize,
    /// `TERN_HEADER_READ_TIMEOUT` (10s), `TERN_IDLE_TIMEOUT` (120s), `TERN_MAX_HEADER_BYTES`
    /// (65536): slow, idle and oversized clients ([`crate::platform::ConnLimits`]).
    pub conn: crate::conn::ConnLimits,
    /// `TERN_LOG_FORMAT` (default `auto`).
    pub log_format: LogFormat,
    /// `TERN_LOG` (default `info`): a tracing filter such as `info,tern=debug`.
    pub log_filter: String,
    /// `TERN_ACCESS_LOG` (default true): one log line per request.
    pub access_log: bool,
    /// `GOOGLE_CLOUD_PROJECT`: the project id; enables trace correlation in logs.
    pub project_id: Option<String>,
    /// `TERN_METRICS_PORT` (default 9464, [`crate::metrics::METRICS_PORT`]; `off` disables the
    /// metrics and their middleware): where `GET /metrics` is served, on `TERN_BIND`.
    pub metrics_port: Option<u16>,
    /// Where spans go (OpenTelemetry's variables): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the
    /// whole URL), else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; unset, or
    /// `OTEL_SDK_DISABLED=true`: no spans are exported. `OTEL_TRACES_SAMPLER`
    /// (`parentbased_always_on`, the default; `parentbased_traceidratio` with
    /// `OTEL_TRACES_SAMPLER_ARG` in 0..1; `parentbased_always_off`) samples the traces that
    /// start here, and bounds an HTTP caller's sampled flag (a caller's trace is sampled when
    /// the caller sampled it and the ratio takes its id); an event's decision is kept.
    pub traces: Option<TraceExport>,
    /// `TERN_HTTP_ROUTES`: the function's routes as `METHOD /template` pairs separated by
    /// commas (`GET /api/orders/{id}`), rendered from `routes.toml`; metrics label requests by
    /// these templates. Unset: every request has an empty route label.
    pub http_routes: Vec<(http::Method, String)>,
}

/// `TERN_METRICS_PORT`: a port, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetricsPort(Option<u16>);

impl Setting for MetricsPort {
    const EXPECTED: &'static str = "a port 0-65535 or off";
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "off" | "false" => Ok(Self(None)),
            p => p
                .parse()
                .map(|p| Self(Some(p)))
                .map_err(|_| expected::<Self>(raw)),
        }
    }
}

/// Where and how much to export spans ([`RuntimeConfig::traces`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The OTLP/HTTP traces URL, such as `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    /// The share of the traces starting here that are sampled, 0 to 1.
    pub ratio: f64,
}

impl TraceExport {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        if env.or("OTEL_SDK_DISABLED", false)? {
            return Ok(None);
        }
        let endpoint = match env.optional::<OtlpUrl>("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")? {
            Some(OtlpUrl(url)) => url,
            None => match env.optional::<OtlpUrl>("OTEL_EXPORTER_OTLP_ENDPOINT")? {
                Some(OtlpUrl(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
                None => return Ok(None),
            },
        };
        let ratio = match env
            .or("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned())?
            .as_str()
        {
            "parentbased_always_on" => 1.0,
            "parentbased_always_off" => 0.0,
            "parentbased_traceidratio" => {
                let SampleRatio(r) = env.or("OTEL_TRACES_SAMPLER_ARG", SampleRatio(1.0))?;
                r
            }
            other => {
                return Err(ConfigError::new(
                    "OTEL_TRACES_SAMPLER",
                    format!(
                        "expected parentbased_always_on, parentbased_traceidratio or \
                         parentbased_always_off, got {other:?}"
                    ),
                ));
            }
        };
        Ok(Some(Self { endpoint, ratio }))
    }
}

/// An `http://` or `https://` URL with a host.
struct OtlpUrl(String);

impl Setting for OtlpUrl {
    const EXPECTED: &'static str = "an http:// or https:// URL";
    fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        match raw.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Ok(Self(raw.to_owned()))
            }
            _ => Err(expected::<Self>(raw)),
        }
    }
}

/// `OTEL_TRACES_SAMPLER_ARG`: a share between 0 and 1.
struct SampleRatio(f64);

impl Setting for SampleRatio {
    const EXPECTED: &'static str = "a number from 0 to 1";
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(Self(r)),
            _ => Err(expected::<Self>(raw)),
        }
    }
}

/// `TERN_HTTP_ROUTES`: `METHOD /template` pairs, each template a valid route pattern.
fn http_routes(env: &Env) -> Result<Vec<(http::Method, String)>, ConfigError> {
    let bad = |why: String| ConfigError::new("TERN_HTTP_ROUTES", why);
    let items: Vec<String> = env.or("TERN_HTTP_ROUTES", Vec::new())?;
    let mut table = matchit::Router::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some((method, path)) = item.split_once(' ') else {
            return Err(bad(format!(
                "expected METHOD /path items separated by commas, got {item:?}"
            )));
        };
        let method: http::Method = method
            .parse()
            .map_err(|_| bad(format!("{method:?} is not an HTTP method")))?;
        let path = path.trim();
        if !path.starts_with('/') {
            return Err(bad(format!("{path:?} does not start with /")));
        }
        match table.insert(path, ()) {
            Ok(()) | Err(matchit::InsertError::Conflict { .. }) => {}
            Err(e) => return Err(bad(format!("{path:?} is not a route template: {e}"))),
        }
        out.push((method, path.to_owned()));
    }
    Ok(out)
}

/// The identity Knative gives a revision through the environment.
#[derive(Debug, Clone, Default)]
pub struct KnativeIdentity {
    /// `K_SERVICE`: the service name (defaults to the binary's name).
    pub service: String,
    /// `K_REVISION`: the revision name, when run by Knative.
    pub revision: Option<String>,
    /// `K_CONFIGURATION`: the configuration name, when run by Knative.
    pub configuration: Option<String>,
}

impl RuntimeConfig {
    /// Reads and validates the runtime settings.
    pub fn from_env(env: &Env, default_service: &str) -> Result<Self, ConfigError> {
        let port: u16 = env.or("PORT", 8080)?;
        if port == 0 {
            return Err(ConfigError::new(
                "PORT",
                "expected an integer 1-65535, got \"0\"",
            ));
        }
        let bind = match env.raw("TERN_BIND") {
            None => std::net::IpAddr::from([0, 0, 0, 0]),
            Some(raw) => raw.trim().parse().map_err(|_| {
                ConfigError::new("TERN_BIND", format!("expected an IP address, got {raw:?}"))
            })?,
        };
        let body_limit: usize = env.or("TERN_BODY_LIMIT", 64 * 1024)?;
        if body_limit == 0 {
            return Err(ConfigError::new(
                "TERN_BODY_LIMIT",
                "must be at least 1 byte",
            ));
        }
        let request_timeout: Duration = env.or("TERN_REQUEST_TIMEOUT", Duration::from_secs(30))?;
        if request_timeout.is_zero() {
            return Err(ConfigError::new(
                "TERN_REQUEST_TIMEOUT",
                "must be longer than 0s",
            ));
        }
        Ok(Self {
            port,
            bind,
            knative: KnativeIdentity {
                service: env.or("K_SERVICE", default_service.to_owned())?,
                revision: env.optional("K_REVISION")?,
                configuration: env.optional("K_CONFIGURATION")?,
            },
            conn: crate::conn::ConnLimits::from_env(env)?,
            drain_delay: env.or("TERN_DRAIN_DELAY", Duration::ZERO)?,
            grace_period: env.or("TERN_GRACE_PERIOD", Duration::from_secs(20))?,
            request_timeout,
            body_limit,
            log_format: env.or("TERN_LOG_FORMAT", LogFormat::Auto)?,
            log_filter: env.or("TERN_LOG", "info".to_owned())?,
            access_log: env.or("TERN_ACCESS_LOG", true)?,
            metrics_port: env
                .or(
                    "TERN_METRICS_PORT",
                    MetricsPort(Some(crate::metrics::METRICS_PORT)),
                )?
                .0,
            http_routes: http_routes(env)?,
            traces: TraceExport::from_env(env)?,
            project_id: env.optional("GOOGLE_CLOUD_PROJECT")?,
        })
    }
}

impl fmt::Display for KnativeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revision {
            Some(rev) => write!(f, "{} ({rev})", self.service),
            None => f.write_str(&self.service),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let cfg = RuntimeConfig::from_env(&Env::default(), "orders-get").unwrap();
        assert_eq!(cfg.port, 8080);
        assert_eq!(cfg.knative.service, "orders-get");
        assert_eq!(cfg.body_limit, 65536);
        assert_eq!(cfg.grace_period, Duration::from_secs(20));
    }

    #[test]
    fn knative_contract_is_read() {
        let env = Env::from_pairs([
            ("PORT", "9000"),
            ("K_SERVICE", "orders-get"),
            ("K_REVISION", "orders-get-00007"),
            ("K_CONFIGURATION", "orders-get"),
        ]);
        let cfg = RuntimeConfig::from_env(&env, "x").unwrap();
        assert_eq!(cfg.port, 9000);
        assert_eq!(cfg.knative.revision.as_deref(), Some("orders-get-00007"));
        assert_eq!(cfg.knative.to_string(), "orders-get (orders-get-00007)");
    }

    #[test]
    fn a_bad_value_names_the_variable_in_one_line() {
        let env = Env::from_pairs([("PORT", "http")]);
        let err = RuntimeConfig::from_env(&env, "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: PORT: expected an integer 0-65535, got \"http\""
        );
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(Duration::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(Duration::parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(Duration::parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(Duration::parse("48h"), Ok(Duration::from_secs(172_800)));
        assert_eq!(Duration::parse("8d"), Ok(Duration::from_secs(691_200)));
        assert!(Duration::parse("5").is_err());
        assert!(Duration::parse("5w").is_err());
        assert!(Duration::parse("s").is_err());
        let env = Env::from_pairs([("TERN_GRACE_PERIOD", "soon")]);
        let err = RuntimeConfig::from_env(&env, "x").unwrap_err();
        assert_eq!(err.var, "TERN_GRACE_PERIOD");
    }

    #[test]
    fn required_settings_say_they_are_missing() {
        let err = Env::default().required::<String>("DB_HOST").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: DB_HOST: is required (a non-empty string) but not set"
        );
    }

    #[test]
    fn zero_limits_are_rejected() {
        for (var, val) in [
            ("PORT", "0"),
            ("TERN_BODY_LIMIT", "0"),
            ("TERN_REQUEST_TIMEOUT", "0s"),
        ] {
            let err = RuntimeConfig::from_env(&Env::from_pairs([(var, val)]), "x").unwrap_err();
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn metrics_port_and_routes_are_read_and_checked() {
        let cfg = RuntimeConfig::from_env(&Env::default(), "x").unwrap();
        assert_eq!(cfg.metrics_port, Some(9464));
        assert!(cfg.http_routes.is_empty());
        let env = Env::from_pairs([
            ("TERN_METRICS_PORT", "off"),
            ("TERN_HTTP_ROUTES", "GET /orders/{id}, POST /orders"),
        ]);
        let cfg = RuntimeConfig::from_env(&env, "x").unwrap();
        assert_eq!(cfg.metrics_port, None);
        assert_eq!(
            cfg.http_routes,
            vec![
                (http::Method::GET, "/orders/{id}".to_owned()),
                (http::Method::POST, "/orders".to_owned())
            ]
        );
        for (var, val) in [
            ("TERN_METRICS_PORT", "metrics"),
            ("TERN_HTTP_ROUTES", "/orders"),
            ("TERN_HTTP_ROUTES", "GET orders"),
            ("TERN_HTTP_ROUTES", "G(T /orders"),
            ("TERN_HTTP_ROUTES", "GET /orders/{id"),
        ] {
            let err = RuntimeConfig::from_env(&Env::from_pairs([(var, val)]), "x").unwrap_err();
            assert_eq!(err.var, var, "{val}: {err}");
        }
    }

    #[test]
    fn spans_are_exported_where_opentelemetry_s_variables_say() {
        let traces = |pairs: &[(&str, &str)]| {
            RuntimeConfig::from_env(&Env::from_pairs(pairs.iter().copied()), "x").map(|c| c.traces)
        };
        assert_eq!(traces(&[]).unwrap(), None, "off unless an endpoint is set");
        assert_eq!(
            traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]).unwrap(),
            Some(TraceExport {
                endpoint: "http://127.0.0.1:4318/v1/traces".into(),
                ratio: 1.0
            })
        );
        let both = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://jaeger:4318/v1/traces",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(both.endpoint, "http://jaeger:4318/v1/traces");
        assert_eq!(both.ratio, 0.25);
        let off = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(off.unwrap(), None);
        for (var, val) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "grpc://collector:4317",
            ),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ] {
            let mut pairs = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
            if var == "OTEL_TRACES_SAMPLER_ARG" {
                pairs.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"));
            }
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, val));
            let err = traces(&pairs).unwrap_err();
            assert_eq!(err.var, var, "{val}: {err}");
        }
    }
}
