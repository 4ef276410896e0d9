//! Territories across geography vintages, as the programme team lives it: a 2024-like vintage,
//! communes registered, then the 2026 vintage in which they merged (`fixtures/journey`). A
//! territory becomes the commune its commune merged into; two territories on one new commune
//! are flagged, visible and filterable, announced by an event, and resolved by an operator
//! verb; a code without successor is flagged too; vintages are years.

mod common;

use std::collections::BTreeSet;

use common::App;
use tde_proto::territories::v1 as pb;
use tde_runtime::auth::{Role, TokenSpec};
use tde_runtime::testing::Topology;
use tonic::Code;

use pb::AuthorityKind as Kind;

async fn ids_with_issue(app: &App, has: bool, kind: pb::GeographyIssueKind) -> BTreeSet<String> {
    app.territories()
        .list_territories(pb::ListTerritoriesRequest {
            has_geography_issue: has,
            geography_issue_kind: kind as i32,
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner()
        .territories
        .into_iter()
        .map(|t| t.id)
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn resolve(
    app: &App,
    id: &str,
    resolution: pb::GeographyResolution,
    reason: &str,
    successor_code: &str,
) -> Result<pb::ResolveGeographyConflictResponse, tonic::Status> {
    app.territories()
        .resolve_geography_conflict(pb::ResolveGeographyConflictRequest {
            id: id.into(),
            resolution: resolution as i32,
            reason: reason.into(),
            successor_code: successor_code.into(),
            etag: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

fn subjects(events: &[tde_runtime::bus::Envelope]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.aggregate_id.clone(),
                e.subject.rsplit('.').next().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn decode<M: prost::Message + Default>(
    events: &[tde_runtime::bus::Envelope],
    id: &str,
    suffix: &str,
) -> M {
    let e = events
        .iter()
        .find(|e| e.aggregate_id == id && e.subject.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} event for {id}"));
    M::decode(e.payload.clone()).expect("decodes")
}

/// The journey of issue 16: 2024 imported, four communes registered (and one that will have
/// no successor), then 2026 imported.
async fn two_vintages_follow_merged_communes(topology: Topology) {
    let app = App::start(topology).await;
    let first = app
        .import_over_grpc(&common::journey("2024"), "2024")
        .await
        .unwrap();
    assert_eq!((first.vintage.as_str(), first.communes), ("2024", 8));
    let conques = app.register(Kind::Commune, "12076").await;
    let ruffieu = app.register(Kind::Commune, "01330").await;
    let sepert = app.register(Kind::Commune, "19223").await;
    let corbier = app.register(Kind::Commune, "19230").await;
    let temoin = app.register(Kind::Commune, "19999").await;
    assert_eq!(
        ruffieu.epci_siren, "240100255",
        "registration copies the EPCI"
    );
    app.territories()
        .advance_territory_stage(pb::AdvanceTerritoryStageRequest {
            id: sepert.id.clone(),
            stage: pb::Stage::Diagnostic as i32,
            reason: "rencontre du territoire".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut sub = app.subscribe().await;
    common::collect_events(&mut sub, 6).await;

    // Vintages are years, compared as numbers: "999" is no vintage.
    let e = app
        .import_over_grpc(&common::journey("2026"), "999")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());

    let second = app
        .import_over_grpc(&common::journey("2026"), "2026")
        .await
        .unwrap();
    assert!(second.changed);
    assert_eq!(
        (second.territories_recoded, second.territories_flagged),
        (2, 3),
        "{second:?}"
    );
    let e = app
        .import_over_grpc(&common::journey("2024"), "2024")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("2024") && e.message().contains("2026"),
        "names both vintages: {}",
        e.message()
    );
    let again = app
        .import_over_grpc(&common::journey("2026"), "2026")
        .await
        .unwrap();
    assert!(!again.changed, "the same vintage again changes nothing");

    // 12076 Conques became 12218 Conques-en-Rouergue.
    let t = app.get(&conques.id).await;
    assert_eq!(
        (t.official_code.as_str(), t.name.as_str(), t.population),
        ("12218", "Conques-en-Rouergue", 1540)
    );
    assert_eq!(
        (
            t.departement_code.as_str(),
            t.region_code.as_str(),
            t.epci_siren.as_str(),
            t.time_zone.as_str()
        ),
        ("12", "76", "241200641", "Europe/Paris")
    );
    assert_eq!(t.code_history.len(), 1);
    let change = &t.code_history[0];
    assert_eq!(
        (
            change.old_code.as_str(),
            change.old_name.as_str(),
            change.new_code.as_str(),
            change.new_name.as_str(),
            change.vintage.as_str()
        ),
        ("12076", "Conques", "12218", "Conques-en-Rouergue", "2026")
    );
    assert!(t.geography_issue.is_none());

    // 01330 Ruffieu is now Haut Valromey: its name, population and EPCI.
    let t = app.get(&ruffieu.id).await;
    assert_eq!(
        (t.official_code.as_str(), t.name.as_str(), t.population),
        ("01187", "Haut Valromey", 801)
    );
    assert_eq!(t.epci_siren, "200040350", "CC Bugey Sud, not the 2024 EPCI");
    assert_eq!(t.code_history[0].old_name, "Ruffieu");

    // 19223 and 19230 both became 19248 Les Trois-Saints: neither moved, both flagged.
    for (id, other) in [(&sepert.id, &corbier.id), (&corbier.id, &sepert.id)] {
        let t = app.get(id).await;
        assert!(t.code_history.is_empty(), "nobody moved");
        let issue = t.geography_issue.expect("flagged");
        assert_eq!(issue.kind, pb::GeographyIssueKind::Merged as i32);
        assert_eq!(
            (
                issue.successor_code.as_str(),
                issue.successor_name.as_str(),
                issue.vintage.as_str()
            ),
            ("19248", "Les Trois-Saints", "2026")
        );
        assert_eq!(issue.other_territory_ids, vec![other.clone()]);
        assert_eq!(
            issue.description,
            format!("merged into 19248 Les Trois-Saints, shared with {other}")
        );
    }
    let t = app.get(&temoin.id).await;
    assert_eq!(
        t.geography_issue.map(|i| i.kind),
        Some(pb::GeographyIssueKind::Vanished as i32)
    );

    // Filterable in List.
    use pb::GeographyIssueKind as K;
    assert_eq!(
        ids_with_issue(&app, true, K::Unspecified).await,
        set(&[&sepert.id, &corbier.id, &temoin.id])
    );
    assert_eq!(
        ids_with_issue(&app, false, K::Merged).await,
        set(&[&sepert.id, &corbier.id])
    );
    assert_eq!(
        ids_with_issue(&app, true, K::Vanished).await,
        set(&[&temoin.id])
    );

    // Events: each move with both names, each flag.
    let events = common::collect_events(&mut sub, 5).await;
    let mut got = subjects(&events);
    got.sort();
    let mut expected = vec![
        (conques.id.clone(), "code_changed".to_string()),
        (ruffieu.id.clone(), "code_changed".into()),
        (sepert.id.clone(), "merge_conflict".into()),
        (corbier.id.clone(), "merge_conflict".into()),
        (temoin.id.clone(), "merge_conflict".into()),
    ];
    expected.sort();
    assert_eq!(got, expected);
    let moved: pb::TerritoryCodeChanged = decode(&events, &ruffieu.id, "code_changed");
    assert_eq!(
        (
            moved.old_code.as_str(),
            moved.old_name.as_str(),
            moved.new_code.as_str(),
            moved.territory_name.as_str()
        ),
        ("01330", "Ruffieu", "01187", "Haut Valromey")
    );
    assert_eq!(
        (moved.population, moved.epci_siren.as_str()),
        (801, "200040350")
    );
    let conflict: pb::TerritoryMergeConflict = decode(&events, &sepert.id, "merge_conflict");
    assert_eq!(conflict.official_code, "19223");
    assert_eq!(
        conflict.issue.unwrap().other_territory_ids,
        vec![corbier.id.clone()]
    );

    // Nobody else registers Les Trois-Saints while the team decides.
    let e = app
        .territories()
        .register_territory(pb::RegisterTerritoryRequest {
            kind: Kind::Commune as i32,
            official_code: "19248".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());

    // The team merges them into one: Saint-Pardoux-Corbier's territory continues as
    // Les Trois-Saints, with Saint-Martin-Sepert's history.
    let r = resolve(
        &app,
        &corbier.id,
        pb::GeographyResolution::Merge,
        "une seule commune depuis 2026",
        "",
    )
    .await
    .unwrap();
    let t = r.territory.unwrap();
    assert_eq!(
        (t.official_code.as_str(), t.name.as_str(), t.population),
        ("19248", "Les Trois-Saints", 1388)
    );
    assert_eq!(t.epci_siren, "241927243");
    assert_eq!(t.code_history[0].old_name, "Saint-Pardoux-Corbier");
    assert!(t.geography_issue.is_none());
    assert_eq!(t.stage, pb::Stage::Prospect as i32, "its own path goes on");
    let merged = &t.merged_territories[0];
    assert_eq!(
        (
            merged.id.as_str(),
            merged.official_code.as_str(),
            merged.name.as_str()
        ),
        (sepert.id.as_str(), "19223", "Saint-Martin-Sepert")
    );
    assert_eq!(merged.stage, pb::Stage::Diagnostic as i32);
    assert_eq!(merged.stage_history.len(), 2, "both histories are kept");
    assert_eq!(
        merged.stage_history[1].reason, "rencontre du territoire",
        "the merged territory's own history"
    );
    assert_eq!(r.others.len(), 1);
    let other = app.get(&sepert.id).await;
    assert_eq!(other.stage, pb::Stage::Withdrawn as i32);
    assert_eq!(
        other.official_code, "19223",
        "a withdrawn territory keeps its code"
    );
    assert!(other.geography_issue.is_none());
    let why = &other.stage_history.last().unwrap().reason;
    assert!(
        why.contains(&corbier.id) && why.contains("une seule commune depuis 2026"),
        "{why}"
    );
    let events = common::collect_events(&mut sub, 5).await;
    let mut got = subjects(&events);
    got.sort();
    let mut expected = vec![
        (corbier.id.clone(), "code_changed".to_string()),
        (corbier.id.clone(), "merge_conflict_resolved".into()),
        (sepert.id.clone(), "merge_conflict_resolved".into()),
        (sepert.id.clone(), "stage_changed".into()),
        (sepert.id.clone(), "withdrawn".into()),
    ];
    expected.sort();
    assert_eq!(got, expected);
    let resolved: pb::TerritoryMergeConflictResolved =
        decode(&events, &sepert.id, "merge_conflict_resolved");
    assert_eq!(resolved.resolution, pb::GeographyResolution::Merge as i32);
    assert_eq!(resolved.surviving_territory_id, corbier.id);

    // The commune without successor: withdrawn, with a reason.
    let e = resolve(&app, &temoin.id, pb::GeographyResolution::Withdraw, "", "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let r = resolve(
        &app,
        &temoin.id,
        pb::GeographyResolution::Withdraw,
        "commune disparue du COG",
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.territory.unwrap().stage, pb::Stage::Withdrawn as i32);
    assert!(ids_with_issue(&app, true, K::Unspecified).await.is_empty());
}

/// KEEP withdraws the others; every wrong call gets its own status and changes nothing.
async fn keeping_one_and_the_wrong_calls(topology: Topology) {
    let app = App::start(topology).await;
    app.import_over_grpc(&common::journey("2024"), "2024")
        .await
        .unwrap();
    let sepert = app.register(Kind::Commune, "19223").await;
    let corbier = app.register(Kind::Commune, "19230").await;
    let temoin = app.register(Kind::Commune, "19999").await;
    let conques = app.register(Kind::Commune, "12076").await;
    app.import_over_grpc(&common::journey("2026"), "2026")
        .await
        .unwrap();
    let flagged = app.get(&sepert.id).await;

    use pb::GeographyResolution as R;
    let code = |r: Result<_, tonic::Status>| r.map(|_| ()).unwrap_err().code();
    let unknown = "0192f000-0000-7000-8000-000000000000";
    assert_eq!(
        code(resolve(&app, unknown, R::Keep, "x", "").await),
        Code::NotFound
    );
    assert_eq!(
        code(resolve(&app, "nope", R::Keep, "x", "").await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(resolve(&app, &conques.id, R::Keep, "x", "").await),
        Code::FailedPrecondition,
        "no issue to resolve"
    );
    assert_eq!(
        code(resolve(&app, &sepert.id, R::Unspecified, "x", "").await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(resolve(&app, &sepert.id, R::Withdraw, "x", "").await),
        Code::InvalidArgument,
        "a merged territory is kept or merged"
    );
    assert_eq!(
        code(resolve(&app, &sepert.id, R::Keep, "", "").await),
        Code::InvalidArgument,
        "a reason is required to withdraw the other"
    );
    assert_eq!(
        code(resolve(&app, &sepert.id, R::Keep, "bip\u{7}", "").await),
        Code::InvalidArgument,
        "no control characters"
    );
    assert_eq!(
        code(resolve(&app, &sepert.id, R::Keep, &"x".repeat(2_001), "").await),
        Code::InvalidArgument,
        "bounded"
    );
    assert_eq!(
        code(resolve(&app, &sepert.id, R::Keep, "x", "19248").await),
        Code::InvalidArgument,
        "successor_code is for vanished codes"
    );
    let stale = app
        .territories()
        .resolve_geography_conflict(pb::ResolveGeographyConflictRequest {
            id: sepert.id.clone(),
            resolution: R::Keep as i32,
            reason: "x".into(),
            successor_code: String::new(),
            etag: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let lead = app
        .territories_as(&TokenSpec::new(Role::ProjectLead, "cheffe").region("75"))
        .await
        .resolve_geography_conflict(pb::ResolveGeographyConflictRequest {
            id: sepert.id.clone(),
            resolution: R::Keep as i32,
            reason: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(lead.code(), Code::PermissionDenied, "a programme decision");
    for field in ["geography_issue", "merged_territories", "epci_siren"] {
        let e = app
            .territories()
            .update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    id: sepert.id.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![field.into()],
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field} is the server's");
    }
    assert_eq!(app.get(&sepert.id).await, flagged, "nothing changed");

    let r = app
        .territories()
        .resolve_geography_conflict(pb::ResolveGeographyConflictRequest {
            id: sepert.id.clone(),
            resolution: R::Keep as i32,
            reason: "Saint-Martin-Sepert porte le projet".into(),
            successor_code: String::new(),
            etag: flagged.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let kept = r.territory.unwrap();
    assert_eq!(
        (kept.official_code.as_str(), kept.name.as_str()),
        ("19248", "Les Trois-Saints")
    );
    assert!(kept.merged_territories.is_empty(), "kept, not merged");
    let other = app.get(&corbier.id).await;
    assert_eq!(other.stage, pb::Stage::Withdrawn as i32);
    assert!(
        other
            .stage_history
            .last()
            .unwrap()
            .reason
            .ends_with("Saint-Martin-Sepert porte le projet")
    );
    assert_eq!(
        code(resolve(&app, &sepert.id, R::Keep, "x", "").await),
        Code::FailedPrecondition,
        "resolved already"
    );

    // A vanished code: KEEP names the authority it now is, which must be free.
    assert_eq!(
        code(resolve(&app, &temoin.id, R::Keep, "", "").await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(resolve(&app, &temoin.id, R::Keep, "", "19248").await),
        Code::FailedPrecondition,
        "Les Trois-Saints has its territory"
    );
    assert_eq!(
        code(resolve(&app, &temoin.id, R::Keep, "", "19001").await),
        Code::NotFound
    );
    assert_eq!(
        code(resolve(&app, &temoin.id, R::Keep, "", "123").await),
        Code::InvalidArgument
    );
    let r = resolve(&app, &temoin.id, R::Keep, "", "01187")
        .await
        .unwrap();
    let t = r.territory.unwrap();
    assert_eq!(
        (t.official_code.as_str(), t.name.as_str()),
        ("01187", "Haut Valromey")
    );
    assert_eq!(t.code_history[0].old_code, "19999");
    assert!(t.geography_issue.is_none());
}

tde_runtime::on_both_topologies!(
    two_vintages_follow_merged_communes,
    keeping_one_and_the_wrong_calls,
);
