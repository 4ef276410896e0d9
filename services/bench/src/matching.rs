//! `tde-bench rank` and `tde-bench assign`: the matching service at national scale.
//!
//! - `rank`: 3,000 providers on PostgreSQL; RankProviders of one need through gRPC
//!   (authenticated, over a socket), next to the bare SQL of the candidate filter (active,
//!   the skill, the département, its région or national) on the same database.
//! - `assign`: 10,000 needs over 3,000 providers with capacities, in memory: the optimal
//!   assignment's wall time and total score next to a greedy assignment's, same input.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context as _;
use chrono::NaiveDate;
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait, Statement};
use tde_matching::api::needs::{Pool, plan_assignments};
use tde_matching::domain::assignment;
use tde_matching::domain::need::{Need, NeedKind};
use tde_matching::domain::provider::{Area, Contact, Provider, ProviderStatus};
use tde_matching::domain::ranking::Weights;
use tde_matching::domain::siret::Siret;
use tde_proto::matching::v1 as pb;
use tde_proto::matching::v1::matching_service_client::MatchingServiceClient;
use tde_runtime::testing::{TestEnv, Topology, channel};

use super::{histogram, print_table};
use tde::platform::Role;

const SKILLS: &[&str] = &[
    "participatory_democracy",
    "facilitation",
    "change_management",
    "elected_officials_training",
    "agents_training",
    "volunteering",
    "youth_engagement",
    "digital_participation",
    "public_communication",
    "policy_evaluation",
    "project_management",
    "ecological_transition",
    "social_cohesion",
    "service_design",
];

/// Départements of metropolitan France by région (2026 codes), enough for realistic areas.
const REGIONS: &[(&str, &[&str])] = &[
    (
        "84",
        &[
            "01", "03", "07", "15", "26", "38", "42", "43", "63", "69", "73", "74",
        ],
    ),
    ("27", &["21", "25", "39", "58", "70", "71", "89", "90"]),
    ("53", &["22", "29", "35", "56"]),
    ("24", &["18", "28", "36", "37", "41", "45"]),
    ("94", &["2A", "2B"]),
    (
        "44",
        &["08", "10", "51", "52", "54", "55", "57", "67", "68", "88"],
    ),
    ("32", &["02", "59", "60", "62", "80"]),
    ("11", &["75", "77", "78", "91", "92", "93", "94", "95"]),
    ("28", &["14", "27", "50", "61", "76"]),
    (
        "75",
        &[
            "16", "17", "19", "23", "24", "33", "40", "47", "64", "79", "86", "87",
        ],
    ),
    (
        "76",
        &[
            "09", "11", "12", "30", "31", "32", "34", "46", "48", "65", "66", "81", "82",
        ],
    ),
    ("52", &["44", "49", "53", "72", "85"]),
    ("93", &["04", "05", "06", "13", "83", "84"]),
];

/// A small deterministic generator: the same seed, the same data set.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn siret(n: u64) -> Siret {
    // 13 digits, then the Luhn key.
    let body = format!("{:013}", 100_000_000_000 + n);
    (0..10)
        .map(|k| format!("{body}{k}"))
        .find_map(|s| Siret::parse(&s).ok())
        .expect("one key digit makes any number Luhn-valid")
}

/// `count` providers: 90 % work in one département, 8 % in a région, `national` % nationally.
fn providers(count: usize, national_percent: usize, rng: &mut Rng) -> Vec<Provider> {
    (0..count)
        .map(|i| {
            let (region, deps) = REGIONS[rng.below(REGIONS.len())];
            let roll = rng.below(100);
            let area = if roll < national_percent {
                Area::National
            } else if roll < national_percent + 8 {
                Area::Region(region.to_string())
            } else {
                Area::Departement(deps[rng.below(deps.len())].to_string())
            };
            let skills = (0..3)
                .map(|_| SKILLS[rng.below(SKILLS.len())].to_string())
                .collect();
            Provider {
                id: format!("{:08}-0000-7000-8000-{:012}", i, i),
                siret: siret(i as u64),
                name: format!("Prestataire {i}"),
                naf_code: "70.22Z".into(),
                qualiopi_expiry: (rng.below(2) == 0)
                    .then(|| NaiveDate::from_ymd_opt(2030, 1, 1))
                    .flatten(),
                skills,
                areas: [area].into(),
                capacity: 1 + rng.below(5) as u32,
                day_rate_cents: 50_000 + 1_000 * rng.below(60) as i64,
                status: if rng.below(50) == 0 {
                    ProviderStatus::Suspended
                } else {
                    ProviderStatus::Active
                },
                status_reason: String::new(),
                conflict_territory_ids: Default::default(),
                contact: Contact {
                    name: format!("Contact {i}"),
                    email: format!("contact{i}@example.org"),
                },
            }
        })
        .collect()
}

fn needs(count: usize, rng: &mut Rng) -> Vec<Need> {
    (0..count)
        .map(|i| {
            let (region, deps) = REGIONS[rng.below(REGIONS.len())];
            let start = NaiveDate::from_ymd_opt(2027, 1 + rng.below(10) as u32, 1).expect("date");
            Need {
                id: format!("{:08}-0000-7000-9000-{:012}", i, i),
                plan_id: format!("plan-{i}"),
                territory_id: format!("territory-{}", i / 3),
                territory_name: format!("Territoire {}", i / 3),
                departement_code: deps[rng.below(deps.len())].to_string(),
                region_code: region.to_string(),
                year: 1,
                kind: NeedKind::ALL[rng.below(4)],
                title: format!("Action {i}"),
                skills: [SKILLS[rng.below(SKILLS.len())].to_string()].into(),
                planned_start: start,
                planned_end: start + chrono::Duration::days(20 + rng.below(40) as i64),
                budget_cents: 1_000_000 + 100_000 * rng.below(40) as i64,
                status: "planned".into(),
                provider_id: None,
                version: 1,
                plan_open: true,
            }
        })
        .collect()
}

pub async fn assign(
    needs_count: usize,
    providers_count: usize,
    national_percent: usize,
    with_reference_solver: bool,
) -> anyhow::Result<()> {
    let mut rng = Rng(0x7de_2026);
    let pool = Pool {
        providers: providers(providers_count, national_percent, &mut rng),
        stats: HashMap::new(),
        outside_area: 0,
    };
    let needs = needs(needs_count, &mut rng);
    let started = Instant::now();
    let planned = plan_assignments(&needs, &pool, &Weights::default());
    let elapsed = started.elapsed();
    let capacity: u32 = pool.providers.iter().map(|p| p.capacity).sum();
    println!(
        "{needs_count} needs, {providers_count} providers ({national_percent} % national), {capacity} places in all, {} eligible pairs",
        planned.problem.edges.len()
    );
    let mut rows = vec![
        vec![
            "optimal (min-cost flow, successive shortest paths)".into(),
            format!("{:.2}", elapsed.as_secs_f64()),
            planned.assigned.len().to_string(),
            format!("{:.2}", planned.total),
        ],
        vec![
            "greedy (best pair first), same input".into(),
            String::new(),
            String::new(),
            format!("{:.2}", planned.greedy_total),
        ],
    ];
    if with_reference_solver {
        let started = Instant::now();
        let units = assignment::reference_total(&planned.problem);
        rows.push(vec![
            "general min-cost-flow crate (ac-library-rs), same input".into(),
            format!("{:.2}", started.elapsed().as_secs_f64()),
            String::new(),
            format!("{:.2}", units as f64 / assignment::SCALE),
        ]);
        let optimal = assignment::optimal(&planned.problem).total;
        anyhow::ensure!(
            optimal == units,
            "the solvers disagree: {optimal} against {units} units"
        );
    }
    print_table(
        &["assignment", "wall time s", "assigned", "total score"],
        rows,
    );
    Ok(())
}

/// The candidate filter of one need, bare.
const CANDIDATES_SQL: &str = "SELECT * FROM providers
    WHERE status = 'active' AND skills LIKE $1
      AND (areas LIKE $2 OR areas LIKE $3 OR areas LIKE '%\"national\"%')";

fn ms_row(name: &str, h: &Histogram<u64>) -> Vec<String> {
    let ms = |q: f64| format!("{:.2}", h.value_at_quantile(q) as f64 / 1000.0);
    vec![
        name.to_string(),
        h.len().to_string(),
        ms(0.50),
        ms(0.99),
        format!("{:.2}", h.max() as f64 / 1000.0),
    ]
}

pub async fn rank(
    providers_count: usize,
    calls: usize,
    all_exclusions: bool,
) -> anyhow::Result<()> {
    let env = TestEnv::new(Topology::Postgres, &["matching"]).await;
    let platform = env.start(tde::platform::modules(&[Role::Matching])).await?;
    let ctx = platform.service("matching").context("matching runs")?;
    let mut rng = Rng(0x7de_2027);
    let now = tde_runtime::api::now();
    for p in providers(providers_count, 2, &mut rng) {
        let record = tde_matching::storage::ProviderRecord {
            provider: p,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        tde_matching::storage::insert_provider(&ctx.db, &record).await?;
    }
    let need = Need {
        id: uuid::Uuid::now_v7().to_string(),
        departement_code: "42".into(),
        region_code: "84".into(),
        skills: ["facilitation".to_string()].into(),
        kind: NeedKind::ChangeManagement,
        ..needs(1, &mut rng).remove(0)
    };
    tde_matching::storage::save_need(&ctx.db, &need, now).await?;
    ctx.db.execute_unprepared("ANALYZE providers").await?;
    let mut client = MatchingServiceClient::new(channel(platform.local_addr).await);
    let (mut grpc, mut sql) = (histogram(), histogram());
    let mut candidates = 0;
    for call in 0..calls + 20 {
        let started = Instant::now();
        let reply = client
            .rank_providers(pb::RankProvidersRequest {
                need_id: need.id.clone(),
                max_candidates: 20,
                all_exclusions,
            })
            .await?
            .into_inner();
        let elapsed = started.elapsed();
        let started = Instant::now();
        let rows = ctx
            .db
            .query_all_raw(Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                CANDIDATES_SQL,
                [
                    "%\"facilitation\"%".into(),
                    "%{\"departement\":\"42\"}%".into(),
                    "%{\"region\":\"84\"}%".into(),
                ],
            ))
            .await?;
        let bare = started.elapsed();
        // The first calls warm the connections and caches.
        if call >= 20 {
            grpc.record(elapsed.as_micros().max(1) as u64)?;
            sql.record(bare.as_micros().max(1) as u64)?;
        }
        candidates = rows.len();
        anyhow::ensure!(
            reply.candidates.len() + reply.exclusions.len() + reply.outside_area_count as usize
                >= candidates.min(20),
            "the ranking lost providers"
        );
    }
    println!(
        "{providers_count} providers on PostgreSQL; one need (facilitation, département 42); {candidates} pass the bare filter"
    );
    if all_exclusions {
        println!("every excluded provider listed one by one, those outside the area too");
    }
    print_table(
        &["per call", "calls", "p50 ms", "p99 ms", "max ms"],
        vec![
            ms_row(
                if all_exclusions {
                    "RankProviders (gRPC, auth, socket), every exclusion listed"
                } else {
                    "RankProviders (gRPC, auth, socket), outside the area counted"
                },
                &grpc,
            ),
            ms_row("bare SQL of the candidate filter, same database", &sql),
        ],
    );
    platform.shutdown().await?;
    Ok(())
}
