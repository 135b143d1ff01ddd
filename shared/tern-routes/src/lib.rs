//! # tern-routes: the route table
//!
//! `routes.toml` at the repository root says, for every function, its HTTP routes or event
//! subscriptions, the topics it publishes to, its scaling bounds and the secrets it reads.
//! [`RouteTable::load`] parses and validates it; [`gateway`] is the table as the cluster's Gateway
//! routes it (the rendered HTTPRoutes, which the local router follows); `scripts/dev routes` prints
//! it as JSON for other tools.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub mod gateway;

/// Paths under this prefix belong to the runtime (health endpoints).
pub const RESERVED_PREFIX: &str = "/_tern";

/// The whole table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// Project-wide settings.
    pub project: Project,
    /// Pub/Sub topics.
    #[serde(default, rename = "topic")]
    pub topics: Vec<Topic>,
    /// Functions.
    #[serde(default, rename = "function")]
    pub functions: Vec<Function>,
}

/// Project-wide settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// The project's name.
    pub name: String,
}

/// A Pub/Sub topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// Topic id.
    pub name: String,
    /// What flows on it.
    pub description: String,
    /// The CloudEvents types published on it.
    pub event_types: Vec<String>,
}

/// What a function is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A Knative Service answering HTTP.
    #[default]
    Http,
    /// Runs to completion once per deploy.
    Job,
}

/// Who can reach a function.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Through the ingress.
    #[default]
    Public,
    /// Cluster-local only.
    Internal,
}

/// One function.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// The crate and binary name; also the Knative Service name.
    pub name: String,
    /// One line.
    pub description: String,
    /// HTTP or job.
    #[serde(default)]
    pub kind: Kind,
    /// HTTP routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Who can reach it.
    #[serde(default)]
    pub visibility: Visibility,
    /// Topics it consumes.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Topics it publishes to.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// Secret settings it reads.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Whether it uses the database.
    #[serde(default)]
    pub database: bool,
    /// Scaling bounds.
    #[serde(default)]
    pub scale: Scale,
    /// A cron schedule that calls its (single) route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// An HTTP route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `/api/orders/{id}`.
    pub path: String,
}

/// A subscription to a topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The topic.
    pub topic: String,
    /// The path Pub/Sub pushes to (one of the function's POST routes).
    pub path: String,
    /// Event types it handles.
    pub types: Vec<String>,
}

impl Subscription {
    /// The subscription id: `<function>-<topic>`.
    pub fn id(&self, function: &str) -> String {
        format!("{function}-{}", self.topic)
    }
}

/// Scaling bounds (Knative autoscaling annotations).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// `min-scale` (0: scale to zero).
    #[serde(default)]
    pub min: u32,
    /// `max-scale`.
    #[serde(default = "default_max")]
    pub max: u32,
    /// `containerConcurrency` (0: unlimited).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

fn default_max() -> u32 {
    10
}
fn default_concurrency() -> u32 {
    80
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            min: 0,
            max: default_max(),
            concurrency: default_concurrency(),
        }
    }
}

/// Why the table is not usable.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Cannot read the file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or not of the table's shape.
    #[error("{path}: {message}")]
    Parse {
        /// Which file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// Parsed but inconsistent.
    #[error("route table: {0}")]
    Invalid(String),
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl RouteTable {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, TableError> {
        let text = std::fs::read_to_string(path).map_err(|source| TableError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            TableError::Parse { message, .. } => TableError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, TableError> {
        let table: Self = toml::from_str(text).map_err(|e| TableError::Parse {
            path: "routes.toml".into(),
            message: e.to_string(),
        })?;
        table.validate()?;
        Ok(table)
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// The topic called `name`; the error names the topics there are.
    pub fn topic(&self, name: &str) -> Result<&Topic, String> {
        self.topics.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
            format!(
                "{name:?} is not a topic of routes.toml (topics: {})",
                names.join(", ")
            )
        })
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), TableError> {
        let bad = |m: String| Err(TableError::Invalid(m));
        let topics: BTreeSet<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
        if topics.len() != self.topics.len() {
            return bad("topic names must be unique".into());
        }
        let mut names = BTreeSet::new();
        let mut seen_routes: BTreeMap<(String, String), String> = BTreeMap::new();
        for f in &self.functions {
            if !is_dns_label(&f.name) {
                return bad(format!(
                    "function name {:?} must be a DNS label (a-z, 0-9, '-')",
                    f.name
                ));
            }
            if !names.insert(f.name.as_str()) {
                return bad(format!("function {} appears twice", f.name));
            }
            if f.kind == Kind::Job && (!f.routes.is_empty() || !f.subscriptions.is_empty()) {
                return bad(format!("{}: a job has no routes or subscriptions", f.name));
            }
            if f.kind == Kind::Http && f.routes.is_empty() {
                return bad(format!(
                    "{}: an http function needs at least one route",
                    f.name
                ));
            }
            if f.scale.max == 0 || f.scale.min > f.scale.max {
                return bad(format!(
                    "{}: scale needs 0 <= min <= max and max >= 1",
                    f.name
                ));
            }
            for r in &f.routes {
                if !METHODS.contains(&r.method.as_str()) {
                    return bad(format!("{}: unknown method {:?}", f.name, r.method));
                }
                if !r.path.starts_with('/') {
                    return bad(format!("{}: path {:?} must start with /", f.name, r.path));
                }
                if r.path.starts_with(RESERVED_PREFIX) {
                    return bad(format!(
                        "{}: paths under {RESERVED_PREFIX}/ are reserved for the runtime",
                        f.name
                    ));
                }
                let key = (r.method.clone(), normalize(&r.path));
                if let Some(other) = seen_routes.insert(key, f.name.clone()) {
                    return bad(format!(
                        "{} {} is routed to both {other} and {}",
                        r.method, r.path, f.name
                    ));
                }
            }
            for s in &f.subscriptions {
                let Some(topic) = self.topics.iter().find(|t| t.name == s.topic) else {
                    return bad(format!(
                        "{}: subscribes to unknown topic {}",
                        f.name, s.topic
                    ));
                };
                if !f
                    .routes
                    .iter()
                    .any(|r| r.method == "POST" && r.path == s.path)
                {
                    return bad(format!(
                        "{}: subscription path {} is not one of its POST routes",
                        f.name, s.path
                    ));
                }
                for t in &s.types {
                    if !topic.event_types.contains(t) {
                        return bad(format!(
                            "{}: topic {} carries no events of type {t}",
                            f.name, s.topic
                        ));
                    }
                }
            }
            for p in &f.publishes {
                if !topics.contains(p.as_str()) {
                    return bad(format!("{}: publishes to unknown topic {p}", f.name));
                }
            }
            for s in &f.secrets {
                if s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    return bad(format!(
                        "{}: secret {s:?} must be an UPPER_SNAKE setting name",
                        f.name
                    ));
                }
            }
        }
        // Building the matcher finds conflicting patterns.
        Matcher::new(self).map(drop)
    }

    /// The table as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `/orders/{id}` and `/orders/{order}` are the same route.
fn normalize(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// What a request maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a> {
    /// The function that serves it.
    Function(&'a str),
    /// The path exists but not for this method; the allowed methods.
    MethodNotAllowed(Vec<&'a str>),
    /// No route.
    NotFound,
}

/// Maps method + path to a function by the table's own patterns (`{param}` is one segment); the
/// table's validation uses it to find routes that collide. Requests are routed by [`gateway`].
#[derive(Debug)]
pub struct Matcher<'a> {
    router: matchit::Router<Vec<(&'a str, &'a str)>>,
}

impl<'a> Matcher<'a> {
    /// A matcher over the table's HTTP routes.
    pub fn new(table: &'a RouteTable) -> Result<Self, TableError> {
        let mut by_path: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for f in &table.functions {
            for r in &f.routes {
                by_path
                    .entry(r.path.as_str())
                    .or_default()
                    .push((r.method.as_str(), f.name.as_str()));
            }
        }
        let mut router = matchit::Router::new();
        for (path, methods) in by_path {
            router
                .insert(path, methods)
                .map_err(|e| TableError::Invalid(format!("route {path}: {e}")))?;
        }
        Ok(Self { router })
    }

    /// The function for `method` `path`.
    pub fn find(&self, method: &str, path: &str) -> Match<'a> {
        let Ok(m) = self.router.at(path) else {
            return Match::NotFound;
        };
        let method = if method == "HEAD" && !m.value.iter().any(|(me, _)| *me == "HEAD") {
            "GET"
        } else {
            method
        };
        match m.value.iter().find(|(me, _)| *me == method) {
            Some((_, f)) => Match::Function(f),
            None => Match::MethodNotAllowed(m.value.iter().map(|(me, _)| *me).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_table() -> RouteTable {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../routes.toml");
        RouteTable::load(&path).unwrap()
    }

    #[test]
    fn the_repository_table_is_valid_and_matches() {
        let t = repo_table();
        let m = Matcher::new(&t).unwrap();
        assert_eq!(
            m.find("POST", "/api/orders"),
            Match::Function("orders-create")
        );
        assert_eq!(m.find("GET", "/api/orders"), Match::Function("orders-list"));
        assert_eq!(
            m.find("GET", "/api/orders/ord_abc"),
            Match::Function("orders-get")
        );
        assert_eq!(m.find("HEAD", "/"), Match::Function("web"));
        assert_eq!(
            m.find("DELETE", "/api/orders/x"),
            Match::MethodNotAllowed(vec!["GET"])
        );
        assert_eq!(m.find("GET", "/nope/x"), Match::NotFound);
        assert_eq!(m.find("GET", "/_tern/ready"), Match::NotFound);
    }

    #[test]
    fn every_function_crate_has_an_entry_and_every_entry_a_crate() {
        let t = repo_table();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../functions");
        let crates: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().join("Cargo.toml").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let entries: BTreeSet<String> = t.functions.iter().map(|f| f.name.clone()).collect();
        let missing_entry: Vec<_> = crates.difference(&entries).collect();
        let missing_crate: Vec<_> = entries.difference(&crates).collect();
        assert!(
            missing_entry.is_empty(),
            "function crates without a routes.toml entry: {missing_entry:?}"
        );
        assert!(
            missing_crate.is_empty(),
            "routes.toml entries without a crate in functions/: {missing_crate:?}"
        );
        for name in &crates {
            let main = dir.join(name).join("src/main.rs");
            assert!(main.exists(), "{name} has no src/main.rs");
        }
    }

    fn with(extra: &str) -> Result<RouteTable, TableError> {
        RouteTable::parse(&format!(
            "[project]\nname='t'\n[[topic]]\nname='a'\ndescription='d'\nevent_types=['x']\n{extra}"
        ))
    }

    #[test]
    fn inconsistent_tables_are_rejected() {
        let cases = [
            (
                "[[function]]\nname='f'\ndescription='d'\nroutes=[{method='GET',path='/_tern/x'}]",
                "reserved",
            ),
            (
                "[[function]]\nname='f'\ndescription='d'\nroutes=[{method='FETCH',path='/x'}]",
                "unknown method",
            ),
            (
                "[[function]]\nname='f'\ndescription='d'\nroutes=[{method='GET',path='/x'}]\npublishes=['b']",
                "unknown topic",
            ),
            (
                "[[function]]\nname='F'\ndescription='d'\nroutes=[{method='GET',path='/x'}]",
                "DNS label",
            ),
            (
                "[[function]]\nname='f'\ndescription='d'\nroutes=[{method='GET',path='/x/{a}'}]\n[[function]]\nname='g'\ndescription='d'\nroutes=[{method='GET',path='/x/{b}'}]",
                "both",
            ),
            (
                "[[function]]\nname='f'\ndescription='d'\nroutes=[{method='POST',path='/e'}]\nsubscriptions=[{topic='a',path='/e',types=['y']}]",
                "no events of type",
            ),
            (
                "[[function]]\nname='f'\ndescription='d'\nroutes=[{method='GET',path='/x'}]\nscale={min=3,max=2}",
                "scale",
            ),
            (
                "[[function]]\nname='f'\ndescription='d'\nroutes=[{method='GET',path='/x'}]\ncolour='red'",
                "unknown field",
            ),
        ];
        for (toml, expect) in cases {
            let err = with(toml).unwrap_err().to_string();
            assert!(err.contains(expect), "{toml}: {err}");
        }
    }
}
