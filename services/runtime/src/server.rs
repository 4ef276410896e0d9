//! Start-up of a tde process, the same for `tde dev` (every service, SQLite, in-process bus),
//! `tde serve <service>` (one service, PostgreSQL, JetStream) and the test harness: connect
//! and migrate each service's database, connect the bus, serve gRPC with health and
//! reflection, run the outbox relays and consumers, and shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::audit::{AuditApi, AuditWriter};
use crate::auth::layer::{AuthState, Route};
use crate::auth::policy::RUNTIME_POLICIES;
use crate::auth::{AuthLayer, MethodPolicy, Verifier};
use crate::bus::{EventBus, JetStreamBus, MemoryBus, Namespace};
use crate::config::{BusKind, Settings};
use crate::inbox::{ConsumerTask, run_consumer};
use crate::observe::ObserveLayer;
use crate::operations::{OperatedService, OperationsApi};
use crate::outbox::{OutboxRelay, OutboxWaker};
use crate::supervisor::{BackgroundTask, Supervisor};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database of {service}: {source}")]
    Database {
        service: &'static str,
        #[source]
        source: DbErr,
    },
    #[error("event bus: {0}")]
    Bus(#[from] crate::bus::BusError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::keys::KeySetError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("gRPC server: {0}")]
    Serve(String),
    #[error("{0}")]
    Other(String),
}

/// What a service is given to build its handlers.
#[derive(Clone)]
pub struct ServiceContext {
    pub service: &'static str,
    pub db: DatabaseConnection,
    pub bus: Arc<dyn EventBus>,
    pub namespace: Namespace,
    pub outbox: OutboxWaker,
    pub settings: Arc<Settings>,
    /// Cancelled when the service's background work must stop (shutdown).
    pub shutdown: CancellationToken,
    /// The personal-data holders of every service of this process (see `holdings`).
    pub holders: crate::holdings::LocalHolders,
}

impl ServiceContext {
    pub fn max_message_bytes(&self) -> usize {
        self.settings.server.max_message_bytes
    }
}

/// One service of the platform, as the runtime sees it.
#[async_trait]
pub trait ServiceModule: Send + Sync + 'static {
    /// Short name: `territories`, `plans`… (database, stream and subjects derive from it).
    fn name(&self) -> &'static str;

    /// Fully-qualified names of its gRPC services, reported by health.
    fn grpc_services(&self) -> &'static [&'static str];

    /// Its own settings section (`[<name>]`), if it has one: the loader accepts it only in a
    /// process running this service.
    fn settings_section(&self) -> Option<crate::config::SectionSpec> {
        None
    }

    /// The access policy of every method of its gRPC services (see `auth::policy`); a method
    /// missing here is refused to everyone.
    fn policies(&self) -> &'static [MethodPolicy];

    /// Applies pending migrations.
    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr>;

    /// Adds its gRPC services (with the configured message limits) to the router.
    fn add_routes(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder);

    /// Its durable consumers.
    fn consumers(&self, _ctx: &ServiceContext) -> Vec<ConsumerTask> {
        Vec::new()
    }

    /// Its own background tasks (dispatchers, listeners…): the runtime runs them under
    /// supervision, restarting them when they stop or panic.
    fn background_tasks(&self, _ctx: &ServiceContext) -> Vec<BackgroundTask> {
        Vec::new()
    }

    /// What answers for the personal data it holds (export and erasure, see `holdings`);
    /// none when it holds none.
    fn personal_data(
        &self,
        _ctx: &ServiceContext,
    ) -> Option<Arc<dyn crate::holdings::PersonalDataHolder>> {
        None
    }
}

/// Connects a module's database and migrates it when configured to.
pub async fn open_database(
    settings: &Settings,
    module: &dyn ServiceModule,
) -> Result<DatabaseConnection, StartError> {
    let service = module.name();
    let db = crate::db::connect(&settings.database, service)
        .await
        .map_err(|source| StartError::Database { service, source })?;
    if settings.database.run_migrations {
        module
            .migrate(&db)
            .await
            .map_err(|source| StartError::Database { service, source })?;
    }
    Ok(db)
}

/// Builds the configured event bus.
pub async fn connect_bus(settings: &Settings) -> Result<Arc<dyn EventBus>, StartError> {
    Ok(match settings.bus.kind {
        BusKind::Memory => Arc::new(MemoryBus::new()),
        BusKind::Nats => Arc::new(
            JetStreamBus::connect(
                &settings.bus.nats_url,
                Duration::from_millis(settings.outbox.publish_timeout_ms),
            )
            .await?,
        ),
    })
}

/// A running process: its address, its services, and the way to stop it.
pub struct RunningPlatform {
    pub local_addr: SocketAddr,
    pub services: Vec<ServiceContext>,
    shutdown: CancellationToken,
    supervisor: JoinHandle<Result<(), StartError>>,
}

impl RunningPlatform {
    pub fn service(&self, name: &str) -> Option<&ServiceContext> {
        self.services.iter().find(|s| s.service == name)
    }

    /// Cancelling this token starts the graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shuts down gracefully and waits until done.
    pub async fn shutdown(self) -> Result<(), StartError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the process has shut down (after the token was cancelled).
    pub async fn wait(self) -> Result<(), StartError> {
        self.supervisor
            .await
            .map_err(|e| StartError::Other(format!("supervisor: {e}")))?
    }
}

/// Starts `modules` with `settings`. `bus` overrides the configured one (tests inject theirs;
/// `tde dev` shares one in-process bus). `listener` overrides `server.listen`.
pub async fn start(
    settings: Settings,
    modules: Vec<Arc<dyn ServiceModule>>,
    bus: Option<Arc<dyn EventBus>>,
    listener: Option<TcpListener>,
) -> Result<RunningPlatform, StartError> {
    crate::telemetry::init_metrics(&settings.telemetry)?;
    let settings = Arc::new(settings);
    let bus = match bus {
        Some(bus) => bus,
        None => connect_bus(&settings).await?,
    };
    let namespace = Namespace::new(settings.bus.namespace.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for module in &modules {
        for name in module.grpc_services() {
            health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
    }

    // Background work: consumers and service tasks stop first, relays last (they flush).
    let relays_stop = CancellationToken::new();
    let consumers_stop = CancellationToken::new();
    let mut contexts = Vec::new();
    let holders = crate::holdings::LocalHolders::default();
    for module in &modules {
        let db = open_database(&settings, module.as_ref()).await?;
        contexts.push(ServiceContext {
            service: module.name(),
            db,
            bus: bus.clone(),
            namespace: namespace.clone(),
            outbox: OutboxWaker::default(),
            settings: settings.clone(),
            shutdown: consumers_stop.clone(),
            holders: holders.clone(),
        });
    }
    for (module, ctx) in modules.iter().zip(&contexts) {
        if let Some(holder) = module.personal_data(ctx) {
            holders.add(module.name(), holder);
        }
    }

    let consumer_tasks: Vec<Vec<ConsumerTask>> = modules
        .iter()
        .zip(&contexts)
        .map(|(module, ctx)| module.consumers(ctx))
        .collect();

    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service.clone());
    if settings.server.reflection {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tde_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Reflection(e.to_string()))?;
        routes.add_service(reflection);
    }
    let limit = settings.server.max_message_bytes;
    routes.add_service(
        tde_proto::audit::v1::audit_service_server::AuditServiceServer::new(AuditApi::new(
            contexts.iter().map(|c| (c.service, c.db.clone())).collect(),
        ))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit),
    );
    routes.add_service(
        tde_proto::operations::v1::operations_service_server::OperationsServiceServer::new(
            OperationsApi::new(
                contexts
                    .iter()
                    .zip(&consumer_tasks)
                    .map(|(ctx, tasks)| OperatedService {
                        service: ctx.service,
                        db: ctx.db.clone(),
                        consumers: tasks
                            .iter()
                            .map(|t| (t.spec.durable_name.clone(), t.handler.clone()))
                            .collect(),
                        outbox: ctx.outbox.clone(),
                    })
                    .collect(),
            ),
        )
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit),
    );
    routes.add_service(
        tde_proto::personal_data::v1::holdings_service_server::HoldingsServiceServer::new(
            crate::holdings::HoldingsApi::new(holders.clone()),
        )
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit),
    );
    for (module, ctx) in modules.iter().zip(&contexts) {
        module.add_routes(ctx, &mut routes);
    }
    let auth = auth_layer(&settings, &modules, &contexts).await?;
    let known_methods = RUNTIME_POLICIES
        .iter()
        .chain(modules.iter().flat_map(|m| m.policies().iter()))
        .map(|p| p.method.to_string())
        .chain(["Check", "Watch"].map(|m| format!("/grpc.health.v1.Health/{m}")));
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(settings.server.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: settings.server.listen,
                source,
            })?,
    };
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: settings.server.listen,
        source,
    })?;

    // The in-process bus starts empty: it gets back, from the outboxes, what consumers may
    // not have processed before the last stop (their inboxes skip what they had).
    if settings.bus.kind == BusKind::Memory {
        for ctx in &contexts {
            let replayed =
                crate::outbox::replay_published(&ctx.db, bus.as_ref(), &namespace, ctx.service)
                    .await
                    .map_err(|e| {
                        StartError::Other(format!("replaying {}'s outbox: {e}", ctx.service))
                    })?;
            tracing::debug!(
                service = ctx.service,
                replayed,
                "outbox replayed into the in-process bus"
            );
        }
    }

    // Every background task runs under supervision: restarted when it stops or panics,
    // its service NOT_SERVING meanwhile.
    let supervisor = Supervisor::new(
        health.clone(),
        modules
            .iter()
            .map(|m| (m.name(), m.grpc_services().to_vec()))
            .collect(),
    );
    let mut relays = Vec::new();
    let mut consumers = Vec::new();
    for ((module, ctx), tasks) in modules.iter().zip(&contexts).zip(consumer_tasks) {
        let relay = {
            let (ctx, bus, namespace, outbox) = (
                ctx.clone(),
                bus.clone(),
                namespace.clone(),
                settings.outbox.clone(),
            );
            BackgroundTask::new("outbox relay", move |stop| {
                let relay = OutboxRelay::new(
                    ctx.service,
                    ctx.db.clone(),
                    bus.clone(),
                    namespace.clone(),
                    outbox.clone(),
                    ctx.outbox.clone(),
                );
                async move {
                    relay.run(stop).await;
                    Ok(())
                }
            })
        };
        relays.push(supervisor.spawn(ctx.service, relay, relays_stop.clone()));
        for task in tasks {
            let (db, bus) = (ctx.db.clone(), bus.clone());
            let name = format!("consumer {}", task.spec.durable_name);
            let consumer = BackgroundTask::new(name, move |stop| {
                let (db, bus, task) = (db.clone(), bus.clone(), task.clone());
                async move {
                    run_consumer(db, bus, task, stop).await;
                    Ok(())
                }
            });
            consumers.push(supervisor.spawn(ctx.service, consumer, consumers_stop.clone()));
        }
        for task in module.background_tasks(ctx) {
            consumers.push(supervisor.spawn(ctx.service, task, consumers_stop.clone()));
        }
    }

    let server_stop = CancellationToken::new();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &settings.server.tls {
        builder = builder
            .tls_config(tls_config(tls)?)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    let server = builder
        .timeout(settings.max_deadline())
        .max_concurrent_streams(settings.server.max_concurrent_streams)
        .layer(ObserveLayer::new(known_methods))
        .layer(auth)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY, a reply of several segments waits for the client's
            // delayed ACK (40 ms on Linux): every list page would pay it.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            server_stop.clone().cancelled_owned(),
        );
    let mut server = tokio::spawn(server);
    // With TLS on, probes get health alone on a plaintext port.
    let health_server = match settings.server.health_listen {
        Some(addr) if settings.server.tls.is_some() => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })?;
            tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "health served in plaintext");
            Some(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(health_service)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        server_stop.clone().cancelled_owned(),
                    ),
            ))
        }
        _ => None,
    };

    for module in &modules {
        for name in module.grpc_services() {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
    }
    health.set_service_status("", ServingStatus::Serving).await;
    let names: Vec<&str> = modules.iter().map(|m| m.name()).collect();
    tracing::info!(addr = %local_addr, services = ?names, "tde serving");

    let shutdown = CancellationToken::new();
    let supervisor = {
        let shutdown = shutdown.clone();
        let settings = settings.clone();
        let modules = modules.clone();
        tokio::spawn(async move {
            let early_exit = tokio::select! {
                _ = shutdown.cancelled() => None,
                result = &mut server => Some(result),
            };
            if let Some(result) = early_exit {
                relays_stop.cancel();
                consumers_stop.cancel();
                return match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(StartError::Serve(e.to_string())),
                    Err(e) => Err(StartError::Serve(e.to_string())),
                };
            }
            tracing::info!("shutting down");
            supervisor.stand_down();
            set_all(&health, &modules, ServingStatus::NotServing).await;
            tokio::time::sleep(Duration::from_millis(settings.server.shutdown_drain_ms)).await;
            consumers_stop.cancel();
            server_stop.cancel();
            let grace = Duration::from_millis(settings.server.shutdown_grace_ms);
            let served = match tokio::time::timeout(grace, &mut server).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(StartError::Serve(e.to_string())),
                Ok(Err(e)) => Err(StartError::Serve(e.to_string())),
                Err(_) => {
                    tracing::warn!("in-flight calls still running after the grace period; closing");
                    server.abort();
                    Ok(())
                }
            };
            if let Some(h) = health_server {
                let _ = h.await;
            }
            for c in consumers {
                let _ = c.await;
            }
            relays_stop.cancel();
            for r in relays {
                let _ = r.await;
            }
            tracing::info!("stopped");
            served
        })
    };

    Ok(RunningPlatform {
        local_addr,
        services: contexts,
        shutdown,
        supervisor,
    })
}

/// The auth layer of a process: its verifier and the policy of every method it serves.
async fn auth_layer(
    settings: &Settings,
    modules: &[Arc<dyn ServiceModule>],
    contexts: &[ServiceContext],
) -> Result<AuthLayer, StartError> {
    let verifier = if settings.auth.enabled {
        Some(Verifier::new(&settings.auth).await?)
    } else {
        tracing::warn!(
            "authentication is OFF: every call acts with every right (measurements only)"
        );
        None
    };
    let trails: Vec<AuditWriter> = contexts
        .iter()
        .map(|ctx| AuditWriter::start(ctx.db.clone()))
        .collect();
    // The runtime's own writes (replaying dead letters…) go on the first service's trail.
    let mut routes: Vec<Route> = RUNTIME_POLICIES
        .iter()
        .map(|policy| Route {
            policy: *policy,
            service: "runtime",
            trail: trails.first().cloned(),
        })
        .collect();
    for ((module, ctx), trail) in modules.iter().zip(contexts).zip(trails) {
        routes.extend(module.policies().iter().map(|policy| Route {
            policy: *policy,
            service: ctx.service,
            trail: Some(trail.clone()),
        }));
    }
    let state = Arc::new(AuthState::new(verifier, routes, &settings.auth));
    AuthState::forget_idle_clients(&state);
    Ok(AuthLayer::new(state))
}

fn tls_config(
    tls: &crate::config::TlsSettings,
) -> Result<tonic::transport::ServerTlsConfig, StartError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| StartError::Tls(format!("{}: {e}", path.display())))
    };
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            read(&tls.cert_file)?,
            read(&tls.key_file)?,
        ))
        .client_ca_root(tonic::transport::Certificate::from_pem(read(
            &tls.client_ca_file,
        )?)))
}

async fn set_all(
    health: &HealthReporter,
    modules: &[Arc<dyn ServiceModule>],
    status: ServingStatus,
) {
    health.set_service_status("", status).await;
    for module in modules {
        for name in module.grpc_services() {
            health.set_service_status(*name, status).await;
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
