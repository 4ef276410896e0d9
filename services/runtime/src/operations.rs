//! `tde.operations.v1.OperationsService`: what operators look after in a process — dead
//! letters of its consumers and events its relays parked — listed, replayed and published
//! again. Served by every process for the services it runs.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tonic::{Request, Response, Status};

use tde_proto::operations::v1 as pb;

use crate::api::{PageRequest, timestamp};
use crate::dead_letter::{self, Replayed};
use crate::error::ApiError;
use crate::inbox::EventHandler;
use crate::outbox::{self, OutboxWaker};

const DEFAULT_PAGE: u64 = 50;
const MAX_PAGE: u64 = 500;

/// One service of the process, as operations see it.
#[derive(Clone)]
pub struct OperatedService {
    pub service: &'static str,
    pub db: DatabaseConnection,
    /// Its consumers, by durable name: what replays a dead letter.
    pub consumers: HashMap<String, Arc<dyn EventHandler>>,
    pub outbox: OutboxWaker,
}

pub struct OperationsApi {
    services: Vec<OperatedService>,
}

impl OperationsApi {
    pub fn new(services: Vec<OperatedService>) -> Self {
        Self { services }
    }

    /// The services a request names (all of them when it names none).
    fn selected(&self, service: &str) -> Result<Vec<&OperatedService>, ApiError> {
        if service.is_empty() {
            return Ok(self.services.iter().collect());
        }
        self.services
            .iter()
            .find(|s| s.service == service)
            .map(|s| vec![s])
            .ok_or_else(|| ApiError::NotFound {
                resource_type: "service",
                name: crate::input::quote(service),
                field: Some("service"),
            })
    }

    fn one(&self, service: &str) -> Result<&OperatedService, ApiError> {
        if service.is_empty() {
            return Err(ApiError::invalid("service", "is required"));
        }
        Ok(self.selected(service)?[0])
    }

    async fn list_dead_letters(
        &self,
        r: pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, ApiError> {
        crate::input::text("consumer", &r.consumer, 200)?;
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let consumer = (!r.consumer.is_empty()).then_some(r.consumer.as_str());
        let mut found = Vec::new();
        for s in self.selected(&r.service)? {
            for m in dead_letter::list(
                &s.db,
                consumer,
                r.include_replayed,
                page.after(),
                page.fetch(),
            )
            .await?
            {
                found.push((s.service, m));
            }
        }
        found.sort_by(|a, b| a.1.id.cmp(&b.1.id));
        let (found, next_page_token) = page.page(found, |(_, m)| m.id.clone());
        Ok(pb::ListDeadLettersResponse {
            dead_letters: found
                .into_iter()
                .map(|(service, m)| pb::DeadLetter {
                    service: service.to_string(),
                    consumer: m.consumer,
                    event_id: m.event_id,
                    event_type: m.event_type,
                    subject: m.subject,
                    aggregate_id: m.aggregate_id,
                    event_time: Some(timestamp(m.event_time)),
                    error: m.error,
                    deliveries: m.deliveries,
                    park_time: Some(timestamp(m.parked_at)),
                    replay_time: m.replayed_at.map(timestamp),
                    id: m.id,
                })
                .collect(),
            next_page_token,
        })
    }

    async fn replay(
        &self,
        r: pb::ReplayDeadLettersRequest,
    ) -> Result<pb::ReplayDeadLettersResponse, ApiError> {
        let s = self.one(&r.service)?;
        crate::input::text("consumer", &r.consumer, 200)?;
        if r.ids.len() > 1_000 {
            return Err(ApiError::invalid("ids", "at most 1000 at once"));
        }
        let consumer = (!r.consumer.is_empty()).then_some(r.consumer.as_str());
        let mut letters = dead_letter::list(&s.db, consumer, false, None, 10_000).await?;
        if !r.ids.is_empty() {
            letters.retain(|m| r.ids.contains(&m.id));
        }
        let mut outcomes = Vec::new();
        for letter in letters {
            let Some(handler) = s.consumers.get(&letter.consumer) else {
                outcomes.push(pb::ReplayOutcome {
                    id: letter.id.clone(),
                    replayed: false,
                    error: format!("no consumer {} runs here", letter.consumer),
                });
                continue;
            };
            let outcome =
                dead_letter::replay(&s.db, handler.as_ref(), &letter, crate::api::now()).await?;
            outcomes.push(match outcome {
                Replayed::Done => pb::ReplayOutcome {
                    id: letter.id,
                    replayed: true,
                    error: String::new(),
                },
                Replayed::Refused(error) => pb::ReplayOutcome {
                    id: letter.id,
                    replayed: false,
                    error,
                },
            });
        }
        Ok(pb::ReplayDeadLettersResponse { outcomes })
    }

    async fn list_parked(
        &self,
        r: pb::ListParkedEventsRequest,
    ) -> Result<pb::ListParkedEventsResponse, ApiError> {
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        // The token holds "<service>/<seq>": sequences are per service database.
        let after = page
            .after()
            .map(|k| {
                k.split_once('/')
                    .and_then(|(svc, seq)| Some((svc.to_string(), seq.parse::<i64>().ok()?)))
                    .ok_or_else(|| {
                        ApiError::invalid("page_token", "is not a token returned by this API")
                    })
            })
            .transpose()?;
        let mut found = Vec::new();
        for s in self.selected(&r.service)? {
            let after_seq = match &after {
                Some((svc, seq)) if svc == s.service => Some(*seq),
                Some((svc, _)) if svc.as_str() > s.service => continue,
                _ => None,
            };
            for m in outbox::parked(&s.db, after_seq, page.fetch()).await? {
                found.push((s.service, m));
            }
        }
        found.sort_by(|a, b| (a.0, a.1.seq).cmp(&(b.0, b.1.seq)));
        let (found, next_page_token) = page.page(found, |(svc, m)| format!("{svc}/{}", m.seq));
        Ok(pb::ListParkedEventsResponse {
            parked_events: found
                .into_iter()
                .map(|(service, m)| pb::ParkedEvent {
                    service: service.to_string(),
                    payload_bytes: m.payload.len() as i64,
                    event_id: m.event_id,
                    event_type: m.event_type,
                    subject: m.subject,
                    aggregate_id: m.aggregate_id,
                    reason: m.park_reason.unwrap_or_default(),
                    create_time: Some(timestamp(m.created_at)),
                    park_time: m.parked_at.map(timestamp),
                })
                .collect(),
            next_page_token,
        })
    }

    async fn republish(
        &self,
        r: pb::RepublishParkedEventsRequest,
    ) -> Result<pb::RepublishParkedEventsResponse, ApiError> {
        let s = self.one(&r.service)?;
        if r.event_ids.len() > 1_000 {
            return Err(ApiError::invalid("event_ids", "at most 1000 at once"));
        }
        for (i, id) in r.event_ids.iter().enumerate() {
            crate::input::text(&format!("event_ids[{i}]"), id, 64)?;
        }
        let republished = outbox::republish(&s.db, &r.event_ids).await?;
        s.outbox.wake();
        Ok(pb::RepublishParkedEventsResponse {
            republished: republished as i64,
        })
    }
}

#[tonic::async_trait]
impl pb::operations_service_server::OperationsService for OperationsApi {
    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        Ok(Response::new(
            self.list_dead_letters(request.into_inner()).await?,
        ))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<pb::ReplayDeadLettersRequest>,
    ) -> Result<Response<pb::ReplayDeadLettersResponse>, Status> {
        let caller = crate::api::Caller::of(&request);
        let r = request.into_inner();
        caller.concerns(format!("dead_letters/{}", r.service));
        Ok(Response::new(self.replay(r).await?))
    }

    async fn list_parked_events(
        &self,
        request: Request<pb::ListParkedEventsRequest>,
    ) -> Result<Response<pb::ListParkedEventsResponse>, Status> {
        Ok(Response::new(self.list_parked(request.into_inner()).await?))
    }

    async fn republish_parked_events(
        &self,
        request: Request<pb::RepublishParkedEventsRequest>,
    ) -> Result<Response<pb::RepublishParkedEventsResponse>, Status> {
        let caller = crate::api::Caller::of(&request);
        let r = request.into_inner();
        caller.concerns(format!("outbox/{}", r.service));
        Ok(Response::new(self.republish(r).await?))
    }
}
