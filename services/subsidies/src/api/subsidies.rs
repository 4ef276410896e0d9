//! tde.subsidies.v1.SubsidyService: reading subsidies, and deciding them with four eyes.

use tonic::{Request, Response, Status};

use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::subsidy_service_server::SubsidyService;
use tde_runtime::ApiError;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::format::euros;

use super::convert::{self, payment_to_pb};
use super::{
    DEFAULT_PAGE, MAX_PAGE, SubsidiesApi, filter_id, filter_region, not_found, refuse_invalid,
    subsidy_resource, visible_to,
};
use crate::domain::money::{self, advance_of};
use crate::domain::payment::{Payment, PaymentKind, Tranches};
use crate::domain::subsidy::{
    MAX_REFERENCE, MAX_TEXT, ProposalInput, Subsidy, check_commitment_number, check_refusal_reason,
};
use crate::domain::{DomainError, multiline, text};
use crate::events;
use crate::storage::{self, Entry, EntryKind, SubsidyFilter};

/// A required text of several lines: `why` says what it is for.
fn required_text(field: &str, value: &str, why: &str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, format!("is required: {why}")));
    }
    multiline(field, value, MAX_TEXT)
}

impl SubsidiesApi {
    async fn propose(
        &self,
        caller: &Caller,
        r: pb::ProposeDecisionRequest,
    ) -> Result<Subsidy, ApiError> {
        let id = parse_id("id", &r.id);
        let legal_act = convert::legal_act_from_pb(r.legal_act.as_ref());
        let input = ProposalInput {
            amount_cents: r.amount_cents,
            legal_act: legal_act.as_ref().ok().cloned().flatten(),
            beneficiary_siret: &r.beneficiary_siret,
            budget_year: r.budget_year,
            commitment_number: &r.commitment_number,
            comment: &r.comment,
        };
        let proposal = match input.check() {
            // A malformed act is `legal_act`'s violation: "missing" would be a wrong second
            // one.
            Err(DomainError::Invalid(v)) if legal_act.is_err() => Err(DomainError::Invalid(
                v.into_iter().filter(|f| f.field != "legal_act").collect(),
            )),
            other => other,
        };
        refuse_invalid(&[&id, &legal_act, &proposal])?;
        proposal?;
        let mut locked = self.lock_subsidy(caller, &r.id, &r.etag).await?;
        locked
            .subsidy
            .propose(input, &caller.actor, tde_runtime::api::now())?;
        self.commit(locked, Vec::new()).await
    }

    /// Approves the proposal and commits its amount against the envelope, atomically: the
    /// check and the commitment are one conditional UPDATE of the envelope's row (which
    /// queues concurrent approvals on its lock), a CHECK constraint stands behind it, and
    /// anything failing rolls the whole approval back.
    async fn approve(
        &self,
        caller: &Caller,
        r: pb::ApproveDecisionRequest,
    ) -> Result<(Subsidy, Option<Payment>), ApiError> {
        let number = check_commitment_number(&r.commitment_number);
        refuse_invalid(&[&parse_id("id", &r.id), &number])?;
        let mut locked = self.lock_subsidy(caller, &r.id, &r.etag).await?;
        let now = tde_runtime::api::now();
        let amount = locked
            .subsidy
            .approve(&r.commitment_number, &caller.actor, now)?;
        let s = &mut locked.subsidy;
        let txn = &locked.txn;
        // The région's sub-envelope if the year has one, else the national envelope.
        let envelope =
            match storage::find_envelope_of(txn, s.budget_year, &s.region_code, false).await? {
                Some(e) if !s.region_code.is_empty() => Some(e),
                _ => storage::find_envelope_of(txn, s.budget_year, "", false).await?,
            };
        let Some(envelope) = envelope else {
            return Err(ApiError::FailedPrecondition {
                kind: "NO_ENVELOPE",
                subject: s.budget_year.to_string(),
                description: format!(
                    "there is no envelope for budget year {}: open it before approving",
                    s.budget_year
                ),
            });
        };
        if let Some(short) = storage::commit_against(txn, &envelope, amount, now).await? {
            let left = storage::find_envelope(txn, &short, false)
                .await?
                .map_or(0, |e| e.available_cents());
            let label = if short == envelope.id {
                envelope.label()
            } else {
                format!("national envelope {}", envelope.budget_year)
            };
            return Err(ApiError::FailedPrecondition {
                kind: "OVER_BUDGET",
                subject: short,
                description: format!(
                    "the {label} has {} left ({left} cents): this decision needs {} ({amount} cents)",
                    euros(left),
                    euros(amount),
                ),
            });
        }
        s.envelope_id = Some(envelope.id.clone());
        s.advance_percent = envelope.advance_percent;
        let reference = s
            .decision
            .as_ref()
            .map(|d| d.commitment_number.clone())
            .unwrap_or_default();
        storage::append(
            txn,
            &Entry::about(
                s,
                EntryKind::Commitment,
                amount,
                &reference,
                "approval",
                &caller.actor,
                now,
            ),
        )
        .await?;
        let advance_cents = advance_of(amount, envelope.advance_percent);
        let mut events = vec![
            events::decided(s, advance_cents),
            events::committed(s, &envelope.id, amount, now),
        ];
        let advance = if advance_cents > 0 {
            let p = Payment::schedule(
                uuid::Uuid::now_v7().to_string(),
                s,
                &envelope.id,
                PaymentKind::Advance,
                advance_cents,
                now,
            );
            storage::insert_payment(txn, &p).await?;
            events.push(events::payment_scheduled(&p, s, now));
            Some(p)
        } else {
            None
        };
        let subsidy = self.commit(locked, events).await?;
        tracing::info!(subsidy_id = %subsidy.id, amount, "subsidy approved and committed");
        Ok((subsidy, advance))
    }

    async fn refuse(
        &self,
        caller: &Caller,
        r: pb::RefuseSubsidyRequest,
    ) -> Result<Subsidy, ApiError> {
        let reason = check_refusal_reason(&r.reason);
        refuse_invalid(&[&parse_id("id", &r.id), &reason])?;
        let mut locked = self.lock_subsidy(caller, &r.id, &r.etag).await?;
        locked
            .subsidy
            .refuse(&r.reason, &caller.actor, tde_runtime::api::now())?;
        let event = events::decided(&locked.subsidy, 0);
        self.commit(locked, vec![event]).await
    }

    async fn decommit(&self, caller: &Caller, r: pb::DecommitRequest) -> Result<Subsidy, ApiError> {
        let amount = money::positive("amount_cents", r.amount_cents);
        let reason = required_text("reason", &r.reason, "why this will not be paid");
        refuse_invalid(&[&parse_id("id", &r.id), &amount, &reason])?;
        let amount = amount?;
        let mut locked = self.lock_subsidy(caller, &r.id, &r.etag).await?;
        let now = tde_runtime::api::now();
        let payments = storage::payments_of_subsidy(&locked.txn, &locked.subsidy.id).await?;
        let in_flight = Tranches::of(&payments).in_flight;
        locked.subsidy.decommit(amount, in_flight, now)?;
        events::record_decommitment(
            &locked.txn,
            &locked.subsidy,
            amount,
            r.reason.trim(),
            &caller.actor,
            now,
        )
        .await?;
        self.commit(locked, Vec::new()).await
    }

    async fn claw_back(
        &self,
        caller: &Caller,
        r: pb::OrderClawbackRequest,
    ) -> Result<Subsidy, ApiError> {
        let amount = money::positive("amount_cents", r.amount_cents);
        let reason = required_text("reason", &r.reason, "why the money is to be returned");
        let reference = text("reference", &r.reference, MAX_REFERENCE);
        refuse_invalid(&[&parse_id("id", &r.id), &amount, &reason, &reference])?;
        let amount = amount?;
        let mut locked = self.lock_subsidy(caller, &r.id, &r.etag).await?;
        let now = tde_runtime::api::now();
        locked.subsidy.claw_back(amount, now)?;
        let s = &locked.subsidy;
        storage::append(
            &locked.txn,
            &Entry::about(
                s,
                EntryKind::Clawback,
                amount,
                r.reference.trim(),
                r.reason.trim(),
                &caller.actor,
                now,
            ),
        )
        .await?;
        let event = events::clawback_ordered(
            s,
            amount,
            r.reason.trim(),
            r.reference.trim(),
            &caller.actor,
            now,
        );
        self.commit(locked, vec![event]).await
    }
}

#[tonic::async_trait]
impl SubsidyService for SubsidiesApi {
    async fn get_subsidy(
        &self,
        request: Request<pb::GetSubsidyRequest>,
    ) -> Result<Response<pb::GetSubsidyResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(subsidy_resource(&id));
        let s = storage::find_subsidy(&self.ctx.db, &id, false)
            .await
            .map_err(ApiError::from)?
            .filter(|s| caller.may_see(&s.territory_id, &s.region_code))
            .ok_or_else(|| not_found("subsidy", &id))?;
        Ok(Response::new(pb::GetSubsidyResponse {
            subsidy: Some(self.render(&s)),
        }))
    }

    async fn list_subsidies(
        &self,
        request: Request<pb::ListSubsidiesRequest>,
    ) -> Result<Response<pb::ListSubsidiesResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let filter = SubsidyFilter {
            budget_year: (r.budget_year != 0).then_some(r.budget_year),
            region_code: filter_region("region_code", &r.region_code)?,
            territory_id: filter_id("territory_id", &r.territory_id)?,
            plan_id: filter_id("plan_id", &r.plan_id)?,
            status: convert::subsidy_status_from_pb("status", r.status)?,
            visible_to: visible_to(&caller),
        };
        let rows = storage::list_subsidies(&self.ctx.db, &filter, page.after(), page.fetch())
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |s| s.id.clone());
        Ok(Response::new(pb::ListSubsidiesResponse {
            subsidies: rows.iter().map(|s| self.render(s)).collect(),
            next_page_token,
        }))
    }

    async fn propose_decision(
        &self,
        request: Request<pb::ProposeDecisionRequest>,
    ) -> Result<Response<pb::ProposeDecisionResponse>, Status> {
        let caller = Caller::of(&request);
        let s = self.propose(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::ProposeDecisionResponse {
            subsidy: Some(self.render(&s)),
        }))
    }

    async fn approve_decision(
        &self,
        request: Request<pb::ApproveDecisionRequest>,
    ) -> Result<Response<pb::ApproveDecisionResponse>, Status> {
        let caller = Caller::of(&request);
        let (s, advance) = self.approve(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::ApproveDecisionResponse {
            subsidy: Some(self.render(&s)),
            advance: advance.as_ref().map(payment_to_pb),
        }))
    }

    async fn refuse_subsidy(
        &self,
        request: Request<pb::RefuseSubsidyRequest>,
    ) -> Result<Response<pb::RefuseSubsidyResponse>, Status> {
        let caller = Caller::of(&request);
        let s = self.refuse(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::RefuseSubsidyResponse {
            subsidy: Some(self.render(&s)),
        }))
    }

    async fn decommit(
        &self,
        request: Request<pb::DecommitRequest>,
    ) -> Result<Response<pb::DecommitResponse>, Status> {
        let caller = Caller::of(&request);
        let s = SubsidiesApi::decommit(self, &caller, request.into_inner()).await?;
        Ok(Response::new(pb::DecommitResponse {
            subsidy: Some(self.render(&s)),
        }))
    }

    async fn order_clawback(
        &self,
        request: Request<pb::OrderClawbackRequest>,
    ) -> Result<Response<pb::OrderClawbackResponse>, Status> {
        let caller = Caller::of(&request);
        let s = self.claw_back(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::OrderClawbackResponse {
            subsidy: Some(self.render(&s)),
        }))
    }

    async fn list_overdue_reviews(
        &self,
        request: Request<pb::ListOverdueReviewsRequest>,
    ) -> Result<Response<pb::ListOverdueReviewsResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let as_of = if r.as_of_date.is_empty() {
            chrono::Utc::now().date_naive()
        } else {
            convert::date_from_pb("as_of_date", &r.as_of_date)?
        };
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let ended_before = as_of - chrono::Days::new(u64::from(self.settings.review_due_days));
        let db = &self.ctx.db;
        let rows = storage::overdue_reviews(
            db,
            ended_before,
            &visible_to(&caller),
            page.after(),
            page.fetch(),
        )
        .await
        .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |s| s.id.clone());
        let mut overdue = Vec::with_capacity(rows.len());
        for s in rows {
            let payments = storage::payments_of_subsidy(db, &s.id)
                .await
                .map_err(ApiError::from)?;
            let t = Tranches::of(&payments);
            overdue.push(pb::OverdueReview {
                review_due_date: self.review_due(&s).to_string(),
                balance_waiting_cents: (s.committed_cents()
                    - t.advance_paid_or_in_flight
                    - t.balance_paid_or_in_flight)
                    .max(0),
                subsidy: Some(self.render(&s)),
            });
        }
        Ok(Response::new(pb::ListOverdueReviewsResponse {
            overdue,
            next_page_token,
        }))
    }
}
