//! A trusted provider for an action, across services: the action created in the plans
//! service becomes a need of the matching service (with the territory's département, which
//! plans learnt from the territories service), is ranked and proposed — the notifications
//! service e-mails the provider's contact in French — accepted by the provider with its own
//! token, and plans sets the action's provider. Run as four processes on PostgreSQL and
//! JetStream (as on Kubernetes), and as one process with the in-process bus (as `tde dev`).

mod common;

use std::time::Duration;

use chrono::Datelike as _;
use tde::platform::{self, Role};
use tde_proto::common::v1::Skill;
use tde_proto::matching::v1 as mpb;
use tde_proto::matching::v1::matching_service_client::MatchingServiceClient;
use tde_proto::matching::v1::proposal_service_client::ProposalServiceClient;
use tde_proto::matching::v1::provider_service_client::ProviderServiceClient;
use tde_proto::plans::v1 as plans_pb;
use tde_proto::plans::v1::action_service_client::ActionServiceClient;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_runtime::auth::{AuthChannel, TokenSpec};
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, channel, channel_as};

struct Topology {
    env: TestEnv,
    platforms: Vec<RunningPlatform>,
    territories: AuthChannel,
    plans: AuthChannel,
    matching: AuthChannel,
    matching_addr: std::net::SocketAddr,
}

async fn four_processes() -> Topology {
    let env = TestEnv::postgres(&["territories", "plans", "matching", "notifications"]).await;
    let mut platforms = Vec::new();
    for role in [
        Role::Territories,
        Role::Plans,
        Role::Matching,
        Role::Notifications,
    ] {
        platforms.push(env.start(platform::modules(&[role])).await.expect("starts"));
    }
    Topology {
        territories: channel(platforms[0].local_addr).await,
        plans: channel(platforms[1].local_addr).await,
        matching: channel(platforms[2].local_addr).await,
        matching_addr: platforms[2].local_addr,
        platforms,
        env,
    }
}

async fn one_process() -> Topology {
    let env = TestEnv::sqlite().await;
    let running = env
        .start(platform::modules(Role::ALL))
        .await
        .expect("starts");
    let ch = channel(running.local_addr).await;
    Topology {
        territories: ch.clone(),
        plans: ch.clone(),
        matching: ch,
        matching_addr: running.local_addr,
        platforms: vec![running],
        env,
    }
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

async fn an_accepted_proposal_sets_the_actions_provider(topology: Topology) {
    let territory = common::quickstart(topology.territories.clone()).await;
    let y = chrono::Utc::now().year() + 1;
    let plans = PlanServiceClient::new(topology.plans.clone());
    let plan = eventually("the plans service knows the territory", || {
        let mut plans = plans.clone();
        let request = plans_pb::CreatePlanRequest {
            territory_id: territory.id.clone(),
            title: "Plan d'engagement de Saint-Étienne".into(),
            start_date: format!("{y}-01-01"),
            request_id: "e2e-matching-plan".into(),
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
    let mut actions = ActionServiceClient::new(topology.plans.clone());
    let action = actions
        .create_action(plans_pb::CreateActionRequest {
            action: Some(plans_pb::Action {
                plan_id: plan.id.clone(),
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

    let provider = ProviderServiceClient::new(topology.matching.clone())
        .register_provider(mpb::RegisterProviderRequest {
            provider: Some(mpb::Provider {
                siret: "732 829 320 00074".into(),
                name: "Démocratie ouverte Loire".into(),
                naf_code: "70.22Z".into(),
                skills: vec![Skill::ParticipatoryDemocracy as i32],
                areas: vec![mpb::Area {
                    area: Some(mpb::area::Area::DepartementCode("42".into())),
                }],
                capacity: 2,
                day_rate_cents: 70_000,
                contact: Some(mpb::ProviderContact {
                    name: "Alix Bernard".into(),
                    email: "alix@democratie-loire.example.org".into(),
                }),
                ..Default::default()
            }),
            request_id: "e2e-provider".into(),
        })
        .await
        .expect("provider")
        .into_inner()
        .provider
        .expect("provider");

    // The need reaches matching with the département plans learnt from territories.
    let matching = MatchingServiceClient::new(topology.matching.clone());
    let need = eventually("the action becomes a need", || {
        let mut matching = matching.clone();
        let id = action.id.clone();
        async move {
            matching
                .get_need(mpb::GetNeedRequest { id })
                .await
                .ok()?
                .into_inner()
                .need
        }
    })
    .await;
    assert_eq!(need.departement_code, "42");
    let ranking = matching
        .clone()
        .rank_providers(mpb::RankProvidersRequest {
            need_id: need.id.clone(),
            max_candidates: 0,
            all_exclusions: false,
        })
        .await
        .expect("ranked")
        .into_inner();
    assert_eq!(ranking.candidates[0].provider_id, provider.id);
    let proposal = ProposalServiceClient::new(topology.matching.clone())
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: need.id.clone(),
            provider_id: provider.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .expect("proposed")
        .into_inner()
        .proposal
        .expect("proposal");

    // Its contact hears of it in French (tde dev and these tests write e-mails as files).
    let mail_dir = topology.env.data_dir().join("mail");
    let mail = eventually("the proposal is e-mailed", || {
        let dir = mail_dir.clone();
        async move {
            std::fs::read_dir(&dir)
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|f| std::fs::read_to_string(f.path()).ok())
                .find(|m| m.contains("alix@democratie-loire.example.org"))
        }
    })
    .await;
    assert!(mail.contains("Content-Language: fr"), "{mail}");
    assert!(mail.contains("Subject: "), "{mail}");

    // The provider answers with its own token.
    let spec = TokenSpec::new(tde_runtime::auth::Role::Provider, "democratie-loire")
        .provider(&provider.id);
    ProposalServiceClient::new(channel_as(topology.matching_addr, &spec).await)
        .accept_proposal(mpb::AcceptProposalRequest {
            id: proposal.id.clone(),
            etag: String::new(),
        })
        .await
        .expect("accepted");

    eventually("plans sets the action's provider", || {
        let mut actions = actions.clone();
        let id = action.id.clone();
        let provider_id = provider.id.clone();
        async move {
            let a = actions
                .get_action(plans_pb::GetActionRequest { id })
                .await
                .ok()?
                .into_inner()
                .action?;
            (a.provider_id == provider_id).then_some(a)
        }
    })
    .await;
    for p in topology.platforms {
        p.shutdown().await.expect("stops");
    }
}

#[tokio::test]
async fn as_four_processes() {
    an_accepted_proposal_sets_the_actions_provider(four_processes().await).await;
}

#[tokio::test]
async fn as_tde_dev() {
    an_accepted_proposal_sets_the_actions_provider(one_process().await).await;
}

/// A provider's contact is a person: the platform's RGPD export names it, and erasure
/// empties it (the provider stays, with its history).
#[tokio::test]
async fn a_providers_contact_is_exported_and_erased() {
    use tde_proto::territories::v1 as pb;
    use tde_proto::territories::v1::personal_data_service_client::PersonalDataServiceClient;
    let topology = one_process().await;
    let email = "camille.petit@prestataire.example.org";
    let mut providers = ProviderServiceClient::new(topology.matching.clone());
    let provider = providers
        .register_provider(mpb::RegisterProviderRequest {
            provider: Some(mpb::Provider {
                siret: "35600000000048".into(),
                name: "Concertation & Co".into(),
                naf_code: "70.22Z".into(),
                skills: vec![Skill::Facilitation as i32],
                areas: vec![mpb::Area {
                    area: Some(mpb::area::Area::National(true)),
                }],
                capacity: 1,
                day_rate_cents: 50_000,
                contact: Some(mpb::ProviderContact {
                    name: "Camille Petit".into(),
                    email: email.into(),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .expect("registered")
        .into_inner()
        .provider
        .expect("provider");
    let mut rgpd = PersonalDataServiceClient::new(topology.territories.clone());
    let export = rgpd
        .export_personal_data(pb::ExportPersonalDataRequest {
            email: email.into(),
        })
        .await
        .expect("exported")
        .into_inner();
    let matching = export
        .services
        .iter()
        .find(|s| s.service == "matching")
        .expect("matching answers");
    assert_eq!(matching.holdings.len(), 1, "{matching:?}");
    assert_eq!(matching.holdings[0].kind, "provider_contact");
    assert_eq!(matching.holdings[0].object_id, provider.id);
    assert_eq!(matching.holdings[0].fields["name"], "Camille Petit");

    rgpd.erase_personal_data(pb::ErasePersonalDataRequest {
        email: email.into(),
    })
    .await
    .expect("erased");
    let after = providers
        .get_provider(mpb::GetProviderRequest {
            id: provider.id.clone(),
        })
        .await
        .expect("provider stays")
        .into_inner()
        .provider
        .expect("provider");
    let contact = after.contact.unwrap_or_default();
    assert!(
        contact.email.is_empty() && contact.name.is_empty(),
        "{contact:?}"
    );
    for p in topology.platforms {
        p.shutdown().await.expect("stops");
    }
}
