//! The local router: one port that maps method + path to the functions exactly as the route
//! table says, the local stand-in for the cluster's ingress. The `Host` header is passed
//! through unchanged; `X-Forwarded-For` and `X-Forwarded-Proto` are added.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tern_routes::{Match, Matcher, RouteTable};

type Body = BoxBody<Bytes, hyper::Error>;

/// Where each function listens (`host:port`); shared, so a new revision's address can be swapped
/// in while serving.
pub type Upstreams = Arc<RwLock<HashMap<String, String>>>;

/// The routing state.
pub struct Router {
    table: &'static RouteTable,
    upstreams: Upstreams,
    client: Client<HttpConnector, Incoming>,
}

impl Router {
    /// A router over `table`, sending each function's routes to its upstream `host:port`.
    pub fn new(table: RouteTable, upstreams: Upstreams) -> Self {
        let table: &'static RouteTable = Box::leak(Box::new(table));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            table,
            upstreams,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let matcher = match Matcher::new(self.table) {
            Ok(m) => m,
            Err(e) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal-error",
                    &e.to_string(),
                );
            }
        };
        let path = req.uri().path().to_owned();
        let function = match matcher.find(req.method().as_str(), &path) {
            Match::Function(f) => f,
            Match::NotFound => {
                return problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    &format!("no route for {path}"),
                );
            }
            Match::MethodNotAllowed(allowed) => {
                let mut res = problem(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    &format!("{path} allows {}", allowed.join(", ")),
                );
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    res.headers_mut().insert(header::ALLOW, v);
                }
                return res;
            }
        };
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let target = self
            .upstreams
            .read()
            .ok()
            .and_then(|u| u.get(function).map(|up| format!("http://{up}{pq}")));
        let Some(target) = target else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                &format!("{function} is not running"),
            );
        };
        let Ok(uri) = target.parse() else {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "bad request target",
            );
        };
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            h.append("x-forwarded-for", v);
        }
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        match self.client.request(req).await {
            Ok(res) => res.map(|b| b.boxed()),
            Err(e) => problem(
                StatusCode::BAD_GATEWAY,
                "bad-gateway",
                &format!("{function} did not answer: {e}"),
            ),
        }
    }

    /// Serves on `listener` until `stop` resolves.
    pub async fn serve(self, listener: tokio::net::TcpListener, stop: impl Future<Output = ()>) {
        let this = Arc::new(self);
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                () = &mut stop => return,
            };
            let this = this.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, std::convert::Infallible>(this.handle(req, peer).await) }
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }
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
