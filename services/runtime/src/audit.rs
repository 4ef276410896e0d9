//! The audit trail: every write, and every read of contacts' personal data, with who made it
//! (subject, client, role), the method, the resource, the request id, the outcome and the
//! time. Each service keeps its trail in its own database (table `audit_events`, append-only
//! by trigger); the auth layer appends to it, and `AuditService.ListAuditEvents` reads the
//! trails of the services of the process.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, Set, TransactionTrait as _,
};
use tonic::{Request, Response, Status};

use tde_proto::audit::v1 as pb;

use crate::api::{PageRequest, timestamp};
use crate::error::ApiError;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub at: DateTimeUtc,
        pub service: String,
        pub method: String,
        pub resource: String,
        pub subject: String,
        pub client_id: String,
        pub role: String,
        pub request_id: String,
        pub outcome: String,
        pub kind: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column, Entity};

/// Why a call is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    Write,
    PersonalDataRead,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Write => "write",
            AuditKind::PersonalDataRead => "personal_data_read",
        }
    }
}

/// What a handler tells the audit trail about its call: the resource it concerns and whether
/// it returned personal data. Shared between the auth layer (which writes the record once
/// the call is over) and the handler (through `api::Caller`).
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Arc<Mutex<NoteInner>>);

#[derive(Debug, Default)]
struct NoteInner {
    resource: Option<String>,
    personal_data_read: bool,
    /// The record of a write call, until a transaction of the call took it.
    pending_write: Option<AuditRecord>,
    written_in_transaction: bool,
}

tokio::task_local! {
    /// The audited call being handled on this task (set by the auth layer).
    static CALL: AuditNote;
}

/// Runs `call` as the call `note` describes, so that its writes can put its record in their
/// own transaction (`record_in`).
pub async fn scope<F: std::future::Future>(note: AuditNote, call: F) -> F::Output {
    CALL.scope(note, call).await
}

/// Appends the current call's record in the caller's transaction, so that a change and its
/// record commit together or not at all. `outbox::enqueue` calls it: every write that
/// publishes events is audited atomically. Does nothing outside an audited write call, or
/// when the record was written already.
pub async fn record_in(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let Ok(note) = CALL.try_with(|n| n.clone()) else {
        return Ok(());
    };
    let record = {
        let mut inner = note.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut record) = inner.pending_write.take() else {
            return Ok(());
        };
        inner.written_in_transaction = true;
        record.resource = inner.resource.clone().unwrap_or_default();
        record.at = crate::api::now();
        record
    };
    insert(db, &[record]).await
}

impl AuditNote {
    /// Prepares the record of a write call (outcome OK), for `record_in`.
    pub fn expect_write(&self, record: AuditRecord) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending_write = Some(record);
    }

    /// Whether a transaction of the call holds its record (committed if the call succeeded).
    pub fn written_in_transaction(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .written_in_transaction
    }

    pub fn set_resource(&self, resource: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).resource = Some(resource);
    }

    pub fn mark_personal_data_read(&self) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .personal_data_read = true;
    }

    pub fn resource(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resource
            .clone()
    }

    pub fn personal_data_read(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .personal_data_read
    }
}

/// One record, as appended.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub service: &'static str,
    pub method: String,
    pub resource: String,
    pub subject: String,
    pub client_id: String,
    pub role: String,
    pub request_id: String,
    pub outcome: &'static str,
    pub kind: AuditKind,
    pub at: DateTime<Utc>,
}

/// Appends records in one transaction. On PostgreSQL the commit does not wait for the WAL
/// flush (the server flushes it within a fraction of a second): a tde crash loses nothing,
/// and audited calls do not pay a second disk sync.
pub async fn append(db: &DatabaseConnection, records: &[AuditRecord]) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    let txn = db.begin().await?;
    if crate::db::is_postgres(db) {
        txn.execute_unprepared("SET LOCAL synchronous_commit TO OFF")
            .await?;
    }
    insert(&txn, records).await?;
    txn.commit().await
}

type Pending = (
    AuditRecord,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// Appends the records of concurrent calls together: each call waits until its record is
/// committed, and calls arriving meanwhile share the next commit.
#[derive(Clone)]
pub struct AuditWriter {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

/// Records written per transaction at most.
const BATCH: usize = 256;

impl AuditWriter {
    /// Starts the writer of one service's trail; it stops when every clone is dropped.
    pub fn start(db: DatabaseConnection) -> Self {
        let (queue, mut incoming) = tokio::sync::mpsc::channel::<Pending>(4 * BATCH);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (records, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let outcome = append(&db, &records).await.map_err(|e| e.to_string());
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
            }
        });
        Self { queue }
    }

    /// Appends `record` and waits until it is committed.
    pub async fn append(&self, record: AuditRecord) -> Result<(), String> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.queue
            .send((record, done))
            .await
            .map_err(|_| "the audit writer has stopped".to_string())?;
        committed
            .await
            .map_err(|_| "the audit writer has stopped".to_string())?
    }
}

async fn insert(db: &impl ConnectionTrait, records: &[AuditRecord]) -> Result<(), DbErr> {
    Entity::insert_many(records.iter().map(|r| entity::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        at: Set(r.at),
        service: Set(r.service.to_string()),
        method: Set(r.method.clone()),
        resource: Set(r.resource.clone()),
        subject: Set(r.subject.clone()),
        client_id: Set(r.client_id.clone()),
        role: Set(r.role.clone()),
        request_id: Set(r.request_id.clone()),
        outcome: Set(r.outcome.to_string()),
        kind: Set(r.kind.as_str().to_string()),
    }))
    .exec_without_returning(db)
    .await
    .map(|_| ())
}

/// The canonical name of a gRPC status code, as the audit trail records it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

const DEFAULT_PAGE: u64 = 50;
const MAX_PAGE: u64 = 500;

/// `tde.audit.v1.AuditService` over the trails of the services of this process.
pub struct AuditApi {
    trails: Vec<(&'static str, DatabaseConnection)>,
}

impl AuditApi {
    pub fn new(trails: Vec<(&'static str, DatabaseConnection)>) -> Self {
        Self { trails }
    }

    async fn list(
        &self,
        r: pb::ListAuditEventsRequest,
    ) -> Result<pb::ListAuditEventsResponse, ApiError> {
        let request = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let start = r.start_time.as_ref().map(crate::api::from_timestamp);
        let end = r.end_time.as_ref().map(crate::api::from_timestamp);
        if matches!(start, Some(None)) {
            return Err(ApiError::invalid("start_time", "is not a valid time"));
        }
        if matches!(end, Some(None)) {
            return Err(ApiError::invalid("end_time", "is not a valid time"));
        }
        // Filters are bounded before they reach the database.
        for (field, value) in [
            ("service", &r.service),
            ("subject", &r.subject),
            ("method", &r.method),
            ("resource", &r.resource),
            ("outcome", &r.outcome),
        ] {
            crate::input::text(field, value, 300)?;
        }
        let text = |s: &str| {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_string())
        };
        let service = text(&r.service);
        if let Some(s) = &service
            && !self.trails.iter().any(|(name, _)| name == s)
        {
            return Err(ApiError::invalid(
                "service",
                "is not a service of this process",
            ));
        }
        let mut found = Vec::new();
        for (name, db) in &self.trails {
            if service.as_deref().is_some_and(|s| s != *name) {
                continue;
            }
            let mut query = Entity::find().filter(Column::Service.eq(*name));
            if let Some(s) = text(&r.subject) {
                query = query.filter(Column::Subject.eq(s));
            }
            if let Some(m) = text(&r.method) {
                query = if m.starts_with('/') {
                    query.filter(Column::Method.eq(m))
                } else {
                    query.filter(Column::Method.like(format!("%/{}", m.replace(['%', '_'], ""))))
                };
            }
            if let Some(res) = text(&r.resource) {
                query = query.filter(Column::Resource.eq(res));
            }
            if let Some(o) = text(&r.outcome) {
                query = query.filter(Column::Outcome.eq(o.to_ascii_uppercase()));
            }
            if let Some(Some(t)) = start {
                query = query.filter(Column::At.gte(t));
            }
            if let Some(Some(t)) = end {
                query = query.filter(Column::At.lt(t));
            }
            if let Some(before) = request.after() {
                query = query.filter(Column::Id.lt(before));
            }
            found.extend(
                query
                    .order_by_desc(Column::Id)
                    .limit(request.fetch())
                    .all(db)
                    .await?,
            );
        }
        // Newest first across the trails.
        found.sort_by(|a, b| b.id.cmp(&a.id));
        let (found, next_page_token) = request.page(found, |e| e.id.clone());
        Ok(pb::ListAuditEventsResponse {
            audit_events: found
                .into_iter()
                .map(|e| pb::AuditEvent {
                    id: e.id,
                    event_time: Some(timestamp(e.at)),
                    service: e.service,
                    method: e.method,
                    resource: e.resource,
                    subject: e.subject,
                    client_id: e.client_id,
                    role: e.role,
                    request_id: e.request_id,
                    outcome: e.outcome,
                    kind: e.kind,
                })
                .collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }
}
