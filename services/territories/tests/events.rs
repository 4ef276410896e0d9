//! Events through the outbox, on real PostgreSQL and NATS JetStream: exactly one event per
//! committed change, in order per territory; writes accepted while NATS is down and published
//! once it is back; a relay that dies between publishing and marking causes a duplicate that
//! JetStream drops; and the full 2026 geography shipped with tde imports on PostgreSQL.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::App;
use prost_types::FieldMask;
use sea_orm::{ConnectionTrait, Statement};
use tde_proto::territories::v1 as pb;
use tde_runtime::outbox;
use tde_runtime::testing::{NatsServer, TestEnv, Topology};

use pb::AuthorityKind as Kind;

const CODES: [&str; 5] = ["42218", "42001", "42002", "97411", "98818"];

/// Registers, advances twice and sets the steering body of each territory: four changes each.
async fn make_changes(app: &App) -> Vec<String> {
    let mut ids = Vec::new();
    for code in CODES {
        let t = app.register(Kind::Commune, code).await;
        let mut c = app.territories();
        for stage in [pb::Stage::Diagnostic, pb::Stage::CharterSigned] {
            c.advance_territory_stage(pb::AdvanceTerritoryStageRequest {
                id: t.id.clone(),
                stage: stage as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let mut input = app.get(&t.id).await;
        input.steering_body = Some(pb::SteeringBody {
            name: "Comité de pilotage".into(),
            relies_on_existing_body: false,
            members: vec![pb::Person {
                name: "Jeanne".into(),
                email: "jeanne@exemple.fr".into(),
                phone: String::new(),
                role: "élue".into(),
            }],
        });
        c.update_territory(pb::UpdateTerritoryRequest {
            territory: Some(input),
            update_mask: Some(FieldMask {
                paths: vec!["steering_body".into()],
            }),
        })
        .await
        .unwrap();
        ids.push(t.id);
    }
    ids
}

fn check_one_ordered_history_per_territory(events: &[tde_runtime::bus::Envelope], ids: &[String]) {
    let mut per_territory: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in events {
        let kind = e.subject.rsplit('.').next().unwrap();
        per_territory
            .entry(e.aggregate_id.as_str())
            .or_default()
            .push(kind);
    }
    for id in ids {
        assert_eq!(
            per_territory.get(id.as_str()).cloned().unwrap_or_default(),
            vec![
                "registered",
                "stage_changed",
                "stage_changed",
                "steering_body_changed"
            ],
            "territory {id}"
        );
    }
    let unique: std::collections::HashSet<_> = events.iter().map(|e| &e.id).collect();
    assert_eq!(unique.len(), events.len(), "no event twice");
}

#[tokio::test]
async fn every_committed_change_yields_exactly_one_event_in_order() {
    let app = App::with_geography(Topology::Postgres).await;
    let mut sub = app.subscribe().await;
    let ids = make_changes(&app).await;
    let events = common::collect_events(&mut sub, ids.len() * 4).await;
    check_one_ordered_history_per_territory(&events, &ids);

    let registered: pb::TerritoryRegistered =
        prost::Message::decode(events[0].payload.clone()).unwrap();
    assert_eq!(registered.territory.unwrap().id, events[0].aggregate_id);
    let roster = events
        .iter()
        .find(|e| e.subject.ends_with("steering_body_changed"))
        .unwrap();
    let roster: pb::SteeringBodyChanged = prost::Message::decode(roster.payload.clone()).unwrap();
    assert_eq!(roster.time_zone, "Europe/Paris");
    assert_eq!(
        roster.steering_body.unwrap().members[0].email,
        "jeanne@exemple.fr"
    );
    assert_eq!(events[0].source, "/tde/territories");
    assert_eq!(
        events[0].event_type,
        "tde.territories.v1.TerritoryRegistered"
    );
    assert!(
        events[0].traceparent.is_some(),
        "trace context travels with the event"
    );
}

#[tokio::test]
async fn writes_are_accepted_while_nats_is_down_and_published_when_it_is_back() {
    let mut nats = NatsServer::start();
    let env = TestEnv::postgres_with_nats(&["territories"], &nats.url()).await;
    let app = App::start_in(env).await;
    app.import("2026").await;
    let mut sub = app.subscribe().await;
    let first = app.register(Kind::Commune, "42218").await;
    common::collect_events(&mut sub, 1).await;

    nats.stop();
    let mut ids = vec![first.id.clone()];
    for code in ["42001", "42002", "97411"] {
        ids.push(app.register(Kind::Commune, code).await.id);
    }
    app.territories()
        .advance_territory_stage(pb::AdvanceTerritoryStageRequest {
            id: first.id.clone(),
            stage: pb::Stage::Diagnostic as i32,
            ..Default::default()
        })
        .await
        .expect("writes go on while NATS is down");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backlog = outbox::backlog(&app.ctx().db).await.unwrap();
    assert_eq!(backlog.events, 4, "held in the outbox");

    nats.resume();
    let events = common::collect_events(&mut sub, 4).await;
    let subjects: Vec<_> = events
        .iter()
        .map(|e| e.subject.rsplit('.').next().unwrap().to_string())
        .collect();
    assert_eq!(subjects.iter().filter(|s| *s == "registered").count(), 3);
    assert_eq!(subjects.iter().filter(|s| *s == "stage_changed").count(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox::backlog(&app.ctx().db).await.unwrap().events > 0 {
        assert!(tokio::time::Instant::now() < deadline, "backlog drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_relay_that_dies_before_marking_causes_a_duplicate_that_jetstream_drops() {
    let app = App::with_geography(Topology::Postgres).await;
    let mut sub = app.subscribe().await;
    let ids = make_changes(&app).await;
    let events = common::collect_events(&mut sub, ids.len() * 4).await;
    let ns = &app.ctx().namespace;
    let stream_name = ns.stream("territories").name;
    let nats = async_nats::connect(tde_runtime::testing::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats);
    let stored = |js: async_nats::jetstream::Context, name: String| async move {
        js.get_stream(&name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    };
    let stored_before = stored(js.clone(), stream_name.clone()).await;

    // As if the relay had published and died before marking: everything is pending again.
    let db = &app.ctx().db;
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "UPDATE outbox_events SET published_at = NULL",
    ))
    .await
    .unwrap();
    app.ctx().outbox.wake();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox::backlog(db).await.unwrap().events > 0 {
        assert!(tokio::time::Instant::now() < deadline, "republished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored_after = stored(js, stream_name).await;
    assert_eq!(
        stored_after, stored_before,
        "JetStream dropped every duplicate"
    );
    assert!(
        common::next_event(&mut sub, Duration::from_millis(500))
            .await
            .is_none(),
        "consumers see nothing twice"
    );
    assert_eq!(events.len(), 20);
}

#[tokio::test]
async fn the_full_2026_geography_imports_on_postgres() {
    let app = App::start(Topology::Postgres).await;
    let g = tde_territories::reference::shipped().expect("the vintage shipped with tde");
    let ctx = app.ctx();
    let outcome = tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
        .await
        .unwrap();
    assert!(outcome.changed);
    let v = app
        .geography()
        .get_geography_vintage(pb::GetGeographyVintageRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v.vintage.as_str(), v.communes, v.epcis),
        ("2026", 34_969, 1_255)
    );
    let again = tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
        .await
        .unwrap();
    assert!(!again.changed, "idempotent");
    let t = app.register(Kind::Commune, "97501").await;
    assert_eq!(t.time_zone, "America/Miquelon");
    let t = app.register(Kind::Epci, "200000172").await;
    assert_eq!(t.name, "CC Faucigny - Glières");
}
