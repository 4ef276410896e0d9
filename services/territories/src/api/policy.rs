//! Who may call what: the scope of every method of the territories service (one table, deny
//! by default). Which territories a caller sees is then decided per call by the handlers.

use tde_runtime::auth::MethodPolicy;
use tde_runtime::auth::scope::{
    CONTACTS_ADMIN, TERRITORIES_ADMIN, TERRITORIES_READ, TERRITORIES_WRITE,
};

pub const POLICIES: &[MethodPolicy] = &[
    // Territories.
    MethodPolicy::write(
        "/tde.territories.v1.TerritoryService/RegisterTerritory",
        TERRITORIES_ADMIN,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.TerritoryService/GetTerritory",
        TERRITORIES_READ,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.TerritoryService/ListTerritories",
        TERRITORIES_READ,
    ),
    MethodPolicy::write(
        "/tde.territories.v1.TerritoryService/UpdateTerritory",
        TERRITORIES_WRITE,
    ),
    // Moving a territory along its path is the programme's decision.
    MethodPolicy::programme(
        "/tde.territories.v1.TerritoryService/AdvanceTerritoryStage",
        TERRITORIES_WRITE,
    ),
    MethodPolicy::write(
        "/tde.territories.v1.TerritoryService/WithdrawTerritory",
        TERRITORIES_ADMIN,
    ),
    // Which territory continues when a new vintage merged communes: a programme decision.
    MethodPolicy::write(
        "/tde.territories.v1.TerritoryService/ResolveGeographyConflict",
        TERRITORIES_ADMIN,
    ),
    // Contacts' personal data (RGPD requests).
    MethodPolicy::write(
        "/tde.territories.v1.PersonalDataService/ExportPersonalData",
        CONTACTS_ADMIN,
    ),
    MethodPolicy::write(
        "/tde.territories.v1.PersonalDataService/ErasePersonalData",
        CONTACTS_ADMIN,
    ),
    // The reference geography: public data, read by every authenticated programme user.
    MethodPolicy::write(
        "/tde.territories.v1.GeographyService/ImportGeography",
        TERRITORIES_ADMIN,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.GeographyService/GetGeographyVintage",
        TERRITORIES_READ,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.GeographyService/GetCommune",
        TERRITORIES_READ,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.GeographyService/GetEpci",
        TERRITORIES_READ,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.GeographyService/GetDepartement",
        TERRITORIES_READ,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.GeographyService/GetRegion",
        TERRITORIES_READ,
    ),
    MethodPolicy::read(
        "/tde.territories.v1.GeographyService/SearchCommunes",
        TERRITORIES_READ,
    ),
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
