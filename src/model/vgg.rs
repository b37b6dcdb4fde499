//! VGG16 exactly as torchvision defines it, split into the convolution base and the classifier.
//!
//! `features` holds the 13 3×3 convolutions (each followed by ReLU; max-pools after convolutions
//! 2, 4, 7, 10 and 13); an adaptive average pool brings the base's output to 7×7, then
//! `classifier` holds the dense layers. [`Vgg16::forward_features`] and [`Vgg16::forward_head`]
//! let the base be frozen and its output cached. Field names and order follow torchvision, so
//! `features.{0,2,5,…,28}` and `classifier.{0,3,6}` map onto `features.0..12` and
//! `classifier.0..2` by renumbering alone.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor, TensorData};

use crate::device::BufferNeed;
use crate::rng::SplitMix64;

/// Output channels of the 13 convolutions, at full width.
pub const CONV_CHANNELS: [usize; 13] = [
    64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
];

/// A max-pool follows these convolutions (0-based).
pub const POOL_AFTER: [usize; 5] = [1, 3, 6, 9, 12];

/// torchvision's indices of the convolutions inside `features` (ReLU and pools in between).
pub const TORCHVISION_CONV_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

/// torchvision's indices of the dense layers inside `classifier`.
pub const TORCHVISION_DENSE_INDICES: [usize; 3] = [0, 3, 6];

/// The spatial size the base's output is pooled to.
pub const POOLED_SIDE: usize = 7;

/// What sits on top of the convolution base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// torchvision's: 25088 → 4096 → 4096 → N, ReLU and dropout between.
    Torchvision,
    /// The 2017 course's light head: 25088 → 256 → N, ReLU and dropout between; trains ~50×
    /// faster per cached epoch than the torchvision head.
    Dense256,
    /// The pooled head: the base's output averaged over its 7×7 cells (global average pooling,
    /// 512 values), then 512 → 256 → N with ReLU and dropout between. Its input does not depend
    /// on where in the photo a feature is, and an epoch costs next to nothing.
    Pooled,
}

impl HeadKind {
    /// The widths of the dense layers' outputs, last one excluded (that one is the class count).
    fn hidden(self, divisor: usize) -> Vec<usize> {
        match self {
            Self::Torchvision => vec![4096 / divisor, 4096 / divisor],
            Self::Dense256 | Self::Pooled => vec![(256 / divisor).max(2)],
        }
    }

    /// Whether the head averages the base's output over its cells before the dense layers.
    pub fn pools_globally(self) -> bool {
        self == Self::Pooled
    }

    /// The learning rate a run of this head starts from when none is asked for: the pooled
    /// head's 512 inputs need a larger step than the light head's 25,088 (5-fold
    /// cross-validation, BENCHMARKS.md).
    pub fn default_learning_rate(self) -> f64 {
        match self {
            Self::Pooled => 1e-3,
            Self::Torchvision | Self::Dense256 => 1e-4,
        }
    }

    /// The head's short name, for messages and tables.
    pub fn short(self) -> &'static str {
        match self {
            Self::Torchvision => "torchvision",
            Self::Dense256 => "light",
            Self::Pooled => "pooled",
        }
    }

    /// Its name with its shape, for menus.
    pub fn label(self) -> &'static str {
        match self {
            Self::Torchvision => "torchvision (4096×2)",
            Self::Dense256 => "light (256 units)",
            Self::Pooled => "pooled (global average, 256 units)",
        }
    }
}

/// How to build a [`Vgg16`].
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Vgg16Config {
    /// The number of classes the last layer predicts.
    pub num_classes: usize,
    /// The side of the square input in pixels (224 for ImageNet weights).
    pub input_size: u32,
    /// Divides every width (channels, dense units); 1 is VGG16. Tests use 8 or 16 for a model of
    /// the same topology that runs in milliseconds.
    pub width_divisor: usize,
    /// The head on top of the base.
    pub head: HeadKind,
    /// Dropout probability between dense layers.
    pub dropout: f64,
}

impl Vgg16Config {
    /// Full-size VGG16 with torchvision's head for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            input_size: 224,
            width_divisor: 1,
            head: HeadKind::Torchvision,
            dropout: 0.5,
        }
    }

    /// Output channels of each convolution at this width.
    pub fn conv_channels(&self) -> [usize; 13] {
        CONV_CHANNELS.map(|c| (c / self.width_divisor.max(1)).max(1))
    }

    /// The number of floats the base outputs per image after pooling (25088 at full width).
    pub fn feature_len(&self) -> usize {
        self.conv_channels()[12] * POOLED_SIDE * POOLED_SIDE
    }

    /// The number of values the head's first dense layer reads: the base's output, or its
    /// channels when the head pools globally.
    pub fn head_input_len(&self) -> usize {
        if self.head.pools_globally() {
            self.conv_channels()[12]
        } else {
            self.feature_len()
        }
    }

    /// The shape of the base's pooled output for one image: [channels, 7, 7].
    pub fn feature_shape(&self) -> [usize; 3] {
        [self.conv_channels()[12], POOLED_SIDE, POOLED_SIDE]
    }

    /// The buffers that decide whether work on this model fits a GPU that binds at most `limit`
    /// bytes in one buffer: the head's first dense layer (the largest weight), one image's
    /// largest activation in the frozen convolutions `0..frozen_convs` (which run in as many
    /// passes as the limit needs, but one image must fit), and a batch of `batch` images'
    /// largest activation in the convolutions that train (`frozen_convs..13`), whose batch
    /// cannot be split.
    pub fn gpu_needs(&self, frozen_convs: usize, batch: usize, limit: u64) -> Vec<BufferNeed> {
        let channels = self.conv_channels();
        let side = self.input_size as usize;
        let hidden = self.head.hidden(self.width_divisor.max(1));
        let first_out = hidden.first().copied().unwrap_or(self.num_classes);
        let (name, remedy) = match self.head {
            HeadKind::Torchvision => (
                "the torchvision head",
                Some("use the light head (--head dense256)".to_owned()),
            ),
            HeadKind::Dense256 => ("the light head", None),
            HeadKind::Pooled => ("the pooled head", None),
        };
        let inputs = self.head_input_len();
        let mut needs = vec![BufferNeed {
            bytes: (inputs * first_out * 4) as u64,
            what: format!("{name}'s first dense layer ({inputs} × {first_out} weights)"),
            remedy,
        }];
        let frozen = frozen_convs.min(13);
        if frozen > 0 {
            let (conv, bytes) = largest_activation(&channels, 0..frozen, side);
            needs.push(BufferNeed {
                bytes,
                what: format!(
                    "one photo's output of convolution {} at {side} px",
                    conv + 1
                ),
                remedy: Some("use a smaller --input-size".to_owned()),
            });
        }
        if frozen < 13 {
            let (conv, per_image) = largest_activation(&channels, frozen..13, side);
            let fits = (limit / per_image.max(1)) as usize;
            needs.push(BufferNeed {
                bytes: per_image * batch as u64,
                what: format!(
                    "a batch of {batch} photos' output of convolution {} (trained)",
                    conv + 1
                ),
                remedy: Some(if fits == 0 {
                    "use a smaller --input-size".to_owned()
                } else {
                    format!("use --batch-size {fits} or less")
                }),
            });
        }
        needs
    }

    /// Builds the model with fresh (randomly initialised) weights.
    pub fn init(&self, device: &Device) -> Vgg16 {
        let channels = self.conv_channels();
        let mut features = Vec::with_capacity(13);
        let mut in_channels = 3;
        for &out in &channels {
            features.push(
                Conv2dConfig::new([in_channels, out], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            );
            in_channels = out;
        }
        Vgg16 {
            features,
            avgpool: AdaptiveAvgPool2dConfig::new([POOLED_SIDE, POOLED_SIDE]).init(),
            classifier: self.init_head(device),
            dropout: self.dropout,
            global_pool: self.head.pools_globally(),
        }
    }

    /// A fresh head for this configuration.
    pub fn init_head(&self, device: &Device) -> Vec<Linear> {
        let mut widths = vec![self.head_input_len()];
        widths.extend(self.head.hidden(self.width_divisor.max(1)));
        widths.push(self.num_classes);
        widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect()
    }
}

/// The largest activation one image makes in convolutions `range` (0-based) of a VGG16 with
/// these output `channels` and input side `input_side`: the convolution (0-based) and its
/// output's size in bytes (f32). Each convolution's output is larger than the max-pool after it.
pub fn largest_activation(
    channels: &[usize],
    range: std::ops::Range<usize>,
    input_side: usize,
) -> (usize, u64) {
    let mut side = input_side;
    let mut largest = (range.start, 0);
    for (i, &c) in channels.iter().enumerate().take(range.end) {
        if i >= range.start {
            let bytes = (c * side * side * 4) as u64;
            if bytes > largest.1 {
                largest = (i, bytes);
            }
        }
        if POOL_AFTER.contains(&i) {
            side /= 2;
        }
    }
    largest
}

/// The matrix [out, input] of an adaptive average pool from `input` cells to `out` (Burn's and
/// PyTorch's windows: cells floor(i·in/out) up to ceil((i+1)·in/out)).
pub fn adaptive_pool_matrix(input: usize, out: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; out * input];
    for i in 0..out {
        let start = i * input / out;
        let end = ((i + 1) * input).div_ceil(out);
        for j in start..end {
            m[i * input + j] = 1.0 / (end - start) as f32;
        }
    }
    m
}

/// The pooled head's input on the host: the mean of each channel's 7×7 cells of flat pooled
/// features (`[…, C·49]` → `[…, C]`, image after image), as [`Vgg16::forward_head_flat`]
/// computes it.
pub fn global_average(x: &[f32]) -> Vec<f32> {
    let cells = POOLED_SIDE * POOLED_SIDE;
    x.chunks_exact(cells)
        .map(|c| c.iter().sum::<f32>() / cells as f32)
        .collect()
}

/// A dropout keep-mask of `len` values, each 1/keep (kept) or 0 (dropped with probability
/// `prob`), drawn from `rng` in order: the one mask of Burn's training forward and of the
/// hand-written host step (`train::host_head`), so both drop the same units for the same seed.
pub fn dropout_mask(len: usize, prob: f64, rng: &mut SplitMix64) -> Vec<f32> {
    let keep = 1.0 - prob as f32;
    (0..len)
        .map(|_| {
            if rng.next_f32() < keep {
                1.0 / keep
            } else {
                0.0
            }
        })
        .collect()
}

/// VGG16: the convolution base and the classifier.
#[derive(Module, Debug)]
pub struct Vgg16 {
    /// The 13 convolutions of the base.
    pub features: Vec<Conv2d>,
    /// Brings the base's output to 7×7 whatever the input size.
    pub avgpool: AdaptiveAvgPool2d,
    /// The dense layers.
    pub classifier: Vec<Linear>,
    /// Dropout probability between dense layers, applied only by
    /// [`Vgg16::forward_head_train`] (with masks drawn from a seeded generator, so a resumed run
    /// draws the same masks as an uninterrupted one).
    pub dropout: f64,
    /// Whether the head first averages the base's output over its cells ([`HeadKind::Pooled`]).
    pub global_pool: bool,
}

impl Vgg16 {
    /// The convolution base: [batch, 3, H, W] → [batch, C, 7, 7] (pooled).
    pub fn forward_features(&self, input: Tensor<4>) -> Tensor<4> {
        self.forward_convs(input, 0..13)
    }

    /// Convolutions `range` (0-based, each with its ReLU and the max-pool after it); when the
    /// range ends at 13 the adaptive average pool follows. `forward_convs(x, 0..10)` is the
    /// frozen part when block 5 trains; `forward_convs(y, 10..13)` the rest.
    pub fn forward_convs(&self, input: Tensor<4>, range: std::ops::Range<usize>) -> Tensor<4> {
        let mut x = input;
        let end = range.end.min(self.features.len());
        for i in range.start..end {
            x = relu(self.features[i].forward(x));
            if POOL_AFTER.contains(&i) {
                x = max_pool2d(x, MaxPoolOptions::new([2, 2]));
            }
        }
        if end == self.features.len() {
            x = self.avgpool.forward(x);
        }
        x
    }

    /// The classifier: pooled features [batch, C, 7, 7] → logits (no dropout).
    pub fn forward_head(&self, features: Tensor<4>) -> Tensor<2> {
        self.forward_head_flat(features.flatten(1, 3))
    }

    /// The classifier on flat features [batch, C·49] → logits [batch, classes] (no dropout).
    pub fn forward_head_flat(&self, x: Tensor<2>) -> Tensor<2> {
        self.head_layers(x, |_, dense, x| dense.forward(x), |_, x| x)
    }

    /// [`Self::forward_head`] with each dense layer run by `linear(i, layer, input)` (what
    /// `model::frozen` uses to run the wide layers in bf16).
    pub fn forward_head_with(
        &self,
        features: Tensor<4>,
        linear: impl FnMut(usize, &Linear, Tensor<2>) -> Tensor<2>,
    ) -> Tensor<2> {
        self.head_layers(features.flatten(1, 3), linear, |_, x| x)
    }

    /// The classifier while training: dropout after each hidden layer, with keep-masks drawn
    /// from `rng` on the host so the same seed gives the same masks on any backend.
    pub fn forward_head_train(&self, x: Tensor<2>, rng: &mut SplitMix64) -> Tensor<2> {
        let prob = self.dropout;
        self.head_layers(
            x,
            |_, dense, x| dense.forward(x),
            |_, x| {
                if prob <= 0.0 {
                    return x;
                }
                let dims = x.dims();
                let mask = dropout_mask(dims[0] * dims[1], prob, rng);
                let mask = Tensor::<2>::from_data(TensorData::new(mask, dims), &x.device());
                x * mask
            },
        )
    }

    fn head_layers(
        &self,
        x: Tensor<2>,
        mut linear: impl FnMut(usize, &Linear, Tensor<2>) -> Tensor<2>,
        mut dropout: impl FnMut(usize, Tensor<2>) -> Tensor<2>,
    ) -> Tensor<2> {
        let mut x = if self.global_pool {
            let [batch, len] = x.dims();
            let cells = POOLED_SIDE * POOLED_SIDE;
            x.reshape([batch, len / cells, cells])
                .mean_dim(2)
                .reshape([batch, len / cells])
        } else {
            x
        };
        let last = self.classifier.len().saturating_sub(1);
        for (i, dense) in self.classifier.iter().enumerate() {
            x = linear(i, dense, x);
            if i < last {
                x = dropout(i, relu(x));
            }
        }
        x
    }

    /// The whole network: images [batch, 3, H, W] → logits [batch, classes].
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.forward_features(input))
    }

    /// The number of classes the last layer predicts.
    pub fn num_classes(&self) -> usize {
        self.classifier
            .last()
            .map_or(0, |l| l.weight.shape().dims::<2>()[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAVAPIPE_LIMIT: u64 = 128 << 20;

    #[test]
    fn the_largest_activation_is_the_first_block_at_full_size_and_block_5_when_it_trains() {
        let channels = Vgg16Config::new(2).conv_channels();
        assert_eq!(
            largest_activation(&channels, 0..13, 224),
            (0, 64 * 224 * 224 * 4)
        );
        // Block 5 sees 224 / 16 = 14 px.
        assert_eq!(
            largest_activation(&channels, 10..13, 224),
            (10, 512 * 14 * 14 * 4)
        );
        // Block 3 (convolutions 4..7) at 224 / 4 = 56 px.
        assert_eq!(
            largest_activation(&channels, 4..7, 224),
            (4, 256 * 56 * 56 * 4)
        );
    }

    #[test]
    fn gpu_needs_name_the_torchvision_heads_first_layer_and_a_trained_batch() {
        let config = Vgg16Config::new(2);
        let head_only = config.gpu_needs(13, 32, LAVAPIPE_LIMIT);
        assert_eq!(head_only.len(), 2, "{head_only:?}");
        assert_eq!(head_only[0].bytes, 25088 * 4096 * 4);
        assert!(head_only[0].what.contains("25088 × 4096"), "{head_only:?}");
        assert!(head_only[0].remedy.as_deref().unwrap().contains("dense256"));
        assert_eq!(head_only[1].bytes, 64 * 224 * 224 * 4);

        let light = Vgg16Config {
            head: HeadKind::Dense256,
            ..config
        };
        let everything = light.gpu_needs(0, 32, LAVAPIPE_LIMIT);
        assert_eq!(everything[0].bytes, 25088 * 256 * 4);
        assert_eq!(everything.len(), 2, "nothing is frozen: {everything:?}");
        let batch = &everything[1];
        assert_eq!(batch.bytes, 32 * 64 * 224 * 224 * 4);
        // 128 MiB holds 10 images' 12.25 MiB output of the first convolution.
        assert_eq!(batch.remedy.as_deref(), Some("use --batch-size 10 or less"));
        assert!(batch.what.contains("convolution 1"), "{}", batch.what);
    }
}
