//! Torchvision's wide dense layers at inference in bf16, beside a frozen base that runs in
//! bf16 on the CPU.
//!
//! A photo's pass through torchvision's head reads its first two layers' 119 M weights: 477 MB
//! in f32. Memory, not arithmetic, sets their time at small batches (about 45 ms a pass on 2
//! cores, more than twice the bf16 base's 18 ms a photo). Rounded to bf16 once and packed in
//! panels of columns, each panel one run of memory that the two cores stream side by side, they
//! read half as much. The products are [`bf16::matmul`]'s (bf16 products, f32 sums), the same
//! rounding as the base's, and the bias and ReLU stay in f32.
//!
//! Only layers of at least [`WIDE_LAYER_WEIGHTS`] weights are packed: the light and pooled
//! heads, and the last layer of a head of fewer than 4096 classes, stay Burn's f32 (there the
//! rounding would buy nothing).

use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::Vgg16;
use super::bf16::{self, PackedB};
use super::host::to_host;

/// What runs in bf16 here, in words (for `vggtune info`).
pub const DESCRIPTION: &str = "torchvision's 4096-wide dense layers too, when predicting";

/// A dense layer runs in bf16 from this many weights (64 MiB in f32): torchvision's 25088 → 4096
/// layer, and its 4096 → 4096 layer, which has exactly this many.
pub const WIDE_LAYER_WEIGHTS: usize = 1 << 24;

/// Columns of a layer packed together: each panel's weights are one run of memory (at 4096
/// columns a single packing would read 128 bytes of every 16 KiB row, a page apart).
const PANEL_COLUMNS: usize = 256;

/// One layer, rounded and packed.
struct Packed {
    /// The layer's columns in panels of [`PANEL_COLUMNS`] (the last may be narrower).
    panels: Vec<PackedB>,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
}

/// A model's wide dense layers in bf16 (the others: `None`, run by Burn).
pub struct WideDense {
    layers: Vec<Option<Packed>>,
}

impl WideDense {
    /// `model`'s layers of at least `min_weights` weights, packed; `None` where this CPU has
    /// no bf16 products or no layer is that wide.
    pub fn new(model: &Vgg16, min_weights: usize) -> Option<Self> {
        if !bf16::available() {
            return None;
        }
        let layers: Vec<Option<Packed>> = model
            .classifier
            .iter()
            .map(|dense| {
                let [inputs, outputs] = dense.weight.dims();
                (inputs.saturating_mul(outputs) >= min_weights).then(|| pack(dense))
            })
            .collect();
        layers
            .iter()
            .any(Option::is_some)
            .then_some(Self { layers })
    }

    /// `model`'s head on the base's output (`[n, C, 7, 7]` → logits): the packed layers here,
    /// the others through Burn. `model` must be the one these layers were packed from.
    pub fn forward_head(&self, model: &Vgg16, base: Tensor<4>) -> Tensor<2> {
        model.forward_head_with(base, |i, dense, x| {
            self.forward(i, &x).unwrap_or_else(|| dense.forward(x))
        })
    }

    /// Layer `i` on `x` (`[batch, inputs]`), when it is packed here.
    fn forward(&self, i: usize, x: &Tensor<2>) -> Option<Tensor<2>> {
        let layer = self.layers.get(i)?.as_ref()?;
        let [batch, inputs] = x.dims();
        assert_eq!(inputs, layer.inputs, "dense layer {i}: input width");
        let values = to_host(x.clone());
        let y = layer.forward(&values, batch);
        Some(Tensor::from_data(
            TensorData::new(y, [batch, layer.outputs]),
            &x.device(),
        ))
    }
}

/// Panels packed at once: each holds an f32 copy of its columns while it packs (25.7 MB for
/// torchvision's first layer), so on many cores this bounds the copies, not the whole layer.
const PANELS_AT_ONCE: usize = 4;

/// `dense`'s weights (`[inputs, outputs]`) rounded and packed in panels, a few panels' columns
/// read at a time (no f32 copy of the whole layer: torchvision's first is 411 MB).
fn pack(dense: &Linear) -> Packed {
    let [inputs, outputs] = dense.weight.dims();
    let weights = dense.weight.val();
    let firsts: Vec<usize> = (0..outputs).step_by(PANEL_COLUMNS).collect();
    let panels = firsts
        .chunks(PANELS_AT_ONCE)
        .flat_map(|group| {
            group
                .par_iter()
                .map(|&first| {
                    let cols = (outputs - first).min(PANEL_COLUMNS);
                    let columns = to_host(weights.clone().slice([0..inputs, first..first + cols]));
                    PackedB::pack(&columns, cols, [inputs, cols])
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Packed {
        panels,
        bias: dense.bias.as_ref().map(|b| to_host(b.val())),
        inputs,
        outputs,
    }
}

impl Packed {
    /// `x · W + b` for `batch` rows of `x` (row-major), each panel on whichever thread is free.
    fn forward(&self, x: &[f32], batch: usize) -> Vec<f32> {
        assert!(x.len() >= batch * self.inputs, "dense input too short");
        let parts: Vec<Vec<f32>> = self
            .panels
            .par_iter()
            .map(|panel| {
                let cols = panel.shape()[1];
                let mut part = vec![0.0f32; batch * cols];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `WideDense::new` packed only where `bf16::available()`; `x` holds
                // `batch` rows of `inputs` values (asserted), `part` `batch` rows of `cols`,
                // and `part` is this closure's own.
                unsafe {
                    bf16::matmul(
                        batch,
                        (part.as_mut_ptr(), cols),
                        (x.as_ptr(), self.inputs),
                        panel,
                    );
                }
                part
            })
            .collect();
        let mut out = vec![0.0f32; batch * self.outputs];
        for (p, part) in parts.iter().enumerate() {
            let first = p * PANEL_COLUMNS;
            let cols = self.panels[p].shape()[1];
            for (row, values) in part.chunks_exact(cols).enumerate() {
                let dst = &mut out[row * self.outputs + first..][..cols];
                dst.copy_from_slice(values);
                if let Some(bias) = &self.bias {
                    for (d, b) in dst.iter_mut().zip(&bias[first..first + cols]) {
                        *d += b;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HeadKind, Vgg16Config};

    /// Packed layers give Burn's f32 head to within bf16's rounding, batch by batch, with and
    /// without the last layer packed, and only layers of the asked width get packed.
    #[test]
    fn the_bf16_dense_layers_follow_burns_f32_head() {
        if !bf16::available() {
            eprintln!("skipped: this CPU has no AVX512-BF16");
            return;
        }
        let config = Vgg16Config {
            num_classes: 300,
            input_size: 32,
            width_divisor: 4,
            head: HeadKind::Torchvision,
            dropout: 0.5,
        };
        let device = burn::tensor::Device::flex();
        let model = config.init(&device);
        let widths: Vec<usize> = model
            .classifier
            .iter()
            .map(|d| d.weight.dims().iter().product())
            .collect();
        // 6272 × 1024, 1024 × 1024, 1024 × 300 (panels of 256 and one of 44).
        assert!(WideDense::new(&model, widths[0] + 1).is_none());
        assert!(widths[2] < widths[1]);
        let first_only = WideDense::new(&model, widths[1] + 1).expect("the first layer is wide");
        assert_eq!(
            first_only
                .layers
                .iter()
                .map(Option::is_some)
                .collect::<Vec<_>>(),
            [true, false, false]
        );
        let all = WideDense::new(&model, 0).expect("every layer packs");
        let features = config.feature_shape();
        for batch in [0, 1, 5, 33] {
            let n: usize = features.iter().product();
            let mut rng = crate::rng::SplitMix64(batch as u64);
            let values: Vec<f32> = (0..batch * n).map(|_| rng.next_f32()).collect();
            let x = Tensor::<4>::from_data(
                TensorData::new(values, [batch, features[0], features[1], features[2]]),
                &device,
            );
            let want = to_host(model.forward_head(x.clone()));
            let got = to_host(all.forward_head(&model, x));
            assert_eq!(got.len(), batch * 300);
            if batch == 0 {
                continue;
            }
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = want
                .iter()
                .zip(&got)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(scale > 0.0, "batch {batch}: the head gives zeros");
            assert!(
                worst <= 0.02 * scale,
                "batch {batch}: off by {worst} of {scale}"
            );
        }
    }
}
