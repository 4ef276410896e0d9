//! `tde provider …` and `tde match …`: the matching service from the command line.

use clap::{Subcommand, ValueEnum};
use tde_proto::common::v1::Skill;
use tde_proto::matching::v1 as pb;
use tde_proto::matching::v1::matching_service_client::MatchingServiceClient;
use tde_proto::matching::v1::proposal_service_client::ProposalServiceClient;
use tde_proto::matching::v1::provider_service_client::ProviderServiceClient;

use super::{Target, status};
use crate::output::{Format, table, to_json};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProviderStatusArg {
    Active,
    Suspended,
    Deactivated,
}

impl From<ProviderStatusArg> for pb::ProviderStatus {
    fn from(s: ProviderStatusArg) -> Self {
        match s {
            ProviderStatusArg::Active => Self::Active,
            ProviderStatusArg::Suspended => Self::Suspended,
            ProviderStatusArg::Deactivated => Self::Deactivated,
        }
    }
}

/// A skill by its name in the list, e.g. `facilitation`, `elected_officials_training`.
fn skill(name: &str) -> anyhow::Result<i32> {
    Skill::from_str_name(&format!("SKILL_{}", name.trim().to_ascii_uppercase()))
        .filter(|s| *s != Skill::Unspecified)
        .map(|s| s as i32)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown skill {name:?}; one of: facilitation, participatory_democracy, change_management, elected_officials_training, agents_training, volunteering, youth_engagement, digital_participation, public_communication, policy_evaluation, project_management, ecological_transition, social_cohesion, service_design"
            )
        })
}

fn skill_name(raw: i32) -> String {
    Skill::try_from(raw)
        .map(|s| s.as_str_name().trim_start_matches("SKILL_").to_lowercase())
        .unwrap_or_default()
}

fn cents(euros: f64) -> anyhow::Result<i64> {
    anyhow::ensure!(
        euros.is_finite() && euros >= 0.0,
        "an amount in euros, e.g. 650.00"
    );
    Ok((euros * 100.0).round() as i64)
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Registers a trusted provider (SIRET checked).
    Register {
        #[arg(long)]
        siret: String,
        #[arg(long)]
        name: String,
        /// Code NAF, e.g. 70.22Z.
        #[arg(long)]
        naf: String,
        /// A skill (repeatable), e.g. facilitation.
        #[arg(long = "skill", required = true)]
        skills: Vec<String>,
        /// A département where it works (repeatable), e.g. 42.
        #[arg(long = "departement")]
        departements: Vec<String>,
        /// A région where it works (repeatable), e.g. 84.
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Works anywhere in France.
        #[arg(long)]
        national: bool,
        /// Actions it can run at the same time.
        #[arg(long, default_value_t = 3)]
        capacity: i32,
        /// Day rate in euros, excluding tax.
        #[arg(long)]
        day_rate: f64,
        /// Qualiopi certification valid until (YYYY-MM-DD): required for training actions.
        #[arg(long, default_value = "")]
        qualiopi_until: String,
        /// Who receives proposals.
        #[arg(long)]
        contact_name: String,
        #[arg(long)]
        contact_email: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    Get {
        id: String,
    },
    List {
        #[arg(long, value_enum)]
        status: Option<ProviderStatusArg>,
        #[arg(long)]
        skill: Option<String>,
        #[arg(long, default_value = "")]
        departement: String,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Suspends, deactivates or reactivates a provider.
    Status {
        id: String,
        #[arg(long, value_enum)]
        status: ProviderStatusArg,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// A provider's history: the actions it accepted and their ratings (a provider's token:
    /// its own).
    Assignments {
        #[arg(long, default_value = "")]
        provider: String,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Rates the provider's work on a finished action (1 to 5).
    Rate {
        #[arg(long)]
        action: String,
        #[arg(long)]
        rating: i32,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MatchCommand {
    /// Open needs: actions needing skills without a provider.
    Needs {
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value_t = 0)]
        year: i32,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Every provider for a need: scored with the explanation, or excluded by a named rule.
    Rank {
        need: String,
        #[arg(long, default_value_t = 10)]
        candidates: i32,
        /// List the providers outside the need's area one by one too.
        #[arg(long)]
        all: bool,
    },
    /// The optimal assignment of the open needs of a région and/or plan year.
    Plan {
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value_t = 0)]
        year: i32,
        /// Send the proposals.
        #[arg(long)]
        send: bool,
    },
    /// Proposes a provider for a need (another than the best ranked needs a justification).
    Propose {
        #[arg(long)]
        need: String,
        #[arg(long)]
        provider: String,
        #[arg(long, default_value = "")]
        justification: String,
    },
    /// Proposals (a provider's token: its own).
    Proposals {
        #[arg(long, default_value = "")]
        need: String,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Accepts a proposal (a provider's token).
    Accept { id: String },
    /// Declines a proposal, with a reason (a provider's token).
    Decline {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

fn print_providers(providers: &[pb::Provider], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        for p in providers {
            println!("{}", to_json(p, "tde.matching.v1.Provider")?);
        }
        return Ok(());
    }
    let area = |a: &pb::Area| match &a.area {
        Some(pb::area::Area::DepartementCode(d)) => format!("dép. {d}"),
        Some(pb::area::Area::RegionCode(r)) => format!("rég. {r}"),
        Some(pb::area::Area::National(_)) => "national".into(),
        None => String::new(),
    };
    println!(
        "{}",
        table(
            &[
                "id", "siret", "name", "status", "skills", "areas", "load", "day rate", "rating"
            ],
            providers
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        p.siret.clone(),
                        p.name.clone(),
                        pb::ProviderStatus::try_from(p.status)
                            .map(|s| {
                                s.as_str_name()
                                    .trim_start_matches("PROVIDER_STATUS_")
                                    .to_lowercase()
                            })
                            .unwrap_or_default(),
                        p.skills
                            .iter()
                            .map(|s| skill_name(*s))
                            .collect::<Vec<_>>()
                            .join(", "),
                        p.areas.iter().map(area).collect::<Vec<_>>().join(", "),
                        format!("{}/{}", p.current_load, p.capacity),
                        tde_runtime::format::euros(p.day_rate_cents),
                        if p.rating_count == 0 {
                            String::new()
                        } else {
                            format!("{:.1} ({})", p.mean_rating, p.rating_count)
                        },
                    ]
                })
                .collect(),
        )
    );
    Ok(())
}

fn print_proposals(proposals: &[pb::Proposal], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        for p in proposals {
            println!("{}", to_json(p, "tde.matching.v1.Proposal")?);
        }
        return Ok(());
    }
    println!(
        "{}",
        table(
            &[
                "id", "need", "provider", "action", "period", "status", "rank", "deadline"
            ],
            proposals
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        p.need_id.clone(),
                        p.provider_id.clone(),
                        format!("{} ({})", p.title, p.territory_name),
                        format!("{} → {}", p.planned_start, p.planned_end),
                        pb::ProposalStatus::try_from(p.status)
                            .map(|s| {
                                s.as_str_name()
                                    .trim_start_matches("PROPOSAL_STATUS_")
                                    .to_lowercase()
                            })
                            .unwrap_or_default(),
                        p.rank.to_string(),
                        p.deadline
                            .as_ref()
                            .and_then(tde_runtime::api::from_timestamp)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default(),
                    ]
                })
                .collect(),
        )
    );
    Ok(())
}

pub async fn provider(
    target: &Target,
    format: Format,
    command: ProviderCommand,
) -> anyhow::Result<()> {
    let mut client = ProviderServiceClient::new(target.channel().await?);
    let provider = match command {
        ProviderCommand::Register {
            siret,
            name,
            naf,
            skills,
            departements,
            regions,
            national,
            capacity,
            day_rate,
            qualiopi_until,
            contact_name,
            contact_email,
            request_id,
        } => {
            let mut areas: Vec<pb::Area> = departements
                .into_iter()
                .map(|d| pb::Area {
                    area: Some(pb::area::Area::DepartementCode(d)),
                })
                .chain(regions.into_iter().map(|r| pb::Area {
                    area: Some(pb::area::Area::RegionCode(r)),
                }))
                .collect();
            if national {
                areas.push(pb::Area {
                    area: Some(pb::area::Area::National(true)),
                });
            }
            client
                .register_provider(pb::RegisterProviderRequest {
                    provider: Some(pb::Provider {
                        siret,
                        name,
                        naf_code: naf,
                        qualiopi_expiry_date: qualiopi_until,
                        skills: skills
                            .iter()
                            .map(|s| skill(s))
                            .collect::<anyhow::Result<_>>()?,
                        areas,
                        capacity,
                        day_rate_cents: cents(day_rate)?,
                        contact: Some(pb::ProviderContact {
                            name: contact_name,
                            email: contact_email,
                        }),
                        ..Default::default()
                    }),
                    request_id,
                })
                .await
                .map_err(status)?
                .into_inner()
                .provider
        }
        ProviderCommand::Get { id } => {
            client
                .get_provider(pb::GetProviderRequest { id })
                .await
                .map_err(status)?
                .into_inner()
                .provider
        }
        ProviderCommand::List {
            status: s,
            skill: sk,
            departement,
            limit,
        } => {
            let reply = client
                .list_providers(pb::ListProvidersRequest {
                    status: s.map_or(0, |s| pb::ProviderStatus::from(s) as i32),
                    skill: sk.as_deref().map(skill).transpose()?.unwrap_or(0),
                    departement_code: departement,
                    page_size: limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner();
            return print_providers(&reply.providers, format);
        }
        ProviderCommand::Status {
            id,
            status: s,
            reason,
        } => {
            client
                .change_provider_status(pb::ChangeProviderStatusRequest {
                    id,
                    status: pb::ProviderStatus::from(s) as i32,
                    reason,
                    etag: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .provider
        }
        ProviderCommand::Assignments { provider, limit } => {
            let reply = client
                .list_assignments(pb::ListAssignmentsRequest {
                    provider_id: provider,
                    page_size: limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if format == Format::Json {
                for a in &reply.assignments {
                    println!("{}", to_json(a, "tde.matching.v1.Assignment")?);
                }
                return Ok(());
            }
            println!(
                "{}",
                table(
                    &[
                        "action",
                        "provider",
                        "territory",
                        "finished",
                        "rating",
                        "comment"
                    ],
                    reply
                        .assignments
                        .iter()
                        .map(|a| {
                            vec![
                                a.action_id.clone(),
                                a.provider_id.clone(),
                                a.territory_id.clone(),
                                if a.finished { "yes" } else { "" }.into(),
                                if a.rating > 0 {
                                    format!("{}/5", a.rating)
                                } else {
                                    String::new()
                                },
                                a.rating_comment.clone(),
                            ]
                        })
                        .collect(),
                )
            );
            return Ok(());
        }
        ProviderCommand::Rate {
            action,
            rating,
            comment,
        } => {
            let a = client
                .rate_assignment(pb::RateAssignmentRequest {
                    action_id: action,
                    rating,
                    comment,
                })
                .await
                .map_err(status)?
                .into_inner()
                .assignment
                .unwrap_or_default();
            if format == Format::Json {
                println!("{}", to_json(&a, "tde.matching.v1.Assignment")?);
            } else {
                println!(
                    "action {} by {}: rated {}/5",
                    a.action_id, a.provider_id, a.rating
                );
            }
            return Ok(());
        }
    };
    print_providers(&provider.into_iter().collect::<Vec<_>>(), format)
}

pub async fn matching(
    target: &Target,
    format: Format,
    command: MatchCommand,
) -> anyhow::Result<()> {
    let channel = target.channel().await?;
    let mut needs = MatchingServiceClient::new(channel.clone());
    let mut proposals = ProposalServiceClient::new(channel);
    let proposal = match command {
        MatchCommand::Needs {
            region,
            year,
            limit,
        } => {
            let reply = needs
                .list_needs(pb::ListNeedsRequest {
                    region_code: region,
                    year,
                    page_size: limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if format == Format::Json {
                for n in &reply.needs {
                    println!("{}", to_json(n, "tde.matching.v1.Need")?);
                }
                return Ok(());
            }
            println!(
                "{}",
                table(
                    &[
                        "id",
                        "territory",
                        "dép.",
                        "year",
                        "title",
                        "skills",
                        "period",
                        "budget"
                    ],
                    reply
                        .needs
                        .iter()
                        .map(|n| {
                            vec![
                                n.id.clone(),
                                n.territory_name.clone(),
                                n.departement_code.clone(),
                                n.year.to_string(),
                                n.title.clone(),
                                n.skills
                                    .iter()
                                    .map(|s| skill_name(*s))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                format!("{} → {}", n.planned_start, n.planned_end),
                                tde_runtime::format::euros(n.budget_cents),
                            ]
                        })
                        .collect(),
                )
            );
            return Ok(());
        }
        MatchCommand::Rank {
            need,
            candidates,
            all,
        } => {
            let r = needs
                .rank_providers(pb::RankProvidersRequest {
                    need_id: need,
                    max_candidates: candidates,
                    all_exclusions: all,
                })
                .await
                .map_err(status)?
                .into_inner();
            if format == Format::Json {
                println!("{}", to_json(&r, "tde.matching.v1.RankProvidersResponse")?);
                return Ok(());
            }
            let factor_names: Vec<String> = r
                .weights
                .iter()
                .map(|w| format!("{} ×{}", w.factor, w.weight))
                .collect();
            let mut header = vec!["rank", "provider", "score"];
            header.extend(factor_names.iter().map(String::as_str));
            println!(
                "{}",
                table(
                    &header,
                    r.candidates
                        .iter()
                        .map(|c| {
                            let mut row = vec![
                                c.rank.to_string(),
                                c.provider_name.clone(),
                                format!("{:.4}", c.score),
                            ];
                            row.extend(
                                c.factors
                                    .iter()
                                    .map(|f| format!("{:.2} → {:.4}", f.value, f.contribution)),
                            );
                            row
                        })
                        .collect(),
                )
            );
            if r.outside_area_count > 0 {
                println!(
                    "{} provider(s) outside the need's area (outside_area): --all lists them",
                    r.outside_area_count
                );
            }
            if !r.exclusions.is_empty() {
                println!(
                    "{}",
                    table(
                        &["excluded", "rule", "why"],
                        r.exclusions
                            .iter()
                            .map(|e| vec![
                                e.provider_name.clone(),
                                e.rule.clone(),
                                e.detail.clone()
                            ])
                            .collect(),
                    )
                );
            }
            return Ok(());
        }
        MatchCommand::Plan { region, year, send } => {
            let r = needs
                .plan_assignments(pb::PlanAssignmentsRequest {
                    region_code: region,
                    year,
                    send,
                    request_id: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if format == Format::Json {
                println!(
                    "{}",
                    to_json(&r, "tde.matching.v1.PlanAssignmentsResponse")?
                );
                return Ok(());
            }
            println!(
                "{}",
                table(
                    &["need", "provider", "score", "proposal"],
                    r.assignments
                        .iter()
                        .map(|a| vec![
                            a.need_id.clone(),
                            a.provider_id.clone(),
                            format!("{:.4}", a.score),
                            a.proposal_id.clone()
                        ])
                        .collect(),
                )
            );
            for u in &r.unserved {
                println!("unserved {}: {} ({})", u.need_id, u.reason, u.detail);
            }
            println!(
                "total score {:.4} (greedy: {:.4})",
                r.total_score, r.greedy_total_score
            );
            return Ok(());
        }
        MatchCommand::Propose {
            need,
            provider,
            justification,
        } => {
            proposals
                .propose_provider(pb::ProposeProviderRequest {
                    need_id: need,
                    provider_id: provider,
                    justification,
                    request_id: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .proposal
        }
        MatchCommand::Proposals { need, limit } => {
            let reply = proposals
                .list_proposals(pb::ListProposalsRequest {
                    need_id: need,
                    status: 0,
                    page_size: limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner();
            return print_proposals(&reply.proposals, format);
        }
        MatchCommand::Accept { id } => {
            proposals
                .accept_proposal(pb::AcceptProposalRequest {
                    id,
                    etag: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .proposal
        }
        MatchCommand::Decline { id, reason } => {
            proposals
                .decline_proposal(pb::DeclineProposalRequest {
                    id,
                    reason,
                    etag: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .proposal
        }
    };
    print_proposals(&proposal.into_iter().collect::<Vec<_>>(), format)
}
