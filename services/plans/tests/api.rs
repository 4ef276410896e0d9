//! The plans service over gRPC, on both topologies: plans from registered territories, the
//! charter, actions and submissions, steering meetings in local time, and bad input.

mod common;

use chrono::{Datelike as _, Utc};
use tde_proto::plans::v1 as pb;
use tde_runtime::auth::{Role, TokenSpec};
use tde_runtime::testing::Topology;
use tonic::Code;

use common::{App, bad_fields, drain};

/// A plan year start far enough ahead that every meeting of the test is in the future.
fn next_year_start() -> String {
    format!("{}-01-01", Utc::now().year() + 1)
}

fn year() -> i32 {
    Utc::now().year() + 1
}

tde_runtime::on_both_topologies!(
    a_plan_needs_a_registered_territory,
    the_charter_signature_activates_the_plan_and_is_published,
    a_year_programme_is_submitted_then_amended,
    meetings_keep_their_local_time_and_identity,
    actions_needing_a_skill_without_provider,
    bad_input_is_refused_field_by_field,
    territory_members_see_only_their_plan,
    a_plan_year_holds_a_bounded_programme,
);

async fn a_plan_needs_a_registered_territory(topology: Topology) {
    let app = App::start(topology).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let err = app
        .plans()
        .create_plan(pb::CreatePlanRequest {
            territory_id: unknown.clone(),
            title: "Plan".into(),
            start_date: next_year_start(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let request = pb::CreatePlanRequest {
        territory_id: id.clone(),
        title: "Plan d'engagement".into(),
        start_date: next_year_start(),
        request_id: "req-1".into(),
    };
    let plan = app
        .plans()
        .create_plan(request.clone())
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(plan.territory_name, "Saint-Étienne");
    assert_eq!(plan.status, pb::PlanStatus::Draft as i32);
    assert_eq!(plan.years.len(), 3);
    assert_eq!(plan.years[2].end_date, format!("{}-01-01", year() + 3));
    assert_eq!(plan.years_without_meeting, vec![1, 2, 3]);
    // A retry with the same request id returns the same plan; another request, a conflict.
    let again = app.plans().create_plan(request).await.unwrap().into_inner();
    assert_eq!(again.plan.unwrap().id, plan.id);
    let second = app
        .plans()
        .create_plan(pb::CreatePlanRequest {
            territory_id: id,
            title: "Un autre".into(),
            start_date: next_year_start(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::AlreadyExists);
}

async fn the_charter_signature_activates_the_plan_and_is_published(topology: Topology) {
    let app = App::start(topology).await;
    let mut events = app.subscribe().await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let plan = app.create_plan(&id, &next_year_start()).await;
    let plan = app
        .plans()
        .add_charter_version(pb::AddCharterVersionRequest {
            plan_id: plan.id.clone(),
            etag: plan.etag.clone(),
            document_ref: "ged://chartes/42218".into(),
            content_sha256: "0f".repeat(32),
            change_summary: String::new(),
            signatories: vec![
                pb::Signatory {
                    name: "Maire".into(),
                    role: "maire".into(),
                    email: "maire@example.fr".into(),
                    signed_on: String::new(),
                },
                pb::Signatory {
                    name: "Préfète".into(),
                    role: "préfète".into(),
                    email: String::new(),
                    signed_on: String::new(),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let today = Utc::now().date_naive().to_string();
    let sign = |plan: &pb::Plan, index: i32| pb::SignCharterRequest {
        plan_id: plan.id.clone(),
        etag: plan.etag.clone(),
        version_number: 1,
        signatory_index: index,
        signed_on: today.clone(),
    };
    let first = app
        .plans()
        .sign_charter(sign(&plan, 0))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.fully_signed);
    let first = first.plan.unwrap();
    assert_eq!(first.status, pb::PlanStatus::Draft as i32);
    // A stale etag is refused and changes nothing.
    let stale = app.plans().sign_charter(sign(&plan, 1)).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let again = app.plans().sign_charter(sign(&first, 0)).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    let done = app
        .plans()
        .sign_charter(sign(&first, 1))
        .await
        .unwrap()
        .into_inner();
    assert!(done.fully_signed);
    let active = done.plan.unwrap();
    assert_eq!(active.status, pb::PlanStatus::Active as i32);
    assert!(active.charter.unwrap().signed);

    let published = drain(&mut events).await;
    let types: Vec<&str> = published.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "tde.plans.v1.CharterSigned",
            "tde.plans.v1.PlanStatusChanged"
        ]
    );
    let signed: pb::CharterSigned = prost::Message::decode(published[0].payload.clone()).unwrap();
    assert_eq!(signed.territory_id, id);
    assert_eq!(signed.charter_version, 1);
    assert_eq!(signed.signed_on, today);
    assert!(
        published[0]
            .subject
            .ends_with("tde.plans.plan.charter_signed")
    );
}

async fn a_year_programme_is_submitted_then_amended(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let plan = app.active_plan(&id, &next_year_start()).await;
    let y = year();
    let action = |title: &str, budget: i64| pb::CreateActionRequest {
        action: Some(pb::Action {
            plan_id: plan.id.clone(),
            year: 1,
            kind: pb::ActionKind::Training as i32,
            title: title.into(),
            audiences: vec![pb::Audience::ElectedOfficials as i32],
            skills: vec![pb::Skill::ElectedOfficialsTraining as i32],
            planned_start: format!("{y}-02-01"),
            planned_end: format!("{y}-03-31"),
            budget_cents: budget,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let a = app
        .actions()
        .create_action(action("Formation des élus", 1_250_050))
        .await
        .unwrap();
    let a = a.into_inner().action.unwrap();
    app.actions()
        .create_action(action("Atelier citoyen", 800_000))
        .await
        .unwrap();

    let mut events = app.subscribe().await;
    drain(&mut events).await;
    let submit = |etag: String| pb::SubmitPlanYearRequest {
        plan_id: plan.id.clone(),
        etag,
        year: 1,
    };
    let first = app
        .plans()
        .submit_plan_year(submit(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.amendment);
    let submission = first.submission.unwrap();
    assert_eq!(submission.budget_cents, 2_050_050, "cents, summed exactly");
    let same = app
        .plans()
        .submit_plan_year(submit(String::new()))
        .await
        .unwrap_err();
    assert_eq!(same.code(), Code::FailedPrecondition, "{same:?}");

    // Cancelling an action changes the programme: the plan says so, and it is resubmitted.
    app.actions()
        .change_action_status(pb::ChangeActionStatusRequest {
            id: a.id.clone(),
            etag: a.etag.clone(),
            status: pb::ActionStatus::Cancelled as i32,
        })
        .await
        .unwrap();
    let plan_now = app
        .plans()
        .get_plan(pb::GetPlanRequest {
            id: plan.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert!(plan_now.years[0].changed_since_submission);
    assert_eq!(plan_now.years[0].budget_cents, 800_000);
    let amended = app
        .plans()
        .submit_plan_year(submit(plan_now.etag))
        .await
        .unwrap()
        .into_inner();
    assert!(amended.amendment);
    assert_eq!(amended.submission.unwrap().number, 2);
    assert!(!amended.plan.unwrap().years[0].changed_since_submission);

    let published = drain(&mut events).await;
    let submitted: Vec<pb::PlanYearSubmitted> = published
        .iter()
        .filter(|e| e.event_type == "tde.plans.v1.PlanYearSubmitted")
        .map(|e| prost::Message::decode(e.payload.clone()).unwrap())
        .collect();
    assert_eq!(submitted.len(), 2);
    assert_eq!(submitted[0].budget_cents, 2_050_050);
    assert!(!submitted[0].amendment);
    assert_eq!(submitted[1].budget_cents, 800_000);
    assert!(submitted[1].amendment);
    assert_eq!(submitted[1].actions.len(), 1);
}

/// A year's programme travels whole in `plan.year_submitted`: the number of actions a year
/// holds is bounded, so that its event always fits on the bus.
async fn a_plan_year_holds_a_bounded_programme(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let plan = app.active_plan(&id, &next_year_start()).await;
    let y = year();
    let action = |n: u64| pb::CreateActionRequest {
        action: Some(pb::Action {
            plan_id: plan.id.clone(),
            year: 1,
            kind: pb::ActionKind::FieldSupport as i32,
            title: format!("Atelier {n}"),
            audiences: vec![pb::Audience::ElectedOfficials as i32],
            planned_start: format!("{y}-02-01"),
            planned_end: format!("{y}-03-31"),
            budget_cents: 100,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let max = tde_plans::domain::action::MAX_ACTIONS_PER_YEAR;
    for n in 0..max {
        app.actions().create_action(action(n)).await.unwrap();
    }
    let refused = app.actions().create_action(action(max)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&format!("{max}")),
        "{}",
        refused.message()
    );
    // The full year is still submitted, as one event.
    app.plans()
        .submit_plan_year(pb::SubmitPlanYearRequest {
            plan_id: plan.id.clone(),
            etag: String::new(),
            year: 1,
        })
        .await
        .unwrap();
}

async fn meetings_keep_their_local_time_and_identity(topology: Topology) {
    let app = App::start(topology).await;
    let paris = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let noumea = app.territory("Nouméa", "988", "Pacific/Noumea").await;
    let plan = app.create_plan(&paris, &next_year_start()).await;
    let plan_nc = app.create_plan(&noumea, &next_year_start()).await;
    let y = year();
    // The last Sunday of March: Paris switches to summer time that night.
    let switch = (24..=31)
        .map(|d| chrono::NaiveDate::from_ymd_opt(y, 3, d).unwrap())
        .find(|d| d.weekday() == chrono::Weekday::Sun)
        .unwrap();
    let mut events = app.subscribe().await;
    let schedule = |plan_id: &str, day: chrono::NaiveDate| pb::ScheduleSteeringMeetingRequest {
        plan_id: plan_id.into(),
        start_local: format!("{day}T10:00"),
        end_local: format!("{day}T12:00"),
        place: "Hôtel de ville".into(),
        video_link: String::new(),
        agenda: "Lancement du plan".into(),
        request_id: String::new(),
    };
    let m = app
        .meetings()
        .schedule_steering_meeting(schedule(&plan.id, switch))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(m.time_zone, "Europe/Paris");
    assert_eq!(m.start_local, format!("{switch}T10:00"));
    assert_eq!(m.sequence, 0);
    assert_eq!(m.year, 1);
    let utc = |t: &Option<prost_types::Timestamp>| {
        chrono::DateTime::from_timestamp(t.as_ref().unwrap().seconds, 0).unwrap()
    };
    assert_eq!(
        utc(&m.start_time).format("%H:%M").to_string(),
        "08:00",
        "UTC+2 on that day"
    );
    let nc = app
        .meetings()
        .schedule_steering_meeting(schedule(&plan_nc.id, switch))
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(nc.time_zone, "Pacific/Noumea");
    assert_eq!(
        utc(&nc.start_time).format("%H:%M").to_string(),
        "23:00",
        "UTC+11"
    );

    // The week before, Paris was still on winter time: 10:00 is 09:00 UTC.
    let before = switch - chrono::Duration::days(7);
    let moved = app
        .meetings()
        .reschedule_steering_meeting(pb::RescheduleSteeringMeetingRequest {
            id: m.id.clone(),
            etag: m.etag.clone(),
            start_local: format!("{before}T10:00"),
            end_local: format!("{before}T11:30"),
            place: String::new(),
            video_link: "https://visio.example.fr/copil".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(moved.id, m.id, "same identity");
    assert_eq!(moved.sequence, 1);
    assert_eq!(utc(&moved.start_time).format("%H:%M").to_string(), "09:00");
    assert_eq!(moved.video_link, "https://visio.example.fr/copil");

    // 02:30 on the night of the switch does not exist in Paris.
    let skipped = app
        .meetings()
        .schedule_steering_meeting(pb::ScheduleSteeringMeetingRequest {
            start_local: format!("{switch}T02:30"),
            end_local: format!("{switch}T04:00"),
            ..schedule(&plan.id, switch)
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&skipped), ["start_local"]);

    // The window lists both territories' meetings in start order, page by page.
    let from = chrono::NaiveDate::from_ymd_opt(y, 3, 1).unwrap();
    let window = |page_token: String| pb::ListSteeringMeetingsRequest {
        start_time_from: Some(tde_runtime::api::timestamp(
            from.and_hms_opt(0, 0, 0).unwrap().and_utc(),
        )),
        start_time_to: Some(tde_runtime::api::timestamp(
            (from + chrono::Duration::days(45))
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc(),
        )),
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let page1 = app
        .meetings()
        .list_steering_meetings(window(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.meetings[0].id, m.id);
    let page2 = app
        .meetings()
        .list_steering_meetings(window(page1.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.meetings[0].id, nc.id);
    assert!(page2.next_page_token.is_empty());

    let cancelled = app
        .meetings()
        .cancel_steering_meeting(pb::CancelSteeringMeetingRequest {
            id: m.id.clone(),
            etag: moved.etag.clone(),
            reason: "Préfète indisponible".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(cancelled.sequence, 2);
    assert_eq!(cancelled.status, pb::MeetingStatus::Cancelled as i32);
    let twice = app
        .meetings()
        .cancel_steering_meeting(pb::CancelSteeringMeetingRequest {
            id: m.id.clone(),
            etag: String::new(),
            reason: "encore".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);

    let published = drain(&mut events).await;
    let kinds: Vec<&str> = published.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "tde.plans.v1.SteeringMeetingScheduled",
            "tde.plans.v1.SteeringMeetingScheduled",
            "tde.plans.v1.SteeringMeetingRescheduled",
            "tde.plans.v1.SteeringMeetingCancelled",
        ]
    );
    let rescheduled: pb::SteeringMeetingRescheduled =
        prost::Message::decode(published[2].payload.clone()).unwrap();
    let facts = rescheduled.meeting.unwrap();
    assert_eq!(facts.meeting_id, m.id);
    assert_eq!(facts.sequence, 1);
    assert_eq!(facts.time_zone, "Europe/Paris");
    assert_eq!(facts.territory_name, "Saint-Étienne");
    assert_eq!(facts.start_local, format!("{before}T10:00"));
    assert_eq!(facts.agenda, "Lancement du plan");

    // A plan year without a meeting is reported: year 1 has one, the cancelled one did not count.
    let plan = app
        .plans()
        .get_plan(pb::GetPlanRequest {
            id: plan_nc.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        plan.into_inner().plan.unwrap().years_without_meeting,
        vec![2, 3]
    );
}

async fn actions_needing_a_skill_without_provider(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let plan = app.create_plan(&id, &next_year_start()).await;
    let y = year();
    let create = |title: &str, skills: Vec<pb::Skill>| pb::CreateActionRequest {
        action: Some(pb::Action {
            plan_id: plan.id.clone(),
            year: 1,
            kind: pb::ActionKind::EngagementProject as i32,
            title: title.into(),
            audiences: vec![pb::Audience::Inhabitants as i32],
            skills: skills.into_iter().map(|s| s as i32).collect(),
            planned_start: format!("{y}-04-01"),
            planned_end: format!("{y}-06-30"),
            budget_cents: 500_000,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let a = app
        .actions()
        .create_action(create(
            "Budget participatif",
            vec![pb::Skill::ParticipatoryDemocracy, pb::Skill::Facilitation],
        ))
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    let b = app
        .actions()
        .create_action(create(
            "Conseil de jeunes",
            vec![pb::Skill::YouthEngagement, pb::Skill::Facilitation],
        ))
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    let list = |skill: pb::Skill| pb::ListActionsRequest {
        skill: skill as i32,
        unassigned_only: true,
        ..Default::default()
    };
    let found = app
        .actions()
        .list_actions(list(pb::Skill::Facilitation))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found
            .actions
            .iter()
            .map(|x| x.id.as_str())
            .collect::<Vec<_>>(),
        [a.id.as_str(), b.id.as_str()]
    );
    app.actions()
        .assign_provider(pb::AssignProviderRequest {
            id: a.id.clone(),
            etag: a.etag.clone(),
            provider_id: "prestataire-17".into(),
        })
        .await
        .unwrap();
    let found = app
        .actions()
        .list_actions(list(pb::Skill::Facilitation))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.actions.len(), 1);
    assert_eq!(found.actions[0].id, b.id);
    let youth = app
        .actions()
        .list_actions(list(pb::Skill::YouthEngagement))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(youth.actions.len(), 1);
    let none = app
        .actions()
        .list_actions(list(pb::Skill::PolicyEvaluation))
        .await
        .unwrap()
        .into_inner();
    assert!(none.actions.is_empty());
}

async fn bad_input_is_refused_field_by_field(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let err = app
        .plans()
        .create_plan(pb::CreatePlanRequest {
            territory_id: "nope".into(),
            title: String::new(),
            start_date: "2027-02-30".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    let mut fields = bad_fields(&err);
    fields.sort();
    assert_eq!(fields, ["start_date", "territory_id"]);
    let plan = app.create_plan(&id, &next_year_start()).await;
    let y = year();
    let err = app
        .actions()
        .create_action(pb::CreateActionRequest {
            action: Some(pb::Action {
                plan_id: plan.id.clone(),
                year: 4,
                kind: 0,
                title: String::new(),
                audiences: vec![],
                skills: vec![999],
                planned_start: format!("{y}-04-01"),
                planned_end: format!("{y}-03-01"),
                budget_cents: -1,
                status: pb::ActionStatus::Done as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    let mut fields = bad_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        [
            "action.kind",
            "action.skills[0]",
            "action.status",
            "action.year"
        ]
    );
    // A period outside its plan year.
    let err = app
        .actions()
        .create_action(pb::CreateActionRequest {
            action: Some(pb::Action {
                plan_id: plan.id.clone(),
                year: 2,
                kind: pb::ActionKind::Training as i32,
                title: "Formation".into(),
                audiences: vec![pb::Audience::Agents as i32],
                planned_start: format!("{y}-04-01"),
                planned_end: format!("{y}-05-01"),
                budget_cents: 100,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["action.planned_start"]);
    // A meeting in the past, and one ending before it starts.
    let err = app
        .meetings()
        .schedule_steering_meeting(pb::ScheduleSteeringMeetingRequest {
            plan_id: plan.id.clone(),
            start_local: "2020-01-10T10:00".into(),
            end_local: "2020-01-10T09:00".into(),
            place: "Mairie".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["end_local"]);
    let err = app
        .meetings()
        .schedule_steering_meeting(pb::ScheduleSteeringMeetingRequest {
            plan_id: plan.id.clone(),
            start_local: "2020-01-10T10:00".into(),
            end_local: "2020-01-10T12:00".into(),
            place: String::new(),
            video_link: "http://insecure".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["video_link"]);
    // Wrong states: a draft plan cannot submit or complete.
    let err = app
        .plans()
        .submit_plan_year(pb::SubmitPlanYearRequest {
            plan_id: plan.id.clone(),
            etag: String::new(),
            year: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let missing = app
        .plans()
        .get_plan(pb::GetPlanRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Nothing was half-written: the plan is as created.
    let after = app
        .plans()
        .get_plan(pb::GetPlanRequest {
            id: plan.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(after.into_inner().plan.unwrap().etag, plan.etag);
}

async fn territory_members_see_only_their_plan(topology: Topology) {
    let app = App::start(topology).await;
    let mine = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let theirs = app.territory("Lyon", "84", "Europe/Paris").await;
    let my_plan = app.create_plan(&mine, &next_year_start()).await;
    let their_plan = app.create_plan(&theirs, &next_year_start()).await;
    let member = TokenSpec::new(Role::TerritoryMember, "élu@saint-etienne").territory(&mine);
    let mut client = app.plans_as(&member).await;
    let own = client
        .get_plan(pb::GetPlanRequest {
            id: my_plan.id.clone(),
        })
        .await
        .unwrap();
    let own = own.into_inner().plan.unwrap();
    assert!(own.charter.unwrap().versions.is_empty());
    let other = client
        .get_plan(pb::GetPlanRequest {
            id: their_plan.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let missing_id = uuid::Uuid::now_v7().to_string();
    let missing = client
        .get_plan(pb::GetPlanRequest {
            id: missing_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        other.message().replace(&their_plan.id, "ID"),
        missing.message().replace(&missing_id, "ID"),
        "the same answer as for a plan that does not exist"
    );
    let listed = client
        .list_plans(pb::ListPlansRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .plans
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        [my_plan.id.as_str()]
    );
    // Scheduling a steering meeting is the programme's decision, not a member's: refused
    // before any plan is looked up (another territory's reveals nothing either).
    let mut meetings = app.meetings_as(&member).await;
    let err = meetings
        .schedule_steering_meeting(pb::ScheduleSteeringMeetingRequest {
            plan_id: their_plan.id.clone(),
            start_local: format!("{}-05-10T10:00", year()),
            end_local: format!("{}-05-10T12:00", year()),
            place: "Mairie".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

tde_runtime::on_both_topologies!(
    a_held_meeting_records_decisions_that_change_actions,
    a_plan_is_reviewed_then_completed,
);

async fn a_held_meeting_records_decisions_that_change_actions(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    // A plan that started last year, with a meeting that took place this morning: written
    // directly, since the API schedules only ahead.
    let this_year = Utc::now().year();
    let plan = app
        .active_plan(&id, &format!("{}-01-01", this_year - 1))
        .await;
    let y = this_year - 1;
    let action = app
        .actions()
        .create_action(pb::CreateActionRequest {
            action: Some(pb::Action {
                plan_id: plan.id.clone(),
                year: 2,
                kind: pb::ActionKind::FieldSupport as i32,
                title: "Accompagnement du conseil citoyen".into(),
                audiences: vec![pb::Audience::Inhabitants as i32],
                planned_start: format!("{this_year}-01-15"),
                planned_end: format!("{this_year}-12-15"),
                budget_cents: 300_000,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    let now = tde_runtime::api::now();
    let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
    let local = |t: chrono::DateTime<Utc>| t.with_timezone(&paris).naive_local();
    let start = now - chrono::Duration::hours(2);
    let end = now - chrono::Duration::hours(1);
    let meeting = tde_plans::domain::meeting::SteeringMeeting {
        id: uuid::Uuid::now_v7().to_string(),
        plan_id: plan.id.clone(),
        territory_id: id.clone(),
        year: 2,
        sequence: 0,
        status: tde_plans::domain::meeting::MeetingStatus::Scheduled,
        time: tde_plans::domain::calendar::MeetingTime {
            start: tde_plans::domain::calendar::LocalTime {
                local: local(start),
                zone: paris,
                utc: start,
            },
            end: tde_plans::domain::calendar::LocalTime {
                local: local(end),
                zone: paris,
                utc: end,
            },
        },
        venue: tde_plans::domain::meeting::Venue {
            place: "Mairie".into(),
            video_link: String::new(),
        },
        agenda: "Bilan d'étape".into(),
        cancel_reason: String::new(),
        minutes: String::new(),
        decisions: Vec::new(),
    };
    tde_plans::storage::insert_meeting(
        &app.ctx().db,
        &tde_plans::storage::MeetingRecord {
            meeting: meeting.clone(),
            region_code: "84".into(),
            version: 1,
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .unwrap();
    let decisions = vec![
        pb::Decision {
            text: "Lancer l'accompagnement du conseil citoyen".into(),
            action_id: action.id.clone(),
            action_status: pb::ActionStatus::InProgress as i32,
            ..Default::default()
        },
        pb::Decision {
            text: "Former les agents d'accueil".into(),
            create_action: Some(pb::Action {
                year: 2,
                kind: pb::ActionKind::Training as i32,
                title: "Formation des agents d'accueil".into(),
                audiences: vec![pb::Audience::Agents as i32],
                skills: vec![pb::Skill::AgentsTraining as i32],
                planned_start: format!("{this_year}-09-01"),
                planned_end: format!("{this_year}-10-31"),
                budget_cents: 450_000,
                ..Default::default()
            }),
            ..Default::default()
        },
        pb::Decision {
            text: "Sans effet sur les actions".into(),
            ..Default::default()
        },
    ];
    // A decision naming an action of another plan is refused, and nothing is written.
    let other = app.territory("Lyon", "84", "Europe/Paris").await;
    let other_plan = app.create_plan(&other, &format!("{y}-01-01")).await;
    let err = app
        .meetings()
        .record_steering_meeting_held(pb::RecordSteeringMeetingHeldRequest {
            id: meeting.id.clone(),
            etag: String::new(),
            minutes: "Compte rendu".into(),
            decisions: vec![pb::Decision {
                text: "x".into(),
                action_id: other_plan.id.clone(),
                action_status: pb::ActionStatus::Done as i32,
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["decisions[0].action_id"]);
    let held = app
        .meetings()
        .record_steering_meeting_held(pb::RecordSteeringMeetingHeldRequest {
            id: meeting.id.clone(),
            etag: "1".into(),
            minutes: "Compte rendu du comité".into(),
            decisions,
        })
        .await
        .unwrap()
        .into_inner();
    let m = held.meeting.unwrap();
    assert_eq!(m.status, pb::MeetingStatus::Held as i32);
    assert_eq!(m.decisions.len(), 3);
    assert_eq!(held.actions.len(), 2);
    assert_eq!(held.actions[0].title, "Formation des agents d'accueil");
    assert_eq!(held.actions[0].status, pb::ActionStatus::Planned as i32);
    assert_eq!(held.actions[1].id, action.id);
    assert_eq!(held.actions[1].status, pb::ActionStatus::InProgress as i32);
    let again = app
        .meetings()
        .record_steering_meeting_held(pb::RecordSteeringMeetingHeldRequest {
            id: meeting.id.clone(),
            etag: String::new(),
            minutes: "encore".into(),
            decisions: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
}

async fn a_plan_is_reviewed_then_completed(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let plan = app.active_plan(&id, &next_year_start()).await;
    let review = |year: i32| pb::RecordReviewRequest {
        plan_id: plan.id.clone(),
        etag: String::new(),
        year,
        indicators: vec![pb::Indicator {
            name: "habitants associés aux décisions".into(),
            value: 340.0,
            unit: "personnes".into(),
            baseline: Some(120.0),
        }],
        narrative: "Une année d'engagement.".into(),
    };
    let complete = || pb::CompletePlanRequest {
        id: plan.id.clone(),
        etag: String::new(),
    };
    let early = app.plans().complete_plan(complete()).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    let reviewed = app
        .plans()
        .record_review(review(1))
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert!(reviewed.years[0].reviewed);
    assert_eq!(reviewed.reviews[0].indicators[0].baseline, Some(120.0));
    let twice = app.plans().record_review(review(1)).await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let bad = app.plans().record_review(review(7)).await.unwrap_err();
    assert_eq!(bad_fields(&bad), ["year"]);
    app.plans().record_review(review(0)).await.unwrap();
    let celebrated = app
        .plans()
        .add_celebration(pb::AddCelebrationRequest {
            plan_id: plan.id.clone(),
            etag: String::new(),
            celebration: Some(pb::Celebration {
                date: format!("{}-06-21", year()),
                title: "Fête de l'engagement".into(),
                description: "Sur la place du village".into(),
                public: true,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(celebrated.celebrations.len(), 1);
    let done = app
        .plans()
        .complete_plan(complete())
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(done.status, pb::PlanStatus::Completed as i32);
    // The title can still change; the start date only in a draft.
    let updated = app
        .plans()
        .update_plan(pb::UpdatePlanRequest {
            plan: Some(pb::Plan {
                id: plan.id.clone(),
                etag: done.etag.clone(),
                title: "Plan d'engagement 2027-2030".into(),
                start_date: "2030-01-01".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into(), "start_date".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(updated.code(), Code::FailedPrecondition);
    let still = app
        .plans()
        .get_plan(pb::GetPlanRequest {
            id: plan.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        still.into_inner().plan.unwrap().title,
        "Plan d'engagement",
        "nothing half-written"
    );
}
