//! sea-orm entities of the matching database.

/// Trusted providers. Skills, areas and conflicts are JSON arrays on the row: one read serves
/// a ranking.
pub mod provider {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "providers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub siret: String,
        pub name: String,
        pub naf_code: String,
        pub qualiopi_expiry: Option<Date>,
        pub skills: String,
        pub areas: String,
        pub conflict_territory_ids: String,
        pub capacity: i32,
        pub day_rate_cents: i64,
        pub status: String,
        pub status_reason: String,
        /// Personal data.
        pub contact_name: String,
        /// Personal data.
        pub contact_email: String,
        pub contact_email_sha256: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The read model of needs: the actions of the plans events.
pub mod need {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "needs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub plan_id: String,
        pub territory_id: String,
        pub territory_name: String,
        pub departement_code: String,
        pub region_code: String,
        pub year: i16,
        pub kind: String,
        pub title: String,
        pub skills: String,
        pub planned_start: Date,
        pub planned_end: Date,
        pub budget_cents: i64,
        pub status: String,
        pub provider_id: Option<String>,
        /// Skills needed, no provider, planned or in progress: what lists and assignments
        /// read, through an index.
        pub open: bool,
        /// False once the plan is completed or stopped.
        pub plan_open: bool,
        pub version: i64,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A provider's work on an action, and its rating once finished.
pub mod assignment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "assignments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub action_id: String,
        pub provider_id: String,
        pub territory_id: String,
        pub region_code: String,
        pub planned_start: Date,
        pub planned_end: Date,
        pub finished: bool,
        pub accepted_at: DateTimeUtc,
        pub rating: Option<i16>,
        pub rating_comment: String,
        /// Personal data: the token subject of the rating's author.
        pub rated_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod proposal {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "proposals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub need_id: String,
        pub provider_id: String,
        pub territory_id: String,
        pub region_code: String,
        pub status: String,
        pub score: f64,
        pub rank: i32,
        pub override_justification: String,
        pub decline_reason: String,
        pub deadline: DateTimeUtc,
        pub created_by: String,
        pub created_at: DateTimeUtc,
        pub answered_at: Option<DateTimeUtc>,
        pub version: i64,
        pub batch_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What a PlanAssignments call that sent proposals answered besides them (its id is the
/// proposals' `batch_id`).
pub mod assignment_plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "assignment_plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub total_score: f64,
        pub greedy_total_score: f64,
        pub unserved: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
