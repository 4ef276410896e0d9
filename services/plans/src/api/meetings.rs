//! tde.plans.v1.SteeringMeetingService.

use chrono::{DateTime, NaiveDateTime, Utc};
use tonic::{Request, Response, Status};

use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::steering_meeting_service_server::SteeringMeetingService;
use tde_runtime::api::{Caller, PageRequest, from_timestamp, parse_id};
use tde_runtime::idempotency::IdempotencyKey;
use tde_runtime::{ApiError, Violations};

use super::actions::{change_status, new_record};
use super::convert;
use super::plans::visible_to;
use super::{Locked, PlansApi, meeting_resource, stale};
use crate::domain::calendar::{MeetingTime, time_zone};
use crate::domain::meeting::{MeetingStatus, SteeringMeeting, Venue};
use crate::domain::plan::Plan;
use crate::events;
use crate::storage::{self, MeetingRecord, MeetingWindow};

pub const DEFAULT_PAGE: u64 = 100;
pub const MAX_PAGE: u64 = 500;
/// The widest window ListSteeringMeetings accepts.
const MAX_WINDOW_DAYS: i64 = 400;

fn meeting_not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        resource_type: "steering_meeting",
        name: id.to_string(),
        field: None,
    }
}

/// The start and end of a meeting request, in local time.
fn local_times(
    start: &str,
    end: &str,
) -> Result<(NaiveDateTime, NaiveDateTime), tde_runtime::InvalidFields> {
    let mut v = Violations::default();
    let start = v.check(convert::local_from_pb("start_local", start));
    let end = v.check(convert::local_from_pb("end_local", end));
    v.into_result()?;
    match (start, end) {
        (Some(s), Some(e)) => Ok((s, e)),
        _ => Err(tde_runtime::InvalidFields(vec![
            tde_runtime::FieldViolation::new("start_local", "is required"),
        ])),
    }
}

/// The plan year of a meeting's local start date.
fn year_of(plan: &Plan, time: &MeetingTime) -> Result<u8, ApiError> {
    plan.year_of(time.start.local.date()).ok_or_else(|| {
        let (from, _) = plan.year(1).unwrap_or_default();
        let (_, to) = plan.year(3).unwrap_or_default();
        ApiError::invalid(
            "start_local",
            format!("is outside the plan's three years ({from} to {to}, end excluded)"),
        )
    })
}

/// The sort key of the window list, held by its page tokens: the (start, id) of a meeting.
fn window_key(start: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", start.timestamp_micros())
}

fn parse_window_key(key: Option<&str>) -> Result<Option<(DateTime<Utc>, String)>, ApiError> {
    let Some(raw) = key else {
        return Ok(None);
    };
    let bad = || ApiError::invalid("page_token", "is not a token returned by this API");
    let (micros, id) = raw.split_once('|').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let start = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok(Some((start, id.to_string())))
}

impl PlansApi {
    /// Locks a meeting's plan, then reads the meeting (see `lock_action`).
    async fn lock_meeting(
        &self,
        caller: &Caller,
        id: &str,
        etag: &str,
    ) -> Result<(Locked, MeetingRecord), ApiError> {
        let id = parse_id("id", id)?.to_string();
        caller.concerns(meeting_resource(&id));
        let record = storage::find_meeting(&self.ctx.db, &id)
            .await?
            .filter(|m| caller.may_see(&m.meeting.territory_id, &m.region_code))
            .ok_or_else(|| meeting_not_found(&id))?;
        let locked = self
            .lock_plan(caller, &record.meeting.plan_id, "", None)
            .await
            .map_err(|_| meeting_not_found(&id))?;
        let record = storage::find_meeting(&locked.txn, &id)
            .await?
            .ok_or_else(|| meeting_not_found(&id))?;
        if !etag.is_empty() && etag != record.etag() {
            return Err(stale("steering_meeting", &id));
        }
        Ok((locked, record))
    }

    /// Writes a changed meeting with its event, and commits.
    async fn save_meeting(
        &self,
        locked: Locked,
        record: MeetingRecord,
        expected: i64,
        events: Vec<tde_runtime::outbox::NewEvent>,
    ) -> Result<MeetingRecord, ApiError> {
        if !storage::update_meeting(&locked.txn, &record, expected).await? {
            return Err(stale("steering_meeting", &record.meeting.id));
        }
        self.commit(locked, events).await?;
        Ok(record)
    }

    async fn schedule(
        &self,
        caller: &Caller,
        r: pb::ScheduleSteeringMeetingRequest,
    ) -> Result<MeetingRecord, ApiError> {
        let mut v = Violations::default();
        let plan_id = v.check(parse_id("plan_id", &r.plan_id).map_err(|_| {
            tde_runtime::InvalidFields(vec![tde_runtime::FieldViolation::new(
                "plan_id",
                "is required: the id of a plan",
            )])
        }));
        let times = v.check(local_times(&r.start_local, &r.end_local));
        let venue = Venue {
            place: r.place.trim().to_string(),
            video_link: r.video_link.trim().to_string(),
        };
        v.check(venue.validate());
        v.check(SteeringMeeting::validate_agenda(&r.agenda));
        v.into_result()?;
        let key = IdempotencyKey::of(caller, "steering meeting", &r.request_id, &r)?;
        let (Some(plan_id), Some((start, end))) = (plan_id, times) else {
            return Err(ApiError::invalid("plan_id", "is required"));
        };
        let plan_id = plan_id.to_string();
        let meeting_id = uuid::Uuid::now_v7().to_string();
        let locked = self
            .lock_plan(caller, &plan_id, "", Some("plan_id"))
            .await?;
        if let Some(existing) =
            IdempotencyKey::claim(key.as_ref(), &locked.txn, &meeting_id).await?
        {
            drop(locked);
            caller.concerns(meeting_resource(&existing));
            return storage::find_meeting(&self.ctx.db, &existing)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("replayed meeting {existing} is gone"))
                });
        }
        locked
            .plan
            .ensure_open("schedule a steering meeting")
            .map_err(ApiError::from)?;
        // The territory's zone, from the read model; a plan's territory is always known.
        let zone_name = storage::find_territory(&locked.txn, &locked.plan.territory_id)
            .await?
            .map(|t| t.time_zone)
            .unwrap_or_default();
        let zone = time_zone("time_zone", &zone_name).map_err(ApiError::from)?;
        let now = tde_runtime::api::now();
        let time = MeetingTime::new(start, end, zone, now)
            .map_err(|e| ApiError::from(rename_time_fields(e)))?;
        let year = year_of(&locked.plan, &time)?;
        let meeting = SteeringMeeting {
            id: meeting_id,
            plan_id: locked.plan.id.clone(),
            territory_id: locked.plan.territory_id.clone(),
            year,
            sequence: 0,
            status: MeetingStatus::Scheduled,
            time,
            venue,
            agenda: r.agenda.trim().to_string(),
            cancel_reason: String::new(),
            minutes: String::new(),
            decisions: Vec::new(),
        };
        caller.concerns(meeting_resource(&meeting.id));
        let record = MeetingRecord {
            meeting,
            region_code: locked.plan.region_code.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        storage::insert_meeting(&locked.txn, &record).await?;
        let event = events::meeting_scheduled(&record.meeting, &locked.plan.territory_name);
        self.commit(locked, vec![event]).await?;
        tracing::info!(meeting_id = %record.meeting.id, plan_id = %record.meeting.plan_id, "steering meeting scheduled");
        Ok(record)
    }

    async fn list_meetings_page(
        &self,
        caller: &Caller,
        r: pb::ListSteeringMeetingsRequest,
    ) -> Result<pb::ListSteeringMeetingsResponse, ApiError> {
        let mut v = Violations::default();
        let from = r.start_time_from.as_ref().and_then(from_timestamp);
        let to = r.start_time_to.as_ref().and_then(from_timestamp);
        if from.is_none() {
            v.add("start_time_from", "is required");
        }
        if to.is_none() {
            v.add("start_time_to", "is required");
        }
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                v.add("start_time_to", "must be after start_time_from");
            } else if t - f > chrono::Duration::days(MAX_WINDOW_DAYS) {
                v.add(
                    "start_time_to",
                    format!("the window spans at most {MAX_WINDOW_DAYS} days"),
                );
            }
        }
        let mut id_filter = |field: &'static str, raw: &str| {
            if raw.is_empty() {
                return None;
            }
            let parsed = parse_id(field, raw).ok().map(|id| id.to_string());
            if parsed.is_none() {
                v.add(field, "is not a valid id");
            }
            parsed
        };
        let plan_id = id_filter("plan_id", &r.plan_id);
        let territory_id = id_filter("territory_id", &r.territory_id);
        let status = v
            .check(convert::meeting_status_from_pb("status", r.status))
            .flatten();
        v.into_result()?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(ApiError::invalid("start_time_from", "is required"));
        };
        let request = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let after = parse_window_key(request.after())?;
        let window = MeetingWindow {
            from,
            to,
            plan_id,
            territory_id,
            status,
            visible_to: visible_to(caller),
        };
        caller.concerns("steering_meetings");
        let rows = storage::list_meetings(&self.ctx.db, &window, after, request.fetch()).await?;
        let (page, next_page_token) = request.page(rows, |m| {
            window_key(m.meeting.time.start.utc, &m.meeting.id)
        });
        Ok(pb::ListSteeringMeetingsResponse {
            meetings: page.iter().map(convert::meeting_to_pb).collect(),
            next_page_token,
        })
    }
}

/// `MeetingTime` names its fields after the domain (`start_time`); the API's are local times.
fn rename_time_fields(e: crate::domain::DomainError) -> crate::domain::DomainError {
    match e {
        crate::domain::DomainError::Invalid(v) => crate::domain::DomainError::Invalid(
            v.into_iter()
                .map(|f| {
                    let field = match f.field.as_str() {
                        "start_time" => "start_local".to_string(),
                        "end_time" => "end_local".to_string(),
                        other => other.to_string(),
                    };
                    tde_runtime::FieldViolation::new(field, f.description)
                })
                .collect(),
        ),
        other => other,
    }
}

#[tonic::async_trait]
impl SteeringMeetingService for PlansApi {
    async fn schedule_steering_meeting(
        &self,
        request: Request<pb::ScheduleSteeringMeetingRequest>,
    ) -> Result<Response<pb::ScheduleSteeringMeetingResponse>, Status> {
        let caller = Caller::of(&request);
        let record = self.schedule(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::ScheduleSteeringMeetingResponse {
            meeting: Some(convert::meeting_to_pb(&record)),
        }))
    }

    async fn get_steering_meeting(
        &self,
        request: Request<pb::GetSteeringMeetingRequest>,
    ) -> Result<Response<pb::GetSteeringMeetingResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(meeting_resource(&id));
        let record = storage::find_meeting(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?
            .filter(|m| caller.may_see(&m.meeting.territory_id, &m.region_code))
            .ok_or_else(|| meeting_not_found(&id))?;
        Ok(Response::new(pb::GetSteeringMeetingResponse {
            meeting: Some(convert::meeting_to_pb(&record)),
        }))
    }

    async fn list_steering_meetings(
        &self,
        request: Request<pb::ListSteeringMeetingsRequest>,
    ) -> Result<Response<pb::ListSteeringMeetingsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            self.list_meetings_page(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn reschedule_steering_meeting(
        &self,
        request: Request<pb::RescheduleSteeringMeetingRequest>,
    ) -> Result<Response<pb::RescheduleSteeringMeetingResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let (start, end) = local_times(&r.start_local, &r.end_local).map_err(ApiError::from)?;
        let venue =
            (!r.place.trim().is_empty() || !r.video_link.trim().is_empty()).then(|| Venue {
                place: r.place.trim().to_string(),
                video_link: r.video_link.trim().to_string(),
            });
        let (locked, mut record) = self.lock_meeting(&caller, &r.id, &r.etag).await?;
        let expected = record.version;
        locked
            .plan
            .ensure_open("reschedule its meetings")
            .map_err(ApiError::from)?;
        let now = tde_runtime::api::now();
        let zone = record.meeting.time.start.zone;
        let time = MeetingTime::new(start, end, zone, now)
            .map_err(|e| ApiError::from(rename_time_fields(e)))?;
        let year = year_of(&locked.plan, &time)?;
        let previous_start = record.meeting.time.start.utc;
        record
            .meeting
            .reschedule(time, venue)
            .map_err(ApiError::from)?;
        record.meeting.year = year;
        record.touch(now);
        let event = events::meeting_rescheduled(
            &record.meeting,
            &locked.plan.territory_name,
            previous_start,
        );
        let record = self
            .save_meeting(locked, record, expected, vec![event])
            .await?;
        tracing::info!(meeting_id = %record.meeting.id, sequence = record.meeting.sequence, "steering meeting rescheduled");
        Ok(Response::new(pb::RescheduleSteeringMeetingResponse {
            meeting: Some(convert::meeting_to_pb(&record)),
        }))
    }

    async fn cancel_steering_meeting(
        &self,
        request: Request<pb::CancelSteeringMeetingRequest>,
    ) -> Result<Response<pb::CancelSteeringMeetingResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        if r.reason.trim().is_empty() {
            return Err(ApiError::invalid("reason", "is required").into());
        }
        let (locked, mut record) = self.lock_meeting(&caller, &r.id, &r.etag).await?;
        let expected = record.version;
        record.meeting.cancel(&r.reason).map_err(ApiError::from)?;
        record.touch(tde_runtime::api::now());
        let event = events::meeting_cancelled(&record.meeting, &locked.plan.territory_name);
        let record = self
            .save_meeting(locked, record, expected, vec![event])
            .await?;
        tracing::info!(meeting_id = %record.meeting.id, "steering meeting cancelled");
        Ok(Response::new(pb::CancelSteeringMeetingResponse {
            meeting: Some(convert::meeting_to_pb(&record)),
        }))
    }

    async fn record_steering_meeting_held(
        &self,
        request: Request<pb::RecordSteeringMeetingHeldRequest>,
    ) -> Result<Response<pb::RecordSteeringMeetingHeldResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        // Every decision's input is checked before anything is locked.
        let mut v = Violations::default();
        let mut creations = Vec::new();
        let mut changes = Vec::new();
        for (i, d) in r.decisions.iter().enumerate() {
            let prefix = format!("decisions[{i}].");
            if let Some(a) = &d.create_action {
                if !d.action_id.is_empty() {
                    v.add(
                        format!("{prefix}action_id"),
                        "a decision creates an action or changes one, not both",
                    );
                }
                if let Some(action) = v.check(convert::action_from_pb(
                    &format!("{prefix}create_action."),
                    a,
                )) {
                    creations.push((prefix.clone(), action));
                }
            } else if !d.action_id.is_empty() {
                let id = parse_id("action_id", &d.action_id)
                    .ok()
                    .map(|u| u.to_string());
                let status = v
                    .check(convert::action_status_from_pb(
                        &format!("{prefix}action_status"),
                        d.action_status,
                    ))
                    .flatten();
                match (id, status) {
                    (Some(id), Some(status)) => changes.push((prefix.clone(), id, status)),
                    (None, _) => v.add(format!("{prefix}action_id"), "is not a valid id"),
                    (_, None) => v.add(
                        format!("{prefix}action_status"),
                        "is required with action_id",
                    ),
                }
            }
        }
        v.into_result().map_err(ApiError::from)?;
        let (locked, mut record) = self.lock_meeting(&caller, &r.id, &r.etag).await?;
        let expected = record.version;
        let now = tde_runtime::api::now();
        record
            .meeting
            .mark_held(
                &r.minutes,
                r.decisions
                    .iter()
                    .map(|d| d.text.trim().to_string())
                    .collect(),
                now,
            )
            .map_err(ApiError::from)?;
        record.touch(now);
        let mut actions = Vec::new();
        // Matching keeps its needs from the action events, whichever call changed them.
        let mut action_events = Vec::new();
        for (prefix, action) in creations {
            let created = new_record(&locked, action, &format!("{prefix}create_action.")).await?;
            storage::insert_action(&locked.txn, &created)
                .await
                .map_err(ApiError::from)?;
            let facts = events::action_facts(&locked.txn, &locked.plan, &created)
                .await
                .map_err(ApiError::from)?;
            action_events.push(events::action_created(facts, &caller.actor, now));
            actions.push(created);
        }
        for (prefix, id, status) in changes {
            let mut action = storage::find_action(&locked.txn, &id)
                .await
                .map_err(ApiError::from)?
                .filter(|a| a.plan_id == locked.plan.id)
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!("{prefix}action_id"),
                        "is not an action of the meeting's plan",
                    )
                })?;
            let expected_action = action.version;
            let from = action.action.status;
            change_status(&locked.plan, &mut action, status)?;
            if !storage::update_action(&locked.txn, &action, expected_action)
                .await
                .map_err(ApiError::from)?
            {
                return Err(stale("action", &id).into());
            }
            let facts = events::action_facts(&locked.txn, &locked.plan, &action)
                .await
                .map_err(ApiError::from)?;
            action_events.push(events::action_status_changed(
                facts,
                from,
                &caller.actor,
                now,
            ));
            actions.push(action);
        }
        let mut events_of_call = vec![events::meeting_held(
            &record.meeting,
            &locked.plan.territory_name,
        )];
        events_of_call.extend(action_events);
        let record = self
            .save_meeting(locked, record, expected, events_of_call)
            .await?;
        Ok(Response::new(pb::RecordSteeringMeetingHeldResponse {
            meeting: Some(convert::meeting_to_pb(&record)),
            actions: actions.iter().map(convert::action_to_pb).collect(),
        }))
    }
}
