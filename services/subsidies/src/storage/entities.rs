//! sea-orm entities of the subsidies database.

/// The read model of territories: what this service needs (name, région, SIREN), fed by the
/// territory events.
pub mod territory {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "territories")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub kind: String,
        /// INSEE code, or the SIREN of an EPCI.
        pub official_code: String,
        pub region_code: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The read model of plans: their status (a stopped plan is paid nothing more) and territory.
pub mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub territory_id: String,
        pub stopped: bool,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Plan years whose review (bilan) is recorded: their balance may be paid.
pub mod plan_review {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plan_reviews")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plan_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub year: i16,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod envelope {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "envelopes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub budget_year: i32,
        /// Empty for the national envelope.
        pub region_code: String,
        pub parent_id: Option<String>,
        pub amount_cents: i64,
        /// Kept equal to the ledger's commitments minus decommitments (checked by
        /// `Reconcile`); a CHECK keeps it within `amount_cents`.
        pub committed_cents: i64,
        pub paid_cents: i64,
        pub advance_percent: i16,
        /// JSON array of the amount's changes.
        pub changes: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subsidy {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subsidies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub plan_id: String,
        pub plan_year: i16,
        pub amendment_number: i32,
        pub territory_id: String,
        pub territory_name: String,
        pub region_code: String,
        pub year_start: Date,
        pub year_end: Date,
        pub submission_number: i32,
        pub requested_cents: i64,
        pub status: String,
        /// JSON; the proposer is a token subject (a pseudonymous id), never a name.
        pub proposal: Option<String>,
        /// JSON; the decider is a token subject.
        pub decision: Option<String>,
        pub budget_year: i32,
        pub envelope_id: Option<String>,
        pub granted_cents: i64,
        pub decommitted_cents: i64,
        pub paid_cents: i64,
        pub clawed_back_cents: i64,
        pub advance_percent: i16,
        pub reviewed: bool,
        pub plan_stopped: bool,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod payment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub subsidy_id: String,
        pub territory_id: String,
        pub region_code: String,
        pub envelope_id: String,
        pub kind: String,
        pub amount_cents: i64,
        pub status: String,
        pub reference: String,
        pub failure_reason: String,
        pub paid_on: Option<Date>,
        pub authorised_by: String,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The ledger: append-only (triggers refuse UPDATE and DELETE).
pub mod ledger_entry {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_entries")]
    pub struct Model {
        /// Time-ordered (UUID v7): also the ledger's order.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub kind: String,
        pub amount_cents: i64,
        pub envelope_id: String,
        pub subsidy_id: String,
        pub payment_id: Option<String>,
        pub territory_id: String,
        pub region_code: String,
        pub budget_year: i32,
        pub reference: String,
        pub reason: String,
        pub actor: String,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
