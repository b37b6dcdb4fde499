//! Why a photo got its class: Grad-CAM on the last convolution (block 5's third, after its
//! ReLU), for every class at once, and the one colour rule that draws it (the CLI's PNG
//! overlays and the window's translucent layer alike).
//!
//! Grad-CAM (Selvaraju et al., 2017) weighs each channel `k` of the last activation `A` by the
//! spatial mean of the class score's gradient, `αₖ = Σᵢⱼ ∂y_c/∂Aₖᵢⱼ / (H·W)`, and keeps the
//! positive part of `Σₖ αₖ Aₖ`. Between `A` and the head sit a 2×2 max-pool and the adaptive
//! average pool to 7×7; each routes every gradient value to inputs with weights that sum to one,
//! so `Σᵢⱼ ∂y_c/∂Aₖᵢⱼ` is the sum of the gradient over channel `k` of the head's pooled input.
//! The gradient itself is one backward pass through the dense layers only, on the host: block 5
//! needs no backward pass at all, so a heatmap costs the photo's forward pass plus a few
//! matrix–vector products per class.

use image::RgbImage;

use crate::model::Vgg16;
use crate::model::host::to_host;
use crate::model::vgg::{POOLED_SIDE, adaptive_pool_matrix, global_average};

/// The dense layers of a model, on the host, for the head's forward and backward passes.
pub struct HostHead {
    layers: Vec<Dense>,
    /// The head averages its input over the 7×7 cells first ([`crate::model::HeadKind::Pooled`]).
    global_pool: bool,
}

struct Dense {
    /// `[inputs, outputs]`, row-major (Burn's layout).
    weight: Vec<f32>,
    bias: Vec<f32>,
    outputs: usize,
}

impl HostHead {
    /// Copies `model`'s dense layers to the host.
    pub fn of(model: &Vgg16) -> Self {
        let layers = model
            .classifier
            .iter()
            .map(|layer| {
                let [_, outputs] = layer.weight.shape().dims::<2>();
                Dense {
                    weight: to_host(layer.weight.val()),
                    bias: layer
                        .bias
                        .as_ref()
                        .map_or_else(|| vec![0.0; outputs], |b| to_host(b.val())),
                    outputs: outputs.max(1),
                }
            })
            .collect();
        Self {
            layers,
            global_pool: model.global_pool,
        }
    }

    /// The logits for flat pooled features `x`, and which units of each hidden layer were
    /// active (ReLU's mask, which the backward pass needs).
    fn forward(&self, x: &[f32]) -> (Vec<f32>, Vec<Vec<bool>>) {
        let mut x = if self.global_pool {
            global_average(x)
        } else {
            x.to_vec()
        };
        let mut masks = Vec::new();
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let mut y = layer.bias.clone();
            for (row, &xi) in layer.weight.chunks_exact(layer.outputs).zip(&x) {
                if xi != 0.0 {
                    for (o, &w) in y.iter_mut().zip(row) {
                        *o += xi * w;
                    }
                }
            }
            if i < last {
                masks.push(y.iter().map(|&v| v > 0.0).collect());
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            x = y;
        }
        (x, masks)
    }

    /// The gradient of logit `class` with respect to the head's flat input, given the forward
    /// pass's ReLU `masks`.
    fn input_gradient(&self, masks: &[Vec<bool>], class: usize) -> Vec<f32> {
        let Some(last) = self.layers.last() else {
            return Vec::new();
        };
        let mut g = vec![0.0f32; last.outputs];
        if let Some(v) = g.get_mut(class) {
            *v = 1.0;
        }
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let mut input: Vec<f32> = layer
                .weight
                .chunks_exact(layer.outputs)
                .map(|row| row.iter().zip(&g).map(|(w, g)| w * g).sum())
                .collect();
            if i > 0
                && let Some(mask) = masks.get(i - 1)
            {
                input
                    .iter_mut()
                    .zip(mask)
                    .for_each(|(v, &on)| *v = if on { *v } else { 0.0 });
            }
            g = input;
        }
        if self.global_pool {
            // Each cell of a channel took 1/49 of its mean.
            let cells = POOLED_SIDE * POOLED_SIDE;
            g = g
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v / cells as f32, cells))
                .collect();
        }
        g
    }
}

/// One photo's heatmaps, one per class in the model's order: `height`×`width` values (the last
/// convolution's grid, 14×14 at 224 px), each map scaled so that its largest value is 1 (all
/// zeros when nothing speaks for that class).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassMaps {
    /// Rows of each map.
    pub height: usize,
    /// Columns of each map.
    pub width: usize,
    /// Per class, row-major.
    pub maps: Vec<Vec<f32>>,
}

/// A photo's class probabilities with the heatmap of every class.
#[derive(Clone, Debug, PartialEq)]
pub struct Explained {
    /// Probability per class through this host copy of the head, in f32 (`explain_until`
    /// reports the probabilities of the head that prediction runs, which may be bf16).
    pub probabilities: Vec<f32>,
    /// The head's input: the base's pooled output, `[C·49]`.
    pub pooled: Vec<f32>,
    /// Why, per class.
    pub maps: ClassMaps,
}

/// Explains one photo from its last activation `a` ([C, H, W], after the ReLU) through `head`.
pub fn explain(head: &HostHead, a: &[f32], [c, h, w]: [usize; 3]) -> Explained {
    let pooled = pool(a, [c, h, w]);
    let (logits, masks) = head.forward(&pooled);
    let probabilities = softmax(&logits);
    let cells = POOLED_SIDE * POOLED_SIDE;
    let maps = (0..logits.len())
        .map(|class| {
            let gradient = head.input_gradient(&masks, class);
            let alpha: Vec<f32> = gradient
                .chunks_exact(cells)
                .map(|g| g.iter().sum::<f32>() / (h * w).max(1) as f32)
                .collect();
            let mut map = vec![0.0f32; h * w];
            for (channel, &weight) in a.chunks_exact(h * w).zip(&alpha) {
                if weight != 0.0 {
                    for (m, &v) in map.iter_mut().zip(channel) {
                        *m += weight * v;
                    }
                }
            }
            let top = map.iter().fold(0.0f32, |m, &v| m.max(v));
            for v in &mut map {
                *v = if top > 0.0 { v.max(0.0) / top } else { 0.0 };
            }
            map
        })
        .collect();
    Explained {
        probabilities,
        pooled,
        maps: ClassMaps {
            height: h,
            width: w,
            maps,
        },
    }
}

/// The head's input from the last activation: the 2×2 max-pool (rounding down), then the
/// adaptive average pool to 7×7, flattened channel by channel.
fn pool(a: &[f32], [c, h, w]: [usize; 3]) -> Vec<f32> {
    let (ph, pw) = (h / 2, w / 2);
    let rows = adaptive_pool_matrix(ph, POOLED_SIDE);
    let cols = adaptive_pool_matrix(pw, POOLED_SIDE);
    let mut out = Vec::with_capacity(c * POOLED_SIDE * POOLED_SIDE);
    let mut maxed = vec![0.0f32; ph * pw];
    for channel in a.chunks_exact(h * w).take(c) {
        for y in 0..ph {
            for x in 0..pw {
                let at = |yy: usize, xx: usize| channel[yy * w + xx];
                maxed[y * pw + x] = at(2 * y, 2 * x)
                    .max(at(2 * y, 2 * x + 1))
                    .max(at(2 * y + 1, 2 * x).max(at(2 * y + 1, 2 * x + 1)));
            }
        }
        for oy in 0..POOLED_SIDE {
            for ox in 0..POOLED_SIDE {
                let mut v = 0.0f32;
                for y in 0..ph {
                    let ry = rows[oy * ph + y];
                    if ry != 0.0 {
                        for x in 0..pw {
                            v += ry * cols[ox * pw + x] * maxed[y * pw + x];
                        }
                    }
                }
                out.push(v);
            }
        }
    }
    out
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let top = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exp: Vec<f32> = logits.iter().map(|&v| (v - top).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|v| v / sum).collect()
}

/// The colour and opacity (0–1) of a heatmap value `t` in 0–1: a perceptually ordered scale
/// from dark blue through cyan, green and yellow to red, more opaque where the evidence is
/// stronger so the photo stays visible where nothing speaks. The one rule for every overlay and
/// legend.
pub fn tint(t: f32) -> ([u8; 3], f32) {
    const STOPS: [[f32; 3]; 6] = [
        [48.0, 18.0, 59.0],
        [50.0, 110.0, 230.0],
        [30.0, 200.0, 200.0],
        [120.0, 220.0, 60.0],
        [250.0, 200.0, 40.0],
        [220.0, 30.0, 20.0],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let colour = std::array::from_fn(|k| (STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k])) as u8);
    (colour, 0.15 + 0.5 * t)
}

/// Bilinear sample of a `height`×`width` map at (u, v), both 0–1 across the map.
fn sample(map: &[f32], height: usize, width: usize, u: f32, v: f32) -> f32 {
    let x = (u * width as f32 - 0.5).clamp(0.0, (width.max(1) - 1) as f32);
    let y = (v * height as f32 - 0.5).clamp(0.0, (height.max(1) - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |yy: usize, xx: usize| map.get(yy * width + xx).copied().unwrap_or(0.0);
    let top = at(y0, x0) + fx * (at(y0, x1) - at(y0, x0));
    let bottom = at(y1, x0) + fx * (at(y1, x1) - at(y1, x0));
    top + fy * (bottom - top)
}

/// `photo` with `map` (`height`×`width`) drawn over `region` (fractions of the photo, as
/// [`crate::data::ResizeMode::region`] gives: the part the model saw); what lies outside it is
/// dimmed.
pub fn overlay(
    photo: &RgbImage,
    map: &[f32],
    [height, width]: [usize; 2],
    region: [f32; 4],
) -> RgbImage {
    let (pw, ph) = photo.dimensions();
    let mut out = photo.clone();
    if height == 0 || width == 0 || map.len() < height * width {
        return out;
    }
    let [left, top, right, bottom] = region;
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let u = (x as f32 + 0.5) / pw as f32;
        let v = (y as f32 + 0.5) / ph as f32;
        let inside = (left..right).contains(&u) && (top..bottom).contains(&v);
        if !inside {
            pixel.0 = pixel.0.map(|c| c / 2);
            continue;
        }
        let t = sample(
            map,
            height,
            width,
            (u - left) / (right - left),
            (v - top) / (bottom - top),
        );
        let (colour, alpha) = tint(t);
        for (c, &k) in pixel.0.iter_mut().zip(&colour) {
            *c = (f32::from(*c) * (1.0 - alpha) + f32::from(k) * alpha).round() as u8;
        }
    }
    out
}

/// `map` as RGBA pixels (`height`×`width`) in [`tint`]'s colours and opacities, for a GPU
/// texture stretched over the photo.
pub fn rgba(map: &[f32]) -> Vec<u8> {
    map.iter()
        .flat_map(|&t| {
            let ([r, g, b], alpha) = tint(t);
            [r, g, b, (alpha * 255.0).round() as u8]
        })
        .collect()
}

/// The longest side of a written overlay: larger photos are scaled down first.
pub const OVERLAY_MAX_SIDE: u32 = 1024;

/// Draws `class`'s map of `maps` over the photo at `photo` (decoded again, within the usual
/// limits; scaled down to [`OVERLAY_MAX_SIDE`]) for a model with `preprocessing`, and writes it
/// to `out` as PNG (through a temporary file, so a failed write leaves nothing half-written).
pub fn write_overlay(
    photo: &std::path::Path,
    maps: &ClassMaps,
    class: usize,
    preprocessing: &crate::data::Preprocessing,
    out: &std::path::Path,
) -> Result<(), String> {
    let map = maps
        .maps
        .get(class)
        .ok_or_else(|| format!("the model has no class {class}"))?;
    let image = crate::data::decode_rgb(photo, &crate::data::DecodeLimits::default())
        .map_err(|e| format!("{}: {}", photo.display(), e.reason()))?;
    let (w, h) = image.dimensions();
    let region = preprocessing.resize.region(preprocessing.input_size, w, h);
    let image = if w.max(h) > OVERLAY_MAX_SIDE {
        let scale = f64::from(OVERLAY_MAX_SIDE) / f64::from(w.max(h));
        let (nw, nh) = (
            ((f64::from(w) * scale).round() as u32).max(1),
            ((f64::from(h) * scale).round() as u32).max(1),
        );
        image::imageops::resize(&image, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        image
    };
    let drawn = overlay(&image, map, [maps.height, maps.width], region);
    let mut bytes = Vec::new();
    drawn
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("{}: {e}", out.display()))?;
    crate::fsutil::write_replace(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))
}

/// File names for the overlays of `photos` explained as `classes`: `STEM.CLASS.heatmap.png`,
/// made unique (`STEM-2.…`) where photos from different folders share a name.
pub fn overlay_names(photos: &[&std::path::Path], classes: &[&str]) -> Vec<String> {
    let mut used = std::collections::HashSet::new();
    photos
        .iter()
        .zip(classes)
        .map(|(photo, class)| {
            let stem = photo
                .file_stem()
                .map_or_else(|| "photo".into(), |s| s.to_string_lossy().into_owned());
            let class: String = class
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut name = format!("{stem}.{class}.heatmap.png");
            let mut k = 2;
            while !used.insert(name.clone()) {
                name = format!("{stem}-{k}.{class}.heatmap.png");
                k += 1;
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_a_14_by_14_activation_is_a_plain_max_pool() {
        let (c, h, w) = (2, 14, 14);
        let a: Vec<f32> = (0..c * h * w).map(|i| (i % 17) as f32).collect();
        let pooled = pool(&a, [c, h, w]);
        assert_eq!(pooled.len(), c * 49);
        let max = |ch: usize, y: usize, x: usize| {
            let at = |yy: usize, xx: usize| a[ch * h * w + yy * w + xx];
            at(2 * y, 2 * x)
                .max(at(2 * y, 2 * x + 1))
                .max(at(2 * y + 1, 2 * x))
                .max(at(2 * y + 1, 2 * x + 1))
        };
        assert_eq!(pooled[3 * 7 + 4], max(0, 3, 4));
        assert_eq!(pooled[49 + 6 * 7 + 6], max(1, 6, 6));
    }

    #[test]
    fn the_tint_runs_from_blue_to_red_and_grows_more_opaque() {
        let (cold, a0) = tint(0.0);
        let (hot, a1) = tint(1.0);
        assert!(cold[2] > cold[0] && hot[0] > hot[2], "{cold:?} {hot:?}");
        assert!(a1 > a0);
        assert_eq!(tint(f32::NAN), tint(0.0));
        assert_eq!(rgba(&[0.0, 1.0]).len(), 8);
    }

    #[test]
    fn the_overlay_dims_what_the_model_did_not_see() {
        let photo = RgbImage::from_pixel(20, 10, image::Rgb([200, 200, 200]));
        let map = vec![1.0; 4];
        let out = overlay(&photo, &map, [2, 2], [0.25, 0.0, 0.75, 1.0]);
        assert_eq!(out.get_pixel(0, 5).0, [100, 100, 100]);
        assert_ne!(out.get_pixel(10, 5).0, [200, 200, 200]);
        assert!(out.get_pixel(10, 5).0[0] > out.get_pixel(10, 5).0[2]);
    }

    #[test]
    fn overlay_names_stay_unique_and_safe() {
        let a = std::path::Path::new("a/cat.1.jpg");
        let b = std::path::Path::new("b/cat.1.jpg");
        let names = overlay_names(&[a, b, a], &["cat", "cat", "big/dog"]);
        assert_eq!(
            names,
            [
                "cat.1.cat.heatmap.png",
                "cat.1-2.cat.heatmap.png",
                "cat.1.big_dog.heatmap.png"
            ]
        );
    }
}
