//! tde.subsidies.v1.PaymentService: tranches scheduled, authorised, and what the paying
//! system reports.

use tonic::{Request, Response, Status};

use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::payment_service_server::PaymentService;
use tde_runtime::ApiError;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::idempotency::IdempotencyKey;

use super::convert::{self, payment_to_pb};
use super::{
    DEFAULT_PAGE, MAX_PAGE, SubsidiesApi, filter_id, not_found, payment_resource, refuse_invalid,
    stale, visible_to,
};
use crate::domain::payment::{Outcome, Payment, Tranches, next_tranche};
use crate::events;
use crate::storage::{self, Entry, EntryKind, PaymentFilter};

impl SubsidiesApi {
    async fn schedule(
        &self,
        caller: &Caller,
        r: pb::SchedulePaymentRequest,
    ) -> Result<Payment, ApiError> {
        let kind = convert::payment_kind_from_pb("kind", r.kind);
        let key = IdempotencyKey::of(caller, "payment", &r.request_id, &r);
        refuse_invalid(&[&parse_id("subsidy_id", &r.subsidy_id), &kind, &key])?;
        let (kind, key) = (kind?, key?);
        let mut locked = self.lock_subsidy(caller, &r.subsidy_id, "").await?;
        let payment_id = uuid::Uuid::now_v7().to_string();
        if let Some(existing) =
            IdempotencyKey::claim(key.as_ref(), &locked.txn, &payment_id).await?
        {
            drop(locked);
            caller.concerns(payment_resource(&existing));
            return storage::find_payment(&self.ctx.db, &existing, false)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("replayed payment {existing} is gone"))
                });
        }
        let payments = storage::payments_of_subsidy(&locked.txn, &locked.subsidy.id).await?;
        let amount = next_tranche(&locked.subsidy, kind, Tranches::of(&payments))?;
        let now = tde_runtime::api::now();
        let s = &mut locked.subsidy;
        let envelope_id = s.envelope_id.clone().unwrap_or_default();
        let p = Payment::schedule(payment_id, s, &envelope_id, kind, amount, now);
        caller.concerns(payment_resource(&p.id));
        storage::insert_payment(&locked.txn, &p).await?;
        let event = events::payment_scheduled(&p, s, now);
        self.commit(locked, vec![event]).await?;
        Ok(p)
    }

    /// Reads payment `id` for the caller, and locks its subsidy then itself (the lock order
    /// of every change of a subsidy's money).
    async fn lock_payment(
        &self,
        caller: &Caller,
        id: &str,
        etag: &str,
    ) -> Result<(super::LockedSubsidy, Payment), ApiError> {
        let id = parse_id("id", id)?.to_string();
        caller.concerns(payment_resource(&id));
        let peek = storage::find_payment(&self.ctx.db, &id, false)
            .await?
            .filter(|p| caller.may_see(&p.territory_id, &p.region_code))
            .ok_or_else(|| not_found("payment", &id))?;
        let locked = self.lock_subsidy(caller, &peek.subsidy_id, "").await?;
        caller.concerns(payment_resource(&id));
        let payment = storage::find_payment(&locked.txn, &id, true)
            .await?
            .ok_or_else(|| not_found("payment", &id))?;
        if !etag.is_empty() && etag != payment.etag() {
            return Err(stale("payment", &id));
        }
        Ok((locked, payment))
    }

    async fn authorise(
        &self,
        caller: &Caller,
        r: pb::AuthorisePaymentRequest,
    ) -> Result<Payment, ApiError> {
        let (locked, mut p) = self.lock_payment(caller, &r.id, &r.etag).await?;
        let expected = p.version;
        p.authorise(&caller.actor, tde_runtime::api::now())?;
        if !storage::update_payment(&locked.txn, &p, expected).await? {
            return Err(stale("payment", &p.id));
        }
        self.commit(locked, Vec::new()).await?;
        Ok(p)
    }

    async fn record(
        &self,
        caller: &Caller,
        r: pb::RecordPaymentRequest,
    ) -> Result<Payment, ApiError> {
        let paid_on = if r.paid_on.is_empty() {
            Ok(chrono::Utc::now().date_naive())
        } else {
            convert::date_from_pb("paid_on", &r.paid_on)
        };
        let outcome = match pb::PaymentOutcome::try_from(r.outcome) {
            Ok(pb::PaymentOutcome::Sent) => Ok(Outcome::Sent {
                reference: r.reference.clone(),
            }),
            Ok(pb::PaymentOutcome::Paid) => Ok(Outcome::Paid {
                reference: r.reference.clone(),
                // A bad date is `paid_on`'s violation.
                on: paid_on.as_ref().map_or(chrono::NaiveDate::MIN, |d| *d),
            }),
            Ok(pb::PaymentOutcome::Failed) => Ok(Outcome::Failed {
                reason: r.failure_reason.clone(),
            }),
            _ => Err(ApiError::invalid(
                "outcome",
                "is required: SENT, PAID or FAILED",
            )),
        };
        let reported = outcome.as_ref().map_or(Ok(()), Outcome::check);
        let paid_on = if matches!(outcome, Ok(Outcome::Paid { .. })) {
            paid_on.map(|_| ())
        } else {
            Ok(())
        };
        refuse_invalid(&[&parse_id("id", &r.id), &outcome, &reported, &paid_on])?;
        // Whatever else they might fail with, the placeholder date is never recorded.
        paid_on?;
        let outcome = outcome?;
        let (mut locked, mut p) = self.lock_payment(caller, &r.id, &r.etag).await?;
        let now = tde_runtime::api::now();
        let expected = p.version;
        p.record(outcome, now)?;
        let mut events = Vec::new();
        match p.status {
            crate::domain::payment::PaymentStatus::Paid => {
                // Never more paid than granted: the domain refuses it, a CHECK backs it.
                locked.subsidy.record_paid(p.amount_cents, now)?;
                let s = &locked.subsidy;
                let envelope = storage::find_envelope(&locked.txn, &p.envelope_id, false)
                    .await?
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("envelope {} is gone", p.envelope_id))
                    })?;
                let mut entry = Entry::about(
                    s,
                    EntryKind::Payment,
                    p.amount_cents,
                    &p.reference,
                    p.kind.as_str(),
                    &caller.actor,
                    now,
                );
                entry.payment_id = Some(p.id.clone());
                // The envelopes first, then the ledger: the lock order of every change.
                storage::add_paid(&locked.txn, &envelope, p.amount_cents, now).await?;
                storage::append(&locked.txn, &entry).await?;
                events.push(events::payment_paid(&p, s, now));
            }
            crate::domain::payment::PaymentStatus::Failed => {
                events.push(events::payment_failed(&p, &locked.subsidy, now));
            }
            _ => {}
        }
        if !storage::update_payment(&locked.txn, &p, expected).await? {
            return Err(stale("payment", &p.id));
        }
        self.commit(locked, events).await?;
        Ok(p)
    }
}

#[tonic::async_trait]
impl PaymentService for SubsidiesApi {
    async fn schedule_payment(
        &self,
        request: Request<pb::SchedulePaymentRequest>,
    ) -> Result<Response<pb::SchedulePaymentResponse>, Status> {
        let caller = Caller::of(&request);
        let p = self.schedule(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::SchedulePaymentResponse {
            payment: Some(payment_to_pb(&p)),
        }))
    }

    async fn authorise_payment(
        &self,
        request: Request<pb::AuthorisePaymentRequest>,
    ) -> Result<Response<pb::AuthorisePaymentResponse>, Status> {
        let caller = Caller::of(&request);
        let p = self.authorise(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::AuthorisePaymentResponse {
            payment: Some(payment_to_pb(&p)),
        }))
    }

    async fn record_payment(
        &self,
        request: Request<pb::RecordPaymentRequest>,
    ) -> Result<Response<pb::RecordPaymentResponse>, Status> {
        let caller = Caller::of(&request);
        let p = self.record(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::RecordPaymentResponse {
            payment: Some(payment_to_pb(&p)),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        let p = storage::find_payment(&self.ctx.db, &id, false)
            .await
            .map_err(ApiError::from)?
            .filter(|p| caller.may_see(&p.territory_id, &p.region_code))
            .ok_or_else(|| not_found("payment", &id))?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(payment_to_pb(&p)),
        }))
    }

    async fn list_payments(
        &self,
        request: Request<pb::ListPaymentsRequest>,
    ) -> Result<Response<pb::ListPaymentsResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let filter = PaymentFilter {
            subsidy_id: filter_id("subsidy_id", &r.subsidy_id)?,
            territory_id: filter_id("territory_id", &r.territory_id)?,
            status: convert::payment_status_from_pb("status", r.status)?,
            visible_to: visible_to(&caller),
        };
        let rows = storage::list_payments(&self.ctx.db, &filter, page.after(), page.fetch())
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |p| p.id.clone());
        Ok(Response::new(pb::ListPaymentsResponse {
            payments: rows.iter().map(payment_to_pb).collect(),
            next_page_token,
        }))
    }
}
