//! `tde bench meetings`: the national calendar of steering meetings. Seeds 35,000
//! territories, each with a plan of three years and four meetings a year (420,000 meetings)
//! on PostgreSQL, then walks a 30-day window 100 meetings per page through
//! ListSteeringMeetings (gRPC over a socket, authenticated), next to the bare SQL query of the
//! same pages on the same database, alternating rounds.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait, Statement};
use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::steering_meeting_service_client::SteeringMeetingServiceClient;
use tde_runtime::api::timestamp;
use tde_runtime::testing::{TestEnv, Topology, channel};

use super::{histogram, print_table};
use tde::platform::Role;

/// The régions of the seeded territories (codes of the 2026 geography).
const REGIONS: &[&str] = &[
    "11", "24", "27", "28", "32", "44", "52", "53", "75", "76", "84", "93", "94", "01", "02", "03",
    "04", "06",
];

/// Seeds with set-based SQL: three statements, in the service's own tables.
async fn seed(db: &impl ConnectionTrait, territories: u32, start: NaiveDate) -> anyhow::Result<()> {
    let regions = REGIONS
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");
    let statements = [
        format!(
            "INSERT INTO territories (id, name, kind, stage, time_zone, region_code, updated_at)
             SELECT gen_random_uuid()::text, 'Territoire ' || n, 'commune', 'charter_signed',
                    'Europe/Paris', (ARRAY[{regions}])[1 + n % {r}], now()
             FROM generate_series(1, {territories}) AS n",
            r = REGIONS.len()
        ),
        format!(
            "INSERT INTO plans (id, territory_id, territory_name, region_code, title, start_date,
                                status, status_reason, charter, submissions, reviews,
                                celebrations, people, version, request_id, created_at, updated_at)
             SELECT gen_random_uuid()::text, id, name, region_code, 'Plan d''engagement',
                    DATE '{start}', 'active', '', '{{\"versions\":[]}}', '[]', '[]', '[]', '',
                    1, NULL, now(), now()
             FROM territories"
        ),
        // Meeting k of year y of plan p: spread over each quarter, at 10:00 or 14:00 local.
        format!(
            "INSERT INTO steering_meetings (id, plan_id, territory_id, region_code, year, sequence,
                 status, time_zone, start_local, end_local, start_utc, end_utc, place, video_link,
                 agenda, cancel_reason, minutes, decisions, version, request_id, created_at,
                 updated_at)
             SELECT gen_random_uuid()::text, p.id, p.territory_id, p.region_code, y, 0,
                    'scheduled', 'Europe/Paris',
                    to_char(l, 'YYYY-MM-DD\"T\"HH24:MI'), to_char(l + interval '2 hours', 'YYYY-MM-DD\"T\"HH24:MI'),
                    l AT TIME ZONE 'Europe/Paris', (l + interval '2 hours') AT TIME ZONE 'Europe/Paris',
                    'Mairie', '', 'Comité de pilotage', '', '', '[]', 1, NULL, now(), now()
             FROM (SELECT id, territory_id, region_code,
                          row_number() OVER (ORDER BY id) AS n FROM plans) AS p
             CROSS JOIN generate_series(1, 3) AS y
             CROSS JOIN generate_series(0, 3) AS k
             CROSS JOIN LATERAL (SELECT TIMESTAMP '{start} 00:00'
                    + make_interval(days => ((y - 1) * 365 + k * 91 + (p.n % 91))::int)
                    + make_interval(hours => CASE WHEN p.n % 2 = 0 THEN 10 ELSE 14 END) AS l) AS t"
        ),
        "ANALYZE territories".to_string(),
        "ANALYZE plans".to_string(),
        "ANALYZE steering_meetings".to_string(),
    ];
    for sql in statements {
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// The service's query of one page, run bare.
const PAGE_SQL: &str = "SELECT * FROM steering_meetings
    WHERE start_utc >= $1 AND start_utc < $2 AND (start_utc, id) > ($3, $4)
    ORDER BY start_utc, id LIMIT $5";

fn row(name: &str, pages: u64, h: &Histogram<u64>) -> Vec<String> {
    let ms = |q: f64| format!("{:.2}", h.value_at_quantile(q) as f64 / 1000.0);
    vec![
        name.to_string(),
        pages.to_string(),
        ms(0.50),
        ms(0.99),
        format!("{:.2}", h.max() as f64 / 1000.0),
    ]
}

pub async fn run(territories: u32, rounds: usize, page_size: i32) -> anyhow::Result<()> {
    let env = TestEnv::new(Topology::Postgres, &["plans"]).await;
    let platform = env.start(tde::platform::modules(&[Role::Plans])).await?;
    let ctx = platform.service("plans").context("plans runs")?;
    let start = NaiveDate::from_ymd_opt(2027, 1, 1).context("date")?;

    let seeding = Instant::now();
    seed(&ctx.db, territories, start).await?;
    let meetings: i64 = ctx
        .db
        .query_one_raw(Statement::from_string(
            ctx.db.get_database_backend(),
            "SELECT count(*) AS n FROM steering_meetings",
        ))
        .await?
        .context("count")?
        .try_get("", "n")?;
    println!(
        "seeded {territories} territories, {territories} plans, {meetings} steering meetings in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // A 30-day window in the middle of the plans' second year.
    let from: DateTime<Utc> = NaiveDate::from_ymd_opt(2028, 3, 1)
        .context("date")?
        .and_hms_opt(0, 0, 0)
        .context("time")?
        .and_utc();
    let to = from + chrono::Duration::days(30);
    let mut client = SteeringMeetingServiceClient::new(channel(platform.local_addr).await);
    let (mut grpc, mut sql) = (histogram(), histogram());
    let (mut grpc_pages, mut sql_pages, mut listed) = (0u64, 0u64, 0u64);
    for round in 0..rounds {
        // gRPC: follow the page tokens through the window.
        let mut token = String::new();
        let mut count = 0u64;
        loop {
            let started = Instant::now();
            let page = client
                .list_steering_meetings(pb::ListSteeringMeetingsRequest {
                    start_time_from: Some(timestamp(from)),
                    start_time_to: Some(timestamp(to)),
                    page_size,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let elapsed = started.elapsed();
            if round > 0 {
                grpc.record(elapsed.as_micros().max(1) as u64)?;
                grpc_pages += 1;
            }
            count += page.meetings.len() as u64;
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        listed = count;
        // Bare SQL: the same pages, the cursor taken from each page's last row.
        let mut cursor: (DateTime<Utc>, String) = (from, String::new());
        loop {
            let started = Instant::now();
            let rows = ctx
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    sea_orm::DbBackend::Postgres,
                    PAGE_SQL,
                    [
                        from.into(),
                        to.into(),
                        cursor.0.into(),
                        cursor.1.clone().into(),
                        i64::from(page_size + 1).into(),
                    ],
                ))
                .await?;
            let elapsed = started.elapsed();
            if round > 0 {
                sql.record(elapsed.as_micros().max(1) as u64)?;
                sql_pages += 1;
            }
            if rows.len() as i32 <= page_size {
                break;
            }
            let last = &rows[page_size as usize - 1];
            cursor = (last.try_get("", "start_utc")?, last.try_get("", "id")?);
        }
    }
    println!(
        "window {} to {}: {listed} meetings, {} pages of {page_size}; {} measured rounds after one warm-up",
        from.format("%Y-%m-%d"),
        to.format("%Y-%m-%d"),
        listed.div_ceil(page_size as u64),
        rounds.saturating_sub(1)
    );
    print_table(
        &["per page", "pages", "p50 ms", "p99 ms", "max ms"],
        vec![
            row(
                "ListSteeringMeetings (gRPC, auth, socket)",
                grpc_pages,
                &grpc,
            ),
            row("bare SQL, same query (reference)", sql_pages, &sql),
        ],
    );
    let p99 = Duration::from_micros(grpc.value_at_quantile(0.99));
    println!(
        "target p99 <= 20 ms per page: {} ({:.2} ms)",
        if p99 <= Duration::from_millis(20) {
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
