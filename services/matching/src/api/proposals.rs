//! tde.matching.v1.ProposalService: proposals to providers and their answers.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseTransaction, TransactionTrait as _};
use tonic::{Request, Response, Status};

use tde_proto::matching::v1 as pb;
use tde_proto::matching::v1::proposal_service_server::ProposalService;
use tde_runtime::ApiError;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::idempotency::IdempotencyKey;
use tde_runtime::outbox::NewEvent;

use super::convert;
use super::needs::Reach;
use super::{MatchingApi, not_found, proposal_resource, speaking_provider, stale, visible_to};
use crate::domain::need::Need;
use crate::domain::proposal::{Proposal, ProposalStatus};
use crate::domain::provider::Provider;
use crate::domain::ranking;
use crate::events;
use crate::storage::{self, AssignmentRecord, ProposalFilter};

pub const DEFAULT_PAGE: u64 = 100;
pub const MAX_PAGE: u64 = 500;

impl MatchingApi {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_proposal(
        &self,
        caller: &Caller,
        need: &Need,
        provider: &Provider,
        score: f64,
        rank: u32,
        justification: String,
        now: DateTime<Utc>,
    ) -> Proposal {
        Proposal {
            id: uuid::Uuid::now_v7().to_string(),
            need_id: need.id.clone(),
            provider_id: provider.id.clone(),
            territory_id: need.territory_id.clone(),
            region_code: need.region_code.clone(),
            status: ProposalStatus::Pending,
            score,
            rank,
            override_justification: justification,
            decline_reason: String::new(),
            deadline: now + Duration::hours(i64::from(self.settings.proposal_deadline_hours)),
            created_by: caller.actor.clone(),
            created_at: now,
            answered_at: None,
            version: 1,
            batch_id: None,
        }
    }

    /// The proposal `id` as the caller may see it: a provider only its own, others those of
    /// their territories. Any other is NOT_FOUND, exactly as a missing one.
    async fn visible_proposal(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        caller: &Caller,
        id: &str,
    ) -> Result<Proposal, ApiError> {
        let found = storage::find_proposal(db, id).await?;
        let visible = match speaking_provider(caller) {
            Some(me) => found.filter(|p| me == Some(p.provider_id.as_str())),
            None => found.filter(|p| caller.may_see(&p.territory_id, &p.region_code)),
        };
        visible.ok_or_else(|| not_found("proposal", id, None))
    }

    async fn reply(&self, p: &Proposal) -> Result<pb::Proposal, ApiError> {
        let need = storage::find_need(&self.ctx.db, &p.need_id).await?;
        Ok(convert::proposal_to_pb(p, need.as_ref()))
    }

    async fn propose(
        &self,
        caller: &Caller,
        r: pb::ProposeProviderRequest,
    ) -> Result<Proposal, ApiError> {
        let need_id = parse_id("need_id", &r.need_id)?.to_string();
        let provider_id = parse_id("provider_id", &r.provider_id)?.to_string();
        tde_runtime::input::multiline("justification", &r.justification, 4_000)?;
        let key = IdempotencyKey::of(caller, "proposal", &r.request_id, &r)?;
        caller.concerns(super::need_resource(&need_id));
        let txn = self.ctx.db.begin().await?;
        let need = self
            .visible_need(&txn, caller, &need_id, Some("need_id"))
            .await?;
        let id = uuid::Uuid::now_v7().to_string();
        if let Some(existing) = IdempotencyKey::claim(key.as_ref(), &txn, &id).await? {
            drop(txn);
            caller.concerns(proposal_resource(&existing));
            return storage::find_proposal(&self.ctx.db, &existing)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("replayed proposal {existing} is gone"))
                });
        }
        if !need.is_open() {
            return Err(ApiError::FailedPrecondition {
                kind: "STATE",
                subject: need.status.clone(),
                description: "the need is not open: it has a provider, no skill, or is over".into(),
            });
        }
        if !storage::pending_of_need(&txn, &need.id).await?.is_empty() {
            return Err(ApiError::FailedPrecondition {
                kind: "PENDING",
                subject: need.id.clone(),
                description: "a proposal of this need waits for its answer".into(),
            });
        }
        // Providers that declined or let a proposal of this need expire are not asked again.
        let asked = storage::providers_asked(&txn, &need.id).await?;
        if asked.contains(&provider_id) {
            return Err(ApiError::FailedPrecondition {
                kind: "ALREADY_ASKED",
                subject: provider_id,
                description: "this provider already answered or let a proposal of this need expire"
                    .into(),
            });
        }
        let pool = self.pool_for(&txn, Some(&need), Reach::Everyone).await?;
        let ranking = ranking::rank(
            &need,
            pool.providers.iter().map(|p| (p, pool.stats(&p.id))),
            &self.settings.weights,
        );
        if let Some((_, rule, detail)) = ranking
            .exclusions
            .iter()
            .find(|(p, ..)| p.id == provider_id)
        {
            return Err(ApiError::FailedPrecondition {
                kind: "HARD_RULE",
                subject: rule.as_str().to_string(),
                description: format!("the provider is excluded ({}): {detail}", rule.as_str()),
            });
        }
        let eligible: Vec<_> = ranking
            .candidates
            .iter()
            .filter(|c| !asked.contains(&c.provider.id))
            .collect();
        let Some((position, chosen)) = eligible
            .iter()
            .enumerate()
            .find(|(_, c)| c.provider.id == provider_id)
        else {
            return Err(not_found("provider", &provider_id, Some("provider_id")));
        };
        // Someone other than the best ranked still available: an override, justified in
        // writing and kept with the proposal (its audit record names the proposal).
        let justification = r.justification.trim().to_string();
        if position > 0 && justification.chars().count() < 20 {
            return Err(ApiError::invalid(
                "justification",
                format!(
                    "the best ranked provider is {} ({}): proposing another needs a written justification of at least 20 characters",
                    eligible[0].provider.name, eligible[0].provider.id
                ),
            ));
        }
        let now = tde_runtime::api::now();
        let mut proposal = self.new_proposal(
            caller,
            &need,
            chosen.provider,
            chosen.score,
            chosen.rank,
            if position > 0 {
                justification
            } else {
                String::new()
            },
            now,
        );
        proposal.id = id;
        caller.concerns(if position > 0 {
            format!("{}:override", proposal_resource(&proposal.id))
        } else {
            proposal_resource(&proposal.id)
        });
        storage::insert_proposal(&txn, &proposal).await?;
        let event = events::proposal_sent(
            &proposal,
            &need,
            &chosen.provider.name,
            &chosen.provider.contact.email,
        );
        self.commit(txn, vec![event]).await?;
        Ok(proposal)
    }

    async fn commit(
        &self,
        txn: DatabaseTransaction,
        events: Vec<NewEvent>,
    ) -> Result<(), ApiError> {
        tde_runtime::outbox::enqueue(&txn, events).await?;
        txn.commit().await?;
        self.ctx.outbox.wake();
        Ok(())
    }

    /// Locks nothing: the version check of the update refuses a concurrent answer.
    async fn answer(
        &self,
        caller: &Caller,
        id: &str,
        etag: &str,
        decline: Option<&str>,
    ) -> Result<Proposal, ApiError> {
        let id = parse_id("id", id)?.to_string();
        caller.concerns(proposal_resource(&id));
        let txn = self.ctx.db.begin().await?;
        let mut proposal = self.visible_proposal(&txn, caller, &id).await?;
        if !etag.is_empty() && etag != proposal.version.to_string() {
            return Err(stale("proposal", &id));
        }
        let expected = proposal.version;
        let now = tde_runtime::api::now();
        let mut published = Vec::new();
        match decline {
            Some(reason) => {
                tde_runtime::input::multiline("reason", reason, 2_000)?;
                proposal.decline(reason, now)?;
                published.push(events::proposal_declined(&proposal));
            }
            None => {
                proposal.accept(now)?;
                let mut need = storage::find_need(&txn, &proposal.need_id)
                    .await?
                    .ok_or_else(|| not_found("need", &proposal.need_id, None))?;
                if !need.is_open() {
                    return Err(ApiError::FailedPrecondition {
                        kind: "STATE",
                        subject: need.status.clone(),
                        description: "the action no longer needs a provider".into(),
                    });
                }
                // Capacity may have gone to other actions since the proposal was sent.
                let provider = storage::find_provider(&txn, &proposal.provider_id)
                    .await?
                    .ok_or_else(|| not_found("provider", &proposal.provider_id, None))?;
                let load = storage::provider_stats_of(
                    &txn,
                    &proposal.provider_id,
                    Some((need.planned_start, need.planned_end)),
                    now,
                )
                .await?
                .load_over_period;
                if load >= provider.provider.capacity {
                    return Err(ApiError::FailedPrecondition {
                        kind: "CAPACITY",
                        subject: proposal.provider_id.clone(),
                        description: format!(
                            "{load} action(s) already over this period for a capacity of {}",
                            provider.provider.capacity
                        ),
                    });
                }
                for mut other in storage::pending_of_need(&txn, &need.id).await? {
                    let v = other.version;
                    if other.id != proposal.id && other.withdraw(now) {
                        storage::update_proposal(&txn, &other, v).await?;
                    }
                }
                storage::save_assignment(
                    &txn,
                    &AssignmentRecord::new(&need, &proposal.provider_id, now),
                )
                .await?;
                // The need closes at once (no second proposal); the plans event that
                // follows carries the same provider and a newer version.
                need.provider_id = Some(proposal.provider_id.clone());
                storage::save_need(&txn, &need, now).await?;
                published.push(events::assignment_accepted(&proposal));
            }
        }
        if !storage::update_proposal(&txn, &proposal, expected).await? {
            return Err(stale("proposal", &id));
        }
        self.commit(txn, published).await?;
        Ok(proposal)
    }
}

/// Expires pending proposals past their deadline, with their events; returns how many.
pub async fn expire_due(ctx: &tde_runtime::ServiceContext) -> Result<usize, sea_orm::DbErr> {
    let now = tde_runtime::api::now();
    let due = storage::due_proposals(&ctx.db, now, 200).await?;
    let mut expired = 0;
    for p in due {
        let txn = ctx.db.begin().await?;
        // Read again inside the transaction: an answer may have come meanwhile.
        let Some(mut p) = storage::find_proposal(&txn, &p.id).await? else {
            continue;
        };
        let expected = p.version;
        if p.expire(now) && storage::update_proposal(&txn, &p, expected).await? {
            tde_runtime::outbox::enqueue(&txn, vec![events::proposal_expired(&p)]).await?;
            txn.commit().await?;
            expired += 1;
        }
    }
    if expired > 0 {
        ctx.outbox.wake();
    }
    Ok(expired)
}

#[tonic::async_trait]
impl ProposalService for MatchingApi {
    async fn propose_provider(
        &self,
        request: Request<pb::ProposeProviderRequest>,
    ) -> Result<Response<pb::ProposeProviderResponse>, Status> {
        let caller = Caller::of(&request);
        let p = self.propose(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::ProposeProviderResponse {
            proposal: Some(self.reply(&p).await?),
        }))
    }

    async fn get_proposal(
        &self,
        request: Request<pb::GetProposalRequest>,
    ) -> Result<Response<pb::GetProposalResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(proposal_resource(&id));
        let p = self.visible_proposal(&self.ctx.db, &caller, &id).await?;
        Ok(Response::new(pb::GetProposalResponse {
            proposal: Some(self.reply(&p).await?),
        }))
    }

    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Result<Response<pb::ListProposalsResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let need_id = if r.need_id.is_empty() {
            None
        } else {
            Some(parse_id("need_id", &r.need_id)?.to_string())
        };
        let status = convert::proposal_status_from_pb("status", r.status)?;
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        caller.concerns("proposals");
        let provider_id = match speaking_provider(&caller) {
            // A provider token without a provider id sees nothing.
            Some(None) => {
                return Ok(Response::new(pb::ListProposalsResponse::default()));
            }
            Some(Some(me)) => Some(me.to_string()),
            None => None,
        };
        let filter = ProposalFilter {
            need_id,
            status,
            provider_id,
            visible_to: visible_to(&caller),
        };
        let rows = storage::list_proposals(&self.ctx.db, &filter, page.after(), page.fetch())
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |p| p.id.clone());
        let mut proposals = Vec::with_capacity(rows.len());
        for p in &rows {
            proposals.push(self.reply(p).await?);
        }
        Ok(Response::new(pb::ListProposalsResponse {
            proposals,
            next_page_token,
        }))
    }

    async fn accept_proposal(
        &self,
        request: Request<pb::AcceptProposalRequest>,
    ) -> Result<Response<pb::AcceptProposalResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self.answer(&caller, &r.id, &r.etag, None).await?;
        Ok(Response::new(pb::AcceptProposalResponse {
            proposal: Some(self.reply(&p).await?),
        }))
    }

    async fn decline_proposal(
        &self,
        request: Request<pb::DeclineProposalRequest>,
    ) -> Result<Response<pb::DeclineProposalResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let p = self
            .answer(&caller, &r.id, &r.etag, Some(&r.reason))
            .await?;
        Ok(Response::new(pb::DeclineProposalResponse {
            proposal: Some(self.reply(&p).await?),
        }))
    }
}
