//! The territories service: the reference geography (communes, EPCI, départements, régions by
//! vintage) and the accompanied territories with their path, diagnostic, contacts and
//! steering body.
//!
//! - `domain`: the rules, without I/O;
//! - `storage`: entities, migrations and queries;
//! - `api`: the gRPC handlers;
//! - `events`: what it publishes, and its consumer of the plans events;
//! - `reference`: the reference geography as files, and the vintage shipped with tde.

pub mod api;
pub mod domain;
pub mod events;
pub mod reference;
pub mod settings;
pub mod storage;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait as _;
use tonic::service::RoutesBuilder;

use tde_proto::territories::v1::geography_service_server::GeographyServiceServer;
use tde_proto::territories::v1::personal_data_service_server::PersonalDataServiceServer;
use tde_proto::territories::v1::territory_service_server::TerritoryServiceServer;
use tde_runtime::auth::MethodPolicy;
use tde_runtime::inbox::ConsumerTask;
use tde_runtime::supervisor::BackgroundTask;
use tde_runtime::{ServiceContext, ServiceModule};

/// The service's name: database, stream `TDE_TERRITORIES` and subjects `tde.territories.>`.
pub const SERVICE: &str = "territories";

/// Its gRPC services.
pub const GRPC_SERVICES: &[&str] = &[
    "tde.territories.v1.TerritoryService",
    "tde.territories.v1.GeographyService",
    "tde.territories.v1.PersonalDataService",
];

/// Territories held by each replica's read cache: every French authority fits.
const CACHE_CAPACITY: usize = 40_000;

/// The territories service as the runtime starts it, with its read cache of territories
/// (shared by the handlers and the consumer of the plans events).
#[derive(Clone)]
pub struct TerritoriesModule {
    cache: api::territories::TerritoryCache,
}

impl Default for TerritoriesModule {
    fn default() -> Self {
        Self {
            cache: api::territories::TerritoryCache::new(CACHE_CAPACITY),
        }
    }
}

impl TerritoriesModule {
    fn holder(
        &self,
        ctx: &ServiceContext,
    ) -> std::sync::Arc<api::personal_data::TerritoriesHolder> {
        std::sync::Arc::new(api::personal_data::TerritoriesHolder::new(
            ctx.clone(),
            self.cache.clone(),
        ))
    }
}

#[async_trait]
impl ServiceModule for TerritoriesModule {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        GRPC_SERVICES
    }

    fn settings_section(&self) -> Option<tde_runtime::config::SectionSpec> {
        Some(tde_runtime::config::SectionSpec::of::<
            settings::TerritoriesSettings,
        >())
    }

    fn policies(&self) -> &'static [MethodPolicy] {
        api::policy::POLICIES
    }

    fn personal_data(
        &self,
        ctx: &ServiceContext,
    ) -> Option<std::sync::Arc<dyn tde_runtime::holdings::PersonalDataHolder>> {
        Some(self.holder(ctx))
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        storage::migrations::Migrator::up(db, None).await
    }

    fn add_routes(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) {
        let limit = ctx.max_message_bytes();
        let cache = self.cache.clone();
        routes.add_service(
            TerritoryServiceServer::new(api::territories::Territories::new(
                ctx.clone(),
                cache.clone(),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        routes.add_service(
            PersonalDataServiceServer::new(api::personal_data::PersonalDataApi::new(
                ctx.clone(),
                self.holder(ctx),
            ))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        );
        routes.add_service(
            GeographyServiceServer::new(api::geography::GeographyApi::new(ctx.clone(), cache))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
    }

    /// What keeps the read cache of territories coherent across replicas, supervised.
    fn background_tasks(&self, ctx: &ServiceContext) -> Vec<BackgroundTask> {
        if !ctx.settings.cache.enabled {
            return Vec::new();
        }
        let (db, cache) = (ctx.db.clone(), self.cache.clone());
        vec![BackgroundTask::new(
            "read cache invalidation",
            move |stop| {
                let (db, cache) = (db.clone(), cache.clone());
                async move {
                    tde_runtime::cache::keep_coherent(
                        db,
                        storage::CACHE_CHANNEL.to_string(),
                        cache,
                        stop,
                    )
                    .await;
                    Ok(())
                }
            },
        )]
    }

    /// The plans events move territories along their path (CharterSigned).
    fn consumers(&self, ctx: &ServiceContext) -> Vec<ConsumerTask> {
        vec![
            ConsumerTask::following(
                ctx,
                "plans",
                "plans",
                std::sync::Arc::new(events::PlanEvents::new(self.cache.clone())),
            ),
            // Its own stream: rosters naming an erased person are erased from it.
            ConsumerTask::following(
                ctx,
                SERVICE,
                "roster_erasure",
                std::sync::Arc::new(events::RosterErasure::new(ctx)),
            )
            .only([ctx.namespace.subject(
                SERVICE,
                tde_proto::territories::v1::subjects::PERSONAL_DATA_ERASED,
            )]),
        ]
    }
}
