//! The range every number a user sets, or a model file states, may take: one table, used by
//! `TrainConfig::validate` (so by the CLI's flags and every run), by the validation split, by the
//! window's controls, and by `bundle::load`.

use std::ops::RangeInclusive;

/// Passes over the training photos.
pub const EPOCHS: RangeInclusive<usize> = 1..=1000;
/// Photos per step.
pub const BATCH_SIZE: RangeInclusive<usize> = 1..=1024;
/// The learning rate.
pub const LEARNING_RATE: RangeInclusive<f64> = 1e-7..=1.0;
/// Dropout between dense layers.
pub const DROPOUT: RangeInclusive<f64> = 0.0..=0.95;
/// L2 weight decay.
pub const WEIGHT_DECAY: RangeInclusive<f64> = 0.0..=1.0;
/// The share of photos kept for validation.
pub const VALID_FRACTION: RangeInclusive<f64> = 0.0..=0.9;
/// The input's side in pixels: 32 is VGG16's smallest (five 2×2 pools); at 1024 a batch's
/// first activation is already 256 MiB a photo.
pub const INPUT_SIZE: RangeInclusive<u32> = 32..=1024;
/// The divisor of every width (1 is VGG16; tests use 8 or 16).
pub const WIDTH_DIVISOR: RangeInclusive<usize> = 1..=64;
/// Folds of a label check: each trains a head on the others and judges its own photos.
pub const FOLDS: RangeInclusive<usize> = 2..=50;
/// Classes a model predicts.
pub const CLASSES: RangeInclusive<usize> = 2..=10_000;
/// Photos in a folder being sorted (their features, photo and mirror image, stay in memory:
/// 4 KB a photo).
pub const SORT_PHOTOS: RangeInclusive<usize> = 1..=100_000;
/// The confidence *Sort the rest* asks for.
pub const SORT_THRESHOLD: RangeInclusive<f32> = 0.5..=1.0;
/// Training photos a model keeps the features of, to tell how typical a new photo is
/// ([`crate::typical`]): 4,096 pooled block-5 vectors of 512 values in f16 are 4 MiB, under 10%
/// of a model file (59 MB for the pooled head) whatever the number of training photos.
pub const TYPICAL_BANK: RangeInclusive<usize> = 1..=4096;
/// The length of a feature vector a model file may state (512 at full width).
pub const FEATURE_DIM: RangeInclusive<usize> = 1..=4096;
/// The temperature of a model's calibrated confidences.
pub const TEMPERATURE: RangeInclusive<f32> = 0.01..=100.0;

/// Checks `value` against `range`; the message names the setting and the range.
pub fn check<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{name} {value} is out of range: it must be from {} to {}",
            range.start(),
            range.end()
        ))
    }
}
