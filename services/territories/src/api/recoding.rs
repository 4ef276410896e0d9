//! ResolveGeographyConflict: the programme team settles what a geography vintage could not
//! decide alone (the rules are in `domain::recoding`). Every territory of the conflict changes
//! in one transaction, with its events.

use sea_orm::TransactionTrait;

use tde_proto::territories::v1 as pb;
use tde_runtime::api::{Caller, parse_id};
use tde_runtime::outbox::{self, NewEvent};
use tde_runtime::{ApiError, ServiceContext};

use super::convert;
use super::territories::{TerritoryCache, resource_name};
use crate::domain::recoding::{self, IssueKind, Resolution};
use crate::domain::territory::Territory;
use crate::domain::{DomainError, Violations};
use crate::events;
use crate::storage::{self, geography};

/// Longest etag accepted (they are version numbers).
const MAX_ETAG: usize = 32;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        resource_type: "territory",
        name: id.to_string(),
        field: None,
    }
}

fn stale(id: &str) -> ApiError {
    ApiError::Aborted {
        resource_type: "territory",
        name: id.to_string(),
    }
}

/// Writes `t` if still at `expected`; a concurrent registration of the same authority (the
/// unique index) is a stale read too.
async fn write(
    txn: &sea_orm::DatabaseTransaction,
    t: &Territory,
    expected: i64,
) -> Result<(), ApiError> {
    match storage::update(txn, t, expected).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(stale(&t.id)),
        Err(e) if storage::is_unique_violation(&e) => Err(stale(&t.id)),
        Err(e) => Err(e.into()),
    }
}

/// Resolves the geography issue of territory `r.id`; returns it and the other territories of
/// the conflict as they are now.
pub async fn resolve(
    ctx: &ServiceContext,
    cache: &TerritoryCache,
    caller: &Caller,
    r: pb::ResolveGeographyConflictRequest,
) -> Result<(Territory, Vec<Territory>), ApiError> {
    let id = parse_id("id", &r.id)?.to_string();
    let mut v = Violations::default();
    let resolution = v.check(convert::resolution_from_pb("resolution", r.resolution));
    // Whether a reason is required depends on the issue: the shape is checked now.
    v.check(recoding::check_reason(&r.reason, false));
    let successor_code = r.successor_code.trim().to_ascii_uppercase();
    if successor_code.chars().count() > 9 || successor_code.chars().any(char::is_control) {
        v.add(
            "successor_code",
            "an official code: INSEE code of a commune or département, SIREN of an EPCI",
        );
    }
    if r.etag.len() > MAX_ETAG {
        v.add("etag", "is not an etag of this service");
    }
    v.into_result()?;
    let Some(resolution) = resolution else {
        return Err(ApiError::invalid("resolution", "is required"));
    };
    caller.concerns(resource_name(&id));

    let txn = ctx.db.begin().await?;
    // Which conflict it is: read first, then lock its territories in id order (the order
    // every writer of several territories takes), then check again.
    let Some(first) = storage::find(&txn, &id)
        .await?
        .filter(|t| caller.may_see(&t.id, &t.region_code))
    else {
        return Err(not_found(&id));
    };
    let issue = recoding::issue_for(&first, resolution)?.clone();
    let now = tde_runtime::api::now();
    let reason = r.reason.trim();
    let mut published: Vec<NewEvent> = Vec::new();
    let (survivor, others) = match issue.kind {
        IssueKind::Merged => {
            if !successor_code.is_empty() {
                return Err(ApiError::invalid(
                    "successor_code",
                    "only for a VANISHED issue: a MERGED territory continues as the commune it merged into",
                ));
            }
            let code = issue.successor_code.clone().unwrap_or_default();
            let mut members =
                storage::recoding::conflict_for_update(&txn, &id, first.kind, &code).await?;
            let Some(pos) = members.iter().position(|t| t.id == id) else {
                return Err(not_found(&id));
            };
            let mut survivor = members.remove(pos);
            let same_issue = survivor
                .geography_issue
                .as_ref()
                .is_some_and(|i| i.successor_code.as_deref() == Some(code.as_str()));
            if !same_issue || (!r.etag.is_empty() && r.etag != survivor.etag()) {
                return Err(stale(&id));
            }
            let Some(facts) = geography::authority_facts(&txn, survivor.kind, &code).await? else {
                return Err(ApiError::FailedPrecondition {
                    kind: "GEOGRAPHY",
                    subject: code.clone(),
                    description: format!(
                        "{} {code} is not in the loaded geography: import the vintage that raised the issue first",
                        survivor.kind.as_str()
                    ),
                });
            };
            let expected = survivor.version;
            let versions: Vec<i64> = members.iter().map(|t| t.version).collect();
            let settled = recoding::resolve_merged(
                &mut survivor,
                &mut members,
                resolution,
                facts,
                &caller.actor,
                reason,
                now,
            )?;
            if settled.recoded {
                published.push(events::code_changed(&survivor));
            }
            if let Some(old_name) = &settled.updated_from {
                published.push(events::geography_updated(
                    &survivor,
                    old_name,
                    &issue.vintage,
                ));
            }
            for (i, from) in &settled.withdrawn {
                published.push(events::stage_changed(&members[*i], *from));
                published.push(events::withdrawn(&members[*i], *from));
            }
            for t in std::iter::once(&survivor).chain(&members) {
                published.push(events::merge_conflict_resolved(
                    t,
                    Some(resolution),
                    &survivor.id,
                    reason,
                    &caller.actor,
                    now,
                ));
            }
            // In id order, as they were locked.
            let mut writes: Vec<(&Territory, i64)> = members.iter().zip(versions).collect();
            writes.push((&survivor, expected));
            writes.sort_by(|a, b| a.0.id.cmp(&b.0.id));
            for (t, expected) in writes {
                write(&txn, t, expected).await?;
            }
            (survivor, members)
        }
        IssueKind::Vanished => {
            let Some(mut t) = storage::find_for_update(&txn, &id).await? else {
                return Err(not_found(&id));
            };
            let still = t
                .geography_issue
                .as_ref()
                .is_some_and(|i| i.kind == IssueKind::Vanished);
            if !still || (!r.etag.is_empty() && r.etag != t.etag()) {
                return Err(stale(&id));
            }
            let successor = match (resolution, successor_code.is_empty()) {
                (Resolution::Keep, false) => {
                    Some(successor_facts(&txn, &t, &successor_code).await?)
                }
                (Resolution::Withdraw, false) => {
                    return Err(ApiError::invalid(
                        "successor_code",
                        "only with KEEP: the authority the territory now is",
                    ));
                }
                _ => None,
            };
            let expected = t.version;
            let withdrawn = recoding::resolve_vanished(
                &mut t,
                resolution,
                successor.map(|facts| (successor_code.as_str(), facts)),
                &caller.actor,
                reason,
                now,
            )?;
            if resolution == Resolution::Keep {
                published.push(events::code_changed(&t));
            }
            if let Some(from) = withdrawn {
                published.push(events::stage_changed(&t, from));
                published.push(events::withdrawn(&t, from));
            }
            let survivor_id = if resolution == Resolution::Keep {
                t.id.clone()
            } else {
                String::new()
            };
            published.push(events::merge_conflict_resolved(
                &t,
                Some(resolution),
                &survivor_id,
                reason,
                &caller.actor,
                now,
            ));
            write(&txn, &t, expected).await?;
            (t, Vec::new())
        }
    };
    outbox::enqueue(&txn, published).await?;
    let _evict: Vec<_> = std::iter::once(&survivor)
        .chain(&others)
        .map(|t| cache.evict_on_drop(&t.id))
        .collect();
    txn.commit().await?;
    ctx.outbox.wake();
    tracing::info!(
        territory_id = %survivor.id,
        resolution = resolution.as_str(),
        others = others.len(),
        code = %survivor.official_code,
        "geography issue resolved"
    );
    Ok((survivor, others))
}

/// The facts of the authority a VANISHED territory now is: it must exist in the loaded
/// geography, and no other territory may stand for it or be merging into it.
async fn successor_facts(
    txn: &sea_orm::DatabaseTransaction,
    t: &Territory,
    code: &str,
) -> Result<crate::domain::territory::AuthorityFacts, ApiError> {
    t.kind.validate_code(code).map_err(|e| match e {
        DomainError::Invalid(mut v) => {
            for violation in &mut v {
                violation.field = "successor_code".into();
            }
            ApiError::InvalidArgument(v)
        }
        other => other.into(),
    })?;
    let Some(facts) = geography::authority_facts(txn, t.kind, code).await? else {
        return Err(ApiError::NotFound {
            resource_type: t.kind.as_str(),
            name: code.to_string(),
            field: Some("successor_code"),
        });
    };
    let held = storage::find_by_code(txn, t.kind, code)
        .await?
        .map(|o| o.id)
        .filter(|o| *o != t.id);
    let merging = storage::recoding::merging_into(txn, t.kind, code).await?;
    if let Some(other) = held.or_else(|| merging.into_iter().next()) {
        return Err(ApiError::FailedPrecondition {
            kind: "GEOGRAPHY_ISSUE",
            subject: other.clone(),
            description: format!(
                "territory {other} already stands for {} {code}: one territory per authority",
                t.kind.as_str()
            ),
        });
    }
    Ok(facts)
}

/// The response: both sides as the caller may see them.
pub fn response(
    caller: &Caller,
    survivor: &Territory,
    others: &[Territory],
) -> pb::ResolveGeographyConflictResponse {
    pb::ResolveGeographyConflictResponse {
        territory: Some(convert::for_caller(
            convert::territory_to_pb(survivor),
            caller,
        )),
        others: others
            .iter()
            .map(|t| convert::for_caller(convert::territory_to_pb(t), caller))
            .collect(),
    }
}
