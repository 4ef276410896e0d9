//! What the notifications service holds about people — recipients with their preferences,
//! the notifications planned for them and the delivery log — for the platform's RGPD export
//! and erasure (`tde_runtime::holdings`).

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbErr, TransactionTrait as _};

use tde_proto::personal_data::v1 as pb;
use tde_runtime::api::Caller;
use tde_runtime::holdings::{self, PersonalDataHolder};
use tde_runtime::personal_data::fingerprint;
use tde_runtime::{ApiError, ServiceContext};

use crate::storage;

pub struct NotificationsHolder {
    ctx: ServiceContext,
}

impl NotificationsHolder {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}

/// The territories among `ids` that `caller` may see (a territory this service does not
/// know is seen by national callers only).
async fn visible(
    db: &impl ConnectionTrait,
    caller: &Caller,
    ids: Vec<String>,
) -> Result<Vec<String>, DbErr> {
    let mut seen = Vec::new();
    for id in ids {
        let region = storage::find_territory(db, &id)
            .await?
            .map(|t| t.region_code)
            .unwrap_or_default();
        if caller.may_see(&id, &region) {
            seen.push(id);
        }
    }
    Ok(seen)
}

fn fields(pairs: impl IntoIterator<Item = (&'static str, String)>) -> HashMap<String, String> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[tonic::async_trait]
impl PersonalDataHolder for NotificationsHolder {
    async fn export(&self, caller: &Caller, email: &str) -> Result<Vec<pb::Holding>, ApiError> {
        let sha = fingerprint(email);
        let db = &self.ctx.db;
        let territories =
            visible(db, caller, storage::territories_knowing(db, &sha).await?).await?;
        let mut holdings = Vec::new();
        for r in storage::recipients_by_fingerprint(db, &sha).await? {
            if !territories.contains(&r.territory_id) {
                continue;
            }
            holdings.push(pb::Holding {
                kind: "recipient".into(),
                object_id: r.territory_id.clone(),
                territory_id: r.territory_id.clone(),
                fields: fields([
                    ("name", r.name.clone()),
                    ("email", r.email.clone()),
                    ("role", r.role.clone()),
                    ("language", r.language.clone()),
                    ("channel", r.channel.as_str().to_string()),
                    ("webhook_url", r.webhook_url.clone().unwrap_or_default()),
                    ("reminders", r.reminders.to_string()),
                ]),
            });
        }
        let (notifications, deliveries) = storage::notifications_naming(db, &sha).await?;
        for n in notifications
            .into_iter()
            .filter(|n| territories.contains(&n.territory_id))
        {
            holdings.push(pb::Holding {
                kind: "notification".into(),
                object_id: n.id,
                territory_id: n.territory_id,
                fields: fields([
                    ("recipient", n.recipient),
                    ("kind", n.kind),
                    ("channel", n.channel),
                    ("status", n.status),
                    ("meeting_id", n.meeting_id),
                    ("due_at", n.due_at.to_rfc3339()),
                    (
                        "sent_at",
                        n.sent_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    ),
                ]),
            });
        }
        for d in deliveries
            .into_iter()
            .filter(|d| territories.contains(&d.territory_id))
        {
            holdings.push(pb::Holding {
                kind: "delivery".into(),
                object_id: d.id,
                territory_id: d.territory_id,
                fields: fields([
                    ("recipient", d.recipient),
                    ("notification_id", d.notification_id),
                    ("channel", d.channel),
                    ("outcome", d.outcome),
                    ("attempted_at", d.attempted_at.to_rfc3339()),
                ]),
            });
        }
        Ok(holdings)
    }

    async fn erase(&self, caller: &Caller, email: &str) -> Result<Vec<pb::ErasureStep>, ApiError> {
        let sha = fingerprint(email);
        let txn = self.ctx.db.begin().await?;
        let territories = visible(
            &txn,
            caller,
            storage::territories_knowing(&txn, &sha).await?,
        )
        .await?;
        let erased = storage::erase_person(&txn, &sha, Some(&territories)).await?;
        txn.commit().await?;
        Ok([
            holdings::step("recipient", erased.recipients, "deleted"),
            holdings::step("notification", erased.dropped, "dropped"),
            holdings::step("notification", erased.notifications, "redacted"),
            holdings::step("delivery", erased.deliveries, "redacted"),
        ]
        .into_iter()
        .flatten()
        .collect())
    }
}
