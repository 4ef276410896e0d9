//! The notifications service: everyone concerned hears of each coming steering meeting, in
//! time, once. Invitations, updates and cancellations by e-mail (French, text and HTML, with
//! an iCalendar part) or signed webhook; reminders at a local time of the territory; a
//! delivery log; calendar feeds.
//!
//! - `domain`: who is told what and when, and what the messages say (no I/O);
//! - `storage`: entities, migrations, queries, and the claim of due work with leases;
//! - `delivery`: the transports and the dispatcher;
//! - `api`: the gRPC handlers; `feed`: the calendar feeds over HTTP;
//! - `events`: its consumers of the territory and plans events.

pub mod api;
pub mod delivery;
pub mod domain;
pub mod events;
pub mod feed;
pub mod funding;
pub mod notices;
pub mod proposals;
pub mod settings;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait as _;
use tonic::service::RoutesBuilder;

use tde_proto::notifications::v1::notification_service_server::NotificationServiceServer;
use tde_runtime::auth::MethodPolicy;
use tde_runtime::config::SectionSpec;
use tde_runtime::inbox::ConsumerTask;
use tde_runtime::supervisor::BackgroundTask;
use tde_runtime::{ServiceContext, ServiceModule};

use delivery::dispatcher::{Dispatcher, Waker};
use domain::message::Organizer;
use events::Planner;
use settings::NotificationSettings;

/// The service's name: database, stream `TDE_NOTIFICATIONS` and subjects
/// `tde.notifications.>`.
pub const SERVICE: &str = "notifications";

pub const GRPC_SERVICES: &[&str] = &["tde.notifications.v1.NotificationService"];

/// The notifications service as the runtime starts it. Its consumers plan notifications and
/// wake its dispatcher, which `add_routes` starts with the feed server.
#[derive(Clone, Default)]
pub struct NotificationsModule {
    waker: Waker,
    /// How webhook receivers' names are resolved: the system's resolver unless a test
    /// gives its own.
    resolver: Option<Arc<dyn delivery::webhook::Resolver>>,
}

/// This service's section of the process settings.
pub fn settings_of(ctx: &ServiceContext) -> NotificationSettings {
    ctx.settings.section::<NotificationSettings>()
}

/// The domain of Message-IDs and calendar UIDs: the sender's.
pub fn mail_domain(from: &str) -> String {
    from.rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| "tde.anct.gouv.fr".into())
}

impl NotificationsModule {
    /// The module resolving webhook receivers with `resolver` (tests: no traffic leaves the
    /// machine).
    pub fn with_resolver(resolver: Arc<dyn delivery::webhook::Resolver>) -> Self {
        Self {
            resolver: Some(resolver),
            ..Self::default()
        }
    }

    fn planner(&self, ctx: &ServiceContext) -> Planner {
        let settings = settings_of(ctx);
        Planner {
            domain: mail_domain(&settings.from),
            settings: Arc::new(settings),
            waker: self.waker.clone(),
        }
    }

    fn organizer(settings: &NotificationSettings) -> Organizer {
        Organizer {
            email: settings.from.clone(),
            name: settings.from_name.clone(),
        }
    }

    /// The dispatcher of this replica.
    pub fn dispatcher(&self, ctx: &ServiceContext) -> anyhow::Result<Dispatcher> {
        let settings = settings_of(ctx);
        Ok(Dispatcher {
            db: ctx.db.clone(),
            mailer: delivery::email::Mailer::from_settings(&settings)?,
            webhooks: delivery::webhook::WebhookClient::new(
                &settings.webhook_secret.0,
                Duration::from_millis(settings.webhook_timeout_ms),
                settings.allow_insecure_webhooks,
                self.resolver
                    .clone()
                    .unwrap_or_else(|| Arc::new(delivery::webhook::SystemResolver)),
            )?,
            organizer: Self::organizer(&settings),
            domain: mail_domain(&settings.from),
            owner: format!("{}-{}", SERVICE, uuid::Uuid::now_v7()),
            waker: self.waker.clone(),
            settings,
        })
    }
}

#[async_trait]
impl ServiceModule for NotificationsModule {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        GRPC_SERVICES
    }

    fn settings_section(&self) -> Option<SectionSpec> {
        Some(SectionSpec::of::<NotificationSettings>())
    }

    fn policies(&self) -> &'static [MethodPolicy] {
        api::policy::POLICIES
    }

    fn personal_data(
        &self,
        ctx: &ServiceContext,
    ) -> Option<Arc<dyn tde_runtime::holdings::PersonalDataHolder>> {
        Some(Arc::new(api::personal_data::NotificationsHolder::new(
            ctx.clone(),
        )))
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        storage::migrations::Migrator::up(db, None).await
    }

    fn add_routes(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) {
        let limit = ctx.max_message_bytes();
        routes.add_service(
            NotificationServiceServer::new(api::NotificationsApi::new(
                ctx.clone(),
                self.planner(ctx),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
    }

    /// The dispatcher and, when configured, the calendar feed server, under supervision: a
    /// transport that cannot be set up, a port that cannot be bound or a task that dies is
    /// retried with back-off while health says NOT_SERVING.
    fn background_tasks(&self, ctx: &ServiceContext) -> Vec<BackgroundTask> {
        let mut tasks = Vec::new();
        let (module, context) = (self.clone(), ctx.clone());
        tasks.push(BackgroundTask::new("dispatcher", move |stop| {
            let dispatcher = module.dispatcher(&context);
            async move {
                dispatcher?.run(stop).await;
                Ok(())
            }
        }));
        let settings = settings_of(ctx);
        if let Some(addr) = settings.feed_listen {
            let state = feed::FeedState {
                db: ctx.db.clone(),
                organizer: Arc::new(Self::organizer(&settings)),
                domain: mail_domain(&settings.from),
            };
            tasks.push(BackgroundTask::new("calendar feeds", move |stop| {
                let state = state.clone();
                async move {
                    let listener = feed::bind(addr)
                        .await
                        .map_err(|e| anyhow::anyhow!("listening for calendar feeds on {addr}: {e}"))?;
                    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "calendar feeds served");
                    feed::serve(listener, state, stop).await?;
                    Ok(())
                }
            }));
        }
        tasks
    }

    fn consumers(&self, ctx: &ServiceContext) -> Vec<ConsumerTask> {
        let planner = self.planner(ctx);
        vec![
            ConsumerTask::following(
                ctx,
                "territories",
                "territories",
                Arc::new(events::TerritoryEvents(planner.clone())),
            ),
            ConsumerTask::following(
                ctx,
                "plans",
                "plans",
                Arc::new(events::PlanEvents(planner.clone())),
            ),
            // Subsidy decisions and payments, told to the privileged contact.
            ConsumerTask::following(
                ctx,
                "subsidies",
                "subsidies",
                Arc::new(funding::SubsidyEvents(planner.clone())),
            ),
            // Proposals of actions, e-mailed to the providers' contacts.
            ConsumerTask::following(
                ctx,
                "matching",
                "matching",
                Arc::new(proposals::ProposalEvents(planner)),
            ),
        ]
    }
}
