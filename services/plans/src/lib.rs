//! The plans service: a plan per territory, its charter (charte d'accompagnement), three plan
//! years of actions submitted for funding, steering meetings (comités de pilotage), reviews
//! (bilans) and celebrations.
//!
//! - `domain`: the rules, without I/O;
//! - `storage`: entities, migrations and queries;
//! - `api`: the gRPC handlers;
//! - `events`: what it publishes, and its consumer of the territory events.

pub mod api;
pub mod assignments;
pub mod domain;
pub mod events;
pub mod storage;

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait as _;
use tonic::service::RoutesBuilder;

use tde_proto::plans::v1::action_service_server::ActionServiceServer;
use tde_proto::plans::v1::plan_service_server::PlanServiceServer;
use tde_proto::plans::v1::steering_meeting_service_server::SteeringMeetingServiceServer;
use tde_runtime::auth::MethodPolicy;
use tde_runtime::inbox::ConsumerTask;
use tde_runtime::{ServiceContext, ServiceModule};

/// The service's name: database, stream `TDE_PLANS` and subjects `tde.plans.>`.
pub const SERVICE: &str = "plans";

/// Its gRPC services.
pub const GRPC_SERVICES: &[&str] = &[
    "tde.plans.v1.PlanService",
    "tde.plans.v1.ActionService",
    "tde.plans.v1.SteeringMeetingService",
];

/// The plans service as the runtime starts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlansModule;

#[async_trait]
impl ServiceModule for PlansModule {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        GRPC_SERVICES
    }

    fn policies(&self) -> &'static [MethodPolicy] {
        api::policy::POLICIES
    }

    fn personal_data(
        &self,
        ctx: &ServiceContext,
    ) -> Option<Arc<dyn tde_runtime::holdings::PersonalDataHolder>> {
        Some(Arc::new(api::personal_data::PlansHolder::new(ctx.clone())))
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        storage::migrations::Migrator::up(db, None).await
    }

    fn add_routes(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) {
        let limit = ctx.max_message_bytes();
        let api = api::PlansApi::new(ctx.clone());
        routes.add_service(
            PlanServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        routes.add_service(
            ActionServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        routes.add_service(
            SteeringMeetingServiceServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
    }

    /// The territory events feed the read model of territories; the matching events set
    /// the providers that accepted.
    fn consumers(&self, ctx: &ServiceContext) -> Vec<ConsumerTask> {
        vec![
            ConsumerTask::following(
                ctx,
                "territories",
                "territories",
                Arc::new(events::TerritoryEvents),
            ),
            ConsumerTask::following(
                ctx,
                "matching",
                "matching",
                Arc::new(assignments::MatchingEvents),
            ),
        ]
    }
}
