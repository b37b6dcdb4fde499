//! The data layer under both the window and the CLI: scanning photo folders, the validation
//! split, decoding and preprocessing.
//!
//! Owns everything between a folder on disk and the model's input floats. Knows nothing of egui
//! or of tensors: it hands out plain `Vec<f32>` in channels-first order.

pub mod curate;
pub mod decode;
mod lists;
pub mod preprocess;
pub mod quality;
pub mod scan;
pub mod split;

pub use decode::{DecodeError, DecodeLimits, decode_prepared, decode_rgb, has_image_extension};
pub use preprocess::{Augmentation, Convention, Preprocessing, ResizeMode};
pub use scan::{Dataset, ImageEntry, Layout, Problem, ScanError, ScanOptions, SkipReason, Skipped};
pub use split::{Split, SplitConfig};
