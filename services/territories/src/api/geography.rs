//! tde.territories.v1.GeographyService, and the import of a vintage (shared by the RPC and
//! `tde dev --geography`).

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
use crate::domain::geography::{FILES, Geography};
use crate::domain::territory::AuthorityKind;
use crate::events;
use crate::storage::{self, geography};

/// Largest file of a vintage accepted over gRPC.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
const MAX_SEARCH: u64 = 100;
const DEFAULT_SEARCH: u64 = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub changed: bool,
    pub territories_recoded: usize,
}

/// Reads the four files of a vintage from a directory.
pub fn read_dir(vintage: &str, dir: &Path) -> Result<Geography, anyhow::Error> {
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(name).display()))
    };
    let [r, d, c, e] = FILES.map(read);
    Ok(Geography::parse(vintage, &r?, &d?, &c?, &e?)?)
}

/// Loads a vintage. The same vintage with the same content changes nothing; an older vintage
/// than the loaded one is refused; a newer one replaces it, and territories registered under
/// the code of a commune that merged into another move to the new code (old code kept in
/// their history, TerritoryCodeChanged published), all in one transaction.
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
            return Ok(ImportOutcome {
                changed: false,
                territories_recoded: 0,
            });
        }
        if g.vintage < current.vintage {
            return Err(ApiError::FailedPrecondition {
                kind: "VINTAGE",
                subject: g.vintage.clone(),
                description: format!(
                    "vintage {} is older than the loaded vintage {}",
                    g.vintage, current.vintage
                ),
            });
        }
    }
    let now = tde_runtime::api::now();
    geography::replace(&txn, g, now).await?;

    let former = g.former_codes();
    let old_codes: Vec<String> = former.keys().map(|c| c.to_string()).collect();
    let mut recoded = 0;
    for chunk in old_codes.chunks(1000) {
        for mut territory in
            storage::find_by_codes(&txn, AuthorityKind::Commune, chunk.to_vec()).await?
        {
            let new_code = former[territory.official_code.as_str()];
            if storage::find_by_code(&txn, AuthorityKind::Commune, new_code)
                .await?
                .is_some()
            {
                // Two territories for one commune now: leave it for the programme team.
                tracing::warn!(territory_id = %territory.id, new_code, "merged commune already has a territory; code kept");
                continue;
            }
            let expected = territory.version;
            territory.recode(new_code, &g.vintage, now);
            // The rows are locked (find_by_codes): a concurrent change cannot slip in.
            if !storage::update(&txn, &territory, expected).await? {
                return Err(ApiError::Aborted {
                    resource_type: "territory",
                    name: territory.id.clone(),
                });
            }
            outbox::enqueue(&txn, vec![events::code_changed(&territory)]).await?;
            recoded += 1;
        }
    }
    txn.commit().await?;
    waker.wake();
    tracing::info!(vintage = %g.vintage, communes = g.communes.len(), epcis = g.epcis.len(), territories_recoded = recoded, "geography imported");
    Ok(ImportOutcome {
        changed: true,
        territories_recoded: recoded,
    })
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
