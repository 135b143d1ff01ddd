//! # Tern: the function runtime
//!
//! A Tern function is a small binary that hands a [`tower::Service`] — an axum `Router`, or an
//! `async fn` through [`tower::service_fn`] — to [`run`]. The runtime does the rest, the way the
//! Knative runtime contract expects: it serves HTTP/1.1 and h2c on `0.0.0.0:$PORT`, answers
//! liveness and readiness on `/_tern/live` and `/_tern/ready`, logs Cloud Logging JSON, renders
//! every error as `application/problem+json`, and shuts down gracefully on SIGTERM.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! async fn app(_ctx: tern::Context) -> Result<Router, tern::StartError> {
//!     Ok(Router::new().route("/hello", get(|| async { "hello" })))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     tern::run(app).await
//! }
//! ```
//!
//! `app` runs once at start. It reads its settings through [`Context::env`] (a bad one is a
//! [`ConfigError`] that [`run`] prints as one line before exiting 2), opens the database pool
//! (`tern_db::Db::connect`, which makes readiness depend on it) and builds its service.
//! A run-to-completion binary (the `migrate` job) hands an `async fn` to [`run_job`] instead.
//!
//! The middleware stack is assembled in one place, `src/stack.rs`; the shutdown sequence is in
//! `src/server.rs`. Tools and hosts reach both through [`platform`].

#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod auth;
mod config;
mod conn;
mod context;
pub mod guard;
mod health;
mod json;
mod log_sink;
mod logging;
pub mod metrics;
mod oidc;
mod problem;
pub mod secrets;
mod server;
mod spans;
mod stack;
mod trace_context;

pub use auth::ApiKeys;
pub use config::{
    ConfigError, Env, KnativeIdentity, LogFormat, RuntimeConfig, Setting, TraceExport,
};
pub use context::{Context, ReadinessCheck};
pub use json::Json;
pub use oidc::{Caller, GoogleOidc};
pub use problem::{FieldError, Problem};

/// For hosts and tools, not for function authors: what the local platform, the tests and the
/// platform's own libraries (`tern-db`, `tern-events`) build on — the reserved paths, the
/// problem media type, the server and its middleware stack, the JSON body helpers.
pub mod platform {
    pub use crate::conn::{ConnLimits, Guarded, InFlight, InFlightGuard, Watched, too_large};
    pub use crate::health::{HEALTH_PREFIX, LIVE_PATH, READY_PATH};
    pub use crate::json::{parse as parse_json, read_body};
    pub use crate::metrics::{METRICS_PATH, METRICS_PORT, note_duplicate, note_event};
    pub use crate::problem::{PROBLEM_BASE, PROBLEM_JSON};
    pub use crate::server::{bind, serve, stop_signal};
    pub use crate::stack::assemble;
    pub use crate::trace_context::{continue_trace, current_traceparent};

    /// The name of the running binary (`orders-get`), the default `K_SERVICE`.
    pub fn binary_name() -> String {
        crate::binary_name()
    }
}

use axum::extract::Request;
use axum::response::IntoResponse;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;
use tower::Service;

/// Why a function could not start. [`run`] prints it as one line and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is missing or invalid (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything else that stops the start (exit code 1).
    #[error("start failed: {0}")]
    Failed(String),
}

impl StartError {
    /// A start failure with context.
    pub fn failed(what: impl std::fmt::Display) -> Self {
        Self::Failed(what.to_string())
    }

    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) => ExitCode::from(2),
            Self::Failed(_) => ExitCode::from(1),
        }
    }
}

/// Runs a function: reads the settings, calls `app` to build the service, serves it until
/// SIGTERM or SIGINT, and shuts down gracefully. Returns the process exit code.
pub async fn run<F, Fut, S>(app: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<S, StartError>>,
    S: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    let started = Instant::now();
    let (ctx, guard) = match start() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let config = ctx.config().clone();
    let service = match app(ctx.clone()).await {
        Ok(s) => s,
        Err(e) => {
            drop(guard);
            return fail(&e);
        }
    };
    let router = stack::assemble(service, &ctx);
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = match server::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            drop(guard);
            return fail(&StartError::failed(format!("cannot listen on {addr}: {e}")));
        }
    };
    let metrics_addr = match config.metrics_port {
        None => None,
        Some(port) => {
            let at = SocketAddr::new(config.bind, port);
            match server::bind(at).await {
                Ok(l) => {
                    let bound = l.local_addr().unwrap_or(at);
                    metrics::serve(l, ctx.metrics().clone());
                    Some(bound)
                }
                Err(e) => {
                    drop(guard);
                    return fail(&StartError::failed(format!(
                        "cannot listen on {at} for metrics (TERN_METRICS_PORT): {e}"
                    )));
                }
            }
        }
    };
    tracing::info!(
        service = %config.knative,
        address = %addr,
        metrics = metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".to_owned()),
        start_ms = started.elapsed().as_secs_f64() * 1000.0,
        "listening"
    );
    server::serve(listener, router, ctx).await;
    tracing::info!("stopped");
    drop(guard);
    ExitCode::SUCCESS
}

/// Runs a job to completion: reads the settings and sets up logging as [`run`] does, then
/// runs `job`, then the shutdown hooks (the pool closes). A bad setting exits 2 with one line
/// naming it; a failed job exits 1 with its error logged and printed; success exits 0.
///
/// ```no_run
/// async fn job(ctx: tern::Context) -> Result<(), tern::StartError> {
///     let batch: u32 = ctx.env().or("BATCH_SIZE", 100)?;
///     tracing::info!(batch, "done");
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     tern::run_job(job).await
/// }
/// ```
pub async fn run_job<F, Fut>(job: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), StartError>>,
{
    let (ctx, guard) = match start() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let result = job(ctx.clone()).await;
    ctx.run_shutdown_hooks().await;
    let code = match &result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.exit_code(),
    };
    // A job is not starting: its failure reads "failed: ...", not "start failed: ...".
    let message = match &result {
        Ok(()) => None,
        Err(StartError::Config(e)) => Some(e.to_string()),
        Err(StartError::Failed(why)) => Some(format!("failed: {why}")),
    };
    if let Some(m) = &message {
        tracing::error!(error = %m, "job failed");
    }
    drop(guard);
    if let Some(m) = message {
        eprintln!("{}: {m}", binary_name());
    }
    code
}

/// What [`run`] and [`run_job`] share: the settings, the logs, the panic hook.
fn start() -> Result<(Context, logging::LogGuard), StartError> {
    let env = Env::from_process();
    let config = RuntimeConfig::from_env(&env, &binary_name())?;
    let guard = logging::init(
        config.log_format,
        &config.log_filter,
        &config.knative,
        config.project_id.as_deref(),
    )?;
    install_panic_hook();
    let ctx = Context::new(env, config);
    ctx.start_spans().map_err(StartError::failed)?;
    Ok((ctx, guard))
}

fn fail(e: &StartError) -> ExitCode {
    eprintln!("{}: {e}", binary_name());
    e.exit_code()
}

fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tern-function".to_owned())
}

/// Panics go to the log as one ERROR line (with location), not as raw stderr text.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = what, at = %at, "panic");
    }));
}
