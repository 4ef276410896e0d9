//! `tde bench reminders`: 10,000 due reminders dispatched by the notifications service to a
//! local SMTP server (the tests' aiosmtpd), next to a bare lettre client sending the same
//! number of messages of the same size to the same server, with the same connection pool and
//! concurrency, in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{NaiveDate, TimeZone as _, Utc};
use futures::StreamExt as _;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::{ConnectionTrait, Statement};
use tde_notifications::domain::Kind;
use tde_notifications::domain::recipient::{Recipient, RosterEntry};
use tde_notifications::domain::schedule::{Meeting, Planned};
use tde_notifications::settings::NotificationSettings;
use tde_notifications::testing::{SmtpServer, configure};
use tde_runtime::testing::{TestEnv, Topology};

use super::{histogram, print_table};
use tde::platform::Role;

/// A meeting of the benchmark, on 12 June 2030 at 10:00 in Paris.
fn meeting(id: String, territory_id: &str) -> anyhow::Result<Meeting> {
    let paris: chrono_tz::Tz = "Europe/Paris".parse()?;
    let start_local = NaiveDate::from_ymd_opt(2030, 6, 12)
        .context("date")?
        .and_hms_opt(10, 0, 0)
        .context("time")?;
    let start = paris
        .from_local_datetime(&start_local)
        .single()
        .context("local time")?
        .with_timezone(&Utc);
    Ok(Meeting {
        id,
        sequence: 0,
        plan_id: "plan".into(),
        territory_id: territory_id.to_string(),
        territory_name: "Saint-Étienne".into(),
        zone: paris,
        start_local,
        end_local: start_local + chrono::Duration::hours(2),
        start,
        end: start + chrono::Duration::hours(2),
        place: "Hôtel de ville".into(),
        video_link: "https://visio.example.fr/copil".into(),
        agenda: "1. Bilan de l'année\n2. Programme de l'année suivante".into(),
        cancelled: false,
        cancel_reason: String::new(),
    })
}

fn member(territory_id: &str, email: &str) -> Recipient {
    Recipient::new(
        territory_id,
        &RosterEntry {
            name: "Membre du comité",
            email,
            role: "steering_body",
        },
    )
}

fn organizer() -> tde_notifications::domain::message::Organizer {
    tde_notifications::domain::message::Organizer {
        email: "ne-pas-repondre@tde.anct.gouv.fr".into(),
        name: "Territoires d'engagement (ANCT)".into(),
    }
}

/// Seeds `count` meetings with one recipient each and a reminder due now.
async fn seed(db: &sea_orm::DatabaseConnection, count: usize) -> anyhow::Result<()> {
    let territory = uuid::Uuid::now_v7().to_string();
    tde_notifications::storage::save_territory(db, &territory, "Saint-Étienne", "Europe/Paris")
        .await?;
    let due = Utc::now();
    for i in 0..count {
        let r = member(&territory, &format!("membre{i}@mairie-exemple.fr"));
        tde_notifications::storage::insert_recipient(db, &r).await?;
        let m = meeting(uuid::Uuid::now_v7().to_string(), &territory)?;
        tde_notifications::storage::save_meeting(db, &m, "scheduled").await?;
        let planned = Planned {
            kind: Kind::Reminder(1),
            recipient: r.email.clone(),
            due,
        };
        tde_notifications::storage::insert_planned(
            db,
            &m,
            &[planned],
            std::slice::from_ref(&r),
            "tde.anct.gouv.fr",
        )
        .await?;
    }
    Ok(())
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    Ok(db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("a row")?
        .try_get("", "n")?)
}

pub async fn run(reminders: usize, concurrency: usize, pool: u32) -> anyhow::Result<()> {
    let smtp = SmtpServer::start();
    let mut smtp_settings = smtp.settings();
    smtp_settings.pool_size = pool;

    // The bare client: the same message size, the same server, pool and concurrency.
    let sample = tde_notifications::domain::message::email(
        &meeting("0".into(), "t")?,
        Kind::Reminder(1),
        &member("t", "membre@mairie-exemple.fr"),
        &organizer(),
        "tde.anct.gouv.fr",
    );
    let transport: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(smtp.port)
            .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(pool))
            .build();
    let organizer = organizer();
    let messages: Vec<Message> = (0..reminders)
        .map(|i| {
            let mut e = sample.clone();
            e.message_id = format!("<bare.{i}@tde.anct.gouv.fr>");
            tde_notifications::delivery::email::build(
                &e,
                "Membre du comité",
                &format!("membre{i}@mairie-exemple.fr"),
                &organizer,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    println!("bare SMTP client: {reminders} messages, {concurrency} in flight, pool of {pool}…");
    let started = Instant::now();
    let transport = Arc::new(transport);
    let mut bare_latency = histogram();
    let results: Vec<(bool, Duration)> = futures::stream::iter(messages)
        .map(|m| {
            let t = transport.clone();
            async move {
                let s = Instant::now();
                (t.send(m).await.is_ok(), s.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let bare_elapsed = started.elapsed();
    let bare_errors = results.iter().filter(|(ok, _)| !ok).count();
    for (_, d) in &results {
        bare_latency.record(d.as_micros().max(1) as u64)?;
    }
    let bare_rate = (reminders - bare_errors) as f64 / bare_elapsed.as_secs_f64();

    // The service: reminders due now, dispatched by one replica.
    let mut env = TestEnv::new(Topology::Postgres, &["notifications"]).await;
    configure(&mut env, Some(&smtp));
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.smtp = Some(smtp_settings);
            n.concurrency = concurrency;
            n.batch_size = (concurrency * 4) as u64;
            n.poll_interval_ms = 1_000;
        });
    // Seeded with the dispatcher stopped: started once every reminder is due.
    let db = tde_runtime::db::connect(&env.settings.database, tde_notifications::SERVICE).await?;
    use sea_orm_migration::MigratorTrait as _;
    tde_notifications::storage::migrations::Migrator::up(&db, None).await?;
    println!("seeding {reminders} due reminders on PostgreSQL…");
    seed(&db, reminders).await?;
    let before = smtp.messages().len();
    let started = Instant::now();
    let platform = env
        .start(tde::platform::modules(&[Role::Notifications]))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let sent = count(
            &db,
            "SELECT count(*) AS n FROM notifications WHERE status <> 'pending'",
        )
        .await?;
        if sent as usize >= reminders {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {sent} of {reminders} sent in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let sent = count(
        &db,
        "SELECT count(*) AS n FROM notifications WHERE status = 'sent'",
    )
    .await?;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT EXTRACT(EPOCH FROM (sent_at - due_at)) * 1000000 AS late FROM notifications WHERE status = 'sent'",
        ))
        .await?;
    let mut lateness = histogram();
    for r in rows {
        let micros: f64 = r.try_get::<f64>("", "late").or_else(|_| {
            r.try_get::<sea_orm::prelude::Decimal>("", "late")
                .map(|d| d.to_string().parse().unwrap_or(0.0))
        })?;
        lateness.record(micros.max(1.0) as u64)?;
    }
    platform.shutdown().await?;
    let received = smtp.messages().len() - before;
    let rate = sent as f64 / elapsed.as_secs_f64();
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        format!("{:.1}", h.value_at_quantile(q) as f64 / 1000.0)
    };
    print_table(
        &[
            "sender",
            "messages",
            "messages/s",
            "p50 ms",
            "p99 ms",
            "errors",
        ],
        vec![
            vec![
                "notifications dispatcher (claim, render, send, record; lateness)".into(),
                sent.to_string(),
                format!("{rate:.0}"),
                ms(&lateness, 0.5),
                ms(&lateness, 0.99),
                (reminders as i64 - sent).to_string(),
            ],
            vec![
                "bare lettre client, same server (reference; send latency)".into(),
                (reminders - bare_errors).to_string(),
                format!("{bare_rate:.0}"),
                ms(&bare_latency, 0.5),
                ms(&bare_latency, 0.99),
                bare_errors.to_string(),
            ],
        ],
    );
    println!(
        "the SMTP server received {received} messages from the dispatcher; dispatcher at {:.1}% of the bare client (target ≥ 50%), lateness p99 {} ms",
        100.0 * rate / bare_rate,
        ms(&lateness, 0.99)
    );
    drop(env);
    Ok(())
}
