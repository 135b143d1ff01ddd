//! The local router: one port that does what the cluster's Gateway and Knative's networking layer
//! do to a request before it reaches a function's pod. It picks the rule of the rendered
//! HTTPRoutes ([`tern_routes::gateway`]) for the method and path (no rule: the Gateway's 404),
//! rewrites the host to the function's cluster-local name (`<function>.<namespace>.svc.cluster.local`,
//! the rule's `URLRewrite`), removes the headers the rules remove (`Knative-Serving-Tag`), appends the client to `X-Forwarded-For` and sets
//! `X-Forwarded-Proto`, and sends the request over h2c (HTTP/2 without TLS), as Kourier does to a
//! port named `h2c`, to one of the function's pods, round robin.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tern::platform::{ConnLimits, Guarded, Watched, too_large};
use tern_routes::RouteTable;
use tern_routes::gateway::{GatewayRule, REMOVED_HEADERS, route};

type Body = BoxBody<Bytes, hyper::Error>;

/// The namespace the functions' chart is released into (`knative/argocd/apps/functions.yaml`);
/// the router rewrites hosts into it, as the rendered HTTPRoutes do.
pub const NAMESPACE: &str = "tern";

/// Where each function's pods listen (`host:port`, one or more per function); shared, so pods of
/// a new revision can be swapped in while serving.
pub type Upstreams = Arc<RwLock<HashMap<String, Vec<String>>>>;

/// Headers that belong to one hop (RFC 9110 §7.6.1) and that HTTP/2 forbids (`te` is handled on
/// its own: `te: trailers` is allowed, and gRPC needs it).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];
/// How long the router waits for a pod to accept a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The routing state.
pub struct Router {
    limits: ConnLimits,
    rules: Vec<GatewayRule>,
    upstreams: Upstreams,
    conns: tokio::sync::Mutex<HashMap<String, SendRequest<Incoming>>>,
    next: AtomicUsize,
}

impl Router {
    /// A router over `table`'s Gateway rules in [`NAMESPACE`], sending each function's requests to
    /// its upstreams.
    pub fn new(table: &RouteTable, upstreams: Upstreams) -> Self {
        Self {
            limits: ConnLimits::default(),
            rules: table.gateway_rules(NAMESPACE),
            upstreams,
            conns: tokio::sync::Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// With these limits on client connections (slow heads, idle connections, header size).
    #[must_use]
    pub fn limits(mut self, limits: ConnLimits) -> Self {
        self.limits = limits;
        self
    }

    /// An h2c connection to `addr`, reused while it is open. The lock is not held while
    /// connecting: a pod that does not answer delays only its own requests, by at most 5 s.
    async fn connection(&self, addr: &str) -> Result<SendRequest<Incoming>, String> {
        if let Some(c) = self.conns.lock().await.get(addr)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: no answer within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("h2c handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        let mut conns = self.conns.lock().await;
        // Connections to pods that left the endpoints go; a live one made meanwhile is kept.
        if let Ok(up) = self.upstreams.read() {
            conns.retain(|a, c| !c.is_closed() && up.values().flatten().any(|u| u == a));
        }
        match conns.get(addr) {
            Some(c) if !c.is_closed() => Ok(c.clone()),
            _ => {
                conns.insert(addr.to_owned(), send.clone());
                Ok(send)
            }
        }
    }

    /// Forgets the connection to `addr` if it has closed.
    async fn forget_closed(&self, addr: &str) {
        let mut conns = self.conns.lock().await;
        if conns.get(addr).is_some_and(SendRequest::is_closed) {
            conns.remove(addr);
        }
    }

    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let Some(rule) = route(&self.rules, req.method().as_str(), &path) else {
            return problem(
                StatusCode::NOT_FOUND,
                "not-found",
                &format!("no route for {} {path}", req.method()),
            );
        };
        let addr = self.upstreams.read().ok().and_then(|u| {
            let pods = u.get(&rule.function).filter(|p| !p.is_empty())?;
            Some(pods[self.next.fetch_add(1, Ordering::Relaxed) % pods.len()].clone())
        });
        let Some(addr) = addr else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                &format!("{} is not running", rule.function),
            );
        };
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = format!("http://{}{pq}", rule.host).parse() else {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "bad request target",
            );
        };
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        forwarded_headers(req.headers_mut(), peer);
        let mut req = req;
        // A connection the pod closed (its queue-proxy drained, a revision went away) fails the
        // request before it is sent; it is sent again once, on a new connection.
        for attempt in 0..2 {
            let mut conn = match self.connection(&addr).await {
                Ok(c) => c,
                Err(e) => return bad_gateway(&rule.function, &e),
            };
            if conn.ready().await.is_err() {
                self.forget_closed(&addr).await;
                continue;
            }
            match conn.try_send_request(req).await {
                Ok(res) => return res.map(|b| b.boxed()),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if attempt == 0 => {
                        self.forget_closed(&addr).await;
                        req = unsent;
                    }
                    _ => return bad_gateway(&rule.function, &e.into_error().to_string()),
                },
            }
        }
        bad_gateway(&rule.function, "the connection closed twice")
    }

    /// Serves on `listener` until `stop` resolves.
    pub async fn serve(self, listener: tokio::net::TcpListener, stop: impl Future<Output = ()>) {
        let limits = self.limits;
        let this = Arc::new(self);
        let builder = limits.builder();
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                () = &mut stop => return,
            };
            let this = this.clone();
            let builder = builder.clone();
            let _ = stream.set_nodelay(true);
            let (stream, in_flight) = Watched::new(stream, limits);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let guard = in_flight.start();
                    let this = this.clone();
                    async move {
                        let res = if too_large(req.headers(), limits.max_header_bytes) {
                            problem(
                                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                                "header-too-large",
                                &format!(
                                    "the request's header fields are larger than {} bytes",
                                    limits.max_header_bytes
                                ),
                            )
                        } else {
                            this.handle(req, peer).await
                        };
                        Ok::<_, std::convert::Infallible>(
                            res.map(|b| Guarded::new(b, guard).boxed()),
                        )
                    }
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }
}

/// Drops the hop-by-hop headers (and any the `Connection` header names) and those the Gateway's
/// rules remove ([`REMOVED_HEADERS`]), appends the client to `X-Forwarded-For` and sets
/// `X-Forwarded-Proto`, as the Gateway does.
fn forwarded_headers(h: &mut http::HeaderMap, peer: SocketAddr) {
    for n in REMOVED_HEADERS {
        h.remove(n);
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    let trailers = h
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    h.remove(header::TE);
    if trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let mut chain: Vec<String> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    chain.push(peer.ip().to_string());
    let xff = chain.join(", ");
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
}

fn bad_gateway(function: &str, e: &str) -> Response<Body> {
    problem(
        StatusCode::BAD_GATEWAY,
        "bad-gateway",
        &format!("{function} did not answer: {e}"),
    )
}

fn problem(status: StatusCode, slug: &str, detail: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": format!("{}{slug}", tern::platform::PROBLEM_BASE),
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut res = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(tern::platform::PROBLEM_JSON),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_the_client_is_appended() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("host", "127.0.0.1:8080".parse().unwrap());
        h.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        h.append("x-forwarded-for", "198.51.100.2".parse().unwrap());
        h.insert("te", "gzip, trailers".parse().unwrap());
        h.insert("cookie", "a=1".parse().unwrap());
        h.insert("knative-serving-tag", "candidate".parse().unwrap());
        forwarded_headers(&mut h, "192.0.2.1:5555".parse().unwrap());
        for gone in [
            "connection",
            "x-private",
            "transfer-encoding",
            "host",
            "knative-serving-tag",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 198.51.100.2, 192.0.2.1");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["cookie"], "a=1");
    }
}
