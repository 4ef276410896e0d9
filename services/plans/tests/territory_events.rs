//! The plans service's consumer of the territory events: its read model of territories, a
//! withdrawn territory's plan stopped, personal data erased, each event applied once.

mod common;

use std::time::Duration;

use chrono::{Datelike as _, Utc};
use sha2::Digest as _;
use tde_proto::plans::v1 as pb;
use tde_proto::territories::v1 as tpb;
use tde_runtime::testing::Topology;
use tonic::Code;

use common::{App, drain};

tde_runtime::on_both_topologies!(
    a_withdrawn_territory_stops_its_plan_and_cancels_coming_meetings,
    an_event_delivered_twice_has_one_effect,
    an_erasure_request_erases_the_signatory,
);

fn withdrawn(app: &App, territory_id: &str) -> tde_runtime::bus::Envelope {
    app.territory_event(
        territory_id,
        "territory.withdrawn",
        "tde.territories.v1.TerritoryWithdrawn",
        &tpb::TerritoryWithdrawn {
            territory_id: territory_id.into(),
            from_stage: tpb::Stage::CharterSigned as i32,
            reason: "fin de l'engagement municipal".into(),
            change_time: None,
            actor: "national".into(),
        },
    )
}

async fn wait_for_status(app: &App, plan_id: &str, status: pb::PlanStatus) -> pb::Plan {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let plan = app
            .plans()
            .get_plan(pb::GetPlanRequest { id: plan_id.into() })
            .await
            .unwrap()
            .into_inner()
            .plan
            .unwrap();
        if plan.status == status as i32 {
            return plan;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "plan never became {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_withdrawn_territory_stops_its_plan_and_cancels_coming_meetings(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let y = Utc::now().year() + 1;
    let plan = app.active_plan(&id, &format!("{y}-01-01")).await;
    let meeting = app
        .meetings()
        .schedule_steering_meeting(pb::ScheduleSteeringMeetingRequest {
            plan_id: plan.id.clone(),
            start_local: format!("{y}-06-15T14:00"),
            end_local: format!("{y}-06-15T16:00"),
            place: "Mairie".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    let mut events = app.subscribe().await;
    drain(&mut events).await;

    app.publish_territory_event(withdrawn(&app, &id)).await;
    let stopped = wait_for_status(&app, &plan.id, pb::PlanStatus::Stopped).await;
    assert!(
        stopped
            .status_reason
            .contains("fin de l'engagement municipal")
    );
    let m = app
        .meetings()
        .get_steering_meeting(pb::GetSteeringMeetingRequest {
            id: meeting.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    assert_eq!(m.status, pb::MeetingStatus::Cancelled as i32);
    assert_eq!(m.sequence, 1);
    let published = drain(&mut events).await;
    let kinds: Vec<&str> = published.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "tde.plans.v1.PlanStatusChanged",
            "tde.plans.v1.SteeringMeetingCancelled"
        ]
    );
    // A withdrawn territory gets no new plan, and its plan takes no meeting.
    let err = app
        .meetings()
        .schedule_steering_meeting(pb::ScheduleSteeringMeetingRequest {
            plan_id: plan.id.clone(),
            start_local: format!("{y}-07-15T14:00"),
            end_local: format!("{y}-07-15T16:00"),
            place: "Mairie".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

async fn an_event_delivered_twice_has_one_effect(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let y = Utc::now().year() + 1;
    let plan = app.create_plan(&id, &format!("{y}-01-01")).await;
    let ctx = app.ctx();
    let consumer = "plans_territories_redelivery";
    let event = withdrawn(&app, &id);
    let handler = tde_plans::events::TerritoryEvents;
    let first = tde_runtime::inbox::process(&ctx.db, consumer, &handler, &event)
        .await
        .unwrap();
    let second = tde_runtime::inbox::process(&ctx.db, consumer, &handler, &event)
        .await
        .unwrap();
    assert!(first);
    assert!(!second, "the inbox recognised the redelivery");
    let stopped = tde_plans::storage::find_plan(&ctx.db, &plan.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stopped.version,
        plan.etag.parse::<i64>().unwrap() + 1,
        "stopped once"
    );
    let backlog = tde_runtime::outbox::backlog(&ctx.db).await.unwrap();
    // The relay may have published already; count every outbox row of the plan instead.
    use sea_orm::{ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _};
    let rows = tde_runtime::outbox::entity::Entity::find()
        .filter(tde_runtime::outbox::entity::Column::AggregateId.eq(plan.id.clone()))
        .count(&ctx.db)
        .await
        .unwrap();
    assert_eq!(rows, 1, "one PlanStatusChanged (backlog {backlog:?})");

    // An older event arriving late does not undo a newer one.
    let mut stale = app.territory_event(
        &id,
        "territory.stage_changed",
        "tde.territories.v1.TerritoryStageChanged",
        &tpb::TerritoryStageChanged {
            territory_id: id.clone(),
            territory_name: "Saint-Étienne".into(),
            to_stage: tpb::Stage::InPath as i32,
            time_zone: "Europe/Paris".into(),
            ..Default::default()
        },
    );
    stale.time = event.time - chrono::Duration::seconds(60);
    tde_runtime::inbox::process(&ctx.db, consumer, &handler, &stale)
        .await
        .unwrap();
    let view = tde_plans::storage::find_territory(&ctx.db, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.stage, "withdrawn");
}

async fn an_erasure_request_erases_the_signatory(topology: Topology) {
    let app = App::start(topology).await;
    let id = app.territory("Saint-Étienne", "84", "Europe/Paris").await;
    let y = Utc::now().year() + 1;
    let plan = app.active_plan(&id, &format!("{y}-01-01")).await;
    let fingerprint: String = sha2::Sha256::digest(b"maire@saint-etienne.fr")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let event = app.territory_event(
        &fingerprint,
        "personal_data.erased",
        "tde.territories.v1.PersonalDataErased",
        &tpb::PersonalDataErased {
            email_sha256: fingerprint.clone(),
            // The person was no contact of the territory: plans finds them anyway.
            territory_ids: vec![],
            erase_time: None,
        },
    );
    app.publish_territory_event(event).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored = tde_plans::storage::find_plan(&app.ctx().db, &plan.id)
            .await
            .unwrap()
            .unwrap();
        let signatory = &stored.charter.versions[0].signatories[0];
        if signatory.email.is_none() {
            assert_eq!(signatory.name, tde_plans::domain::plan::ERASED);
            assert!(signatory.signed_on.is_some(), "the signature stays");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never erased");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
