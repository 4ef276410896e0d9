//! tde.subsidies.v1.LedgerService: the ledger, the national dashboard, reconciliation and the
//! CSV exports.

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::ledger_service_server::LedgerService;
use tde_runtime::ApiError;
use tde_runtime::api::{Caller, PageRequest};

use super::convert::entry_to_pb;
use super::{DEFAULT_PAGE, MAX_PAGE, SubsidiesApi, filter_id, filter_region, visible_to};
use crate::domain::money::decimal_eur;
use crate::domain::subsidy::Subsidy;
use crate::settings::SubsidySettings;
use crate::storage::{self, Entry, EntryFilter, LedgerSums, SubsidyFilter, VisibleTo};

/// The columns of the SCDL « subventions » schema (schema.data.gouv.fr, scdl/subventions
/// 2.1), in its published order.
pub const SCDL_COLUMNS: [&str; 16] = [
    "nomAttribuant",
    "idAttribuant",
    "dateConvention",
    "referenceDecision",
    "nomBeneficiaire",
    "idBeneficiaire",
    "rnaBeneficiaire",
    "objet",
    "montant",
    "nature",
    "conditionsVersement",
    "datesPeriodeVersement",
    "idRAE",
    "notificationUE",
    "pourcentageSubvention",
    "dispositifAide",
];

pub const LEDGER_COLUMNS: [&str; 14] = [
    "id",
    "recorded_at",
    "kind",
    "amount_eur",
    "amount_cents",
    "budget_year",
    "region_code",
    "envelope_id",
    "subsidy_id",
    "payment_id",
    "territory_id",
    "reference",
    "reason",
    "actor",
];

/// Rows read per query, and per chunk sent, while exporting.
const EXPORT_BATCH: u64 = 1_000;

/// One SCDL line of a decided grant.
pub fn scdl_record(s: &Subsidy, settings: &SubsidySettings) -> Option<[String; 16]> {
    let decision = s.decision.as_ref()?;
    let act = decision.legal_act.as_ref()?;
    let last_day = s.year_end.pred_opt().unwrap_or(s.year_end);
    let objet = if s.amendment_number == 0 {
        format!(
            "Territoires d'engagement : plan d'accompagnement, année {}",
            s.plan_year
        )
    } else {
        format!(
            "Territoires d'engagement : plan d'accompagnement, année {}, avenant {}",
            s.plan_year, s.amendment_number
        )
    };
    Some([
        settings.grantor_name.clone(),
        settings.grantor_siret.clone(),
        act.date.to_string(),
        act.reference.clone(),
        s.territory_name.clone(),
        decision.beneficiary_siret.clone(),
        String::new(),
        objet,
        decimal_eur(s.granted_cents),
        "aide en numéraire".into(),
        if s.advance_percent >= 100 {
            "unique"
        } else {
            "échelonné"
        }
        .into(),
        format!("{}_{}", s.year_start, last_day),
        String::new(),
        "non".into(),
        // The programme funds each plan year at 100 %.
        "1".into(),
        "Territoires d'engagement".into(),
    ])
}

pub fn ledger_record(e: &Entry) -> [String; 14] {
    [
        e.id.clone(),
        e.recorded_at.to_rfc3339(),
        e.kind.as_str().into(),
        decimal_eur(e.amount_cents),
        e.amount_cents.to_string(),
        e.budget_year.to_string(),
        e.region_code.clone(),
        e.envelope_id.clone(),
        e.subsidy_id.clone(),
        e.payment_id.clone().unwrap_or_default(),
        e.territory_id.clone(),
        e.reference.clone(),
        e.reason.clone(),
        e.actor.clone(),
    ]
}

fn csv_bytes<const N: usize>(
    header: Option<[&str; N]>,
    rows: &[[String; N]],
) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if let Some(header) = header {
        w.write_record(header)?;
    }
    for r in rows {
        w.write_record(r)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// Recomputes every balance from the ledger and lists what differs.
pub async fn reconcile(
    db: &impl sea_orm::ConnectionTrait,
) -> Result<pb::ReconcileResponse, sea_orm::DbErr> {
    let (by_envelope, entries) = storage::ledger_sums(db, "envelope_id").await?;
    let (by_subsidy, _) = storage::ledger_sums(db, "subsidy_id").await?;
    let envelopes = storage::all_envelopes(db).await?;
    let mut discrepancies = Vec::new();
    let mut differs = |resource_type: &str, id: &str, field: &str, stored: i64, ledger: i64| {
        if stored != ledger {
            discrepancies.push(pb::Discrepancy {
                resource_type: resource_type.into(),
                resource_id: id.into(),
                field: field.into(),
                stored_cents: stored,
                ledger_cents: ledger,
            });
        }
    };
    for e in &envelopes {
        // A national envelope carries its régions' commitments too.
        let mut sums = by_envelope.get(&e.id).copied().unwrap_or_default();
        for child in envelopes
            .iter()
            .filter(|c| c.parent_id.as_deref() == Some(&e.id))
        {
            let c = by_envelope.get(&child.id).copied().unwrap_or_default();
            sums.committed += c.committed;
            sums.decommitted += c.decommitted;
            sums.paid += c.paid;
        }
        differs(
            "envelope",
            &e.id,
            "committed_cents",
            e.committed_cents,
            sums.committed - sums.decommitted,
        );
        differs("envelope", &e.id, "paid_cents", e.paid_cents, sums.paid);
    }
    let subsidies = storage::subsidy_balances(db).await?;
    for (id, granted, decommitted, paid, clawed_back) in &subsidies {
        let s: LedgerSums = by_subsidy.get(id).copied().unwrap_or_default();
        differs("subsidy", id, "granted_cents", *granted, s.committed);
        differs(
            "subsidy",
            id,
            "decommitted_cents",
            *decommitted,
            s.decommitted,
        );
        differs("subsidy", id, "paid_cents", *paid, s.paid);
        differs(
            "subsidy",
            id,
            "clawed_back_cents",
            *clawed_back,
            s.clawed_back,
        );
    }
    for ((year, region), stored, summed) in storage::ledger_totals_check(db).await? {
        let id = format!("{year}/{region}");
        differs(
            "ledger_totals",
            &id,
            "committed_cents",
            stored.committed,
            summed.committed,
        );
        differs(
            "ledger_totals",
            &id,
            "decommitted_cents",
            stored.decommitted,
            summed.decommitted,
        );
        differs("ledger_totals", &id, "paid_cents", stored.paid, summed.paid);
        differs(
            "ledger_totals",
            &id,
            "clawed_back_cents",
            stored.clawed_back,
            summed.clawed_back,
        );
    }
    Ok(pb::ReconcileResponse {
        envelopes_checked: envelopes.len() as i64,
        subsidies_checked: subsidies.len() as i64,
        entries_read: entries,
        discrepancies,
    })
}

/// Sends the export in chunks through `tx`, page by page (keyset paging, so that memory stays
/// bounded whatever the number of rows).
async fn export(
    db: sea_orm::DatabaseConnection,
    settings: SubsidySettings,
    format: pb::ExportFormat,
    budget_year: Option<i32>,
    visible_to: VisibleTo,
    tx: tokio::sync::mpsc::Sender<Result<pb::ExportSubsidiesResponse, Status>>,
) {
    let mut after: Option<String> = None;
    let mut first = true;
    loop {
        let chunk = match format {
            pb::ExportFormat::Ledger => {
                let filter = EntryFilter {
                    budget_year,
                    visible_to: visible_to.clone(),
                    ..Default::default()
                };
                storage::list_entries(&db, &filter, after.as_deref(), EXPORT_BATCH)
                    .await
                    .map(|rows| {
                        after = rows.last().map(|e| e.id.clone());
                        let records: Vec<_> = rows.iter().map(ledger_record).collect();
                        (
                            rows.len(),
                            csv_bytes(first.then_some(LEDGER_COLUMNS), &records),
                        )
                    })
            }
            _ => {
                let filter = SubsidyFilter {
                    budget_year,
                    visible_to: visible_to.clone(),
                    ..Default::default()
                };
                storage::list_subsidies(&db, &filter, after.as_deref(), EXPORT_BATCH)
                    .await
                    .map(|rows| {
                        after = rows.last().map(|s| s.id.clone());
                        let records: Vec<_> = rows
                            .iter()
                            .filter(|s| s.status.is_granted())
                            .filter_map(|s| scdl_record(s, &settings))
                            .collect();
                        (
                            rows.len(),
                            csv_bytes(first.then_some(SCDL_COLUMNS), &records),
                        )
                    })
            }
        };
        let (read, bytes) = match chunk {
            Ok((read, Ok(bytes))) => (read, bytes),
            Ok((_, Err(e))) => {
                let _ = tx.send(Err(ApiError::internal(e).into())).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(ApiError::from(e).into())).await;
                return;
            }
        };
        first = false;
        if !bytes.is_empty()
            && tx
                .send(Ok(pb::ExportSubsidiesResponse { data: bytes }))
                .await
                .is_err()
        {
            // The caller went away.
            return;
        }
        if (read as u64) < EXPORT_BATCH {
            return;
        }
    }
}

#[tonic::async_trait]
impl LedgerService for SubsidiesApi {
    async fn list_ledger_entries(
        &self,
        request: Request<pb::ListLedgerEntriesRequest>,
    ) -> Result<Response<pb::ListLedgerEntriesResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let filter = EntryFilter {
            envelope_id: filter_id("envelope_id", &r.envelope_id)?,
            subsidy_id: filter_id("subsidy_id", &r.subsidy_id)?,
            territory_id: filter_id("territory_id", &r.territory_id)?,
            budget_year: (r.budget_year != 0).then_some(r.budget_year),
            region_code: filter_region("region_code", &r.region_code)?,
            visible_to: visible_to(&caller),
        };
        let rows = storage::list_entries(&self.ctx.db, &filter, page.after(), page.fetch())
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |e| e.id.clone());
        Ok(Response::new(pb::ListLedgerEntriesResponse {
            entries: rows.iter().map(entry_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn get_dashboard(
        &self,
        request: Request<pb::GetDashboardRequest>,
    ) -> Result<Response<pb::GetDashboardResponse>, Status> {
        let r = request.into_inner();
        let year = (r.budget_year != 0).then_some(r.budget_year);
        let db = &self.ctx.db;
        let rows = storage::dashboard(db, year).await.map_err(ApiError::from)?;
        let available = storage::available_by_envelope(db, year)
            .await
            .map_err(ApiError::from)?;
        let available_of =
            |year: i32, region: &str| available.get(&(year, region.to_string())).copied();
        let mut out: Vec<pb::DashboardRow> = Vec::new();
        let mut totals: std::collections::BTreeMap<i32, pb::DashboardRow> = Default::default();
        for row in rows {
            let total = totals
                .entry(row.budget_year)
                .or_insert_with(|| pb::DashboardRow {
                    budget_year: row.budget_year,
                    available_cents: available_of(row.budget_year, "").unwrap_or(0),
                    ..Default::default()
                });
            total.requested_cents += row.requested;
            total.granted_cents += row.granted;
            total.committed_cents += row.committed;
            total.paid_cents += row.paid;
            out.push(pb::DashboardRow {
                available_cents: available_of(row.budget_year, &row.region_code).unwrap_or(0),
                budget_year: row.budget_year,
                region_code: row.region_code,
                requested_cents: row.requested,
                granted_cents: row.granted,
                committed_cents: row.committed,
                paid_cents: row.paid,
            });
        }
        // Years with an envelope and no subsidy yet still show what is available.
        for ((year, region), left) in &available {
            if region.is_empty() {
                totals.entry(*year).or_insert_with(|| pb::DashboardRow {
                    budget_year: *year,
                    available_cents: *left,
                    ..Default::default()
                });
            }
        }
        out.extend(totals.into_values());
        out.sort_by(|a, b| (a.budget_year, &a.region_code).cmp(&(b.budget_year, &b.region_code)));
        Ok(Response::new(pb::GetDashboardResponse { rows: out }))
    }

    async fn reconcile(
        &self,
        _request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let report = reconcile(&self.ctx.db).await.map_err(ApiError::from)?;
        if !report.discrepancies.is_empty() {
            tracing::warn!(
                count = report.discrepancies.len(),
                "balances differ from the ledger"
            );
        }
        Ok(Response::new(report))
    }

    type ExportSubsidiesStream = ReceiverStream<Result<pb::ExportSubsidiesResponse, Status>>;

    async fn export_subsidies(
        &self,
        request: Request<pb::ExportSubsidiesRequest>,
    ) -> Result<Response<Self::ExportSubsidiesStream>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let format = match pb::ExportFormat::try_from(r.format) {
            Ok(f @ (pb::ExportFormat::Scdl | pb::ExportFormat::Ledger)) => f,
            _ => return Err(ApiError::invalid("format", "is required: SCDL or LEDGER").into()),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(export(
            self.ctx.db.clone(),
            self.settings.clone(),
            format,
            (r.budget_year != 0).then_some(r.budget_year),
            visible_to(&caller),
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scdl_header_is_the_published_column_order() {
        let bytes = csv_bytes::<16>(Some(SCDL_COLUMNS), &[]).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap().trim_end(),
            "nomAttribuant,idAttribuant,dateConvention,referenceDecision,nomBeneficiaire,idBeneficiaire,rnaBeneficiaire,objet,montant,nature,conditionsVersement,datesPeriodeVersement,idRAE,notificationUE,pourcentageSubvention,dispositifAide"
        );
    }
}
