//! tde.territories.v1.GeographyService, and the import of a vintage (shared by the RPC and
//! `tde dev`).

use std::path::Path;

use futures::StreamExt as _;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, TransactionTrait};
use tonic::{Request, Response, Status, Streaming};

use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::geography_service_server::GeographyService;
use tde_runtime::api::timestamp;
use tde_runtime::outbox::{self, OutboxWaker};
use tde_runtime::{ApiError, ServiceContext};

use super::convert;
use crate::domain::geography::{FILES, Geography, stored_year};
use crate::domain::recoding;
use crate::domain::territory::AuthorityKind;
use crate::events;
use crate::storage::{self, geography};

/// Largest file of a vintage accepted over gRPC.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
const MAX_SEARCH: u64 = 100;
const DEFAULT_SEARCH: u64 = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub changed: bool,
    /// Territories that became the commune theirs merged into.
    pub territories_recoded: usize,
    /// Territories whose authority kept its code and changed.
    pub territories_updated: usize,
    /// Territories given a geography issue (merged with another territory's, or vanished).
    pub territories_flagged: usize,
}

/// The actor of what a vintage does to territories, in their histories and events.
pub const GEOGRAPHY_ACTOR: &str = "tde-geography";

/// Events per insert into the outbox: below the bind-parameter limit of SQLite.
const EVENTS_PER_INSERT: usize = 1_000;

/// Reads the vintage in a directory: the four JSON files of the package, or the compact form
/// (`tde geography convert`), whose own vintage must then be `vintage`.
pub fn read_dir(vintage: &str, dir: &Path) -> Result<Geography, anyhow::Error> {
    crate::reference::read_dir(dir, Some(vintage))
}

/// Loads a vintage. The same vintage with the same content changes nothing; a vintage older
/// than the loaded one is refused; a newer one (or the same year with new content) replaces
/// it, and every territory follows it in the same transaction (see `domain::recoding`): it
/// becomes the commune its commune merged into (TerritoryCodeChanged), takes what changed of
/// its authority (TerritoryGeographyUpdated), or is flagged when the programme team must
/// decide (TerritoryMergeConflict).
pub async fn import(
    db: &DatabaseConnection,
    waker: &OutboxWaker,
    g: &Geography,
) -> Result<ImportOutcome, ApiError> {
    let txn = db.begin().await?;
    // One import at a time: the vintage check below holds until this one commits.
    if tde_runtime::db::is_postgres(&txn) {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(hashtext('tde_geography_import'))")
            .await?;
    }
    if let Some(current) = geography::current_vintage(&txn).await? {
        if current.vintage == g.vintage && current.content_hash == g.content_hash {
            return Ok(ImportOutcome::default());
        }
        // Vintages are years, compared as numbers.
        if let Some(loaded) = stored_year(&current.vintage)
            && g.year < loaded
        {
            return Err(ApiError::FailedPrecondition {
                kind: "VINTAGE",
                subject: g.vintage.clone(),
                description: format!(
                    "vintage {} is older than the loaded vintage {loaded}: a geography only moves forward",
                    g.vintage
                ),
            });
        }
    }
    let now = tde_runtime::api::now();
    geography::replace(&txn, g, now).await?;

    let mut territories = storage::recoding::all_for_update(&txn).await?;
    let versions: Vec<i64> = territories.iter().map(|t| t.version).collect();
    let changed = recoding::follow_vintage(g, &mut territories, now);
    let mut outcome = ImportOutcome {
        changed: true,
        ..Default::default()
    };
    let mut published = Vec::new();
    for (i, followed) in changed {
        let t = &territories[i];
        // The rows are locked (all_for_update): a concurrent change cannot slip in.
        if !storage::update(&txn, t, versions[i]).await? {
            return Err(ApiError::Aborted {
                resource_type: "territory",
                name: t.id.clone(),
            });
        }
        if followed.recoded {
            outcome.territories_recoded += 1;
            published.push(events::code_changed(t));
            tracing::info!(territory_id = %t.id, code = %t.official_code, "territory follows its merged commune");
        }
        if let Some(old_name) = &followed.updated_from {
            outcome.territories_updated += 1;
            published.push(events::geography_updated(t, old_name, &g.vintage));
        }
        if followed.flagged {
            outcome.territories_flagged += 1;
            published.push(events::merge_conflict(t));
            if let Some(issue) = &t.geography_issue {
                tracing::warn!(territory_id = %t.id, code = %t.official_code, issue = %issue.describe(), "territory needs a decision of the programme team");
            }
        }
        if followed.cleared {
            published.push(events::merge_conflict_resolved(
                t,
                None,
                "",
                &format!("the {} geography settles it", g.vintage),
                GEOGRAPHY_ACTOR,
                now,
            ));
        }
    }
    let mut published = published.into_iter().peekable();
    while published.peek().is_some() {
        outbox::enqueue(&txn, published.by_ref().take(EVENTS_PER_INSERT).collect()).await?;
    }
    txn.commit().await?;
    waker.wake();
    tracing::info!(
        vintage = %g.vintage,
        communes = g.communes.len(),
        epcis = g.epcis.len(),
        territories_recoded = outcome.territories_recoded,
        territories_updated = outcome.territories_updated,
        territories_flagged = outcome.territories_flagged,
        "geography imported"
    );
    Ok(outcome)
}

pub struct GeographyApi {
    ctx: ServiceContext,
    /// Emptied after an import, which may have recoded territories.
    territories: super::territories::TerritoryCache,
}

impl GeographyApi {
    pub fn new(ctx: ServiceContext, territories: super::territories::TerritoryCache) -> Self {
        Self { ctx, territories }
    }

    /// Gathers the streamed files. Transport, cancellation and size errors keep their own
    /// status; bad content is INVALID_ARGUMENT.
    async fn receive(
        &self,
        mut stream: Streaming<pb::ImportGeographyRequest>,
    ) -> Result<Geography, Status> {
        let invalid =
            |field: &str, description: String| Status::from(ApiError::invalid(field, description));
        let mut vintage = String::new();
        let mut files: [Vec<u8>; 4] = Default::default();
        while let Some(message) = stream.next().await {
            let m = message?;
            if !m.vintage.is_empty() {
                if !vintage.is_empty() && vintage != m.vintage {
                    return Err(invalid("vintage", "changed during the import".into()));
                }
                vintage = m.vintage;
            }
            let index = match pb::GeographyFile::try_from(m.file) {
                Ok(pb::GeographyFile::Regions) => 0,
                Ok(pb::GeographyFile::Departements) => 1,
                Ok(pb::GeographyFile::Communes) => 2,
                Ok(pb::GeographyFile::Epci) => 3,
                _ if m.data.is_empty() => continue,
                _ => {
                    return Err(invalid(
                        "file",
                        "name the file this chunk belongs to".into(),
                    ));
                }
            };
            if files[index].len() + m.data.len() > MAX_FILE_BYTES {
                return Err(invalid(
                    "data",
                    format!("{} is larger than {MAX_FILE_BYTES} bytes", FILES[index]),
                ));
            }
            files[index].extend_from_slice(&m.data);
        }
        if vintage.is_empty() {
            return Err(invalid("vintage", "is required".into()));
        }
        let missing: Vec<_> = files
            .iter()
            .zip(FILES)
            .filter(|(f, _)| f.is_empty())
            .map(|(_, name)| {
                tde_runtime::FieldViolation::new("file", format!("{name} was not sent"))
            })
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::InvalidArgument(missing).into());
        }
        let [r, d, c, e] = &files;
        Geography::parse(&vintage, r, d, c, e).map_err(|e| ApiError::from(e).into())
    }
}

fn not_found(resource_type: &'static str, name: &str, field: &'static str) -> ApiError {
    ApiError::NotFound {
        resource_type,
        name: name.to_string(),
        field: Some(field),
    }
}

#[tonic::async_trait]
impl GeographyService for GeographyApi {
    async fn import_geography(
        &self,
        request: Request<Streaming<pb::ImportGeographyRequest>>,
    ) -> Result<Response<pb::ImportGeographyResponse>, Status> {
        let g = self.receive(request.into_inner()).await?;
        // Recoded territories must not be served from the cache, even if this call is
        // cancelled while the import commits.
        let _clear = self.territories.clear_on_drop();
        let outcome = import(&self.ctx.db, &self.ctx.outbox, &g).await?;
        Ok(Response::new(pb::ImportGeographyResponse {
            vintage: g.vintage.clone(),
            changed: outcome.changed,
            regions: g.regions.len() as i32,
            departements: g.departements.len() as i32,
            communes: g.communes.len() as i32,
            epcis: g.epcis.len() as i32,
            territories_recoded: outcome.territories_recoded as i32,
            territories_updated: outcome.territories_updated as i32,
            territories_flagged: outcome.territories_flagged as i32,
        }))
    }

    async fn get_geography_vintage(
        &self,
        _request: Request<pb::GetGeographyVintageRequest>,
    ) -> Result<Response<pb::GetGeographyVintageResponse>, Status> {
        let current = geography::current_vintage(&self.ctx.db)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(match current {
            Some(v) => pb::GetGeographyVintageResponse {
                vintage: v.vintage,
                import_time: Some(timestamp(v.imported_at)),
                communes: v.communes,
                epcis: v.epcis,
            },
            None => pb::GetGeographyVintageResponse::default(),
        }))
    }

    async fn get_commune(
        &self,
        request: Request<pb::GetCommuneRequest>,
    ) -> Result<Response<pb::GetCommuneResponse>, Status> {
        let code = request.get_ref().code.trim().to_ascii_uppercase();
        AuthorityKind::Commune
            .validate_code(&code)
            .map_err(|_| ApiError::invalid("code", "a commune's INSEE code has 5 characters"))?;
        let commune = geography::commune(&self.ctx.db, &code)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found("commune", &code, "code"))?;
        Ok(Response::new(pb::GetCommuneResponse {
            commune: Some(convert::commune_to_pb(&commune)),
        }))
    }

    async fn get_epci(
        &self,
        request: Request<pb::GetEpciRequest>,
    ) -> Result<Response<pb::GetEpciResponse>, Status> {
        let siren = request.get_ref().siren.trim().to_string();
        if siren.len() != 9 || !siren.chars().all(|c| c.is_ascii_digit()) {
            return Err(ApiError::invalid("siren", "an EPCI's SIREN has 9 digits").into());
        }
        let (epci, members) = geography::epci(&self.ctx.db, &siren)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found("epci", &siren, "siren"))?;
        Ok(Response::new(pb::GetEpciResponse {
            epci: Some(convert::epci_to_pb(&epci, &members)),
        }))
    }

    async fn get_departement(
        &self,
        request: Request<pb::GetDepartementRequest>,
    ) -> Result<Response<pb::GetDepartementResponse>, Status> {
        let code = request.get_ref().code.trim().to_ascii_uppercase();
        AuthorityKind::Departement
            .validate_code(&code)
            .map_err(|_| ApiError::invalid("code", "a département's code has 2 or 3 characters"))?;
        let d = geography::departement(&self.ctx.db, &code)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found("departement", &code, "code"))?;
        Ok(Response::new(pb::GetDepartementResponse {
            departement: Some(convert::departement_to_pb(&d)),
        }))
    }

    async fn get_region(
        &self,
        request: Request<pb::GetRegionRequest>,
    ) -> Result<Response<pb::GetRegionResponse>, Status> {
        let code = request.get_ref().code.trim().to_string();
        if code.is_empty() || code.len() > 3 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(ApiError::invalid("code", "a région's code has 2 or 3 digits").into());
        }
        let r = geography::region(&self.ctx.db, &code)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found("region", &code, "code"))?;
        Ok(Response::new(pb::GetRegionResponse {
            region: Some(convert::region_to_pb(&r)),
        }))
    }

    async fn search_communes(
        &self,
        request: Request<pb::SearchCommunesRequest>,
    ) -> Result<Response<pb::SearchCommunesResponse>, Status> {
        let r = request.into_inner();
        tde_runtime::input::text("query", &r.query, 200)?;
        tde_runtime::input::text("departement_code", &r.departement_code, 3)?;
        if crate::domain::names::normalize(&r.query).chars().count() < 2 {
            return Err(ApiError::invalid("query", "give at least 2 letters").into());
        }
        let limit = tde_runtime::api::page_size(r.page_size, DEFAULT_SEARCH, MAX_SEARCH)?;
        let dep = r.departement_code.trim();
        let communes = geography::search_communes(
            &self.ctx.db,
            &r.query,
            (!dep.is_empty()).then_some(dep),
            limit,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(pb::SearchCommunesResponse {
            communes: communes.iter().map(convert::commune_to_pb).collect(),
        }))
    }
}
