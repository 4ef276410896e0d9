//! The subsidies service: yearly budget envelopes (enveloppes), the subsidy (subvention) of
//! each submitted plan year, its decision with four eyes, its commitment (engagement) never
//! beyond the envelope, payments in tranches (versements: avance, solde), clawbacks
//! (reversements), and an append-only ledger every balance is derived from or checked
//! against.
//!
//! - `domain`: the rules, without I/O;
//! - `storage`: entities, migrations and queries;
//! - `api`: the gRPC handlers;
//! - `events`: what it publishes, and its consumers of the plans and territory events;
//! - `settings`: its `[subsidies]` section.

pub mod api;
pub mod domain;
pub mod events;
pub mod settings;
pub mod storage;

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait as _;
use tonic::service::RoutesBuilder;

use tde_proto::subsidies::v1::envelope_service_server::EnvelopeServiceServer;
use tde_proto::subsidies::v1::ledger_service_server::LedgerServiceServer;
use tde_proto::subsidies::v1::payment_service_server::PaymentServiceServer;
use tde_proto::subsidies::v1::subsidy_service_server::SubsidyServiceServer;
use tde_runtime::auth::MethodPolicy;
use tde_runtime::config::SectionSpec;
use tde_runtime::inbox::ConsumerTask;
use tde_runtime::{ServiceContext, ServiceModule};

/// The service's name: database, stream `TDE_SUBSIDIES` and subjects `tde.subsidies.>`.
pub const SERVICE: &str = "subsidies";

/// Its gRPC services.
pub const GRPC_SERVICES: &[&str] = &[
    "tde.subsidies.v1.EnvelopeService",
    "tde.subsidies.v1.SubsidyService",
    "tde.subsidies.v1.PaymentService",
    "tde.subsidies.v1.LedgerService",
];

/// The subsidies service as the runtime starts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubsidiesModule;

#[async_trait]
impl ServiceModule for SubsidiesModule {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        GRPC_SERVICES
    }

    fn settings_section(&self) -> Option<SectionSpec> {
        Some(SectionSpec::of::<settings::SubsidySettings>())
    }

    fn policies(&self) -> &'static [MethodPolicy] {
        api::policy::POLICIES
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        storage::migrations::Migrator::up(db, None).await
    }

    fn add_routes(&self, ctx: &ServiceContext, routes: &mut RoutesBuilder) {
        let limit = ctx.max_message_bytes();
        let api = api::SubsidiesApi::new(ctx.clone());
        routes.add_service(
            EnvelopeServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        routes.add_service(
            SubsidyServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        routes.add_service(
            PaymentServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        routes.add_service(
            LedgerServiceServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
    }

    /// The plans events open, amend, unlock and stop subsidies; the territory events feed
    /// the copy of the territories.
    fn consumers(&self, ctx: &ServiceContext) -> Vec<ConsumerTask> {
        vec![
            ConsumerTask::following(ctx, "plans", "plans", Arc::new(events::PlanEvents)),
            ConsumerTask::following(
                ctx,
                "territories",
                "territories",
                Arc::new(events::TerritoryEvents),
            ),
        ]
    }
}
