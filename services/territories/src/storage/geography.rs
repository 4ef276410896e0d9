//! Storage of the reference geography: a vintage replaces the previous one in one
//! transaction; lookups by code and search by normalised name.

use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{geo_commune, geo_departement, geo_epci, geo_region, geo_vintage};
use crate::domain::geography::{Commune, Departement, Epci, Geography, Region};
use crate::domain::names;
use crate::domain::territory::{AuthorityFacts, AuthorityKind, Zone};

/// Bind parameters per statement, below the limits of PostgreSQL (65,535) and SQLite (32,766).
const MAX_PARAMS: usize = 30_000;

fn zone_of(z: &str) -> Result<Zone, DbErr> {
    Zone::parse(z).ok_or_else(|| DbErr::Custom(format!("stored geography has unknown zone {z:?}")))
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

async fn insert_chunked<E, A>(
    db: &impl ConnectionTrait,
    rows: Vec<A>,
    columns: usize,
) -> Result<(), DbErr>
where
    E: EntityTrait,
    A: sea_orm::ActiveModelTrait<Entity = E> + Send,
{
    let per_chunk = (MAX_PARAMS / columns).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(per_chunk).collect();
        E::insert_many(chunk).exec_without_returning(db).await?;
    }
    Ok(())
}

/// Inserts columns of text (cast in SQL where needed) in one statement with one array per
/// column: PostgreSQL plans it once, whatever the number of rows — close to COPY, and inside
/// the caller's transaction.
async fn insert_unnest(
    db: &impl ConnectionTrait,
    table: &str,
    columns: &[(&str, &str)],
    values: Vec<Vec<String>>,
) -> Result<(), DbErr> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let params: Vec<String> = (1..=columns.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM UNNEST({}) AS t({})",
        names.join(", "),
        columns
            .iter()
            .map(|(_, expr)| *expr)
            .collect::<Vec<_>>()
            .join(", "),
        params.join(", "),
        names.join(", "),
    );
    let values: Vec<sea_orm::Value> = values.into_iter().map(sea_orm::Value::from).collect();
    db.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// The rows as one column of text per field.
fn columns<const N: usize, T>(rows: &[T], row: impl Fn(&T) -> [String; N]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = (0..N).map(|_| Vec::with_capacity(rows.len())).collect();
    for r in rows {
        for (i, v) in row(r).into_iter().enumerate() {
            out[i].push(v);
        }
    }
    out
}

async fn insert_postgres(db: &impl ConnectionTrait, g: &Geography) -> Result<(), DbErr> {
    let text = |name| (name, name);
    insert_unnest(
        db,
        "geo_regions",
        &[text("code"), text("name"), text("zone")],
        columns(&g.regions, |r| {
            [r.code.clone(), r.name.clone(), r.zone.as_str().into()]
        }),
    )
    .await?;
    insert_unnest(
        db,
        "geo_departements",
        &[
            text("code"),
            text("name"),
            text("region_code"),
            text("zone"),
        ],
        columns(&g.departements, |d| {
            [
                d.code.clone(),
                d.name.clone(),
                d.region_code.clone(),
                d.zone.as_str().into(),
            ]
        }),
    )
    .await?;
    insert_unnest(
        db,
        "geo_communes",
        &[
            text("code"),
            text("name"),
            text("name_search"),
            text("departement_code"),
            text("region_code"),
            text("zone"),
            ("population", "population::bigint"),
            text("siren"),
            ("epci_siren", "NULLIF(epci_siren, '')"),
            text("postal_codes"),
            text("former_codes"),
        ],
        columns(&g.communes, |c| {
            [
                c.code.clone(),
                c.name.clone(),
                names::normalize(&c.name),
                c.departement_code.clone(),
                c.region_code.clone(),
                c.zone.as_str().into(),
                c.population.to_string(),
                c.siren.clone(),
                c.epci_siren.clone().unwrap_or_default(),
                c.postal_codes.join(","),
                c.former_codes.join(","),
            ]
        }),
    )
    .await?;
    insert_unnest(
        db,
        "geo_epcis",
        &[
            text("siren"),
            text("name"),
            text("kind"),
            ("population", "population::bigint"),
            text("departement_code"),
            text("region_code"),
            text("zone"),
        ],
        columns(&g.epcis, |e| {
            [
                e.siren.clone(),
                e.name.clone(),
                e.kind.clone(),
                e.population.to_string(),
                e.departement_code.clone(),
                e.region_code.clone(),
                e.zone.as_str().into(),
            ]
        }),
    )
    .await
}

/// Replaces the stored geography by `g`; run it inside a transaction.
pub async fn replace(
    db: &impl ConnectionTrait,
    g: &Geography,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    geo_commune::Entity::delete_many().exec(db).await?;
    geo_epci::Entity::delete_many().exec(db).await?;
    geo_departement::Entity::delete_many().exec(db).await?;
    geo_region::Entity::delete_many().exec(db).await?;
    if tde_runtime::db::is_postgres(db) {
        insert_postgres(db, g).await?;
    } else {
        insert_sqlite(db, g).await?;
    }
    geo_vintage::Entity::delete_by_id(g.vintage.clone())
        .exec(db)
        .await?;
    geo_vintage::Entity::insert(geo_vintage::ActiveModel {
        vintage: Set(g.vintage.clone()),
        content_hash: Set(g.content_hash.clone()),
        communes: Set(g.communes.len() as i32),
        epcis: Set(g.epcis.len() as i32),
        imported_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// SQLite: multi-row inserts in chunks below its parameter limit.
async fn insert_sqlite(db: &impl ConnectionTrait, g: &Geography) -> Result<(), DbErr> {
    let regions = g.regions.iter().map(|r| geo_region::ActiveModel {
        code: Set(r.code.clone()),
        name: Set(r.name.clone()),
        zone: Set(r.zone.as_str().into()),
    });
    insert_chunked(db, regions.collect(), 3).await?;
    let departements = g.departements.iter().map(|d| geo_departement::ActiveModel {
        code: Set(d.code.clone()),
        name: Set(d.name.clone()),
        region_code: Set(d.region_code.clone()),
        zone: Set(d.zone.as_str().into()),
    });
    insert_chunked(db, departements.collect(), 4).await?;
    let communes = g.communes.iter().map(|c| geo_commune::ActiveModel {
        code: Set(c.code.clone()),
        name: Set(c.name.clone()),
        name_search: Set(names::normalize(&c.name)),
        departement_code: Set(c.departement_code.clone()),
        region_code: Set(c.region_code.clone()),
        zone: Set(c.zone.as_str().into()),
        population: Set(c.population),
        siren: Set(c.siren.clone()),
        epci_siren: Set(c.epci_siren.clone()),
        postal_codes: Set(c.postal_codes.join(",")),
        former_codes: Set(c.former_codes.join(",")),
    });
    insert_chunked(db, communes.collect(), 11).await?;
    let epcis = g.epcis.iter().map(|e| geo_epci::ActiveModel {
        siren: Set(e.siren.clone()),
        name: Set(e.name.clone()),
        kind: Set(e.kind.clone()),
        population: Set(e.population),
        departement_code: Set(e.departement_code.clone()),
        region_code: Set(e.region_code.clone()),
        zone: Set(e.zone.as_str().into()),
    });
    insert_chunked(db, epcis.collect(), 7).await
}

/// The vintage loaded now: the most recently imported one.
pub async fn current_vintage(
    db: &impl ConnectionTrait,
) -> Result<Option<geo_vintage::Model>, DbErr> {
    geo_vintage::Entity::find()
        .order_by_desc(geo_vintage::Column::ImportedAt)
        .one(db)
        .await
}

fn commune_of(m: geo_commune::Model) -> Result<Commune, DbErr> {
    Ok(Commune {
        zone: zone_of(&m.zone)?,
        postal_codes: split(&m.postal_codes),
        former_codes: split(&m.former_codes),
        code: m.code,
        name: m.name,
        departement_code: m.departement_code,
        region_code: m.region_code,
        population: m.population,
        siren: m.siren,
        epci_siren: m.epci_siren,
    })
}

pub async fn commune(db: &impl ConnectionTrait, code: &str) -> Result<Option<Commune>, DbErr> {
    geo_commune::Entity::find_by_id(code.to_string())
        .one(db)
        .await?
        .map(commune_of)
        .transpose()
}

pub async fn epci(
    db: &impl ConnectionTrait,
    siren: &str,
) -> Result<Option<(Epci, Vec<Commune>)>, DbErr> {
    let Some(e) = geo_epci::Entity::find_by_id(siren.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let members: Vec<Commune> = geo_commune::Entity::find()
        .filter(geo_commune::Column::EpciSiren.eq(siren))
        .order_by_asc(geo_commune::Column::Code)
        .all(db)
        .await?
        .into_iter()
        .map(commune_of)
        .collect::<Result<_, _>>()?;
    let epci = Epci {
        zone: zone_of(&e.zone)?,
        members: members.iter().map(|c| c.code.clone()).collect(),
        siren: e.siren,
        name: e.name,
        kind: e.kind,
        population: e.population,
        departement_code: e.departement_code,
        region_code: e.region_code,
    };
    Ok(Some((epci, members)))
}

pub async fn departement(
    db: &impl ConnectionTrait,
    code: &str,
) -> Result<Option<Departement>, DbErr> {
    geo_departement::Entity::find_by_id(code.to_string())
        .one(db)
        .await?
        .map(|d| {
            Ok(Departement {
                zone: zone_of(&d.zone)?,
                code: d.code,
                name: d.name,
                region_code: d.region_code,
            })
        })
        .transpose()
}

pub async fn region(db: &impl ConnectionTrait, code: &str) -> Result<Option<Region>, DbErr> {
    geo_region::Entity::find_by_id(code.to_string())
        .one(db)
        .await?
        .map(|r| {
            Ok(Region {
                zone: zone_of(&r.zone)?,
                code: r.code,
                name: r.name,
            })
        })
        .transpose()
}

/// Communes whose name contains the normalised `query`: exact names first, then by
/// population.
pub async fn search_communes(
    db: &impl ConnectionTrait,
    query: &str,
    departement_code: Option<&str>,
    limit: u64,
) -> Result<Vec<Commune>, DbErr> {
    let normalized = names::normalize(query);
    let mut select = geo_commune::Entity::find()
        .filter(geo_commune::Column::NameSearch.like(format!("%{normalized}%")));
    if let Some(d) = departement_code {
        select = select.filter(geo_commune::Column::DepartementCode.eq(d));
    }
    select
        .order_by_desc(Expr::col(geo_commune::Column::NameSearch).eq(normalized))
        .order_by_desc(geo_commune::Column::Population)
        .order_by_asc(geo_commune::Column::Code)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(commune_of)
        .collect()
}

#[derive(FromQueryResult)]
struct Total {
    total: Option<i64>,
}

/// What registration copies from the reference geography, if the authority exists (the same
/// as `GeographyIndex::facts` computes from a vintage in memory).
pub async fn authority_facts(
    db: &impl ConnectionTrait,
    kind: AuthorityKind,
    code: &str,
) -> Result<Option<AuthorityFacts>, DbErr> {
    Ok(match kind {
        AuthorityKind::Commune => commune(db, code).await?.map(|c| AuthorityFacts {
            name: c.name,
            population: c.population,
            departement_code: c.departement_code,
            region_code: c.region_code,
            zone: c.zone,
            epci_siren: c.epci_siren,
        }),
        AuthorityKind::Epci => geo_epci::Entity::find_by_id(code.to_string())
            .one(db)
            .await?
            .map(|e| {
                Ok::<_, DbErr>(AuthorityFacts {
                    zone: zone_of(&e.zone)?,
                    name: e.name,
                    population: e.population,
                    departement_code: e.departement_code,
                    region_code: e.region_code,
                    epci_siren: None,
                })
            })
            .transpose()?,
        AuthorityKind::Departement => match departement(db, code).await? {
            None => None,
            Some(d) => {
                let total = geo_commune::Entity::find()
                    .select_only()
                    // SUM of a BIGINT is NUMERIC on PostgreSQL: cast it back.
                    .column_as(Expr::cust("CAST(SUM(population) AS BIGINT)"), "total")
                    .filter(geo_commune::Column::DepartementCode.eq(code))
                    .into_model::<Total>()
                    .one(db)
                    .await?
                    .and_then(|t| t.total)
                    .unwrap_or(0);
                Some(AuthorityFacts {
                    name: d.name,
                    population: total,
                    departement_code: d.code,
                    region_code: d.region_code,
                    zone: d.zone,
                    epci_siren: None,
                })
            }
        },
    })
}
