//! `tde plan …` and `tde meeting …`: the plans service from the command line.

use chrono::{NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};
use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_proto::plans::v1::steering_meeting_service_client::SteeringMeetingServiceClient;

use super::{Target, status};
use crate::output::{Format, table, to_json};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanStatusArg {
    Draft,
    Active,
    Completed,
    Stopped,
}

impl From<PlanStatusArg> for pb::PlanStatus {
    fn from(s: PlanStatusArg) -> Self {
        match s {
            PlanStatusArg::Draft => Self::Draft,
            PlanStatusArg::Active => Self::Active,
            PlanStatusArg::Completed => Self::Completed,
            PlanStatusArg::Stopped => Self::Stopped,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Creates the plan of a registered territory.
    Create {
        #[arg(long)]
        territory: String,
        /// First day of plan year 1 (YYYY-MM-DD).
        #[arg(long)]
        start: String,
        #[arg(long, default_value = "Plan d'engagement")]
        title: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    Get {
        id: String,
    },
    List {
        #[arg(long, value_enum)]
        status: Option<PlanStatusArg>,
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Adds a charter version to sign.
    Charter {
        #[arg(long)]
        plan: String,
        /// Where the document is kept.
        #[arg(long)]
        document: String,
        /// SHA-256 of the document (64 hex digits).
        #[arg(long)]
        sha256: String,
        /// "Name;role" or "Name;role;e-mail", once per signatory.
        #[arg(long = "signatory", required = true)]
        signatories: Vec<String>,
        #[arg(long, default_value = "")]
        summary: String,
    },
    /// Records a signature of the current charter version.
    Sign {
        #[arg(long)]
        plan: String,
        #[arg(long)]
        version: i32,
        /// Index of the signatory (0 for the first).
        #[arg(long)]
        signatory: i32,
        /// Date of the signature; today by default.
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// Submits a plan year's programme for funding.
    Submit {
        #[arg(long)]
        plan: String,
        #[arg(long)]
        year: i32,
    },
    Stop {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MeetingCommand {
    /// Schedules a steering meeting, in the territory's local time.
    Schedule {
        #[arg(long)]
        plan: String,
        /// Local start, e.g. 2027-03-28T10:00.
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long, default_value = "")]
        place: String,
        #[arg(long, default_value = "")]
        video_link: String,
        #[arg(long, default_value = "")]
        agenda: String,
    },
    Reschedule {
        id: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
    },
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Meetings starting in a window, across every territory you see.
    List {
        /// First day (YYYY-MM-DD, UTC); today by default.
        #[arg(long)]
        from: Option<NaiveDate>,
        #[arg(long, default_value_t = 30)]
        days: i64,
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
}

fn plan_status_name(s: i32) -> String {
    pb::PlanStatus::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("PLAN_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// Prints each message as JSON.
fn json_each<M: prost::Message>(items: &[M], full_name: &str) -> anyhow::Result<()> {
    for item in items {
        println!("{}", to_json(item, full_name)?);
    }
    Ok(())
}

fn print_plans(plans: &[pb::Plan], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json_each(plans, "tde.plans.v1.Plan");
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "territory",
                "status",
                "start",
                "charter",
                "years without meeting",
                "etag"
            ],
            plans
                .iter()
                .map(|p| {
                    let charter = p.charter.as_ref();
                    vec![
                        p.id.clone(),
                        p.territory_name.clone(),
                        plan_status_name(p.status),
                        p.start_date.clone(),
                        match charter {
                            Some(c) if c.signed => format!("v{} signed", c.versions.len()),
                            Some(c) if !c.versions.is_empty() => {
                                format!("v{} to sign", c.versions.len())
                            }
                            _ => "none".into(),
                        },
                        p.years_without_meeting
                            .iter()
                            .map(|y| y.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        p.etag.clone(),
                    ]
                })
                .collect(),
        )
    );
    for p in plans.iter().filter(|_| plans.len() == 1) {
        println!(
            "{}",
            table(
                &[
                    "year",
                    "from",
                    "to (excl.)",
                    "budget",
                    "submissions",
                    "changed since"
                ],
                p.years
                    .iter()
                    .map(|y| {
                        vec![
                            y.number.to_string(),
                            y.start_date.clone(),
                            y.end_date.clone(),
                            tde_runtime::format::euros(y.budget_cents),
                            y.submissions.len().to_string(),
                            if y.changed_since_submission {
                                "yes"
                            } else {
                                ""
                            }
                            .into(),
                        ]
                    })
                    .collect(),
            )
        );
    }
    Ok(())
}

fn print_meetings(meetings: &[pb::SteeringMeeting], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return json_each(meetings, "tde.plans.v1.SteeringMeeting");
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "territory",
                "local start",
                "time zone",
                "status",
                "seq",
                "place / link",
                "etag"
            ],
            meetings
                .iter()
                .map(|m| {
                    vec![
                        m.id.clone(),
                        m.territory_id.clone(),
                        m.start_local.clone(),
                        m.time_zone.clone(),
                        pb::MeetingStatus::try_from(m.status)
                            .map(|s| {
                                s.as_str_name()
                                    .trim_start_matches("MEETING_STATUS_")
                                    .to_lowercase()
                            })
                            .unwrap_or_default(),
                        m.sequence.to_string(),
                        if m.place.is_empty() {
                            m.video_link.clone()
                        } else {
                            m.place.clone()
                        },
                        m.etag.clone(),
                    ]
                })
                .collect(),
        )
    );
    Ok(())
}

fn signatory(raw: &str) -> anyhow::Result<pb::Signatory> {
    let mut parts = raw.split(';').map(str::trim);
    let (Some(name), Some(role)) = (parts.next(), parts.next()) else {
        anyhow::bail!("--signatory {raw:?}: expected \"Name;role\" or \"Name;role;e-mail\"");
    };
    Ok(pb::Signatory {
        name: name.into(),
        role: role.into(),
        email: parts.next().unwrap_or_default().into(),
        signed_on: String::new(),
    })
}

pub async fn plan(target: &Target, format: Format, command: PlanCommand) -> anyhow::Result<()> {
    let mut client = PlanServiceClient::new(target.channel().await?);
    let plan = match command {
        PlanCommand::Create {
            territory,
            start,
            title,
            request_id,
        } => {
            client
                .create_plan(pb::CreatePlanRequest {
                    territory_id: territory,
                    title,
                    start_date: start,
                    request_id,
                })
                .await
                .map_err(status)?
                .into_inner()
                .plan
        }
        PlanCommand::Get { id } => {
            client
                .get_plan(pb::GetPlanRequest { id })
                .await
                .map_err(status)?
                .into_inner()
                .plan
        }
        PlanCommand::List {
            status: s,
            region,
            limit,
        } => {
            let page = client
                .list_plans(pb::ListPlansRequest {
                    status: s.map_or(0, |s| pb::PlanStatus::from(s) as i32),
                    region_code: region,
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            return print_plans(&page.plans, format);
        }
        PlanCommand::Charter {
            plan,
            document,
            sha256,
            signatories,
            summary,
        } => {
            client
                .add_charter_version(pb::AddCharterVersionRequest {
                    plan_id: plan,
                    etag: String::new(),
                    document_ref: document,
                    content_sha256: sha256,
                    change_summary: summary,
                    signatories: signatories
                        .iter()
                        .map(|s| signatory(s))
                        .collect::<anyhow::Result<_>>()?,
                })
                .await
                .map_err(status)?
                .into_inner()
                .plan
        }
        PlanCommand::Sign {
            plan,
            version,
            signatory,
            on,
        } => {
            let r = client
                .sign_charter(pb::SignCharterRequest {
                    plan_id: plan,
                    etag: String::new(),
                    version_number: version,
                    signatory_index: signatory,
                    signed_on: on.unwrap_or_else(|| Utc::now().date_naive()).to_string(),
                })
                .await
                .map_err(status)?
                .into_inner();
            if r.fully_signed && format == Format::Table {
                println!("charter fully signed: the plan is active");
            }
            r.plan
        }
        PlanCommand::Submit { plan, year } => {
            let r = client
                .submit_plan_year(pb::SubmitPlanYearRequest {
                    plan_id: plan,
                    etag: String::new(),
                    year,
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(s) = &r.submission
                && format == Format::Table
            {
                println!(
                    "year {year} submitted ({}): {}",
                    if r.amendment {
                        format!("amendment, submission {}", s.number)
                    } else {
                        "first submission".into()
                    },
                    tde_runtime::format::euros(s.budget_cents)
                );
            }
            r.plan
        }
        PlanCommand::Stop { id, reason } => {
            client
                .stop_plan(pb::StopPlanRequest {
                    id,
                    etag: String::new(),
                    reason,
                })
                .await
                .map_err(status)?
                .into_inner()
                .plan
        }
    };
    print_plans(plan.as_slice(), format)
}

pub async fn meeting(
    target: &Target,
    format: Format,
    command: MeetingCommand,
) -> anyhow::Result<()> {
    let mut client = SteeringMeetingServiceClient::new(target.channel().await?);
    let meeting = match command {
        MeetingCommand::Schedule {
            plan,
            start,
            end,
            place,
            video_link,
            agenda,
        } => {
            client
                .schedule_steering_meeting(pb::ScheduleSteeringMeetingRequest {
                    plan_id: plan,
                    start_local: start,
                    end_local: end,
                    place,
                    video_link,
                    agenda,
                    request_id: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .meeting
        }
        MeetingCommand::Reschedule { id, start, end } => {
            client
                .reschedule_steering_meeting(pb::RescheduleSteeringMeetingRequest {
                    id,
                    etag: String::new(),
                    start_local: start,
                    end_local: end,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .meeting
        }
        MeetingCommand::Cancel { id, reason } => {
            client
                .cancel_steering_meeting(pb::CancelSteeringMeetingRequest {
                    id,
                    etag: String::new(),
                    reason,
                })
                .await
                .map_err(status)?
                .into_inner()
                .meeting
        }
        MeetingCommand::List { from, days, limit } => {
            let from = from
                .unwrap_or_else(|| Utc::now().date_naive())
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
                .unwrap_or_else(Utc::now);
            let page = client
                .list_steering_meetings(pb::ListSteeringMeetingsRequest {
                    start_time_from: Some(tde_runtime::api::timestamp(from)),
                    start_time_to: Some(tde_runtime::api::timestamp(
                        from + chrono::Duration::days(days),
                    )),
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            return print_meetings(&page.meetings, format);
        }
    };
    print_meetings(meeting.as_slice(), format)
}
