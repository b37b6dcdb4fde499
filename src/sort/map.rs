//! A map of a pool: each photo a point in two dimensions, photos alike near each other. t-SNE
//! (van der Maaten and Hinton 2008) on the pooled features, exact repulsion, the attraction on
//! each photo's nearest neighbours, started from the first two principal components: about 2 s
//! for 2,000 photos on 2 cores; above [`TSNE_MAX`] photos, the principal components alone.

use rayon::prelude::*;

use crate::typical::dot;

/// Above this many photos the map is the first two principal components alone (t-SNE's
/// exact repulsion grows with the square of the photos: about 20 s at 5,000 on 2 cores).
pub const TSNE_MAX: usize = 5000;
/// How many neighbours a photo's attraction counts (t-SNE's perplexity).
const PERPLEXITY: f32 = 30.0;
/// Iterations, and those with the early exaggeration.
const ITERATIONS: usize = 500;
const EXAGGERATED: usize = 200;
const EXAGGERATION: f32 = 12.0;

/// Each of `x`'s photos (features, about centred) as a point of the map, in [0, 1]².
pub fn layout(x: &[Vec<f32>], seed: u64) -> Vec<[f32; 2]> {
    let n = x.len();
    if n < 3 {
        return (0..n).map(|i| [0.5, i as f32 / n.max(1) as f32]).collect();
    }
    let mut y = principal_plane(x, seed);
    if n > TSNE_MAX {
        normalise(&mut y);
        return y;
    }
    let p = affinities(x);
    // Started small, as t-SNE starts (the spread comes from the gradient).
    let spread = (y.iter().map(|v| v[0] * v[0] + v[1] * v[1]).sum::<f32>() / n as f32).sqrt();
    for v in &mut y {
        v[0] *= 1e-2 / spread.max(1e-12);
        v[1] *= 1e-2 / spread.max(1e-12);
    }
    let rate = (n as f32 / EXAGGERATION).max(50.0);
    let mut velocity = vec![[0.0f32; 2]; n];
    let mut gains = vec![[1.0f32; 2]; n];
    for it in 0..ITERATIONS {
        let exaggeration = if it < EXAGGERATED { EXAGGERATION } else { 1.0 };
        let momentum = if it < EXAGGERATED { 0.5 } else { 0.8 };
        let grad = gradient(&y, &p, exaggeration);
        for i in 0..n {
            for d in 0..2 {
                let same_sign = (grad[i][d] > 0.0) == (velocity[i][d] > 0.0);
                gains[i][d] = if same_sign {
                    (gains[i][d] * 0.8).max(0.01)
                } else {
                    gains[i][d] + 0.2
                };
                velocity[i][d] = momentum * velocity[i][d] - rate * gains[i][d] * grad[i][d];
                y[i][d] += velocity[i][d];
            }
        }
    }
    normalise(&mut y);
    y
}

/// Sparse symmetric affinities: each photo's nearest neighbours (3 × the perplexity), with a
/// Gaussian whose width gives the perplexity; `p[i]` lists `(j, p_ij)`.
fn affinities(x: &[Vec<f32>]) -> Vec<Vec<(usize, f32)>> {
    let n = x.len();
    let k = ((3.0 * PERPLEXITY) as usize).min(n - 1);
    let rows: Vec<Vec<(usize, f32)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut d: Vec<(usize, f32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (j, squared(&x[i], &x[j])))
                .collect();
            d.select_nth_unstable_by(k - 1, |a, b| a.1.total_cmp(&b.1));
            d.truncate(k);
            conditional(&d)
        })
        .collect();
    // Symmetric: (p_j|i + p_i|j) / 2n.
    let mut sym: Vec<std::collections::HashMap<usize, f32>> = vec![Default::default(); n];
    for (i, row) in rows.iter().enumerate() {
        for &(j, p) in row {
            *sym[i].entry(j).or_default() += p / (2.0 * n as f32);
            *sym[j].entry(i).or_default() += p / (2.0 * n as f32);
        }
    }
    // In order of the photos, so that a seed gives the same map every time.
    sym.into_iter()
        .map(|m| {
            let mut row: Vec<(usize, f32)> = m.into_iter().collect();
            row.sort_unstable_by_key(|x| x.0);
            row
        })
        .collect()
}

/// p_j|i over a photo's neighbours (squared distances), the Gaussian's precision found by
/// bisection so that its entropy is ln(perplexity).
fn conditional(d: &[(usize, f32)]) -> Vec<(usize, f32)> {
    let target = PERPLEXITY.ln();
    let min = d.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
    let (mut lo, mut hi, mut beta) = (0.0f32, f32::INFINITY, 1.0f32);
    let mut p = vec![0.0f32; d.len()];
    for _ in 0..64 {
        let mut sum = 0.0;
        for (pi, &(_, dist)) in p.iter_mut().zip(d) {
            *pi = (-(dist - min) * beta).exp();
            sum += *pi;
        }
        let sum = sum.max(1e-12);
        let mut entropy = 0.0;
        for (pi, &(_, dist)) in p.iter_mut().zip(d) {
            *pi /= sum;
            entropy += beta * (dist - min) * *pi;
        }
        entropy += sum.ln();
        if (entropy - target).abs() < 1e-4 {
            break;
        }
        if entropy > target {
            lo = beta;
            beta = if hi.is_finite() {
                (beta + hi) / 2.0
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    d.iter().zip(p).map(|(&(j, _), p)| (j, p)).collect()
}

/// The gradient of t-SNE's cost at `y`.
fn gradient(y: &[[f32; 2]], p: &[Vec<(usize, f32)>], exaggeration: f32) -> Vec<[f32; 2]> {
    let n = y.len();
    // Repulsion: exact, with the normaliser Z over every pair.
    let parts: Vec<([f32; 2], f32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (mut f, mut z) = ([0.0f32; 2], 0.0f32);
            for j in 0..n {
                if j == i {
                    continue;
                }
                let (dx, dy) = (y[i][0] - y[j][0], y[i][1] - y[j][1]);
                let q = 1.0 / (1.0 + dx * dx + dy * dy);
                z += q;
                f[0] += q * q * dx;
                f[1] += q * q * dy;
            }
            (f, z)
        })
        .collect();
    let z: f32 = parts.iter().map(|p| p.1).sum::<f32>().max(1e-12);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut g = [0.0f32; 2];
            for &(j, pij) in &p[i] {
                let (dx, dy) = (y[i][0] - y[j][0], y[i][1] - y[j][1]);
                let q = 1.0 / (1.0 + dx * dx + dy * dy);
                g[0] += exaggeration * pij * q * dx;
                g[1] += exaggeration * pij * q * dy;
            }
            let rep = parts[i].0;
            [4.0 * (g[0] - rep[0] / z), 4.0 * (g[1] - rep[1] / z)]
        })
        .collect()
}

/// The first two principal components of `x` (power iteration on the covariance).
fn principal_plane(x: &[Vec<f32>], seed: u64) -> Vec<[f32; 2]> {
    let dim = x[0].len();
    let mut rng = crate::rng::SplitMix64(seed);
    let mut axes: Vec<Vec<f32>> = Vec::new();
    for _ in 0..2 {
        let mut v: Vec<f32> = (0..dim).map(|_| rng.next_f32() - 0.5).collect();
        for _ in 0..30 {
            // v ← Xᵀ X v, minus the axes found.
            let proj: Vec<f32> = x.iter().map(|r| dot(r, &v)).collect();
            let mut next = vec![0.0f32; dim];
            for (r, p) in x.iter().zip(&proj) {
                next.iter_mut().zip(r).for_each(|(n, a)| *n += p * a);
            }
            for a in &axes {
                let c = dot(&next, a);
                next.iter_mut().zip(a).for_each(|(n, a)| *n -= c * a);
            }
            let norm = dot(&next, &next).sqrt().max(1e-12);
            v = next.into_iter().map(|n| n / norm).collect();
        }
        axes.push(v);
    }
    x.iter()
        .map(|r| [dot(r, &axes[0]), dot(r, &axes[1])])
        .collect()
}

/// Scales the points into [0, 1]² (both axes alike, centred).
fn normalise(y: &mut [[f32; 2]]) {
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for v in y.iter() {
        for d in 0..2 {
            lo[d] = lo[d].min(v[d]);
            hi[d] = hi[d].max(v[d]);
        }
    }
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-12);
    for v in y.iter_mut() {
        for d in 0..2 {
            let centre = (span - (hi[d] - lo[d])) / 2.0;
            v[d] = (v[d] - lo[d] + centre) / span;
        }
    }
}

fn squared(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn photos_alike_land_near_each_other() {
        // Three clusters of 40 in 16 dimensions.
        let mut rng = SplitMix64(5);
        let x: Vec<Vec<f32>> = (0..120)
            .map(|i| {
                (0..16)
                    .map(|d| f32::from(u8::from(d == i % 3)) * 4.0 + rng.next_f32() - 0.5)
                    .collect()
            })
            .collect();
        let y = layout(&x, 1);
        assert!(
            y.iter()
                .all(|v| (0.0..=1.0).contains(&v[0]) && (0.0..=1.0).contains(&v[1]))
        );
        // Each point's nearest other point on the map is of its cluster.
        for i in 0..120 {
            let nearest = (0..120)
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let d = |j: usize| (y[i][0] - y[j][0]).powi(2) + (y[i][1] - y[j][1]).powi(2);
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            assert_eq!(nearest % 3, i % 3, "photo {i}");
        }
    }
}
