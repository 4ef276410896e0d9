//! tde.matching.v1.MatchingService: needs, their explained ranking, and the optimal
//! assignment of many of them.

use std::collections::{BTreeMap, HashMap};

use sea_orm::TransactionTrait as _;
use tonic::{Request, Response, Status};

use tde_proto::matching::v1 as pb;
use tde_proto::matching::v1::matching_service_server::MatchingService;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::idempotency::IdempotencyKey;
use tde_runtime::{ApiError, Violations};

use super::convert;
use super::{MatchingApi, need_resource, not_found, visible_to};
use crate::domain::assignment::{self, Problem};
use crate::domain::need::Need;
use crate::domain::provider::{Area, Provider};
use crate::domain::ranking::{self, HardRule, ProviderStats, Verdict};
use crate::storage::{self, NeedFilter};

pub const DEFAULT_PAGE: u64 = 100;
pub const MAX_PAGE: u64 = 500;
const DEFAULT_CANDIDATES: usize = 20;
const MAX_CANDIDATES: usize = 200;

/// Providers and their history, loaded once for a ranking or an assignment.
pub struct Pool {
    pub providers: Vec<Provider>,
    pub stats: HashMap<String, ProviderStats>,
    /// Providers left out because they work outside the need's area (`Reach::NeedArea`, when counted).
    pub outside_area: u64,
}

/// Which providers a pool loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every provider that is not deactivated.
    Everyone,
    /// Only those working in the need's département, its région or nationally: the others
    /// fail `outside_area` whatever else, so the database counts them instead when
    /// `count_others` (a caller that lists them itself needs no count: one scan less).
    NeedArea { count_others: bool },
}

impl Pool {
    pub fn stats(&self, id: &str) -> ProviderStats {
        self.stats.get(id).copied().unwrap_or_default()
    }
}

impl MatchingApi {
    /// The need `id` if the caller sees its territory (others do not exist for them).
    pub(crate) async fn visible_need(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        caller: &Caller,
        id: &str,
        field: Option<&'static str>,
    ) -> Result<Need, ApiError> {
        storage::find_need(db, id)
            .await?
            .filter(|n| caller.may_see(&n.territory_id, &n.region_code))
            .ok_or_else(|| not_found("need", id, field))
    }

    /// The providers `reach` names (never the deactivated), with their loads over the
    /// need's period. `Reach::NeedArea` without a need is everyone.
    pub(crate) async fn pool_for(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        need: Option<&Need>,
        reach: Reach,
    ) -> Result<Pool, ApiError> {
        let period = need.map(|n| (n.planned_start, n.planned_end));
        let now = tde_runtime::api::now();
        Ok(match (reach, need) {
            (Reach::NeedArea { count_others }, Some(need)) => {
                let (providers, outside_area) = storage::rankable_providers_in(
                    db,
                    &need.departement_code,
                    &need.region_code,
                    count_others,
                )
                .await?;
                // A few providers of the area: their figures only, not the whole history.
                let ids: Vec<String> = providers.iter().map(|p| p.id.clone()).collect();
                Pool {
                    stats: storage::provider_stats_among(db, &ids, period, now).await?,
                    providers,
                    outside_area,
                }
            }
            _ => Pool {
                providers: storage::rankable_providers(db).await?,
                stats: storage::provider_stats(db, period, now).await?,
                outside_area: 0,
            },
        })
    }

    fn weights_pb(&self) -> Vec<pb::Weight> {
        self.settings
            .weights
            .named()
            .into_iter()
            .map(|(factor, weight)| pb::Weight {
                factor: factor.to_string(),
                weight,
            })
            .collect()
    }

    async fn rank_providers(
        &self,
        caller: &Caller,
        r: pb::RankProvidersRequest,
    ) -> Result<pb::RankProvidersResponse, ApiError> {
        let id = parse_id("need_id", &r.need_id)?.to_string();
        let max = match r.max_candidates {
            0 => DEFAULT_CANDIDATES,
            n if n < 0 => return Err(ApiError::invalid("max_candidates", "must not be negative")),
            n => usize::try_from(n)
                .unwrap_or(MAX_CANDIDATES)
                .min(MAX_CANDIDATES),
        };
        caller.concerns(need_resource(&id));
        let need = self
            .visible_need(&self.ctx.db, caller, &id, Some("need_id"))
            .await?;
        let pool = self
            .pool_for(
                &self.ctx.db,
                Some(&need),
                Reach::NeedArea {
                    count_others: !r.all_exclusions,
                },
            )
            .await?;
        let ranking = ranking::rank(
            &need,
            pool.providers.iter().map(|p| (p, pool.stats(&p.id))),
            &self.settings.weights,
        );
        // Listed one by one on request: the providers outside the area, of which only what
        // the rules before the area read is loaded.
        let outside = if r.all_exclusions {
            storage::rankable_providers_outside(
                &self.ctx.db,
                &need.departement_code,
                &need.region_code,
            )
            .await?
        } else {
            Vec::new()
        };
        let mut exclusions: Vec<pb::Exclusion> = ranking
            .exclusions
            .iter()
            .map(|(p, rule, detail)| pb::Exclusion {
                provider_id: p.id.clone(),
                provider_name: p.name.clone(),
                rule: rule.as_str().to_string(),
                detail: detail.clone(),
            })
            .collect();
        for p in outside {
            let (rule, detail) = ranking::rule_outside_area(
                &need,
                ranking::Outline {
                    status: p.status,
                    conflict_territory_ids: &p.conflict_territory_ids,
                    skills: &p.skills,
                },
            );
            exclusions.push(pb::Exclusion {
                provider_id: p.id,
                provider_name: p.name,
                rule: rule.as_str().to_string(),
                detail,
            });
        }
        if r.all_exclusions {
            // In provider order, those of the area and the others alike.
            exclusions.sort_by(|a, b| a.provider_id.cmp(&b.provider_id));
        }
        Ok(pb::RankProvidersResponse {
            need: Some(convert::need_to_pb(&need, None)),
            candidates: ranking
                .candidates
                .iter()
                .take(max)
                .map(|c| pb::Candidate {
                    provider_id: c.provider.id.clone(),
                    provider_name: c.provider.name.clone(),
                    rank: i32::try_from(c.rank).unwrap_or(i32::MAX),
                    score: c.score,
                    factors: c
                        .factors
                        .iter()
                        .map(|f| pb::Factor {
                            name: f.name.to_string(),
                            value: f.value,
                            weight: f.weight,
                            contribution: f.contribution,
                        })
                        .collect(),
                })
                .collect(),
            exclusions,
            weights: self.weights_pb(),
            // 0 when they are listed: not counted besides.
            outside_area_count: i32::try_from(pool.outside_area).unwrap_or(i32::MAX),
        })
    }

    async fn plan(
        &self,
        caller: &Caller,
        r: pb::PlanAssignmentsRequest,
    ) -> Result<pb::PlanAssignmentsResponse, ApiError> {
        let filter = need_filter(caller, &r.region_code, r.year)?;
        let key = if r.send {
            IdempotencyKey::of(caller, "assignment_plan", &r.request_id, &r)?
        } else {
            None
        };
        caller.concerns("needs");
        let txn = self.ctx.db.begin().await?;
        let plan_id = uuid::Uuid::now_v7().to_string();
        if let Some(existing) = IdempotencyKey::claim(key.as_ref(), &txn, &plan_id).await? {
            // The replay answers what the first call did (its proposals, totals and
            // unserved needs, stored with them) and sends nothing more.
            drop(txn);
            return self.replayed_plan(&existing).await;
        }
        let mut needs = storage::open_needs(&txn, &filter, None, None).await?;
        let ids: Vec<String> = needs.iter().map(|n| n.id.clone()).collect();
        let waiting = storage::needs_with_pending(&txn, &ids).await?;
        // A need already waiting for a provider's answer is not planned again.
        needs.retain(|n| !waiting.contains(&n.id));
        let pool = self.pool_for(&txn, None, Reach::Everyone).await?;
        let planned = plan_assignments(&needs, &pool, &self.settings.weights);
        let mut response = pb::PlanAssignmentsResponse {
            assignments: Vec::new(),
            unserved: planned.unserved,
            total_score: planned.total,
            greedy_total_score: planned.greedy_total,
        };
        let mut events = Vec::new();
        let now = tde_runtime::api::now();
        for (n, p, score, rank) in planned.assigned {
            let need = &needs[n];
            let provider = &pool.providers[p];
            let mut proposal_id = String::new();
            if r.send {
                let mut proposal =
                    self.new_proposal(caller, need, provider, score, rank, String::new(), now);
                proposal.batch_id = Some(plan_id.clone());
                storage::insert_proposal(&txn, &proposal).await?;
                events.push(crate::events::proposal_sent(
                    &proposal,
                    need,
                    &provider.name,
                    &provider.contact.email,
                ));
                proposal_id = proposal.id;
            }
            response.assignments.push(pb::PlannedAssignment {
                need_id: need.id.clone(),
                provider_id: provider.id.clone(),
                score,
                proposal_id,
            });
        }
        if key.is_some() {
            storage::insert_assignment_plan(
                &txn,
                &storage::AssignmentPlan {
                    id: plan_id,
                    total_score: response.total_score,
                    greedy_total_score: response.greedy_total_score,
                    unserved: response
                        .unserved
                        .iter()
                        .map(|u| storage::UnservedNeed {
                            need_id: u.need_id.clone(),
                            reason: u.reason.clone(),
                            detail: u.detail.clone(),
                        })
                        .collect(),
                    created_at: now,
                },
            )
            .await?;
        }
        tde_runtime::outbox::enqueue(&txn, events).await?;
        txn.commit().await?;
        self.ctx.outbox.wake();
        Ok(response)
    }

    /// The reply of the PlanAssignments call `plan_id`, again.
    async fn replayed_plan(&self, plan_id: &str) -> Result<pb::PlanAssignmentsResponse, ApiError> {
        let plan = storage::find_assignment_plan(&self.ctx.db, plan_id).await?;
        let sent = storage::proposals_of_batch(&self.ctx.db, plan_id).await?;
        // Calls made before their totals were kept: what the proposals tell.
        let plan = plan.unwrap_or_else(|| storage::AssignmentPlan {
            id: plan_id.to_string(),
            total_score: sent.iter().map(|p| p.score).sum(),
            greedy_total_score: 0.0,
            unserved: Vec::new(),
            created_at: tde_runtime::api::now(),
        });
        Ok(pb::PlanAssignmentsResponse {
            assignments: sent
                .into_iter()
                .map(|p| pb::PlannedAssignment {
                    need_id: p.need_id,
                    provider_id: p.provider_id,
                    score: p.score,
                    proposal_id: p.id,
                })
                .collect(),
            unserved: plan
                .unserved
                .into_iter()
                .map(|u| pb::UnservedNeed {
                    need_id: u.need_id,
                    reason: u.reason,
                    detail: u.detail,
                })
                .collect(),
            total_score: plan.total_score,
            greedy_total_score: plan.greedy_total_score,
        })
    }
}

/// The needs a caller asks for (ListNeeds, PlanAssignments): a région code (of the geography,
/// empty for every région) and a plan year (1 to 3, 0 for every year), within the
/// territories the caller sees.
fn need_filter(caller: &Caller, region_code: &str, year: i32) -> Result<NeedFilter, ApiError> {
    let mut v = Violations::default();
    let region_code = region_code.trim();
    if !region_code.is_empty() && !tde_runtime::geography::is_region(region_code) {
        v.add(
            "region_code",
            "is not a région code of the 2026 geography (e.g. 84)",
        );
    }
    let year = match year {
        0 => None,
        y => {
            let y = u8::try_from(y).ok().filter(|y| (1..=3).contains(y));
            if y.is_none() {
                v.add("year", "must be 1, 2 or 3 (0: every year)");
            }
            y
        }
    };
    v.into_result()?;
    Ok(NeedFilter {
        region_code: (!region_code.is_empty()).then(|| region_code.to_string()),
        year,
        visible_to: visible_to(caller),
    })
}

/// The result of planning: (need, provider, score, rank among the need's candidates).
pub struct Planned {
    pub assigned: Vec<(usize, usize, f64, u32)>,
    pub unserved: Vec<pb::UnservedNeed>,
    pub total: f64,
    pub greedy_total: f64,
    /// What the solver was given (needs, capacities left, eligible pairs in score units).
    pub problem: Problem,
}

/// The optimal assignment of `needs` over the pool, with the greedy total beside it.
///
/// Capacities are the providers' capacity less their unfinished actions, whatever their
/// periods (the needs of a plan year mostly overlap): conservative, never over capacity.
pub fn plan_assignments(needs: &[Need], pool: &Pool, weights: &ranking::Weights) -> Planned {
    // Providers by where they work, so that each need judges only those in its area.
    let mut by_departement: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_region: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut national = Vec::new();
    for (j, p) in pool.providers.iter().enumerate() {
        for a in &p.areas {
            match a {
                Area::Departement(d) => by_departement.entry(d.as_str()).or_default().push(j),
                Area::Region(r) => by_region.entry(r.as_str()).or_default().push(j),
                Area::National => national.push(j),
            }
        }
    }
    let capacities: Vec<u32> = pool
        .providers
        .iter()
        .map(|p| p.capacity.saturating_sub(pool.stats(&p.id).current_load))
        .collect();
    let mut problem = Problem {
        needs: needs.len(),
        capacities,
        edges: Vec::new(),
    };
    let mut scores: HashMap<(usize, usize), f64> = HashMap::new();
    let mut ranks: HashMap<(usize, usize), u32> = HashMap::new();
    let mut unserved = Vec::new();
    let mut reasons: Vec<BTreeMap<HardRule, u32>> = vec![BTreeMap::new(); needs.len()];
    for (i, need) in needs.iter().enumerate() {
        let mut local: Vec<usize> = by_departement
            .get(need.departement_code.as_str())
            .into_iter()
            .flatten()
            .chain(
                by_region
                    .get(need.region_code.as_str())
                    .into_iter()
                    .flatten(),
            )
            .chain(national.iter())
            .copied()
            .collect();
        local.sort_unstable();
        local.dedup();
        let mut scored = Vec::new();
        for j in local {
            let p = &pool.providers[j];
            let mut stats = pool.stats(&p.id);
            stats.load_over_period = stats.current_load;
            match ranking::judge(need, p, &stats, weights) {
                Verdict::Scored { score, .. } => scored.push((j, score)),
                Verdict::Excluded { rule, .. } => *reasons[i].entry(rule).or_default() += 1,
            }
        }
        scored.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(pool.providers[a.0].id.cmp(&pool.providers[b.0].id))
        });
        for (rank, (j, score)) in scored.iter().enumerate() {
            problem.edges.push((i, *j, assignment::to_units(*score)));
            scores.insert((i, *j), *score);
            ranks.insert((i, *j), rank as u32 + 1);
        }
    }
    let solution = assignment::optimal(&problem);
    let greedy = assignment::greedy(&problem);
    let mut has_candidates = vec![false; needs.len()];
    for e in &problem.edges {
        has_candidates[e.0] = true;
    }
    let mut assigned = Vec::new();
    let mut total = 0.0;
    for (i, a) in solution.assigned.iter().enumerate() {
        match a {
            Some(j) => {
                let score = scores.get(&(i, *j)).copied().unwrap_or(0.0);
                total += score;
                assigned.push((i, *j, score, ranks.get(&(i, *j)).copied().unwrap_or(0)));
            }
            None => {
                let (reason, detail) = if has_candidates[i] {
                    (
                        "capacity_exhausted",
                        "ses candidats n'ont plus de capacité : elle va à des besoins mieux classés".to_string(),
                    )
                } else {
                    let most = reasons[i]
                        .iter()
                        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                        .map(|(r, n)| {
                            format!(
                                "aucun candidat : {} prestataire(s) exclu(s) par {}",
                                n,
                                r.as_str()
                            )
                        })
                        .unwrap_or_else(|| {
                            "aucun prestataire n'intervient sur ce territoire".into()
                        });
                    ("no_candidate", most)
                };
                unserved.push(pb::UnservedNeed {
                    need_id: needs[i].id.clone(),
                    reason: reason.to_string(),
                    detail,
                });
            }
        }
    }
    let greedy_total = greedy
        .assigned
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.and_then(|j| scores.get(&(i, j)).copied()))
        .sum();
    Planned {
        assigned,
        unserved,
        total,
        greedy_total,
        problem,
    }
}

#[tonic::async_trait]
impl MatchingService for MatchingApi {
    async fn get_need(
        &self,
        request: Request<pb::GetNeedRequest>,
    ) -> Result<Response<pb::GetNeedResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(need_resource(&id));
        let need = self.visible_need(&self.ctx.db, &caller, &id, None).await?;
        let pending = storage::pending_of_need(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetNeedResponse {
            need: Some(convert::need_to_pb(
                &need,
                pending.first().map(|p| p.id.as_str()),
            )),
        }))
    }

    async fn list_needs(
        &self,
        request: Request<pb::ListNeedsRequest>,
    ) -> Result<Response<pb::ListNeedsResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let filter = need_filter(&caller, &r.region_code, r.year)?;
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        caller.concerns("needs");
        let rows = storage::open_needs(&self.ctx.db, &filter, page.after(), Some(page.fetch()))
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |n| n.id.clone());
        Ok(Response::new(pb::ListNeedsResponse {
            needs: rows.iter().map(|n| convert::need_to_pb(n, None)).collect(),
            next_page_token,
        }))
    }

    async fn rank_providers(
        &self,
        request: Request<pb::RankProvidersRequest>,
    ) -> Result<Response<pb::RankProvidersResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            MatchingApi::rank_providers(self, &caller, request.into_inner()).await?,
        ))
    }

    async fn plan_assignments(
        &self,
        request: Request<pb::PlanAssignmentsRequest>,
    ) -> Result<Response<pb::PlanAssignmentsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            self.plan(&caller, request.into_inner()).await?,
        ))
    }
}
