//! How typical a photo is of a model's training photos, and the *none of these* verdict: the
//! distance from the photo's pooled block-5 features (512 values, L2-normalised) to its k-th
//! nearest training photo (Sun et al., ICML 2022, "Out-of-distribution detection with deep
//! nearest neighbors"), against the same distance of every training photo to the others
//! (leave-one-out). A photo further from the training photos than [`KEEP`] of them are from each
//! other is *none of these*.
//!
//! One room for the measure: predictions, evaluations, and the data checks that find photos of
//! no class all read it from here. Pure arithmetic on host vectors: no tensors, no files.

use rayon::prelude::*;

use crate::rng::SplitMix64;

/// The share of training photos a model calls typical (leave-one-out): the threshold is the
/// distance below which 98% of them fall, so about 2% of photos like the training photos are
/// called *none of these*. At 95% it would be 5% by construction and more on photos from
/// elsewhere (5.5% of Kaggle's squashed test photos), the most the issue allows; at 98% every
/// photo of the half of `../shared/data/ood` used for choosing is still caught, and at 99% some
/// are not (BENCHMARKS.md, "Photos of none of the classes").
pub const KEEP: f64 = 0.98;

/// The neighbour whose distance counts (the k of k-nearest-neighbours): of 1, 2, 5, 10, 20 and
/// 50, the best AUROC on the half of the unknown photos used for choosing (BENCHMARKS.md).
pub const K: usize = 10;

/// Near duplicates: closer than this share of the median distance between a photo and its
/// nearest other photo. Cleanlab Datalab's rule uses 0.13 in its feature space; in VGG16's
/// pooled features a re-saved, resized, cropped or mirrored copy is up to about 0.25 of the
/// median away, while distinct photos of `../shared/data/dogscats/train` are not (BENCHMARKS.md,
/// "Check data"). Check data and the leak check of an evaluation both use it.
pub const DUPLICATE_SHARE_OF_MEDIAN: f32 = 0.3;

/// The verdict's words, everywhere: the badge, the CSV and JSON, the CLI.
pub const NONE_OF_THESE: &str = "none of these";

/// What *none of these* means, in one sentence.
pub const NONE_OF_THESE_MEANS: &str = "unlike the photos this model was trained on";

/// Why a model gives no verdict: it keeps no training photos' features.
pub const NO_FEATURES: &str = "this model file keeps no features of its training photos (it was \
     saved before vggtune recorded them, or trained on too few photos): train it again to get \
     the none-of-these verdict";

/// How many points of the training photos' leave-one-out distances a model keeps, to turn a
/// distance into a share ([`Typicality::judge`]).
const QUANTILES: usize = 101;

/// What a model file states about its training photos' features (the vectors themselves are a
/// section of their own).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TypicalitySummary {
    /// The neighbour whose distance counts.
    pub k: usize,
    /// The share of training photos within the threshold.
    pub keep: f64,
    /// The distance beyond which a photo is *none of these*.
    pub threshold: f32,
    /// The training photos' leave-one-out distances at the quantiles 0, 1%, …, 100%.
    pub quantiles: Vec<f32>,
    /// How many feature vectors the model keeps.
    pub count: usize,
    /// Their length.
    pub dim: usize,
    /// How many training photos they were drawn from.
    pub photos: usize,
    /// Each kept vector's photo, by its path in the training folder (models written before
    /// this field: none), so an evaluation can name the training photos it finds again.
    #[serde(default)]
    pub names: Vec<String>,
    /// Photos closer than this to a kept training photo are copies of it (a leak when
    /// evaluated): [`DUPLICATE_SHARE_OF_MEDIAN`] of the training photos' median distance to
    /// their nearest other.
    #[serde(default)]
    pub duplicate_below: Option<f32>,
}

/// The training photos' features, ready to judge new photos.
#[derive(Clone, Debug, PartialEq)]
pub struct Typicality {
    /// What the model file states.
    pub summary: TypicalitySummary,
    /// `count` L2-normalised vectors of `dim` values, one after the other.
    bank: Vec<f32>,
}

/// How typical one photo is.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Judgement {
    /// The distance to its k-th nearest training photo (L2-normalised features: 0 to 2).
    pub distance: f32,
    /// The share of training photos further from the others than it is (1: as typical as the
    /// most typical; below 1 − [`KEEP`]: *none of these*).
    pub typicality: f32,
    /// Whether it is like the training photos (else *none of these*).
    pub known: bool,
    /// The training photo it is a copy of (index into the model's names), when it is one.
    #[serde(default)]
    pub copy_of: Option<u32>,
}

/// The verdict's rule in words, for the CLI and the window: "a photo further from its 10th
/// nearest of 1,799 training photos than 98% of them are".
pub fn describe(s: &TypicalitySummary) -> String {
    format!(
        "a photo further from its {} nearest of {} training photos than {:.0}% of them are \
         (distance {:.3})",
        ordinal(s.k),
        s.count,
        100.0 * s.keep,
        s.threshold
    )
}

/// "1st", "2nd", "5th", "11th".
pub fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `v` scaled to length 1 (a zero vector stays zero).
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        vec![0.0; v.len()]
    }
}

/// The dot product of `a` and `b`, vectorised.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight lanes of partial sums, which the compiler turns into vector instructions.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The distance between two unit vectors from their dot product.
fn distance_of(dot: f32) -> f32 {
    (2.0 - 2.0 * dot).max(0.0).sqrt()
}

/// The `k`-th largest (1-based) of `values`, which it reorders.
fn kth_largest(values: &mut [f32], k: usize) -> f32 {
    let k = k.clamp(1, values.len().max(1));
    if values.is_empty() {
        return f32::NEG_INFINITY;
    }
    let (_, kth, _) = values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

/// Each of `features`' vectors' `k` nearest others, (index, distance) nearest first, on
/// L2-normalised vectors: the neighbours every check of a folder reads (duplicates, photos of
/// no class). All pairs, on all cores: about a second for 2,000 photos on 2 cores.
pub fn nearest(features: &[Vec<f32>], k: usize) -> Vec<Vec<(usize, f32)>> {
    let units: Vec<Vec<f32>> = features.iter().map(|f| normalised(f)).collect();
    neighbours(&units, &units, k, true)
}

/// Each of `queries`' `k` nearest vectors of `bank` (index into `bank`, distance), nearest
/// first: a second folder's photos against a first's.
pub fn nearest_in(queries: &[Vec<f32>], bank: &[Vec<f32>], k: usize) -> Vec<Vec<(usize, f32)>> {
    let units = |v: &[Vec<f32>]| -> Vec<Vec<f32>> { v.iter().map(|f| normalised(f)).collect() };
    neighbours(&units(queries), &units(bank), k, false)
}

/// The `k` nearest of `bank` to each of `queries` (unit vectors); `same`: the two are one set
/// and a vector is not its own neighbour.
fn neighbours(
    queries: &[Vec<f32>],
    bank: &[Vec<f32>],
    k: usize,
    same: bool,
) -> Vec<Vec<(usize, f32)>> {
    queries
        .par_iter()
        .enumerate()
        .map(|(i, query)| {
            let mut row: Vec<(usize, f32)> = bank
                .iter()
                .enumerate()
                .filter(|&(j, other)| !(same && j == i) && other.len() == query.len())
                .map(|(j, other)| (j, distance_of(dot(query, other))))
                .collect();
            let k = k.min(row.len());
            if k > 0 && k < row.len() {
                row.select_nth_unstable_by(k - 1, |a, b| a.1.total_cmp(&b.1));
                row.truncate(k);
            }
            row.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            row
        })
        .collect()
}

/// Which of `features` a model keeps: at most [`crate::limits::TYPICAL_BANK`], drawn with
/// `seed`, in their order, each as long as the first and finite.
fn kept_indices(features: &[Vec<f32>], seed: u64) -> Vec<usize> {
    let Some(dim) = features.first().map(Vec::len) else {
        return Vec::new();
    };
    let max = *crate::limits::TYPICAL_BANK.end();
    let mut order: Vec<usize> = (0..features.len()).collect();
    if order.len() > max {
        let mut rng = SplitMix64(seed);
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order.truncate(max);
        order.sort_unstable();
    }
    order.retain(|&i| features[i].len() == dim && features[i].iter().all(|x| x.is_finite()));
    order
}

impl Typicality {
    /// Learns from the training photos' pooled features (any length, not normalised): at most
    /// [`crate::limits::TYPICAL_BANK`] of them, drawn with `seed`, are kept; the threshold is
    /// set from their leave-one-out distances. `None` with fewer than `K + 1` photos.
    pub fn fit(features: &[Vec<f32>], seed: u64) -> Option<Self> {
        Self::fit_named(features, &[], seed)
    }

    /// [`Self::fit`] with each photo's name (its path in the training folder), kept for the
    /// photos whose features are kept (no names when `names` does not fit `features`).
    pub fn fit_named(features: &[Vec<f32>], names: &[String], seed: u64) -> Option<Self> {
        let dim = features.first()?.len();
        let kept = kept_indices(features, seed);
        if kept.len() <= K || dim == 0 {
            return None;
        }
        // As the model file will hold them (f16), so that the threshold, the quantiles and the
        // run's own judgements are the loaded model's to the last bit.
        let bank: Vec<f32> = kept
            .iter()
            .flat_map(|&i| normalised(&features[i]))
            .map(|v| half::f16::from_f32(v).to_f32())
            .collect();
        let mut t = Self::of_bank(bank, dim, K, features.len());
        if names.len() == features.len() {
            t.summary.names = kept.iter().map(|&i| names[i].clone()).collect();
        }
        Some(t)
    }

    /// The same training features judging by the `k`-th neighbour (for the benchmark that
    /// chooses [`K`]).
    pub fn with_k(&self, k: usize) -> Self {
        let s = &self.summary;
        let most = s.count.saturating_sub(1).max(1);
        let mut t = Self::of_bank(self.bank.clone(), s.dim, k.clamp(1, most), s.photos);
        t.summary.names.clone_from(&s.names);
        t
    }

    /// The threshold and quantiles of `bank` (normalised vectors of `dim` values, more than
    /// `k`), from its vectors' leave-one-out distances.
    fn of_bank(bank: Vec<f32>, dim: usize, k: usize, photos: usize) -> Self {
        let count = bank.len() / dim;
        let mut nearests = Vec::with_capacity(count);
        // Each kept photo against the others: its own distance (0) left out.
        let mut loo: Vec<f32> = (0..count)
            .into_par_iter()
            .map(|i| {
                let me = &bank[i * dim..(i + 1) * dim];
                let mut dots: Vec<f32> = bank
                    .chunks_exact(dim)
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, other)| dot(me, other))
                    .collect();
                let nearest = dots.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (distance_of(kth_largest(&mut dots, k)), distance_of(nearest))
            })
            .collect::<Vec<(f32, f32)>>()
            .into_iter()
            .map(|(kth, nearest)| {
                nearests.push(nearest);
                kth
            })
            .collect();
        loo.sort_by(f32::total_cmp);
        nearests.sort_by(f32::total_cmp);
        let median_nearest = nearests.get(nearests.len() / 2).copied();
        let quantile = |q: f64| loo[((q * (count - 1) as f64).round() as usize).min(count - 1)];
        let quantiles = (0..QUANTILES)
            .map(|i| quantile(i as f64 / (QUANTILES - 1) as f64))
            .collect();
        Self {
            summary: TypicalitySummary {
                k,
                keep: KEEP,
                threshold: quantile(KEEP),
                quantiles,
                count,
                dim,
                photos,
                names: Vec::new(),
                duplicate_below: median_nearest.map(|m| m * DUPLICATE_SHARE_OF_MEDIAN),
            },
            bank,
        }
    }

    /// The distance from `features` (a photo's pooled features, not normalised) to its k-th
    /// nearest training photo.
    pub fn distance(&self, features: &[f32]) -> f32 {
        self.distances(features).0
    }

    /// The distance to the k-th nearest training photo, and the nearest one (its index and
    /// distance).
    fn distances(&self, features: &[f32]) -> (f32, Option<(usize, f32)>) {
        let dim = self.summary.dim;
        if features.len() != dim {
            return (f32::INFINITY, None);
        }
        let me = normalised(features);
        let mut dots: Vec<f32> = self.bank.chunks_exact(dim).map(|b| dot(&me, b)).collect();
        let nearest = dots
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, d)| (i, distance_of(d)));
        (distance_of(kth_largest(&mut dots, self.summary.k)), nearest)
    }

    /// How typical a photo with these pooled features is.
    pub fn judge(&self, features: &[f32]) -> Judgement {
        let (distance, nearest) = self.distances(features);
        let copy_of = match (nearest, self.summary.duplicate_below) {
            (Some((i, d)), Some(below)) if d < below && i < self.summary.names.len() => {
                u32::try_from(i).ok()
            }
            _ => None,
        };
        let q = &self.summary.quantiles;
        // The share of training photos at least this far from the others, interpolated
        // between the stored quantiles.
        let beyond = q.partition_point(|&d| d < distance);
        let typicality = if beyond == 0 {
            1.0
        } else if beyond >= q.len() {
            0.0
        } else {
            let (lo, hi) = (q[beyond - 1], q[beyond]);
            let within = if hi > lo {
                (distance - lo) / (hi - lo)
            } else {
                1.0
            };
            let step = 1.0 / (q.len() - 1) as f32;
            1.0 - ((beyond - 1) as f32 + within) * step
        };
        Judgement {
            distance,
            typicality: typicality.clamp(0.0, 1.0),
            known: distance <= self.summary.threshold,
            copy_of,
        }
    }

    /// The training features, L2-normalised, one vector after the other.
    pub fn vectors(&self) -> &[f32] {
        &self.bank
    }

    /// The vectors as a model file keeps them: f16, little-endian, one after the other.
    pub fn bank_bytes(&self) -> Vec<u8> {
        self.bank
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect()
    }

    /// Rebuilds it from a model file's summary and vectors, checked: counts within
    /// [`crate::limits`], the byte length from checked arithmetic before anything is
    /// allocated, every value finite.
    pub fn from_parts(summary: TypicalitySummary, bytes: &[u8]) -> Result<Self, String> {
        use crate::limits::{self, check};
        let s = &summary;
        check(
            "its count of training features",
            s.count,
            &limits::TYPICAL_BANK,
        )?;
        check("its feature length", s.dim, &limits::FEATURE_DIM)?;
        if s.k == 0 || s.k >= s.count {
            return Err(format!(
                "its neighbour count {} does not fit {} training features",
                s.k, s.count
            ));
        }
        let sorted = s.quantiles.windows(2).all(|w| w[0] <= w[1]);
        let finite = s.quantiles.iter().all(|q| q.is_finite() && *q >= 0.0);
        if s.quantiles.len() != QUANTILES || !sorted || !finite {
            return Err("its training photos' distances are not increasing numbers".into());
        }
        if !(s.threshold.is_finite() && s.threshold >= 0.0 && (0.0..=1.0).contains(&s.keep)) {
            return Err("its typicality threshold is not a distance".into());
        }
        if s.duplicate_below
            .is_some_and(|d| !(d.is_finite() && d >= 0.0))
        {
            return Err("its duplicate distance is not a distance".into());
        }
        if !s.names.is_empty() && s.names.len() != s.count {
            return Err(format!(
                "it names {} training photos for {} training features",
                s.names.len(),
                s.count
            ));
        }
        let expected = s
            .count
            .checked_mul(s.dim)
            .and_then(|n| n.checked_mul(2))
            .ok_or("its training features' size overflows")?;
        if bytes.len() != expected {
            return Err(format!(
                "its training features take {} bytes, not the {expected} its header states",
                bytes.len()
            ));
        }
        let bank: Vec<f32> = bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        if !bank.iter().all(|v| v.is_finite()) {
            return Err("its training features hold a value that is not a number".into());
        }
        Ok(Self { summary, bank })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a cluster around `centre` in 16 dimensions.
    fn cluster(centre: &[f32], n: usize, spread: f32, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|_| {
                centre
                    .iter()
                    .map(|c| c + spread * ((rng.next_u64() % 2001) as f32 / 1000.0 - 1.0))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn photos_far_from_the_training_photos_are_none_of_these_and_near_ones_are_known() {
        let centre: Vec<f32> = (0..16).map(|i| if i < 8 { 1.0 } else { 0.1 }).collect();
        let train = cluster(&centre, 300, 0.3, 1);
        let t = Typicality::fit(&train, 7).unwrap();
        assert_eq!(t.summary.count, 300);
        let near = cluster(&centre, 100, 0.3, 2);
        let known = near.iter().filter(|f| t.judge(f).known).count();
        assert!(known >= 88, "{known} of 100 like the training photos known");
        let other: Vec<f32> = (0..16).map(|i| if i < 8 { 0.1 } else { 1.0 }).collect();
        let far = cluster(&other, 100, 0.3, 3);
        for f in &far {
            let j = t.judge(f);
            assert!(!j.known && j.typicality < 0.05, "{j:?}");
        }
        // The share is 1 − the quantile: the threshold's photo sits at 1 − KEEP.
        let at_threshold = t.summary.threshold;
        let q = &t.summary.quantiles;
        assert!(q.windows(2).all(|w| w[0] <= w[1]));
        assert!((q[(KEEP * 100.0).round() as usize] - at_threshold).abs() < 1e-6);
        // Scale does not matter: features are compared by direction.
        let scaled: Vec<f32> = near[0].iter().map(|v| v * 40.0).collect();
        assert!((t.distance(&scaled) - t.distance(&near[0])).abs() < 1e-5);
    }

    #[test]
    fn a_bank_goes_through_its_bytes_and_bad_parts_are_refused_with_why() {
        let centre = vec![1.0f32; 16];
        let t = Typicality::fit(&cluster(&centre, 5000, 0.5, 4), 3).unwrap();
        assert_eq!(t.summary.count, 4096);
        assert_eq!(t.summary.photos, 5000);
        let bytes = t.bank_bytes();
        assert_eq!(bytes.len(), 4096 * 16 * 2);
        let back = Typicality::from_parts(t.summary.clone(), &bytes).unwrap();
        let probe = cluster(&centre, 1, 0.5, 9).remove(0);
        assert!((back.distance(&probe) - t.distance(&probe)).abs() < 2e-3);
        let refused = |change: &dyn Fn(&mut TypicalitySummary), bytes: &[u8]| {
            let mut s = t.summary.clone();
            change(&mut s);
            Typicality::from_parts(s, bytes).unwrap_err()
        };
        assert!(refused(&|_| {}, &bytes[1..]).contains("bytes"));
        assert!(refused(&|s| s.count = usize::MAX, &bytes).contains("out of range"));
        assert!(refused(&|s| s.dim = usize::MAX / 2, &bytes).contains("out of range"));
        assert!(refused(&|s| s.k = 0, &bytes).contains("neighbour"));
        assert!(refused(&|s| s.quantiles.reverse(), &bytes).contains("increasing"));
        assert!(refused(&|s| s.threshold = f32::NAN, &bytes).contains("threshold"));
        let mut nan = bytes.clone();
        nan[0..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
        assert!(refused(&|_| {}, &nan).contains("not a number"));
        assert!(Typicality::fit(&cluster(&centre, K, 0.5, 4), 3).is_none());
    }
}
