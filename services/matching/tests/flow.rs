//! The matching service with the plans service, on PostgreSQL and NATS JetStream (and on
//! SQLite with the in-process bus): an action created in plans becomes a need, is ranked,
//! proposed, accepted, and plans sets its provider; redelivered events change nothing; a
//! provider at capacity is excluded until its action finishes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike as _, Utc};
use sea_orm::ConnectionTrait as _;
use tonic::Code;

use tde_matching::MatchingModule;
use tde_plans::PlansModule;
use tde_proto::common::v1::Skill;
use tde_proto::matching::v1 as mpb;
use tde_proto::matching::v1::matching_service_client::MatchingServiceClient;
use tde_proto::matching::v1::proposal_service_client::ProposalServiceClient;
use tde_proto::matching::v1::provider_service_client::ProviderServiceClient;
use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::action_service_client::ActionServiceClient;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_proto::territories::v1 as tpb;
use tde_runtime::auth::{AuthChannel as Channel, Role, TokenSpec};
use tde_runtime::bus::Envelope;
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, Topology, channel, channel_as};

struct App {
    env: TestEnv,
    platform: RunningPlatform,
    channel: Channel,
}

const WAIT: Duration = Duration::from_secs(30);

/// What most proposal tests start from (see `App::scene`).
struct Scene {
    territory: String,
    plan: pb::Plan,
    near: mpb::Provider,
    national: mpb::Provider,
    action: pb::Action,
}

impl App {
    async fn start(topology: Topology) -> Self {
        let env = TestEnv::new(topology, &["plans", "matching"]).await;
        let platform = env
            .start(vec![Arc::new(PlansModule), Arc::new(MatchingModule)])
            .await
            .expect("server starts");
        let channel = channel(platform.local_addr).await;
        Self {
            env,
            platform,
            channel,
        }
    }

    fn ctx(&self, service: &str) -> &tde_runtime::ServiceContext {
        self.platform.service(service).expect("service runs")
    }

    fn providers(&self) -> ProviderServiceClient<Channel> {
        ProviderServiceClient::new(self.channel.clone())
    }

    fn matching(&self) -> MatchingServiceClient<Channel> {
        MatchingServiceClient::new(self.channel.clone())
    }

    fn proposals(&self) -> ProposalServiceClient<Channel> {
        ProposalServiceClient::new(self.channel.clone())
    }

    async fn proposals_as(&self, spec: &TokenSpec) -> ProposalServiceClient<Channel> {
        ProposalServiceClient::new(channel_as(self.platform.local_addr, spec).await)
    }

    fn actions(&self) -> ActionServiceClient<Channel> {
        ActionServiceClient::new(self.channel.clone())
    }

    async fn publish(&self, envelope: Envelope, stream: &str) {
        let ns = &self.ctx("plans").namespace;
        self.env
            .bus
            .ensure_stream(&ns.stream(stream))
            .await
            .expect("stream");
        self.env.bus.publish(&[envelope]).await.expect("published");
    }

    /// A territory of Saint-Étienne (département 42, région 84), known to plans.
    async fn territory(&self) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let ns = &self.ctx("plans").namespace;
        let event = Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            subject: ns.subject("territories", "territory.registered"),
            event_type: "tde.territories.v1.TerritoryRegistered".into(),
            source: "/tde/territories".into(),
            time: Utc::now(),
            aggregate_id: id.clone(),
            payload: prost::Message::encode_to_vec(&tpb::TerritoryRegistered {
                territory: Some(tpb::Territory {
                    id: id.clone(),
                    kind: tpb::AuthorityKind::Commune as i32,
                    official_code: "42218".into(),
                    name: "Saint-Étienne".into(),
                    departement_code: "42".into(),
                    region_code: "84".into(),
                    time_zone: "Europe/Paris".into(),
                    stage: tpb::Stage::Diagnostic as i32,
                    ..Default::default()
                }),
            })
            .into(),
            traceparent: None,
        };
        self.publish(event, "territories").await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while tde_plans::storage::find_territory(&self.ctx("plans").db, &id)
            .await
            .expect("read")
            .is_none()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "territory never reached plans"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        id
    }

    async fn active_plan(&self, territory_id: &str) -> pb::Plan {
        let mut plans = PlanServiceClient::new(self.channel.clone());
        let plan = plans
            .create_plan(pb::CreatePlanRequest {
                territory_id: territory_id.into(),
                title: "Plan d'engagement".into(),
                start_date: format!("{}-01-01", year()),
                request_id: String::new(),
            })
            .await
            .expect("plan created")
            .into_inner()
            .plan
            .expect("plan");
        let plan = plans
            .add_charter_version(pb::AddCharterVersionRequest {
                plan_id: plan.id.clone(),
                etag: plan.etag.clone(),
                document_ref: "ged://chartes/1".into(),
                content_sha256: "ab".repeat(32),
                change_summary: "première version".into(),
                signatories: vec![pb::Signatory {
                    name: "Maire".into(),
                    role: "maire".into(),
                    email: "maire@example.org".into(),
                    signed_on: String::new(),
                }],
            })
            .await
            .expect("charter")
            .into_inner()
            .plan
            .expect("plan");
        plans
            .sign_charter(pb::SignCharterRequest {
                plan_id: plan.id.clone(),
                etag: plan.etag.clone(),
                version_number: 1,
                signatory_index: 0,
                signed_on: Utc::now().date_naive().to_string(),
            })
            .await
            .expect("signed")
            .into_inner()
            .plan
            .expect("plan")
    }

    async fn action(&self, plan: &pb::Plan, title: &str) -> pb::Action {
        self.action_needing(plan, title, pb::Skill::Facilitation)
            .await
    }

    async fn action_needing(&self, plan: &pb::Plan, title: &str, skill: pb::Skill) -> pb::Action {
        let y = year();
        self.actions()
            .create_action(pb::CreateActionRequest {
                action: Some(pb::Action {
                    plan_id: plan.id.clone(),
                    year: 1,
                    kind: pb::ActionKind::ChangeManagement as i32,
                    title: title.into(),
                    audiences: vec![pb::Audience::Agents as i32],
                    skills: vec![skill as i32],
                    planned_start: format!("{y}-03-01"),
                    planned_end: format!("{y}-03-31"),
                    budget_cents: 2_000_000,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("action created")
            .into_inner()
            .action
            .expect("action")
    }

    /// A territory of département 42 with an active plan and one action needing facilitation,
    /// known to matching as a need, and two providers of two places: one of the département
    /// ("Proche") and one working nationally (named `national`).
    async fn scene(&self, national: &str) -> Scene {
        let territory = self.territory().await;
        let plan = self.active_plan(&territory).await;
        let near = self
            .provider(
                "Proche",
                "73282932000074",
                mpb::area::Area::DepartementCode("42".into()),
                2,
            )
            .await;
        let national = self
            .provider(
                national,
                "35600000000048",
                mpb::area::Area::National(true),
                2,
            )
            .await;
        let action = self.action(&plan, "Ateliers").await;
        self.need_until(&action.id, |_| true).await;
        Scene {
            territory,
            plan,
            near,
            national,
            action,
        }
    }

    async fn provider(
        &self,
        name: &str,
        siret: &str,
        area: mpb::area::Area,
        capacity: i32,
    ) -> mpb::Provider {
        self.providers()
            .register_provider(mpb::RegisterProviderRequest {
                provider: Some(mpb::Provider {
                    siret: siret.into(),
                    name: name.into(),
                    naf_code: "70.22Z".into(),
                    skills: vec![Skill::Facilitation as i32, Skill::ChangeManagement as i32],
                    areas: vec![mpb::Area { area: Some(area) }],
                    capacity,
                    day_rate_cents: 60_000,
                    contact: Some(mpb::ProviderContact {
                        name: format!("Contact {name}"),
                        email: format!("contact@{}.example.org", name.to_lowercase()),
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("provider registered")
            .into_inner()
            .provider
            .expect("provider")
    }

    /// Waits until the need of `id` satisfies `ok`.
    async fn need_until(&self, id: &str, ok: impl Fn(&mpb::Need) -> bool) -> mpb::Need {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(r) = self
                .matching()
                .get_need(mpb::GetNeedRequest { id: id.into() })
                .await
                && let Some(n) = r.into_inner().need
                && ok(&n)
            {
                return n;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "need {id} never got there"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn rank(&self, need_id: &str) -> mpb::RankProvidersResponse {
        self.matching()
            .rank_providers(mpb::RankProvidersRequest {
                need_id: need_id.into(),
                max_candidates: 0,
                all_exclusions: true,
            })
            .await
            .expect("ranked")
            .into_inner()
    }

    /// Waits until a consumer of `service` processed event `event_id` (see
    /// `tde_runtime::testing::wait_until_processed`).
    async fn processed(&self, service: &str, event_id: &str) {
        tde_runtime::testing::wait_until_processed(&self.ctx(service).db, event_id).await;
    }

    async fn proposal(&self, id: &str) -> mpb::Proposal {
        self.proposals()
            .get_proposal(mpb::GetProposalRequest { id: id.into() })
            .await
            .expect("proposal")
            .into_inner()
            .proposal
            .expect("proposal")
    }

    async fn get_action(&self, id: &str) -> pb::Action {
        self.actions()
            .get_action(pb::GetActionRequest { id: id.into() })
            .await
            .expect("action")
            .into_inner()
            .action
            .expect("action")
    }
}

fn year() -> i32 {
    Utc::now().year() + 1
}

fn provider_token(id: &str) -> TokenSpec {
    TokenSpec::new(Role::Provider, format!("provider-{id}")).provider(id)
}

tde_runtime::on_both_topologies!(from_action_to_provider_and_capacity);

async fn from_action_to_provider_and_capacity(topology: Topology) {
    let app = App::start(topology).await;
    let territory = app.territory().await;
    let plan = app.active_plan(&territory).await;
    let near = app
        .provider(
            "Proche",
            "73282932000074",
            mpb::area::Area::DepartementCode("42".into()),
            1,
        )
        .await;
    let national = app
        .provider(
            "National",
            "35600000000048",
            mpb::area::Area::National(true),
            5,
        )
        .await;
    let elsewhere = app
        .provider(
            "Ailleurs",
            "35600000000051",
            mpb::area::Area::DepartementCode("69".into()),
            5,
        )
        .await;

    // The action created in plans becomes a need of matching, with its département.
    let action = app.action(&plan, "Ateliers de concertation").await;
    let need = app.need_until(&action.id, |_| true).await;
    assert_eq!(need.departement_code, "42");
    assert_eq!(need.region_code, "84");
    assert_eq!(need.skills, vec![Skill::Facilitation as i32]);

    // Ranked: the provider of the département first, then the national one; the other
    // département's is excluded, the rule named. Each explanation sums to its score.
    let ranking = app.rank(&need.id).await;
    let order: Vec<&str> = ranking
        .candidates
        .iter()
        .map(|c| c.provider_id.as_str())
        .collect();
    assert_eq!(order, [near.id.as_str(), national.id.as_str()]);
    for c in &ranking.candidates {
        let sum: f64 = c.factors.iter().map(|f| f.contribution).sum();
        assert!((sum - c.score).abs() < 1e-9, "{c:?}");
    }
    assert_eq!(ranking.exclusions.len(), 1);
    assert_eq!(ranking.exclusions[0].provider_id, elsewhere.id);
    assert_eq!(ranking.exclusions[0].rule, "outside_area");
    assert_eq!(ranking.weights.len(), 6);
    // By default, providers outside the need's area are counted rather than listed.
    let short = app
        .matching()
        .rank_providers(mpb::RankProvidersRequest {
            need_id: need.id.clone(),
            max_candidates: 0,
            all_exclusions: false,
        })
        .await
        .expect("ranked")
        .into_inner();
    assert_eq!(short.candidates, ranking.candidates);
    assert!(short.exclusions.is_empty());
    assert_eq!(short.outside_area_count, 1);

    // Someone else than the best ranked needs a written justification.
    let override_refused = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: need.id.clone(),
            provider_id: national.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        override_refused.code(),
        Code::InvalidArgument,
        "{override_refused:?}"
    );
    let excluded = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: need.id.clone(),
            provider_id: elsewhere.id.clone(),
            justification: "Ils connaissent très bien le territoire stéphanois.".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(excluded.code(), Code::FailedPrecondition, "{excluded:?}");
    assert!(
        excluded.message().contains("outside_area"),
        "{}",
        excluded.message()
    );

    let proposal = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: need.id.clone(),
            provider_id: near.id.clone(),
            justification: String::new(),
            request_id: "first-proposal".into(),
        })
        .await
        .expect("proposed")
        .into_inner()
        .proposal
        .expect("proposal");
    assert_eq!(proposal.rank, 1);

    // A provider's token sees its own proposals only: another provider's is NOT_FOUND.
    let mut as_near = app.proposals_as(&provider_token(&near.id)).await;
    let mut as_national = app.proposals_as(&provider_token(&national.id)).await;
    let mine = as_near
        .list_proposals(mpb::ListProposalsRequest::default())
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(mine.proposals.len(), 1);
    assert_eq!(mine.proposals[0].title, "Ateliers de concertation");
    let theirs = as_national
        .list_proposals(mpb::ListProposalsRequest::default())
        .await
        .expect("listed")
        .into_inner();
    assert!(theirs.proposals.is_empty());
    let hidden = as_national
        .get_proposal(mpb::GetProposalRequest {
            id: proposal.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let not_theirs = as_national
        .accept_proposal(mpb::AcceptProposalRequest {
            id: proposal.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_theirs.code(), Code::NotFound);

    // Accepted: plans sets the action's provider.
    let mut events = tde_runtime::testing::subscribe_to(
        app.env.bus.as_ref(),
        &app.ctx("matching").namespace,
        "matching",
    )
    .await;
    let accepted = as_near
        .accept_proposal(mpb::AcceptProposalRequest {
            id: proposal.id.clone(),
            etag: proposal.etag.clone(),
        })
        .await
        .expect("accepted")
        .into_inner()
        .proposal
        .expect("proposal");
    assert_eq!(accepted.status, mpb::ProposalStatus::Accepted as i32);
    let deadline = tokio::time::Instant::now() + WAIT;
    let assigned = loop {
        let a = app.get_action(&action.id).await;
        if a.provider_id == near.id {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "plans never set the provider"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let need = app
        .need_until(&action.id, |n| n.provider_id == near.id)
        .await;
    assert!(need.pending_proposal_id.is_empty());

    // Its history: the provider sees its own assignment, another provider nothing of it.
    let history = |spec: TokenSpec, provider_id: String| {
        let addr = app.platform.local_addr;
        async move {
            ProviderServiceClient::new(channel_as(addr, &spec).await)
                .list_assignments(mpb::ListAssignmentsRequest {
                    provider_id,
                    ..Default::default()
                })
                .await
                .expect("listed")
                .into_inner()
                .assignments
        }
    };
    let own = history(provider_token(&near.id), String::new()).await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].action_id, action.id);
    assert!(!own[0].finished);
    assert!(
        history(provider_token(&national.id), near.id.clone())
            .await
            .is_empty()
    );

    // The same acceptance delivered again (as a new message: the bus would drop the same
    // id) changes nothing in plans.
    let mut acceptance = None;
    while let Some(d) = tde_runtime::testing::next_event(&mut events, Duration::from_secs(5)).await
    {
        let found = d.envelope.event_type == "tde.matching.v1.AssignmentAccepted";
        if found {
            acceptance = Some(d.envelope.clone());
        }
        d.ack().await.expect("ack");
        if found {
            break;
        }
    }
    let mut again = acceptance.expect("assignment.accepted published");
    again.id = uuid::Uuid::now_v7().to_string();
    let again_id = again.id.clone();
    app.publish(again, "matching").await;
    app.processed("plans", &again_id).await;
    assert_eq!(
        app.get_action(&action.id).await.etag,
        assigned.etag,
        "redelivery changed the action"
    );

    // An old action event delivered again (its "created" facts, without a provider) does
    // not reopen the need.
    let ns = &app.ctx("plans").namespace;
    let stale = Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        subject: ns.subject("plans", "action.created"),
        event_type: "tde.plans.v1.ActionCreated".into(),
        source: "/tde/plans".into(),
        time: Utc::now() - chrono::Duration::hours(1),
        aggregate_id: action.id.clone(),
        payload: prost::Message::encode_to_vec(&pb::ActionCreated {
            action: Some(pb::ActionFacts {
                action_id: action.id.clone(),
                plan_id: plan.id.clone(),
                territory_id: territory.clone(),
                departement_code: "42".into(),
                region_code: "84".into(),
                year: 1,
                kind: pb::ActionKind::ChangeManagement as i32,
                title: action.title.clone(),
                skills: vec![Skill::Facilitation as i32],
                planned_start: action.planned_start.clone(),
                planned_end: action.planned_end.clone(),
                budget_cents: action.budget_cents,
                status: pb::ActionStatus::Planned as i32,
                version: 1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .into(),
        traceparent: None,
    };
    let stale_id = stale.id.clone();
    app.publish(stale, "plans").await;
    app.processed("matching", &stale_id).await;
    let need = app.need_until(&action.id, |_| true).await;
    assert_eq!(need.provider_id, near.id, "an old event reopened the need");

    // The near provider (capacity 1) is now busy over March: excluded from a second action
    // of the same period, until the first one is done.
    let second = app.action(&plan, "Formation à l'animation").await;
    app.need_until(&second.id, |_| true).await;
    let ranking = app.rank(&second.id).await;
    let busy = ranking
        .exclusions
        .iter()
        .find(|e| e.provider_id == near.id)
        .expect("near excluded");
    assert_eq!(busy.rule, "no_capacity");
    let mut current = assigned;
    for status in [pb::ActionStatus::InProgress, pb::ActionStatus::Done] {
        current = app
            .actions()
            .change_action_status(pb::ChangeActionStatusRequest {
                id: current.id.clone(),
                etag: current.etag.clone(),
                status: status as i32,
            })
            .await
            .expect("status changed")
            .into_inner()
            .action
            .expect("action");
    }
    app.need_until(&action.id, |n| n.status == "done").await;
    let ranking = app.rank(&second.id).await;
    assert_eq!(ranking.candidates[0].provider_id, near.id, "{ranking:?}");

    // The finished action can be rated by the programme.
    let rated = app
        .providers()
        .rate_assignment(mpb::RateAssignmentRequest {
            action_id: action.id.clone(),
            rating: 5,
            comment: "Très bon travail.".into(),
        })
        .await
        .expect("rated")
        .into_inner()
        .assignment
        .expect("assignment");
    assert_eq!(rated.rating, 5);
    let provider = app
        .providers()
        .get_provider(mpb::GetProviderRequest {
            id: near.id.clone(),
        })
        .await
        .expect("provider")
        .into_inner()
        .provider
        .expect("provider");
    assert_eq!(provider.mean_rating, 5.0);
    assert_eq!(provider.current_load, 0);
}

tde_runtime::on_both_topologies!(a_declined_proposal_lets_the_next_candidate_be_proposed);

async fn a_declined_proposal_lets_the_next_candidate_be_proposed(topology: Topology) {
    let app = App::start(topology).await;
    let Scene {
        plan,
        near,
        national,
        action,
        ..
    } = app.scene("National").await;
    // No provider offers youth engagement: unserved, and so in the replay too.
    let orphan = app
        .action_needing(&plan, "Conseil de jeunes", pb::Skill::YouthEngagement)
        .await;
    app.need_until(&orphan.id, |_| true).await;
    let request = mpb::PlanAssignmentsRequest {
        region_code: "84".into(),
        year: 1,
        send: true,
        request_id: "plan-84-year-1".into(),
    };
    let planned = app
        .matching()
        .plan_assignments(request.clone())
        .await
        .expect("planned")
        .into_inner();
    // The same call again sends nothing more and answers exactly what the first one did:
    // its proposals, totals and unserved needs.
    let replayed = app
        .matching()
        .plan_assignments(request)
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(replayed, planned);
    assert_eq!(planned.unserved.len(), 1, "{planned:?}");
    assert_eq!(planned.unserved[0].need_id, orphan.id);
    assert_eq!(planned.unserved[0].reason, "no_candidate");
    assert!(planned.greedy_total_score > 0.0);
    assert_eq!(planned.assignments.len(), 1);
    assert_eq!(planned.assignments[0].provider_id, near.id);
    assert!(planned.total_score >= planned.greedy_total_score);
    let proposal_id = planned.assignments[0].proposal_id.clone();
    assert!(!proposal_id.is_empty());

    let mut as_near = app.proposals_as(&provider_token(&near.id)).await;
    let no_reason = as_near
        .decline_proposal(mpb::DeclineProposalRequest {
            id: proposal_id.clone(),
            reason: String::new(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    as_near
        .decline_proposal(mpb::DeclineProposalRequest {
            id: proposal_id.clone(),
            reason: "Équipe indisponible en mars.".into(),
            etag: String::new(),
        })
        .await
        .expect("declined");
    // The national provider is now the best one still available: no justification needed.
    let next = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: national.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .expect("next candidate proposed")
        .into_inner()
        .proposal
        .expect("proposal");
    assert_eq!(next.rank, 2);
    // Asking the one that declined again is refused.
    let again = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: near.id.clone(),
            justification: "Ils ont déclaré s'être libérés finalement pour mars.".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    // No answer before the deadline: the expiry task expires it, with its event.
    let ctx = app.ctx("matching");
    let past = Utc::now() - chrono::Duration::hours(1);
    let backend = ctx.db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE proposals SET deadline = $1 WHERE id = $2",
        _ => "UPDATE proposals SET deadline = ? WHERE id = ?",
    };
    ctx.db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [past.into(), next.id.clone().into()],
        ))
        .await
        .expect("deadline moved");
    let expired = tde_matching::api::proposals::expire_due(ctx)
        .await
        .expect("expired");
    assert_eq!(expired, 1);
    let after = app.proposal(&next.id).await;
    assert_eq!(after.status, mpb::ProposalStatus::Expired as i32);
    assert_eq!(
        tde_matching::api::proposals::expire_due(ctx)
            .await
            .expect("nothing more"),
        0
    );

    // The plan stopped, its actions need nobody: the need closes.
    PlanServiceClient::new(app.channel.clone())
        .stop_plan(pb::StopPlanRequest {
            id: plan.id.clone(),
            reason: "Le territoire se retire du programme.".into(),
            ..Default::default()
        })
        .await
        .expect("plan stopped");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = app
            .matching()
            .list_needs(mpb::ListNeedsRequest::default())
            .await
            .expect("listed")
            .into_inner()
            .needs;
        if open.iter().all(|n| n.id != action.id) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the need stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: national.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition, "{closed:?}");
}

tde_runtime::on_both_topologies!(an_override_is_justified_kept_and_audited);

/// Someone else than the best ranked: refused without a written justification, then kept
/// with the proposal and named as an override in the audit trail.
async fn an_override_is_justified_kept_and_audited(topology: Topology) {
    use tde_proto::audit::v1 as audit;
    use tde_proto::audit::v1::audit_service_client::AuditServiceClient;
    let app = App::start(topology).await;
    let territory = app.territory().await;
    let plan = app.active_plan(&territory).await;
    app.provider(
        "Proche",
        "73282932000074",
        mpb::area::Area::DepartementCode("42".into()),
        2,
    )
    .await;
    let national = app
        .provider(
            "National",
            "35600000000048",
            mpb::area::Area::National(true),
            2,
        )
        .await;
    let action = app.action(&plan, "Ateliers").await;
    app.need_until(&action.id, |_| true).await;
    let propose = |justification: &str| mpb::ProposeProviderRequest {
        need_id: action.id.clone(),
        provider_id: national.id.clone(),
        justification: justification.into(),
        request_id: String::new(),
    };
    let short = app
        .proposals()
        .propose_provider(propose("Parce que."))
        .await
        .unwrap_err();
    assert_eq!(short.code(), Code::InvalidArgument, "{short:?}");
    let why = "Le prestataire local a déjà animé un atelier contesté dans cette commune.";
    let proposal = app
        .proposals()
        .propose_provider(propose(why))
        .await
        .expect("override proposed")
        .into_inner()
        .proposal
        .expect("proposal");
    assert_eq!(proposal.rank, 2);
    assert_eq!(proposal.override_justification, why);
    let events = AuditServiceClient::new(app.channel.clone())
        .list_audit_events(audit::ListAuditEventsRequest {
            service: "matching".into(),
            resource: format!("proposals/{}:override", proposal.id),
            ..Default::default()
        })
        .await
        .expect("audit trail")
        .into_inner()
        .audit_events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].method.ends_with("/ProposeProvider"));
}

tde_runtime::on_both_topologies!(
    a_provider_asked_once_is_never_asked_again_however_long_the_history
);

/// However many proposals a need had, a provider that declined is not asked again (the
/// list of providers asked is read for the need, not capped).
async fn a_provider_asked_once_is_never_asked_again_however_long_the_history(topology: Topology) {
    use tde_matching::domain::proposal::{Proposal, ProposalStatus};
    let app = App::start(topology).await;
    let territory = app.territory().await;
    let plan = app.active_plan(&territory).await;
    let near = app
        .provider(
            "Proche",
            "73282932000074",
            mpb::area::Area::DepartementCode("42".into()),
            2,
        )
        .await;
    let action = app.action(&plan, "Ateliers").await;
    app.need_until(&action.id, |_| true).await;
    // A long history: 1,000 proposals of the need to others, all declined, older than any
    // proposal to come.
    let db = &app.ctx("matching").db;
    let now = Utc::now();
    for i in 0..1_000 {
        tde_matching::storage::insert_proposal(
            db,
            &Proposal {
                id: uuid::Uuid::now_v7().to_string(),
                need_id: action.id.clone(),
                provider_id: format!("ancien-{i}"),
                territory_id: territory.clone(),
                region_code: "84".into(),
                status: ProposalStatus::Declined,
                score: 0.1,
                rank: 1,
                override_justification: String::new(),
                decline_reason: "Indisponible.".into(),
                deadline: now,
                created_by: "test".into(),
                created_at: now,
                answered_at: Some(now),
                version: 2,
                batch_id: None,
            },
        )
        .await
        .expect("old proposal");
    }
    let proposal = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: near.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .expect("proposed")
        .into_inner()
        .proposal
        .expect("proposal");
    app.proposals_as(&provider_token(&near.id))
        .await
        .decline_proposal(mpb::DeclineProposalRequest {
            id: proposal.id.clone(),
            reason: "Équipe indisponible en mars.".into(),
            etag: String::new(),
        })
        .await
        .expect("declined");
    // The 1,001st proposal of the need: its provider is still known as asked.
    let again = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: near.id.clone(),
            justification: "Ils ont déclaré s'être libérés finalement pour mars.".into(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert!(again.message().contains("already answered"), "{again:?}");
}

/// The audit records of acceptances plans refused to apply to `action_id`.
async fn refused_acceptances(app: &App, action_id: &str) -> Vec<tde_proto::audit::v1::AuditEvent> {
    use tde_proto::audit::v1 as audit;
    use tde_proto::audit::v1::audit_service_client::AuditServiceClient;
    AuditServiceClient::new(app.channel.clone())
        .list_audit_events(audit::ListAuditEventsRequest {
            service: "plans".into(),
            resource: format!(
                "actions/{action_id}:{}",
                tde_plans::assignments::ACCEPTANCE_REFUSED
            ),
            ..Default::default()
        })
        .await
        .expect("audit trail")
        .into_inner()
        .audit_events
}

tde_runtime::on_both_topologies!(a_provider_set_by_hand_is_kept_over_a_later_acceptance);

/// The project lead set the provider by hand after the proposal went out, and the
/// acceptance reaches plans afterwards (matching accepted before it heard of the hand-set
/// provider): plans keeps the lead's provider, says so in the audit trail, once, whatever
/// the redeliveries; matching closes the need with the lead's provider.
async fn a_provider_set_by_hand_is_kept_over_a_later_acceptance(topology: Topology) {
    let app = App::start(topology).await;
    let Scene {
        territory,
        near,
        national: chosen,
        action,
        ..
    } = app.scene("Choisi").await;
    let proposal = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: near.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .expect("proposed")
        .into_inner()
        .proposal
        .expect("proposal");
    let current = app.get_action(&action.id).await;
    let by_hand = app
        .actions()
        .assign_provider(pb::AssignProviderRequest {
            id: action.id.clone(),
            etag: current.etag.clone(),
            provider_id: chosen.id.clone(),
        })
        .await
        .expect("assigned by hand")
        .into_inner()
        .action
        .expect("action");

    // The acceptance matching would have published had the provider answered first.
    let ns = &app.ctx("matching").namespace;
    let acceptance = || Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        subject: ns.subject("matching", "assignment.accepted"),
        event_type: "tde.matching.v1.AssignmentAccepted".into(),
        source: "/tde/matching".into(),
        time: Utc::now(),
        aggregate_id: action.id.clone(),
        payload: prost::Message::encode_to_vec(&mpb::AssignmentAccepted {
            proposal_id: proposal.id.clone(),
            need_id: action.id.clone(),
            provider_id: near.id.clone(),
            territory_id: territory.clone(),
            accept_time: None,
        })
        .into(),
        traceparent: None,
    };
    for _ in 0..2 {
        // Delivered, then delivered again as a new message.
        let event = acceptance();
        let id = event.id.clone();
        app.publish(event, "matching").await;
        app.processed("plans", &id).await;
        let kept = app.get_action(&action.id).await;
        assert_eq!(
            kept.provider_id, chosen.id,
            "the hand-set provider was replaced"
        );
        assert_eq!(kept.etag, by_hand.etag, "the acceptance changed the action");
        let refused = refused_acceptances(&app, &action.id).await;
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].request_id, proposal.id);
        assert_eq!(refused[0].outcome, "FAILED_PRECONDITION");
    }

    // Matching closes the need with the lead's provider, and its proposal waits no more.
    let need = app
        .need_until(&action.id, |n| n.provider_id == chosen.id)
        .await;
    assert!(need.pending_proposal_id.is_empty());
    let withdrawn = app.proposal(&proposal.id).await;
    assert_eq!(withdrawn.status, mpb::ProposalStatus::Withdrawn as i32);
    let late = app
        .proposals_as(&provider_token(&near.id))
        .await
        .accept_proposal(mpb::AcceptProposalRequest {
            id: proposal.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
}

tde_runtime::on_both_topologies!(an_acceptance_overtaken_by_a_hand_set_provider_is_superseded);

/// The provider accepted and matching recorded it, then the project lead set another
/// provider by hand: plans keeps the lead's provider; matching marks the acceptance
/// superseded (with its event), frees the provider's capacity and counts the action to the
/// lead's provider. Redelivering the plans event changes nothing more.
async fn an_acceptance_overtaken_by_a_hand_set_provider_is_superseded(topology: Topology) {
    let app = App::start(topology).await;
    let Scene {
        near,
        national: chosen,
        action,
        ..
    } = app.scene("Choisi").await;
    let proposal = app
        .proposals()
        .propose_provider(mpb::ProposeProviderRequest {
            need_id: action.id.clone(),
            provider_id: near.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .expect("proposed")
        .into_inner()
        .proposal
        .expect("proposal");
    let mut events = tde_runtime::testing::subscribe_to(
        app.env.bus.as_ref(),
        &app.ctx("matching").namespace,
        "matching",
    )
    .await;
    app.proposals_as(&provider_token(&near.id))
        .await
        .accept_proposal(mpb::AcceptProposalRequest {
            id: proposal.id.clone(),
            etag: String::new(),
        })
        .await
        .expect("accepted");

    // The accepted provider's figures, one provider's query against everyone's.
    let db = &app.ctx("matching").db;
    let period = Some((
        chrono::NaiveDate::from_ymd_opt(year(), 3, 1).expect("date"),
        chrono::NaiveDate::from_ymd_opt(year(), 3, 31).expect("date"),
    ));
    let one = tde_matching::storage::provider_stats_of(db, &near.id, period, Utc::now())
        .await
        .expect("stats");
    let all = tde_matching::storage::provider_stats(db, period, Utc::now())
        .await
        .expect("stats");
    assert_eq!(one.load_over_period, 1);
    assert_eq!(Some(&one), all.get(&near.id));

    let deadline = tokio::time::Instant::now() + WAIT;
    let assigned = loop {
        let a = app.get_action(&action.id).await;
        if a.provider_id == near.id {
            break a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "plans never set the provider"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_hand = app
        .actions()
        .assign_provider(pb::AssignProviderRequest {
            id: action.id.clone(),
            etag: assigned.etag.clone(),
            provider_id: chosen.id.clone(),
        })
        .await
        .expect("assigned by hand")
        .into_inner()
        .action
        .expect("action");
    assert_eq!(by_hand.provider_id, chosen.id);

    app.need_until(&action.id, |n| n.provider_id == chosen.id)
        .await;
    let superseded = app.proposal(&proposal.id).await;
    assert_eq!(
        superseded.status,
        mpb::ProposalStatus::Superseded as i32,
        "{superseded:?}"
    );
    assert_eq!(
        tde_matching::storage::provider_stats_of(db, &near.id, period, Utc::now())
            .await
            .expect("stats")
            .current_load,
        0,
        "the superseded provider's capacity is free again"
    );
    assert_eq!(
        tde_matching::storage::provider_stats_of(db, &chosen.id, period, Utc::now())
            .await
            .expect("stats")
            .load_over_period,
        1
    );
    let mut published = None;
    let mut hand_assigned = None;
    while let Some(d) = tde_runtime::testing::next_event(&mut events, Duration::from_secs(10)).await
    {
        if d.envelope.event_type == "tde.matching.v1.ProposalSuperseded" {
            published = Some(
                <mpb::ProposalSuperseded as prost::Message>::decode(d.envelope.payload.clone())
                    .expect("decoded"),
            );
        }
        d.ack().await.expect("ack");
        if published.is_some() {
            break;
        }
    }
    let published = published.expect("proposal.superseded published");
    assert_eq!(published.proposal_id, proposal.id);
    assert_eq!(published.provider_id, near.id);
    assert_eq!(published.action_provider_id, chosen.id);

    // The plans event that set the lead's provider, delivered again: nothing changes.
    let mut plans_events = tde_runtime::testing::subscribe_to(
        app.env.bus.as_ref(),
        &app.ctx("plans").namespace,
        "plans",
    )
    .await;
    while let Some(d) =
        tde_runtime::testing::next_event(&mut plans_events, Duration::from_secs(5)).await
    {
        let found = d.envelope.event_type == "tde.plans.v1.ProviderAssigned"
            && prost::Message::decode(d.envelope.payload.clone())
                .ok()
                .and_then(|e: pb::ProviderAssigned| e.action)
                .is_some_and(|a| a.provider_id == chosen.id);
        if found {
            hand_assigned = Some(d.envelope.clone());
        }
        d.ack().await.expect("ack");
        if found {
            break;
        }
    }
    let mut again = hand_assigned.expect("provider_assigned published");
    again.id = uuid::Uuid::now_v7().to_string();
    let again_id = again.id.clone();
    app.publish(again, "plans").await;
    app.processed("matching", &again_id).await;
    assert_eq!(app.proposal(&proposal.id).await.etag, superseded.etag);
}
