//! Background tasks under supervision: relays, consumers and each service's own tasks
//! (dispatchers, listeners) are restarted with back-off when they stop or panic, and health
//! reports the service NOT_SERVING while one of its tasks is down, so that nothing dies
//! silently while probes say SERVING.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::telemetry::metric;

/// A future a background task runs until `stop` (or an error).
pub type TaskFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A service's background task: `run` starts it (again, after a failure).
#[derive(Clone)]
pub struct BackgroundTask {
    pub name: String,
    pub run: Arc<dyn Fn(CancellationToken) -> TaskFuture + Send + Sync>,
}

impl BackgroundTask {
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            run: Arc::new(move |stop| Box::pin(run(stop))),
        }
    }
}

/// First wait before a restart, doubling up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A task that ran this long before failing starts its back-off over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Keeps the tasks of a process running and health in step with them.
#[derive(Clone)]
pub struct Supervisor {
    health: HealthReporter,
    /// The gRPC services of each service, as health names them.
    grpc: Arc<HashMap<&'static str, Vec<&'static str>>>,
    /// Tasks down now, by service.
    down: Arc<Mutex<HashMap<&'static str, HashSet<String>>>>,
    /// False once the process is stopping: statuses are the shutdown's then.
    active: Arc<std::sync::atomic::AtomicBool>,
}

impl Supervisor {
    pub fn new(health: HealthReporter, grpc: HashMap<&'static str, Vec<&'static str>>) -> Self {
        Self {
            health,
            grpc: Arc::new(grpc),
            down: Arc::default(),
            active: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Stops reporting: the process is shutting down.
    pub fn stand_down(&self) {
        self.active
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `task` of `service` until `stop`, restarting it whenever it ends otherwise.
    pub fn spawn(
        &self,
        service: &'static str,
        task: BackgroundTask,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let supervisor = self.clone();
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let started = tokio::time::Instant::now();
                let outcome = tokio::spawn((task.run)(stop.clone())).await;
                if stop.is_cancelled() {
                    return;
                }
                let why = match outcome {
                    Ok(Ok(())) => "stopped".to_string(),
                    Ok(Err(e)) => format!("failed: {e:#}"),
                    Err(e) if e.is_panic() => "panicked".to_string(),
                    Err(e) => format!("was cancelled: {e}"),
                };
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                tracing::error!(service, task = %task.name, retry_in = ?backoff, "background task {why}; restarting");
                metrics::counter!(metric::TASK_RESTARTS, "service" => service, "task" => task.name.clone())
                    .increment(1);
                supervisor.mark(service, &task.name, false).await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                supervisor.mark(service, &task.name, true).await;
            }
        })
    }

    async fn mark(&self, service: &'static str, task: &str, up: bool) {
        let (service_down, any_down) = {
            let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
            let tasks = down.entry(service).or_default();
            if up {
                tasks.remove(task);
            } else {
                tasks.insert(task.to_string());
            }
            let service_down = !tasks.is_empty();
            (service_down, down.values().any(|t| !t.is_empty()))
        };
        if !self.active.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let status = |down| {
            if down {
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            }
        };
        for name in self.grpc.get(service).into_iter().flatten() {
            self.health
                .set_service_status(*name, status(service_down))
                .await;
        }
        self.health.set_service_status("", status(any_down)).await;
    }
}
