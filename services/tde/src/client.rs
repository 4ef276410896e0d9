//! Operator commands: gRPC calls to a running tde (`--server`), printed as tables or JSON.

use std::path::Path;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::geography_service_client::GeographyServiceClient;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::client::{self as auth_client, AuthChannel, Bearer, ClientTls};

use crate::output::{Format, table, to_json};

mod matching;
mod notifications;
mod operations;
mod plans;
mod subsidies;
pub use matching::{MatchCommand, ProviderCommand, matching, provider};
pub use notifications::{NotificationCommand, notification};
pub use operations::{DeadLetterCommand, OutboxCommand, dead_letter, outbox};
pub use plans::{MeetingCommand, PlanCommand, meeting, plan};
pub use subsidies::{SubsidyCommand, subsidy};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Commune,
    Epci,
    Departement,
}

impl From<KindArg> for pb::AuthorityKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Commune => Self::Commune,
            KindArg::Epci => Self::Epci,
            KindArg::Departement => Self::Departement,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StageArg {
    Prospect,
    Diagnostic,
    CharterSigned,
    InPath,
    Completed,
    Withdrawn,
}

impl From<StageArg> for pb::Stage {
    fn from(s: StageArg) -> Self {
        match s {
            StageArg::Prospect => Self::Prospect,
            StageArg::Diagnostic => Self::Diagnostic,
            StageArg::CharterSigned => Self::CharterSigned,
            StageArg::InPath => Self::InPath,
            StageArg::Completed => Self::Completed,
            StageArg::Withdrawn => Self::Withdrawn,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IssueArg {
    Any,
    Merged,
    Vanished,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResolutionArg {
    Keep,
    Merge,
    Withdraw,
}

impl From<ResolutionArg> for pb::GeographyResolution {
    fn from(r: ResolutionArg) -> Self {
        match r {
            ResolutionArg::Keep => Self::Keep,
            ResolutionArg::Merge => Self::Merge,
            ResolutionArg::Withdraw => Self::Withdraw,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum GeographyCommand {
    /// Imports a vintage: the one shipped with tde, or a directory holding communes.json,
    /// epci.json, departements.json and regions.json (the package's raw files, or the compact
    /// form of `tde geography convert`).
    Import {
        /// The vintage's directory; the vintage shipped with tde when absent.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The vintage (a year) of raw files; a compact directory names its own.
        #[arg(long)]
        vintage: Option<String>,
    },
    /// Turns an official release of `@etalab/decoupage-administratif` (the package's root, or
    /// its data folder) into an importable vintage in compact form.
    Convert {
        /// The package (e.g. unpacked from `npm pack @etalab/decoupage-administratif`).
        #[arg(long)]
        from: std::path::PathBuf,
        /// The directory to write, e.g. services/territories/geography/2027.
        #[arg(long)]
        to: std::path::PathBuf,
        /// The vintage (millésime) the release is, a year.
        #[arg(long)]
        vintage: String,
        /// The package's version, when the folder has no package.json.
        #[arg(long)]
        package_version: Option<String>,
    },
    /// Shows the loaded vintage.
    Vintage,
    /// Shows a commune by INSEE code.
    Commune { code: String },
    /// Shows an EPCI by SIREN with its members.
    Epci { siren: String },
    /// Searches communes by name (case, accents, hyphens and apostrophes ignored).
    Search {
        query: String,
        #[arg(long)]
        departement: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
}

#[derive(Debug, Subcommand)]
pub enum TerritoryCommand {
    /// Registers a territory from its kind and official code.
    Register {
        #[arg(long, value_enum)]
        kind: KindArg,
        /// INSEE code (commune, département) or SIREN (EPCI).
        #[arg(long)]
        code: String,
        /// Makes a retried registration create exactly one territory.
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Shows one territory.
    Get { id: String },
    /// Lists territories.
    List {
        #[arg(long, value_enum)]
        stage: Option<StageArg>,
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        departement: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Only the territories with a geography issue to resolve (of this kind).
        #[arg(long, value_enum)]
        geography_issue: Option<IssueArg>,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Resolves the geography issue a new vintage raised: keep this territory as the commune
    /// (the others sharing it are withdrawn), merge the others into it, or (a code that
    /// vanished) keep it as the authority --successor, or withdraw it.
    Resolve {
        id: String,
        #[arg(long, value_enum)]
        resolution: ResolutionArg,
        /// Why; recorded in the history of the territories withdrawn.
        #[arg(long, default_value = "")]
        reason: String,
        /// Of a territory whose code vanished: the official code of the authority it now is.
        #[arg(long, default_value = "")]
        successor: String,
        #[arg(long, default_value = "")]
        etag: String,
    },
    /// Moves a territory to the next stage of its path.
    Advance {
        id: String,
        #[arg(long, value_enum)]
        to: StageArg,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value = "")]
        etag: String,
    },
    /// Records the steering body (instance de pilotage): who is invited to its meetings.
    SteeringBody {
        id: String,
        #[arg(long)]
        name: String,
        /// "Name;e-mail;role", once per member.
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Withdraws a territory from the programme.
    Withdraw {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

/// The server the operator commands call, and how they authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    /// Bearer token (`tde token` mints one for `tde dev`).
    pub token: Option<String>,
    /// Mutual TLS, for a server that requires it.
    pub tls: Option<ClientTls>,
}

impl Target {
    pub async fn channel(&self) -> anyhow::Result<AuthChannel> {
        let channel = auth_client::connect(&self.server, self.tls.as_ref())
            .await
            .with_context(|| format!("is tde running at {}?", self.server))?;
        let bearer = match &self.token {
            Some(token) => Bearer::new(token)?,
            None => Bearer::none(),
        };
        Ok(auth_client::with_token(channel, bearer))
    }
}

pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    let mut text = format!("{:?}: {}", e.code(), e.message());
    let details = tonic_types::StatusExt::get_error_details(&e);
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            text.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    anyhow::anyhow!(text)
}

fn stage_name(stage: i32) -> String {
    pb::Stage::try_from(stage)
        .map(|s| s.as_str_name().trim_start_matches("STAGE_").to_lowercase())
        .unwrap_or_default()
}

fn kind_name(kind: i32) -> String {
    pb::AuthorityKind::try_from(kind)
        .map(|k| {
            k.as_str_name()
                .trim_start_matches("AUTHORITY_KIND_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

fn territory_rows(ts: &[pb::Territory]) -> String {
    table(
        &[
            "id",
            "kind",
            "code",
            "name",
            "dép.",
            "région",
            "time zone",
            "stage",
            "etag",
            "geography issue",
        ],
        ts.iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    kind_name(t.kind),
                    t.official_code.clone(),
                    t.name.clone(),
                    t.departement_code.clone(),
                    t.region_code.clone(),
                    t.time_zone.clone(),
                    stage_name(t.stage),
                    t.etag.clone(),
                    t.geography_issue
                        .as_ref()
                        .map(|i| i.description.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

fn print_territory(t: &pb::Territory, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", to_json(t, "tde.territories.v1.Territory")?),
        Format::Table => {
            println!("{}", territory_rows(std::slice::from_ref(t)));
            if !t.stage_history.is_empty() {
                println!(
                    "{}",
                    table(
                        &["from", "to", "when", "who", "reason"],
                        t.stage_history
                            .iter()
                            .map(|c| {
                                vec![
                                    stage_name(c.from_stage),
                                    stage_name(c.to_stage),
                                    c.change_time
                                        .as_ref()
                                        .and_then(tde_runtime::api::from_timestamp)
                                        .map(|t| t.to_rfc3339())
                                        .unwrap_or_default(),
                                    c.actor.clone(),
                                    c.reason.clone(),
                                ]
                            })
                            .collect(),
                    )
                );
            }
            if !t.code_history.is_empty() {
                println!(
                    "{}",
                    table(
                        &["old code", "old name", "new code", "new name", "vintage"],
                        t.code_history
                            .iter()
                            .map(|c| vec![
                                c.old_code.clone(),
                                c.old_name.clone(),
                                c.new_code.clone(),
                                c.new_name.clone(),
                                c.vintage.clone(),
                            ])
                            .collect(),
                    )
                );
            }
            for m in &t.merged_territories {
                println!(
                    "merged into it: {} {} {} ({})",
                    m.id, m.official_code, m.name, m.reason
                );
            }
        }
    }
    Ok(())
}

pub async fn territory(
    target: &Target,
    format: Format,
    command: TerritoryCommand,
) -> anyhow::Result<()> {
    let mut client = TerritoryServiceClient::new(target.channel().await?);
    match command {
        TerritoryCommand::Register {
            kind,
            code,
            request_id,
        } => {
            let r = client
                .register_territory(tonic::Request::new(pb::RegisterTerritoryRequest {
                    kind: pb::AuthorityKind::from(kind) as i32,
                    official_code: code,
                    request_id,
                }))
                .await
                .map_err(status)?
                .into_inner();
            print_territory(&r.territory.unwrap_or_default(), format)
        }
        TerritoryCommand::Get { id } => {
            let r = client
                .get_territory(tonic::Request::new(pb::GetTerritoryRequest { id }))
                .await
                .map_err(status)?
                .into_inner();
            print_territory(&r.territory.unwrap_or_default(), format)
        }
        TerritoryCommand::List {
            stage,
            kind,
            region,
            departement,
            name,
            geography_issue,
            page_size,
            page_token,
        } => {
            let (has_geography_issue, geography_issue_kind) = match geography_issue {
                None => (false, pb::GeographyIssueKind::Unspecified),
                Some(IssueArg::Any) => (true, pb::GeographyIssueKind::Unspecified),
                Some(IssueArg::Merged) => (true, pb::GeographyIssueKind::Merged),
                Some(IssueArg::Vanished) => (true, pb::GeographyIssueKind::Vanished),
            };
            let r = client
                .list_territories(tonic::Request::new(pb::ListTerritoriesRequest {
                    stage: stage.map(|s| pb::Stage::from(s) as i32).unwrap_or(0),
                    kind: kind.map(|k| pb::AuthorityKind::from(k) as i32).unwrap_or(0),
                    region_code: region.unwrap_or_default(),
                    departement_code: departement.unwrap_or_default(),
                    name_query: name.unwrap_or_default(),
                    page_size,
                    page_token,
                    has_geography_issue,
                    geography_issue_kind: geography_issue_kind as i32,
                }))
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => println!(
                    "{}",
                    to_json(&r, "tde.territories.v1.ListTerritoriesResponse")?
                ),
                Format::Table => {
                    println!("{}", territory_rows(&r.territories));
                    if !r.next_page_token.is_empty() {
                        println!("next page: --page-token {}", r.next_page_token);
                    }
                }
            }
            Ok(())
        }
        TerritoryCommand::Advance {
            id,
            to,
            reason,
            etag,
        } => {
            let r = client
                .advance_territory_stage(tonic::Request::new(pb::AdvanceTerritoryStageRequest {
                    id,
                    stage: pb::Stage::from(to) as i32,
                    etag,
                    reason,
                }))
                .await
                .map_err(status)?
                .into_inner();
            print_territory(&r.territory.unwrap_or_default(), format)
        }
        TerritoryCommand::SteeringBody { id, name, members } => {
            let members = members
                .iter()
                .map(|m| {
                    let mut parts = m.split(';').map(str::trim);
                    let (Some(name), Some(email)) = (parts.next(), parts.next()) else {
                        anyhow::bail!("--member {m:?}: expected \"Name;e-mail;role\"");
                    };
                    Ok(pb::Person {
                        name: name.into(),
                        email: email.into(),
                        phone: String::new(),
                        role: parts.next().unwrap_or_default().into(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let r = client
                .update_territory(tonic::Request::new(pb::UpdateTerritoryRequest {
                    territory: Some(pb::Territory {
                        id,
                        steering_body: Some(pb::SteeringBody {
                            name,
                            relies_on_existing_body: false,
                            members,
                        }),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["steering_body".into()],
                    }),
                }))
                .await
                .map_err(status)?
                .into_inner();
            print_territory(&r.territory.unwrap_or_default(), format)
        }
        TerritoryCommand::Resolve {
            id,
            resolution,
            reason,
            successor,
            etag,
        } => {
            let r = client
                .resolve_geography_conflict(tonic::Request::new(
                    pb::ResolveGeographyConflictRequest {
                        id,
                        resolution: pb::GeographyResolution::from(resolution) as i32,
                        reason,
                        successor_code: successor,
                        etag,
                    },
                ))
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => println!(
                    "{}",
                    to_json(&r, "tde.territories.v1.ResolveGeographyConflictResponse")?
                ),
                Format::Table => {
                    print_territory(&r.territory.unwrap_or_default(), format)?;
                    if !r.others.is_empty() {
                        println!("{}", territory_rows(&r.others));
                    }
                }
            }
            Ok(())
        }
        TerritoryCommand::Withdraw { id, reason } => {
            let r = client
                .withdraw_territory(tonic::Request::new(pb::WithdrawTerritoryRequest {
                    id,
                    reason,
                    etag: String::new(),
                }))
                .await
                .map_err(status)?
                .into_inner();
            print_territory(&r.territory.unwrap_or_default(), format)
        }
    }
}

const CHUNK: usize = 1024 * 1024;

/// Streams the four files of the vintage in `dir` (raw or compact), with a progress bar over
/// the bytes sent.
pub async fn import_geography(
    client: &mut GeographyServiceClient<AuthChannel>,
    dir: &Path,
    vintage: &str,
    show_progress: bool,
) -> anyhow::Result<pb::ImportGeographyResponse> {
    let (manifest, files) = tde_territories::reference::read_files(dir)?;
    let year = tde_territories::reference::vintage_of(dir, manifest.as_ref(), Some(vintage))?;
    send_geography(client, &year.to_string(), files, show_progress).await
}

/// Streams the four files (JSON, in the order of `domain::geography::FILES`) of `vintage`.
pub async fn send_geography(
    client: &mut GeographyServiceClient<AuthChannel>,
    vintage: &str,
    files: [Vec<u8>; 4],
    show_progress: bool,
) -> anyhow::Result<pb::ImportGeographyResponse> {
    // The order of `FILES`: regions, départements, communes, EPCI.
    let contents: Vec<(pb::GeographyFile, Vec<u8>)> = [
        pb::GeographyFile::Regions,
        pb::GeographyFile::Departements,
        pb::GeographyFile::Communes,
        pb::GeographyFile::Epci,
    ]
    .into_iter()
    .zip(files)
    .collect();
    let total: u64 = contents.iter().map(|(_, b)| b.len() as u64).sum();
    let bar = if show_progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("sending the {vintage} geography"));
    // A small channel: the bar follows what the server has taken, not what was buffered.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let sender_bar = bar.clone();
    let vintage_owned = vintage.to_string();
    let sender = tokio::spawn(async move {
        for (file, bytes) in contents {
            for chunk in bytes.chunks(CHUNK) {
                let message = pb::ImportGeographyRequest {
                    vintage: vintage_owned.clone(),
                    file: file as i32,
                    data: chunk.to_vec(),
                };
                if tx.send(message).await.is_err() {
                    return;
                }
                sender_bar.inc(chunk.len() as u64);
            }
        }
        sender_bar.set_message("applying");
    });
    let response = client
        .import_geography(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let _ = sender.await;
    bar.finish_and_clear();
    Ok(response.map_err(status)?.into_inner())
}

/// The vintage shipped with tde, as the JSON the import RPC takes.
fn shipped_files() -> anyhow::Result<(String, [Vec<u8>; 4])> {
    let g = tde_territories::reference::shipped_files()?;
    Ok((g.0.to_string(), g.1))
}

/// `tde geography convert`: runs here, without a server.
fn convert(
    from: &Path,
    to: &Path,
    vintage: &str,
    package_version: Option<&str>,
    format: Format,
) -> anyhow::Result<()> {
    let m = tde_territories::reference::convert(from, to, vintage, package_version)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&m)?),
        Format::Table => println!(
            "vintage {} ({} {}) in {}: {} communes, {} EPCI, {} départements, {} régions; import it with `tde geography import --dir {}`",
            m.vintage,
            m.package,
            m.package_version,
            to.display(),
            m.communes,
            m.epcis,
            m.departements,
            m.regions,
            to.display()
        ),
    }
    Ok(())
}

pub async fn geography(
    target: &Target,
    format: Format,
    command: GeographyCommand,
) -> anyhow::Result<()> {
    if let GeographyCommand::Convert {
        from,
        to,
        vintage,
        package_version,
    } = &command
    {
        return convert(from, to, vintage, package_version.as_deref(), format);
    }
    let mut client = GeographyServiceClient::new(target.channel().await?)
        .max_decoding_message_size(64 * 1024 * 1024);
    match command {
        GeographyCommand::Import { dir, vintage } => {
            let r = match dir {
                Some(dir) => {
                    let (manifest, files) = tde_territories::reference::read_files(&dir)?;
                    let year = tde_territories::reference::vintage_of(
                        &dir,
                        manifest.as_ref(),
                        vintage.as_deref(),
                    )?;
                    send_geography(&mut client, &year.to_string(), files, true).await?
                }
                None => {
                    let g = shipped_files()?;
                    if let Some(v) = vintage
                        && v.trim() != g.0
                    {
                        anyhow::bail!("tde ships vintage {}; give --dir for vintage {v}", g.0);
                    }
                    send_geography(&mut client, &g.0, g.1, true).await?
                }
            };
            match format {
                Format::Json => println!(
                    "{}",
                    to_json(&r, "tde.territories.v1.ImportGeographyResponse")?
                ),
                Format::Table => println!(
                    "{}",
                    table(
                        &[
                            "vintage",
                            "changed",
                            "régions",
                            "départements",
                            "communes",
                            "EPCI",
                            "territories recoded",
                            "updated",
                            "to resolve"
                        ],
                        vec![vec![
                            r.vintage.clone(),
                            r.changed.to_string(),
                            r.regions.to_string(),
                            r.departements.to_string(),
                            r.communes.to_string(),
                            r.epcis.to_string(),
                            r.territories_recoded.to_string(),
                            r.territories_updated.to_string(),
                            r.territories_flagged.to_string(),
                        ]],
                    )
                ),
            }
        }
        GeographyCommand::Convert { .. } => {}
        GeographyCommand::Vintage => {
            let r = client
                .get_geography_vintage(pb::GetGeographyVintageRequest {})
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "{}",
                to_json(&r, "tde.territories.v1.GetGeographyVintageResponse")?
            );
        }
        GeographyCommand::Commune { code } => {
            let r = client
                .get_commune(pb::GetCommuneRequest { code })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", to_json(&r, "tde.territories.v1.GetCommuneResponse")?);
        }
        GeographyCommand::Epci { siren } => {
            let r = client
                .get_epci(pb::GetEpciRequest { siren })
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => println!("{}", to_json(&r, "tde.territories.v1.GetEpciResponse")?),
                Format::Table => {
                    let e = r.epci.unwrap_or_default();
                    println!(
                        "{} {} ({}), population {}",
                        e.siren, e.name, e.r#type, e.population
                    );
                    println!(
                        "{}",
                        table(
                            &["code", "name", "dép.", "population"],
                            e.members
                                .iter()
                                .map(|c| vec![
                                    c.code.clone(),
                                    c.name.clone(),
                                    c.departement_code.clone(),
                                    c.population.to_string()
                                ])
                                .collect(),
                        )
                    );
                }
            }
        }
        GeographyCommand::Search {
            query,
            departement,
            limit,
        } => {
            let r = client
                .search_communes(pb::SearchCommunesRequest {
                    query,
                    departement_code: departement.unwrap_or_default(),
                    page_size: limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => println!(
                    "{}",
                    to_json(&r, "tde.territories.v1.SearchCommunesResponse")?
                ),
                Format::Table => println!(
                    "{}",
                    table(
                        &["code", "name", "dép.", "région", "population", "EPCI"],
                        r.communes
                            .iter()
                            .map(|c| {
                                vec![
                                    c.code.clone(),
                                    c.name.clone(),
                                    c.departement_code.clone(),
                                    c.region_code.clone(),
                                    c.population.to_string(),
                                    c.epci_siren.clone(),
                                ]
                            })
                            .collect(),
                    )
                ),
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Lists the audit trail, newest first (needs the scope audit:read).
    List {
        /// Only this service, e.g. territories.
        #[arg(long)]
        service: Option<String>,
        /// Only calls of this token subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only this method, e.g. UpdateTerritory.
        #[arg(long)]
        method: Option<String>,
        /// Only this resource, e.g. territories/<ID>.
        #[arg(long)]
        resource: Option<String>,
        /// Only this outcome, e.g. PERMISSION_DENIED.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
}

pub async fn audit(target: &Target, format: Format, command: AuditCommand) -> anyhow::Result<()> {
    use tde_proto::audit::v1 as audit;
    let mut client = audit::audit_service_client::AuditServiceClient::new(target.channel().await?);
    let AuditCommand::List {
        service,
        subject,
        method,
        resource,
        outcome,
        page_size,
        page_token,
    } = command;
    let r = client
        .list_audit_events(audit::ListAuditEventsRequest {
            service: service.unwrap_or_default(),
            subject: subject.unwrap_or_default(),
            method: method.unwrap_or_default(),
            resource: resource.unwrap_or_default(),
            outcome: outcome.unwrap_or_default(),
            page_size,
            page_token,
            ..Default::default()
        })
        .await
        .map_err(status)?
        .into_inner();
    match format {
        Format::Json => println!("{}", to_json(&r, "tde.audit.v1.ListAuditEventsResponse")?),
        Format::Table => {
            println!(
                "{}",
                table(
                    &[
                        "time", "subject", "client", "role", "method", "resource", "outcome"
                    ],
                    r.audit_events
                        .iter()
                        .map(|e| vec![
                            e.event_time
                                .as_ref()
                                .and_then(tde_runtime::api::from_timestamp)
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_default(),
                            e.subject.clone(),
                            e.client_id.clone(),
                            e.role.clone(),
                            e.method.rsplit('/').next().unwrap_or_default().to_string(),
                            e.resource.clone(),
                            e.outcome.clone(),
                        ])
                        .collect(),
                )
            );
            if !r.next_page_token.is_empty() {
                println!("next page: --page-token {}", r.next_page_token);
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum PersonalDataCommand {
    /// Everything held on a person (right of access); needs contacts:admin.
    Export { email: String },
    /// Removes a person from every territory and tells every service (right to erasure).
    Erase { email: String },
}

pub async fn personal_data(
    target: &Target,
    format: Format,
    command: PersonalDataCommand,
) -> anyhow::Result<()> {
    use tde_proto::territories::v1::personal_data_service_client::PersonalDataServiceClient;
    let mut client = PersonalDataServiceClient::new(target.channel().await?);
    match command {
        PersonalDataCommand::Export { email } => {
            let r = client
                .export_personal_data(pb::ExportPersonalDataRequest { email })
                .await
                .map_err(status)?
                .into_inner();
            match format {
                Format::Json => {
                    println!(
                        "{}",
                        to_json(&r, "tde.territories.v1.ExportPersonalDataResponse")?
                    )
                }
                // One line per record, every service's: what it is, where, and its fields.
                Format::Table => println!(
                    "{}",
                    table(
                        &["service", "record", "territory", "object", "data"],
                        r.services
                            .iter()
                            .flat_map(|s| {
                                let answered = s.status
                                    == tde_proto::personal_data::v1::AnswerStatus::Answered as i32;
                                let problem = (!answered).then(|| {
                                    vec![
                                        s.service.clone(),
                                        "(no answer)".into(),
                                        String::new(),
                                        String::new(),
                                        s.problem.clone(),
                                    ]
                                });
                                s.holdings
                                    .iter()
                                    .map(|h| {
                                        let mut fields: Vec<_> = h
                                            .fields
                                            .iter()
                                            .map(|(k, v)| format!("{k}={v}"))
                                            .collect();
                                        fields.sort();
                                        vec![
                                            s.service.clone(),
                                            h.kind.clone(),
                                            h.territory_id.clone(),
                                            h.object_id.clone(),
                                            fields.join(", "),
                                        ]
                                    })
                                    .chain(problem)
                                    .collect::<Vec<_>>()
                            })
                            .collect(),
                    )
                ),
            }
        }
        PersonalDataCommand::Erase { email } => {
            let r = client
                .erase_personal_data(pb::ErasePersonalDataRequest { email })
                .await
                .map_err(status)?
                .into_inner();
            for s in &r.services {
                let answered =
                    s.status == tde_proto::personal_data::v1::AnswerStatus::Answered as i32;
                let did: Vec<String> = s
                    .steps
                    .iter()
                    .map(|step| format!("{} {} {}", step.count, step.kind, step.action))
                    .collect();
                match (answered, did.is_empty()) {
                    (false, _) => println!("{}: not reached ({})", s.service, s.problem),
                    (true, true) => println!("{}: held nothing", s.service),
                    (true, false) => println!("{}: {}", s.service, did.join(", ")),
                }
            }
        }
    }
    Ok(())
}
