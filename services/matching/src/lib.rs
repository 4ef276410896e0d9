//! The matching service: the registry of trusted providers (prestataires de confiance), the
//! needs (besoins) kept from the plans events, an explained ranking of providers for a need,
//! the optimal assignment of many needs under capacity limits, and the proposals providers
//! accept or decline.
//!
//! - `domain`: the rules, without I/O;
//! - `storage`: entities, migrations and queries;
//! - `api`: the gRPC handlers;
//! - `events`: what it publishes, and its consumer of the plans events.

pub mod api;
pub mod domain;
pub mod erasure;
pub mod events;
pub mod settings;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait as _;
use tonic::service::RoutesBuilder;

use tde_proto::matching::v1::matching_service_server::MatchingServiceServer;
use tde_proto::matching::v1::proposal_service_server::ProposalServiceServer;
use tde_proto::matching::v1::provider_service_server::ProviderServiceServer;
use tde_runtime::auth::MethodPolicy;
use tde_runtime::config::SectionSpec;
use tde_runtime::inbox::ConsumerTask;
use tde_runtime::supervisor::BackgroundTask;
use tde_runtime::{ServiceContext, ServiceModule};

pub use settings::MatchingSettings;

/// The service's name: database, stream `TDE_MATCHING` and subjects `tde.matching.>`.
pub const SERVICE: &str = "matching";

/// Its gRPC services.
pub const GRPC_SERVICES: &[&str] = &[
    "tde.matching.v1.ProviderService",
    "tde.matching.v1.MatchingService",
    "tde.matching.v1.ProposalService",
];

/// The `[matching]` section of this process.
pub fn settings_of(ctx: &ServiceContext) -> MatchingSettings {
    ctx.settings.section::<MatchingSettings>()
}

/// The matching service as the runtime starts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchingModule;

#[async_trait]
impl ServiceModule for MatchingModule {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        GRPC_SERVICES
    }

    fn settings_section(&self) -> Option<SectionSpec> {
        Some(SectionSpec::of::<MatchingSettings>())
    }

    fn policies(&self) -> &'static [MethodPolicy] {
        api::policy::POLICIES
    }

    fn personal_data(
        &self,
        ctx: &ServiceContext,
    ) -> Option<Arc<dyn tde_runtime::holdings::PersonalDataHolder>> {
        Some(Arc::new(api::personal_data::MatchingHolder::new(
            ctx.clone(),
        )))
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        storage::migrations::Migrator::up(db, None).await
    }

    fn add_routes(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) {
        let limit = ctx.max_message_bytes();
        let api = api::MatchingApi::new(ctx.clone());
        routes.add_service(
            ProviderServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        routes.add_service(
            MatchingServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        routes.add_service(
            ProposalServiceServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
    }

    /// The action events of plans feed the needs and the providers' loads.
    fn consumers(&self, ctx: &ServiceContext) -> Vec<ConsumerTask> {
        vec![
            ConsumerTask::following(ctx, "plans", "plans", Arc::new(events::PlansEvents)),
            // An erasure that did not reach this service directly still reaches it.
            ConsumerTask::following(
                ctx,
                "territories",
                "erasures",
                Arc::new(erasure::ErasureEvents::new(ctx)),
            )
            .only([ctx.namespace.subject(
                "territories",
                tde_proto::territories::v1::subjects::PERSONAL_DATA_ERASED,
            )]),
        ]
    }

    /// Proposals past their deadline expire, under supervision: the next candidate can then
    /// be proposed.
    fn background_tasks(&self, ctx: &ServiceContext) -> Vec<BackgroundTask> {
        let context = ctx.clone();
        vec![BackgroundTask::new("proposal expiry", move |stop| {
            let ctx = context.clone();
            async move {
                let every = Duration::from_millis(settings_of(&ctx).expiry_interval_ms);
                loop {
                    let expired = api::proposals::expire_due(&ctx)
                        .await
                        .map_err(|e| anyhow::anyhow!("expiring proposals: {e}"))?;
                    if expired > 0 {
                        tracing::info!(expired, "proposals past their deadline expired");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            }
        })]
    }
}
