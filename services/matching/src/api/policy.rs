//! Who may call what: the scope of every method of the matching service (one table, deny by
//! default). Which needs and proposals a caller sees is decided per call by the handlers.

use tde_runtime::auth::policy::PROGRAMME;
use tde_runtime::auth::scope::{MATCHING_READ, MATCHING_WRITE};
use tde_runtime::auth::{MethodPolicy, Role};

/// Everyone but providers: a provider's token sees only its own proposals, never the
/// registry, the needs or other providers' scores.
const NOT_PROVIDERS: &[Role] = &[
    Role::National,
    Role::ProjectLead,
    Role::TerritoryMember,
    Role::Agency,
];

/// Answering a proposal is the provider's own act.
const PROVIDERS: &[Role] = &[Role::Provider];

const fn read_by(method: &'static str, roles: &'static [Role]) -> MethodPolicy {
    MethodPolicy {
        method,
        scope: Some(MATCHING_READ),
        audited: false,
        roles: Some(roles),
    }
}

/// Changes of the registry, rankings that name every provider's score, assignments and
/// proposals are programme decisions (national team, project leads); providers answer.
pub const POLICIES: &[MethodPolicy] = &[
    // The registry.
    MethodPolicy::programme(
        "/tde.matching.v1.ProviderService/RegisterProvider",
        MATCHING_WRITE,
    ),
    read_by(
        "/tde.matching.v1.ProviderService/GetProvider",
        NOT_PROVIDERS,
    ),
    read_by(
        "/tde.matching.v1.ProviderService/ListProviders",
        NOT_PROVIDERS,
    ),
    MethodPolicy::programme(
        "/tde.matching.v1.ProviderService/UpdateProvider",
        MATCHING_WRITE,
    ),
    MethodPolicy::programme(
        "/tde.matching.v1.ProviderService/ChangeProviderStatus",
        MATCHING_WRITE,
    ),
    MethodPolicy::programme(
        "/tde.matching.v1.ProviderService/RateAssignment",
        MATCHING_WRITE,
    ),
    // Its own history for a provider's token; the territories they see for others.
    MethodPolicy::read(
        "/tde.matching.v1.ProviderService/ListAssignments",
        MATCHING_READ,
    ),
    // Needs and rankings.
    read_by("/tde.matching.v1.MatchingService/GetNeed", NOT_PROVIDERS),
    read_by("/tde.matching.v1.MatchingService/ListNeeds", NOT_PROVIDERS),
    read_by("/tde.matching.v1.MatchingService/RankProviders", PROGRAMME),
    MethodPolicy::programme(
        "/tde.matching.v1.MatchingService/PlanAssignments",
        MATCHING_WRITE,
    ),
    // Proposals.
    MethodPolicy::programme(
        "/tde.matching.v1.ProposalService/ProposeProvider",
        MATCHING_WRITE,
    ),
    MethodPolicy::read(
        "/tde.matching.v1.ProposalService/GetProposal",
        MATCHING_READ,
    ),
    MethodPolicy::read(
        "/tde.matching.v1.ProposalService/ListProposals",
        MATCHING_READ,
    ),
    MethodPolicy {
        method: "/tde.matching.v1.ProposalService/AcceptProposal",
        scope: Some(MATCHING_WRITE),
        audited: true,
        roles: Some(PROVIDERS),
    },
    MethodPolicy {
        method: "/tde.matching.v1.ProposalService/DeclineProposal",
        scope: Some(MATCHING_WRITE),
        audited: true,
        roles: Some(PROVIDERS),
    },
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
