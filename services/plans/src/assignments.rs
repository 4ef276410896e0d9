//! The consumer of the matching events (stream `TDE_MATCHING`): a provider that accepted a
//! proposal (`assignment.accepted`) becomes the action's provider, once, whatever the
//! redeliveries.
//!
//! A provider the project lead set by hand (AssignProvider) is the lead's decision: an
//! acceptance arriving after it never replaces it. The refusal is logged and written to the
//! audit trail; matching learns of the hand-set provider from its `action.provider_assigned`
//! and marks the accepted proposal superseded.

use async_trait::async_trait;
use prost::Message as _;
use sea_orm::{
    ColumnTrait as _, DatabaseTransaction, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    Set,
};

use tde_proto::matching::v1 as matching_pb;
use tde_runtime::audit::entity as audit;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};
use tde_runtime::outbox;

use crate::domain::action::ActionStatus;
use crate::events;
use crate::storage;

/// Who the history names as the author of an assignment made by matching.
const ASSIGNED_BY: &str = "tde-matching";

/// The audit resource of an acceptance the plan did not apply: `actions/<id>` and this.
pub const ACCEPTANCE_REFUSED: &str = "acceptance_refused";

/// Writes to the audit trail, in the consumer's transaction, that the acceptance of
/// `proposal_id` was not applied to `action_id`; once per proposal, whatever the
/// redeliveries (even under a new event id).
async fn audit_refusal(
    txn: &DatabaseTransaction,
    action_id: &str,
    proposal_id: &str,
) -> Result<(), HandlerError> {
    let resource = format!(
        "{}:{ACCEPTANCE_REFUSED}",
        crate::api::action_resource(action_id)
    );
    let already = audit::Entity::find()
        .filter(audit::Column::Service.eq(crate::SERVICE))
        .filter(audit::Column::Resource.eq(resource.clone()))
        .filter(audit::Column::RequestId.eq(proposal_id))
        .count(txn)
        .await?;
    if already > 0 {
        return Ok(());
    }
    audit::Entity::insert(audit::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        at: Set(tde_runtime::api::now()),
        service: Set(crate::SERVICE.to_string()),
        // Not a gRPC call: the event that asked for the change.
        method: Set("/tde.matching.v1.events/AssignmentAccepted".into()),
        resource: Set(resource),
        subject: Set(ASSIGNED_BY.into()),
        client_id: Set(String::new()),
        role: Set("service".into()),
        request_id: Set(proposal_id.to_string()),
        outcome: Set("FAILED_PRECONDITION".into()),
        kind: Set(tde_runtime::audit::AuditKind::Write.as_str().into()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

pub struct MatchingEvents;

#[async_trait]
impl EventHandler for MatchingEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if event.event_type != "tde.matching.v1.AssignmentAccepted" {
            return Ok(());
        }
        let accepted = matching_pb::AssignmentAccepted::decode(event.payload.clone())?;
        let Some(found) = storage::find_action(txn, &accepted.need_id).await? else {
            tracing::warn!(action_id = %accepted.need_id, "accepted assignment of an unknown action: ignored");
            return Ok(());
        };
        // The plan's row is locked first, as every change of its actions does.
        let Some(plan) = storage::find_plan_for_update(txn, &found.plan_id).await? else {
            return Ok(());
        };
        let Some(mut record) = storage::find_action(txn, &accepted.need_id).await? else {
            return Ok(());
        };
        let provider = Some(accepted.provider_id.clone());
        if record.action.provider_id == provider {
            // Already set (a redelivery, or set by hand to the same provider).
            return Ok(());
        }
        if let Some(kept) = &record.action.provider_id {
            // Set by hand after the proposal went out: the lead's choice stands.
            tracing::warn!(
                action_id = %record.action.id,
                kept_provider_id = %kept,
                accepted_provider_id = %accepted.provider_id,
                proposal_id = %accepted.proposal_id,
                "accepted assignment of an action whose provider was set by hand: the hand-set provider is kept"
            );
            return audit_refusal(txn, &record.action.id, &accepted.proposal_id).await;
        }
        if plan.ensure_open("assign providers").is_err()
            || !matches!(
                record.action.status,
                ActionStatus::Planned | ActionStatus::InProgress
            )
        {
            tracing::warn!(
                action_id = %record.action.id,
                status = record.action.status.as_str(),
                "accepted assignment of an action that no longer takes a provider: ignored"
            );
            return audit_refusal(txn, &record.action.id, &accepted.proposal_id).await;
        }
        let expected = record.version;
        record.action.provider_id = provider;
        record.touch(event.time.max(record.updated_at));
        if !storage::update_action(txn, &record, expected).await? {
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "action {} changed during the assignment",
                record.action.id
            )));
        }
        let facts = events::action_facts(txn, &plan, &record).await?;
        let assigned = events::provider_assigned(facts, None, ASSIGNED_BY, record.updated_at);
        outbox::enqueue(txn, vec![assigned]).await?;
        tracing::info!(action_id = %record.action.id, provider_id = %accepted.provider_id, "provider assigned from an accepted proposal");
        Ok(())
    }
}
