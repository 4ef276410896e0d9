//! The optimal assignment of many needs (affectation optimale): each need gets at most one
//! provider, no provider more needs than its capacity left, every pair passes the hard rules,
//! and the total score is the largest possible. Solved as a maximum-weight assignment with
//! `pathfinding`'s Kuhn–Munkres (Hungarian algorithm), each provider expanded into as many
//! columns as its capacity: an exact solver, deterministic for the same input.
//!
//! Three exact reductions keep the matrices small: needs and providers that share no
//! eligible pair are solved apart (connected components); a provider with at least as
//! much capacity as needs that may use it constrains nothing, so each need only keeps the
//! best such provider as its fallback; and a provider gets no more columns than needs that
//! may use it.

use std::collections::BTreeMap;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// Scores are compared as integers (millionths): the solver needs exact arithmetic, and the
/// same input always gives the same answer.
pub const SCALE: f64 = 1_000_000.0;

pub fn to_units(score: f64) -> i64 {
    (score * SCALE).round() as i64
}

/// The input: needs `0..needs`, providers `0..capacities.len()` with their capacity left,
/// and the eligible pairs (need, provider, score in units ≥ 0).
#[derive(Debug, Clone, Default)]
pub struct Problem {
    pub needs: usize,
    pub capacities: Vec<u32>,
    pub edges: Vec<(usize, usize, i64)>,
}

/// For each need, its provider (or none), and the total in units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    pub assigned: Vec<Option<usize>>,
    pub total: i64,
}

impl Solution {
    fn empty(needs: usize) -> Self {
        Self {
            assigned: vec![None; needs],
            total: 0,
        }
    }
}

/// Whether `s` respects capacities and uses only eligible pairs; its recomputed total.
pub fn check(p: &Problem, s: &Solution) -> Result<i64, String> {
    let score: BTreeMap<(usize, usize), i64> =
        p.edges.iter().map(|&(n, j, w)| ((n, j), w)).collect();
    let mut used = vec![0u32; p.capacities.len()];
    let mut total = 0;
    for (n, a) in s.assigned.iter().enumerate() {
        if let Some(j) = a {
            let w = score
                .get(&(n, *j))
                .ok_or_else(|| format!("need {n} given ineligible provider {j}"))?;
            used[*j] += 1;
            total += w;
        }
    }
    for (j, u) in used.iter().enumerate() {
        if *u > p.capacities[j] {
            return Err(format!("provider {j} over capacity"));
        }
    }
    Ok(total)
}

/// Best pair first, while capacity lasts: what a person would do by hand, and the reference
/// the optimal assignment is compared with.
pub fn greedy(p: &Problem) -> Solution {
    let mut edges = p.edges.clone();
    edges.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let mut s = Solution::empty(p.needs);
    let mut left = p.capacities.clone();
    for (n, j, w) in edges {
        if s.assigned[n].is_none() && left[j] > 0 {
            s.assigned[n] = Some(j);
            left[j] -= 1;
            s.total += w;
        }
    }
    s
}

/// Union-find over needs `0..n` and providers `n..n + m`.
struct Components(Vec<usize>);

impl Components {
    fn find(&mut self, x: usize) -> usize {
        let mut root = x;
        while self.0[root] != root {
            root = self.0[root];
        }
        let mut x = x;
        while self.0[x] != root {
            let next = self.0[x];
            self.0[x] = root;
            x = next;
        }
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The smaller root wins: the grouping does not depend on the order of edges.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo;
        }
    }
}

/// Needs of one connected component the exact solver takes at once: Kuhn–Munkres is cubic
/// in them (about a second for 1,000 on one core), so a larger set is refused rather than
/// left running; a région or a plan year at a time stays well below.
pub const MAX_COMPONENT_NEEDS: usize = 2_000;

/// Why no assignment was computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error(
        "{needs} needs compete for the same providers (at most {MAX_COMPONENT_NEEDS} at once): plan a région or a plan year at a time"
    )]
    Component { needs: usize },
}

/// The assignment of largest total score.
pub fn optimal(p: &Problem) -> Result<Solution, TooLarge> {
    let n = p.needs;
    let m = p.capacities.len();
    let mut solution = Solution::empty(n);
    // Pairs with a provider without capacity left can never be used.
    let edges: Vec<(usize, usize, i64)> = p
        .edges
        .iter()
        .copied()
        .filter(|&(_, j, _)| p.capacities[j] > 0)
        .collect();
    let mut degree = vec![0u32; m];
    for &(_, j, _) in &edges {
        degree[j] += 1;
    }
    // Providers that can take every need that may use them constrain nothing: each need
    // keeps the best of them as its fallback, worth taking whatever the others get.
    let contested: Vec<bool> = (0..m).map(|j| degree[j] > p.capacities[j]).collect();
    let mut fallback: Vec<Option<(i64, usize)>> = vec![None; n];
    let mut contested_edges = Vec::new();
    for &(i, j, w) in &edges {
        if contested[j] {
            contested_edges.push((i, j, w));
        } else {
            let better = match fallback[i] {
                None => true,
                Some((bw, bj)) => w > bw || (w == bw && j < bj),
            };
            if better {
                fallback[i] = Some((w, j));
            }
        }
    }
    let mut comps = Components((0..n + m).collect());
    for &(i, j, _) in &contested_edges {
        comps.union(i, n + j);
    }
    // Needs grouped by component, in need order.
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        if contested_edges.is_empty() {
            break;
        }
        let root = comps.find(i);
        groups.entry(root).or_default().push(i);
    }
    let mut by_need: Vec<Vec<(usize, i64)>> = vec![Vec::new(); n];
    for &(i, j, w) in &contested_edges {
        by_need[i].push((j, w));
    }
    if let Some(big) = groups.values().map(Vec::len).max()
        && big > MAX_COMPONENT_NEEDS
    {
        return Err(TooLarge::Component { needs: big });
    }
    let mut solved = vec![false; n];
    for needs in groups.values() {
        if needs.iter().all(|i| by_need[*i].is_empty()) {
            continue;
        }
        solve_component(
            needs,
            &by_need,
            &p.capacities,
            &degree,
            &fallback,
            &mut solution,
        );
        for i in needs {
            solved[*i] = true;
        }
    }
    // Needs without contested candidates take their fallback.
    for i in 0..n {
        if !solved[i]
            && let Some((_, j)) = fallback[i]
        {
            solution.assigned[i] = Some(j);
        }
    }
    let weight: BTreeMap<(usize, usize), i64> =
        edges.iter().map(|&(i, j, w)| ((i, j), w)).collect();
    solution.total = solution
        .assigned
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.and_then(|j| weight.get(&(i, j)).copied()))
        .sum();
    Ok(solution)
}

/// One connected component: rows are its needs; columns are its providers' slots, then one
/// "fallback" column per need, worth each need's best uncontested provider (0 if none).
fn solve_component(
    needs: &[usize],
    by_need: &[Vec<(usize, i64)>],
    capacities: &[u32],
    degree: &[u32],
    fallback: &[Option<(i64, usize)>],
    solution: &mut Solution,
) {
    let mut providers: Vec<usize> = needs
        .iter()
        .flat_map(|i| by_need[*i].iter().map(|(j, _)| *j))
        .collect();
    providers.sort_unstable();
    providers.dedup();
    // Columns of each provider: no more than the needs that may use it.
    let mut slot_owner = Vec::new();
    let mut first_slot = BTreeMap::new();
    for &j in &providers {
        first_slot.insert(j, slot_owner.len());
        for _ in 0..capacities[j].min(degree[j]) {
            slot_owner.push(j);
        }
    }
    let rows = needs.len();
    let columns = slot_owner.len() + rows;
    let max = needs
        .iter()
        .flat_map(|i| by_need[*i].iter().map(|(_, w)| *w))
        .chain(needs.iter().filter_map(|i| fallback[*i].map(|f| f.0)))
        .max()
        .unwrap_or(0);
    // Forbidden pairs cost more than any assignment can gain.
    let forbidden = -(max.saturating_add(1)).saturating_mul(rows as i64 + 1);
    let mut matrix = Matrix::new(rows, columns, forbidden);
    for (r, i) in needs.iter().enumerate() {
        for &(j, w) in &by_need[*i] {
            let start = first_slot[&j];
            for c in start..start + capacities[j].min(degree[j]) as usize {
                matrix[(r, c)] = w;
            }
        }
        let own_fallback = fallback[*i].map_or(0, |f| f.0);
        for c in slot_owner.len()..columns {
            matrix[(r, c)] = own_fallback;
        }
    }
    let (_, assignment) = kuhn_munkres(&matrix);
    for (r, i) in needs.iter().enumerate() {
        let c = assignment[r];
        if c < slot_owner.len() {
            if matrix[(r, c)] != forbidden {
                solution.assigned[*i] = Some(slot_owner[c]);
            }
        } else if let Some((_, j)) = fallback[*i] {
            solution.assigned[*i] = Some(j);
        }
    }
}

/// Every feasible assignment, tried: the reference of the property test (small inputs).
pub fn exhaustive(p: &Problem) -> i64 {
    let mut options: Vec<Vec<(usize, i64)>> = vec![Vec::new(); p.needs];
    for &(i, j, w) in &p.edges {
        options[i].push((j, w));
    }
    fn walk(i: usize, options: &[Vec<(usize, i64)>], left: &mut [u32]) -> i64 {
        if i == options.len() {
            return 0;
        }
        let mut best = walk(i + 1, options, left);
        for &(j, w) in &options[i] {
            if left[j] > 0 {
                left[j] -= 1;
                best = best.max(w + walk(i + 1, options, left));
                left[j] += 1;
            }
        }
        best
    }
    walk(0, &options, &mut p.capacities.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greedy_is_sometimes_worse() {
        // Need 0 prefers provider 0 slightly; need 1 can only use provider 0.
        let p = Problem {
            needs: 2,
            capacities: vec![1, 1],
            edges: vec![(0, 0, 900), (0, 1, 800), (1, 0, 850)],
        };
        let g = greedy(&p);
        assert_eq!(g.total, 900);
        assert_eq!(g.assigned, vec![Some(0), None]);
        let o = optimal(&p).expect("small");
        assert_eq!(o.total, 1650);
        assert_eq!(o.assigned, vec![Some(1), Some(0)]);
        assert_eq!(check(&p, &o), Ok(1650));
    }

    #[test]
    fn capacity_and_fallbacks() {
        // Provider 1 can take both needs (uncontested); provider 0 only one.
        let p = Problem {
            needs: 3,
            capacities: vec![1, 2, 0],
            edges: vec![(0, 0, 10), (1, 0, 9), (0, 1, 5), (1, 1, 1), (2, 2, 100)],
        };
        let o = optimal(&p).expect("small");
        assert_eq!(check(&p, &o), Ok(o.total));
        assert_eq!(o.total, exhaustive(&p));
        // Need 2's only provider has no capacity left.
        assert_eq!(o.assigned[2], None);
    }

    #[test]
    fn the_same_input_gives_the_same_answer() {
        let p = Problem {
            needs: 3,
            capacities: vec![1, 1, 1],
            edges: vec![
                (0, 0, 5),
                (0, 1, 5),
                (1, 0, 5),
                (1, 1, 5),
                (2, 2, 5),
                (2, 0, 5),
            ],
        };
        let first = optimal(&p).expect("small");
        for _ in 0..5 {
            assert_eq!(optimal(&p).expect("small"), first);
        }
    }

    fn problems() -> impl Strategy<Value = Problem> {
        (1usize..=6, 1usize..=4).prop_flat_map(|(needs, providers)| {
            (
                Just(needs),
                proptest::collection::vec(0u32..=2, providers),
                proptest::collection::vec(
                    proptest::option::weighted(0.6, 0i64..1_000),
                    needs * providers,
                ),
            )
                .prop_map(move |(needs, capacities, cells)| Problem {
                    needs,
                    edges: cells
                        .iter()
                        .enumerate()
                        .filter_map(|(k, w)| w.map(|w| (k / providers, k % providers, w)))
                        .collect(),
                    capacities,
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The solver reaches the best total an exhaustive search finds, never exceeds a
        /// capacity, never uses an ineligible pair, and greedy never does better.
        #[test]
        fn optimal_matches_exhaustive_search(p in problems()) {
            let o = optimal(&p).expect("small");
            prop_assert_eq!(check(&p, &o), Ok(o.total));
            prop_assert_eq!(o.total, exhaustive(&p));
            let g = greedy(&p);
            prop_assert_eq!(check(&p, &g), Ok(g.total));
            prop_assert!(g.total <= o.total);
        }
    }
}
