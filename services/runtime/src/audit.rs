//! The audit trail: every write, and every read of contacts' personal data, with who made it
//! (subject, client, role), the method, the resource, the request id, the outcome and the
//! time. Each service keeps its trail in its own database (table `audit_events`, append-only
//! by trigger); the auth layer appends to it, and `AuditService.ListAuditEvents` reads the
//! trails of the services of the process.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, Set,
};
use tonic::{Request, Response, Status};

use tde_proto::audit::v1 as pb;

use crate::api::{decode_page_token, encode_page_token, page_size, timestamp};
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
}

impl AuditNote {
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

pub async fn append(db: &impl ConnectionTrait, r: &AuditRecord) -> Result<(), DbErr> {
    entity::ActiveModel {
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
    }
    .insert(db)
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
        let size = page_size(r.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let before = decode_page_token(&r.page_token)?;
        let start = r.start_time.as_ref().map(crate::api::from_timestamp);
        let end = r.end_time.as_ref().map(crate::api::from_timestamp);
        if matches!(start, Some(None)) {
            return Err(ApiError::invalid("start_time", "is not a valid time"));
        }
        if matches!(end, Some(None)) {
            return Err(ApiError::invalid("end_time", "is not a valid time"));
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
            if let Some(b) = &before {
                query = query.filter(Column::Id.lt(b.clone()));
            }
            found.extend(
                query
                    .order_by_desc(Column::Id)
                    .limit(size + 1)
                    .all(db)
                    .await?,
            );
        }
        // Newest first across the trails; one more than asked tells whether a page follows.
        found.sort_by(|a, b| b.id.cmp(&a.id));
        let next_page_token = if found.len() as u64 > size {
            found.truncate(size as usize);
            found
                .last()
                .map(|e| encode_page_token(&e.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
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
