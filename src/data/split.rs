//! The validation split: stratified, seeded, the same on any machine, stable as files come and go.
//!
//! Each image gets a score from SHA-256 of (seed, its path relative to the dataset folder); within
//! each class the lowest-scoring `round(n × fraction)` images are held out. Nothing depends on the
//! order the OS lists files in or on absolute paths, so the same seed and files give the same split
//! anywhere; adding files to other classes (or files that are skipped) changes nothing, and adding
//! a file to a class moves at most the one image at that class's boundary.

use sha2::{Digest as _, Sha256};

use super::scan::{Dataset, ImageEntry};

/// How to hold out validation images.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitConfig {
    /// The fraction of each class held out (0.0 to 0.9).
    pub valid_fraction: f64,
    /// The seed.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            valid_fraction: 0.1,
            seed: 42,
        }
    }
}

/// Training and validation images.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Split {
    /// Images to train on.
    pub train: Vec<ImageEntry>,
    /// Images to validate on.
    pub valid: Vec<ImageEntry>,
    /// True when `valid` came from the dataset's own `valid/` folder.
    pub explicit: bool,
}

/// Why a split could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// The fraction is outside 0..=0.9.
    #[error(
        "validation fraction {0} is out of range: use a value from 0 to 0.9 (e.g. 0.1 for 10%)"
    )]
    BadFraction(f64),
}

impl Split {
    /// Splits `dataset`: its explicit `valid/` folder when it has one, else a seeded split.
    pub fn of(dataset: &Dataset, config: &SplitConfig) -> Result<Self, SplitError> {
        if !crate::limits::VALID_FRACTION.contains(&config.valid_fraction) {
            return Err(SplitError::BadFraction(config.valid_fraction));
        }
        if let Some(valid) = &dataset.explicit_valid {
            return Ok(Self {
                train: dataset.images.clone(),
                valid: valid.clone(),
                explicit: true,
            });
        }
        let mut by_class: Vec<Vec<(u64, &ImageEntry)>> = vec![Vec::new(); dataset.classes.len()];
        for image in &dataset.images {
            by_class[image.label].push((score(config.seed, &image.rel), image));
        }
        let mut train = Vec::new();
        let mut valid = Vec::new();
        for mut members in by_class {
            members.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.rel.cmp(&b.1.rel)));
            let held = held_out(members.len(), config.valid_fraction);
            for (i, (_, image)) in members.into_iter().enumerate() {
                if i < held {
                    valid.push(image.clone());
                } else {
                    train.push(image.clone());
                }
            }
        }
        train.sort_by(|a, b| a.rel.cmp(&b.rel));
        valid.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(Self {
            train,
            valid,
            explicit: false,
        })
    }
}

impl Split {
    /// `k` stratified folds of `dataset`'s training images for cross-validation: within each
    /// class, images in the order of their seeded score go to folds 0, 1, …, k−1 in turn. Fold
    /// `i` holds out its own images and trains on all the others, so every image is held out
    /// exactly once. `k` is at least 2.
    pub fn folds(dataset: &Dataset, k: usize, seed: u64) -> Vec<Self> {
        let k = k.max(2);
        let mut fold_of = vec![0usize; dataset.images.len()];
        let mut by_class: Vec<Vec<(u64, usize)>> = vec![Vec::new(); dataset.classes.len()];
        for (i, image) in dataset.images.iter().enumerate() {
            if let Some(members) = by_class.get_mut(image.label) {
                members.push((score(seed, &image.rel), i));
            }
        }
        // Each class continues where the last one stopped, so small classes do not all
        // crowd into the first folds.
        let mut next = 0;
        for mut members in by_class {
            members.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| dataset.images[a.1].rel.cmp(&dataset.images[b.1].rel))
            });
            for (_, i) in members {
                fold_of[i] = next % k;
                next += 1;
            }
        }
        (0..k)
            .map(|fold| {
                let (valid, train): (Vec<_>, Vec<_>) = dataset
                    .images
                    .iter()
                    .zip(&fold_of)
                    .partition(|(_, f)| **f == fold);
                Self {
                    train: train.into_iter().map(|(i, _)| i.clone()).collect(),
                    valid: valid.into_iter().map(|(i, _)| i.clone()).collect(),
                    explicit: false,
                }
            })
            .collect()
    }
}

/// How many of a class's `n` images are held out: at least one when the class has two or more
/// and the fraction is not zero, and never all of them.
pub fn held_out(n: usize, fraction: f64) -> usize {
    if n < 2 || fraction <= 0.0 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
}

fn score(seed: u64, rel: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(rel.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_rounds_and_keeps_both_sides_non_empty() {
        assert_eq!(held_out(1000, 0.1), 100);
        assert_eq!(held_out(999, 0.1), 100);
        assert_eq!(held_out(5, 0.1), 1);
        assert_eq!(held_out(2, 0.9), 1);
        assert_eq!(held_out(1, 0.5), 0);
        assert_eq!(held_out(100, 0.0), 0);
    }

    #[test]
    fn folds_hold_out_every_image_once_and_stratify() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("cats", 10), ("dogs", 7)] {
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            for i in 0..n {
                image::RgbImage::new(4, 4)
                    .save(dir.path().join(format!("{class}/{i}.png")))
                    .unwrap();
            }
        }
        let data = Dataset::scan(dir.path()).unwrap();
        let folds = Split::folds(&data, 5, 7);
        assert_eq!(folds.len(), 5);
        let mut held: Vec<String> = folds
            .iter()
            .flat_map(|f| f.valid.iter().map(|i| i.rel.clone()))
            .collect();
        held.sort();
        let mut all: Vec<String> = data.images.iter().map(|i| i.rel.clone()).collect();
        all.sort();
        assert_eq!(held, all);
        for f in &folds {
            assert_eq!(f.train.len() + f.valid.len(), 17);
            let cats = f.valid.iter().filter(|i| i.label == 0).count();
            assert_eq!(cats, 2, "10 cats over 5 folds");
            assert!(f.valid.iter().all(|v| !f.train.contains(v)));
        }
        assert_eq!(Split::folds(&data, 5, 7), folds, "seeded");
    }

    #[test]
    fn score_depends_on_seed_and_path_only() {
        assert_eq!(score(1, "cats/a.jpg"), score(1, "cats/a.jpg"));
        assert_ne!(score(1, "cats/a.jpg"), score(2, "cats/a.jpg"));
        assert_ne!(score(1, "cats/a.jpg"), score(1, "cats/b.jpg"));
    }
}
