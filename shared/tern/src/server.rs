//! The hyper server and its shutdown sequence.
//!
//! On SIGTERM or SIGINT:
//! 1. readiness turns 503 at once;
//! 2. requests are still accepted for `TERN_DRAIN_DELAY`, while the routing layer notices;
//! 3. the listener closes; in-flight requests finish, bounded by `TERN_GRACE_PERIOD`; once it is
//!    over, connections still open are closed and their handlers dropped;
//! 4. background tasks (publishing after commit) finish, within what is left of the grace period;
//! 5. shutdown hooks run, with no handler left running: the pool closes, the Pub/Sub publisher
//!    flushes;
//! 6. [`crate::run`] drops the log guard, which flushes the logs, and the process exits 0.

use crate::conn::{Guarded, Watched, too_large};
use crate::context::Context;
use crate::problem::Problem;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Serves `router` on `listener` until a stop signal, then shuts down as described above.
pub async fn serve(listener: TcpListener, router: Router, ctx: Context) {
    let stop_accepting = ctx.stopping();
    tokio::spawn(wait_for_signal(ctx.clone()));

    let limits = ctx.config().conn;
    let builder = limits.builder();
    let graceful = GracefulShutdown::new();
    // Every connection's task, so that those still open after the grace period can be closed.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stop_accepting.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let (stream, in_flight) = Watched::new(stream, limits);
        let svc =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let guard = in_flight.start();
                req.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move {
                    let res = if too_large(req.headers(), limits.max_header_bytes) {
                        Problem::for_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                            .with_detail(format!(
                                "the request's header fields are larger than {} bytes",
                                limits.max_header_bytes
                            ))
                            .into_response()
                    } else {
                        router.oneshot(req).await?
                    };
                    Ok::<_, std::convert::Infallible>(
                        res.map(|b| axum::body::Body::new(Guarded::new(b, guard))),
                    )
                }
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);

    let grace = ctx.config().grace_period;
    let deadline = Instant::now() + grace;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "listener closed; finishing in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        // Close them before the hooks run: a handler must not outlive the pool it uses.
        let open = connections.len();
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        tracing::warn!(
            connections = open,
            "grace period over with requests still in flight; their connections are closed"
        );
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if tokio::time::timeout(left, ctx.wait_for_tasks())
        .await
        .is_err()
    {
        tracing::warn!("grace period over with background tasks still running");
    }
    ctx.run_shutdown_hooks().await;
}

async fn wait_for_signal(ctx: Context) {
    let signal = stop_signal().await;
    ctx.start_draining();
    let delay = ctx.config().drain_delay;
    tracing::info!(
        signal,
        drain_delay_ms = delay.as_millis() as u64,
        "stop signal received; readiness is now 503"
    );
    tokio::time::sleep(delay).await;
    ctx.stopping().cancel();
}

/// Resolves at the first SIGTERM or SIGINT (Ctrl-C) and names it.
pub async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; the process will stop only when killed");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Binds `addr`, with `SO_REUSEADDR` so a replacement process can bind while the old
/// one's connections sit in TIME_WAIT.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
