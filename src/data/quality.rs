//! Photos that are unusable as photos, from their pixels alone: too dark or blown out, blurred,
//! with almost no information, tiny, of an extreme aspect ratio, or grayscale in a folder of
//! colour photos. The scores follow CleanVision's (Cleanlab's image checks); the thresholds and
//! where they come from are in README.md ("Check data"). A check that flags more than
//! [`MOST_FLAGGED`] of a folder is dropped: that is what the folder looks like, not a problem.
//!
//! Pure arithmetic on decoded pixels: no files, no tensors.

use image::RgbImage;

/// What can make a photo unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unusable {
    /// Nearly black.
    Dark,
    /// Nearly white.
    Bright,
    /// Out of focus or smeared.
    Blurry,
    /// Almost one flat colour.
    LowInformation,
    /// Too few pixels to show anything.
    Tiny,
    /// Far wider than tall, or the reverse.
    OddAspect,
    /// Grayscale, where most photos of the folder are in colour.
    Grayscale,
}

impl Unusable {
    /// Why, in plain words.
    pub fn words(self) -> &'static str {
        match self {
            Self::Dark => "nearly black",
            Self::Bright => "nearly white (blown out)",
            Self::Blurry => "blurred",
            Self::LowInformation => "almost one flat colour",
            Self::Tiny => "too small to show much",
            Self::OddAspect => "very much wider than tall, or taller than wide",
            Self::Grayscale => "grayscale, where the folder's other photos are in colour",
        }
    }
}

/// Dark: the 99th percentile of perceived brightness (0–1) below this (CleanVision: 0.32).
pub const DARK_BELOW: f32 = 0.32;
/// Bright: the 5th percentile of perceived brightness above this.
pub const BRIGHT_ABOVE: f32 = 0.9;
/// Low information: the grayscale histogram's entropy, in bits over 8, below this
/// (CleanVision: 0.3).
pub const LOW_INFORMATION_BELOW: f32 = 0.3;
/// Odd aspect: the shorter side over the longer below this (CleanVision: 0.35).
pub const ODD_ASPECT_BELOW: f32 = 0.35;
/// Tiny: the shorter side below this many pixels (VGG16 sees 224; ImageNet's smallest photos
/// are about 60).
pub const TINY_BELOW_PX: u32 = 48;
/// Blurry: the variance of the Laplacian of the photo's grayscale, at most 256 px a side, below
/// this (0–255 levels): of the 1,999 photos of `../shared/data/dogscats/train` one is below it,
/// `cat.241.jpg`, visibly blurred, and all 5 planted blurred copies are (BENCHMARKS.md).
pub const BLURRY_BELOW: f32 = 20.0;
/// Grayscale: the mean |R − G| + |G − B| at most this (0–255 levels).
pub const GRAYSCALE_AT_MOST: f32 = 2.0;
/// A check that flags more than this share of a folder says what the folder is like (all
/// night photos, all scans), not which photos are wrong: it is dropped.
pub const MOST_FLAGGED: f64 = 0.10;

/// A photo's scores.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    /// Width and height as decoded.
    pub size: (u32, u32),
    /// The 99th percentile of perceived brightness, 0–1.
    pub brightness_p99: f32,
    /// The 5th percentile of perceived brightness, 0–1.
    pub brightness_p5: f32,
    /// The grayscale histogram's entropy over 8 bits, 0–1.
    pub entropy: f32,
    /// The variance of the Laplacian at most 256 px a side.
    pub sharpness: f32,
    /// The mean channel difference, 0–255.
    pub colourfulness: f32,
}

/// Perceived brightness of a pixel, 0–255 (CleanVision's, after Darel Rex Finley's HSP model).
fn perceived(p: &image::Rgb<u8>) -> f32 {
    let [r, g, b] = p.0.map(f32::from);
    (0.241 * r * r + 0.691 * g * g + 0.068 * b * b).sqrt()
}

/// The scores of one decoded photo.
pub fn scores(photo: &RgbImage) -> Scores {
    let (w, h) = photo.dimensions();
    // At most 256 px a side: the statistics do not need more, and every photo is scored alike.
    let small = if w.max(h) > 256 {
        let scale = 256.0 / w.max(h) as f32;
        let (sw, sh) = (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        );
        image::imageops::resize(photo, sw, sh, image::imageops::FilterType::Triangle)
    } else {
        photo.clone()
    };
    let (sw, sh) = small.dimensions();
    let mut histogram = [0usize; 256];
    let mut levels = vec![0u8; (sw * sh) as usize];
    let mut colour = 0.0f64;
    for (i, p) in small.pixels().enumerate() {
        let v = perceived(p).round().clamp(0.0, 255.0) as u8;
        histogram[v as usize] += 1;
        levels[i] = v;
        let [r, g, b] = p.0.map(i32::from);
        colour += f64::from((r - g).abs() + (g - b).abs());
    }
    let n = levels.len().max(1);
    let percentile = |q: f64| {
        let target = (q * n as f64).ceil().max(1.0) as usize;
        let mut seen = 0;
        for (v, &count) in histogram.iter().enumerate() {
            seen += count;
            if seen >= target {
                return v as f32 / 255.0;
            }
        }
        1.0
    };
    let entropy: f64 = histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum();
    Scores {
        size: (w, h),
        brightness_p99: percentile(0.99),
        brightness_p5: percentile(0.05),
        entropy: (entropy / 8.0) as f32,
        sharpness: laplacian_variance(&levels, sw as usize, sh as usize),
        colourfulness: (colour / n as f64) as f32,
    }
}

/// The variance of the 4-neighbour Laplacian over the inner pixels.
fn laplacian_variance(levels: &[u8], w: usize, h: usize) -> f32 {
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0usize);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let at = |xx: usize, yy: usize| f64::from(levels[yy * w + xx]);
            let l = at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y);
            sum += l;
            sum_sq += l * l;
            n += 1;
        }
    }
    let mean = sum / n as f64;
    (sum_sq / n as f64 - mean * mean) as f32
}

/// One check: whether a photo's scores show the problem.
type Check = fn(&Scores) -> bool;

/// Each photo's problems, the checks that flag more than [`MOST_FLAGGED`] of the folder left
/// out (the grayscale check thus only speaks in a folder of colour photos); and the checks left
/// out.
pub fn problems(all: &[Scores]) -> (Vec<Vec<Unusable>>, Vec<Unusable>) {
    let checks: [(Unusable, Check); 7] = [
        (Unusable::Dark, |s| s.brightness_p99 < DARK_BELOW),
        (Unusable::Bright, |s| s.brightness_p5 > BRIGHT_ABOVE),
        (Unusable::Blurry, |s| s.sharpness < BLURRY_BELOW),
        (Unusable::LowInformation, |s| {
            s.entropy < LOW_INFORMATION_BELOW
        }),
        (Unusable::Tiny, |s| s.size.0.min(s.size.1) < TINY_BELOW_PX),
        (Unusable::OddAspect, |s| {
            let (w, h) = (s.size.0 as f32, s.size.1 as f32);
            w.min(h) / w.max(h).max(1.0) < ODD_ASPECT_BELOW
        }),
        (Unusable::Grayscale, |s| {
            s.colourfulness <= GRAYSCALE_AT_MOST
        }),
    ];
    let mut found = vec![Vec::new(); all.len()];
    let mut dropped = Vec::new();
    for (kind, flags) in checks {
        let flagged: Vec<usize> = (0..all.len()).filter(|&i| flags(&all[i])).collect();
        if flagged.len() as f64 > MOST_FLAGGED * all.len() as f64 {
            dropped.push(kind);
            continue;
        }
        for i in flagged {
            found[i].push(kind);
        }
    }
    (found, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// A textured colour photo: noise over a gradient.
    fn textured(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = SplitMix64(seed);
        RgbImage::from_fn(w, h, |x, y| {
            let n = (rng.next_u64() % 60) as u8;
            image::Rgb([
                (x * 200 / w.max(1)) as u8 + n / 2,
                (y * 150 / h.max(1)) as u8 + n,
                90 + n,
            ])
        })
    }

    #[test]
    fn each_kind_of_unusable_photo_is_found_and_a_normal_one_is_not() {
        let mut photos: Vec<RgbImage> = (0..40).map(|i| textured(200, 160, i)).collect();
        let dark = RgbImage::from_fn(200, 160, |x, _| image::Rgb([(x % 20) as u8, 5, 5]));
        let white = RgbImage::from_pixel(200, 160, image::Rgb([250, 250, 250]));
        let flat = RgbImage::from_pixel(200, 160, image::Rgb([120, 90, 60]));
        let blurred = image::imageops::blur(&textured(200, 160, 99), 6.0);
        let tiny = textured(24, 24, 98);
        let wide = textured(600, 50, 97);
        let gray = RgbImage::from_fn(200, 160, |x, y| {
            let v = ((x * 7 + y * 13) % 255) as u8;
            image::Rgb([v, v, v])
        });
        photos.extend([dark, white, flat, blurred, tiny, wide, gray]);
        let scores: Vec<Scores> = photos.iter().map(scores).collect();
        let (found, dropped) = problems(&scores);
        assert!(dropped.is_empty());
        for (i, f) in found.iter().enumerate().take(40) {
            assert!(f.is_empty(), "photo {i}: {f:?} {:?}", scores[i]);
        }
        let expect = [
            Unusable::Dark,
            Unusable::Bright,
            Unusable::LowInformation,
            Unusable::Blurry,
            Unusable::Tiny,
            Unusable::OddAspect,
            Unusable::Grayscale,
        ];
        for (k, kind) in expect.iter().enumerate() {
            assert!(
                found[40 + k].contains(kind),
                "{kind:?}: {:?} {:?}",
                found[40 + k],
                scores[40 + k]
            );
        }
    }

    #[test]
    fn a_check_that_flags_much_of_the_folder_is_dropped() {
        // A folder of night photos: dark is what it looks like.
        let night: Vec<Scores> = (0..20)
            .map(|i| {
                let photo = RgbImage::from_fn(100, 100, |x, y| {
                    image::Rgb([((x + y + i) % 30) as u8, 10, ((x * y) % 25) as u8])
                });
                scores(&photo)
            })
            .collect();
        assert!(night.iter().all(|s| s.brightness_p99 < DARK_BELOW));
        let (found, dropped) = problems(&night);
        assert!(found.iter().all(|f| !f.contains(&Unusable::Dark)));
        assert!(dropped.contains(&Unusable::Dark));
    }
}
