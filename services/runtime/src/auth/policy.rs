//! What each RPC requires. Every service declares one table of `MethodPolicy`, one entry per
//! method of its gRPC services; a method without an entry is refused (deny by default), and
//! a test checks the tables against the protobuf descriptors.

use super::Role;

/// The policy of one RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodPolicy {
    /// Full gRPC path: `/tde.territories.v1.TerritoryService/GetTerritory`.
    pub method: &'static str,
    /// The scope the caller's token must hold; `None`: any authenticated caller.
    pub scope: Option<&'static str>,
    /// Whether every call is recorded in the audit trail (writes).
    pub audited: bool,
    /// The roles that may call it at all, whatever their scopes (`None`: every role the
    /// scope allows).
    pub roles: Option<&'static [Role]>,
}

/// The roles that take programme decisions: the national team and project leads.
pub const PROGRAMME: &[Role] = &[Role::National, Role::ProjectLead];

impl MethodPolicy {
    /// A read: needs `scope`, audited only if it returns personal data (the handler says so).
    pub const fn read(method: &'static str, scope: &'static str) -> Self {
        Self {
            method,
            scope: Some(scope),
            audited: false,
            roles: None,
        }
    }

    /// A write: needs `scope`, and every call is audited whatever its outcome.
    pub const fn write(method: &'static str, scope: &'static str) -> Self {
        Self {
            method,
            scope: Some(scope),
            audited: true,
            roles: None,
        }
    }

    /// A programme decision: a write that only the national team and project leads may
    /// make (a territory member's token is refused, whatever its scopes).
    pub const fn programme(method: &'static str, scope: &'static str) -> Self {
        Self {
            method,
            scope: Some(scope),
            audited: true,
            roles: Some(PROGRAMME),
        }
    }

    /// Whether `role` may call it at all.
    pub fn admits(&self, role: Role) -> bool {
        self.roles.is_none_or(|roles| roles.contains(&role))
    }

    /// Any authenticated caller (e.g. reflection).
    pub const fn authenticated(method: &'static str) -> Self {
        Self {
            method,
            scope: None,
            audited: false,
            roles: None,
        }
    }

    /// `GetTerritory` of `/tde.territories.v1.TerritoryService/GetTerritory`.
    pub fn short_name(&self) -> &'static str {
        self.method.rsplit('/').next().unwrap_or(self.method)
    }
}

/// Methods every caller may use without a token: health, for probes and load balancers.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

/// The runtime's own methods: reflection (when served) and the audit trail.
pub const RUNTIME_POLICIES: &[MethodPolicy] = &[
    MethodPolicy::authenticated("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
    MethodPolicy::read(
        "/tde.audit.v1.AuditService/ListAuditEvents",
        super::scope::AUDIT_READ,
    ),
    MethodPolicy::read(
        "/tde.operations.v1.OperationsService/ListDeadLetters",
        super::scope::OPERATIONS_READ,
    ),
    MethodPolicy::write(
        "/tde.operations.v1.OperationsService/ReplayDeadLetters",
        super::scope::OPERATIONS_ADMIN,
    ),
    MethodPolicy::read(
        "/tde.operations.v1.OperationsService/ListParkedEvents",
        super::scope::OPERATIONS_READ,
    ),
    MethodPolicy::write(
        "/tde.operations.v1.OperationsService/RepublishParkedEvents",
        super::scope::OPERATIONS_ADMIN,
    ),
    // Personal data (RGPD requests), as the territories service's PersonalDataService.
    MethodPolicy::write(
        "/tde.personal_data.v1.HoldingsService/ExportHoldings",
        super::scope::CONTACTS_ADMIN,
    ),
    MethodPolicy::write(
        "/tde.personal_data.v1.HoldingsService/EraseHoldings",
        super::scope::CONTACTS_ADMIN,
    ),
];

/// Checks policy tables against the services of a descriptor pool: every method of
/// `services` has exactly one policy, and every policy names a method of them. Returns what
/// is wrong, one line each.
pub fn check_coverage(
    pool: &prost_reflect::DescriptorPool,
    services: &[&str],
    policies: &[MethodPolicy],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expected = Vec::new();
    for name in services {
        match pool.get_service_by_name(name) {
            Some(service) => {
                for method in service.methods() {
                    expected.push(format!("/{}/{}", service.full_name(), method.name()));
                }
            }
            None => problems.push(format!("service {name} is not in the descriptors")),
        }
    }
    for path in &expected {
        match policies.iter().filter(|p| p.method == path).count() {
            0 => problems.push(format!("{path} has no policy")),
            1 => {}
            n => problems.push(format!("{path} has {n} policies")),
        }
    }
    for policy in policies {
        if !expected.iter().any(|p| p == policy.method) {
            problems.push(format!("policy for unknown method {}", policy.method));
        }
    }
    problems
}

/// Panics, listing what is wrong, unless `policies` cover exactly the methods of `services`
/// (each service's own unit test calls it).
pub fn assert_covers(services: &[&str], policies: &[MethodPolicy]) {
    let problems = check_coverage(tde_proto::descriptor_pool(), services, policies);
    assert!(problems.is_empty(), "{problems:#?}");
}
