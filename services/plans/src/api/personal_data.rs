//! What the plans service holds about people — charter signatories, named by their address —
//! for the platform's RGPD export and erasure (`tde_runtime::holdings`).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use tde_proto::personal_data::v1 as pb;
use tde_runtime::api::Caller;
use tde_runtime::holdings::{self, PersonalDataHolder};
use tde_runtime::personal_data::fingerprint;
use tde_runtime::{ApiError, ServiceContext};

use crate::domain::plan::Plan;
use crate::storage;

pub struct PlansHolder {
    ctx: ServiceContext,
}

impl PlansHolder {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}

/// Erases the person with `fingerprint` from the charters of the plans `keep` selects: the
/// signature's role and date stay, name and address go. Returns how many plans changed.
/// Shared by the erasure event's consumer and the holder.
pub async fn erase_signatories(
    txn: &impl ConnectionTrait,
    fingerprint: &str,
    now: DateTime<Utc>,
    keep: impl Fn(&Plan) -> bool,
) -> Result<u64, DbErr> {
    let mut changed = 0;
    for mut plan in storage::plans_naming(txn, fingerprint).await? {
        if !keep(&plan) {
            continue;
        }
        let expected = plan.version;
        if plan.erase_person(fingerprint, now) {
            storage::update_plan(txn, &plan, expected).await?;
            changed += 1;
            tracing::info!(plan_id = %plan.id, "signatory's personal data erased");
        }
    }
    Ok(changed)
}

#[tonic::async_trait]
impl PersonalDataHolder for PlansHolder {
    async fn export(&self, caller: &Caller, email: &str) -> Result<Vec<pb::Holding>, ApiError> {
        let fp = fingerprint(email);
        let mut holdings = Vec::new();
        for plan in storage::plans_naming(&self.ctx.db, &fp).await? {
            if !caller.may_see(&plan.territory_id, &plan.region_code) {
                continue;
            }
            for version in &plan.charter.versions {
                for s in version
                    .signatories
                    .iter()
                    .filter(|s| s.email_fingerprint().as_deref() == Some(fp.as_str()))
                {
                    let mut fields: std::collections::HashMap<String, String> = [
                        ("name", s.name.clone()),
                        ("email", s.email.clone().unwrap_or_default()),
                        ("role", s.role.clone()),
                        ("charter_version", version.number.to_string()),
                        ("plan_title", plan.title.clone()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    if let Some(day) = s.signed_on {
                        fields.insert("signed_on".into(), day.to_string());
                    }
                    holdings.push(pb::Holding {
                        kind: "charter_signatory".into(),
                        object_id: plan.id.clone(),
                        territory_id: plan.territory_id.clone(),
                        fields,
                    });
                }
            }
        }
        Ok(holdings)
    }

    async fn erase(&self, caller: &Caller, email: &str) -> Result<Vec<pb::ErasureStep>, ApiError> {
        let fp = fingerprint(email);
        let txn = self.ctx.db.begin().await?;
        let changed = erase_signatories(&txn, &fp, tde_runtime::api::now(), |plan| {
            caller.may_see(&plan.territory_id, &plan.region_code)
        })
        .await?;
        txn.commit().await?;
        Ok(holdings::step("charter_signatory", changed, "redacted")
            .into_iter()
            .collect())
    }
}
