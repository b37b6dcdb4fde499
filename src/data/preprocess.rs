//! Preprocessing: the one function that turns a decoded photo into the model's input.
//!
//! Training, evaluation and prediction all call [`Preprocessing::apply`], so the app and its saved
//! models can never disagree on how pixels are prepared (the classic fine-tuning bug). The
//! convention travels with the weights: torchvision's VGG16 wants RGB in [0,1] normalised by the
//! ImageNet mean and std; Keras/Caffe VGG16 wants BGR in 0..255 minus the channel means.
//! Augmentation (flip, rotation, shift, zoom) is for training only and is seeded.

use image::RgbImage;
use image::imageops::FilterType;

use crate::rng::SplitMix64;

/// How pixel values are prepared for a given set of weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Convention {
    /// RGB, scaled to [0,1], minus mean (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225).
    Torchvision,
    /// BGR, 0..255, minus mean (103.939, 116.779, 123.68) in B, G, R order (Keras, Caffe, ONNX).
    Caffe,
}

impl Convention {
    const TORCH_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const TORCH_STD: [f32; 3] = [0.229, 0.224, 0.225];
    /// Caffe's means in B, G, R order.
    const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

    /// The normalised value of 8-bit RGB channel `rgb_channel` (0 = R) holding `v`.
    fn normalise(self, rgb_channel: usize, v: u8) -> f32 {
        let v = f32::from(v);
        match self {
            Self::Torchvision => {
                (v / 255.0 - Self::TORCH_MEAN[rgb_channel]) / Self::TORCH_STD[rgb_channel]
            }
            Self::Caffe => v - Self::CAFFE_MEAN_BGR[2 - rgb_channel],
        }
    }

    /// The same normalisation written as `(pixel − mean[c]) / scale[c]` for 8-bit RGB channel `c`
    /// (pixel values 0–255), for graphs that take raw pixels (the ONNX export).
    pub fn pixel_mean_and_scale(self) -> ([f32; 3], [f32; 3]) {
        let channels = [0, 1, 2];
        match self {
            Self::Torchvision => (
                channels.map(|c| 255.0 * Self::TORCH_MEAN[c]),
                channels.map(|c| 255.0 * Self::TORCH_STD[c]),
            ),
            Self::Caffe => (channels.map(|c| Self::CAFFE_MEAN_BGR[2 - c]), [1.0; 3]),
        }
    }

    /// The RGB channel that goes into input plane `plane` (BGR for Caffe).
    pub fn source_channel(self, plane: usize) -> usize {
        match self {
            Self::Torchvision => plane,
            Self::Caffe => 2 - plane,
        }
    }
}

/// How a photo of any shape becomes a square input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Stretch to the square, as Keras's `load_img(target_size=...)` did in the 2017 course.
    #[default]
    Squash,
    /// torchvision's evaluation recipe: resize the shorter side to `size × 256/224`, then take
    /// the centre square.
    ShorterSideCenterCrop,
}

/// The longest a photo may be, in widths, when the centre crop resizes it (longer photos keep
/// their middle part: the crop takes only its centre anyway).
const MAX_CROP_ASPECT: u32 = 4;

impl ResizeMode {
    /// The other way of making a photo square (the second square of the test-time
    /// augmentation).
    pub fn other(self) -> Self {
        match self {
            Self::Squash => Self::ShorterSideCenterCrop,
            Self::ShorterSideCenterCrop => Self::Squash,
        }
    }

    /// How a photo becomes the `size`×`size` input, in words for people using an exported model.
    pub fn describe(self, size: u32) -> String {
        match self {
            Self::Squash => format!(
                "stretch the whole photo to {size}×{size} pixels (bilinear), ignoring its aspect ratio"
            ),
            Self::ShorterSideCenterCrop => format!(
                "resize the photo so its shorter side is {} pixels (bilinear), then take the centre {size}×{size} square",
                Self::shorter_side(size)
            ),
        }
    }

    /// The part of a `w`×`h` photo that becomes the `size`×`size` input, as fractions of its
    /// width and height: `[left, top, right, bottom]` (the whole photo when squashed; the centre
    /// square [`Preprocessing::resize`] crops otherwise). Heatmaps are drawn over this part.
    pub fn region(self, size: u32, w: u32, h: u32) -> [f32; 4] {
        match self {
            Self::Squash => [0.0, 0.0, 1.0, 1.0],
            Self::ShorterSideCenterCrop => {
                let s = size.max(1);
                let target = Self::shorter_side(s);
                let scale = f64::from(target) / f64::from(w.min(h).max(1));
                let nw = ((f64::from(w) * scale).round() as u32).max(s);
                let nh = ((f64::from(h) * scale).round() as u32).max(s);
                let (x0, y0) = (f64::from((nw - s) / 2), f64::from((nh - s) / 2));
                let (nw, nh) = (f64::from(nw), f64::from(nh));
                [
                    (x0 / nw) as f32,
                    (y0 / nh) as f32,
                    ((x0 + f64::from(s)) / nw) as f32,
                    ((y0 + f64::from(s)) / nh) as f32,
                ]
            }
        }
    }

    /// The shorter side a photo is resized to before the centre crop (torchvision's 256 for 224).
    fn shorter_side(size: u32) -> u32 {
        (f64::from(size) * 256.0 / 224.0).round() as u32
    }
}

/// Everything about how inputs are prepared; stored with every model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preprocessing {
    /// Pixel convention of the weights.
    pub convention: Convention,
    /// The side of the square input, in pixels (224 for VGG16).
    pub input_size: u32,
    /// How photos are made square.
    pub resize: ResizeMode,
}

impl Preprocessing {
    /// torchvision's VGG16 at 224×224.
    pub fn torchvision() -> Self {
        Self {
            convention: Convention::Torchvision,
            input_size: 224,
            resize: ResizeMode::Squash,
        }
    }

    /// Keras/Caffe VGG16 at 224×224.
    pub fn caffe() -> Self {
        Self {
            convention: Convention::Caffe,
            ..Self::torchvision()
        }
    }

    /// The number of floats one input holds (3 × size × size).
    pub fn input_len(&self) -> usize {
        3 * (self.input_size as usize).pow(2)
    }

    /// Resizes `image` to the square input (no augmentation).
    pub fn resize(&self, image: &RgbImage) -> RgbImage {
        let s = self.input_size.max(1);
        match self.resize {
            ResizeMode::Squash => image::imageops::resize(image, s, s, FilterType::Triangle),
            ResizeMode::ShorterSideCenterCrop => {
                // A photo longer than MAX_CROP_ASPECT times its width keeps only its middle
                // part that long before the resize: the centre square is inside it, and a
                // 20000×2 strip no longer becomes a 2,560,000-pixel-wide image on the way.
                let (w, h) = image.dimensions();
                let short = w.min(h).max(1);
                let keep = short.saturating_mul(MAX_CROP_ASPECT);
                let middle;
                let image = if w.max(h) > keep {
                    let (cw, ch) = if w > h { (keep, h) } else { (w, keep) };
                    middle = image::imageops::crop_imm(image, (w - cw) / 2, (h - ch) / 2, cw, ch)
                        .to_image();
                    &middle
                } else {
                    image
                };
                let (w, h) = image.dimensions();
                let target = ResizeMode::shorter_side(s);
                let scale = f64::from(target) / f64::from(w.min(h).max(1));
                let nw = ((f64::from(w) * scale).round() as u32).max(s);
                let nh = ((f64::from(h) * scale).round() as u32).max(s);
                let resized = image::imageops::resize(image, nw, nh, FilterType::Triangle);
                image::imageops::crop_imm(&resized, (nw - s) / 2, (nh - s) / 2, s, s).to_image()
            }
        }
    }

    /// The model input for `image`: channels-first (3 × size × size) floats.
    ///
    /// With `augment`, a random flip, rotation, shift and zoom drawn from `seed` are applied
    /// first; the same seed gives the same result.
    pub fn apply(&self, image: &RgbImage, augment: Option<(&Augmentation, u64)>) -> Vec<f32> {
        let mut square = self.resize(image);
        if let Some((augmentation, seed)) = augment {
            square = augmentation.apply(&square, seed);
        }
        self.normalise(&square)
    }

    /// The same preparation with the photo made square the other way ([`ResizeMode::other`]).
    pub fn other_square(self) -> Self {
        Self {
            resize: self.resize.other(),
            ..self
        }
    }

    /// Mirrors channels-first model input (`3 × side × side`, as [`Self::apply`] gives) left to
    /// right, in place: the input of the photo's mirror image.
    pub fn mirror(input: &mut [f32], side: usize) {
        for row in input.chunks_exact_mut(side.max(1)) {
            row.reverse();
        }
    }

    /// Normalises an already square image into channels-first floats.
    pub fn normalise(&self, square: &RgbImage) -> Vec<f32> {
        let (w, h) = square.dimensions();
        let plane = (w * h) as usize;
        let mut out = vec![0.0f32; 3 * plane];
        for (i, px) in square.pixels().enumerate() {
            for p in 0..3 {
                let c = self.convention.source_channel(p);
                out[p * plane + i] = self.convention.normalise(c, px[c]);
            }
        }
        out
    }
}

/// Random changes applied to training images so the model sees more variety.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    /// Mirror left-right half of the time.
    pub horizontal_flip: bool,
    /// Largest rotation either way, in degrees.
    pub max_rotation_deg: f32,
    /// Largest shift either way, as a fraction of the side.
    pub max_shift: f32,
    /// Largest zoom in or out, as a fraction (0.1 = 90% to 110%).
    pub max_zoom: f32,
}

impl Default for Augmentation {
    fn default() -> Self {
        Self {
            horizontal_flip: true,
            max_rotation_deg: 10.0,
            max_shift: 0.1,
            max_zoom: 0.1,
        }
    }
}

impl Augmentation {
    /// Applies one random draw (from `seed`) to a square image; edges are extended, as Keras's
    /// `fill_mode='nearest'` does.
    pub fn apply(&self, image: &RgbImage, seed: u64) -> RgbImage {
        let mut rng = SplitMix64(seed);
        let flip = self.horizontal_flip && rng.next_f32() < 0.5;
        let angle = (rng.next_f32() * 2.0 - 1.0) * self.max_rotation_deg.to_radians();
        let (w, h) = image.dimensions();
        let shift_x = (rng.next_f32() * 2.0 - 1.0) * self.max_shift * w as f32;
        let shift_y = (rng.next_f32() * 2.0 - 1.0) * self.max_shift * h as f32;
        let zoom = 1.0 + (rng.next_f32() * 2.0 - 1.0) * self.max_zoom;
        let (sin, cos) = angle.sin_cos();
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let mut out = RgbImage::new(w, h);
        for (x, y, px) in out.enumerate_pixels_mut() {
            let ox = if flip { (w - 1 - x) as f32 } else { x as f32 };
            // Inverse map: output → source, around the centre.
            let dx = (ox - cx - shift_x) / zoom;
            let dy = (y as f32 - cy - shift_y) / zoom;
            let sx = cos * dx + sin * dy + cx;
            let sy = -sin * dx + cos * dy + cy;
            *px = sample_clamped(image, sx, sy);
        }
        out
    }
}

fn sample_clamped(image: &RgbImage, x: f32, y: f32) -> image::Rgb<u8> {
    let (w, h) = image.dimensions();
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |x, y| image.get_pixel(x, y).0;
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    let mut out = [0u8; 3];
    for i in 0..3 {
        let top = f32::from(a[i]) * (1.0 - fx) + f32::from(b[i]) * fx;
        let bottom = f32::from(c[i]) * (1.0 - fx) + f32::from(d[i]) * fx;
        out[i] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
    image::Rgb(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_reverses_every_row_of_every_channel() {
        let mut input: Vec<f32> = (0..12).map(|v| v as f32).collect();
        Preprocessing::mirror(&mut input, 2);
        assert_eq!(
            input,
            [1.0, 0.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0, 9.0, 8.0, 11.0, 10.0]
        );
    }

    #[test]
    fn torchvision_convention_is_rgb_scaled_and_standardised() {
        let p = Preprocessing {
            input_size: 1,
            ..Preprocessing::torchvision()
        };
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 128]));
        let v = p.normalise(&img);
        assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((v[1] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        assert!((v[2] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-5);
    }

    #[test]
    fn caffe_convention_is_bgr_minus_mean() {
        let p = Preprocessing {
            input_size: 1,
            ..Preprocessing::caffe()
        };
        let img = RgbImage::from_pixel(1, 1, image::Rgb([200, 100, 50]));
        let v = p.normalise(&img);
        assert_eq!(v, vec![50.0 - 103.939, 100.0 - 116.779, 200.0 - 123.68]);
    }

    #[test]
    fn a_long_strip_is_cropped_without_resizing_all_of_it() {
        // 20000×2: resized whole to a shorter side of 256 it would be 2,560,000 pixels wide
        // (1.9 GB); its middle part is resized instead.
        let img = RgbImage::from_fn(20000, 2, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
        let p = Preprocessing {
            input_size: 224,
            resize: ResizeMode::ShorterSideCenterCrop,
            ..Preprocessing::torchvision()
        };
        assert_eq!(p.resize(&img).dimensions(), (224, 224));
        let tall = RgbImage::from_pixel(3, 9000, image::Rgb([9, 9, 9]));
        assert_eq!(p.resize(&tall).dimensions(), (224, 224));
    }

    #[test]
    fn shorter_side_crop_keeps_the_centre() {
        // A 40×20 image whose middle 20 columns are white, the rest black.
        let img = RgbImage::from_fn(40, 20, |x, _| {
            if (10..30).contains(&x) {
                image::Rgb([255; 3])
            } else {
                image::Rgb([0; 3])
            }
        });
        let p = Preprocessing {
            input_size: 14,
            resize: ResizeMode::ShorterSideCenterCrop,
            ..Preprocessing::torchvision()
        };
        let out = p.resize(&img);
        assert_eq!(out.dimensions(), (14, 14));
        assert_eq!(out.get_pixel(7, 7).0, [255; 3]);
        // Squash keeps the black borders instead.
        let squashed = Preprocessing {
            resize: ResizeMode::Squash,
            ..p
        }
        .resize(&img);
        assert_eq!(squashed.get_pixel(0, 7).0, [0; 3]);
    }

    #[test]
    fn augmentation_is_seeded_and_changes_the_image() {
        let img = RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 0]));
        let aug = Augmentation::default();
        assert_eq!(aug.apply(&img, 7), aug.apply(&img, 7));
        assert_ne!(aug.apply(&img, 7), aug.apply(&img, 8));
        assert_ne!(aug.apply(&img, 7), img);
        let none = Augmentation {
            horizontal_flip: false,
            max_rotation_deg: 0.0,
            max_shift: 0.0,
            max_zoom: 0.0,
        };
        assert_eq!(none.apply(&img, 3), img);
    }
}
