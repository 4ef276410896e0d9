//! sea-orm entities of the territories database.

/// Accompanied territories. Histories and people are JSON documents on the row: one read
/// serves GetTerritory.
pub mod territory {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "territories")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        pub official_code: String,
        pub name: String,
        /// Normalised name for search (see `domain::names`).
        pub name_search: String,
        pub population: i64,
        pub departement_code: String,
        pub region_code: String,
        pub zone: String,
        pub time_zone: String,
        pub stage: String,
        pub stage_history: String,
        pub diagnostic: Option<String>,
        pub privileged_contact: Option<String>,
        pub operational_team: String,
        pub steering_body: Option<String>,
        pub code_history: String,
        /// The EPCI a commune belongs to.
        pub epci_siren: Option<String>,
        /// JSON of `recoding::GeographyIssue`; its kind and successor code are columns of
        /// their own, to filter on.
        pub geography_issue: Option<String>,
        pub geography_issue_kind: Option<String>,
        pub geography_successor: Option<String>,
        /// JSON list of `recoding::MergedTerritory`.
        pub merged_territories: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod geo_vintage {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "geo_vintages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub vintage: String,
        pub content_hash: String,
        pub communes: i32,
        pub epcis: i32,
        pub imported_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod geo_region {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "geo_regions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub name: String,
        pub zone: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod geo_departement {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "geo_departements")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub name: String,
        pub region_code: String,
        pub zone: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod geo_commune {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "geo_communes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub name: String,
        pub name_search: String,
        pub departement_code: String,
        pub region_code: String,
        pub zone: String,
        pub population: i64,
        pub siren: String,
        pub epci_siren: Option<String>,
        /// Comma-separated.
        pub postal_codes: String,
        /// Comma-separated INSEE codes of the communes merged into this one.
        pub former_codes: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod geo_epci {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "geo_epcis")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub siren: String,
        pub name: String,
        pub kind: String,
        pub population: i64,
        pub departement_code: String,
        pub region_code: String,
        pub zone: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
