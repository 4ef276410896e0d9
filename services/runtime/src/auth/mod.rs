//! Who is calling, and what they may do.
//!
//! Every RPC but health carries `authorization: Bearer <JWT>`: an OAuth2 / OIDC access token,
//! verified locally against the configured key set (`keys`, `verifier`). Its claims give a
//! `Principal`: a role, scopes and, for people of a territory, the territories they may see.
//! Each service declares the scope of every method in one policy table (`policy`); the
//! `layer` enforces it on every call before any handler runs (deny by default), limits each
//! client's rate and appends the audit trail. Handlers then restrict data to the caller's
//! territories (`Principal::may_see`), answering NOT_FOUND for the others.
//!
//! `issuer` creates the local key set of `tde dev` and mints tokens for `tde token` and tests.

pub mod client;
pub mod issuer;
pub mod keys;
pub mod layer;
pub mod policy;
pub mod verifier;

use serde::{Deserialize, Serialize};

pub use client::{AuthChannel, Bearer};
pub use issuer::{LocalIssuer, TokenSpec};
pub use layer::AuthLayer;
pub use policy::MethodPolicy;
pub use verifier::Verifier;

/// Issuer of the tokens minted by `tde token` for `tde dev`.
pub const DEV_ISSUER: &str = "tde-dev";
/// Audience of every tde service.
pub const DEV_AUDIENCE: &str = "tde";

/// Scopes of the platform. A scope names a resource family and a level; `:read` scopes are the
/// only ones an agency may hold.
pub mod scope {
    pub const TERRITORIES_READ: &str = "territories:read";
    pub const TERRITORIES_WRITE: &str = "territories:write";
    pub const TERRITORIES_ADMIN: &str = "territories:admin";
    /// Contacts' personal data in responses (names, e-mails, phones).
    pub const CONTACTS_READ: &str = "contacts:read";
    /// Export and erasure of a person's data (RGPD requests).
    pub const CONTACTS_ADMIN: &str = "contacts:admin";
    pub const AUDIT_READ: &str = "audit:read";
    /// Dead letters and parked events: seeing them, and putting them back (operators).
    pub const OPERATIONS_READ: &str = "operations:read";
    pub const OPERATIONS_ADMIN: &str = "operations:admin";
    /// Accompaniment plans: charters, actions, steering meetings, reviews.
    pub const PLANS_READ: &str = "plans:read";
    pub const PLANS_WRITE: &str = "plans:write";
    /// Stopping a plan, assigning providers: programme decisions.
    pub const PLANS_ADMIN: &str = "plans:admin";
    /// Notifications: what was sent, to whom; recipients' preferences.
    pub const NOTIFICATIONS_READ: &str = "notifications:read";
    pub const NOTIFICATIONS_WRITE: &str = "notifications:write";
    /// Subsidies: envelopes, decisions, payments, the ledger and its exports.
    pub const SUBSIDIES_READ: &str = "subsidies:read";
    pub const SUBSIDIES_WRITE: &str = "subsidies:write";
    /// Approving a subsidy decision (the second pair of eyes), refusing a subsidy.
    pub const SUBSIDIES_APPROVE: &str = "subsidies:approve";
    /// Matching: trusted providers, needs, rankings, assignments and proposals. Providers
    /// hold both to answer their own proposals.
    pub const MATCHING_READ: &str = "matching:read";
    pub const MATCHING_WRITE: &str = "matching:write";

    /// Every scope, for the national team's tokens.
    pub const ALL: &[&str] = &[
        TERRITORIES_READ,
        TERRITORIES_WRITE,
        TERRITORIES_ADMIN,
        PLANS_READ,
        PLANS_WRITE,
        PLANS_ADMIN,
        NOTIFICATIONS_READ,
        NOTIFICATIONS_WRITE,
        SUBSIDIES_READ,
        SUBSIDIES_WRITE,
        SUBSIDIES_APPROVE,
        MATCHING_READ,
        MATCHING_WRITE,
        CONTACTS_READ,
        CONTACTS_ADMIN,
        AUDIT_READ,
        OPERATIONS_READ,
        OPERATIONS_ADMIN,
    ];
}

/// A caller's role, from the token's `tde_role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Équipe nationale (ANCT): every territory.
    National,
    /// Chef de projet: the territories or régions listed in the token.
    ProjectLead,
    /// A person of one territory (élu, agent): that territory only.
    TerritoryMember,
    /// Another agency or administration: read scopes only.
    Agency,
    /// A provider (prestataire) of accompaniment actions.
    Provider,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::National,
        Role::ProjectLead,
        Role::TerritoryMember,
        Role::Agency,
        Role::Provider,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::National => "national",
            Role::ProjectLead => "project_lead",
            Role::TerritoryMember => "territory_member",
            Role::Agency => "agency",
            Role::Provider => "provider",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Whether a role may ever hold `scope`. A scope its token grants beyond this is ignored,
    /// so that a mis-issued token cannot widen a role.
    pub fn permits(self, scope: &str) -> bool {
        let read = scope.ends_with(":read");
        let admin = scope.ends_with(":admin");
        match self {
            Role::National => true,
            Role::ProjectLead | Role::TerritoryMember => {
                !admin && scope != scope::AUDIT_READ && scope != scope::OPERATIONS_READ
            }
            Role::Agency => read && scope != scope::AUDIT_READ && scope != scope::OPERATIONS_READ,
            // Providers read the territories and plans they work for, and read and answer
            // their own proposals.
            Role::Provider => {
                (read
                    && (scope == scope::TERRITORIES_READ
                        || scope == scope::PLANS_READ
                        || scope == scope::MATCHING_READ))
                    || scope == scope::MATCHING_WRITE
            }
        }
    }

    /// The scopes `tde token` grants when none are asked for.
    pub fn default_scopes(self) -> Vec<String> {
        scope::ALL
            .iter()
            .filter(|s| self.permits(s))
            .map(|s| s.to_string())
            .collect()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which territories a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility<'a> {
    All,
    /// These territories, and every territory of these régions.
    Only {
        territories: &'a [String],
        regions: &'a [String],
    },
}

impl Visibility<'_> {
    /// What lists filter on: none for every territory, else the territory ids and régions.
    pub fn filter(&self) -> Option<(Vec<String>, Vec<String>)> {
        match self {
            Visibility::All => None,
            Visibility::Only {
                territories,
                regions,
            } => Some((territories.to_vec(), regions.to_vec())),
        }
    }
}

/// An authenticated caller, as the verified token describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// The token's `client_id`: the application calling on the subject's behalf.
    pub client_id: Option<String>,
    pub role: Role,
    /// Granted scopes that the role permits.
    scopes: Vec<String>,
    /// Territory ids (project leads, territory members).
    pub territories: Vec<String>,
    /// Région codes (project leads).
    pub regions: Vec<String>,
    /// What the rate limit counts calls by: the client application, else the subject.
    pub rate_key: String,
    /// The person's verified e-mail address (normalised), when the token carries one: what
    /// a person's own data is matched on (their notification preferences…).
    pub email: Option<String>,
    /// The provider a `provider` token speaks for (`tde_provider`): what it sees of matching
    /// (its own proposals). Never set for other roles.
    pub provider_id: Option<String>,
}

impl Principal {
    pub fn new(
        subject: String,
        client_id: Option<String>,
        role: Role,
        scopes: impl IntoIterator<Item = String>,
        territories: Vec<String>,
        regions: Vec<String>,
    ) -> Self {
        let mut scopes: Vec<String> = scopes.into_iter().filter(|s| role.permits(s)).collect();
        scopes.sort();
        scopes.dedup();
        Self {
            rate_key: client_id.clone().unwrap_or_else(|| subject.clone()),
            subject,
            client_id,
            role,
            scopes,
            territories,
            regions,
            email: None,
            provider_id: None,
        }
    }

    /// The same caller, speaking for provider `id` (a provider's token only).
    pub fn with_provider(mut self, id: Option<String>) -> Self {
        self.provider_id = id.filter(|_| self.role == Role::Provider);
        self
    }

    /// The same caller, with their verified e-mail address.
    pub fn with_email(mut self, email: Option<String>) -> Self {
        self.email = email;
        self
    }

    /// The caller when authentication is off (measurements only): every right.
    pub fn unrestricted() -> Self {
        Self::new(
            "unauthenticated".into(),
            None,
            Role::National,
            scope::ALL.iter().map(|s| s.to_string()),
            Vec::new(),
            Vec::new(),
        )
    }

    /// A caller with no right at all, who sees no territory: what a handler sees if no
    /// principal reached it.
    pub fn nobody() -> Self {
        Self {
            rate_key: "anonymous".into(),
            subject: "anonymous".into(),
            client_id: None,
            role: Role::TerritoryMember,
            scopes: Vec::new(),
            territories: Vec::new(),
            regions: Vec::new(),
            email: None,
            provider_id: None,
        }
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn visibility(&self) -> Visibility<'_> {
        match self.role {
            Role::National | Role::Agency => Visibility::All,
            // Providers see the territories they work for, as listed in their token.
            Role::ProjectLead | Role::TerritoryMember | Role::Provider => Visibility::Only {
                territories: &self.territories,
                regions: &self.regions,
            },
        }
    }

    /// Whether the caller may see the territory `id` of région `region_code`.
    pub fn may_see(&self, id: &str, region_code: &str) -> bool {
        match self.visibility() {
            Visibility::All => true,
            Visibility::Only {
                territories,
                regions,
            } => territories.iter().any(|t| t == id) || regions.iter().any(|r| r == region_code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(of: &str) -> Principal {
        Principal::new(
            "m".into(),
            None,
            Role::TerritoryMember,
            scope::ALL.iter().map(|s| s.to_string()),
            vec![of.into()],
            vec![],
        )
    }

    #[test]
    fn roles_cannot_be_widened_by_their_tokens() {
        let m = member("a");
        assert!(m.has_scope(scope::TERRITORIES_WRITE));
        assert!(!m.has_scope(scope::TERRITORIES_ADMIN));
        assert!(!m.has_scope(scope::AUDIT_READ));
        let agency = Principal::new(
            "x".into(),
            Some("dgcl".into()),
            Role::Agency,
            scope::ALL.iter().map(|s| s.to_string()),
            vec![],
            vec![],
        );
        assert_eq!(
            agency.scopes(),
            &[
                scope::CONTACTS_READ.to_string(),
                scope::MATCHING_READ.to_string(),
                scope::NOTIFICATIONS_READ.to_string(),
                scope::PLANS_READ.to_string(),
                scope::SUBSIDIES_READ.to_string(),
                scope::TERRITORIES_READ.to_string()
            ]
        );
        assert_eq!(agency.rate_key, "dgcl");
    }

    #[test]
    fn territory_visibility() {
        let m = member("a");
        assert!(m.may_see("a", "84"));
        assert!(!m.may_see("b", "84"));
        let lead = Principal::new(
            "l".into(),
            None,
            Role::ProjectLead,
            vec![],
            vec![],
            vec!["84".into()],
        );
        assert!(lead.may_see("b", "84"));
        assert!(!lead.may_see("b", "11"));
        assert!(Principal::unrestricted().may_see("z", "01"));
        assert!(!Principal::nobody().has_scope(scope::TERRITORIES_READ));
        assert!(!Principal::nobody().may_see("z", "01"));
    }
}
