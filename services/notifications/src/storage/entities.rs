//! sea-orm entities of the notifications database.

/// What this service knows of a territory: name and zone (from the events), its own reminder
/// time, and the secret of its calendar feed.
pub mod territory {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "territories")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub time_zone: String,
        pub region_code: String,
        /// Minutes after midnight, local; none: the deployment's.
        pub reminder_minutes: Option<i32>,
        pub feed_secret: Option<String>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The people told of a territory's meetings (personal data).
pub mod recipient {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recipients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub territory_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub email: String,
        pub email_sha256: String,
        pub name: String,
        pub role: String,
        pub language: String,
        pub channel: String,
        pub webhook_url: Option<String>,
        pub reminders: bool,
        pub updated_at: DateTimeUtc,
        /// The receiver's HMAC key (base64url), and the previous one until
        /// `webhook_previous_until` after a rotation.
        pub webhook_secret: Option<String>,
        pub webhook_previous_secret: Option<String>,
        pub webhook_previous_until: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The latest known version of each meeting (from the plans events).
pub mod meeting {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "meetings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub territory_id: String,
        pub sequence: i32,
        /// scheduled, cancelled or held.
        pub status: String,
        pub start_utc: DateTimeUtc,
        /// The meeting's facts as JSON (see `storage::MeetingDoc`).
        pub facts: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One message to send: (meeting, sequence, recipient, kind) is unique.
pub mod notification {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub meeting_id: String,
        pub sequence: i32,
        pub territory_id: String,
        pub recipient: String,
        pub recipient_sha256: String,
        pub kind: String,
        pub channel: String,
        pub status: String,
        pub due_at: DateTimeUtc,
        pub next_attempt_at: DateTimeUtc,
        pub attempts: i32,
        /// The replica holding it, until `lease_until`; `lease_token` fences its writes.
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub lease_token: Option<String>,
        pub sent_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub message_id: String,
        pub created_at: DateTimeUtc,
        /// When a dead letter was last put back by hand: its retry window starts there
        /// rather than at `due_at`.
        pub retry_from: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The delivery log: every attempt.
pub mod delivery {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub notification_id: String,
        pub territory_id: String,
        pub attempted_at: DateTimeUtc,
        pub channel: String,
        pub recipient: String,
        pub recipient_sha256: String,
        /// sent, failed (to be retried) or dead.
        pub outcome: String,
        pub error: Option<String>,
        pub attempt: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
