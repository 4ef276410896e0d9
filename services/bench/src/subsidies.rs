//! `tde-bench approvals` and `tde-bench dashboard`: the subsidies service on PostgreSQL.
//!
//! - approvals: 200 approvals at once against one envelope, asking twice what it holds,
//!   authenticated gRPC over a socket, next to a bare loop of the same conditional
//!   `UPDATE … RETURNING` from 200 tasks on the same database and pool size;
//! - dashboard: GetDashboard over 35,000 territories × 3 years with their ledgers (≈ 400,000
//!   entries), next to the bare SQL of its two aggregates on the same database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use futures::future::join_all;
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait as _};
use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::ledger_service_client::LedgerServiceClient;
use tde_proto::subsidies::v1::subsidy_service_client::SubsidyServiceClient;
use tde_runtime::auth::{Role as CallerRole, TokenSpec};
use tde_runtime::testing::{TestEnv, Topology, channel, channel_as};
use tde_subsidies::domain::envelope::Envelope;
use tde_subsidies::domain::subsidy::{LegalAct, LegalActKind, ProposalInput, Subsidy};
use tde_subsidies::storage;

use super::{histogram, print_table};
use tde::platform::Role;

fn ms(h: &Histogram<u64>, q: f64) -> String {
    format!("{:.2}", h.value_at_quantile(q) as f64 / 1000.0)
}

async fn start() -> anyhow::Result<(TestEnv, tde_runtime::server::RunningPlatform)> {
    let env = TestEnv::new(Topology::Postgres, &["subsidies"]).await;
    let platform = env
        .start(tde::platform::modules(&[Role::Subsidies]))
        .await?;
    Ok((env, platform))
}

/// A national envelope of `year` holding `amount`, written directly.
async fn envelope(db: &impl ConnectionTrait, year: i32, amount: i64) -> anyhow::Result<Envelope> {
    let e = Envelope::new(
        uuid::Uuid::now_v7().to_string(),
        year,
        "",
        None,
        amount,
        50,
        "benchmark",
        "LFI",
        "bench",
        Utc::now(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    storage::insert_envelope(db, &e).await?;
    Ok(e)
}

/// `amounts.len()` requested subsidies charged to `year`, each proposed by alice.
async fn proposed(
    db: &impl ConnectionTrait,
    year: i32,
    amounts: &[i64],
) -> anyhow::Result<Vec<Subsidy>> {
    let d = |y: i32, m: u32, day: u32| NaiveDate::from_ymd_opt(y, m, day).context("date");
    let mut out = Vec::with_capacity(amounts.len());
    for (i, amount) in amounts.iter().enumerate() {
        let mut s = Subsidy::request(
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
            1,
            0,
            ("t", "Territoire", "84"),
            (d(year, 1, 1)?, d(year + 1, 1, 1)?),
            1,
            *amount,
            Utc::now(),
        );
        s.propose(
            ProposalInput {
                amount_cents: *amount,
                legal_act: Some(LegalAct {
                    kind: LegalActKind::Order,
                    reference: format!("ARR-{year}-{i}"),
                    date: d(year, 2, 1)?,
                }),
                beneficiary_siret: "21750001600019",
                budget_year: year,
                commitment_number: "",
                comment: "",
            },
            "alice",
            Utc::now(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        storage::insert_subsidy(db, &s).await?;
        out.push(s);
    }
    Ok(out)
}

/// One bare conditional commitment, in its own transaction.
async fn bare_commit(
    db: &sea_orm::DatabaseConnection,
    id: &str,
    amount: i64,
) -> anyhow::Result<bool> {
    let txn = db.begin().await?;
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE envelopes SET committed_cents = committed_cents + $1 \
             WHERE id = $2 AND committed_cents + $1 <= amount_cents RETURNING committed_cents",
            [amount.into(), id.into()],
        ))
        .await?;
    txn.commit().await?;
    Ok(row.is_some())
}

pub async fn approvals(approvals: usize, rounds: usize) -> anyhow::Result<()> {
    let (env, platform) = start().await?;
    let ctx = platform.service("subsidies").context("subsidies runs")?;
    let db = ctx.db.clone();
    let approver = channel_as(
        platform.local_addr,
        &TokenSpec::new(CallerRole::National, "bob").client("bench"),
    )
    .await;
    let amounts: Vec<i64> = (0..approvals)
        .map(|i| 1_000_000 + (i as i64 % 7) * 250_000)
        .collect();
    let asked: i64 = amounts.iter().sum();
    let (mut grpc, mut bare) = (histogram(), histogram());
    let (mut grpc_time, mut bare_time) = (Duration::ZERO, Duration::ZERO);
    let (mut granted, mut refused, mut over) = (0usize, 0usize, 0usize);
    for round in 0..rounds {
        // Each round its own budget year: a fresh envelope, fresh proposals.
        let year = 2030 + round as i32;
        let e = envelope(&db, year, asked / 2).await?;
        let subsidies = proposed(&db, year, &amounts).await?;
        let started = Instant::now();
        let calls = subsidies.iter().map(|s| {
            let mut client = SubsidyServiceClient::new(approver.clone());
            let id = s.id.clone();
            async move {
                let t = Instant::now();
                let ok = client
                    .approve_decision(pb::ApproveDecisionRequest {
                        id,
                        ..Default::default()
                    })
                    .await
                    .is_ok();
                (ok, t.elapsed())
            }
        });
        let results = join_all(calls).await;
        if round > 0 {
            grpc_time += started.elapsed();
            for (ok, t) in &results {
                grpc.record(t.as_micros().max(1) as u64)?;
                if *ok {
                    granted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        let after = storage::find_envelope(&db, &e.id, false)
            .await?
            .context("envelope")?;
        if after.committed_cents > after.amount_cents {
            over += 1;
        }
        // The bare reference: the same conditional updates from as many tasks.
        let reference = envelope(&db, year + 50, asked / 2).await?;
        let db2 = Arc::new(db.clone());
        let started = Instant::now();
        let calls = amounts.iter().map(|amount| {
            let db = db2.clone();
            let id = reference.id.clone();
            let amount = *amount;
            async move {
                let t = Instant::now();
                let ok = bare_commit(&db, &id, amount).await.unwrap_or(false);
                (ok, t.elapsed())
            }
        });
        let results = join_all(calls).await;
        if round > 0 {
            bare_time += started.elapsed();
            for (_, t) in &results {
                bare.record(t.as_micros().max(1) as u64)?;
            }
        }
    }
    let measured = rounds.saturating_sub(1).max(1);
    println!(
        "{approvals} approvals at once asking twice the envelope, {measured} measured rounds after one warm-up: {granted} committed, {refused} refused, {over} rounds over budget"
    );
    let per_second = |n: usize, t: Duration| format!("{:.0}", n as f64 / t.as_secs_f64().max(1e-9));
    print_table(
        &["", "per second", "p50 ms", "p99 ms", "max ms"],
        vec![
            vec![
                "ApproveDecision (gRPC, auth, audit, ledger, advance)".into(),
                per_second(approvals * measured, grpc_time),
                ms(&grpc, 0.50),
                ms(&grpc, 0.99),
                format!("{:.2}", grpc.max() as f64 / 1000.0),
            ],
            vec![
                "bare UPDATE … RETURNING, same database (reference)".into(),
                per_second(approvals * measured, bare_time),
                ms(&bare, 0.50),
                ms(&bare, 0.99),
                format!("{:.2}", bare.max() as f64 / 1000.0),
            ],
        ],
    );
    platform.shutdown().await?;
    drop(env);
    Ok(())
}

/// The régions of the seeded territories.
const REGIONS: &[&str] = &[
    "11", "24", "27", "28", "32", "44", "52", "53", "75", "76", "84", "93", "94", "01", "02", "03",
    "04", "06",
];

/// Seeds `territories` × 3 years of granted subsidies, each with a commitment, its advance
/// and balance paid, and for four in five a small decommitment: set-based SQL.
async fn seed(db: &impl ConnectionTrait, territories: u32) -> anyhow::Result<()> {
    let regions = REGIONS
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");
    let statements = [
        "INSERT INTO envelopes (id, budget_year, region_code, parent_id, amount_cents, committed_cents,
             paid_cents, advance_percent, changes, version, created_at, updated_at)
         SELECT 'env-' || y, y, '', NULL, 1000000000000, 0, 0, 50, '[]', 1, now(), now()
         FROM generate_series(2027, 2029) AS y"
            .to_string(),
        format!(
            "INSERT INTO subsidies (id, plan_id, plan_year, amendment_number, territory_id, territory_name,
                 region_code, year_start, year_end, submission_number, requested_cents, status,
                 proposal, decision, budget_year, envelope_id, granted_cents, decommitted_cents,
                 paid_cents, clawed_back_cents, advance_percent, reviewed, plan_stopped, version,
                 created_at, updated_at)
             SELECT gen_random_uuid()::text, 'plan-' || n, y, 0, 'territory-' || n, 'Territoire ' || n,
                    (ARRAY[{regions}])[1 + n % {r}], make_date(2026 + y, 1, 1), make_date(2027 + y, 1, 1),
                    1, 2000000, 'granted', NULL, NULL, 2026 + y, 'env-' || (2026 + y), 2000000, 0, 0, 0,
                    50, false, false, 1, now(), now()
             FROM generate_series(1, {territories}) AS n CROSS JOIN generate_series(1, 3) AS y",
            r = REGIONS.len()
        ),
        "INSERT INTO ledger_entries (id, kind, amount_cents, envelope_id, subsidy_id, payment_id,
             territory_id, region_code, budget_year, reference, reason, actor, recorded_at)
         SELECT gen_random_uuid()::text, k, a, s.envelope_id, s.id, NULL, s.territory_id,
                s.region_code, s.budget_year, '', '', 'bench', now()
         FROM subsidies s CROSS JOIN (VALUES ('commitment', 2000000), ('payment', 1000000),
                                             ('payment', 1000000)) AS v(k, a)"
            .to_string(),
        "INSERT INTO ledger_entries (id, kind, amount_cents, envelope_id, subsidy_id, payment_id,
             territory_id, region_code, budget_year, reference, reason, actor, recorded_at)
         SELECT gen_random_uuid()::text, 'decommitment', 1000, s.envelope_id, s.id, NULL,
                s.territory_id, s.region_code, s.budget_year, '', '', 'bench', now()
         FROM subsidies s WHERE abs(hashtext(s.id)) % 5 <> 0"
            .to_string(),
        // The running totals the service keeps with each entry.
        "INSERT INTO ledger_totals (budget_year, region_code, committed_cents, decommitted_cents,
             paid_cents, clawed_back_cents)
         SELECT budget_year, region_code,
                SUM(CASE WHEN kind = 'commitment' THEN amount_cents ELSE 0 END),
                SUM(CASE WHEN kind = 'decommitment' THEN amount_cents ELSE 0 END),
                SUM(CASE WHEN kind = 'payment' THEN amount_cents ELSE 0 END),
                SUM(CASE WHEN kind = 'clawback' THEN amount_cents ELSE 0 END)
         FROM ledger_entries GROUP BY budget_year, region_code"
            .to_string(),
        "VACUUM ANALYZE subsidies".to_string(),
        "VACUUM ANALYZE ledger_entries".to_string(),
    ];
    for sql in statements {
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}

const REQUESTS_SQL: &str = "SELECT budget_year, region_code, CAST(SUM(requested_cents) AS BIGINT) AS requested, \
     CAST(SUM(granted_cents) AS BIGINT) AS granted FROM subsidies GROUP BY budget_year, region_code";
const LEDGER_SQL: &str = "SELECT budget_year, region_code, \
     CAST(SUM(CASE kind WHEN 'commitment' THEN amount_cents WHEN 'decommitment' THEN -amount_cents ELSE 0 END) AS BIGINT) AS committed, \
     CAST(SUM(CASE kind WHEN 'payment' THEN amount_cents ELSE 0 END) AS BIGINT) AS paid \
     FROM ledger_entries GROUP BY budget_year, region_code";

pub async fn dashboard(territories: u32, calls: usize) -> anyhow::Result<()> {
    let (env, platform) = start().await?;
    let ctx = platform.service("subsidies").context("subsidies runs")?;
    let seeding = Instant::now();
    seed(&ctx.db, territories).await?;
    let count = |table: &'static str| {
        let db = ctx.db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT count(*) AS n FROM {table}"),
                ))
                .await?
                .context("count")?;
            anyhow::Ok(row.try_get::<i64>("", "n")?)
        }
    };
    println!(
        "seeded {} subsidies and {} ledger entries in {:.1} s",
        count("subsidies").await?,
        count("ledger_entries").await?,
        seeding.elapsed().as_secs_f64()
    );
    let mut client = LedgerServiceClient::new(channel(platform.local_addr).await);
    let (mut grpc, mut sql) = (histogram(), histogram());
    for i in 0..calls + 10 {
        let t = Instant::now();
        let rows = client
            .get_dashboard(pb::GetDashboardRequest { budget_year: 0 })
            .await?
            .into_inner()
            .rows;
        let elapsed = t.elapsed();
        anyhow::ensure!(rows.len() > REGIONS.len(), "a row per year and région");
        let t = Instant::now();
        for q in [REQUESTS_SQL, LEDGER_SQL] {
            ctx.db
                .query_all_raw(Statement::from_string(sea_orm::DbBackend::Postgres, q))
                .await?;
        }
        let bare = t.elapsed();
        // The first calls warm the caches.
        if i >= 10 {
            grpc.record(elapsed.as_micros().max(1) as u64)?;
            sql.record(bare.as_micros().max(1) as u64)?;
        }
    }
    print_table(
        &["per call", "calls", "p50 ms", "p99 ms", "max ms"],
        vec![
            vec![
                "GetDashboard, every year (gRPC, auth, socket)".into(),
                calls.to_string(),
                ms(&grpc, 0.50),
                ms(&grpc, 0.99),
                format!("{:.2}", grpc.max() as f64 / 1000.0),
            ],
            vec![
                "bare SQL summing the subsidies and every ledger entry (reference)".into(),
                calls.to_string(),
                ms(&sql, 0.50),
                ms(&sql, 0.99),
                format!("{:.2}", sql.max() as f64 / 1000.0),
            ],
        ],
    );
    let p99 = Duration::from_micros(grpc.value_at_quantile(0.99));
    println!(
        "target p99 <= 50 ms: {} ({:.2} ms)",
        if p99 <= Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        },
        p99.as_secs_f64() * 1000.0
    );
    platform.shutdown().await?;
    drop(env);
    Ok(())
}
