//! The optimal assignment of many needs (affectation optimale): each need gets at most one
//! provider, no provider more needs than its capacity left, every pair passes the hard rules,
//! and the total score is the largest possible. Solved exactly as a minimum-cost flow by
//! successive shortest paths (see [`optimal`]); a greedy assignment is kept beside it as the
//! reference a person would reach by hand.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

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

/// The assignment of largest total score, as a minimum-cost flow: each need sends one unit
/// either through one of its eligible providers (cost `top − score`) or straight to the sink
/// ("unserved", cost `top`), each provider passes at most its capacity. Minimising the cost
/// of the n units maximises the total score.
///
/// Solved by successive shortest paths (primal–dual): the needs are taken one by one, in
/// order, and each sends its unit along the cheapest path of the residual graph, found by
/// Dijkstra on costs reduced by node potentials. That path may move needs placed earlier to
/// another provider (or leave one unserved) when that frees a better place. Dijkstra stops
/// as soon as the sink is settled: while providers have room the search stays local, which
/// is what makes the whole country (10,000 needs, 3,000 providers, national providers
/// joining every need into one group) a fraction of a second. A general min-cost-flow crate
/// (`ac-library-rs`, the test reference below) pushes every unit from one super source and
/// searches the whole graph each time: the same total, about 80 times slower here.
///
/// Exact (each step keeps the flow of least cost for the needs taken so far), integral, and
/// deterministic: needs in index order, ties broken by node index.
pub fn optimal(p: &Problem) -> Solution {
    let n = p.needs;
    let m = p.capacities.len();
    let top = p.edges.iter().map(|e| e.2).max().unwrap_or(0).max(0);
    let mut graph = Residual::new(n + m + 1);
    let sink = n + m;
    let mut pair_edges = Vec::with_capacity(p.edges.len());
    for &(i, j, w) in &p.edges {
        // A pair with a provider without capacity left can never be used.
        if p.capacities[j] > 0 && w >= 0 {
            pair_edges.push((graph.add(i, n + j, 1, top - w), i, j, w));
        }
    }
    for i in 0..n {
        graph.add(i, sink, 1, top);
    }
    for (j, c) in p.capacities.iter().enumerate() {
        if *c > 0 {
            graph.add(n + j, sink, i64::from(*c), 0);
        }
    }
    let mut search = Search::new(n + m + 1);
    for need in 0..n {
        search.augment(&mut graph, need, sink);
    }
    let mut solution = Solution::empty(n);
    for (e, i, j, w) in pair_edges {
        if graph.capacity[e] == 0 {
            solution.assigned[i] = Some(j);
            solution.total += w;
        }
    }
    solution
}

/// A residual graph: edge `e` and its reverse `e ^ 1`.
struct Residual {
    head: Vec<usize>,
    capacity: Vec<i64>,
    cost: Vec<i64>,
    out: Vec<Vec<usize>>,
}

impl Residual {
    fn new(nodes: usize) -> Self {
        Self {
            head: Vec::new(),
            capacity: Vec::new(),
            cost: Vec::new(),
            out: vec![Vec::new(); nodes],
        }
    }

    fn add(&mut self, from: usize, to: usize, capacity: i64, cost: i64) -> usize {
        let e = self.head.len();
        self.head.extend([to, from]);
        self.capacity.extend([capacity, 0]);
        self.cost.extend([cost, -cost]);
        self.out[from].push(e);
        self.out[to].push(e + 1);
        e
    }
}

/// Dijkstra's state, reused from one need to the next (only touched nodes are reset).
struct Search {
    potential: Vec<i64>,
    distance: Vec<i64>,
    via: Vec<usize>,
    settled: Vec<bool>,
    touched: Vec<usize>,
    order: Vec<usize>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl Search {
    fn new(nodes: usize) -> Self {
        Self {
            potential: vec![0; nodes],
            distance: vec![i64::MAX; nodes],
            via: vec![usize::MAX; nodes],
            settled: vec![false; nodes],
            touched: Vec::new(),
            order: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// Sends one unit from `source` to `sink` along a cheapest residual path. The reduced
    /// costs `cost + potential(from) − potential(to)` stay non-negative: the potentials of
    /// the settled nodes move by `distance − distance(sink)`, the others do not move.
    fn augment(&mut self, graph: &mut Residual, source: usize, sink: usize) {
        for &v in &self.touched {
            self.distance[v] = i64::MAX;
            self.settled[v] = false;
        }
        self.touched.clear();
        self.order.clear();
        self.heap.clear();
        self.distance[source] = 0;
        self.touched.push(source);
        self.heap.push(Reverse((0, source)));
        while let Some(Reverse((d, v))) = self.heap.pop() {
            if self.settled[v] {
                continue;
            }
            self.settled[v] = true;
            self.order.push(v);
            if v == sink {
                break;
            }
            for &e in &graph.out[v] {
                if graph.capacity[e] == 0 {
                    continue;
                }
                let u = graph.head[e];
                let reduced = graph.cost[e] + self.potential[v] - self.potential[u];
                let candidate = d + reduced;
                if candidate < self.distance[u] {
                    if self.distance[u] == i64::MAX {
                        self.touched.push(u);
                    }
                    self.distance[u] = candidate;
                    self.via[u] = e;
                    self.heap.push(Reverse((candidate, u)));
                }
            }
        }
        // Every need reaches the sink directly ("unserved"), so the sink is always settled.
        let to_sink = self.distance[sink];
        for &v in &self.order {
            self.potential[v] += self.distance[v] - to_sink;
        }
        // A shortest path visits each node once at most: bounded, so that a broken invariant
        // fails the tests instead of looping.
        let mut v = sink;
        for _ in 0..self.via.len() {
            if v == source {
                break;
            }
            let e = self.via[v];
            graph.capacity[e] -= 1;
            graph.capacity[e ^ 1] += 1;
            v = graph.head[e ^ 1];
        }
        debug_assert_eq!(v, source, "the augmenting path leads back to its need");
    }
}

/// The same optimum from a general min-cost-flow solver crate: one super source feeding
/// every need, the same costs. Independent of [`optimal`], and much slower at scale: the
/// reference of its property test and its benchmark.
pub fn reference_total(p: &Problem) -> i64 {
    use ac_library::MinCostFlowGraph;
    let (n, m) = (p.needs, p.capacities.len());
    let top = p.edges.iter().map(|e| e.2).max().unwrap_or(0).max(0);
    let (source, sink) = (n + m, n + m + 1);
    let mut g = MinCostFlowGraph::new(n + m + 2);
    for i in 0..n {
        g.add_edge(source, i, 1, 0);
        g.add_edge(i, sink, 1, top);
    }
    for &(i, j, w) in p.edges.iter().filter(|e| e.2 >= 0) {
        g.add_edge(i, n + j, 1, top - w);
    }
    for (j, c) in p.capacities.iter().enumerate() {
        g.add_edge(n + j, sink, i64::from(*c), 0);
    }
    // Every need reaches the sink, if only directly: the flow is always n.
    let (_, cost) = g.flow(source, sink, n as i64);
    n as i64 * top - cost
}

/// Every feasible assignment, tried: the reference of the property test (small inputs).
#[cfg(test)]
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
        let o = optimal(&p);
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
        let o = optimal(&p);
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
        let first = optimal(&p);
        for _ in 0..5 {
            assert_eq!(optimal(&p), first);
        }
    }

    #[test]
    fn one_large_group_of_competing_needs_is_solved() {
        // 2,500 needs over 30 providers (the former solver refused more than 2,000 needs
        // competing for the same providers): every need may use a third of them.
        let mut edges = Vec::new();
        for i in 0..2_500usize {
            for j in 0..30usize {
                if (i * 7 + j * 13) % 3 == 0 {
                    edges.push((i, j, ((i * 31 + j * 17) % 1_000) as i64));
                }
            }
        }
        let p = Problem {
            needs: 2_500,
            capacities: (0..30).map(|j| 20 + j % 40).collect(),
            edges,
        };
        let o = optimal(&p);
        assert_eq!(check(&p, &o), Ok(o.total));
        assert_eq!(o.total, reference_total(&p));
        assert!(greedy(&p).total <= o.total);
    }

    /// Random instances: `needs` × `providers` pairs, each eligible with some probability,
    /// scores below a random spread (a small spread means many ties), capacities 0..=`most`.
    fn problems(
        needs: std::ops::RangeInclusive<usize>,
        providers: std::ops::RangeInclusive<usize>,
        most: u32,
        density: std::ops::Range<f64>,
    ) -> impl Strategy<Value = Problem> {
        (needs, providers, density, 1i64..=1_000).prop_flat_map(
            move |(needs, providers, density, spread)| {
                (
                    proptest::collection::vec(0u32..=most, providers),
                    proptest::collection::vec(
                        proptest::option::weighted(density, 0i64..spread),
                        needs * providers,
                    ),
                )
                    .prop_map(move |(capacities, cells)| Problem {
                        needs,
                        edges: cells
                            .iter()
                            .enumerate()
                            .filter_map(|(k, w)| w.map(|w| (k / providers, k % providers, w)))
                            .collect(),
                        capacities,
                    })
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// On instances too large to enumerate, the solver agrees with a general min-cost-flow
        /// solver, respects every capacity and eligibility, and gives the same answer twice.
        #[test]
        fn optimal_matches_a_min_cost_flow_solver(p in problems(1..=80, 1..=20, 4, 0.05..0.9)) {
            let o = optimal(&p);
            prop_assert_eq!(check(&p, &o), Ok(o.total));
            prop_assert_eq!(o.total, reference_total(&p));
            prop_assert!(greedy(&p).total <= o.total);
            prop_assert_eq!(optimal(&p), o);
        }

        /// The solver reaches the best total an exhaustive search finds, never exceeds a
        /// capacity, never uses an ineligible pair, and greedy never does better.
        #[test]
        fn optimal_matches_exhaustive_search(p in problems(1..=6, 1..=4, 2, 0.3..0.9)) {
            let o = optimal(&p);
            prop_assert_eq!(check(&p, &o), Ok(o.total));
            prop_assert_eq!(o.total, exhaustive(&p));
            let g = greedy(&p);
            prop_assert_eq!(check(&p, &g), Ok(g.total));
            prop_assert!(g.total <= o.total);
        }
    }
}
