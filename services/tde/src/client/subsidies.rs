//! `tde subsidy …`: the subsidies service from the command line — envelopes, decisions,
//! payments, the ledger, reconciliation and exports.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::envelope_service_client::EnvelopeServiceClient;
use tde_proto::subsidies::v1::ledger_service_client::LedgerServiceClient;
use tde_proto::subsidies::v1::payment_service_client::PaymentServiceClient;
use tde_proto::subsidies::v1::subsidy_service_client::SubsidyServiceClient;

use super::{Target, status};
use crate::output::{Format, table, to_json};
use tde_runtime::format::euros;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActKindArg {
    /// Convention attributive.
    Convention,
    /// Arrêté attributif.
    Order,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PaymentKindArg {
    Advance,
    Balance,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutcomeArg {
    Sent,
    Paid,
    Failed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SubsidyStatusArg {
    Requested,
    Proposed,
    Granted,
    PartiallyGranted,
    Refused,
    Closed,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportArg {
    /// SCDL « subventions » (open data).
    Scdl,
    Ledger,
}

#[derive(Debug, Subcommand)]
pub enum EnvelopeCommand {
    /// Opens a budget year's envelope (national, or a région's sub-envelope).
    Create {
        #[arg(long)]
        year: i32,
        /// In euro cents.
        #[arg(long)]
        amount_cents: i64,
        /// A région's INSEE code; none for the national envelope.
        #[arg(long, default_value = "")]
        region: String,
        /// Advance paid at approval, in percent (the configured default when 0).
        #[arg(long, default_value_t = 0)]
        advance_percent: i32,
        #[arg(long)]
        reason: String,
        /// The act deciding the amount.
        #[arg(long)]
        act: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    List {
        #[arg(long, default_value_t = 0)]
        year: i32,
    },
    /// Raises or lowers an envelope (never below what is committed).
    Change {
        id: String,
        #[arg(long)]
        amount_cents: i64,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        act: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubsidyCommand {
    /// Yearly envelopes.
    Envelope {
        #[command(subcommand)]
        command: EnvelopeCommand,
    },
    Get {
        id: String,
    },
    List {
        #[arg(long, default_value_t = 0)]
        year: i32,
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value = "")]
        territory: String,
        #[arg(long, default_value = "")]
        plan: String,
        #[arg(long, value_enum)]
        status: Option<SubsidyStatusArg>,
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// Proposes a decision (someone else approves it).
    Propose {
        id: String,
        #[arg(long)]
        amount_cents: i64,
        #[arg(long, value_enum, default_value_t = ActKindArg::Convention)]
        act_kind: ActKindArg,
        #[arg(long)]
        act_reference: String,
        /// YYYY-MM-DD.
        #[arg(long)]
        act_date: String,
        /// The beneficiary's SIRET.
        #[arg(long)]
        siret: String,
        #[arg(long)]
        budget_year: i32,
        /// Chorus legal-commitment number (EJ), if known.
        #[arg(long, default_value = "")]
        ej: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approves the proposed decision and commits it against the envelope.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        ej: String,
    },
    Refuse {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Decommits what will not be paid.
    Decommit {
        id: String,
        #[arg(long)]
        amount_cents: i64,
        #[arg(long)]
        reason: String,
    },
    /// Records a clawback order of money paid.
    Clawback {
        id: String,
        #[arg(long)]
        amount_cents: i64,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "")]
        reference: String,
    },
    /// Granted years whose review is overdue, with the balance waiting on it.
    Overdue,
    /// Payments of a subsidy, or every payment you see.
    Payments {
        #[arg(long, default_value = "")]
        subsidy: String,
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// Schedules a tranche (the balance only after the year's review).
    SchedulePayment {
        subsidy: String,
        #[arg(long, value_enum)]
        kind: PaymentKindArg,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    AuthorisePayment {
        id: String,
    },
    /// Records what the paying system reported.
    RecordPayment {
        id: String,
        #[arg(long, value_enum)]
        outcome: OutcomeArg,
        #[arg(long, default_value = "")]
        reference: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// YYYY-MM-DD; today by default.
        #[arg(long, default_value = "")]
        on: String,
    },
    /// Ledger entries.
    Ledger {
        #[arg(long, default_value = "")]
        subsidy: String,
        #[arg(long, default_value_t = 0)]
        year: i32,
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// Per budget year and région: requested, granted, committed, paid, available.
    Dashboard {
        #[arg(long, default_value_t = 0)]
        year: i32,
    },
    /// Recomputes every balance from the ledger; exits with an error on any difference.
    Reconcile,
    /// A CSV export: SCDL « subventions » or the ledger.
    Export {
        #[arg(long, value_enum)]
        format: ExportArg,
        #[arg(long, default_value_t = 0)]
        year: i32,
        /// The file to write; standard output when none.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn name(raw: &str, prefix: &str) -> String {
    raw.trim_start_matches(prefix).to_lowercase()
}

fn subsidy_status(s: i32) -> String {
    pb::SubsidyStatus::try_from(s)
        .map(|s| name(s.as_str_name(), "SUBSIDY_STATUS_"))
        .unwrap_or_default()
}

fn print_json<M: prost::Message>(items: &[M], full_name: &str) -> anyhow::Result<()> {
    for item in items {
        println!("{}", to_json(item, full_name)?);
    }
    Ok(())
}

fn print_subsidies(items: &[pb::Subsidy], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(items, "tde.subsidies.v1.Subsidy");
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "territory",
                "year",
                "avenant",
                "status",
                "requested",
                "granted",
                "paid",
                "reviewed",
                "etag",
            ],
            items
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.territory_name.clone(),
                        format!("{} ({})", s.plan_year, s.budget_year),
                        s.amendment_number.to_string(),
                        subsidy_status(s.status),
                        euros(s.requested_cents),
                        euros(s.granted_cents),
                        euros(s.paid_cents),
                        if s.reviewed { "yes" } else { "" }.into(),
                        s.etag.clone(),
                    ]
                })
                .collect(),
        )
    );
    Ok(())
}

fn print_envelopes(items: &[pb::Envelope], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(items, "tde.subsidies.v1.Envelope");
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "year",
                "région",
                "amount",
                "committed",
                "paid",
                "available",
                "advance %",
                "etag"
            ],
            items
                .iter()
                .map(|e| {
                    vec![
                        e.id.clone(),
                        e.budget_year.to_string(),
                        if e.region_code.is_empty() {
                            "national".into()
                        } else {
                            e.region_code.clone()
                        },
                        euros(e.amount_cents),
                        euros(e.committed_cents),
                        euros(e.paid_cents),
                        euros(e.available_cents),
                        e.advance_percent.to_string(),
                        e.etag.clone(),
                    ]
                })
                .collect(),
        )
    );
    Ok(())
}

fn print_payments(items: &[pb::Payment], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(items, "tde.subsidies.v1.Payment");
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "subsidy",
                "kind",
                "amount",
                "status",
                "reference",
                "reason",
                "etag"
            ],
            items
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        p.subsidy_id.clone(),
                        pb::PaymentKind::try_from(p.kind)
                            .map(|k| name(k.as_str_name(), "PAYMENT_KIND_"))
                            .unwrap_or_default(),
                        euros(p.amount_cents),
                        pb::PaymentStatus::try_from(p.status)
                            .map(|s| name(s.as_str_name(), "PAYMENT_STATUS_"))
                            .unwrap_or_default(),
                        p.reference.clone(),
                        p.failure_reason.clone(),
                        p.etag.clone(),
                    ]
                })
                .collect(),
        )
    );
    Ok(())
}

async fn envelope(target: &Target, format: Format, command: EnvelopeCommand) -> anyhow::Result<()> {
    let mut client = EnvelopeServiceClient::new(target.channel().await?);
    let envelopes = match command {
        EnvelopeCommand::Create {
            year,
            amount_cents,
            region,
            advance_percent,
            reason,
            act,
            request_id,
        } => client
            .create_envelope(pb::CreateEnvelopeRequest {
                budget_year: year,
                region_code: region,
                amount_cents,
                advance_percent,
                reason,
                act_reference: act,
                request_id,
            })
            .await
            .map_err(status)?
            .into_inner()
            .envelope
            .into_iter()
            .collect(),
        EnvelopeCommand::List { year } => {
            client
                .list_envelopes(pb::ListEnvelopesRequest {
                    budget_year: year,
                    page_size: 500,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .envelopes
        }
        EnvelopeCommand::Change {
            id,
            amount_cents,
            reason,
            act,
        } => client
            .change_envelope_amount(pb::ChangeEnvelopeAmountRequest {
                id,
                etag: String::new(),
                amount_cents,
                reason,
                act_reference: act,
            })
            .await
            .map_err(status)?
            .into_inner()
            .envelope
            .into_iter()
            .collect(),
    };
    print_envelopes(&envelopes, format)
}

pub async fn subsidy(
    target: &Target,
    format: Format,
    command: SubsidyCommand,
) -> anyhow::Result<()> {
    let channel = target.channel().await?;
    let mut subsidies = SubsidyServiceClient::new(channel.clone());
    let mut payments = PaymentServiceClient::new(channel.clone());
    let mut ledger = LedgerServiceClient::new(channel);
    let one = |s: Option<pb::Subsidy>| s.into_iter().collect::<Vec<_>>();
    let shown = match command {
        SubsidyCommand::Envelope { command } => return envelope(target, format, command).await,
        SubsidyCommand::Get { id } => one(subsidies
            .get_subsidy(pb::GetSubsidyRequest { id })
            .await
            .map_err(status)?
            .into_inner()
            .subsidy),
        SubsidyCommand::List {
            year,
            region,
            territory,
            plan,
            status: s,
            limit,
        } => {
            subsidies
                .list_subsidies(pb::ListSubsidiesRequest {
                    budget_year: year,
                    region_code: region,
                    territory_id: territory,
                    plan_id: plan,
                    status: s.map_or(0, |s| match s {
                        SubsidyStatusArg::Requested => pb::SubsidyStatus::Requested,
                        SubsidyStatusArg::Proposed => pb::SubsidyStatus::Proposed,
                        SubsidyStatusArg::Granted => pb::SubsidyStatus::Granted,
                        SubsidyStatusArg::PartiallyGranted => pb::SubsidyStatus::PartiallyGranted,
                        SubsidyStatusArg::Refused => pb::SubsidyStatus::Refused,
                        SubsidyStatusArg::Closed => pb::SubsidyStatus::Closed,
                    } as i32),
                    page_size: limit,
                    page_token: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .subsidies
        }
        SubsidyCommand::Propose {
            id,
            amount_cents,
            act_kind,
            act_reference,
            act_date,
            siret,
            budget_year,
            ej,
            comment,
        } => one(subsidies
            .propose_decision(pb::ProposeDecisionRequest {
                id,
                etag: String::new(),
                amount_cents,
                legal_act: Some(pb::LegalAct {
                    kind: match act_kind {
                        ActKindArg::Convention => pb::LegalActKind::Convention,
                        ActKindArg::Order => pb::LegalActKind::Order,
                    } as i32,
                    reference: act_reference,
                    date: act_date,
                }),
                beneficiary_siret: siret,
                budget_year,
                commitment_number: ej,
                comment,
            })
            .await
            .map_err(status)?
            .into_inner()
            .subsidy),
        SubsidyCommand::Approve { id, ej } => {
            let r = subsidies
                .approve_decision(pb::ApproveDecisionRequest {
                    id,
                    etag: String::new(),
                    commitment_number: ej,
                })
                .await
                .map_err(status)?
                .into_inner();
            print_subsidies(&one(r.subsidy), format)?;
            return print_payments(&r.advance.into_iter().collect::<Vec<_>>(), format);
        }
        SubsidyCommand::Refuse { id, reason } => one(subsidies
            .refuse_subsidy(pb::RefuseSubsidyRequest {
                id,
                etag: String::new(),
                reason,
            })
            .await
            .map_err(status)?
            .into_inner()
            .subsidy),
        SubsidyCommand::Decommit {
            id,
            amount_cents,
            reason,
        } => one(subsidies
            .decommit(pb::DecommitRequest {
                id,
                etag: String::new(),
                amount_cents,
                reason,
            })
            .await
            .map_err(status)?
            .into_inner()
            .subsidy),
        SubsidyCommand::Clawback {
            id,
            amount_cents,
            reason,
            reference,
        } => one(subsidies
            .order_clawback(pb::OrderClawbackRequest {
                id,
                etag: String::new(),
                amount_cents,
                reason,
                reference,
            })
            .await
            .map_err(status)?
            .into_inner()
            .subsidy),
        SubsidyCommand::Overdue => {
            let overdue = subsidies
                .list_overdue_reviews(pb::ListOverdueReviewsRequest {
                    page_size: 500,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .overdue;
            if format == Format::Json {
                return print_json(&overdue, "tde.subsidies.v1.OverdueReview");
            }
            println!(
                "{}",
                table(
                    &[
                        "subsidy",
                        "territory",
                        "plan year",
                        "review due",
                        "balance waiting"
                    ],
                    overdue
                        .iter()
                        .map(|o| {
                            let s = o.subsidy.clone().unwrap_or_default();
                            vec![
                                s.id,
                                s.territory_name,
                                s.plan_year.to_string(),
                                o.review_due_date.clone(),
                                euros(o.balance_waiting_cents),
                            ]
                        })
                        .collect(),
                )
            );
            return Ok(());
        }
        SubsidyCommand::Payments { subsidy, limit } => {
            let list = payments
                .list_payments(pb::ListPaymentsRequest {
                    subsidy_id: subsidy,
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .payments;
            return print_payments(&list, format);
        }
        SubsidyCommand::SchedulePayment {
            subsidy,
            kind,
            request_id,
        } => {
            let p = payments
                .schedule_payment(pb::SchedulePaymentRequest {
                    subsidy_id: subsidy,
                    kind: match kind {
                        PaymentKindArg::Advance => pb::PaymentKind::Advance,
                        PaymentKindArg::Balance => pb::PaymentKind::Balance,
                    } as i32,
                    request_id,
                })
                .await
                .map_err(status)?
                .into_inner()
                .payment;
            return print_payments(&p.into_iter().collect::<Vec<_>>(), format);
        }
        SubsidyCommand::AuthorisePayment { id } => {
            let p = payments
                .authorise_payment(pb::AuthorisePaymentRequest {
                    id,
                    etag: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .payment;
            return print_payments(&p.into_iter().collect::<Vec<_>>(), format);
        }
        SubsidyCommand::RecordPayment {
            id,
            outcome,
            reference,
            reason,
            on,
        } => {
            let p = payments
                .record_payment(pb::RecordPaymentRequest {
                    id,
                    etag: String::new(),
                    outcome: match outcome {
                        OutcomeArg::Sent => pb::PaymentOutcome::Sent,
                        OutcomeArg::Paid => pb::PaymentOutcome::Paid,
                        OutcomeArg::Failed => pb::PaymentOutcome::Failed,
                    } as i32,
                    reference,
                    failure_reason: reason,
                    paid_on: on,
                })
                .await
                .map_err(status)?
                .into_inner()
                .payment;
            return print_payments(&p.into_iter().collect::<Vec<_>>(), format);
        }
        SubsidyCommand::Ledger {
            subsidy,
            year,
            limit,
        } => {
            let entries = ledger
                .list_ledger_entries(pb::ListLedgerEntriesRequest {
                    subsidy_id: subsidy,
                    budget_year: year,
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner()
                .entries;
            if format == Format::Json {
                return print_json(&entries, "tde.subsidies.v1.LedgerEntry");
            }
            println!(
                "{}",
                table(
                    &[
                        "id",
                        "kind",
                        "amount",
                        "year",
                        "région",
                        "subsidy",
                        "reference",
                        "actor"
                    ],
                    entries
                        .iter()
                        .map(|e| {
                            vec![
                                e.id.clone(),
                                pb::LedgerEntryKind::try_from(e.kind)
                                    .map(|k| name(k.as_str_name(), "LEDGER_ENTRY_KIND_"))
                                    .unwrap_or_default(),
                                euros(e.amount_cents),
                                e.budget_year.to_string(),
                                e.region_code.clone(),
                                e.subsidy_id.clone(),
                                e.reference.clone(),
                                e.actor.clone(),
                            ]
                        })
                        .collect(),
                )
            );
            return Ok(());
        }
        SubsidyCommand::Dashboard { year } => {
            let rows = ledger
                .get_dashboard(pb::GetDashboardRequest { budget_year: year })
                .await
                .map_err(status)?
                .into_inner()
                .rows;
            if format == Format::Json {
                return print_json(&rows, "tde.subsidies.v1.DashboardRow");
            }
            println!(
                "{}",
                table(
                    &[
                        "year",
                        "région",
                        "requested",
                        "granted",
                        "committed",
                        "paid",
                        "available"
                    ],
                    rows.iter()
                        .map(|r| {
                            vec![
                                r.budget_year.to_string(),
                                if r.region_code.is_empty() {
                                    "total".into()
                                } else {
                                    r.region_code.clone()
                                },
                                euros(r.requested_cents),
                                euros(r.granted_cents),
                                euros(r.committed_cents),
                                euros(r.paid_cents),
                                euros(r.available_cents),
                            ]
                        })
                        .collect(),
                )
            );
            return Ok(());
        }
        SubsidyCommand::Reconcile => {
            let report = ledger
                .reconcile(pb::ReconcileRequest {})
                .await
                .map_err(status)?
                .into_inner();
            if format == Format::Json {
                println!(
                    "{}",
                    to_json(&report, "tde.subsidies.v1.ReconcileResponse")?
                );
            } else {
                println!(
                    "{} envelopes and {} subsidies checked against {} ledger entries",
                    report.envelopes_checked, report.subsidies_checked, report.entries_read
                );
                println!(
                    "{}",
                    table(
                        &["resource", "id", "field", "stored", "ledger"],
                        report
                            .discrepancies
                            .iter()
                            .map(|d| {
                                vec![
                                    d.resource_type.clone(),
                                    d.resource_id.clone(),
                                    d.field.clone(),
                                    d.stored_cents.to_string(),
                                    d.ledger_cents.to_string(),
                                ]
                            })
                            .collect(),
                    )
                );
            }
            if !report.discrepancies.is_empty() {
                anyhow::bail!(
                    "{} balances differ from the ledger",
                    report.discrepancies.len()
                );
            }
            return Ok(());
        }
        SubsidyCommand::Export {
            format: f,
            year,
            out,
        } => {
            use tokio_stream::StreamExt as _;
            let mut stream = ledger
                .export_subsidies(pb::ExportSubsidiesRequest {
                    format: match f {
                        ExportArg::Scdl => pb::ExportFormat::Scdl,
                        ExportArg::Ledger => pb::ExportFormat::Ledger,
                    } as i32,
                    budget_year: year,
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::fs::File::create(path)?),
                None => Box::new(std::io::stdout().lock()),
            };
            while let Some(chunk) = stream.next().await {
                sink.write_all(&chunk.map_err(status)?.data)?;
            }
            sink.flush()?;
            return Ok(());
        }
    };
    print_subsidies(&shown, format)
}
