//! Who may call what: the scope of every method of the subsidies service (one table, deny by
//! default). Which subsidies a caller sees is then decided per call by the handlers.
//!
//! Money decisions are the national team's: approving (the second pair of eyes), refusing,
//! decommitting, clawing back, authorising payments and setting envelopes. Project leads
//! propose decisions and schedule payments for their territories; territory members read
//! their own subsidy; agencies read everything.

use tde_runtime::auth::scope::{SUBSIDIES_APPROVE, SUBSIDIES_READ, SUBSIDIES_WRITE};
use tde_runtime::auth::{MethodPolicy, Role};

const NATIONAL: &[Role] = &[Role::National];
/// Budget-wide figures (envelopes, dashboard, exports): not a territory's own data.
const BUDGET_READERS: &[Role] = &[Role::National, Role::ProjectLead, Role::Agency];

/// A money decision of the national team: audited, refused to every other role whatever
/// its scopes.
const fn national(method: &'static str, scope: &'static str) -> MethodPolicy {
    MethodPolicy {
        method,
        scope: Some(scope),
        audited: true,
        roles: Some(NATIONAL),
    }
}

/// A read of budget-wide figures.
const fn budget_read(method: &'static str) -> MethodPolicy {
    MethodPolicy {
        method,
        scope: Some(SUBSIDIES_READ),
        audited: false,
        roles: Some(BUDGET_READERS),
    }
}

pub const POLICIES: &[MethodPolicy] = &[
    // Envelopes.
    national(
        "/tde.subsidies.v1.EnvelopeService/CreateEnvelope",
        SUBSIDIES_WRITE,
    ),
    budget_read("/tde.subsidies.v1.EnvelopeService/GetEnvelope"),
    budget_read("/tde.subsidies.v1.EnvelopeService/ListEnvelopes"),
    national(
        "/tde.subsidies.v1.EnvelopeService/ChangeEnvelopeAmount",
        SUBSIDIES_WRITE,
    ),
    // Subsidies.
    MethodPolicy::read(
        "/tde.subsidies.v1.SubsidyService/GetSubsidy",
        SUBSIDIES_READ,
    ),
    MethodPolicy::read(
        "/tde.subsidies.v1.SubsidyService/ListSubsidies",
        SUBSIDIES_READ,
    ),
    MethodPolicy::programme(
        "/tde.subsidies.v1.SubsidyService/ProposeDecision",
        SUBSIDIES_WRITE,
    ),
    national(
        "/tde.subsidies.v1.SubsidyService/ApproveDecision",
        SUBSIDIES_APPROVE,
    ),
    national(
        "/tde.subsidies.v1.SubsidyService/RefuseSubsidy",
        SUBSIDIES_APPROVE,
    ),
    national(
        "/tde.subsidies.v1.SubsidyService/Decommit",
        SUBSIDIES_APPROVE,
    ),
    national(
        "/tde.subsidies.v1.SubsidyService/OrderClawback",
        SUBSIDIES_APPROVE,
    ),
    MethodPolicy::read(
        "/tde.subsidies.v1.SubsidyService/ListOverdueReviews",
        SUBSIDIES_READ,
    ),
    // Payments.
    MethodPolicy::programme(
        "/tde.subsidies.v1.PaymentService/SchedulePayment",
        SUBSIDIES_WRITE,
    ),
    national(
        "/tde.subsidies.v1.PaymentService/AuthorisePayment",
        SUBSIDIES_APPROVE,
    ),
    // What the paying system reports, through the national team's integration account.
    national(
        "/tde.subsidies.v1.PaymentService/RecordPayment",
        SUBSIDIES_WRITE,
    ),
    MethodPolicy::read(
        "/tde.subsidies.v1.PaymentService/GetPayment",
        SUBSIDIES_READ,
    ),
    MethodPolicy::read(
        "/tde.subsidies.v1.PaymentService/ListPayments",
        SUBSIDIES_READ,
    ),
    // The ledger.
    MethodPolicy::read(
        "/tde.subsidies.v1.LedgerService/ListLedgerEntries",
        SUBSIDIES_READ,
    ),
    budget_read("/tde.subsidies.v1.LedgerService/GetDashboard"),
    MethodPolicy {
        method: "/tde.subsidies.v1.LedgerService/Reconcile",
        scope: Some(SUBSIDIES_READ),
        audited: false,
        roles: Some(NATIONAL),
    },
    budget_read("/tde.subsidies.v1.LedgerService/ExportSubsidies"),
];

#[cfg(test)]
mod tests {
    /// Every method of the service's protos has exactly one policy, and no policy names a
    /// method that does not exist.
    #[test]
    fn every_method_has_a_policy() {
        tde_runtime::auth::policy::assert_covers(crate::GRPC_SERVICES, super::POLICIES);
    }
}
