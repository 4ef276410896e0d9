//! The territories API end to end: a gRPC client over a socket against a server started like
//! `main`, on SQLite and on PostgreSQL.

mod common;

use common::App;
use prost_types::FieldMask;
use tde_proto::territories::v1 as pb;
use tde_runtime::auth::{Role, TokenSpec};
use tde_runtime::testing::Topology;
use tonic::Code;
use tonic_types::StatusExt as _;

use pb::AuthorityKind as Kind;

fn person(name: &str, email: &str, phone: &str, role: &str) -> pb::Person {
    pb::Person {
        name: name.into(),
        email: email.into(),
        phone: phone.into(),
        role: role.into(),
    }
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

async fn registration_fills_from_the_reference_geography(topology: Topology) {
    let app = App::with_geography(topology).await;
    let t = app.register(Kind::Commune, "42218").await;
    assert_eq!(t.name, "Saint-Étienne");
    assert_eq!(t.departement_code, "42");
    assert_eq!(t.region_code, "84");
    assert_eq!(t.time_zone, "Europe/Paris");
    assert_eq!(t.zone, pb::Zone::Metro as i32);
    assert!(t.population > 100_000);
    assert_eq!(t.stage, pb::Stage::Prospect as i32);
    assert_eq!(t.stage_history.len(), 1);
    assert_eq!(app.get(&t.id).await, t);

    let reunion = app.register(Kind::Commune, "97411").await;
    assert_eq!(reunion.time_zone, "Indian/Reunion");
    assert_eq!(reunion.zone, pb::Zone::Drom as i32);
    let noumea = app.register(Kind::Commune, "98818").await;
    assert_eq!(noumea.time_zone, "Pacific/Noumea");
    assert_eq!(noumea.zone, pb::Zone::Com as i32);
    let guadeloupe = app.register(Kind::Departement, "971").await;
    assert_eq!(guadeloupe.time_zone, "America/Guadeloupe");
    assert!(
        guadeloupe.population > 300_000,
        "a département's population is its communes'"
    );
    let corse = app.register(Kind::Departement, "2A").await;
    assert_eq!(corse.region_code, "94");

    let epci = tde_territories::storage::geography::epci(&app.ctx().db, "244200770")
        .await
        .unwrap()
        .map(|(e, _)| e)
        .expect("Saint-Étienne Métropole is in the fixture");
    let t = app.register(Kind::Epci, &epci.siren).await;
    assert_eq!(t.name, epci.name);
    assert_eq!(t.departement_code, "42");
}

async fn retried_registration_creates_one(topology: Topology) {
    let app = App::with_geography(topology).await;
    let request = pb::RegisterTerritoryRequest {
        kind: Kind::Commune as i32,
        official_code: "42218".into(),
        request_id: "req-1".into(),
    };
    let first = app
        .territories()
        .register_territory(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = app
        .territories()
        .register_territory(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.territory.unwrap().id, second.territory.unwrap().id);

    let other = pb::RegisterTerritoryRequest {
        official_code: "42001".into(),
        ..request
    };
    let e = app
        .territories()
        .register_territory(other)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), vec!["request_id"]);

    let e = app
        .territories()
        .register_territory(pb::RegisterTerritoryRequest {
            kind: Kind::Commune as i32,
            official_code: "42218".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let all = list(&app, pb::ListTerritoriesRequest::default()).await;
    assert_eq!(all.len(), 1);
}

async fn list(app: &App, request: pb::ListTerritoriesRequest) -> Vec<pb::Territory> {
    app.territories()
        .list_territories(request)
        .await
        .unwrap()
        .into_inner()
        .territories
}

async fn listing_filters_and_pages_in_a_stable_order(topology: Topology) {
    let app = App::with_geography(topology).await;
    let codes = ["42218", "42001", "42002", "97411", "97415", "98818"];
    let mut ids = Vec::new();
    for code in codes {
        ids.push(app.register(Kind::Commune, code).await.id);
    }
    // Pages of two cover everything once, in registration order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .territories()
            .list_territories(pb::ListTerritoriesRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.territories.len() <= 2);
        seen.extend(page.territories.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);

    let reunion = list(
        &app,
        pb::ListTerritoriesRequest {
            departement_code: "974".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(reunion.len(), 2);
    let region = list(
        &app,
        pb::ListTerritoriesRequest {
            region_code: "84".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(region.len(), 3);
    let by_name = list(
        &app,
        pb::ListTerritoriesRequest {
            name_query: "saint etienne".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].name, "Saint-Étienne");

    app.territories()
        .advance_territory_stage(pb::AdvanceTerritoryStageRequest {
            id: ids[0].clone(),
            stage: pb::Stage::Diagnostic as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let diagnosing = list(
        &app,
        pb::ListTerritoriesRequest {
            stage: pb::Stage::Diagnostic as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        diagnosing.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
    let epcis = list(
        &app,
        pb::ListTerritoriesRequest {
            kind: Kind::Epci as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(epcis.is_empty());
}

async fn the_path_is_a_state_machine(topology: Topology) {
    let app = App::with_geography(topology).await;
    let t = app.register(Kind::Commune, "42218").await;
    // The history names the token's subject.
    let mut client = app
        .territories_as(
            &TokenSpec::new(Role::ProjectLead, "chef-de-projet").territory(t.id.clone()),
        )
        .await;
    let advance = |stage: pb::Stage| pb::AdvanceTerritoryStageRequest {
        id: t.id.clone(),
        stage: stage as i32,
        etag: String::new(),
        reason: "comité".into(),
    };
    let moved = client
        .advance_territory_stage(advance(pb::Stage::Diagnostic))
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(moved.stage, pb::Stage::Diagnostic as i32);
    let last = moved.stage_history.last().unwrap();
    assert_eq!(last.actor, "chef-de-projet");
    assert_eq!(last.from_stage, pb::Stage::Prospect as i32);
    assert!(last.change_time.is_some());

    let e = client
        .advance_territory_stage(advance(pb::Stage::InPath))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("diagnostic"),
        "names the current stage: {}",
        e.message()
    );
    let details = e.get_error_details();
    assert_eq!(
        details.precondition_failure().unwrap().violations[0].subject,
        "diagnostic"
    );

    for stage in [
        pb::Stage::CharterSigned,
        pb::Stage::InPath,
        pb::Stage::Completed,
    ] {
        client
            .advance_territory_stage(advance(stage))
            .await
            .unwrap();
    }
    // Withdrawing needs territories:admin: the national team's.
    let mut client = app.territories();
    let e = client
        .withdraw_territory(pb::WithdrawTerritoryRequest {
            id: t.id.clone(),
            reason: "too late".into(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "completed is final");

    let other = app.register(Kind::Commune, "42001").await;
    let withdrawn = client
        .withdraw_territory(pb::WithdrawTerritoryRequest {
            id: other.id.clone(),
            reason: "élections".into(),
            etag: other.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(withdrawn.stage, pb::Stage::Withdrawn as i32);
    let e = client
        .advance_territory_stage(pb::AdvanceTerritoryStageRequest {
            id: other.id,
            stage: pb::Stage::Diagnostic as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(app.get(&t.id).await.stage_history.len(), 5);
}

async fn updates_need_a_fresh_etag_and_validate_people(topology: Topology) {
    let app = App::with_geography(topology).await;
    let t = app.register(Kind::Commune, "42218").await;
    let mut input = t.clone();
    input.steering_body = Some(pb::SteeringBody {
        name: "Conseil municipal".into(),
        relies_on_existing_body: true,
        members: vec![
            person(
                "Marie Curie",
                "Marie.Curie@Exemple.fr",
                "06 12 34 56 78",
                "maire",
            ),
            person("Paul Langevin", "paul@exemple.fr", "", "DGS"),
        ],
    });
    input.privileged_contact = Some(person(
        "Irène Joliot",
        "irene@exemple.fr",
        "+33 1 23 45 67 89",
        "cheffe de projet",
    ));
    input.diagnostic = Some(pb::Diagnostic {
        themes: vec![
            pb::EngagementTheme::Youth as i32,
            pb::EngagementTheme::Volunteering as i32,
        ],
        text: "Beaucoup d'associations, peu de jeunes bénévoles.".into(),
        record_time: None,
    });
    input.stage = pb::Stage::Completed as i32; // server-owned: ignored, not in the mask
    let mask = FieldMask {
        paths: vec![
            "steering_body".into(),
            "privileged_contact".into(),
            "diagnostic".into(),
        ],
    };
    let updated = app
        .territories()
        .update_territory(pb::UpdateTerritoryRequest {
            territory: Some(input.clone()),
            update_mask: Some(mask.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_ne!(updated.etag, t.etag);
    assert_eq!(updated.stage, pb::Stage::Prospect as i32);
    let body = updated.steering_body.clone().unwrap();
    assert_eq!(body.members[0].email, "marie.curie@exemple.fr");
    assert_eq!(body.members[0].phone, "+33612345678");
    assert_eq!(
        updated.privileged_contact.clone().unwrap().phone,
        "+33123456789"
    );
    assert!(updated.diagnostic.clone().unwrap().record_time.is_some());

    // The same request again carries the old etag: refused, nothing changes.
    let e = app
        .territories()
        .update_territory(pb::UpdateTerritoryRequest {
            territory: Some(input),
            update_mask: Some(mask),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert_eq!(app.get(&t.id).await, updated);
}

/// A bad request: what it is, what it got, the status and the field it should name.
type Case<'a> = (&'a str, Result<(), tonic::Status>, Code, Option<&'a str>);

/// Every kind of bad input gets the right status, and nothing changes.
async fn bad_input_gets_the_right_status_and_changes_nothing(topology: Topology) {
    let app = App::with_geography(topology).await;
    let t = app.register(Kind::Commune, "42218").await;
    let before = app.get(&t.id).await;
    let mut c = app.territories();
    let unknown_id = uuid::Uuid::now_v7().to_string();

    let register = |kind: Kind, code: &str, rid: &str| pb::RegisterTerritoryRequest {
        kind: kind as i32,
        official_code: code.into(),
        request_id: rid.into(),
    };
    let cases: Vec<Case> = vec![
        (
            "no kind",
            c.register_territory(register(Kind::Unspecified, "42218", ""))
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            Some("kind"),
        ),
        (
            "short code",
            c.register_territory(register(Kind::Commune, "421", ""))
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            Some("official_code"),
        ),
        (
            "bad siren",
            c.register_territory(register(Kind::Epci, "200000173", ""))
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            Some("official_code"),
        ),
        (
            "unknown commune",
            c.register_territory(register(Kind::Commune, "42999", ""))
                .await
                .map(|_| ()),
            Code::NotFound,
            Some("official_code"),
        ),
        (
            "unknown département",
            c.register_territory(register(Kind::Departement, "99", ""))
                .await
                .map(|_| ()),
            Code::NotFound,
            Some("official_code"),
        ),
        (
            "long request id",
            c.register_territory(register(Kind::Commune, "42001", &"x".repeat(500)))
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            Some("request_id"),
        ),
        (
            "kind out of range",
            c.register_territory(pb::RegisterTerritoryRequest {
                kind: 42,
                official_code: "42001".into(),
                request_id: String::new(),
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("kind"),
        ),
        (
            "empty id",
            c.get_territory(pb::GetTerritoryRequest { id: String::new() })
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            Some("id"),
        ),
        (
            "malformed id",
            c.get_territory(pb::GetTerritoryRequest { id: "nope".into() })
                .await
                .map(|_| ()),
            Code::InvalidArgument,
            Some("id"),
        ),
        (
            "unknown id",
            c.get_territory(pb::GetTerritoryRequest {
                id: unknown_id.clone(),
            })
            .await
            .map(|_| ()),
            Code::NotFound,
            None,
        ),
        (
            "negative page size",
            c.list_territories(pb::ListTerritoriesRequest {
                page_size: -1,
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("page_size"),
        ),
        (
            "forged page token",
            c.list_territories(pb::ListTerritoriesRequest {
                page_token: "forged".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("page_token"),
        ),
        (
            "stage out of range",
            c.list_territories(pb::ListTerritoriesRequest {
                stage: 99,
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("stage"),
        ),
        (
            "update without territory",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: None,
                update_mask: None,
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("territory"),
        ),
        (
            "update without mask",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: Some(before.clone()),
                update_mask: None,
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("update_mask"),
        ),
        (
            "update of a server-owned field",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: Some(before.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["stage".into()],
                }),
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("update_mask"),
        ),
        (
            "bad e-mail",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    steering_body: Some(pb::SteeringBody {
                        name: "Comité".into(),
                        relies_on_existing_body: false,
                        members: vec![person("A", "not-an-email", "", "élu")],
                    }),
                    ..before.clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["steering_body".into()],
                }),
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("territory.steering_body.members[0].email"),
        ),
        (
            "bad phone",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    privileged_contact: Some(person("A", "a@exemple.fr", "12", "maire")),
                    ..before.clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["privileged_contact".into()],
                }),
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("territory.privileged_contact.phone"),
        ),
        (
            "diagnostic without theme",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    diagnostic: Some(pb::Diagnostic {
                        themes: vec![],
                        text: "x".into(),
                        record_time: None,
                    }),
                    ..before.clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["diagnostic".into()],
                }),
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("territory.diagnostic.themes"),
        ),
        (
            "stale etag",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    etag: "999".into(),
                    operational_team: vec![person("B", "b@exemple.fr", "", "agent")],
                    ..before.clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["operational_team".into()],
                }),
            })
            .await
            .map(|_| ()),
            Code::Aborted,
            None,
        ),
        (
            "update of an unknown territory",
            c.update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    id: unknown_id.clone(),
                    ..before.clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["operational_team".into()],
                }),
            })
            .await
            .map(|_| ()),
            Code::NotFound,
            None,
        ),
        (
            "advance without stage",
            c.advance_territory_stage(pb::AdvanceTerritoryStageRequest {
                id: t.id.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("stage"),
        ),
        (
            "advance to withdrawn",
            c.advance_territory_stage(pb::AdvanceTerritoryStageRequest {
                id: t.id.clone(),
                stage: pb::Stage::Withdrawn as i32,
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("stage"),
        ),
        (
            "skipping a stage",
            c.advance_territory_stage(pb::AdvanceTerritoryStageRequest {
                id: t.id.clone(),
                stage: pb::Stage::InPath as i32,
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::FailedPrecondition,
            None,
        ),
        (
            "advance with a stale etag",
            c.advance_territory_stage(pb::AdvanceTerritoryStageRequest {
                id: t.id.clone(),
                stage: pb::Stage::Diagnostic as i32,
                etag: "0".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::Aborted,
            None,
        ),
        (
            "withdraw an unknown territory",
            c.withdraw_territory(pb::WithdrawTerritoryRequest {
                id: unknown_id.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
            Code::NotFound,
            None,
        ),
        (
            "withdraw with a huge reason",
            c.withdraw_territory(pb::WithdrawTerritoryRequest {
                id: t.id.clone(),
                reason: "x".repeat(5000),
                etag: String::new(),
            })
            .await
            .map(|_| ()),
            Code::InvalidArgument,
            Some("reason"),
        ),
    ];
    for (what, result, code, field) in cases {
        let e = result.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        if let Some(field) = field {
            assert!(
                violated_fields(&e).iter().any(|f| f == field),
                "{what}: fields {:?}",
                violated_fields(&e)
            );
        }
        assert!(
            !e.message().to_lowercase().contains("sql"),
            "{what} leaks: {}",
            e.message()
        );
    }
    assert_eq!(app.get(&t.id).await, before, "nothing changed");
    assert_eq!(
        list(&app, pb::ListTerritoriesRequest::default())
            .await
            .len(),
        1
    );
}

async fn geography_lookups_and_search(topology: Topology) {
    let app = App::with_geography(topology).await;
    let mut g = app.geography();
    let v = g
        .get_geography_vintage(pb::GetGeographyVintageRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.vintage, "2026");
    let commune = g
        .get_commune(pb::GetCommuneRequest {
            code: "42218".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .commune
        .unwrap();
    assert_eq!(commune.name, "Saint-Étienne");
    assert_eq!(commune.epci_siren, "244200770");
    let epci = g
        .get_epci(pb::GetEpciRequest {
            siren: "244200770".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .epci
        .unwrap();
    assert!(epci.members.iter().any(|m| m.code == "42218"));
    assert!(epci.members.len() > 40);
    let dep = g
        .get_departement(pb::GetDepartementRequest { code: "988".into() })
        .await
        .unwrap()
        .into_inner()
        .departement
        .unwrap();
    assert_eq!(dep.time_zone, "Pacific/Noumea");
    let region = g
        .get_region(pb::GetRegionRequest { code: "84".into() })
        .await
        .unwrap()
        .into_inner()
        .region
        .unwrap();
    assert_eq!(region.name, "Auvergne-Rhône-Alpes");

    let found = g
        .search_communes(pb::SearchCommunesRequest {
            query: "saint etienne".into(),
            departement_code: String::new(),
            page_size: 5,
        })
        .await
        .unwrap()
        .into_inner()
        .communes;
    assert_eq!(found[0].name, "Saint-Étienne", "the exact name comes first");
    let within = g
        .search_communes(pb::SearchCommunesRequest {
            query: "SAINT".into(),
            departement_code: "974".into(),
            page_size: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .communes;
    assert!(!within.is_empty());
    assert!(within.iter().all(|c| c.departement_code == "974"));

    for (e, code) in [
        (
            g.get_commune(pb::GetCommuneRequest {
                code: "42999".into(),
            })
            .await
            .unwrap_err(),
            Code::NotFound,
        ),
        (
            g.get_commune(pb::GetCommuneRequest { code: "x".into() })
                .await
                .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            g.get_epci(pb::GetEpciRequest {
                siren: "123".into(),
            })
            .await
            .unwrap_err(),
            Code::InvalidArgument,
        ),
        (
            g.get_region(pb::GetRegionRequest { code: "99".into() })
                .await
                .unwrap_err(),
            Code::NotFound,
        ),
        (
            g.search_communes(pb::SearchCommunesRequest {
                query: "-".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(e.code(), code, "{}", e.message());
    }
}

async fn registration_needs_a_geography(topology: Topology) {
    let app = App::start(topology).await;
    let e = app
        .territories()
        .register_territory(pb::RegisterTerritoryRequest {
            kind: Kind::Commune as i32,
            official_code: "42218".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// The import RPC takes the four files as a stream; the same content twice changes nothing;
/// an older vintage is refused.
async fn geography_import_over_grpc(topology: Topology) {
    let app = App::start(topology).await;
    let send = |vintage: &'static str, dir: std::path::PathBuf, skip_epci: bool| {
        let mut messages = Vec::new();
        for (name, file) in [
            ("regions.json", pb::GeographyFile::Regions),
            ("departements.json", pb::GeographyFile::Departements),
            ("communes.json", pb::GeographyFile::Communes),
            ("epci.json", pb::GeographyFile::Epci),
        ] {
            if skip_epci && file == pb::GeographyFile::Epci {
                continue;
            }
            let bytes = std::fs::read(dir.join(name)).unwrap();
            for chunk in bytes.chunks(64 * 1024) {
                messages.push(pb::ImportGeographyRequest {
                    vintage: vintage.into(),
                    file: file as i32,
                    data: chunk.to_vec(),
                });
            }
        }
        tokio_stream::iter(messages)
    };
    let mut g = app.geography();
    let first = g
        .import_geography(send("2026", common::fixture("2026"), false))
        .await
        .unwrap()
        .into_inner();
    assert!(first.changed);
    assert_eq!(first.communes, 533);
    assert_eq!(first.departements, 109);
    let again = g
        .import_geography(send("2026", common::fixture("2026"), false))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !again.changed,
        "re-importing the same vintage changes nothing"
    );
    let e = g
        .import_geography(send("2026", common::fixture("2026"), true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = g
        .import_geography(send("2025", common::fixture("2026"), false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// A newer vintage where a commune merged into another: its territory follows the new code,
/// keeps the old one in its history, and TerritoryCodeChanged is published.
async fn merged_communes_keep_their_territories(topology: Topology) {
    let app = App::with_geography(topology).await;
    let merged = app.register(Kind::Commune, "42002").await;
    let untouched = app.register(Kind::Commune, "42218").await;
    let mut events = app.subscribe().await;
    common::collect_events(&mut events, 2).await;

    let outcome = app.import("2027").await;
    assert_eq!(outcome.territories_recoded, 1);
    let t = app.get(&merged.id).await;
    assert_eq!(t.official_code, "42001");
    assert_eq!(t.code_history.len(), 1);
    assert_eq!(t.code_history[0].old_code, "42002");
    assert_eq!(t.code_history[0].vintage, "2027");
    assert_eq!(app.get(&untouched.id).await.official_code, "42218");

    let got = common::collect_events(&mut events, 1).await;
    assert!(
        got[0]
            .subject
            .ends_with("tde.territories.territory.code_changed")
    );
    let event: pb::TerritoryCodeChanged = prost::Message::decode(got[0].payload.clone()).unwrap();
    assert_eq!(
        (event.old_code.as_str(), event.new_code.as_str()),
        ("42002", "42001")
    );
    assert_eq!(event.territory_id, merged.id);
    assert_eq!(
        app.import("2027").await.territories_recoded,
        0,
        "idempotent"
    );
}

async fn health_and_reflection_are_served(topology: Topology) {
    let app = App::start(topology).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    for service in [
        "",
        "tde.territories.v1.TerritoryService",
        "tde.territories.v1.GeographyService",
    ] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    app.platform.shutdown().await.unwrap();
}

tde_runtime::on_both_topologies!(
    registration_fills_from_the_reference_geography,
    retried_registration_creates_one,
    listing_filters_and_pages_in_a_stable_order,
    the_path_is_a_state_machine,
    updates_need_a_fresh_etag_and_validate_people,
    bad_input_gets_the_right_status_and_changes_nothing,
    geography_lookups_and_search,
    registration_needs_a_geography,
    geography_import_over_grpc,
    merged_communes_keep_their_territories,
    health_and_reflection_are_served,
);
