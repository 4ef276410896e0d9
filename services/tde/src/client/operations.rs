//! `tde dead-letter …` and `tde outbox …`: what operators look after — events a consumer
//! could never process, and events the bus refused — listed and put back.

use clap::Subcommand;
use tde_proto::operations::v1 as pb;
use tde_proto::operations::v1::operations_service_client::OperationsServiceClient;

use super::{Target, status};
use crate::output::{Format, table, to_json};

fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(tde_runtime::api::from_timestamp)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Events consumers parked, oldest first (scope operations:read).
    List {
        /// Only this service, e.g. plans.
        #[arg(long)]
        service: Option<String>,
        /// Only this consumer, e.g. plans_territories.
        #[arg(long)]
        consumer: Option<String>,
        /// Also those replayed already.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Processes dead letters again through their consumer (scope operations:admin): the
    /// ids given, or every one of the service (of --consumer) not replayed yet.
    Replay {
        #[arg(long)]
        service: String,
        #[arg(long)]
        consumer: Option<String>,
        ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Events the bus refused for good, waiting for an operator (scope operations:read).
    Parked {
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Puts parked events back in line (the ids given, or all of the service); scope
    /// operations:admin.
    Republish {
        #[arg(long)]
        service: String,
        event_ids: Vec<String>,
    },
}

pub async fn dead_letter(
    target: &Target,
    format: Format,
    command: DeadLetterCommand,
) -> anyhow::Result<()> {
    let mut client = OperationsServiceClient::new(target.channel().await?);
    match command {
        DeadLetterCommand::List {
            service,
            consumer,
            all,
            page_size,
            page_token,
        } => {
            let r = client
                .list_dead_letters(pb::ListDeadLettersRequest {
                    service: service.unwrap_or_default(),
                    consumer: consumer.unwrap_or_default(),
                    include_replayed: all,
                    page_size,
                    page_token,
                })
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => println!(
                    "{}",
                    to_json(&r, "tde.operations.v1.ListDeadLettersResponse")?
                ),
                Format::Table => {
                    println!(
                        "{}",
                        table(
                            &[
                                "id", "service", "consumer", "event", "parked", "replayed", "error"
                            ],
                            r.dead_letters
                                .iter()
                                .map(|d| vec![
                                    d.id.clone(),
                                    d.service.clone(),
                                    d.consumer.clone(),
                                    d.event_type.clone(),
                                    time(&d.park_time),
                                    time(&d.replay_time),
                                    d.error.chars().take(120).collect(),
                                ])
                                .collect(),
                        )
                    );
                    if !r.next_page_token.is_empty() {
                        println!("next page: --page-token {}", r.next_page_token);
                    }
                }
            }
        }
        DeadLetterCommand::Replay {
            service,
            consumer,
            ids,
        } => {
            let r = client
                .replay_dead_letters(pb::ReplayDeadLettersRequest {
                    service,
                    ids,
                    consumer: consumer.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => println!(
                    "{}",
                    to_json(&r, "tde.operations.v1.ReplayDeadLettersResponse")?
                ),
                Format::Table => println!(
                    "{}",
                    table(
                        &["id", "replayed", "error"],
                        r.outcomes
                            .iter()
                            .map(|o| vec![o.id.clone(), o.replayed.to_string(), o.error.clone()])
                            .collect(),
                    )
                ),
            }
        }
    }
    Ok(())
}

pub async fn outbox(target: &Target, format: Format, command: OutboxCommand) -> anyhow::Result<()> {
    let mut client = OperationsServiceClient::new(target.channel().await?);
    match command {
        OutboxCommand::Parked {
            service,
            page_size,
            page_token,
        } => {
            let r = client
                .list_parked_events(pb::ListParkedEventsRequest {
                    service: service.unwrap_or_default(),
                    page_size,
                    page_token,
                })
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => println!(
                    "{}",
                    to_json(&r, "tde.operations.v1.ListParkedEventsResponse")?
                ),
                Format::Table => {
                    println!(
                        "{}",
                        table(
                            &[
                                "service",
                                "event id",
                                "type",
                                "aggregate",
                                "bytes",
                                "parked",
                                "reason"
                            ],
                            r.parked_events
                                .iter()
                                .map(|e| vec![
                                    e.service.clone(),
                                    e.event_id.clone(),
                                    e.event_type.clone(),
                                    e.aggregate_id.clone(),
                                    e.payload_bytes.to_string(),
                                    time(&e.park_time),
                                    e.reason.clone(),
                                ])
                                .collect(),
                        )
                    );
                    if !r.next_page_token.is_empty() {
                        println!("next page: --page-token {}", r.next_page_token);
                    }
                }
            }
        }
        OutboxCommand::Republish { service, event_ids } => {
            let r = client
                .republish_parked_events(pb::RepublishParkedEventsRequest { service, event_ids })
                .await
                .map_err(status)?
                .into_inner();
            println!("{} event(s) back in line", r.republished);
        }
    }
    Ok(())
}
