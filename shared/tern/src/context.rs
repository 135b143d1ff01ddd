//! What the runtime hands a function at start: settings, and hooks into readiness and shutdown.

use crate::config::{ConfigError, Env, RuntimeConfig};
use crate::metrics::Metrics;
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Something readiness depends on, such as the database pool.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// A short name shown when the check fails (`database`).
    fn name(&self) -> &str;
    /// `Ok` when the dependency can serve requests now.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

type ShutdownHook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// The start-up context: a cheap handle, clone it freely.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

struct Inner {
    env: Env,
    config: RuntimeConfig,
    readiness: Mutex<Vec<Arc<dyn ReadinessCheck>>>,
    shutdown_hooks: Mutex<Vec<(String, ShutdownHook)>>,
    draining: AtomicBool,
    tasks: TaskTracker,
    stopping: CancellationToken,
    metrics: Metrics,
    spans: std::sync::OnceLock<Arc<crate::spans::Spans>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("service", &self.inner.config.knative.service)
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Context {
    /// A context over `env` with the runtime settings already read from it.
    pub fn new(env: Env, config: RuntimeConfig) -> Self {
        let metrics = Metrics::new(
            &config.knative.service,
            config.knative.revision.as_deref(),
            &config.http_routes,
        );
        Self {
            inner: Arc::new(Inner {
                env,
                config,
                readiness: Mutex::new(Vec::new()),
                shutdown_hooks: Mutex::new(Vec::new()),
                draining: AtomicBool::new(false),
                tasks: TaskTracker::new(),
                stopping: CancellationToken::new(),
                metrics,
                spans: std::sync::OnceLock::new(),
            }),
        }
    }

    /// A context for tests and tools: runtime defaults over the given environment.
    pub fn for_env(env: Env) -> Result<Self, ConfigError> {
        let config = RuntimeConfig::from_env(&env, "test")?;
        Ok(Self::new(env, config))
    }

    /// The environment settings are read from.
    pub fn env(&self) -> &Env {
        &self.inner.env
    }

    /// The runtime's own settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The function's metrics, where platform libraries add their series.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Starts exporting spans when `OTEL_EXPORTER_OTLP_ENDPOINT` says where
    /// ([`crate::RuntimeConfig::traces`]); shutdown sends the last batch after the other hooks.
    /// Needs a running Tokio runtime.
    pub(crate) fn start_spans(&self) -> Result<(), String> {
        let config = &self.inner.config;
        let Some(export) = &config.traces else {
            return Ok(());
        };
        let spans = crate::spans::Spans::start(
            export,
            &config.knative,
            &config.http_routes,
            &self.inner.metrics,
        )?;
        let _ = self.inner.spans.set(spans);
        Ok(())
    }

    /// The span exporter, when spans are exported.
    pub(crate) fn spans(&self) -> Option<Arc<crate::spans::Spans>> {
        self.inner.spans.get().cloned()
    }

    /// Makes readiness depend on `check`.
    pub fn add_readiness(&self, check: Arc<dyn ReadinessCheck>) {
        lock(&self.inner.readiness).push(check);
    }

    /// Runs `hook` during shutdown, after in-flight requests and background tasks have
    /// finished, in the order hooks were added.
    pub fn on_shutdown<F>(&self, name: &str, hook: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        lock(&self.inner.shutdown_hooks)
            .push((name.to_owned(), Box::new(move || Box::pin(hook()))));
    }

    /// Runs `fut` in the background; shutdown waits for it (within the grace period).
    /// Use it for work that must not be cut off, such as publishing after a commit. Awaiting
    /// the handle gives its output; dropping the handle leaves the task running.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tasks.spawn(fut)
    }

    /// Cancelled when the server stops accepting connections.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.stopping.clone()
    }

    /// Whether SIGTERM has been received.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn readiness_checks(&self) -> Vec<Arc<dyn ReadinessCheck>> {
        lock(&self.inner.readiness).clone()
    }

    pub(crate) async fn wait_for_tasks(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    pub(crate) async fn run_shutdown_hooks(&self) {
        let hooks = std::mem::take(&mut *lock(&self.inner.shutdown_hooks));
        for (name, hook) in hooks {
            tracing::debug!(hook = %name, "running shutdown hook");
            hook().await;
        }
        // Last, and bounded: the spans of everything above.
        if let Some(spans) = self.spans() {
            spans.flush().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
