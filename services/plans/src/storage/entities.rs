//! sea-orm entities of the plans database.

/// The read model of territories: what this service needs, fed by the territory events.
pub mod territory {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "territories")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub kind: String,
        pub stage: String,
        pub time_zone: String,
        pub region_code: String,
        /// Empty until a territory event carrying its location arrives (rows of earlier
        /// releases).
        pub departement_code: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Plans. The charter, submissions, reviews and celebrations are JSON documents on the row:
/// one read serves GetPlan.
pub mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub territory_id: String,
        pub territory_name: String,
        pub region_code: String,
        pub title: String,
        pub start_date: Date,
        pub status: String,
        pub status_reason: String,
        pub charter: String,
        pub submissions: String,
        pub reviews: String,
        pub celebrations: String,
        /// SHA-256 of the signatories' addresses, space-separated: erasure requests find
        /// the plans naming a person by it.
        pub people: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod action {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "actions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub plan_id: String,
        pub territory_id: String,
        pub region_code: String,
        pub year: i16,
        pub kind: String,
        pub title: String,
        pub description: String,
        /// JSON array of audience names.
        pub audiences: String,
        /// JSON array of skill names (also indexed in `action_skills`).
        pub skills: String,
        pub planned_start: Date,
        pub planned_end: Date,
        pub budget_cents: i64,
        pub status: String,
        pub provider_id: Option<String>,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The skills each action needs, one row per (skill, action): matching's search by skill.
pub mod action_skill {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "action_skills")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub skill: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub action_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod meeting {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "steering_meetings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub plan_id: String,
        pub territory_id: String,
        pub region_code: String,
        pub year: i16,
        pub sequence: i32,
        pub status: String,
        /// IANA zone; the local times below are the source of truth, UTC derives from them.
        pub time_zone: String,
        pub start_local: String,
        pub end_local: String,
        pub start_utc: DateTimeUtc,
        pub end_utc: DateTimeUtc,
        pub place: String,
        pub video_link: String,
        pub agenda: String,
        pub cancel_reason: String,
        pub minutes: String,
        /// JSON array.
        pub decisions: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
