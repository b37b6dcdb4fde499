//! Helpers shared by the integration tests.

use std::path::Path;

use image::{DynamicImage, ImageFormat, RgbImage};

/// Writes `n` 40×40 PNG photos per class: "red" ones are reddish noise, "blue" ones bluish, so a
/// tiny network can learn to tell them apart in a few epochs.
pub fn colour_dataset(root: &Path, n: usize, seed: u64) {
    let mut rng = vggtune::data::preprocess::SplitMix64(seed);
    for (class, hue) in [("blue", 2usize), ("red", 0usize)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = RgbImage::from_fn(40, 40, |_, _| {
                let mut px = [0u8; 3];
                for (c, v) in px.iter_mut().enumerate() {
                    let base = if c == hue { 150.0 } else { 60.0 };
                    *v = (base + rng.next_f32() * 100.0) as u8;
                }
                image::Rgb(px)
            });
            DynamicImage::ImageRgb8(img)
                .save_with_format(dir.join(format!("{i}.png")), ImageFormat::Png)
                .unwrap();
        }
    }
}
