//! The right of access and the right to erasure reach every copy. Three people known to one
//! service only — a charter signatory (plans), a past recipient of an invitation
//! (notifications' log) and a provider's contact to whom a proposal went (matching) — are
//! exported and erased through the territories service's PersonalDataService, which asks
//! every service; then every table of every service's database, outbox rows included, and the
//! streams are searched for their addresses: none is left. As `tde dev` (one process) and as
//! separate processes on PostgreSQL and JetStream, where the territories service asks its
//! configured peers over gRPC — all but matching, which the erasure event alone reaches.

mod common;

use std::time::Duration;

use chrono::Datelike as _;
use prost_types::FieldMask;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};
use tde::platform::{self, Role};
use tde_notifications::testing::{SmtpServer, configure};
use tde_proto::personal_data::v1 as hpb;
use tde_proto::plans::v1 as plans_pb;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_proto::plans::v1::steering_meeting_service_client::SteeringMeetingServiceClient;
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::personal_data_service_client::PersonalDataServiceClient;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::AuthChannel;
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, channel};
use tde_territories::settings::TerritoriesSettings;

/// Known to plans only: she signs the charter, she is no contact of the territory.
const SIGNATORY: &str = "prefete@loire.gouv.fr";

struct Deployment {
    _env: TestEnv,
    platforms: Vec<RunningPlatform>,
    territories: AuthChannel,
    plans: AuthChannel,
    matching: AuthChannel,
}

/// Known to matching only: the contact of a provider, to whom a proposal went.
const PROVIDER_CONTACT: &str = "alix@democratie-loire.example.org";

async fn one_process(smtp: &SmtpServer) -> Deployment {
    let mut env = TestEnv::sqlite().await;
    configure(&mut env, Some(smtp));
    let running = env
        .start(platform::modules(Role::ALL))
        .await
        .expect("starts");
    let ch = channel(running.local_addr).await;
    Deployment {
        territories: ch.clone(),
        plans: ch.clone(),
        matching: ch,
        platforms: vec![running],
        _env: env,
    }
}

/// Plans, notifications and matching first: the territories process is configured with the
/// addresses of plans and notifications as its personal-data peers, as on Kubernetes. Not
/// matching's: the erasure event alone must reach it.
async fn separate_processes(smtp: &SmtpServer) -> Deployment {
    let mut env = TestEnv::postgres(&["territories", "plans", "notifications", "matching"]).await;
    configure(&mut env, Some(smtp));
    let mut started = Vec::new();
    for role in [Role::Plans, Role::Notifications, Role::Matching] {
        started.push(env.start(platform::modules(&[role])).await.expect("starts"));
    }
    let peers = [
        ("plans", started[0].local_addr),
        ("notifications", started[1].local_addr),
    ];
    env.settings.services.update::<TerritoriesSettings>(|s| {
        for (service, addr) in peers {
            s.personal_data_peers
                .insert(service.into(), format!("http://{addr}"));
        }
    });
    let territories = env
        .start(platform::modules(&[Role::Territories]))
        .await
        .expect("territories starts");
    Deployment {
        territories: channel(territories.local_addr).await,
        plans: channel(started[0].local_addr).await,
        matching: channel(started[2].local_addr).await,
        platforms: std::iter::once(territories).chain(started).collect(),
        _env: env,
    }
}

/// An action needing a skill, a provider whose contact is `PROVIDER_CONTACT`, and a proposal
/// of the action's need to it: `proposal.sent` carries the contact's address.
async fn propose_to_a_provider(d: &Deployment, plan_id: &str) {
    use tde_proto::common::v1::Skill;
    use tde_proto::matching::v1 as mpb;
    let y = chrono::Utc::now().year() + 1;
    let action =
        tde_proto::plans::v1::action_service_client::ActionServiceClient::new(d.plans.clone())
            .create_action(plans_pb::CreateActionRequest {
                action: Some(plans_pb::Action {
                    plan_id: plan_id.into(),
                    year: 1,
                    kind: plans_pb::ActionKind::EngagementProject as i32,
                    title: "Budget participatif".into(),
                    audiences: vec![plans_pb::Audience::Inhabitants as i32],
                    skills: vec![plans_pb::Skill::ParticipatoryDemocracy as i32],
                    planned_start: format!("{y}-04-01"),
                    planned_end: format!("{y}-04-30"),
                    budget_cents: 2_500_000,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("action")
            .into_inner()
            .action
            .expect("action");
    let provider = mpb::provider_service_client::ProviderServiceClient::new(d.matching.clone())
        .register_provider(mpb::RegisterProviderRequest {
            provider: Some(mpb::Provider {
                siret: "73282932000074".into(),
                name: "Démocratie ouverte Loire".into(),
                naf_code: "70.22Z".into(),
                skills: vec![Skill::ParticipatoryDemocracy as i32],
                areas: vec![mpb::Area {
                    area: Some(mpb::area::Area::National(true)),
                }],
                capacity: 2,
                day_rate_cents: 70_000,
                contact: Some(mpb::ProviderContact {
                    name: "Alix Bernard".into(),
                    email: PROVIDER_CONTACT.into(),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("provider")
        .into_inner()
        .provider
        .expect("provider");
    let matching = mpb::matching_service_client::MatchingServiceClient::new(d.matching.clone());
    eventually("the action becomes a need", || {
        let mut matching = matching.clone();
        let id = action.id.clone();
        async move { matching.get_need(mpb::GetNeedRequest { id }).await.ok() }
    })
    .await;
    mpb::proposal_service_client::ProposalServiceClient::new(d.matching.clone())
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: provider.id,
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .expect("proposed");
}

/// Whether a fresh consumer of `service`'s stream finds `needle` in any stored event.
async fn stream_mentions(d: &Deployment, service: &str, needle: &str) -> bool {
    let namespace = tde_runtime::bus::Namespace::new(d._env.settings.bus.namespace.clone());
    let mut stream =
        tde_runtime::testing::subscribe_to(d._env.bus.as_ref(), &namespace, service).await;
    while let Some(event) =
        tde_runtime::testing::next_event(&mut stream, Duration::from_millis(500)).await
    {
        if String::from_utf8_lossy(&event.envelope.payload).contains(needle) {
            return true;
        }
    }
    false
}

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where each table of `db` mentions `needle`: (table, rows). Every text, JSON and binary
/// column is searched, so that outbox payloads and stored documents count.
async fn rows_mentioning(db: &DatabaseConnection, needle: &str) -> Vec<(String, i64)> {
    let backend = db.get_database_backend();
    // (table, column, whether it holds bytes)
    let columns: Vec<(String, String, bool)> = match backend {
        DbBackend::Postgres => db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT table_name, column_name, data_type FROM information_schema.columns
                 WHERE table_schema = 'public'
                 AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea')",
            ))
            .await
            .expect("columns")
            .iter()
            .map(|r| {
                (
                    r.try_get::<String>("", "table_name").expect("table"),
                    r.try_get::<String>("", "column_name").expect("column"),
                    r.try_get::<String>("", "data_type").expect("type") == "bytea",
                )
            })
            .collect(),
        _ => {
            let tables: Vec<String> = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT name FROM sqlite_master WHERE type = 'table'",
                ))
                .await
                .expect("tables")
                .iter()
                .map(|r| r.try_get::<String>("", "name").expect("name"))
                .collect();
            let mut columns = Vec::new();
            for table in tables {
                for r in db
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT name FROM pragma_table_info('{table}')"),
                    ))
                    .await
                    .expect("table info")
                {
                    let column = r.try_get::<String>("", "name").expect("name");
                    columns.push((table.clone(), column, false));
                }
            }
            columns
        }
    };
    let mut found = Vec::new();
    for (table, column, bytes) in columns {
        let (sql, value): (String, sea_orm::Value) = match backend {
            DbBackend::Postgres if bytes => (
                format!(
                    "SELECT count(*) AS n FROM \"{table}\" WHERE position($1 IN \"{column}\") > 0"
                ),
                needle.as_bytes().to_vec().into(),
            ),
            DbBackend::Postgres => (
                format!(
                    "SELECT count(*) AS n FROM \"{table}\" WHERE strpos(\"{column}\"::text, $1) > 0"
                ),
                needle.to_string().into(),
            ),
            // Text and blobs alike, compared as bytes.
            _ => (
                format!(
                    "SELECT count(*) AS n FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS BLOB), CAST($1 AS BLOB)) > 0"
                ),
                needle.to_string().into(),
            ),
        };
        let n: i64 = db
            .query_one_raw(Statement::from_sql_and_values(backend, sql, [value]))
            .await
            .unwrap_or_else(|e| panic!("searching {table}.{column}: {e}"))
            .expect("a count")
            .try_get("", "n")
            .expect("n");
        if n > 0 {
            found.push((format!("{table}.{column}"), n));
        }
    }
    found
}

fn holdings_of<'a>(
    export: &'a pb::ExportPersonalDataResponse,
    service: &str,
) -> &'a hpb::ServiceHoldings {
    export
        .services
        .iter()
        .find(|s| s.service == service)
        .unwrap_or_else(|| panic!("{service} answers: {:?}", export.services))
}

async fn export(
    rgpd: &mut PersonalDataServiceClient<AuthChannel>,
    email: &str,
) -> pb::ExportPersonalDataResponse {
    rgpd.export_personal_data(pb::ExportPersonalDataRequest {
        email: email.into(),
    })
    .await
    .expect("exported")
    .into_inner()
}

async fn erasure_reaches_every_copy(d: Deployment, smtp: &SmtpServer) {
    let territory = common::quickstart(d.territories.clone()).await;
    let mut plans = PlanServiceClient::new(d.plans.clone());
    let start = format!("{}-01-01", chrono::Utc::now().year() + 1);
    let plan = eventually("the territory reaches plans", || {
        let mut plans = plans.clone();
        let request = plans_pb::CreatePlanRequest {
            territory_id: territory.id.clone(),
            title: "Plan".into(),
            start_date: start.clone(),
            request_id: "erasure".into(),
        };
        async move {
            match plans.create_plan(request).await {
                Ok(r) => r.into_inner().plan,
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await;
    plans
        .add_charter_version(plans_pb::AddCharterVersionRequest {
            plan_id: plan.id.clone(),
            etag: plan.etag.clone(),
            document_ref: "ged://chartes/42218/v1".into(),
            content_sha256: "5e".repeat(32),
            change_summary: String::new(),
            signatories: vec![plans_pb::Signatory {
                name: "Préfète de la Loire".into(),
                role: "préfète".into(),
                email: SIGNATORY.into(),
                signed_on: String::new(),
            }],
        })
        .await
        .expect("charter added");

    propose_to_a_provider(&d, &plan.id).await;
    eventually("the proposal is on matching's stream", || async {
        stream_mentions(&d, "matching", PROVIDER_CONTACT)
            .await
            .then_some(())
    })
    .await;

    // The steering body's member is invited, then leaves the roster: only notifications'
    // log still names her.
    let year = chrono::Utc::now().year() + 1;
    SteeringMeetingServiceClient::new(d.plans.clone())
        .schedule_steering_meeting(plans_pb::ScheduleSteeringMeetingRequest {
            plan_id: plan.id.clone(),
            start_local: format!("{year}-03-30T10:00"),
            end_local: format!("{year}-03-30T12:00"),
            place: "Hôtel de ville".into(),
            video_link: String::new(),
            agenda: "Lancement".into(),
            request_id: String::new(),
        })
        .await
        .expect("scheduled");
    eventually("the invitation is sent", || async {
        (!smtp.messages().is_empty()).then_some(())
    })
    .await;
    let mut territories = TerritoryServiceClient::new(d.territories.clone());
    let current = territories
        .get_territory(pb::GetTerritoryRequest {
            id: territory.id.clone(),
        })
        .await
        .expect("read")
        .into_inner()
        .territory
        .expect("territory");
    let mut body = current.steering_body.clone().expect("a steering body");
    body.members = vec![pb::Person {
        name: "Paul Roche".into(),
        email: "paul.roche@mairie-exemple.fr".into(),
        phone: String::new(),
        role: "maire".into(),
    }];
    territories
        .update_territory(pb::UpdateTerritoryRequest {
            territory: Some(pb::Territory {
                id: territory.id.clone(),
                etag: current.etag.clone(),
                steering_body: Some(body),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["steering_body".into()],
            }),
        })
        .await
        .expect("roster changed");

    let mut rgpd = PersonalDataServiceClient::new(d.territories.clone());
    // The member: no territory holds her now; notifications' log does, once her recipient
    // row is gone with the roster change (and the send is logged: the relay may receive the
    // message before the dispatcher records its delivery).
    let before = eventually("the roster change reaches notifications", || {
        let mut rgpd = rgpd.clone();
        async move {
            let e = export(&mut rgpd, common::EMAIL).await;
            let n = holdings_of(&e, "notifications");
            let kind = |k: &str| n.holdings.iter().any(|h| h.kind == k);
            (!kind("recipient") && kind("delivery")).then_some(e)
        }
    })
    .await;
    for service in ["territories", "plans", "notifications"] {
        assert_eq!(
            holdings_of(&before, service).status,
            hpb::AnswerStatus::Answered as i32,
            "{service}: {:?}",
            holdings_of(&before, service).problem
        );
    }
    assert!(before.records.is_empty(), "{:?}", before.records);
    let kinds: Vec<&str> = holdings_of(&before, "notifications")
        .holdings
        .iter()
        .map(|h| h.kind.as_str())
        .collect();
    assert!(
        kinds.contains(&"notification") && kinds.contains(&"delivery"),
        "{kinds:?}"
    );
    // The signatory: plans alone.
    let signatory = export(&mut rgpd, SIGNATORY).await;
    let held = &holdings_of(&signatory, "plans").holdings;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].kind, "charter_signatory");
    assert_eq!(
        held[0].fields.get("email").map(String::as_str),
        Some(SIGNATORY)
    );
    assert!(holdings_of(&signatory, "notifications").holdings.is_empty());

    // The search finds them before the erasure: its silence after means something.
    let plans_db = &d
        .platforms
        .iter()
        .find_map(|p| p.service("plans"))
        .expect("plans runs")
        .db;
    assert!(!rows_mentioning(plans_db, SIGNATORY).await.is_empty());
    let notifications_db = &d
        .platforms
        .iter()
        .find_map(|p| p.service("notifications"))
        .expect("notifications runs")
        .db;
    assert!(
        !rows_mentioning(notifications_db, common::EMAIL)
            .await
            .is_empty()
    );

    for email in [common::EMAIL, SIGNATORY, PROVIDER_CONTACT] {
        let erased = rgpd
            .erase_personal_data(pb::ErasePersonalDataRequest {
                email: email.into(),
            })
            .await
            .expect("erased")
            .into_inner();
        let services: Vec<&str> = erased.services.iter().map(|s| s.service.as_str()).collect();
        for service in ["territories", "plans", "notifications"] {
            let answer = erased
                .services
                .iter()
                .find(|s| s.service == service)
                .unwrap_or_else(|| panic!("{service} reports: {services:?}"));
            assert_eq!(
                answer.status,
                hpb::AnswerStatus::Answered as i32,
                "{answer:?}"
            );
        }
        let did = |service: &str, kind: &str| {
            erased
                .services
                .iter()
                .filter(|s| s.service == service)
                .flat_map(|s| &s.steps)
                .any(|s| s.kind == kind && s.count > 0)
        };
        if email == SIGNATORY {
            assert!(did("plans", "charter_signatory"), "{:?}", erased.services);
        } else if email == common::EMAIL {
            assert!(did("notifications", "delivery"), "{:?}", erased.services);
        }
    }
    for email in [common::EMAIL, SIGNATORY, PROVIDER_CONTACT] {
        eventually("nothing is held any more", || {
            let mut rgpd = rgpd.clone();
            async move {
                let after = export(&mut rgpd, email).await;
                after
                    .services
                    .iter()
                    .all(|s| s.holdings.is_empty())
                    .then_some(())
            }
        })
        .await;
    }
    // Every table of every database: nothing names them any more (the erasure event itself
    // has been consumed everywhere by then: its effects are already there).
    for platform in &d.platforms {
        for service in [
            "territories",
            "plans",
            "notifications",
            "matching",
            "subsidies",
        ] {
            let Some(ctx) = platform.service(service) else {
                continue;
            };
            for email in [common::EMAIL, SIGNATORY, PROVIDER_CONTACT] {
                let ctx_db = ctx.db.clone();
                eventually("no table names them", || {
                    let db = ctx_db.clone();
                    async move { rows_mentioning(&db, email).await.is_empty().then_some(()) }
                })
                .await;
            }
        }
    }
    eventually(
        "matching's stream no longer names the provider's contact",
        || async { (!stream_mentions(&d, "matching", PROVIDER_CONTACT).await).then_some(()) },
    )
    .await;
    // The territories stream keeps every event: the rosters that named the member are
    // erased from it (a fresh consumer reads the whole stream).
    eventually("the stream's rosters no longer name her", || async {
        (!stream_mentions(&d, "territories", common::EMAIL).await).then_some(())
    })
    .await;
    for p in d.platforms {
        p.shutdown().await.expect("stops");
    }
}

#[tokio::test]
async fn in_one_process_as_tde_dev() {
    let smtp = SmtpServer::start();
    erasure_reaches_every_copy(one_process(&smtp).await, &smtp).await;
}

#[tokio::test]
async fn as_separate_processes_asking_their_peers() {
    let smtp = SmtpServer::start();
    erasure_reaches_every_copy(separate_processes(&smtp).await, &smtp).await;
}
