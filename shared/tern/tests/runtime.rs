//! The runtime's stack, served for real on loopback: one test per promise the runtime makes.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use futures::future::BoxFuture;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tern::{Context, Env, ReadinessCheck};

struct Flag(Arc<AtomicBool>);
impl ReadinessCheck for Flag {
    fn name(&self) -> &str {
        "flag"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        let ok = self.0.load(Ordering::SeqCst);
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err("flag is down".into())
            }
        })
    }
}

/// Serves `app` with the runtime stack on a free port; returns the base URL and the context.
async fn serve<S>(app: S, env: &[(&str, &str)]) -> (String, Context)
where
    S: tower::Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let ctx = Context::for_env(Env::from_pairs(env.iter().copied())).unwrap();
    let listener = tern::platform::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = tern::platform::assemble(app, &ctx);
    tokio::spawn(tern::platform::serve(listener, router, ctx.clone()));
    (url, ctx)
}

fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/panic", get(|| async { panic!("boom") as &'static str }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { "tern ".repeat(2000) }))
        .route("/echo", post(|body: String| async move { body }))
}

async fn problem(res: reqwest::Response, status: u16, slug: &str) {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["type"], format!("urn:tern:problem:{slug}"));
    assert_eq!(v["status"], status);
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_server_keeps_serving() {
    let (url, _) = serve(app(), &[]).await;
    problem(
        reqwest::get(format!("{url}/panic")).await.unwrap(),
        500,
        "internal-error",
    )
    .await;
    assert_eq!(
        reqwest::get(format!("{url}/hello"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "hello"
    );
}

#[tokio::test]
async fn a_slow_handler_is_a_504_problem() {
    let (url, _) = serve(app(), &[("TERN_REQUEST_TIMEOUT", "200ms")]).await;
    problem(
        reqwest::get(format!("{url}/slow")).await.unwrap(),
        504,
        "timeout",
    )
    .await;
}

#[tokio::test]
async fn oversized_bodies_are_413_problems_whether_announced_or_streamed() {
    let (url, _) = serve(app(), &[("TERN_BODY_LIMIT", "16")]).await;
    let http = reqwest::Client::new();
    let ok = http
        .post(format!("{url}/echo"))
        .body("small")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "small");
    problem(
        http.post(format!("{url}/echo"))
            .body("x".repeat(100))
            .send()
            .await
            .unwrap(),
        413,
        "payload-too-large",
    )
    .await;
    let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>("0123456789")));
    let streamed = http
        .post(format!("{url}/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    problem(streamed, 413, "payload-too-large").await;
}

#[tokio::test]
async fn request_ids_are_made_or_propagated() {
    let (url, _) = serve(app(), &[]).await;
    let made = reqwest::get(format!("{url}/hello")).await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let given = reqwest::Client::new()
        .get(format!("{url}/hello"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let (url, _) = serve(app(), &[]).await;
    let res = reqwest::Client::new()
        .get(format!("{url}/big"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert!(res.bytes().await.unwrap().len() < 1000);
}

#[tokio::test]
async fn http2_without_tls_is_served() {
    let (url, _) = serve(app(), &[]).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = h2.get(format!("{url}/hello")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn health_endpoints_reflect_readiness_checks() {
    let (url, ctx) = serve(app(), &[]).await;
    let up = Arc::new(AtomicBool::new(true));
    ctx.add_readiness(Arc::new(Flag(up.clone())));
    assert_eq!(
        reqwest::get(format!("{url}/_tern/live"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{url}/_tern/ready"))
            .await
            .unwrap()
            .status(),
        200
    );
    up.store(false, Ordering::SeqCst);
    let res = reqwest::get(format!("{url}/_tern/ready")).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], 503);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("flag not ready: flag is down")
    );
    assert_eq!(
        reqwest::get(format!("{url}/_tern/live"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let (url, _) = serve(app(), &[]).await;
    problem(
        reqwest::get(format!("{url}/nope")).await.unwrap(),
        404,
        "not-found",
    )
    .await;
    let res = reqwest::Client::new()
        .delete(format!("{url}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET,HEAD");
    problem(res, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn a_plain_async_fn_is_a_function_too() {
    let svc = tower::service_fn(|req: Request| async move {
        Ok::<_, Infallible>(format!("you asked for {}", req.uri().path()))
    });
    let (url, _) = serve(svc, &[]).await;
    let text = reqwest::get(format!("{url}/anything"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "you asked for /anything");
}

/// After the grace period, connections still open are closed and their handlers dropped before
/// the shutdown hooks run (the pool closes in one): no handler outlives what it uses.
#[tokio::test]
async fn after_the_grace_period_handlers_are_dropped_before_the_hooks_run() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let in_handler = Arc::new(tokio::sync::Notify::new());
    let app = {
        let (dropped, in_handler) = (dropped.clone(), in_handler.clone());
        Router::new().route(
            "/stuck",
            get(move || {
                let guard = SetOnDrop(dropped.clone());
                let in_handler = in_handler.clone();
                async move {
                    let _guard = guard;
                    in_handler.notify_one();
                    std::future::pending::<()>().await;
                    "never"
                }
            }),
        )
    };
    let ctx = Context::for_env(Env::from_pairs([
        ("TERN_GRACE_PERIOD", "200ms"),
        ("TERN_REQUEST_TIMEOUT", "60s"),
    ]))
    .unwrap();
    let seen_by_hook = Arc::new(AtomicBool::new(false));
    {
        let (dropped, seen) = (dropped.clone(), seen_by_hook.clone());
        ctx.on_shutdown("check", move || async move {
            seen.store(dropped.load(Ordering::SeqCst), Ordering::SeqCst);
        });
    }
    let listener = tern::platform::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let url = format!("http://{}/stuck", listener.local_addr().unwrap());
    let server = tokio::spawn(tern::platform::serve(
        listener,
        tern::platform::assemble(app, &ctx),
        ctx.clone(),
    ));
    let client = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    in_handler.notified().await;
    ctx.stopping().cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops after the grace period")
        .unwrap();
    assert!(dropped.load(Ordering::SeqCst), "the handler was dropped");
    assert!(
        seen_by_hook.load(Ordering::SeqCst),
        "the handler was gone before the shutdown hooks ran"
    );
    assert!(
        client.await.unwrap().is_err(),
        "the client sees its connection closed"
    );
}
