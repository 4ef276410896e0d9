//! Conversions between the domain and the protobuf messages.

use chrono::NaiveDate;

use tde_proto::subsidies::v1 as pb;
use tde_runtime::ApiError;
use tde_runtime::api::timestamp;

use crate::domain::envelope::Envelope;
use crate::domain::payment::{Payment, PaymentKind, PaymentStatus};
use crate::domain::subsidy::{LegalAct, LegalActKind, Subsidy, SubsidyStatus};
use crate::storage::{Entry, EntryKind};

pub fn subsidy_status_to_pb(s: SubsidyStatus) -> pb::SubsidyStatus {
    match s {
        SubsidyStatus::Requested => pb::SubsidyStatus::Requested,
        SubsidyStatus::Proposed => pb::SubsidyStatus::Proposed,
        SubsidyStatus::Granted => pb::SubsidyStatus::Granted,
        SubsidyStatus::PartiallyGranted => pb::SubsidyStatus::PartiallyGranted,
        SubsidyStatus::Refused => pb::SubsidyStatus::Refused,
        SubsidyStatus::Closed => pb::SubsidyStatus::Closed,
    }
}

/// A status filter: none when unspecified.
pub fn subsidy_status_from_pb(field: &str, raw: i32) -> Result<Option<SubsidyStatus>, ApiError> {
    Ok(match pb::SubsidyStatus::try_from(raw) {
        Ok(pb::SubsidyStatus::Unspecified) => None,
        Ok(pb::SubsidyStatus::Requested) => Some(SubsidyStatus::Requested),
        Ok(pb::SubsidyStatus::Proposed) => Some(SubsidyStatus::Proposed),
        Ok(pb::SubsidyStatus::Granted) => Some(SubsidyStatus::Granted),
        Ok(pb::SubsidyStatus::PartiallyGranted) => Some(SubsidyStatus::PartiallyGranted),
        Ok(pb::SubsidyStatus::Refused) => Some(SubsidyStatus::Refused),
        Ok(pb::SubsidyStatus::Closed) => Some(SubsidyStatus::Closed),
        Err(_) => return Err(ApiError::invalid(field, "is not a subsidy status")),
    })
}

pub fn payment_kind_to_pb(k: PaymentKind) -> pb::PaymentKind {
    match k {
        PaymentKind::Advance => pb::PaymentKind::Advance,
        PaymentKind::Balance => pb::PaymentKind::Balance,
    }
}

pub fn payment_kind_from_pb(field: &str, raw: i32) -> Result<PaymentKind, ApiError> {
    match pb::PaymentKind::try_from(raw) {
        Ok(pb::PaymentKind::Advance) => Ok(PaymentKind::Advance),
        Ok(pb::PaymentKind::Balance) => Ok(PaymentKind::Balance),
        _ => Err(ApiError::invalid(field, "is required: ADVANCE or BALANCE")),
    }
}

pub fn payment_status_to_pb(s: PaymentStatus) -> pb::PaymentStatus {
    match s {
        PaymentStatus::Scheduled => pb::PaymentStatus::Scheduled,
        PaymentStatus::Authorised => pb::PaymentStatus::Authorised,
        PaymentStatus::Sent => pb::PaymentStatus::Sent,
        PaymentStatus::Paid => pb::PaymentStatus::Paid,
        PaymentStatus::Failed => pb::PaymentStatus::Failed,
        PaymentStatus::Cancelled => pb::PaymentStatus::Cancelled,
    }
}

pub fn payment_status_from_pb(field: &str, raw: i32) -> Result<Option<PaymentStatus>, ApiError> {
    Ok(match pb::PaymentStatus::try_from(raw) {
        Ok(pb::PaymentStatus::Unspecified) => None,
        Ok(pb::PaymentStatus::Scheduled) => Some(PaymentStatus::Scheduled),
        Ok(pb::PaymentStatus::Authorised) => Some(PaymentStatus::Authorised),
        Ok(pb::PaymentStatus::Sent) => Some(PaymentStatus::Sent),
        Ok(pb::PaymentStatus::Paid) => Some(PaymentStatus::Paid),
        Ok(pb::PaymentStatus::Failed) => Some(PaymentStatus::Failed),
        Ok(pb::PaymentStatus::Cancelled) => Some(PaymentStatus::Cancelled),
        Err(_) => return Err(ApiError::invalid(field, "is not a payment status")),
    })
}

pub fn entry_kind_to_pb(k: EntryKind) -> pb::LedgerEntryKind {
    match k {
        EntryKind::Commitment => pb::LedgerEntryKind::Commitment,
        EntryKind::Decommitment => pb::LedgerEntryKind::Decommitment,
        EntryKind::Payment => pb::LedgerEntryKind::Payment,
        EntryKind::Clawback => pb::LedgerEntryKind::Clawback,
    }
}

pub fn date_from_pb(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid(field, "is required (YYYY-MM-DD)"));
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, "is not a date (YYYY-MM-DD)"))?;
    // Acts, payments and reviews of the programme: anything else is a typo, and far years
    // would overflow date arithmetic and the database's DATE range.
    use chrono::Datelike as _;
    if !(1990..=2200).contains(&date.year()) {
        return Err(ApiError::invalid(
            field,
            "must be a year between 1990 and 2200",
        ));
    }
    Ok(date)
}

pub fn legal_act_from_pb(act: Option<&pb::LegalAct>) -> Result<Option<LegalAct>, ApiError> {
    let Some(act) = act else { return Ok(None) };
    let kind = match pb::LegalActKind::try_from(act.kind) {
        Ok(pb::LegalActKind::Convention) => LegalActKind::Convention,
        Ok(pb::LegalActKind::Order) => LegalActKind::Order,
        _ => {
            return Err(ApiError::invalid(
                "legal_act.kind",
                "is required: CONVENTION or ORDER (arrêté)",
            ));
        }
    };
    Ok(Some(LegalAct {
        kind,
        reference: act.reference.clone(),
        date: date_from_pb("legal_act.date", &act.date)?,
    }))
}

fn legal_act_to_pb(act: &LegalAct) -> pb::LegalAct {
    pb::LegalAct {
        kind: match act.kind {
            LegalActKind::Convention => pb::LegalActKind::Convention,
            LegalActKind::Order => pb::LegalActKind::Order,
        } as i32,
        reference: act.reference.clone(),
        date: act.date.to_string(),
    }
}

pub fn envelope_to_pb(e: &Envelope) -> pb::Envelope {
    pb::Envelope {
        id: e.id.clone(),
        budget_year: e.budget_year,
        region_code: e.region_code.clone(),
        parent_id: e.parent_id.clone().unwrap_or_default(),
        amount_cents: e.amount_cents,
        committed_cents: e.committed_cents,
        paid_cents: e.paid_cents,
        available_cents: e.available_cents(),
        advance_percent: i32::from(e.advance_percent),
        changes: e
            .changes
            .iter()
            .map(|c| pb::EnvelopeChange {
                previous_cents: c.previous_cents,
                amount_cents: c.amount_cents,
                reason: c.reason.clone(),
                act_reference: c.act_reference.clone(),
                actor: c.actor.clone(),
                change_time: Some(timestamp(c.at)),
            })
            .collect(),
        etag: e.etag(),
        create_time: Some(timestamp(e.created_at)),
        update_time: Some(timestamp(e.updated_at)),
    }
}

/// A subsidy as the API shows it; `review_due` is when its year's review is expected.
pub fn subsidy_to_pb(s: &Subsidy, review_due: NaiveDate) -> pb::Subsidy {
    let decision = s.decision.as_ref();
    let proposal = s
        .proposal
        .as_ref()
        .filter(|_| s.status == SubsidyStatus::Proposed);
    pb::Subsidy {
        id: s.id.clone(),
        plan_id: s.plan_id.clone(),
        territory_id: s.territory_id.clone(),
        territory_name: s.territory_name.clone(),
        region_code: s.region_code.clone(),
        plan_year: i32::from(s.plan_year),
        year_start_date: s.year_start.to_string(),
        year_end_date: s.year_end.to_string(),
        amendment_number: s.amendment_number,
        submission_number: s.submission_number,
        requested_cents: s.requested_cents,
        status: subsidy_status_to_pb(s.status) as i32,
        proposal: proposal.map(|p| pb::Proposal {
            amount_cents: p.amount_cents,
            legal_act: Some(legal_act_to_pb(&p.legal_act)),
            beneficiary_siret: p.beneficiary_siret.clone(),
            budget_year: p.budget_year,
            commitment_number: p.commitment_number.clone(),
            comment: p.comment.clone(),
            proposed_by: p.proposed_by.clone(),
            propose_time: Some(timestamp(p.proposed_at)),
        }),
        legal_act: decision
            .and_then(|d| d.legal_act.as_ref())
            .map(legal_act_to_pb),
        beneficiary_siret: decision
            .map(|d| d.beneficiary_siret.clone())
            .unwrap_or_default(),
        budget_year: s.budget_year,
        envelope_id: s.envelope_id.clone().unwrap_or_default(),
        commitment_number: decision
            .map(|d| d.commitment_number.clone())
            .unwrap_or_default(),
        refusal_reason: decision
            .map(|d| d.refusal_reason.clone())
            .unwrap_or_default(),
        decided_by: decision.map(|d| d.decided_by.clone()).unwrap_or_default(),
        decide_time: decision.map(|d| timestamp(d.decided_at)),
        granted_cents: s.granted_cents,
        committed_cents: s.committed_cents(),
        decommitted_cents: s.decommitted_cents,
        paid_cents: s.paid_cents,
        clawed_back_cents: s.clawed_back_cents,
        remaining_cents: s.remaining_cents(),
        advance_percent: i32::from(s.advance_percent),
        reviewed: s.reviewed,
        review_due_date: review_due.to_string(),
        plan_stopped: s.plan_stopped,
        etag: s.etag(),
        create_time: Some(timestamp(s.created_at)),
        update_time: Some(timestamp(s.updated_at)),
    }
}

pub fn payment_to_pb(p: &Payment) -> pb::Payment {
    pb::Payment {
        id: p.id.clone(),
        subsidy_id: p.subsidy_id.clone(),
        territory_id: p.territory_id.clone(),
        region_code: p.region_code.clone(),
        kind: payment_kind_to_pb(p.kind) as i32,
        amount_cents: p.amount_cents,
        status: payment_status_to_pb(p.status) as i32,
        reference: p.reference.clone(),
        failure_reason: p.failure_reason.clone(),
        paid_on: p.paid_on.map(|d| d.to_string()).unwrap_or_default(),
        authorised_by: p.authorised_by.clone(),
        etag: p.etag(),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
    }
}

pub fn entry_to_pb(e: &Entry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: e.id.clone(),
        kind: entry_kind_to_pb(e.kind) as i32,
        amount_cents: e.amount_cents,
        envelope_id: e.envelope_id.clone(),
        subsidy_id: e.subsidy_id.clone(),
        payment_id: e.payment_id.clone().unwrap_or_default(),
        territory_id: e.territory_id.clone(),
        region_code: e.region_code.clone(),
        budget_year: e.budget_year,
        reference: e.reference.clone(),
        reason: e.reason.clone(),
        actor: e.actor.clone(),
        record_time: Some(timestamp(e.recorded_at)),
    }
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn dates_are_of_the_programme_s_era() {
        assert!(date_from_pb("paid_on", "2027-03-31").is_ok());
        for far in [
            "-262144-01-01",
            "0001-01-01",
            "9999-12-31",
            "2027-02-30",
            "",
        ] {
            assert!(date_from_pb("paid_on", far).is_err(), "{far}");
        }
    }
}
