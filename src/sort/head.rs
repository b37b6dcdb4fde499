//! The sorter's head: a softmax regression on the photos' pooled block-5 features, fitted on the
//! host in well under a second for a few thousand photos (full-batch Adam from the last fit's
//! weights), so it can learn again every few answers.

use rayon::prelude::*;

use crate::typical::dot;

/// Passes over the photos a fit makes (from the last fit's weights).
const STEPS: usize = 150;
/// Adam's step size.
const RATE: f32 = 0.05;
/// Photos a core sums the gradient of before the blocks are added up.
const BLOCK: usize = 64;
/// L2 penalty on the weights and biases (per photo of weight 1).
pub const L2: f32 = 1e-3;

/// A softmax regression: `classes` rows of `dim` weights and a bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    classes: usize,
    dim: usize,
    /// `[classes, dim + 1]`, the bias last in each row.
    w: Vec<f32>,
}

/// What a fit learns from: each photo's features, its target (a probability for each class)
/// and how much it counts, and logits added to the head's (a model's guesses, which the head
/// then corrects), when there are.
pub struct Examples<'a> {
    pub features: &'a [&'a [f32]],
    pub targets: &'a [&'a [f32]],
    pub weights: &'a [f32],
    pub offsets: Option<&'a [&'a [f32]]>,
}

impl Head {
    /// A head that says every class equally likely.
    pub fn new(classes: usize, dim: usize) -> Self {
        Self {
            classes,
            dim,
            w: vec![0.0; classes * (dim + 1)],
        }
    }

    /// The classes' logits for `x`.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.w
            .chunks_exact(self.dim + 1)
            .map(|row| dot(&row[..self.dim], x) + row[self.dim])
            .collect()
    }

    /// The classes' probabilities for `x`.
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        softmax(&self.logits(x))
    }

    /// The classes' probabilities for `x`, `offset` added to its logits.
    pub fn probabilities_with(&self, x: &[f32], offset: Option<&[f32]>) -> Vec<f32> {
        let mut logits = self.logits(x);
        if let Some(offset) = offset {
            logits.iter_mut().zip(offset).for_each(|(l, o)| *l += o);
        }
        softmax(&logits)
    }

    /// Fits the head to `examples` (from its current weights), minimising the weighted mean
    /// cross-entropy plus [`L2`] times the squared weights and biases.
    pub fn fit(&mut self, examples: &Examples) {
        let n = examples.features.len();
        let total: f32 = examples.weights.iter().sum();
        if n == 0 || total <= 0.0 {
            return;
        }
        let (c, d) = (self.classes, self.dim + 1);
        let (mut m, mut v) = (vec![0.0f32; c * d], vec![0.0f32; c * d]);
        let (b1, b2) = (0.9f32, 0.999f32);
        for step in 1..=STEPS {
            // Each block of photos' gradient on any core, summed in order: the same sums on
            // any machine and any run.
            let blocks: Vec<Vec<f32>> = (0..n.div_ceil(BLOCK))
                .into_par_iter()
                .map(|b| {
                    let mut grad = vec![0.0f32; c * d];
                    for i in b * BLOCK..((b + 1) * BLOCK).min(n) {
                        let (x, t, weight) = (
                            examples.features[i],
                            examples.targets[i],
                            examples.weights[i],
                        );
                        if weight > 0.0 {
                            let offset = examples.offsets.and_then(|o| o.get(i).copied());
                            let p = self.probabilities_with(x, offset);
                            for k in 0..c {
                                let g = (p[k] - t.get(k).copied().unwrap_or(0.0)) * weight / total;
                                let row = &mut grad[k * d..(k + 1) * d];
                                for (r, xi) in row.iter_mut().zip(x) {
                                    *r += g * xi;
                                }
                                row[d - 1] += g;
                            }
                        }
                    }
                    grad
                })
                .collect();
            let mut grad = vec![0.0f32; c * d];
            for block in &blocks {
                grad.iter_mut().zip(block).for_each(|(a, b)| *a += b);
            }
            let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
            for j in 0..c * d {
                let g = grad[j] + 2.0 * L2 * self.w[j];
                m[j] = b1 * m[j] + (1.0 - b1) * g;
                v[j] = b2 * v[j] + (1.0 - b2) * g * g;
                self.w[j] -= RATE * (m[j] / c1) / ((v[j] / c2).sqrt() + 1e-8);
            }
        }
    }
}

/// `logits` as probabilities.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum.max(f32::MIN_POSITIVE)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn a_fit_separates_two_clusters_and_follows_soft_targets() {
        let mut rng = SplitMix64(3);
        let points: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                let centre = if i % 2 == 0 { 1.0 } else { -1.0 };
                vec![centre + rng.next_f32() - 0.5, rng.next_f32() - 0.5]
            })
            .collect();
        let one_hot: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    vec![1.0, 0.0]
                } else {
                    vec![0.0, 1.0]
                }
            })
            .collect();
        let features: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
        let targets: Vec<&[f32]> = one_hot.iter().map(Vec::as_slice).collect();
        let mut head = Head::new(2, 2);
        head.fit(&Examples {
            features: &features,
            targets: &targets,
            weights: &[1.0; 40],
            offsets: None,
        });
        for (x, t) in points.iter().zip(&one_hot) {
            let p = head.probabilities(x);
            assert_eq!(p[0] > 0.5, t[0] > 0.5, "{x:?} {p:?}");
        }
        assert!(head.probabilities(&[2.0, 0.0])[0] > 0.9);
        // Soft targets of 0.7 everywhere: the head says 0.7.
        let soft = [0.7f32, 0.3];
        let mut flat = Head::new(2, 2);
        flat.fit(&Examples {
            features: &features,
            targets: &vec![&soft[..]; 40],
            weights: &[1.0; 40],
            offsets: None,
        });
        let p = flat.probabilities(&[0.0, 0.0]);
        assert!((p[0] - 0.7).abs() < 0.05, "{p:?}");
    }
}
