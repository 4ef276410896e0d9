//! The consumer of the matching events (stream `TDE_MATCHING`): a provider that accepted a
//! proposal (`assignment.accepted`) becomes the action's provider, once, whatever the
//! redeliveries.

use async_trait::async_trait;
use prost::Message as _;
use sea_orm::DatabaseTransaction;

use tde_proto::matching::v1 as matching_pb;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};
use tde_runtime::outbox;

use crate::domain::action::ActionStatus;
use crate::events;
use crate::storage;

/// Who the history names as the author of an assignment made by matching.
const ASSIGNED_BY: &str = "tde-matching";

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
            return Ok(());
        }
        let expected = record.version;
        let previous = record.action.provider_id.clone();
        record.action.provider_id = provider;
        record.touch(event.time.max(record.updated_at));
        if !storage::update_action(txn, &record, expected).await? {
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "action {} changed during the assignment",
                record.action.id
            )));
        }
        let facts = events::action_facts(txn, &plan, &record).await?;
        let assigned =
            events::provider_assigned(facts, previous.as_deref(), ASSIGNED_BY, record.updated_at);
        outbox::enqueue(txn, vec![assigned]).await?;
        tracing::info!(action_id = %record.action.id, provider_id = %accepted.provider_id, "provider assigned from an accepted proposal");
        Ok(())
    }
}
