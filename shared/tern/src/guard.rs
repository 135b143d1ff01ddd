//! One tower layer for every check that admits or refuses a request before the handler runs
//! (API keys, Google OIDC tokens): the check is a [`Guard`], the plumbing is written once here.

use crate::problem::Problem;

pub use crate::auth::RequireApiKey;
pub use crate::oidc::RequireGoogleOidc;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use std::future::Future;
use std::task::{Context as TaskContext, Poll};
use tower::{Layer, Service};

/// A check on a request. `admit` may add what it learned to the request's extensions; a refusal
/// is answered with its problem and the handler never runs.
pub trait Guard: Clone + Send + Sync + 'static {
    /// `false` lets every request through without calling `admit` (a guard switched off by
    /// configuration, as `TERN_OIDC=off` is for `scripts/dev`).
    fn active(&self) -> bool {
        true
    }

    /// Admits the request or refuses it with a problem.
    fn admit(&self, req: &mut Request) -> impl Future<Output = Result<(), Problem>> + Send;
}

/// The layer that puts a [`Guard`] in front of a service.
#[derive(Clone, Debug)]
pub struct GuardLayer<G> {
    guard: G,
}

impl<G> GuardLayer<G> {
    /// A layer applying `guard`.
    pub fn new(guard: G) -> Self {
        Self { guard }
    }
}

impl<G: Clone, S> Layer<S> for GuardLayer<G> {
    type Service = Guarded<G, S>;
    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            guard: self.guard.clone(),
            inner,
        }
    }
}

/// The service [`GuardLayer`] produces.
#[derive(Clone, Debug)]
pub struct Guarded<G, S> {
    guard: G,
    inner: S,
}

impl<G, S> Service<Request> for Guarded<G, S>
where
    G: Guard,
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if !self.guard.active() {
            return Box::pin(self.inner.call(req));
        }
        // The clone that was polled ready serves this call; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.admit(&mut req).await {
                Ok(()) => inner.call(req).await,
                Err(problem) => Ok(problem.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// Admits requests carrying `x-pass`, and counts the checks it made.
    #[derive(Clone)]
    struct Header {
        on: bool,
        checks: Arc<AtomicUsize>,
    }

    impl Guard for Header {
        fn active(&self) -> bool {
            self.on
        }
        async fn admit(&self, req: &mut Request) -> Result<(), Problem> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            if req.headers().contains_key("x-pass") {
                req.extensions_mut().insert(7_u8);
                Ok(())
            } else {
                Err(Problem::unauthorized("no x-pass"))
            }
        }
    }

    async fn call(guard: Header, pass: bool) -> (u16, String) {
        let svc = GuardLayer::new(guard).layer(tower::service_fn(|req: Request| async move {
            let seen = req.extensions().get::<u8>().copied();
            Ok::<_, std::convert::Infallible>(format!("handler saw {seen:?}").into_response())
        }));
        let mut req = Request::new(Body::empty());
        if pass {
            req.headers_mut().insert("x-pass", "1".parse().unwrap());
        }
        let res = svc.oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn admits_refuses_and_can_be_switched_off() {
        let checks = Arc::new(AtomicUsize::new(0));
        let guard = |on| Header {
            on,
            checks: checks.clone(),
        };
        let (status, body) = call(guard(true), true).await;
        assert_eq!((status, body.as_str()), (200, "handler saw Some(7)"));
        let (status, body) = call(guard(true), false).await;
        assert_eq!(status, 401);
        assert!(body.contains("no x-pass"), "{body}");
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        let (status, body) = call(guard(false), false).await;
        assert_eq!((status, body.as_str()), (200, "handler saw None"));
        assert_eq!(
            checks.load(Ordering::SeqCst),
            2,
            "an inactive guard checks nothing"
        );
    }
}
