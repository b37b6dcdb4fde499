//! What the pool itself teaches: photos alike tend to be of one class. The answers are spread to
//! the photos near them over a graph of each photo's nearest neighbours (label spreading, Zhou et
//! al. 2004), and the head learns from those spread guesses too, a little, beside the answers;
//! and the first questions are the photos most like many others (the centres of the pool's
//! clusters), so that the first answers reach every part of it.

use crate::typical::dot;

/// Each photo's neighbours in the graph.
const NEIGHBOURS: usize = 10;
/// Above this many photos there is no graph (its all-pairs search grows with the square of
/// the photos: about a second at 2,000 on 2 cores); the head learns from the answers alone.
pub const SPREAD_MAX: usize = 5000;
/// How far an answer spreads (0: not at all; towards 1: further).
const ALPHA: f32 = 0.9;
/// Steps of the spreading.
const STEPS: usize = 30;
/// How much a photo's spread class counts in a fit, as a share of an answer (on the
/// benchmark's pools 0.3 and 1 did alike, and better than 0.1; BENCHMARKS.md).
pub const WEIGHT: f32 = 0.3;
/// The first questions: this many photos, each the one nearest a cluster's centre.
pub const FIRST_QUESTIONS: usize = 10;
/// Lloyd iterations of the clustering that picks them.
const LLOYD_STEPS: usize = 10;

/// The pool's neighbour graph, its weights normalised as `D^-1/2 W D^-1/2`.
#[derive(Clone, Debug)]
pub struct Graph {
    rows: Vec<Vec<(usize, f32)>>,
}

impl Graph {
    /// The graph of `x` (features, about centred); `None` above [`SPREAD_MAX`] photos or with
    /// too few to have neighbours.
    pub fn build(x: &[Vec<f32>]) -> Option<Self> {
        let n = x.len();
        if n > SPREAD_MAX || n <= NEIGHBOURS {
            return None;
        }
        let near = crate::typical::nearest(x, NEIGHBOURS);
        // A Gaussian of the distance, its width the median distance to a neighbour.
        let mut all: Vec<f32> = near.iter().flatten().map(|&(_, d)| d).collect();
        let width = if all.is_empty() {
            return None;
        } else {
            let mid = all.len() / 2;
            *all.select_nth_unstable_by(mid, f32::total_cmp).1
        }
        .max(1e-6);
        // Symmetric: an edge either way counts both ways (in order: the same sums every run).
        let mut edges: Vec<std::collections::BTreeMap<usize, f32>> = vec![Default::default(); n];
        for (i, row) in near.iter().enumerate() {
            for &(j, d) in row {
                let w = (-(d / width).powi(2)).exp();
                edges[i].insert(j, w);
                edges[j].insert(i, w);
            }
        }
        let degree: Vec<f32> = edges.iter().map(|e| e.values().sum::<f32>()).collect();
        let rows = edges
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                e.into_iter()
                    .map(|(j, w)| (j, w / (degree[i] * degree[j]).sqrt().max(1e-12)))
                    .collect()
            })
            .collect();
        Some(Self { rows })
    }

    /// Each photo's classes as spread from `answers` (photo, class) over `classes`: a
    /// probability for each class, `None` where no answer reaches.
    pub fn spread(&self, answers: &[(usize, usize)], classes: usize) -> Vec<Option<Vec<f32>>> {
        let n = self.rows.len();
        let mut seed = vec![vec![0.0f32; classes]; n];
        for &(i, c) in answers {
            if let Some(v) = seed.get_mut(i).and_then(|r| r.get_mut(c)) {
                *v = 1.0;
            }
        }
        let mut f = seed.clone();
        for _ in 0..STEPS {
            f = self
                .rows
                .iter()
                .zip(&seed)
                .map(|(row, y)| {
                    let mut next: Vec<f32> = y.iter().map(|v| (1.0 - ALPHA) * v).collect();
                    for &(j, w) in row {
                        for (a, b) in next.iter_mut().zip(&f[j]) {
                            *a += ALPHA * w * b;
                        }
                    }
                    next
                })
                .collect();
        }
        f.into_iter()
            .map(|row| {
                let sum: f32 = row.iter().sum();
                (sum > 1e-9 && sum.is_finite()).then(|| row.iter().map(|v| v / sum).collect())
            })
            .collect()
    }
}

/// The photos to ask first: the photo nearest each centre of a [`FIRST_QUESTIONS`]-cluster
/// k-means of `x` (k-means++ seeded), the largest cluster's first.
pub fn representatives(x: &[Vec<f32>], seed: u64) -> Vec<usize> {
    let n = x.len();
    let k = FIRST_QUESTIONS.min(n);
    if k == 0 {
        return Vec::new();
    }
    let sq =
        |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum() };
    let mut rng = crate::rng::SplitMix64(seed ^ 0xce47);
    let first = (rng.next_u64() % n as u64) as usize;
    let mut centres: Vec<Vec<f32>> = vec![x[first].clone()];
    let mut nearest: Vec<f32> = x.iter().map(|v| sq(v, &centres[0])).collect();
    while centres.len() < k {
        let total: f32 = nearest.iter().sum();
        let mut pick = rng.next_f32() * total;
        // Rounding can carry `pick` past the end: the last photo not yet a centre then.
        let mut chosen = (0..n).rev().find(|&i| nearest[i] > 0.0).unwrap_or(n - 1);
        for (i, &d) in nearest.iter().enumerate() {
            if pick < d {
                chosen = i;
                break;
            }
            pick -= d;
        }
        centres.push(x[chosen].clone());
        let c = centres.last().map_or(&[][..], Vec::as_slice);
        for (d, v) in nearest.iter_mut().zip(x) {
            *d = d.min(sq(v, c));
        }
    }
    let assign = |centres: &[Vec<f32>]| -> Vec<usize> {
        use rayon::prelude::*;
        x.par_iter()
            .map(|v| {
                // The nearest centre: the largest `c·v - |c|²/2`.
                let score = |c: &Vec<f32>| dot(c, v) - 0.5 * dot(c, c);
                (0..centres.len())
                    .max_by(|&a, &b| score(&centres[a]).total_cmp(&score(&centres[b])))
                    .unwrap_or(0)
            })
            .collect()
    };
    let mut of = assign(&centres);
    for _ in 0..LLOYD_STEPS {
        let dim = x[0].len();
        let mut sums = vec![vec![0.0f32; dim]; k];
        let mut counts = vec![0usize; k];
        for (v, &c) in x.iter().zip(&of) {
            counts[c] += 1;
            sums[c].iter_mut().zip(v).for_each(|(s, a)| *s += a);
        }
        for ((centre, sum), &count) in centres.iter_mut().zip(sums).zip(&counts) {
            if count > 0 {
                *centre = sum.into_iter().map(|s| s / count as f32).collect();
            }
        }
        of = assign(&centres);
    }
    let mut clusters: Vec<(usize, usize)> = (0..k)
        .filter_map(|c| {
            let members = of.iter().filter(|&&o| o == c).count();
            let nearest = (0..n)
                .filter(|&i| of[i] == c)
                .min_by(|&a, &b| sq(&x[a], &centres[c]).total_cmp(&sq(&x[b], &centres[c])))?;
            Some((members, nearest))
        })
        .collect();
    clusters.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut seen = std::collections::HashSet::new();
    clusters
        .into_iter()
        .map(|c| c.1)
        .filter(|&i| seen.insert(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Two clusters of 30 points in 8 dimensions, the first 30 around +1, the rest around -1.
    fn two_clusters() -> Vec<Vec<f32>> {
        let mut rng = SplitMix64(7);
        (0..60)
            .map(|i| {
                let centre = if i < 30 { 1.0 } else { -1.0 };
                (0..8)
                    .map(|_| centre + 0.6 * (rng.next_f32() - 0.5))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn one_answer_a_cluster_reaches_the_whole_cluster() {
        let x = two_clusters();
        let graph = Graph::build(&x).expect("a graph of 60 photos");
        let spread = graph.spread(&[(0, 0), (59, 1)], 2);
        for (i, s) in spread.iter().enumerate() {
            let s = s.as_ref().expect("every photo reached");
            assert_eq!(s[0] > 0.5, i < 30, "photo {i}: {s:?}");
        }
        // With no answer nothing is spread.
        assert!(graph.spread(&[], 2).iter().all(Option::is_none));
    }

    #[test]
    fn the_first_questions_reach_both_clusters() {
        let x = two_clusters();
        let first = representatives(&x, 1);
        assert_eq!(first.len(), FIRST_QUESTIONS);
        let mut unique = first.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), first.len(), "{first:?}");
        assert!(first.iter().any(|&i| i < 30) && first.iter().any(|&i| i >= 30));
        assert_eq!(representatives(&x, 1), first, "seeded");
    }
}
