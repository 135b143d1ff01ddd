//! The Gateway's view of the table: the rules `knative/chart/tern-functions/templates/httproute.yaml`
//! renders, and how a Gateway API implementation picks one for a request.
//!
//! One rule per routed function (public ones, and internal ones a Google service calls on a
//! schedule); each route is a match on method and path (a path with a `{param}` becomes a
//! `PathPrefix` of what precedes the first parameter, others an `Exact` match), and the rule
//! rewrites the host to the function's cluster-local name, the header Knative's networking layer
//! routes on. The local router uses these rules; a test renders the chart and compares.

use crate::{Function, Kind, RouteTable, Visibility};

/// A Gateway API `HTTPPathMatch`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathMatch {
    /// `type: Exact`.
    Exact(String),
    /// `type: PathPrefix`: whole path elements; a trailing `/` in the value is ignored.
    Prefix(String),
}

impl PathMatch {
    /// The match the chart renders for a route table path.
    pub fn for_route(path: &str) -> Self {
        match path.split_once('{') {
            Some((prefix, _)) => Self::Prefix(prefix.to_owned()),
            None => Self::Exact(path.to_owned()),
        }
    }

    /// Whether `path` matches, as Gateway API defines it.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(v) => path == v,
            Self::Prefix(v) => {
                let v = v.trim_end_matches('/');
                v.is_empty()
                    || path
                        .strip_prefix(v)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }

    /// Gateway API's precedence between matches: exact before prefix, longer prefix first.
    fn rank(&self) -> (u8, usize) {
        match self {
            Self::Exact(_) => (1, 0),
            Self::Prefix(v) => (0, v.len()),
        }
    }
}

/// Request headers the public Gateway removes from every request before Knative sees it (each
/// rule's `RequestHeaderModifier`). `Knative-Serving-Tag` would route a client to a tagged
/// revision (a canary at 0 %) through the public host; tagged revisions are reached through
/// Kourier from inside the cluster instead (`scripts/canary smoke`).
pub const REMOVED_HEADERS: [&str; 1] = ["Knative-Serving-Tag"];

/// One `HTTPRoute` rule: its matches (method, path) and the host it rewrites to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRule {
    /// The function it sends to.
    pub function: String,
    /// `URLRewrite.hostname`: `<function>.<namespace>.svc.cluster.local`.
    pub host: String,
    /// The rule's matches, in the table's order.
    pub matches: Vec<(String, PathMatch)>,
}

/// Whether the Gateway routes to `f` (the chart's condition).
pub fn routed(f: &Function) -> bool {
    f.kind == Kind::Http && (f.visibility == Visibility::Public || f.schedule.is_some())
}

/// The cluster-local host of `function` in `namespace`.
pub fn cluster_host(function: &str, namespace: &str) -> String {
    format!("{function}.{namespace}.svc.cluster.local")
}

impl RouteTable {
    /// The rules of the functions' `HTTPRoute` for a release in `namespace`.
    pub fn gateway_rules(&self, namespace: &str) -> Vec<GatewayRule> {
        self.functions
            .iter()
            .filter(|f| routed(f))
            .map(|f| GatewayRule {
                function: f.name.clone(),
                host: cluster_host(&f.name, namespace),
                matches: f
                    .routes
                    .iter()
                    .map(|r| (r.method.clone(), PathMatch::for_route(&r.path)))
                    .collect(),
            })
            .collect()
    }
}

/// Picks the rule for `method` `path` among `rules` as a Gateway API implementation must: of the
/// matches that fit, an exact path first, then the longest prefix; ties go to the earlier rule.
/// `None` is the Gateway's 404.
pub fn route<'a>(rules: &'a [GatewayRule], method: &str, path: &str) -> Option<&'a GatewayRule> {
    rules
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.matches.iter().map(move |(m, p)| (i, r, m, p)))
        .filter(|(_, _, m, p)| m.as_str() == method && p.matches(path))
        .max_by(|a, b| a.3.rank().cmp(&b.3.rank()).then(b.0.cmp(&a.0)))
        .map(|(_, r, _, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rules() -> Vec<GatewayRule> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../routes.toml");
        RouteTable::load(&path).unwrap().gateway_rules("tern")
    }

    fn to(method: &str, path: &str) -> Option<String> {
        route(&rules(), method, path).map(|r| r.host.clone())
    }

    #[test]
    fn prefix_matches_whole_path_elements() {
        let p = PathMatch::for_route("/api/orders/{id}");
        assert_eq!(p, PathMatch::Prefix("/api/orders/".into()));
        for yes in [
            "/api/orders",
            "/api/orders/",
            "/api/orders/x",
            "/api/orders/x/y",
        ] {
            assert!(p.matches(yes), "{yes}");
        }
        for no in ["/api/ordersx", "/api", "/"] {
            assert!(!p.matches(no), "{no}");
        }
        assert!(PathMatch::Exact("/".into()).matches("/"));
        assert!(!PathMatch::Exact("/".into()).matches("/x"));
    }

    #[test]
    fn the_repository_table_routes_as_the_gateway_does() {
        let h = |f: &str| Some(format!("{f}.tern.svc.cluster.local"));
        assert_eq!(to("POST", "/api/orders"), h("orders-create"));
        // Exact wins over the prefix of /api/orders/{id}.
        assert_eq!(to("GET", "/api/orders"), h("orders-list"));
        assert_eq!(to("GET", "/api/orders/ord_1"), h("orders-get"));
        assert_eq!(to("GET", "/api/orders/ord_1/x"), h("orders-get"));
        assert_eq!(to("GET", "/"), h("web"));
        assert_eq!(to("POST", "/orders"), h("web"));
        assert_eq!(to("GET", "/static/tern.css"), h("web"));
        assert_eq!(to("POST", "/internal/outbox/flush"), h("outbox-relay"));
        // A method no rule names is the Gateway's 404, not a 405; HEAD is not GET.
        assert_eq!(to("DELETE", "/api/orders"), None);
        assert_eq!(to("HEAD", "/"), None);
        assert_eq!(to("GET", "/_tern/ready"), None);
        assert_eq!(to("GET", "/nope"), None);
    }
}
